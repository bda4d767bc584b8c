#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// An artisync gateway node.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// TOML config file (see config/gateway-1.toml).
    #[arg(long, short, env = "ARTISYNC_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    artisync_shared::telemetry::init("info");
    let cli = Cli::parse();
    artisync_gateway::node::run_until_signalled(cli.config.as_deref()).await
}
