//! The persistence store against a real PostgreSQL: every test owns a
//! throwaway database and real HTTP servers on 127.0.0.1:0.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use artisync_http::bearer_token;
use artisync_postgres::PgBackend;
use artisync_test_support::postgres::TestDatabase;
use artisync_traffic_manager::object_store::{
    self, ClientIdentity, ObjectStoreConfig, ObjectStoreState,
};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures_util::StreamExt as _;
use rand::{Rng as _, RngCore as _};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

const ORG: &str = "org-1";
const ENV: &str = "env-1";

/// Stands in for the traffic manager's authentication: the bearer token
/// names the client.
async fn identity_from_bearer(mut request: Request, next: Next) -> Response {
    let token = request
        .headers()
        .get(reqwest::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .map(str::to_owned);
    if let Some(token) = token {
        request
            .extensions_mut()
            .insert(ClientIdentity::unrestricted(token));
    }
    next.run(request).await
}

/// Serves the persistence store on an ephemeral port; returns its base URL.
async fn serve(pool: PgPool, config: ObjectStoreConfig) -> String {
    let state =
        ObjectStoreState::new(Arc::new(PgBackend::from_pool(pool)), config).expect("valid config");
    let app = object_store::router(state).layer(axum::middleware::from_fn(identity_from_bearer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    format!("http://{addr}")
}

/// Percent-encodes a path segment (every byte outside RFC 3986 unreserved).
fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    fn new(base: &str) -> Self {
        Client {
            http: reqwest::Client::new(),
            base: base.to_owned(),
            token: "client-a".to_owned(),
        }
    }

    fn with_token(&self, token: &str) -> Self {
        Client {
            token: token.to_owned(),
            ..self.clone()
        }
    }

    fn stores_url(&self) -> String {
        format!(
            "{}/api/v1/organizations/{ORG}/environments/{ENV}/stores",
            self.base
        )
    }

    fn store_url(&self, store: &str) -> String {
        format!("{}/{}", self.stores_url(), seg(store))
    }

    fn partition_url(&self, store: &str, partition: &str) -> String {
        format!("{}/partitions/{}", self.store_url(store), seg(partition))
    }

    fn item_url(&self, store: &str, partition: &str, key: &str) -> String {
        format!("{}/keys/{}", self.partition_url(store, partition), seg(key))
    }

    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        self.http.request(method, url).bearer_auth(&self.token)
    }

    async fn send(
        &self,
        builder: reqwest::RequestBuilder,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let response = builder.send().await.expect("request sent");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!(
                    "{status}: non-JSON body ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        (status, headers, body)
    }

    async fn put_store(&self, store: &str, body: Value) -> StatusCode {
        let (status, _, _) = self
            .send(
                self.request(reqwest::Method::PUT, &self.store_url(store))
                    .json(&body),
            )
            .await;
        status
    }

    async fn put_item(
        &self,
        store: &str,
        partition: &str,
        key: &str,
        item: &Value,
    ) -> (StatusCode, Option<String>, Value) {
        let (status, headers, body) = self
            .send(
                self.request(reqwest::Method::PUT, &self.item_url(store, partition, key))
                    .json(item),
            )
            .await;
        (status, etag(&headers), body)
    }

    async fn post_item(
        &self,
        store: &str,
        partition: &str,
        key: &str,
        item: &Value,
    ) -> (StatusCode, Value) {
        let (status, _, body) = self
            .send(
                self.request(reqwest::Method::POST, &self.item_url(store, partition, key))
                    .json(item),
            )
            .await;
        (status, body)
    }

    async fn get_item(
        &self,
        store: &str,
        partition: &str,
        key: &str,
    ) -> (StatusCode, Option<String>, Value) {
        let (status, headers, body) = self
            .send(self.request(reqwest::Method::GET, &self.item_url(store, partition, key)))
            .await;
        (status, etag(&headers), body)
    }

    async fn delete_item(&self, store: &str, partition: &str, key: &str) -> StatusCode {
        self.send(self.request(
            reqwest::Method::DELETE,
            &self.item_url(store, partition, key),
        ))
        .await
        .0
    }

    /// Follows `nextPageToken` to the end; returns the values of all pages.
    async fn list_all(&self, url: &str, page_size: usize) -> Vec<Value> {
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("pageSize", page_size.to_string())];
            if let Some(t) = &token {
                query.push(("nextPageToken", t.clone()));
            }
            let (status, _, body) = self
                .send(self.request(reqwest::Method::GET, &with_query(url, &query)))
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let values = body["values"].as_array().expect("values").clone();
            assert!(values.len() <= page_size);
            all.extend(values);
            match body["nextPageToken"].as_str() {
                Some(t) => token = Some(t.to_owned()),
                None => return all,
            }
        }
    }
}

fn with_query<K: AsRef<str>, V: AsRef<str>>(url: &str, pairs: &[(K, V)]) -> String {
    let mut url = url::Url::parse(url).expect("url");
    for (k, v) in pairs {
        url.query_pairs_mut().append_pair(k.as_ref(), v.as_ref());
    }
    url.to_string()
}

fn etag(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn string_item(value: &str) -> Value {
    json!({"valueType": "STRING", "stringValue": value})
}

/// Asserts artisync's error body `{"code", "message"}` for `status`.
fn assert_error(status: StatusCode, body: &Value, expected: StatusCode) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["code"], json!(expected.as_u16()), "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

async fn setup() -> (TestDatabase, PgPool, Client) {
    setup_with(ObjectStoreConfig::default()).await
}

async fn setup_with(config: ObjectStoreConfig) -> (TestDatabase, PgPool, Client) {
    let db = TestDatabase::create().await.expect("test database");
    let pool = db.pool().await.expect("pool");
    let base = serve(pool.clone(), config).await;
    (db, pool, Client::new(&base))
}

/// Polls `check` until it holds or `timeout` passes.
async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn item_ttl(pool: &PgPool, key: &str) -> chrono::DateTime<chrono::Utc> {
    sqlx::query_scalar("SELECT ttl FROM items WHERE key = $1")
        .bind(key)
        .fetch_one(pool)
        .await
        .expect("item row")
}

async fn is_expired_in_table(pool: &PgPool, key: &str) -> bool {
    sqlx::query_scalar("SELECT ttl <= now() FROM items WHERE key = $1")
        .bind(key)
        .fetch_one(pool)
        .await
        .expect("item row")
}

// ------------------------------------------------------------------ tests

#[tokio::test]
async fn ready_is_open_and_the_api_needs_an_identity() {
    let (_db, _pool, client) = setup().await;
    let response = reqwest::get(format!("{}/api/v1/status/ready", client.base))
        .await
        .expect("ready");
    assert_eq!(response.status(), StatusCode::OK);

    let (status, _, body) = client.send(client.http.get(client.stores_url())).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED);

    // Without the schema the store is not ready.
    let empty = TestDatabase::create_empty().await.expect("empty database");
    let base = serve(
        empty.pool().await.expect("pool"),
        ObjectStoreConfig::default(),
    )
    .await;
    let response = reqwest::get(format!("{base}/api/v1/status/ready"))
        .await
        .expect("ready");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn stores_are_created_updated_listed_and_deleted_with_their_items() {
    let (_db, pool, client) = setup().await;

    // PUT with an empty body takes the defaults.
    let (status, _, body) = client
        .send(client.request(reqwest::Method::PUT, &client.store_url("defaults")))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"storeId": "defaults", "defaultTtlSeconds": 2592000, "isFixedTtl": false,
               "persistent": true, "encrypted": false})
    );
    // PUT again updates (idempotent).
    let settings = json!({"storeId": "defaults", "defaultTtlSeconds": 60, "isFixedTtl": true,
                          "persistent": false, "encrypted": true});
    assert_eq!(
        client.put_store("defaults", settings.clone()).await,
        StatusCode::OK
    );
    assert_eq!(
        client.put_store("defaults", settings.clone()).await,
        StatusCode::OK
    );
    let (status, _, body) = client
        .send(client.request(reqwest::Method::GET, &client.store_url("defaults")))
        .await;
    assert_eq!((status, body), (StatusCode::OK, settings));

    // Validation.
    for bad in [
        json!({"defaultTtlSeconds": 0}),
        json!({"defaultTtlSeconds": 2592001}),
        json!({"defaultTtlSeconds": "60"}),
        json!({"storeId": "other"}),
    ] {
        let (status, _, body) = client
            .send(
                client
                    .request(reqwest::Method::PUT, &client.store_url("bad"))
                    .json(&bad),
            )
            .await;
        assert_error(status, &body, StatusCode::BAD_REQUEST);
    }

    // Paging over stores.
    for i in 0..7 {
        assert_eq!(
            client.put_store(&format!("s{i}"), json!({})).await,
            StatusCode::OK
        );
    }
    let stores = client.list_all(&client.stores_url(), 3).await;
    let names: Vec<&str> = stores
        .iter()
        .filter_map(|s| s["storeId"].as_str())
        .collect();
    assert_eq!(
        names,
        ["defaults", "s0", "s1", "s2", "s3", "s4", "s5", "s6"]
    );

    // Deleting a store deletes its items.
    for key in ["a", "b"] {
        let (status, _, _) = client.put_item("s1", "p", key, &string_item("v")).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, _, _) = client
        .send(client.request(reqwest::Method::DELETE, &client.store_url("s1")))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM items")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(count, 0);
    let (status, _, body) = client
        .send(client.request(reqwest::Method::DELETE, &client.store_url("s1")))
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    let (status, _, body) = client
        .send(client.request(reqwest::Method::GET, &client.store_url("s1")))
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn items_of_all_three_types_round_trip() {
    let (_db, _pool, client) = setup().await;
    assert_eq!(client.put_store("st", json!({})).await, StatusCode::OK);

    // STRING, with characters that need care (NUL, non-ASCII, quotes).
    let text = "héllo \"wörld\"\n\u{0}✓ 𝄞";
    let (status, etag1, body) = client.put_item("st", "p", "str", &string_item(text)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, etag_get, body) = client.get_item("st", "p", "str").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"keyId": "str", "valueType": "STRING", "stringValue": text})
    );
    assert_eq!(etag_get, etag1);

    // Overwrite: new version, new ETag.
    let (status, etag2, _) = client
        .put_item("st", "p", "str", &string_item("second"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(etag2, etag1);
    let (_, _, body) = client.get_item("st", "p", "str").await;
    assert_eq!(body["stringValue"], json!("second"));

    // NUMBER: the literal survives exactly (beyond f64 precision).
    for literal in [
        "42",
        "-0.5",
        "123456789012345678901234567890.000000000000000001",
        "1e400",
    ] {
        let raw = format!(r#"{{"keyId":"num","valueType":"NUMBER","numberValue":{literal}}}"#);
        let response = client
            .request(reqwest::Method::PUT, &client.item_url("st", "p", "num"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(raw)
            .send()
            .await
            .expect("put number");
        assert_eq!(response.status(), StatusCode::OK);
        let text = client
            .request(reqwest::Method::GET, &client.item_url("st", "p", "num"))
            .send()
            .await
            .expect("get number")
            .text()
            .await
            .expect("body");
        assert_eq!(
            text,
            format!(r#"{{"keyId":"num","valueType":"NUMBER","numberValue":{literal}}}"#)
        );
    }

    // BINARY: random bytes, including a large value.
    for size in [0usize, 1, 1000, 300_000] {
        let mut bytes = vec![0u8; size];
        rand::rng().fill_bytes(&mut bytes);
        let item = json!({"valueType": "BINARY", "binaryValue": STANDARD.encode(&bytes)});
        let (status, _, _) = client.put_item("st", "bin", "blob", &item).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _, body) = client.get_item("st", "bin", "blob").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["valueType"], json!("BINARY"));
        let decoded = STANDARD
            .decode(body["binaryValue"].as_str().expect("binaryValue"))
            .expect("base64");
        assert_eq!(decoded, bytes);
    }

    // Keys with slashes, spaces and non-ASCII travel percent-encoded.
    let odd_key = "a/b c?d#e%f é";
    let (status, _, _) = client
        .put_item("st", "p", odd_key, &string_item("odd"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, _, body) = client.get_item("st", "p", odd_key).await;
    assert_eq!(body["keyId"], json!(odd_key));

    // A 1,024-byte key is fine.
    let long_key = "é".repeat(512);
    let (status, _, body) = client
        .put_item("st", "p", &long_key, &string_item("x"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // If-None-Match on GET: 304 while unchanged.
    let (_, current, _) = client.get_item("st", "p", "str").await;
    let response = client
        .request(reqwest::Method::GET, &client.item_url("st", "p", "str"))
        .header(
            reqwest::header::IF_NONE_MATCH,
            current.clone().expect("etag"),
        )
        .send()
        .await
        .expect("conditional get");
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);

    // DELETE: 204, then 404.
    assert_eq!(
        client.delete_item("st", "p", "str").await,
        StatusCode::NO_CONTENT
    );
    let (status, _, body) = client.get_item("st", "p", "str").await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    assert_eq!(
        client.delete_item("st", "p", "str").await,
        StatusCode::NOT_FOUND
    );

    // POST creates (201) with an ETag.
    let (status, body) = client
        .post_item("st", "p", "fresh", &string_item("new"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn errors_404_409_412_400_413() {
    let config = ObjectStoreConfig {
        max_value_bytes: 1024,
        ..ObjectStoreConfig::default()
    };
    let (_db, _pool, client) = setup_with(config).await;
    assert_eq!(client.put_store("st", json!({})).await, StatusCode::OK);

    // 404: missing store (for every kind of request), missing key.
    let (status, _, body) = client
        .put_item("nostore", "p", "k", &string_item("v"))
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    let (status, body) = client
        .post_item("nostore", "p", "k", &string_item("v"))
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    let (status, _, body) = client.get_item("nostore", "p", "k").await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    let (status, _, body) = client
        .send(client.request(
            reqwest::Method::GET,
            &format!("{}/keys", client.partition_url("nostore", "p")),
        ))
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    let (status, _, body) = client.get_item("st", "p", "missing").await;
    assert_error(status, &body, StatusCode::NOT_FOUND);

    // 409: POST of an existing key.
    let (status, _, _) = client.put_item("st", "p", "k", &string_item("v1")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = client.post_item("st", "p", "k", &string_item("v2")).await;
    assert_error(status, &body, StatusCode::CONFLICT);
    let (_, _, body) = client.get_item("st", "p", "k").await;
    assert_eq!(
        body["stringValue"],
        json!("v1"),
        "a failed POST changes nothing"
    );

    // 412: If-Match with another version (PUT and DELETE), If-Match on a
    // missing key, If-None-Match: * on an existing key.
    let (_, current, _) = client.get_item("st", "p", "k").await;
    let current = current.expect("etag");
    for (method, if_match) in [
        (reqwest::Method::PUT, "\"999999\""),
        (reqwest::Method::DELETE, "\"999999\""),
        (reqwest::Method::PUT, "\"not-a-version\""),
    ] {
        let (status, _, body) = client
            .send(
                client
                    .request(method, &client.item_url("st", "p", "k"))
                    .header(reqwest::header::IF_MATCH, if_match)
                    .json(&string_item("v3")),
            )
            .await;
        assert_error(status, &body, StatusCode::PRECONDITION_FAILED);
    }
    let (status, _, body) = client
        .send(
            client
                .request(reqwest::Method::PUT, &client.item_url("st", "p", "absent"))
                .header(reqwest::header::IF_MATCH, "*")
                .json(&string_item("v")),
        )
        .await;
    assert_error(status, &body, StatusCode::PRECONDITION_FAILED);
    let (status, _, body) = client
        .send(
            client
                .request(reqwest::Method::PUT, &client.item_url("st", "p", "k"))
                .header(reqwest::header::IF_NONE_MATCH, "*")
                .json(&string_item("v3")),
        )
        .await;
    assert_error(status, &body, StatusCode::PRECONDITION_FAILED);
    // If-None-Match: * on a new key creates it, like POST.
    let (status, headers, _) = client
        .send(
            client
                .request(reqwest::Method::PUT, &client.item_url("st", "p", "k-new"))
                .header(reqwest::header::IF_NONE_MATCH, "*")
                .json(&string_item("v")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(etag(&headers).is_some());
    // The matching version succeeds, once.
    let (status, headers, _) = client
        .send(
            client
                .request(reqwest::Method::PUT, &client.item_url("st", "p", "k"))
                .header(reqwest::header::IF_MATCH, current.as_str())
                .json(&string_item("v4")),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let newer = etag(&headers).expect("etag");
    let (status, _, body) = client
        .send(
            client
                .request(reqwest::Method::DELETE, &client.item_url("st", "p", "k"))
                .header(reqwest::header::IF_MATCH, current.as_str()),
        )
        .await;
    assert_error(status, &body, StatusCode::PRECONDITION_FAILED);
    let (status, _, _) = client
        .send(
            client
                .request(reqwest::Method::DELETE, &client.item_url("st", "p", "k"))
                .header(reqwest::header::IF_MATCH, newer.as_str()),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // 400: keys, value types, values, paging parameters.
    let bad_keys = ["a|b".to_owned(), "x".repeat(1025), "é".repeat(513)];
    for key in &bad_keys {
        let (status, _, body) = client.put_item("st", "p", key, &string_item("v")).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST);
        let (status, _, body) = client.get_item("st", "p", key).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST);
    }
    for bad in [
        json!({"valueType": "DATE", "stringValue": "2024-01-01"}),
        json!({"stringValue": "no type"}),
        json!({"valueType": "NUMBER", "numberValue": "12"}),
        json!({"valueType": "NUMBER", "stringValue": "12"}),
        json!({"valueType": "STRING", "stringValue": 12}),
        json!({"valueType": "STRING"}),
        json!({"valueType": "BINARY", "binaryValue": "***"}),
        json!({"valueType": "STRING", "stringValue": "x", "binaryValue": "AA=="}),
        json!({"keyId": "other", "valueType": "STRING", "stringValue": "x"}),
    ] {
        let (status, _, body) = client.put_item("st", "p", "k2", &bad).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST);
        let (status, body) = client.post_item("st", "p", "k2", &bad).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST);
    }
    let (status, _, body) = client
        .send(
            client
                .request(reqwest::Method::PUT, &client.item_url("st", "p", "k2"))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body("{not json"),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST);
    let keys_url = format!("{}/keys", client.partition_url("st", "p"));
    for query in [
        [("pageSize", "0")],
        [("pageSize", "1001")],
        [("pageSize", "ten")],
        [("nextPageToken", "!!!")],
    ] {
        let (status, _, body) = client
            .send(client.request(reqwest::Method::GET, &with_query(&keys_url, &query)))
            .await;
        assert_error(status, &body, StatusCode::BAD_REQUEST);
    }

    // 413: a value over max_value_bytes, and a body over the body limit.
    let (status, _, body) = client
        .put_item("st", "p", "big", &string_item(&"x".repeat(1025)))
        .await;
    assert_error(status, &body, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, _, body) = client
        .put_item(
            "st",
            "p",
            "big",
            &json!({"valueType": "BINARY", "binaryValue": "A".repeat(1028)}),
        )
        .await;
    assert_error(status, &body, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, _, body) = client
        .put_item("st", "p", "big", &string_item(&"x".repeat(200_000)))
        .await;
    assert_error(status, &body, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, _, _) = client
        .put_item("st", "p", "big", &string_item(&"x".repeat(1024)))
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn values_up_to_10_mb_of_base64_are_accepted_by_default() {
    let (_db, _pool, client) = setup().await;
    assert_eq!(client.put_store("st", json!({})).await, StatusCode::OK);
    let limit = 10 * 1024 * 1024;
    let mut bytes = vec![0u8; limit / 4 * 3];
    rand::rng().fill_bytes(&mut bytes);
    let encoded = STANDARD.encode(&bytes);
    assert_eq!(encoded.len(), limit);
    let (status, _, body) = client
        .put_item(
            "st",
            "p",
            "max",
            &json!({"valueType": "BINARY", "binaryValue": encoded}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, _, body) = client.get_item("st", "p", "max").await;
    assert_eq!(body["binaryValue"].as_str().map(str::len), Some(limit));
    let over = format!("{encoded}AAAA");
    let (status, _, body) = client
        .put_item(
            "st",
            "p",
            "over",
            &json!({"valueType": "BINARY", "binaryValue": over}),
        )
        .await;
    assert_error(status, &body, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn partitions_are_listed_and_deleted_atomically() {
    let (_db, pool, client) = setup().await;
    assert_eq!(client.put_store("st", json!({})).await, StatusCode::OK);
    for partition in ["p1", "p2", "p3"] {
        for i in 0..5 {
            let (status, _, _) = client
                .put_item("st", partition, &format!("k{i}"), &string_item("v"))
                .await;
            assert_eq!(status, StatusCode::OK);
        }
    }
    let url = format!("{}/partitions", client.store_url("st"));
    let partitions = client.list_all(&url, 2).await;
    assert_eq!(partitions, [json!("p1"), json!("p2"), json!("p3")]);

    let (status, _, _) = client
        .send(client.request(reqwest::Method::DELETE, &client.partition_url("st", "p2")))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM items WHERE partition = 'p2'")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(left, 0);
    assert_eq!(client.list_all(&url, 25).await, [json!("p1"), json!("p3")]);
    let (status, _, body) = client
        .send(client.request(reqwest::Method::DELETE, &client.partition_url("st", "p2")))
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    let keys = client
        .list_all(&format!("{}/keys", client.partition_url("st", "p1")), 25)
        .await;
    assert_eq!(keys.len(), 5);
    assert_eq!(keys[0], json!({"keyId": "k0"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn fifty_concurrent_posts_of_one_key_create_it_once() {
    let (_db, pool, client) = setup().await;
    assert_eq!(client.put_store("st", json!({})).await, StatusCode::OK);
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let client = client.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                client
                    .post_item("st", "p", "once", &string_item(&format!("writer {i}")))
                    .await
                    .0
            })
        })
        .collect();
    let mut statuses = HashMap::new();
    for task in tasks {
        *statuses.entry(task.await.expect("task")).or_insert(0) += 1;
    }
    assert_eq!(statuses.get(&StatusCode::CREATED), Some(&1), "{statuses:?}");
    assert_eq!(
        statuses.get(&StatusCode::CONFLICT),
        Some(&49),
        "{statuses:?}"
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM items WHERE key = 'once'")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(rows, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn fifty_concurrent_cas_increments_end_at_fifty() {
    let (_db, _pool, client) = setup().await;
    assert_eq!(client.put_store("st", json!({})).await, StatusCode::OK);
    let (status, _, _) = client
        .put_item(
            "st",
            "p",
            "counter",
            &json!({"valueType": "NUMBER", "numberValue": 0}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let conflicts = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let client = client.clone();
            let conflicts = conflicts.clone();
            tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    assert!(Instant::now() < deadline, "increment never succeeded");
                    let (status, etag, body) = client.get_item("st", "p", "counter").await;
                    assert_eq!(status, StatusCode::OK);
                    let n = body["numberValue"].as_i64().expect("integer");
                    let (status, _, _) = client
                        .send(
                            client
                                .request(
                                    reqwest::Method::PUT,
                                    &client.item_url("st", "p", "counter"),
                                )
                                .header(reqwest::header::IF_MATCH, etag.expect("etag"))
                                .json(&json!({"valueType": "NUMBER", "numberValue": n + 1})),
                        )
                        .await;
                    match status {
                        StatusCode::OK => return,
                        StatusCode::PRECONDITION_FAILED => {
                            conflicts.fetch_add(1, Ordering::Relaxed);
                        }
                        other => panic!("unexpected {other}"),
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    let (_, _, body) = client.get_item("st", "p", "counter").await;
    assert_eq!(body["numberValue"], json!(50));
    // With 50 racing clients some must have lost a race and retried;
    // otherwise the test proved nothing about concurrency.
    assert!(conflicts.load(Ordering::Relaxed) > 0);
}

#[tokio::test]
async fn fixed_ttl_expires_after_the_last_write_and_reads_do_not_extend_it() {
    let (_db, pool, client) = setup().await;
    assert_eq!(
        client
            .put_store("fixed", json!({"defaultTtlSeconds": 1, "isFixedTtl": true}))
            .await,
        StatusCode::OK
    );
    let (status, _, _) = client.put_item("fixed", "p", "f", &string_item("v")).await;
    assert_eq!(status, StatusCode::OK);
    let ttl_after_first_write = item_ttl(&pool, "f").await;

    // A write restarts the TTL.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _, _) = client.put_item("fixed", "p", "f", &string_item("v2")).await;
    assert_eq!(status, StatusCode::OK);
    let ttl_after_rewrite = item_ttl(&pool, "f").await;
    assert!(ttl_after_rewrite > ttl_after_first_write);

    // Reads leave it alone, so reading all the time still sees it expire.
    let written = Instant::now();
    wait_until(
        Duration::from_secs(5),
        "the fixed-TTL item expires",
        || async {
            let (status, _, _) = client.get_item("fixed", "p", "f").await;
            assert!(status == StatusCode::OK || status == StatusCode::NOT_FOUND);
            status == StatusCode::NOT_FOUND
        },
    )
    .await;
    assert!(
        written.elapsed() >= Duration::from_millis(500),
        "expired too early"
    );
    assert_eq!(item_ttl(&pool, "f").await, ttl_after_rewrite);
}

#[tokio::test]
async fn rolling_ttl_is_extended_by_reads_but_not_on_every_read() {
    let (_db, pool, client) = setup().await;

    // With a 60 s TTL, reads right after a write do not touch the row:
    // less than 10% of the TTL has elapsed.
    assert_eq!(
        client
            .put_store(
                "long",
                json!({"defaultTtlSeconds": 60, "isFixedTtl": false})
            )
            .await,
        StatusCode::OK
    );
    let (status, _, _) = client
        .put_item("long", "p", "quiet", &string_item("v"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let ttl = item_ttl(&pool, "quiet").await;
    for _ in 0..5 {
        assert_eq!(
            client.get_item("long", "p", "quiet").await.0,
            StatusCode::OK
        );
    }
    assert_eq!(item_ttl(&pool, "quiet").await, ttl);

    // With a 1 s TTL, reading every 200 ms keeps the item alive for three
    // times its TTL...
    assert_eq!(
        client
            .put_store(
                "rolling",
                json!({"defaultTtlSeconds": 1, "isFixedTtl": false})
            )
            .await,
        StatusCode::OK
    );
    let (status, _, _) = client
        .put_item("rolling", "p", "r", &string_item("v"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let first_ttl = item_ttl(&pool, "r").await;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        let (status, _, body) = client.get_item("rolling", "p", "r").await;
        assert_eq!(
            status,
            StatusCode::OK,
            "rolling item expired while read: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(item_ttl(&pool, "r").await > first_ttl);

    // ...and once nobody reads it, it expires (watched in the table, since
    // reading through the API would extend it).
    wait_until(
        Duration::from_secs(5),
        "the unread rolling item expires",
        || is_expired_in_table(&pool, "r"),
    )
    .await;
    assert_eq!(
        client.get_item("rolling", "p", "r").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn expired_items_are_invisible_before_the_purge_which_removes_them() {
    let (_db, pool, client) = setup().await;
    assert_eq!(
        client
            .put_store("short", json!({"defaultTtlSeconds": 1, "isFixedTtl": true}))
            .await,
        StatusCode::OK
    );
    assert_eq!(client.put_store("long", json!({})).await, StatusCode::OK);
    for key in ["k1", "k2", "k3", "k4", "k5"] {
        let (status, _, _) = client.put_item("short", "p", key, &string_item("v")).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, _, _) = client
        .put_item("long", "p", "keep", &string_item("v"))
        .await;
    assert_eq!(status, StatusCode::OK);

    wait_until(Duration::from_secs(5), "k1 expires", || async {
        client.get_item("short", "p", "k1").await.0 == StatusCode::NOT_FOUND
    })
    .await;
    wait_until(Duration::from_secs(5), "all short items expire", || async {
        sqlx::query_scalar::<_, bool>("SELECT bool_and(i.ttl <= now()) FROM items i JOIN stores s ON s.id = i.store_id WHERE s.name = 'short'")
            .fetch_one(&pool)
            .await
            .expect("query")
    })
    .await;

    // Still in the table, invisible through every route.
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM items WHERE key LIKE 'k_'")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(rows, 5);
    for key in ["k1", "k2", "k3", "k4", "k5"] {
        assert_eq!(
            client.get_item("short", "p", key).await.0,
            StatusCode::NOT_FOUND
        );
    }
    let keys = client
        .list_all(&format!("{}/keys", client.partition_url("short", "p")), 25)
        .await;
    assert!(keys.is_empty(), "{keys:?}");
    let partitions = client
        .list_all(&format!("{}/partitions", client.store_url("short")), 25)
        .await;
    assert!(partitions.is_empty(), "{partitions:?}");
    assert_eq!(
        client.delete_item("short", "p", "k2").await,
        StatusCode::NOT_FOUND
    );
    let (status, _, body) = client
        .send(
            client
                .request(reqwest::Method::PUT, &client.item_url("short", "p", "k4"))
                .header(reqwest::header::IF_MATCH, "*")
                .json(&string_item("v")),
        )
        .await;
    assert_error(status, &body, StatusCode::PRECONDITION_FAILED);

    // An expired key can be created again by POST, in place. A long TTL
    // first, so that it does not expire again before the purge below.
    assert_eq!(
        client.put_store("short", json!({"isFixedTtl": true})).await,
        StatusCode::OK
    );
    let (status, body) = client
        .post_item("short", "p", "k3", &string_item("again"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        client.get_item("short", "p", "k3").await.2["stringValue"],
        json!("again")
    );

    // The purge removes exactly the expired rows (k1, k4, k5; the DELETE
    // above removed k2), in batches smaller than the backlog.
    let deleted = object_store::purge_expired(&PgBackend::from_pool(pool.clone()), 2)
        .await
        .expect("purge");
    assert_eq!(deleted, 3);
    let mut left: Vec<String> = sqlx::query_scalar("SELECT key FROM items ORDER BY key")
        .fetch_all(&pool)
        .await
        .expect("keys");
    left.sort();
    assert_eq!(left, ["k3", "keep"]);
    let expired: i64 = sqlx::query_scalar("SELECT count(*) FROM items WHERE ttl <= now()")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(expired, 0);
}

#[tokio::test]
async fn the_purge_job_runs_on_its_interval() {
    let (_db, pool, client) = setup().await;
    assert_eq!(
        client
            .put_store("short", json!({"defaultTtlSeconds": 1, "isFixedTtl": true}))
            .await,
        StatusCode::OK
    );
    for i in 0..10 {
        let (status, _, _) = client
            .put_item("short", "p", &format!("k{i}"), &string_item("v"))
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let config = ObjectStoreConfig {
        purge_interval_seconds: 1,
        purge_batch_size: 3,
        ..ObjectStoreConfig::default()
    };
    let shutdown = CancellationToken::new();
    let job = object_store::spawn_purge_job(
        Arc::new(PgBackend::from_pool(pool.clone())),
        &config,
        shutdown.clone(),
    );
    wait_until(
        Duration::from_secs(10),
        "the purge job empties the table",
        || async {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM items")
                .fetch_one(&pool)
                .await
                .expect("count")
                == 0
        },
    )
    .await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), job)
        .await
        .expect("purge job stops on shutdown")
        .expect("purge job did not panic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn paging_2500_keys_while_keys_are_added_lists_each_once() {
    let (_db, _pool, client) = setup().await;
    assert_eq!(client.put_store("st", json!({})).await, StatusCode::OK);
    let originals: Vec<String> = (0..2500).map(|i| format!("key-{i:05}")).collect();
    let results: Vec<StatusCode> = futures_util::stream::iter(originals.clone())
        .map(|key| {
            let client = client.clone();
            async move { client.put_item("st", "p", &key, &string_item("v")).await.0 }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(results.iter().all(|s| *s == StatusCode::OK));

    // A writer adds keys between and around the originals until the
    // listing is done.
    let done = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let writer = {
        let client = client.clone();
        let (done, written) = (done.clone(), written.clone());
        tokio::spawn(async move {
            let mut added = 0usize;
            while !done.load(Ordering::Relaxed) {
                let n = rand::rng().random_range(0..2600);
                let key = format!("key-{n:05}-{}", uuid::Uuid::new_v4().simple());
                let (status, _, _) = client.put_item("st", "p", &key, &string_item("new")).await;
                assert_eq!(status, StatusCode::OK);
                added += 1;
                written.store(added, Ordering::Relaxed);
            }
            added
        })
    };
    // List once the writer is going.
    wait_until(Duration::from_secs(10), "the writer adds keys", || async {
        written.load(Ordering::Relaxed) > 0
    })
    .await;
    let listed = client
        .list_all(&format!("{}/keys", client.partition_url("st", "p")), 100)
        .await;
    done.store(true, Ordering::Relaxed);
    let added = writer.await.expect("writer");
    assert!(added > 0, "the writer added nothing during the listing");

    let mut seen: HashMap<String, usize> = HashMap::new();
    for entry in &listed {
        *seen
            .entry(entry["keyId"].as_str().expect("keyId").to_owned())
            .or_insert(0) += 1;
    }
    assert!(seen.values().all(|n| *n == 1), "a key was listed twice");
    for key in &originals {
        assert_eq!(seen.get(key), Some(&1), "{key} not listed exactly once");
    }
    // Byte order throughout.
    let keys: Vec<&str> = listed.iter().filter_map(|e| e["keyId"].as_str()).collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]));
}

/// Drops the test's login roles after the test database (declared after
/// this guard, so dropped first, taking the grants with it).
struct RolesGuard(Vec<String>);

impl Drop for RolesGuard {
    fn drop(&mut self) {
        let roles = std::mem::take(&mut self.0);
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                use sqlx::Connection as _;
                let url = artisync_test_support::postgres::server_url();
                if let Ok(mut admin) = sqlx::PgConnection::connect(&url).await {
                    for role in roles {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP ROLE IF EXISTS \"{role}\""
                        )))
                        .execute(&mut admin)
                        .await;
                    }
                }
            });
        })
        .join();
    }
}

fn url_for_role(db_url: &str, role: &str, password: &str) -> String {
    let mut url = url::Url::parse(db_url).expect("database url");
    url.set_username(role).expect("username");
    // set_password percent-encodes, as the credentials file requires.
    url.set_password(Some(password)).expect("password");
    url.to_string()
}

async fn current_user(pool: &PgPool) -> String {
    sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(pool)
        .await
        .expect("current_user")
}

/// The credentials file is re-read on change and new connections use it.
///
/// The test server authenticates 127.0.0.1 with `trust`, so a wrong
/// password would not fail and proves nothing. The rotation therefore
/// switches to a different role (with a new password, URL-encoded), and
/// the old role loses LOGIN (enforced even under trust) and has its
/// sessions terminated: from then on only connections opened with the new
/// file's credentials can work, and `current_user` tells which were used.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn credentials_file_rotation_applies_without_restart() {
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..12];
    let old_role = format!("os_rotate_old_{suffix}");
    let new_role = format!("os_rotate_new_{suffix}");
    let _roles = RolesGuard(vec![old_role.clone(), new_role.clone()]);
    let db = TestDatabase::create().await.expect("test database");
    let admin = db.pool().await.expect("admin pool");
    for role in [&old_role, &new_role] {
        // Role names are generated above, never input.
        for statement in [
            format!("CREATE ROLE \"{role}\" LOGIN PASSWORD 'initial'"),
            format!(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO \"{role}\""
            ),
            format!("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO \"{role}\""),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(statement))
                .execute(&admin)
                .await
                .expect("role setup");
        }
    }
    let old_password = "old p@ss/w:rd%?#";
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER ROLE \"{old_role}\" PASSWORD '{old_password}'"
    )))
    .execute(&admin)
    .await
    .expect("password");

    let dir = std::env::temp_dir().join(format!("artisync-objstore-{suffix}"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("database-url");
    std::fs::write(
        &file,
        format!("{}\n", url_for_role(&db.url, &old_role, old_password)),
    )
    .expect("write credentials");

    let pool = PgBackend::connect_pool(
        artisync_postgres::read_credentials_file(&file).expect("credentials file"),
        &artisync_postgres::PoolSettings {
            max_connections: 4,
            ..Default::default()
        },
    )
    .await
    .expect("connect with file");
    assert_eq!(current_user(&pool).await, old_role);
    let shutdown = CancellationToken::new();
    let watcher =
        artisync_postgres::watch_credentials_file(pool.clone(), file.clone(), shutdown.clone());

    let client = Client::new(&serve(pool.clone(), ObjectStoreConfig::default()).await);
    assert_eq!(client.put_store("st", json!({})).await, StatusCode::OK);
    let (status, _, _) = client
        .put_item("st", "p", "before", &string_item("v"))
        .await;
    assert_eq!(status, StatusCode::OK);

    // Rotate: new password set in PostgreSQL, file rewritten atomically.
    let new_password = "n3w/p@ss:w%rd";
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER ROLE \"{new_role}\" PASSWORD '{new_password}'"
    )))
    .execute(&admin)
    .await
    .expect("password");
    let staging = dir.join("database-url.tmp");
    std::fs::write(&staging, url_for_role(&db.url, &new_role, new_password)).expect("write");
    std::fs::rename(&staging, &file).expect("rename");
    wait_until(
        Duration::from_secs(5),
        "the pool picks up the new file",
        || async { pool.connect_options().get_username() == new_role },
    )
    .await;

    // Revoke the old credentials and cut their sessions.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER ROLE \"{old_role}\" NOLOGIN"
    )))
    .execute(&admin)
    .await
    .expect("nologin");
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1")
        .bind(&old_role)
        .execute(&admin)
        .await
        .expect("terminate");

    // The service keeps working, on connections of the new role.
    wait_until(
        Duration::from_secs(10),
        "the API answers on new connections",
        || async { client.get_item("st", "p", "before").await.0 == StatusCode::OK },
    )
    .await;
    let (status, _, _) = client.put_item("st", "p", "after", &string_item("v")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(current_user(&pool).await, new_role);
    let old_sessions: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE usename = $1")
            .bind(&old_role)
            .fetch_one(&admin)
            .await
            .expect("count");
    assert_eq!(old_sessions, 0);

    // An invalid file keeps the working credentials.
    std::fs::write(&file, "not a url").expect("write");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(pool.connect_options().get_username(), new_role);

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), watcher)
        .await
        .expect("watcher stops")
        .expect("watcher did not panic");
    pool.close().await;
    admin.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_on_one_database_share_state() {
    let db = TestDatabase::create().await.expect("test database");
    let one =
        Client::new(&serve(db.pool().await.expect("pool"), ObjectStoreConfig::default()).await);
    let two =
        Client::new(&serve(db.pool().await.expect("pool"), ObjectStoreConfig::default()).await);

    assert_eq!(one.put_store("shared", json!({})).await, StatusCode::OK);
    let (status, etag_one, _) = one
        .put_item("shared", "p", "k", &string_item("from one"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, etag_two, body) = two.get_item("shared", "p", "k").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["stringValue"], json!("from one"));
    assert_eq!(etag_one, etag_two);

    let (status, body) = two
        .post_item("shared", "p", "k", &string_item("from two"))
        .await;
    assert_error(status, &body, StatusCode::CONFLICT);

    // A compare-and-set through one server invalidates the other's ETag.
    let (status, _, _) = two
        .send(
            two.request(reqwest::Method::PUT, &two.item_url("shared", "p", "k"))
                .header(reqwest::header::IF_MATCH, etag_two.clone().expect("etag"))
                .json(&string_item("cas by two")),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = one
        .send(
            one.request(reqwest::Method::PUT, &one.item_url("shared", "p", "k"))
                .header(reqwest::header::IF_MATCH, etag_one.expect("etag"))
                .json(&string_item("stale cas by one")),
        )
        .await;
    assert_error(status, &body, StatusCode::PRECONDITION_FAILED);
    assert_eq!(
        one.get_item("shared", "p", "k").await.2["stringValue"],
        json!("cas by two")
    );

    assert_eq!(
        two.delete_item("shared", "p", "k").await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        one.get_item("shared", "p", "k").await.0,
        StatusCode::NOT_FOUND
    );
    let stores = two.list_all(&two.stores_url(), 25).await;
    assert_eq!(stores.len(), 1);
}

#[tokio::test]
async fn clients_over_their_rate_get_429_with_retry_after() {
    let config = ObjectStoreConfig {
        rate_limit_per_second: Some(5),
        ..ObjectStoreConfig::default()
    };
    let (_db, _pool, alice) = setup_with(config).await;
    let mut limited = None;
    for _ in 0..20 {
        let (status, headers, body) = alice
            .send(alice.request(reqwest::Method::GET, &alice.stores_url()))
            .await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some((headers, body));
            break;
        }
        assert_eq!(status, StatusCode::OK);
    }
    let (headers, body) = limited.expect("alice was never limited");
    assert_error(
        StatusCode::TOO_MANY_REQUESTS,
        &body,
        StatusCode::TOO_MANY_REQUESTS,
    );
    let retry_after: u64 = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!(retry_after >= 1);

    // Another client has its own budget; readiness is never limited.
    let bob = alice.with_token("bob");
    let (status, _, _) = bob
        .send(bob.request(reqwest::Method::GET, &bob.stores_url()))
        .await;
    assert_eq!(status, StatusCode::OK);
    let ready = alice
        .send(alice.request(
            reqwest::Method::GET,
            &format!("{}/api/v1/status/ready", alice.base),
        ))
        .await;
    assert_eq!(ready.0, StatusCode::OK);

    // After Retry-After, alice is served again.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    let (status, _, _) = alice
        .send(alice.request(reqwest::Method::GET, &alice.stores_url()))
        .await;
    assert_eq!(status, StatusCode::OK);
}
