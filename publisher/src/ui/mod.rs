//! The fleet view (DESIGN.md §14): one page, its script and its style,
//! compiled into the binary so that it works with no internet. The page
//! reads the same JSON API as the client (`/api/v1/fleet`,
//! `/api/v1/apis/{id}`, `/api/v1/changes/{sequence}`) with the token the
//! operator enters once per browser session.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

const PAGE: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("app.js");
const STYLE: &str = include_str!("app.css");

/// Same-origin script and style only; nothing may frame the page.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// The fleet view: nodes, the APIs × nodes grid, one API's revisions,
/// deployments, receipts and errors. It asks for the token in the page.
#[utoipa::path(get, path = "/ui", tag = "ui",
    responses((status = 200, description = "The fleet view", body = String, content_type = "text/html")))]
pub async fn page() -> Response {
    asset(PAGE, "text/html; charset=utf-8")
}

/// The fleet view's script.
#[utoipa::path(get, path = "/ui/app.js", tag = "ui",
    responses((status = 200, description = "The fleet view's script", body = String, content_type = "text/javascript")))]
pub async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

/// The fleet view's style sheet.
#[utoipa::path(get, path = "/ui/app.css", tag = "ui",
    responses((status = 200, description = "The fleet view's style sheet", body = String, content_type = "text/css")))]
pub async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}
