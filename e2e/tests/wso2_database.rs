//! WSO2's `[database.sync_runtime_artifacts_db]` as the WSO2 document
//! writes it (DESIGN.md §11), given to the real publisher and traffic
//! manager binaries: the document's example block, pointed at a database
//! and a user this test creates on the local MariaDB, starts both, and
//! they share that database; an unsupported type, a malformed jdbc URL or
//! credentials written into the URL stop the binary with an error naming
//! the key, before it binds its port.

use std::time::Duration;

use anyhow::{Context, ensure};
use artisync_cli::client::PublisherClient;
use artisync_cli::cluster::{free_port, random_token};
use artisync_domain::GatewayLabel;
use artisync_domain::topology::Topology;
use artisync_e2e::compose::binary_path;
use artisync_e2e::mysql::TestDatabase;
use artisync_e2e::{amqp_url, eventually, mock_api};
use artisync_ports::source::MetadataAnswer;

const DEADLINE: Duration = Duration::from_secs(30);
const USER: &str = "wso2carbon";
/// Every character that breaks a URL's authority when written raw.
const PASSWORD: &str = "wso2@carbon:/pass";
const KEY: &str = "database.sync_runtime_artifacts_db";

/// The document's example block, as written, on `database` with the
/// test's password.
fn example_block(database: &str) -> String {
    format!(
        r#"[database.sync_runtime_artifacts_db]
type = "mysql"
url = "jdbc:mysql://localhost:3306/{database}"
username = "wso2carbon"
password = {password}
"#,
        password = toml_string(PASSWORD),
    )
}

fn toml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

struct Names {
    exchange: String,
    work_dir: std::path::PathBuf,
}

impl Names {
    fn new() -> anyhow::Result<Names> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let work_dir = std::env::temp_dir().join(format!("artisync-wso2-{id}"));
        std::fs::create_dir_all(&work_dir)?;
        Ok(Names {
            exchange: format!("artisync.test.{id}.deployments"),
            work_dir,
        })
    }
}

impl Drop for Names {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.work_dir);
    }
}

fn publisher_config(port: u16, token: &str, names: &Names, database: &str) -> String {
    format!(
        r#"[publisher]
listen = "127.0.0.1:{port}"
tokens = [{token}]

[amqp]
url = {amqp}
exchange = {exchange}

{block}
[apim.sync_runtime_artifacts.publisher]
artifact_saver = "DBSaver"
publish_directly_to_gateway = false
"#,
        token = toml_string(token),
        amqp = toml_string(&amqp_url()),
        exchange = toml_string(&names.exchange),
        block = database,
    )
}

fn traffic_manager_config(port: u16, token: &str, names: &Names, database: &str) -> String {
    format!(
        r#"[traffic_manager]
listen = "127.0.0.1:{port}"

[[traffic_manager.tokens]]
name = "operator"
token = {token}
labels = ["*"]

{database}
[object_store]
database_url = {object_store}
"#,
        token = toml_string(token),
        object_store = toml_string(&format!(
            "sqlite://{}",
            names.work_dir.join("object-store.db").display()
        )),
    )
}

/// A binary running on a config file, its output in a log file.
struct Running {
    child: tokio::process::Child,
    log: std::path::PathBuf,
}

impl Running {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then SIGKILL after a grace period.
    async fn stop(mut self) {
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        if tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// Starts `binary` on `config`, without the test environment's
/// DATABASE_URL (it would take precedence over the WSO2 section).
fn start(binary: &str, config: &str, names: &Names) -> anyhow::Result<Running> {
    let path = names.work_dir.join(format!("{binary}.toml"));
    std::fs::write(&path, config)?;
    let log = names.work_dir.join(format!("{binary}.log"));
    let out = std::fs::File::create(&log)?;
    let child = tokio::process::Command::new(binary_path(binary)?)
        .arg("--config")
        .arg(&path)
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .kill_on_drop(true)
        .spawn()?;
    Ok(Running { child, log })
}

async fn ready(port: u16) -> anyhow::Result<Option<()>> {
    let r = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/health/ready"))
        .timeout(Duration::from_secs(2))
        .send()
        .await?;
    Ok(r.status().is_success().then_some(()))
}

#[tokio::test]
async fn the_documents_example_block_starts_the_publisher_and_the_traffic_manager()
-> anyhow::Result<()> {
    let db = TestDatabase::create_empty().await?;
    let _user = db.create_user(USER, PASSWORD).await?;
    let names = Names::new()?;
    let block = example_block(&db.name);
    let (publisher_port, tm_port) = (free_port()?, free_port()?);
    let (publisher_token, tm_token) = (random_token(), random_token());

    let publisher = start(
        "publisher",
        &publisher_config(publisher_port, &publisher_token, &names, &block),
        &names,
    )?;
    // The traffic manager's section also names WSO2's driver class.
    let tm_block = format!("{block}driver = \"com.mysql.cj.jdbc.Driver\"\n");
    let tm = start(
        "traffic-manager",
        &traffic_manager_config(tm_port, &tm_token, &names, &tm_block),
        &names,
    )?;
    let both_ready = async {
        eventually("the publisher to be ready", DEADLINE, || {
            ready(publisher_port)
        })
        .await?;
        eventually("the traffic manager to be ready", DEADLINE, || {
            ready(tm_port)
        })
        .await
    };
    if let Err(e) = both_ready.await {
        anyhow::bail!(
            "{e:#}\n--- publisher ---\n{}\n--- traffic manager ---\n{}",
            publisher.log(),
            tm.log()
        );
    }

    // They share the database, as the WSO2 user: what the publisher
    // deploys is what the traffic manager says the label should run.
    let client = PublisherClient::new(
        &format!("http://127.0.0.1:{publisher_port}"),
        &publisher_token,
    );
    let created = client.create_api(&mock_api("Wso2", "/wso2", "w1")).await?;
    ensure!(created.status.as_u16() == 201, "{}", created.text);
    let id = created.body["id"].as_str().context("no id")?.to_owned();
    let deployed = client
        .deploy(&id, &["Production and Sandbox"], None)
        .await?;
    ensure!(deployed.status.is_success(), "{}", deployed.text);
    let source = artisync_backends::gateway(
        &format!("http://127.0.0.1:{tm_port}"),
        &tm_token,
        Duration::from_secs(5),
        &amqp_url(),
        &Topology::default(),
    )?
    .source;
    let label = GatewayLabel::parse("Production and Sandbox")?;
    let answer = source.metadata(std::slice::from_ref(&label), None).await?;
    let MetadataAnswer::Changed { metadata, .. } = answer else {
        anyhow::bail!("the first answer has the metadata");
    };
    ensure!(
        metadata.apis.iter().any(|a| a.api_id.to_string() == id),
        "{metadata:?}"
    );
    // The schema was made by the WSO2 user, in its database.
    let pool = db.pool().await?;
    let tables: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.TABLES
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN ('apis', 'outbox', 'gateway_nodes')",
    )
    .fetch_one(&pool)
    .await?;
    ensure!(tables == 3, "{tables} of the tables");
    pool.close().await;

    publisher.stop().await;
    tm.stop().await;
    delete_exchange(&names.exchange).await;
    Ok(())
}

/// Runs `binary` on `config` and answers its exit and output; it must
/// stop on its own, without ever listening on `port`.
async fn refused(binary: &str, config: &str, port: u16, names: &Names) -> anyhow::Result<String> {
    let path = names.work_dir.join(format!("{binary}-bad.toml"));
    std::fs::write(&path, config)?;
    let run = tokio::process::Command::new(binary_path(binary)?)
        .arg("--config")
        .arg(&path)
        .env_remove("DATABASE_URL")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(DEADLINE, run)
        .await
        .with_context(|| format!("{binary} did not stop on a bad config"))??;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    ensure!(!output.status.success(), "{binary} accepted it: {text}");
    // Nothing listens there: it never bound the port.
    ensure!(
        std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
        "{binary} bound its port"
    );
    Ok(text)
}

async fn bad_sections_are_refused_naming_the_key(binary: &str) -> anyhow::Result<()> {
    let names = Names::new()?;
    let port = free_port()?;
    let token = random_token();
    let config = |block: &str| match binary {
        "publisher" => publisher_config(port, &token, &names, block),
        _ => traffic_manager_config(port, &token, &names, block),
    };
    let cases = [
        (
            r#"[database.sync_runtime_artifacts_db]
type = "oracle"
url = "jdbc:oracle:thin:@localhost:1521/WSO2AS_DB"
username = "wso2carbon"
password = "wso2carbon"
"#
            .to_owned(),
            format!("{KEY}.type"),
        ),
        (
            example_block("WSO2AS_DB").replace("localhost:3306", "localhost:port"),
            format!("{KEY}.url"),
        ),
        (
            example_block("WSO2AS_DB").replace("jdbc:mysql://", "jdbc:mysql:/"),
            format!("{KEY}.url"),
        ),
        // The password written raw into the URL: its '@' and ':' would
        // end the authority early. The key says to use `password`.
        (
            format!(
                "[database.sync_runtime_artifacts_db]\ntype = \"mysql\"\nurl = {}\n",
                toml_string(&format!(
                    "jdbc:mysql://wso2carbon:{PASSWORD}@localhost:3306/WSO2AS_DB"
                ))
            ),
            format!("{KEY}.url"),
        ),
    ];
    for (block, key) in cases {
        let output = refused(binary, &config(&block), port, &names).await?;
        ensure!(
            output.contains(&key),
            "{binary}: the error does not name {key}:\n{output}"
        );
        ensure!(
            !output.contains(PASSWORD),
            "{binary}: the error shows the password:\n{output}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn the_publisher_refuses_bad_sections_naming_the_key() -> anyhow::Result<()> {
    bad_sections_are_refused_naming_the_key("publisher").await
}

#[tokio::test]
async fn the_traffic_manager_refuses_bad_sections_naming_the_key() -> anyhow::Result<()> {
    bad_sections_are_refused_naming_the_key("traffic-manager").await
}

async fn delete_exchange(exchange: &str) {
    let Ok(conn) =
        lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default()).await
    else {
        return;
    };
    if let Ok(channel) = conn.create_channel().await {
        let _ = channel
            .exchange_delete(
                exchange.into(),
                lapin::options::ExchangeDeleteOptions::default(),
            )
            .await;
    }
    let _ = conn.close(200, "test done".into()).await;
}
