//! Benchmark of the persistence store: item PUT and GET throughput and
//! latency with N concurrent HTTP clients against a real in-process server
//! on a throwaway PostgreSQL database.
//!
//! ```text
//! CARGO_TARGET_DIR=... cargo run --release -p artisync-e2e --bin bench_object_store -- \
//!     [--clients 32] [--seconds 10] [--value-bytes 256] [--keys 10000] [--pool 20]
//! ```
//!
//! Prints a table and one JSON line (`{"bench":"object_store",...}`) for
//! machines. Clients and server share one process and one tokio runtime,
//! so the figures include the client's cost too; PostgreSQL is whatever
//! `TEST_DATABASE_URL` / `DATABASE_URL` (default 127.0.0.1:5432) points to.

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use artisync_backends::Storage;
use artisync_config::storage::{StorageOptions, StorageUrl};
use artisync_http::bearer_token;
use artisync_test_support::postgres::TestDatabase;
use artisync_traffic_manager::object_store::{
    self, ClientIdentity, ObjectStoreConfig, ObjectStoreState,
};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use serde_json::json;

struct Options {
    clients: usize,
    seconds: u64,
    value_bytes: usize,
    keys: usize,
    pool: u32,
}

fn parse_args() -> anyhow::Result<Options> {
    let mut options = Options {
        clients: 32,
        seconds: 10,
        value_bytes: 256,
        keys: 10_000,
        pool: 20,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .with_context(|| format!("{flag}: {value:?} is not a number"))
        };
        match flag.as_str() {
            "--clients" => options.clients = usize::try_from(number()?)?,
            "--seconds" => options.seconds = number()?,
            "--value-bytes" => options.value_bytes = usize::try_from(number()?)?,
            "--keys" => options.keys = usize::try_from(number()?)?,
            "--pool" => options.pool = u32::try_from(number()?)?,
            other => bail!(
                "unknown flag {other}; flags: --clients --seconds --value-bytes --keys --pool"
            ),
        }
    }
    if options.clients == 0 || options.seconds == 0 || options.keys == 0 || options.pool == 0 {
        bail!("--clients, --seconds, --keys and --pool must be at least 1");
    }
    Ok(options)
}

/// Stands in for the traffic manager's authentication.
async fn identity_from_bearer(mut request: Request, next: Next) -> Response {
    let token = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .map(str::to_owned);
    if let Some(token) = token {
        request
            .extensions_mut()
            .insert(ClientIdentity::unrestricted(token));
    }
    next.run(request).await
}

#[derive(Default)]
struct Samples {
    micros: Vec<u64>,
    errors: u64,
}

struct Summary {
    ops: usize,
    errors: u64,
    ops_per_sec: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
}

fn summarize(mut samples: Samples, elapsed: Duration) -> Summary {
    samples.micros.sort_unstable();
    let pct = |p: f64| {
        if samples.micros.is_empty() {
            return 0.0;
        }
        let rank = ((samples.micros.len() as f64) * p).ceil() as usize;
        samples.micros[rank.clamp(1, samples.micros.len()) - 1] as f64 / 1000.0
    };
    Summary {
        ops: samples.micros.len(),
        errors: samples.errors,
        ops_per_sec: samples.micros.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: pct(0.50),
        p90_ms: pct(0.90),
        p99_ms: pct(0.99),
        p999_ms: pct(0.999),
        max_ms: samples.micros.last().map_or(0.0, |m| *m as f64 / 1000.0),
    }
}

#[derive(Clone, Copy)]
enum Op {
    Put,
    Get,
}

/// Runs `clients` loops of `op` for `duration`; client `c` uses keys
/// `c, c + clients, ...` below `keys`, so PUTs of different clients never
/// contend on one row and GETs hit keys the PUT phase wrote.
async fn phase(
    op: Op,
    base: &str,
    options: &Options,
    body: Arc<serde_json::Value>,
) -> (Samples, Duration) {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(options.clients)
        .build()
        .unwrap_or_default();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(options.seconds);
    let tasks: Vec<_> = (0..options.clients)
        .map(|c| {
            let http = http.clone();
            let body = body.clone();
            let clients = options.clients;
            let keys = options.keys;
            let url = format!(
                "{base}/api/v1/organizations/bench/environments/bench/stores/bench/partitions/p/keys"
            );
            tokio::spawn(async move {
                let mut samples = Samples::default();
                let mut i = c;
                while Instant::now() < deadline {
                    let key_url = format!("{url}/k{:08}", i % keys);
                    i += clients;
                    let request = match op {
                        Op::Put => http.put(&key_url).json(&*body),
                        Op::Get => http.get(&key_url),
                    };
                    let t0 = Instant::now();
                    let ok = match request.bearer_auth("bench").send().await {
                        Ok(response) => {
                            let ok = response.status().is_success();
                            // Read the body: a GET is not done before it.
                            response.bytes().await.is_ok() && ok
                        }
                        Err(_) => false,
                    };
                    let micros = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
                    if ok {
                        samples.micros.push(micros);
                    } else {
                        samples.errors += 1;
                    }
                }
                samples
            })
        })
        .collect();
    let mut all = Samples::default();
    for task in tasks {
        if let Ok(samples) = task.await {
            all.micros.extend(samples.micros);
            all.errors += samples.errors;
        }
    }
    (all, start.elapsed())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = parse_args()?;
    let database = TestDatabase::create()
        .await
        .context("cannot create the throwaway database")?;
    let storage = Storage::open(
        &StorageUrl::Postgres(database.url.clone()),
        &StorageOptions {
            max_connections: options.pool,
            ..StorageOptions::default()
        },
    )
    .await?;
    let store = storage
        .object_store
        .clone()
        .context("PostgreSQL holds the persistence store")?;
    let state = ObjectStoreState::new(store, ObjectStoreConfig::default())?;
    let app = object_store::router(state).layer(axum::middleware::from_fn(identity_from_bearer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let http = reqwest::Client::new();
    let status = http
        .put(format!(
            "{base}/api/v1/organizations/bench/environments/bench/stores/bench"
        ))
        .bearer_auth("bench")
        .json(&json!({}))
        .send()
        .await?
        .status();
    if !status.is_success() {
        bail!("creating the store answered {status}");
    }

    let value = "x".repeat(options.value_bytes);
    let body = Arc::new(json!({"valueType": "STRING", "stringValue": value}));
    let (put_samples, put_elapsed) = phase(Op::Put, &base, &options, body.clone()).await;
    let (get_samples, get_elapsed) = phase(Op::Get, &base, &options, body).await;
    let put = summarize(put_samples, put_elapsed);
    let get = summarize(get_samples, get_elapsed);

    println!(
        "persistence store: {} clients, {} s per phase, {}-byte STRING values, {} keys, pool {}",
        options.clients, options.seconds, options.value_bytes, options.keys, options.pool
    );
    println!(
        "{:<4} {:>9} {:>7} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "op", "ops", "errors", "ops/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
    );
    for (name, s) in [("PUT", &put), ("GET", &get)] {
        println!(
            "{:<4} {:>9} {:>7} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
            name, s.ops, s.errors, s.ops_per_sec, s.p50_ms, s.p90_ms, s.p99_ms, s.p999_ms, s.max_ms
        );
    }
    let json_of = |s: &Summary| {
        json!({
            "ops": s.ops, "errors": s.errors, "ops_per_sec": (s.ops_per_sec * 10.0).round() / 10.0,
            "p50_ms": s.p50_ms, "p90_ms": s.p90_ms, "p99_ms": s.p99_ms,
            "p999_ms": s.p999_ms, "max_ms": s.max_ms,
        })
    };
    println!(
        "{}",
        json!({
            "bench": "object_store",
            "clients": options.clients,
            "seconds": options.seconds,
            "value_bytes": options.value_bytes,
            "keys": options.keys,
            "pool": options.pool,
            "put": json_of(&put),
            "get": json_of(&get),
        })
    );

    server.abort();
    storage.close().await;
    drop(database);
    Ok(())
}
