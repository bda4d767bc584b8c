//! Receipts on PostgreSQL: each change is recorded with its events, and a
//! receipt is read from that record, the API's deployments and the nodes'
//! reports in one snapshot.

use std::collections::HashMap;
use std::time::Duration;

use artisync_domain::ApiId;
use artisync_domain::event::DeploymentEvent;
use artisync_domain::receipt::Receipt;
use artisync_ports::receipts::{self, ChangeRecord, NodeRow, PropagationSample};
use artisync_ports::rules::{self, NodeReportRow};
use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Row, Transaction};

use crate::error::{BACKEND, Result};

/// Records the change that `events` (all of one sequence) describe,
/// inside the transaction that writes them.
pub(crate) async fn record_change(
    tx: &mut Transaction<'_, Postgres>,
    events: &[DeploymentEvent],
) -> Result<()> {
    let Some((first, kind, labels)) = receipts::change_of(events) else {
        return Ok(());
    };
    sqlx::query(
        "INSERT INTO changes (sequence, kind, api_id, name, version, revision, sha256, labels)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(first.sequence)
    .bind(kind.as_str())
    .bind(first.api_id.as_uuid())
    .bind(&first.name)
    .bind(&first.version)
    .bind(first.revision.as_i32())
    .bind(first.sha256.to_hex())
    .bind(&labels)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub(crate) async fn receipt(
    pool: &PgPool,
    sequence: i64,
    stale_after: Duration,
) -> Result<Option<Receipt>> {
    // One snapshot: the change, the deployments and the reports agree.
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    let Some(row) = sqlx::query(
        "SELECT kind, api_id, name, version, revision, sha256, labels, committed_at, now() AS db_now
         FROM changes WHERE sequence = $1",
    )
    .bind(sequence)
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(None);
    };
    let api_id = ApiId::from_uuid(row.try_get("api_id")?);
    let labels: Vec<String> = row.try_get("labels")?;
    let change = ChangeRecord {
        sequence,
        kind: row
            .try_get::<&str, _>("kind")?
            .parse()
            .map_err(|e: String| artisync_ports::StoreError::broken(BACKEND, e))?,
        api_id,
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
        sqlx::query("SELECT label, revision FROM deployments WHERE api_id = $1")
            .bind(api_id.as_uuid())
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("label")?, r.try_get("revision")?)))
            .collect::<std::result::Result<_, sqlx::Error>>()?;
    let nodes = sqlx::query(
        "SELECT n.node_id, n.labels, n.last_heartbeat, s.revision, s.sha256, s.status,
                s.error, s.attempts, s.updated_at, s.applied_at
         FROM gateway_nodes n
         LEFT JOIN gateway_api_states s ON s.node_id = n.node_id AND s.api_id = $1
         WHERE n.labels && $2
         ORDER BY n.node_id",
    )
    .bind(api_id.as_uuid())
    .bind(&labels)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(|row| {
        Ok(NodeRow {
            report: NodeReportRow {
                node_id: row.try_get("node_id")?,
                labels: row.try_get("labels")?,
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
    .collect::<std::result::Result<Vec<_>, sqlx::Error>>()?;
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
    pool: &PgPool,
    after: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<PropagationSample>> {
    // Each applied revision is timed from the latest deploy of it to one of
    // the node's labels committed before it was applied.
    let rows = sqlx::query(
        "SELECT s.node_id, s.applied_at, c.committed_at,
                (SELECT l FROM unnest(c.labels) AS l WHERE l = ANY (n.labels) LIMIT 1) AS label
         FROM gateway_api_states s
         JOIN gateway_nodes n ON n.node_id = s.node_id
         JOIN LATERAL (
             SELECT c.committed_at, c.labels FROM changes c
             WHERE c.api_id = s.api_id AND c.revision = s.revision AND c.kind = 'DEPLOY'
               AND c.labels && n.labels AND c.committed_at <= s.applied_at
             ORDER BY c.sequence DESC LIMIT 1
         ) c ON true
         WHERE s.applied_at > $1
         ORDER BY s.applied_at
         LIMIT $2",
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
