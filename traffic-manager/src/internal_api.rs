//! The internal data API gateways pull from (DESIGN.md §6).

use std::sync::Arc;

use artisync_domain::runtime::{GatewayStatusReport, RetrieveArtifactsRequest};
use artisync_domain::{ApiId, GatewayLabel, Sha256Digest};
use artisync_http::{API_ID_HEADER, REVISION_HEADER, SEQUENCE_HEADER};
use axum::Extension;
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::auth::TokenScope;
use crate::state::AppState;
use crate::status_intake::IntakeError;
use artisync_http::ApiError;
use artisync_ports::StoreError;

/// Labels from repeated `gatewayLabel=` query parameters.
fn labels_from_query(query: Option<&str>) -> Result<Vec<GatewayLabel>, ApiError> {
    let mut labels = Vec::new();
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if key == "gatewayLabel" {
            let label =
                GatewayLabel::parse(&value).map_err(|e| ApiError::bad_request(e.to_string()))?;
            if !labels.contains(&label) {
                labels.push(label);
            }
        }
    }
    if labels.is_empty() {
        return Err(ApiError::bad_request(
            "name at least one label: ?gatewayLabel=<label>",
        ));
    }
    Ok(labels)
}

fn trace_id(headers: &HeaderMap) -> &str {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(|tp| tp.split('-').nth(1))
        .unwrap_or("")
}

pub async fn runtime_metadata(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Arc<TokenScope>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let labels = labels_from_query(query.as_deref())?;
    scope.check(&labels)?;
    let metadata = state
        .desired
        .runtime_metadata(&labels)
        .await
        .map_err(ApiError::from)?;
    let body = serde_json::to_vec(&metadata)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    // The digest of the answer: a node that already has this state gets 304.
    let etag = format!("\"{}\"", Sha256Digest::of(&body));
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| etag_matches(v, &etag));
    let sequence = metadata.sequence.to_string();
    if unchanged {
        return Ok((
            StatusCode::NOT_MODIFIED,
            [
                (header::ETAG, etag),
                (HeaderName::from_static(SEQUENCE_HEADER), sequence),
            ],
        )
            .into_response());
    }
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (header::ETAG, etag),
            (HeaderName::from_static(SEQUENCE_HEADER), sequence),
        ],
        body,
    )
        .into_response())
}

pub async fn runtime_artifact(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Arc<TokenScope>>,
    Path(api_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let api_id: ApiId = api_id
        .parse()
        .map_err(|e: artisync_domain::IdError| ApiError::bad_request(e.to_string()))?;
    let labels = labels_from_query(query.as_deref())?;
    scope.check(&labels)?;
    let artifact = state
        .desired
        .runtime_artifact(api_id, &labels)
        .await
        .map_err(ApiError::from)?;
    let Some(artifact) = artifact else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "API {api_id} is not deployed on {}",
                labels
                    .iter()
                    .map(|l| format!("{:?}", l.as_str()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    };
    tracing::info!(
        api_id = %api_id,
        revision = %artifact.api.revision,
        trace_id = trace_id(&headers),
        client = %scope.name,
        "artifact served"
    );
    state.metrics.artifacts_single.inc();
    state
        .metrics
        .artifact_bytes_single
        .inc_by(artifact.artifact.len() as u64);
    let mut response = Response::new(Body::from(artifact.artifact));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    insert(h, header::ETAG, format!("\"{}\"", artifact.api.sha256));
    insert(
        h,
        HeaderName::from_static(REVISION_HEADER),
        artifact.api.revision.to_string(),
    );
    insert(
        h,
        HeaderName::from_static(API_ID_HEADER),
        api_id.to_string(),
    );
    Ok(response)
}

fn insert(headers: &mut HeaderMap, name: HeaderName, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(name, v);
    }
}

pub async fn retrieve_artifacts(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Arc<TokenScope>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: RetrieveArtifactsRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "expected {{\"gatewayLabels\": [..], \"apiIds\": [..]?}}: {e}"
        ))
    })?;
    if request.gateway_labels.is_empty() {
        return Err(ApiError::bad_request(
            "gatewayLabels must name at least one label",
        ));
    }
    scope.check(&request.gateway_labels)?;
    // A small buffer: the database cursor advances only as fast as the
    // client reads, so memory stays bounded for any number of artifacts.
    let (from_store, mut store_rx) = mpsc::channel(16);
    let (tx, rx) = mpsc::channel(16);
    let reader = state.desired.clone();
    tokio::spawn(async move {
        reader
            .stream_artifacts(
                &request.gateway_labels,
                request.api_ids.as_deref(),
                from_store,
            )
            .await;
    });
    // Each chunk must be taken by the client within the deadline: a client
    // that stops reading ends the stream (the reader's next send fails and
    // it releases its database connection) instead of holding it.
    let deadline = state.bulk_send_timeout;
    tokio::spawn(async move {
        while let Some(item) = store_rx.recv().await {
            match tx.send_timeout(item, deadline).await {
                Ok(()) => {}
                Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                    tracing::warn!(
                        timeout_ms = deadline.as_millis() as u64,
                        "bulk artifact stream: the client stopped reading; ending it"
                    );
                    // Release the reader now; the client, should it read
                    // on, sees a broken transfer, not a short list.
                    drop(store_rx);
                    let _ = tx
                        .send(Err(StoreError::unavailable(
                            "traffic-manager",
                            "the client did not read the stream in time",
                        )))
                        .await;
                    return;
                }
                Err(mpsc::error::SendTimeoutError::Closed(_)) => return,
            }
        }
    });
    let metrics = state.metrics.clone();
    let lines = ReceiverStream::new(rx).map(move |item| match item {
        Ok(artifact) => serde_json::to_vec(&artifact)
            .map(|mut line| {
                line.push(b'\n');
                metrics.artifacts_bulk.inc();
                metrics.artifact_bytes_bulk.inc_by(line.len() as u64);
                Bytes::from(line)
            })
            .map_err(std::io::Error::other),
        Err(e) => {
            tracing::error!(error = %e, "bulk artifact stream failed");
            // Ending the body with an error makes the client see a broken
            // transfer rather than a short, seemingly complete list.
            Err(std::io::Error::other(e.to_string()))
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response())
}

pub async fn gateway_status(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Arc<TokenScope>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let report: GatewayStatusReport = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid status report: {e}")))?;
    if report.labels.is_empty() {
        return Err(ApiError::bad_request(
            "invalid status report: labels must name at least one label",
        ));
    }
    scope.check_node(&report.node_id)?;
    scope.check(&report.labels)?;
    let (node_id, apis, full) = (report.node_id.clone(), report.apis.len(), report.full);
    state.status.record(report).await.map_err(|e| match e {
        IntakeError::Write(e) => {
            tracing::error!(%node_id, error = %e, "recording a status report failed");
            ApiError::from(e.as_ref().clone())
        }
        IntakeError::Stopped => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the traffic manager is shutting down; retry later",
        ),
    })?;
    tracing::debug!(%node_id, apis, full, "gateway status recorded");
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn ready(State(state): State<Arc<AppState>>) -> Response {
    match state.health.check().await {
        Ok(()) => Json(serde_json::json!({"status": "ready"})).into_response(),
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

/// `If-None-Match` semantics (RFC 9110): `*`, or a list of tags compared
/// weakly (a `W/` prefix is ignored).
fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match.trim() == "*"
        || if_none_match
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_is_weak_and_takes_lists() {
        assert!(etag_matches("\"a\"", "\"a\""));
        assert!(etag_matches("W/\"a\"", "\"a\""));
        assert!(etag_matches("\"b\", W/\"a\"", "\"a\""));
        assert!(etag_matches("*", "\"a\""));
        assert!(!etag_matches("\"b\"", "\"a\""));
    }

    #[test]
    fn labels_are_repeated_query_parameters() {
        let labels = labels_from_query(Some(
            "gatewayLabel=Production%20and%20Sandbox&gatewayLabel=Label1",
        ))
        .unwrap();
        assert_eq!(labels.len(), 2);
        assert_eq!(labels[0].as_str(), "Production and Sandbox");
        assert!(labels_from_query(Some("x=1")).is_err());
        assert!(labels_from_query(None).is_err());
        assert!(labels_from_query(Some("gatewayLabel=")).is_err());
    }
}
