//! The benchmark suite behind `bench` (see `src/bin/bench.rs`): common
//! statistics, result records, helper processes (etcd, nginx, wrk) and one
//! module per scenario.

pub mod backing;
pub mod bulk;
pub mod dataplane;
pub mod floor;
pub mod propagation;
pub mod startup;
pub mod tools;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use artisync_e2e::TestEnv;
use artisync_e2e::cluster::GatewaySpec;
use serde_json::{Value, json};

/// The label every benchmark gateway serves.
pub const LABEL: &str = "bench";

/// A latency distribution, in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    pub n: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Stats {
    pub fn from_durations(samples: &[Duration]) -> Stats {
        Stats::from_ms(samples.iter().map(|d| d.as_secs_f64() * 1e3).collect())
    }

    pub fn from_ms(mut v: Vec<f64>) -> Stats {
        if v.is_empty() {
            return Stats::default();
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let pct = |p: f64| {
            let rank = ((v.len() as f64) * p).ceil() as usize;
            v[rank.clamp(1, v.len()) - 1]
        };
        Stats {
            n: v.len(),
            p50: pct(0.50),
            p90: pct(0.90),
            p99: pct(0.99),
            max: v[v.len() - 1],
            mean: v.iter().sum::<f64>() / v.len() as f64,
        }
    }

    fn json(&self) -> Value {
        json!({
            "n": self.n,
            "p50_ms": round3(self.p50),
            "p90_ms": round3(self.p90),
            "p99_ms": round3(self.p99),
            "max_ms": round3(self.max),
            "mean_ms": round3(self.mean),
        })
    }
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// One target of the issue, checked against the measured figure.
#[derive(Debug, Clone)]
pub struct Target {
    pub what: String,
    pub measured: f64,
    pub limit: f64,
    pub unit: &'static str,
    /// `true`: measured must be at most the limit; `false`: at least.
    pub at_most: bool,
}

impl Target {
    pub fn at_most(what: &str, measured: f64, limit: f64, unit: &'static str) -> Target {
        Target {
            what: what.into(),
            measured,
            limit,
            unit,
            at_most: true,
        }
    }

    pub fn at_least(what: &str, measured: f64, limit: f64, unit: &'static str) -> Target {
        Target {
            what: what.into(),
            measured,
            limit,
            unit,
            at_most: false,
        }
    }

    pub fn met(&self) -> bool {
        if self.at_most {
            self.measured <= self.limit
        } else {
            self.measured >= self.limit
        }
    }
}

/// What one run of a scenario measured.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Latency distributions, in order of appearance.
    pub measures: Vec<(String, Stats)>,
    /// Single figures: (name, value, unit).
    pub figures: Vec<(String, f64, &'static str)>,
    pub notes: Vec<String>,
}

impl Outcome {
    pub fn measure(&mut self, name: impl Into<String>, stats: Stats) {
        self.measures.push((name.into(), stats));
    }

    pub fn figure(&mut self, name: impl Into<String>, value: f64, unit: &'static str) {
        self.figures.push((name.into(), value, unit));
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    pub fn get_measure(&self, name: &str) -> Option<Stats> {
        self.measures
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| *s)
    }

    pub fn get(&self, name: &str) -> Option<f64> {
        self.figures
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, v, _)| *v)
    }

    /// Appends every measure and figure of `other` (names must differ).
    pub fn extend(&mut self, other: Outcome) {
        self.measures.extend(other.measures);
        self.figures.extend(other.figures);
        self.notes.extend(other.notes);
    }

    /// Medians, field by field, of several runs of the same scenario.
    pub fn median_of(runs: &[Outcome]) -> Outcome {
        let Some(first) = runs.first() else {
            return Outcome::default();
        };
        let mut out = Outcome::default();
        for (name, _) in &first.measures {
            let all: Vec<Stats> = runs.iter().filter_map(|r| r.get_measure(name)).collect();
            let f = |g: fn(&Stats) -> f64| median(all.iter().map(g).collect());
            out.measure(
                name.clone(),
                Stats {
                    n: all.iter().map(|s| s.n).sum(),
                    p50: f(|s| s.p50),
                    p90: f(|s| s.p90),
                    p99: f(|s| s.p99),
                    max: f(|s| s.max),
                    mean: f(|s| s.mean),
                },
            );
        }
        for (name, _, unit) in &first.figures {
            let all: Vec<f64> = runs.iter().filter_map(|r| r.get(name)).collect();
            out.figure(name.clone(), median(all), unit);
        }
        for r in runs {
            for n in &r.notes {
                if !out.notes.contains(n) {
                    out.notes.push(n.clone());
                }
            }
        }
        out
    }
}

/// The finished result of a scenario, ready to print and record.
pub struct Report {
    pub scenario: String,
    pub parameters: Value,
    pub runs: Vec<Outcome>,
    pub combined: Outcome,
    /// The measure whose percentiles are the headline of the JSON line.
    pub headline: Option<String>,
    /// The figure that is the headline throughput.
    pub throughput: Option<String>,
    /// The figure that is the headline RSS (MB).
    pub rss: Option<String>,
    pub targets: Vec<Target>,
}

impl Report {
    pub fn new(scenario: &str, parameters: Value, runs: Vec<Outcome>) -> Report {
        let combined = Outcome::median_of(&runs);
        Report {
            scenario: scenario.into(),
            parameters,
            runs,
            combined,
            headline: None,
            throughput: None,
            rss: None,
            targets: Vec::new(),
        }
    }

    pub fn print(&self) {
        println!();
        println!(
            "== {} == {} (median of {} run{})",
            self.scenario,
            self.parameters,
            self.runs.len(),
            if self.runs.len() == 1 { "" } else { "s" }
        );
        if !self.combined.measures.is_empty() {
            println!(
                "{:<56} {:>8} {:>9} {:>9} {:>9} {:>9}",
                "latency (ms)", "n", "p50", "p90", "p99", "max"
            );
            for (name, s) in &self.combined.measures {
                println!(
                    "{:<56} {:>8} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
                    name, s.n, s.p50, s.p90, s.p99, s.max
                );
            }
        }
        if !self.combined.figures.is_empty() {
            println!("{:<56} {:>14}", "figure", "value");
            for (name, v, unit) in &self.combined.figures {
                println!("{:<56} {:>14} {}", name, fmt_value(*v), unit);
            }
        }
        if !self.targets.is_empty() {
            println!(
                "{:<52} {:>12} {:>12}  result",
                "target", "measured", "limit"
            );
            for t in &self.targets {
                println!(
                    "{:<52} {:>12} {:>12}  {}",
                    t.what,
                    format!("{} {}", fmt_value(t.measured), t.unit),
                    format!(
                        "{} {} {}",
                        if t.at_most { "<=" } else { ">=" },
                        fmt_value(t.limit),
                        t.unit
                    ),
                    if t.met() { "met" } else { "MISSED" }
                );
            }
        }
        for n in &self.combined.notes {
            println!("note: {n}");
        }
    }

    pub fn json(&self) -> Value {
        let head = self
            .headline
            .as_deref()
            .and_then(|h| self.combined.get_measure(h))
            .unwrap_or_default();
        let figure = |k: &Option<String>| {
            k.as_deref()
                .and_then(|k| self.combined.get(k))
                .map(round3)
                .map_or(Value::Null, Value::from)
        };
        let measures: serde_json::Map<String, Value> = self
            .combined
            .measures
            .iter()
            .map(|(n, s)| (n.clone(), s.json()))
            .collect();
        let figures: serde_json::Map<String, Value> = self
            .combined
            .figures
            .iter()
            .map(|(n, v, _)| (n.clone(), json!(round3(*v))))
            .collect();
        let per_run: Vec<Value> = self
            .runs
            .iter()
            .map(|r| {
                let m: serde_json::Map<String, Value> = r
                    .measures
                    .iter()
                    .map(|(n, s)| (n.clone(), s.json()))
                    .collect();
                let f: serde_json::Map<String, Value> = r
                    .figures
                    .iter()
                    .map(|(n, v, _)| (n.clone(), json!(round3(*v))))
                    .collect();
                json!({"measures": m, "figures": f})
            })
            .collect();
        let targets: Vec<Value> = self
            .targets
            .iter()
            .map(|t| {
                json!({
                    "target": t.what, "measured": round3(t.measured), "limit": t.limit,
                    "unit": t.unit, "at_most": t.at_most, "met": t.met(),
                })
            })
            .collect();
        json!({
            "scenario": self.scenario,
            "parameters": self.parameters,
            "runs": self.runs.len(),
            "headline": self.headline,
            "p50_ms": round3(head.p50),
            "p90_ms": round3(head.p90),
            "p99_ms": round3(head.p99),
            "max_ms": round3(head.max),
            "throughput": figure(&self.throughput),
            "throughput_name": self.throughput,
            "rss_mb": figure(&self.rss),
            "rss_name": self.rss,
            "measures": measures,
            "figures": figures,
            "targets": targets,
            "notes": self.combined.notes,
            "per_run": per_run,
            "commit": git_commit(),
            "timestamp": chrono::Utc::now().to_rfc3339(),
            "machine": machine(),
        })
    }

    /// Prints the table and appends the JSON line to `out`.
    pub fn emit(&self, out: &Path) -> anyhow::Result<()> {
        self.print();
        let line = self.json().to_string();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)
            .with_context(|| format!("opening {}", out.display()))?;
        writeln!(f, "{line}")?;
        Ok(())
    }
}

fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "n/a".into()
    } else if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// `git rev-parse --short HEAD`, with `-dirty` when the tree has changes.
/// `BENCH_GIT_COMMIT` overrides it (a build from an exported tree).
pub fn git_commit() -> String {
    if let Ok(c) = std::env::var("BENCH_GIT_COMMIT") {
        return c;
    }
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let head = run(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty =
        run(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    if dirty { format!("{head}-dirty") } else { head }
}

pub fn machine() -> Value {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_default();
    let mem_mb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024);
    // Other work on the machine skews every figure: record it.
    let loadavg = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    json!({"cpus": cpus, "cpu_model": model, "mem_mb": mem_mb, "loadavg": loadavg})
}

/// (VmHWM, VmRSS) of a process, in MB.
pub fn rss_mb(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

/// CPU time (user + system) a process has used so far, in ms.
pub fn cpu_ms(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields start after its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // Clock ticks are 100 per second on Linux.
    Some((utime + stime) * 10.0)
}

/// CPU time used by every process whose command is `comm` (e.g. all
/// PostgreSQL backends), in ms.
pub fn cpu_ms_of_command(comm: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm)
        })
        .filter_map(cpu_ms)
        .sum()
}

/// Benchmark gateway settings: the product's status interval (10 s), and
/// short retries so a start-up without the traffic manager gives up fast.
pub fn bench_gateway(env: &TestEnv, id: &str) -> anyhow::Result<GatewaySpec> {
    let mut gw = env.gateway(id, &[LABEL])?;
    gw.status_interval_ms = 10_000;
    gw.retry_duration_ms = 200;
    gw.max_retry_count = 3;
    Ok(gw)
}

/// Copies a failed scenario's cluster logs to `bench-logs/<scenario>-<time>/`
/// before the environment (and its work directory) is dropped.
pub fn keep_logs(env: &TestEnv, scenario: &str) {
    let from = env.work_dir.join("logs");
    let to = PathBuf::from("bench-logs").join(format!(
        "{scenario}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S")
    ));
    let Ok(entries) = std::fs::read_dir(&from) else {
        return;
    };
    if std::fs::create_dir_all(&to).is_err() {
        return;
    }
    for entry in entries.flatten() {
        let _ = std::fs::copy(entry.path(), to.join(entry.file_name()));
    }
    eprintln!("the cluster's logs are in {}", to.display());
}

/// A work directory for helper processes (nginx, etcd), removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> anyhow::Result<TempDir> {
        let dir = std::env::temp_dir().join(format!(
            "artisync-bench-{what}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The `apis_deployed` gauge of a gateway's /metrics.
pub async fn deployed_count(http: &reqwest::Client, admin_port: u16) -> Option<u64> {
    let text = http
        .get(format!("http://127.0.0.1:{admin_port}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with("artisync_gateway_apis_deployed"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
}

/// Runs `count` create+deploy pairs with `clients` concurrent clients;
/// `api(i)` gives the XML of API `i`. Returns (create latencies, deploy
/// latencies, wall time from the first call to the last answer).
pub async fn create_and_deploy(
    publisher: &artisync_cli::client::PublisherClient,
    labels: &[String],
    count: usize,
    clients: usize,
    api: impl Fn(usize) -> String + Send + Sync + 'static,
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>, Duration)> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = Arc::new(AtomicUsize::new(0));
    let api = Arc::new(api);
    let labels: Arc<Vec<String>> = Arc::new(labels.to_vec());
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients.max(1))
        .map(|_| {
            let next = next.clone();
            let api = api.clone();
            let labels = labels.clone();
            let publisher = publisher.clone();
            tokio::spawn(async move {
                let mut creates = Vec::new();
                let mut deploys = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    let xml = api(i);
                    let t = Instant::now();
                    let created = publisher.create_api(&xml).await?;
                    if created.status.as_u16() != 201 {
                        bail!("create answered {}: {}", created.status, created.text);
                    }
                    creates.push(t.elapsed());
                    let id = created.body["id"]
                        .as_str()
                        .context("no id in the create answer")?
                        .to_owned();
                    let t = Instant::now();
                    let label_refs: Vec<&str> = labels.iter().map(String::as_str).collect();
                    let d = publisher.deploy(&id, &label_refs, None).await?;
                    if !d.status.is_success() {
                        bail!("deploy answered {}: {}", d.status, d.text);
                    }
                    deploys.push(t.elapsed());
                }
                Ok::<_, anyhow::Error>((creates, deploys))
            })
        })
        .collect();
    let mut creates = Vec::with_capacity(count);
    let mut deploys = Vec::with_capacity(count);
    for t in tasks {
        let (c, d) = t.await??;
        creates.extend(c);
        deploys.extend(d);
    }
    Ok((creates, deploys, start.elapsed()))
}
