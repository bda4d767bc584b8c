//! The gateway's metrics: sync (deploys, propagation, retries, reconcile,
//! cache) in [`Metrics`], and data-plane traffic in [`ApiTraffic`] cells
//! that each deployed API carries, so a request records on atomics of the
//! API it was routed to without a lock or a lookup.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use artisync_shared::ApiId;
use artisync_shared::metrics::{Counter, Exposition, Histogram};
use chrono::{DateTime, Utc};

use crate::dataplane::RoutingTable;

#[derive(Debug)]
pub struct Metrics {
    /// Event received → revision applied.
    pub deploy_latency: Histogram,
    /// Event timestamp (the publisher's commit) → revision applied.
    pub propagation: Histogram,
    pub retries: Counter,
    pub reconcile_runs: Counter,
    pub reconcile_drift: Counter,
    pub reconcile_latency: Histogram,
    pub cache_hits: Counter,
    pub events_received: Counter,
    pub events_rejected: Counter,
}

impl Metrics {
    pub fn new() -> Self {
        Metrics {
            deploy_latency: Histogram::latency(),
            propagation: Histogram::latency(),
            retries: Counter::default(),
            reconcile_runs: Counter::default(),
            reconcile_drift: Counter::default(),
            reconcile_latency: Histogram::latency(),
            cache_hits: Counter::default(),
            events_received: Counter::default(),
            events_rejected: Counter::default(),
        }
    }

    pub fn observe_deploy(&self, since_event: Duration, event_timestamp: DateTime<Utc>) {
        self.deploy_latency.observe(since_event.as_secs_f64());
        let propagation = (Utc::now() - event_timestamp)
            .num_microseconds()
            .unwrap_or(0);
        self.propagation.observe(propagation as f64 / 1e6);
    }

    pub fn observe_reconcile(&self, took: Duration, drift: usize) {
        self.reconcile_runs.inc();
        self.reconcile_drift.inc_by(drift as u64);
        self.reconcile_latency.observe(took.as_secs_f64());
    }

    pub fn render(&self, e: &mut Exposition, deployed: usize, failed: usize) {
        e.gauge(
            "artisync_gateway_apis_deployed",
            "APIs this node serves.",
            deployed as f64,
        );
        e.gauge(
            "artisync_gateway_apis_failed",
            "APIs whose deployment failed after all retries.",
            failed as f64,
        );
        e.histogram(
            "artisync_gateway_deploy_latency_seconds",
            "From receiving an event to serving its revision.",
            &self.deploy_latency,
        );
        e.histogram(
            "artisync_gateway_propagation_seconds",
            "From the publisher's change to this node serving it.",
            &self.propagation,
        );
        e.counter(
            "artisync_gateway_deploy_retries_total",
            "Deploy attempts that failed and were scheduled again.",
            self.retries.get(),
        );
        e.counter(
            "artisync_gateway_reconcile_runs_total",
            "Reconcile runs against the traffic manager.",
            self.reconcile_runs.get(),
        );
        e.counter(
            "artisync_gateway_reconcile_drift_total",
            "Differences reconcile found and repaired.",
            self.reconcile_drift.get(),
        );
        e.histogram(
            "artisync_gateway_reconcile_duration_seconds",
            "How long a reconcile run took.",
            &self.reconcile_latency,
        );
        e.counter(
            "artisync_gateway_cache_hits_total",
            "APIs deployed from the disk cache.",
            self.cache_hits.get(),
        );
        e.counter(
            "artisync_gateway_events_received_total",
            "Deployment events received.",
            self.events_received.get(),
        );
        e.counter(
            "artisync_gateway_events_rejected_total",
            "Events that could not be parsed (dead-lettered).",
            self.events_rejected.get(),
        );
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

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
/// same cells (see [`ApiTraffic::for_api`]), so counters do not restart on
/// a redeploy.
#[derive(Debug)]
pub struct ApiTraffic {
    responses: [Counter; 5],
    latency: Histogram,
    upstream_errors: [Counter; 3],
}

/// The live cells by API. Only touched when an API revision is compiled
/// (deploy time), never per request.
static TRAFFIC: LazyLock<Mutex<TrafficRegistry>> = LazyLock::new(Default::default);

#[derive(Default)]
struct TrafficRegistry {
    cells: HashMap<ApiId, Weak<ApiTraffic>>,
    /// Size after the last sweep of dead entries (amortises sweeping).
    swept_at: usize,
}

/// Requests whose path matched no deployed API (answered 404).
pub static UNROUTED_REQUESTS: Counter = Counter::new();

impl ApiTraffic {
    fn new() -> Self {
        ApiTraffic {
            responses: Default::default(),
            latency: Histogram::latency(),
            upstream_errors: Default::default(),
        }
    }

    /// The cells of `api_id`: the ones a revision still deployed (or still
    /// finishing requests) uses, else new ones. The cells live as long as
    /// any revision of the API does.
    pub fn for_api(api_id: ApiId) -> Arc<ApiTraffic> {
        let mut registry = TRAFFIC.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(live) = registry.cells.get(&api_id).and_then(Weak::upgrade) {
            return live;
        }
        let cells = Arc::new(ApiTraffic::new());
        registry.cells.insert(api_id, Arc::downgrade(&cells));
        if registry.cells.len() > 2 * registry.swept_at.max(64) {
            registry.cells.retain(|_, w| w.strong_count() > 0);
            registry.swept_at = registry.cells.len();
        }
        cells
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
pub fn render_traffic(e: &mut Exposition, table: &RoutingTable) {
    let mut apis: Vec<_> = table.apis().collect();
    apis.sort_by(|a, b| a.context().cmp(b.context()));
    let labels = |api: &crate::dataplane::CompiledApi| {
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
        UNROUTED_REQUESTS.get(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_of_an_api_share_their_traffic_cells() {
        let id = ApiId::new_random();
        let first = ApiTraffic::for_api(id);
        first.observe(200, Duration::from_millis(3));
        let second = ApiTraffic::for_api(id);
        assert!(Arc::ptr_eq(&first, &second));
        second.observe(503, Duration::from_millis(1));
        second.upstream_error(UpstreamError::Timeout);
        assert_eq!(first.requests(), 2);
        assert_eq!(first.responses[1].get(), 1);
        assert_eq!(first.responses[4].get(), 1);
        drop((first, second));
        // Once no revision holds them, the API starts from zero.
        assert_eq!(ApiTraffic::for_api(id).requests(), 0);
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
