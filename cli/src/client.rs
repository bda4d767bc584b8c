//! Small typed clients for the publisher REST API and the gateway admin
//! API, used by `artisync up` and the end-to-end tests.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{method} {url}: {source}")]
    Transport {
        method: &'static str,
        url: String,
        source: reqwest::Error,
    },
    #[error("{method} {url} answered {status}: {body}")]
    Status {
        method: &'static str,
        url: String,
        status: u16,
        body: String,
    },
}

/// An answer: status and JSON body (`Value::Null` when not JSON).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub text: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Answer {
    pub fn expect(self, method: &'static str, url: &str) -> Result<Value, ClientError> {
        if self.status.is_success() {
            Ok(self.body)
        } else {
            Err(ClientError::Status {
                method,
                url: url.to_owned(),
                status: self.status.as_u16(),
                body: self.text,
            })
        }
    }
}

#[derive(Clone)]
pub struct HttpClient {
    pub base: String,
    pub token: String,
    http: reqwest::Client,
}

impl HttpClient {
    pub fn new(base: &str, token: &str) -> Self {
        HttpClient {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap_or_default(),
        }
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
        headers: &[(&str, &str)],
    ) -> Result<Answer, ClientError> {
        let url = format!("{}{path}", self.base);
        let name = method_name(&method);
        let mut request = self.http.request(method, &url).bearer_auth(&self.token);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        if let Some((content_type, bytes)) = body {
            request = request.header("content-type", content_type).body(bytes);
        }
        let response = request
            .send()
            .await
            .map_err(|source| ClientError::Transport {
                method: name,
                url: url.clone(),
                source,
            })?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response
            .text()
            .await
            .map_err(|source| ClientError::Transport {
                method: name,
                url,
                source,
            })?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Answer {
            status,
            body,
            text,
            headers,
        })
    }

    pub async fn get(&self, path: &str) -> Result<Answer, ClientError> {
        self.send(reqwest::Method::GET, path, None, &[]).await
    }
}

fn method_name(m: &reqwest::Method) -> &'static str {
    match *m {
        reqwest::Method::GET => "GET",
        reqwest::Method::POST => "POST",
        reqwest::Method::PUT => "PUT",
        reqwest::Method::DELETE => "DELETE",
        _ => "HTTP",
    }
}

/// The publisher REST API.
#[derive(Clone)]
pub struct PublisherClient(pub HttpClient);

impl PublisherClient {
    pub fn new(base: &str, token: &str) -> Self {
        PublisherClient(HttpClient::new(base, token))
    }

    pub async fn create_api(&self, xml: &str) -> Result<Answer, ClientError> {
        self.0
            .send(
                reqwest::Method::POST,
                "/api/v1/apis",
                Some(("application/xml", xml.as_bytes().to_vec())),
                &[],
            )
            .await
    }

    pub async fn update_api(&self, id: &str, xml: &str) -> Result<Answer, ClientError> {
        self.0
            .send(
                reqwest::Method::PUT,
                &format!("/api/v1/apis/{id}"),
                Some(("application/xml", xml.as_bytes().to_vec())),
                &[],
            )
            .await
    }

    pub async fn deploy(
        &self,
        id: &str,
        labels: &[&str],
        revision: Option<u32>,
    ) -> Result<Answer, ClientError> {
        let mut body = json!({ "labels": labels });
        if let Some(r) = revision {
            body["revision"] = json!(r);
        }
        self.0
            .send(
                reqwest::Method::POST,
                &format!("/api/v1/apis/{id}/deployments"),
                Some(("application/json", body.to_string().into_bytes())),
                &[],
            )
            .await
    }

    pub async fn undeploy(&self, id: &str, label: &str) -> Result<Answer, ClientError> {
        let label = url::form_urlencoded::byte_serialize(label.as_bytes())
            .collect::<String>()
            .replace('+', "%20");
        self.0
            .send(
                reqwest::Method::DELETE,
                &format!("/api/v1/apis/{id}/deployments/{label}"),
                None,
                &[],
            )
            .await
    }

    pub async fn delete_api(&self, id: &str) -> Result<Answer, ClientError> {
        self.0
            .send(
                reqwest::Method::DELETE,
                &format!("/api/v1/apis/{id}"),
                None,
                &[],
            )
            .await
    }
}

/// A gateway node's admin API.
#[derive(Clone)]
pub struct GatewayAdminClient(pub HttpClient);

impl GatewayAdminClient {
    pub fn new(base: &str, token: &str) -> Self {
        GatewayAdminClient(HttpClient::new(base, token))
    }

    /// Long-polls until `revision` (or newer) of `api` is applied; 408
    /// after `timeout`.
    pub async fn wait_for_revision(
        &self,
        api: &str,
        revision: u32,
        timeout: Duration,
    ) -> Result<Answer, ClientError> {
        self.0
            .get(&format!(
                "/api/gateway/v1/apis/{api}?waitForRevision={revision}&timeoutMs={}",
                timeout.as_millis()
            ))
            .await
    }
}
