//! `POST /api/v1/apply` (DESIGN.md §12): many APIs in one streamed call.
//! NDJSON in, one `{"artifact", "labels"}` a line; NDJSON out, one result a
//! line as each change commits with its events, then a summary. Lines are
//! read, validated and answered as they arrive, so neither side holds the
//! whole call in memory, and a bad line gets its own error while the rest
//! still apply.

use std::collections::HashSet;
use std::sync::Arc;

use artisync_domain::GatewayLabel;
use artisync_ports::artifacts::{ChangeContext, NewArtifact, UpdateOutcome};
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use utoipa::{IntoParams, ToSchema};

use super::handlers::{ErrorDoc, change_context, gateway_labels, new_artifact};
use super::{ApiError, ApiState};
use crate::metrics::Change;

/// Changes carried out at once; their answers still come in line order.
const IN_FLIGHT: usize = 16;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct ApplyQuery {
    /// Undeploy from `label` every API the call does not name (only when
    /// every line applied).
    #[serde(default)]
    prune: bool,
    /// The label that `prune` cleans.
    label: Option<String>,
    /// Plan only: answer what would happen and change nothing.
    #[serde(default)]
    dry_run: bool,
}

/// One line of the request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyLine {
    /// A Synapse `<api>` or `<definitions>` bundle.
    artifact: String,
    /// Labels to deploy the latest revision to (may be empty).
    #[serde(default)]
    labels: Vec<String>,
}

/// What one line (or one pruned API) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ApplyResult {
    Created,
    Updated,
    Unchanged,
    Removed,
    Error,
}

/// One line of the answer: a result with the API, or an error with the
/// codes of the single calls; the last line is `{"summary": ..}`.
#[derive(ToSchema)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
pub struct ApplyResultDoc {
    /// The request line (1-based); absent for pruned APIs.
    line: Option<usize>,
    result: ApplyResult,
    #[schema(format = Uuid)]
    id: Option<String>,
    name: Option<String>,
    version: Option<String>,
    revision: Option<u32>,
    sha256: Option<String>,
    labels: Vec<String>,
    /// The change number, when a deployment changed.
    sequence: Option<i64>,
    /// For errors: the HTTP status the single call would answer.
    code: Option<u16>,
    message: Option<String>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    lines: usize,
    created: usize,
    updated: usize,
    unchanged: usize,
    removed: usize,
    errors: usize,
    last_sequence: Option<i64>,
    dry_run: bool,
    pruned: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    prune_skipped: Option<String>,
}

impl Summary {
    fn count(&mut self, line: &Value) {
        match line["result"].as_str() {
            Some("created") => self.created += 1,
            Some("updated") => self.updated += 1,
            Some("unchanged") => self.unchanged += 1,
            Some("removed") => self.removed += 1,
            _ => self.errors += 1,
        }
        if let Some(seq) = line["sequence"].as_i64() {
            self.last_sequence = Some(self.last_sequence.map_or(seq, |s| s.max(seq)));
        }
    }
}

fn error_line(line: usize, e: &ApiError) -> Value {
    json!({
        "line": line,
        "result": ApplyResult::Error,
        "code": e.status.as_u16(),
        "message": e.message,
    })
}

/// Applies many APIs: creates or updates each (matched by name and
/// version), deploys it to its labels, and with `prune` undeploys from
/// `label` what the call does not name.
#[utoipa::path(post, path = "/api/v1/apply", tag = "apis", security(("bearer" = [])),
    params(ApplyQuery),
    request_body(content = ApplyLine, content_type = "application/x-ndjson", description = "One `{\"artifact\", \"labels\"}` a line"),
    responses(
        (status = 200, description = "One result a line, in request order, then `{\"summary\": {..}}`; a line that fails has its own error line", body = ApplyResultDoc, content_type = "application/x-ndjson"),
        (status = 400, description = "Bad query (prune without label, bad label)", body = ErrorDoc),
        (status = 413, description = "Larger than max_apply_bytes", body = ErrorDoc),
        (status = 422, description = "Unknown gateway label in the query", body = ErrorDoc),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorDoc),
    ))]
pub async fn apply(
    State(state): State<Arc<ApiState>>,
    Query(query): Query<ApplyQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let prune_label = match (&query.label, query.prune) {
        (Some(raw), _) => Some(
            gateway_labels(&state, std::slice::from_ref(raw))?
                .pop()
                .ok_or_else(|| ApiError::bad_request("label is empty"))?,
        ),
        (None, true) => {
            return Err(ApiError::bad_request(
                "prune=true needs label=L: the label to remove unnamed APIs from",
            ));
        }
        (None, false) => None,
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.max_apply_bytes) {
        return Err(too_large(state.max_apply_bytes));
    }
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let job = ApplyJob {
        state,
        ctx: change_context(&headers),
        dry_run: query.dry_run,
        prune: query.prune.then_some(prune_label).flatten(),
        out: tx,
    };
    let span = tracing::info_span!("apply", dry_run = query.dry_run, prune = query.prune);
    tokio::spawn(tracing::Instrument::instrument(job.run(body), span));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|bytes| (Ok::<_, std::convert::Infallible>(bytes), rx))
    });
    let mut response = Body::from_stream(stream).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(response)
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the apply body is larger than the limit of {limit} bytes (publisher.max_apply_bytes)"
        ),
    )
}

struct ApplyJob {
    state: Arc<ApiState>,
    ctx: ChangeContext,
    dry_run: bool,
    prune: Option<GatewayLabel>,
    out: mpsc::Sender<Bytes>,
}

/// The state of one apply call while its body is read.
struct Run {
    summary: Summary,
    /// (name, version) of every API a line named.
    named: HashSet<(String, String)>,
    /// Lines being carried out, answered in line order.
    pending: FuturesOrdered<CarryOut>,
    caller_gone: bool,
    /// Why reading stopped before the end of the body.
    truncated: Option<String>,
}

impl Run {
    /// Sends one answer line, counting it.
    async fn answer(&mut self, job: &ApplyJob, value: Value) {
        self.summary.count(&value);
        if !self.caller_gone && !job.send(&value).await {
            self.caller_gone = true;
        }
    }

    /// Sends every answer still pending, in order.
    async fn drain(&mut self, job: &ApplyJob) {
        while let Some(done) = self.pending.next().await {
            self.answer(job, done).await;
        }
    }

    /// Reads one line: starts its change, or answers its error after the
    /// lines before it.
    async fn line(&mut self, job: &Arc<ApplyJob>, item: Line, max_line: usize) {
        let error = match item {
            Line::Blank => return,
            Line::TooLong(line) => error_line(
                line,
                &ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("line {line} is longer than the limit of {max_line} bytes"),
                ),
            ),
            Line::BodyTooLarge(line) => {
                let e = too_large(job.state.max_apply_bytes);
                self.truncated = Some(e.message.clone());
                error_line(line, &e)
            }
            Line::Text(line, text) => match job.parse(line, &text, &mut self.named).await {
                Ok(parsed) => {
                    self.summary.lines += 1;
                    self.pending.push_back(carry_out(Arc::clone(job), parsed));
                    while self.pending.len() >= IN_FLIGHT {
                        if let Some(done) = self.pending.next().await {
                            self.answer(job, done).await;
                        }
                    }
                    return;
                }
                Err(e) => error_line(line, &e),
            },
        };
        self.summary.lines += 1;
        // Keep answers in line order: earlier lines first.
        self.drain(job).await;
        self.answer(job, error).await;
    }
}

type CarryOut = std::pin::Pin<Box<dyn std::future::Future<Output = Value> + Send>>;

/// A line ready for the store.
struct Parsed {
    line: usize,
    new: NewArtifact,
    warnings: Vec<String>,
    labels: Vec<GatewayLabel>,
}

impl ApplyJob {
    /// Sends one answer line; false when the caller has gone.
    async fn send(&self, value: &Value) -> bool {
        let mut bytes = serde_json::to_vec(value).unwrap_or_default();
        bytes.push(b'\n');
        self.out.send(Bytes::from(bytes)).await.is_ok()
    }

    async fn run(self, body: Body) {
        let job = Arc::new(self);
        let mut run = Run {
            summary: Summary {
                dry_run: job.dry_run,
                ..Summary::default()
            },
            named: HashSet::new(),
            pending: FuturesOrdered::new(),
            caller_gone: false,
            truncated: None,
        };
        let mut lines = LineReader::new(
            job.state.max_body_bytes.saturating_mul(2) + 64 * 1024,
            job.state.max_apply_bytes,
        );
        let mut stream = body.into_data_stream();
        'read: loop {
            let (items, last) = match stream.next().await {
                Some(Ok(chunk)) => (lines.push(&chunk), false),
                Some(Err(e)) => {
                    run.truncated = Some(format!("the request body broke off: {e}"));
                    break;
                }
                None => (lines.finish().into_iter().collect(), true),
            };
            for item in items {
                run.line(&job, item, lines.max_line).await;
                if run.caller_gone || run.truncated.is_some() {
                    break 'read;
                }
            }
            if last {
                break;
            }
        }
        // What was started commits whether or not the caller still listens.
        while let Some(done) = run.pending.next().await {
            run.answer(&job, done).await;
        }
        if run.caller_gone {
            tracing::warn!(
                lines = run.summary.lines,
                "apply: the caller went away; the lines read so far were applied, the rest was not read"
            );
            return;
        }
        let mut summary = run.summary;
        if let Some(label) = &job.prune {
            if let Some(reason) = &run.truncated {
                summary.prune_skipped = Some(format!("{reason}; nothing was removed"));
            } else if summary.errors > 0 {
                summary.prune_skipped = Some(format!(
                    "{} line(s) failed, so the call may not name everything it meant to; nothing was removed",
                    summary.errors
                ));
            } else {
                summary.pruned = true;
                for value in job.prune(label, &run.named).await {
                    summary.count(&value);
                    if !job.send(&value).await {
                        return;
                    }
                }
            }
        }
        tracing::info!(
            lines = summary.lines,
            created = summary.created,
            updated = summary.updated,
            unchanged = summary.unchanged,
            removed = summary.removed,
            errors = summary.errors,
            last_sequence = ?summary.last_sequence,
            "apply finished"
        );
        job.send(&json!({ "summary": summary })).await;
    }

    /// Validates one line; an API named twice in one call is an error (the
    /// second would race the first).
    async fn parse(
        &self,
        line: usize,
        text: &[u8],
        named: &mut HashSet<(String, String)>,
    ) -> Result<Parsed, ApiError> {
        let request: ApplyLine = serde_json::from_slice(text).map_err(|e| {
            ApiError::bad_request(format!(
                "line {line}: expected {{\"artifact\": \"<xml>\", \"labels\": [..]}}: {e}"
            ))
        })?;
        if request.artifact.len() > self.state.max_body_bytes {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "line {line}: the artifact is larger than the limit of {} bytes",
                    self.state.max_body_bytes
                ),
            ));
        }
        if request.artifact.trim().is_empty() {
            return Err(ApiError::bad_request(format!(
                "line {line}: the artifact is empty"
            )));
        }
        let labels = gateway_labels(&self.state, &request.labels)?;
        let (new, warnings) =
            new_artifact(&self.state, Bytes::from(request.artifact.into_bytes())).await?;
        if !named.insert((new.name.clone(), new.version.clone())) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "line {line}: API {}:{} is named more than once in this call",
                    new.name, new.version
                ),
            ));
        }
        Ok(Parsed {
            line,
            new,
            warnings,
            labels,
        })
    }

    async fn change(&self, p: Parsed) -> Result<Value, ApiError> {
        let store = &self.state.store;
        let (summary, mut result) = match store.find_api(&p.new.name, &p.new.version).await? {
            None => {
                let summary = store.create_api(p.new).await?;
                self.state.metrics.change(Change::Create);
                (summary, ApplyResult::Created)
            }
            Some(existing) => match store.update_api(existing.id, p.new).await? {
                UpdateOutcome::NewRevision(summary) => {
                    self.state.metrics.change(Change::Update);
                    (summary, ApplyResult::Updated)
                }
                UpdateOutcome::Unchanged(summary) => (summary, ApplyResult::Unchanged),
            },
        };
        let mut sequence = None;
        if !p.labels.is_empty() {
            let outcome = store.deploy(summary.id, &p.labels, None, &self.ctx).await?;
            if outcome.sequence.is_some() {
                self.state.metrics.change(Change::Deploy);
                sequence = outcome.sequence;
                if result == ApplyResult::Unchanged {
                    result = ApplyResult::Updated;
                }
            }
        }
        Ok(json!({
            "line": p.line,
            "result": result,
            "id": summary.id,
            "name": summary.name,
            "version": summary.version,
            "revision": summary.revision,
            "sha256": summary.sha256,
            "labels": p.labels,
            "sequence": sequence,
            "warnings": p.warnings,
        }))
    }

    async fn plan(&self, p: Parsed) -> Result<Value, ApiError> {
        let store = &self.state.store;
        let existing = store.find_api(&p.new.name, &p.new.version).await?;
        let (result, id, revision) = match &existing {
            None => (ApplyResult::Created, None, None),
            Some(api) if api.sha256 != p.new.sha256 => {
                (ApplyResult::Updated, Some(api.id), Some(api.revision))
            }
            Some(api) => {
                let detail = store.get_api(api.id).await?;
                let deployed = p.labels.iter().all(|label| {
                    detail
                        .deployments
                        .iter()
                        .any(|d| &d.label == label && d.revision == api.revision)
                });
                let result = if deployed {
                    ApplyResult::Unchanged
                } else {
                    ApplyResult::Updated
                };
                (result, Some(api.id), Some(api.revision))
            }
        };
        Ok(json!({
            "line": p.line,
            "result": result,
            "id": id,
            "name": p.new.name,
            "version": p.new.version,
            "revision": revision,
            "sha256": p.new.sha256,
            "labels": p.labels,
            "sequence": null,
            "warnings": p.warnings,
        }))
    }

    /// Undeploys from `label` every API the call did not name.
    async fn prune(&self, label: &GatewayLabel, named: &HashSet<(String, String)>) -> Vec<Value> {
        let store = &self.state.store;
        let apis = match store.list_apis().await {
            Ok(apis) => apis,
            Err(e) => {
                return vec![
                    json!({"line": null, "result": ApplyResult::Error, "code": artisync_http::store_status(&e).as_u16(), "message": format!("cannot list APIs to prune: {}", ApiError::from(e).message)}),
                ];
            }
        };
        let mut out = Vec::new();
        for api in apis {
            if named.contains(&(api.name.clone(), api.version.clone())) {
                continue;
            }
            let deployed = match store.get_api(api.id).await {
                Ok(detail) => detail.deployments.into_iter().find(|d| &d.label == label),
                Err(artisync_ports::StoreError::NotFound(_)) => None,
                Err(e) => {
                    out.push(prune_error(&api.name, &api.version, e));
                    continue;
                }
            };
            let Some(deployment) = deployed else {
                continue;
            };
            let sequence = if self.dry_run {
                None
            } else {
                match store.undeploy(api.id, label, &self.ctx).await {
                    Ok(sequence) => {
                        self.state.metrics.change(Change::Undeploy);
                        Some(sequence)
                    }
                    Err(artisync_ports::StoreError::NotFound(_)) => continue,
                    Err(e) => {
                        out.push(prune_error(&api.name, &api.version, e));
                        continue;
                    }
                }
            };
            out.push(json!({
                "line": null,
                "result": ApplyResult::Removed,
                "id": api.id,
                "name": api.name,
                "version": api.version,
                "revision": deployment.revision,
                "sha256": api.sha256,
                "labels": [label],
                "sequence": sequence,
            }));
        }
        out
    }
}

/// Carries out (or, in a dry run, plans) one line.
fn carry_out(job: Arc<ApplyJob>, parsed: Parsed) -> CarryOut {
    Box::pin(async move {
        let line = parsed.line;
        let outcome = if job.dry_run {
            job.plan(parsed).await
        } else {
            job.change(parsed).await
        };
        outcome.unwrap_or_else(|e| error_line(line, &e))
    })
}

fn prune_error(name: &str, version: &str, e: artisync_ports::StoreError) -> Value {
    let e = ApiError::from(e);
    json!({
        "line": null,
        "result": ApplyResult::Error,
        "name": name,
        "version": version,
        "code": e.status.as_u16(),
        "message": format!("cannot remove {name}:{version}: {}", e.message),
    })
}

/// What the line splitter found.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    Blank,
    Text(usize, Vec<u8>),
    /// The line is longer than the limit; it is skipped to its end.
    TooLong(usize),
    /// The body passed its limit inside this line; reading stops.
    BodyTooLarge(usize),
}

/// Splits a streamed body into lines without holding more than one line.
struct LineReader {
    max_line: usize,
    max_body: u64,
    read: u64,
    buffer: Vec<u8>,
    /// The current line is too long and is being skipped.
    skipping: bool,
    /// The number of the line being read (1-based).
    line: usize,
}

impl LineReader {
    fn new(max_line: usize, max_body: u64) -> Self {
        LineReader {
            max_line,
            max_body,
            read: 0,
            buffer: Vec::new(),
            skipping: false,
            line: 1,
        }
    }

    fn push(&mut self, mut chunk: &[u8]) -> Vec<Line> {
        let mut out = Vec::new();
        self.read += chunk.len() as u64;
        if self.read > self.max_body {
            out.push(Line::BodyTooLarge(self.line));
            return out;
        }
        while !chunk.is_empty() {
            match chunk.iter().position(|b| *b == b'\n') {
                Some(end) => {
                    if self.skipping {
                        self.skipping = false;
                    } else if self.buffer.len() + end > self.max_line {
                        out.push(Line::TooLong(self.line));
                    } else {
                        self.buffer.extend_from_slice(&chunk[..end]);
                        out.push(self.take());
                    }
                    self.buffer.clear();
                    self.line += 1;
                    chunk = &chunk[end + 1..];
                }
                None => {
                    if !self.skipping {
                        if self.buffer.len() + chunk.len() > self.max_line {
                            out.push(Line::TooLong(self.line));
                            self.skipping = true;
                            self.buffer.clear();
                        } else {
                            self.buffer.extend_from_slice(chunk);
                        }
                    }
                    chunk = &[];
                }
            }
        }
        out
    }

    fn take(&mut self) -> Line {
        let text = std::mem::take(&mut self.buffer);
        if text.iter().all(u8::is_ascii_whitespace) {
            Line::Blank
        } else {
            Line::Text(self.line, text)
        }
    }

    /// The last line, when the body does not end with a newline.
    fn finish(&mut self) -> Option<Line> {
        if self.skipping || self.buffer.is_empty() {
            return None;
        }
        Some(self.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_across_chunks_and_numbered() {
        let mut r = LineReader::new(100, 1000);
        let mut lines = r.push(b"{\"a\":1}\n{\"b\"");
        lines.extend(r.push(b":2}\n\n{\"c\":3}"));
        assert_eq!(
            lines,
            [
                Line::Text(1, b"{\"a\":1}".to_vec()),
                Line::Text(2, b"{\"b\":2}".to_vec()),
                Line::Blank,
            ]
        );
        assert_eq!(r.finish(), Some(Line::Text(4, b"{\"c\":3}".to_vec())));
    }

    #[test]
    fn a_long_line_is_reported_once_and_skipped_to_its_end() {
        let mut r = LineReader::new(8, 1000);
        let mut lines = r.push(b"0123456789");
        lines.extend(r.push(b"0123456789\nok\n"));
        assert_eq!(lines, [Line::TooLong(1), Line::Text(2, b"ok".to_vec())]);
        assert_eq!(r.finish(), None);
    }

    #[test]
    fn a_body_over_its_limit_stops_the_reader() {
        let mut r = LineReader::new(100, 10);
        assert_eq!(r.push(b"12345\n"), [Line::Text(1, b"12345".to_vec())]);
        assert_eq!(r.push(b"678901\n"), [Line::BodyTooLarge(2)]);
    }
}
