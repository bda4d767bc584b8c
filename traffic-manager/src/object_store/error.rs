//! Errors of the persistence store API, answered as artisync's JSON error
//! body `{"code": <status>, "message": "..."}`.

use artisync_http::ErrorBody;
use artisync_ports::StoreError;
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// A request rejected by an axum extractor (body too large, malformed
    /// path...), with the status the extractor chose.
    #[error("{message}")]
    Rejected { status: StatusCode, message: String },
    #[error("rate limit exceeded: retry in {retry_after_seconds} s")]
    RateLimited { retry_after_seconds: u64 },
    #[error("the persistence store is busy: retry in {retry_after_seconds} s")]
    Busy { retry_after_seconds: u64 },
    #[error("storage error: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Rejected { status, .. } => *status,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Store(e) => artisync_http::store_status(e),
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Store(e) = self {
            return artisync_http::ApiError::from(e).into_response();
        }
        let status = self.status();
        let message = match &self {
            ApiError::Internal(m) => {
                tracing::error!(error = %m, "persistence store internal error");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        let retry_after = match &self {
            ApiError::RateLimited {
                retry_after_seconds,
            }
            | ApiError::Busy {
                retry_after_seconds,
            } => Some(*retry_after_seconds),
            _ if status == StatusCode::SERVICE_UNAVAILABLE => Some(1),
            _ => None,
        };
        let mut response = (
            status,
            Json(ErrorBody {
                code: status.as_u16(),
                message,
            }),
        )
            .into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
