//! The `artisync` client against a real cluster (PostgreSQL, RabbitMQ and
//! the real binaries): publish, deploy --wait, status, wait's exit codes,
//! apply / diff / prune, export into a fresh cluster, import wso2, and the
//! apply endpoint's bad input.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, ensure};
use artisync_e2e::backend::Backend;
use artisync_e2e::fault::HttpFaultProxy;
use artisync_e2e::up::artisync_binary;
use artisync_e2e::{TestCluster, TestEnv, eventually, mock_api, too_large_to_inline};
use axum::http::StatusCode;
use serde_json::Value;

const PROD: &str = "Production and Sandbox";
const PIZZASHACK: &str = include_str!("../../config/compat/wso2-apim-PizzaShackAPI_v1.0.0.xml");

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_str(&self.stdout).with_context(|| {
            format!(
                "stdout is not JSON: {}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs the real client against `c`'s publisher, found through the
/// environment as an operator's shell would have it.
async fn artisync(c: &TestCluster, args: &[&str]) -> anyhow::Result<Run> {
    let out = tokio::process::Command::new(artisync_binary()?)
        .args(args)
        .env("ARTISYNC_URL", c.cluster.spec.publisher_url())
        .env("ARTISYNC_TOKEN", &c.cluster.spec.publisher_token)
        .env_remove("ARTISYNC_STATE_FILE")
        .current_dir(&c.cluster.spec.work_dir)
        .kill_on_drop(true)
        .output()
        .await
        .context("run artisync")?;
    Ok(Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

fn scratch(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "artisync-client-{name}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn write(dir: &Path, file: &str, text: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(file);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&path, text)?;
    Ok(path)
}

fn signal(c: &mut TestCluster, node: &str, signal: nix::sys::signal::Signal) -> anyhow::Result<()> {
    let pid = c
        .cluster
        .process(node)
        .and_then(|p| p.pid())
        .with_context(|| format!("{node} is not running"))?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(i32::try_from(pid)?), signal)?;
    Ok(())
}

fn node<'a>(receipt: &'a Value, id: &str) -> anyhow::Result<&'a Value> {
    receipt["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["nodeId"] == id)
        .with_context(|| format!("{id} is not in the receipt {receipt}"))
}

#[tokio::test]
async fn publish_deploy_wait_and_status_show_every_node_on_the_revision() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let c = env
        .start(vec![
            env.gateway("gw-1", &[PROD])?,
            env.gateway("gw-2", &[PROD])?,
            env.gateway("gw-3", &["Label1"])?,
        ])
        .await?;
    let dir = scratch("publish")?;
    let file = write(&dir, "orders.xml", &mock_api("Orders", "/orders", "r1"))?;
    let file = file.to_str().context("path")?;

    let published = artisync(&c, &["publish", file, "-o", "json"]).await?;
    ensure!(published.code == 0, "{published:?}");
    let published = published.json()?;
    assert_eq!(published["results"][0]["result"], "created", "{published}");
    assert_eq!(published["summary"]["created"], 1, "{published}");

    let deployed = artisync(
        &c,
        &[
            "deploy",
            "Orders:1.0",
            "--label",
            PROD,
            "--wait",
            "-o",
            "json",
        ],
    )
    .await?;
    ensure!(deployed.code == 0, "{deployed:?}");
    let deployed = deployed.json()?;
    assert_eq!(deployed["result"], "applied", "{deployed}");
    let receipt = &deployed["receipts"][0];
    assert_eq!(receipt["kind"], "DEPLOY");
    assert_eq!(
        receipt["summary"]["targets"], 2,
        "gw-3 serves another label: {receipt}"
    );
    for id in ["gw-1", "gw-2"] {
        let n = node(receipt, id)?;
        assert_eq!(n["state"], "APPLIED", "{n}");
        assert_eq!(n["appliedRevision"], 1, "{n}");
        assert!(n["latencyMs"].as_f64().is_some_and(|ms| ms >= 0.0), "{n}");
    }
    // What --wait said is what the data plane does.
    for id in ["gw-1", "gw-2"] {
        let (status, body) = c.call(id, "/orders/hello").await?;
        assert_eq!((status, body.contains("r1")), (200, true), "{id}: {body}");
    }

    let status = artisync(&c, &["status", "Orders:1.0", "-o", "json"]).await?;
    ensure!(status.code == 0, "{status:?}");
    let status = status.json()?;
    let nodes = status["nodes"].as_array().context("nodes")?;
    let on_revision: Vec<&str> = nodes
        .iter()
        .filter(|n| n["appliedRevision"] == 1 && n["inSync"] == true)
        .filter_map(|n| n["nodeId"].as_str())
        .collect();
    assert_eq!(on_revision, ["gw-1", "gw-2"], "{status}");

    // Tables for people; the JSON of the list commands parses.
    let table = artisync(&c, &["status", "-o", "table"]).await?;
    ensure!(
        table.code == 0 && table.stdout.contains("Orders:1.0"),
        "{table:?}"
    );
    for command in [["apis"], ["gateways"]] {
        let run = artisync(&c, &[command[0], "-o", "json"]).await?;
        ensure!(run.code == 0, "{run:?}");
        run.json()?;
    }
    // Each node counts its queue's backlog and reports it.
    eventually(
        "every node to report its queue backlog",
        Duration::from_secs(20),
        || async {
            let run = artisync(&c, &["gateways", "-o", "json"]).await?;
            let list = run.json()?;
            let nodes = list["gateways"].as_array().context("gateways")?;
            Ok(
                (nodes.len() == 3 && nodes.iter().all(|n| n["details"]["queueBacklog"].is_u64()))
                    .then_some(()),
            )
        },
    )
    .await?;
    let gateways = artisync(&c, &["gateways", "-o", "table"]).await?;
    ensure!(
        gateways.stdout.contains("gw-3") && gateways.stdout.contains("Label1"),
        "{gateways:?}"
    );

    // Errors carry the publisher's message and exit non-zero.
    let unknown = artisync(&c, &["deploy", "Nope:9", "--label", PROD]).await?;
    assert_eq!(unknown.code, 1, "{unknown:?}");
    assert!(unknown.stderr.contains("Nope"), "{unknown:?}");
    let broken = write(&dir, "broken.xml", "<api name=")?;
    let broken = artisync(&c, &["publish", broken.to_str().context("path")?]).await?;
    assert_eq!(broken.code, 1, "{broken:?}");
    assert!(
        broken.stdout.contains("error") && broken.stdout.contains("400"),
        "{broken:?}"
    );
    let out = tokio::process::Command::new(artisync_binary()?)
        .args(["apis"])
        .env("ARTISYNC_URL", c.cluster.spec.publisher_url())
        .env("ARTISYNC_TOKEN", "wrong")
        .output()
        .await?;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{out:?}"
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[tokio::test]
async fn wait_exits_1_with_the_error_of_a_node_that_fails_to_deploy() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let ok = env.gateway("gw-ok", &[PROD])?;
    let mut bad = env.gateway("gw-bad", &[PROD])?;
    bad.retry_duration_ms = 100;
    bad.max_retry_count = 1;
    bad.reconcile_interval_ms = 600_000;
    let mut spec = env.spec(vec![ok, bad])?;
    let tm = HttpFaultProxy::start(&spec.traffic_manager_url()).await?;
    spec.gateways[1].traffic_manager_url = Some(tm.url());
    let c = env.start_spec(spec, &["gw-ok", "gw-bad"]).await?;

    // Too large to travel inside the event: each node fetches it, and the
    // traffic manager fails gw-bad's fetches.
    let dir = scratch("fail")?;
    let file = write(
        &dir,
        "big.xml",
        &too_large_to_inline(&mock_api("Big", "/big", "r1")),
    )?;
    let published = artisync(
        &c,
        &["publish", file.to_str().context("path")?, "-o", "json"],
    )
    .await?;
    ensure!(published.code == 0, "{published:?}");
    let id = published.json()?["results"][0]["id"]
        .as_str()
        .context("id")?
        .to_owned();
    tm.fail(
        &format!("runtime-artifacts/{id}"),
        StatusCode::INTERNAL_SERVER_ERROR,
    );

    let deployed = artisync(&c, &["deploy", &id, "--label", PROD, "-o", "json"]).await?;
    ensure!(deployed.code == 0, "{deployed:?}");
    let sequence = deployed.json()?["sequence"].as_i64().context("sequence")?;

    let waited = artisync(&c, &["wait", "Big:1.0", "--timeout", "60s"]).await?;
    assert_eq!(waited.code, 1, "{waited:?}");
    assert!(
        waited.stderr.contains("gw-bad") && waited.stderr.contains("500"),
        "{waited:?}"
    );

    let receipt = c
        .publisher
        .0
        .get(&format!("/api/v1/changes/{sequence}"))
        .await?
        .body;
    assert_eq!(node(&receipt, "gw-ok")?["state"], "APPLIED", "{receipt}");
    let failed = node(&receipt, "gw-bad")?;
    assert_eq!(failed["state"], "FAILED", "{receipt}");
    assert!(
        failed["error"].as_str().is_some_and(|e| e.contains("500")),
        "{failed}"
    );
    assert_eq!(receipt["summary"]["failed"], 1, "{receipt}");
    assert_eq!(receipt["summary"]["complete"], true, "{receipt}");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[tokio::test]
async fn a_paused_node_is_pending_then_offline_and_wait_times_out_with_exit_3() -> anyhow::Result<()>
{
    let env = TestEnv::new().await?;
    let mut spec = env.spec(vec![
        env.gateway("gw-1", &[PROD])?,
        env.gateway("gw-2", &[PROD])?,
    ])?;
    spec.gateway_stale_after_ms = Some(3_000);
    for gw in &mut spec.gateways {
        gw.status_interval_ms = 500;
    }
    let mut c = env.start_spec(spec, &["gw-1", "gw-2"]).await?;
    let id = c
        .publish(&mock_api("Paused", "/paused", "r1"), &[PROD])
        .await?;
    c.wait_applied("gw-1", &id, 1).await?;
    c.wait_applied("gw-2", &id, 1).await?;

    signal(&mut c, "gw-2", nix::sys::signal::Signal::SIGSTOP)?;
    let outcome = async {
        let updated = c
            .publisher
            .update_api(&id, &mock_api("Paused", "/paused", "r2"))
            .await?;
        ensure!(updated.status.as_u16() == 201, "{}", updated.text);
        let deployed = c
            .publisher
            .deploy(&id, &[PROD], None)
            .await?
            .expect("POST", "deploy")?;
        let sequence = deployed["sequence"].as_i64().context("sequence")?;

        let waited = artisync(&c, &["wait", &id, "--timeout", "1s"]).await?;
        assert_eq!(waited.code, 3, "{waited:?}");
        assert!(waited.stderr.contains("gw-2"), "{waited:?}");
        let receipt = c
            .publisher
            .0
            .get(&format!("/api/v1/changes/{sequence}"))
            .await?
            .body;
        assert_eq!(node(&receipt, "gw-1")?["state"], "APPLIED", "{receipt}");
        assert_eq!(node(&receipt, "gw-2")?["state"], "PENDING", "{receipt}");

        // No heartbeat within the stale time: offline, and no longer
        // waited for.
        let receipt = eventually("gw-2 to be offline", Duration::from_secs(20), || async {
            let receipt = c
                .publisher
                .0
                .get(&format!("/api/v1/changes/{sequence}"))
                .await?
                .body;
            Ok((node(&receipt, "gw-2")?["state"] == "OFFLINE").then_some(receipt))
        })
        .await?;
        assert_eq!(receipt["summary"]["offline"], 1, "{receipt}");
        assert_eq!(receipt["summary"]["complete"], true, "{receipt}");
        let waited = artisync(&c, &["wait", &id, "--timeout", "10s"]).await?;
        assert_eq!(waited.code, 0, "{waited:?}");
        assert!(waited.stderr.contains("offline"), "{waited:?}");
        anyhow::Ok(sequence)
    }
    .await;
    signal(&mut c, "gw-2", nix::sys::signal::Signal::SIGCONT)?;
    let sequence = outcome?;
    // Back: it catches up and applies.
    eventually(
        "gw-2 to apply after SIGCONT",
        Duration::from_secs(30),
        || async {
            let receipt = c
                .publisher
                .0
                .get(&format!("/api/v1/changes/{sequence}"))
                .await?
                .body;
            Ok((receipt["summary"]["applied"] == 2).then_some(()))
        },
    )
    .await?;
    Ok(())
}

/// Sends only the head of a POST declaring `length` bytes, and reads the
/// answer (a client library would fail writing the body the server
/// refuses).
async fn raw_post(base: &str, path: &str, token: &str, length: usize) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/x-ndjson\r\nContent-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await?;
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer)).await??;
    Ok(String::from_utf8_lossy(&answer[..n]).into_owned())
}

fn summary(run: &Run) -> anyhow::Result<Value> {
    ensure!(run.code == 0, "{run:?}");
    Ok(run.json()?["summary"].clone())
}

#[tokio::test]
async fn apply_creates_then_is_unchanged_then_prunes_and_diff_changes_nothing() -> anyhow::Result<()>
{
    let env = TestEnv::new().await?;
    let c = env.start(vec![env.gateway("gw-1", &[PROD])?]).await?;
    let dir = scratch("apply")?;
    for name in ["A", "B", "C"] {
        write(
            &dir,
            &format!("{name}.xml"),
            &mock_api(name, &format!("/{}", name.to_lowercase()), "r1"),
        )?;
    }
    let path = dir.to_str().context("path")?;

    let first = summary(
        &artisync(
            &c,
            &["apply", path, "--label", PROD, "--wait", "-o", "json"],
        )
        .await?,
    )?;
    assert_eq!(
        (first["created"].as_u64(), first["errors"].as_u64()),
        (Some(3), Some(0)),
        "{first}"
    );
    let (status, body) = c.call("gw-1", "/b/hello").await?;
    assert_eq!((status, body.contains("r1")), (200, true), "{body}");

    let second = summary(&artisync(&c, &["apply", path, "--label", PROD, "-o", "json"]).await?)?;
    assert_eq!(second["unchanged"], 3, "{second}");
    assert_eq!(
        second["created"].as_u64().unwrap_or(0) + second["updated"].as_u64().unwrap_or(0),
        0,
        "{second}"
    );

    // C leaves the directory, B changes: diff shows it, and changes nothing.
    std::fs::remove_file(dir.join("C.xml"))?;
    write(&dir, "B.xml", &mock_api("B", "/b", "r2"))?;
    let before = c.publisher.0.get("/api/v1/apis").await?.body;
    let diff = summary(
        &artisync(
            &c,
            &["diff", path, "--label", PROD, "--prune", "-o", "json"],
        )
        .await?,
    )?;
    assert_eq!(
        (
            diff["updated"].as_u64(),
            diff["removed"].as_u64(),
            diff["unchanged"].as_u64()
        ),
        (Some(1), Some(1), Some(1)),
        "{diff}"
    );
    assert_eq!(
        c.publisher.0.get("/api/v1/apis").await?.body,
        before,
        "diff changed something"
    );
    let (_, body) = c.call("gw-1", "/b/hello").await?;
    assert!(body.contains("r1"), "diff deployed B: {body}");

    let pruned = summary(
        &artisync(
            &c,
            &[
                "apply", path, "--label", PROD, "--prune", "--wait", "-o", "json",
            ],
        )
        .await?,
    )?;
    assert_eq!(
        (pruned["updated"].as_u64(), pruned["removed"].as_u64()),
        (Some(1), Some(1)),
        "{pruned}"
    );
    let (status, _) = c.call("gw-1", "/c/hello").await?;
    assert_eq!(status, 404, "C is still served after --prune");
    let (_, body) = c.call("gw-1", "/b/hello").await?;
    assert!(body.contains("r2"), "{body}");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn digests(apis: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = apis["apis"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            (
                a["name"].as_str().unwrap_or("").to_owned(),
                a["sha256"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn an_export_applied_to_a_fresh_cluster_gives_the_same_artifacts() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let c = env.start(vec![env.gateway("gw-1", &[PROD])?]).await?;
    c.publish(&mock_api("One", "/one", "r1"), &[PROD]).await?;
    let two = c.publish(&mock_api("Two", "/two", "r1"), &[]).await?;
    c.publisher
        .update_api(&two, &too_large_to_inline(&mock_api("Two", "/two", "r2")))
        .await?;
    let dir = scratch("export")?;
    let exported = artisync(&c, &["export", dir.to_str().context("path")?, "-o", "json"]).await?;
    ensure!(exported.code == 0, "{exported:?}");
    assert_eq!(
        exported.json()?["exported"].as_array().map(Vec::len),
        Some(2)
    );

    let fresh_env = TestEnv::new().await?;
    let fresh = fresh_env
        .start(vec![fresh_env.gateway("gw-9", &[PROD])?])
        .await?;
    let applied = summary(
        &artisync(
            &fresh,
            &[
                "apply",
                dir.to_str().context("path")?,
                "--label",
                PROD,
                "--wait",
                "-o",
                "json",
            ],
        )
        .await?,
    )?;
    assert_eq!(applied["created"], 2, "{applied}");
    let original = digests(&c.publisher.0.get("/api/v1/apis").await?.body);
    let copy = digests(&fresh.publisher.0.get("/api/v1/apis").await?.body);
    assert_eq!(original, copy);
    let (status, body) = fresh.call("gw-9", "/two/hello").await?;
    assert_eq!((status, body.contains("r2")), (200, true), "{body}");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn endpoint(name: &str, uri: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><endpoint xmlns="http://ws.apache.org/ns/synapse" name="{name}">
    <http uri-template="{uri}"/>
</endpoint>
"#
    )
}

#[tokio::test]
async fn import_wso2_bundles_pizzashack_with_its_endpoints_and_lists_what_it_cannot_use()
-> anyhow::Result<()> {
    let upstream = Backend::start().await?;
    let env = TestEnv::new().await?;
    let c = env.start(vec![env.gateway("gw-1", &[PROD])?]).await?;
    let tree = scratch("wso2")?;
    write(&tree, "api/admin--PizzaShackAPI_v1.0.0.xml", PIZZASHACK)?;
    for kind in ["production", "sandbox"] {
        let name = format!("PizzaShackAPI--v1.0.0_API{kind}Endpoint");
        write(
            &tree,
            &format!("endpoints/{name}.xml"),
            &endpoint(&name, &format!("{}/{kind}", upstream.url())),
        )?;
    }
    write(
        &tree,
        "endpoints/broken.xml",
        "<endpoint name=\"x\"><address",
    )?;
    write(
        &tree,
        "proxy-services/StockQuoteProxy.xml",
        "<proxy xmlns=\"http://ws.apache.org/ns/synapse\" name=\"StockQuoteProxy\"/>",
    )?;

    let imported = artisync(
        &c,
        &[
            "import",
            "wso2",
            tree.to_str().context("path")?,
            "--wait",
            "-o",
            "json",
        ],
    )
    .await?;
    ensure!(imported.code == 0, "{imported:?}");
    let out = imported.json()?;
    assert_eq!(out["summary"]["created"], 1, "{out}");
    for file in ["broken.xml", "StockQuoteProxy.xml"] {
        assert!(
            imported.stderr.contains(file),
            "{file} is not reported: {imported:?}"
        );
    }
    // Bundled with both endpoints, deployed, and proxied (no key type is
    // set, so the filter takes the sandbox endpoint).
    let (status, body) = c.call("gw-1", "/pizzashack/1.0.0/menu").await?;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("/sandbox"), "{body}");
    assert!(upstream.received() >= 1);
    std::fs::remove_dir_all(&tree)?;
    Ok(())
}

#[tokio::test]
async fn apply_answers_a_bad_line_alone_refuses_oversized_bodies_and_needs_a_token()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let mut spec = env.spec(vec![env.gateway("gw-1", &[PROD])?])?;
    spec.publisher_max_apply_bytes = Some(10 * 1024 * 1024);
    let c = env.start_spec(spec, &["gw-1"]).await?;
    let url = format!("{}/api/v1/apply", c.cluster.spec.publisher_url());
    let token = &c.cluster.spec.publisher_token;
    let http = reqwest::Client::new();
    let line = |xml: &str| serde_json::json!({"artifact": xml, "labels": [PROD]}).to_string();
    let body = [
        line(&mock_api("L1", "/l1", "r1")),
        "{not json".to_owned(),
        line("<api name="),
        line(&mock_api("L4", "/l4", "r1")),
    ]
    .join("\n");
    let answer = http.post(&url).bearer_auth(token).body(body).send().await?;
    assert_eq!(answer.status().as_u16(), 200);
    let lines: Vec<Value> = answer
        .text()
        .await?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert_eq!(
        (lines[0]["line"].as_u64(), lines[0]["result"].as_str()),
        (Some(1), Some("created"))
    );
    assert_eq!(
        (lines[1]["line"].as_u64(), lines[1]["code"].as_u64()),
        (Some(2), Some(400)),
        "{}",
        lines[1]
    );
    assert!(
        lines[1]["message"]
            .as_str()
            .is_some_and(|m| m.contains("line 2")),
        "{}",
        lines[1]
    );
    assert_eq!(
        (lines[2]["line"].as_u64(), lines[2]["code"].as_u64()),
        (Some(3), Some(400)),
        "{}",
        lines[2]
    );
    assert_eq!(lines[3]["result"], "created");
    assert_eq!(lines[4]["summary"]["created"], 2);
    assert_eq!(lines[4]["summary"]["errors"], 2);
    for name in ["L1", "L4"] {
        let apis = c.publisher.0.get("/api/v1/apis").await?.body;
        assert!(
            apis["apis"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|a| a["name"] == name),
            "{apis}"
        );
    }

    // More than max_apply_bytes: 413 before a byte of the body is read.
    let answer = raw_post(
        &c.cluster.spec.publisher_url(),
        "/api/v1/apply",
        token,
        11 * 1024 * 1024,
    )
    .await?;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("max_apply_bytes"), "{answer}");

    let answer = http
        .post(&url)
        .body(line(&mock_api("NoToken", "/nt", "r1")))
        .send()
        .await?;
    assert_eq!(answer.status().as_u16(), 401);
    let answer = http
        .post(&url)
        .bearer_auth("wrong")
        .body(line(&mock_api("NoToken", "/nt", "r1")))
        .send()
        .await?;
    assert_eq!(answer.status().as_u16(), 401);
    let apis = c.publisher.0.get("/api/v1/apis").await?.body;
    assert!(
        !apis["apis"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| a["name"] == "NoToken"),
        "{apis}"
    );
    Ok(())
}
