//! The publisher's OpenAPI document: valid OpenAPI 3, and listing exactly
//! the routes the REST router exposes.
//!
//! Router and document are built from the same `routes!` calls
//! (utoipa-axum). The tests check the document against the contract
//! (DESIGN.md §4), probe the real router with every documented operation
//! (answered, not "no such route") and every undocumented method on a
//! documented path (405), and fail when the router source adds a route
//! without going through `routes!`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use artisync_domain::api::{ApiDetail, ApiSummary, DeployOutcome, GatewaySummary, NodeApiStatus};
use artisync_domain::receipt::Receipt;
use artisync_domain::{ApiId, GatewayLabel, Revision};
use artisync_http::BearerTokens;
use artisync_ports::artifacts::{ChangeContext, NewArtifact, StoredArtifact, UpdateOutcome};
use artisync_ports::outbox::Backlog;
use artisync_ports::receipts::PropagationSample;
use artisync_ports::{ArtifactStore, Health, Outbox, OutboxSession, StoreError};
use artisync_publisher::api::{self, ApiState};
use artisync_publisher::metrics::PublisherMetrics;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// DESIGN.md §4, §12–§14, plus the probes, metrics and this document.
const EXPECTED: &[(&str, &str)] = &[
    ("post", "/api/v1/apis"),
    ("get", "/api/v1/apis"),
    ("get", "/api/v1/apis/{id}"),
    ("put", "/api/v1/apis/{id}"),
    ("delete", "/api/v1/apis/{id}"),
    ("get", "/api/v1/apis/{id}/artifact"),
    ("post", "/api/v1/apis/{id}/deployments"),
    ("delete", "/api/v1/apis/{id}/deployments/{label}"),
    ("get", "/api/v1/apis/{id}/status"),
    ("get", "/api/v1/gateways"),
    ("get", "/api/v1/fleet"),
    ("get", "/api/v1/changes/{sequence}"),
    ("post", "/api/v1/apply"),
    ("get", "/ui"),
    ("get", "/ui/app.js"),
    ("get", "/ui/app.css"),
    ("get", "/health/live"),
    ("get", "/health/ready"),
    ("get", "/metrics"),
    ("get", "/api/v1/openapi.json"),
];

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch"];

fn document() -> serde_json::Value {
    let json = api::openapi()
        .to_pretty_json()
        .expect("document serialises");
    serde_json::from_str(&json).expect("document is JSON")
}

fn operations(doc: &serde_json::Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths is an object") {
        for method in METHODS.iter().chain(&["head", "options", "trace"]) {
            if item.get(*method).is_some() {
                ops.insert(((*method).to_owned(), path.clone()));
            }
        }
    }
    ops
}

#[test]
fn the_document_is_openapi_3() {
    let doc = document();
    let version = doc["openapi"].as_str().expect("openapi field");
    assert!(version.starts_with("3."), "openapi {version}");
    assert!(doc["info"]["title"].as_str().is_some());
    assert!(doc["components"]["schemas"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    let parsed: utoipa::openapi::OpenApi =
        serde_json::from_value(doc.clone()).expect("parses as utoipa's OpenApi");
    assert_eq!(
        parsed.paths.paths.len(),
        doc["paths"].as_object().unwrap().len()
    );
    // Every schema referred to is defined.
    let text = doc.to_string();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for reference in text.split("\"#/components/schemas/").skip(1) {
        let name = reference.split('"').next().unwrap();
        assert!(schemas.contains_key(name), "undefined schema {name}");
    }
    // The store types are described field by field.
    let detail = &schemas["ApiDetail"];
    assert!(detail.to_string().contains("revisions"), "{detail}");
    let create = &doc["paths"]["/api/v1/apis"]["post"];
    assert!(
        create["requestBody"]["content"]["application/xml"].is_object(),
        "{create}"
    );
}

#[test]
fn the_document_lists_exactly_the_contract_routes() {
    let expected: BTreeSet<(String, String)> = EXPECTED
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(operations(&document()), expected);
}

#[test]
fn authenticated_operations_name_the_bearer_scheme() {
    let doc = document();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            // The fleet view's page and assets load without a token; the
            // page then asks for one and sends it with its API calls.
            let open = path.starts_with("/health")
                || path.starts_with("/ui")
                || path == "/metrics"
                || path == api::OPENAPI_PATH;
            assert_eq!(op.get("security").is_some(), !open, "{method} {path}");
        }
    }
}

/// Routes are only added through `routes!`: a plain `.route(..)` (or a
/// nested plain router) would serve a path the document does not list.
#[test]
fn the_router_source_adds_routes_only_through_routes_macro() {
    let source = include_str!("../src/api/mod.rs");
    for bypass in [".route(", ".route_service(", ".nest(", ".nest_service("] {
        assert!(
            !source.contains(bypass),
            "api/mod.rs calls {bypass}: add the route with routes!(handler) and a #[utoipa::path] instead"
        );
    }
}

/// A store that knows nothing: the probes only need the router.
struct EmptyStore;

fn none<T>() -> Result<T, StoreError> {
    Err(StoreError::NotFound("nothing here".into()))
}

#[async_trait]
impl ArtifactStore for EmptyStore {
    async fn create_api(&self, _: NewArtifact) -> Result<ApiSummary, StoreError> {
        none()
    }
    async fn update_api(&self, _: ApiId, _: NewArtifact) -> Result<UpdateOutcome, StoreError> {
        none()
    }
    async fn list_apis(&self) -> Result<Vec<ApiSummary>, StoreError> {
        Ok(Vec::new())
    }
    async fn get_api(&self, _: ApiId) -> Result<ApiDetail, StoreError> {
        none()
    }
    async fn find_api(&self, _: &str, _: &str) -> Result<Option<ApiSummary>, StoreError> {
        Ok(None)
    }
    async fn get_artifact(
        &self,
        _: ApiId,
        _: Option<Revision>,
    ) -> Result<StoredArtifact, StoreError> {
        none()
    }
    async fn deploy(
        &self,
        _: ApiId,
        _: &[GatewayLabel],
        _: Option<Revision>,
        _: &ChangeContext,
    ) -> Result<DeployOutcome, StoreError> {
        none()
    }
    async fn undeploy(
        &self,
        _: ApiId,
        _: &GatewayLabel,
        _: &ChangeContext,
    ) -> Result<i64, StoreError> {
        none()
    }
    async fn delete_api(&self, _: ApiId, _: &ChangeContext) -> Result<(), StoreError> {
        none()
    }
    async fn api_status(&self, _: ApiId, _: Duration) -> Result<Vec<NodeApiStatus>, StoreError> {
        none()
    }
    async fn gateways(&self, _: Duration) -> Result<Vec<GatewaySummary>, StoreError> {
        Ok(Vec::new())
    }
    async fn receipt(&self, _: i64, _: Duration) -> Result<Option<Receipt>, StoreError> {
        Ok(None)
    }
    async fn propagation_samples(
        &self,
        _: DateTime<Utc>,
        _: u32,
    ) -> Result<Vec<PropagationSample>, StoreError> {
        Ok(Vec::new())
    }
}

/// Its database is down: the readiness probe and /metrics say so.
fn down<T>() -> Result<T, StoreError> {
    Err(StoreError::unavailable("test", "the database is down"))
}

#[async_trait]
impl Outbox for EmptyStore {
    async fn session(&self) -> Result<Box<dyn OutboxSession>, StoreError> {
        down()
    }
    async fn backlog(&self) -> Result<Backlog, StoreError> {
        down()
    }
    async fn prune(&self, _: Duration) -> Result<u64, StoreError> {
        down()
    }
}

#[async_trait]
impl Health for EmptyStore {
    async fn check(&self) -> Result<(), StoreError> {
        down()
    }
}

fn state(token: &str) -> Arc<ApiState> {
    Arc::new(ApiState {
        store: Arc::new(EmptyStore),
        outbox: Arc::new(EmptyStore),
        health: Arc::new(EmptyStore),
        tokens: Arc::new(BearerTokens::new(vec![token.into()])),
        max_body_bytes: 1024,
        max_apply_bytes: 4096,
        fleet: api::FleetCache::default(),
        known_labels: Vec::new(),
        gateway_stale_after: Duration::from_secs(30),
        metrics: Arc::new(PublisherMetrics::new()),
        parse_pool: artisync_http::ParsePool::new(1, 1),
    })
}

#[tokio::test]
async fn the_router_serves_exactly_the_documented_operations() {
    // Only the readiness probe and /metrics touch the database, and
    // answer "unavailable".
    let state = state("probe-token");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, api::router(state)).await.unwrap();
    });
    let http = reqwest::Client::new();
    let doc = document();
    let documented = operations(&doc);
    let concrete = |path: &str| {
        path.replace("{id}", &ApiId::new_random().to_string())
            .replace("{label}", "Label1")
            .replace("{sequence}", "1")
    };
    for path in doc["paths"].as_object().unwrap().keys() {
        for method in METHODS {
            let url = format!("http://{addr}{}", concrete(path));
            // With a token: an unauthenticated request gets 401 whatever
            // the method.
            let response = http
                .request(method.to_uppercase().parse().unwrap(), &url)
                .bearer_auth("probe-token")
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            if documented.contains(&((*method).to_owned(), path.clone())) {
                assert_ne!(status, 405, "{method} {path} is documented but not routed");
                assert!(
                    !(status == 404 && body.contains("no such route")),
                    "{method} {path} is documented but not routed: {body}"
                );
            } else {
                assert_eq!(
                    status, 405,
                    "{method} {path} is routed but not documented: {status} {body}"
                );
            }
        }
    }
    // And a path nobody declared is the JSON 404.
    let response = http
        .get(format!("http://{addr}/api/v1/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    server.abort();
}

#[tokio::test]
async fn the_document_is_served_without_a_token() {
    let state = state("t-token-1");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, api::router(state)).await.unwrap();
    });
    let response = reqwest::get(format!("http://{addr}{}", api::OPENAPI_PATH))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    // Every answer names its trace.
    let traceparent = response
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .expect("a traceparent header");
    assert!(
        artisync_telemetry::TraceParent::parse(&traceparent).is_some(),
        "{traceparent}"
    );
    let served: serde_json::Value = response.json().await.unwrap();
    assert_eq!(served, document());
    server.abort();
}
