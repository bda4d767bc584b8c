use std::sync::Arc;

use artisync_domain::{ApiId, GatewayLabel, Revision, Sha256Digest};
use artisync_synapse::parse_artifact;
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, ApiState};
use crate::metrics::Change;
use artisync_domain::api::{ApiDetail, ApiSummary, DeployOutcome, GatewaySummary, NodeApiStatus};
use artisync_ports::artifacts::{ChangeContext, NewArtifact, UpdateOutcome};

/// The JSON error body: `{"code", "message"}`.
#[derive(ToSchema)]
#[schema(as = Error)]
#[allow(dead_code)]
pub struct ErrorDoc {
    /// The HTTP status.
    code: u16,
    message: String,
}

/// `GET /api/v1/apis`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ApiListDoc {
    count: usize,
    apis: Vec<ApiSummary>,
}

/// Per gateway node: what it runs of one API.
#[derive(ToSchema)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
pub struct ApiStatusDoc {
    #[schema(format = Uuid)]
    api_id: String,
    nodes: Vec<NodeApiStatus>,
}

/// `GET /api/v1/gateways`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct GatewaysDoc {
    gateways: Vec<GatewaySummary>,
}

/// The answer of an undeploy.
#[derive(ToSchema)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
pub struct UndeployDoc {
    #[schema(format = Uuid)]
    api_id: String,
    label: String,
    /// The change number of the removal.
    sequence: i64,
}

/// Readiness of the publisher (its database).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ReadyDoc {
    /// `ready`.
    status: String,
}

fn api_id(raw: &str) -> Result<ApiId, ApiError> {
    raw.parse::<ApiId>()
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

/// The trace of the request: `trace_request` has replaced the caller's
/// `traceparent` by one naming this request's span (or a new trace).
pub(super) fn change_context(headers: &HeaderMap) -> ChangeContext {
    ChangeContext {
        traceparent: headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .filter(|tp| is_valid_traceparent(tp))
            .map(str::to_owned),
    }
}

/// `00-<32 hex>-<16 hex>-<2 hex>` (W3C Trace Context).
fn is_valid_traceparent(tp: &str) -> bool {
    let parts: Vec<&str> = tp.split('-').collect();
    parts.len() == 4
        && [2, 32, 16, 2]
            .iter()
            .zip(&parts)
            .all(|(len, p)| p.len() == *len && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Reads an XML body within the size limit: 413 beyond it, 415 for a
/// content type that is not XML.
async fn xml_body(state: &ApiState, headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
        let mime = ct.split(';').next().unwrap_or("").trim();
        if !(mime == "application/xml" || mime == "text/xml" || mime.ends_with("+xml")) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Type {mime:?} is not supported; send application/xml"),
            ));
        }
    }
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the artifact is larger than the limit of {} bytes",
                state.max_body_bytes
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > state.max_body_bytes) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, state.max_body_bytes)
        .await
        .map_err(|_| too_large())?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "the request body is empty; send the artifact XML",
        ));
    }
    Ok(bytes)
}

/// Gateway labels as a caller names them: valid, known when the
/// publisher has a list of known labels (422 otherwise), without repeats.
pub(super) fn gateway_labels(
    state: &ApiState,
    raw_labels: &[String],
) -> Result<Vec<GatewayLabel>, ApiError> {
    let mut labels = Vec::with_capacity(raw_labels.len());
    for raw in raw_labels {
        let label = GatewayLabel::parse(raw).map_err(|e| ApiError::bad_request(e.to_string()))?;
        if !state.known_labels.is_empty() && !state.known_labels.contains(&label) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "unknown gateway label {raw:?}; known labels: {}",
                    state
                        .known_labels
                        .iter()
                        .map(|l| format!("{:?}", l.as_str()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        if !labels.contains(&label) {
            labels.push(label);
        }
    }
    Ok(labels)
}

/// Validates an artifact (on the parse pool: a large one takes a while, and
/// the async threads keep answering meanwhile) and turns it into a
/// revision to store.
pub(super) async fn new_artifact(
    state: &ApiState,
    xml: Bytes,
) -> Result<(NewArtifact, Vec<String>), ApiError> {
    let parsed = xml.clone();
    let artifact = state
        .parse_pool
        .run(move || parse_artifact(&parsed))
        .await??;
    let new = NewArtifact {
        name: artifact.api.name.clone(),
        version: artifact.api.version.clone().unwrap_or_default(),
        context: artifact.api.context.clone(),
        sha256: Sha256Digest::of(&xml),
        xml: xml.to_vec(),
    };
    Ok((new, artifact.warnings))
}

/// A stored revision of an API.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiCreated {
    #[schema(value_type = String, format = Uuid)]
    id: ApiId,
    name: String,
    version: String,
    context: String,
    #[schema(value_type = u32, minimum = 1)]
    revision: Revision,
    #[schema(value_type = String, pattern = "^[0-9a-f]{64}$")]
    sha256: Sha256Digest,
    /// Parts of the artifact that are accepted but not executed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

impl ApiCreated {
    fn new(s: ApiSummary, warnings: Vec<String>) -> Self {
        ApiCreated {
            id: s.id,
            name: s.name,
            version: s.version,
            context: s.context,
            revision: s.revision,
            sha256: s.sha256,
            warnings,
        }
    }
}

/// Creates an API from a Synapse artifact: revision 1.
#[utoipa::path(post, path = "/api/v1/apis", tag = "apis", security(("bearer" = [])),
    request_body(content = String, content_type = "application/xml", description = "A Synapse `<api>` or a `<definitions>` bundle"),
    responses(
        (status = 201, description = "Created (`Location` names the API)", body = ApiCreated),
        (status = 400, description = "Malformed XML (with the parser's position) or empty body", body = ErrorDoc),
        (status = 413, description = "Larger than max_body_bytes", body = ErrorDoc),
        (status = 415, description = "Not application/xml", body = ErrorDoc),
        (status = 422, description = "Outside the supported Synapse subset (element, line, column), or over one of the artifact caps (named in the message)", body = ErrorDoc),
        (status = 409, description = "(name, version) exists", body = ErrorDoc),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorDoc),
        (status = 503, description = "The database is unavailable, or the server is busy validating other artifacts (see `Retry-After`); nothing was changed", body = ErrorDoc),
    ))]
pub async fn create_api(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let xml = xml_body(&state, &headers, body).await?;
    let (new, warnings) = new_artifact(&state, xml).await?;
    let summary = state.store.create_api(new).await?;
    state.metrics.change(Change::Create);
    tracing::info!(api_id = %summary.id, name = %summary.name, version = %summary.version, "API created");
    let location = format!("/api/v1/apis/{}", summary.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(ApiCreated::new(summary, warnings)),
    )
        .into_response())
}

/// A new revision; an identical body (same sha256) creates none.
#[utoipa::path(put, path = "/api/v1/apis/{id}", tag = "apis", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "The API id")),
    request_body(content = String, content_type = "application/xml", description = "The new Synapse artifact"),
    responses(
        (status = 201, description = "A new revision", body = ApiCreated),
        (status = 200, description = "Identical to the latest revision: nothing written", body = ApiCreated),
        (status = 400, description = "Malformed XML (with the parser's position) or empty body", body = ErrorDoc),
        (status = 413, description = "Larger than max_body_bytes", body = ErrorDoc),
        (status = 415, description = "Not application/xml", body = ErrorDoc),
        (status = 422, description = "Outside the supported Synapse subset (element, line, column), or over one of the artifact caps (named in the message)", body = ErrorDoc),
        (status = 404, description = "No such API", body = ErrorDoc),
        (status = 409, description = "The new (name, version) belongs to another API", body = ErrorDoc),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorDoc),
        (status = 503, description = "The database is unavailable, or the server is busy validating other artifacts (see `Retry-After`); nothing was changed", body = ErrorDoc),
    ))]
pub async fn update_api(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let id = api_id(&id)?;
    let xml = xml_body(&state, &headers, body).await?;
    let (new, warnings) = new_artifact(&state, xml).await?;
    Ok(match state.store.update_api(id, new).await? {
        UpdateOutcome::NewRevision(s) => {
            state.metrics.change(Change::Update);
            tracing::info!(api_id = %id, revision = %s.revision, "new revision");
            (StatusCode::CREATED, Json(ApiCreated::new(s, warnings))).into_response()
        }
        UpdateOutcome::Unchanged(s) => {
            (StatusCode::OK, Json(ApiCreated::new(s, warnings))).into_response()
        }
    })
}

/// Every API with its latest revision.
#[utoipa::path(get, path = "/api/v1/apis", tag = "apis", security(("bearer" = [])),
    responses(
        (status = 200, description = "The APIs", body = ApiListDoc),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorDoc),
        (status = 503, description = "The database is unavailable; nothing was changed", body = ErrorDoc),
    ))]
pub async fn list_apis(State(state): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let apis = state.store.list_apis().await?;
    Ok(Json(json!({ "count": apis.len(), "apis": apis })).into_response())
}

/// One API with its revisions and deployments.
#[utoipa::path(get, path = "/api/v1/apis/{id}", tag = "apis", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "The API id")),
    responses(
        (status = 200, description = "The API", body = ApiDetail),
        (status = 400, description = "Not an API id", body = ErrorDoc),
        (status = 404, description = "No such API", body = ErrorDoc),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorDoc),
        (status = 503, description = "The database is unavailable; nothing was changed", body = ErrorDoc),
    ))]
pub async fn get_api(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let detail = state.store.get_api(api_id(&id)?).await?;
    Ok(Json(detail).into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RevisionQuery {
    /// A revision number (default: the latest).
    #[param(value_type = Option<u32>, minimum = 1)]
    revision: Option<String>,
}

/// The XML of a revision.
#[utoipa::path(get, path = "/api/v1/apis/{id}/artifact", tag = "apis", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "The API id"), RevisionQuery),
    responses(
        (status = 200, description = "The artifact (`ETag` = sha256, revision header)", body = String, content_type = "application/xml"),
        (status = 400, description = "Bad id or revision", body = ErrorDoc),
        (status = 404, description = "No such API or revision", body = ErrorDoc),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorDoc),
        (status = 503, description = "The database is unavailable; nothing was changed", body = ErrorDoc),
    ))]
pub async fn get_artifact(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    Query(q): Query<RevisionQuery>,
) -> Result<Response, ApiError> {
    let revision = q
        .revision
        .map(|r| r.parse::<Revision>())
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let artifact = state.store.get_artifact(api_id(&id)?, revision).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/xml".to_owned()),
            (header::ETAG, format!("\"{}\"", artifact.sha256)),
            (
                header::HeaderName::from_static(artisync_http::REVISION_HEADER),
                artifact.revision.to_string(),
            ),
        ],
        artifact.xml,
    )
        .into_response())
}

/// What to deploy where.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// Gateway labels (at least one).
    #[schema(min_items = 1)]
    labels: Vec<String>,
    /// The revision (default: the latest).
    #[schema(minimum = 1)]
    revision: Option<i64>,
}

/// Deploys a revision to gateway labels.
#[utoipa::path(post, path = "/api/v1/apis/{id}/deployments", tag = "deployments", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "The API id")),
    request_body(content = DeployRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Deployed (an event per changed label is committed)", body = DeployOutcome),
        (status = 400, description = "Bad body or label", body = ErrorDoc),
        (status = 404, description = "No such API or revision", body = ErrorDoc),
        (status = 422, description = "Unknown gateway label", body = ErrorDoc),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorDoc),
        (status = 503, description = "The database is unavailable; nothing was changed", body = ErrorDoc),
    ))]
pub async fn deploy(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = api_id(&id)?;
    let request: DeployRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "expected {{\"labels\": [..], \"revision\": N?}}: {e}"
        ))
    })?;
    if request.labels.is_empty() {
        return Err(ApiError::bad_request(
            "labels must name at least one gateway label",
        ));
    }
    let labels = gateway_labels(&state, &request.labels)?;
    let revision = request
        .revision
        .map(Revision::new)
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let outcome = state
        .store
        .deploy(id, &labels, revision, &change_context(&headers))
        .await?;
    if !outcome.changed_labels.is_empty() {
        state.metrics.change(Change::Deploy);
    }
    tracing::info!(api_id = %id, revision = %outcome.revision, labels = ?outcome.changed_labels, sequence = ?outcome.sequence, "deployed");
    Ok(Json(outcome).into_response())
}

/// Undeploys the API from one label.
#[utoipa::path(delete, path = "/api/v1/apis/{id}/deployments/{label}", tag = "deployments", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "The API id"), ("label" = String, Path, description = "The gateway label (percent-encoded)")),
    responses(
        (status = 200, description = "Undeployed (a removal event is committed)", body = UndeployDoc),
        (status = 400, description = "Bad id or label", body = ErrorDoc),
        (status = 404, description = "Not deployed on that label", body = ErrorDoc),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorDoc),
        (status = 503, description = "The database is unavailable; nothing was changed", body = ErrorDoc),
    ))]
pub async fn undeploy(
    State(state): State<Arc<ApiState>>,
    Path((id, label)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = api_id(&id)?;
    let label = GatewayLabel::parse(&label).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let sequence = state
        .store
        .undeploy(id, &label, &change_context(&headers))
        .await?;
    state.metrics.change(Change::Undeploy);
    tracing::info!(api_id = %id, label = %label, sequence, "undeployed");
    Ok(Json(json!({ "apiId": id, "label": label, "sequence": sequence })).into_response())
}

/// Undeploys the API everywhere, then deletes it with its revisions.
#[utoipa::path(delete, path = "/api/v1/apis/{id}", tag = "apis", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "The API id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Not an API id", body = ErrorDoc),
        (status = 404, description = "No such API", body = ErrorDoc),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorDoc),
        (status = 503, description = "The database is unavailable; nothing was changed", body = ErrorDoc),
    ))]
pub async fn delete_api(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = api_id(&id)?;
    state
        .store
        .delete_api(id, &change_context(&headers))
        .await?;
    state.metrics.change(Change::Delete);
    tracing::info!(api_id = %id, "API deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Per gateway node: applied revision, status, error, last report.
#[utoipa::path(get, path = "/api/v1/apis/{id}/status", tag = "deployments", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "The API id")),
    responses(
        (status = 200, description = "The API on every gateway node", body = ApiStatusDoc),
        (status = 400, description = "Not an API id", body = ErrorDoc),
        (status = 404, description = "No such API", body = ErrorDoc),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorDoc),
        (status = 503, description = "The database is unavailable; nothing was changed", body = ErrorDoc),
    ))]
pub async fn api_status(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = api_id(&id)?;
    let nodes = state
        .store
        .api_status(id, state.gateway_stale_after)
        .await?;
    Ok(Json(json!({ "apiId": id, "nodes": nodes })).into_response())
}

/// Gateway nodes: labels, last heartbeat, APIs in sync / failed / behind.
#[utoipa::path(get, path = "/api/v1/gateways", tag = "deployments", security(("bearer" = [])),
    responses(
        (status = 200, description = "The gateway nodes", body = GatewaysDoc),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorDoc),
        (status = 503, description = "The database is unavailable; nothing was changed", body = ErrorDoc),
    ))]
pub async fn gateways(State(state): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let gateways = state.store.gateways(state.gateway_stale_after).await?;
    Ok(Json(json!({ "gateways": gateways })).into_response())
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health/live", tag = "health",
    responses((status = 200, description = "Alive", body = String, content_type = "text/plain")))]
pub async fn live() -> &'static str {
    "ok"
}

/// Prometheus metrics: changes, outbox backlog and oldest unsent event,
/// relay publish latency, requests by route.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4", body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<Arc<ApiState>>) -> Response {
    let text = state.metrics.render(state.outbox.as_ref()).await;
    (
        [(
            header::CONTENT_TYPE,
            artisync_telemetry::metrics::CONTENT_TYPE,
        )],
        text,
    )
        .into_response()
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "health",
    responses((status = 200, description = "The OpenAPI 3 document of this API", body = Object)))]
pub async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        super::OPENAPI_JSON.as_str(),
    )
        .into_response()
}

/// Readiness: the database answers.
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses(
        (status = 200, description = "Ready", body = ReadyDoc),
        (status = 503, description = "The database is unavailable", body = ErrorDoc),
    ))]
pub async fn ready(State(state): State<Arc<ApiState>>) -> Response {
    match state.health.check().await {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ready"}))).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is unavailable",
            )
            .with_retry_after(1)
            .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn traceparent_format_is_checked() {
        assert!(super::is_valid_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        assert!(!super::is_valid_traceparent("00-xyz-00f067aa0ba902b7-01"));
        assert!(!super::is_valid_traceparent("garbage"));
    }
}
