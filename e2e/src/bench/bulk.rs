//! Bulk publish: many APIs created and deployed by concurrent clients onto
//! several gateways; write calls accepted per second, and the time from the
//! last answer until every gateway serves every API.

use std::time::{Duration, Instant};

use artisync_e2e::{TestCluster, TestEnv, mock_api};

use super::{Outcome, Stats, bench_gateway, create_and_deploy, deployed_count, rss_mb};

pub const CREATE: &str = "create (POST /apis) answered";
pub const DEPLOY: &str = "deploy (POST /deployments) answered";
pub const CALLS_PER_S: &str = "write calls accepted/s (create + deploy)";
pub const APIS_PER_S: &str = "APIs created+deployed/s";
pub const CONVERGED: &str = "all gateways converged after last answer";
pub const CONVERGED_FROM_START: &str = "all gateways converged after first call";

pub struct Setup {
    pub env: TestEnv,
    pub cluster: TestCluster,
    pub gateways: Vec<(String, u16)>,
    /// APIs published so far (runs add to the same cluster).
    pub published: usize,
    http: reqwest::Client,
}

pub async fn setup(n: usize) -> anyhow::Result<Setup> {
    let env = TestEnv::new().await?;
    let specs = (1..=n)
        .map(|i| bench_gateway(&env, &format!("gw-{i}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let gateways = specs.iter().map(|g| (g.id.clone(), g.admin_port)).collect();
    let cluster = env.start(specs).await?;
    Ok(Setup {
        env,
        cluster,
        gateways,
        published: 0,
        http: reqwest::Client::new(),
    })
}

impl Setup {
    pub async fn run(
        &mut self,
        run: usize,
        apis: usize,
        clients: usize,
    ) -> anyhow::Result<Outcome> {
        let start = Instant::now();
        let (creates, deploys, wall) =
            create_and_deploy(&self.cluster.publisher, apis, clients, move |i| {
                mock_api(
                    &format!("Bulk{run}x{i}"),
                    &format!("/bulk{run}/api{i}"),
                    "r1",
                )
            })
            .await?;
        let last_answer = Instant::now();
        self.published += apis;
        let target = self.published as u64;
        // Poll every gateway's deployed-API gauge until all are there.
        let mut pending: Vec<u16> = self.gateways.iter().map(|(_, p)| *p).collect();
        let deadline = last_answer + Duration::from_secs(120);
        while !pending.is_empty() {
            let mut still = Vec::new();
            for port in pending {
                if deployed_count(&self.http, port).await.unwrap_or(0) < target {
                    still.push(port);
                }
            }
            pending = still;
            if pending.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "{} gateways did not converge within 120 s of the last answer",
                    pending.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let converged = Instant::now();
        let mut out = Outcome::default();
        out.measure(CREATE, Stats::from_durations(&creates));
        out.measure(DEPLOY, Stats::from_durations(&deploys));
        out.figure(CALLS_PER_S, (2 * apis) as f64 / wall.as_secs_f64(), "1/s");
        out.figure(APIS_PER_S, apis as f64 / wall.as_secs_f64(), "1/s");
        out.figure(
            CONVERGED,
            (converged - last_answer).as_secs_f64() * 1e3,
            "ms",
        );
        out.figure(
            CONVERGED_FROM_START,
            (converged - start).as_secs_f64() * 1e3,
            "ms",
        );
        let mut hwm: f64 = 0.0;
        for (id, _) in self.gateways.clone() {
            if let Some((h, _)) = self
                .cluster
                .cluster
                .process(&id)
                .and_then(|p| p.pid())
                .and_then(rss_mb)
            {
                hwm = hwm.max(h);
            }
        }
        out.figure("gateway peak RSS (max over gateways)", hwm, "MB");
        if let Some((h, _)) = self
            .cluster
            .cluster
            .process(artisync_e2e::cluster::PUBLISHER)
            .and_then(|p| p.pid())
            .and_then(rss_mb)
        {
            out.figure("publisher peak RSS", h, "MB");
        }
        Ok(out)
    }

    pub async fn stop(self) {
        self.cluster.stop().await;
        drop(self.env);
    }
}
