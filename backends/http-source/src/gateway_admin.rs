//! A gateway's admin API as the publisher pushes to it: what it runs, and
//! `PUT` / `DELETE /api/gateway/v1/apis/{apiId}`.

use std::time::Duration;

use artisync_domain::runtime::GatewayStatusReport;
use artisync_domain::{ApiId, Revision, Sha256Digest};
use artisync_http::{REVISION_HEADER, SHA256_HEADER};
use artisync_ports::push::{GatewayAdmin, PushError, Pushed, RunningApi};
use async_trait::async_trait;
use bytes::Bytes;
use reqwest::StatusCode;
use serde::Deserialize;

use crate::error_chain;

/// One gateway's admin API over HTTP, with pooled keep-alive connections.
pub struct GatewayAdminClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiList {
    apis: Vec<ListedApi>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListedApi {
    api_id: ApiId,
    revision: Option<Revision>,
    sha256: Option<Sha256Digest>,
}

impl GatewayAdminClient {
    pub fn new(base: &str, token: &str, timeout: Duration) -> Result<Self, PushError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2).min(timeout))
            .timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| PushError::Invalid {
                url: base.to_owned(),
                message: format!("cannot build an HTTP client: {e}"),
            })?;
        Ok(GatewayAdminClient {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http,
        })
    }

    fn api_url(&self, api: ApiId) -> String {
        format!("{}/api/gateway/v1/apis/{api}", self.base)
    }

    async fn send(
        &self,
        url: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, PushError> {
        request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| PushError::Unreachable {
                url: url.to_owned(),
                message: error_chain(&e),
            })
    }

    async fn message(response: reqwest::Response) -> String {
        let body = response.text().await.unwrap_or_default();
        serde_json::from_str::<artisync_http::ErrorBody>(&body)
            .map(|e| e.message)
            .unwrap_or(body)
    }

    async fn status_error(url: &str, response: reqwest::Response) -> PushError {
        let status = response.status().as_u16();
        PushError::Status {
            url: url.to_owned(),
            status,
            message: Self::message(response).await,
        }
    }
}

#[async_trait]
impl GatewayAdmin for GatewayAdminClient {
    fn url(&self) -> &str {
        &self.base
    }

    async fn running(&self) -> Result<Vec<RunningApi>, PushError> {
        let url = format!("{}/api/gateway/v1/apis", self.base);
        let response = self.send(&url, self.http.get(&url)).await?;
        if response.status() != StatusCode::OK {
            return Err(Self::status_error(&url, response).await);
        }
        let list: ApiList = response.json().await.map_err(|e| PushError::Invalid {
            url: url.clone(),
            message: error_chain(&e),
        })?;
        Ok(list
            .apis
            .into_iter()
            .map(|a| RunningApi {
                api_id: a.api_id,
                revision: a.revision,
                sha256: a.sha256,
            })
            .collect())
    }

    async fn deploy(
        &self,
        api: ApiId,
        revision: Revision,
        sha256: Sha256Digest,
        xml: Bytes,
    ) -> Result<Pushed, PushError> {
        let url = self.api_url(api);
        let request = self
            .http
            .put(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/xml")
            .header(REVISION_HEADER, revision.to_string())
            .header(SHA256_HEADER, sha256.to_hex())
            .body(xml);
        let response = self.send(&url, request).await?;
        match response.status() {
            StatusCode::OK => Ok(Pushed::Applied),
            // The node keeps what it runs; the same push would fail again.
            StatusCode::CONFLICT
            | StatusCode::UNPROCESSABLE_ENTITY
            | StatusCode::PAYLOAD_TOO_LARGE => Ok(Pushed::Refused(Self::message(response).await)),
            _ => Err(Self::status_error(&url, response).await),
        }
    }

    async fn status(&self) -> Result<GatewayStatusReport, PushError> {
        let url = format!("{}/api/gateway/v1/status", self.base);
        let response = self.send(&url, self.http.get(&url)).await?;
        if response.status() != StatusCode::OK {
            return Err(Self::status_error(&url, response).await);
        }
        response.json().await.map_err(|e| PushError::Invalid {
            url,
            message: error_chain(&e),
        })
    }

    async fn undeploy(&self, api: ApiId) -> Result<(), PushError> {
        let url = self.api_url(api);
        let response = self.send(&url, self.http.delete(&url)).await?;
        match response.status() {
            StatusCode::OK | StatusCode::NOT_FOUND => Ok(()),
            _ => Err(Self::status_error(&url, response).await),
        }
    }
}
