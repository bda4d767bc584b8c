//! Running a resource's sequences on a message (DESIGN.md §3).
//!
//! The executor walks nested mediator lists (filter branches, referenced
//! sequences) with a fixed-size stack instead of recursion, so running a
//! sequence needs no boxed futures and no allocation of its own.

use std::borrow::Cow;
use std::fmt::Write as _;

use artisync_synapse::{
    Endpoint, EndpointRef, FaultSequence, HeaderMediator, LogLevel, LogMediator, Mediator,
    PayloadFactory, PropertyAction, PropertyMediator, PropertyScope, Resource,
};
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use hyper::body::Incoming;
use thiserror::Error;

use super::DataPlane;
use super::body::{Body, BodyError};
use super::context::{Flow, HeaderOrigin, MessageContext, Postfix};
use super::error_body::{accepted, error_response};
use super::expression::{
    filter_matches, filter_reads_body, render_payload, source_reads_body, source_text, source_value,
};
use super::proxy::{
    ERROR_CODE_SEND_FAILED, ProxyError, build_request, endpoint_url, send, url_for_log,
};
use super::traffic::{ApiTraffic, UpstreamError};

/// How deeply filters and sequence references may nest; also what stops a
/// sequence that (directly or not) refers to itself. The publisher refuses
/// deeper artifacts with the same cap.
pub const MAX_DEPTH: usize = artisync_synapse::LIMITS.max_mediation_depth;

/// Bodies larger than this are cut in `log level="full"` output.
const MAX_LOGGED_BODY: usize = 16 * 1024;

/// Why a sequence stopped.
#[derive(Debug)]
pub enum Stop<'a> {
    /// It ran to its end.
    End,
    Respond,
    Drop,
    /// `<send>`; `None` is an empty `<send/>`.
    Send(Option<&'a EndpointRef>),
}

/// A failure while mediating; each maps to a status and a JSON error body.
#[derive(Debug, Error)]
pub enum MediationError {
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    #[error("the request body exceeds the limit of {limit} bytes")]
    RequestTooLarge { limit: usize },
    #[error("the endpoint's response exceeds the limit of {limit} bytes that a mediator may read")]
    ResponseTooLarge { limit: usize },
    #[error("the request body could not be read: {0}")]
    ClientBody(String),
    #[error("the endpoint's response could not be read: {0}")]
    ResponseBody(String),
    #[error("the request body was not received in time: {0}")]
    ClientBodyTimeout(String),
    #[error("too many out-only messages are in flight (at most {limit}); try again later")]
    OutOnlyBusy { limit: usize },
    #[error("sequences nest deeper than {MAX_DEPTH} levels (does a sequence refer to itself?)")]
    TooDeep,
    #[error("the sequence {0:?} is not part of the deployed artifact")]
    MissingSequence(String),
    #[error("the endpoint {0:?} is not part of the deployed artifact")]
    MissingEndpoint(String),
    #[error("the inSequence ended without send or respond")]
    NoReply,
    #[error("an empty <send/> in the inSequence has no endpoint to send to")]
    SendWithoutEndpoint,
}

impl MediationError {
    pub fn status(&self) -> StatusCode {
        match self {
            MediationError::Proxy(ProxyError::Timeout(_)) => StatusCode::GATEWAY_TIMEOUT,
            MediationError::Proxy(ProxyError::Unreachable(_) | ProxyError::BadUrl { .. })
            | MediationError::ResponseTooLarge { .. }
            | MediationError::ResponseBody(_) => StatusCode::BAD_GATEWAY,
            MediationError::Proxy(ProxyError::RequestTooLarge { .. })
            | MediationError::RequestTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            MediationError::Proxy(ProxyError::ClientBody(_)) | MediationError::ClientBody(_) => {
                StatusCode::BAD_REQUEST
            }
            MediationError::Proxy(ProxyError::ClientBodyTimeout(_))
            | MediationError::ClientBodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            MediationError::OutOnlyBusy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            MediationError::TooDeep
            | MediationError::MissingSequence(_)
            | MediationError::MissingEndpoint(_)
            | MediationError::NoReply
            | MediationError::SendWithoutEndpoint => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Endpoint failures run the resource's fault sequence; the client's own
    /// mistakes and configuration errors do not.
    fn runs_fault_sequence(&self) -> bool {
        matches!(
            self,
            MediationError::Proxy(
                ProxyError::Unreachable(_) | ProxyError::Timeout(_) | ProxyError::BadUrl { .. }
            ) | MediationError::ResponseBody(_)
                | MediationError::ResponseTooLarge { .. }
        )
    }

    fn synapse_code(&self) -> u32 {
        match self {
            MediationError::Proxy(err) => err.synapse_code(),
            _ => ERROR_CODE_SEND_FAILED,
        }
    }
}

/// Runs a resource on a message and produces the client's answer.
pub async fn mediate<'a>(
    dp: &DataPlane,
    ctx: &mut MessageContext<'a>,
    resource: &'a Resource,
) -> Response<Body> {
    match run_resource(dp, ctx, resource).await {
        Ok(response) => response,
        Err(err) if err.runs_fault_sequence() => run_fault(dp, ctx, resource, err).await,
        Err(err) => error_reply(ctx, &err),
    }
}

async fn run_resource<'a>(
    dp: &DataPlane,
    ctx: &mut MessageContext<'a>,
    resource: &'a Resource,
) -> Result<Response<Body>, MediationError> {
    let stop = match &resource.in_sequence {
        Some(sequence) => run_sequence(dp, ctx, &sequence.mediators).await?,
        None => Stop::End,
    };
    let endpoint_ref = match stop {
        Stop::Respond => return Ok(ctx.take_response()),
        Stop::Drop => return Ok(accepted()),
        Stop::End => return Err(MediationError::NoReply),
        Stop::Send(None) => return Err(MediationError::SendWithoutEndpoint),
        Stop::Send(Some(endpoint_ref)) => endpoint_ref,
    };
    let endpoint = resolve_endpoint(ctx, endpoint_ref)?;
    if ctx.flag("OUT_ONLY") || ctx.flag("FORCE_SC_ACCEPTED") {
        // Bounded: past the limit the client hears so instead of the node
        // piling up background sends.
        let limit = dp.config().max_out_only_in_flight;
        let permit = std::sync::Arc::clone(&dp.out_only)
            .try_acquire_owned()
            .map_err(|_| MediationError::OutOnlyBusy { limit })?;
        // The client is answered before the endpoint has read the body, and
        // hyper may close the client's stream then: read it first.
        buffer_body(ctx).await?;
        fire_and_forget(dp, ctx, endpoint, permit)?;
        return Ok(accepted());
    }
    let response = forward(dp, ctx, endpoint).await?;
    ctx.set_response(response);
    ctx.flow = Flow::Out;
    let Some(out_sequence) = &resource.out_sequence else {
        return Ok(ctx.take_response());
    };
    match run_sequence(dp, ctx, &out_sequence.mediators).await? {
        Stop::End | Stop::Respond | Stop::Send(None) => Ok(ctx.take_response()),
        Stop::Drop => Ok(accepted()),
        // Sending the response on to another endpoint: that endpoint's
        // answer goes to the client (running the outSequence again could
        // loop forever).
        Stop::Send(Some(endpoint_ref)) => {
            let endpoint = resolve_endpoint(ctx, endpoint_ref)?;
            let response = forward(dp, ctx, endpoint).await?;
            ctx.set_response(response);
            Ok(ctx.take_response())
        }
    }
}

/// Runs the resource's fault sequence after an endpoint error, with
/// `ERROR_CODE` / `ERROR_MESSAGE` set and the error's status as the default.
/// Unless it responds (or sends to a fallback endpoint), the client gets the
/// default JSON error.
async fn run_fault<'a>(
    dp: &DataPlane,
    ctx: &mut MessageContext<'a>,
    resource: &'a Resource,
    err: MediationError,
) -> Response<Body> {
    let api = ctx.api;
    let sequence = match &resource.fault_sequence {
        Some(FaultSequence::Inline(sequence)) => Some(sequence),
        Some(FaultSequence::Named(name)) => api.artifact.sequences.get(name),
        Some(FaultSequence::BuiltinDefault) | None => None,
    };
    let Some(sequence) = sequence else {
        return error_reply(ctx, &err);
    };
    ctx.flow = Flow::Fault;
    ctx.set_property(Cow::Borrowed("ERROR_CODE"), err.synapse_code().to_string());
    ctx.set_property(Cow::Borrowed("ERROR_MESSAGE"), err.to_string());
    ctx.status_override = Some(err.status());
    match run_sequence(dp, ctx, &sequence.mediators).await {
        Ok(Stop::Respond) => ctx.take_response(),
        Ok(Stop::Send(Some(endpoint_ref))) => {
            let result = match resolve_endpoint(ctx, endpoint_ref) {
                Ok(endpoint) => forward(dp, ctx, endpoint)
                    .await
                    .map_err(MediationError::from),
                Err(e) => Err(e),
            };
            match result {
                Ok(response) => {
                    ctx.set_response(response);
                    ctx.take_response()
                }
                Err(second) => error_reply(ctx, &second),
            }
        }
        Ok(Stop::End | Stop::Drop | Stop::Send(None)) => error_reply(ctx, &err),
        Err(second) => error_reply(ctx, &second),
    }
}

fn error_reply(ctx: &MessageContext<'_>, err: &MediationError) -> Response<Body> {
    let status = err.status();
    if status.is_server_error() {
        tracing::warn!(status = status.as_u16(), error = %err, path = ctx.path, "request failed");
    } else {
        tracing::debug!(status = status.as_u16(), error = %err, path = ctx.path, "request refused");
    }
    error_response(status, &err.to_string(), ctx.path)
}

fn resolve_endpoint<'a>(
    ctx: &MessageContext<'a>,
    endpoint_ref: &'a EndpointRef,
) -> Result<&'a Endpoint, MediationError> {
    let api = ctx.api;
    match endpoint_ref {
        EndpointRef::Inline(endpoint) => Ok(endpoint),
        EndpointRef::Key(key) => api
            .artifact
            .endpoints
            .get(key)
            .ok_or_else(|| MediationError::MissingEndpoint(key.clone())),
    }
}

/// Counts a failed endpoint call by kind; failures on the client's side of
/// the exchange (its body) are not upstream errors.
fn count_upstream_error(traffic: &ApiTraffic, err: &ProxyError) {
    let kind = match err {
        ProxyError::Unreachable(_) => UpstreamError::Unreachable,
        ProxyError::Timeout(_) => UpstreamError::Timeout,
        ProxyError::BadUrl { .. } => UpstreamError::BadUrl,
        ProxyError::RequestTooLarge { .. }
        | ProxyError::ClientBody(_)
        | ProxyError::ClientBodyTimeout(_) => return,
    };
    traffic.upstream_error(kind);
}

/// Sends the current message to an endpoint and waits for its response.
async fn forward(
    dp: &DataPlane,
    ctx: &mut MessageContext<'_>,
    endpoint: &Endpoint,
) -> Result<Response<Incoming>, ProxyError> {
    let traffic = &ctx.api.traffic;
    let request = build_request(ctx, endpoint).inspect_err(|e| count_upstream_error(traffic, e))?;
    let timeout = endpoint.timeout.unwrap_or(dp.endpoint_timeout);
    let result = send(&dp.client, request, timeout).await;
    if let Err(err) = &result {
        count_upstream_error(traffic, err);
        // The URL is rebuilt only here (the parts it needs are still in the
        // context), so the success path keeps no copy of it.
        let url = endpoint_url(endpoint, ctx);
        tracing::warn!(endpoint = url_for_log(&url), error = %err, "endpoint call failed");
    }
    result
}

/// `OUT_ONLY`: the message goes to the endpoint in the background and its
/// response is discarded.
fn fire_and_forget(
    dp: &DataPlane,
    ctx: &mut MessageContext<'_>,
    endpoint: &Endpoint,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Result<(), ProxyError> {
    let traffic = std::sync::Arc::clone(&ctx.api.traffic);
    let request =
        build_request(ctx, endpoint).inspect_err(|e| count_upstream_error(&traffic, e))?;
    let timeout = endpoint.timeout.unwrap_or(dp.endpoint_timeout);
    let client = dp.client.clone();
    let span = tracing::Span::current();
    tokio::spawn(async move {
        // Held until the message is delivered or given up on.
        let _permit = permit;
        let uri = url_for_log(&request.uri().to_string()).to_owned();
        let sent = send(&client, request, timeout).await;
        if let Err(err) = &sent {
            count_upstream_error(&traffic, err);
        }
        match sent {
            Ok(response) => {
                tracing::debug!(parent: &span, endpoint = %uri, status = response.status().as_u16(), "out-only message delivered");
            }
            Err(err) => {
                tracing::warn!(parent: &span, endpoint = %uri, error = %err, "out-only message was not delivered");
            }
        }
    });
    Ok(())
}

/// Reads the current body into memory (for a mediator that looks at it).
async fn buffer_body(ctx: &mut MessageContext<'_>) -> Result<(), MediationError> {
    let is_response = matches!(ctx.header_origin, HeaderOrigin::Response);
    ctx.body
        .buffer(ctx.max_body)
        .await
        .map_err(|err| match (err, is_response) {
            (BodyError::TooLarge { limit }, false) => MediationError::RequestTooLarge { limit },
            (BodyError::TooLarge { limit }, true) => MediationError::ResponseTooLarge { limit },
            (BodyError::Transport(e), false) => MediationError::ClientBody(e.to_string()),
            (BodyError::Transport(e), true) => MediationError::ResponseBody(e.to_string()),
            (err @ BodyError::TimedOut { .. }, false) => {
                MediationError::ClientBodyTimeout(err.to_string())
            }
            (err @ BodyError::TimedOut { .. }, true) => {
                MediationError::ResponseBody(err.to_string())
            }
        })
}

/// Does this mediator read the body (so it must be buffered first)?
fn needs_body(mediator: &Mediator) -> bool {
    match mediator {
        Mediator::Log(log) => {
            log.level == LogLevel::Full || log.properties.iter().any(|(_, s)| source_reads_body(s))
        }
        Mediator::Property(p) => {
            matches!(&p.action, PropertyAction::Set(s) if source_reads_body(s))
        }
        Mediator::Header(h) => matches!(&h.action, PropertyAction::Set(s) if source_reads_body(s)),
        Mediator::PayloadFactory(pf) => pf.args.iter().any(source_reads_body),
        Mediator::Filter(filter) => filter_reads_body(&filter.condition),
        _ => false,
    }
}

/// Runs mediators until one ends the flow (send, respond, drop) or the list
/// ends. `call` happens inline: its response replaces the message.
pub async fn run_sequence<'a>(
    dp: &DataPlane,
    ctx: &mut MessageContext<'a>,
    mediators: &'a [Mediator],
) -> Result<Stop<'a>, MediationError> {
    let api = ctx.api;
    let mut stack: [std::slice::Iter<'a, Mediator>; MAX_DEPTH] = std::array::from_fn(|_| [].iter());
    stack[0] = mediators.iter();
    let mut depth = 1;
    while depth > 0 {
        let Some(mediator) = stack[depth - 1].next() else {
            depth -= 1;
            continue;
        };
        if needs_body(mediator) {
            buffer_body(ctx).await?;
        }
        let nested: &'a [Mediator] = match mediator {
            Mediator::Log(log) => {
                log_message(ctx, log);
                continue;
            }
            Mediator::Property(property) => {
                apply_property(ctx, property);
                continue;
            }
            Mediator::Header(header) => {
                apply_header(ctx, header);
                continue;
            }
            Mediator::PayloadFactory(factory) => {
                apply_payload(ctx, factory);
                continue;
            }
            Mediator::Respond => return Ok(Stop::Respond),
            Mediator::Drop => return Ok(Stop::Drop),
            Mediator::Send(endpoint) => return Ok(Stop::Send(endpoint.as_ref())),
            Mediator::Call(endpoint_ref) => {
                let endpoint = resolve_endpoint(ctx, endpoint_ref)?;
                let response = forward(dp, ctx, endpoint).await?;
                ctx.set_response(response);
                continue;
            }
            // Java classes are accepted and not executed (the validator
            // recorded a warning at deploy time).
            Mediator::Class(_) => continue,
            Mediator::Filter(filter) => {
                if filter_matches(&filter.condition, ctx) {
                    &filter.then
                } else {
                    &filter.otherwise
                }
            }
            Mediator::SequenceRef(key) => match api.artifact.sequences.get(key) {
                Some(sequence) => &sequence.mediators,
                None => return Err(MediationError::MissingSequence(key.clone())),
            },
        };
        if depth == MAX_DEPTH {
            return Err(MediationError::TooDeep);
        }
        stack[depth] = nested.iter();
        depth += 1;
    }
    Ok(Stop::End)
}

fn apply_property<'a>(ctx: &mut MessageContext<'a>, property: &'a PropertyMediator) {
    let value = match &property.action {
        PropertyAction::Set(source) => source_text(source, ctx).map(Cow::into_owned),
        PropertyAction::Remove => None,
    };
    let name = property.name.as_str();
    match name {
        "HTTP_SC" => {
            ctx.status_override = match value {
                Some(value) => match value
                    .trim()
                    .parse::<u16>()
                    .ok()
                    .and_then(|c| StatusCode::from_u16(c).ok())
                {
                    Some(status) => Some(status),
                    None => {
                        tracing::warn!(value = %value, "HTTP_SC is not an HTTP status; ignored");
                        ctx.status_override
                    }
                },
                None => None,
            };
        }
        "REST_URL_POSTFIX" => {
            ctx.postfix = match value {
                Some(value) => Postfix::Set(value),
                None => Postfix::Removed,
            };
        }
        "messageType" | "ContentType" => match value.map(HeaderValue::try_from) {
            Some(Ok(content_type)) => ctx.set_header(CONTENT_TYPE, content_type),
            Some(Err(_)) => tracing::warn!(property = name, "not a valid content type; ignored"),
            None => ctx.remove_header(&CONTENT_TYPE),
        },
        _ if property.scope == PropertyScope::Transport => set_or_remove_header(ctx, name, value),
        _ => match value {
            Some(value) => ctx.set_property(Cow::Borrowed(name), value),
            None => ctx.remove_property(name),
        },
    }
}

fn apply_header(ctx: &mut MessageContext<'_>, header: &HeaderMediator) {
    let value = match &header.action {
        PropertyAction::Set(source) => source_text(source, ctx).map(Cow::into_owned),
        PropertyAction::Remove => None,
    };
    set_or_remove_header(ctx, &header.name, value);
}

fn set_or_remove_header(ctx: &mut MessageContext<'_>, name: &str, value: Option<String>) {
    let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
        tracing::warn!(header = name, "not a valid header name; ignored");
        return;
    };
    match value.map(HeaderValue::try_from) {
        Some(Ok(value)) => ctx.set_header(name, value),
        Some(Err(_)) => tracing::warn!(header = %name, "not a valid header value; ignored"),
        None => ctx.remove_header(&name),
    }
}

fn apply_payload(ctx: &mut MessageContext<'_>, factory: &PayloadFactory) {
    let payload = {
        let args: Vec<_> = factory.args.iter().map(|a| source_value(a, ctx)).collect();
        render_payload(&factory.format, factory.media_type, &args)
    };
    ctx.set_body(
        Body::from(payload),
        Some(HeaderValue::from_static(factory.media_type.content_type())),
    );
}

/// What a log shows in place of a credential.
const REDACTED: &str = "***";

/// Headers that carry credentials or sessions: `<log level="headers">` and
/// `"full"` show their names only.
fn is_secret_header(name: &HeaderName) -> bool {
    const SECRET: &[&str] = &[
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "apikey",
        "api-key",
        "x-api-key",
        "x-apikey",
        "internal-key",
        "x-auth-token",
        "x-jwt-assertion",
    ];
    // Header names are lower case already.
    SECRET.contains(&name.as_str())
}

fn log_message(ctx: &MessageContext<'_>, log: &LogMediator) {
    let separator = if log.separator.is_empty() {
        ", "
    } else {
        log.separator.as_str()
    };
    let mut text = String::new();
    let field = |text: &mut String, name: &str, value: &str| {
        if !text.is_empty() {
            text.push_str(separator);
        }
        let _ = write!(text, "{name} = {value}");
    };
    if log.level != LogLevel::Custom {
        field(&mut text, "direction", ctx.flow.as_str());
        field(&mut text, "method", ctx.method.as_str());
        field(&mut text, "path", ctx.path);
        if let Some(status) = ctx.upstream_status {
            field(&mut text, "status", status.as_str());
        }
    }
    if matches!(log.level, LogLevel::Headers | LogLevel::Full) {
        for (name, value) in &ctx.headers {
            if is_secret_header(name) {
                field(&mut text, name.as_str(), REDACTED);
            } else {
                field(
                    &mut text,
                    name.as_str(),
                    &String::from_utf8_lossy(value.as_bytes()),
                );
            }
        }
    }
    if log.level == LogLevel::Full {
        match ctx.body.as_bytes() {
            Some(bytes) => {
                let shown = &bytes[..bytes.len().min(MAX_LOGGED_BODY)];
                field(&mut text, "body", &String::from_utf8_lossy(shown));
            }
            None => field(&mut text, "body", "(streaming)"),
        }
    }
    for (name, source) in &log.properties {
        let value = source_text(source, ctx);
        field(&mut text, name, value.as_deref().unwrap_or("null"));
    }
    let api = ctx.api;
    let category = log.category.as_str();
    macro_rules! emit {
        ($level:ident) => {
            tracing::$level!(
                target: "artisync::mediation::log",
                api = api.name(),
                api_id = %api.api_id,
                revision = %api.revision,
                "{text}"
            )
        };
    }
    if category.eq_ignore_ascii_case("ERROR") || category.eq_ignore_ascii_case("FATAL") {
        emit!(error);
    } else if category.eq_ignore_ascii_case("WARN") {
        emit!(warn);
    } else if category.eq_ignore_ascii_case("DEBUG") {
        emit!(debug);
    } else if category.eq_ignore_ascii_case("TRACE") {
        emit!(trace);
    } else {
        emit!(info);
    }
}
