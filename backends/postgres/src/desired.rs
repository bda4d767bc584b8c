//! [`DesiredState`] on PostgreSQL: what each label should run (the
//! highest revision deployed on any requested label), the artifacts, and
//! gateway status reports.

use artisync_domain::runtime::{GatewayStatusReport, RuntimeApi, RuntimeArtifact, RuntimeMetadata};
use artisync_domain::{ApiId, GatewayLabel, Revision, Sha256Digest};
use artisync_ports::{DesiredState, StoreError};
use async_trait::async_trait;
use futures_util::TryStreamExt;
use sqlx::{PgPool, Row};
use tokio::sync::mpsc;

use crate::PgBackend;
use crate::error::{BACKEND, Result, db};

fn names(labels: &[GatewayLabel]) -> Vec<String> {
    labels.iter().map(|l| l.as_str().to_owned()).collect()
}

/// One row per API: the highest deployed revision over the labels, its
/// digest and the labels it is deployed on. `$1` = labels, `$2` = API ids
/// or NULL for all.
const DESIRED_STATE: &str = "
    WITH desired AS (
        SELECT d.api_id, max(d.revision) AS revision,
               array_agg(d.label ORDER BY d.label) AS labels
        FROM deployments d
        WHERE d.label = ANY($1) AND ($2::uuid[] IS NULL OR d.api_id = ANY($2))
        GROUP BY d.api_id
    )
    SELECT a.id, a.name, a.version, a.context, desired.revision, r.sha256, desired.labels";

fn runtime_api(row: &sqlx::postgres::PgRow) -> Result<RuntimeApi> {
    let corrupt = |e: artisync_domain::IdError| StoreError::broken(BACKEND, e.to_string());
    let labels: Vec<String> = row.try_get("labels")?;
    Ok(RuntimeApi {
        api_id: ApiId::from_uuid(row.try_get("id")?),
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        context: row.try_get("context")?,
        revision: Revision::new(i64::from(row.try_get::<i32, _>("revision")?)).map_err(corrupt)?,
        sha256: Sha256Digest::parse(row.try_get("sha256")?).map_err(corrupt)?,
        labels: labels
            .iter()
            .map(|l| GatewayLabel::parse(l))
            .collect::<std::result::Result<_, _>>()
            .map_err(corrupt)?,
    })
}

fn runtime_artifact(row: &sqlx::postgres::PgRow) -> Result<RuntimeArtifact> {
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

async fn runtime_metadata(pool: &PgPool, labels: &[GatewayLabel]) -> Result<RuntimeMetadata> {
    // One snapshot for both reads, so the sequence matches the rows.
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let label_names = names(labels);
    let sequence: i64 = sqlx::query_scalar(
        "SELECT COALESCE(max(sequence), 0)::bigint FROM label_sequences WHERE label = ANY($1)",
    )
    .bind(&label_names)
    .fetch_one(&mut *tx)
    .await?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{DESIRED_STATE}
         FROM desired
         JOIN apis a ON a.id = desired.api_id
         JOIN api_revisions r ON r.api_id = desired.api_id AND r.revision = desired.revision
         ORDER BY a.id"
    )))
    .bind(&label_names)
    .bind(None::<Vec<uuid::Uuid>>)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let apis = rows.iter().map(runtime_api).collect::<Result<_>>()?;
    Ok(RuntimeMetadata { sequence, apis })
}

async fn runtime_artifact_of(
    pool: &PgPool,
    api: ApiId,
    labels: &[GatewayLabel],
) -> Result<Option<RuntimeArtifact>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{DESIRED_STATE}, r.artifact
         FROM desired
         JOIN apis a ON a.id = desired.api_id
         JOIN api_revisions r ON r.api_id = desired.api_id AND r.revision = desired.revision"
    )))
    .bind(names(labels))
    .bind(vec![api.as_uuid()])
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(runtime_artifact).transpose()
}

async fn record_statuses(pool: &PgPool, reports: &[GatewayStatusReport]) -> Result<()> {
    let mut tx = pool.begin().await?;
    for report in reports {
        record_status(&mut tx, report).await?;
    }
    tx.commit().await?;
    Ok(())
}

#[async_trait]
impl DesiredState for PgBackend {
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
        let ids = apis.map(|ids| ids.iter().map(ApiId::as_uuid).collect::<Vec<_>>());
        let sql = format!(
            "{DESIRED_STATE}, r.artifact
             FROM desired
             JOIN apis a ON a.id = desired.api_id
             JOIN api_revisions r ON r.api_id = desired.api_id AND r.revision = desired.revision
             ORDER BY a.id"
        );
        let label_names = names(labels);
        let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(label_names)
            .bind(ids)
            .fetch(&self.pool);
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
        Ok(record_statuses(&self.pool, reports).await?)
    }
}

async fn record_status(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    report: &GatewayStatusReport,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO gateway_nodes (node_id, labels, ready, started_at, last_heartbeat, details)
         VALUES ($1, $2, $3, $4, now(), $5)
         ON CONFLICT (node_id) DO UPDATE SET labels = EXCLUDED.labels,
            ready = EXCLUDED.ready, started_at = EXCLUDED.started_at,
            last_heartbeat = now(), details = EXCLUDED.details",
    )
    .bind(report.node_id.as_str())
    .bind(names(&report.labels))
    .bind(report.ready)
    .bind(report.started_at)
    .bind(&report.details)
    .execute(&mut **tx)
    .await?;
    let ids: Vec<uuid::Uuid> = report.apis.iter().map(|a| a.api_id.as_uuid()).collect();
    if report.full {
        sqlx::query("DELETE FROM gateway_api_states WHERE node_id = $1 AND NOT (api_id = ANY($2))")
            .bind(report.node_id.as_str())
            .bind(&ids)
            .execute(&mut **tx)
            .await?;
    }
    if !report.apis.is_empty() {
        let revisions: Vec<Option<i32>> = report
            .apis
            .iter()
            .map(|a| a.revision.map(Revision::as_i32))
            .collect();
        let digests: Vec<Option<String>> = report
            .apis
            .iter()
            .map(|a| a.sha256.map(|d| d.to_hex()))
            .collect();
        let statuses: Vec<&str> = report.apis.iter().map(|a| a.status.as_str()).collect();
        let applied_at: Vec<Option<chrono::DateTime<chrono::Utc>>> =
            report.apis.iter().map(|a| a.applied_at).collect();
        let errors: Vec<Option<String>> = report.apis.iter().map(|a| a.error.clone()).collect();
        let attempts: Vec<i32> = report
            .apis
            .iter()
            .map(|a| i32::try_from(a.attempts).unwrap_or(i32::MAX))
            .collect();
        sqlx::query(
            "INSERT INTO gateway_api_states
                (node_id, api_id, revision, sha256, status, error, attempts, updated_at, applied_at)
             SELECT $1, s.api_id, s.revision, s.sha256, s.status, s.error, s.attempts, now(),
                    CASE WHEN s.status = 'DEPLOYED' THEN COALESCE(s.applied_at, now()) END
             FROM UNNEST($2::uuid[], $3::int[], $4::text[], $5::text[], $6::text[], $7::int[],
                         $8::timestamptz[])
                AS s(api_id, revision, sha256, status, error, attempts, applied_at)
             ON CONFLICT (node_id, api_id) DO UPDATE SET revision = EXCLUDED.revision,
                sha256 = EXCLUDED.sha256, status = EXCLUDED.status, error = EXCLUDED.error,
                attempts = EXCLUDED.attempts, updated_at = now(),
                -- When the node started serving what it serves now.
                applied_at = CASE
                    WHEN EXCLUDED.status <> 'DEPLOYED' THEN gateway_api_states.applied_at
                    WHEN gateway_api_states.revision IS NOT DISTINCT FROM EXCLUDED.revision
                     AND gateway_api_states.applied_at IS NOT NULL
                        THEN gateway_api_states.applied_at
                    ELSE EXCLUDED.applied_at END",
        )
        .bind(report.node_id.as_str())
        .bind(&ids)
        .bind(&revisions)
        .bind(&digests)
        .bind(&statuses)
        .bind(&errors)
        .bind(&attempts)
        .bind(&applied_at)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
