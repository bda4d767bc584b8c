//! Start-up: many APIs deployed on the label, then (1) a cold gateway in
//! `sync` mode: time from spawn to ready (every API deployed), peak RSS;
//! (2) the same gateway restarted with the traffic manager down: time
//! from spawn until it serves every API from its disk cache.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use artisync_e2e::cluster::TRAFFIC_MANAGER;
use artisync_e2e::{TestCluster, TestEnv, mock_api};

use super::{LABEL, Outcome, Stats, bench_gateway, create_and_deploy, rss_mb};

pub const READY_FROM_TM: &str = "cold start (sync) -> ready, from traffic manager";
pub const RSS_FROM_TM: &str = "peak RSS (VmHWM), cold start from traffic manager";
pub const SERVING_FROM_CACHE: &str = "start -> serving every API, from disk cache (TM down)";
pub const READY_FROM_CACHE: &str = "start -> ready (sync gives up on TM), from cache";
pub const RSS_FROM_CACHE: &str = "peak RSS (VmHWM), start from cache";
pub const SEED_CALLS: &str = "seeding: write calls accepted/s";

pub struct Setup {
    pub env: TestEnv,
    pub cluster: TestCluster,
    pub apis: usize,
    gateways: Vec<(String, u16, u16)>,
    http: reqwest::Client,
    seed: Outcome,
}

/// Publishes `apis` APIs on the label while no gateway runs, with `clients`
/// concurrent clients. `cold` gateways are configured, none started.
pub async fn setup(apis: usize, clients: usize, cold: usize) -> anyhow::Result<Setup> {
    let env = TestEnv::new().await?;
    let specs = (1..=cold)
        .map(|i| bench_gateway(&env, &format!("cold-{i}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let gateways = specs
        .iter()
        .map(|g| (g.id.clone(), g.port, g.admin_port))
        .collect();
    let cluster = env.start_some(specs, &[]).await?;
    let (creates, deploys, wall) = create_and_deploy(
        &cluster.publisher,
        &[LABEL.to_owned()],
        apis,
        clients,
        |i| mock_api(&format!("Start{i}"), &format!("/start/api{i}"), "r1"),
    )
    .await?;
    let mut seed = Outcome::default();
    seed.measure("seeding: create answered", Stats::from_durations(&creates));
    seed.measure("seeding: deploy answered", Stats::from_durations(&deploys));
    seed.figure(SEED_CALLS, (2 * apis) as f64 / wall.as_secs_f64(), "1/s");
    Ok(Setup {
        env,
        cluster,
        apis,
        gateways,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
        seed,
    })
}

impl Setup {
    async fn ready(&self, admin_port: u16) -> Option<serde_json::Value> {
        let r = self
            .http
            .get(format!("http://127.0.0.1:{admin_port}/health/ready"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.json().await.ok()
    }

    async fn serves(&self, port: u16, i: usize) -> bool {
        self.http
            .get(format!("http://127.0.0.1:{port}/start/api{i}/hello"))
            .send()
            .await
            .is_ok_and(|r| r.status().as_u16() == 200)
    }

    /// Cold start of gateway `run` (a fresh node: no cache, a new queue).
    async fn cold_start(&mut self, run: usize) -> anyhow::Result<(Duration, f64)> {
        let (id, port, admin) = self.gateways[run].clone();
        let t0 = Instant::now();
        self.cluster.cluster.spawn_process(&id)?;
        let pid = self
            .cluster
            .cluster
            .process(&id)
            .and_then(|p| p.pid())
            .context("no pid")?;
        let mut peak: f64 = 0.0;
        let answer = loop {
            if let Some(v) = self.ready(admin).await {
                break v;
            }
            if let Some((h, _)) = rss_mb(pid) {
                peak = peak.max(h);
            } else {
                bail!("{id} exited: {}", self.cluster.cluster.log(&id));
            }
            if t0.elapsed() > Duration::from_secs(300) {
                bail!("{id} not ready after 300 s");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let took = t0.elapsed();
        let deployed = answer["deployed"].as_u64().unwrap_or(0) as usize;
        if deployed != self.apis {
            bail!("{id} is ready with {deployed} of {} APIs", self.apis);
        }
        if !self.serves(port, self.apis - 1).await || !self.serves(port, 0).await {
            bail!("{id} is ready but does not serve its APIs");
        }
        if let Some((h, _)) = rss_mb(pid) {
            peak = peak.max(h);
        }
        Ok((took, peak))
    }

    /// Restart of gateway 0 with the traffic manager down.
    async fn cache_start(&mut self) -> anyhow::Result<(Duration, Duration, f64)> {
        let (id, port, admin) = self.gateways[0].clone();
        let t0 = Instant::now();
        self.cluster.cluster.restart_process(&id)?;
        let pid = self
            .cluster
            .cluster
            .process(&id)
            .and_then(|p| p.pid())
            .context("no pid")?;
        let last = self.apis - 1;
        loop {
            // The data plane starts after the cache is installed, so one
            // API served means all are; check the first and the last.
            if self.serves(port, last).await && self.serves(port, 0).await {
                break;
            }
            if rss_mb(pid).is_none() {
                bail!("{id} exited: {}", self.cluster.cluster.log(&id));
            }
            if t0.elapsed() > Duration::from_secs(120) {
                bail!("{id} does not serve from its cache after 120 s");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let serving = t0.elapsed();
        let peak_serving = rss_mb(pid).map_or(0.0, |(h, _)| h);
        let ready = loop {
            if self.ready(admin).await.is_some() {
                break t0.elapsed();
            }
            if t0.elapsed() > Duration::from_secs(120) {
                bail!("{id} not ready from its cache after 120 s");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let peak = rss_mb(pid).map_or(peak_serving, |(h, _)| h.max(peak_serving));
        Ok((serving, ready, peak))
    }

    async fn stop_gateway(&mut self, index: usize) {
        let id = self.gateways[index].0.clone();
        if let Some(p) = self.cluster.cluster.process(&id) {
            p.stop(Duration::from_secs(30)).await;
        }
    }

    /// `runs` cold starts (fresh gateways), then `runs` starts from the
    /// cache of the first one with the traffic manager down.
    pub async fn run(&mut self, runs: usize) -> anyhow::Result<Vec<Outcome>> {
        let mut outcomes: Vec<Outcome> = (0..runs).map(|_| Outcome::default()).collect();
        for (r, out) in outcomes.iter_mut().enumerate() {
            let (took, peak) = self.cold_start(r).await?;
            out.figure(READY_FROM_TM, took.as_secs_f64() * 1e3, "ms");
            out.figure(RSS_FROM_TM, peak, "MB");
            self.stop_gateway(r).await;
        }
        self.cluster.cluster.kill(TRAFFIC_MANAGER).await?;
        for out in outcomes.iter_mut() {
            let (serving, ready, peak) = self.cache_start().await?;
            out.figure(SERVING_FROM_CACHE, serving.as_secs_f64() * 1e3, "ms");
            out.figure(READY_FROM_CACHE, ready.as_secs_f64() * 1e3, "ms");
            out.figure(RSS_FROM_CACHE, peak, "MB");
            self.stop_gateway(0).await;
        }
        // Seeding ran once: its figures go with the first run.
        if let Some(first) = outcomes.first_mut() {
            first.extend(self.seed.clone());
        }
        Ok(outcomes)
    }

    pub async fn stop(self) {
        self.cluster.stop().await;
        drop(self.env);
    }
}
