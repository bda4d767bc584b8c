//! Propagation and fan-out: one API updated again and again; each update
//! is PUT (a new revision) + POST deploy, and every gateway holds a
//! `waitForRevision` long-poll opened before the deploy call. Latency runs
//! from the start of the deploy call to the long-poll's answer.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use artisync_cli::client::PublisherClient;
use artisync_e2e::{TestEnv, mock_api};

use super::backing::Backing;
use super::{LABEL, Outcome, Stats, bench_gateway};

pub const PER_GATEWAY: &str = "deploy call -> applied, per gateway";
pub const ALL_GATEWAYS: &str = "deploy call -> applied, all gateways";
pub const PUT_DEPLOY_ALL: &str = "PUT+deploy -> applied, all gateways";
pub const DEPLOY_ANSWER: &str = "deploy call answered";
pub const PUT_ANSWER: &str = "PUT (new revision) answered";

pub struct Setup {
    pub backing: Backing,
    publisher: PublisherClient,
    /// The gateways measured: id and admin port.
    pub gateways: Vec<(String, u16)>,
    /// Where each update is deployed.
    labels: Vec<String>,
    pub api_id: String,
    pub revision: u32,
    http: reqwest::Client,
}

/// Starts a cluster with `n` gateways on the bench label and publishes the
/// API the iterations update. Ports are picked free but can be taken by
/// someone else before a gateway binds them (likelier with many gateways):
/// such a start is retried with new ports.
pub async fn setup(n: usize) -> anyhow::Result<Setup> {
    setup_on(n, false).await
}

/// As [`setup`], on MariaDB (`mariadb`) or PostgreSQL.
pub async fn setup_on(n: usize, mariadb: bool) -> anyhow::Result<Setup> {
    let mut attempt = 1;
    loop {
        match try_setup(n, mariadb).await {
            Ok(s) => return Ok(s),
            Err(e) if attempt < 3 && format!("{e:#}").contains("Address already in use") => {
                println!("  a port was taken meanwhile; starting again ({e:#})");
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn try_setup(n: usize, mariadb: bool) -> anyhow::Result<Setup> {
    let env = if mariadb {
        TestEnv::mysql().await?
    } else {
        TestEnv::new().await?
    };
    let specs = (1..=n)
        .map(|i| bench_gateway(&env, &format!("gw-{i}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let gateways: Vec<(String, u16)> = specs.iter().map(|g| (g.id.clone(), g.admin_port)).collect();
    let cluster = env.start(specs).await?;
    Setup::with(
        Backing::External {
            env: Box::new(env),
            cluster,
        },
        gateways,
        vec![LABEL.to_owned()],
    )
    .await
}

/// The embedded default (`artisync up`, one process): on one node (gw-3,
/// the only one on `Label1`) or on all three (both labels).
pub async fn setup_embedded(all_nodes: bool) -> anyhow::Result<Setup> {
    let (backing, nodes) = Backing::embedded().await?;
    let labels: Vec<String> = if all_nodes {
        vec!["Production and Sandbox".into(), "Label1".into()]
    } else {
        vec!["Label1".into()]
    };
    let gateways = nodes
        .iter()
        .filter(|n| n.labels.iter().any(|l| labels.contains(l)))
        .map(|n| (n.id.clone(), n.admin_port))
        .collect();
    Setup::with(backing, gateways, labels).await
}

impl Setup {
    /// Publishes the API the iterations update and waits until every
    /// measured gateway runs it.
    async fn with(
        backing: Backing,
        gateways: Vec<(String, u16)>,
        labels: Vec<String>,
    ) -> anyhow::Result<Setup> {
        let publisher = backing.publisher();
        let created = publisher
            .create_api(&mock_api("Propagation", "/propagation", "r1"))
            .await?;
        if created.status.as_u16() != 201 {
            bail!("create answered {}: {}", created.status, created.text);
        }
        let api_id = created.body["id"].as_str().context("no id")?.to_owned();
        let label_refs: Vec<&str> = labels.iter().map(String::as_str).collect();
        let d = publisher.deploy(&api_id, &label_refs, None).await?;
        if !d.status.is_success() {
            bail!("deploy answered {}: {}", d.status, d.text);
        }
        let token = backing.admin_token();
        for (gw, port) in &gateways {
            let admin = artisync_cli::client::GatewayAdminClient::new(
                &format!("http://127.0.0.1:{port}"),
                &token,
            );
            let a = admin
                .wait_for_revision(&api_id, 1, Duration::from_secs(30))
                .await?;
            if !a.status.is_success() {
                bail!("{gw} did not apply the first revision: {}", a.text);
            }
        }
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(4)
            .tcp_nodelay(true)
            .build()?;
        Ok(Setup {
            backing,
            publisher,
            gateways,
            labels,
            api_id,
            revision: 1,
            http,
        })
    }
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
        let put = self.publisher.update_api(&self.api_id, &xml).await?;
        let put_took = t_put.elapsed();
        if put.status.as_u16() != 201 {
            bail!("PUT answered {}: {}", put.status, put.text);
        }
        let revision = put.body["revision"]
            .as_u64()
            .context("no revision in the PUT answer")? as u32;
        self.revision = revision;
        let token = self.backing.admin_token();
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
        let labels: Vec<&str> = self.labels.iter().map(String::as_str).collect();
        let d = self.publisher.deploy(&self.api_id, &labels, None).await?;
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

    fn cpu_by_component(&mut self) -> Vec<(&'static str, f64)> {
        let ids: Vec<String> = self.gateways.iter().map(|(id, _)| id.clone()).collect();
        self.backing.cpu_by_component(&ids)
    }

    /// Max VmHWM and max VmRSS over the gateways.
    pub fn peak_rss(&mut self) -> (f64, f64) {
        let ids: Vec<String> = self.gateways.iter().map(|(id, _)| id.clone()).collect();
        self.backing.peak_rss(&ids)
    }

    pub async fn stop(self) {
        self.backing.stop().await;
    }
}
