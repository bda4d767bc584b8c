//! `artisync wait` and every `--wait`: follow the receipts of changes
//! until every live node of their labels applied them, one failed, or the
//! time is up.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::{CommandError, parse_duration, resolve_api};
use crate::connection::Publisher;
use crate::output::{Format, Table, cell, print_json};

#[derive(Debug, Clone, clap::Args)]
pub struct WaitArgs {
    /// The API: its id or name:version.
    pub api: String,
    /// Wait for this revision (or a later one) [default: what is deployed].
    #[arg(long)]
    pub revision: Option<i64>,
    /// Only these labels [default: every label the API is deployed on].
    #[arg(long = "label", short = 'l')]
    pub labels: Vec<String>,
    /// Give up after this long (exit 3).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// How long `--wait` waits unless told.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(
    publisher: &Publisher,
    args: WaitArgs,
    format: Format,
) -> Result<(), CommandError> {
    let api = resolve_api(publisher, &args.api).await?;
    let name = format!("{}:{}", cell(&api["name"]), cell(&api["version"]));
    let deployments: Vec<&Value> = api["deployments"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let mut sequences = Vec::new();
    let chosen: Vec<&Value> = if args.labels.is_empty() {
        deployments.clone()
    } else {
        let mut chosen = Vec::new();
        for label in &args.labels {
            match deployments.iter().find(|d| d["label"] == label.as_str()) {
                Some(d) => chosen.push(*d),
                None => {
                    return Err(CommandError::Failed(format!(
                        "{name} is not deployed on label {label:?}"
                    )));
                }
            }
        }
        chosen
    };
    if chosen.is_empty() {
        return Err(CommandError::Failed(format!(
            "{name} is not deployed on any label"
        )));
    }
    for d in chosen {
        let deployed = d["revision"].as_i64().unwrap_or(0);
        if let Some(wanted) = args.revision
            && deployed < wanted
        {
            return Err(CommandError::Failed(format!(
                "revision {wanted} of {name} is not deployed on {}: it has revision {deployed}",
                cell(&d["label"])
            )));
        }
        if let Some(sequence) = d["sequence"].as_i64()
            && !sequences.contains(&sequence)
        {
            sequences.push(sequence);
        }
    }
    for_changes(publisher, &sequences, args.timeout, format, None).await
}

/// `extra`'s fields joined with `value`'s (both objects), for one JSON
/// document per command.
pub fn merged(mut value: Value, extra: Option<Value>) -> Value {
    if let (Some(target), Some(Value::Object(fields))) = (value.as_object_mut(), extra) {
        for (k, v) in fields {
            target.insert(k, v);
        }
    }
    value
}

/// Waits for the receipts of `sequences`, prints them, and ends as §12
/// says: all applied, a node failed (exit 1), or timed out (exit 3).
pub async fn for_changes(
    publisher: &Publisher,
    sequences: &[i64],
    timeout: Duration,
    format: Format,
    extra: Option<Value>,
) -> Result<(), CommandError> {
    let deadline = Instant::now() + timeout;
    let mut receipts = Vec::with_capacity(sequences.len());
    for sequence in sequences {
        let receipt = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // The publisher answers as soon as nothing is pending, and
            // waits at most a minute per call.
            let wait_ms = left.as_millis().min(60_000);
            let receipt = publisher
                .get(
                    &format!("/api/v1/changes/{sequence}?waitMs={wait_ms}"),
                    &format!("receipt of change {sequence}"),
                )
                .await?;
            if receipt["summary"]["complete"] == true || Instant::now() >= deadline {
                break receipt;
            }
        };
        receipts.push(receipt);
    }
    let mut failed = Vec::new();
    let mut pending = Vec::new();
    let mut offline = Vec::new();
    for receipt in &receipts {
        for node in receipt["nodes"].as_array().into_iter().flatten() {
            let who = format!(
                "{} (change {}, {}:{} revision {})",
                cell(&node["nodeId"]),
                cell(&receipt["sequence"]),
                cell(&receipt["name"]),
                cell(&receipt["version"]),
                cell(&receipt["revision"])
            );
            match node["state"].as_str() {
                Some("FAILED") => failed.push(format!("{who}: {}", cell(&node["error"]))),
                Some("PENDING") => pending.push(who),
                Some("OFFLINE") => offline.push(who),
                _ => {}
            }
        }
    }
    let result = if !failed.is_empty() {
        "failed"
    } else if !pending.is_empty() {
        "timeout"
    } else {
        "applied"
    };
    match format {
        Format::Json => print_json(&merged(
            json!({ "result": result, "receipts": receipts }),
            extra,
        )),
        Format::Table => print_receipts(&receipts),
    }
    for who in &offline {
        eprintln!("warning: {who} is offline (no recent heartbeat) and was not waited for");
    }
    if !failed.is_empty() {
        return Err(CommandError::Failed(format!(
            "{} node(s) failed to apply:\n  {}",
            failed.len(),
            failed.join("\n  ")
        )));
    }
    if !pending.is_empty() {
        return Err(CommandError::Timeout(format!(
            "timed out after {timeout:?}; still pending on {}",
            pending.join(", ")
        )));
    }
    Ok(())
}

fn print_receipts(receipts: &[Value]) {
    for receipt in receipts {
        println!(
            "change {}: {} {}:{} revision {} on {}",
            cell(&receipt["sequence"]),
            cell(&receipt["kind"]).to_lowercase(),
            cell(&receipt["name"]),
            cell(&receipt["version"]),
            cell(&receipt["revision"]),
            cell(&receipt["labels"]),
        );
        let mut table = Table::new(&["NODE", "STATE", "APPLIED", "LATENCY", "ERROR"]);
        for node in receipt["nodes"].as_array().into_iter().flatten() {
            table.row(vec![
                cell(&node["nodeId"]),
                cell(&node["state"]),
                cell(&node["appliedRevision"]),
                node["latencyMs"]
                    .as_f64()
                    .map(|ms| format!("{ms:.1} ms"))
                    .unwrap_or_else(|| "-".to_owned()),
                cell(&node["error"]),
            ]);
        }
        if table.is_empty() {
            println!("  (no gateway node serves these labels)");
        } else {
            table.print();
        }
    }
}
