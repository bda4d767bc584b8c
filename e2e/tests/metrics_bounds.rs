//! Hostile requests cannot grow `/metrics`: with the real binaries, 300
//! requests with random 1,000-byte methods and random paths, without a
//! token, to the publisher, the traffic manager and a gateway's admin API,
//! leave each `/metrics` exposition about as large as before (a fixed
//! allowance for counters gaining digits, not growing with the requests).

use anyhow::Context;
use artisync_e2e::TestEnv;
use rand::Rng;
use rand::distr::{Alphanumeric, Uniform};

const PROD: &str = "Production and Sandbox";
const REQUESTS: usize = 300;
/// Room for counters gaining digits and the services' own background
/// metrics; a label set per request would add far more than this.
const ALLOWANCE_BYTES: usize = 2 * 1024;

fn random_method(rng: &mut impl Rng) -> reqwest::Method {
    let letters = Uniform::new_inclusive(b'A', b'Z').expect("range");
    let bytes: Vec<u8> = (0..1000).map(|_| rng.sample(letters)).collect();
    reqwest::Method::from_bytes(&bytes).expect("a token is a valid method")
}

fn random_path(rng: &mut impl Rng) -> String {
    let segments = rng.random_range(1..6);
    (0..segments)
        .map(|_| {
            let len = rng.random_range(1..40);
            let s: String = (0..len).map(|_| rng.sample(Alphanumeric) as char).collect();
            format!("/{s}")
        })
        .collect()
}

async fn metrics_size(http: &reqwest::Client, base: &str) -> anyhow::Result<usize> {
    let r = http.get(format!("{base}/metrics")).send().await?;
    anyhow::ensure!(r.status() == 200, "{base}/metrics: {}", r.status());
    Ok(r.text().await?.len())
}

/// Hostile requests: every answer is fine (4xx), none may crash the service.
async fn hostile(http: &reqwest::Client, base: &str, n: usize) -> anyhow::Result<()> {
    let mut rng = rand::rng();
    for i in 0..n {
        // Half of them on real routes (known templates, odd methods), half
        // on random paths (unmatched), some with standard methods.
        let method = if i % 5 == 0 {
            reqwest::Method::GET
        } else {
            random_method(&mut rng)
        };
        let path = match i % 4 {
            0 => "/api/v1/apis".to_owned(),
            1 => "/internal/data/v1/runtime-metadata".to_owned(),
            _ => random_path(&mut rng),
        };
        let r = http
            .request(method, format!("{base}{path}"))
            .send()
            .await
            .with_context(|| format!("{base}: request {i}"))?;
        anyhow::ensure!(
            r.status().is_client_error(),
            "{base}{path}: {} for a hostile request",
            r.status()
        );
    }
    Ok(())
}

#[tokio::test]
async fn random_methods_and_paths_leave_metrics_flat() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let c = env.start(vec![env.gateway("gw-1", &[PROD])?]).await?;
    let admin_port = c.cluster.spec.gateways[0].admin_port;
    let services = [
        ("publisher", c.cluster.spec.publisher_url()),
        ("traffic manager", c.cluster.spec.traffic_manager_url()),
        ("gateway admin", format!("http://127.0.0.1:{admin_port}")),
    ];
    let http = reqwest::Client::new();
    for (name, base) in &services {
        // A few first, so that every fixed label set they (and /metrics)
        // reach exists.
        hostile(&http, base, 20).await?;
        metrics_size(&http, base).await?;
        let before = metrics_size(&http, base).await?;
        hostile(&http, base, REQUESTS).await?;
        let after = metrics_size(&http, base).await?;
        assert!(
            after <= before + ALLOWANCE_BYTES,
            "{name}: /metrics grew from {before} to {after} bytes over {REQUESTS} hostile requests"
        );
        println!("{name}: /metrics {before} -> {after} bytes");
    }
    c.stop().await;
    Ok(())
}
