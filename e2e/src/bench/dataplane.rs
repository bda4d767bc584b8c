//! The data plane under wrk: a mock API (payloadFactory), an API proxied to
//! a local backend, the backend directly, and nginx proxying to the same
//! backend; and the proxied API under load while new revisions deploy.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use artisync_e2e::{TestCluster, TestEnv, mock_api};

use super::tools::{Helper, StaticBackend, WrkLoad, start_nginx, wrk};
use super::{LABEL, Outcome, Stats, bench_gateway, rss_mb};

pub const GATEWAY: &str = "gw-1";

/// The proxied API: everything under /proxied goes to the backend.
pub fn proxied_api(backend: &str, tag: &str) -> String {
    format!(
        r#"<api xmlns="http://ws.apache.org/ns/synapse" name="Proxied" context="/proxied" version="1.0">
  <resource methods="GET POST" url-mapping="/*">
    <inSequence>
      <property name="bench.revision" value="{tag}"/>
      <send><endpoint><http uri-template="{backend}"/></endpoint></send>
    </inSequence>
    <outSequence><send/></outSequence>
  </resource>
</api>"#
    )
}

pub struct Setup {
    pub env: TestEnv,
    pub cluster: TestCluster,
    pub backend: StaticBackend,
    pub nginx: Option<Helper>,
    pub proxied_id: String,
    pub revision: u32,
    pub gateway_port: u16,
}

pub async fn setup(with_nginx: bool) -> anyhow::Result<Setup> {
    // Two threads: as many as the gateway's runtime and nginx's workers.
    let backend = StaticBackend::start(2)?;
    let env = TestEnv::new().await?;
    let gw = bench_gateway(&env, GATEWAY)?;
    let gateway_port = gw.port;
    let cluster = env.start(vec![gw]).await?;
    let mock_id = cluster
        .publish(&mock_api("Mock", "/mock", "r1"), &[LABEL])
        .await?;
    let proxied_id = cluster
        .publish(&proxied_api(&backend.url(), "r1"), &[LABEL])
        .await?;
    cluster.wait_applied(GATEWAY, &mock_id, 1).await?;
    cluster.wait_applied(GATEWAY, &proxied_id, 1).await?;
    let nginx = if with_nginx {
        start_nginx(backend.port).await?
    } else {
        None
    };
    let setup = Setup {
        env,
        cluster,
        backend,
        nginx,
        proxied_id,
        revision: 1,
        gateway_port,
    };
    for (name, url) in setup.targets() {
        let r = reqwest::get(&url).await.with_context(|| url.clone())?;
        if r.status().as_u16() != 200 {
            bail!(
                "{name} ({url}) answered {}: {}",
                r.status(),
                r.text().await?
            );
        }
    }
    Ok(setup)
}

impl Setup {
    pub fn gateway_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.gateway_port)
    }

    /// (name, URL) of every target, in the order they are measured.
    pub fn targets(&self) -> Vec<(&'static str, String)> {
        let mut t = vec![
            ("backend direct", format!("{}/hello", self.backend.url())),
            ("gateway mock API", self.gateway_url("/mock/hello")),
            ("gateway proxied API", self.gateway_url("/proxied/hello")),
        ];
        if let Some(n) = &self.nginx {
            t.push((
                "nginx proxy",
                format!("http://127.0.0.1:{}/proxied/hello", n.port),
            ));
        }
        t
    }

    fn gateway_rss(&mut self) -> Option<(f64, f64)> {
        self.cluster
            .cluster
            .process(GATEWAY)
            .and_then(|p| p.pid())
            .and_then(rss_mb)
    }

    /// One round: each target under the throughput load, then under the
    /// latency load.
    pub async fn run(
        &mut self,
        throughput: &WrkLoad,
        latency: &WrkLoad,
    ) -> anyhow::Result<Outcome> {
        let mut out = Outcome::default();
        let mut rps = std::collections::HashMap::new();
        let mut p99 = std::collections::HashMap::new();
        for (name, url) in self.targets() {
            let t = wrk(&url, throughput).await?;
            if t.non_2xx + t.socket_errors > 0 {
                out.note(format!(
                    "{name}: {} non-2xx and {} socket errors under the throughput load",
                    t.non_2xx, t.socket_errors
                ));
            }
            out.measure(format!("{name} @{}c", throughput.connections), t.latency);
            out.figure(format!("{name} requests/s"), t.rps, "1/s");
            rps.insert(name, t.rps);
            let l = wrk(&url, latency).await?;
            out.measure(format!("{name} @{}c", latency.connections), l.latency);
            p99.insert(name, l.latency.p99);
        }
        if let Some(nginx) = rps.get("nginx proxy").copied() {
            out.figure(
                "mock / nginx requests/s",
                rps["gateway mock API"] / nginx,
                "x",
            );
            out.figure(
                "proxied / nginx requests/s",
                rps["gateway proxied API"] / nginx,
                "x",
            );
        }
        let backend = p99["backend direct"];
        out.figure(
            format!("proxied added p99 over backend @{}c", latency.connections),
            p99["gateway proxied API"] - backend,
            "ms",
        );
        out.figure(
            format!("mock p99 minus backend p99 @{}c", latency.connections),
            p99["gateway mock API"] - backend,
            "ms",
        );
        if let Some(nginx) = p99.get("nginx proxy") {
            out.figure(
                format!("nginx added p99 over backend @{}c", latency.connections),
                nginx - backend,
                "ms",
            );
        }
        if let Some((hwm, rss)) = self.gateway_rss() {
            out.figure("gateway peak RSS", hwm, "MB");
            out.figure("gateway RSS after load", rss, "MB");
        }
        if let Some((hwm, _)) = self.nginx.as_ref().and_then(|n| n.pid()).and_then(rss_mb) {
            out.figure("nginx master peak RSS", hwm, "MB");
        }
        Ok(out)
    }

    /// A new revision of the proxied API: PUT + deploy + wait until the
    /// gateway applied it. Returns the time that took.
    pub async fn redeploy(&mut self) -> anyhow::Result<Duration> {
        let t = Instant::now();
        let xml = proxied_api(&self.backend.url(), &format!("r{}", self.revision + 1));
        let put = self
            .cluster
            .publisher
            .update_api(&self.proxied_id, &xml)
            .await?;
        if put.status.as_u16() != 201 {
            bail!("PUT answered {}: {}", put.status, put.text);
        }
        let revision = put.body["revision"].as_u64().context("no revision")? as u32;
        let d = self
            .cluster
            .publisher
            .deploy(&self.proxied_id, &[LABEL], None)
            .await?;
        if !d.status.is_success() {
            bail!("deploy answered {}: {}", d.status, d.text);
        }
        self.cluster
            .wait_applied(GATEWAY, &self.proxied_id, revision)
            .await?;
        self.revision = revision;
        Ok(t.elapsed())
    }

    /// The proxied API under `load`, once without and once during
    /// `redeploys` revisions deployed evenly over the run.
    pub async fn redeploy_under_load(
        &mut self,
        load: &WrkLoad,
        redeploys: usize,
    ) -> anyhow::Result<Outcome> {
        let url = self.gateway_url("/proxied/hello");
        let mut out = Outcome::default();
        let base = wrk(&url, load).await?;
        // Leave a second of load before the first and after the last.
        let window = load.duration.saturating_sub(Duration::from_secs(2));
        let spacing = window / redeploys.max(1) as u32;
        let during = {
            let url = url.clone();
            let load = WrkLoad {
                threads: load.threads,
                connections: load.connections,
                duration: load.duration,
            };
            tokio::spawn(async move { wrk(&url, &load).await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut took = Vec::with_capacity(redeploys);
        let start = Instant::now();
        for i in 0..redeploys {
            let due = start + spacing * i as u32;
            tokio::time::sleep_until(due.into()).await;
            took.push(self.redeploy().await?);
        }
        let redeploy_window = start.elapsed();
        let during = during.await??;
        if redeploy_window > load.duration {
            out.note(format!(
                "the redeploys took {} ms, longer than the load ({} s)",
                redeploy_window.as_millis(),
                load.duration.as_secs()
            ));
        }
        out.measure("latency without redeploys", base.latency);
        out.measure("latency during redeploys", during.latency);
        out.measure(
            "redeploy PUT+deploy -> applied (under load)",
            Stats::from_durations(&took),
        );
        out.figure("requests without redeploys", base.requests as f64, "");
        out.figure("requests during redeploys", during.requests as f64, "");
        out.figure("requests/s during redeploys", during.rps, "1/s");
        out.figure("revisions deployed during the load", took.len() as f64, "");
        out.figure(
            "failed requests during redeploys (non-2xx + socket errors)",
            (during.non_2xx + during.socket_errors) as f64,
            "",
        );
        out.figure(
            "failed requests without redeploys",
            (base.non_2xx + base.socket_errors) as f64,
            "",
        );
        out.figure(
            "p99 during / p99 without",
            during.latency.p99 / base.latency.p99.max(1e-9),
            "x",
        );
        Ok(out)
    }

    pub async fn stop(self) {
        if let Some(n) = self.nginx {
            n.stop().await;
        }
        self.cluster.stop().await;
        drop(self.env);
        drop(self.backend);
    }
}
