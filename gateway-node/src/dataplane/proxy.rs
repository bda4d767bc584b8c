//! Forwarding a message to an endpoint: URL resolution, header hygiene and
//! the pooled HTTP/1.1 client.

use std::error::Error as StdError;
use std::fmt::Write as _;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use artisync_synapse::{Endpoint, EndpointKind};
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, EXPECT, HOST, HeaderName, HeaderValue};
use http::uri::{Scheme, Uri};
use http::{HeaderMap, Method, Request, Response, Version};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use thiserror::Error;

use super::body::{Body, BodyError};
use super::config::DataPlaneConfig;
use super::context::{MessageContext, Postfix};
use super::headers::strip_framing;
use super::matcher::query_param;

/// The pooled client shared by every request: plain HTTP, or TLS for
/// `https://` endpoints.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Body>;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Synapse's error codes, as fault sequences see them in `ERROR_CODE`.
pub const ERROR_CODE_CONNECT_FAILED: u32 = 101_503;
pub const ERROR_CODE_TIMEOUT: u32 = 101_504;
pub const ERROR_CODE_SEND_FAILED: u32 = 101_500;

/// Why a message could not be forwarded.
#[derive(Debug, Error)]
pub enum ProxyError {
    #[error("the endpoint is unreachable: {0}")]
    Unreachable(String),
    #[error("the endpoint did not answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error("the endpoint URL {url:?} is not usable: {reason}")]
    BadUrl { url: String, reason: &'static str },
    #[error("the request body exceeds the limit of {limit} bytes")]
    RequestTooLarge { limit: usize },
    #[error("the request body could not be read: {0}")]
    ClientBody(String),
    #[error("the request body was not received in time: {0}")]
    ClientBodyTimeout(String),
}

impl ProxyError {
    /// The Synapse error code for `ERROR_CODE`.
    pub fn synapse_code(&self) -> u32 {
        match self {
            ProxyError::Unreachable(_) | ProxyError::BadUrl { .. } => ERROR_CODE_CONNECT_FAILED,
            ProxyError::Timeout(_) => ERROR_CODE_TIMEOUT,
            ProxyError::RequestTooLarge { .. }
            | ProxyError::ClientBody(_)
            | ProxyError::ClientBodyTimeout(_) => ERROR_CODE_SEND_FAILED,
        }
    }
}

/// Builds the pooled HTTP/1.1 keep-alive client, with `tls` for `https://`
/// endpoints.
pub fn build_client(config: &DataPlaneConfig, tls: Arc<rustls::ClientConfig>) -> HttpClient {
    let mut connector = HttpConnector::new();
    // The TLS layer above checks the scheme.
    connector.enforce_http(false);
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(config.connect_timeout()));
    connector.set_keepalive(Some(Duration::from_secs(60)));
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(config.pool_idle_per_host)
        .pool_idle_timeout(Duration::from_secs(90))
        // We set `Host` ourselves, from the endpoint URL.
        .set_host(false)
        .build(
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(Arc::unwrap_or_clone(tls))
                .https_or_http()
                .enable_http1()
                .wrap_connector(connector),
        )
}

/// The URL a message goes to (DESIGN.md §3): `{uri.var.x}` and
/// `{query.param.x}` of an HTTP endpoint's template are filled
/// (percent-encoded); a URL without placeholders gets the REST URL postfix
/// (the path after the context plus the query) appended, as Synapse does.
pub fn endpoint_url(endpoint: &Endpoint, ctx: &MessageContext<'_>) -> String {
    let (postfix_path, postfix_query) = match &ctx.postfix {
        Postfix::Default => (ctx.remainder, ctx.query),
        Postfix::Removed => ("", None),
        Postfix::Set(value) => match value.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (value.as_str(), None),
        },
    };
    match &endpoint.kind {
        EndpointKind::Http { uri_template, .. } => {
            let mut url = String::with_capacity(uri_template.len() + 32);
            let had_placeholders = fill_template(uri_template, ctx, &mut url);
            if had_placeholders {
                // The template placed the variables itself; only carry the
                // query over when it has none of its own.
                if let Some(query) = postfix_query.filter(|q| !q.is_empty())
                    && !url.contains('?')
                {
                    url.push('?');
                    url.push_str(query);
                }
                url
            } else {
                append_postfix(&url, postfix_path, postfix_query)
            }
        }
        EndpointKind::Address { uri } => append_postfix(uri, postfix_path, postfix_query),
    }
}

/// Expands `{uri.var.x}` / `{query.param.x}` into `out`; unknown variables
/// expand to nothing (as in URI templates). Answers whether there was any
/// placeholder.
fn fill_template(template: &str, ctx: &MessageContext<'_>, out: &mut String) -> bool {
    let mut rest = template;
    let mut any = false;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}').map(|c| open + c) else {
            break;
        };
        any = true;
        out.push_str(&rest[..open]);
        let name = &rest[open + 1..close];
        if let Some(var) = name.strip_prefix("uri.var.") {
            if let Some(value) = ctx.uri_var(var) {
                percent_encode_into(out, value);
            }
        } else if let Some(param) = name.strip_prefix("query.param.")
            && let Some(value) = ctx.query.and_then(|q| query_param(q, param))
        {
            percent_encode_into(out, &value);
        }
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    any
}

/// `base` + path postfix + queries, without a doubled `/` and keeping a
/// query that the base URL already has.
pub fn append_postfix(base: &str, path: &str, query: Option<&str>) -> String {
    let (base_path, base_query) = match base.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (base, None),
    };
    let query = query.filter(|q| !q.is_empty());
    let mut url = String::with_capacity(base.len() + path.len() + query.map_or(0, str::len) + 2);
    url.push_str(base_path);
    if !path.is_empty() {
        match (url.ends_with('/'), path.starts_with('/')) {
            (true, true) => url.push_str(&path[1..]),
            (false, false) => {
                url.push('/');
                url.push_str(path);
            }
            _ => url.push_str(path),
        }
    }
    let mut sep = '?';
    for q in [base_query.filter(|q| !q.is_empty()), query]
        .into_iter()
        .flatten()
    {
        url.push(sep);
        url.push_str(q);
        sep = '&';
    }
    url
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so a
/// variable can never inject path segments or a query.
pub fn percent_encode_into(out: &mut String, value: &str) {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// An endpoint URL for logs and error messages: without its query, which
/// may carry the client's credentials (`?access_token=...`).
pub fn url_for_log(url: &str) -> &str {
    url.split_once('?').map_or(url, |(base, _)| base)
}

/// Builds the request for an endpoint from the current message, moving its
/// headers and body out of the context (the message is consumed by the
/// send, as in Synapse).
pub fn build_request(
    ctx: &mut MessageContext<'_>,
    endpoint: &Endpoint,
) -> Result<Request<Body>, ProxyError> {
    // Parsing from the owned string hands its buffer to the URI uncopied.
    let uri = Uri::try_from(endpoint_url(endpoint, ctx)).map_err(|_| ProxyError::BadUrl {
        // Rebuilt only on this error path; the context is still unchanged.
        url: url_for_log(&endpoint_url(endpoint, ctx)).to_owned(),
        reason: "it is not a valid URL",
    })?;
    let bad = |reason| ProxyError::BadUrl {
        url: url_for_log(&uri.to_string()).to_owned(),
        reason,
    };
    if uri.scheme() != Some(&Scheme::HTTP) && uri.scheme() != Some(&Scheme::HTTPS) {
        return Err(bad("only http:// and https:// endpoints are supported"));
    }
    let host = match uri.authority() {
        Some(authority) => HeaderValue::from_str(authority.as_str())
            .map_err(|_| bad("its host is not a valid header"))?,
        None => return Err(bad("it has no host")),
    };
    let method = match &endpoint.kind {
        EndpointKind::Http {
            method: Some(m), ..
        } => Method::from_bytes(m.as_str().as_bytes()).unwrap_or_else(|_| ctx.method.clone()),
        _ => ctx.method.clone(),
    };

    let mut headers = std::mem::take(&mut ctx.headers);
    // The peer's hop-by-hop headers went when its message arrived; what is
    // left was set by mediators or is end-to-end.
    strip_framing(&mut headers);
    // The client does not do `Expect: 100-continue`; the gateway already
    // accepted the body from the client.
    headers.remove(EXPECT);
    headers.insert(HOST, host);
    set_forwarded(&mut headers, ctx.client_ip, ctx.original_host.as_ref());

    let body = std::mem::take(&mut ctx.body);
    if matches!(body, Body::Empty) {
        headers.remove(CONTENT_LENGTH);
    }
    let mut request = Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    Ok(request)
}

/// `X-Forwarded-For` gets the client appended; `-Host` and `-Proto` describe
/// the request as the client sent it.
fn set_forwarded(headers: &mut HeaderMap, client_ip: IpAddr, original_host: Option<&HeaderValue>) {
    let mut forwarded_for = String::new();
    for value in headers.get_all(&X_FORWARDED_FOR) {
        if let Ok(text) = value.to_str() {
            let text = text.trim();
            if !text.is_empty() {
                forwarded_for.push_str(text);
                forwarded_for.push_str(", ");
            }
        }
    }
    let _ = write!(forwarded_for, "{client_ip}");
    if let Ok(value) = HeaderValue::from_maybe_shared(Bytes::from(forwarded_for)) {
        headers.insert(X_FORWARDED_FOR.clone(), value);
    }
    match original_host {
        Some(host) => {
            headers.insert(X_FORWARDED_HOST.clone(), host.clone());
        }
        None => {
            headers.remove(&X_FORWARDED_HOST);
        }
    }
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
}

/// Sends a request with a deadline and classifies failures.
pub async fn send(
    client: &HttpClient,
    request: Request<Body>,
    timeout: Duration,
) -> Result<Response<Incoming>, ProxyError> {
    match tokio::time::timeout(timeout, client.request(request)).await {
        Err(_) => Err(ProxyError::Timeout(timeout)),
        Ok(Ok(response)) => Ok(response),
        Ok(Err(err)) => Err(classify(&err, timeout)),
    }
}

fn classify(err: &hyper_util::client::legacy::Error, timeout: Duration) -> ProxyError {
    let mut source: Option<&(dyn StdError + 'static)> = err.source();
    while let Some(current) = source {
        if let Some(body) = current.downcast_ref::<BodyError>() {
            return match body {
                BodyError::TooLarge { limit } => ProxyError::RequestTooLarge { limit: *limit },
                BodyError::Transport(e) => ProxyError::ClientBody(e.to_string()),
                BodyError::TimedOut { .. } => ProxyError::ClientBodyTimeout(body.to_string()),
            };
        }
        if let Some(io) = current.downcast_ref::<io::Error>()
            && io.kind() == io::ErrorKind::TimedOut
        {
            return ProxyError::Timeout(timeout);
        }
        source = current.source();
    }
    ProxyError::Unreachable(error_chain(err))
}

/// `outer: inner: root`, for logs and `ERROR_MESSAGE`.
fn error_chain(err: &dyn StdError) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(current) = source {
        let _ = write!(text, ": {current}");
        source = current.source();
    }
    text
}
