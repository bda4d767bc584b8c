//! [`ArtifactStore`] on PostgreSQL: artifacts as `bytea` revisions,
//! deployments as rows, and events in the `outbox` table. A change is one
//! transaction with its outbox rows; changes to one API are serialised by
//! a row lock on the API.

use std::collections::HashMap;
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
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, Row, Transaction};
use uuid::Uuid;

use crate::PgBackend;
use crate::error::{BACKEND, Error, Result};
use crate::receipts;

/// The columns of `apis` that events and summaries need.
struct ApiRow {
    identity: ApiIdentity,
    latest_revision: Revision,
}

fn revision(n: i32) -> Result<Revision> {
    Ok(rules::stored_revision(BACKEND, i64::from(n))?)
}

/// Maps unique violations of `apis` to 409 with a message naming the clash.
fn conflict_on_unique(e: sqlx::Error, new: &NewArtifact) -> Error {
    if let sqlx::Error::Database(db) = &e {
        match db.constraint() {
            Some("apis_name_version_key") => {
                return rules::name_version_taken(&new.name, &new.version).into();
            }
            Some("apis_context_key") => return rules::context_taken(&new.context).into(),
            _ => {}
        }
    }
    Error::Sql(e)
}

async fn lock_api(tx: &mut Transaction<'_, Postgres>, id: ApiId) -> Result<ApiRow> {
    let row = sqlx::query(
        "SELECT name, version, context, latest_revision FROM apis WHERE id = $1 FOR UPDATE",
    )
    .bind(id.as_uuid())
    .fetch_optional(&mut **tx)
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
    })
}

async fn next_sequence(tx: &mut Transaction<'_, Postgres>) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT nextval('change_sequence')")
        .fetch_one(&mut **tx)
        .await?)
}

/// The outbox rows of some events as the columns `outbox_insert!` unnests.
#[derive(Default)]
struct OutboxColumns {
    event_ids: Vec<Uuid>,
    routing_keys: Vec<String>,
    payloads: Vec<Vec<u8>>,
    sequences: Vec<i64>,
}

impl OutboxColumns {
    fn of(events: &[DeploymentEvent]) -> Self {
        let mut columns = OutboxColumns::default();
        for row in rules::outbox_rows(events) {
            columns.event_ids.push(row.event_id);
            columns.routing_keys.push(row.routing_key);
            columns.payloads.push(row.payload);
            columns.sequences.push(row.sequence);
        }
        columns
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
    columns: &'q OutboxColumns,
    ctx: &'q ChangeContext,
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    query
        .bind(&columns.event_ids)
        .bind(&columns.routing_keys)
        .bind(&columns.payloads)
        .bind(ctx.traceparent.as_deref())
        .bind(&columns.sequences)
}

/// Writes one event per label and raises the labels' change numbers,
/// inside the caller's transaction.
async fn write_events(
    tx: &mut Transaction<'_, Postgres>,
    events: &[DeploymentEvent],
    ctx: &ChangeContext,
) -> Result<()> {
    let columns = OutboxColumns::of(events);
    let sql = concat!("WITH ", outbox_insert!(), " SELECT 1");
    bind_outbox(sqlx::query(sql), &columns, ctx)
        .execute(&mut **tx)
        .await?;
    receipts::record_change(tx, events).await
}

pub(crate) fn summary_from_row(row: &PgRow) -> Result<ApiSummary> {
    Ok(ApiSummary {
        id: ApiId::from_uuid(row.try_get("id")?),
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

async fn summary(pool: &PgPool, id: ApiId) -> Result<ApiSummary> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{SUMMARY_SELECT} WHERE a.id = $1"
    )))
    .bind(id.as_uuid())
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| rules::api_not_found(id))?;
    summary_from_row(&row)
}

async fn create_api(pool: &PgPool, new: NewArtifact) -> Result<ApiSummary> {
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
    .fetch_one(pool)
    .await
    .map_err(|e| conflict_on_unique(e, &new))?;
    summary_from_row(&row)
}

async fn update_api(pool: &PgPool, id: ApiId, new: NewArtifact) -> Result<UpdateOutcome> {
    let mut tx = pool.begin().await?;
    let api = lock_api(&mut tx, id).await?;
    let latest_sha: String =
        sqlx::query_scalar("SELECT sha256 FROM api_revisions WHERE api_id = $1 AND revision = $2")
            .bind(id.as_uuid())
            .bind(api.latest_revision.as_i32())
            .fetch_one(&mut *tx)
            .await?;
    if latest_sha == new.sha256.to_hex() {
        tx.rollback().await?;
        return Ok(UpdateOutcome::Unchanged(summary(pool, id).await?));
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

async fn list_apis(pool: &PgPool) -> Result<Vec<ApiSummary>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{SUMMARY_SELECT} ORDER BY a.name, a.version"
    )))
    .fetch_all(pool)
    .await?;
    rows.iter().map(summary_from_row).collect()
}

async fn find_api(pool: &PgPool, name: &str, version: &str) -> Result<Option<ApiSummary>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{SUMMARY_SELECT} WHERE a.name = $1 AND a.version = $2"
    )))
    .bind(name)
    .bind(version)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(summary_from_row).transpose()
}

async fn get_api(pool: &PgPool, id: ApiId) -> Result<ApiDetail> {
    let summary = summary(pool, id).await?;
    let revisions = sqlx::query(
        "SELECT revision, sha256, octet_length(artifact)::bigint AS size, created_at
         FROM api_revisions WHERE api_id = $1 ORDER BY revision",
    )
    .bind(id.as_uuid())
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
         WHERE api_id = $1 ORDER BY label",
    )
    .bind(id.as_uuid())
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

async fn get_artifact(pool: &PgPool, id: ApiId, rev: Option<Revision>) -> Result<StoredArtifact> {
    let row = sqlx::query(
        "SELECT r.revision, r.sha256, r.artifact FROM apis a
         JOIN api_revisions r ON r.api_id = a.id
            AND r.revision = COALESCE($2, a.latest_revision)
         WHERE a.id = $1",
    )
    .bind(id.as_uuid())
    .bind(rev.map(Revision::as_i32))
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
    store: &PgBackend,
    id: ApiId,
    labels: &[GatewayLabel],
    rev: Option<Revision>,
    ctx: &ChangeContext,
) -> Result<DeployOutcome> {
    let mut tx = store.pool.begin().await?;
    let api = lock_api(&mut tx, id).await?;
    let target = rev.unwrap_or(api.latest_revision);
    let label_names: Vec<String> = labels.iter().map(|l| l.as_str().to_owned()).collect();
    // One statement, after the lock (so it sees every change committed
    // before it): the revision, where the labels stand, and the change
    // number. The artifact comes along only when it is small enough to
    // travel inside the event; it is never read otherwise. A number drawn
    // for a deploy that then changes nothing is a harmless gap.
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
    .bind(i64::try_from(store.inline_artifact_max_bytes).unwrap_or(i64::MAX))
    .bind(&label_names)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Err(rules::no_such_revision(id, target, api.latest_revision).into());
    };
    let sha = rules::stored_digest(BACKEND, row.try_get::<&str, _>("sha256")?)?;
    let inline_artifact: Option<Vec<u8>> = row.try_get("inline_artifact")?;
    let deployed_labels: Vec<String> = row.try_get("deployed_labels")?;
    let deployed_revisions: Vec<i32> = row.try_get("deployed_revisions")?;
    let sequence: i64 = row.try_get("sequence")?;
    let current: HashMap<String, i32> = deployed_labels
        .into_iter()
        .zip(deployed_revisions)
        .collect();
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
    let changed_names: Vec<String> = changed.iter().map(|l| l.as_str().to_owned()).collect();
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
    let events = [deploy_event];
    let columns = OutboxColumns::of(&events);
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
    bind_outbox(sqlx::query(sql), &columns, ctx)
        .bind(id.as_uuid())
        .bind(target.as_i32())
        .bind(sequence)
        .bind(&changed_names)
        .execute(&mut *tx)
        .await?;
    receipts::record_change(&mut tx, &events).await?;
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
    pool: &PgPool,
    id: ApiId,
    label: &GatewayLabel,
    ctx: &ChangeContext,
) -> Result<i64> {
    let mut tx = pool.begin().await?;
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
    .ok_or_else(|| rules::not_deployed(id, label))?;
    let sequence: i64 = removed.try_get("sequence")?;
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
    Ok(sequence)
}

async fn delete_api(pool: &PgPool, id: ApiId, ctx: &ChangeContext) -> Result<()> {
    let mut tx = pool.begin().await?;
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
    sqlx::query("DELETE FROM apis WHERE id = $1")
        .bind(id.as_uuid())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

async fn api_status(pool: &PgPool, id: ApiId, stale_after: Duration) -> Result<Vec<NodeApiStatus>> {
    // The API must exist; its status is derived from the nodes' reports.
    summary(pool, id).await?;
    let deployments: HashMap<String, i32> =
        sqlx::query("SELECT label, revision FROM deployments WHERE api_id = $1")
            .bind(id.as_uuid())
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("label")?, r.try_get("revision")?)))
            .collect::<std::result::Result<_, sqlx::Error>>()?;
    let rows = sqlx::query(
        "SELECT n.node_id, n.labels, n.last_heartbeat, s.revision, s.sha256, s.status,
                s.error, s.attempts, s.updated_at, now() AS db_now
         FROM gateway_nodes n
         LEFT JOIN gateway_api_states s ON s.node_id = n.node_id AND s.api_id = $1
         ORDER BY n.node_id",
    )
    .bind(id.as_uuid())
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
                labels: row.try_get("labels")?,
                last_heartbeat: row.try_get("last_heartbeat")?,
                revision: row.try_get("revision")?,
                sha256: row.try_get("sha256")?,
                status: row.try_get("status")?,
                error: row.try_get("error")?,
                attempts: row.try_get("attempts")?,
                updated_at: row.try_get("updated_at")?,
            })
        })
        .collect::<std::result::Result<Vec<_>, sqlx::Error>>()?;
    Ok(rules::node_api_statuses(
        &deployments,
        rows,
        now,
        stale_after,
    )?)
}

pub(crate) async fn gateways(pool: &PgPool, stale_after: Duration) -> Result<Vec<GatewaySummary>> {
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
    .fetch_all(pool)
    .await?;
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
                stale: rules::is_stale(now, last_heartbeat, stale_after),
                apis_in_sync: row.try_get("in_sync")?,
                apis_failed: row.try_get("failed")?,
                apis_behind: row.try_get("behind")?,
                details: row.try_get("details")?,
            })
        })
        .collect()
}

#[async_trait]
impl ArtifactStore for PgBackend {
    async fn create_api(&self, new: NewArtifact) -> std::result::Result<ApiSummary, StoreError> {
        Ok(create_api(&self.pool, new).await?)
    }

    async fn update_api(
        &self,
        id: ApiId,
        new: NewArtifact,
    ) -> std::result::Result<UpdateOutcome, StoreError> {
        Ok(update_api(&self.pool, id, new).await?)
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
        Ok(deploy(self, id, labels, revision, ctx).await?)
    }

    async fn undeploy(
        &self,
        id: ApiId,
        label: &GatewayLabel,
        ctx: &ChangeContext,
    ) -> std::result::Result<i64, StoreError> {
        Ok(undeploy(&self.pool, id, label, ctx).await?)
    }

    async fn delete_api(
        &self,
        id: ApiId,
        ctx: &ChangeContext,
    ) -> std::result::Result<(), StoreError> {
        Ok(delete_api(&self.pool, id, ctx).await?)
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
        Ok(receipts::receipt(&self.pool, sequence, stale_after).await?)
    }

    async fn propagation_samples(
        &self,
        after: DateTime<Utc>,
        limit: u32,
    ) -> std::result::Result<Vec<PropagationSample>, StoreError> {
        Ok(receipts::propagation_samples(&self.pool, after, limit).await?)
    }

    async fn fleet(
        &self,
        stale_after: Duration,
    ) -> std::result::Result<artisync_domain::fleet::Fleet, StoreError> {
        Ok(crate::fleet::fleet(&self.pool, stale_after).await?)
    }
}
