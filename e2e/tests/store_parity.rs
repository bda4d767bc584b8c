//! The storage ports called directly, the same calls on PostgreSQL and on
//! MariaDB, with the same answers expected: what the HTTP-level suites do
//! not reach (receipts and their timings, full status reports, bytewise
//! contexts, streamed artifacts of given APIs, the relay's lock).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, ensure};
use artisync_domain::receipt::{ChangeKind, ReceiptState};
use artisync_domain::runtime::{ApiDeploymentStatus, AppliedApiState, GatewayStatusReport};
use artisync_domain::{ApiId, GatewayLabel, NodeId, Revision, Sha256Digest};
use artisync_e2e::mock_api;
use artisync_mysql::MySqlBackend;
use artisync_ports::artifacts::{ChangeContext, NewArtifact, UpdateOutcome};
use artisync_ports::{ArtifactStore, DesiredState, Outbox, StoreError};
use artisync_postgres::PgBackend;
use artisync_test_support::{mysql, postgres};
use chrono::Utc;
use tokio::sync::mpsc;

const STALE: Duration = Duration::from_secs(60);

struct Ports {
    store: Arc<dyn ArtifactStore>,
    desired: Arc<dyn DesiredState>,
    outbox: Arc<dyn Outbox>,
    /// Keeps the database until the test ends.
    _db: Box<dyn Send>,
}

async fn postgres() -> anyhow::Result<Ports> {
    let db = postgres::TestDatabase::create().await?;
    let backend = Arc::new(PgBackend::from_pool(db.pool().await?));
    Ok(Ports {
        store: backend.clone(),
        desired: backend.clone(),
        outbox: backend,
        _db: Box::new(db),
    })
}

async fn mariadb() -> anyhow::Result<Ports> {
    let db = mysql::TestDatabase::create().await?;
    let backend = Arc::new(MySqlBackend::from_pool(db.pool().await?));
    Ok(Ports {
        store: backend.clone(),
        desired: backend.clone(),
        outbox: backend,
        _db: Box::new(db),
    })
}

fn artifact(name: &str, context: &str, tag: &str) -> anyhow::Result<NewArtifact> {
    let xml = mock_api(name, context, tag);
    let parsed = artisync_synapse::parse_artifact(xml.as_bytes())?;
    Ok(NewArtifact {
        name: parsed.api.name.clone(),
        version: parsed.api.version.clone().unwrap_or_default(),
        context: parsed.api.context.clone(),
        sha256: Sha256Digest::of(xml.as_bytes()),
        xml: xml.into_bytes(),
    })
}

fn label(l: &str) -> anyhow::Result<GatewayLabel> {
    Ok(GatewayLabel::parse(l)?)
}

fn report(
    node: &str,
    labels: &[&str],
    full: bool,
    apis: Vec<AppliedApiState>,
) -> anyhow::Result<GatewayStatusReport> {
    Ok(GatewayStatusReport {
        node_id: NodeId::parse(node)?,
        labels: labels.iter().map(|l| label(l)).collect::<Result<_, _>>()?,
        ready: true,
        started_at: Utc::now(),
        full,
        apis,
        details: serde_json::json!({"version": "test"}),
    })
}

fn deployed(api: ApiId, revision: Revision, sha256: Sha256Digest) -> AppliedApiState {
    AppliedApiState {
        api_id: api,
        revision: Some(revision),
        sha256: Some(sha256),
        status: ApiDeploymentStatus::Deployed,
        failed_revision: None,
        error: None,
        attempts: 0,
        next_retry_at: None,
        applied_at: None,
    }
}

async fn changes_receipts_and_reports(p: Ports) -> anyhow::Result<()> {
    let ctx = ChangeContext::default();
    let (l1, l2) = (label("L1")?, label("L2")?);
    // Contexts compare bytewise: "/menu" and "/Menu" are two.
    let a = p.store.create_api(artifact("Menu", "/menu", "a1")?).await?;
    let b = p
        .store
        .create_api(artifact("Other", "/Menu", "b1")?)
        .await?;
    let clash = p.store.create_api(artifact("Third", "/menu", "c1")?).await;
    ensure!(
        matches!(clash, Err(StoreError::Conflict(_))),
        "same context: {clash:?}"
    );
    let clash = p
        .store
        .create_api(artifact("Menu", "/elsewhere", "c1")?)
        .await;
    ensure!(
        matches!(clash, Err(StoreError::Conflict(_))),
        "same name and version: {clash:?}"
    );
    ensure!(p.store.find_api("Menu", "1.0").await?.map(|s| s.id) == Some(a.id));

    let first = p
        .store
        .deploy(a.id, &[l1.clone(), l2.clone()], None, &ctx)
        .await?;
    let s1 = first.sequence.context("the deploy changed labels")?;
    let again = p
        .store
        .deploy(a.id, std::slice::from_ref(&l1), None, &ctx)
        .await?;
    ensure!(again.sequence.is_none() && again.unchanged_labels == [l1.clone()]);

    let meta = p
        .desired
        .runtime_metadata(std::slice::from_ref(&l1))
        .await?;
    ensure!(meta.sequence == s1, "{meta:?}");
    ensure!(
        meta.apis.len() == 1 && meta.apis[0].labels == [l1.clone()],
        "{meta:?}"
    );
    let both = p
        .desired
        .runtime_metadata(&[l1.clone(), l2.clone()])
        .await?;
    ensure!(both.apis[0].labels == [l1.clone(), l2.clone()], "{both:?}");
    let none = p.desired.runtime_metadata(&[label("Nowhere")?]).await?;
    ensure!(none.sequence == 0 && none.apis.is_empty(), "{none:?}");

    // gw-1 (L1) runs it; gw-2 (L2) has not reported it yet.
    p.desired
        .record_statuses(&[
            report(
                "gw-1",
                &["L1"],
                true,
                vec![deployed(a.id, a.revision, a.sha256)],
            )?,
            report("gw-2", &["L2"], true, vec![])?,
        ])
        .await?;
    let receipt = p.store.receipt(s1, STALE).await?.context("no receipt")?;
    ensure!(receipt.kind == ChangeKind::Deploy && receipt.labels == [l1.clone(), l2.clone()]);
    let states: Vec<(&str, ReceiptState)> = receipt
        .nodes
        .iter()
        .map(|n| (n.node_id.as_str(), n.state))
        .collect();
    ensure!(
        states
            == [
                ("gw-1", ReceiptState::Applied),
                ("gw-2", ReceiptState::Pending)
            ],
        "{receipt:?}"
    );
    let applied_at = receipt.nodes[0].applied_at.context("applied_at")?;
    ensure!(receipt.nodes[0].latency_ms.is_some(), "{receipt:?}");
    ensure!(p.store.receipt(s1 + 1000, STALE).await?.is_none());

    let samples = p
        .store
        .propagation_samples(chrono::DateTime::UNIX_EPOCH, 10)
        .await?;
    ensure!(
        samples.len() == 1 && samples[0].node_id == "gw-1" && samples[0].label == "L1",
        "{samples:?}"
    );

    let gateways = p.store.gateways(STALE).await?;
    let counts: Vec<(&str, i64, i64, i64)> = gateways
        .iter()
        .map(|g| {
            (
                g.node_id.as_str(),
                g.apis_in_sync,
                g.apis_failed,
                g.apis_behind,
            )
        })
        .collect();
    ensure!(
        counts == [("gw-1", 1, 0, 0), ("gw-2", 0, 0, 1)],
        "{gateways:?}"
    );
    ensure!(gateways[0].details["version"] == "test" && gateways[0].labels == ["L1"]);
    // A node that changes its labels runs what its new labels deploy.
    for (labels, behind) in [(&["L3"][..], 0), (&[][..], 0), (&["L2"][..], 1)] {
        p.desired
            .record_statuses(&[report("gw-2", labels, true, vec![])?])
            .await?;
        let gateways = p.store.gateways(STALE).await?;
        let gw2 = gateways
            .iter()
            .find(|g| g.node_id == "gw-2")
            .context("gw-2")?;
        ensure!(
            gw2.labels == labels && gw2.apis_behind == behind,
            "labels {labels:?}: {gw2:?}"
        );
    }

    // The same report again keeps the applied time; a new revision moves it.
    p.desired
        .record_statuses(&[report(
            "gw-1",
            &["L1"],
            false,
            vec![deployed(a.id, a.revision, a.sha256)],
        )?])
        .await?;
    let kept = p.store.receipt(s1, STALE).await?.context("no receipt")?;
    ensure!(kept.nodes[0].applied_at == Some(applied_at), "{kept:?}");
    let UpdateOutcome::NewRevision(a2) = p
        .store
        .update_api(a.id, artifact("Menu", "/menu", "a2")?)
        .await?
    else {
        anyhow::bail!("a new body is a new revision");
    };
    let s2 = p
        .store
        .deploy(a.id, std::slice::from_ref(&l1), None, &ctx)
        .await?
        .sequence
        .context("deployed")?;
    ensure!(s2 > s1);
    p.desired
        .record_statuses(&[report(
            "gw-1",
            &["L1"],
            false,
            vec![deployed(a.id, a2.revision, a2.sha256)],
        )?])
        .await?;
    let second = p.store.receipt(s2, STALE).await?.context("no receipt")?;
    let moved = second.nodes[0].applied_at.context("applied_at")?;
    ensure!(
        moved >= applied_at && second.nodes[0].state == ReceiptState::Applied,
        "{second:?}"
    );

    // A full report without the API: the node no longer reports it.
    p.desired
        .record_statuses(&[report("gw-1", &["L1"], true, vec![])?])
        .await?;
    let status = p.store.api_status(a.id, STALE).await?;
    let gw1 = status
        .iter()
        .find(|n| n.node_id == "gw-1")
        .context("gw-1")?;
    ensure!(!gw1.in_sync && gw1.applied_revision.is_none(), "{status:?}");

    // Streamed artifacts of given APIs, on a label.
    let (tx, mut rx) = mpsc::channel(8);
    p.desired
        .stream_artifacts(std::slice::from_ref(&l1), Some(&[b.id, a.id]), tx)
        .await;
    let mut streamed = Vec::new();
    while let Some(item) = rx.recv().await {
        streamed.push(item?);
    }
    ensure!(
        streamed.len() == 1
            && streamed[0].api.api_id == a.id
            && streamed[0].api.revision == a2.revision
            && streamed[0].artifact.contains("a2"),
        "{streamed:?}"
    );
    let single = p
        .desired
        .runtime_artifact(a.id, std::slice::from_ref(&l2))
        .await?;
    ensure!(single.map(|s| s.api.revision) == Some(a.revision));

    // A removal has its receipt; deleting the API keeps the record.
    let s3 = p.store.undeploy(a.id, &l2, &ctx).await?;
    let removal = p.store.receipt(s3, STALE).await?.context("no receipt")?;
    ensure!(removal.kind == ChangeKind::Remove && removal.labels == [l2.clone()]);
    ensure!(
        removal.nodes.iter().all(|n| n.node_id == "gw-2"),
        "{removal:?}"
    );
    let fleet = p.store.fleet(STALE).await?;
    ensure!(fleet.apis.len() == 2 && fleet.nodes.len() == 2);
    p.store.delete_api(a.id, &ctx).await?;
    ensure!(matches!(
        p.store.get_api(a.id).await,
        Err(StoreError::NotFound(_))
    ));
    ensure!(p.store.receipt(s1, STALE).await?.is_some());
    Ok(())
}

async fn one_relay_leads(p: Ports) -> anyhow::Result<()> {
    let ctx = ChangeContext::default();
    let a = p.store.create_api(artifact("Lead", "/lead", "l1")?).await?;
    let mut first = p.outbox.session().await?;
    let mut second = p.outbox.session().await?;
    ensure!(first.lead().await?, "the first session leads");
    ensure!(!second.lead().await?, "the second one stands by");
    // A local commit wakes the leader's session.
    let woken = tokio::spawn(async move {
        let result = tokio::time::timeout(Duration::from_secs(10), first.changed()).await;
        (first, result)
    });
    let labels = [label("L1")?, label("L2")?];
    p.store.deploy(a.id, &labels, None, &ctx).await?;
    let (mut first, result) = woken.await?;
    result.context("the commit did not wake the relay")??;
    let batch = first.claim_batch(10).await?;
    ensure!(batch.len() == 2, "one event per label: {batch:?}");
    let ids: Vec<i64> = batch.iter().map(|e| e.outbox_id).collect();
    first.mark_sent(&ids).await?;
    ensure!(first.claim_batch(10).await?.is_empty());
    ensure!(p.outbox.backlog().await?.unsent == 0);
    // Closing releases the lead: the standby takes over (PostgreSQL
    // releases the lock as the closed session's backend exits, a moment
    // after the close returns).
    first.close().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !second.lead().await? {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the standby did not take over"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    second.close().await;
    ensure!(p.outbox.prune(Duration::ZERO).await? == 2);
    Ok(())
}

#[tokio::test]
async fn postgres_changes_receipts_and_reports() -> anyhow::Result<()> {
    changes_receipts_and_reports(postgres().await?).await
}

#[tokio::test]
async fn mariadb_changes_receipts_and_reports() -> anyhow::Result<()> {
    changes_receipts_and_reports(mariadb().await?).await
}

#[tokio::test]
async fn postgres_one_relay_leads() -> anyhow::Result<()> {
    one_relay_leads(postgres().await?).await
}

#[tokio::test]
async fn mariadb_one_relay_leads() -> anyhow::Result<()> {
    one_relay_leads(mariadb().await?).await
}
