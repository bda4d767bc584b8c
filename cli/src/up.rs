//! `artisync up`: a whole local cluster in one command.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use artisync_config::storage::StorageUrl;

use crate::client::{GatewayAdminClient, PublisherClient};
use crate::cluster::{Cluster, ClusterSpec, StateFile};
use crate::embedded::Embedded;

/// The sample API `up` publishes.
pub const SAMPLE_API: &str = include_str!("../../config/sample-api.xml");
pub const SAMPLE_LABEL: &str = "Production and Sandbox";

#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// PostgreSQL (`postgres://…`) or MySQL/MariaDB (`mysql://…`) for the
    /// artifact store, the database created if missing: runs the external
    /// mode, each component in its own process. Without it (and without
    /// `--amqp-url`), everything runs in this process on a SQLite file in
    /// the work dir (the embedded default).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// RabbitMQ for deployment events (external mode).
    #[arg(long, env = "AMQP_URL")]
    pub amqp_url: Option<String>,
    /// Where the database (embedded), configs, logs and gateway caches go.
    #[arg(long, default_value = ".artisync")]
    pub work_dir: PathBuf,
    /// Once everything is ready, write a JSON description of the cluster
    /// (URLs and tokens) here; default: `state.json` in the work dir.
    #[arg(long)]
    pub state_file: Option<PathBuf>,
    /// Do not publish the sample API.
    #[arg(long)]
    pub no_sample: bool,
    /// Added to every port (9400, 9500, 8280.., 9600..), to run a second
    /// cluster beside the first.
    #[arg(long, default_value_t = 0)]
    pub port_offset: u16,
    /// Exchange deployment events go to.
    #[arg(long, default_value = "artisync.deployments")]
    pub exchange: String,
    /// Each gateway's queue is this prefix plus its id.
    #[arg(long, default_value = "artisync.gateway.")]
    pub queue_prefix: String,
}

/// The external mode's defaults, for whichever of the two URLs is missing.
pub const LOCAL_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/artisync";
pub const LOCAL_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// How `up` runs, decided from the arguments before anything starts.
enum Mode {
    Embedded,
    External { database: StorageUrl, amqp: String },
}

fn mode(args: &UpArgs) -> anyhow::Result<Mode> {
    if args.database_url.is_none() && args.amqp_url.is_none() {
        return Ok(Mode::Embedded);
    }
    let raw = args.database_url.as_deref().unwrap_or(LOCAL_DATABASE_URL);
    let database = StorageUrl::parse("--database-url", raw)?;
    if let StorageUrl::Sqlite(_) = database {
        bail!(
            "--database-url: the external mode needs a database server (postgres:// or mysql://); leave both URLs out to run everything on SQLite"
        );
    }
    let amqp = args
        .amqp_url
        .clone()
        .unwrap_or_else(|| LOCAL_AMQP_URL.to_owned());
    artisync_config::url_with_scheme("--amqp-url", &amqp, &["amqp"])?;
    Ok(Mode::External { database, amqp })
}

fn spec_of(args: &UpArgs, database_url: String, amqp_url: String) -> anyhow::Result<ClusterSpec> {
    let work_dir = std::path::absolute(&args.work_dir).context("--work-dir")?;
    let mut spec = ClusterSpec::local(database_url, amqp_url, work_dir);
    spec.exchange = args.exchange.clone();
    spec.queue_prefix = args.queue_prefix.clone();
    if args.port_offset > 0 {
        let shift = |port: u16| {
            port.checked_add(args.port_offset).with_context(|| {
                format!(
                    "--port-offset {} moves port {port} past 65535",
                    args.port_offset
                )
            })
        };
        spec.publisher_port = shift(spec.publisher_port)?;
        spec.traffic_manager_port = shift(spec.traffic_manager_port)?;
        for gw in &mut spec.gateways {
            gw.port = shift(gw.port)?;
            gw.admin_port = shift(gw.admin_port)?;
        }
    }
    Ok(spec)
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    match mode(&args)? {
        Mode::Embedded => run_embedded(&args).await,
        Mode::External { database, amqp } => run_external(&args, database, amqp).await,
    }
}

async fn run_embedded(args: &UpArgs) -> anyhow::Result<()> {
    let spec = spec_of(args, String::new(), LOCAL_AMQP_URL.to_owned())?;
    println!(
        "starting publisher, traffic manager and 3 gateway nodes in this process (data in {}) ...",
        crate::embedded::database_path(&spec.work_dir).display()
    );
    let embedded = Embedded::start(spec).await?;
    let spec = embedded.spec.clone();
    let pid = std::process::id();
    let result = serve(&spec, args, |_| Some(pid)).await;
    if let Err(e) = &result {
        eprintln!("artisync up: {e:#}");
    }
    println!("\nstopping ...");
    embedded.stop().await;
    println!("stopped");
    result
}

async fn run_external(args: &UpArgs, database: StorageUrl, amqp: String) -> anyhow::Result<()> {
    if let Some(name) = artisync_backends::ensure_database(&database).await? {
        println!("created database {name}");
    }
    let raw = args
        .database_url
        .clone()
        .unwrap_or_else(|| LOCAL_DATABASE_URL.to_owned());
    let spec = spec_of(args, raw, amqp)?;
    println!(
        "starting publisher, traffic manager and 3 gateway nodes (logs in {}/logs) ...",
        spec.work_dir.display()
    );
    let mut cluster = Cluster::start(spec).await?;
    let spec = cluster.spec.clone();
    let pids = cluster.state();
    let result = serve(&spec, args, |id| {
        pids.gateways
            .iter()
            .find(|g| g.id == id)
            .and_then(|g| g.pid)
    })
    .await;
    if let Err(e) = &result {
        eprintln!("artisync up: {e:#}");
    }
    println!("\nstopping ...");
    cluster.stop().await;
    println!("stopped");
    result
}

async fn serve(
    spec: &ClusterSpec,
    args: &UpArgs,
    pid_of: impl Fn(&str) -> Option<u32>,
) -> anyhow::Result<()> {
    let publisher = PublisherClient::new(&spec.publisher_url(), &spec.publisher_token);
    let mut sample_id = None;
    if !args.no_sample {
        let id = publish_sample(&publisher).await?;
        for gw in spec
            .gateways
            .iter()
            .filter(|g| g.labels.iter().any(|l| l == SAMPLE_LABEL))
        {
            let admin = GatewayAdminClient::new(
                &format!("http://127.0.0.1:{}", gw.admin_port),
                &spec.admin_token,
            );
            let answer = admin
                .wait_for_revision(&id.0, id.1, Duration::from_secs(30))
                .await?;
            if !answer.status.is_success() {
                bail!("{} did not deploy the sample API: {}", gw.id, answer.text);
            }
        }
        sample_id = Some(id.0);
    }
    let state_file = args
        .state_file
        .clone()
        .unwrap_or_else(|| spec.work_dir.join("state.json"));
    StateFile::of(spec, pid_of).write(&state_file)?;
    print_walkthrough(spec, sample_id.as_deref(), &state_file);
    artisync_telemetry::signals::wait_for_termination().await;
    Ok(())
}

/// Publishes (or finds) the sample API and deploys its latest revision;
/// returns its id and revision.
async fn publish_sample(publisher: &PublisherClient) -> anyhow::Result<(String, u32)> {
    let created = publisher.create_api(SAMPLE_API).await?;
    let (id, revision) = if created.status.as_u16() == 409 {
        let list = publisher
            .0
            .get("/api/v1/apis")
            .await?
            .expect("GET", "/api/v1/apis")?;
        let found = list["apis"]
            .as_array()
            .and_then(|apis| {
                apis.iter()
                    .find(|a| a["name"] == "HelloAPI" && a["version"] == "1.0.0")
            })
            .context("the sample API exists but is not listed")?;
        let id = found["id"].as_str().unwrap_or_default().to_owned();
        let updated = publisher
            .update_api(&id, SAMPLE_API)
            .await?
            .expect("PUT", "/api/v1/apis/{id}")?;
        (id, updated["revision"].as_u64().unwrap_or(1) as u32)
    } else {
        let body = created.expect("POST", "/api/v1/apis")?;
        (
            body["id"].as_str().unwrap_or_default().to_owned(),
            body["revision"].as_u64().unwrap_or(1) as u32,
        )
    };
    publisher
        .deploy(&id, &[SAMPLE_LABEL], Some(revision))
        .await?
        .expect("POST", "/api/v1/apis/{id}/deployments")?;
    Ok((id, revision))
}

fn print_walkthrough(spec: &ClusterSpec, sample: Option<&str>, state_file: &std::path::Path) {
    let p = spec.publisher_url();
    let t = &spec.publisher_token;
    println!("\nartisync is up.\n");
    println!("  publisher        {p}   (token {t})");
    println!("  fleet view       {p}/ui");
    println!("  traffic manager  {}", spec.traffic_manager_url());
    for gw in &spec.gateways {
        println!(
            "  {}             http://127.0.0.1:{}   admin http://127.0.0.1:{}   labels {:?}",
            gw.id, gw.port, gw.admin_port, gw.labels
        );
    }
    println!("  admin token      {}\n", spec.admin_token);
    // The client finds this cluster through the state file; from another
    // directory it needs to be told where it is.
    let default_state = std::path::Path::new(crate::connection::DEFAULT_STATE_FILE);
    let is_default = state_file == default_state
        || std::env::current_dir().is_ok_and(|dir| dir.join(default_state) == state_file);
    let state_flag = if is_default {
        String::new()
    } else {
        format!(" --state-file {}", state_file.display())
    };
    if sample.is_some() {
        println!(
            "The sample API HelloAPI:1.0.0 is deployed to \"{SAMPLE_LABEL}\" (gw-1, gw-2). Try:\n"
        );
        for gw in &spec.gateways {
            let note = if gw.labels.iter().any(|l| l == SAMPLE_LABEL) {
                String::new()
            } else {
                format!(
                    "     # {} serves {:?}: 404 until you deploy there",
                    gw.id, gw.labels
                )
            };
            println!(
                "  curl -s http://127.0.0.1:{}/hello/1.0.0/greet/world{note}",
                gw.port
            );
        }
        println!();
        println!("  artisync gateways{state_flag}");
        println!("  artisync status HelloAPI:1.0.0{state_flag}");
        println!("  artisync deploy HelloAPI:1.0.0 --label Label1 --wait{state_flag}");
        println!(
            "  artisync export ./apis{state_flag} && artisync diff ./apis --label \"{SAMPLE_LABEL}\"{state_flag}\n"
        );
    }
    println!("Open the fleet view at {p}/ui and enter the publisher token.");
    println!("Ctrl-C stops everything.");
}
