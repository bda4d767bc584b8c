//! The publisher REST API (DESIGN.md §4) over real HTTP on loopback, against
//! the real PostgreSQL (a database per test) and RabbitMQ (an exchange per
//! test): status codes, bodies, and the outbox rows each committed change
//! writes (DESIGN.md §5).

use std::collections::BTreeSet;
use std::time::Duration;

use artisync_domain::Sha256Digest;
use artisync_publisher::config::{RawConfig, Settings};
use artisync_test_support::components::{self, Started};
use artisync_test_support::postgres::TestDatabase;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::{PgPool, Row};

const TOKEN: &str = "publisher-test-token";
const PROD: &str = "Production and Sandbox";
const PROD_PATH: &str = "Production%20and%20Sandbox";
const LABEL1: &str = "Label1";
const LABEL2: &str = "Label2";

fn amqp_url() -> String {
    std::env::var("TEST_AMQP_URL")
        .or_else(|_| std::env::var("AMQP_URL"))
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// A config for a test publisher: loopback port 0, its own database and
/// exchange.
fn raw_config(db: &TestDatabase, exchange: &str) -> RawConfig {
    let mut raw = RawConfig::default();
    raw.publisher.listen = "127.0.0.1:0".into();
    raw.publisher.tokens = vec![TOKEN.into()];
    raw.publisher.relay_poll_interval_ms = 100;
    raw.database.url = Some(db.url.clone());
    raw.database.max_connections = Some(5);
    raw.amqp.url = amqp_url();
    raw.amqp.exchange = exchange.to_owned();
    raw
}

/// One publisher app on its own database and exchange.
struct Harness {
    /// Dropped (with the database) last.
    _db: TestDatabase,
    pool: PgPool,
    running: Option<Started>,
    exchange: String,
    base: String,
    http: reqwest::Client,
}

impl Harness {
    async fn start() -> Harness {
        Self::start_with(|_| {}).await
    }

    async fn start_with(adjust: impl FnOnce(&mut RawConfig)) -> Harness {
        let db = TestDatabase::create().await.expect("test database");
        let exchange = format!(
            "artisync.test.{}.deployments",
            uuid::Uuid::new_v4().simple()
        );
        let mut raw = raw_config(&db, &exchange);
        adjust(&mut raw);
        let settings: Settings = raw.validate().expect("valid config");
        let running = components::publisher(settings)
            .await
            .expect("publisher starts");
        let base = format!("http://{}", running.addr);
        let pool = db.pool().await.expect("pool");
        Harness {
            _db: db,
            pool,
            running: Some(running),
            exchange,
            base,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
        }
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
    }

    async fn send(
        &self,
        rb: reqwest::RequestBuilder,
    ) -> (StatusCode, Value, reqwest::header::HeaderMap) {
        let r = rb.send().await.expect("request");
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, body, headers)
    }

    async fn create(&self, xml: &str) -> (StatusCode, Value) {
        let (s, b, _) = self
            .send(
                self.request(Method::POST, "/api/v1/apis")
                    .header("content-type", "application/xml")
                    .body(xml.to_owned()),
            )
            .await;
        (s, b)
    }

    async fn update(&self, id: &str, xml: &str) -> (StatusCode, Value) {
        let (s, b, _) = self
            .send(
                self.request(Method::PUT, &format!("/api/v1/apis/{id}"))
                    .header("content-type", "application/xml")
                    .body(xml.to_owned()),
            )
            .await;
        (s, b)
    }

    async fn deploy(&self, id: &str, body: Value) -> (StatusCode, Value) {
        let (s, b, _) = self
            .send(
                self.request(Method::POST, &format!("/api/v1/apis/{id}/deployments"))
                    .json(&body),
            )
            .await;
        (s, b)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let (s, b, _) = self.send(self.request(Method::GET, path)).await;
        (s, b)
    }

    async fn delete(&self, path: &str) -> (StatusCode, Value) {
        let (s, b, _) = self.send(self.request(Method::DELETE, path)).await;
        (s, b)
    }

    /// Outbox rows with an id above `after`, oldest first.
    async fn outbox_after(&self, after: i64) -> Vec<OutboxRow> {
        sqlx::query(
            "SELECT id, event_id, routing_key, payload FROM outbox WHERE id > $1 ORDER BY id",
        )
        .bind(after)
        .fetch_all(&self.pool)
        .await
        .expect("outbox query")
        .iter()
        .map(|r| OutboxRow {
            event_id: r.get("event_id"),
            routing_key: r.get("routing_key"),
            payload: serde_json::from_slice(&r.get::<Vec<u8>, _>("payload"))
                .expect("outbox payload is JSON"),
        })
        .collect()
    }

    async fn max_outbox_id(&self) -> i64 {
        sqlx::query_scalar("SELECT COALESCE(max(id), 0)::bigint FROM outbox")
            .fetch_one(&self.pool)
            .await
            .expect("outbox max")
    }

    async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.pool)
            .await
            .expect("count query")
    }

    /// Stops the app, then removes its exchange and database.
    async fn finish(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(15), running.task).await;
        }
        self.pool.close().await;
        delete_exchange(&self.exchange).await;
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        // Only on a failed test: stop the app; the exchange is deleted from
        // a helper thread (no async in Drop).
        if let Some(running) = self.running.take() {
            running.shutdown.cancel();
            running.task.abort();
            let exchange = self.exchange.clone();
            let _ = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(delete_exchange(&exchange));
                }
            })
            .join();
        }
    }
}

async fn delete_exchange(exchange: &str) {
    let Ok(conn) =
        lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default()).await
    else {
        return;
    };
    if let Ok(channel) = conn.create_channel().await {
        let _ = channel
            .exchange_delete(
                exchange.into(),
                lapin::options::ExchangeDeleteOptions::default(),
            )
            .await;
    }
    let _ = conn.close(200, "test done".into()).await;
}

#[derive(Debug)]
struct OutboxRow {
    event_id: uuid::Uuid,
    routing_key: String,
    payload: Value,
}

/// A mock API as gateways serve them.
fn mock_api(name: &str, context: &str, tag: &str) -> String {
    format!(
        r#"<api xmlns="http://ws.apache.org/ns/synapse" name="{name}" context="{context}" version="1.0">
  <resource methods="GET" uri-template="/hello">
    <inSequence>
      <payloadFactory media-type="json">
        <format>{{"api": "{name}", "tag": "{tag}"}}</format>
        <args/>
      </payloadFactory>
      <respond/>
    </inSequence>
  </resource>
</api>"#
    )
}

fn sha(xml: &str) -> String {
    Sha256Digest::of(xml.as_bytes()).to_hex()
}

/// Checks one outbox row against DESIGN.md §5 and the change it records.
#[allow(clippy::too_many_arguments)]
fn assert_event(
    row: &OutboxRow,
    event_type: &str,
    api_id: &str,
    name: &str,
    context: &str,
    revision: u64,
    sha256: &str,
    sequence: i64,
) {
    let p = &row.payload;
    for key in [
        "eventId",
        "type",
        "timestamp",
        "apiId",
        "name",
        "version",
        "context",
        "revision",
        "sha256",
        "gatewayLabels",
        "sequence",
    ] {
        assert!(p.get(key).is_some(), "outbox payload lacks {key}: {p}");
    }
    assert_eq!(p["eventId"], json!(row.event_id.to_string()), "{p}");
    assert_eq!(p["type"], json!(event_type), "{p}");
    assert_eq!(p["apiId"], json!(api_id), "{p}");
    assert_eq!(p["name"], json!(name), "{p}");
    assert_eq!(p["version"], json!("1.0"), "{p}");
    assert_eq!(p["context"], json!(context), "{p}");
    assert_eq!(p["revision"], json!(revision), "{p}");
    assert_eq!(p["sha256"], json!(sha256), "{p}");
    assert_eq!(p["sequence"], json!(sequence), "{p}");
    assert!(
        chrono_like_timestamp(p["timestamp"].as_str().unwrap_or("")),
        "timestamp: {p}"
    );
    // The routing key is the label, and the event names it.
    let labels: Vec<&str> = p["gatewayLabels"]
        .as_array()
        .expect("gatewayLabels is an array")
        .iter()
        .map(|l| l.as_str().expect("labels are strings"))
        .collect();
    assert!(
        labels.contains(&row.routing_key.as_str()),
        "routing key {:?} not among the event's labels {labels:?}",
        row.routing_key
    );
}

fn chrono_like_timestamp(s: &str) -> bool {
    s.len() >= 20 && s.as_bytes()[4] == b'-' && s.contains('T')
}

fn routing_keys(rows: &[OutboxRow]) -> BTreeSet<String> {
    rows.iter().map(|r| r.routing_key.clone()).collect()
}

fn set(labels: &[&str]) -> BTreeSet<String> {
    labels.iter().map(|l| (*l).to_owned()).collect()
}

#[tokio::test]
async fn create_update_list_get_and_artifacts() {
    let h = Harness::start().await;
    let r1 = mock_api("Orders", "/orders", "r1");
    let r2 = mock_api("Orders", "/orders", "r2");

    // Create: 201 with the identity, revision 1 and the body's digest.
    let (status, created) = h.create(&r1).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    uuid::Uuid::parse_str(&id).expect("the id is a UUID");
    assert_eq!(created["name"], "Orders");
    assert_eq!(created["version"], "1.0");
    assert_eq!(created["context"], "/orders");
    assert_eq!(created["revision"], 1);
    assert_eq!(created["sha256"], json!(sha(&r1)));

    // Update with a changed body: a new revision, 201.
    let (status, updated) = h.update(&id, &r2).await;
    assert_eq!(status, StatusCode::CREATED, "{updated}");
    assert_eq!(updated["id"], json!(id));
    assert_eq!(updated["revision"], 2);
    assert_eq!(updated["sha256"], json!(sha(&r2)));

    // The identical body again: 200, no new revision.
    let (status, same) = h.update(&id, &r2).await;
    assert_eq!(status, StatusCode::OK, "{same}");
    assert_eq!(same["revision"], 2);
    assert_eq!(same["sha256"], json!(sha(&r2)));
    assert_eq!(
        h.count("SELECT count(*) FROM api_revisions").await,
        2,
        "an identical body stored a revision"
    );

    // A second API, then the list holds both.
    let (status, other) = h.create(&mock_api("Stock", "/stock", "s1")).await;
    assert_eq!(status, StatusCode::CREATED, "{other}");
    let other_id = other["id"].as_str().expect("id").to_owned();
    let (status, list) = h.get("/api/v1/apis").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let apis = list["apis"].as_array().expect("apis array");
    assert_eq!(apis.len(), 2, "{list}");
    let orders = apis
        .iter()
        .find(|a| a["id"] == json!(id))
        .expect("Orders listed");
    assert_eq!(orders["revision"], 2);
    assert_eq!(orders["name"], "Orders");
    assert_eq!(orders["sha256"], json!(sha(&r2)));
    assert!(apis.iter().any(|a| a["id"] == json!(other_id)));

    // Get: revisions and (no) deployments.
    let (status, detail) = h.get(&format!("/api/v1/apis/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert_eq!(detail["id"], json!(id));
    assert_eq!(detail["revision"], 2);
    let revisions = detail["revisions"].as_array().expect("revisions");
    let numbers: Vec<u64> = revisions
        .iter()
        .filter_map(|r| r["revision"].as_u64())
        .collect();
    assert_eq!(
        numbers.iter().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([1, 2]),
        "{detail}"
    );
    for r in revisions {
        let expected = if r["revision"] == 1 {
            sha(&r1)
        } else {
            sha(&r2)
        };
        assert_eq!(r["sha256"], json!(expected), "{detail}");
    }
    assert_eq!(detail["deployments"], json!([]), "{detail}");

    // The artifact: latest by default, any revision by number.
    let (status, body, headers) = h
        .send(h.request(Method::GET, &format!("/api/v1/apis/{id}/artifact")))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, Value::String(r2.clone()));
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/xml"),
        "{headers:?}"
    );
    assert_eq!(headers["x-artisync-revision"], "2");
    assert_eq!(
        headers["etag"].to_str().unwrap().trim_matches('"'),
        sha(&r2),
        "{headers:?}"
    );
    let (status, body, headers) = h
        .send(h.request(
            Method::GET,
            &format!("/api/v1/apis/{id}/artifact?revision=1"),
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, Value::String(r1.clone()));
    assert_eq!(headers["x-artisync-revision"], "1");
    let (status, body) = h
        .get(&format!("/api/v1/apis/{id}/artifact?revision=3"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["code"], 404, "{body}");
    let (status, body) = h
        .get(&format!("/api/v1/apis/{id}/artifact?revision=zero"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = h
        .get(&format!("/api/v1/apis/{}/artifact", uuid::Uuid::new_v4()))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = h
        .get(&format!("/api/v1/apis/{}", uuid::Uuid::new_v4()))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = h
        .update(&uuid::Uuid::new_v4().to_string(), &mock_api("X", "/x", "x"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Creating and updating write no events: nothing is deployed.
    assert_eq!(h.count("SELECT count(*) FROM outbox").await, 0);
    h.finish().await;
}

#[tokio::test]
async fn deploy_undeploy_delete_write_their_events() {
    let h = Harness::start().await;
    let r1 = mock_api("Orders", "/orders", "r1");
    let r2 = mock_api("Orders", "/orders", "r2");
    let (_, created) = h.create(&r1).await;
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(h.update(&id, &r2).await.0, StatusCode::CREATED);

    // Deploy the latest revision to PROD.
    let mark = h.max_outbox_id().await;
    let (status, d) = h.deploy(&id, json!({"labels": [PROD]})).await;
    assert_eq!(status, StatusCode::OK, "{d}");
    assert_eq!(d["apiId"], json!(id));
    assert_eq!(d["revision"], 2);
    assert_eq!(d["changedLabels"], json!([PROD]));
    assert_eq!(d["unchangedLabels"], json!([]));
    let seq1 = d["sequence"].as_i64().expect("a sequence for a change");
    let rows = h.outbox_after(mark).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].routing_key, PROD);
    assert_event(
        &rows[0],
        "DEPLOY_API_IN_GATEWAY",
        &id,
        "Orders",
        "/orders",
        2,
        &sha(&r2),
        seq1,
    );

    // Deploy an explicit (older) revision to labels that run nothing yet.
    let mark = h.max_outbox_id().await;
    let (status, d) = h
        .deploy(&id, json!({"labels": [LABEL1, LABEL2], "revision": 1}))
        .await;
    assert_eq!(status, StatusCode::OK, "{d}");
    assert_eq!(d["revision"], 1);
    assert_eq!(d["changedLabels"], json!([LABEL1, LABEL2]));
    assert_eq!(d["unchangedLabels"], json!([]));
    let seq2 = d["sequence"].as_i64().expect("sequence");
    assert!(seq2 > seq1, "sequences grow: {seq1} then {seq2}");
    let rows = h.outbox_after(mark).await;
    assert_eq!(rows.len(), 2, "one row per label: {rows:?}");
    assert_eq!(routing_keys(&rows), set(&[LABEL1, LABEL2]));
    for row in &rows {
        assert_event(
            row,
            "DEPLOY_API_IN_GATEWAY",
            &id,
            "Orders",
            "/orders",
            1,
            &sha(&r1),
            seq2,
        );
    }
    assert_ne!(
        rows[0].event_id, rows[1].event_id,
        "each routed copy has its own id"
    );

    // PROD already runs 2; Label1 moves from 1 to 2.
    let mark = h.max_outbox_id().await;
    let (status, d) = h
        .deploy(&id, json!({"labels": [PROD, LABEL1], "revision": 2}))
        .await;
    assert_eq!(status, StatusCode::OK, "{d}");
    assert_eq!(d["changedLabels"], json!([LABEL1]));
    assert_eq!(d["unchangedLabels"], json!([PROD]));
    let seq3 = d["sequence"].as_i64().expect("sequence");
    assert!(seq3 > seq2);
    let rows = h.outbox_after(mark).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].routing_key, LABEL1);
    assert_event(
        &rows[0],
        "DEPLOY_API_IN_GATEWAY",
        &id,
        "Orders",
        "/orders",
        2,
        &sha(&r2),
        seq3,
    );

    // Nothing changes: no sequence, no event.
    let mark = h.max_outbox_id().await;
    let (status, d) = h.deploy(&id, json!({"labels": [PROD]})).await;
    assert_eq!(status, StatusCode::OK, "{d}");
    assert_eq!(d["changedLabels"], json!([]));
    assert_eq!(d["unchangedLabels"], json!([PROD]));
    assert_eq!(d["sequence"], Value::Null);
    assert!(h.outbox_after(mark).await.is_empty());

    // Going back to an older revision on a label: 409, and nothing written.
    let (status, d) = h
        .deploy(&id, json!({"labels": [PROD], "revision": 1}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{d}");
    assert_eq!(d["code"], 409);
    assert!(d["message"].as_str().unwrap_or("").contains(PROD), "{d}");
    assert!(h.outbox_after(mark).await.is_empty());
    // A revision that does not exist.
    let (status, d) = h
        .deploy(&id, json!({"labels": [PROD], "revision": 9}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{d}");
    assert!(h.outbox_after(mark).await.is_empty());
    // Deploying an API that does not exist.
    let (status, _) = h
        .deploy(&uuid::Uuid::new_v4().to_string(), json!({"labels": [PROD]}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The API shows its deployments.
    let (_, detail) = h.get(&format!("/api/v1/apis/{id}")).await;
    let deployments: BTreeSet<(String, u64)> = detail["deployments"]
        .as_array()
        .expect("deployments")
        .iter()
        .map(|d| {
            (
                d["label"].as_str().unwrap().to_owned(),
                d["revision"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        deployments,
        BTreeSet::from([
            (PROD.to_owned(), 2),
            (LABEL1.to_owned(), 2),
            (LABEL2.to_owned(), 1)
        ]),
        "{detail}"
    );

    // Undeploy from PROD (a label with spaces, URL-encoded in the path).
    let mark = h.max_outbox_id().await;
    let (status, u) = h
        .delete(&format!("/api/v1/apis/{id}/deployments/{PROD_PATH}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{u}");
    assert_eq!(u["apiId"], json!(id));
    assert_eq!(u["label"], PROD);
    let seq4 = u["sequence"].as_i64().expect("sequence");
    assert!(seq4 > seq3);
    let rows = h.outbox_after(mark).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].routing_key, PROD);
    assert_event(
        &rows[0],
        "REMOVE_API_FROM_GATEWAY",
        &id,
        "Orders",
        "/orders",
        2,
        &sha(&r2),
        seq4,
    );
    assert_eq!(rows[0].payload["gatewayLabels"], json!([PROD]));
    // Again: it is no longer there; a label it never was on: 404 as well.
    let mark = h.max_outbox_id().await;
    let (status, body) = h
        .delete(&format!("/api/v1/apis/{id}/deployments/{PROD_PATH}"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = h
        .delete(&format!("/api/v1/apis/{id}/deployments/Elsewhere"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(h.outbox_after(mark).await.is_empty());

    // The per-label change numbers follow the events, removals included.
    let label_seqs: Vec<(String, i64)> =
        sqlx::query("SELECT label, sequence FROM label_sequences ORDER BY label")
            .fetch_all(&h.pool)
            .await
            .expect("label_sequences")
            .iter()
            .map(|r| (r.get("label"), r.get("sequence")))
            .collect();
    assert_eq!(
        label_seqs,
        vec![
            (LABEL1.to_owned(), seq3),
            (LABEL2.to_owned(), seq2),
            (PROD.to_owned(), seq4)
        ]
    );

    // Delete: undeploys from Label1 and Label2 (events), then deletes.
    let mark = h.max_outbox_id().await;
    let (status, body) = h.delete(&format!("/api/v1/apis/{id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(body, Value::Null);
    let rows = h.outbox_after(mark).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(routing_keys(&rows), set(&[LABEL1, LABEL2]));
    let seq5 = rows[0].payload["sequence"].as_i64().expect("sequence");
    assert!(seq5 > seq4);
    for row in &rows {
        let (rev, digest) = if row.routing_key == LABEL1 {
            (2, sha(&r2))
        } else {
            (1, sha(&r1))
        };
        assert_event(
            row,
            "REMOVE_API_FROM_GATEWAY",
            &id,
            "Orders",
            "/orders",
            rev,
            &digest,
            seq5,
        );
        assert_eq!(row.payload["gatewayLabels"], json!([row.routing_key]));
    }
    assert_eq!(h.count("SELECT count(*) FROM deployments").await, 0);
    assert_eq!(h.count("SELECT count(*) FROM api_revisions").await, 0);
    let (status, _) = h.get(&format!("/api/v1/apis/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = h.delete(&format!("/api/v1/apis/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["code"], 404);
    let (status, _) = h.deploy(&id, json!({"labels": [PROD]})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = h.get(&format!("/api/v1/apis/{id}/artifact")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A never-deployed API deletes without events.
    let (_, other) = h.create(&mock_api("Stock", "/stock", "s1")).await;
    let mark = h.max_outbox_id().await;
    let (status, _) = h
        .delete(&format!("/api/v1/apis/{}", other["id"].as_str().unwrap()))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(h.outbox_after(mark).await.is_empty());

    // The app's relay publishes every committed event to RabbitMQ.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let unsent = h
            .count("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            .await;
        if unsent == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{unsent} events still unsent after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.finish().await;
}

#[tokio::test]
async fn requests_without_a_valid_token_get_401() {
    let h = Harness::start().await;
    let (_, created) = h.create(&mock_api("Orders", "/orders", "r1")).await;
    let id = created["id"].as_str().expect("id").to_owned();
    let calls: Vec<(Method, String)> = vec![
        (Method::GET, "/api/v1/apis".into()),
        (Method::POST, "/api/v1/apis".into()),
        (Method::GET, format!("/api/v1/apis/{id}")),
        (Method::PUT, format!("/api/v1/apis/{id}")),
        (Method::DELETE, format!("/api/v1/apis/{id}")),
        (Method::GET, format!("/api/v1/apis/{id}/artifact")),
        (Method::POST, format!("/api/v1/apis/{id}/deployments")),
        (
            Method::DELETE,
            format!("/api/v1/apis/{id}/deployments/{LABEL1}"),
        ),
        (Method::GET, format!("/api/v1/apis/{id}/status")),
        (Method::GET, "/api/v1/gateways".into()),
    ];
    for (method, path) in &calls {
        let url = format!("{}{path}", h.base);
        for auth in [
            None,
            Some("Bearer wrong-token-123"),
            Some("Basic cHVibGlzaGVy"),
            Some("Bearer "),
        ] {
            let mut rb = h
                .http
                .request(method.clone(), &url)
                .header("content-type", "application/xml")
                .body(mock_api("Other", "/other", "x"));
            if let Some(a) = auth {
                rb = rb.header("authorization", a);
            }
            let (status, body, headers) = h.send(rb).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {auth:?}: {body}"
            );
            assert_eq!(body["code"], 401, "{body}");
            assert!(
                body["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{body}"
            );
            assert!(headers.contains_key("www-authenticate"), "{headers:?}");
        }
    }
    // Nothing was changed by the refused calls.
    assert_eq!(h.count("SELECT count(*) FROM apis").await, 1);
    assert_eq!(h.count("SELECT count(*) FROM outbox").await, 0);
    // Health needs no token.
    let r = h
        .http
        .get(format!("{}/health/live", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = h
        .http
        .get(format!("{}/health/ready", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    h.finish().await;
}

#[tokio::test]
async fn duplicate_name_and_version_is_409() {
    let h = Harness::start().await;
    assert_eq!(
        h.create(&mock_api("Orders", "/orders", "r1")).await.0,
        StatusCode::CREATED
    );
    // Same (name, version), another context and body.
    let (status, body) = h.create(&mock_api("Orders", "/orders-two", "r2")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], 409);
    let message = body["message"].as_str().unwrap_or("");
    assert!(
        message.contains("Orders") && message.contains("1.0"),
        "{body}"
    );
    // Another version of the same name is a different API.
    let v2 = mock_api("Orders", "/orders-v2", "r1").replace("version=\"1.0\"", "version=\"2.0\"");
    let (status, body) = h.create(&v2).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["version"], "2.0");
    assert_eq!(h.count("SELECT count(*) FROM apis").await, 2);
    h.finish().await;
}

/// A valid artifact of about `size` bytes (padded with an XML comment).
fn padded_api(name: &str, context: &str, size: usize) -> String {
    let base = mock_api(name, context, "big");
    let overhead = base.len() + "\n<!--  -->".len();
    let pad = "x".repeat(size.saturating_sub(overhead));
    let xml = format!("{base}\n<!-- {pad} -->");
    assert_eq!(xml.len(), size.max(overhead));
    xml
}

#[tokio::test]
async fn bodies_over_the_configured_limit_get_413() {
    let h = Harness::start_with(|raw| raw.publisher.max_body_bytes = 4096).await;
    // At the limit: accepted.
    let (status, body) = h.create(&padded_api("Fits", "/fits", 4096)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // One byte over, with a Content-Length: 413.
    let (status, body) = h.create(&padded_api("Big", "/big", 4097)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["code"], 413);
    assert!(
        body["message"].as_str().unwrap_or("").contains("4096"),
        "{body}"
    );
    // Over the limit without a Content-Length (chunked): 413 as well.
    let big = padded_api("Chunked", "/chunked", 64 * 1024);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = big
        .as_bytes()
        .chunks(1000)
        .map(|c| Ok(c.to_vec()))
        .collect();
    let (status, body, _) = h
        .send(
            h.request(Method::POST, "/api/v1/apis")
                .header("content-type", "application/xml")
                .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                    chunks,
                ))),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    // On update too.
    let (_, fits) = h.get("/api/v1/apis").await;
    let id = fits["apis"][0]["id"].as_str().expect("id").to_owned();
    let (status, _) = h.update(&id, &padded_api("Fits", "/fits", 5000)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(h.count("SELECT count(*) FROM apis").await, 1);
    assert_eq!(h.count("SELECT count(*) FROM api_revisions").await, 1);
    h.finish().await;
}

#[tokio::test]
async fn the_default_body_limit_is_10_mib() {
    let mut raw = RawConfig::default();
    raw.publisher.tokens = vec![TOKEN.into()];
    raw.database.url = Some("postgres://postgres@127.0.0.1/x".into());
    assert_eq!(
        raw.validate().expect("valid").max_body_bytes,
        10 * 1024 * 1024
    );

    let h = Harness::start().await;
    // 8 MiB is accepted (no smaller limit hides behind the configured one).
    let (status, body) = h
        .create(&padded_api("Large", "/large", 8 * 1024 * 1024))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // Exactly 10 MiB is accepted, one byte more is 413.
    let (status, body) = h.create(&padded_api("Max", "/max", 10 * 1024 * 1024)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = h
        .create(&padded_api("Over", "/over", 10 * 1024 * 1024 + 1))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(h.count("SELECT count(*) FROM apis").await, 2);
    h.finish().await;
}

#[tokio::test]
async fn invalid_artifacts_are_refused_with_their_position() {
    let h = Harness::start().await;

    // Malformed: 400 with the parser's line and column.
    let malformed =
        "<api name=\"A\" context=\"/a\">\n  <resource>\n    <inSequence>\n  </resource>\n</api>";
    let (status, body) = h.create(malformed).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], 400);
    let message = body["message"].as_str().unwrap_or("");
    assert!(
        message.contains("line 4") && message.contains("column"),
        "{body}"
    );
    let (status, body) = h.create("<api name=\"A\" context=\"/a\"").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"].as_str().unwrap_or("").contains("line 1"),
        "{body}"
    );

    // An unsupported mediator: 422 naming it and its line.
    let script = "<api name=\"A\" context=\"/a\">\n  <resource>\n    <inSequence>\n      <log/>\n      <script language=\"js\">x</script>\n    </inSequence>\n  </resource>\n</api>";
    let (status, body) = h.create(script).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["code"], 422);
    let message = body["message"].as_str().unwrap_or("");
    assert!(
        message.contains("script") && message.contains("line 5"),
        "{body}"
    );
    assert!(
        message.contains("supported"),
        "names what is supported: {body}"
    );

    // A bundle whose API sends to an endpoint it does not define: 422 naming the key.
    let bundle = r#"<definitions xmlns="http://ws.apache.org/ns/synapse">
  <endpoint name="present"><http uri-template="http://127.0.0.1:9/x"/></endpoint>
  <api name="B" context="/b">
    <resource methods="GET">
      <inSequence><send><endpoint key="absentBackend"/></send></inSequence>
    </resource>
  </api>
</definitions>"#;
    let (status, body) = h.create(bundle).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("absentBackend"),
        "{body}"
    );
    // The same bundle with the endpoint defined is fine.
    let fixed = bundle.replace("name=\"present\"", "name=\"absentBackend\"");
    let (status, body) = h.create(&fixed).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().expect("id").to_owned();
    // An invalid update leaves the API as it was.
    let (status, _) = h.update(&id, script).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = h.update(&id, malformed).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // An empty body and a non-XML content type.
    let (status, _) = h.create("   ").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = h
        .send(
            h.request(Method::POST, "/api/v1/apis")
                .header("content-type", "application/json")
                .body(mock_api("J", "/j", "j")),
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    assert_eq!(h.count("SELECT count(*) FROM apis").await, 1);
    assert_eq!(h.count("SELECT count(*) FROM api_revisions").await, 1);
    h.finish().await;
}

#[tokio::test]
async fn bad_ids_and_labels_are_400() {
    let h = Harness::start().await;
    let (_, created) = h.create(&mock_api("Orders", "/orders", "r1")).await;
    let id = created["id"].as_str().expect("id").to_owned();

    // Not a UUID, on every route that takes an id.
    let (status, body) = h.get("/api/v1/apis/not-a-uuid").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("not-a-uuid"),
        "{body}"
    );
    assert_eq!(
        h.update("not-a-uuid", &mock_api("Orders", "/orders", "r2"))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        h.delete("/api/v1/apis/not-a-uuid").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        h.get("/api/v1/apis/not-a-uuid/artifact").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        h.get("/api/v1/apis/not-a-uuid/status").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        h.deploy("not-a-uuid", json!({"labels": [LABEL1]})).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        h.delete(&format!("/api/v1/apis/not-a-uuid/deployments/{LABEL1}"))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );

    // Bad labels: edges of white space, control characters, empty, too long.
    let long = "L".repeat(256);
    for bad in [" Label1", "Label1 ", "La\nbel", "", long.as_str()] {
        let (status, body) = h.deploy(&id, json!({"labels": [bad]})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "label {bad:?}: {body}");
        assert_eq!(body["code"], 400);
    }
    // One bad label among good ones refuses the whole request.
    let (status, _) = h.deploy(&id, json!({"labels": [LABEL1, " bad"]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // No labels, a malformed body, unknown fields, a revision of 0.
    for body in [
        json!({"labels": []}),
        json!({"label": [LABEL1]}),
        json!({"labels": [LABEL1], "revision": 0}),
        json!({"labels": [LABEL1], "revision": "one"}),
        json!({"labels": [LABEL1], "extra": true}),
    ] {
        let (status, answer) = h.deploy(&id, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
    }
    let (status, _, _) = h
        .send(
            h.request(Method::POST, &format!("/api/v1/apis/{id}/deployments"))
                .header("content-type", "application/json")
                .body("{not json"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // A bad label in the undeploy path.
    let (status, body) = h
        .delete(&format!("/api/v1/apis/{id}/deployments/%20Label1"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    assert_eq!(h.count("SELECT count(*) FROM deployments").await, 0);
    assert_eq!(h.count("SELECT count(*) FROM outbox").await, 0);
    h.finish().await;
}

#[tokio::test]
async fn updates_roll_back_by_republishing_and_cannot_steal_an_identity() {
    let h = Harness::start().await;
    let r1 = mock_api("Orders", "/orders", "r1");
    let r2 = mock_api("Orders", "/orders", "r2");
    let (_, created) = h.create(&r1).await;
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(h.update(&id, &r2).await.0, StatusCode::CREATED);
    let (status, d) = h.deploy(&id, json!({"labels": [LABEL1]})).await;
    assert_eq!(status, StatusCode::OK, "{d}");
    assert_eq!(d["revision"], 2);

    // Rolling back = publishing the old artifact again: a new revision.
    let (status, body) = h.update(&id, &r1).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["revision"], 3);
    assert_eq!(body["sha256"], json!(sha(&r1)));
    let (status, d) = h.deploy(&id, json!({"labels": [LABEL1]})).await;
    assert_eq!(status, StatusCode::OK, "{d}");
    assert_eq!(d["revision"], 3);
    assert_eq!(d["changedLabels"], json!([LABEL1]));

    // An update may not take another API's (name, version) or context.
    let (_, stock) = h.create(&mock_api("Stock", "/stock", "s1")).await;
    let stock_id = stock["id"].as_str().expect("id").to_owned();
    let (status, body) = h
        .update(&stock_id, &mock_api("Orders", "/stock", "s2"))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = h
        .update(&stock_id, &mock_api("Stock", "/orders", "s2"))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    // A create may not take another API's context either.
    let (status, body) = h.create(&mock_api("Other", "/orders", "o1")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (_, detail) = h.get(&format!("/api/v1/apis/{stock_id}")).await;
    assert_eq!(detail["revision"], 1, "{detail}");
    assert_eq!(detail["name"], "Stock");
    h.finish().await;
}

#[tokio::test]
async fn labels_with_special_characters_round_trip_through_the_path() {
    let h = Harness::start().await;
    let (_, created) = h.create(&mock_api("Orders", "/orders", "r1")).await;
    let id = created["id"].as_str().expect("id").to_owned();
    let labels = ["Team A/Prod", "Prödüction", "50% canary", "a+b", "x?y#z"];
    let (status, d) = h.deploy(&id, json!({ "labels": labels })).await;
    assert_eq!(status, StatusCode::OK, "{d}");
    assert_eq!(d["changedLabels"], json!(labels));
    for label in labels {
        let encoded: String = label
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let mark = h.max_outbox_id().await;
        let (status, body) = h
            .delete(&format!("/api/v1/apis/{id}/deployments/{encoded}"))
            .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "undeploy {label:?} as {encoded}: {body}"
        );
        assert_eq!(body["label"], json!(label));
        let rows = h.outbox_after(mark).await;
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].routing_key, label);
    }
    assert_eq!(h.count("SELECT count(*) FROM deployments").await, 0);
    h.finish().await;
}

#[tokio::test]
async fn deploy_events_carry_artifacts_up_to_the_configured_size() {
    let small = mock_api("Inline", "/inline", "r1");
    let limit = small.len() + 8;
    let h = Harness::start_with(|raw| raw.publisher.inline_artifact_max_bytes = limit).await;
    let (_, created) = h.create(&small).await;
    let id = created["id"].as_str().expect("id").to_owned();
    let mark = h.max_outbox_id().await;
    assert_eq!(
        h.deploy(&id, json!({"labels": [PROD]})).await.0,
        StatusCode::OK
    );
    let rows = h.outbox_after(mark).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].payload["artifact"], json!(small));

    // A revision over the limit is announced without its artifact.
    let large = mock_api("Inline", "/inline", &"r".repeat(64));
    assert!(large.len() > limit);
    assert_eq!(h.update(&id, &large).await.0, StatusCode::CREATED);
    let mark = h.max_outbox_id().await;
    assert_eq!(
        h.deploy(&id, json!({"labels": [PROD]})).await.0,
        StatusCode::OK
    );
    let rows = h.outbox_after(mark).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].payload["revision"], 2);
    assert!(rows[0].payload.get("artifact").is_none(), "{:?}", rows[0]);

    // Removals never carry one.
    let mark = h.max_outbox_id().await;
    assert_eq!(
        h.delete(&format!("/api/v1/apis/{id}/deployments/{PROD_PATH}"))
            .await
            .0,
        StatusCode::OK
    );
    let rows = h.outbox_after(mark).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].payload.get("artifact").is_none(), "{:?}", rows[0]);
    h.finish().await;
}

#[tokio::test]
async fn known_labels_refuse_typos_with_422() {
    let h = Harness::start_with(|raw| {
        raw.publisher.known_labels = vec![PROD.into(), LABEL1.into()];
    })
    .await;
    let (_, created) = h.create(&mock_api("Orders", "/orders", "r1")).await;
    let id = created["id"].as_str().expect("id").to_owned();
    let (status, body) = h
        .deploy(&id, json!({"labels": [LABEL1, "Production and Sandbx"]}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("Production and Sandbx"),
        "{body}"
    );
    assert_eq!(h.count("SELECT count(*) FROM deployments").await, 0);
    let (status, body) = h.deploy(&id, json!({"labels": [LABEL1, PROD]})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    h.finish().await;
}

#[tokio::test]
async fn framework_errors_are_json_too() {
    let h = Harness::start().await;
    // A method the route does not have.
    let (status, body, headers) = h.send(h.request(Method::PATCH, "/api/v1/apis")).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    assert_eq!(body["code"], 405, "{body}");
    assert!(headers.contains_key("allow"), "{headers:?}");
    // A deploy body over the JSON body limit.
    let (_, created) = h.create(&mock_api("Big", "/big", "r1")).await;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    let huge = format!(r#"{{"labels": ["{}"]}}"#, "x".repeat(3 * 1024 * 1024));
    let (status, body, _) = h
        .send(
            h.request(Method::POST, &format!("/api/v1/apis/{id}/deployments"))
                .header("content-type", "application/json")
                .body(huge),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["code"], 413, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    h.finish().await;
}
