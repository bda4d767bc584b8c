pub use artisync_shared::http::ApiError;
use axum::http::StatusCode;

/// 503 for a database failure; the cause goes to the log, not the caller.
pub fn unavailable(e: sqlx::Error) -> ApiError {
    tracing::error!(error = %e, "database error");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "the artifact database is unavailable; retry later",
    )
}
