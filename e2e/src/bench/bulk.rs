//! Bulk publish: many APIs created and deployed by concurrent clients onto
//! several gateways; write calls accepted per second, and the time from the
//! last answer until every gateway serves every API.

use std::time::{Duration, Instant};

use artisync_e2e::{TestEnv, mock_api};

use super::backing::Backing;
use super::{LABEL, Outcome, Stats, bench_gateway, create_and_deploy, deployed_count};

pub const CREATE: &str = "create (POST /apis) answered";
pub const DEPLOY: &str = "deploy (POST /deployments) answered";
pub const CALLS_PER_S: &str = "write calls accepted/s (create + deploy)";
pub const APIS_PER_S: &str = "APIs created+deployed/s";
pub const CONVERGED: &str = "all gateways converged after last answer";
pub const CONVERGED_FROM_START: &str = "all gateways converged after first call";
pub const APPLY_PER_S: &str = "apply: APIs accepted/s (one streamed call)";
pub const APPLY_WALL: &str = "apply: call from first byte to summary";
pub const APPLY_FIRST: &str = "apply: first answer line after";
pub const APPLY_CONVERGED: &str = "apply: all gateways converged after the summary";

pub struct Setup {
    pub backing: Backing,
    pub gateways: Vec<(String, u16)>,
    /// Where every API is deployed.
    labels: Vec<String>,
    /// APIs published so far (runs add to the same cluster).
    pub published: usize,
    http: reqwest::Client,
}

pub async fn setup(n: usize) -> anyhow::Result<Setup> {
    setup_on(n, false).await
}

/// As [`setup`], on MariaDB (`mariadb`) or PostgreSQL.
pub async fn setup_on(n: usize, mariadb: bool) -> anyhow::Result<Setup> {
    let env = if mariadb {
        TestEnv::mysql().await?
    } else {
        TestEnv::new().await?
    };
    let specs = (1..=n)
        .map(|i| bench_gateway(&env, &format!("gw-{i}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let gateways = specs.iter().map(|g| (g.id.clone(), g.admin_port)).collect();
    let cluster = env.start(specs).await?;
    Ok(Setup {
        backing: Backing::External {
            env: Box::new(env),
            cluster,
        },
        gateways,
        labels: vec![LABEL.to_owned()],
        published: 0,
        http: reqwest::Client::new(),
    })
}

/// The embedded default (`artisync up`): every API deployed to both labels,
/// so that all three nodes run it.
pub async fn setup_embedded() -> anyhow::Result<Setup> {
    let (backing, nodes) = Backing::embedded().await?;
    Ok(Setup {
        backing,
        gateways: nodes.iter().map(|n| (n.id.clone(), n.admin_port)).collect(),
        labels: vec!["Production and Sandbox".into(), "Label1".into()],
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
        let (creates, deploys, wall) = create_and_deploy(
            &self.backing.publisher(),
            &self.labels,
            apis,
            clients,
            move |i| {
                mock_api(
                    &format!("Bulk{run}x{i}"),
                    &format!("/bulk{run}/api{i}"),
                    "r1",
                )
            },
        )
        .await?;
        let last_answer = Instant::now();
        self.published += apis;
        self.wait_converged(last_answer).await?;
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
        let ids: Vec<String> = self.gateways.iter().map(|(id, _)| id.clone()).collect();
        let (hwm, _) = self.backing.peak_rss(&ids);
        out.figure("gateway peak RSS (max over gateways)", hwm, "MB");
        if let Some(h) = self.backing.publisher_rss() {
            out.figure("publisher peak RSS", h, "MB");
        }
        Ok(out)
    }

    /// One streamed `POST /api/v1/apply` of `apis` new APIs to every
    /// label: lines generated as the body is sent, so neither side holds
    /// the call; APIs accepted per second, and the time from the summary
    /// line until every gateway serves every API.
    pub async fn apply(&mut self, run: usize, apis: usize) -> anyhow::Result<Outcome> {
        use futures_util::StreamExt;
        let publisher = self.backing.publisher();
        let labels = self.labels.clone();
        let lines = futures_util::stream::iter(0..apis).map(move |i| {
            let xml = mock_api(
                &format!("Apply{run}x{i}"),
                &format!("/apply{run}/api{i}"),
                "r1",
            );
            let mut line =
                serde_json::to_vec(&serde_json::json!({"artifact": xml, "labels": labels}))
                    .map_err(std::io::Error::other)?;
            line.push(b'\n');
            Ok::<_, std::io::Error>(line)
        });
        let start = Instant::now();
        let response = self
            .http
            .post(format!("{}/api/v1/apply", publisher.0.base))
            .bearer_auth(&publisher.0.token)
            .header("content-type", "application/x-ndjson")
            .body(reqwest::Body::wrap_stream(lines))
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "apply answered {}",
            response.status()
        );
        let mut body = response.bytes_stream();
        let mut tail = Vec::new();
        let mut first_answer = None;
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            first_answer.get_or_insert_with(|| start.elapsed());
            tail.extend_from_slice(&chunk);
            // Only the last line (the summary) is kept.
            if let Some(end) = tail[..tail.len().saturating_sub(1)]
                .iter()
                .rposition(|b| *b == b'\n')
            {
                tail.drain(..=end);
            }
        }
        let wall = start.elapsed();
        let last_answer = Instant::now();
        let summary: serde_json::Value = serde_json::from_slice(&tail)?;
        anyhow::ensure!(
            summary["summary"]["created"] == apis && summary["summary"]["errors"] == 0,
            "apply did not create every API: {summary}"
        );
        self.published += apis;
        self.wait_converged(last_answer).await?;
        let converged = Instant::now();
        let mut out = Outcome::default();
        out.figure(APPLY_PER_S, apis as f64 / wall.as_secs_f64(), "1/s");
        out.figure(APPLY_WALL, wall.as_secs_f64() * 1e3, "ms");
        if let Some(first) = first_answer {
            out.figure(APPLY_FIRST, first.as_secs_f64() * 1e3, "ms");
        }
        out.figure(
            APPLY_CONVERGED,
            (converged - last_answer).as_secs_f64() * 1e3,
            "ms",
        );
        if let Some(h) = self.backing.publisher_rss() {
            out.figure("publisher peak RSS", h, "MB");
        }
        Ok(out)
    }

    /// Polls every gateway's deployed-API gauge until all run every API
    /// published so far.
    async fn wait_converged(&self, since: Instant) -> anyhow::Result<()> {
        let target = self.published as u64;
        let mut pending: Vec<u16> = self.gateways.iter().map(|(_, p)| *p).collect();
        let deadline = since + Duration::from_secs(300);
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
                    "{} gateways did not converge within 300 s of the last answer",
                    pending.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    pub async fn stop(self) {
        self.backing.stop().await;
    }
}
