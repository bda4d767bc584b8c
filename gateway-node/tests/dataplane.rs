//! The data plane over real HTTP on loopback: a real backend (axum), the
//! gateway's `serve`, and reqwest as the client. Artifacts go through the
//! real parser and validator.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use artisync_domain::{ApiId, Revision, Sha256Digest};
use artisync_gateway::dataplane::{
    CompiledApi, DataPlane, DataPlaneConfig, RoutingTable, SharedRoutingTable, serve,
};
use artisync_synapse::parse_artifact;
use axum::body::Body as AxumBody;
use axum::extract::{Request, State};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const PIZZASHACK: &str = include_str!("../../config/compat/wso2-apim-PizzaShackAPI_v1.0.0.xml");
const SAMPLE_800: &str = include_str!("../../config/compat/apache-synapse-sample-800.xml");

// ------------------------------------------------------------------ backend

/// What the backend saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    body: String,
}

#[derive(Clone)]
struct BackendState {
    seen: mpsc::UnboundedSender<Seen>,
    held: mpsc::UnboundedSender<String>,
    release: Arc<Notify>,
}

/// A real HTTP server that echoes requests as JSON. Paths containing
/// `/sleep/{ms}` answer late, `/status/{code}` answer with that status,
/// `/hold` wait until the test releases them.
struct Backend {
    addr: SocketAddr,
    seen: mpsc::UnboundedReceiver<Seen>,
    held: mpsc::UnboundedReceiver<String>,
    release: Arc<Notify>,
}

impl Backend {
    async fn start() -> Backend {
        let (seen_tx, seen) = mpsc::unbounded_channel();
        let (held_tx, held) = mpsc::unbounded_channel();
        let release = Arc::new(Notify::new());
        let state = BackendState {
            seen: seen_tx,
            held: held_tx,
            release: Arc::clone(&release),
        };
        let app = axum::Router::new().fallback(echo).with_state(state);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Backend {
            addr,
            seen,
            held,
            release,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn next_seen(&mut self) -> Seen {
        tokio::time::timeout(Duration::from_secs(10), self.seen.recv())
            .await
            .expect("the backend saw no request in time")
            .expect("backend channel closed")
    }
}

async fn echo(State(state): State<BackendState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let path = parts.uri.path().to_owned();
    let body = String::from_utf8_lossy(&body).into_owned();
    let _ = state.seen.send(Seen {
        path: path.clone(),
        body: body.clone(),
    });
    let mut status = 200u16;
    if let Some(ms) = segment_after(&path, "sleep") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
    }
    if let Some(code) = segment_after(&path, "status") {
        status = code.parse().unwrap();
    }
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
        "body": body,
    });
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-backend", "echo")
        .header("keep-alive", "timeout=5")
        .header("connection", "x-hop-resp")
        .header("x-hop-resp", "must not cross")
        .body(AxumBody::from(echoed.to_string()))
        .unwrap()
}

fn segment_after<'p>(path: &'p str, marker: &str) -> Option<&'p str> {
    let mut parts = path.split('/');
    parts.find(|p| *p == marker)?;
    parts.next()
}

/// A port nothing listens on.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

// ------------------------------------------------------------------ gateway

struct Gateway {
    base: String,
    table: SharedRoutingTable,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
    client: reqwest::Client,
}

impl Gateway {
    async fn start(apis: Vec<Arc<CompiledApi>>) -> Gateway {
        Gateway::start_with(apis, DataPlaneConfig::default()).await
    }

    async fn start_with(apis: Vec<Arc<CompiledApi>>, config: DataPlaneConfig) -> Gateway {
        let table: SharedRoutingTable =
            Arc::new(ArcSwap::from_pointee(RoutingTable::from_apis(apis)));
        let data_plane =
            Arc::new(DataPlane::new(Arc::clone(&table), config, Default::default()).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(listener, data_plane, shutdown.clone()));
        Gateway {
            base: format!("http://{addr}"),
            table,
            shutdown,
            task,
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    fn deploy(&self, api: Arc<CompiledApi>) {
        self.table.rcu(|table| table.with_api(Arc::clone(&api)));
    }

    fn undeploy(&self, api_id: &ApiId) {
        self.table.rcu(|table| table.without_api(api_id));
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

async fn json_body(response: reqwest::Response) -> Value {
    let text = response.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

async fn assert_json_error(response: reqwest::Response, status: u16, path: &str) -> Value {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body = json_body(response).await;
    assert_eq!(body["code"], status, "{body}");
    assert_eq!(body["path"], path, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    body
}

// -------------------------------------------------------------------- tests

#[tokio::test]
async fn pizzashack_bundle_proxies_to_the_sandbox_endpoint() {
    let backend = Backend::start().await;
    let api = PIZZASHACK
        .trim_start()
        .strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>")
        .expect("the compat file starts with an XML declaration");
    let bundle = format!(
        r#"<definitions xmlns="http://ws.apache.org/ns/synapse">
            {api}
            <endpoint name="PizzaShackAPI--v1.0.0_APIproductionEndpoint">
                <http uri-template="{prod}"/>
            </endpoint>
            <endpoint name="PizzaShackAPI--v1.0.0_APIsandboxEndpoint">
                <http uri-template="{sandbox}"/>
            </endpoint>
        </definitions>"#,
        prod = backend.url("/production"),
        sandbox = backend.url("/sandbox/"),
    );
    let gateway = Gateway::start(vec![compile(&bundle)]).await;

    let menu = gateway.get("/pizzashack/1.0.0/menu").await;
    assert_eq!(menu.status(), 200);
    let menu = json_body(menu).await;
    assert_eq!(menu["path"], "/sandbox/menu");
    assert_eq!(menu["method"], "GET");

    let order = json_body(gateway.get("/pizzashack/1.0.0/order/123?extra=1").await).await;
    assert_eq!(order["path"], "/sandbox/order/123");
    assert_eq!(order["query"], "extra=1");

    let posted = gateway
        .client
        .post(gateway.url("/pizzashack/1.0.0/order"))
        .header("content-type", "application/json")
        .body(r#"{"pizza": "Margherita"}"#)
        .send()
        .await
        .unwrap();
    let posted = json_body(posted).await;
    assert_eq!(posted["path"], "/sandbox/order");
    assert_eq!(posted["method"], "POST");
    assert_eq!(posted["body"], r#"{"pizza": "Margherita"}"#);

    // A segment-boundary near miss and a wrong method.
    let miss = gateway.get("/pizzashack/1.0.01/menu").await;
    assert_json_error(miss, 404, "/pizzashack/1.0.01/menu").await;
    let wrong = gateway
        .client
        .patch(gateway.url("/pizzashack/1.0.0/order/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.headers()["allow"], "GET, PUT, DELETE");
    assert_json_error(wrong, 405, "/pizzashack/1.0.0/order/1").await;
}

#[tokio::test]
async fn synapse_sample_800_sends_the_soap_payload_and_out_only_orders() {
    let mut backend = Backend::start().await;
    let original = "http://localhost:9000/services/SimpleStockQuoteService";
    assert!(SAMPLE_800.contains(original));
    let xml = SAMPLE_800.replace(original, &backend.url("/services/SimpleStockQuoteService"));
    let gateway = Gateway::start(vec![compile(&xml)]).await;

    let quote = gateway.get("/stockquote/view/IBM").await;
    assert_eq!(quote.status(), 200);
    let quote = json_body(quote).await;
    assert_eq!(quote["path"], "/services/SimpleStockQuoteService/view/IBM");
    let payload = quote["body"].as_str().unwrap();
    assert!(payload.contains("<m0:symbol>IBM</m0:symbol>"), "{payload}");
    assert!(payload.contains("<m0:getQuote"), "{payload}");
    assert_eq!(quote["headers"]["content-type"], "application/xml");
    assert_eq!(
        backend.next_seen().await.path,
        "/services/SimpleStockQuoteService/view/IBM"
    );

    // OUT_ONLY + FORCE_SC_ACCEPTED: 202 at once, delivered in the background.
    let order = gateway
        .client
        .post(gateway.url("/stockquote/order/42"))
        .header("content-type", "application/xml")
        .body("<placeOrder>IBM</placeOrder>")
        .send()
        .await
        .unwrap();
    assert_eq!(order.status(), 202);
    assert_eq!(order.text().await.unwrap(), "");
    let seen = backend.next_seen().await;
    assert_eq!(seen.path, "/services/SimpleStockQuoteService/order/42");
    assert_eq!(seen.body, "<placeOrder>IBM</placeOrder>");
}

#[tokio::test]
async fn a_mock_api_answers_its_payload_with_status_and_headers() {
    let xml = r#"<api xmlns="http://ws.apache.org/ns/synapse" name="Mock" context="/mock/{version}" version="2.0">
        <resource methods="GET" uri-template="/greet/{name}?lang={lang}">
            <inSequence>
                <log level="custom"><property name="greeting" expression="get-property('uri.var.name')"/></log>
                <payloadFactory media-type="json">
                    <format>{"hello": "$1", "lang": "$2", "agent": "$3", "unset": "$4"}</format>
                    <args>
                        <arg expression="get-property('uri.var.name')"/>
                        <arg expression="get-property('uri.var.lang')"/>
                        <arg expression="$trp:X-Agent"/>
                        <arg expression="$ctx:nothing"/>
                    </args>
                </payloadFactory>
                <property name="HTTP_SC" value="201" scope="axis2"/>
                <header name="X-Mock" value="yes" scope="transport"/>
                <respond/>
            </inSequence>
        </resource>
    </api>"#;
    let gateway = Gateway::start(vec![compile(xml)]).await;

    let response = gateway
        .client
        .get(gateway.url("/mock/2.0/greet/J%22o%C3%A9?lang=en+GB"))
        .header("x-agent", "tester \\ 1")
        .header("authorization", "Bearer secret")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["x-mock"], "yes");
    assert_eq!(response.headers()["content-type"], "application/json");
    assert!(
        response.headers().get("authorization").is_none(),
        "request headers are not echoed"
    );
    assert!(response.headers().get("x-agent").is_none());
    let body = json_body(response).await;
    assert_eq!(
        body,
        json!({"hello": "J\"oé", "lang": "en GB", "agent": "tester \\ 1", "unset": ""})
    );

    // The template's query parameter is required.
    assert_json_error(
        gateway.get("/mock/2.0/greet/x").await,
        404,
        "/mock/2.0/greet/x",
    )
    .await;
}

fn proxy_bundle(backend: &Backend, closed: u16) -> String {
    format!(
        r#"<definitions xmlns="http://ws.apache.org/ns/synapse">
            <api name="Proxy" context="/proxy/v1">
                <resource methods="POST PUT" uri-template="/items/{{id}}">
                    <inSequence>
                        <property name="X-Added" value="by-gateway" scope="transport"/>
                        <send><endpoint key="Backend"/></send>
                    </inSequence>
                    <outSequence>
                        <property name="X-Out" expression="$trp:X-Backend" scope="transport"/>
                        <send/>
                    </outSequence>
                </resource>
                <resource methods="GET" uri-template="/status/{{code}}">
                    <inSequence>
                        <send><endpoint><http uri-template="{base}/status/{{uri.var.code}}"/></endpoint></send>
                    </inSequence>
                </resource>
                <resource methods="GET" uri-template="/slow">
                    <inSequence>
                        <send><endpoint>
                            <http uri-template="{base}/sleep/3000">
                                <timeout><duration>300</duration><responseAction>fault</responseAction></timeout>
                            </http>
                        </endpoint></send>
                    </inSequence>
                </resource>
                <resource methods="GET" uri-template="/down">
                    <inSequence>
                        <send><endpoint><address uri="http://127.0.0.1:{closed}/nothing"/></endpoint></send>
                    </inSequence>
                </resource>
                <resource methods="GET" uri-template="/down-with-fault" faultSequence="jsonFault">
                    <inSequence>
                        <send><endpoint><address uri="http://127.0.0.1:{closed}/nothing"/></endpoint></send>
                    </inSequence>
                </resource>
                <resource methods="GET" url-mapping="/hold/*">
                    <inSequence>
                        <send><endpoint><address uri="{base}/"/></endpoint></send>
                    </inSequence>
                </resource>
            </api>
            <endpoint name="Backend">
                <http uri-template="{base}/backend/items/{{uri.var.id}}/detail"/>
            </endpoint>
            <sequence name="jsonFault">
                <payloadFactory media-type="json">
                    <format>{{"fault": "$1", "message": "$2"}}</format>
                    <args>
                        <arg expression="get-property('ERROR_CODE')"/>
                        <arg expression="get-property('ERROR_MESSAGE')"/>
                    </args>
                </payloadFactory>
                <property name="HTTP_SC" value="503"/>
                <respond/>
            </sequence>
        </definitions>"#,
        base = backend.url(""),
    )
}

#[tokio::test]
async fn a_proxy_api_forwards_method_path_query_headers_and_body() {
    let backend = Backend::start().await;
    let gateway = Gateway::start(vec![compile(&proxy_bundle(&backend, closed_port().await))]).await;

    let response = gateway
        .client
        .put(gateway.url("/proxy/v1/items/a%20b?x=1&y=%2F"))
        .header("x-custom", "kept")
        .header("x-forwarded-for", "10.1.2.3")
        .header("content-type", "text/plain")
        .body("the payload")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["x-backend"], "echo");
    assert_eq!(
        headers["x-out"], "echo",
        "the outSequence ran on the response"
    );
    assert!(
        headers.get("keep-alive").is_none(),
        "hop-by-hop headers are stripped"
    );
    assert!(
        headers.get("x-hop-resp").is_none(),
        "headers named in Connection are stripped"
    );
    let seen = json_body(response).await;
    assert_eq!(seen["method"], "PUT");
    assert_eq!(seen["path"], "/backend/items/a%20b/detail");
    assert_eq!(seen["query"], "x=1&y=%2F");
    assert_eq!(seen["body"], "the payload");
    let sent = &seen["headers"];
    assert_eq!(sent["x-custom"], "kept");
    assert_eq!(sent["x-added"], "by-gateway");
    assert_eq!(sent["content-type"], "text/plain");
    assert_eq!(sent["x-forwarded-for"], "10.1.2.3, 127.0.0.1");
    assert_eq!(
        sent["x-forwarded-host"],
        gateway.base.trim_start_matches("http://")
    );
    assert_eq!(sent["x-forwarded-proto"], "http");
    assert_eq!(sent["host"], backend.addr.to_string());

    // The endpoint's status comes back as it is.
    let teapot = gateway.get("/proxy/v1/status/418").await;
    assert_eq!(teapot.status(), 418);
    assert_eq!(json_body(teapot).await["path"], "/status/418");
}

#[tokio::test]
async fn endpoint_failures_are_502_504_or_the_fault_sequence() {
    let backend = Backend::start().await;
    let gateway = Gateway::start(vec![compile(&proxy_bundle(&backend, closed_port().await))]).await;

    assert_json_error(gateway.get("/proxy/v1/down").await, 502, "/proxy/v1/down").await;

    let started = Instant::now();
    assert_json_error(gateway.get("/proxy/v1/slow").await, 504, "/proxy/v1/slow").await;
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "the endpoint's own timeout applies"
    );

    let fault = gateway.get("/proxy/v1/down-with-fault").await;
    assert_eq!(fault.status(), 503);
    let body = json_body(fault).await;
    assert_eq!(body["fault"], "101503");
    assert!(
        body["message"].as_str().unwrap().contains("unreachable"),
        "{body}"
    );
}

#[tokio::test]
async fn routing_misses_are_404_and_405_as_json() {
    let backend = Backend::start().await;
    let gateway = Gateway::start(vec![compile(&proxy_bundle(&backend, closed_port().await))]).await;

    let none = assert_json_error(gateway.get("/nothing/here").await, 404, "/nothing/here").await;
    assert_eq!(none["message"], "no API deployed at /nothing/here");
    assert_json_error(
        gateway.get("/proxy/v1/unknown").await,
        404,
        "/proxy/v1/unknown",
    )
    .await;

    let wrong = gateway.get("/proxy/v1/items/1").await;
    assert_eq!(wrong.headers()["allow"], "POST, PUT");
    assert_json_error(wrong, 405, "/proxy/v1/items/1").await;
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let backend = Backend::start().await;
    let config = DataPlaneConfig {
        max_request_body_bytes: 1024,
        ..DataPlaneConfig::default()
    };
    let gateway = Gateway::start_with(
        vec![compile(&proxy_bundle(&backend, closed_port().await))],
        config,
    )
    .await;

    let declared = gateway
        .client
        .post(gateway.url("/proxy/v1/items/1"))
        .body(vec![b'x'; 2048])
        .send()
        .await
        .unwrap();
    assert_json_error(declared, 413, "/proxy/v1/items/1").await;

    // Without a Content-Length the limit cuts the stream.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        vec![Ok(vec![b'y'; 700]), Ok(vec![b'y'; 700])];
    let chunked = gateway
        .client
        .post(gateway.url("/proxy/v1/items/2"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_json_error(chunked, 413, "/proxy/v1/items/2").await;

    let small = gateway
        .client
        .post(gateway.url("/proxy/v1/items/3"))
        .body(vec![b'z'; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(small.status(), 200);
}

#[tokio::test]
async fn the_longest_context_wins() {
    let gateway = Gateway::start(vec![
        compile(&mock_api("A", "/a")),
        compile(&mock_api("AB", "/a/b")),
    ])
    .await;
    for (path, api) in [
        ("/a/b/x", "AB"),
        ("/a/b", "AB"),
        ("/a/bx", "A"),
        ("/a", "A"),
        ("/a/x/b", "A"),
    ] {
        let body = json_body(gateway.get(path).await).await;
        assert_eq!(body["api"], api, "{path}");
    }
    assert_eq!(gateway.get("/ab").await.status(), 404);
}

#[tokio::test]
async fn swapping_the_table_never_disturbs_a_request_in_flight() {
    let mut backend = Backend::start().await;
    let api_id = ApiId::new_random();
    let rev1 = format!(
        r#"<api xmlns="http://ws.apache.org/ns/synapse" name="Swap" context="/swap">
            <resource methods="GET" url-mapping="/*">
                <inSequence><send><endpoint><address uri="{}"/></endpoint></send></inSequence>
            </resource>
        </api>"#,
        backend.url("/rev1")
    );
    let gateway = Gateway::start(vec![compile_as(api_id, Revision::FIRST, &rev1)]).await;
    assert_eq!(
        json_body(gateway.get("/swap/plain").await).await["path"],
        "/rev1/plain"
    );

    // A request that the backend holds until after the swap.
    let client = gateway.client.clone();
    let url = gateway.url("/swap/hold");
    let in_flight = tokio::spawn(async move { client.get(url).send().await.unwrap() });
    let held = tokio::time::timeout(Duration::from_secs(10), backend.held.recv())
        .await
        .unwrap();
    assert_eq!(held.as_deref(), Some("/rev1/hold"));

    gateway.deploy(compile_as(
        api_id,
        Revision::FIRST.next(),
        &mock_api("Swap", "/swap"),
    ));
    assert_eq!(
        json_body(gateway.get("/swap/plain").await).await["api"],
        "Swap",
        "new requests see revision 2"
    );

    backend.release.notify_one();
    let finished = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(finished.status(), 200);
    assert_eq!(
        json_body(finished).await["path"],
        "/rev1/hold",
        "the request finished on revision 1"
    );

    gateway.undeploy(&api_id);
    assert_json_error(gateway.get("/swap/plain").await, 404, "/swap/plain").await;
}

#[tokio::test]
async fn shutdown_lets_requests_in_flight_finish() {
    let mut backend = Backend::start().await;
    let gateway = Gateway::start(vec![compile(&proxy_bundle(&backend, closed_port().await))]).await;

    let client = gateway.client.clone();
    let url = gateway.url("/proxy/v1/hold/1");
    let in_flight = tokio::spawn(async move { client.get(url).send().await.unwrap() });
    let held = tokio::time::timeout(Duration::from_secs(10), backend.held.recv())
        .await
        .unwrap();
    assert_eq!(held.as_deref(), Some("/hold/1"));

    gateway.shutdown.cancel();
    // Give serve a moment to stop accepting; it must still be waiting.
    tokio::task::yield_now().await;
    assert!(
        !gateway.task.is_finished(),
        "serve waits for the request in flight"
    );

    backend.release.notify_one();
    let finished = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(finished.status(), 200);
    assert_eq!(json_body(finished).await["path"], "/hold/1");
    let served = tokio::time::timeout(Duration::from_secs(10), gateway.task)
        .await
        .unwrap()
        .unwrap();
    assert!(served.is_ok());

    // Nothing accepts connections any more.
    let refused = reqwest::Client::new()
        .get(format!("{}/proxy/v1/status/200", gateway.base))
        .send()
        .await;
    assert!(refused.is_err());
}

#[tokio::test]
async fn call_named_sequences_json_eval_filters_and_endings() {
    let backend = Backend::start().await;
    let xml = format!(
        r#"<definitions xmlns="http://ws.apache.org/ns/synapse">
            <api name="Flow" context="/flow">
                <resource methods="POST" uri-template="/enrich/{{id}}">
                    <inSequence>
                        <log level="full"/>
                        <sequence key="tag"/>
                        <filter xpath="json-eval($.kind) = 'premium' and $trp:X-Tenant">
                            <then><property name="tier" value="gold"/></then>
                            <else><property name="tier" value="basic"/></else>
                        </filter>
                        <call><endpoint><http uri-template="{base}/lookup/{{uri.var.id}}"/></endpoint></call>
                        <payloadFactory media-type="json">
                            <format>{{"looked_up": "$1", "sent": "$2", "tier": "$3", "tag": "$4", "status": "$5"}}</format>
                            <args>
                                <arg expression="json-eval($.path)"/>
                                <arg expression="json-eval($.body)"/>
                                <arg expression="$ctx:tier"/>
                                <arg expression="get-property('tag')"/>
                                <arg expression="get-property('HTTP_SC')"/>
                            </args>
                        </payloadFactory>
                        <respond/>
                    </inSequence>
                </resource>
                <resource methods="GET" uri-template="/dropped">
                    <inSequence><drop/></inSequence>
                </resource>
                <resource methods="GET" uri-template="/nothing">
                    <inSequence><property name="x" value="y"/></inSequence>
                </resource>
            </api>
            <sequence name="tag">
                <property name="tag" expression="get-property('uri.var.id')"/>
            </sequence>
        </definitions>"#,
        base = backend.url(""),
    );
    let gateway = Gateway::start(vec![compile(&xml)]).await;

    let request_body = r#"{"kind": "premium"}"#;
    let enrich = |tenant: Option<&'static str>| {
        let mut request = gateway
            .client
            .post(gateway.url("/flow/enrich/42"))
            .body(request_body);
        if let Some(tenant) = tenant {
            request = request.header("x-tenant", tenant);
        }
        request.send()
    };
    let gold = enrich(Some("acme")).await.unwrap();
    assert_eq!(gold.status(), 200);
    assert_eq!(gold.headers()["content-type"], "application/json");
    assert_eq!(
        json_body(gold).await,
        json!({"looked_up": "/lookup/42", "sent": request_body, "tier": "gold", "tag": "42", "status": "200"})
    );
    let basic = json_body(enrich(None).await.unwrap()).await;
    assert_eq!(basic["tier"], "basic");

    let dropped = gateway.get("/flow/dropped").await;
    assert_eq!(dropped.status(), 202);
    assert_eq!(dropped.text().await.unwrap(), "");

    let body = assert_json_error(gateway.get("/flow/nothing").await, 500, "/flow/nothing").await;
    assert_eq!(
        body["message"],
        "the inSequence ended without send or respond"
    );
}
