//! The publisher REST API (DESIGN.md §4).

mod error;
mod handlers;

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use artisync_shared::GatewayLabel;
use artisync_shared::http::constant_time_eq;
use artisync_shared::telemetry::{self, TRACEPARENT, TraceParent};
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use sqlx::PgPool;
use tracing::Instrument;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::ApiError;

use crate::metrics::PublisherMetrics;
use crate::store::ArtifactStore;

/// What the handlers share.
pub struct ApiState {
    pub store: Arc<dyn ArtifactStore>,
    pub pool: PgPool,
    pub tokens: Vec<String>,
    pub max_body_bytes: usize,
    pub known_labels: Vec<GatewayLabel>,
    /// A node without a heartbeat for this long is reported stale.
    pub gateway_stale_after: Duration,
    pub metrics: Arc<PublisherMetrics>,
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
    )
)]
struct PublisherDoc;

/// The `bearer` security scheme the authenticated routes name.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every route, documented where it is declared: `routes!` takes method
/// and path from each handler's `#[utoipa::path]`, so router and document
/// cannot disagree. (Add routes only through `routes!`; the OpenAPI test
/// checks this file for bypasses.)
fn documented_routes() -> (OpenApiRouter<Arc<ApiState>>, OpenApiRouter<Arc<ApiState>>) {
    let public = OpenApiRouter::with_openapi(PublisherDoc::openapi())
        .routes(routes!(handlers::live))
        .routes(routes!(handlers::ready))
        .routes(routes!(handlers::metrics))
        .routes(routes!(handlers::openapi_json));
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
        .routes(routes!(handlers::gateways));
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
    let authenticated =
        authenticated.route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    let (router, _) = public.merge(authenticated).split_for_parts();
    router
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .layer(middleware::from_fn(artisync_shared::http::json_errors))
        .layer(middleware::from_fn_with_state(state.clone(), trace_request))
        .with_state(state)
}

async fn authenticate(
    State(state): State<Arc<ApiState>>,
    request: Request,
    next: Next,
) -> Response {
    let presented = match artisync_shared::http::presented_token(request.headers()) {
        Ok(token) => token,
        Err(e) => return e.into_response(),
    };
    if !state
        .tokens
        .iter()
        .any(|t| constant_time_eq(t.as_bytes(), presented.as_bytes()))
    {
        return ApiError::new(StatusCode::UNAUTHORIZED, "invalid bearer token").into_response();
    }
    next.run(request).await
}

/// One span per request in the caller's trace (W3C `traceparent`), or in
/// a new trace when the caller sent none (or an invalid one). The request
/// continues with a `traceparent` naming this request's span, which the
/// handlers store with the outbox events of a change; the answer carries it
/// back. Also records the request metrics by route template.
async fn trace_request(
    State(state): State<Arc<ApiState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let incoming = request
        .headers()
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceParent::parse);
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method = request.method().clone();
    let span = tracing::info_span!(
        "request",
        method = %method,
        path = %request.uri().path(),
        trace_id = tracing::field::Empty,
    );
    let ours = telemetry::continue_trace(&span, incoming.as_ref());
    span.record("trace_id", tracing::field::display(&ours.trace_id));
    let header = HeaderValue::from_str(&ours.to_string()).ok();
    if let Some(value) = &header {
        request.headers_mut().insert(TRACEPARENT, value.clone());
    }
    let mut response = next.run(request).instrument(span.clone()).await;
    if let Some(value) = header {
        response.headers_mut().insert(TRACEPARENT, value);
    }
    let status = response.status();
    span.in_scope(|| tracing::debug!(status = status.as_u16(), "answered"));
    let metrics = &state.metrics;
    metrics
        .http_requests
        .with(&[method.as_str(), &route, status.as_str()])
        .inc();
    metrics
        .http_latency
        .with(&[method.as_str(), &route])
        .observe(started.elapsed().as_secs_f64());
    response
}
