//! `GET /api/v1/fleet`: what the fleet view draws. Many open pages poll
//! it, so one read of the store serves every caller for a short while.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use artisync_domain::fleet::Fleet;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::handlers::ErrorDoc;
use super::{ApiError, ApiState};

/// How long one read of the fleet is served to every caller.
const FRESH_FOR: Duration = Duration::from_millis(200);

/// The last fleet read, as JSON.
#[derive(Default)]
pub struct FleetCache {
    last: Mutex<Option<(Instant, Bytes)>>,
}

impl FleetCache {
    fn fresh(&self) -> Option<Bytes> {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.as_ref()
            .filter(|(at, _)| at.elapsed() < FRESH_FOR)
            .map(|(_, body)| body.clone())
    }

    fn store(&self, body: Bytes) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), body));
    }
}

/// Every gateway node (labels, heartbeat, APIs in sync / behind / failed,
/// details such as the queue backlog), and every API with its
/// deployments and how each node runs it (a node missing from an API's
/// `nodes` neither should run it nor does).
#[utoipa::path(get, path = "/api/v1/fleet", tag = "deployments", security(("bearer" = [])),
    responses(
        (status = 200, description = "The fleet (at most 200 ms old)", body = Fleet),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorDoc),
        (status = 503, description = "The database is unavailable", body = ErrorDoc),
    ))]
pub async fn fleet(State(state): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let body = match state.fleet.fresh() {
        Some(body) => body,
        None => {
            let fleet = state.store.fleet(state.gateway_stale_after).await?;
            let body = Bytes::from(serde_json::to_vec(&fleet).unwrap_or_default());
            state.fleet.store(body.clone());
            body
        }
    };
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
