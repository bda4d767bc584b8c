//! Receipts on MySQL: each change is recorded with its events, and a
//! receipt is read from that record, the API's deployments and the nodes'
//! reports in one snapshot.

use std::collections::HashMap;
use std::time::Duration;

use artisync_domain::event::DeploymentEvent;
use artisync_domain::receipt::Receipt;
use artisync_ports::StoreError;
use artisync_ports::receipts::{self, ChangeRecord, NodeRow, PropagationSample};
use artisync_ports::rules::{self, NodeReportRow};
use chrono::{DateTime, Utc};
use sqlx::{Connection, MySqlConnection, MySqlPool, Row};

use crate::artifacts::{api_id, stored_labels};
use crate::error::{BACKEND, Result};
use crate::value_rows;

/// Records the change that `events` (all of one sequence) describe,
/// inside the transaction that writes them.
pub(crate) async fn record_change(
    conn: &mut MySqlConnection,
    events: &[DeploymentEvent],
) -> Result<()> {
    let Some((first, kind, labels)) = receipts::change_of(events) else {
        return Ok(());
    };
    let labels_json = serde_json::to_string(&labels)
        .map_err(|e| StoreError::broken(BACKEND, format!("change labels: {e}")))?;
    sqlx::query(
        "INSERT INTO changes
            (sequence, kind, api_id, name, version, revision, sha256, labels, committed_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, UTC_TIMESTAMP(6))",
    )
    .bind(first.sequence)
    .bind(kind.as_str())
    .bind(first.api_id.to_string())
    .bind(&first.name)
    .bind(&first.version)
    .bind(first.revision.as_i32())
    .bind(first.sha256.to_hex())
    .bind(labels_json)
    .execute(&mut *conn)
    .await?;
    if !labels.is_empty() {
        let sql = format!(
            "INSERT INTO change_labels (sequence, label) VALUES {}",
            value_rows(labels.len(), 2)
        );
        let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
        for label in &labels {
            insert = insert.bind(first.sequence).bind(label.to_string());
        }
        insert.execute(&mut *conn).await?;
    }
    Ok(())
}

pub(crate) async fn receipt(
    pool: &MySqlPool,
    sequence: i64,
    stale_after: Duration,
) -> Result<Option<Receipt>> {
    // One snapshot: the change, the deployments and the reports agree.
    let mut conn = pool.acquire().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *conn)
        .await?;
    let mut tx = (*conn)
        .begin_with("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        .await?;
    let Some(row) = sqlx::query(
        "SELECT kind, api_id, name, version, revision, sha256, labels, committed_at,
                UTC_TIMESTAMP(6) AS db_now
         FROM changes WHERE sequence = ?",
    )
    .bind(sequence)
    .fetch_optional(&mut *tx)
    .await?
    else {
        tx.commit().await?;
        return Ok(None);
    };
    let api = api_id(row.try_get("api_id")?)?;
    let labels = stored_labels(row.try_get("labels")?)?;
    let change = ChangeRecord {
        sequence,
        kind: row
            .try_get::<&str, _>("kind")?
            .parse()
            .map_err(|e: String| StoreError::broken(BACKEND, e))?,
        api_id: api,
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        revision: rules::stored_revision(BACKEND, row.try_get::<i32, _>("revision")?.into())?,
        sha256: rules::stored_digest(BACKEND, row.try_get::<&str, _>("sha256")?)?,
        labels: labels
            .iter()
            .map(|l| rules::stored_label(BACKEND, l))
            .collect::<std::result::Result<_, _>>()?,
        committed_at: row.try_get("committed_at")?,
    };
    let now: DateTime<Utc> = row.try_get("db_now")?;
    let deployments: HashMap<String, i32> =
        sqlx::query("SELECT label, revision FROM deployments WHERE api_id = ?")
            .bind(api.to_string())
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("label")?, r.try_get("revision")?)))
            .collect::<std::result::Result<_, sqlx::Error>>()?;
    // The nodes of the change's labels (the rest are left out by
    // `receipts::receipt`).
    let nodes = sqlx::query(
        "SELECT n.node_id, n.labels, n.last_heartbeat, s.revision, s.sha256, s.status,
                s.error, s.attempts, s.updated_at, s.applied_at
         FROM gateway_nodes n
         LEFT JOIN gateway_api_states s ON s.node_id = n.node_id AND s.api_id = ?
         WHERE EXISTS (SELECT 1 FROM gateway_node_labels nl
                       JOIN change_labels cl ON cl.label = nl.label
                       WHERE nl.node_id = n.node_id AND cl.sequence = ?)
         ORDER BY n.node_id",
    )
    .bind(api.to_string())
    .bind(sequence)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(|row| {
        Ok(NodeRow {
            report: NodeReportRow {
                node_id: row.try_get("node_id")?,
                labels: stored_labels(row.try_get("labels")?)?,
                last_heartbeat: row.try_get("last_heartbeat")?,
                revision: row.try_get("revision")?,
                sha256: row.try_get("sha256")?,
                status: row.try_get("status")?,
                error: row.try_get("error")?,
                attempts: row.try_get("attempts")?,
                updated_at: row.try_get("updated_at")?,
            },
            applied_at: row.try_get("applied_at")?,
        })
    })
    .collect::<Result<Vec<_>>>()?;
    tx.commit().await?;
    Ok(Some(receipts::receipt(
        change,
        &deployments,
        nodes,
        now,
        stale_after,
    )))
}

pub(crate) async fn propagation_samples(
    pool: &MySqlPool,
    after: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<PropagationSample>> {
    // Each applied revision is timed from the latest deploy of it to one of
    // the node's labels committed before it was applied; the label is the
    // first (in order) of that change's labels the node serves.
    let rows = sqlx::query(
        "SELECT x.node_id, x.applied_at, c.committed_at,
                (SELECT MIN(cl.label) FROM change_labels cl
                 JOIN gateway_node_labels nl ON nl.label = cl.label AND nl.node_id = x.node_id
                 WHERE cl.sequence = x.sequence) AS label
         FROM (
            SELECT s.node_id, s.applied_at,
                   (SELECT c.sequence FROM changes c
                    JOIN change_labels cl ON cl.sequence = c.sequence
                    JOIN gateway_node_labels nl ON nl.label = cl.label AND nl.node_id = s.node_id
                    WHERE c.api_id = s.api_id AND c.revision = s.revision AND c.kind = 'DEPLOY'
                      AND c.committed_at <= s.applied_at
                    ORDER BY c.sequence DESC LIMIT 1) AS sequence
            FROM gateway_api_states s
            WHERE s.applied_at > ?
         ) x
         JOIN changes c ON c.sequence = x.sequence
         ORDER BY x.applied_at
         LIMIT ?",
    )
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let applied_at: DateTime<Utc> = row.try_get("applied_at")?;
            let committed_at: DateTime<Utc> = row.try_get("committed_at")?;
            Ok(PropagationSample {
                node_id: row.try_get("node_id")?,
                label: row
                    .try_get::<Option<String>, _>("label")?
                    .unwrap_or_default(),
                applied_at,
                seconds: receipts::sample_seconds(committed_at, applied_at),
            })
        })
        .collect()
}
