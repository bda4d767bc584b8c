#![forbid(unsafe_code)]
//! The publisher binary and its composition root: the backends come from
//! the config's URLs.

use std::path::PathBuf;
use std::process::ExitCode;

use artisync_backends::Storage;
use artisync_publisher::app;
use artisync_publisher::config::{self, Settings};
use clap::Parser;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The artisync publisher REST API.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// TOML config file (see config/publisher.toml).
    #[arg(long, short, env = "ARTISYNC_CONFIG")]
    config: Option<PathBuf>,
}

async fn start(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<JoinHandle<()>> {
    let storage = Storage::open(&settings.database, &settings.storage_options()).await?;
    let mut backends = storage.for_publisher(&settings.amqp_url, &settings.topology);
    if let Some(push) = &settings.direct_push {
        backends.push_targets = artisync_backends::push_targets(
            push.gateways.iter().map(|g| {
                (
                    g.service_url.as_str(),
                    g.token.as_str(),
                    g.labels.as_slice(),
                )
            }),
            push.timeout,
        )?;
    }
    let running = app::start(settings, backends, shutdown).await?;
    Ok(storage.close_after(running.task, None))
}

#[tokio::main]
async fn main() -> ExitCode {
    artisync_telemetry::init("info");
    let cli = Cli::parse();
    artisync_telemetry::signals::run_until_signalled(
        "publisher",
        config::load(cli.config.as_deref()),
        start,
    )
    .await
}
