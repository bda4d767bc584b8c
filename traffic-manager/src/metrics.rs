//! The traffic manager's metrics (`GET /metrics`, Prometheus text format):
//! requests by endpoint (the matched route template) and status, and the
//! artifact bytes served to gateways.

use std::sync::Arc;

use artisync_http::HttpMetrics;
use artisync_telemetry::metrics::{Counter, Exposition};

#[derive(Debug)]
pub struct TrafficManagerMetrics {
    /// Requests and latency by method, route template and status.
    pub http: Arc<HttpMetrics>,
    /// Artifact XML bytes sent by `runtime-artifacts/{apiId}`.
    pub artifact_bytes_single: Counter,
    /// Bytes streamed by `retrieve-runtime-artifacts` (NDJSON lines).
    pub artifact_bytes_bulk: Counter,
    /// Artifacts served, one request or bulk line each.
    pub artifacts_single: Counter,
    pub artifacts_bulk: Counter,
}

impl Default for TrafficManagerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl TrafficManagerMetrics {
    pub fn new() -> Self {
        TrafficManagerMetrics {
            http: Arc::new(HttpMetrics::default()),
            artifact_bytes_single: Counter::default(),
            artifact_bytes_bulk: Counter::default(),
            artifacts_single: Counter::default(),
            artifacts_bulk: Counter::default(),
        }
    }

    pub fn render(&self) -> String {
        let mut e = Exposition::new();
        e.counter_family(
            "artisync_traffic_manager_http_requests_total",
            "Requests by method, endpoint (route template) and status.",
            &self.http.requests,
        );
        e.histogram_family(
            "artisync_traffic_manager_http_request_duration_seconds",
            "Latency until the response head, by method and endpoint.",
            &self.http.latency,
        );
        e.header_only(
            "artisync_traffic_manager_artifact_bytes_served_total",
            "Artifact bytes sent to gateways, by mode (single: runtime-artifacts, bulk: retrieve-runtime-artifacts).",
            "counter",
        );
        for (mode, counter) in [
            ("single", &self.artifact_bytes_single),
            ("bulk", &self.artifact_bytes_bulk),
        ] {
            e.sample(
                "artisync_traffic_manager_artifact_bytes_served_total",
                &[("mode", mode.to_owned())],
                counter.get() as f64,
            );
        }
        e.header_only(
            "artisync_traffic_manager_artifacts_served_total",
            "Artifacts sent to gateways, by mode.",
            "counter",
        );
        for (mode, counter) in [
            ("single", &self.artifacts_single),
            ("bulk", &self.artifacts_bulk),
        ] {
            e.sample(
                "artisync_traffic_manager_artifacts_served_total",
                &[("mode", mode.to_owned())],
                counter.get() as f64,
            );
        }
        e.finish()
    }
}
