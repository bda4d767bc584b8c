//! A small Prometheus text-format registry: counters, gauges and
//! histograms on atomics, so recording never takes a lock.

use std::collections::HashMap;
use std::fmt::Write;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// A counter at zero, usable in a `static`.
    pub const fn new() -> Self {
        Counter(AtomicU64::new(0))
    }
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn inc_by(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// Latency buckets in seconds, from 100 µs to 60 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    /// Sum in nanoseconds-equivalent units (value × 1e9) to stay integral.
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn latency() -> Self {
        Self::new(LATENCY_BUCKETS)
    }

    pub fn observe(&self, value: f64) {
        let value = value.max(0.0);
        if let Some(i) = self.bounds.iter().position(|b| value <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add((value * 1e9) as u64, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// Label names with their values.
pub type LabelSet = Vec<(&'static str, String)>;

/// Metrics of one kind keyed by label values (a Prometheus metric family),
/// for label sets only known at run time (routes, status codes).
///
/// Recording hashes the label values and looks the cell up under a read
/// lock (a write lock only the first time a label set is seen), then
/// updates atomics: the cost does not grow with the number of label sets.
/// Meant for the control-plane services, not for the gateway's data
/// plane, which keeps its cells inside the routing table. Callers bound
/// the label values (fixed method names, route templates).
#[derive(Debug)]
pub struct Family<T> {
    labels: &'static [&'static str],
    /// Cells by the hash of their label values; a bucket holds the label
    /// sets sharing a hash.
    cells: RwLock<HashMap<u64, Vec<Cell<T>>>>,
    make: fn() -> T,
}

/// A label set's values and its cell.
type Cell<T> = (Vec<String>, Arc<T>);

fn hash_values(values: &[&str]) -> u64 {
    // A fixed-key hasher: label values come from fixed sets, not from
    // clients, so there is nothing to gain by choosing colliding ones.
    let mut h = std::hash::DefaultHasher::new();
    for v in values {
        v.hash(&mut h);
    }
    h.finish()
}

fn find<'a, T>(bucket: &'a [Cell<T>], values: &[&str]) -> Option<&'a Arc<T>> {
    bucket
        .iter()
        .find(|(k, _)| k.iter().map(String::as_str).eq(values.iter().copied()))
        .map(|(_, v)| v)
}

impl<T> Family<T> {
    pub fn new(labels: &'static [&'static str], make: fn() -> T) -> Self {
        Family {
            labels,
            cells: RwLock::new(HashMap::new()),
            make,
        }
    }

    /// The cell for these label values (in the order of the label names).
    pub fn with(&self, values: &[&str]) -> Arc<T> {
        debug_assert_eq!(values.len(), self.labels.len());
        let hash = hash_values(values);
        {
            let cells = self.cells.read().unwrap_or_else(|p| p.into_inner());
            if let Some(cell) = cells.get(&hash).and_then(|b| find(b, values)) {
                return Arc::clone(cell);
            }
        }
        let mut cells = self.cells.write().unwrap_or_else(|p| p.into_inner());
        let bucket = cells.entry(hash).or_default();
        if let Some(cell) = find(bucket, values) {
            return Arc::clone(cell);
        }
        let cell = Arc::new((self.make)());
        bucket.push((
            values.iter().map(|v| (*v).to_owned()).collect(),
            Arc::clone(&cell),
        ));
        cell
    }

    /// Every label set recorded so far, sorted, with its cell.
    pub fn snapshot(&self) -> Vec<(LabelSet, Arc<T>)> {
        let cells = self.cells.read().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<&Cell<T>> = cells.values().flatten().collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all.into_iter()
            .map(|(values, cell)| {
                (
                    self.labels
                        .iter()
                        .copied()
                        .zip(values.iter().cloned())
                        .collect(),
                    Arc::clone(cell),
                )
            })
            .collect()
    }
}

impl Family<Counter> {
    pub fn counters(labels: &'static [&'static str]) -> Self {
        Family::new(labels, Counter::default)
    }
}

impl Family<Histogram> {
    pub fn latencies(labels: &'static [&'static str]) -> Self {
        Family::new(labels, Histogram::latency)
    }
}

/// Builds a Prometheus text exposition.
#[derive(Default)]
pub struct Exposition(String);

impl Exposition {
    pub fn new() -> Self {
        Self::default()
    }

    fn header(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.header(name, help, "counter");
        let _ = writeln!(self.0, "{name} {value}");
    }

    pub fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.header(name, help, "gauge");
        let _ = writeln!(self.0, "{name} {value}");
    }

    /// A family of samples with labels: `(label pairs, value)`.
    pub fn family(
        &mut self,
        name: &str,
        help: &str,
        kind: &str,
        samples: &[(Vec<(&str, String)>, f64)],
    ) {
        self.header(name, help, kind);
        for (labels, value) in samples {
            let _ = writeln!(self.0, "{name}{{{}}} {value}", render_labels(labels));
        }
    }

    pub fn histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        self.header(name, help, "histogram");
        self.histogram_samples(name, &[], h);
    }

    /// Histogram samples for one label set (after a header).
    pub fn histogram_samples(&mut self, name: &str, labels: &[(&str, String)], h: &Histogram) {
        let mut cumulative = 0;
        let prefix = render_labels(labels);
        let sep = if prefix.is_empty() { "" } else { "," };
        for (bound, bucket) in h.bounds.iter().zip(&h.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(
                self.0,
                "{name}_bucket{{{prefix}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = h.count.load(Ordering::Relaxed);
        let _ = writeln!(self.0, "{name}_bucket{{{prefix}{sep}le=\"+Inf\"}} {count}");
        let sum = h.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let braces = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let _ = writeln!(self.0, "{name}_sum{} {sum}", braces(&prefix));
        let _ = writeln!(self.0, "{name}_count{} {count}", braces(&prefix));
    }

    /// A labelled counter family.
    pub fn counter_family(&mut self, name: &str, help: &str, family: &Family<Counter>) {
        self.header(name, help, "counter");
        for (labels, counter) in family.snapshot() {
            let _ = writeln!(
                self.0,
                "{name}{{{}}} {}",
                render_labels(&labels),
                counter.get()
            );
        }
    }

    /// A labelled histogram family.
    pub fn histogram_family(&mut self, name: &str, help: &str, family: &Family<Histogram>) {
        self.header(name, help, "histogram");
        for (labels, histogram) in family.snapshot() {
            self.histogram_samples(name, &labels, &histogram);
        }
    }

    /// A labelled counter sample (after a header).
    pub fn sample(&mut self, name: &str, labels: &[(&str, String)], value: f64) {
        if labels.is_empty() {
            let _ = writeln!(self.0, "{name} {value}");
        } else {
            let _ = writeln!(self.0, "{name}{{{}}} {value}", render_labels(labels));
        }
    }

    pub fn header_only(&mut self, name: &str, help: &str, kind: &str) {
        self.header(name, help, kind);
    }

    pub fn finish(self) -> String {
        self.0
    }
}

fn render_labels(labels: &[(&str, String)]) -> String {
    labels
        .iter()
        .map(|(k, v)| {
            let escaped = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{escaped}\"")
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let h = Histogram::latency();
        h.observe(0.0003);
        h.observe(2.0);
        let mut e = Exposition::new();
        e.counter("a_total", "A.", 3);
        e.histogram("lat_seconds", "Latency.", &h);
        e.family(
            "req_total",
            "R.",
            "counter",
            &[(vec![("api", "x\"y".into())], 2.0)],
        );
        let text = e.finish();
        assert!(text.contains("a_total 3"));
        assert!(text.contains("lat_seconds_bucket{le=\"0.0005\"} 1"));
        assert!(text.contains("lat_seconds_bucket{le=\"+Inf\"} 2"));
        assert!(text.contains("lat_seconds_count 2"));
        assert!(text.contains("req_total{api=\"x\\\"y\"} 2"));
    }

    #[test]
    fn families_render_every_label_set() {
        let requests = Family::counters(&["route", "status"]);
        requests.with(&["/a/{id}", "200"]).inc();
        requests.with(&["/a/{id}", "200"]).inc();
        requests.with(&["/b", "404"]).inc();
        let latency = Family::latencies(&["route"]);
        latency.with(&["/b"]).observe(0.002);
        let mut e = Exposition::new();
        e.counter_family("http_requests_total", "R.", &requests);
        e.histogram_family("http_seconds", "L.", &latency);
        let text = e.finish();
        assert!(
            text.contains("http_requests_total{route=\"/a/{id}\",status=\"200\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("http_requests_total{route=\"/b\",status=\"404\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("http_seconds_bucket{route=\"/b\",le=\"0.0025\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("http_seconds_count{route=\"/b\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn each_label_set_has_one_cell_and_snapshots_are_sorted() {
        let family = Family::counters(&["route", "status"]);
        for i in (0..500).rev() {
            family.with(&[&format!("/r{i}"), "200"]).inc();
            family.with(&[&format!("/r{i}"), "200"]).inc();
            // Values that would collide if concatenated.
            family.with(&[&format!("/r{i}2"), "00"]).inc();
        }
        let snapshot = family.snapshot();
        assert_eq!(snapshot.len(), 1000);
        let keys: Vec<_> = snapshot.iter().map(|(l, _)| l.clone()).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(family.with(&["/r7", "200"]).get(), 2);
        assert_eq!(family.with(&["/r72", "00"]).get(), 1);
    }
}
