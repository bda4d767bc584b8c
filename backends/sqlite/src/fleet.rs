//! The fleet on SQLite: whole-table reads in one read transaction instead
//! of two reads per API.

use std::time::Duration;

use artisync_domain::api::DeploymentInfo;
use artisync_domain::fleet::Fleet;
use artisync_ports::fleet::{self, FleetNode, FleetReport, FleetRows};
use artisync_ports::rules;
use chrono::Utc;
use sqlx::Row;

use crate::SqliteBackend;
use crate::artifacts::{SUMMARY_SELECT, api_id, labels_of, summary_from_row};
use crate::error::{BACKEND, Result};
use crate::time::from_micros;

pub(crate) async fn fleet(store: &SqliteBackend, stale_after: Duration) -> Result<Fleet> {
    let summaries = store.gateway_summaries(stale_after).await?;
    let mut tx = store.inner.readers.begin().await?;
    let apis = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{SUMMARY_SELECT} ORDER BY a.name, a.version"
    )))
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(summary_from_row)
    .collect::<Result<Vec<_>>>()?;
    let deployments =
        sqlx::query("SELECT api_id, label, revision, sequence, deployed_at FROM deployments")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| {
                Ok((
                    api_id(r.try_get("api_id")?)?,
                    DeploymentInfo {
                        label: rules::stored_label(BACKEND, r.try_get::<&str, _>("label")?)?,
                        revision: rules::stored_revision(BACKEND, r.try_get("revision")?)?,
                        sequence: r.try_get("sequence")?,
                        deployed_at: from_micros(r.try_get("deployed_at")?),
                    },
                ))
            })
            .collect::<Result<Vec<_>>>()?;
    let nodes =
        sqlx::query("SELECT node_id, labels, last_heartbeat FROM gateway_nodes ORDER BY node_id")
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .map(|r| {
                Ok(FleetNode {
                    node_id: r.try_get("node_id")?,
                    labels: labels_of(r.try_get("labels")?)?,
                    last_heartbeat: from_micros(r.try_get("last_heartbeat")?),
                })
            })
            .collect::<Result<Vec<_>>>()?;
    let reports = sqlx::query(
        "SELECT node_id, api_id, revision, sha256, status, error, attempts, updated_at
         FROM gateway_api_states",
    )
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(|r| {
        Ok(FleetReport {
            node_id: r.try_get("node_id")?,
            api_id: api_id(r.try_get("api_id")?)?,
            revision: r.try_get("revision")?,
            sha256: r.try_get("sha256")?,
            status: r.try_get("status")?,
            error: r.try_get("error")?,
            attempts: r.try_get("attempts")?,
            updated_at: from_micros(r.try_get("updated_at")?),
        })
    })
    .collect::<Result<Vec<_>>>()?;
    tx.commit().await?;
    Ok(fleet::assemble(
        FleetRows {
            summaries,
            apis,
            deployments,
            nodes,
            reports,
            now: Utc::now(),
        },
        stale_after,
    )?)
}
