//! The transactional outbox on MySQL/MariaDB, as `outbox_atomicity.rs` on
//! PostgreSQL (DESIGN.md §4, §5, §11): a change and its events are
//! committed in one transaction. A failing event insert rolls the change
//! back (503, nothing changed), and a failure after the event insert rolls
//! the event back with the change. Real MariaDB (a database per test),
//! real HTTP on loopback.

use std::time::Duration;

use artisync_publisher::config::RawConfig;
use artisync_test_support::components::{self, Started};
use artisync_test_support::mysql::TestDatabase;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{MySqlPool, Row};

const TOKEN: &str = "publisher-test-token";
const PROD: &str = "Production and Sandbox";
const LABEL1: &str = "Label1";

fn amqp_url() -> String {
    std::env::var("TEST_AMQP_URL")
        .or_else(|_| std::env::var("AMQP_URL"))
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

struct Harness {
    _db: TestDatabase,
    pool: MySqlPool,
    running: Option<Started>,
    exchange: String,
    base: String,
    http: reqwest::Client,
}

impl Harness {
    async fn start() -> Harness {
        let db = TestDatabase::create().await.expect("test database");
        let exchange = format!(
            "artisync.test.{}.deployments",
            uuid::Uuid::new_v4().simple()
        );
        let mut raw = RawConfig::default();
        raw.publisher.listen = "127.0.0.1:0".into();
        raw.publisher.tokens = vec![TOKEN.into()];
        raw.publisher.relay_poll_interval_ms = 100;
        raw.database.url = Some(db.url.clone());
        raw.database.max_connections = Some(5);
        raw.amqp.url = amqp_url();
        raw.amqp.exchange = exchange.clone();
        let running = components::publisher(raw.validate().expect("config"))
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
            http: reqwest::Client::new(),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.expect("request");
        let status = r.status();
        let text = r.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn create(&self, xml: String) -> String {
        let r = self
            .http
            .post(format!("{}/api/v1/apis", self.base))
            .bearer_auth(TOKEN)
            .header("content-type", "application/xml")
            .body(xml)
            .send()
            .await
            .expect("create");
        assert_eq!(r.status(), StatusCode::CREATED);
        let body: Value = r.json().await.expect("json");
        body["id"].as_str().expect("id").to_owned()
    }

    async fn deploy(&self, id: &str, labels: &[&str]) -> (StatusCode, Value) {
        self.call(
            reqwest::Method::POST,
            &format!("/api/v1/apis/{id}/deployments"),
            Some(json!({ "labels": labels })),
        )
        .await
    }

    async fn exec(&self, sql: &'static str) {
        // Triggers cannot be prepared: the text protocol.
        sqlx::raw_sql(sql)
            .execute(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Everything a change may touch, to compare before and after.
    async fn snapshot(&self) -> Snapshot {
        let deployments = sqlx::query(
            "SELECT api_id AS api, label, revision, sequence FROM deployments ORDER BY 1, 2",
        )
        .fetch_all(&self.pool)
        .await
        .expect("deployments")
        .iter()
        .map(|r| {
            (
                r.get::<String, _>("api"),
                r.get::<String, _>("label"),
                r.get::<i32, _>("revision"),
                r.get::<i64, _>("sequence"),
            )
        })
        .collect();
        let label_sequences = sqlx::query("SELECT label, sequence FROM label_sequences ORDER BY 1")
            .fetch_all(&self.pool)
            .await
            .expect("label_sequences")
            .iter()
            .map(|r| (r.get::<String, _>("label"), r.get::<i64, _>("sequence")))
            .collect();
        let outbox = sqlx::query_scalar("SELECT id FROM outbox ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .expect("outbox");
        let apis = sqlx::query_scalar("SELECT id FROM apis ORDER BY 1")
            .fetch_all(&self.pool)
            .await
            .expect("apis");
        let revisions = sqlx::query_scalar("SELECT count(*) FROM api_revisions")
            .fetch_one(&self.pool)
            .await
            .expect("revisions");
        Snapshot {
            deployments,
            label_sequences,
            outbox,
            apis,
            revisions,
        }
    }

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

#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    deployments: Vec<(String, String, i32, i64)>,
    label_sequences: Vec<(String, i64)>,
    outbox: Vec<i64>,
    apis: Vec<String>,
    revisions: i64,
}

fn mock_api(name: &str, context: &str) -> String {
    format!(
        r#"<api xmlns="http://ws.apache.org/ns/synapse" name="{name}" context="{context}" version="1.0">
  <resource methods="GET" uri-template="/hello">
    <inSequence>
      <payloadFactory media-type="json"><format>{{"api": "{name}"}}</format><args/></payloadFactory>
      <respond/>
    </inSequence>
  </resource>
</api>"#
    )
}

fn assert_database_error(status: StatusCode, body: &Value) {
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], 503, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

// A transient failure (serialization failure, SQLSTATE 40001), as a busy
// database would raise it: the answer says "retry later" (503), and
// nothing of the change is kept. MySQL triggers fire for one event each.
const FAIL_OUTBOX_INSERT: &str = "CREATE TRIGGER test_fail BEFORE INSERT ON outbox
    FOR EACH ROW SIGNAL SQLSTATE '40001' SET MESSAGE_TEXT = 'injected failure on outbox'";
const FAIL_LABEL_SEQUENCE_INSERT: &str = "CREATE TRIGGER test_fail_insert
    BEFORE INSERT ON label_sequences FOR EACH ROW
    SIGNAL SQLSTATE '40001' SET MESSAGE_TEXT = 'injected failure on label_sequences'";
const FAIL_LABEL_SEQUENCE_UPDATE: &str = "CREATE TRIGGER test_fail_update
    BEFORE UPDATE ON label_sequences FOR EACH ROW
    SIGNAL SQLSTATE '40001' SET MESSAGE_TEXT = 'injected failure on label_sequences'";

#[tokio::test]
async fn a_failing_event_insert_rolls_back_the_change() {
    let h = Harness::start().await;
    let orders = h.create(mock_api("Orders", "/orders")).await;
    let stock = h.create(mock_api("Stock", "/stock")).await;
    // A committed deployment first, so that label_sequences has a row to keep.
    let (status, d) = h.deploy(&stock, &[PROD]).await;
    assert_eq!(status, StatusCode::OK, "{d}");
    let (status, d) = h.deploy(&orders, &[LABEL1]).await;
    assert_eq!(status, StatusCode::OK, "{d}");

    h.exec(FAIL_OUTBOX_INSERT).await;
    let before = h.snapshot().await;

    // Deploy: the event cannot be written, so the deployment is not either.
    let (status, body) = h.deploy(&orders, &[PROD]).await;
    assert_database_error(status, &body);
    let after = h.snapshot().await;
    assert_eq!(after, before, "a failed deploy left changes behind");
    let no_row: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deployments WHERE api_id = ? AND label = ?")
            .bind(&orders)
            .bind(PROD)
            .fetch_one(&h.pool)
            .await
            .expect("count");
    assert_eq!(no_row, 0);
    let (_, detail) = h
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/apis/{orders}"),
            None,
        )
        .await;
    assert_eq!(
        detail["deployments"].as_array().map(Vec::len),
        Some(1),
        "{detail}"
    );

    // Undeploy and delete are refused the same way and change nothing.
    let (status, body) = h
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/apis/{orders}/deployments/{LABEL1}"),
            None,
        )
        .await;
    assert_database_error(status, &body);
    assert_eq!(
        h.snapshot().await,
        before,
        "a failed undeploy left changes behind"
    );
    let (status, body) = h
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/apis/{orders}"),
            None,
        )
        .await;
    assert_database_error(status, &body);
    assert_eq!(
        h.snapshot().await,
        before,
        "a failed delete left changes behind"
    );

    // Without the trigger, the same deploy works and writes its event.
    h.exec("DROP TRIGGER test_fail").await;
    let (status, d) = h.deploy(&orders, &[PROD]).await;
    assert_eq!(status, StatusCode::OK, "{d}");
    assert_eq!(d["changedLabels"], json!([PROD]));
    let sequence = d["sequence"].as_i64().expect("sequence");
    let after = h.snapshot().await;
    assert_eq!(after.outbox.len(), before.outbox.len() + 1);
    assert!(
        after
            .deployments
            .contains(&(orders.clone(), PROD.to_owned(), 1, sequence))
    );
    assert!(after.label_sequences.contains(&(PROD.to_owned(), sequence)));
    h.finish().await;
}

#[tokio::test]
async fn a_failure_after_the_event_insert_rolls_the_event_back() {
    let h = Harness::start().await;
    let orders = h.create(mock_api("Orders", "/orders")).await;
    let (status, d) = h.deploy(&orders, &[LABEL1]).await;
    assert_eq!(status, StatusCode::OK, "{d}");

    // The events are inserted, then the per-label change numbers: failing
    // the latter must take the events down with the change.
    h.exec(FAIL_LABEL_SEQUENCE_INSERT).await;
    h.exec(FAIL_LABEL_SEQUENCE_UPDATE).await;
    let before = h.snapshot().await;
    let (status, body) = h.deploy(&orders, &[PROD]).await;
    assert_database_error(status, &body);
    assert_eq!(
        h.snapshot().await,
        before,
        "an event outlived its failed change"
    );
    let (status, body) = h
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/apis/{orders}/deployments/{LABEL1}"),
            None,
        )
        .await;
    assert_database_error(status, &body);
    assert_eq!(
        h.snapshot().await,
        before,
        "an event outlived its failed undeploy"
    );

    h.exec("DROP TRIGGER test_fail_insert").await;
    h.exec("DROP TRIGGER test_fail_update").await;
    let (status, body) = h
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/apis/{orders}/deployments/{LABEL1}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let after = h.snapshot().await;
    assert!(after.deployments.is_empty());
    assert_eq!(after.outbox.len(), before.outbox.len() + 1);
    h.finish().await;
}
