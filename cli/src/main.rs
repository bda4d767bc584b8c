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
}

/// A client command's own arguments, with where the publisher is and how
/// to print.
#[derive(clap::Args)]
struct Client<A: clap::Args> {
    #[command(flatten)]
    args: A,
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(flatten)]
    output: OutputArgs,
}

/// For commands that take nothing else.
#[derive(clap::Args)]
struct NoArgs {}

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
    Publish(Client<apply::PublishArgs>),
    /// Deploy an API (id or name:version) to gateway labels.
    Deploy(Client<apis::DeployArgs>),
    /// Undeploy an API from one label.
    Undeploy(Client<apis::UndeployArgs>),
    /// What is published.
    Apis(Client<NoArgs>),
    /// The gateway nodes: labels, heartbeat, APIs in sync, behind, failed.
    Gateways(Client<NoArgs>),
    /// Which node runs which revision, and what failed and why.
    Status(Client<apis::StatusArgs>),
    /// Block until every live node of the labels applied an API: exit 0
    /// when all applied, 1 when a node failed, 3 on timeout.
    Wait(Client<wait::WaitArgs>),
    /// Make what is published and deployed on a label equal to the files:
    /// show the plan, then carry it out.
    Apply(Client<apply::ApplyArgs>),
    /// The plan of `apply` only: changes nothing.
    Diff(Client<apply::DiffArgs>),
    /// Bring artifacts over from another product.
    Import(Client<import::ImportArgs>),
    /// Write every published API's current artifact to a directory.
    Export(Client<apis::ExportArgs>),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    macro_rules! client {
        ($client:expr, $name:literal, |$p:ident, $args:ident, $format:ident| $body:expr) => {{
            let client = $client;
            let $format = client.output.format();
            let $args = client.args;
            finish($name, async {
                let $p = client.connection.connect()?;
                $body.await
            })
            .await
        }};
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
        Command::Publish(c) => client!(c, "publish", |p, a, f| apply::publish(&p, a, f)),
        Command::Deploy(c) => client!(c, "deploy", |p, a, f| apis::deploy(&p, a, f)),
        Command::Undeploy(c) => client!(c, "undeploy", |p, a, f| apis::undeploy(&p, a, f)),
        Command::Apis(c) => client!(c, "apis", |p, _a, f| apis::apis(&p, f)),
        Command::Gateways(c) => client!(c, "gateways", |p, _a, f| apis::gateways(&p, f)),
        Command::Status(c) => client!(c, "status", |p, a, f| apis::status(&p, a, f)),
        Command::Wait(c) => client!(c, "wait", |p, a, f| wait::run(&p, a, f)),
        Command::Apply(c) => client!(c, "apply", |p, a, f| apply::apply(&p, a, f)),
        Command::Diff(c) => client!(c, "diff", |p, a, f| apply::diff(&p, a, f)),
        Command::Import(c) => client!(c, "import wso2", |p, a, f| match a.from {
            import::ImportFrom::Wso2(a) => import::wso2(&p, a, f),
        }),
        Command::Export(c) => client!(c, "export", |p, a, f| apis::export(&p, a, f)),
    }
}
