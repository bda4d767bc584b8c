//! Components started in this process, composed as their binaries compose
//! them (the backends from the config's URLs), for tests that bind port 0.

use anyhow::Context;
use artisync_backends::Storage;
use tokio_util::sync::CancellationToken;

/// A component started in-process; stopping it also closes its storage.
pub struct Started {
    pub addr: std::net::SocketAddr,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
}

impl Started {
    /// Cancels and waits until it has stopped.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

pub async fn publisher(settings: artisync_publisher::config::Settings) -> anyhow::Result<Started> {
    let storage = Storage::open(&settings.database, &settings.storage_options())
        .await
        .context("opening the publisher's storage")?;
    let backends = storage.for_publisher(&settings.amqp_url, &settings.topology);
    let running = artisync_publisher::app::start(settings, backends, CancellationToken::new())
        .await
        .context("starting the publisher")?;
    Ok(Started {
        addr: running.addr,
        shutdown: running.shutdown,
        task: storage.close_after(running.task, None),
    })
}

pub async fn traffic_manager(
    settings: artisync_traffic_manager::config::Settings,
) -> anyhow::Result<Started> {
    let shutdown = CancellationToken::new();
    let (storage, watch) = Storage::open_for_traffic_manager(
        &settings.database_source,
        settings.object_store_url.as_ref(),
        &settings.storage_options(),
        shutdown.clone(),
    )
    .await
    .context("opening the traffic manager's storage")?;
    let backends = storage.for_traffic_manager()?;
    let running = artisync_traffic_manager::app::start(settings, backends, shutdown)
        .await
        .context("starting the traffic manager")?;
    Ok(Started {
        addr: running.addr,
        shutdown: running.shutdown,
        task: storage.close_after(running.task, watch),
    })
}
