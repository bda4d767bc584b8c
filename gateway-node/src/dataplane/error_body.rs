//! JSON error answers of the data plane:
//! `{"code": 404, "message": "..", "path": "/x"}`.

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use serde::Serialize;

use super::body::Body;

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: u16,
    message: &'a str,
    path: &'a str,
}

/// The body of a data-plane error, as bytes.
pub fn error_json(status: StatusCode, message: &str, path: &str) -> Vec<u8> {
    let body = ErrorBody {
        code: status.as_u16(),
        message,
        path,
    };
    // Serialising a struct of strings and a number cannot fail; fall back to
    // a fixed body rather than panicking anyway.
    serde_json::to_vec(&body).unwrap_or_else(|_| br#"{"code":500,"message":"error"}"#.to_vec())
}

/// A complete JSON error response.
pub fn error_response(status: StatusCode, message: &str, path: &str) -> Response<Body> {
    let mut response = Response::new(Body::from(error_json(status, message, path)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// 202 with an empty body: what a client gets for a fire-and-forget send or a
/// dropped message.
pub fn accepted() -> Response<Body> {
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = StatusCode::ACCEPTED;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_escape_their_strings() {
        let raw = error_json(StatusCode::NOT_FOUND, "no API deployed at \"/x\"", "/x");
        let value: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(value["code"], 404);
        assert_eq!(value["message"], "no API deployed at \"/x\"");
        assert_eq!(value["path"], "/x");
    }
}
