//! Conventions of artisync's HTTP APIs.

use serde::{Deserialize, Serialize};

/// The JSON error body every artisync API answers with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    pub code: u16,
    pub message: String,
}

/// Response headers of `runtime-artifacts`.
pub const REVISION_HEADER: &str = "x-artisync-revision";
pub const API_ID_HEADER: &str = "x-artisync-api-id";
pub const SEQUENCE_HEADER: &str = "x-artisync-sequence";

/// Splits an `Authorization: Bearer <token>` header value.
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Compares two secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(feature = "axum")]
pub use answers::{ApiError, json_errors, presented_token};

#[cfg(feature = "axum")]
mod answers {
    use axum::Json;
    use axum::extract::Request;
    use axum::http::{HeaderValue, StatusCode, header};
    use axum::middleware::Next;
    use axum::response::{IntoResponse, Response};

    use super::ErrorBody;

    /// An error answer of any artisync HTTP API: the status and a message
    /// for the caller, sent as [`ErrorBody`].
    #[derive(Debug)]
    pub struct ApiError {
        pub status: StatusCode,
        pub message: String,
    }

    impl ApiError {
        pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
            ApiError {
                status,
                message: message.into(),
            }
        }

        pub fn bad_request(message: impl Into<String>) -> Self {
            Self::new(StatusCode::BAD_REQUEST, message)
        }
    }

    /// 400 for malformed XML, 422 for XML outside the supported subset.
    impl From<crate::synapse::ArtifactError> for ApiError {
        fn from(e: crate::synapse::ArtifactError) -> Self {
            let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
            ApiError::new(status, e.to_string())
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
            response
        }
    }

    /// The bearer token of a request, or the 401 for a missing one.
    pub fn presented_token(headers: &axum::http::HeaderMap) -> Result<&str, ApiError> {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(super::bearer_token)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "missing bearer token (Authorization: Bearer <token>)",
                )
            })
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_split() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
