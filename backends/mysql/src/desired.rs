//! [`DesiredState`] on MySQL: what each label should run (the highest
//! revision deployed on any requested label), the artifacts, and gateway
//! status reports.

use std::collections::BTreeSet;

use artisync_domain::runtime::{GatewayStatusReport, RuntimeApi, RuntimeArtifact, RuntimeMetadata};
use artisync_domain::{ApiId, GatewayLabel, Revision, Sha256Digest};
use artisync_ports::{DesiredState, StoreError};
use async_trait::async_trait;
use futures_util::TryStreamExt;
use sqlx::mysql::MySqlRow;
use sqlx::{MySqlConnection, MySqlPool, Row};
use tokio::sync::mpsc;

use crate::artifacts::{api_id, retry_deadlocks};
use crate::error::{BACKEND, Result, db};
use crate::{MySqlBackend, placeholders, value_rows};

/// Labels may not hold control characters, so a newline separates them
/// in `GROUP_CONCAT` unambiguously.
const LABEL_SEPARATOR: char = '\n';

/// API ids per statement when a caller asks for many (placeholders are
/// limited to 65535 per statement).
const IDS_PER_STATEMENT: usize = 1_000;

/// Rows per status upsert statement.
const STATES_PER_STATEMENT: usize = 500;

/// One row per API: the highest deployed revision over the labels, its
/// digest and the labels it is deployed on; `artifact` adds the artifact.
/// Binds the labels, then the API ids when `ids` of them are asked for.
fn desired_state_sql(labels: usize, ids: Option<usize>, artifact: bool) -> String {
    let ids = ids
        .map(|n| format!("AND d.api_id IN ({})", placeholders(n)))
        .unwrap_or_default();
    format!(
        "SELECT a.id, a.name, a.version, a.context, desired.revision, r.sha256, desired.labels{}
         FROM (
            SELECT d.api_id, MAX(d.revision) AS revision,
                   GROUP_CONCAT(d.label ORDER BY d.label SEPARATOR '\n') AS labels
            FROM deployments d
            WHERE d.label IN ({}) {ids}
            GROUP BY d.api_id
         ) desired
         JOIN apis a ON a.id = desired.api_id
         JOIN api_revisions r ON r.api_id = desired.api_id AND r.revision = desired.revision",
        if artifact { ", r.artifact" } else { "" },
        placeholders(labels),
    )
}

fn runtime_api(row: &MySqlRow) -> Result<RuntimeApi> {
    let corrupt = |e: artisync_domain::IdError| StoreError::broken(BACKEND, e.to_string());
    let labels: String = row.try_get("labels")?;
    Ok(RuntimeApi {
        api_id: api_id(row.try_get("id")?)?,
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        context: row.try_get("context")?,
        revision: Revision::new(i64::from(row.try_get::<i32, _>("revision")?)).map_err(corrupt)?,
        sha256: Sha256Digest::parse(row.try_get("sha256")?).map_err(corrupt)?,
        labels: labels
            .split(LABEL_SEPARATOR)
            .map(GatewayLabel::parse)
            .collect::<std::result::Result<_, _>>()
            .map_err(corrupt)?,
    })
}

fn runtime_artifact(row: &MySqlRow) -> Result<RuntimeArtifact> {
    let api = runtime_api(row)?;
    let bytes: Vec<u8> = row.try_get("artifact")?;
    let artifact = String::from_utf8(bytes).map_err(|_| {
        StoreError::broken(
            BACKEND,
            format!("artifact of API {} is not UTF-8", api.api_id),
        )
    })?;
    Ok(RuntimeArtifact { api, artifact })
}

async fn runtime_metadata(pool: &MySqlPool, labels: &[GatewayLabel]) -> Result<RuntimeMetadata> {
    // One statement, so one consistent snapshot (InnoDB reads a statement
    // from one read view): the change number matches the rows. The
    // one-row derived table `s` answers the number when no API is
    // deployed.
    let sql = format!(
        "SELECT s.sequence, x.* FROM (
            SELECT CAST(COALESCE(MAX(sequence), 0) AS SIGNED) AS sequence
            FROM label_sequences WHERE label IN ({})
         ) s
         LEFT JOIN ({}) x ON TRUE
         ORDER BY x.id",
        placeholders(labels.len()),
        desired_state_sql(labels.len(), None, false),
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for _ in 0..2 {
        for label in labels {
            query = query.bind(label.as_str().to_owned());
        }
    }
    let rows = query.fetch_all(pool).await?;
    let sequence: i64 = match rows.first() {
        Some(row) => row.try_get("sequence")?,
        None => 0,
    };
    let mut apis = Vec::with_capacity(rows.len());
    for row in &rows {
        if row.try_get::<Option<&str>, _>("id")?.is_some() {
            apis.push(runtime_api(row)?);
        }
    }
    Ok(RuntimeMetadata { sequence, apis })
}

async fn runtime_artifact_of(
    pool: &MySqlPool,
    api: ApiId,
    labels: &[GatewayLabel],
) -> Result<Option<RuntimeArtifact>> {
    let mut query = sqlx::query(sqlx::AssertSqlSafe(desired_state_sql(
        labels.len(),
        Some(1),
        true,
    )));
    for label in labels {
        query = query.bind(label.as_str().to_owned());
    }
    let row = query.bind(api.to_string()).fetch_optional(pool).await?;
    row.as_ref().map(runtime_artifact).transpose()
}

/// Streams the artifacts into `sink`, in API id order; answers `false`
/// when it stopped (an error was sent, or the receiver is gone).
async fn stream_chunk(
    pool: &MySqlPool,
    labels: &[GatewayLabel],
    ids: Option<&[String]>,
    sink: &mpsc::Sender<std::result::Result<RuntimeArtifact, StoreError>>,
) -> bool {
    let sql = format!(
        "{} ORDER BY a.id",
        desired_state_sql(labels.len(), ids.map(<[String]>::len), true)
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for label in labels {
        query = query.bind(label.as_str().to_owned());
    }
    for id in ids.into_iter().flatten() {
        query = query.bind(id.clone());
    }
    let mut rows = query.fetch(pool);
    loop {
        let item = match rows.try_next().await {
            Ok(Some(row)) => runtime_artifact(&row).map_err(StoreError::from),
            Ok(None) => return true,
            Err(e) => Err(db(e)),
        };
        let failed = item.is_err();
        if sink.send(item).await.is_err() || failed {
            return false;
        }
    }
}

async fn record_statuses(pool: &MySqlPool, reports: &[GatewayStatusReport]) -> Result<()> {
    let mut tx = pool.begin().await?;
    for report in reports {
        record_status(&mut tx, report).await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn record_status(conn: &mut MySqlConnection, report: &GatewayStatusReport) -> Result<()> {
    let node = report.node_id.as_str();
    let labels: Vec<&str> = report.labels.iter().map(GatewayLabel::as_str).collect();
    let labels_json = serde_json::to_string(&labels)
        .map_err(|e| StoreError::broken(BACKEND, format!("node labels: {e}")))?;
    let details = serde_json::to_string(&report.details)
        .map_err(|e| StoreError::broken(BACKEND, format!("node details: {e}")))?;
    sqlx::query(
        "INSERT INTO gateway_nodes (node_id, labels, ready, started_at, last_heartbeat, details)
         VALUES (?, ?, ?, ?, UTC_TIMESTAMP(6), ?)
         ON DUPLICATE KEY UPDATE labels = VALUES(labels), ready = VALUES(ready),
            started_at = VALUES(started_at), last_heartbeat = VALUES(last_heartbeat),
            details = VALUES(details)",
    )
    .bind(node)
    .bind(&labels_json)
    .bind(report.ready)
    .bind(report.started_at)
    .bind(&details)
    .execute(&mut *conn)
    .await?;
    // The labels one per row, for joins.
    let distinct: BTreeSet<&str> = labels.iter().copied().collect();
    // (`NOT IN (NULL)` would keep every row: no labels is no condition.)
    let sql = if distinct.is_empty() {
        "DELETE FROM gateway_node_labels WHERE node_id = ?".to_owned()
    } else {
        format!(
            "DELETE FROM gateway_node_labels WHERE node_id = ? AND label NOT IN ({})",
            placeholders(distinct.len())
        )
    };
    let mut delete = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(node);
    for label in &distinct {
        delete = delete.bind(label.to_string());
    }
    delete.execute(&mut *conn).await?;
    if !distinct.is_empty() {
        let sql = format!(
            "INSERT IGNORE INTO gateway_node_labels (node_id, label) VALUES {}",
            value_rows(distinct.len(), 2)
        );
        let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
        for label in &distinct {
            insert = insert.bind(node).bind(label.to_string());
        }
        insert.execute(&mut *conn).await?;
    }
    // A full report marks every row it lists, then deletes the node's
    // rows it did not list.
    let mark: i64 = if report.full {
        // Random, never 0 (the mark of rows no full report listed yet).
        (uuid::Uuid::new_v4().as_u128() as i64) | 1
    } else {
        0
    };
    for chunk in report.apis.chunks(STATES_PER_STATEMENT) {
        let mark_update = if report.full {
            ", report_mark = VALUES(report_mark)"
        } else {
            ""
        };
        // MySQL applies the assignments left to right, each seeing the
        // ones before it: `applied_at` comes first, while `revision` is
        // still the stored one.
        let sql = format!(
            "INSERT INTO gateway_api_states
                (node_id, api_id, revision, sha256, status, error, attempts, updated_at,
                 report_mark, applied_at)
             VALUES {}
             ON DUPLICATE KEY UPDATE
                -- When the node started serving what it serves now.
                applied_at = CASE
                    WHEN VALUES(status) <> 'DEPLOYED' THEN applied_at
                    WHEN revision <=> VALUES(revision) AND applied_at IS NOT NULL THEN applied_at
                    ELSE VALUES(applied_at) END,
                revision = VALUES(revision), sha256 = VALUES(sha256),
                status = VALUES(status), error = VALUES(error), attempts = VALUES(attempts),
                updated_at = VALUES(updated_at){mark_update}",
            vec![
                "(?, ?, ?, ?, ?, ?, ?, UTC_TIMESTAMP(6), ?, \
                  CASE WHEN ? = 'DEPLOYED' THEN COALESCE(?, UTC_TIMESTAMP(6)) END)";
                chunk.len()
            ]
            .join(", ")
        );
        let mut upsert = sqlx::query(sqlx::AssertSqlSafe(sql));
        for api in chunk {
            upsert = upsert
                .bind(node)
                .bind(api.api_id.to_string())
                .bind(api.revision.map(Revision::as_i32))
                .bind(api.sha256.map(|d| d.to_hex()))
                .bind(api.status.as_str())
                .bind(api.error.clone())
                .bind(i32::try_from(api.attempts).unwrap_or(i32::MAX))
                .bind(mark)
                .bind(api.status.as_str())
                // The node's own time of the deploy, when it says.
                .bind(api.applied_at);
        }
        upsert.execute(&mut *conn).await?;
    }
    if report.full {
        sqlx::query("DELETE FROM gateway_api_states WHERE node_id = ? AND report_mark <> ?")
            .bind(node)
            .bind(mark)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

#[async_trait]
impl DesiredState for MySqlBackend {
    async fn runtime_metadata(
        &self,
        labels: &[GatewayLabel],
    ) -> std::result::Result<RuntimeMetadata, StoreError> {
        Ok(runtime_metadata(&self.pool, labels).await?)
    }

    async fn runtime_artifact(
        &self,
        api: ApiId,
        labels: &[GatewayLabel],
    ) -> std::result::Result<Option<RuntimeArtifact>, StoreError> {
        Ok(runtime_artifact_of(&self.pool, api, labels).await?)
    }

    async fn stream_artifacts(
        &self,
        labels: &[GatewayLabel],
        apis: Option<&[ApiId]>,
        sink: mpsc::Sender<std::result::Result<RuntimeArtifact, StoreError>>,
    ) {
        let Some(apis) = apis else {
            stream_chunk(&self.pool, labels, None, &sink).await;
            return;
        };
        // In id order across the chunks, as in one statement.
        let mut ids: Vec<String> = apis.iter().map(ApiId::to_string).collect();
        ids.sort();
        ids.dedup();
        for chunk in ids.chunks(IDS_PER_STATEMENT) {
            if !stream_chunk(&self.pool, labels, Some(chunk), &sink).await {
                return;
            }
        }
    }

    async fn record_statuses(
        &self,
        reports: &[GatewayStatusReport],
    ) -> std::result::Result<(), StoreError> {
        Ok(retry_deadlocks(|| record_statuses(&self.pool, reports)).await?)
    }
}
