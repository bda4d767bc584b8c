//! The traffic manager's internal data API (DESIGN.md §6) over real HTTP on
//! loopback, against the real PostgreSQL (a database per test): desired
//! state per label, artifacts, streamed bulk retrieval, gateway status
//! intake (read back through the publisher's API), label-scoped tokens.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use artisync_domain::{ApiId, GatewayLabel, Revision, Sha256Digest};
use artisync_ports::ArtifactStore;
use artisync_ports::artifacts::{ChangeContext, NewArtifact};
use artisync_postgres::PgBackend;
use artisync_test_support::components::{self, Started};
use artisync_test_support::postgres::TestDatabase;
use artisync_traffic_manager::config::{RawConfig, RawToken};
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

const PROD: &str = "Production and Sandbox";
const LABEL1: &str = "Label1";
const ALL_TOKEN: &str = "all-labels-token";
const LABEL1_TOKEN: &str = "label1-only-token";
const PROD_TOKEN: &str = "prod-only-token-0";

fn amqp_url() -> String {
    std::env::var("TEST_AMQP_URL")
        .or_else(|_| std::env::var("AMQP_URL"))
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// A traffic manager on its own database, with a writer (the publisher's
/// store) to set up deployments.
struct Harness {
    db: TestDatabase,
    pool: PgPool,
    store: PgBackend,
    running: Option<Started>,
    base: String,
    http: reqwest::Client,
}

impl Harness {
    async fn start() -> Harness {
        Harness::start_with(|_| {}).await
    }

    async fn start_with(adjust: impl FnOnce(&mut RawConfig)) -> Harness {
        let db = TestDatabase::create().await.expect("test database");
        let mut raw = RawConfig::default();
        raw.traffic_manager.listen = "127.0.0.1:0".into();
        raw.traffic_manager.tokens = vec![
            RawToken {
                name: Some("all".into()),
                token: ALL_TOKEN.into(),
                labels: vec!["*".into()],
                node: None,
                organizations: None,
                environments: None,
            },
            RawToken {
                name: Some("gw-label1".into()),
                token: LABEL1_TOKEN.into(),
                labels: vec![LABEL1.into()],
                node: Some("gw-3".into()),
                organizations: None,
                environments: None,
            },
            RawToken {
                name: Some("gw-prod".into()),
                token: PROD_TOKEN.into(),
                labels: vec![PROD.into()],
                node: None,
                organizations: None,
                environments: None,
            },
        ];
        raw.database.url = Some(db.url.clone());
        raw.database.max_backend_connection_pool = 5;
        adjust(&mut raw);
        let settings = raw.validate().expect("valid config");
        let running = components::traffic_manager(settings)
            .await
            .expect("traffic manager starts");
        let base = format!("http://{}", running.addr);
        let pool = db.pool().await.expect("pool");
        Harness {
            store: PgBackend::from_pool(pool.clone()),
            db,
            pool,
            running: Some(running),
            base,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
        }
    }

    fn get(&self, path: &str, token: Option<&str>) -> reqwest::RequestBuilder {
        let rb = self.http.get(format!("{}{path}", self.base));
        match token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    fn post(&self, path: &str, token: &str, body: &Value) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(body)
    }

    async fn metadata(&self, labels: &[&str], token: &str) -> (StatusCode, Value) {
        let r = self
            .get(&metadata_path(labels), Some(token))
            .send()
            .await
            .expect("request");
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn create(&self, xml: &str) -> ApiId {
        self.store
            .create_api(artifact(xml))
            .await
            .expect("create")
            .id
    }

    async fn update(&self, id: ApiId, xml: &str) {
        self.store
            .update_api(id, artifact(xml))
            .await
            .expect("update");
    }

    async fn deploy(&self, id: ApiId, labels: &[&str], revision: Option<u32>) -> i64 {
        let labels: Vec<GatewayLabel> = labels
            .iter()
            .map(|l| GatewayLabel::parse(l).expect("label"))
            .collect();
        self.store
            .deploy(
                id,
                &labels,
                revision.map(|r| Revision::new(i64::from(r)).expect("revision")),
                &ChangeContext::default(),
            )
            .await
            .expect("deploy")
            .sequence
            .expect("a change")
    }

    async fn finish(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(15), running.task).await;
        }
        self.pool.close().await;
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown.cancel();
            running.task.abort();
        }
    }
}

fn metadata_path(labels: &[&str]) -> String {
    format!("/internal/data/v1/runtime-metadata?{}", label_query(labels))
}

fn label_query(labels: &[&str]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for l in labels {
        q.append_pair("gatewayLabel", l);
    }
    q.finish()
}

fn mock_api(name: &str, context: &str, tag: &str) -> String {
    format!(
        r#"<api xmlns="http://ws.apache.org/ns/synapse" name="{name}" context="{context}" version="1.0">
  <resource methods="GET" uri-template="/hello">
    <inSequence>
      <payloadFactory media-type="json"><format>{{"api": "{name}", "tag": "{tag}"}}</format><args/></payloadFactory>
      <respond/>
    </inSequence>
  </resource>
</api>"#
    )
}

fn artifact(xml: &str) -> NewArtifact {
    let parsed = artisync_synapse::parse_artifact(xml.as_bytes()).expect("valid artifact");
    NewArtifact {
        name: parsed.api.name.clone(),
        version: parsed.api.version.clone().unwrap_or_default(),
        context: parsed.api.context.clone(),
        xml: xml.as_bytes().to_vec(),
        sha256: Sha256Digest::of(xml.as_bytes()),
    }
}

fn sha(xml: &str) -> String {
    Sha256Digest::of(xml.as_bytes()).to_hex()
}

fn error_code(body: &Value) -> u64 {
    body["code"].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn runtime_metadata_per_label_with_etag_and_scoping() {
    let h = Harness::start().await;
    let a1 = mock_api("Orders", "/orders", "r1");
    let a2 = mock_api("Orders", "/orders", "r2");
    let b1 = mock_api("Stock", "/stock", "s1");
    let a = h.create(&a1).await;
    h.update(a, &a2).await;
    let b = h.create(&b1).await;
    let _never_deployed = h.create(&mock_api("Idle", "/idle", "i1")).await;
    let seq_a_label1 = h.deploy(a, &[LABEL1], Some(1)).await;
    let seq_a_prod = h.deploy(a, &[PROD], None).await;
    let seq_b_prod = h.deploy(b, &[PROD], None).await;

    // Label1: Orders revision 1 only; the sequence is Label1's.
    let (status, m) = h.metadata(&[LABEL1], LABEL1_TOKEN).await;
    assert_eq!(status, StatusCode::OK, "{m}");
    assert_eq!(m["sequence"], json!(seq_a_label1), "{m}");
    assert_eq!(
        m["apis"],
        json!([{
            "apiId": a.to_string(),
            "name": "Orders",
            "version": "1.0",
            "context": "/orders",
            "revision": 1,
            "sha256": sha(&a1),
            "labels": [LABEL1],
        }]),
        "{m}"
    );
    // PROD, with its own token: both APIs, the latest sequence.
    let (status, m) = h.metadata(&[PROD], PROD_TOKEN).await;
    assert_eq!(status, StatusCode::OK, "{m}");
    assert_eq!(m["sequence"], json!(seq_b_prod));
    let apis: BTreeMap<String, (u64, String)> = m["apis"]
        .as_array()
        .expect("apis")
        .iter()
        .map(|x| {
            (
                x["apiId"].as_str().unwrap().to_owned(),
                (
                    x["revision"].as_u64().unwrap(),
                    x["sha256"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect();
    assert_eq!(
        apis,
        BTreeMap::from([
            (a.to_string(), (2, sha(&a2))),
            (b.to_string(), (1, sha(&b1)))
        ])
    );
    // Both labels at once (a `*` token): the highest revision per API and
    // every requested label it is on.
    let (status, m) = h.metadata(&[LABEL1, PROD], ALL_TOKEN).await;
    assert_eq!(status, StatusCode::OK, "{m}");
    assert_eq!(m["sequence"], json!(seq_b_prod.max(seq_a_prod)));
    let orders = m["apis"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["apiId"] == json!(a.to_string()))
        .expect("Orders")
        .clone();
    assert_eq!(orders["revision"], 2, "{m}");
    assert_eq!(orders["sha256"], json!(sha(&a2)));
    assert_eq!(
        orders["labels"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect::<BTreeSet<_>>(),
        BTreeSet::from([LABEL1, PROD])
    );
    // A label nothing is deployed on: empty, sequence 0.
    let (status, m) = h.metadata(&["Nowhere"], ALL_TOKEN).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(m, json!({"sequence": 0, "apis": []}));

    // ETag: the same state answers 304 to If-None-Match.
    let r = h
        .get(&metadata_path(&[LABEL1]), Some(LABEL1_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let r = h
        .get(&metadata_path(&[LABEL1]), Some(LABEL1_TOKEN))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(r.headers()["etag"].to_str().unwrap(), etag);
    assert!(r.bytes().await.unwrap().is_empty());
    let r = h
        .get(&metadata_path(&[LABEL1]), Some(LABEL1_TOKEN))
        .header("if-none-match", "\"something-else\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // After a change on the label, the old ETag no longer matches.
    let seq_b_label1 = h.deploy(b, &[LABEL1], None).await;
    let r = h
        .get(&metadata_path(&[LABEL1]), Some(LABEL1_TOKEN))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_ne!(r.headers()["etag"].to_str().unwrap(), etag);
    let m: Value = r.json().await.unwrap();
    assert_eq!(m["sequence"], json!(seq_b_label1));
    assert_eq!(m["apis"].as_array().map(Vec::len), Some(2));
    // A removal raises the label's sequence too.
    let removed = h
        .store
        .undeploy(
            b,
            &GatewayLabel::parse(LABEL1).unwrap(),
            &ChangeContext::default(),
        )
        .await
        .expect("undeploy");
    let (_, m) = h.metadata(&[LABEL1], LABEL1_TOKEN).await;
    assert_eq!(m["sequence"], json!(removed));
    assert!(removed > seq_b_label1);
    assert_eq!(m["apis"].as_array().map(Vec::len), Some(1));

    // Scoping: a Label1 token may not read PROD, alone or with Label1.
    for labels in [&[PROD][..], &[LABEL1, PROD][..]] {
        let (status, body) = h.metadata(labels, LABEL1_TOKEN).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{labels:?}: {body}");
        assert_eq!(error_code(&body), 403, "{body}");
        assert!(
            body["message"].as_str().unwrap_or("").contains(PROD),
            "{body}"
        );
    }
    let (status, _) = h.metadata(&[LABEL1], PROD_TOKEN).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // No token, a wrong token: 401.
    let r = h.get(&metadata_path(&[LABEL1]), None).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(error_code(&body), 401);
    let (status, _) = h.metadata(&[LABEL1], "not-a-known-token").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // No label, a bad label: 400.
    let r = h
        .get("/internal/data/v1/runtime-metadata", Some(ALL_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let (status, _) = h.metadata(&[" Label1"], ALL_TOKEN).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    h.finish().await;
}

#[tokio::test]
async fn runtime_artifacts_serve_the_revision_deployed_on_the_label() {
    let h = Harness::start().await;
    let a1 = mock_api("Orders", "/orders", "r1");
    let a2 = mock_api("Orders", "/orders", "r2");
    let b1 = mock_api("Stock", "/stock", "s1");
    let a = h.create(&a1).await;
    h.update(a, &a2).await;
    let b = h.create(&b1).await;
    let idle = h.create(&mock_api("Idle", "/idle", "i1")).await;
    h.deploy(a, &[LABEL1], Some(1)).await;
    h.deploy(a, &[PROD], Some(2)).await;
    h.deploy(b, &[PROD], None).await;

    let fetch = |id: String, labels: Vec<&'static str>, token: &'static str| {
        let rb = h.get(
            &format!(
                "/internal/data/v1/runtime-artifacts/{id}?{}",
                label_query(&labels)
            ),
            Some(token),
        );
        async move {
            let r = rb.send().await.expect("request");
            let status = r.status();
            let headers = r.headers().clone();
            (status, headers, r.text().await.unwrap_or_default())
        }
    };

    // Label1 runs revision 1 of Orders.
    let (status, headers, body) = fetch(a.to_string(), vec![LABEL1], LABEL1_TOKEN).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, a1);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/xml")
    );
    assert_eq!(headers["x-artisync-revision"], "1");
    assert_eq!(
        headers["etag"].to_str().unwrap().trim_matches('"'),
        sha(&a1)
    );
    // PROD runs revision 2.
    let (status, headers, body) = fetch(a.to_string(), vec![PROD], PROD_TOKEN).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, a2);
    assert_eq!(headers["x-artisync-revision"], "2");
    assert_eq!(
        headers["etag"].to_str().unwrap().trim_matches('"'),
        sha(&a2)
    );
    // Several labels: the highest revision among them.
    let (status, headers, body) = fetch(a.to_string(), vec![LABEL1, PROD], ALL_TOKEN).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, a2);
    assert_eq!(headers["x-artisync-revision"], "2");
    let (_, headers, _) = fetch(a.to_string(), vec![PROD, LABEL1], ALL_TOKEN).await;
    assert_eq!(headers["x-artisync-revision"], "2");

    // Not deployed on the label, never deployed, unknown: 404.
    for (id, labels, token) in [
        (b.to_string(), vec![LABEL1], LABEL1_TOKEN),
        (idle.to_string(), vec![LABEL1], LABEL1_TOKEN),
        (idle.to_string(), vec![LABEL1, PROD], ALL_TOKEN),
        (uuid::Uuid::new_v4().to_string(), vec![PROD], PROD_TOKEN),
    ] {
        let (status, _, body) = fetch(id.clone(), labels.clone(), token).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{id} on {labels:?}: {body}");
        let body: Value = serde_json::from_str(&body).expect("JSON error");
        assert_eq!(error_code(&body), 404);
    }
    // Stock is on PROD, though.
    let (status, _, body) = fetch(b.to_string(), vec![PROD], PROD_TOKEN).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, b1);

    // Scoping comes first: a Label1 token asking for PROD gets 403, whether
    // or not the API is there.
    for id in [
        a.to_string(),
        b.to_string(),
        uuid::Uuid::new_v4().to_string(),
    ] {
        let (status, _, body) = fetch(id, vec![PROD], LABEL1_TOKEN).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    }
    // After an undeploy, the label no longer serves it.
    h.store
        .undeploy(
            a,
            &GatewayLabel::parse(LABEL1).unwrap(),
            &ChangeContext::default(),
        )
        .await
        .expect("undeploy");
    let (status, _, _) = fetch(a.to_string(), vec![LABEL1], LABEL1_TOKEN).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Bad id, no label, no token.
    let (status, _, _) = fetch("not-a-uuid".into(), vec![PROD], PROD_TOKEN).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let r = h
        .get(
            &format!("/internal/data/v1/runtime-artifacts/{a}"),
            Some(PROD_TOKEN),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = h
        .get(
            &format!("/internal/data/v1/runtime-artifacts/{a}?gatewayLabel=Label1"),
            None,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    h.finish().await;
}

/// Inserts `n` APIs with one revision each, deployed on `label`, in a few
/// statements; returns id -> (name, sha256).
async fn bulk_deploy(
    pool: &PgPool,
    n: usize,
    label: &str,
    prefix: &str,
) -> BTreeMap<String, (String, String)> {
    let mut ids = Vec::with_capacity(n);
    let mut names = Vec::with_capacity(n);
    let mut contexts = Vec::with_capacity(n);
    let mut shas = Vec::with_capacity(n);
    let mut xmls: Vec<Vec<u8>> = Vec::with_capacity(n);
    let mut expected = BTreeMap::new();
    for i in 0..n {
        let id = uuid::Uuid::new_v4();
        let name = format!("{prefix}{i:04}");
        let xml = mock_api(&name, &format!("/{}", name.to_lowercase()), "bulk");
        ids.push(id);
        names.push(name.clone());
        contexts.push(format!("/{}", name.to_lowercase()));
        shas.push(sha(&xml));
        expected.insert(id.to_string(), (name, sha(&xml)));
        xmls.push(xml.into_bytes());
    }
    let mut tx = pool.begin().await.expect("tx");
    sqlx::query(
        "INSERT INTO apis (id, name, version, context, latest_revision)
         SELECT id, name, '1.0', context, 1 FROM UNNEST($1::uuid[], $2::text[], $3::text[])
            AS t(id, name, context)",
    )
    .bind(&ids)
    .bind(&names)
    .bind(&contexts)
    .execute(&mut *tx)
    .await
    .expect("apis");
    sqlx::query(
        "INSERT INTO api_revisions (api_id, revision, sha256, artifact)
         SELECT id, 1, sha, xml FROM UNNEST($1::uuid[], $2::text[], $3::bytea[]) AS t(id, sha, xml)",
    )
    .bind(&ids)
    .bind(&shas)
    .bind(&xmls)
    .execute(&mut *tx)
    .await
    .expect("revisions");
    sqlx::query(
        "INSERT INTO deployments (api_id, label, revision, sequence)
         SELECT id, $2, 1, nextval('change_sequence') FROM UNNEST($1::uuid[]) AS t(id)",
    )
    .bind(&ids)
    .bind(label)
    .execute(&mut *tx)
    .await
    .expect("deployments");
    sqlx::query(
        "INSERT INTO label_sequences (label, sequence) VALUES ($1, currval('change_sequence'))
         ON CONFLICT (label) DO UPDATE SET sequence = EXCLUDED.sequence",
    )
    .bind(label)
    .execute(&mut *tx)
    .await
    .expect("label_sequences");
    tx.commit().await.expect("commit");
    expected
}

#[tokio::test]
async fn retrieve_runtime_artifacts_streams_a_thousand_as_ndjson() {
    let h = Harness::start().await;
    let expected = bulk_deploy(&h.pool, 1000, LABEL1, "Bulk").await;
    // Others on another label must not be part of the answer.
    let others = bulk_deploy(&h.pool, 50, PROD, "Other").await;

    let r = h
        .post(
            "/internal/data/v1/retrieve-runtime-artifacts",
            LABEL1_TOKEN,
            &json!({"gatewayLabels": [LABEL1]}),
        )
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    assert!(
        r.headers().get("content-length").is_none(),
        "a streamed answer has no length up front: {:?}",
        r.headers()
    );
    // Read it as a stream, line by line.
    let mut stream = r.bytes_stream();
    let mut buffer = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut lines = 0usize;
    let mut handle = |line: &[u8], seen: &mut BTreeMap<String, usize>| {
        let item: Value = serde_json::from_slice(line).unwrap_or_else(|e| {
            panic!(
                "line {lines} is not JSON ({e}): {}",
                String::from_utf8_lossy(line)
            )
        });
        lines += 1;
        let id = item["apiId"].as_str().expect("apiId").to_owned();
        let (name, digest) = expected
            .get(&id)
            .unwrap_or_else(|| panic!("unexpected API {id}: {item}"));
        assert_eq!(item["name"], json!(name));
        assert_eq!(item["revision"], 1);
        assert_eq!(item["sha256"], json!(digest));
        assert_eq!(item["labels"], json!([LABEL1]));
        let xml = item["artifact"].as_str().expect("artifact");
        assert_eq!(&sha(xml), digest, "the artifact matches its digest");
        *seen.entry(id).or_default() += 1;
    };
    while let Some(chunk) = stream.next().await {
        buffer.extend_from_slice(&chunk.expect("the stream completes"));
        while let Some(pos) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=pos).collect();
            handle(&line[..line.len() - 1], &mut seen);
        }
    }
    assert!(
        buffer.iter().all(u8::is_ascii_whitespace),
        "the stream ends with a complete line"
    );
    assert_eq!(lines, 1000);
    assert_eq!(seen.len(), 1000, "every API once");
    assert!(seen.values().all(|n| *n == 1), "no API twice");
    assert_eq!(
        seen.keys().collect::<BTreeSet<_>>(),
        expected.keys().collect::<BTreeSet<_>>()
    );

    // A subset by id: only those, and only where deployed on the labels.
    let some: Vec<String> = expected.keys().take(3).cloned().collect();
    let other = others.keys().next().unwrap().clone();
    let mut ask = some.clone();
    ask.push(other);
    let r = h
        .post(
            "/internal/data/v1/retrieve-runtime-artifacts",
            LABEL1_TOKEN,
            &json!({"gatewayLabels": [LABEL1], "apiIds": ask}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    let got: BTreeSet<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["apiId"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(got, some.into_iter().collect::<BTreeSet<_>>());

    // Both labels with a `*` token: all 1,050.
    let r = h
        .post(
            "/internal/data/v1/retrieve-runtime-artifacts",
            ALL_TOKEN,
            &json!({"gatewayLabels": [LABEL1, PROD]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap().lines().count(), 1050);

    // Scoping, and bad requests.
    let r = h
        .post(
            "/internal/data/v1/retrieve-runtime-artifacts",
            LABEL1_TOKEN,
            &json!({"gatewayLabels": [LABEL1, PROD]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    for body in [
        json!({"gatewayLabels": []}),
        json!({}),
        json!({"gatewayLabels": [" bad"]}),
        json!({"gatewayLabels": [LABEL1], "apiIds": ["nope"]}),
    ] {
        let r = h
            .post(
                "/internal/data/v1/retrieve-runtime-artifacts",
                ALL_TOKEN,
                &body,
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
    }
    let r = h
        .http
        .post(format!(
            "{}/internal/data/v1/retrieve-runtime-artifacts",
            h.base
        ))
        .json(&json!({"gatewayLabels": [LABEL1]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    h.finish().await;
}

#[tokio::test]
async fn gateway_status_reports_show_in_the_publisher() {
    let h = Harness::start().await;
    let a1 = mock_api("Orders", "/orders", "r1");
    let b1 = mock_api("Stock", "/stock", "s1");
    let a = h.create(&a1).await;
    let b = h.create(&b1).await;
    h.deploy(a, &[LABEL1], None).await;
    h.deploy(b, &[LABEL1], None).await;

    // A publisher on the same database, for the read side.
    let exchange = format!(
        "artisync.test.{}.deployments",
        uuid::Uuid::new_v4().simple()
    );
    let mut raw = artisync_publisher::config::RawConfig::default();
    raw.publisher.listen = "127.0.0.1:0".into();
    raw.publisher.tokens = vec!["publisher-test-token".into()];
    raw.database.url = Some(h.db.url.clone());
    raw.database.max_connections = Some(3);
    raw.amqp.url = amqp_url();
    raw.amqp.exchange = exchange.clone();
    let publisher = components::publisher(raw.validate().expect("publisher config"))
        .await
        .expect("publisher starts");
    let publisher_get = |path: String| {
        let rb = h
            .http
            .get(format!("http://{}{path}", publisher.addr))
            .bearer_auth("publisher-test-token");
        async move {
            let r = rb.send().await.expect("publisher request");
            assert_eq!(r.status(), StatusCode::OK);
            r.json::<Value>().await.expect("json")
        }
    };

    // gw-3 (Label1) runs Orders; Stock failed.
    let started = chrono::Utc::now();
    let report = json!({
        "nodeId": "gw-3",
        "labels": [LABEL1],
        "ready": true,
        "startedAt": started,
        "full": true,
        "apis": [
            {"apiId": a.to_string(), "revision": 1, "sha256": sha(&a1), "status": "DEPLOYED", "attempts": 1},
            {"apiId": b.to_string(), "revision": null, "sha256": null, "status": "FAILED",
             "failedRevision": 1, "error": "endpoint unreachable", "attempts": 5}
        ],
        "details": {"version": "test"}
    });
    let r = h
        .post("/internal/data/v1/gateway-status", LABEL1_TOKEN, &report)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NO_CONTENT,
        "{}",
        r.text().await.unwrap_or_default()
    );

    let gateways = publisher_get("/api/v1/gateways".into()).await;
    let list = gateways["gateways"].as_array().expect("gateways");
    assert_eq!(list.len(), 1, "{gateways}");
    let gw = &list[0];
    assert_eq!(gw["nodeId"], "gw-3");
    assert_eq!(gw["labels"], json!([LABEL1]));
    assert_eq!(gw["ready"], true);
    assert_eq!(gw["stale"], false);
    assert_eq!(gw["apisInSync"], 1, "{gw}");
    assert_eq!(gw["apisFailed"], 1, "{gw}");
    assert_eq!(gw["apisBehind"], 0, "{gw}");
    assert_eq!(gw["details"]["version"], "test");
    assert!(gw["lastHeartbeat"].is_string());

    let status = publisher_get(format!("/api/v1/apis/{a}/status")).await;
    assert_eq!(status["apiId"], json!(a.to_string()));
    let nodes = status["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 1, "{status}");
    assert_eq!(nodes[0]["nodeId"], "gw-3");
    assert_eq!(nodes[0]["appliedRevision"], 1);
    assert_eq!(nodes[0]["desiredRevision"], 1);
    assert_eq!(nodes[0]["status"], "DEPLOYED");
    assert_eq!(nodes[0]["inSync"], true);
    assert_eq!(nodes[0]["sha256"], json!(sha(&a1)));
    let status = publisher_get(format!("/api/v1/apis/{b}/status")).await;
    let node = &status["nodes"][0];
    assert_eq!(node["status"], "FAILED", "{status}");
    assert_eq!(node["error"], "endpoint unreachable");
    assert_eq!(node["attempts"], 5);
    assert_eq!(node["inSync"], false);

    // A newer revision of Orders on Label1: gw-3 is now behind on it.
    h.update(a, &mock_api("Orders", "/orders", "r2")).await;
    h.deploy(a, &[LABEL1], None).await;
    let gateways = publisher_get("/api/v1/gateways".into()).await;
    let gw = &gateways["gateways"][0];
    assert_eq!(gw["apisInSync"], 0, "{gw}");
    assert_eq!(gw["apisBehind"], 1, "{gw}");
    let status = publisher_get(format!("/api/v1/apis/{a}/status")).await;
    assert_eq!(status["nodes"][0]["desiredRevision"], 2);
    assert_eq!(status["nodes"][0]["inSync"], false);

    // A report for a label outside the token's scope: 403, nothing recorded.
    let mut foreign = report.clone();
    foreign["nodeId"] = json!("gw-sneaky");
    foreign["labels"] = json!([LABEL1, PROD]);
    let r = h
        .post("/internal/data/v1/gateway-status", LABEL1_TOKEN, &foreign)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let nodes: i64 = sqlx::query_scalar("SELECT count(*) FROM gateway_nodes")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert_eq!(nodes, 1);
    // A malformed report: 400; no token: 401.
    let r = h
        .post(
            "/internal/data/v1/gateway-status",
            LABEL1_TOKEN,
            &json!({"nodeId": "gw-3"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = h
        .http
        .post(format!("{}/internal/data/v1/gateway-status", h.base))
        .json(&report)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    publisher.shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), publisher.task).await;
    delete_exchange(&exchange).await;
    h.finish().await;
}

/// A client that reads the headers of a bulk answer and then stops reading
/// does not hold a database connection: past the per-chunk deadline the
/// stream ends, the connection is released, and the client, should it read
/// on, sees a broken transfer rather than a short list.
#[tokio::test]
async fn a_bulk_reader_that_stops_reading_releases_its_connection() {
    let h = Harness::start_with(|raw| raw.traffic_manager.bulk_send_timeout_ms = 2000).await;
    bulk_deploy(&h.pool, 1500, LABEL1, "Stalled").await;
    // About 36 MB in all: far more than the socket buffers in between.
    sqlx::query(
        "UPDATE api_revisions SET artifact = artifact || convert_to(repeat('<!-- padding -->', 1500), 'UTF8')",
    )
    .execute(&h.pool)
    .await
    .expect("padding");
    let busy = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND pid <> pg_backend_pid()
                AND state <> 'idle' AND query LIKE '%api_revisions r%'",
        )
        .fetch_one(&h.pool)
        .await
        .expect("pg_stat_activity")
    };

    let r = h
        .post(
            "/internal/data/v1/retrieve-runtime-artifacts",
            LABEL1_TOKEN,
            &json!({"gatewayLabels": [LABEL1]}),
        )
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::OK);
    // Headers read; the body is left unread. The stream's query runs
    // (wait until it is seen) until the deadline ends it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut interval = tokio::time::interval(Duration::from_millis(50));
    for (want, what) in [
        (1, "the bulk stream's query never ran"),
        (0, "a stalled bulk reader still holds a database connection"),
    ] {
        loop {
            interval.tick().await;
            if busy().await == want {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{what}");
        }
    }
    // The traffic manager still answers, and the stalled client, reading
    // on, gets a broken transfer.
    let (status, _) = h.metadata(&[LABEL1], LABEL1_TOKEN).await;
    assert_eq!(status, StatusCode::OK);
    let mut stream = r.bytes_stream();
    let mut broken = false;
    while let Some(chunk) = stream.next().await {
        if chunk.is_err() {
            broken = true;
            break;
        }
    }
    assert!(broken, "the cut stream looked complete to the client");
    h.finish().await;
}

/// A gateway's token is bound to its node: it cannot report (and so
/// overwrite) another node's status, and a report must name its labels.
#[tokio::test]
async fn status_reports_are_bound_to_the_token_node() {
    let h = Harness::start().await;
    let report = |node: &str, labels: Value| {
        json!({
            "nodeId": node,
            "labels": labels,
            "ready": true,
            "startedAt": chrono::Utc::now(),
            "full": true,
            "apis": [],
        })
    };
    let nodes = || async {
        sqlx::query_scalar::<_, String>("SELECT node_id FROM gateway_nodes ORDER BY node_id")
            .fetch_all(&h.pool)
            .await
            .expect("nodes")
    };
    let post = |token: &'static str, body: Value| {
        let rb = h.post("/internal/data/v1/gateway-status", token, &body);
        async move {
            let r = rb.send().await.expect("request");
            let status = r.status();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };

    // gw-3's token, reporting for gw-1 (same labels): 403, nothing recorded.
    let (status, body) = post(LABEL1_TOKEN, report("gw-1", json!([LABEL1]))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(nodes().await.is_empty());

    // No labels: 400.
    let (status, body) = post(LABEL1_TOKEN, report("gw-3", json!([]))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = post(ALL_TOKEN, report("gw-3", json!([]))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(nodes().await.is_empty());

    // Its own node: recorded. A token without a node binding reports any.
    let (status, body) = post(LABEL1_TOKEN, report("gw-3", json!([LABEL1]))).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = post(PROD_TOKEN, report("gw-1", json!([PROD]))).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(nodes().await, ["gw-1", "gw-3"]);
    h.finish().await;
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

#[tokio::test]
async fn probes_need_no_token() {
    let h = Harness::start().await;
    for path in ["/api/v1/status/ready", "/health/live", "/health/ready"] {
        let r = h.get(path, None).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
    // Everything else does.
    let r = h
        .get("/api/v1/organizations/o/environments/e/stores", None)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    h.finish().await;
}

#[tokio::test]
async fn persistence_store_tokens_reach_only_their_organizations_and_environments() {
    const ACME_PROD: &str = "acme-prod-only-token";
    let h = Harness::start_with(|raw| {
        raw.traffic_manager.tokens.push(RawToken {
            name: Some("acme-prod".into()),
            token: ACME_PROD.into(),
            labels: vec![LABEL1.into()],
            node: None,
            organizations: Some(vec!["acme".into()]),
            environments: Some(vec!["prod".into()]),
        });
    })
    .await;
    let store = |org: &str, env: &str| {
        format!("/api/v1/organizations/{org}/environments/{env}/stores/sessions")
    };
    let put = |path: String, token: &str| {
        h.http
            .put(format!("{}{path}", h.base))
            .bearer_auth(token)
            .json(&json!({}))
    };
    // Inside its scope: served.
    let r = put(store("acme", "prod"), ACME_PROD).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let r = h
        .get(&store("acme", "prod"), Some(ACME_PROD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Another environment or organization: 403, and nothing is written.
    for (org, env) in [("acme", "dev"), ("other", "prod")] {
        let r = put(store(org, env), ACME_PROD).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{org}/{env}");
        let r = h
            .get(
                &format!("/api/v1/organizations/{org}/environments/{env}/stores"),
                Some(ACME_PROD),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{org}/{env}");
        let listed = h
            .get(
                &format!("/api/v1/organizations/{org}/environments/{env}/stores"),
                Some(ALL_TOKEN),
            )
            .send()
            .await
            .unwrap();
        let body: Value = listed.json().await.unwrap();
        assert!(body.to_string().find("sessions").is_none(), "{body}");
    }
    // A gateway's token (bound to a node) reaches no store by default.
    let r = h
        .get(&store("acme", "prod"), Some(LABEL1_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // An operator's token without a scope reaches every store.
    let r = h
        .get(&store("acme", "prod"), Some(ALL_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    h.finish().await;
}

#[tokio::test]
async fn a_persistence_store_flood_cannot_take_the_data_apis_connections() {
    let h = Harness::start_with(|raw| {
        raw.object_store.max_concurrent_requests = 1;
    })
    .await;
    let put = h
        .http
        .put(format!(
            "{}/api/v1/organizations/acme/environments/prod/stores/s",
            h.base
        ))
        .bearer_auth(ALL_TOKEN)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);

    // One request holds the only slot: its body never finishes arriving.
    let addr = h.base.trim_start_matches("http://").to_owned();
    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "PUT /api/v1/organizations/acme/environments/prod/stores/s/partitions/p/keys/k HTTP/1.1\r\n\
         Host: x\r\nAuthorization: Bearer {ALL_TOKEN}\r\nContent-Type: application/json\r\n\
         Content-Length: 1000\r\n\r\n{{\"stringValue\": \""
    );
    tokio::io::AsyncWriteExt::write_all(&mut stalled, head.as_bytes())
        .await
        .unwrap();

    // Others wait for it, then are told to come back ...
    let busy = h
        .get(
            "/api/v1/organizations/acme/environments/prod/stores/s",
            Some(ALL_TOKEN),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(busy.headers().contains_key("retry-after"));
    // ... while the gateways' data API keeps answering.
    let (status, _) = h.metadata(&[PROD], ALL_TOKEN).await;
    assert_eq!(status, StatusCode::OK);

    // The slot is free again once the stalled client goes.
    drop(stalled);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = h
            .get(
                "/api/v1/organizations/acme/environments/prod/stores/s",
                Some(ALL_TOKEN),
            )
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::OK {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", r.status());
    }
    h.finish().await;
}
