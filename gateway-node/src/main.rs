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

// The control plane (events, deploys, the admin API, status reports) is
// light and runs on one thread: with many nodes on few cores, a
// work-stealing runtime spends more on waking its idle workers than on the
// work. API traffic has its own runtime per core (`[gateway.data_plane]
// workers`), and file and bulk work goes to the blocking pool.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    artisync_shared::telemetry::init("info");
    let cli = Cli::parse();
    artisync_gateway::node::run_until_signalled(cli.config.as_deref()).await
}
