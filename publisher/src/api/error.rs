use axum::http::StatusCode;

use crate::store::StoreError;

pub use artisync_shared::http::ApiError;

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let status = match &e {
            StoreError::NotFound(_) => StatusCode::NOT_FOUND,
            StoreError::Conflict(_) => StatusCode::CONFLICT,
            StoreError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            StoreError::Database(_) => {
                tracing::error!(error = %e, "database error");
                return ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the artifact database is unavailable; nothing was changed, retry later",
                );
            }
        };
        ApiError::new(status, e.to_string())
    }
}
