//! Propagation and fan-out: one API updated again and again; each update
//! is PUT (a new revision) + POST deploy, and every gateway holds a
//! `waitForRevision` long-poll opened before the deploy call. Latency runs
//! from the start of the deploy call to the long-poll's answer.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use artisync_e2e::{TestCluster, TestEnv, mock_api};

use super::{LABEL, Outcome, Stats, bench_gateway, cpu_ms, cpu_ms_of_command, rss_mb};

pub const PER_GATEWAY: &str = "deploy call -> applied, per gateway";
pub const ALL_GATEWAYS: &str = "deploy call -> applied, all gateways";
pub const PUT_DEPLOY_ALL: &str = "PUT+deploy -> applied, all gateways";
pub const DEPLOY_ANSWER: &str = "deploy call answered";
pub const PUT_ANSWER: &str = "PUT (new revision) answered";

pub struct Setup {
    pub env: TestEnv,
    pub cluster: TestCluster,
    pub gateways: Vec<(String, u16)>,
    pub api_id: String,
    pub revision: u32,
    http: reqwest::Client,
}

/// Starts a cluster with `n` gateways on the bench label and publishes the
/// API the iterations update. Ports are picked free but can be taken by
/// someone else before a gateway binds them (likelier with many gateways):
/// such a start is retried with new ports.
pub async fn setup(n: usize) -> anyhow::Result<Setup> {
    let mut attempt = 1;
    loop {
        match try_setup(n).await {
            Ok(s) => return Ok(s),
            Err(e) if attempt < 3 && format!("{e:#}").contains("Address already in use") => {
                println!("  a port was taken meanwhile; starting again ({e:#})");
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn try_setup(n: usize) -> anyhow::Result<Setup> {
    let env = TestEnv::new().await?;
    let specs = (1..=n)
        .map(|i| bench_gateway(&env, &format!("gw-{i}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let gateways: Vec<(String, u16)> = specs.iter().map(|g| (g.id.clone(), g.admin_port)).collect();
    let cluster = env.start(specs).await?;
    let api_id = cluster
        .publish(&mock_api("Propagation", "/propagation", "r1"), &[LABEL])
        .await?;
    for (gw, _) in &gateways {
        cluster.wait_applied(gw, &api_id, 1).await?;
    }
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(4)
        .tcp_nodelay(true)
        .build()?;
    Ok(Setup {
        env,
        cluster,
        gateways,
        api_id,
        revision: 1,
        http,
    })
}

impl Setup {
    /// One update; returns (per-gateway latencies from the deploy call,
    /// PUT start → deploy call start, deploy answer, PUT answer).
    async fn update(
        &mut self,
        settle: Duration,
    ) -> anyhow::Result<(Vec<Duration>, Duration, Duration, Duration)> {
        let tag = format!("r{}", self.revision + 1);
        let xml = mock_api("Propagation", "/propagation", &tag);
        let t_put = Instant::now();
        let put = self
            .cluster
            .publisher
            .update_api(&self.api_id, &xml)
            .await?;
        let put_took = t_put.elapsed();
        if put.status.as_u16() != 201 {
            bail!("PUT answered {}: {}", put.status, put.text);
        }
        let revision = put.body["revision"]
            .as_u64()
            .context("no revision in the PUT answer")? as u32;
        self.revision = revision;
        let token = self.cluster.cluster.spec.admin_token.clone();
        // Long-polls first; they answer when the revision is applied.
        let polls: Vec<_> = self
            .gateways
            .iter()
            .map(|(id, port)| {
                let url = format!(
                    "http://127.0.0.1:{port}/api/gateway/v1/apis/{}?waitForRevision={revision}&timeoutMs=20000",
                    self.api_id
                );
                let request = self.http.get(url).bearer_auth(&token);
                let id = id.clone();
                tokio::spawn(async move {
                    let r = request.send().await?;
                    let at = Instant::now();
                    if r.status().as_u16() != 200 {
                        bail!("{id}: long-poll answered {}", r.status());
                    }
                    Ok::<Instant, anyhow::Error>(at)
                })
            })
            .collect();
        // Let the long-polls reach the gateways (a late one can only make
        // the figure worse, never better).
        tokio::time::sleep(settle).await;
        let t0 = Instant::now();
        let d = self
            .cluster
            .publisher
            .deploy(&self.api_id, &[LABEL], None)
            .await?;
        let deploy_took = t0.elapsed();
        if !d.status.is_success() {
            bail!("deploy answered {}: {}", d.status, d.text);
        }
        let mut latencies = Vec::with_capacity(polls.len());
        for p in polls {
            let at = p.await??;
            latencies.push(at.saturating_duration_since(t0));
        }
        Ok((latencies, t0 - t_put, deploy_took, put_took))
    }

    /// `iterations` sequential updates after `warmup` unmeasured ones.
    pub async fn run(&mut self, iterations: usize, warmup: usize) -> anyhow::Result<Outcome> {
        let settle = Duration::from_micros(1_000 + 100 * self.gateways.len() as u64);
        let cpu_before = self.cpu_by_component();
        let mut per_gateway = Vec::new();
        let mut all = Vec::new();
        let mut put_all = Vec::new();
        let mut deploys = Vec::new();
        let mut puts = Vec::new();
        for i in 0..warmup + iterations {
            let (lat, before_deploy, deploy, put) = self.update(settle).await?;
            if i < warmup {
                continue;
            }
            let max = lat.iter().copied().max().unwrap_or_default();
            per_gateway.extend(lat);
            all.push(max);
            // The settle pause is the benchmark's, not the product's.
            put_all.push(before_deploy.saturating_sub(settle) + max);
            deploys.push(deploy);
            puts.push(put);
        }
        let cpu_after = self.cpu_by_component();
        let mut out = Outcome::default();
        for ((name, before), (_, after)) in cpu_before.iter().zip(&cpu_after) {
            out.figure(
                format!("CPU per update: {name}"),
                (after - before) / iterations.max(1) as f64,
                "ms",
            );
        }
        out.measure(PER_GATEWAY, Stats::from_durations(&per_gateway));
        out.measure(ALL_GATEWAYS, Stats::from_durations(&all));
        out.measure(PUT_DEPLOY_ALL, Stats::from_durations(&put_all));
        out.measure(DEPLOY_ANSWER, Stats::from_durations(&deploys));
        out.measure(PUT_ANSWER, Stats::from_durations(&puts));
        let (hwm, _) = self.peak_rss();
        out.figure("gateway peak RSS (max over gateways)", hwm, "MB");
        Ok(out)
    }

    /// CPU ms used so far by each component (gateways summed; PostgreSQL
    /// and RabbitMQ are every `postgres` / `beam.smp` process, so other
    /// work on the machine counts there too).
    fn cpu_by_component(&mut self) -> Vec<(&'static str, f64)> {
        let mut pid_cpu = |name: &str| {
            self.cluster
                .cluster
                .process(name)
                .and_then(|p| p.pid())
                .and_then(cpu_ms)
                .unwrap_or(0.0)
        };
        let publisher = pid_cpu(artisync_e2e::cluster::PUBLISHER);
        let tm = pid_cpu(artisync_e2e::cluster::TRAFFIC_MANAGER);
        let ids: Vec<String> = self.gateways.iter().map(|(id, _)| id.clone()).collect();
        let gateways: f64 = ids.iter().map(|id| pid_cpu(id)).sum();
        vec![
            ("publisher", publisher),
            ("traffic manager", tm),
            ("gateways (sum)", gateways),
            ("postgresql (all backends)", cpu_ms_of_command("postgres")),
            ("rabbitmq (beam.smp)", cpu_ms_of_command("beam.smp")),
            ("bench client", cpu_ms(std::process::id()).unwrap_or(0.0)),
        ]
    }

    /// Max VmHWM and max VmRSS over the gateways.
    pub fn peak_rss(&mut self) -> (f64, f64) {
        let ids: Vec<String> = self.gateways.iter().map(|(id, _)| id.clone()).collect();
        let mut hwm: f64 = 0.0;
        let mut rss: f64 = 0.0;
        for id in ids {
            if let Some((h, r)) = self
                .cluster
                .cluster
                .process(&id)
                .and_then(|p| p.pid())
                .and_then(rss_mb)
            {
                hwm = hwm.max(h);
                rss = rss.max(r);
            }
        }
        (hwm, rss)
    }

    pub async fn stop(self) {
        self.cluster.stop().await;
        drop(self.env);
    }
}
