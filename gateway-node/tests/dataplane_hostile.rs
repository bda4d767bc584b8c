//! The data plane against hostile clients, over real HTTP on loopback: a
//! real backend (axum), the gateway's `serve`, and raw TCP or reqwest as the
//! client. Artifacts go through the real parser and validator.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use artisync_domain::runtime::ApiDeploymentStatus;
use artisync_domain::{ApiId, Revision, Sha256Digest};
use artisync_gateway::dataplane::{
    CompiledApi, DataPlane, DataPlaneConfig, RoutingTable, SharedRoutingTable, serve,
};
use artisync_gateway::state::{AppliedRevision, NodeState};
use artisync_synapse::parse_artifact;
use axum::body::Body as AxumBody;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

/// How long any wait on a condition may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(10);

// ------------------------------------------------------------------ backend

#[derive(Clone)]
struct BackendState {
    held: mpsc::UnboundedSender<String>,
    release: Arc<Notify>,
}

/// A real HTTP server that echoes requests as JSON; paths containing
/// `/hold` wait until the test releases them.
struct Backend {
    addr: SocketAddr,
    held: mpsc::UnboundedReceiver<String>,
    release: Arc<Notify>,
}

impl Backend {
    async fn start() -> Backend {
        let (held_tx, held) = mpsc::unbounded_channel();
        let release = Arc::new(Notify::new());
        let state = BackendState {
            held: held_tx,
            release: Arc::clone(&release),
        };
        let app = axum::Router::new().fallback(echo).with_state(state);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Backend {
            addr,
            held,
            release,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn next_held(&mut self) -> String {
        tokio::time::timeout(DEADLINE, self.held.recv())
            .await
            .expect("the backend held no request in time")
            .expect("backend channel closed")
    }
}

async fn echo(State(state): State<BackendState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let path = parts.uri.path().to_owned();
    if path.contains("/hold") {
        let _ = state.held.send(path.clone());
        state.release.notified().await;
    }
    let headers: BTreeMap<String, String> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("?").to_owned()))
        .collect();
    let echoed = json!({
        "method": parts.method.as_str(),
        "path": path,
        "query": parts.uri.query(),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(AxumBody::from(echoed.to_string()))
        .unwrap()
}

/// A port nothing listens on.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

// ------------------------------------------------------------------ gateway

struct Gateway {
    addr: SocketAddr,
    base: String,
    shutdown: CancellationToken,
    client: reqwest::Client,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Gateway {
    async fn start(apis: Vec<Arc<CompiledApi>>) -> Gateway {
        Gateway::start_with(apis, DataPlaneConfig::default()).await
    }

    async fn start_with(apis: Vec<Arc<CompiledApi>>, config: DataPlaneConfig) -> Gateway {
        let table: SharedRoutingTable =
            Arc::new(ArcSwap::from_pointee(RoutingTable::from_apis(apis)));
        Gateway::start_on(table, config).await
    }

    async fn start_on(table: SharedRoutingTable, config: DataPlaneConfig) -> Gateway {
        let data_plane = Arc::new(DataPlane::new(table, config, Default::default()).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        tokio::spawn(serve(listener, data_plane, shutdown.clone()));
        Gateway {
            addr,
            base: format!("http://{addr}"),
            shutdown,
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }
}

fn compile(xml: &str) -> Arc<CompiledApi> {
    compile_as(ApiId::new_random(), Revision::FIRST, xml)
}

fn compile_as(api_id: ApiId, revision: Revision, xml: &str) -> Arc<CompiledApi> {
    let artifact =
        parse_artifact(xml.as_bytes()).unwrap_or_else(|e| panic!("artifact refused: {e}\n{xml}"));
    Arc::new(CompiledApi::new(
        api_id,
        revision,
        Sha256Digest::of(xml.as_bytes()),
        artifact,
        Default::default(),
    ))
}

/// A mock API at `context` answering `{"api": name}`.
fn mock_api(name: &str, context: &str) -> String {
    format!(
        r#"<api xmlns="http://ws.apache.org/ns/synapse" name="{name}" context="{context}">
            <resource methods="GET">
                <inSequence>
                    <payloadFactory media-type="json">
                        <format>{{"api": "{name}"}}</format>
                        <args/>
                    </payloadFactory>
                    <respond/>
                </inSequence>
            </resource>
        </api>"#
    )
}

/// An API proxying everything under `/wild/*` to the backend's root,
/// buffering nothing, plus resources that buffer, log and fire and forget.
fn wild_bundle(backend: &Backend, closed: u16) -> String {
    format!(
        r#"<definitions xmlns="http://ws.apache.org/ns/synapse">
            <api name="Wild" context="/wild">
                <resource methods="GET POST" url-mapping="/pass/*">
                    <inSequence>
                        <send><endpoint><address uri="{base}/"/></endpoint></send>
                    </inSequence>
                </resource>
                <resource methods="POST" url-mapping="/buffered/*">
                    <inSequence>
                        <log level="full"/>
                        <send><endpoint><address uri="{base}/"/></endpoint></send>
                    </inSequence>
                </resource>
                <resource methods="GET" url-mapping="/mediated/*">
                    <inSequence>
                        <header name="X-Set-By-Mediator" value="from-the-gateway"/>
                        <send><endpoint><address uri="{base}/"/></endpoint></send>
                    </inSequence>
                </resource>
                <resource methods="GET POST" url-mapping="/oneway/*">
                    <inSequence>
                        <property name="OUT_ONLY" value="true"/>
                        <send><endpoint><address uri="{base}/"/></endpoint></send>
                    </inSequence>
                </resource>
                <resource methods="GET" url-mapping="/down/*">
                    <inSequence>
                        <send><endpoint><address uri="http://127.0.0.1:{closed}/nothing"/></endpoint></send>
                    </inSequence>
                </resource>
            </api>
        </definitions>"#,
        base = backend.url(""),
    )
}

async fn json_body(response: reqwest::Response) -> Value {
    let text = response.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

// --------------------------------------------------------------- raw client

/// Sends `head` (and optionally part of a body) on a fresh connection and
/// returns the stream, for clients that misbehave.
async fn raw_connect(gateway: &Gateway, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(gateway.addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    stream
}

/// Reads until the gateway closes the connection (or the deadline passes,
/// which fails the test) and returns everything it sent.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let read = tokio::time::timeout(DEADLINE, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return Ok::<_, io::Error>(()),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                // A reset after the answer counts as closed.
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    match read {
        Ok(Ok(())) => String::from_utf8_lossy(&out).into_owned(),
        Ok(Err(e)) => panic!("reading from the gateway failed: {e}"),
        Err(_) => panic!(
            "the gateway kept the connection open past the deadline; got so far: {}",
            String::from_utf8_lossy(&out)
        ),
    }
}

/// The status code and body of a raw HTTP/1.1 response.
fn parse_raw(response: &str) -> (u16, &str) {
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body)
}

// ------------------------------------------------------------ dot segments

#[tokio::test]
async fn dot_segments_in_any_spelling_are_refused_before_routing() {
    let backend = Backend::start().await;
    let gateway = Gateway::start(vec![compile(&wild_bundle(&backend, closed_port().await))]).await;

    // A plain path still goes through, dots inside names too.
    let ok = gateway.get("/wild/pass/a/b.json").await;
    assert_eq!(ok.status(), 200);
    assert_eq!(json_body(ok).await["path"], "/pass/a/b.json");

    // reqwest would normalise `..` away: send these raw.
    for path in [
        "/wild/pass/../admin",
        "/wild/pass/./admin",
        "/wild/pass/%2e%2e/admin",
        "/wild/pass/%2E./admin",
        "/wild/pass/.%2e/admin",
        "/wild/pass/%2e/admin",
        "/wild/pass/a%2f..%2fadmin",
        "/wild/pass/a%2F%2E%2E%2Fadmin",
        "/wild/pass/..%5cadmin",
        "/wild/pass/%5c..%5cadmin",
        "/wild/pass/%252e%252e/admin",
        "/wild/pass/..;x/admin",
        "/wild/pass/..",
        "/wild/../other",
    ] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n");
        let mut stream = raw_connect(&gateway, request.as_bytes()).await;
        let response = read_until_closed(&mut stream).await;
        let (status, body) = parse_raw(&response);
        assert_eq!(status, 400, "{path}: {response}");
        let body: Value =
            serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}"));
        assert_eq!(body["code"], 400, "{path}: {body}");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("dot segment")),
            "{path}: {body}"
        );
    }
    // A raw backslash, where the client's HTTP parser lets one through.
    let mut stream = raw_connect(
        &gateway,
        b"GET /wild/pass/..\\admin HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
    )
    .await;
    let response = read_until_closed(&mut stream).await;
    let (status, body) = parse_raw(&response);
    assert_eq!(
        status, 400,
        "a backslash dot segment is refused: {response}"
    );
    assert!(body.contains("dot segment"), "{response}");
}

// ------------------------------------------------------ hostile Connection

#[tokio::test]
async fn a_client_connection_header_cannot_strip_what_mediators_set() {
    let backend = Backend::start().await;
    let gateway = Gateway::start(vec![compile(&wild_bundle(&backend, closed_port().await))]).await;

    let response = gateway
        .client
        .get(gateway.url("/wild/mediated/x"))
        .header("connection", "X-Set-By-Mediator, X-Client-Hop")
        .header("x-client-hop", "must not cross")
        .header("x-kept", "kept")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = json_body(response).await;
    let sent = &seen["headers"];
    assert_eq!(sent["x-set-by-mediator"], "from-the-gateway", "{seen}");
    assert!(
        sent.get("x-client-hop").is_none(),
        "the client's own hop-by-hop headers are still stripped: {seen}"
    );
    assert_eq!(sent["x-kept"], "kept");
    assert!(
        sent.get("connection")
            .is_none_or(|c| c != "X-Set-By-Mediator, X-Client-Hop")
    );
}

// ---------------------------------------------------------- secrets in logs

/// Captures the log output of the current thread (the tests run on a
/// current-thread runtime, so the gateway's tasks log here too).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn logs_show_neither_credentials_nor_the_query_of_a_failed_call() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let backend = Backend::start().await;
    let gateway = Gateway::start(vec![compile(&wild_bundle(&backend, closed_port().await))]).await;

    let response = gateway
        .client
        .post(gateway.url("/wild/buffered/x"))
        .header("authorization", "Bearer secret-bearer")
        .header("cookie", "session=secret-cookie")
        .header("proxy-authorization", "Basic secret-proxy")
        .header("x-api-key", "secret-x-api-key")
        .header("apikey", "secret-apikey")
        .header("x-visible", "shown-in-logs")
        .body("the body")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let down = gateway.get("/wild/down/x?access_token=secret-query").await;
    assert_eq!(down.status(), 502);

    let logs = captured.text();
    assert!(
        logs.contains("shown-in-logs") && logs.contains("the body"),
        "the full log ran: {logs}"
    );
    assert!(logs.contains("endpoint call failed"), "{logs}");
    for secret in [
        "secret-bearer",
        "secret-cookie",
        "secret-proxy",
        "secret-x-api-key",
        "secret-apikey",
        "secret-query",
    ] {
        assert!(
            !logs.contains(secret),
            "{secret} leaked into the logs:\n{logs}"
        );
    }
    assert!(logs.contains("authorization = ***"), "{logs}");
}

// ------------------------------------------------------- slow request body

#[tokio::test]
async fn a_trickled_body_is_answered_408() {
    let backend = Backend::start().await;
    let config = DataPlaneConfig {
        body_read_timeout_ms: 200,
        ..DataPlaneConfig::default()
    };
    let gateway = Gateway::start_with(
        vec![compile(&wild_bundle(&backend, closed_port().await))],
        config,
    )
    .await;

    // Streaming through to the endpoint, and buffered for a mediator.
    for path in ["/wild/pass/x", "/wild/buffered/x"] {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Type: text/plain\r\n\
             Content-Length: 100\r\n\r\nonly the first bytes"
        );
        let mut stream = raw_connect(&gateway, head.as_bytes()).await;
        let response = read_until_closed(&mut stream).await;
        let (status, body) = parse_raw(&response);
        assert_eq!(status, 408, "{path}: {response}");
        let body: Value =
            serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}"));
        assert_eq!(body["code"], 408, "{path}: {body}");
        assert_eq!(body["path"], path, "{body}");
    }
}

#[tokio::test]
async fn a_body_must_arrive_within_the_total_deadline() {
    let backend = Backend::start().await;
    let config = DataPlaneConfig {
        body_read_timeout_ms: 60_000,
        body_total_timeout_ms: 300,
        ..DataPlaneConfig::default()
    };
    let gateway = Gateway::start_with(
        vec![compile(&wild_bundle(&backend, closed_port().await))],
        config,
    )
    .await;
    let mut stream = raw_connect(
        &gateway,
        b"POST /wild/buffered/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .await;
    // A chunk at a time, each well within the idle timeout, until the
    // gateway gives up (it must, long before the loop runs out).
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let gave_up = tokio::time::timeout(DEADLINE, async {
        loop {
            if stream.write_all(b"1\r\na\r\n").await.is_err() {
                break;
            }
            tokio::select! {
                read = stream.read(&mut buf) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => answer.extend_from_slice(&buf[..n]),
                },
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    })
    .await;
    assert!(gave_up.is_ok(), "the gateway kept reading a trickled body");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

// ------------------------------------------------------ out-only in flight

#[tokio::test]
async fn out_only_messages_in_flight_are_bounded() {
    let mut backend = Backend::start().await;
    let config = DataPlaneConfig {
        max_out_only_in_flight: 1,
        ..DataPlaneConfig::default()
    };
    let gateway = Gateway::start_with(
        vec![compile(&wild_bundle(&backend, closed_port().await))],
        config,
    )
    .await;

    assert_eq!(gateway.get("/wild/oneway/hold/1").await.status(), 202);
    assert_eq!(backend.next_held().await, "/oneway/hold/1");
    let refused = gateway.get("/wild/oneway/hold/2").await;
    assert_eq!(refused.status(), 503);
    let body = json_body(refused).await;
    assert_eq!(body["code"], 503, "{body}");

    // Once the first is delivered, there is room again.
    backend.release.notify_waiters();
    let accepted = tokio::time::timeout(DEADLINE, async {
        loop {
            let status = gateway.get("/wild/oneway/hold/3").await.status();
            if status == 202 {
                break;
            }
            assert_eq!(status, 503);
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(accepted.is_ok(), "the bound never freed up");
    assert_eq!(backend.next_held().await, "/oneway/hold/3");
    backend.release.notify_waiters();
}

// ------------------------------------------------------------ the listener

#[tokio::test]
async fn slow_headers_are_cut_off_at_the_configured_timeout() {
    let config = DataPlaneConfig {
        header_read_timeout_ms: 200,
        ..DataPlaneConfig::default()
    };
    let gateway = Gateway::start_with(vec![compile(&mock_api("Mock", "/mock"))], config).await;
    let mut stream = raw_connect(&gateway, b"GET /mock HTTP/1.1\r\nHost: gw\r\n").await;
    // The deadline (10 s) is far below the default of 30 s: only the
    // configured timeout closes the connection in time.
    read_until_closed(&mut stream).await;
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let config = DataPlaneConfig {
        max_connections: 1,
        ..DataPlaneConfig::default()
    };
    let gateway = Gateway::start_with(vec![compile(&mock_api("Mock", "/mock"))], config).await;
    let request = b"GET /mock HTTP/1.1\r\nHost: gw\r\n\r\n";

    // The first connection is served and stays open (keep-alive).
    let mut first = raw_connect(&gateway, request).await;
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(DEADLINE, first.read(&mut buf))
        .await
        .expect("the first connection is served")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    // The second is not served while the first holds the only slot.
    let mut second = raw_connect(&gateway, request).await;
    let mut buf2 = [0u8; 4096];
    let early = tokio::time::timeout(Duration::from_millis(300), second.read(&mut buf2)).await;
    assert!(
        early.is_err(),
        "a connection beyond the cap was served: {:?}",
        early.map(|r| r.map(|n| String::from_utf8_lossy(&buf2[..n]).into_owned()))
    );

    // Closing the first lets the second in.
    drop(first);
    let n = tokio::time::timeout(DEADLINE, second.read(&mut buf2))
        .await
        .expect("the second connection is served once a slot is free")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf2[..n]).starts_with("HTTP/1.1 200"));
}

// --------------------------------------------------------- context clashes

fn applied(api: &Arc<CompiledApi>, xml: &str) -> AppliedRevision {
    AppliedRevision {
        revision: api.revision,
        sha256: api.sha256,
        xml: Bytes::from(xml.to_owned()),
        deployed_at: chrono::Utc::now(),
        api: Arc::clone(api),
    }
}

#[tokio::test]
async fn a_context_clash_fails_the_newcomer_and_the_incumbent_keeps_serving() {
    let state = NodeState::new();
    let gateway = Gateway::start_on(state.table(), DataPlaneConfig::default()).await;

    let first_xml = mock_api("First", "/shop");
    let second_xml = mock_api("Second", "/shop");
    let (first_id, second_id) = (ApiId::new_random(), ApiId::new_random());
    let first = compile_as(first_id, Revision::FIRST, &first_xml);
    let second = compile_as(second_id, Revision::FIRST, &second_xml);

    assert!(state.install(first_id, applied(&first, &first_xml)));
    assert!(
        !state.install(second_id, applied(&second, &second_xml)),
        "an API at a taken context is not installed"
    );

    let winner = state.record(&first_id).expect("the first API has a record");
    assert_eq!(winner.status(), ApiDeploymentStatus::Deployed);
    assert_eq!(winner.applied_revision(), Some(Revision::FIRST));
    let loser = state.record(&second_id).expect("the clash is on record");
    assert_eq!(loser.status(), ApiDeploymentStatus::Failed);
    assert_eq!(loser.applied_revision(), None);
    let error = loser
        .failure
        .as_ref()
        .map(|f| f.error.clone())
        .unwrap_or_default();
    assert!(
        error.contains("/shop") && error.contains(&first_id.to_string()),
        "{error}"
    );
    assert!(
        state.applied_ids() == vec![first_id],
        "{:?}",
        state.applied_ids()
    );

    let served = gateway.get("/shop").await;
    assert_eq!(served.status(), 200);
    assert_eq!(json_body(served).await["api"], "First");

    // Once the incumbent is gone, the other API can take the context.
    state.remove(first_id, false);
    assert!(state.install(second_id, applied(&second, &second_xml)));
    assert_eq!(
        state.record(&second_id).map(|r| r.status()),
        Some(ApiDeploymentStatus::Deployed)
    );
    assert_eq!(json_body(gateway.get("/shop").await).await["api"], "Second");
}

#[tokio::test]
async fn a_context_clash_in_a_batch_leaves_records_and_table_in_agreement() {
    let state = NodeState::new();
    let gateway = Gateway::start_on(state.table(), DataPlaneConfig::default()).await;

    let incumbent_xml = mock_api("Incumbent", "/taken");
    let incumbent_id = ApiId::new_random();
    let incumbent = compile_as(incumbent_id, Revision::FIRST, &incumbent_xml);
    assert!(state.install(incumbent_id, applied(&incumbent, &incumbent_xml)));

    let mut batch = Vec::new();
    let mut ids = Vec::new();
    for (name, context) in [
        ("Intruder", "/taken"),
        ("A", "/pair"),
        ("B", "/pair"),
        ("Free", "/free"),
    ] {
        let xml = mock_api(name, context);
        let id = ApiId::new_random();
        let api = compile_as(id, Revision::FIRST, &xml);
        ids.push(id);
        batch.push((id, applied(&api, &xml)));
    }
    let installed: Vec<ApiId> = state
        .install_many(batch)
        .into_iter()
        .map(|(id, _)| id)
        .collect();

    // Every API the table serves is applied on record, and every applied
    // record is in the table.
    let table = state.table().load_full();
    let mut served: Vec<ApiId> = table.apis().map(|a| a.api_id).collect();
    let mut applied_ids = state.applied_ids();
    served.sort();
    applied_ids.sort();
    assert_eq!(served, applied_ids);
    assert!(
        !installed.contains(&ids[0]),
        "the incumbent keeps its context"
    );
    assert!(installed.contains(&ids[3]));
    assert_eq!(
        installed
            .iter()
            .filter(|id| **id == ids[1] || **id == ids[2])
            .count(),
        1,
        "one of two newcomers at one context wins"
    );
    for id in &ids {
        let record = state
            .record(id)
            .expect("every API of the batch is on record");
        let expected = if installed.contains(id) {
            ApiDeploymentStatus::Deployed
        } else {
            ApiDeploymentStatus::Failed
        };
        assert_eq!(record.status(), expected, "{id}");
    }
    assert_eq!(
        json_body(gateway.get("/taken").await).await["api"],
        "Incumbent"
    );
    assert_eq!(json_body(gateway.get("/free").await).await["api"], "Free");
}

// ------------------------------------------------------- https endpoints

/// A certificate authority made for the test, and a TLS backend on
/// loopback whose certificate (for `localhost`) it signed.
struct TlsBackend {
    port: u16,
    ca_file: std::path::PathBuf,
}

impl Drop for TlsBackend {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.ca_file);
    }
}

impl TlsBackend {
    async fn start() -> TlsBackend {
        use hyper::service::service_fn;
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "artisync test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();

        let ca_file =
            std::env::temp_dir().join(format!("artisync-test-ca-{}.pem", ApiId::new_random()));
        std::fs::write(&ca_file, ca.pem()).unwrap();

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key.into())
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A client that refuses the certificate ends here.
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = service_fn(
                        |request: hyper::Request<hyper::body::Incoming>| async move {
                            let echoed = json!({
                                "path": request.uri().path(),
                                "tls": true,
                                "host": request.headers().get("host").and_then(|h| h.to_str().ok()),
                            });
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(Bytes::from(echoed.to_string())),
                            ))
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        TlsBackend { port, ca_file }
    }
}

fn tls_api(port: u16) -> String {
    format!(
        r#"<api xmlns="http://ws.apache.org/ns/synapse" name="Tls" context="/tls">
            <resource methods="GET" url-mapping="/*">
                <inSequence>
                    <send><endpoint><address uri="https://localhost:{port}/"/></endpoint></send>
                </inSequence>
            </resource>
        </api>"#
    )
}

#[tokio::test]
async fn https_endpoints_are_proxied_over_verified_tls() {
    let backend = TlsBackend::start().await;
    let config = DataPlaneConfig {
        endpoint_ca_file: Some(backend.ca_file.clone()),
        ..DataPlaneConfig::default()
    };
    let gateway = Gateway::start_with(vec![compile(&tls_api(backend.port))], config).await;
    let response = gateway.get("/tls/orders/1").await;
    assert_eq!(response.status(), 200);
    let seen = json_body(response).await;
    assert_eq!(seen["tls"], true, "{seen}");
    assert_eq!(seen["path"], "/orders/1", "{seen}");
    assert_eq!(
        seen["host"],
        format!("localhost:{}", backend.port),
        "{seen}"
    );

    // Without the private CA the certificate is not trusted: 502.
    let untrusting = Gateway::start(vec![compile(&tls_api(backend.port))]).await;
    let refused = untrusting.get("/tls/orders/1").await;
    assert_eq!(refused.status(), 502);
    let body = json_body(refused).await;
    assert_eq!(body["code"], 502, "{body}");
}

#[test]
fn an_unreadable_endpoint_ca_file_stops_the_data_plane() {
    let config = DataPlaneConfig {
        endpoint_ca_file: Some(std::env::temp_dir().join("artisync-no-such-ca.pem")),
        ..DataPlaneConfig::default()
    };
    let table: SharedRoutingTable = Arc::new(ArcSwap::from_pointee(RoutingTable::empty()));
    let err = DataPlane::new(table, config, Default::default())
        .expect_err("an unreadable CA file is refused");
    assert!(err.to_string().contains("artisync-no-such-ca.pem"), "{err}");
}
