//! Bearer tokens: parsing the header, comparing in constant time, and a
//! middleware that admits a fixed set of tokens.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::ApiError;

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

/// The bearer token of a request, or the 401 for a missing one.
pub fn presented_token(headers: &axum::http::HeaderMap) -> Result<&str, ApiError> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing bearer token (Authorization: Bearer <token>)",
            )
        })
}

/// The tokens an API accepts (several during a rotation).
#[derive(Debug, Clone)]
pub struct BearerTokens(Vec<String>);

impl BearerTokens {
    pub fn new(tokens: Vec<String>) -> Self {
        BearerTokens(tokens)
    }

    pub fn admits(&self, presented: &str) -> bool {
        self.0
            .iter()
            .any(|t| constant_time_eq(t.as_bytes(), presented.as_bytes()))
    }
}

/// A `route_layer` middleware: 401 unless the request carries one of the
/// tokens.
pub async fn require_bearer(
    State(tokens): State<Arc<BearerTokens>>,
    request: Request,
    next: Next,
) -> Response {
    match presented_token(request.headers()) {
        Ok(t) if tokens.admits(t) => next.run(request).await,
        Ok(_) => ApiError::new(StatusCode::UNAUTHORIZED, "invalid bearer token").into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_split_and_compared() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        let tokens = BearerTokens::new(vec!["new-token".into(), "old-token".into()]);
        assert!(tokens.admits("old-token"));
        assert!(!tokens.admits("other"));
    }
}
