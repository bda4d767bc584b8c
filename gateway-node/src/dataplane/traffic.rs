//! The data plane's own metrics: per API, responses by status class,
//! latency and endpoint failures, on cells each deployed API carries, so a
//! request records on atomics of the API it was routed to without a lock
//! or a lookup.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use artisync_domain::ApiId;
use artisync_telemetry::metrics::{Counter, Exposition, Histogram};

use super::routing::{CompiledApi, RoutingTable};

/// Status classes counted per API: `1xx` .. `5xx`.
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Why a call to an endpoint failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamError {
    /// Connection refused, reset, DNS failure... (502).
    Unreachable,
    /// No answer within the endpoint's timeout (504).
    Timeout,
    /// The endpoint URL is unusable (502).
    BadUrl,
}

impl UpstreamError {
    const ALL: [UpstreamError; 3] = [
        UpstreamError::Unreachable,
        UpstreamError::Timeout,
        UpstreamError::BadUrl,
    ];

    fn label(self) -> &'static str {
        match self {
            UpstreamError::Unreachable => "unreachable",
            UpstreamError::Timeout => "timeout",
            UpstreamError::BadUrl => "bad_url",
        }
    }
}

/// The data-plane traffic of one API. Every revision of the API shares the
/// same cells (see [`TrafficRegistry::for_api`]), so counters do not
/// restart on a redeploy.
#[derive(Debug)]
pub struct ApiTraffic {
    responses: [Counter; 5],
    latency: Histogram,
    upstream_errors: [Counter; 3],
}

/// The live cells of one node's APIs, by API. Only touched when an API
/// revision is compiled (deploy time), never per request.
#[derive(Debug, Default)]
pub struct TrafficRegistry {
    cells: Mutex<Cells>,
}

#[derive(Debug, Default)]
struct Cells {
    by_api: HashMap<ApiId, Weak<ApiTraffic>>,
    /// Size after the last sweep of dead entries (amortises sweeping).
    swept_at: usize,
}

impl TrafficRegistry {
    /// The cells of `api_id`: the ones a revision still deployed (or still
    /// finishing requests) uses, else new ones. The cells live as long as
    /// any revision of the API does.
    pub fn for_api(&self, api_id: ApiId) -> Arc<ApiTraffic> {
        let mut cells = self.cells.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(live) = cells.by_api.get(&api_id).and_then(Weak::upgrade) {
            return live;
        }
        let fresh = Arc::new(ApiTraffic::new());
        cells.by_api.insert(api_id, Arc::downgrade(&fresh));
        if cells.by_api.len() > 2 * cells.swept_at.max(64) {
            cells.by_api.retain(|_, w| w.strong_count() > 0);
            cells.swept_at = cells.by_api.len();
        }
        fresh
    }
}

impl Default for ApiTraffic {
    fn default() -> Self {
        Self::new()
    }
}

impl ApiTraffic {
    fn new() -> Self {
        ApiTraffic {
            responses: Default::default(),
            latency: Histogram::latency(),
            upstream_errors: Default::default(),
        }
    }

    /// One answered request: its status and the time until its response
    /// head was ready (the body may stream on).
    #[inline]
    pub fn observe(&self, status: u16, elapsed: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.responses[class].inc();
        self.latency.observe(elapsed.as_secs_f64());
    }

    #[inline]
    pub fn upstream_error(&self, kind: UpstreamError) {
        self.upstream_errors[kind as usize].inc();
    }

    pub fn requests(&self) -> u64 {
        self.responses.iter().map(Counter::get).sum()
    }
}

/// Renders the data-plane metrics of the APIs in `table` (what is deployed
/// now), and the requests no API matched.
pub fn render_traffic(e: &mut Exposition, table: &RoutingTable, unrouted: &Counter) {
    let mut apis: Vec<_> = table.apis().collect();
    apis.sort_by(|a, b| a.context().cmp(b.context()));
    let labels = |api: &CompiledApi| {
        vec![
            ("api_id", api.api_id.to_string()),
            ("api", api.name().to_owned()),
            (
                "version",
                api.artifact.api.version.clone().unwrap_or_default(),
            ),
        ]
    };
    e.header_only(
        "artisync_gateway_requests_total",
        "Data-plane requests answered, by API and status class.",
        "counter",
    );
    for api in &apis {
        for (class, counter) in STATUS_CLASSES.iter().zip(&api.traffic.responses) {
            let mut l = labels(api);
            l.push(("status", (*class).to_owned()));
            e.sample("artisync_gateway_requests_total", &l, counter.get() as f64);
        }
    }
    e.header_only(
        "artisync_gateway_request_duration_seconds",
        "Data-plane latency until the response head, by API (mediation and endpoint call included).",
        "histogram",
    );
    for api in &apis {
        e.histogram_samples(
            "artisync_gateway_request_duration_seconds",
            &labels(api),
            &api.traffic.latency,
        );
    }
    e.header_only(
        "artisync_gateway_upstream_errors_total",
        "Endpoint calls that failed, by API and kind (unreachable, timeout, bad_url).",
        "counter",
    );
    for api in &apis {
        for kind in UpstreamError::ALL {
            let mut l = labels(api);
            l.push(("kind", kind.label().to_owned()));
            e.sample(
                "artisync_gateway_upstream_errors_total",
                &l,
                api.traffic.upstream_errors[kind as usize].get() as f64,
            );
        }
    }
    e.counter(
        "artisync_gateway_unrouted_requests_total",
        "Data-plane requests whose path matched no deployed API (404).",
        unrouted.get(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_of_an_api_share_their_traffic_cells() {
        let registry = TrafficRegistry::default();
        let id = ApiId::new_random();
        let first = registry.for_api(id);
        first.observe(200, Duration::from_millis(3));
        let second = registry.for_api(id);
        assert!(Arc::ptr_eq(&first, &second));
        second.observe(503, Duration::from_millis(1));
        second.upstream_error(UpstreamError::Timeout);
        assert_eq!(first.requests(), 2);
        assert_eq!(first.responses[1].get(), 1);
        assert_eq!(first.responses[4].get(), 1);
        drop((first, second));
        // Once no revision holds them, the API starts from zero.
        assert_eq!(registry.for_api(id).requests(), 0);
        // Another node's registry has cells of its own.
        let other = TrafficRegistry::default();
        let mine = registry.for_api(id);
        mine.observe(200, Duration::ZERO);
        assert_eq!(other.for_api(id).requests(), 0);
    }

    #[test]
    fn odd_statuses_fall_into_the_nearest_class() {
        let t = ApiTraffic::new();
        t.observe(99, Duration::ZERO);
        t.observe(600, Duration::ZERO);
        assert_eq!(t.responses[0].get(), 1);
        assert_eq!(t.responses[4].get(), 1);
    }
}
