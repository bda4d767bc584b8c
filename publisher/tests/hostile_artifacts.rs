//! Hostile artifacts with a valid token: a 200,000-link chain of sequences
//! and an element with 300,000 attributes are refused with 422 naming the
//! cap they exceed, while `/health/live` keeps answering; nesting deeper
//! than the gateway runs and placeholders in an endpoint's host are refused
//! at publish time. Against the real PostgreSQL and RabbitMQ, as
//! `rest_api.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use artisync_publisher::config::{RawConfig, Settings};
use artisync_test_support::components::{self, Started};
use artisync_test_support::postgres::TestDatabase;
use reqwest::StatusCode;
use serde_json::Value;

const TOKEN: &str = "publisher-hostile-token";

fn amqp_url() -> String {
    std::env::var("TEST_AMQP_URL")
        .or_else(|_| std::env::var("AMQP_URL"))
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

struct Harness {
    _db: TestDatabase,
    running: Started,
    base: String,
    http: reqwest::Client,
}

impl Harness {
    async fn start() -> Harness {
        let db = TestDatabase::create().await.expect("test database");
        let mut raw = RawConfig::default();
        raw.publisher.listen = "127.0.0.1:0".into();
        raw.publisher.tokens = vec![TOKEN.into()];
        // Room for the 200,000-link chain (about 11 MB).
        raw.publisher.max_body_bytes = 32 * 1024 * 1024;
        raw.publisher.max_apply_bytes = 64 * 1024 * 1024;
        raw.database.url = Some(db.url.clone());
        raw.database.max_connections = Some(5);
        raw.amqp.url = amqp_url();
        raw.amqp.exchange = format!(
            "artisync.test.{}.deployments",
            uuid::Uuid::new_v4().simple()
        );
        let settings: Settings = raw.validate().expect("valid config");
        let running = components::publisher(settings)
            .await
            .expect("publisher starts");
        Harness {
            _db: db,
            base: format!("http://{}", running.addr),
            running,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .expect("client"),
        }
    }

    /// POSTs an artifact; the status and the JSON error message.
    async fn create(&self, xml: String) -> (StatusCode, String) {
        let response = self
            .http
            .post(format!("{}/api/v1/apis", self.base))
            .bearer_auth(TOKEN)
            .header("content-type", "application/xml")
            .body(xml)
            .send()
            .await
            .expect("answered");
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let message = body["message"].as_str().unwrap_or_default().to_owned();
        (status, message)
    }
}

fn chain_bundle(links: usize) -> String {
    let mut xml = String::with_capacity(links * 56);
    xml.push_str(r#"<definitions xmlns="http://ws.apache.org/ns/synapse">"#);
    xml.push_str(r#"<api name="Chain" context="/chain"><resource><inSequence><sequence key="s0"/></inSequence></resource></api>"#);
    for i in 0..links {
        xml.push_str(&format!(
            r#"<sequence name="s{i}"><sequence key="s{}"/></sequence>"#,
            i + 1
        ));
    }
    xml.push_str(&format!(
        r#"<sequence name="s{links}"><drop/></sequence></definitions>"#
    ));
    xml
}

fn many_attributes(count: usize) -> String {
    let attributes: String = (0..count).map(|i| format!(" a{i}=\"x\"")).collect();
    format!(
        r#"<api name="Wide" context="/wide"><resource><inSequence><payloadFactory media-type="xml"><format><item{attributes}/></format><args/></payloadFactory><respond/></inSequence></resource></api>"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_artifacts_get_422_naming_the_cap_while_liveness_answers() {
    let harness = Arc::new(Harness::start().await);
    let chain = chain_bundle(200_000);
    let wide = many_attributes(300_000);
    let pending = Arc::new(AtomicUsize::new(2));
    let send = |xml: String, name: &'static str| {
        let harness = Arc::clone(&harness);
        let pending = Arc::clone(&pending);
        tokio::spawn(async move {
            let started = Instant::now();
            let answer = harness.create(xml).await;
            println!("{name}: answered in {:?}", started.elapsed());
            pending.fetch_sub(1, Ordering::SeqCst);
            answer
        })
    };
    let chain = send(chain, "200,000-link chain");
    let wide = send(wide, "300,000 attributes");

    // Liveness answers throughout: every probe within the client's
    // deadline, until both artifacts have been answered.
    let mut probes = 0;
    let mut probes_in_flight = 0;
    loop {
        let in_flight_before = pending.load(Ordering::SeqCst) > 0;
        let live = harness
            .http
            .get(format!("{}/health/live", harness.base))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .expect("/health/live answers while artifacts are validated");
        assert_eq!(live.status(), StatusCode::OK);
        probes += 1;
        if in_flight_before {
            probes_in_flight += 1;
        } else {
            break;
        }
    }
    println!(
        "{probes} liveness probes answered, {probes_in_flight} while artifacts were in flight"
    );
    assert!(probes_in_flight >= 1);

    let (status, message) = chain.await.expect("joined");
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{message}");
    assert!(message.contains("max_elements"), "{message}");
    let (status, message) = wide.await.expect("joined");
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{message}");
    assert!(message.contains("max_attributes_per_element"), "{message}");
    harness.running.shutdown.cancel();
}

fn nested_filters(levels: usize) -> String {
    let open = r#"<filter source="$ctx:x" regex="y"><then>"#.repeat(levels);
    let close = "</then></filter>".repeat(levels);
    format!(
        r#"<api name="Deep{levels}" context="/deep{levels}"><resource><inSequence>{open}<drop/>{close}</inSequence></resource></api>"#
    )
}

fn endpoint_api(name: &str, uri: &str) -> String {
    format!(
        r#"<api name="{name}" context="/{name}"><resource><inSequence><send><endpoint><http uri-template="{uri}"/></endpoint></send></inSequence></resource></api>"#
    )
}

#[tokio::test]
async fn nesting_deeper_than_the_gateway_runs_and_placeholder_hosts_are_refused() {
    let harness = Harness::start().await;
    // The gateway runs 16 levels: the inSequence and 15 filters.
    let (status, message) = harness.create(nested_filters(15)).await;
    assert_eq!(status, StatusCode::CREATED, "{message}");
    let (status, message) = harness.create(nested_filters(16)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{message}");
    assert!(message.contains("max_mediation_depth"), "{message}");

    for (name, uri) in [
        ("host", "http://{uri.var.host}/items"),
        ("port", "http://backend:{uri.var.port}/items"),
    ] {
        let (status, message) = harness.create(endpoint_api(name, uri)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{message}");
        assert!(message.contains("host or port"), "{message}");
    }
    let (status, message) = harness
        .create(endpoint_api(
            "path",
            "http://backend:8080/items/{uri.var.id}?q={uri.var.q}",
        ))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{message}");
    harness.running.shutdown.cancel();
}
