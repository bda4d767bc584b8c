#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// artisync: keep a fleet of API gateways in sync with what you publish.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a local cluster: publisher (9400), traffic manager (9500) and
    /// three gateway nodes, against PostgreSQL and RabbitMQ.
    Up(artisync_cli::up::UpArgs),
    /// Run one component in this process (what `up` starts its children with).
    Run {
        /// publisher, traffic-manager or gateway-node.
        component: String,
        /// The component's TOML config file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    artisync_telemetry::init("info");
    let cli = Cli::parse();
    match cli.command {
        Command::Up(args) => match artisync_cli::up::run(args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("artisync up: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Run { component, config } => {
            let config = config.as_deref();
            match component.as_str() {
                "publisher" => artisync_cli::components::publisher(config).await,
                "traffic-manager" => artisync_cli::components::traffic_manager(config).await,
                "gateway-node" => artisync_cli::components::gateway(config).await,
                other => {
                    eprintln!(
                        "artisync run: unknown component {other:?}; use publisher, traffic-manager or gateway-node"
                    );
                    ExitCode::from(2)
                }
            }
        }
    }
}
