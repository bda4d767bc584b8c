//! One span per request, in the caller's trace (W3C `traceparent`), and
//! the request metrics by method, route template and status.

use std::sync::Arc;
use std::time::Instant;

use artisync_telemetry::metrics::{Counter, Family, Histogram};
use artisync_telemetry::{TRACEPARENT, TraceParent};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// Requests and latency of one HTTP API, labelled by method, matched
/// route template (never the raw path) and status.
#[derive(Debug)]
pub struct HttpMetrics {
    pub requests: Family<Counter>,
    pub latency: Family<Histogram>,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        HttpMetrics {
            requests: Family::counters(&["method", "route", "status"]),
            latency: Family::latencies(&["method", "route"]),
        }
    }
}

/// The method as a metric label: the standard ones by name, anything else
/// as `OTHER`, so that clients cannot grow the label set.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// The state of [`observe_requests`].
#[derive(Debug, Clone)]
pub struct RequestObserver {
    pub metrics: Arc<HttpMetrics>,
    /// Start a trace for requests that bring none, and answer with the
    /// `traceparent` of this request's span (the publisher does, so that a
    /// change can be followed from its answer); otherwise only continue
    /// the traces callers send.
    pub start_traces: bool,
}

/// The request continues with a `traceparent` naming this request's span,
/// which handlers store with what they cause (outbox events) or pass on.
pub async fn observe_requests(
    State(observer): State<RequestObserver>,
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
    let method = method_label(request.method());
    let span = tracing::info_span!(
        "request",
        method,
        route = %route,
        trace_id = tracing::field::Empty,
    );
    let mut answer_header = None;
    if incoming.is_some() || observer.start_traces {
        let ours = artisync_telemetry::continue_trace(&span, incoming.as_ref());
        span.record("trace_id", tracing::field::display(&ours.trace_id));
        if let Ok(value) = HeaderValue::from_str(&ours.to_string()) {
            request.headers_mut().insert(TRACEPARENT, value.clone());
            answer_header = observer.start_traces.then_some(value);
        }
    } else {
        request.headers_mut().remove(TRACEPARENT);
    }
    let mut response = next.run(request).instrument(span.clone()).await;
    if let Some(value) = answer_header {
        response.headers_mut().insert(TRACEPARENT, value);
    }
    let status = response.status();
    span.in_scope(|| tracing::debug!(status = status.as_u16(), "answered"));
    observer
        .metrics
        .requests
        .with(&[method, &route, status.as_str()])
        .inc();
    observer
        .metrics
        .latency
        .with(&[method, &route])
        .observe(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        let odd = Method::from_bytes(b"XYZZY").unwrap();
        assert_eq!(method_label(&odd), "OTHER");
    }
}
