//! The JSON error answer of every artisync API, and the one mapping from
//! the errors of the core to an HTTP status.

use artisync_ports::StoreError;
use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// The JSON error body every artisync API answers with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    pub code: u16,
    pub message: String,
}

/// An error answer: the status and a message for the caller.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Seconds a client should wait before retrying (503, 429).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

/// 400 for malformed XML, 422 for XML outside the supported subset.
impl From<artisync_synapse::ArtifactError> for ApiError {
    fn from(e: artisync_synapse::ArtifactError) -> Self {
        let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
        ApiError::new(status, e.to_string())
    }
}

/// The one mapping from a storage failure to a status.
pub fn store_status(e: &StoreError) -> StatusCode {
    match e {
        StoreError::NotFound(_) => StatusCode::NOT_FOUND,
        StoreError::Conflict(_) => StatusCode::CONFLICT,
        StoreError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
        StoreError::Unavailable {
            retryable: true, ..
        } => StatusCode::SERVICE_UNAVAILABLE,
        StoreError::Unavailable { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A storage failure as an answer. What the backend said stays in the
/// log: callers learn whether to retry, not the SQL.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let status = store_status(&e);
        match e {
            StoreError::NotFound(m) | StoreError::Conflict(m) | StoreError::Unprocessable(m) => {
                ApiError::new(status, m)
            }
            StoreError::Unavailable {
                backend,
                message,
                retryable: true,
            } => {
                tracing::error!(backend, error = %message, "storage unavailable");
                ApiError::new(
                    status,
                    "the database is unavailable; nothing was changed, retry later",
                )
                .with_retry_after(1)
            }
            StoreError::Unavailable {
                backend, message, ..
            } => {
                tracing::error!(backend, error = %message, "storage failed");
                ApiError::new(status, "internal storage error")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.status.as_u16(),
            message: self.message,
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Turns error answers that are not JSON (the framework's own: 405 for
/// a wrong method, 413 from a body limit, 400 from an extractor) into
/// the JSON body every artisync error has.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_owned()
    } else {
        text
    };
    let mut rewritten = ApiError::new(status, message).into_response();
    for name in [header::ALLOW, header::RETRY_AFTER, header::WWW_AUTHENTICATE] {
        if let Some(value) = parts.headers.get(&name) {
            rewritten.headers_mut().insert(name, value.clone());
        }
    }
    rewritten
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_map_to_one_status_each() {
        let status = |e: StoreError| ApiError::from(e).status;
        assert_eq!(
            status(StoreError::NotFound("x".into())),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status(StoreError::Conflict("x".into())),
            StatusCode::CONFLICT
        );
        assert_eq!(
            status(StoreError::Unprocessable("x".into())),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        let unavailable = ApiError::from(StoreError::unavailable("pg", "connection refused"));
        assert_eq!(unavailable.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(unavailable.retry_after, Some(1));
        assert!(
            !unavailable.message.contains("refused"),
            "no backend detail"
        );
        assert_eq!(
            status(StoreError::broken("pg", "bad row")),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
