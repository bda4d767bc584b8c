//! The artisync benchmark suite: real binaries, PostgreSQL and RabbitMQ.
//!
//! ```text
//! cargo build --release --workspace --bins
//! CARGO_TARGET_DIR=... cargo run --release -p artisync-e2e --bin bench -- <scenario> [--quick] [--runs N] [--out FILE]
//! ```
//!
//! Scenarios: `floor`, `propagation`, `fanout`, `bulk`, `startup`,
//! `dataplane`, `redeploy`, `all`. Each prints a table and appends one JSON
//! line to the results file (`bench-results.jsonl` by default). Figures are
//! medians of `--runs` runs (default 3; 1 with `--quick`). Targets from the
//! issue are printed as met or missed; the exit status does not depend on
//! them, only on whether the scenarios ran. `scripts/bench.sh` builds,
//! installs the tools (wrk, nginx-light, etcd) and runs everything.

#![forbid(unsafe_code)]

#[path = "../bench/mod.rs"]
mod bench;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use bench::tools::WrkLoad;
use bench::{Outcome, Report, Target, floor, propagation};
use clap::{Parser, ValueEnum};
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Floor,
    Propagation,
    Fanout,
    Bulk,
    Apply,
    Startup,
    Dataplane,
    Redeploy,
    All,
}

#[derive(Debug, Parser)]
#[command(name = "bench", about = "artisync benchmark suite")]
struct Cli {
    /// Which scenario to run.
    #[arg(value_enum)]
    scenario: Scenario,
    /// Every scenario small: checks that the suite works (CI).
    #[arg(long)]
    quick: bool,
    /// Results file; one JSON line is appended per scenario.
    #[arg(long, default_value = "bench-results.jsonl")]
    out: PathBuf,
    /// Runs per scenario; figures are medians (default 3, 1 with --quick).
    #[arg(long)]
    runs: Option<usize>,
    /// Samples of each floor measurement (default 1000).
    #[arg(long)]
    floor_iterations: Option<usize>,
    /// Sequential updates per propagation run (default 1000).
    #[arg(long)]
    iterations: Option<usize>,
    /// Gateway counts for propagation (default 1,10).
    #[arg(long, value_delimiter = ',')]
    gateways: Option<Vec<usize>>,
    /// Gateway processes for fan-out (default 50).
    #[arg(long)]
    fanout_gateways: Option<usize>,
    /// Updates per fan-out run (default 200).
    #[arg(long)]
    fanout_iterations: Option<usize>,
    /// APIs per bulk run (default 1000).
    #[arg(long)]
    bulk_apis: Option<usize>,
    /// Gateways of the bulk scenario (default 10).
    #[arg(long)]
    bulk_gateways: Option<usize>,
    /// API counts of the apply scenario, each one call (default 1000,10000).
    #[arg(long, value_delimiter = ',')]
    apply_apis: Option<Vec<usize>>,
    /// Concurrent publisher clients for bulk and seeding (default 16).
    #[arg(long)]
    clients: Option<usize>,
    /// APIs deployed before the start-up measurements (default 10000).
    #[arg(long)]
    startup_apis: Option<usize>,
    /// Seconds per wrk run (default 10; redeploy: 15).
    #[arg(long)]
    duration: Option<u64>,
    /// wrk connections of the throughput runs (default 64).
    #[arg(long)]
    connections: Option<u32>,
    /// wrk connections of the latency runs (default 8).
    #[arg(long)]
    latency_connections: Option<u32>,
    /// wrk threads (default 2).
    #[arg(long)]
    threads: Option<u32>,
    /// Revisions deployed under load (default 100).
    #[arg(long)]
    redeploys: Option<usize>,
}

impl Cli {
    fn pick<T: Copy>(&self, set: Option<T>, full: T, quick: T) -> T {
        set.unwrap_or(if self.quick { quick } else { full })
    }
    fn runs(&self) -> usize {
        self.pick(self.runs, 3, 1).max(1)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("serve-blob") {
        return floor::serve_blob().await;
    }
    let cli = Cli::parse();
    println!(
        "artisync bench: commit {}, machine {}, results -> {}",
        bench::git_commit(),
        bench::machine(),
        cli.out.display()
    );
    let scenarios: Vec<Scenario> = match cli.scenario {
        Scenario::All => vec![
            Scenario::Floor,
            Scenario::Propagation,
            Scenario::Fanout,
            Scenario::Bulk,
            Scenario::Apply,
            Scenario::Startup,
            Scenario::Dataplane,
            Scenario::Redeploy,
        ],
        one => vec![one],
    };
    let started = Instant::now();
    let mut floor_result: Option<Outcome> = None;
    let mut failed = Vec::new();
    for scenario in scenarios {
        let t = Instant::now();
        println!("\n-- running {scenario:?} --");
        let result = match scenario {
            Scenario::Floor => run_floor(&cli).await.map(|(report, combined)| {
                floor_result = Some(combined);
                report
            }),
            Scenario::Propagation => run_propagation(&cli, &mut floor_result).await,
            Scenario::Fanout => run_fanout(&cli, &mut floor_result).await,
            Scenario::Bulk => run_bulk(&cli).await,
            Scenario::Apply => run_apply(&cli).await,
            Scenario::Startup => run_startup(&cli).await,
            Scenario::Dataplane => run_dataplane(&cli).await,
            Scenario::Redeploy => run_redeploy(&cli).await,
            Scenario::All => unreachable!(),
        };
        match result.and_then(|report| report.emit(&cli.out)) {
            Ok(()) => println!("({scenario:?} took {:.1} s)", t.elapsed().as_secs_f64()),
            Err(e) => {
                eprintln!("scenario {scenario:?} FAILED: {e:#}");
                failed.push(format!("{scenario:?}"));
            }
        }
    }
    println!(
        "\nsuite done in {:.1} s; results appended to {}",
        started.elapsed().as_secs_f64(),
        cli.out.display()
    );
    if !failed.is_empty() {
        bail!("scenarios failed: {}", failed.join(", "));
    }
    Ok(())
}

async fn run_floor(cli: &Cli) -> anyhow::Result<(Report, Outcome)> {
    let iterations = cli.pick(cli.floor_iterations, 1000, 100);
    let runs = cli.runs();
    let mut outcomes = Vec::new();
    for r in 0..runs {
        println!("floor run {}/{runs}", r + 1);
        outcomes.push(floor::run(iterations).await?);
    }
    let mut report = Report::new("floor", json!({"iterations": iterations}), outcomes);
    report.headline = Some(floor::ETCD.into());
    if report.combined.get_measure(floor::ETCD).is_none() {
        report.headline = Some(floor::PG.into());
    }
    let combined = report.combined.clone();
    Ok((report, combined))
}

/// The floor of this invocation, measured now if no floor scenario ran.
async fn floor_for(cli: &Cli, floor_result: &mut Option<Outcome>) -> anyhow::Result<Outcome> {
    if let Some(f) = floor_result {
        return Ok(f.clone());
    }
    let iterations = cli.pick(cli.floor_iterations, 300, 100);
    println!("measuring the floor first ({iterations} samples each)");
    let f = floor::run(iterations).await?;
    *floor_result = Some(f.clone());
    Ok(f)
}

/// Adds the floor and etcd figures and the ratios to them.
fn add_floor(out: &mut Outcome, floor: &Outcome) {
    let sum = floor.get(floor::FLOOR_SUM_P50).unwrap_or(f64::NAN);
    out.figure("floor sum p50 (same run)", sum, "ms");
    if let Some(m) = floor.get(floor::FLOOR_SUM_MARIADB_P50) {
        out.figure("mariadb floor sum p50 (same run)", m, "ms");
    }
    if let Some(e) = floor.get_measure(floor::ETCD) {
        out.figure("etcd put->watch p50 (same run)", e.p50, "ms");
    }
}

fn add_ratios(out: &mut Outcome, floor: &Outcome, prefix: &str) {
    // MariaDB runs against the floor with MariaDB's commit in it.
    let sum_of = if prefix.starts_with("mariadb") {
        floor::FLOOR_SUM_MARIADB_P50
    } else {
        floor::FLOOR_SUM_P50
    };
    let sum = floor.get(sum_of).unwrap_or(f64::NAN);
    let etcd = floor.get_measure(floor::ETCD).map(|s| s.p50);
    for (name, label) in [
        (propagation::PER_GATEWAY, "per-gateway"),
        (propagation::ALL_GATEWAYS, "all-gateways"),
    ] {
        if let Some(s) = out.get_measure(&format!("{prefix}{name}")) {
            out.figure(format!("{prefix}{label} p50 / floor sum"), s.p50 / sum, "x");
            if let Some(e) = etcd {
                out.figure(
                    format!("{prefix}{label} p50 / etcd put->watch"),
                    s.p50 / e,
                    "x",
                );
            }
        }
    }
}

fn prefixed(out: Outcome, prefix: &str) -> Outcome {
    Outcome {
        measures: out
            .measures
            .into_iter()
            .map(|(n, s)| (format!("{prefix}{n}"), s))
            .collect(),
        figures: out
            .figures
            .into_iter()
            .map(|(n, v, u)| (format!("{prefix}{n}"), v, u))
            .collect(),
        notes: out.notes,
    }
}

async fn run_propagation(cli: &Cli, floor_result: &mut Option<Outcome>) -> anyhow::Result<Report> {
    let floor = floor_for(cli, floor_result).await?;
    let counts = cli
        .gateways
        .clone()
        .unwrap_or_else(|| if cli.quick { vec![1, 2] } else { vec![1, 10] });
    let iterations = cli.pick(cli.iterations, 1000, 30);
    let runs = cli.runs();
    let mut outcomes: Vec<Outcome> = (0..runs).map(|_| Outcome::default()).collect();
    for &n in &counts {
        println!("propagation: {n} gateway(s), {runs} x {iterations} updates");
        let mut setup = propagation::setup(n).await?;
        let result = async {
            for (r, out) in outcomes.iter_mut().enumerate() {
                println!("  run {}/{runs}", r + 1);
                let o = setup.run(iterations, 10).await?;
                out.extend(prefixed(o, &format!("N={n}: ")));
            }
            Ok::<(), anyhow::Error>(())
        }
        .await;
        if result.is_err() {
            setup.backing.keep_logs(&format!("propagation-{n}"));
        }
        setup.stop().await;
        result?;
    }
    // MariaDB in place of PostgreSQL, in the same sitting.
    for &n in &counts {
        println!("propagation: MariaDB, {n} gateway(s), {runs} x {iterations} updates");
        let mut setup = propagation::setup_on(n, true).await?;
        let result = async {
            for (r, out) in outcomes.iter_mut().enumerate() {
                println!("  run {}/{runs}", r + 1);
                let o = setup.run(iterations, 10).await?;
                out.extend(prefixed(o, &format!("mariadb N={n}: ")));
            }
            Ok::<(), anyhow::Error>(())
        }
        .await;
        if result.is_err() {
            setup.backing.keep_logs(&format!("propagation-mariadb-{n}"));
        }
        setup.stop().await;
        result?;
    }
    // The embedded default, in the same sitting: one process, SQLite and
    // the in-process bus; one node (gw-3, Label1) and all three.
    for (all_nodes, prefix) in [(false, "embedded N=1: "), (true, "embedded N=3: ")] {
        println!("propagation: embedded default, {prefix}{runs} x {iterations} updates");
        let mut setup = propagation::setup_embedded(all_nodes).await?;
        let result = async {
            for (r, out) in outcomes.iter_mut().enumerate() {
                println!("  run {}/{runs}", r + 1);
                let o = setup.run(iterations, 10).await?;
                out.extend(prefixed(o, prefix));
            }
            Ok::<(), anyhow::Error>(())
        }
        .await;
        if result.is_err() {
            setup.backing.keep_logs("propagation-embedded");
        }
        setup.stop().await;
        result?;
    }
    for out in outcomes.iter_mut() {
        add_floor(out, &floor);
        for &n in &counts {
            add_ratios(out, &floor, &format!("N={n}: "));
            add_ratios(out, &floor, &format!("mariadb N={n}: "));
        }
    }
    let mut report = Report::new(
        "propagation",
        json!({"gateways": counts, "mariadb": counts, "embedded": [1, 3], "iterations": iterations, "warmup": 10}),
        outcomes,
    );
    let first = counts.first().copied().unwrap_or(1);
    report.headline = Some(format!("N={first}: {}", propagation::PER_GATEWAY));
    let c = &report.combined;
    let mut targets = Vec::new();
    if let Some(s) = c.get_measure(&format!("N=1: {}", propagation::PER_GATEWAY)) {
        targets.push(Target::at_most("propagation N=1 p50", s.p50, 2.0, "ms"));
        if let Some(r) = c.get("N=1: per-gateway p50 / floor sum") {
            targets.push(Target::at_most(
                "propagation N=1 p50 / floor sum",
                r,
                3.0,
                "x",
            ));
        }
        targets.push(Target::at_most("propagation N=1 p99", s.p99, 10.0, "ms"));
    }
    if let Some(s) = c.get_measure(&format!("N=10: {}", propagation::ALL_GATEWAYS)) {
        targets.push(Target::at_most(
            "propagation N=10 all applied p50",
            s.p50,
            5.0,
            "ms",
        ));
        targets.push(Target::at_most(
            "propagation N=10 all applied p99",
            s.p99,
            20.0,
            "ms",
        ));
    }
    if let Some(s) = c.get_measure(&format!("embedded N=1: {}", propagation::PER_GATEWAY)) {
        targets.push(Target::at_most(
            "embedded propagation, 1 node p50",
            s.p50,
            1.0,
            "ms",
        ));
    }
    if let Some(s) = c.get_measure(&format!("embedded N=3: {}", propagation::ALL_GATEWAYS)) {
        targets.push(Target::at_most(
            "embedded propagation, all 3 nodes applied p50",
            s.p50,
            2.0,
            "ms",
        ));
    }
    report.targets = targets;
    Ok(report)
}

async fn run_fanout(cli: &Cli, floor_result: &mut Option<Outcome>) -> anyhow::Result<Report> {
    let n = cli.pick(cli.fanout_gateways, 50, 5);
    let iterations = cli.pick(cli.fanout_iterations, 200, 10);
    let runs = cli.runs();
    let floor = floor_result.clone();
    println!("fan-out: starting {n} gateway processes");
    let t = Instant::now();
    let mut setup = propagation::setup(n).await?;
    let start_took = t.elapsed();
    let mut outcomes = Vec::new();
    let result = async {
        for r in 0..runs {
            println!("  run {}/{runs}: {iterations} updates", r + 1);
            let mut o = setup.run(iterations, 5).await?;
            o.figure(
                "cluster start-up with all gateways ready",
                start_took.as_secs_f64() * 1e3,
                "ms",
            );
            if let Some(f) = &floor {
                add_floor(&mut o, f);
                add_ratios(&mut o, f, "");
            }
            outcomes.push(o);
        }
        Ok::<(), anyhow::Error>(())
    }
    .await;
    if result.is_err() {
        setup.backing.keep_logs("fanout");
    }
    setup.stop().await;
    result?;
    let mut report = Report::new(
        "fanout",
        json!({"gateways": n, "iterations": iterations, "warmup": 5}),
        outcomes,
    );
    report.headline = Some(propagation::ALL_GATEWAYS.into());
    report.rss = Some("gateway peak RSS (max over gateways)".into());
    if n == 50
        && let Some(s) = report.combined.get_measure(propagation::ALL_GATEWAYS)
    {
        report.targets.push(Target::at_most(
            "fan-out 50 gateways, all applied p99",
            s.p99,
            60.0,
            "ms",
        ));
    }
    Ok(report)
}

/// `POST /api/v1/apply` of 1,000 and 10,000 new APIs in one call each, to
/// a label with `--bulk-gateways` gateways, then on the embedded default.
async fn run_apply(cli: &Cli) -> anyhow::Result<Report> {
    let sizes = cli.apply_apis.clone().unwrap_or_else(|| {
        if cli.quick {
            vec![100]
        } else {
            vec![1000, 10_000]
        }
    });
    let gateways = cli.pick(cli.bulk_gateways, 10, 2);
    let mut outcome = bench::Outcome::default();
    for (mode, embedded) in [("", false), ("embedded: ", true)] {
        let mut setup = if embedded {
            bench::bulk::setup_embedded().await?
        } else {
            bench::bulk::setup(gateways).await?
        };
        let result = async {
            for (run, apis) in sizes.iter().enumerate() {
                println!(
                    "apply: {apis} APIs in one call, {} gateways{}",
                    if embedded { 3 } else { gateways },
                    if embedded { " (embedded default)" } else { "" }
                );
                let o = setup.apply(run, *apis).await?;
                outcome.extend(prefixed(o, &format!("{mode}{apis} APIs: ")));
            }
            Ok::<(), anyhow::Error>(())
        }
        .await;
        if result.is_err() {
            setup
                .backing
                .keep_logs(if embedded { "apply-embedded" } else { "apply" });
        }
        setup.stop().await;
        result?;
    }
    let mut report = Report::new(
        "apply",
        json!({"apis": sizes, "gateways": gateways}),
        vec![outcome],
    );
    for apis in &sizes {
        let c = &report.combined;
        let rate = c.get(&format!("{apis} APIs: {}", bench::bulk::APPLY_PER_S));
        let converged = c.get(&format!("{apis} APIs: {}", bench::bulk::APPLY_CONVERGED));
        if let Some(v) = rate {
            report.targets.push(Target::at_least(
                &format!("apply {apis}: APIs accepted/s"),
                v,
                5000.0,
                "1/s",
            ));
        }
        if let Some(v) = converged {
            report.targets.push(Target::at_most(
                &format!("apply {apis}: converged after the last line"),
                v,
                2000.0,
                "ms",
            ));
        }
    }
    Ok(report)
}

async fn run_bulk(cli: &Cli) -> anyhow::Result<Report> {
    let apis = cli.pick(cli.bulk_apis, 1000, 100);
    let gateways = cli.pick(cli.bulk_gateways, 10, 2);
    let clients = cli.pick(cli.clients, 16, 16);
    let runs = cli.runs();
    println!("bulk: {apis} APIs, {clients} clients, {gateways} gateways");
    let mut setup = bench::bulk::setup(gateways).await?;
    let mut outcomes = Vec::new();
    let result = async {
        for r in 0..runs {
            println!("  run {}/{runs}", r + 1);
            outcomes.push(setup.run(r, apis, clients).await?);
        }
        Ok::<(), anyhow::Error>(())
    }
    .await;
    if result.is_err() {
        setup.backing.keep_logs("bulk");
    }
    setup.stop().await;
    result?;
    // MariaDB in place of PostgreSQL, in the same sitting.
    println!("bulk: MariaDB, {apis} APIs, {clients} clients, {gateways} gateways");
    let mut setup = bench::bulk::setup_on(gateways, true).await?;
    let result = async {
        for (r, out) in outcomes.iter_mut().enumerate() {
            println!("  run {}/{runs}", r + 1);
            let o = setup.run(r, apis, clients).await?;
            out.extend(prefixed(o, "mariadb: "));
        }
        Ok::<(), anyhow::Error>(())
    }
    .await;
    if result.is_err() {
        setup.backing.keep_logs("bulk-mariadb");
    }
    setup.stop().await;
    result?;
    // The embedded default in the same sitting: its three nodes.
    println!("bulk: embedded default, {apis} APIs, {clients} clients, 3 nodes");
    let mut setup = bench::bulk::setup_embedded().await?;
    let result = async {
        for (r, out) in outcomes.iter_mut().enumerate() {
            println!("  run {}/{runs}", r + 1);
            let o = setup.run(r, apis, clients).await?;
            out.extend(prefixed(o, "embedded: "));
        }
        Ok::<(), anyhow::Error>(())
    }
    .await;
    if result.is_err() {
        setup.backing.keep_logs("bulk-embedded");
    }
    setup.stop().await;
    result?;
    let mut report = Report::new(
        "bulk",
        json!({"apis": apis, "clients": clients, "gateways": gateways, "calls_per_api": 2}),
        outcomes,
    );
    report.headline = Some(bench::bulk::DEPLOY.into());
    report.throughput = Some(bench::bulk::CALLS_PER_S.into());
    report.rss = Some("gateway peak RSS (max over gateways)".into());
    let c = &report.combined;
    if let Some(v) = c.get(bench::bulk::CALLS_PER_S) {
        report.targets.push(Target::at_least(
            "bulk: write calls accepted/s",
            v,
            1000.0,
            "1/s",
        ));
    }
    if let Some(v) = c.get(bench::bulk::APIS_PER_S) {
        report.targets.push(Target::at_least(
            "bulk: APIs (create+deploy) accepted/s",
            v,
            1000.0,
            "1/s",
        ));
    }
    if let Some(v) = c.get(bench::bulk::CONVERGED) {
        report.targets.push(Target::at_most(
            "bulk: converged after last answer",
            v,
            2000.0,
            "ms",
        ));
    }
    if let Some(v) = c.get(&format!("embedded: {}", bench::bulk::CALLS_PER_S)) {
        report.targets.push(Target::at_least(
            "embedded bulk: changes accepted/s",
            v,
            2000.0,
            "1/s",
        ));
    }
    Ok(report)
}

async fn run_startup(cli: &Cli) -> anyhow::Result<Report> {
    let apis = cli.pick(cli.startup_apis, 10_000, 300);
    let clients = cli.pick(cli.clients, 16, 16);
    let runs = cli.runs();
    println!("start-up: seeding {apis} APIs with {clients} clients");
    let mut setup = bench::startup::setup(apis, clients, runs).await?;
    let result = setup.run(runs).await;
    if result.is_err() {
        bench::keep_logs(&setup.env, "startup");
    }
    setup.stop().await;
    let outcomes = result?;
    let mut report = Report::new("startup", json!({"apis": apis, "mode": "sync"}), outcomes);
    report.rss = Some(bench::startup::RSS_FROM_TM.into());
    report.throughput = Some(bench::startup::SEED_CALLS.into());
    let c = &report.combined;
    let mut targets = Vec::new();
    if apis == 10_000 {
        if let Some(v) = c.get(bench::startup::READY_FROM_TM) {
            targets.push(Target::at_most(
                "start-up 10k: ready from traffic manager",
                v,
                2000.0,
                "ms",
            ));
        }
        if let Some(v) = c.get(bench::startup::SERVING_FROM_CACHE) {
            targets.push(Target::at_most(
                "start-up 10k: serving from cache",
                v,
                1000.0,
                "ms",
            ));
        }
        if let Some(v) = c.get(bench::startup::RSS_FROM_TM) {
            targets.push(Target::at_most("start-up 10k: peak RSS", v, 250.0, "MB"));
        }
    }
    report.targets = targets;
    Ok(report)
}

fn loads(cli: &Cli, default_secs: u64, quick_secs: u64) -> (WrkLoad, WrkLoad) {
    let duration = Duration::from_secs(cli.pick(cli.duration, default_secs, quick_secs));
    let threads = cli.pick(cli.threads, 2, 2);
    (
        WrkLoad {
            threads,
            connections: cli.pick(cli.connections, 64, 64),
            duration,
        },
        WrkLoad {
            threads: 1,
            connections: cli.pick(cli.latency_connections, 8, 8),
            duration,
        },
    )
}

async fn run_dataplane(cli: &Cli) -> anyhow::Result<Report> {
    let (throughput, latency) = loads(cli, 10, 2);
    let runs = cli.runs();
    let mut setup = bench::dataplane::setup(true).await?;
    if setup.nginx.is_none() {
        println!("nginx is not installed: no peer figures (scripts/bench.sh installs nginx-light)");
    }
    let mut outcomes = Vec::new();
    let result = async {
        for r in 0..runs {
            println!("  run {}/{runs}", r + 1);
            outcomes.push(setup.run(&throughput, &latency).await?);
        }
        Ok::<(), anyhow::Error>(())
    }
    .await;
    if result.is_err() {
        bench::keep_logs(&setup.env, "dataplane");
    }
    setup.stop().await;
    result?;
    let mut report = Report::new(
        "dataplane",
        json!({
            "seconds": throughput.duration.as_secs(), "threads": throughput.threads,
            "connections": throughput.connections, "latency_connections": latency.connections,
            "latency_threads": latency.threads, "tool": "wrk",
        }),
        outcomes,
    );
    report.headline = Some(format!("gateway proxied API @{}c", latency.connections));
    report.throughput = Some("gateway proxied API requests/s".into());
    report.rss = Some("gateway peak RSS".into());
    let c = &report.combined;
    let mut targets = Vec::new();
    if let Some(v) = c.get("mock / nginx requests/s") {
        targets.push(Target::at_least(
            "data plane: mock / nginx requests/s",
            v,
            0.7,
            "x",
        ));
    }
    if let Some(v) = c.get("proxied / nginx requests/s") {
        targets.push(Target::at_least(
            "data plane: proxied / nginx requests/s",
            v,
            0.7,
            "x",
        ));
    }
    if let Some(v) = c.get(&format!(
        "proxied added p99 over backend @{}c",
        latency.connections
    )) {
        targets.push(Target::at_most(
            "data plane: proxied added p99 over backend",
            v,
            1.0,
            "ms",
        ));
    }
    report.targets = targets;
    Ok(report)
}

async fn run_redeploy(cli: &Cli) -> anyhow::Result<Report> {
    let duration = Duration::from_secs(cli.pick(cli.duration, 15, 3));
    let load = WrkLoad {
        threads: cli.pick(cli.threads, 2, 2),
        connections: cli.pick(cli.connections, 64, 64),
        duration,
    };
    let redeploys = cli.pick(cli.redeploys, 100, 10);
    let runs = cli.runs();
    let mut setup = bench::dataplane::setup(false).await?;
    let mut outcomes = Vec::new();
    let result = async {
        for r in 0..runs {
            println!("  run {}/{runs}: {redeploys} revisions under load", r + 1);
            outcomes.push(setup.redeploy_under_load(&load, redeploys).await?);
        }
        Ok::<(), anyhow::Error>(())
    }
    .await;
    if result.is_err() {
        bench::keep_logs(&setup.env, "redeploy");
    }
    setup.stop().await;
    result?;
    let mut report = Report::new(
        "redeploy",
        json!({
            "seconds": duration.as_secs(), "threads": load.threads,
            "connections": load.connections, "redeploys": redeploys, "tool": "wrk",
        }),
        outcomes,
    );
    report.headline = Some("latency during redeploys".into());
    report.throughput = Some("requests/s during redeploys".into());
    // Failures are summed over the runs, not a median: one is too many.
    let failed: f64 = report
        .runs
        .iter()
        .filter_map(|r| r.get("failed requests during redeploys (non-2xx + socket errors)"))
        .sum();
    report.targets.push(Target::at_most(
        "redeploy under load: failed requests (all runs)",
        failed,
        0.0,
        "",
    ));
    Ok(report)
}
