//! Receipts on SQLite: each change is recorded with its events, and a
//! receipt is read from that record, the API's deployments and the nodes'
//! reports in one read transaction.

use std::collections::HashMap;
use std::time::Duration;

use artisync_domain::event::DeploymentEvent;
use artisync_domain::receipt::Receipt;
use artisync_ports::StoreError;
use artisync_ports::receipts::{self, ChangeRecord, NodeRow, PropagationSample};
use artisync_ports::rules::{self, NodeReportRow};
use chrono::{DateTime, Utc};
use sqlx::{Row, SqliteConnection, SqlitePool};

use crate::artifacts::labels_of;
use crate::error::{BACKEND, Result};
use crate::time::{from_micros, micros};

/// Records the change that `events` (all of one sequence) describe, in
/// the writer's transaction that writes them.
pub(crate) async fn record_change(
    c: &mut SqliteConnection,
    events: &[DeploymentEvent],
    committed_at: i64,
) -> Result<()> {
    let Some((first, kind, labels)) = receipts::change_of(events) else {
        return Ok(());
    };
    sqlx::query(
        "INSERT INTO changes
            (sequence, kind, api_id, name, version, revision, sha256, labels, committed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .bind(first.sequence)
    .bind(kind.as_str())
    .bind(first.api_id.to_string())
    .bind(&first.name)
    .bind(&first.version)
    .bind(first.revision.as_i32())
    .bind(first.sha256.to_hex())
    .bind(serde_json::to_string(&labels).unwrap_or_else(|_| "[]".to_owned()))
    .bind(committed_at)
    .execute(&mut *c)
    .await?;
    Ok(())
}

pub(crate) async fn receipt(
    readers: &SqlitePool,
    sequence: i64,
    stale_after: Duration,
) -> Result<Option<Receipt>> {
    // One read transaction: the change, the deployments and the reports
    // come from the same snapshot.
    let mut tx = readers.begin().await?;
    let Some(row) = sqlx::query(
        "SELECT kind, api_id, name, version, revision, sha256, labels, committed_at
         FROM changes WHERE sequence = ?1",
    )
    .bind(sequence)
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(None);
    };
    let raw_labels: String = row.try_get("labels")?;
    let labels = labels_of(raw_labels.clone())?;
    let api_id: String = row.try_get("api_id")?;
    let change = ChangeRecord {
        sequence,
        kind: row
            .try_get::<&str, _>("kind")?
            .parse()
            .map_err(|e: String| StoreError::broken(BACKEND, e))?,
        api_id: api_id
            .parse()
            .map_err(|e| StoreError::broken(BACKEND, format!("stored API id: {e}")))?,
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        revision: rules::stored_revision(BACKEND, row.try_get("revision")?)?,
        sha256: rules::stored_digest(BACKEND, row.try_get::<&str, _>("sha256")?)?,
        labels: labels
            .iter()
            .map(|l| rules::stored_label(BACKEND, l))
            .collect::<std::result::Result<_, _>>()?,
        committed_at: from_micros(row.try_get("committed_at")?),
    };
    let deployments: HashMap<String, i32> =
        sqlx::query("SELECT label, revision FROM deployments WHERE api_id = ?1")
            .bind(&api_id)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("label")?, r.try_get("revision")?)))
            .collect::<std::result::Result<_, sqlx::Error>>()?;
    let nodes = sqlx::query(
        "SELECT n.node_id, n.labels, n.last_heartbeat, s.revision, s.sha256, s.status,
                s.error, s.attempts, s.updated_at, s.applied_at
         FROM gateway_nodes n
         LEFT JOIN gateway_api_states s ON s.node_id = n.node_id AND s.api_id = ?1
         WHERE EXISTS (SELECT 1 FROM json_each(n.labels) nl
                       WHERE nl.value IN (SELECT value FROM json_each(?2)))
         ORDER BY n.node_id",
    )
    .bind(&api_id)
    .bind(&raw_labels)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|row| {
        Ok(NodeRow {
            report: NodeReportRow {
                node_id: row.try_get("node_id")?,
                labels: labels_of(row.try_get("labels")?)?,
                last_heartbeat: from_micros(row.try_get("last_heartbeat")?),
                revision: row.try_get("revision")?,
                sha256: row.try_get("sha256")?,
                status: row.try_get("status")?,
                error: row.try_get("error")?,
                attempts: row.try_get("attempts")?,
                updated_at: row
                    .try_get::<Option<i64>, _>("updated_at")?
                    .map(from_micros),
            },
            applied_at: row
                .try_get::<Option<i64>, _>("applied_at")?
                .map(from_micros),
        })
    })
    .collect::<Result<Vec<_>>>()?;
    tx.commit().await?;
    Ok(Some(receipts::receipt(
        change,
        &deployments,
        nodes,
        Utc::now(),
        stale_after,
    )))
}

pub(crate) async fn propagation_samples(
    readers: &SqlitePool,
    after: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<PropagationSample>> {
    // Each applied revision is timed from the latest deploy of it to one of
    // the node's labels committed before it was applied.
    let rows = sqlx::query(
        "SELECT s.node_id, s.applied_at,
                (SELECT c.committed_at FROM changes c
                 WHERE c.api_id = s.api_id AND c.revision = s.revision AND c.kind = 'DEPLOY'
                   AND c.committed_at <= s.applied_at
                   AND EXISTS (SELECT 1 FROM json_each(c.labels) cl
                               JOIN json_each(n.labels) nl ON nl.value = cl.value)
                 ORDER BY c.sequence DESC LIMIT 1) AS committed_at,
                (SELECT cl.value FROM changes c, json_each(c.labels) cl
                 JOIN json_each(n.labels) nl ON nl.value = cl.value
                 WHERE c.api_id = s.api_id AND c.revision = s.revision AND c.kind = 'DEPLOY'
                   AND c.committed_at <= s.applied_at
                 ORDER BY c.sequence DESC LIMIT 1) AS label
         FROM gateway_api_states s JOIN gateway_nodes n ON n.node_id = s.node_id
         WHERE s.applied_at > ?1
         ORDER BY s.applied_at
         LIMIT ?2",
    )
    .bind(micros(after))
    .bind(i64::from(limit))
    .fetch_all(readers)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let Some(committed_at) = row.try_get::<Option<i64>, _>("committed_at")? else {
            continue;
        };
        let applied_at = from_micros(row.try_get("applied_at")?);
        out.push(PropagationSample {
            node_id: row.try_get("node_id")?,
            label: row
                .try_get::<Option<String>, _>("label")?
                .unwrap_or_default(),
            applied_at,
            seconds: receipts::sample_seconds(from_micros(committed_at), applied_at),
        });
    }
    Ok(out)
}
