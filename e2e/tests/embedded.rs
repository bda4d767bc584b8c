//! `artisync up` with nothing installed: the embedded default, as a user
//! runs it (the real binary, no DATABASE_URL, no AMQP_URL).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, ensure};
use artisync_cli::client::{GatewayAdminClient, PublisherClient};
use artisync_e2e::up::{Up, UpOptions, free_offset, remote_ports_of, run_to_exit};
use artisync_e2e::{eventually, mock_api};
use serde_json::{Value, json};

const PROD: &str = "Production and Sandbox";
const MENU_API: &str = include_str!("../../config/examples/menu-api.xml");

fn work_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "artisync-embedded-{}",
        uuid::Uuid::new_v4().simple()
    ))
}

struct Ports {
    gateways: Vec<(String, String, String)>,
    admin_token: String,
    traffic_manager: String,
    operator_token: String,
}

fn ports(up: &Up) -> anyhow::Result<Ports> {
    let mut gateways = Vec::new();
    for gw in up.state["gateways"].as_array().context("gateways")? {
        gateways.push((
            gw["id"].as_str().context("id")?.to_owned(),
            gw["url"].as_str().context("url")?.to_owned(),
            gw["adminUrl"].as_str().context("adminUrl")?.to_owned(),
        ));
    }
    Ok(Ports {
        admin_token: up.state["gateways"][0]["adminToken"]
            .as_str()
            .context("adminToken")?
            .to_owned(),
        traffic_manager: up.state["trafficManager"]["url"]
            .as_str()
            .context("trafficManager")?
            .to_owned(),
        operator_token: up.state["trafficManager"]["token"]
            .as_str()
            .context("trafficManager token")?
            .to_owned(),
        gateways,
    })
}

async fn get(url: &str) -> anyhow::Result<(u16, String)> {
    let r = reqwest::get(url).await.with_context(|| url.to_owned())?;
    Ok((r.status().as_u16(), r.text().await?))
}

#[tokio::test]
async fn the_embedded_default_runs_the_walkthrough_with_nothing_installed_and_survives_a_restart()
-> anyhow::Result<()> {
    let dir = work_dir();
    let offset = free_offset()?;
    let up = Up::start(&dir, offset, &UpOptions::embedded()).await?;
    let pid = up.pid().context("pid")?;
    let p = ports(&up)?;

    // The sample API answers on gw-1 and gw-2, not on gw-3 (Label1).
    for (id, url, _) in &p.gateways {
        let (status, body) = get(&format!("{url}/hello/1.0.0/greet/world")).await?;
        if id == "gw-3" {
            ensure!(status == 404, "gw-3 serves Label1 only: {status} {body}");
        } else {
            ensure!(
                status == 200 && body.contains("Hello, world!"),
                "{id}: {status} {body}"
            );
        }
    }

    // The README walkthrough: publish, deploy, call, update, wait, undeploy.
    let (url, token) = up.publisher();
    let publisher = PublisherClient::new(&url, &token);
    let created = publisher.create_api(MENU_API).await?;
    ensure!(created.status.as_u16() == 201, "{}", created.text);
    let id = created.body["id"].as_str().context("id")?.to_owned();
    let deployed = publisher.deploy(&id, &[PROD], None).await?;
    ensure!(deployed.status.is_success(), "{}", deployed.text);
    let admin = |i: usize| GatewayAdminClient::new(&p.gateways[i].2, &p.admin_token);
    for i in [0, 1] {
        let a = admin(i)
            .wait_for_revision(&id, 1, Duration::from_secs(20))
            .await?;
        ensure!(a.status.is_success(), "{}", a.text);
        let (status, body) = get(&format!(
            "{}/menu/1.0.0/items/7?currency=EUR",
            p.gateways[i].1
        ))
        .await?;
        ensure!(
            status == 200 && body.contains("Margherita") && body.contains("EUR"),
            "{body}"
        );
    }
    ensure!(
        get(&format!("{}/menu/1.0.0/items/7", p.gateways[2].1))
            .await?
            .0
            == 404
    );
    let v2 = MENU_API.replace("Margherita", "Marinara");
    let put = publisher.update_api(&id, &v2).await?;
    ensure!(
        put.status.as_u16() == 201 && put.body["revision"] == 2,
        "{}",
        put.text
    );
    let deployed = publisher.deploy(&id, &[PROD], None).await?;
    ensure!(deployed.status.is_success(), "{}", deployed.text);
    let a = admin(1)
        .wait_for_revision(&id, 2, Duration::from_secs(20))
        .await?;
    ensure!(a.status.is_success(), "{}", a.text);
    let (_, body) = get(&format!("{}/menu/1.0.0/items/7", p.gateways[1].1)).await?;
    ensure!(body.contains("Marinara"), "{body}");
    let undeployed = publisher.undeploy(&id, PROD).await?;
    ensure!(undeployed.status.is_success(), "{}", undeployed.text);
    eventually("the undeploy on gw-1", Duration::from_secs(20), || async {
        Ok((get(&format!("{}/menu/1.0.0/items/7", p.gateways[0].1))
            .await?
            .0
            == 404)
            .then_some(()))
    })
    .await?;
    // Deployed again, and an item in the persistence store, for the restart.
    let deployed = publisher.deploy(&id, &[PROD], None).await?;
    ensure!(deployed.status.is_success(), "{}", deployed.text);
    let store = format!(
        "{}/api/v1/organizations/acme/environments/prod/stores/sessions",
        p.traffic_manager
    );
    let http = reqwest::Client::new();
    let r = http
        .put(&store)
        .bearer_auth(&p.operator_token)
        .json(&json!({}))
        .send()
        .await?;
    ensure!(r.status().is_success(), "store: {}", r.status());
    let item = format!("{store}/partitions/default/keys/visits");
    let r = http
        .put(&item)
        .bearer_auth(&p.operator_token)
        .json(&json!({"keyId": "visits", "valueType": "STRING", "stringValue": "kept"}))
        .send()
        .await?;
    ensure!(r.status().is_success(), "item: {}", r.status());

    // Not one connection to PostgreSQL or RabbitMQ, at any time so far.
    let remote = remote_ports_of(pid)?;
    ensure!(
        !remote.iter().any(|p| *p == 5432 || *p == 5672),
        "the embedded default connected to {remote:?}"
    );

    // Ctrl-C stops it.
    let (status, output) = up.interrupt().await?;
    ensure!(status.success(), "exit {status}: {output}");
    ensure!(
        output.contains("artisync is up") && output.contains("stopped"),
        "{output}"
    );

    // Started again on the same work dir, it serves everything as before.
    let up = Up::start(&dir, offset, &UpOptions::embedded()).await?;
    let p = ports(&up)?;
    for i in [0, 1] {
        let (status, body) = get(&format!("{}/menu/1.0.0/items/7", p.gateways[i].1)).await?;
        ensure!(
            status == 200 && body.contains("Marinara"),
            "after the restart: {status} {body}"
        );
        ensure!(
            get(&format!("{}/hello/1.0.0/greet/world", p.gateways[i].1))
                .await?
                .0
                == 200
        );
    }
    let (url, token) = up.publisher();
    let detail = PublisherClient::new(&url, &token)
        .0
        .get(&format!("/api/v1/apis/{id}"))
        .await?;
    ensure!(
        detail.body["revisions"].as_array().map(Vec::len) == Some(2),
        "{}",
        detail.text
    );
    let r = http
        .get(&item)
        .bearer_auth(&p.operator_token)
        .send()
        .await?;
    ensure!(
        r.status().is_success(),
        "the item after the restart: {}",
        r.status()
    );
    let body: Value = r.json().await?;
    ensure!(body["stringValue"] == "kept", "{body}");
    let (status, output) = up.interrupt().await?;
    ensure!(status.success(), "{output}");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// What the publisher answered 2xx for, during the burst.
#[derive(Default)]
struct Acked {
    /// API id to the revision acknowledged as deployed on PROD.
    deployed: BTreeMap<String, u64>,
}

#[tokio::test]
async fn sigkill_in_a_burst_loses_no_acknowledged_change_and_invents_none() -> anyhow::Result<()> {
    let dir = work_dir();
    let offset = free_offset()?;
    let up = Up::start(&dir, offset, &UpOptions::embedded().with_no_sample()).await?;
    let (url, token) = up.publisher();
    let acked = Arc::new(Mutex::new(Acked::default()));
    // Four clients create and deploy APIs (and update some) until the kill.
    let mut clients = Vec::new();
    for client in 0..4 {
        let publisher = PublisherClient::new(&url, &token);
        let acked = acked.clone();
        clients.push(tokio::spawn(async move {
            for i in 0.. {
                let name = format!("Burst{client}x{i}");
                let Ok(created) = publisher
                    .create_api(&mock_api(&name, &format!("/{name}"), "r1"))
                    .await
                else {
                    return;
                };
                if created.status.as_u16() != 201 {
                    return;
                }
                let Some(id) = created.body["id"].as_str().map(str::to_owned) else {
                    return;
                };
                match publisher.deploy(&id, &[PROD], None).await {
                    Ok(a) if a.status.is_success() => {
                        acked
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .deployed
                            .insert(id.clone(), 1);
                    }
                    _ => return,
                }
                if i % 3 == 0 {
                    let Ok(put) = publisher
                        .update_api(&id, &mock_api(&name, &format!("/{name}"), "r2"))
                        .await
                    else {
                        return;
                    };
                    if put.status.as_u16() != 201 {
                        return;
                    }
                    match publisher.deploy(&id, &[PROD], None).await {
                        Ok(a) if a.status.is_success() => {
                            acked
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .deployed
                                .insert(id, 2);
                        }
                        _ => return,
                    }
                }
            }
        }));
    }
    eventually(
        "a burst of acknowledged changes",
        Duration::from_secs(60),
        || async {
            Ok((acked
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .deployed
                .len()
                >= 60)
                .then_some(()))
        },
    )
    .await?;
    up.kill().await?;
    for c in clients {
        let _ = c.await;
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap_or_else(|p| p.into_inner()));

    let up = Up::start(&dir, offset, &UpOptions::embedded().with_no_sample()).await?;
    let p = ports(&up)?;
    let (url, token) = up.publisher();
    let publisher = PublisherClient::new(&url, &token);
    // Every acknowledged deploy is in the desired state, at its revision
    // or a newer one (an unanswered request may have committed after it).
    let mut desired = BTreeMap::new();
    let list = publisher.0.get("/api/v1/apis").await?;
    for api in list.body["apis"].as_array().context("apis")? {
        let id = api["id"].as_str().context("id")?;
        let detail = publisher.0.get(&format!("/api/v1/apis/{id}")).await?;
        if let Some(revision) = detail.body["deployments"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| d["label"] == PROD)
            .filter_map(|d| d["revision"].as_u64())
            .max()
        {
            desired.insert(id.to_owned(), revision);
        }
    }
    for (id, revision) in &acked.deployed {
        let found = desired.get(id).copied();
        ensure!(
            found.is_some_and(|d| d >= *revision),
            "acknowledged revision {revision} of {id} is lost (desired: {found:?})"
        );
    }
    // Every node of the label serves exactly the desired state.
    for i in [0, 1] {
        let admin = GatewayAdminClient::new(&p.gateways[i].2, &p.admin_token);
        eventually(
            &format!("{} to run exactly the desired state", p.gateways[i].0),
            Duration::from_secs(60),
            || async {
                let apis = admin.0.get("/api/gateway/v1/apis").await?;
                let applied: BTreeMap<String, u64> = apis.body["apis"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|a| a["status"] == "DEPLOYED")
                    .filter_map(|a| {
                        Some((a["apiId"].as_str()?.to_owned(), a["revision"].as_u64()?))
                    })
                    .collect();
                Ok((applied == desired).then_some(()))
            },
        )
        .await?;
    }
    let gw3 = GatewayAdminClient::new(&p.gateways[2].2, &p.admin_token);
    let apis = gw3.0.get("/api/gateway/v1/apis").await?;
    ensure!(
        apis.body["apis"].as_array().is_some_and(Vec::is_empty),
        "gw-3 (Label1) runs nothing: {}",
        apis.text
    );
    let (status, output) = up.interrupt().await?;
    ensure!(status.success(), "{output}");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::test]
async fn bad_storage_and_work_dirs_stop_up_before_it_binds_a_port() -> anyhow::Result<()> {
    let offset = free_offset()?;
    let dir = work_dir();
    std::fs::create_dir_all(&dir)?;

    // An unknown storage URL scheme names the option.
    let mut options = UpOptions::embedded();
    options.args = vec![
        "--database-url".into(),
        "redis://user:secret@127.0.0.1/0".into(),
    ];
    let (status, output) = run_to_exit(&dir.join("a"), offset, &options).await?;
    ensure!(!status.success(), "{output}");
    ensure!(output.contains("--database-url"), "{output}");
    ensure!(
        !output.contains("secret"),
        "the password is not echoed: {output}"
    );
    ensure!(!output.contains("listening"), "{output}");

    // A work dir that cannot be created names the path.
    let file = dir.join("a-file");
    std::fs::write(&file, b"not a directory")?;
    let work = file.join("work");
    let (status, output) = run_to_exit(&work, offset, &UpOptions::embedded()).await?;
    ensure!(!status.success(), "{output}");
    ensure!(output.contains(&work.display().to_string()), "{output}");
    ensure!(!output.contains("listening"), "{output}");

    // A file that is not a SQLite database names the path.
    let junk = dir.join("junk");
    std::fs::create_dir_all(&junk)?;
    std::fs::write(
        junk.join("artisync.db"),
        b"these are not the bytes of a database",
    )?;
    let (status, output) = run_to_exit(&junk, offset, &UpOptions::embedded()).await?;
    ensure!(!status.success(), "{output}");
    ensure!(
        output.contains("artisync.db") && output.contains("not a SQLite database"),
        "{output}"
    );
    ensure!(!output.contains("listening"), "{output}");

    // A SQLite database of another program names the path, and is left alone.
    let foreign = dir.join("foreign");
    std::fs::create_dir_all(&foreign)?;
    let db = foreign.join("artisync.db");
    {
        use sqlx::Connection;
        let mut c =
            sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", db.display())).await?;
        sqlx::raw_sql("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
            .execute(&mut c)
            .await?;
        c.close().await?;
    }
    let before = std::fs::read(&db)?;
    let (status, output) = run_to_exit(&foreign, offset, &UpOptions::embedded()).await?;
    ensure!(!status.success(), "{output}");
    ensure!(
        output.contains("artisync.db") && output.contains("another program"),
        "{output}"
    );
    ensure!(!output.contains("listening"), "{output}");
    ensure!(
        std::fs::read(&db)? == before,
        "the foreign database was changed"
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
