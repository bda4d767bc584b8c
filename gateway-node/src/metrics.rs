//! The gateway's metrics, one registry per node: sync (deploys,
//! propagation, retries, reconcile, cache) here, data-plane traffic in the
//! cells of [`TrafficRegistry`] that each deployed API carries.

use std::sync::Arc;
use std::time::Duration;

use artisync_telemetry::metrics::{Counter, Exposition, Histogram};
use chrono::{DateTime, Utc};

use crate::dataplane::TrafficRegistry;

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
    /// Events refused for a missing or wrong publisher signature.
    pub events_unverified: Counter,
    /// Each API's data-plane traffic cells.
    pub traffic: TrafficRegistry,
    /// Data-plane requests no deployed API matched.
    pub unrouted: Arc<Counter>,
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
            events_unverified: Counter::default(),
            traffic: TrafficRegistry::default(),
            unrouted: Arc::new(Counter::default()),
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
        e.counter(
            "artisync_gateway_events_unverified_total",
            "Events refused because their publisher signature is missing or wrong (publisher_public_key set).",
            self.events_unverified.get(),
        );
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
