//! [`ArtifactStore`] on MySQL: artifacts as `LONGBLOB` revisions,
//! deployments as rows, and events in the `outbox` table. A change is one
//! transaction with its outbox rows; changes to one API are serialised by
//! a row lock on the API (`SELECT … FOR UPDATE`).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::Duration;

use artisync_domain::api::{
    ApiDetail, ApiSummary, DeployOutcome, DeploymentInfo, GatewaySummary, NodeApiStatus,
    RevisionInfo,
};
use artisync_domain::event::{DeploymentEvent, EventType};
use artisync_domain::receipt::Receipt;
use artisync_domain::{ApiId, GatewayLabel, Revision};
use artisync_ports::artifacts::{ChangeContext, NewArtifact, StoredArtifact, UpdateOutcome};
use artisync_ports::receipts::PropagationSample;
use artisync_ports::rules::{self, ApiIdentity, NodeReportRow};
use artisync_ports::{ArtifactStore, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use sqlx::mysql::MySqlRow;
use sqlx::{MySqlConnection, MySqlPool, Row};

use crate::error::{self, BACKEND, Error, Result};
use crate::{MySqlBackend, placeholders, value_rows};

/// How often a change InnoDB rolled back to break a deadlock is run again
/// before the caller gets a retryable error.
const DEADLOCK_RETRIES: u32 = 3;

/// Runs `change` again when InnoDB chose it as a deadlock victim (its
/// transaction was rolled back whole, so running it again is safe).
pub(crate) async fn retry_deadlocks<T, F, Fut>(mut change: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut attempt = 0;
    loop {
        match change().await {
            Err(e) if error::is_deadlock(&e) && attempt < DEADLOCK_RETRIES => {
                attempt += 1;
                tracing::debug!(attempt, "deadlock; running the change again");
            }
            other => return other,
        }
    }
}

/// The columns of `apis` that events and summaries need.
struct ApiRow {
    identity: ApiIdentity,
    latest_revision: Revision,
    created_at: DateTime<Utc>,
}

fn revision(n: i32) -> Result<Revision> {
    Ok(rules::stored_revision(BACKEND, i64::from(n))?)
}

pub(crate) fn api_id(raw: &str) -> Result<ApiId> {
    raw.parse::<uuid::Uuid>()
        .map(ApiId::from_uuid)
        .map_err(|e| StoreError::broken(BACKEND, format!("stored API id {raw:?}: {e}")).into())
}

/// Now, as the database stores it (microseconds).
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Maps duplicate keys of `apis` to 409 with a message naming the clash.
/// MySQL names the key in the message: `… for key 'apis_context_key'`
/// (MariaDB) or `'apis.apis_context_key'` (MySQL 8).
fn conflict_on_unique(e: sqlx::Error, new: &NewArtifact) -> Error {
    if error::number(&e) == Some(error::DUP_ENTRY)
        && let sqlx::Error::Database(db) = &e
    {
        let message = db.message();
        if message.contains("apis_name_version_key") {
            return rules::name_version_taken(&new.name, &new.version).into();
        }
        if message.contains("apis_context_key") {
            return rules::context_taken(&new.context).into();
        }
    }
    Error::Sql(e)
}

async fn lock_api(conn: &mut MySqlConnection, id: ApiId) -> Result<ApiRow> {
    let row = sqlx::query(
        "SELECT name, version, context, latest_revision, created_at FROM apis
         WHERE id = ? FOR UPDATE",
    )
    .bind(id.to_string())
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| rules::api_not_found(id))?;
    Ok(ApiRow {
        identity: ApiIdentity {
            id,
            name: row.try_get("name")?,
            version: row.try_get("version")?,
            context: row.try_get("context")?,
        },
        latest_revision: revision(row.try_get("latest_revision")?)?,
        created_at: row.try_get("created_at")?,
    })
}

/// A new change number: the id of a new `change_numbers` row. A number
/// drawn by a transaction that then rolls back is a harmless gap.
pub(crate) async fn next_sequence(conn: &mut MySqlConnection) -> Result<i64> {
    let done = sqlx::query("INSERT INTO change_numbers () VALUES ()")
        .execute(&mut *conn)
        .await?;
    i64::try_from(done.last_insert_id())
        .map_err(|_| StoreError::broken(BACKEND, "change number out of range").into())
}

/// Writes one outbox row per label of each event, then raises the labels'
/// change numbers, inside the caller's transaction.
pub(crate) async fn write_events(
    conn: &mut MySqlConnection,
    events: &[DeploymentEvent],
    ctx: &ChangeContext,
) -> Result<()> {
    let rows = rules::outbox_rows(events);
    if rows.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO outbox (event_id, routing_key, payload, traceparent, sequence, created_at)
         VALUES {}",
        vec!["(?, ?, ?, ?, ?, UTC_TIMESTAMP(6))"; rows.len()].join(", ")
    );
    let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
    for row in &rows {
        insert = insert
            .bind(row.event_id.to_string())
            .bind(row.routing_key.clone())
            .bind(row.payload.clone())
            .bind(ctx.traceparent.clone())
            .bind(row.sequence);
    }
    insert.execute(&mut *conn).await?;
    // Sorted by label, so that concurrent changes lock the rows in the
    // same order.
    let mut highest: BTreeMap<&str, i64> = BTreeMap::new();
    for row in &rows {
        let entry = highest
            .entry(row.routing_key.as_str())
            .or_insert(row.sequence);
        *entry = (*entry).max(row.sequence);
    }
    let sql = format!(
        "INSERT INTO label_sequences (label, sequence) VALUES {}
         ON DUPLICATE KEY UPDATE sequence = GREATEST(sequence, VALUES(sequence))",
        value_rows(highest.len(), 2)
    );
    let mut upsert = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (label, sequence) in highest {
        upsert = upsert.bind(label.to_owned()).bind(sequence);
    }
    upsert.execute(&mut *conn).await?;
    crate::receipts::record_change(conn, events).await
}

pub(crate) fn summary_from_row(row: &MySqlRow) -> Result<ApiSummary> {
    Ok(ApiSummary {
        id: api_id(row.try_get("id")?)?,
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        context: row.try_get("context")?,
        revision: revision(row.try_get("latest_revision")?)?,
        sha256: rules::stored_digest(BACKEND, row.try_get::<&str, _>("sha256")?)?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub(crate) const SUMMARY_SELECT: &str =
    "SELECT a.id, a.name, a.version, a.context, a.latest_revision,
        r.sha256, a.created_at, a.updated_at
     FROM apis a JOIN api_revisions r ON r.api_id = a.id AND r.revision = a.latest_revision";

async fn summary(pool: &MySqlPool, id: ApiId) -> Result<ApiSummary> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{SUMMARY_SELECT} WHERE a.id = ?"
    )))
    .bind(id.to_string())
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| rules::api_not_found(id))?;
    summary_from_row(&row)
}

async fn create_api(pool: &MySqlPool, new: &NewArtifact) -> Result<ApiSummary> {
    let id = ApiId::new_random();
    let at = now();
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO apis (id, name, version, context, latest_revision, created_at, updated_at)
         VALUES (?, ?, ?, ?, 1, ?, ?)",
    )
    .bind(id.to_string())
    .bind(&new.name)
    .bind(&new.version)
    .bind(&new.context)
    .bind(at)
    .bind(at)
    .execute(&mut *tx)
    .await
    .map_err(|e| conflict_on_unique(e, new))?;
    sqlx::query(
        "INSERT INTO api_revisions (api_id, revision, sha256, artifact, created_at)
         VALUES (?, 1, ?, ?, ?)",
    )
    .bind(id.to_string())
    .bind(new.sha256.to_hex())
    .bind(&new.xml)
    .bind(at)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(ApiSummary {
        id,
        name: new.name.clone(),
        version: new.version.clone(),
        context: new.context.clone(),
        revision: Revision::FIRST,
        sha256: new.sha256,
        created_at: at,
        updated_at: at,
    })
}

async fn update_api(pool: &MySqlPool, id: ApiId, new: &NewArtifact) -> Result<UpdateOutcome> {
    let mut tx = pool.begin().await?;
    let api = lock_api(&mut tx, id).await?;
    let latest_sha: String =
        sqlx::query_scalar("SELECT sha256 FROM api_revisions WHERE api_id = ? AND revision = ?")
            .bind(id.to_string())
            .bind(api.latest_revision.as_i32())
            .fetch_one(&mut *tx)
            .await?;
    if latest_sha == new.sha256.to_hex() {
        tx.rollback().await?;
        return Ok(UpdateOutcome::Unchanged(summary(pool, id).await?));
    }
    let next = api.latest_revision.next();
    let at = now();
    sqlx::query(
        "UPDATE apis SET name = ?, version = ?, context = ?, latest_revision = ?, updated_at = ?
         WHERE id = ?",
    )
    .bind(&new.name)
    .bind(&new.version)
    .bind(&new.context)
    .bind(next.as_i32())
    .bind(at)
    .bind(id.to_string())
    .execute(&mut *tx)
    .await
    .map_err(|e| conflict_on_unique(e, new))?;
    sqlx::query(
        "INSERT INTO api_revisions (api_id, revision, sha256, artifact, created_at)
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(id.to_string())
    .bind(next.as_i32())
    .bind(new.sha256.to_hex())
    .bind(&new.xml)
    .bind(at)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(UpdateOutcome::NewRevision(ApiSummary {
        id,
        name: new.name.clone(),
        version: new.version.clone(),
        context: new.context.clone(),
        revision: next,
        sha256: new.sha256,
        created_at: api.created_at,
        updated_at: at,
    }))
}

async fn list_apis(pool: &MySqlPool) -> Result<Vec<ApiSummary>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{SUMMARY_SELECT} ORDER BY a.name, a.version"
    )))
    .fetch_all(pool)
    .await?;
    rows.iter().map(summary_from_row).collect()
}

async fn find_api(pool: &MySqlPool, name: &str, version: &str) -> Result<Option<ApiSummary>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{SUMMARY_SELECT} WHERE a.name = ? AND a.version = ?"
    )))
    .bind(name)
    .bind(version)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(summary_from_row).transpose()
}

async fn get_api(pool: &MySqlPool, id: ApiId) -> Result<ApiDetail> {
    let summary = summary(pool, id).await?;
    let revisions = sqlx::query(
        "SELECT revision, sha256, CAST(LENGTH(artifact) AS SIGNED) AS size, created_at
         FROM api_revisions WHERE api_id = ? ORDER BY revision",
    )
    .bind(id.to_string())
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        Ok(RevisionInfo {
            revision: revision(r.try_get("revision")?)?,
            sha256: rules::stored_digest(BACKEND, r.try_get::<&str, _>("sha256")?)?,
            size_bytes: r.try_get("size")?,
            created_at: r.try_get("created_at")?,
        })
    })
    .collect::<Result<Vec<_>>>()?;
    let deployments = sqlx::query(
        "SELECT label, revision, sequence, deployed_at FROM deployments
         WHERE api_id = ? ORDER BY label",
    )
    .bind(id.to_string())
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        Ok(DeploymentInfo {
            label: rules::stored_label(BACKEND, r.try_get::<&str, _>("label")?)?,
            revision: revision(r.try_get("revision")?)?,
            sequence: r.try_get("sequence")?,
            deployed_at: r.try_get("deployed_at")?,
        })
    })
    .collect::<Result<Vec<_>>>()?;
    Ok(ApiDetail {
        summary,
        revisions,
        deployments,
    })
}

async fn get_artifact(
    pool: &MySqlPool,
    id: ApiId,
    rev: Option<Revision>,
) -> Result<StoredArtifact> {
    let row = sqlx::query(
        "SELECT r.revision, r.sha256, r.artifact FROM apis a
         JOIN api_revisions r ON r.api_id = a.id
            AND r.revision = COALESCE(?, a.latest_revision)
         WHERE a.id = ?",
    )
    .bind(rev.map(Revision::as_i32))
    .bind(id.to_string())
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        // Tell a missing API from a missing revision.
        summary(pool, id).await?;
        return Err(rules::revision_not_found(id, rev).into());
    };
    Ok(StoredArtifact {
        revision: revision(row.try_get("revision")?)?,
        sha256: rules::stored_digest(BACKEND, row.try_get::<&str, _>("sha256")?)?,
        xml: row.try_get("artifact")?,
    })
}

async fn deploy(
    store: &MySqlBackend,
    id: ApiId,
    labels: &[GatewayLabel],
    rev: Option<Revision>,
    ctx: &ChangeContext,
) -> Result<DeployOutcome> {
    let mut tx = store.pool.begin().await?;
    let api = lock_api(&mut tx, id).await?;
    let target = rev.unwrap_or(api.latest_revision);
    // After the lock, so these reads see every change committed before it
    // (READ COMMITTED). The artifact comes along only when it is small
    // enough to travel inside the event.
    let row = sqlx::query(
        "SELECT sha256, CASE WHEN LENGTH(artifact) <= ? THEN artifact END AS inline_artifact
         FROM api_revisions WHERE api_id = ? AND revision = ?",
    )
    .bind(i64::try_from(store.inline_artifact_max_bytes).unwrap_or(i64::MAX))
    .bind(id.to_string())
    .bind(target.as_i32())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Err(rules::no_such_revision(id, target, api.latest_revision).into());
    };
    let sha = rules::stored_digest(BACKEND, row.try_get::<&str, _>("sha256")?)?;
    let inline_artifact: Option<Vec<u8>> = row.try_get("inline_artifact")?;
    let sql = format!(
        "SELECT label, revision FROM deployments WHERE api_id = ? AND label IN ({})",
        placeholders(labels.len())
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.to_string());
    for label in labels {
        query = query.bind(label.as_str().to_owned());
    }
    let current: HashMap<String, i32> = query
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("label")?, r.try_get("revision")?)))
        .collect::<std::result::Result<_, sqlx::Error>>()?;
    let (changed, unchanged) = rules::plan_deploy(id, labels, &current, target)?;
    if changed.is_empty() {
        tx.rollback().await?;
        return Ok(DeployOutcome {
            api_id: id,
            revision: target,
            changed_labels: changed,
            unchanged_labels: unchanged,
            sequence: None,
        });
    }
    let sequence = next_sequence(&mut tx).await?;
    let mut deploy_event = rules::event(
        EventType::DeployApiInGateway,
        &api.identity,
        target,
        sha,
        changed.clone(),
        sequence,
        Utc::now(),
    );
    // Stored artifacts are validated UTF-8 XML; anything else is left for
    // the gateway to fetch.
    deploy_event.artifact = inline_artifact.and_then(|bytes| String::from_utf8(bytes).ok());
    write_events(&mut tx, &[deploy_event], ctx).await?;
    let sql = format!(
        "INSERT INTO deployments (api_id, label, revision, sequence, deployed_at) VALUES {}
         ON DUPLICATE KEY UPDATE revision = VALUES(revision), sequence = VALUES(sequence),
            deployed_at = VALUES(deployed_at)",
        vec!["(?, ?, ?, ?, UTC_TIMESTAMP(6))"; changed.len()].join(", ")
    );
    let mut upsert = sqlx::query(sqlx::AssertSqlSafe(sql));
    for label in &changed {
        upsert = upsert
            .bind(id.to_string())
            .bind(label.as_str().to_owned())
            .bind(target.as_i32())
            .bind(sequence);
    }
    upsert.execute(&mut *tx).await?;
    tx.commit().await?;
    store.outbox_committed();
    Ok(DeployOutcome {
        api_id: id,
        revision: target,
        changed_labels: changed,
        unchanged_labels: unchanged,
        sequence: Some(sequence),
    })
}

async fn undeploy(
    store: &MySqlBackend,
    id: ApiId,
    label: &GatewayLabel,
    ctx: &ChangeContext,
) -> Result<i64> {
    let mut tx = store.pool.begin().await?;
    let api = lock_api(&mut tx, id).await?;
    let removed = sqlx::query(
        "SELECT d.revision, r.sha256 FROM deployments d
         JOIN api_revisions r ON r.api_id = d.api_id AND r.revision = d.revision
         WHERE d.api_id = ? AND d.label = ?",
    )
    .bind(id.to_string())
    .bind(label.as_str())
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| rules::not_deployed(id, label))?;
    sqlx::query("DELETE FROM deployments WHERE api_id = ? AND label = ?")
        .bind(id.to_string())
        .bind(label.as_str())
        .execute(&mut *tx)
        .await?;
    let sequence = next_sequence(&mut tx).await?;
    let remove = rules::event(
        EventType::RemoveApiFromGateway,
        &api.identity,
        revision(removed.try_get("revision")?)?,
        rules::stored_digest(BACKEND, removed.try_get::<&str, _>("sha256")?)?,
        vec![label.clone()],
        sequence,
        Utc::now(),
    );
    write_events(&mut tx, &[remove], ctx).await?;
    tx.commit().await?;
    store.outbox_committed();
    Ok(sequence)
}

async fn delete_api(store: &MySqlBackend, id: ApiId, ctx: &ChangeContext) -> Result<()> {
    let mut tx = store.pool.begin().await?;
    let api = lock_api(&mut tx, id).await?;
    let deployed = sqlx::query(
        "SELECT d.label, d.revision, r.sha256 FROM deployments d
         JOIN api_revisions r ON r.api_id = d.api_id AND r.revision = d.revision
         WHERE d.api_id = ? ORDER BY d.label",
    )
    .bind(id.to_string())
    .fetch_all(&mut *tx)
    .await?;
    let wrote_events = !deployed.is_empty();
    if wrote_events {
        let sequence = next_sequence(&mut tx).await?;
        let now = Utc::now();
        let mut events = Vec::with_capacity(deployed.len());
        for row in &deployed {
            events.push(rules::event(
                EventType::RemoveApiFromGateway,
                &api.identity,
                revision(row.try_get("revision")?)?,
                rules::stored_digest(BACKEND, row.try_get::<&str, _>("sha256")?)?,
                vec![rules::stored_label(
                    BACKEND,
                    row.try_get::<&str, _>("label")?,
                )?],
                sequence,
                now,
            ));
        }
        write_events(&mut tx, &events, ctx).await?;
    }
    // Revisions and deployments go with it (ON DELETE CASCADE).
    sqlx::query("DELETE FROM apis WHERE id = ?")
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    if wrote_events {
        store.outbox_committed();
    }
    Ok(())
}

/// A node's labels as stored (a JSON array of strings).
pub(crate) fn stored_labels(raw: &str) -> Result<Vec<String>> {
    serde_json::from_str(raw)
        .map_err(|e| StoreError::broken(BACKEND, format!("stored node labels: {e}")).into())
}

async fn api_status(
    pool: &MySqlPool,
    id: ApiId,
    stale_after: Duration,
) -> Result<Vec<NodeApiStatus>> {
    // The API must exist; its status is derived from the nodes' reports.
    summary(pool, id).await?;
    let deployments: HashMap<String, i32> =
        sqlx::query("SELECT label, revision FROM deployments WHERE api_id = ?")
            .bind(id.to_string())
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("label")?, r.try_get("revision")?)))
            .collect::<std::result::Result<_, sqlx::Error>>()?;
    let rows = sqlx::query(
        "SELECT n.node_id, n.labels, n.last_heartbeat, s.revision, s.sha256, s.status,
                s.error, s.attempts, s.updated_at, UTC_TIMESTAMP(6) AS db_now
         FROM gateway_nodes n
         LEFT JOIN gateway_api_states s ON s.node_id = n.node_id AND s.api_id = ?
         ORDER BY n.node_id",
    )
    .bind(id.to_string())
    .fetch_all(pool)
    .await?;
    let now: DateTime<Utc> = match rows.first() {
        Some(row) => row.try_get("db_now")?,
        None => Utc::now(),
    };
    let rows = rows
        .iter()
        .map(|row| {
            Ok(NodeReportRow {
                node_id: row.try_get("node_id")?,
                labels: stored_labels(row.try_get("labels")?)?,
                last_heartbeat: row.try_get("last_heartbeat")?,
                revision: row.try_get("revision")?,
                sha256: row.try_get("sha256")?,
                status: row.try_get("status")?,
                error: row.try_get("error")?,
                attempts: row.try_get("attempts")?,
                updated_at: row.try_get("updated_at")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(rules::node_api_statuses(
        &deployments,
        rows,
        now,
        stale_after,
    )?)
}

pub(crate) async fn gateways(
    pool: &MySqlPool,
    stale_after: Duration,
) -> Result<Vec<GatewaySummary>> {
    // Per node, what it should run (the highest revision over its labels)
    // against what it reported; counted per node, then joined to the node.
    let rows = sqlx::query(
        "SELECT n.node_id, n.labels, n.ready, n.started_at, n.last_heartbeat, n.details,
                UTC_TIMESTAMP(6) AS db_now,
                CAST(COALESCE(c.in_sync, 0) AS SIGNED) AS in_sync,
                CAST(COALESCE(c.failed, 0) AS SIGNED) AS failed,
                CAST(COALESCE(c.behind, 0) AS SIGNED) AS behind
         FROM gateway_nodes n
         LEFT JOIN (
            SELECT desired.node_id,
                   SUM(CASE WHEN s.status = 'DEPLOYED' AND s.revision = desired.revision
                            THEN 1 ELSE 0 END) AS in_sync,
                   SUM(CASE WHEN s.status = 'FAILED' THEN 1 ELSE 0 END) AS failed,
                   SUM(CASE WHEN NOT (s.status <=> 'FAILED')
                             AND (NOT (s.status <=> 'DEPLOYED')
                                  OR NOT (s.revision <=> desired.revision))
                            THEN 1 ELSE 0 END) AS behind
            FROM (
                SELECT l.node_id, d.api_id, MAX(d.revision) AS revision
                FROM gateway_node_labels l JOIN deployments d ON d.label = l.label
                GROUP BY l.node_id, d.api_id
            ) desired
            LEFT JOIN gateway_api_states s
                   ON s.node_id = desired.node_id AND s.api_id = desired.api_id
            GROUP BY desired.node_id
         ) c ON c.node_id = n.node_id
         ORDER BY n.node_id",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let last_heartbeat: DateTime<Utc> = row.try_get("last_heartbeat")?;
            let now: DateTime<Utc> = row.try_get("db_now")?;
            let details: &str = row.try_get("details")?;
            Ok(GatewaySummary {
                node_id: row.try_get("node_id")?,
                labels: stored_labels(row.try_get("labels")?)?,
                ready: row.try_get("ready")?,
                started_at: row.try_get("started_at")?,
                last_heartbeat,
                stale: rules::is_stale(now, last_heartbeat, stale_after),
                apis_in_sync: row.try_get("in_sync")?,
                apis_failed: row.try_get("failed")?,
                apis_behind: row.try_get("behind")?,
                details: serde_json::from_str(details).map_err(|e| {
                    StoreError::broken(BACKEND, format!("stored node details: {e}"))
                })?,
            })
        })
        .collect()
}

#[async_trait]
impl ArtifactStore for MySqlBackend {
    async fn create_api(&self, new: NewArtifact) -> std::result::Result<ApiSummary, StoreError> {
        Ok(retry_deadlocks(|| create_api(&self.pool, &new)).await?)
    }

    async fn update_api(
        &self,
        id: ApiId,
        new: NewArtifact,
    ) -> std::result::Result<UpdateOutcome, StoreError> {
        Ok(retry_deadlocks(|| update_api(&self.pool, id, &new)).await?)
    }

    async fn list_apis(&self) -> std::result::Result<Vec<ApiSummary>, StoreError> {
        Ok(list_apis(&self.pool).await?)
    }

    async fn get_api(&self, id: ApiId) -> std::result::Result<ApiDetail, StoreError> {
        Ok(get_api(&self.pool, id).await?)
    }

    async fn find_api(
        &self,
        name: &str,
        version: &str,
    ) -> std::result::Result<Option<ApiSummary>, StoreError> {
        Ok(find_api(&self.pool, name, version).await?)
    }

    async fn get_artifact(
        &self,
        id: ApiId,
        revision: Option<Revision>,
    ) -> std::result::Result<StoredArtifact, StoreError> {
        Ok(get_artifact(&self.pool, id, revision).await?)
    }

    async fn deploy(
        &self,
        id: ApiId,
        labels: &[GatewayLabel],
        revision: Option<Revision>,
        ctx: &ChangeContext,
    ) -> std::result::Result<DeployOutcome, StoreError> {
        Ok(retry_deadlocks(|| deploy(self, id, labels, revision, ctx)).await?)
    }

    async fn undeploy(
        &self,
        id: ApiId,
        label: &GatewayLabel,
        ctx: &ChangeContext,
    ) -> std::result::Result<i64, StoreError> {
        Ok(retry_deadlocks(|| undeploy(self, id, label, ctx)).await?)
    }

    async fn delete_api(
        &self,
        id: ApiId,
        ctx: &ChangeContext,
    ) -> std::result::Result<(), StoreError> {
        Ok(retry_deadlocks(|| delete_api(self, id, ctx)).await?)
    }

    async fn api_status(
        &self,
        id: ApiId,
        stale_after: Duration,
    ) -> std::result::Result<Vec<NodeApiStatus>, StoreError> {
        Ok(api_status(&self.pool, id, stale_after).await?)
    }

    async fn gateways(
        &self,
        stale_after: Duration,
    ) -> std::result::Result<Vec<GatewaySummary>, StoreError> {
        Ok(gateways(&self.pool, stale_after).await?)
    }

    async fn receipt(
        &self,
        sequence: i64,
        stale_after: Duration,
    ) -> std::result::Result<Option<Receipt>, StoreError> {
        Ok(crate::receipts::receipt(&self.pool, sequence, stale_after).await?)
    }

    async fn propagation_samples(
        &self,
        after: DateTime<Utc>,
        limit: u32,
    ) -> std::result::Result<Vec<PropagationSample>, StoreError> {
        Ok(crate::receipts::propagation_samples(&self.pool, after, limit).await?)
    }

    async fn fleet(
        &self,
        stale_after: Duration,
    ) -> std::result::Result<artisync_domain::fleet::Fleet, StoreError> {
        Ok(crate::fleet::fleet(&self.pool, stale_after).await?)
    }
}
