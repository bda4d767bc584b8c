//! `apply`, `diff` and `publish`: many artifacts through one streamed
//! `POST /api/v1/apply`. Files are read one at a time as the request
//! body is sent, and results are printed as they come back.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use serde_json::{Value, json};

use super::wait;
use super::{CommandError, parse_duration};
use crate::connection::{Publisher, encode};
use crate::output::{Format, Table, cell, interactive, print_json};

/// One artifact to apply: a file, read when its line is sent, or a
/// document built in memory (`import wso2` bundles).
#[derive(Debug, Clone)]
pub enum Source {
    File(PathBuf),
    Inline { origin: String, xml: String },
}

impl Source {
    pub fn origin(&self) -> String {
        match self {
            Source::File(path) => path.display().to_string(),
            Source::Inline { origin, .. } => origin.clone(),
        }
    }

    fn read(&self) -> Result<String, CommandError> {
        match self {
            Source::File(path) => {
                let bytes = std::fs::read(path).map_err(|e| CommandError::file(path, e))?;
                String::from_utf8(bytes).map_err(|_| CommandError::file(path, "is not UTF-8 text"))
            }
            Source::Inline { xml, .. } => Ok(xml.clone()),
        }
    }
}

/// Every `*.xml` under the paths (directories recursively), in a stable
/// order.
pub fn file_sources(paths: &[PathBuf]) -> Result<Vec<Source>, CommandError> {
    let mut files = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|e| CommandError::file(path, e))?;
        if meta.is_dir() {
            let mut found = Vec::new();
            let mut dirs = vec![path.clone()];
            while let Some(dir) = dirs.pop() {
                for entry in std::fs::read_dir(&dir).map_err(|e| CommandError::file(&dir, e))? {
                    let entry = entry.map_err(|e| CommandError::file(&dir, e))?;
                    let p = entry.path();
                    let kind = entry.file_type().map_err(|e| CommandError::file(&p, e))?;
                    if kind.is_dir() {
                        dirs.push(p);
                    } else if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("xml")) {
                        found.push(p);
                    }
                }
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    if files.is_empty() {
        return Err(CommandError::Usage(
            "no artifact found: give XML files or directories that hold *.xml".to_owned(),
        ));
    }
    Ok(files.into_iter().map(Source::File).collect())
}

/// What one `POST /api/v1/apply` answered.
pub struct Applied {
    pub results: Vec<Value>,
    pub summary: Value,
}

/// Streams `sources` to `POST /api/v1/apply` and collects the answer.
pub async fn call(
    publisher: &Publisher,
    sources: &Arc<[Source]>,
    labels: &[String],
    prune: Option<&str>,
    dry_run: bool,
    progress: Option<&ProgressBar>,
) -> Result<Applied, CommandError> {
    let mut query = vec![format!("dryRun={dry_run}")];
    if let Some(label) = prune {
        query.push("prune=true".to_owned());
        query.push(format!("label={}", encode(label)));
    }
    let labels: Arc<[String]> = labels.into();
    let lines = futures_util::stream::iter(0..sources.len()).map({
        let sources = Arc::clone(sources);
        move |i| {
            let xml = sources[i].read().map_err(std::io::Error::other)?;
            let mut line = serde_json::to_vec(&json!({ "artifact": xml, "labels": &*labels }))
                .map_err(std::io::Error::other)?;
            line.push(b'\n');
            Ok::<_, std::io::Error>(line)
        }
    });
    let response = publisher
        .request(Method::POST, &format!("/api/v1/apply?{}", query.join("&")))
        .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
        .body(reqwest::Body::wrap_stream(lines))
        .send()
        .await
        .map_err(|e| CommandError::transport("apply", &publisher.base, e))?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        return Err(CommandError::from_answer("apply", status, &text));
    }
    let mut body = response.bytes_stream();
    let mut buffer = Vec::new();
    let mut results = Vec::new();
    let mut summary = Value::Null;
    let handle = |line: &[u8], results: &mut Vec<Value>, summary: &mut Value| {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let value: Value = serde_json::from_slice(line).unwrap_or_else(
            |_| json!({"result": "error", "message": String::from_utf8_lossy(line)}),
        );
        if value.get("summary").is_some() {
            *summary = value["summary"].clone();
        } else {
            if let Some(bar) = progress {
                bar.inc(1);
            }
            results.push(value);
        }
    };
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| CommandError::transport("apply", &publisher.base, e))?;
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            handle(&line, &mut results, &mut summary);
        }
    }
    handle(&buffer, &mut results, &mut summary);
    if summary.is_null() {
        return Err(CommandError::Failed(format!(
            "the apply answer ended without its summary after {} result(s): the publisher stopped mid-way; \
             what it answered for is applied, run the command again for the rest",
            results.len()
        )));
    }
    Ok(Applied { results, summary })
}

fn bar(len: usize, message: &'static str) -> Option<ProgressBar> {
    if !interactive() {
        return None;
    }
    let bar = ProgressBar::new(len as u64);
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec})") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message);
    Some(bar)
}

/// The file a result line came from.
fn origin(result: &Value, sources: &[Source]) -> String {
    result["line"]
        .as_u64()
        .and_then(|n| sources.get(usize::try_from(n).ok()?.checked_sub(1)?))
        .map(Source::origin)
        .unwrap_or_else(|| "-".to_owned())
}

impl Applied {
    fn to_json(&self) -> Value {
        json!({ "results": self.results, "summary": self.summary })
    }
}

pub fn print_applied(
    applied: &Applied,
    sources: &[Source],
    format: Format,
    heading: &str,
    extra: Option<Value>,
) {
    if format == Format::Json {
        print_json(&wait::merged(applied.to_json(), extra));
        return;
    }
    let mut table = Table::new(&["ACTION", "NAME", "VERSION", "REVISION", "FROM", "DETAIL"]);
    for r in &applied.results {
        let detail = if r["result"] == "error" {
            format!("{} {}", cell(&r["code"]), cell(&r["message"]))
        } else {
            match r["sequence"].as_i64() {
                Some(s) => format!("change {s}"),
                None => String::new(),
            }
        };
        table.row(vec![
            cell(&r["result"]),
            cell(&r["name"]),
            cell(&r["version"]),
            cell(&r["revision"]),
            origin(r, sources),
            detail,
        ]);
    }
    println!("{heading}");
    table.print();
    let s = &applied.summary;
    println!(
        "{} created, {} updated, {} unchanged, {} removed, {} error(s){}",
        cell(&s["created"]),
        cell(&s["updated"]),
        cell(&s["unchanged"]),
        cell(&s["removed"]),
        cell(&s["errors"]),
        match s["pruneSkipped"].as_str() {
            Some(why) => format!("; prune skipped: {why}"),
            None => String::new(),
        }
    );
}

fn failures(applied: &Applied) -> Result<(), CommandError> {
    let errors = applied.summary["errors"].as_u64().unwrap_or(0);
    if errors == 0 {
        return Ok(());
    }
    Err(CommandError::Failed(format!(
        "{errors} change(s) failed (see above)"
    )))
}

fn sequences(applied: &Applied) -> Vec<i64> {
    applied
        .results
        .iter()
        .filter_map(|r| r["sequence"].as_i64())
        .collect()
}

#[derive(Debug, Clone, clap::Args)]
pub struct ApplyArgs {
    /// Artifact files, or directories of *.xml.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// The gateway label to make equal to the files.
    #[arg(long, short = 'l')]
    pub label: String,
    /// Also undeploy from the label what the files do not name.
    #[arg(long)]
    pub prune: bool,
    /// Show the plan only.
    #[arg(long)]
    pub dry_run: bool,
    /// Wait until every live node of the label applied the changes.
    #[arg(long)]
    pub wait: bool,
    /// How long `--wait` waits (exit 3 after it).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// Plans, shows the plan, then carries it out.
pub async fn apply(
    publisher: &Publisher,
    args: ApplyArgs,
    format: Format,
) -> Result<(), CommandError> {
    let sources: Arc<[Source]> = file_sources(&args.paths)?.into();
    let target = Target {
        label: args.label,
        prune: args.prune,
        dry_run: args.dry_run,
        wait_for: args.wait.then_some(args.timeout),
    };
    apply_sources(publisher, &sources, &target, format, None).await
}

/// What `apply` makes of a label.
#[derive(Debug, Clone)]
pub struct Target {
    pub label: String,
    /// Undeploy from the label what the sources do not name.
    pub prune: bool,
    /// Show the plan only.
    pub dry_run: bool,
    /// Wait this long for the nodes to apply the changes.
    pub wait_for: Option<Duration>,
}

pub async fn apply_sources(
    publisher: &Publisher,
    sources: &Arc<[Source]>,
    target: &Target,
    format: Format,
    extra: Option<Value>,
) -> Result<(), CommandError> {
    let (label, dry_run, wait_for) = (target.label.as_str(), target.dry_run, target.wait_for);
    let prune = target.prune;
    let labels = [label.to_owned()];
    let prune = prune.then_some(label);
    let plan = call(publisher, sources, &labels, prune, true, None).await?;
    let changes = ["created", "updated", "removed"]
        .iter()
        .map(|k| plan.summary[*k].as_u64().unwrap_or(0))
        .sum::<u64>();
    let heading = format!("plan for label {label:?}:");
    if format == Format::Table {
        print_applied(&plan, sources, format, &heading, None);
    } else if dry_run || changes == 0 {
        print_applied(&plan, sources, format, &heading, extra.clone());
    }
    if dry_run {
        return failures(&plan);
    }
    if changes == 0 {
        if format == Format::Table {
            println!("nothing to change");
        }
        return failures(&plan);
    }
    let progress = bar(sources.len(), "applying");
    let applied = call(publisher, sources, &labels, prune, false, progress.as_ref()).await?;
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    finish_applied(
        publisher, &applied, sources, format, "applied:", wait_for, extra,
    )
    .await
}

/// Prints what was applied, then waits for it with `wait_for`; in JSON,
/// one document holds both.
async fn finish_applied(
    publisher: &Publisher,
    applied: &Applied,
    sources: &[Source],
    format: Format,
    heading: &str,
    wait_for: Option<Duration>,
    extra: Option<Value>,
) -> Result<(), CommandError> {
    let waiting = wait_for.is_some() && applied.summary["errors"].as_u64() == Some(0);
    if format == Format::Table || !waiting {
        print_applied(applied, sources, format, heading, extra.clone());
    }
    failures(applied)?;
    if let Some(timeout) = wait_for {
        let extra = (format == Format::Json).then(|| wait::merged(applied.to_json(), extra));
        return wait::for_changes(publisher, &sequences(applied), timeout, format, extra).await;
    }
    Ok(())
}

#[derive(Debug, Clone, clap::Args)]
pub struct DiffArgs {
    /// Artifact files, or directories of *.xml.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// The gateway label to compare with.
    #[arg(long, short = 'l')]
    pub label: String,
    /// Also show what `apply --prune` would remove.
    #[arg(long)]
    pub prune: bool,
}

/// The plan only: changes nothing.
pub async fn diff(
    publisher: &Publisher,
    args: DiffArgs,
    format: Format,
) -> Result<(), CommandError> {
    let sources: Arc<[Source]> = file_sources(&args.paths)?.into();
    let labels = [args.label.clone()];
    let plan = call(
        publisher,
        &sources,
        &labels,
        args.prune.then_some(args.label.as_str()),
        true,
        None,
    )
    .await?;
    print_applied(
        &plan,
        &sources,
        format,
        &format!("plan for label {:?}:", args.label),
        None,
    );
    failures(&plan)
}

#[derive(Debug, Clone, clap::Args)]
pub struct PublishArgs {
    /// Artifact files, or directories of *.xml.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Deploy each API to these labels.
    #[arg(long = "label", short = 'l')]
    pub labels: Vec<String>,
    /// Wait until every live node of the labels applied them.
    #[arg(long)]
    pub wait: bool,
    /// How long `--wait` waits (exit 3 after it).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// Creates or updates each API (matched by name and version), and
/// deploys it with `--label`.
pub async fn publish(
    publisher: &Publisher,
    args: PublishArgs,
    format: Format,
) -> Result<(), CommandError> {
    let sources: Arc<[Source]> = file_sources(&args.files)?.into();
    let progress = bar(sources.len(), "publishing");
    let applied = call(
        publisher,
        &sources,
        &args.labels,
        None,
        false,
        progress.as_ref(),
    )
    .await?;
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    if args.wait && args.labels.is_empty() {
        eprintln!("--wait without --label: nothing was deployed, so there is nothing to wait for");
    }
    let wait_for = (args.wait && !args.labels.is_empty()).then_some(args.timeout);
    finish_applied(
        publisher,
        &applied,
        &sources,
        format,
        "published:",
        wait_for,
        None,
    )
    .await
}
