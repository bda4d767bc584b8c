//! The gateway admin API's OpenAPI document: valid OpenAPI 3, and listing
//! exactly the routes the admin router exposes.
//!
//! The router and the document are built from the same `routes!` calls
//! (utoipa-axum), so a route added that way is documented by construction;
//! this test pins the list to the contract of DESIGN.md §7 and fails when a
//! route is added to the router source without going through `routes!`.

use std::collections::BTreeSet;

use artisync_gateway::admin;

/// The admin API of DESIGN.md §7, plus this document.
const EXPECTED: &[(&str, &str)] = &[
    ("get", "/api/gateway/v1/apis"),
    ("get", "/api/gateway/v1/status"),
    ("get", "/api/gateway/v1/apis/{apiId}"),
    ("put", "/api/gateway/v1/apis/{apiId}"),
    ("delete", "/api/gateway/v1/apis/{apiId}"),
    ("get", "/api/gateway/v1/apis/{apiId}/artifact"),
    ("post", "/api/gateway/v1/redeploy-api"),
    ("post", "/api/gateway/v1/undeploy-api"),
    ("get", "/health/live"),
    ("get", "/health/ready"),
    ("get", "/metrics"),
    ("get", "/api/gateway/v1/openapi.json"),
];

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch", "head", "options"];

fn document() -> serde_json::Value {
    let json = admin::openapi()
        .to_pretty_json()
        .expect("document serialises");
    serde_json::from_str(&json).expect("document is JSON")
}

fn operations(doc: &serde_json::Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths is an object") {
        for method in METHODS {
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
    // It reads back as an OpenAPI document.
    let parsed: utoipa::openapi::OpenApi =
        serde_json::from_value(doc.clone()).expect("parses as utoipa's OpenApi");
    assert_eq!(
        parsed.paths.paths.len(),
        doc["paths"].as_object().unwrap().len()
    );

    // Every schema a response refers to is defined.
    let text = doc.to_string();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for reference in text.split("\"#/components/schemas/").skip(1) {
        let name = reference.split('"').next().unwrap();
        assert!(schemas.contains_key(name), "undefined schema {name}");
    }
}

#[test]
fn the_document_lists_exactly_the_routes_of_the_router() {
    let documented = operations(&document());
    let expected: BTreeSet<(String, String)> = EXPECTED
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(
        documented, expected,
        "the admin router's routes (from routes!) differ from the contract"
    );
}

#[test]
fn authenticated_operations_name_the_bearer_scheme() {
    let doc = document();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let open =
                path.starts_with("/health") || path == "/metrics" || path.ends_with("openapi.json");
            let secured = op.get("security").is_some();
            assert_eq!(secured, !open, "{method} {path}: security {secured}");
        }
    }
}

/// Routes are only added through `routes!`: a plain `.route(..)` (or a
/// nested/merged plain router) would serve a path the document does not
/// list.
#[test]
fn the_router_source_adds_routes_only_through_routes_macro() {
    let source = include_str!("../src/admin.rs");
    for bypass in [".route(", ".route_service(", ".nest(", ".nest_service("] {
        assert!(
            !source.contains(bypass),
            "admin.rs calls {bypass}: add the route with routes!(handler) and a #[utoipa::path] instead"
        );
    }
}
