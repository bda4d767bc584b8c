//! Each store's own read of the fleet answers exactly what reading it one
//! API at a time does, on SQLite, on PostgreSQL and on MariaDB.

use std::time::Duration;

use artisync_backends::Storage;
use artisync_config::storage::{StorageOptions, StorageUrl};
use artisync_domain::runtime::{ApiDeploymentStatus, AppliedApiState, GatewayStatusReport};
use artisync_domain::{ApiId, GatewayLabel, NodeId, Revision, Sha256Digest};
use artisync_e2e::mock_api;
use artisync_e2e::postgres::TestDatabase;
use artisync_ports::artifacts::{ChangeContext, NewArtifact, one_api_at_a_time};
use serde_json::Value;

fn label(l: &str) -> GatewayLabel {
    GatewayLabel::parse(l).unwrap()
}

fn artifact(name: &str, tag: &str) -> NewArtifact {
    let xml = mock_api(name, &format!("/{}", name.to_lowercase()), tag).into_bytes();
    NewArtifact {
        name: name.into(),
        version: "1.0".into(),
        context: format!("/{}", name.to_lowercase()),
        sha256: Sha256Digest::of(&xml),
        xml,
    }
}

fn state(
    api: ApiId,
    revision: Option<i64>,
    status: ApiDeploymentStatus,
    error: Option<&str>,
) -> AppliedApiState {
    AppliedApiState {
        api_id: api,
        revision: revision.map(|r| Revision::new(r).unwrap()),
        sha256: None,
        status,
        failed_revision: None,
        error: error.map(str::to_owned),
        attempts: u32::from(error.is_some()),
        next_retry_at: None,
        applied_at: None,
    }
}

fn report(node: &str, labels: &[&str], apis: Vec<AppliedApiState>) -> GatewayStatusReport {
    GatewayStatusReport {
        node_id: NodeId::parse(node).unwrap(),
        labels: labels.iter().map(|l| label(l)).collect(),
        ready: true,
        started_at: chrono::Utc::now(),
        full: true,
        apis,
        details: serde_json::json!({}),
    }
}

/// The fleet as JSON, without the moment it was read.
fn comparable(fleet: &artisync_domain::fleet::Fleet) -> Value {
    let mut v = serde_json::to_value(fleet).unwrap();
    v.as_object_mut().unwrap().remove("generatedAt");
    v
}

async fn check(url: StorageUrl) -> anyhow::Result<()> {
    let storage = Storage::open(&url, &StorageOptions::default()).await?;
    let store = storage
        .for_publisher("amqp://127.0.0.1:1/%2f", &Default::default())
        .store;
    // (Not `for_traffic_manager`: MySQL holds no persistence store.)
    let desired = storage.desired.clone();
    let ctx = ChangeContext::default();
    let a = store.create_api(artifact("A", "r1")).await?;
    let b = store.create_api(artifact("B", "r1")).await?;
    store.create_api(artifact("C", "r1")).await?;
    store.deploy(a.id, &[label("L1")], None, &ctx).await?;
    store
        .deploy(b.id, &[label("L1"), label("L2")], None, &ctx)
        .await?;
    store.update_api(b.id, artifact("B", "r2")).await?;
    store.deploy(b.id, &[label("L1")], None, &ctx).await?;
    desired
        .record_statuses(&[
            // In sync on A, behind on B.
            report(
                "n1",
                &["L1"],
                vec![
                    state(a.id, Some(1), ApiDeploymentStatus::Deployed, None),
                    state(b.id, Some(1), ApiDeploymentStatus::Deployed, None),
                ],
            ),
            report(
                "n2",
                &["L2"],
                vec![state(b.id, None, ApiDeploymentStatus::Failed, Some("boom"))],
            ),
            // Runs A although none of its labels deploys it.
            report(
                "n3",
                &["L3"],
                vec![state(a.id, Some(1), ApiDeploymentStatus::Deployed, None)],
            ),
            report("n4", &["L4"], vec![]),
        ])
        .await?;
    let stale = Duration::from_secs(30);
    let fast = store.fleet(stale).await?;
    let slow = one_api_at_a_time(store.as_ref(), stale).await?;
    assert_eq!(comparable(&fast), comparable(&slow), "{url:?}");
    // And the cells say what happened.
    let api = |name: &str| fast.apis.iter().find(|x| x.summary.name == name).unwrap();
    let cell = |name: &str, node: &str| {
        api(name)
            .nodes
            .iter()
            .find(|c| c.node_id == node)
            .map(|c| serde_json::to_value(c.state).unwrap())
    };
    assert_eq!(cell("A", "n1"), Some("in-sync".into()));
    assert_eq!(cell("B", "n1"), Some("behind".into()));
    assert_eq!(cell("B", "n2"), Some("failed".into()));
    assert_eq!(cell("A", "n3"), Some("behind".into()));
    assert_eq!(cell("C", "n1"), None);
    assert_eq!(fast.nodes.len(), 4);
    storage.close().await;
    Ok(())
}

#[tokio::test]
async fn the_fleet_read_at_once_matches_the_fleet_read_per_api_on_sqlite() -> anyhow::Result<()> {
    let dir =
        std::env::temp_dir().join(format!("artisync-fleet-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("fleet.db");
    check(StorageUrl::parse(
        "database.url",
        &format!("sqlite://{}", path.display()),
    )?)
    .await?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[tokio::test]
async fn the_fleet_read_at_once_matches_the_fleet_read_per_api_on_postgres() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    check(StorageUrl::parse("database.url", &db.url)?).await
}

#[tokio::test]
async fn the_fleet_read_at_once_matches_the_fleet_read_per_api_on_mariadb() -> anyhow::Result<()> {
    let db = artisync_e2e::mysql::TestDatabase::create_empty().await?;
    check(StorageUrl::parse("database.url", &db.url)?).await
}
