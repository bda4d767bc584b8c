#![forbid(unsafe_code)]
//! The gateway-node binary and its composition root: the traffic manager
//! over HTTP as the artifact source, RabbitMQ as the event bus; or, with
//! `artifact_source = "publisher"`, neither: the publisher pushes.

use std::path::PathBuf;
use std::process::ExitCode;

use artisync_gateway::config::{self, DeploySource, Settings};
use artisync_gateway::start;
use clap::Parser;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// An artisync gateway node.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// TOML config file (see config/gateway-1.toml).
    #[arg(long, short, env = "ARTISYNC_CONFIG")]
    config: Option<PathBuf>,
}

async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<JoinHandle<()>> {
    if let DeploySource::Publisher { .. } = settings.deploy_source {
        return Ok(start::start_pushed(settings, shutdown).await?.task);
    }
    let backends = artisync_backends::gateway_with_tls(
        &settings.traffic_manager_url,
        &settings.traffic_manager_token,
        settings.traffic_manager_timeout,
        &artisync_backends::ClientTls {
            ca_file: settings.traffic_manager_tls.ca_file.clone(),
            identity: settings.traffic_manager_tls.client_identity.clone(),
        },
        &settings.amqp_url,
        &settings.topology,
    )?;
    Ok(start::start(settings, backends, shutdown).await?.task)
}

// The control plane (events, deploys, the admin API, status reports) is
// light and runs on one thread: with many nodes on few cores, a
// work-stealing runtime spends more on waking its idle workers than on the
// work. API traffic has its own runtime per core (`[gateway.data_plane]
// workers`), and file and bulk work goes to the blocking pool.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    artisync_telemetry::init("info");
    let cli = Cli::parse();
    artisync_telemetry::signals::run_until_signalled(
        "gateway-node",
        config::load(cli.config.as_deref()),
        run,
    )
    .await
}
