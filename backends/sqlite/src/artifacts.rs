//! [`ArtifactStore`] on SQLite. Every change runs in the one writer, so
//! changes are serialised (and those to one API with them); each commits
//! with its outbox rows or not at all.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use artisync_domain::api::{
    ApiDetail, ApiSummary, DeployOutcome, DeploymentInfo, GatewaySummary, NodeApiState,
    NodeApiStatus, RevisionInfo,
};
use artisync_domain::event::{DeploymentEvent, EventType};
use artisync_domain::{ApiId, GatewayLabel, Revision};
use artisync_ports::artifacts::{ChangeContext, NewArtifact, StoredArtifact, UpdateOutcome};
use artisync_ports::rules::{self, ApiIdentity, NodeReportRow};
use artisync_ports::{ArtifactStore, StoreError};
use async_trait::async_trait;
use chrono::Utc;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection, SqliteExecutor};

use crate::SqliteBackend;
use crate::error::{BACKEND, Error, Result, is_unique_violation};
use crate::time::{from_micros, now};

fn revision(n: i64) -> Result<Revision> {
    Ok(rules::stored_revision(BACKEND, n)?)
}

pub(crate) fn api_id(raw: &str) -> Result<ApiId> {
    raw.parse::<ApiId>()
        .map_err(|e| StoreError::broken(BACKEND, format!("stored API id: {e}")).into())
}

fn conflict_on_unique(e: sqlx::Error, new: &NewArtifact) -> Error {
    if is_unique_violation(&e, "apis.context") {
        return rules::context_taken(&new.context).into();
    }
    if is_unique_violation(&e, "apis.name") {
        return rules::name_version_taken(&new.name, &new.version).into();
    }
    Error::Sql(e)
}

pub(crate) const SUMMARY_SELECT: &str =
    "SELECT a.id, a.name, a.version, a.context, a.latest_revision,
        r.sha256, a.created_at, a.updated_at
     FROM apis a JOIN api_revisions r ON r.api_id = a.id AND r.revision = a.latest_revision";

pub(crate) fn summary_from_row(row: &SqliteRow) -> Result<ApiSummary> {
    Ok(ApiSummary {
        id: api_id(row.try_get("id")?)?,
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        context: row.try_get("context")?,
        revision: revision(row.try_get("latest_revision")?)?,
        sha256: rules::stored_digest(BACKEND, row.try_get::<&str, _>("sha256")?)?,
        created_at: from_micros(row.try_get("created_at")?),
        updated_at: from_micros(row.try_get("updated_at")?),
    })
}

async fn summary<'e>(e: impl SqliteExecutor<'e>, id: ApiId) -> Result<ApiSummary> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{SUMMARY_SELECT} WHERE a.id = ?1"
    )))
    .bind(id.to_string())
    .fetch_optional(e)
    .await?
    .ok_or_else(|| rules::api_not_found(id))?;
    summary_from_row(&row)
}

/// The API's row, inside the writer's transaction.
struct ApiRow {
    identity: ApiIdentity,
    latest_revision: Revision,
}

async fn api_row(c: &mut SqliteConnection, id: ApiId) -> Result<ApiRow> {
    let row = sqlx::query("SELECT name, version, context, latest_revision FROM apis WHERE id = ?1")
        .bind(id.to_string())
        .fetch_optional(&mut *c)
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

/// The next change number, inside the writer's transaction.
pub(crate) async fn next_counter(c: &mut SqliteConnection, name: &str) -> Result<i64> {
    Ok(
        sqlx::query_scalar("UPDATE counters SET value = value + 1 WHERE name = ?1 RETURNING value")
            .bind(name)
            .fetch_one(&mut *c)
            .await?,
    )
}

/// One outbox row per label (its trigger raises the label's change number).
async fn write_events(
    c: &mut SqliteConnection,
    events: &[DeploymentEvent],
    ctx: &ChangeContext,
) -> Result<()> {
    let created = now();
    for row in rules::outbox_rows(events) {
        sqlx::query(
            "INSERT INTO outbox (event_id, routing_key, payload, traceparent, sequence, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(row.event_id.to_string())
        .bind(&row.routing_key)
        .bind(&row.payload)
        .bind(ctx.traceparent.as_deref())
        .bind(row.sequence)
        .bind(created)
        .execute(&mut *c)
        .await?;
    }
    crate::receipts::record_change(c, events, created).await
}

/// The next change number. Only the writer draws them, one job at a time,
/// so a counter in memory (continued from the database at open) is enough;
/// a number drawn by a change that then rolls back is a harmless gap.
fn next_sequence(sequence: &AtomicI64) -> i64 {
    sequence.fetch_add(1, Ordering::SeqCst) + 1
}

async fn create_api(c: &mut SqliteConnection, new: NewArtifact) -> Result<ApiSummary> {
    let id = ApiId::new_random();
    let at = now();
    sqlx::query(
        "INSERT INTO apis (id, name, version, context, latest_revision, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, 1, ?5, ?5)",
    )
    .bind(id.to_string())
    .bind(&new.name)
    .bind(&new.version)
    .bind(&new.context)
    .bind(at)
    .execute(&mut *c)
    .await
    .map_err(|e| conflict_on_unique(e, &new))?;
    sqlx::query(
        "INSERT INTO api_revisions (api_id, revision, sha256, artifact, created_at)
         VALUES (?1, 1, ?2, ?3, ?4)",
    )
    .bind(id.to_string())
    .bind(new.sha256.to_hex())
    .bind(&new.xml)
    .bind(at)
    .execute(&mut *c)
    .await?;
    summary(&mut *c, id).await
}

async fn update_api(
    c: &mut SqliteConnection,
    id: ApiId,
    new: NewArtifact,
) -> Result<UpdateOutcome> {
    let latest = summary(&mut *c, id).await?;
    if latest.sha256 == new.sha256 {
        return Ok(UpdateOutcome::Unchanged(latest));
    }
    let next = latest.revision.next();
    let at = now();
    sqlx::query(
        "UPDATE apis SET name = ?2, version = ?3, context = ?4, latest_revision = ?5,
                updated_at = ?6
         WHERE id = ?1",
    )
    .bind(id.to_string())
    .bind(&new.name)
    .bind(&new.version)
    .bind(&new.context)
    .bind(next.as_i32())
    .bind(at)
    .execute(&mut *c)
    .await
    .map_err(|e| conflict_on_unique(e, &new))?;
    sqlx::query(
        "INSERT INTO api_revisions (api_id, revision, sha256, artifact, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .bind(id.to_string())
    .bind(next.as_i32())
    .bind(new.sha256.to_hex())
    .bind(&new.xml)
    .bind(at)
    .execute(&mut *c)
    .await?;
    Ok(UpdateOutcome::NewRevision(ApiSummary {
        name: new.name,
        version: new.version,
        context: new.context,
        revision: next,
        sha256: new.sha256,
        updated_at: from_micros(at),
        ..latest
    }))
}

fn label_names(labels: &[GatewayLabel]) -> String {
    serde_json::to_string(&labels.iter().map(GatewayLabel::as_str).collect::<Vec<_>>())
        .unwrap_or_else(|_| "[]".to_owned())
}

async fn deploy(
    c: &mut SqliteConnection,
    sequence: &AtomicI64,
    inline_max: usize,
    id: ApiId,
    labels: Vec<GatewayLabel>,
    rev: Option<Revision>,
    ctx: ChangeContext,
) -> Result<DeployOutcome> {
    // One statement: the API, the revision (its artifact only when small
    // enough to travel in the event) and where the labels stand.
    let row = sqlx::query(
        "SELECT a.name, a.version, a.context, a.latest_revision,
                coalesce(?2, a.latest_revision) AS target,
                r.sha256,
                CASE WHEN length(r.artifact) <= ?3 THEN r.artifact END AS inline_artifact,
                (SELECT json_group_object(d.label, d.revision) FROM deployments d
                 WHERE d.api_id = a.id AND d.label IN (SELECT value FROM json_each(?4)))
                    AS deployed
         FROM apis a
         LEFT JOIN api_revisions r ON r.api_id = a.id
                                  AND r.revision = coalesce(?2, a.latest_revision)
         WHERE a.id = ?1",
    )
    .bind(id.to_string())
    .bind(rev.map(Revision::as_i32))
    .bind(i64::try_from(inline_max).unwrap_or(i64::MAX))
    .bind(label_names(&labels))
    .fetch_optional(&mut *c)
    .await?
    .ok_or_else(|| rules::api_not_found(id))?;
    let api = ApiRow {
        identity: ApiIdentity {
            id,
            name: row.try_get("name")?,
            version: row.try_get("version")?,
            context: row.try_get("context")?,
        },
        latest_revision: revision(row.try_get("latest_revision")?)?,
    };
    let target = revision(row.try_get("target")?)?;
    let Some(sha) = row.try_get::<Option<&str>, _>("sha256")? else {
        return Err(rules::no_such_revision(id, target, api.latest_revision).into());
    };
    let sha = rules::stored_digest(BACKEND, sha)?;
    let inline_artifact: Option<Vec<u8>> = row.try_get("inline_artifact")?;
    let deployed: Option<String> = row.try_get("deployed")?;
    let current: HashMap<String, i32> = match deployed {
        Some(json) => serde_json::from_str(&json)
            .map_err(|e| StoreError::broken(BACKEND, format!("stored deployments: {e}")))?,
        None => HashMap::new(),
    };
    let (changed, unchanged) = rules::plan_deploy(id, &labels, &current, target)?;
    if changed.is_empty() {
        return Ok(DeployOutcome {
            api_id: id,
            revision: target,
            changed_labels: changed,
            unchanged_labels: unchanged,
            sequence: None,
        });
    }
    let sequence = next_sequence(sequence);
    let mut event = rules::event(
        EventType::DeployApiInGateway,
        &api.identity,
        target,
        sha,
        changed.clone(),
        sequence,
        Utc::now(),
    );
    event.artifact = inline_artifact.and_then(|bytes| String::from_utf8(bytes).ok());
    write_events(c, &[event], &ctx).await?;
    let at = now();
    for label in &changed {
        sqlx::query(
            "INSERT INTO deployments (api_id, label, revision, sequence, deployed_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (api_id, label) DO UPDATE SET revision = excluded.revision,
                sequence = excluded.sequence, deployed_at = excluded.deployed_at",
        )
        .bind(id.to_string())
        .bind(label.as_str())
        .bind(target.as_i32())
        .bind(sequence)
        .bind(at)
        .execute(&mut *c)
        .await?;
    }
    Ok(DeployOutcome {
        api_id: id,
        revision: target,
        changed_labels: changed,
        unchanged_labels: unchanged,
        sequence: Some(sequence),
    })
}

async fn undeploy(
    c: &mut SqliteConnection,
    sequence: &AtomicI64,
    id: ApiId,
    label: GatewayLabel,
    ctx: ChangeContext,
) -> Result<i64> {
    let api = api_row(c, id).await?;
    let removed = sqlx::query(
        "DELETE FROM deployments WHERE api_id = ?1 AND label = ?2
         RETURNING revision, (SELECT sha256 FROM api_revisions r
                              WHERE r.api_id = deployments.api_id
                                AND r.revision = deployments.revision) AS sha256",
    )
    .bind(id.to_string())
    .bind(label.as_str())
    .fetch_optional(&mut *c)
    .await?
    .ok_or_else(|| rules::not_deployed(id, &label))?;
    let sequence = next_sequence(sequence);
    let event = rules::event(
        EventType::RemoveApiFromGateway,
        &api.identity,
        revision(removed.try_get("revision")?)?,
        rules::stored_digest(BACKEND, removed.try_get::<&str, _>("sha256")?)?,
        vec![label],
        sequence,
        Utc::now(),
    );
    write_events(c, &[event], &ctx).await?;
    Ok(sequence)
}

async fn delete_api(
    c: &mut SqliteConnection,
    sequence: &AtomicI64,
    id: ApiId,
    ctx: ChangeContext,
) -> Result<()> {
    let api = api_row(c, id).await?;
    let deployed = sqlx::query(
        "SELECT d.label, d.revision, r.sha256 FROM deployments d
         JOIN api_revisions r ON r.api_id = d.api_id AND r.revision = d.revision
         WHERE d.api_id = ?1 ORDER BY d.label",
    )
    .bind(id.to_string())
    .fetch_all(&mut *c)
    .await?;
    if !deployed.is_empty() {
        let sequence = next_sequence(sequence);
        let at = Utc::now();
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
                at,
            ));
        }
        write_events(c, &events, &ctx).await?;
    }
    sqlx::query("DELETE FROM apis WHERE id = ?1")
        .bind(id.to_string())
        .execute(&mut *c)
        .await?;
    Ok(())
}

impl SqliteBackend {
    async fn get_api_detail(&self, id: ApiId) -> Result<ApiDetail> {
        let readers = &self.inner.readers;
        let summary = summary(readers, id).await?;
        let revisions = sqlx::query(
            "SELECT revision, sha256, length(artifact) AS size, created_at
             FROM api_revisions WHERE api_id = ?1 ORDER BY revision",
        )
        .bind(id.to_string())
        .fetch_all(readers)
        .await?
        .iter()
        .map(|r| {
            Ok(RevisionInfo {
                revision: revision(r.try_get("revision")?)?,
                sha256: rules::stored_digest(BACKEND, r.try_get::<&str, _>("sha256")?)?,
                size_bytes: r.try_get("size")?,
                created_at: from_micros(r.try_get("created_at")?),
            })
        })
        .collect::<Result<Vec<_>>>()?;
        let deployments = sqlx::query(
            "SELECT label, revision, sequence, deployed_at FROM deployments
             WHERE api_id = ?1 ORDER BY label",
        )
        .bind(id.to_string())
        .fetch_all(readers)
        .await?
        .iter()
        .map(|r| {
            Ok(DeploymentInfo {
                label: rules::stored_label(BACKEND, r.try_get::<&str, _>("label")?)?,
                revision: revision(r.try_get("revision")?)?,
                sequence: r.try_get("sequence")?,
                deployed_at: from_micros(r.try_get("deployed_at")?),
            })
        })
        .collect::<Result<Vec<_>>>()?;
        Ok(ApiDetail {
            summary,
            revisions,
            deployments,
        })
    }

    async fn artifact(&self, id: ApiId, rev: Option<Revision>) -> Result<StoredArtifact> {
        let readers = &self.inner.readers;
        let row = sqlx::query(
            "SELECT r.revision, r.sha256, r.artifact FROM apis a
             JOIN api_revisions r ON r.api_id = a.id
                AND r.revision = coalesce(?2, a.latest_revision)
             WHERE a.id = ?1",
        )
        .bind(id.to_string())
        .bind(rev.map(Revision::as_i32))
        .fetch_optional(readers)
        .await?;
        let Some(row) = row else {
            summary(readers, id).await?;
            return Err(rules::revision_not_found(id, rev).into());
        };
        Ok(StoredArtifact {
            revision: revision(row.try_get("revision")?)?,
            sha256: rules::stored_digest(BACKEND, row.try_get::<&str, _>("sha256")?)?,
            xml: row.try_get("artifact")?,
        })
    }

    async fn status_of(&self, id: ApiId, stale_after: Duration) -> Result<Vec<NodeApiStatus>> {
        let readers = &self.inner.readers;
        summary(readers, id).await?;
        let deployments: HashMap<String, i32> =
            sqlx::query("SELECT label, revision FROM deployments WHERE api_id = ?1")
                .bind(id.to_string())
                .fetch_all(readers)
                .await?
                .iter()
                .map(|r| Ok((r.try_get("label")?, r.try_get("revision")?)))
                .collect::<std::result::Result<_, sqlx::Error>>()?;
        let rows = sqlx::query(
            "SELECT n.node_id, n.labels, n.last_heartbeat, s.revision, s.sha256, s.status,
                    s.error, s.attempts, s.updated_at
             FROM gateway_nodes n
             LEFT JOIN gateway_api_states s ON s.node_id = n.node_id AND s.api_id = ?1
             ORDER BY n.node_id",
        )
        .bind(id.to_string())
        .fetch_all(readers)
        .await?
        .iter()
        .map(|row| {
            Ok(NodeReportRow {
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
            })
        })
        .collect::<Result<Vec<_>>>()?;
        Ok(rules::node_api_statuses(
            &deployments,
            rows,
            Utc::now(),
            stale_after,
        )?)
    }

    pub(crate) async fn gateway_summaries(
        &self,
        stale_after: Duration,
    ) -> Result<Vec<GatewaySummary>> {
        let readers = &self.inner.readers;
        let nodes = sqlx::query(
            "SELECT node_id, labels, ready, started_at, last_heartbeat, details
             FROM gateway_nodes ORDER BY node_id",
        )
        .fetch_all(readers)
        .await?;
        // label -> api -> revision
        let mut deployed: HashMap<String, HashMap<String, i64>> = HashMap::new();
        for row in sqlx::query("SELECT api_id, label, revision FROM deployments")
            .fetch_all(readers)
            .await?
        {
            deployed
                .entry(row.try_get("label")?)
                .or_default()
                .insert(row.try_get("api_id")?, row.try_get("revision")?);
        }
        let now = Utc::now();
        let mut out = Vec::with_capacity(nodes.len());
        for node in nodes {
            let node_id: String = node.try_get("node_id")?;
            let labels = labels_of(node.try_get("labels")?)?;
            let mut desired: HashMap<&str, i64> = HashMap::new();
            for label in &labels {
                for (api, rev) in deployed.get(label).into_iter().flatten() {
                    let entry = desired.entry(api.as_str()).or_insert(*rev);
                    *entry = (*entry).max(*rev);
                }
            }
            let states: HashMap<String, (Option<i64>, String)> = sqlx::query(
                "SELECT api_id, revision, status FROM gateway_api_states WHERE node_id = ?1",
            )
            .bind(&node_id)
            .fetch_all(readers)
            .await?
            .iter()
            .map(|r| {
                Ok((
                    r.try_get("api_id")?,
                    (r.try_get("revision")?, r.try_get("status")?),
                ))
            })
            .collect::<std::result::Result<_, sqlx::Error>>()?;
            let (mut in_sync, mut failed, mut behind) = (0, 0, 0);
            for (api, rev) in &desired {
                let state = match states.get(*api) {
                    Some((r, s)) => Some((*r, NodeApiState::from(rules::stored_status(s)?))),
                    None => None,
                };
                match state {
                    Some((_, NodeApiState::Failed)) => failed += 1,
                    Some((Some(r), NodeApiState::Deployed)) if r == *rev => in_sync += 1,
                    _ => behind += 1,
                }
            }
            let last_heartbeat = from_micros(node.try_get("last_heartbeat")?);
            let details: String = node.try_get("details")?;
            out.push(GatewaySummary {
                node_id,
                labels,
                ready: node.try_get("ready")?,
                started_at: node
                    .try_get::<Option<i64>, _>("started_at")?
                    .map(from_micros),
                last_heartbeat,
                stale: rules::is_stale(now, last_heartbeat, stale_after),
                apis_in_sync: in_sync,
                apis_failed: failed,
                apis_behind: behind,
                details: serde_json::from_str(&details).unwrap_or(serde_json::Value::Null),
            });
        }
        Ok(out)
    }
}

/// A JSON array of labels as stored.
pub(crate) fn labels_of(raw: String) -> Result<Vec<String>> {
    serde_json::from_str(&raw)
        .map_err(|e| StoreError::broken(BACKEND, format!("stored labels: {e}")).into())
}

/// Label names as a JSON array, for `json_each`.
pub(crate) fn labels_json(labels: &[GatewayLabel]) -> String {
    label_names(labels)
}

#[async_trait]
impl ArtifactStore for SqliteBackend {
    async fn create_api(&self, new: NewArtifact) -> std::result::Result<ApiSummary, StoreError> {
        self.inner
            .writer
            .write(false, move |c| Box::pin(create_api(c, new)))
            .await
    }

    async fn update_api(
        &self,
        id: ApiId,
        new: NewArtifact,
    ) -> std::result::Result<UpdateOutcome, StoreError> {
        self.inner
            .writer
            .write(false, move |c| Box::pin(update_api(c, id, new)))
            .await
    }

    async fn list_apis(&self) -> std::result::Result<Vec<ApiSummary>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SUMMARY_SELECT} ORDER BY a.name, a.version"
        )))
        .fetch_all(&self.inner.readers)
        .await
        .map_err(crate::error::db)?;
        Ok(rows
            .iter()
            .map(summary_from_row)
            .collect::<Result<Vec<_>>>()?)
    }

    async fn get_api(&self, id: ApiId) -> std::result::Result<ApiDetail, StoreError> {
        Ok(self.get_api_detail(id).await?)
    }

    async fn find_api(
        &self,
        name: &str,
        version: &str,
    ) -> std::result::Result<Option<ApiSummary>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SUMMARY_SELECT} WHERE a.name = ?1 AND a.version = ?2"
        )))
        .bind(name)
        .bind(version)
        .fetch_optional(&self.inner.readers)
        .await
        .map_err(crate::error::db)?;
        Ok(row.as_ref().map(summary_from_row).transpose()?)
    }

    async fn get_artifact(
        &self,
        id: ApiId,
        revision: Option<Revision>,
    ) -> std::result::Result<StoredArtifact, StoreError> {
        Ok(self.artifact(id, revision).await?)
    }

    async fn deploy(
        &self,
        id: ApiId,
        labels: &[GatewayLabel],
        revision: Option<Revision>,
        ctx: &ChangeContext,
    ) -> std::result::Result<DeployOutcome, StoreError> {
        let (labels, ctx) = (labels.to_vec(), ctx.clone());
        let inline = self.inner.inline_artifact_max_bytes;
        let sequence = self.inner.sequence.clone();
        self.inner
            .writer
            .write(true, move |c| {
                Box::pin(
                    async move { deploy(c, &sequence, inline, id, labels, revision, ctx).await },
                )
            })
            .await
    }

    async fn undeploy(
        &self,
        id: ApiId,
        label: &GatewayLabel,
        ctx: &ChangeContext,
    ) -> std::result::Result<i64, StoreError> {
        let (label, ctx) = (label.clone(), ctx.clone());
        let sequence = self.inner.sequence.clone();
        self.inner
            .writer
            .write(true, move |c| {
                Box::pin(async move { undeploy(c, &sequence, id, label, ctx).await })
            })
            .await
    }

    async fn delete_api(
        &self,
        id: ApiId,
        ctx: &ChangeContext,
    ) -> std::result::Result<(), StoreError> {
        let ctx = ctx.clone();
        let sequence = self.inner.sequence.clone();
        self.inner
            .writer
            .write(true, move |c| {
                Box::pin(async move { delete_api(c, &sequence, id, ctx).await })
            })
            .await
    }

    async fn api_status(
        &self,
        id: ApiId,
        stale_after: Duration,
    ) -> std::result::Result<Vec<NodeApiStatus>, StoreError> {
        Ok(self.status_of(id, stale_after).await?)
    }

    async fn gateways(
        &self,
        stale_after: Duration,
    ) -> std::result::Result<Vec<GatewaySummary>, StoreError> {
        Ok(self.gateway_summaries(stale_after).await?)
    }

    async fn receipt(
        &self,
        sequence: i64,
        stale_after: Duration,
    ) -> std::result::Result<Option<artisync_domain::receipt::Receipt>, StoreError> {
        Ok(crate::receipts::receipt(&self.inner.readers, sequence, stale_after).await?)
    }

    async fn propagation_samples(
        &self,
        after: chrono::DateTime<Utc>,
        limit: u32,
    ) -> std::result::Result<Vec<artisync_ports::receipts::PropagationSample>, StoreError> {
        Ok(crate::receipts::propagation_samples(&self.inner.readers, after, limit).await?)
    }

    async fn fleet(
        &self,
        stale_after: Duration,
    ) -> std::result::Result<artisync_domain::fleet::Fleet, StoreError> {
        Ok(crate::fleet::fleet(self, stale_after).await?)
    }
}
