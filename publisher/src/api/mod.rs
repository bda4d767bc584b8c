//! The publisher REST API (DESIGN.md §4).

mod apply;
mod changes;
mod fleet;
mod handlers;

pub use fleet::FleetCache;

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use artisync_domain::GatewayLabel;
use artisync_http::{BearerAuth, BearerTokens, ParsePool, RequestObserver};
use artisync_ports::{ArtifactStore, Health, Outbox};
use axum::Router;
use axum::http::StatusCode;
use axum::middleware;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use artisync_http::ApiError;

use crate::metrics::PublisherMetrics;

/// What the handlers share.
pub struct ApiState {
    pub store: Arc<dyn ArtifactStore>,
    /// For the backlog in `/metrics`.
    pub outbox: Arc<dyn Outbox>,
    /// For `/health/ready`.
    pub health: Arc<dyn Health>,
    pub tokens: Arc<BearerTokens>,
    pub max_body_bytes: usize,
    /// Largest `POST /api/v1/apply` body.
    pub max_apply_bytes: u64,
    pub known_labels: Vec<GatewayLabel>,
    /// A node without a heartbeat for this long is reported stale.
    pub gateway_stale_after: Duration,
    pub metrics: Arc<PublisherMetrics>,
    /// The last read of `/api/v1/fleet`, shared by every viewer.
    pub fleet: FleetCache,
    /// Where artifacts are parsed and validated, off the async threads;
    /// when it is full a change answers 503 with `Retry-After`.
    pub parse_pool: ParsePool,
}

/// Where the OpenAPI document is served (no token needed).
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "artisync publisher API",
        description = "Publish Synapse API artifacts as revisions, deploy them to gateway labels, and watch them reach the gateways (DESIGN.md §4). Every change and its deployment events are committed in one transaction (transactional outbox). Send a W3C `traceparent` header to follow a change through the cluster's logs; without one a trace is started, and the answer's `traceparent` header names it.",
        license(name = "Apache-2.0"),
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "apis", description = "APIs, revisions and artifacts"),
        (name = "deployments", description = "Deploying to gateway labels, and what the gateways run"),
        (name = "health", description = "Probes, metrics and this document"),
        (name = "ui", description = "The fleet view, a web page on the same JSON API (no token needed to load it)"),
    )
)]
struct PublisherDoc;

/// Every route, documented where it is declared: `routes!` takes method
/// and path from each handler's `#[utoipa::path]`, so router and document
/// cannot disagree. (Add routes only through `routes!`; the OpenAPI test
/// checks this file for bypasses.)
fn documented_routes() -> (OpenApiRouter<Arc<ApiState>>, OpenApiRouter<Arc<ApiState>>) {
    let public = OpenApiRouter::with_openapi(PublisherDoc::openapi())
        .routes(routes!(handlers::live))
        .routes(routes!(handlers::ready))
        .routes(routes!(handlers::metrics))
        .routes(routes!(handlers::openapi_json))
        .routes(routes!(crate::ui::page))
        .routes(routes!(crate::ui::script))
        .routes(routes!(crate::ui::style));
    let authenticated = OpenApiRouter::new()
        .routes(routes!(handlers::create_api, handlers::list_apis))
        .routes(routes!(
            handlers::get_api,
            handlers::update_api,
            handlers::delete_api
        ))
        .routes(routes!(handlers::get_artifact))
        .routes(routes!(handlers::deploy))
        .routes(routes!(handlers::undeploy))
        .routes(routes!(handlers::api_status))
        .routes(routes!(handlers::gateways))
        .routes(routes!(apply::apply))
        .routes(routes!(changes::receipt))
        .routes(routes!(fleet::fleet));
    (public, authenticated)
}

/// The REST API's OpenAPI 3 document, generated from the handlers.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (public, authenticated) = documented_routes();
    public.merge(authenticated).into_openapi()
}

pub(crate) static OPENAPI_JSON: LazyLock<String> =
    LazyLock::new(|| openapi().to_json().unwrap_or_else(|_| "{}".to_owned()));

pub fn router(state: Arc<ApiState>) -> Router {
    let (public, authenticated) = documented_routes();
    let authenticated = authenticated.route_layer(middleware::from_fn_with_state(
        state.tokens.clone(),
        artisync_http::require_bearer,
    ));
    let observer = RequestObserver {
        metrics: state.metrics.http.clone(),
        start_traces: true,
    };
    let (router, _) = public.merge(authenticated).split_for_parts();
    router
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .layer(middleware::from_fn(artisync_http::json_errors))
        .layer(middleware::from_fn_with_state(
            observer,
            artisync_http::observe_requests,
        ))
        .with_state(state)
}
