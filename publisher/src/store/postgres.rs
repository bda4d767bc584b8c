//! [`ArtifactStore`] on PostgreSQL: artifacts as `bytea` revisions,
//! deployments as rows, and events in the `outbox` table.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use artisync_shared::event::{DeploymentEvent, EventType};
use artisync_shared::{ApiId, GatewayLabel, Revision, Sha256Digest};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Row, Transaction};
use uuid::Uuid;

use super::*;

#[derive(Clone)]
pub struct PgArtifactStore {
    pool: PgPool,
    inline_artifact_max_bytes: usize,
}

impl PgArtifactStore {
    /// Artifacts up to this size travel inside their deploy events.
    pub const DEFAULT_INLINE_ARTIFACT_MAX_BYTES: usize = 64 * 1024;

    pub fn new(pool: PgPool) -> Self {
        PgArtifactStore {
            pool,
            inline_artifact_max_bytes: Self::DEFAULT_INLINE_ARTIFACT_MAX_BYTES,
        }
    }

    /// Deploy events carry artifacts up to `max_bytes` (0: none), so that
    /// gateways can deploy without a round trip to the traffic manager.
    pub fn with_inline_artifact_limit(mut self, max_bytes: usize) -> Self {
        self.inline_artifact_max_bytes = max_bytes;
        self
    }
}

/// The columns of `apis` that events and summaries need.
struct ApiRow {
    name: String,
    version: String,
    context: String,
    latest_revision: Revision,
}

fn revision(n: i32) -> Result<Revision, StoreError> {
    Revision::new(i64::from(n))
        .map_err(|e| StoreError::Unprocessable(format!("stored revision is invalid: {e}")))
}

fn digest(raw: &str) -> Result<Sha256Digest, StoreError> {
    Sha256Digest::parse(raw)
        .map_err(|e| StoreError::Unprocessable(format!("stored digest is invalid: {e}")))
}

fn label(raw: &str) -> Result<GatewayLabel, StoreError> {
    GatewayLabel::parse(raw)
        .map_err(|e| StoreError::Unprocessable(format!("stored label is invalid: {e}")))
}

fn not_found(id: ApiId) -> StoreError {
    StoreError::NotFound(format!("API {id} not found"))
}

/// Maps unique violations of `apis` to 409 with a message naming the clash.
fn conflict_on_unique(e: sqlx::Error, new: &NewArtifact) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        match db.constraint() {
            Some("apis_name_version_key") => {
                return StoreError::Conflict(format!(
                    "an API named {:?} with version {:?} already exists",
                    new.name, new.version
                ));
            }
            Some("apis_context_key") => {
                return StoreError::Conflict(format!(
                    "another API already uses the context {:?}",
                    new.context
                ));
            }
            _ => {}
        }
    }
    StoreError::Database(e)
}

async fn lock_api(tx: &mut Transaction<'_, Postgres>, id: ApiId) -> Result<ApiRow, StoreError> {
    let row = sqlx::query(
        "SELECT name, version, context, latest_revision FROM apis WHERE id = $1 FOR UPDATE",
    )
    .bind(id.as_uuid())
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| not_found(id))?;
    Ok(ApiRow {
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        context: row.try_get("context")?,
        latest_revision: revision(row.try_get("latest_revision")?)?,
    })
}

async fn next_sequence(tx: &mut Transaction<'_, Postgres>) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar("SELECT nextval('change_sequence')")
        .fetch_one(&mut **tx)
        .await?)
}

/// The outbox rows of some events: one per label (routing key = label),
/// as the columns `outbox_insert!` unnests.
#[derive(Default)]
struct OutboxRows {
    event_ids: Vec<Uuid>,
    routing_keys: Vec<String>,
    payloads: Vec<Vec<u8>>,
    sequences: Vec<i64>,
}

impl OutboxRows {
    fn of(events: &[DeploymentEvent]) -> Self {
        let mut rows = OutboxRows::default();
        for event in events {
            for label in &event.gateway_labels {
                // Each routed copy carries its own id so that the broker's
                // message_id stays unique per message.
                let mut copy = event.clone();
                copy.event_id = Uuid::new_v4();
                rows.event_ids.push(copy.event_id);
                rows.routing_keys.push(label.as_str().to_owned());
                rows.payloads.push(copy.to_json());
                rows.sequences.push(event.sequence);
            }
        }
        rows
    }
}

/// Data-modifying CTEs that insert the outbox rows (`$1`..`$3`, trace
/// context `$4`) and raise the labels' change numbers (`$2`, `$5`), so
/// that a change costs one statement, not one per table. Statements using
/// it add their own parameters from `$6`. A macro so that `concat!` can
/// build whole statements as `&'static str`.
macro_rules! outbox_insert {
    () => {
        "outbox_rows AS (
        INSERT INTO outbox (event_id, routing_key, payload, traceparent)
        SELECT e.id, e.key, e.payload, $4
        FROM UNNEST($1::uuid[], $2::text[], $3::bytea[]) AS e(id, key, payload)
    ),
    label_rows AS (
        INSERT INTO label_sequences (label, sequence)
        SELECT l.label, max(l.seq) FROM UNNEST($2::text[], $5::bigint[]) AS l(label, seq)
        GROUP BY l.label
        ON CONFLICT (label) DO UPDATE
           SET sequence = GREATEST(label_sequences.sequence, EXCLUDED.sequence)
    )"
    };
}

fn bind_outbox<'q>(
    query: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    rows: &'q OutboxRows,
    ctx: &'q ChangeContext,
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    query
        .bind(&rows.event_ids)
        .bind(&rows.routing_keys)
        .bind(&rows.payloads)
        .bind(ctx.traceparent.as_deref())
        .bind(&rows.sequences)
}

/// Writes one event per label and raises the labels' change numbers,
/// inside the caller's transaction.
async fn write_events(
    tx: &mut Transaction<'_, Postgres>,
    events: &[DeploymentEvent],
    ctx: &ChangeContext,
) -> Result<(), StoreError> {
    let rows = OutboxRows::of(events);
    let sql = concat!("WITH ", outbox_insert!(), " SELECT 1");
    bind_outbox(sqlx::query(sql), &rows, ctx)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn event(
    event_type: EventType,
    id: ApiId,
    api: &ApiRow,
    revision: Revision,
    sha256: Sha256Digest,
    labels: Vec<GatewayLabel>,
    sequence: i64,
    now: DateTime<Utc>,
) -> DeploymentEvent {
    DeploymentEvent {
        event_id: Uuid::new_v4(),
        event_type,
        timestamp: now,
        api_id: id,
        name: api.name.clone(),
        version: api.version.clone(),
        context: api.context.clone(),
        revision,
        sha256,
        gateway_labels: labels,
        sequence,
        artifact: None,
    }
}

fn summary_from_row(row: &sqlx::postgres::PgRow) -> Result<ApiSummary, StoreError> {
    Ok(ApiSummary {
        id: ApiId::from_uuid(row.try_get("id")?),
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        context: row.try_get("context")?,
        revision: revision(row.try_get("latest_revision")?)?,
        sha256: digest(row.try_get::<&str, _>("sha256")?)?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

const SUMMARY_SELECT: &str = "SELECT a.id, a.name, a.version, a.context, a.latest_revision,
        r.sha256, a.created_at, a.updated_at
     FROM apis a JOIN api_revisions r ON r.api_id = a.id AND r.revision = a.latest_revision";

impl PgArtifactStore {
    async fn summary(&self, id: ApiId) -> Result<ApiSummary, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SUMMARY_SELECT} WHERE a.id = $1"
        )))
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| not_found(id))?;
        summary_from_row(&row)
    }
}

#[async_trait]
impl ArtifactStore for PgArtifactStore {
    async fn create_api(&self, new: NewArtifact) -> Result<ApiSummary, StoreError> {
        let id = ApiId::new_random();
        // One statement, so one round trip and its own transaction: both
        // rows or neither.
        let row = sqlx::query(
            "WITH api AS (
                INSERT INTO apis (id, name, version, context, latest_revision)
                VALUES ($1, $2, $3, $4, 1)
                RETURNING id, name, version, context, latest_revision, created_at, updated_at
             ),
             first_revision AS (
                INSERT INTO api_revisions (api_id, revision, sha256, artifact)
                SELECT id, 1, $5, $6 FROM api
                RETURNING sha256
             )
             SELECT api.*, first_revision.sha256 FROM api, first_revision",
        )
        .bind(id.as_uuid())
        .bind(&new.name)
        .bind(&new.version)
        .bind(&new.context)
        .bind(new.sha256.to_hex())
        .bind(&new.xml)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| conflict_on_unique(e, &new))?;
        summary_from_row(&row)
    }

    async fn update_api(&self, id: ApiId, new: NewArtifact) -> Result<UpdateOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        let api = lock_api(&mut tx, id).await?;
        let latest_sha: String = sqlx::query_scalar(
            "SELECT sha256 FROM api_revisions WHERE api_id = $1 AND revision = $2",
        )
        .bind(id.as_uuid())
        .bind(api.latest_revision.as_i32())
        .fetch_one(&mut *tx)
        .await?;
        if latest_sha == new.sha256.to_hex() {
            tx.rollback().await?;
            return Ok(UpdateOutcome::Unchanged(self.summary(id).await?));
        }
        let next = api.latest_revision.next();
        // The new revision and the API row in one statement, which answers
        // the summary too.
        let row = sqlx::query(
            "WITH api AS (
                UPDATE apis SET name = $2, version = $3, context = $4, latest_revision = $5,
                       updated_at = now()
                WHERE id = $1
                RETURNING id, name, version, context, latest_revision, created_at, updated_at
             ),
             new_revision AS (
                INSERT INTO api_revisions (api_id, revision, sha256, artifact)
                VALUES ($1, $5, $6, $7)
                RETURNING sha256
             )
             SELECT api.*, new_revision.sha256 FROM api, new_revision",
        )
        .bind(id.as_uuid())
        .bind(&new.name)
        .bind(&new.version)
        .bind(&new.context)
        .bind(next.as_i32())
        .bind(new.sha256.to_hex())
        .bind(&new.xml)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| conflict_on_unique(e, &new))?;
        let summary = summary_from_row(&row)?;
        tx.commit().await?;
        Ok(UpdateOutcome::NewRevision(summary))
    }

    async fn list_apis(&self) -> Result<Vec<ApiSummary>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SUMMARY_SELECT} ORDER BY a.name, a.version"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(summary_from_row).collect()
    }

    async fn get_api(&self, id: ApiId) -> Result<ApiDetail, StoreError> {
        let summary = self.summary(id).await?;
        let revisions = sqlx::query(
            "SELECT revision, sha256, octet_length(artifact)::bigint AS size, created_at
             FROM api_revisions WHERE api_id = $1 ORDER BY revision",
        )
        .bind(id.as_uuid())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(RevisionInfo {
                revision: revision(r.try_get("revision")?)?,
                sha256: digest(r.try_get::<&str, _>("sha256")?)?,
                size_bytes: r.try_get("size")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
        let deployments = sqlx::query(
            "SELECT label, revision, sequence, deployed_at FROM deployments
             WHERE api_id = $1 ORDER BY label",
        )
        .bind(id.as_uuid())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(DeploymentInfo {
                label: label(r.try_get::<&str, _>("label")?)?,
                revision: revision(r.try_get("revision")?)?,
                sequence: r.try_get("sequence")?,
                deployed_at: r.try_get("deployed_at")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(ApiDetail {
            summary,
            revisions,
            deployments,
        })
    }

    async fn get_artifact(
        &self,
        id: ApiId,
        rev: Option<Revision>,
    ) -> Result<StoredArtifact, StoreError> {
        let row = sqlx::query(
            "SELECT r.revision, r.sha256, r.artifact FROM apis a
             JOIN api_revisions r ON r.api_id = a.id
                AND r.revision = COALESCE($2, a.latest_revision)
             WHERE a.id = $1",
        )
        .bind(id.as_uuid())
        .bind(rev.map(Revision::as_i32))
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            // Tell a missing API from a missing revision.
            self.summary(id).await?;
            return Err(StoreError::NotFound(format!(
                "API {id} has no revision {}",
                rev.map(|r| r.to_string()).unwrap_or_default()
            )));
        };
        Ok(StoredArtifact {
            revision: revision(row.try_get("revision")?)?,
            sha256: digest(row.try_get::<&str, _>("sha256")?)?,
            xml: row.try_get("artifact")?,
        })
    }

    async fn deploy(
        &self,
        id: ApiId,
        labels: &[GatewayLabel],
        rev: Option<Revision>,
        ctx: &ChangeContext,
    ) -> Result<DeployOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        let api = lock_api(&mut tx, id).await?;
        let target = rev.unwrap_or(api.latest_revision);
        let label_names: Vec<String> = labels.iter().map(|l| l.as_str().to_owned()).collect();
        // One statement, after the lock (so it sees every change committed
        // before it): the revision, where the labels stand, and the change
        // number. The artifact comes along only when it is small enough to
        // travel inside the event; it is never read otherwise. A number
        // drawn for a deploy that then changes nothing is a harmless gap.
        let row = sqlx::query(
            "SELECT r.sha256,
                    CASE WHEN octet_length(r.artifact) <= $3 THEN r.artifact END AS inline_artifact,
                    ARRAY(SELECT d.label FROM deployments d
                          WHERE d.api_id = $1 AND d.label = ANY($4) ORDER BY d.label) AS deployed_labels,
                    ARRAY(SELECT d.revision FROM deployments d
                          WHERE d.api_id = $1 AND d.label = ANY($4) ORDER BY d.label) AS deployed_revisions,
                    nextval('change_sequence') AS sequence
             FROM api_revisions r WHERE r.api_id = $1 AND r.revision = $2",
        )
        .bind(id.as_uuid())
        .bind(target.as_i32())
        .bind(i64::try_from(self.inline_artifact_max_bytes).unwrap_or(i64::MAX))
        .bind(&label_names)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Err(StoreError::Unprocessable(format!(
                "API {id} has no revision {target} (latest is {})",
                api.latest_revision
            )));
        };
        let sha = digest(row.try_get::<&str, _>("sha256")?)?;
        let inline_artifact: Option<Vec<u8>> = row.try_get("inline_artifact")?;
        let deployed_labels: Vec<String> = row.try_get("deployed_labels")?;
        let deployed_revisions: Vec<i32> = row.try_get("deployed_revisions")?;
        let sequence: i64 = row.try_get("sequence")?;
        let current: HashMap<String, i32> = deployed_labels
            .into_iter()
            .zip(deployed_revisions)
            .collect();

        let mut changed = Vec::new();
        let mut unchanged = Vec::new();
        for label in labels {
            match current.get(label.as_str()) {
                Some(&deployed) if deployed == target.as_i32() => unchanged.push(label.clone()),
                Some(&deployed) if deployed > target.as_i32() => {
                    return Err(StoreError::Conflict(format!(
                        "label {label:?} runs revision {deployed} of API {id}; gateways never go \
                         back to an older revision. To roll back, PUT the older artifact again: \
                         it becomes a new revision"
                    )));
                }
                _ => changed.push(label.clone()),
            }
        }
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
        let changed_names: Vec<String> = changed.iter().map(|l| l.as_str().to_owned()).collect();
        let mut deploy_event = event(
            EventType::DeployApiInGateway,
            id,
            &api,
            target,
            sha,
            changed.clone(),
            sequence,
            Utc::now(),
        );
        // Stored artifacts are validated UTF-8 XML; anything else is left
        // for the gateway to fetch.
        deploy_event.artifact = inline_artifact.and_then(|bytes| String::from_utf8(bytes).ok());
        let rows = OutboxRows::of(&[deploy_event]);
        let sql = concat!(
            "WITH ",
            outbox_insert!(),
            ", deployment_rows AS (
                INSERT INTO deployments (api_id, label, revision, sequence)
                SELECT $6, l, $7, $8 FROM UNNEST($9::text[]) AS l
                ON CONFLICT (api_id, label) DO UPDATE
                   SET revision = EXCLUDED.revision, sequence = EXCLUDED.sequence,
                       deployed_at = now()
            )
            SELECT 1"
        );
        bind_outbox(sqlx::query(sql), &rows, ctx)
            .bind(id.as_uuid())
            .bind(target.as_i32())
            .bind(sequence)
            .bind(&changed_names)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(DeployOutcome {
            api_id: id,
            revision: target,
            changed_labels: changed,
            unchanged_labels: unchanged,
            sequence: Some(sequence),
        })
    }

    async fn undeploy(
        &self,
        id: ApiId,
        label: &GatewayLabel,
        ctx: &ChangeContext,
    ) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let api = lock_api(&mut tx, id).await?;
        let removed = sqlx::query(
            "DELETE FROM deployments d USING api_revisions r
             WHERE d.api_id = $1 AND d.label = $2
               AND r.api_id = d.api_id AND r.revision = d.revision
             RETURNING d.revision, r.sha256, nextval('change_sequence') AS sequence",
        )
        .bind(id.as_uuid())
        .bind(label.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("API {id} is not deployed on {label:?}")))?;
        let sequence: i64 = removed.try_get("sequence")?;
        let remove = event(
            EventType::RemoveApiFromGateway,
            id,
            &api,
            revision(removed.try_get("revision")?)?,
            digest(removed.try_get::<&str, _>("sha256")?)?,
            vec![label.clone()],
            sequence,
            Utc::now(),
        );
        write_events(&mut tx, &[remove], ctx).await?;
        tx.commit().await?;
        Ok(sequence)
    }

    async fn delete_api(&self, id: ApiId, ctx: &ChangeContext) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let api = lock_api(&mut tx, id).await?;
        let deployed = sqlx::query(
            "SELECT d.label, d.revision, r.sha256 FROM deployments d
             JOIN api_revisions r ON r.api_id = d.api_id AND r.revision = d.revision
             WHERE d.api_id = $1 ORDER BY d.label",
        )
        .bind(id.as_uuid())
        .fetch_all(&mut *tx)
        .await?;
        if !deployed.is_empty() {
            let sequence = next_sequence(&mut tx).await?;
            let now = Utc::now();
            let mut events = Vec::with_capacity(deployed.len());
            for row in &deployed {
                events.push(event(
                    EventType::RemoveApiFromGateway,
                    id,
                    &api,
                    revision(row.try_get("revision")?)?,
                    digest(row.try_get::<&str, _>("sha256")?)?,
                    vec![label(row.try_get::<&str, _>("label")?)?],
                    sequence,
                    now,
                ));
            }
            write_events(&mut tx, &events, ctx).await?;
        }
        sqlx::query("DELETE FROM apis WHERE id = $1")
            .bind(id.as_uuid())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn api_status(
        &self,
        id: ApiId,
        stale_after: Duration,
    ) -> Result<Vec<NodeApiStatus>, StoreError> {
        // The API must exist; its status is derived from the nodes' reports.
        self.summary(id).await?;
        let deployments: BTreeMap<String, i32> =
            sqlx::query("SELECT label, revision FROM deployments WHERE api_id = $1")
                .bind(id.as_uuid())
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|r| Ok((r.try_get("label")?, r.try_get("revision")?)))
                .collect::<Result<_, sqlx::Error>>()?;
        let rows = sqlx::query(
            "SELECT n.node_id, n.labels, n.last_heartbeat, s.revision, s.sha256, s.status,
                    s.error, s.attempts, s.updated_at, now() AS db_now
             FROM gateway_nodes n
             LEFT JOIN gateway_api_states s ON s.node_id = n.node_id AND s.api_id = $1
             ORDER BY n.node_id",
        )
        .bind(id.as_uuid())
        .fetch_all(&self.pool)
        .await?;
        let stale_after = chrono::Duration::from_std(stale_after)
            .unwrap_or_else(|_| chrono::Duration::seconds(60));
        let mut out = Vec::new();
        for row in rows {
            let labels: Vec<String> = row.try_get("labels")?;
            let desired = labels
                .iter()
                .filter_map(|l| deployments.get(l).copied())
                .max();
            let status: Option<String> = row.try_get("status")?;
            if desired.is_none() && status.is_none() {
                continue;
            }
            let applied: Option<i32> = row.try_get("revision")?;
            let status = status.unwrap_or_else(|| "PENDING".to_owned());
            let in_sync = match desired {
                Some(d) => applied == Some(d) && status == "DEPLOYED",
                None => status != "DEPLOYED",
            };
            let last_heartbeat: DateTime<Utc> = row.try_get("last_heartbeat")?;
            let now: DateTime<Utc> = row.try_get("db_now")?;
            out.push(NodeApiStatus {
                node_id: row.try_get("node_id")?,
                labels,
                expected: desired.is_some(),
                desired_revision: desired,
                applied_revision: applied,
                sha256: row.try_get("sha256")?,
                status,
                in_sync,
                error: row.try_get("error")?,
                attempts: row.try_get::<Option<i32>, _>("attempts")?.unwrap_or(0),
                last_report: row.try_get("updated_at")?,
                last_heartbeat,
                stale: now - last_heartbeat > stale_after,
            });
        }
        Ok(out)
    }

    async fn gateways(&self, stale_after: Duration) -> Result<Vec<GatewaySummary>, StoreError> {
        let rows = sqlx::query(
            "WITH desired AS (
                SELECT n.node_id, d.api_id, max(d.revision) AS revision
                FROM gateway_nodes n JOIN deployments d ON d.label = ANY (n.labels)
                GROUP BY n.node_id, d.api_id
             )
             SELECT n.node_id, n.labels, n.ready, n.started_at, n.last_heartbeat, n.details,
                    now() AS db_now,
                    count(desired.api_id) FILTER (
                        WHERE s.status = 'DEPLOYED' AND s.revision = desired.revision) AS in_sync,
                    count(desired.api_id) FILTER (WHERE s.status = 'FAILED') AS failed,
                    count(desired.api_id) FILTER (
                        WHERE s.status IS DISTINCT FROM 'FAILED'
                          AND (s.status IS DISTINCT FROM 'DEPLOYED'
                               OR s.revision IS DISTINCT FROM desired.revision)) AS behind
             FROM gateway_nodes n
             LEFT JOIN desired ON desired.node_id = n.node_id
             LEFT JOIN gateway_api_states s
                    ON s.node_id = n.node_id AND s.api_id = desired.api_id
             GROUP BY n.node_id
             ORDER BY n.node_id",
        )
        .fetch_all(&self.pool)
        .await?;
        let stale_after = chrono::Duration::from_std(stale_after)
            .unwrap_or_else(|_| chrono::Duration::seconds(60));
        rows.iter()
            .map(|row| {
                let last_heartbeat: DateTime<Utc> = row.try_get("last_heartbeat")?;
                let now: DateTime<Utc> = row.try_get("db_now")?;
                Ok(GatewaySummary {
                    node_id: row.try_get("node_id")?,
                    labels: row.try_get("labels")?,
                    ready: row.try_get("ready")?,
                    started_at: row.try_get("started_at")?,
                    last_heartbeat,
                    stale: now - last_heartbeat > stale_after,
                    apis_in_sync: row.try_get("in_sync")?,
                    apis_failed: row.try_get("failed")?,
                    apis_behind: row.try_get("behind")?,
                    details: row.try_get("details")?,
                })
            })
            .collect()
    }
}
