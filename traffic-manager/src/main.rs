#![forbid(unsafe_code)]
//! The traffic manager binary and its composition root: the backends come
//! from `[database]`.

use std::path::PathBuf;
use std::process::ExitCode;

use artisync_backends::Storage;
use artisync_traffic_manager::app;
use artisync_traffic_manager::config::{self, Settings};
use clap::Parser;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The artisync traffic manager: internal data API and persistence store.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// TOML config file (see config/traffic-manager.toml).
    #[arg(long, short, env = "ARTISYNC_CONFIG")]
    config: Option<PathBuf>,
}

async fn start(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<JoinHandle<()>> {
    let (storage, watch) = Storage::open_for_traffic_manager(
        &settings.database_source,
        settings.object_store_url.as_ref(),
        &settings.storage_options(),
        shutdown.clone(),
    )
    .await?;
    let backends = storage.for_traffic_manager()?;
    let running = app::start(settings, backends, shutdown).await?;
    Ok(storage.close_after(running.task, watch))
}

#[tokio::main]
async fn main() -> ExitCode {
    artisync_telemetry::init("info");
    let cli = Cli::parse();
    artisync_telemetry::signals::run_until_signalled(
        "traffic-manager",
        config::load(cli.config.as_deref()),
        start,
    )
    .await
}
