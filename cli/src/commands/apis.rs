//! The commands on single APIs and on the fleet: `deploy`, `undeploy`,
//! `apis`, `gateways`, `status` and `export`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{Value, json};

use super::wait::{self, DEFAULT_TIMEOUT};
use super::{CommandError, parse_duration, resolve_api};
use crate::connection::{Publisher, encode};
use crate::output::{Format, Table, cell, print_json};

#[derive(Debug, Clone, clap::Args)]
pub struct DeployArgs {
    /// The API: its id or name:version.
    pub api: String,
    /// Gateway labels to deploy to.
    #[arg(long = "label", short = 'l', required = true)]
    pub labels: Vec<String>,
    /// The revision [default: the latest].
    #[arg(long)]
    pub revision: Option<i64>,
    /// Wait until every live node of the labels applied it.
    #[arg(long)]
    pub wait: bool,
    /// How long `--wait` waits (exit 3 after it).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
}

pub async fn deploy(
    publisher: &Publisher,
    args: DeployArgs,
    format: Format,
) -> Result<(), CommandError> {
    let api = resolve_api(publisher, &args.api).await?;
    let id = cell(&api["id"]);
    let mut body = json!({ "labels": args.labels });
    if let Some(revision) = args.revision {
        body["revision"] = json!(revision);
    }
    let outcome = publisher
        .call(
            publisher
                .request(
                    Method::POST,
                    &format!("/api/v1/apis/{}/deployments", encode(&id)),
                )
                .json(&body),
            &format!("deploy {}", args.api),
        )
        .await?;
    match format {
        Format::Json if !args.wait => print_json(&outcome),
        Format::Json => {}
        Format::Table => println!(
            "{}:{} revision {}: deployed to {} (change {}){}",
            cell(&api["name"]),
            cell(&api["version"]),
            cell(&outcome["revision"]),
            match outcome["changedLabels"].as_array() {
                Some(l) if !l.is_empty() => cell(&outcome["changedLabels"]),
                _ => "no label (already there)".to_owned(),
            },
            cell(&outcome["sequence"]),
            match outcome["unchangedLabels"].as_array() {
                Some(l) if !l.is_empty() =>
                    format!("; already on {}", cell(&outcome["unchangedLabels"])),
                _ => String::new(),
            },
        ),
    }
    if args.wait {
        let sequences: Vec<i64> = match outcome["sequence"].as_i64() {
            Some(sequence) => vec![sequence],
            // Nothing changed: wait for the deployments already there.
            None => api["deployments"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|d| args.labels.iter().any(|l| d["label"] == l.as_str()))
                .filter_map(|d| d["sequence"].as_i64())
                .collect(),
        };
        return wait::for_changes(
            publisher,
            &sequences,
            args.timeout,
            format,
            Some(json!({ "deployment": outcome })),
        )
        .await;
    }
    Ok(())
}

#[derive(Debug, Clone, clap::Args)]
pub struct UndeployArgs {
    /// The API: its id or name:version.
    pub api: String,
    /// The gateway label to remove it from.
    #[arg(long, short = 'l')]
    pub label: String,
    /// Wait until every live node of the label removed it.
    #[arg(long)]
    pub wait: bool,
}

pub async fn undeploy(
    publisher: &Publisher,
    args: UndeployArgs,
    format: Format,
) -> Result<(), CommandError> {
    let api = resolve_api(publisher, &args.api).await?;
    let id = cell(&api["id"]);
    let outcome = publisher
        .call(
            publisher.request(
                Method::DELETE,
                &format!(
                    "/api/v1/apis/{}/deployments/{}",
                    encode(&id),
                    encode(&args.label)
                ),
            ),
            &format!("undeploy {} from {:?}", args.api, args.label),
        )
        .await?;
    match format {
        Format::Json if !args.wait => print_json(&outcome),
        Format::Json => {}
        Format::Table => println!(
            "{}:{}: removed from {:?} (change {})",
            cell(&api["name"]),
            cell(&api["version"]),
            args.label,
            cell(&outcome["sequence"])
        ),
    }
    if args.wait
        && let Some(sequence) = outcome["sequence"].as_i64()
    {
        return wait::for_changes(
            publisher,
            &[sequence],
            DEFAULT_TIMEOUT,
            format,
            Some(json!({ "undeployment": outcome })),
        )
        .await;
    }
    Ok(())
}

pub async fn apis(publisher: &Publisher, format: Format) -> Result<(), CommandError> {
    let list = publisher.get("/api/v1/apis", "list APIs").await?;
    if format == Format::Json {
        print_json(&list);
        return Ok(());
    }
    let mut table = Table::new(&["ID", "NAME", "VERSION", "CONTEXT", "REVISION", "UPDATED"]);
    for api in list["apis"].as_array().into_iter().flatten() {
        table.row(vec![
            cell(&api["id"]),
            cell(&api["name"]),
            cell(&api["version"]),
            cell(&api["context"]),
            cell(&api["revision"]),
            cell(&api["updatedAt"]),
        ]);
    }
    if table.is_empty() {
        println!("no API is published");
    } else {
        table.print();
    }
    Ok(())
}

/// "3s ago" from an RFC 3339 time.
fn age(value: &Value, now: DateTime<Utc>) -> String {
    value
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| {
            let ms = (now - t.with_timezone(&Utc)).num_milliseconds().max(0);
            if ms < 10_000 {
                format!("{:.1}s ago", ms as f64 / 1000.0)
            } else {
                format!("{}s ago", ms / 1000)
            }
        })
        .unwrap_or_else(|| "-".to_owned())
}

pub async fn gateways(publisher: &Publisher, format: Format) -> Result<(), CommandError> {
    let list = publisher
        .get("/api/v1/gateways", "list gateway nodes")
        .await?;
    if format == Format::Json {
        print_json(&list);
        return Ok(());
    }
    let now = Utc::now();
    let mut table = Table::new(&[
        "NODE",
        "LABELS",
        "STATE",
        "HEARTBEAT",
        "IN SYNC",
        "BEHIND",
        "FAILED",
        "BACKLOG",
    ]);
    for node in list["gateways"].as_array().into_iter().flatten() {
        let state = if node["stale"] == true {
            "offline"
        } else if node["ready"] == true {
            "ready"
        } else {
            "starting"
        };
        table.row(vec![
            cell(&node["nodeId"]),
            cell(&node["labels"]),
            state.to_owned(),
            age(&node["lastHeartbeat"], now),
            cell(&node["apisInSync"]),
            cell(&node["apisBehind"]),
            cell(&node["apisFailed"]),
            cell(&node["details"]["queueBacklog"]),
        ]);
    }
    if table.is_empty() {
        println!("no gateway node has reported yet");
    } else {
        table.print();
    }
    Ok(())
}

#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// One API (its id or name:version) [default: every API].
    pub api: Option<String>,
}

pub async fn status(
    publisher: &Publisher,
    args: StatusArgs,
    format: Format,
) -> Result<(), CommandError> {
    let mut rows: Vec<(String, Value)> = Vec::new();
    let answer = match &args.api {
        Some(api) => {
            let detail = resolve_api(publisher, api).await?;
            let id = cell(&detail["id"]);
            let status = publisher
                .get(
                    &format!("/api/v1/apis/{}/status", encode(&id)),
                    &format!("status of {api}"),
                )
                .await?;
            let name = format!("{}:{}", cell(&detail["name"]), cell(&detail["version"]));
            for node in status["nodes"].as_array().into_iter().flatten() {
                rows.push((name.clone(), node.clone()));
            }
            json!({ "api": detail, "nodes": status["nodes"] })
        }
        None => {
            let fleet = publisher.get("/api/v1/fleet", "read the fleet").await?;
            for api in fleet["apis"].as_array().into_iter().flatten() {
                let name = format!("{}:{}", cell(&api["name"]), cell(&api["version"]));
                for node in api["nodes"].as_array().into_iter().flatten() {
                    rows.push((name.clone(), node.clone()));
                }
            }
            fleet
        }
    };
    if format == Format::Json {
        print_json(&answer);
        return Ok(());
    }
    let mut table = Table::new(&[
        "API", "NODE", "DESIRED", "APPLIED", "STATUS", "IN SYNC", "ERROR",
    ]);
    for (api, node) in &rows {
        let in_sync = match (&node["inSync"], node["state"].as_str()) {
            (Value::Bool(b), _) => if *b { "yes" } else { "no" }.to_owned(),
            (_, Some(state)) => state.to_owned(),
            _ => "-".to_owned(),
        };
        table.row(vec![
            api.clone(),
            cell(&node["nodeId"]),
            cell(&node["desiredRevision"]),
            cell(&node["appliedRevision"]),
            cell(&node["status"]),
            in_sync,
            cell(&node["error"]),
        ]);
    }
    if table.is_empty() {
        println!("no node runs or should run any API");
    } else {
        table.print();
    }
    Ok(())
}

#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// Directory to write one `<name>_<version>.xml` per API into.
    pub dir: PathBuf,
}

/// A file name from an API's name and version that cannot leave the
/// directory or clash with another platform's rules.
pub fn file_name(name: &str, version: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .collect::<String>()
            .trim_matches('.')
            .to_owned()
    };
    let name = clean(name);
    let name = if name.is_empty() {
        "api".to_owned()
    } else {
        name
    };
    match clean(version) {
        v if v.is_empty() => format!("{name}.xml"),
        v => format!("{name}_{v}.xml"),
    }
}

/// Writes through a temporary file and a rename, so that a reader never
/// sees half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CommandError> {
    let tmp = path.with_extension("xml.tmp");
    std::fs::write(&tmp, bytes).map_err(|e| CommandError::file(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| CommandError::file(path, e))
}

pub async fn export(
    publisher: &Publisher,
    args: ExportArgs,
    format: Format,
) -> Result<(), CommandError> {
    std::fs::create_dir_all(&args.dir).map_err(|e| CommandError::file(&args.dir, e))?;
    let list = publisher.get("/api/v1/apis", "list APIs").await?;
    let mut written = Vec::new();
    let mut used = std::collections::HashSet::new();
    for api in list["apis"].as_array().into_iter().flatten() {
        let id = cell(&api["id"]);
        let xml = publisher
            .get_bytes(
                &format!("/api/v1/apis/{}/artifact", encode(&id)),
                &format!("artifact of {id}"),
            )
            .await?;
        let mut name = file_name(&cell(&api["name"]), api["version"].as_str().unwrap_or(""));
        if !used.insert(name.clone()) {
            name = format!("{}_{id}.xml", name.trim_end_matches(".xml"));
            used.insert(name.clone());
        }
        let path = args.dir.join(&name);
        write_atomically(&path, &xml)?;
        written.push(json!({
            "id": id, "name": api["name"], "version": api["version"],
            "revision": api["revision"], "sha256": api["sha256"], "file": path.display().to_string(),
        }));
    }
    match format {
        Format::Json => print_json(&json!({ "exported": written })),
        Format::Table => {
            let mut table = Table::new(&["FILE", "NAME", "VERSION", "REVISION", "SHA256"]);
            for w in &written {
                table.row(vec![
                    cell(&w["file"]),
                    cell(&w["name"]),
                    cell(&w["version"]),
                    cell(&w["revision"]),
                    cell(&w["sha256"]),
                ]);
            }
            table.print();
            println!(
                "{} API(s) exported to {}",
                written.len(),
                args.dir.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::file_name;

    #[test]
    fn export_file_names_stay_in_their_directory() {
        assert_eq!(
            file_name("PizzaShackAPI", "1.0.0"),
            "PizzaShackAPI_1.0.0.xml"
        );
        assert_eq!(file_name("../../etc/passwd", ""), "_.._etc_passwd.xml");
        assert_eq!(file_name("..", "/"), "api__.xml");
        assert_eq!(file_name("a b:c", "v1"), "a_b_c_v1.xml");
    }
}
