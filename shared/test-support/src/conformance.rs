//! The clusters the conformance suite runs its scenarios on: the same
//! topology (gw-1 and gw-2 on "Production and Sandbox", gw-3 on "Label1")
//! on every pair of backends, behind one trait, so that each scenario is
//! written once.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use artisync_cli::client::{GatewayAdminClient, PublisherClient};
use artisync_cli::cluster::{ClusterSpec, GatewaySpec, free_port, random_token};
use artisync_cli::embedded::Embedded;
use async_trait::async_trait;

use crate::fault::TcpFaultProxy;
use crate::{TestCluster, TestEnv, eventually};

pub const PROD: &str = "Production and Sandbox";
pub const LABEL1: &str = "Label1";
/// The nodes and their labels.
pub const NODES: [(&str, &str); 3] = [("gw-1", PROD), ("gw-2", PROD), ("gw-3", LABEL1)];
/// Every node reconciles this often, so that a lost event is repaired
/// well within a test's deadline.
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(2);

/// A cluster under test.
#[async_trait]
pub trait ClusterUnderTest: Send + Sync {
    /// Which backends, for messages.
    fn backends(&self) -> &'static str;
    fn publisher(&self) -> PublisherClient;
    fn gateway_url(&self, node: &str) -> String;
    fn admin(&self, node: &str) -> GatewayAdminClient;
    /// The traffic manager's URL and a token that may use every label and
    /// the persistence store.
    fn traffic_manager(&self) -> (String, String);
    /// Stops one gateway node; its queue keeps what is published meanwhile.
    async fn stop_gateway(&mut self, node: &str) -> anyhow::Result<()>;
    /// Starts it again and waits until it is ready.
    async fn start_gateway(&mut self, node: &str) -> anyhow::Result<()>;
    /// Stops everything and starts it again on the same data.
    async fn restart(&mut self) -> anyhow::Result<()>;
    /// Cuts a node off its event bus (it keeps serving and reconciling).
    async fn cut_events(&mut self, node: &str) -> anyhow::Result<()>;
    async fn heal_events(&mut self, node: &str) -> anyhow::Result<()>;
    /// Waits until `n` events wait in a node's queue, then drops them.
    async fn lose_events(&self, node: &str, n: u32) -> anyhow::Result<()>;
    async fn stop(self: Box<Self>);
}

fn gateway_spec(id: &str, label: &str) -> anyhow::Result<GatewaySpec> {
    let mut gw = GatewaySpec::new(id, &[label], free_port()?, free_port()?);
    gw.status_interval_ms = 1_000;
    gw.retry_duration_ms = 200;
    gw.max_retry_count = 3;
    gw.reconcile_interval_ms = RECONCILE_INTERVAL.as_millis() as u64;
    Ok(gw)
}

fn nodes() -> anyhow::Result<Vec<GatewaySpec>> {
    NODES
        .iter()
        .map(|(id, label)| gateway_spec(id, label))
        .collect()
}

// ---- the embedded default ---------------------------------------------------

/// SQLite and the in-process bus, everything in this process.
pub struct EmbeddedCluster {
    embedded: Option<Embedded>,
    spec: ClusterSpec,
    work_dir: PathBuf,
}

impl EmbeddedCluster {
    pub async fn start() -> anyhow::Result<EmbeddedCluster> {
        let work_dir = std::env::temp_dir().join(format!(
            "artisync-conformance-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let mut spec = ClusterSpec::local(String::new(), String::new(), work_dir.clone());
        spec.publisher_port = free_port()?;
        spec.traffic_manager_port = free_port()?;
        spec.gateways = nodes()?;
        spec.log_level = "info".into();
        let embedded = Embedded::start(spec.clone()).await?;
        Ok(EmbeddedCluster {
            embedded: Some(embedded),
            spec,
            work_dir,
        })
    }

    fn embedded(&mut self) -> anyhow::Result<&mut Embedded> {
        self.embedded.as_mut().context("the cluster is stopped")
    }

    fn node(&self, node: &str) -> anyhow::Result<artisync_domain::NodeId> {
        Ok(artisync_domain::NodeId::parse(node)?)
    }
}

impl Drop for EmbeddedCluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.work_dir);
    }
}

#[async_trait]
impl ClusterUnderTest for EmbeddedCluster {
    fn backends(&self) -> &'static str {
        "SQLite + in-process bus"
    }

    fn publisher(&self) -> PublisherClient {
        PublisherClient::new(&self.spec.publisher_url(), &self.spec.publisher_token)
    }

    fn gateway_url(&self, node: &str) -> String {
        let gw = self.spec.gateways.iter().find(|g| g.id == node);
        format!("http://127.0.0.1:{}", gw.map_or(0, |g| g.port))
    }

    fn admin(&self, node: &str) -> GatewayAdminClient {
        let gw = self.spec.gateways.iter().find(|g| g.id == node);
        GatewayAdminClient::new(
            &format!("http://127.0.0.1:{}", gw.map_or(0, |g| g.admin_port)),
            &self.spec.admin_token,
        )
    }

    fn traffic_manager(&self) -> (String, String) {
        (self.spec.traffic_manager_url(), self.spec.operator_token())
    }

    async fn stop_gateway(&mut self, node: &str) -> anyhow::Result<()> {
        self.embedded()?.stop_gateway(node).await
    }

    async fn start_gateway(&mut self, node: &str) -> anyhow::Result<()> {
        self.embedded()?.start_gateway(node).await
    }

    async fn restart(&mut self) -> anyhow::Result<()> {
        if let Some(embedded) = self.embedded.take() {
            embedded.stop().await;
        }
        self.embedded = Some(Embedded::start(self.spec.clone()).await?);
        Ok(())
    }

    async fn cut_events(&mut self, node: &str) -> anyhow::Result<()> {
        let node = self.node(node)?;
        self.embedded()?.bus.cut(&node);
        Ok(())
    }

    async fn heal_events(&mut self, node: &str) -> anyhow::Result<()> {
        let node = self.node(node)?;
        self.embedded()?.bus.heal(&node);
        Ok(())
    }

    async fn lose_events(&self, node: &str, n: u32) -> anyhow::Result<()> {
        let node = self.node(node)?;
        let bus = self
            .embedded
            .as_ref()
            .map(|e| e.bus.clone())
            .context("the cluster is stopped")?;
        eventually(
            "the events to reach the node's queue",
            Duration::from_secs(10),
            || async { Ok((bus.stats(&node).ready >= n as usize).then_some(())) },
        )
        .await?;
        bus.purge(&node);
        Ok(())
    }

    async fn stop(mut self: Box<Self>) {
        if let Some(embedded) = self.embedded.take() {
            embedded.stop().await;
        }
    }
}

// ---- the external mode --------------------------------------------------------

/// A database server (PostgreSQL, or MySQL via `env`) and RabbitMQ, each
/// component in its own process. Each node reaches the broker through a
/// fault proxy, so that its events can be cut off.
pub struct ExternalCluster {
    env: TestEnv,
    cluster: Option<TestCluster>,
    proxies: BTreeMap<String, TcpFaultProxy>,
    backends: &'static str,
}

impl ExternalCluster {
    /// PostgreSQL and RabbitMQ.
    pub async fn postgres() -> anyhow::Result<ExternalCluster> {
        Self::start(TestEnv::new().await?, "PostgreSQL + RabbitMQ").await
    }

    /// MariaDB (or MySQL) and RabbitMQ; the persistence store on a SQLite
    /// file in the work dir.
    pub async fn mysql() -> anyhow::Result<ExternalCluster> {
        Self::start(TestEnv::mysql().await?, "MariaDB + RabbitMQ").await
    }

    /// On `env`'s database and broker.
    pub async fn start(env: TestEnv, backends: &'static str) -> anyhow::Result<ExternalCluster> {
        let mut gateways = Vec::new();
        for (id, label) in NODES {
            gateways.push(env.gateway(id, &[label])?);
        }
        for gw in &mut gateways {
            gw.reconcile_interval_ms = RECONCILE_INTERVAL.as_millis() as u64;
        }
        let mut spec = env.spec(gateways)?;
        let mut proxies = BTreeMap::new();
        for gw in &mut spec.gateways {
            let proxy = TcpFaultProxy::start(env.amqp_addr()?).await?;
            gw.amqp_url = Some(env.amqp_url_through(proxy.addr)?);
            proxies.insert(gw.id.clone(), proxy);
        }
        let cluster = env.start_spec(spec, &NODES.map(|(id, _)| id)).await?;
        Ok(ExternalCluster {
            env,
            cluster: Some(cluster),
            proxies,
            backends,
        })
    }

    fn cluster(&self) -> &TestCluster {
        match &self.cluster {
            Some(c) => c,
            None => unreachable!("the cluster lives until stop"),
        }
    }

    fn cluster_mut(&mut self) -> &mut TestCluster {
        match &mut self.cluster {
            Some(c) => c,
            None => unreachable!("the cluster lives until stop"),
        }
    }

    fn proxy(&self, node: &str) -> anyhow::Result<&TcpFaultProxy> {
        self.proxies
            .get(node)
            .with_context(|| format!("no node {node}"))
    }
}

#[async_trait]
impl ClusterUnderTest for ExternalCluster {
    fn backends(&self) -> &'static str {
        self.backends
    }

    fn publisher(&self) -> PublisherClient {
        self.cluster().publisher.clone()
    }

    fn gateway_url(&self, node: &str) -> String {
        self.cluster().gateway_url(node).unwrap_or_default()
    }

    fn admin(&self, node: &str) -> GatewayAdminClient {
        self.cluster()
            .admin(node)
            .unwrap_or_else(|_| GatewayAdminClient::new("http://127.0.0.1:0", &random_token()))
    }

    fn traffic_manager(&self) -> (String, String) {
        let spec = &self.cluster().cluster.spec;
        (spec.traffic_manager_url(), spec.operator_token())
    }

    async fn stop_gateway(&mut self, node: &str) -> anyhow::Result<()> {
        let process = self
            .cluster_mut()
            .cluster
            .process(node)
            .with_context(|| format!("no process {node}"))?;
        process.stop(Duration::from_secs(15)).await;
        Ok(())
    }

    async fn start_gateway(&mut self, node: &str) -> anyhow::Result<()> {
        let cluster = &mut self.cluster_mut().cluster;
        cluster.restart_process(node)?;
        cluster.wait_ready(node, Duration::from_secs(60)).await?;
        Ok(())
    }

    async fn restart(&mut self) -> anyhow::Result<()> {
        let cluster = &mut self.cluster_mut().cluster;
        cluster.stop().await;
        for name in [
            artisync_cli::cluster::PUBLISHER,
            artisync_cli::cluster::TRAFFIC_MANAGER,
        ] {
            cluster.restart_process(name)?;
            cluster.wait_ready(name, Duration::from_secs(60)).await?;
        }
        for (id, _) in NODES {
            cluster.restart_process(id)?;
        }
        for (id, _) in NODES {
            cluster.wait_ready(id, Duration::from_secs(60)).await?;
        }
        Ok(())
    }

    async fn cut_events(&mut self, node: &str) -> anyhow::Result<()> {
        self.proxy(node)?.cut();
        let admin = self.admin(node);
        eventually(
            "the node to notice its broker is gone",
            Duration::from_secs(10),
            || async {
                let ready = admin.0.get("/health/ready").await?;
                Ok((ready.body["amqpConnected"] == false).then_some(()))
            },
        )
        .await
    }

    async fn heal_events(&mut self, node: &str) -> anyhow::Result<()> {
        self.proxy(node)?.heal();
        Ok(())
    }

    async fn lose_events(&self, node: &str, n: u32) -> anyhow::Result<()> {
        eventually(
            "the events to reach the node's queue",
            Duration::from_secs(10),
            || async { Ok((self.env.queue_depth(node).await? >= n).then_some(())) },
        )
        .await?;
        let purged = self.env.purge_queue(node).await?;
        if purged < n {
            bail!("purged {purged} events, expected {n}");
        }
        Ok(())
    }

    async fn stop(mut self: Box<Self>) {
        if let Some(cluster) = self.cluster.take() {
            cluster.stop().await;
        }
    }
}
