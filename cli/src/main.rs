#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use artisync_cli::commands::{self, apis, apply, finish, import, wait};
use artisync_cli::connection::ConnectionArgs;
use artisync_cli::output::OutputArgs;
use clap::{Parser, Subcommand};

/// artisync: keep a fleet of API gateways in sync with what you publish.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Start a local cluster: publisher (9400), traffic manager (9500) and
    /// three gateway nodes; with nothing installed unless --database-url
    /// and --amqp-url are given.
    Up(artisync_cli::up::UpArgs),
    /// Run one component in this process (what `up` starts its children with).
    Run {
        /// publisher, traffic-manager or gateway-node.
        component: String,
        /// The component's TOML config file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Create or update each API (matched by name and version); with
    /// --label, deploy it there.
    Publish(apply::PublishArgs),
    /// Deploy an API (id or name:version) to gateway labels.
    Deploy(apis::DeployArgs),
    /// Undeploy an API from one label.
    Undeploy(apis::UndeployArgs),
    /// What is published.
    Apis,
    /// The gateway nodes: labels, heartbeat, APIs in sync, behind, failed.
    Gateways,
    /// Which node runs which revision, and what failed and why.
    Status(apis::StatusArgs),
    /// Block until every live node of the labels applied an API: exit 0
    /// when all applied, 1 when a node failed, 3 on timeout.
    Wait(wait::WaitArgs),
    /// Make what is published and deployed on a label equal to the files:
    /// show the plan, then carry it out.
    Apply(apply::ApplyArgs),
    /// The plan of `apply` only: changes nothing.
    Diff(apply::DiffArgs),
    /// Bring artifacts over from another product.
    Import(import::ImportArgs),
    /// Write every published API's current artifact to a directory.
    Export(apis::ExportArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = cli.output.format();
    let publisher = || cli.connection.connect();
    macro_rules! client {
        ($name:literal, |$p:ident| $body:expr) => {
            finish($name, async {
                let $p = publisher()?;
                $body.await
            })
            .await
        };
    }
    match cli.command {
        Command::Up(args) => {
            artisync_telemetry::init("info");
            match artisync_cli::up::run(args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("artisync up: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run { component, config } => {
            artisync_telemetry::init("info");
            let config = config.as_deref();
            match component.as_str() {
                "publisher" => artisync_cli::components::publisher(config).await,
                "traffic-manager" => artisync_cli::components::traffic_manager(config).await,
                "gateway-node" => artisync_cli::components::gateway(config).await,
                other => {
                    eprintln!(
                        "artisync run: unknown component {other:?}; use publisher, traffic-manager or gateway-node"
                    );
                    ExitCode::from(commands::EXIT_USAGE)
                }
            }
        }
        Command::Publish(args) => client!("publish", |p| apply::publish(&p, args, format)),
        Command::Deploy(args) => client!("deploy", |p| apis::deploy(&p, args, format)),
        Command::Undeploy(args) => client!("undeploy", |p| apis::undeploy(&p, args, format)),
        Command::Apis => client!("apis", |p| apis::apis(&p, format)),
        Command::Gateways => client!("gateways", |p| apis::gateways(&p, format)),
        Command::Status(args) => client!("status", |p| apis::status(&p, args, format)),
        Command::Wait(args) => client!("wait", |p| wait::run(&p, args, format)),
        Command::Apply(args) => client!("apply", |p| apply::apply(&p, args, format)),
        Command::Diff(args) => client!("diff", |p| apply::diff(&p, args, format)),
        Command::Import(args) => match args.from {
            import::ImportFrom::Wso2(args) => {
                client!("import wso2", |p| import::wso2(&p, args, format))
            }
        },
        Command::Export(args) => client!("export", |p| apis::export(&p, args, format)),
    }
}
