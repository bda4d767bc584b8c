//! The publisher's metrics (`GET /metrics`, Prometheus text format).
//!
//! Changes and relay timings are recorded as they happen; the outbox
//! backlog and the age of its oldest unsent event are read from the
//! database at scrape time, so every replica reports the same truth.

use std::sync::Arc;

use artisync_http::HttpMetrics;
use artisync_ports::Outbox;
use artisync_telemetry::metrics::{Counter, Exposition, Family, Histogram};

/// What a change was, for `artisync_publisher_changes_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Create,
    /// A new revision (an identical body is not counted).
    Update,
    Deploy,
    Undeploy,
    Delete,
}

impl Change {
    fn label(self) -> &'static str {
        match self {
            Change::Create => "create",
            Change::Update => "update",
            Change::Deploy => "deploy",
            Change::Undeploy => "undeploy",
            Change::Delete => "delete",
        }
    }
}

/// Propagation buckets in seconds, from 250 µs to 2 min.
const PROPAGATION_BUCKETS: &[f64] = &[
    0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0, 60.0, 120.0,
];

#[derive(Debug)]
pub struct PublisherMetrics {
    changes: [Counter; 5],
    /// Requests and latency by method, route template and status.
    pub http: Arc<HttpMetrics>,
    /// From the start of a batch publish to the broker's last confirm.
    pub relay_publish_latency: Histogram,
    pub relay_events: Counter,
    pub relay_batches: Counter,
    pub relay_failures: Counter,
    /// Direct publishing: artifacts a gateway took, undeploys it took,
    /// artifacts it refused, and passes that failed (gateway down).
    pub push_deploys: Counter,
    pub push_undeploys: Counter,
    pub push_refused: Counter,
    pub push_failures: Counter,
    /// From a change's commit to a node applying it, by label.
    pub propagation: Family<Histogram>,
}

/// Labels beyond this many share the `label="other"` series, so that the
/// exposition stays bounded whatever labels are deployed to.
pub const MAX_PROPAGATION_LABELS: usize = 64;

impl Default for PublisherMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl PublisherMetrics {
    pub fn new() -> Self {
        PublisherMetrics {
            changes: Default::default(),
            http: Arc::new(HttpMetrics::default()),
            relay_publish_latency: Histogram::latency(),
            relay_events: Counter::default(),
            relay_batches: Counter::default(),
            relay_failures: Counter::default(),
            push_deploys: Counter::default(),
            push_undeploys: Counter::default(),
            push_refused: Counter::default(),
            push_failures: Counter::default(),
            propagation: Family::new(&["label"], || Histogram::new(PROPAGATION_BUCKETS)),
        }
    }

    /// One node applied a change `seconds` after its commit.
    pub fn propagated(&self, label: &str, seconds: f64) {
        let known = self
            .propagation
            .snapshot()
            .iter()
            .any(|(set, _)| set.first().is_some_and(|(_, v)| v == label));
        let label = if known || self.propagation.snapshot().len() < MAX_PROPAGATION_LABELS {
            label
        } else {
            "other"
        };
        self.propagation.with(&[label]).observe(seconds);
    }

    pub fn change(&self, change: Change) {
        self.changes[change as usize].inc();
    }

    pub fn changes(&self, change: Change) -> u64 {
        self.changes[change as usize].get()
    }

    /// The exposition, with the outbox backlog read now.
    pub async fn render(&self, outbox: &dyn Outbox) -> String {
        let mut e = Exposition::new();
        e.header_only(
            "artisync_publisher_changes_total",
            "Committed changes (each with its events in the outbox), by operation.",
            "counter",
        );
        for change in [
            Change::Create,
            Change::Update,
            Change::Deploy,
            Change::Undeploy,
            Change::Delete,
        ] {
            e.sample(
                "artisync_publisher_changes_total",
                &[("operation", change.label().to_owned())],
                self.changes(change) as f64,
            );
        }
        let up = match outbox.backlog().await {
            Ok(backlog) => {
                e.gauge(
                    "artisync_publisher_outbox_backlog",
                    "Events committed but not yet confirmed by the broker.",
                    backlog.unsent as f64,
                );
                e.gauge(
                    "artisync_publisher_outbox_oldest_unsent_age_seconds",
                    "Age of the oldest unsent event (0 when the outbox is drained).",
                    backlog.oldest_unsent.as_secs_f64(),
                );
                1.0
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the outbox backlog for /metrics");
                0.0
            }
        };
        e.gauge(
            "artisync_publisher_database_up",
            "Whether the outbox could be read for this scrape.",
            up,
        );
        e.histogram(
            "artisync_publisher_relay_publish_seconds",
            "Outbox relay: from the start of a batch publish to the broker's confirms.",
            &self.relay_publish_latency,
        );
        e.counter(
            "artisync_publisher_relay_events_total",
            "Events the relay published and the broker confirmed.",
            self.relay_events.get(),
        );
        e.counter(
            "artisync_publisher_relay_batches_total",
            "Batches the relay published.",
            self.relay_batches.get(),
        );
        e.counter(
            "artisync_publisher_relay_failures_total",
            "Relay passes that failed (broker or database down); the events stay unsent and are retried.",
            self.relay_failures.get(),
        );
        for (name, help, counter) in [
            (
                "artisync_publisher_push_deploys_total",
                "Direct publishing: artifacts pushed that a gateway now runs.",
                &self.push_deploys,
            ),
            (
                "artisync_publisher_push_undeploys_total",
                "Direct publishing: undeploys pushed to a gateway.",
                &self.push_undeploys,
            ),
            (
                "artisync_publisher_push_refused_total",
                "Direct publishing: artifacts a gateway refused (it keeps what it runs).",
                &self.push_refused,
            ),
            (
                "artisync_publisher_push_failures_total",
                "Direct publishing: passes that failed (gateway or database unreachable); retried with backoff.",
                &self.push_failures,
            ),
        ] {
            e.counter(name, help, counter.get());
        }
        e.histogram_family(
            "artisync_propagation_seconds",
            "From a change's commit to a gateway node applying it, per node, by label.",
            &self.propagation,
        );
        e.counter_family(
            "artisync_publisher_http_requests_total",
            "REST API requests by method, route template and status.",
            &self.http.requests,
        );
        e.histogram_family(
            "artisync_publisher_http_request_duration_seconds",
            "REST API latency by method and route template.",
            &self.http.latency,
        );
        e.finish()
    }
}
