//! The per-request message context mediators read and change.

use std::borrow::Cow;
use std::net::IpAddr;

use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Response, StatusCode};
use hyper::body::Incoming;

use super::body::Body;
use super::headers::strip_hop_by_hop;
use super::matcher::{UriVars, query_param};
use super::routing::CompiledApi;

/// Which part of a resource is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// The inSequence, on the client's request.
    In,
    /// The outSequence, on the endpoint's response.
    Out,
    /// A fault sequence, after an endpoint error.
    Fault,
}

impl Flow {
    pub fn as_str(self) -> &'static str {
        match self {
            Flow::In => "in",
            Flow::Out => "out",
            Flow::Fault => "fault",
        }
    }
}

/// Where the current headers came from, which decides what a `respond`
/// sends back.
#[derive(Debug)]
pub enum HeaderOrigin {
    /// The client's request headers: a `respond` only returns the headers
    /// mediators set (`touched`), never the request's own `Authorization`,
    /// `Cookie` or `Host`.
    Request { touched: Vec<HeaderName> },
    /// An endpoint's response headers: all of them are returned.
    Response,
}

/// The `REST_URL_POSTFIX` property: what is appended to an endpoint URL
/// without `{uri.var.*}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Postfix {
    /// The request path after the context plus the query string.
    Default,
    /// Removed by a `property action="remove"`: nothing is appended.
    Removed,
    /// Set explicitly.
    Set(String),
}

/// The message being mediated: the request at first, then the endpoint's
/// response. Borrows the deployed API and the request line for the whole
/// request, so nothing from them is copied.
#[derive(Debug)]
pub struct MessageContext<'a> {
    pub api: &'a CompiledApi,
    pub flow: Flow,
    /// The client's method (the default method for endpoints).
    pub method: &'a Method,
    /// The full request path, for error bodies.
    pub path: &'a str,
    /// The raw request path after the API context (may be empty).
    pub remainder: &'a str,
    /// The raw query string of the request.
    pub query: Option<&'a str>,
    pub uri_vars: UriVars<'a>,
    /// The current message's headers.
    pub headers: HeaderMap,
    pub header_origin: HeaderOrigin,
    pub body: Body,
    /// The status of the endpoint's response, once there is one.
    pub upstream_status: Option<StatusCode>,
    /// `HTTP_SC`, which wins over the endpoint's status.
    pub status_override: Option<StatusCode>,
    /// Message-context properties (few per request: a list beats a map).
    pub properties: Vec<(Cow<'a, str>, String)>,
    pub postfix: Postfix,
    pub client_ip: IpAddr,
    /// The client's `Host`, for `X-Forwarded-Host`.
    pub original_host: Option<HeaderValue>,
    /// The largest body a mediator may buffer.
    pub max_body: usize,
}

impl<'a> MessageContext<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        api: &'a CompiledApi,
        method: &'a Method,
        path: &'a str,
        remainder: &'a str,
        query: Option<&'a str>,
        uri_vars: UriVars<'a>,
        headers: HeaderMap,
        body: Body,
        client_ip: IpAddr,
        max_body: usize,
    ) -> Self {
        let original_host = headers.get(HOST).cloned();
        MessageContext {
            api,
            flow: Flow::In,
            method,
            path,
            remainder,
            query,
            uri_vars,
            headers,
            header_origin: HeaderOrigin::Request {
                touched: Vec::new(),
            },
            body,
            upstream_status: None,
            status_override: None,
            properties: Vec::new(),
            postfix: Postfix::Default,
            client_ip,
            original_host,
            max_body,
        }
    }

    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn set_property(&mut self, name: Cow<'a, str>, value: String) {
        match self.properties.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => *v = value,
            None => self.properties.push((name, value)),
        }
    }

    pub fn remove_property(&mut self, name: &str) {
        self.properties.retain(|(n, _)| n != name);
    }

    /// A boolean property such as `OUT_ONLY` (`true`, any case).
    pub fn flag(&self, name: &str) -> bool {
        self.property(name)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    }

    pub fn uri_var(&self, name: &str) -> Option<&str> {
        self.uri_vars
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_ref())
    }

    pub fn query_param(&self, name: &str) -> Option<Cow<'a, str>> {
        self.query.and_then(|q| query_param(q, name))
    }

    /// The status the client gets for the current message.
    pub fn status(&self) -> StatusCode {
        self.status_override
            .or(self.upstream_status)
            .unwrap_or(StatusCode::OK)
    }

    fn touch(&mut self, name: &HeaderName) {
        if let HeaderOrigin::Request { touched } = &mut self.header_origin
            && !touched.contains(name)
        {
            touched.push(name.clone());
        }
    }

    pub fn set_header(&mut self, name: HeaderName, value: HeaderValue) {
        self.touch(&name);
        self.headers.insert(name, value);
    }

    pub fn remove_header(&mut self, name: &HeaderName) {
        self.headers.remove(name);
    }

    /// Replaces the payload (and its content type, if given). The old
    /// `Content-Length` no longer applies; the body's size decides it.
    pub fn set_body(&mut self, body: Body, content_type: Option<HeaderValue>) {
        self.body = body;
        self.headers.remove(CONTENT_LENGTH);
        if let Some(content_type) = content_type {
            self.set_header(CONTENT_TYPE, content_type);
        }
    }

    /// Makes an endpoint's response the current message.
    pub fn set_response(&mut self, response: Response<Incoming>) {
        let (parts, body) = response.into_parts();
        self.upstream_status = Some(parts.status);
        // HTTP_SC set before the endpoint was called described the request
        // side; the endpoint's status now stands unless a mediator sets it
        // again.
        self.status_override = None;
        self.headers = parts.headers;
        strip_hop_by_hop(&mut self.headers);
        self.header_origin = HeaderOrigin::Response;
        // The response streams through unless a mediator buffers it.
        self.body = Body::from_incoming(body, usize::MAX);
    }

    /// The answer for the client built from the current message.
    pub fn take_response(&mut self) -> Response<Body> {
        let headers = match &mut self.header_origin {
            HeaderOrigin::Response => std::mem::take(&mut self.headers),
            HeaderOrigin::Request { touched } => {
                let mut out = HeaderMap::with_capacity(touched.len() + 1);
                for name in touched.iter() {
                    for value in self.headers.get_all(name) {
                        out.append(name.clone(), value.clone());
                    }
                }
                if let Some(content_type) = self.headers.get(CONTENT_TYPE)
                    && !out.contains_key(CONTENT_TYPE)
                {
                    out.insert(CONTENT_TYPE, content_type.clone());
                }
                out
            }
        };
        let mut response = Response::new(std::mem::take(&mut self.body));
        *response.status_mut() = self.status();
        *response.headers_mut() = headers;
        response
    }
}
