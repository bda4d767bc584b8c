//! Observability end to end, with the real binaries: every component's
//! `/metrics`, one trace id followed from the client's deploy call to the
//! gateway's log and to an OTLP collector, and the OpenAPI documents the
//! services serve.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use artisync_e2e::cluster::{PUBLISHER, TRAFFIC_MANAGER};
use artisync_e2e::{TestCluster, TestEnv, eventually, mock_api, tail, too_large_to_inline};
use serde_json::json;

const PROD: &str = "Production and Sandbox";

/// One sample of a Prometheus text exposition: the value of `name` whose
/// labels include every `(key, value)` of `labels`, summed over the label
/// sets that match.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, label_text) = match series.split_once('{') {
            Some((m, rest)) => (m, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric != name {
            continue;
        }
        if labels
            .iter()
            .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")))
        {
            let v: f64 = value.parse().ok()?;
            found = Some(found.unwrap_or(0.0) + v);
        }
    }
    found
}

async fn get_text(url: &str) -> anyhow::Result<(u16, String)> {
    let r = reqwest::get(url).await.with_context(|| url.to_owned())?;
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = r.text().await?;
    if status == 200 && url.ends_with("/metrics") && !content_type.starts_with("text/plain") {
        bail!("{url}: content type {content_type}");
    }
    Ok((status, text))
}

fn admin_url(c: &TestCluster, gw: &str) -> String {
    let port = c
        .cluster
        .spec
        .gateways
        .iter()
        .find(|g| g.id == gw)
        .map(|g| g.admin_port)
        .unwrap_or_default();
    format!("http://127.0.0.1:{port}")
}

/// A stand-in OTLP/HTTP collector: keeps the raw protobuf bodies posted
/// to `/v1/traces`.
struct OtlpSink {
    url: String,
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl OtlpSink {
    async fn start() -> anyhow::Result<OtlpSink> {
        let bodies: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let kept = bodies.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: bytes::Bytes| {
                let kept = kept.clone();
                async move {
                    kept.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(body.to_vec());
                    (
                        [("content-type", "application/x-protobuf")],
                        Vec::<u8>::new(),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(OtlpSink { url, bodies })
    }

    /// Whether an export holds a span of `trace_id` from `service`
    /// (protobuf carries both verbatim: the id as 16 raw bytes, the
    /// service name as a string).
    fn has_span(&self, trace_id: &str, service: &str) -> bool {
        let id: Vec<u8> = (0..16)
            .filter_map(|i| u8::from_str_radix(&trace_id[2 * i..2 * i + 2], 16).ok())
            .collect();
        let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
        self.bodies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|b| contains(b, &id) && contains(b, service.as_bytes()))
    }
}

/// An API whose endpoint is unreachable: every call is an upstream error.
fn broken_api() -> String {
    r#"<api xmlns="http://ws.apache.org/ns/synapse" name="Broken" context="/broken" version="1.0">
  <resource methods="GET" uri-template="/*">
    <inSequence>
      <send><endpoint><address uri="http://127.0.0.1:1/nothing"/></endpoint></send>
    </inSequence>
  </resource>
</api>"#
        .to_owned()
}

#[tokio::test]
async fn metrics_traces_and_openapi_across_the_cluster() -> anyhow::Result<()> {
    // The binaries inherit this environment: they export spans to the sink.
    // (The only test in this binary, so nothing else reads the environment
    // while it is set.)
    let sink = OtlpSink::start().await?;
    // SAFETY: set before any child process or other test thread starts.
    unsafe {
        std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", &sink.url);
        std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "200");
    }
    let env = TestEnv::new().await?;
    let c = env.start(vec![env.gateway("gw-1", &[PROD])?]).await?;
    let publisher_url = c.cluster.spec.publisher_url();
    let tm_url = c.cluster.spec.traffic_manager_url();
    let admin = admin_url(&c, "gw-1");

    // --- A deploy carrying the client's trace id. ---
    let created = c
        .publisher
        .create_api(&too_large_to_inline(&mock_api("Orders", "/orders", "r1")))
        .await?;
    assert_eq!(created.status.as_u16(), 201, "{}", created.text);
    let id = created.body["id"].as_str().context("id")?.to_owned();
    // The publisher answers every call with the trace it ran in; a call
    // without a traceparent starts a new trace.
    let started = created
        .headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .context("create answered without a traceparent")?;
    assert!(
        artisync_telemetry::TraceParent::parse(started).is_some(),
        "{started}"
    );

    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let deployed = c
        .publisher
        .0
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/apis/{id}/deployments"),
            Some((
                "application/json",
                serde_json::to_vec(&json!({ "labels": [PROD] }))?,
            )),
            &[("traceparent", traceparent.as_str())],
        )
        .await?;
    assert_eq!(deployed.status.as_u16(), 200, "{}", deployed.text);
    let answered = deployed
        .headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .context("deploy answered without a traceparent")?;
    assert!(
        answered.contains(&trace_id),
        "the answer continues the caller's trace: {answered}"
    );
    c.wait_applied("gw-1", &id, 1).await?;

    // The trace id reaches the gateway's log line for that deploy (through
    // the AMQP headers), and the traffic manager's for the fetch.
    let deploy_line = eventually(
        "the client's trace id in the gateway's deploy log",
        Duration::from_secs(20),
        || async {
            Ok(c.cluster
                .log("gw-1")
                .lines()
                .find(|l| l.contains(&trace_id) && l.contains("deployed"))
                .map(str::to_owned))
        },
    )
    .await
    .with_context(|| format!("--- gw-1 log ---\n{}", tail(&c.cluster.log("gw-1"), 40)))?;
    assert!(deploy_line.contains(&id), "{deploy_line}");
    eventually(
        "the trace id in the traffic manager's log",
        Duration::from_secs(10),
        || async {
            Ok(c.cluster
                .log(TRAFFIC_MANAGER)
                .contains(&trace_id)
                .then_some(()))
        },
    )
    .await?;
    assert!(
        c.cluster.log(PUBLISHER).contains(&trace_id),
        "the publisher logs the change in the caller's trace"
    );

    // The same trace reaches the OTLP collector: the publisher's request
    // span and the traffic manager's fetch continue the caller's trace.
    for service in ["publisher", "traffic-manager"] {
        eventually(
            &format!("a {service} span of the client's trace exported over OTLP"),
            Duration::from_secs(15),
            || async { Ok(sink.has_span(&trace_id, service).then_some(())) },
        )
        .await?;
    }

    // --- Gateway metrics: deployed count and a propagation observation. ---
    let (status, gw_metrics) = get_text(&format!("{admin}/metrics")).await?;
    assert_eq!(status, 200);
    let deployed_apis = sample(&gw_metrics, "artisync_gateway_apis_deployed", &[]);
    assert!(deployed_apis >= Some(1.0), "{gw_metrics}");
    let propagation = sample(
        &gw_metrics,
        "artisync_gateway_propagation_seconds_count",
        &[],
    );
    assert!(propagation >= Some(1.0), "{gw_metrics}");
    let latency = sample(
        &gw_metrics,
        "artisync_gateway_deploy_latency_seconds_count",
        &[],
    );
    assert!(latency >= Some(1.0), "{gw_metrics}");

    // --- Publisher metrics: the outbox drains, the relay is timed. ---
    let publisher_metrics = eventually(
        "the publisher's outbox backlog back to 0",
        Duration::from_secs(20),
        || async {
            let (status, text) = get_text(&format!("{publisher_url}/metrics")).await?;
            Ok((status == 200
                && sample(&text, "artisync_publisher_outbox_backlog", &[]) == Some(0.0))
            .then_some(text))
        },
    )
    .await?;
    for (name, labels) in [
        (
            "artisync_publisher_changes_total",
            &[("operation", "create")][..],
        ),
        (
            "artisync_publisher_changes_total",
            &[("operation", "deploy")],
        ),
        ("artisync_publisher_relay_publish_seconds_count", &[]),
        ("artisync_publisher_relay_events_total", &[]),
        (
            "artisync_publisher_http_requests_total",
            &[
                ("route", "/api/v1/apis/{id}/deployments"),
                ("status", "200"),
            ],
        ),
    ] {
        assert!(
            sample(&publisher_metrics, name, labels) >= Some(1.0),
            "{name} {labels:?}\n{publisher_metrics}"
        );
    }
    assert_eq!(
        sample(
            &publisher_metrics,
            "artisync_publisher_outbox_oldest_unsent_age_seconds",
            &[]
        ),
        Some(0.0)
    );

    // --- Data-plane counters move with traffic. ---
    for _ in 0..5 {
        let (status, body) = c.call("gw-1", "/orders/hello").await?;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(c.call("gw-1", "/nowhere/at/all").await?.0, 404);
    let broken = c.publish(&broken_api(), &[PROD]).await?;
    c.wait_applied("gw-1", &broken, 1).await?;
    assert_eq!(c.call("gw-1", "/broken/x").await?.0, 502);

    let (_, gw_metrics) = get_text(&format!("{admin}/metrics")).await?;
    let ok = sample(
        &gw_metrics,
        "artisync_gateway_requests_total",
        &[("api_id", &id), ("status", "2xx")],
    );
    assert!(ok >= Some(5.0), "{gw_metrics}");
    let timed = sample(
        &gw_metrics,
        "artisync_gateway_request_duration_seconds_count",
        &[("api_id", &id)],
    );
    assert!(timed >= Some(5.0), "{gw_metrics}");
    assert!(
        sample(
            &gw_metrics,
            "artisync_gateway_requests_total",
            &[("api_id", &broken), ("status", "5xx")]
        ) >= Some(1.0),
        "{gw_metrics}"
    );
    assert!(
        sample(
            &gw_metrics,
            "artisync_gateway_upstream_errors_total",
            &[("api_id", &broken), ("kind", "unreachable")]
        ) >= Some(1.0),
        "{gw_metrics}"
    );
    assert!(
        sample(&gw_metrics, "artisync_gateway_unrouted_requests_total", &[]) >= Some(1.0),
        "{gw_metrics}"
    );

    // --- Traffic manager: requests by endpoint, artifact bytes. ---
    let (status, tm_metrics) = get_text(&format!("{tm_url}/metrics")).await?;
    assert_eq!(status, 200);
    assert!(
        sample(
            &tm_metrics,
            "artisync_traffic_manager_artifact_bytes_served_total",
            &[]
        ) > Some(0.0),
        "{tm_metrics}"
    );
    assert!(
        sample(
            &tm_metrics,
            "artisync_traffic_manager_http_requests_total",
            &[("route", "/internal/data/v1/gateway-status")]
        ) >= Some(1.0),
        "{tm_metrics}"
    );

    // --- OpenAPI documents, served without a token. ---
    let (status, doc) = get_text(&format!("{publisher_url}/api/v1/openapi.json")).await?;
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(&doc)?;
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    assert!(doc["paths"]["/api/v1/apis/{id}/deployments"]["post"].is_object());
    let (status, doc) = get_text(&format!("{admin}/api/gateway/v1/openapi.json")).await?;
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(&doc)?;
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    // Every operation the gateway documents is routed on the live node.
    let admin_client = c.admin("gw-1")?;
    for (path, item) in doc["paths"].as_object().context("paths")? {
        for method in item.as_object().context("path item")?.keys() {
            let concrete = path.replace("{apiId}", &uuid::Uuid::new_v4().to_string());
            let answer = admin_client
                .0
                .send(method.to_uppercase().parse()?, &concrete, None, &[])
                .await?;
            let code = answer.status.as_u16();
            assert!(
                code != 405 && !(code == 404 && answer.text.contains("no such route")),
                "{method} {path}: {code} {}",
                answer.text
            );
        }
    }

    c.stop().await;
    Ok(())
}
