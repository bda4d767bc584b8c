//! The node's local admin API (DESIGN.md §7): what is deployed and what
//! failed, long-polls for a revision, redeploy and local undeploy.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use artisync_domain::Sha256Digest;
use artisync_domain::runtime::ApiDeploymentStatus;
use artisync_domain::{ApiId, Revision};
use artisync_http::constant_time_eq;
use artisync_synapse::{EndpointKind, Handler};
use artisync_telemetry::metrics::{CONTENT_TYPE, Exposition};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::HeaderMap;
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::DeploySource;
use crate::node::Node;
use crate::state::ApiRecord;
use crate::sync::{Outcome, PushError};

use artisync_http::ApiError as AdminError;

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    AdminError::new(status, message).into_response()
}

/// Where the admin API's OpenAPI document is served (no token needed).
pub const OPENAPI_PATH: &str = "/api/gateway/v1/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "artisync gateway admin API",
        description = "A gateway node's local admin API: what is deployed and what failed, long-polls for a revision, redeploy and local undeploy (DESIGN.md §7).",
        license(name = "Apache-2.0"),
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "apis", description = "APIs on this node"),
        (name = "operations", description = "Node-local operations"),
        (name = "health", description = "Probes, metrics and this document"),
    )
)]
struct AdminDoc;

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

/// Every route, documented where it is declared: `routes!` takes the
/// method and path from each handler's `#[utoipa::path]`, so the router and
/// the document cannot disagree. (Add routes only through `routes!`; the
/// OpenAPI test checks this file for bypasses.)
fn documented_routes() -> (OpenApiRouter<Arc<Node>>, OpenApiRouter<Arc<Node>>) {
    let public = OpenApiRouter::with_openapi(AdminDoc::openapi())
        .routes(routes!(live))
        .routes(routes!(ready))
        .routes(routes!(metrics))
        .routes(routes!(openapi_json));
    let authenticated = OpenApiRouter::new()
        .routes(routes!(list_apis))
        .routes(routes!(status_report))
        .routes(routes!(get_api, put_api, delete_api))
        .routes(routes!(get_artifact))
        .routes(routes!(redeploy))
        .routes(routes!(undeploy));
    (public, authenticated)
}

/// The admin API's OpenAPI 3 document, generated from the handlers.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (public, authenticated) = documented_routes();
    public.merge(authenticated).into_openapi()
}

static OPENAPI_JSON: LazyLock<String> =
    LazyLock::new(|| openapi().to_json().unwrap_or_else(|_| "{}".to_owned()));

pub fn router(node: Arc<Node>) -> Router {
    let (public, authenticated) = documented_routes();
    let authenticated =
        authenticated.route_layer(middleware::from_fn_with_state(node.clone(), authenticate));
    let (router, _) = public.merge(authenticated).split_for_parts();
    let max_pushed = match node.deploy_source {
        DeploySource::Publisher { max_artifact_bytes } => max_artifact_bytes,
        DeploySource::TrafficManager => 0,
    };
    router
        .layer(DefaultBodyLimit::max(max_pushed.max(64 * 1024)))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such route") })
        .layer(middleware::from_fn(artisync_http::json_errors))
        .with_state(node)
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health/live", tag = "health",
    responses((status = 200, description = "Alive", body = String, content_type = "text/plain")))]
async fn live() -> &'static str {
    "ok"
}

/// This document.
#[utoipa::path(get, path = "/api/gateway/v1/openapi.json", tag = "health",
    responses((status = 200, description = "The OpenAPI 3 document of this API", body = Object)))]
async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        OPENAPI_JSON.as_str(),
    )
        .into_response()
}

async fn authenticate(State(node): State<Arc<Node>>, request: Request, next: Next) -> Response {
    match artisync_http::presented_token(request.headers()) {
        Ok(t) if constant_time_eq(t.as_bytes(), node.admin_token.as_bytes()) => {
            next.run(request).await
        }
        Ok(_) => error(StatusCode::UNAUTHORIZED, "invalid bearer token"),
        Err(e) => e.into_response(),
    }
}

/// The JSON error body: `{"code", "message"}`.
#[derive(ToSchema)]
#[schema(as = Error)]
#[allow(dead_code)]
struct ErrorDoc {
    /// The HTTP status.
    code: u16,
    message: String,
}

/// How an API stands on this node.
#[derive(ToSchema)]
#[schema(as = ApiDeploymentStatus)]
#[allow(dead_code, clippy::upper_case_acronyms)]
enum StatusDoc {
    DEPLOYED,
    RETRYING,
    FAILED,
    UNDEPLOYED,
}

/// One API on this node.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ApiView {
    #[schema(value_type = String, format = Uuid)]
    api_id: ApiId,
    name: Option<String>,
    version: Option<String>,
    context: Option<String>,
    #[schema(value_type = Option<u32>, minimum = 1)]
    revision: Option<Revision>,
    /// SHA-256 of the artifact, 64 hex digits.
    sha256: Option<String>,
    #[schema(value_type = StatusDoc)]
    status: ApiDeploymentStatus,
    deployed_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<u32>)]
    failed_revision: Option<Revision>,
    error: Option<String>,
    attempts: u32,
    next_retry_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Undeployed locally: revisions up to this one are not applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<u32>)]
    held_through_revision: Option<Revision>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

/// `GET /api/gateway/v1/apis`.
#[derive(ToSchema)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
struct ApiListDoc {
    node_id: String,
    labels: Vec<String>,
    count: usize,
    apis: Vec<ApiView>,
}

/// One API with what its artifact holds that the gateway shows but does
/// not execute.
#[derive(ToSchema)]
#[allow(dead_code)]
struct ApiDetailDoc {
    #[serde(flatten)]
    api: ApiView,
    /// `<handlers>` class names and properties (not executed).
    handlers: Vec<Object>,
    /// Endpoints: name, URI and attributes.
    endpoints: Vec<Object>,
    /// How many resources the API has.
    resources: usize,
}

/// The answer of `redeploy-api`.
#[derive(ToSchema)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
struct RedeployDoc {
    #[schema(format = Uuid)]
    api_id: String,
    /// What the redeploy did (`Applied`, `AlreadyApplied`, ...).
    outcome: String,
    api: ApiView,
}

/// The answer of `undeploy-api`.
#[derive(ToSchema)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
struct UndeployDoc {
    #[schema(format = Uuid)]
    api_id: String,
    undeployed_revision: u32,
    message: String,
}

/// Readiness: whether the node serves and how its start-up went.
#[derive(ToSchema)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
struct ReadinessDoc {
    ready: bool,
    node_id: String,
    /// `sync` or `async` (data_retrieval_mode).
    mode: String,
    /// `{"phase": "loading" | "done" | "gaveUp", "message"?}`.
    startup: Object,
    amqp_connected: bool,
    deployed: usize,
    failed: usize,
    retrying: bool,
}

/// A free-form JSON object.
type Object = serde_json::Value;

fn view(api_id: ApiId, record: &ApiRecord) -> ApiView {
    let applied = record.applied.as_ref();
    let api = applied.map(|a| &a.api.artifact.api);
    let failure = record.failure.as_ref();
    ApiView {
        api_id,
        name: api.map(|a| a.name.clone()),
        version: api.and_then(|a| a.version.clone()),
        context: api.map(|a| a.context.clone()),
        revision: applied.map(|a| a.revision),
        sha256: applied.map(|a| a.sha256.to_hex()),
        status: record.status(),
        deployed_at: applied.map(|a| a.deployed_at),
        failed_revision: failure.and_then(|f| f.revision),
        error: failure.map(|f| f.error.clone()),
        attempts: failure.map_or(0, |f| f.attempts),
        next_retry_at: failure.and_then(|f| f.next_retry_at),
        held_through_revision: record.held_through,
        warnings: applied
            .map(|a| a.api.artifact.warnings.clone())
            .unwrap_or_default(),
    }
}

/// What is deployed and what failed on this node.
#[utoipa::path(get, path = "/api/gateway/v1/apis", tag = "apis", security(("bearer" = [])),
    responses(
        (status = 200, description = "Every API the node knows", body = ApiListDoc),
        (status = 401, description = "Missing or wrong token", body = ErrorDoc),
    ))]
async fn list_apis(State(node): State<Arc<Node>>) -> Response {
    let apis: Vec<ApiView> = node
        .state
        .records_snapshot()
        .iter()
        .map(|(id, r)| view(*id, r))
        .collect();
    Json(json!({
        "nodeId": node.node_id,
        "labels": node.labels,
        "count": apis.len(),
        "apis": apis,
    }))
    .into_response()
}

/// The node's whole status report, as it sends it to the traffic manager;
/// the publisher records it for pushed nodes (`artifact_source =
/// "publisher"`), which have no traffic manager to report to.
#[utoipa::path(get, path = "/api/gateway/v1/status", tag = "apis", security(("bearer" = [])),
    responses(
        (status = 200, description = "The node's status report: node id, labels, readiness and every API's applied state", body = Object),
        (status = 401, description = "Missing or wrong token", body = ErrorDoc),
    ))]
async fn status_report(State(node): State<Arc<Node>>) -> Response {
    Json(node.status_report(true, None)).into_response()
}

fn parse_api_id(raw: &str) -> Result<ApiId, AdminError> {
    raw.parse().map_err(|e: artisync_domain::IdError| {
        AdminError::new(StatusCode::BAD_REQUEST, e.to_string())
    })
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
struct WaitQuery {
    /// Answer once this revision (or a newer one) is applied.
    #[param(value_type = Option<u32>)]
    wait_for_revision: Option<String>,
    /// How long to wait for `waitForRevision` (ms; default 30000, at most 300000).
    #[param(value_type = Option<u64>)]
    timeout_ms: Option<String>,
}

/// Longest a long-poll may wait.
const MAX_WAIT: Duration = Duration::from_secs(300);

/// One API; with `waitForRevision`, a long-poll until that revision is applied.
#[utoipa::path(get, path = "/api/gateway/v1/apis/{apiId}", tag = "apis", security(("bearer" = [])),
    params(("apiId" = String, Path, format = Uuid, description = "The API id"), WaitQuery),
    responses(
        (status = 200, description = "The API", body = ApiDetailDoc),
        (status = 400, description = "Bad id or query", body = ErrorDoc),
        (status = 401, description = "Missing or wrong token", body = ErrorDoc),
        (status = 404, description = "Not known on this node", body = ErrorDoc),
        (status = 408, description = "The revision was not applied in time", body = ErrorDoc),
    ))]
async fn get_api(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> Response {
    let id = match parse_api_id(&id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let wanted = match q.wait_for_revision.as_deref().map(str::parse::<Revision>) {
        None => None,
        Some(Ok(r)) => Some(r),
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let timeout = match q.timeout_ms.as_deref().map(str::parse::<u64>) {
        None => Duration::from_secs(30),
        Some(Ok(ms)) => Duration::from_millis(ms).min(MAX_WAIT),
        Some(Err(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "timeoutMs must be a whole number of milliseconds",
            );
        }
    };
    let Some(wanted) = wanted else {
        return match node.state.record(&id) {
            Some(record) => Json(detail(id, &record)).into_response(),
            None => error(
                StatusCode::NOT_FOUND,
                format!("API {id} is not known on this node"),
            ),
        };
    };
    // Subscribe before checking, so a change between the check and the
    // wait cannot be missed.
    let mut changes = node.state.subscribe();
    let wait = async {
        loop {
            if let Some(record) = node.state.record(&id)
                && record.applied_revision().is_some_and(|r| r >= wanted)
            {
                return record;
            }
            if changes.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    match tokio::time::timeout(timeout, wait).await {
        Ok(record) => Json(detail(id, &record)).into_response(),
        Err(_) => {
            let current = node.state.record(&id).and_then(|r| r.applied_revision());
            error(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "API {id} did not reach revision {wanted} within {} ms (applied: {})",
                    timeout.as_millis(),
                    current.map_or("none".to_owned(), |r| r.to_string())
                ),
            )
        }
    }
}

/// Whether this node takes deploys pushed by the publisher.
fn accepts_pushes(node: &Node) -> Result<(), AdminError> {
    match node.deploy_source {
        DeploySource::Publisher { .. } => Ok(()),
        DeploySource::TrafficManager => Err(AdminError::new(
            StatusCode::CONFLICT,
            "this node syncs from the traffic manager (gateway.artifact_source = \"traffic_manager\"); pushed deploys are refused",
        )),
    }
}

fn required_header<T, E: std::fmt::Display>(
    headers: &HeaderMap,
    name: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, AdminError> {
    let raw = headers
        .get(name)
        .ok_or_else(|| {
            AdminError::new(
                StatusCode::BAD_REQUEST,
                format!("the {name} header is required"),
            )
        })?
        .to_str()
        .map_err(|_| {
            AdminError::new(
                StatusCode::BAD_REQUEST,
                format!("the {name} header is not text"),
            )
        })?;
    parse(raw.trim()).map_err(|e| AdminError::new(StatusCode::BAD_REQUEST, format!("{name}: {e}")))
}

/// The one mapping from a refused push to its answer.
fn push_refused(e: &PushError) -> AdminError {
    let status = match e {
        PushError::Refused { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        PushError::Older { .. } | PushError::RevisionReused { .. } => StatusCode::CONFLICT,
    };
    AdminError::new(status, e.to_string())
}

/// Deploys a pushed artifact (`publish_directly_to_gateway`): the digest
/// check, validation and atomic swap of a pulled one. A node never goes
/// back to an older revision.
#[utoipa::path(put, path = "/api/gateway/v1/apis/{apiId}", tag = "apis", security(("bearer" = [])),
    params(
        ("apiId" = String, Path, format = Uuid, description = "The API id"),
        ("x-artisync-revision" = u32, Header, description = "The revision the artifact is"),
        ("x-artisync-sha256" = String, Header, description = "SHA-256 of the body, 64 hex digits"),
    ),
    request_body(content = String, content_type = "application/xml", description = "The Synapse XML of the revision"),
    responses(
        (status = 200, description = "Deployed, or already running this revision", body = ApiDetailDoc),
        (status = 400, description = "Bad id or headers", body = ErrorDoc),
        (status = 401, description = "Missing or wrong token", body = ErrorDoc),
        (status = 409, description = "Older than the running revision, or this node pulls from the traffic manager", body = ErrorDoc),
        (status = 413, description = "Larger than gateway.max_pushed_artifact_bytes", body = ErrorDoc),
        (status = 422, description = "Digest mismatch or invalid artifact; the running revision keeps serving", body = ErrorDoc),
    ))]
async fn put_api(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed = accepts_pushes(&node).and_then(|()| {
        Ok((
            parse_api_id(&id)?,
            required_header(&headers, "x-artisync-revision", str::parse::<Revision>)?,
            required_header(&headers, "x-artisync-sha256", Sha256Digest::parse)?,
        ))
    });
    let (id, revision, sha256) = match parsed {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    match node.sync.deploy_pushed(id, revision, sha256, body).await {
        Ok(outcome) => {
            let record = node.state.record(&id).unwrap_or_default();
            let mut answer = detail(id, &record);
            answer["outcome"] = json!(match outcome {
                Outcome::Deployed(_) => "deployed",
                Outcome::Held => "held",
                _ => "upToDate",
            });
            Json(answer).into_response()
        }
        Err(e) => push_refused(&e).into_response(),
    }
}

/// Removes an API the publisher undeployed (`publish_directly_to_gateway`).
#[utoipa::path(delete, path = "/api/gateway/v1/apis/{apiId}", tag = "apis", security(("bearer" = [])),
    params(("apiId" = String, Path, format = Uuid, description = "The API id")),
    responses(
        (status = 200, description = "Removed (or not deployed here)", body = Object),
        (status = 400, description = "Bad id", body = ErrorDoc),
        (status = 401, description = "Missing or wrong token", body = ErrorDoc),
        (status = 409, description = "This node pulls from the traffic manager", body = ErrorDoc),
    ))]
async fn delete_api(State(node): State<Arc<Node>>, Path(id): Path<String>) -> Response {
    let id = match accepts_pushes(&node).and_then(|()| parse_api_id(&id)) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let removed = node.sync.undeploy_pushed(id).await;
    Json(json!({ "apiId": id, "removedRevision": removed })).into_response()
}

/// The single-API view: the summary plus what the artifact holds that the
/// gateway shows but does not execute.
fn detail(id: ApiId, record: &ApiRecord) -> serde_json::Value {
    let mut value = serde_json::to_value(view(id, record)).unwrap_or_default();
    if let Some(applied) = &record.applied {
        let artifact = &applied.api.artifact;
        let handlers: Vec<&Handler> = artifact.api.handlers.iter().collect();
        let endpoints: Vec<serde_json::Value> = artifact
            .endpoints
            .values()
            .map(|e| {
                json!({
                    "name": e.name,
                    "uri": match &e.kind {
                        EndpointKind::Http { uri_template, .. } => uri_template,
                        EndpointKind::Address { uri } => uri,
                    },
                    "attributes": e.attributes,
                })
            })
            .collect();
        value["handlers"] = json!(handlers);
        value["endpoints"] = json!(endpoints);
        value["resources"] = json!(artifact.api.resources.len());
    }
    value
}

/// The deployed XML.
#[utoipa::path(get, path = "/api/gateway/v1/apis/{apiId}/artifact", tag = "apis", security(("bearer" = [])),
    params(("apiId" = String, Path, format = Uuid, description = "The API id")),
    responses(
        (status = 200, description = "The Synapse XML of the applied revision (`ETag` = sha256)", body = String, content_type = "application/xml"),
        (status = 400, description = "Bad id", body = ErrorDoc),
        (status = 401, description = "Missing or wrong token", body = ErrorDoc),
        (status = 404, description = "Not deployed on this node", body = ErrorDoc),
    ))]
async fn get_artifact(State(node): State<Arc<Node>>, Path(id): Path<String>) -> Response {
    let id = match parse_api_id(&id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    match node.state.record(&id).and_then(|r| r.applied) {
        Some(applied) => (
            [
                (header::CONTENT_TYPE, "application/xml".to_owned()),
                (header::ETAG, format!("\"{}\"", applied.sha256)),
            ],
            applied.xml,
        )
            .into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("API {id} is not deployed on this node"),
        ),
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
struct ApiIdQuery {
    /// The API id (required).
    #[param(value_type = String, format = Uuid, required = true)]
    api_id: Option<String>,
}

fn required_api_id(q: &ApiIdQuery) -> Result<ApiId, AdminError> {
    match &q.api_id {
        Some(raw) => parse_api_id(raw),
        None => Err(AdminError::new(
            StatusCode::BAD_REQUEST,
            "the apiId query parameter is required",
        )),
    }
}

/// Fetches the API again from the traffic manager and redeploys it.
#[utoipa::path(post, path = "/api/gateway/v1/redeploy-api", tag = "operations", security(("bearer" = [])),
    params(ApiIdQuery),
    responses(
        (status = 200, description = "Redeployed", body = RedeployDoc),
        (status = 400, description = "Missing or bad apiId", body = ErrorDoc),
        (status = 401, description = "Missing or wrong token", body = ErrorDoc),
        (status = 422, description = "The artifact cannot be deployed", body = ErrorDoc),
        (status = 502, description = "The traffic manager is unreachable", body = ErrorDoc),
    ))]
async fn redeploy(State(node): State<Arc<Node>>, Query(q): Query<ApiIdQuery>) -> Response {
    let id = match required_api_id(&q) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    match node.sync.redeploy(id).await {
        Ok(outcome) => {
            let record = node.state.record(&id).unwrap_or_default();
            Json(json!({
                "apiId": id,
                "outcome": format!("{outcome:?}"),
                "api": view(id, &record),
            }))
            .into_response()
        }
        Err(e) => error(
            if e.is_retryable() {
                StatusCode::BAD_GATEWAY
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            },
            format!("redeploy of API {id} failed: {e}"),
        ),
    }
}

/// Undeploys the API on this node only, until a newer revision arrives or
/// `redeploy-api` is called.
#[utoipa::path(post, path = "/api/gateway/v1/undeploy-api", tag = "operations", security(("bearer" = [])),
    params(ApiIdQuery),
    responses(
        (status = 200, description = "Undeployed here", body = UndeployDoc),
        (status = 400, description = "Missing or bad apiId", body = ErrorDoc),
        (status = 401, description = "Missing or wrong token", body = ErrorDoc),
        (status = 404, description = "Not deployed on this node", body = ErrorDoc),
    ))]
async fn undeploy(State(node): State<Arc<Node>>, Query(q): Query<ApiIdQuery>) -> Response {
    let id = match required_api_id(&q) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    match node.sync.undeploy_locally(id).await {
        Some(revision) => Json(json!({
            "apiId": id,
            "undeployedRevision": revision,
            "message": "undeployed on this node until a newer revision arrives or redeploy-api is called",
        }))
        .into_response(),
        None => error(StatusCode::NOT_FOUND, format!("API {id} is not deployed on this node")),
    }
}

/// Readiness: 503 while a `sync` node is still loading its desired state.
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses(
        (status = 200, description = "Ready", body = ReadinessDoc),
        (status = 503, description = "Not ready yet", body = ReadinessDoc),
    ))]
async fn ready(State(node): State<Arc<Node>>) -> Response {
    let readiness = node.readiness();
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness)).into_response()
}

/// Prometheus metrics: sync (deploys, propagation, retries, reconcile,
/// cache) and data-plane traffic by API.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4", body = String, content_type = "text/plain")))]
async fn metrics(State(node): State<Arc<Node>>) -> Response {
    let mut e = Exposition::new();
    let (deployed, failed) = node.state.count_by_status();
    node.metrics.render(&mut e, deployed, failed);
    crate::dataplane::render_traffic(&mut e, &node.state.table().load(), &node.metrics.unrouted);
    e.gauge(
        "artisync_gateway_amqp_connected",
        "Whether the event subscription is up.",
        if node.subscription.is_connected() {
            1.0
        } else {
            0.0
        },
    );
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], e.finish()).into_response()
}
