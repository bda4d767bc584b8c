#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// The artisync traffic manager: internal data API and persistence store.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// TOML config file (see config/traffic-manager.toml).
    #[arg(long, short, env = "ARTISYNC_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    artisync_shared::telemetry::init("info");
    let cli = Cli::parse();
    artisync_traffic_manager::app::run_until_signalled(cli.config.as_deref()).await
}
