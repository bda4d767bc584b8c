#![forbid(unsafe_code)]
//! Logging and tracing set-up shared by the binaries.
//!
//! - `RUST_LOG` sets the level (default: the binary's own).
//! - `LOG_FORMAT=json` writes one JSON object per line, with the fields of
//!   the current span (`span`) and of every enclosing span (`spans`), so a
//!   line logged while handling a change carries its `trace_id`.
//! - `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
//!   turns on span export over OTLP/HTTP (protobuf), batched on a background
//!   thread; `OTEL_SERVICE_NAME` names the service (default: the binary).
//!
//! Trace context follows W3C Trace Context: [`TraceParent`] parses, creates
//! and renders `traceparent` values, and [`continue_trace`] makes a span part
//! of a caller's trace (in the exported spans as well as in the logs).

pub mod metrics;
pub mod signals;

use std::fmt;
use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The `traceparent` HTTP header / AMQP header name.
pub const TRACEPARENT: &str = "traceparent";

/// Sets up logging (and OTLP export when configured). A second call (tests
/// starting several apps in one process) is harmless.
pub fn init(default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let fmt = if json {
        json_layer(std::io::stderr).boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .boxed()
    };
    let registry = tracing_subscriber::registry().with(filter).with(fmt);
    #[cfg(feature = "otlp")]
    let registry = registry.with(otlp::layer());
    if registry.try_init().is_ok() {
        #[cfg(feature = "otlp")]
        otlp::report();
    }
}

/// JSON lines: the event's fields at the top level, the current span's
/// fields under `span`, every enclosing span's under `spans` (outermost
/// first), so a `trace_id` recorded on any enclosing span is on the line.
fn json_layer<S, W>(writer: W) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(true)
        .with_writer(writer)
}

/// Flushes and stops span export (a no-op without OTLP). Call once before
/// the process exits so the last spans are not lost.
pub fn shutdown() {
    #[cfg(feature = "otlp")]
    otlp::shutdown();
}

/// Whether spans are exported over OTLP.
pub fn otlp_enabled() -> bool {
    #[cfg(feature = "otlp")]
    {
        otlp::enabled()
    }
    #[cfg(not(feature = "otlp"))]
    {
        false
    }
}

/// A W3C `traceparent`: `00-<32 hex trace id>-<16 hex parent span id>-<flags>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    /// 32 lowercase hex digits, not all zero.
    pub trace_id: String,
    /// 16 lowercase hex digits, not all zero: the span this one continues.
    pub parent_id: String,
    pub flags: u8,
}

impl TraceParent {
    /// Parses a `traceparent` value; `None` for anything invalid (wrong
    /// lengths, non-hex digits, all-zero ids, version `ff`).
    pub fn parse(value: &str) -> Option<TraceParent> {
        let value = value.trim();
        let mut parts = value.split('-');
        let version = parts.next()?;
        let trace_id = parts.next()?;
        let parent_id = parts.next()?;
        let flags = parts.next()?;
        // Version 00 has exactly four parts; later versions may add more.
        if version == "00" && parts.next().is_some() {
            return None;
        }
        let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
        let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
        if !hex(version, 2)
            || version.eq_ignore_ascii_case("ff")
            || !hex(trace_id, 32)
            || !nonzero(trace_id)
            || !hex(parent_id, 16)
            || !nonzero(parent_id)
            || !hex(flags, 2)
        {
            return None;
        }
        Some(TraceParent {
            trace_id: trace_id.to_ascii_lowercase(),
            parent_id: parent_id.to_ascii_lowercase(),
            flags: u8::from_str_radix(flags, 16).ok()?,
        })
    }

    /// The start of a new trace (sampled).
    pub fn new_root() -> TraceParent {
        TraceParent {
            trace_id: uuid::Uuid::new_v4().simple().to_string(),
            parent_id: new_span_id(),
            flags: 0x01,
        }
    }

    /// The same trace, continued by a new span of ours.
    pub fn child(&self) -> TraceParent {
        TraceParent {
            trace_id: self.trace_id.clone(),
            parent_id: new_span_id(),
            flags: self.flags,
        }
    }

    /// The trace id from a `traceparent` value, if it is valid.
    pub fn trace_id_of(value: &str) -> Option<String> {
        TraceParent::parse(value).map(|tp| tp.trace_id)
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            self.trace_id, self.parent_id, self.flags
        )
    }
}

/// 16 hex digits from a random UUID (never all zero: the UUID's version
/// nibble is 4).
fn new_span_id() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    // Digits 12..16 hold the version nibble `4`.
    id[8..24].to_owned()
}

/// Makes `span` continue the caller's trace (`parent`), or start a new one,
/// and answers the `traceparent` that names `span` for downstream calls.
///
/// With OTLP export the span's exported context is used (same trace id,
/// the exported span's id as parent id); without it a fresh span id is
/// made, so the returned value is valid either way.
pub fn continue_trace(span: &tracing::Span, parent: Option<&TraceParent>) -> TraceParent {
    #[cfg(feature = "otlp")]
    if let Some(tp) = otlp::continue_trace(span, parent) {
        return tp;
    }
    let _ = span;
    match parent {
        Some(p) => p.child(),
        None => TraceParent::new_root(),
    }
}

#[cfg(feature = "otlp")]
mod otlp {
    use std::sync::OnceLock;
    use std::time::Duration;

    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider,
    };
    use opentelemetry_otlp::WithExportConfig;
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use tracing_subscriber::Layer;
    use tracing_subscriber::registry::LookupSpan;

    use super::TraceParent;

    static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();
    /// Why export is off when an endpoint was configured (reported once
    /// logging is up).
    static PROBLEM: OnceLock<String> = OnceLock::new();

    fn endpoint() -> Option<String> {
        [
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|v| !v.trim().is_empty())
    }

    fn service_name() -> String {
        std::env::var("OTEL_SERVICE_NAME")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .or_else(|| {
                std::env::current_exe()
                    .ok()
                    .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            })
            .unwrap_or_else(|| "artisync".to_owned())
    }

    /// The tracing layer that exports spans, or `None` when no endpoint is
    /// configured (or the exporter cannot be built).
    pub(super) fn layer<S>() -> Option<impl Layer<S>>
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    {
        endpoint()?;
        if PROVIDER.get().is_some() {
            // Already initialised in this process: a second global
            // subscriber will not be installed anyway.
            return None;
        }
        if let Ok(protocol) = std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL")
            && !protocol.trim().is_empty()
            && protocol.trim() != "http/protobuf"
        {
            let _ = PROBLEM.set(format!(
                "OTEL_EXPORTER_OTLP_PROTOCOL={protocol:?} is not supported; exporting with http/protobuf"
            ));
        }
        // The blocking HTTP client must be built (and later dropped) outside
        // the async runtime: build it on a plain thread. The batch processor
        // exports from its own thread, never from a runtime worker.
        let built = std::thread::spawn(|| {
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_timeout(Duration::from_secs(10))
                .build()
        })
        .join();
        let exporter = match built {
            Ok(Ok(exporter)) => exporter,
            Ok(Err(e)) => {
                let _ = PROBLEM.set(format!("cannot build the OTLP exporter: {e}"));
                return None;
            }
            Err(_) => {
                let _ = PROBLEM.set("building the OTLP exporter panicked".to_owned());
                return None;
            }
        };
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                Resource::builder()
                    .with_service_name(service_name())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("artisync");
        let _ = PROVIDER.set(provider.clone());
        opentelemetry::global::set_tracer_provider(provider);
        Some(tracing_opentelemetry::layer().with_tracer(tracer))
    }

    pub(super) fn report() {
        if let Some(problem) = PROBLEM.get() {
            tracing::warn!(problem = %problem, "OTLP trace export");
        }
        if PROVIDER.get().is_some() {
            tracing::info!(endpoint = ?endpoint(), service = %service_name(), "exporting traces over OTLP/HTTP");
        }
    }

    pub(super) fn enabled() -> bool {
        PROVIDER.get().is_some()
    }

    pub(super) fn shutdown() {
        if let Some(provider) = PROVIDER.get() {
            // Flushes the batch; bounded so a dead collector cannot hang
            // the shutdown.
            let provider = provider.clone();
            let _ = std::thread::spawn(move || {
                let _ = provider.shutdown_with_timeout(Duration::from_secs(5));
            })
            .join();
        }
    }

    pub(super) fn continue_trace(
        span: &tracing::Span,
        parent: Option<&TraceParent>,
    ) -> Option<TraceParent> {
        if !enabled() || span.is_disabled() {
            return None;
        }
        if let Some(parent) = parent {
            let trace_id = TraceId::from_hex(&parent.trace_id).ok()?;
            let span_id = SpanId::from_hex(&parent.parent_id).ok()?;
            let remote = SpanContext::new(
                trace_id,
                span_id,
                TraceFlags::new(parent.flags),
                true,
                TraceState::default(),
            );
            let cx = opentelemetry::Context::new().with_remote_span_context(remote);
            span.set_parent(cx).ok()?;
        }
        let cx = span.context();
        let own = cx.span().span_context().clone();
        own.is_valid().then(|| TraceParent {
            trace_id: own.trace_id().to_string(),
            parent_id: own.span_id().to_string(),
            flags: own.trace_flags().to_u8(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_carry_the_span_fields() {
        use std::sync::{Arc, Mutex};

        #[derive(Clone, Default)]
        struct Captured(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Captured {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::registry().with(json_layer(move || writer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let event = tracing::info_span!(
                "event",
                trace_id = "4bf92f3577b34da6a3ce929d0e0e4736",
                api_id = "a1"
            );
            let _entered = event.enter();
            let deploy = tracing::info_span!("deploy", revision = 3);
            deploy.in_scope(|| tracing::info!(sha256 = "abc", "deployed"));
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value =
            serde_json::from_str(text.lines().next().expect("one line")).unwrap();
        assert_eq!(line["message"], "deployed", "{line}");
        assert_eq!(line["sha256"], "abc", "{line}");
        assert_eq!(line["level"], "INFO", "{line}");
        assert_eq!(line["span"]["name"], "deploy", "{line}");
        assert_eq!(line["span"]["revision"], 3, "{line}");
        assert_eq!(
            line["spans"][0]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736",
            "{line}"
        );
        assert_eq!(line["spans"][0]["api_id"], "a1", "{line}");
    }

    #[test]
    fn traceparent_round_trip() {
        let raw = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let tp = TraceParent::parse(raw).unwrap();
        assert_eq!(tp.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(tp.parent_id, "00f067aa0ba902b7");
        assert_eq!(tp.flags, 1);
        assert_eq!(tp.to_string(), raw);
        let child = tp.child();
        assert_eq!(child.trace_id, tp.trace_id);
        assert_ne!(child.parent_id, tp.parent_id);
    }

    #[test]
    fn invalid_traceparents_are_refused() {
        for bad in [
            "",
            "garbage",
            "00-xyz-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert!(TraceParent::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn new_traces_are_valid_w3c() {
        for _ in 0..100 {
            let tp = TraceParent::new_root();
            let text = tp.to_string();
            assert_eq!(text.len(), 55, "{text}");
            assert_eq!(TraceParent::parse(&text), Some(tp));
        }
    }

    #[test]
    fn without_export_a_trace_is_continued_with_a_new_span_id() {
        let parent = TraceParent::new_root();
        let span = tracing::info_span!("test");
        let ours = continue_trace(&span, Some(&parent));
        assert_eq!(ours.trace_id, parent.trace_id);
        assert_ne!(ours.parent_id, parent.parent_id);
        let fresh = continue_trace(&span, None);
        assert_ne!(fresh.trace_id, parent.trace_id);
    }
}
