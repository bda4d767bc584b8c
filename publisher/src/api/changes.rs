//! Receipts (DESIGN.md §13): `GET /api/v1/changes/{sequence}`, which can
//! wait until no node of the change's labels is pending.

use std::sync::Arc;
use std::time::Duration;

use artisync_domain::receipt::Receipt;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::time::Instant;
use utoipa::IntoParams;

use super::handlers::ErrorDoc;
use super::{ApiError, ApiState};

/// The longest a caller may ask to wait for a receipt.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// How often a waiting receipt is read again: the nodes report to the
/// traffic manager, so the publisher learns of them from the store.
const POLL: Duration = Duration::from_millis(25);

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReceiptQuery {
    /// Answer as soon as no node is pending, or after this many
    /// milliseconds (at most 60000); 0 or absent answers at once.
    #[serde(rename = "waitMs")]
    #[param(value_type = Option<u64>, maximum = 60000)]
    wait_ms: Option<u64>,
}

/// The receipt of a change: per node of its labels, `APPLIED` (with when
/// and the milliseconds from the commit), `FAILED` (with the error),
/// `PENDING` or `OFFLINE`; and a summary.
#[utoipa::path(get, path = "/api/v1/changes/{sequence}", tag = "deployments", security(("bearer" = [])),
    params(("sequence" = i64, Path, minimum = 1, description = "The change number a change answered with"), ReceiptQuery),
    responses(
        (status = 200, description = "The receipt", body = Receipt),
        (status = 400, description = "Not a change number", body = ErrorDoc),
        (status = 404, description = "No such change", body = ErrorDoc),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorDoc),
        (status = 503, description = "The database is unavailable", body = ErrorDoc),
    ))]
pub async fn receipt(
    State(state): State<Arc<ApiState>>,
    Path(sequence): Path<String>,
    Query(query): Query<ReceiptQuery>,
) -> Result<Response, ApiError> {
    let sequence: i64 = sequence.parse().ok().filter(|s| *s >= 1).ok_or_else(|| {
        ApiError::bad_request(format!("{sequence:?} is not a change number (1 or more)"))
    })?;
    let wait = Duration::from_millis(query.wait_ms.unwrap_or(0)).min(MAX_WAIT);
    let deadline = Instant::now() + wait;
    loop {
        let receipt = state
            .store
            .receipt(sequence, state.gateway_stale_after)
            .await?
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("change {sequence} not found (changes that touch no gateway label have no receipt)"),
                )
            })?;
        let now = Instant::now();
        if receipt.summary.complete || now >= deadline {
            return Ok(Json(receipt).into_response());
        }
        tokio::time::sleep(POLL.min(deadline - now)).await;
    }
}
