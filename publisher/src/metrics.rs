//! The publisher's metrics (`GET /metrics`, Prometheus text format).
//!
//! Changes and relay timings are recorded as they happen; the outbox
//! backlog and the age of its oldest unsent event are read from the
//! database at scrape time, so every replica reports the same truth.

use artisync_shared::metrics::{Counter, Exposition, Family, Histogram};
use sqlx::PgPool;

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

#[derive(Debug)]
pub struct PublisherMetrics {
    changes: [Counter; 5],
    /// Requests by method, matched route template and status.
    pub http_requests: Family<Counter>,
    /// Request latency by method and matched route template.
    pub http_latency: Family<Histogram>,
    /// From the start of a batch publish to the broker's last confirm.
    pub relay_publish_latency: Histogram,
    pub relay_events: Counter,
    pub relay_batches: Counter,
    pub relay_failures: Counter,
}

impl Default for PublisherMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl PublisherMetrics {
    pub fn new() -> Self {
        PublisherMetrics {
            changes: Default::default(),
            http_requests: Family::counters(&["method", "route", "status"]),
            http_latency: Family::latencies(&["method", "route"]),
            relay_publish_latency: Histogram::latency(),
            relay_events: Counter::default(),
            relay_batches: Counter::default(),
            relay_failures: Counter::default(),
        }
    }

    pub fn change(&self, change: Change) {
        self.changes[change as usize].inc();
    }

    pub fn changes(&self, change: Change) -> u64 {
        self.changes[change as usize].get()
    }

    /// The exposition, with the outbox read from `pool` now.
    pub async fn render(&self, pool: &PgPool) -> String {
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
        let outbox = sqlx::query_as::<_, (i64, Option<f64>)>(
            "SELECT count(*), EXTRACT(EPOCH FROM now() - min(created_at))::float8
             FROM outbox WHERE sent_at IS NULL",
        )
        .fetch_one(pool)
        .await;
        let up = match &outbox {
            Ok((backlog, oldest)) => {
                e.gauge(
                    "artisync_publisher_outbox_backlog",
                    "Events committed but not yet confirmed by the broker.",
                    *backlog as f64,
                );
                e.gauge(
                    "artisync_publisher_outbox_oldest_unsent_age_seconds",
                    "Age of the oldest unsent event (0 when the outbox is drained).",
                    oldest.unwrap_or(0.0).max(0.0),
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
        e.counter_family(
            "artisync_publisher_http_requests_total",
            "REST API requests by method, route template and status.",
            &self.http_requests,
        );
        e.histogram_family(
            "artisync_publisher_http_request_duration_seconds",
            "REST API latency by method and route template.",
            &self.http_latency,
        );
        e.finish()
    }
}
