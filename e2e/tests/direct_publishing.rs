//! `publish_directly_to_gateway = true` on the real binaries (DESIGN.md
//! §11): the publisher pushes each deploy and undeploy to the admin API of
//! every gateway of `[[apim.gateway.environment]]`; the gateways take
//! pushes only (`artifact_source = "publisher"`), with no traffic manager
//! and no broker subscription. A gateway stopped during a push gets the
//! change once it is back, and an artifact whose digest does not match is
//! refused while the running revision keeps serving.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};
use artisync_cli::client::PublisherClient;
use artisync_cli::cluster::{free_port, random_token};
use artisync_domain::Sha256Digest;
use artisync_e2e::process::{Launch, ManagedProcess};
use artisync_e2e::{TestEnv, eventually, mock_api};

const LABEL: &str = "Production and Sandbox";
const DEADLINE: Duration = Duration::from_secs(30);
const GRACE: Duration = Duration::from_secs(10);

fn toml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

struct Gateway {
    id: &'static str,
    port: u16,
    admin_port: u16,
    process: ManagedProcess,
}

impl Gateway {
    fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }
}

fn start(name: &str, config: &str, dir: &Path) -> anyhow::Result<ManagedProcess> {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, config)?;
    let mut launch = Launch::component(
        if name.starts_with("gw") {
            "gateway-node"
        } else {
            name
        },
        &path,
    )?;
    launch.env.push(("RUST_LOG".into(), "info".into()));
    Ok(ManagedProcess::spawn(
        name,
        launch,
        dir.join(format!("{name}.log")),
    )?)
}

fn gateway_config(id: &str, port: u16, admin_port: u16, token: &str, dir: &Path) -> String {
    format!(
        r#"[gateway]
id = {id}
listen = "127.0.0.1:{port}"
admin_listen = "127.0.0.1:{admin_port}"
admin_token = {token}
artifact_source = "publisher"
cache_dir = {cache}

[apim.sync_runtime_artifacts.gateway]
gateway_labels = [{label}]
"#,
        id = toml_string(id),
        token = toml_string(token),
        cache = toml_string(&dir.join(format!("cache-{id}")).display().to_string()),
        label = toml_string(LABEL),
    )
}

fn start_gateway(id: &'static str, admin_token: &str, dir: &Path) -> anyhow::Result<Gateway> {
    let (port, admin_port) = (free_port()?, free_port()?);
    let process = start(
        id,
        &gateway_config(id, port, admin_port, admin_token, dir),
        dir,
    )?;
    Ok(Gateway {
        id,
        port,
        admin_port,
        process,
    })
}

/// The publisher's config: the WSO2 sections as WSO2 writes them, with one
/// environment entry per gateway of the label.
fn publisher_config(
    env: &TestEnv,
    port: u16,
    token: &str,
    gateways: &[&Gateway],
    admin_token: &str,
) -> String {
    let mut out = format!(
        r#"[publisher]
listen = "127.0.0.1:{port}"
tokens = [{token}]
relay_poll_interval_ms = 200

[database]
url = {database}

[amqp]
url = {amqp}
exchange = {exchange}

[apim.sync_runtime_artifacts.publisher]
artifact_saver = "DBSaver"
publish_directly_to_gateway = true
"#,
        token = toml_string(token),
        database = toml_string(&env.db.url),
        amqp = toml_string(&env.amqp_url),
        exchange = toml_string(&env.exchange),
    );
    for gw in gateways {
        out.push_str(&format!(
            r#"
[[apim.gateway.environment]]
name = {label}
type = "hybrid"
display_in_api_console = true
description = "This is a hybrid gateway that handles both production and sandbox token traffic."
show_as_token_endpoint_url = true
service_url = {url}
token = {admin_token}
http_endpoint = "http://127.0.0.1:{data_port}"
"#,
            label = toml_string(LABEL),
            url = toml_string(&gw.admin_url()),
            admin_token = toml_string(admin_token),
            data_port = gw.port,
        ));
    }
    out
}

async fn call(port: u16, path: &str) -> anyhow::Result<(u16, String)> {
    let r = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}{path}"))
        .timeout(Duration::from_secs(5))
        .send()
        .await?;
    Ok((r.status().as_u16(), r.text().await?))
}

/// The revision a gateway runs of `api`, from its admin API.
async fn running_revision(gw: &Gateway, token: &str, api: &str) -> anyhow::Result<Option<u64>> {
    let r = reqwest::Client::new()
        .get(format!("{}/api/gateway/v1/apis/{api}", gw.admin_url()))
        .bearer_auth(token)
        .timeout(Duration::from_secs(5))
        .send()
        .await?;
    if r.status() == 404 {
        return Ok(None);
    }
    let body: serde_json::Value = r.json().await?;
    Ok(body["revision"].as_u64())
}

async fn wait_serving(gw: &Gateway, path: &str, tag: &str) -> anyhow::Result<()> {
    eventually(&format!("{} to serve {tag}", gw.id), DEADLINE, || async {
        let (status, body) = call(gw.port, path).await?;
        Ok((status == 200 && body.contains(tag)).then_some(()))
    })
    .await
    .with_context(|| gw.process.log())
}

#[tokio::test]
async fn the_publisher_pushes_deploys_and_undeploys_to_every_gateway_on_postgres()
-> anyhow::Result<()> {
    pushes_deploys_and_undeploys(TestEnv::new().await?).await
}

#[tokio::test]
async fn the_publisher_pushes_deploys_and_undeploys_to_every_gateway_on_mariadb()
-> anyhow::Result<()> {
    pushes_deploys_and_undeploys(TestEnv::mysql().await?).await
}

/// The receipt of change `sequence` once no node is pending.
async fn receipt(client: &PublisherClient, sequence: u64) -> anyhow::Result<serde_json::Value> {
    let answer = client
        .0
        .get(&format!("/api/v1/changes/{sequence}?waitMs=20000"))
        .await?;
    ensure!(answer.status.is_success(), "{}", answer.text);
    Ok(answer.body)
}

async fn pushes_deploys_and_undeploys(env: TestEnv) -> anyhow::Result<()> {
    let dir = env.work_dir.clone();
    let admin_token = random_token();
    let mut gw1 = start_gateway("gw-push-1", &admin_token, &dir)?;
    let mut gw2 = start_gateway("gw-push-2", &admin_token, &dir)?;
    let (publisher_port, publisher_token) = (free_port()?, random_token());
    let mut publisher = start(
        "publisher",
        &publisher_config(
            &env,
            publisher_port,
            &publisher_token,
            &[&gw1, &gw2],
            &admin_token,
        ),
        &dir,
    )?;
    let client = PublisherClient::new(
        &format!("http://127.0.0.1:{publisher_port}"),
        &publisher_token,
    );
    eventually("the publisher to answer", DEADLINE, || async {
        Ok(call(publisher_port, "/health/ready")
            .await
            .ok()
            .filter(|(status, _)| *status == 200))
    })
    .await
    .with_context(|| publisher.log())?;

    // A deploy reaches both gateways over their admin APIs.
    let created = client
        .create_api(&mock_api("Pushed", "/pushed", "r1"))
        .await?;
    ensure!(created.status.as_u16() == 201, "{}", created.text);
    let id = created.body["id"].as_str().context("no id")?.to_owned();
    let deployed = client.deploy(&id, &[LABEL], None).await?;
    ensure!(deployed.status.is_success(), "{}", deployed.text);
    wait_serving(&gw1, "/pushed/hello", "r1").await?;
    wait_serving(&gw2, "/pushed/hello", "r1").await?;
    // The publisher records what the pushed gateways report: the receipt
    // names both as applied.
    let sequence = deployed.body["sequence"].as_u64().context("no sequence")?;
    let nodes = eventually("a receipt with both pushed gateways", DEADLINE, || async {
        let r = receipt(&client, sequence).await?;
        let applied: Vec<String> = r["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| n["state"] == "APPLIED")
            .filter_map(|n| n["nodeId"].as_str().map(str::to_owned))
            .collect();
        Ok((applied.len() == 2).then_some(applied))
    })
    .await?;
    ensure!(
        nodes.contains(&"gw-push-1".to_owned()) && nodes.contains(&"gw-push-2".to_owned()),
        "{nodes:?}"
    );

    // A gateway stopped during the push gets the change once it is back.
    gw2.process.stop(GRACE).await;
    let updated = client
        .update_api(&id, &mock_api("Pushed", "/pushed", "r2"))
        .await?;
    ensure!(updated.status.is_success(), "{}", updated.text);
    let deployed = client.deploy(&id, &[LABEL], None).await?;
    ensure!(deployed.status.is_success(), "{}", deployed.text);
    wait_serving(&gw1, "/pushed/hello", "r2").await?;
    ensure!(
        !gw2.process.is_running(),
        "gw-push-2 must be down while the change is pushed"
    );
    gw2.process.start()?;
    wait_serving(&gw2, "/pushed/hello", "r2").await?;
    ensure!(running_revision(&gw2, &admin_token, &id).await? == Some(2));

    // A pushed artifact whose sha256 does not match is refused, and the
    // running revision keeps serving.
    let forged = mock_api("Pushed", "/pushed", "forged");
    let refused = reqwest::Client::new()
        .put(format!("{}/api/gateway/v1/apis/{id}", gw1.admin_url()))
        .bearer_auth(&admin_token)
        .header("x-artisync-revision", "3")
        .header(
            "x-artisync-sha256",
            Sha256Digest::of(b"something else").to_hex(),
        )
        .body(forged.clone())
        .send()
        .await?;
    ensure!(
        refused.status() == 422,
        "a wrong sha256 answered {}",
        refused.status()
    );
    let (status, body) = call(gw1.port, "/pushed/hello").await?;
    ensure!(status == 200 && body.contains("r2"), "{status} {body}");
    ensure!(running_revision(&gw1, &admin_token, &id).await? == Some(2));
    // Without the token, nothing is taken.
    let anonymous = reqwest::Client::new()
        .put(format!("{}/api/gateway/v1/apis/{id}", gw1.admin_url()))
        .header("x-artisync-revision", "3")
        .header(
            "x-artisync-sha256",
            Sha256Digest::of(forged.as_bytes()).to_hex(),
        )
        .body(forged)
        .send()
        .await?;
    ensure!(anonymous.status() == 401, "{}", anonymous.status());

    // An undeploy removes the API from both.
    let undeployed = client.undeploy(&id, LABEL).await?;
    ensure!(undeployed.status.is_success(), "{}", undeployed.text);
    for gw in [&gw1, &gw2] {
        eventually(&format!("{} to drop the API", gw.id), DEADLINE, || async {
            Ok((call(gw.port, "/pushed/hello").await?.0 == 404).then_some(()))
        })
        .await
        .with_context(|| gw.process.log())?;
        ensure!(running_revision(gw, &admin_token, &id).await?.is_none());
    }

    publisher.stop(GRACE).await;
    gw1.process.stop(GRACE).await;
    gw2.process.stop(GRACE).await;
    Ok(())
}
