//! [`DesiredState`] on SQLite: what each label should run, the artifacts,
//! and gateway status reports (written through the one writer, so reports
//! arriving together share a commit).

use artisync_domain::runtime::{GatewayStatusReport, RuntimeApi, RuntimeArtifact, RuntimeMetadata};
use artisync_domain::{ApiId, GatewayLabel};
use artisync_ports::rules;
use artisync_ports::{DesiredState, StoreError};
use async_trait::async_trait;
use futures_util::TryStreamExt;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};
use tokio::sync::mpsc;

use crate::SqliteBackend;
use crate::artifacts::{labels_json, labels_of};
use crate::error::{BACKEND, Result, db};
use crate::time::{micros, now};

/// One row per API: the highest revision deployed on any of the labels
/// (`?1`, a JSON array), its digest and the labels it is deployed on;
/// `?2` is a JSON array of API ids, or NULL for all.
const DESIRED_STATE: &str = "
    WITH desired AS (
        SELECT d.api_id, max(d.revision) AS revision,
               json_group_array(d.label) AS labels
        FROM (SELECT * FROM deployments ORDER BY label) d
        WHERE d.label IN (SELECT value FROM json_each(?1))
          AND (?2 IS NULL OR d.api_id IN (SELECT value FROM json_each(?2)))
        GROUP BY d.api_id
    )
    SELECT a.id, a.name, a.version, a.context, desired.revision, r.sha256, desired.labels";

fn runtime_api(row: &SqliteRow) -> Result<RuntimeApi> {
    let broken = |e: artisync_domain::IdError| StoreError::broken(BACKEND, e.to_string());
    let mut labels = labels_of(row.try_get("labels")?)?;
    labels.sort();
    Ok(RuntimeApi {
        api_id: row.try_get::<&str, _>("id")?.parse().map_err(broken)?,
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        context: row.try_get("context")?,
        revision: rules::stored_revision(BACKEND, row.try_get("revision")?)?,
        sha256: rules::stored_digest(BACKEND, row.try_get("sha256")?)?,
        labels: labels
            .iter()
            .map(|l| GatewayLabel::parse(l))
            .collect::<std::result::Result<_, _>>()
            .map_err(broken)?,
    })
}

fn runtime_artifact(row: &SqliteRow) -> Result<RuntimeArtifact> {
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

fn ids_json(apis: Option<&[ApiId]>) -> Option<String> {
    apis.map(|ids| {
        serde_json::to_string(&ids.iter().map(ApiId::to_string).collect::<Vec<_>>())
            .unwrap_or_else(|_| "[]".to_owned())
    })
}

impl SqliteBackend {
    async fn metadata(&self, labels: &[GatewayLabel]) -> Result<RuntimeMetadata> {
        // One read transaction: the sequence matches the rows.
        let mut tx = self.inner.readers.begin().await?;
        let labels = labels_json(labels);
        let sequence: i64 = sqlx::query_scalar(
            "SELECT coalesce(max(sequence), 0) FROM label_sequences
             WHERE label IN (SELECT value FROM json_each(?1))",
        )
        .bind(&labels)
        .fetch_one(&mut *tx)
        .await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{DESIRED_STATE}
             FROM desired
             JOIN apis a ON a.id = desired.api_id
             JOIN api_revisions r ON r.api_id = desired.api_id AND r.revision = desired.revision
             ORDER BY a.id"
        )))
        .bind(&labels)
        .bind(None::<String>)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let apis = rows.iter().map(runtime_api).collect::<Result<_>>()?;
        Ok(RuntimeMetadata { sequence, apis })
    }

    async fn artifact_on(
        &self,
        api: ApiId,
        labels: &[GatewayLabel],
    ) -> Result<Option<RuntimeArtifact>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{DESIRED_STATE}, r.artifact
             FROM desired
             JOIN apis a ON a.id = desired.api_id
             JOIN api_revisions r ON r.api_id = desired.api_id AND r.revision = desired.revision"
        )))
        .bind(labels_json(labels))
        .bind(ids_json(Some(&[api])))
        .fetch_optional(&self.inner.readers)
        .await?;
        row.as_ref().map(runtime_artifact).transpose()
    }
}

async fn record_status(c: &mut SqliteConnection, report: &GatewayStatusReport) -> Result<()> {
    let at = now();
    let labels = labels_json(&report.labels);
    sqlx::query(
        "INSERT INTO gateway_nodes (node_id, labels, ready, started_at, last_heartbeat, details)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (node_id) DO UPDATE SET labels = excluded.labels,
            ready = excluded.ready, started_at = excluded.started_at,
            last_heartbeat = excluded.last_heartbeat, details = excluded.details",
    )
    .bind(report.node_id.as_str())
    .bind(&labels)
    .bind(report.ready)
    .bind(micros(report.started_at))
    .bind(at)
    .bind(report.details.to_string())
    .execute(&mut *c)
    .await?;
    if report.full {
        let ids = serde_json::to_string(
            &report
                .apis
                .iter()
                .map(|a| a.api_id.to_string())
                .collect::<Vec<_>>(),
        )
        .unwrap_or_else(|_| "[]".to_owned());
        sqlx::query(
            "DELETE FROM gateway_api_states WHERE node_id = ?1
             AND api_id NOT IN (SELECT value FROM json_each(?2))",
        )
        .bind(report.node_id.as_str())
        .bind(ids)
        .execute(&mut *c)
        .await?;
    }
    for api in &report.apis {
        sqlx::query(
            "INSERT INTO gateway_api_states
                (node_id, api_id, revision, sha256, status, error, attempts, updated_at,
                 applied_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, CASE WHEN ?5 = 'DEPLOYED' THEN coalesce(?9, ?8) END)
             ON CONFLICT (node_id, api_id) DO UPDATE SET revision = excluded.revision,
                sha256 = excluded.sha256, status = excluded.status, error = excluded.error,
                attempts = excluded.attempts, updated_at = excluded.updated_at,
                -- When the node started serving what it serves now.
                applied_at = CASE
                    WHEN excluded.status <> 'DEPLOYED' THEN gateway_api_states.applied_at
                    WHEN gateway_api_states.revision IS excluded.revision
                     AND gateway_api_states.applied_at IS NOT NULL
                        THEN gateway_api_states.applied_at
                    ELSE excluded.applied_at END",
        )
        .bind(report.node_id.as_str())
        .bind(api.api_id.to_string())
        .bind(api.revision.map(|r| r.as_i32()))
        .bind(api.sha256.map(|d| d.to_hex()))
        .bind(api.status.as_str())
        .bind(api.error.as_deref())
        .bind(i64::from(api.attempts))
        .bind(at)
        .bind(api.applied_at.map(micros))
        .execute(&mut *c)
        .await?;
    }
    Ok(())
}

#[async_trait]
impl DesiredState for SqliteBackend {
    async fn runtime_metadata(
        &self,
        labels: &[GatewayLabel],
    ) -> std::result::Result<RuntimeMetadata, StoreError> {
        Ok(self.metadata(labels).await?)
    }

    async fn runtime_artifact(
        &self,
        api: ApiId,
        labels: &[GatewayLabel],
    ) -> std::result::Result<Option<RuntimeArtifact>, StoreError> {
        Ok(self.artifact_on(api, labels).await?)
    }

    async fn stream_artifacts(
        &self,
        labels: &[GatewayLabel],
        apis: Option<&[ApiId]>,
        sink: mpsc::Sender<std::result::Result<RuntimeArtifact, StoreError>>,
    ) {
        let sql = format!(
            "{DESIRED_STATE}, r.artifact
             FROM desired
             JOIN apis a ON a.id = desired.api_id
             JOIN api_revisions r ON r.api_id = desired.api_id AND r.revision = desired.revision
             ORDER BY a.id"
        );
        let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(labels_json(labels))
            .bind(ids_json(apis))
            .fetch(&self.inner.readers);
        loop {
            let item = match rows.try_next().await {
                Ok(Some(row)) => runtime_artifact(&row).map_err(StoreError::from),
                Ok(None) => return,
                Err(e) => Err(db(e)),
            };
            let failed = item.is_err();
            if sink.send(item).await.is_err() || failed {
                return;
            }
        }
    }

    async fn record_statuses(
        &self,
        reports: &[GatewayStatusReport],
    ) -> std::result::Result<(), StoreError> {
        let reports = reports.to_vec();
        self.inner
            .writer
            .write(false, move |c| {
                Box::pin(async move {
                    for report in &reports {
                        record_status(c, report).await?;
                    }
                    Ok(())
                })
            })
            .await
    }
}
