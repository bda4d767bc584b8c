//! The fleet on MySQL: five whole-table reads instead of two per API, as
//! on PostgreSQL; the four after the gateway summaries read one snapshot.

use std::time::Duration;

use artisync_domain::api::DeploymentInfo;
use artisync_domain::fleet::Fleet;
use artisync_ports::fleet::{self, FleetNode, FleetReport, FleetRows};
use artisync_ports::rules;
use chrono::{DateTime, Utc};
use sqlx::{Connection, MySqlPool, Row};

use crate::artifacts::{SUMMARY_SELECT, api_id, gateways, stored_labels, summary_from_row};
use crate::error::{BACKEND, Result};

pub(crate) async fn fleet(pool: &MySqlPool, stale_after: Duration) -> Result<Fleet> {
    let summaries = gateways(pool, stale_after).await?;
    // The APIs, their deployments and the reports from one snapshot.
    let mut conn = pool.acquire().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *conn)
        .await?;
    let mut tx = (*conn)
        .begin_with("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        .await?;
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
                        revision: rules::stored_revision(
                            BACKEND,
                            r.try_get::<i32, _>("revision")?.into(),
                        )?,
                        sequence: r.try_get("sequence")?,
                        deployed_at: r.try_get("deployed_at")?,
                    },
                ))
            })
            .collect::<Result<Vec<_>>>()?;
    let node_rows = sqlx::query(
        "SELECT node_id, labels, last_heartbeat, UTC_TIMESTAMP(6) AS db_now
         FROM gateway_nodes ORDER BY node_id",
    )
    .fetch_all(&mut *tx)
    .await?;
    let now: DateTime<Utc> = match node_rows.first() {
        Some(row) => row.try_get("db_now")?,
        None => Utc::now(),
    };
    let nodes = node_rows
        .iter()
        .map(|r| {
            Ok(FleetNode {
                node_id: r.try_get("node_id")?,
                labels: stored_labels(r.try_get("labels")?)?,
                last_heartbeat: r.try_get("last_heartbeat")?,
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
            updated_at: r.try_get("updated_at")?,
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
            now,
        },
        stale_after,
    )?)
}
