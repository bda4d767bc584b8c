//! `artisync up` in the external mode (PostgreSQL or MariaDB, and
//! RabbitMQ given), as a user runs it: one command starts the whole local
//! cluster, one process per component, publishes the sample API, writes
//! the state file, and Ctrl-C stops everything.

use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use artisync_e2e::TestEnv;
use artisync_e2e::up::{artisync_binary, free_offset};
use serde_json::Value;

#[tokio::test]
async fn artisync_up_starts_the_cluster_and_ctrl_c_stops_it() -> anyhow::Result<()> {
    up_starts_the_cluster_and_ctrl_c_stops_it(TestEnv::new().await?, false).await
}

/// On MariaDB, from a server without the database: `up` creates it.
#[tokio::test]
async fn artisync_up_on_mariadb_starts_the_cluster_and_ctrl_c_stops_it() -> anyhow::Result<()> {
    let env = TestEnv::mysql().await?;
    let pool = env.db.mysql_pool().await?;
    // The name is the test's own, generated from a UUID.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE `{}`",
        env.db.name
    )))
    .execute(&pool)
    .await?;
    pool.close().await;
    up_starts_the_cluster_and_ctrl_c_stops_it(env, true).await
}

async fn up_starts_the_cluster_and_ctrl_c_stops_it(
    env: TestEnv,
    creates_the_database: bool,
) -> anyhow::Result<()> {
    for id in ["gw-1", "gw-2", "gw-3"] {
        // Registers the node names so their queues are removed afterwards.
        env.gateway(id, &["unused"])?;
    }
    let offset = free_offset()?;
    let state_file = env.work_dir.join("state.json");
    let mut up = tokio::process::Command::new(artisync_binary()?)
        .arg("up")
        .arg("--state-file")
        .arg(&state_file)
        .arg("--work-dir")
        .arg(env.work_dir.join("up"))
        .arg("--port-offset")
        .arg(offset.to_string())
        .arg("--exchange")
        .arg(&env.exchange)
        .arg("--queue-prefix")
        .arg(&env.queue_prefix)
        .env("DATABASE_URL", &env.db.url)
        .env("AMQP_URL", &env.amqp_url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;

    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let state: Value = loop {
        if let Some(status) = up.try_wait()? {
            let mut err = String::new();
            if let Some(mut stderr) = up.stderr.take() {
                use tokio::io::AsyncReadExt;
                stderr.read_to_string(&mut err).await?;
            }
            anyhow::bail!("artisync up exited early with {status}: {err}");
        }
        if let Some(state) = std::fs::read(&state_file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
        {
            break state;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "artisync up wrote no state file within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };

    assert!(state["publisher"]["url"].as_str().is_some());
    assert!(state["publisher"]["token"].as_str().is_some());
    assert!(state["trafficManager"]["url"].as_str().is_some());
    let gateways = state["gateways"].as_array().context("gateways")?;
    assert_eq!(gateways.len(), 3);
    let http = reqwest::Client::new();
    let mut pids = Vec::new();
    for gw in gateways {
        let id = gw["id"].as_str().unwrap_or_default();
        let url = gw["url"].as_str().context("url")?;
        let pid = gw["pid"].as_u64().context("pid")?;
        pids.push(pid);
        assert!(gw["adminUrl"].as_str().is_some() && gw["adminToken"].as_str().is_some());
        let labels: Vec<&str> = gw["labels"]
            .as_array()
            .context("labels")?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let response = http
            .get(format!("{url}/hello/1.0.0/greet/world"))
            .send()
            .await?;
        if labels == ["Production and Sandbox"] {
            assert_eq!(response.status(), 200, "{id}");
            let body: Value = response.json().await?;
            assert_eq!(body["message"], "Hello, world!", "{id}");
        } else {
            assert_eq!(labels, ["Label1"]);
            assert_eq!(response.status(), 404, "{id} serves Label1 only");
        }
    }

    // Ctrl-C.
    let pid = up.id().context("pid of artisync up")?;
    std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()?;
    let status = tokio::time::timeout(Duration::from_secs(60), up.wait())
        .await
        .context("artisync up did not stop after Ctrl-C")??;
    assert!(status.success(), "exit status {status}");
    for pid in pids {
        let alive = std::path::Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z ");
        assert!(!alive, "gateway process {pid} outlived artisync up");
    }
    let mut out = String::new();
    if let Some(mut stdout) = up.stdout.take() {
        use tokio::io::AsyncReadExt;
        stdout.read_to_string(&mut out).await?;
    }
    assert!(out.contains("artisync is up"), "{out}");
    assert!(out.contains("stopped"), "{out}");
    assert_eq!(
        out.contains(&format!("created database {}", env.db.name)),
        creates_the_database,
        "{out}"
    );
    Ok(())
}
