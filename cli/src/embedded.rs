//! The embedded default: the publisher, the traffic manager and the
//! gateway nodes in this one process, on one SQLite file and an
//! in-process bus. This is its composition root: the components are the
//! same libraries the separate binaries run, configured from the same
//! generated config files, with other backends behind the same ports.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use artisync_backends::Storage;
use artisync_config::storage::{StorageOptions, StorageUrl};
use artisync_in_process::{InProcessBus, InProcessSource};
use artisync_ports::{GatewayBackends, PublisherBackends};
use tokio_util::sync::CancellationToken;

use crate::cluster::{Cluster, ClusterSpec};

/// Messages each node's in-process queue holds; past it, events are
/// dropped and the node reconciles (nothing is lost: the outbox is
/// durable and the desired state is the truth).
pub const QUEUE_CAPACITY: usize = 10_000;

/// The SQLite file in a work dir.
pub fn database_path(work_dir: &Path) -> PathBuf {
    work_dir.join("artisync.db")
}

/// A running embedded cluster.
pub struct Embedded {
    pub spec: ClusterSpec,
    pub storage: Storage,
    pub bus: InProcessBus,
    pub publisher: artisync_publisher::app::Running,
    pub traffic_manager: artisync_traffic_manager::app::Running,
    pub gateways: Vec<(String, artisync_gateway::start::Running)>,
}

/// Fails early, naming the path, when the work dir cannot be used.
pub fn check_work_dir(work_dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(work_dir)
        .with_context(|| format!("cannot create the work dir {}", work_dir.display()))?;
    let probe = work_dir.join(".write-test");
    std::fs::write(&probe, b"")
        .with_context(|| format!("the work dir {} is not writable", work_dir.display()))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

impl Embedded {
    /// Writes the components' configs (as the external mode does, with
    /// the SQLite file as the database) and starts everything, gateways
    /// last; answers once every gateway is ready.
    pub async fn start(mut spec: ClusterSpec) -> anyhow::Result<Embedded> {
        check_work_dir(&spec.work_dir)?;
        let path = database_path(&spec.work_dir);
        spec.database_url = format!("sqlite://{}", path.display());
        if spec.amqp_url.is_empty() {
            // The configs name a broker, which nothing here connects to.
            spec.amqp_url = crate::up::LOCAL_AMQP_URL.to_owned();
        }
        let cluster = Cluster::prepare(spec.clone())?;
        let config = |name: &str| spec.work_dir.join("config").join(format!("{name}.toml"));

        let publisher_settings =
            artisync_publisher::config::load(Some(&config(crate::cluster::PUBLISHER)))?;
        let traffic_settings =
            artisync_traffic_manager::config::load(Some(&config(crate::cluster::TRAFFIC_MANAGER)))?;
        let mut gateway_settings = Vec::new();
        for gw in &spec.gateways {
            gateway_settings.push((
                gw.id.clone(),
                artisync_gateway::config::load(Some(&config(&gw.id)))?,
            ));
        }
        drop(cluster);

        let storage = Storage::open(
            &StorageUrl::Sqlite(path),
            &StorageOptions {
                inline_artifact_max_bytes: publisher_settings.inline_artifact_max_bytes,
                ..StorageOptions::default()
            },
        )
        .await?;
        let bus = InProcessBus::new(QUEUE_CAPACITY);
        let publisher = artisync_publisher::app::start(
            publisher_settings,
            PublisherBackends {
                store: storage.artifacts.clone(),
                outbox: storage.outbox.clone(),
                health: storage.health.clone(),
                bus: Box::new(bus.clone()),
                desired: storage.desired.clone(),
                push_targets: Vec::new(),
            },
            CancellationToken::new(),
        )
        .await?;
        let traffic_manager = artisync_traffic_manager::app::start(
            traffic_settings,
            storage.for_traffic_manager()?,
            CancellationToken::new(),
        )
        .await?;
        let mut embedded = Embedded {
            spec,
            storage,
            bus,
            publisher,
            traffic_manager,
            gateways: Vec::new(),
        };
        for (id, settings) in gateway_settings {
            embedded.start_node(id, settings).await?;
        }
        embedded.wait_ready(Duration::from_secs(60)).await?;
        Ok(embedded)
    }

    async fn start_node(
        &mut self,
        id: String,
        settings: artisync_gateway::config::Settings,
    ) -> anyhow::Result<()> {
        let backends = GatewayBackends {
            source: Arc::new(InProcessSource::new(self.storage.desired.clone())),
            events: Arc::new(self.bus.clone()),
        };
        let running = artisync_gateway::start::start(settings, backends, CancellationToken::new())
            .await
            .with_context(|| format!("starting {id}"))?;
        self.gateways.push((id, running));
        Ok(())
    }

    /// Stops one gateway node (its queue on the bus keeps what comes meanwhile).
    pub async fn stop_gateway(&mut self, id: &str) -> anyhow::Result<()> {
        let Some(i) = self.gateways.iter().position(|(g, _)| g == id) else {
            bail!("no running gateway {id}");
        };
        let (_, gw) = self.gateways.remove(i);
        gw.shutdown.cancel();
        let _ = gw.task.await;
        Ok(())
    }

    /// Starts a stopped gateway node again, from its config file, and waits
    /// until it is ready.
    pub async fn start_gateway(&mut self, id: &str) -> anyhow::Result<()> {
        if self.gateways.iter().any(|(g, _)| g == id) {
            bail!("{id} is running");
        }
        let path = self.spec.work_dir.join("config").join(format!("{id}.toml"));
        let settings = artisync_gateway::config::load(Some(&path))?;
        self.start_node(id.to_owned(), settings).await?;
        self.wait_ready(Duration::from_secs(60)).await
    }

    async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        for (id, gw) in &self.gateways {
            let mut changes = gw.node.state.subscribe();
            while !gw.node.readiness().ready {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    bail!("{id} did not become ready within {} s", timeout.as_secs());
                }
                // Readiness follows the node's state; the timer covers a
                // start-up that changes nothing.
                let _ =
                    tokio::time::timeout(left.min(Duration::from_millis(100)), changes.changed())
                        .await;
            }
        }
        Ok(())
    }

    /// Stops the gateways, then the traffic manager, then the publisher
    /// (whose relay publishes what the last requests committed), then
    /// closes the database.
    pub async fn stop(self) {
        for (_, gw) in self.gateways {
            gw.shutdown.cancel();
            let _ = gw.task.await;
        }
        self.traffic_manager.shutdown.cancel();
        let _ = self.traffic_manager.task.await;
        self.publisher.shutdown.cancel();
        let _ = self.publisher.task.await;
        self.storage.close().await;
    }
}
