//! The API traffic listener: accept loop with graceful shutdown, and the
//! per-request path from routing to mediation.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::header::{ALLOW, CONTENT_LENGTH, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::body::Body;
use super::config::DataPlaneConfig;
use super::context::MessageContext;
use super::error_body::error_response;
use super::headers::strip_hop_by_hop;
use super::matcher::{ResourceMatch, allow_header, match_resource, model_method};
use super::mediation::mediate;
use super::path::has_dot_segment;
use super::proxy::{HttpClient, build_client};
use super::routing::{CompiledApi, SharedRoutingTable};
use super::tls::{EndpointTlsError, endpoint_tls};
use artisync_telemetry::metrics::Counter;

/// Request ids: unique per process, cheap (no formatting or randomness on
/// the hot path).
static NEXT_REQUEST_ID: AtomicU64 = AtomicU64::new(1);

/// The data plane: the routing table it reads and the pooled client it
/// forwards with.
pub struct DataPlane {
    table: SharedRoutingTable,
    /// Requests no deployed API matched (answered 404).
    unrouted: Arc<Counter>,
    pub(crate) client: HttpClient,
    pub(crate) endpoint_timeout: Duration,
    /// Permits for `OUT_ONLY` sends in flight; one is held by each
    /// background send until it ends.
    pub(crate) out_only: Arc<Semaphore>,
    config: DataPlaneConfig,
}

impl std::fmt::Debug for DataPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataPlane")
            .field("apis", &self.table.load().len())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl DataPlane {
    /// Fails only when the TLS settings for endpoints cannot be built (an
    /// unreadable `endpoint_ca_file`), which the node's config checks
    /// before it binds a port.
    pub fn new(
        table: SharedRoutingTable,
        config: DataPlaneConfig,
        unrouted: Arc<Counter>,
    ) -> Result<Self, EndpointTlsError> {
        let tls = endpoint_tls(config.endpoint_ca_file.as_deref())?;
        Ok(DataPlane::with_tls(table, config, unrouted, tls))
    }

    fn with_tls(
        table: SharedRoutingTable,
        config: DataPlaneConfig,
        unrouted: Arc<Counter>,
        tls: Arc<rustls::ClientConfig>,
    ) -> Self {
        DataPlane {
            unrouted,
            client: build_client(&config, tls),
            endpoint_timeout: config.endpoint_timeout(),
            out_only: Arc::new(Semaphore::new(
                config.max_out_only_in_flight.min(Semaphore::MAX_PERMITS),
            )),
            table,
            config,
        }
    }

    /// The table this data plane routes on (the deployer swaps it).
    pub fn routing_table(&self) -> &SharedRoutingTable {
        &self.table
    }

    pub fn config(&self) -> &DataPlaneConfig {
        &self.config
    }

    /// Answers one request. Never fails: every problem becomes a JSON error.
    pub(crate) async fn handle(
        &self,
        request: Request<Incoming>,
        remote: SocketAddr,
    ) -> Response<Body> {
        let started = Instant::now();
        let request_id = NEXT_REQUEST_ID.fetch_add(1, Ordering::Relaxed);
        // Refused before routing: a `..` reaching an endpoint through a `/*`
        // resource would climb out of the path the API exposes.
        if has_dot_segment(request.uri().path()) {
            let path = request.uri().path();
            tracing::debug!(request_id, path, "dot segment in the request path refused");
            return error_response(
                StatusCode::BAD_REQUEST,
                "the request path contains a dot segment ('.' or '..', possibly \
                 percent-encoded or with a backslash), which the gateway does not forward",
                path,
            );
        }
        // One load of the table per request; the API is then held by its own
        // `Arc`, so a deploy swapping the table meanwhile does not affect
        // this request (and the table guard is not held across awaits).
        let routed = {
            let table = self.table.load();
            table
                .route(request.uri().path())
                .map(|(api, start)| (Arc::clone(api), start))
        };
        let Some((api, start)) = routed else {
            self.unrouted.inc();
            let path = request.uri().path();
            tracing::debug!(request_id, path, "no API deployed at this path");
            return error_response(
                StatusCode::NOT_FOUND,
                &format!("no API deployed at {path}"),
                path,
            );
        };
        let span = tracing::info_span!(
            "api_request",
            request_id,
            api_id = %api.api_id,
            revision = %api.revision,
        );
        let response = self
            .dispatch(&api, start, request, remote)
            .instrument(span)
            .await;
        api.traffic
            .observe(response.status().as_u16(), started.elapsed());
        response
    }

    async fn dispatch(
        &self,
        api: &CompiledApi,
        start: usize,
        request: Request<Incoming>,
        remote: SocketAddr,
    ) -> Response<Body> {
        let (parts, incoming) = request.into_parts();
        let http::request::Parts {
            method,
            uri,
            mut headers,
            ..
        } = parts;
        // Before mediation: the client's `Connection` header names only the
        // client's own headers, never ones the sequences set.
        strip_hop_by_hop(&mut headers);
        let path = uri.path();
        let remainder = path.get(start..).unwrap_or("");
        let query = uri.query();

        let resources = &api.artifact.api.resources;
        let (index, vars) = match match_resource(
            resources,
            &api.method_masks,
            model_method(&method),
            remainder,
            query,
        ) {
            ResourceMatch::Found { index, vars } => (index, vars),
            ResourceMatch::MethodNotAllowed { allowed } => {
                let allow = allow_header(allowed);
                let mut response = error_response(
                    StatusCode::METHOD_NOT_ALLOWED,
                    &format!("method {method} is not allowed here; allowed: {allow}"),
                    path,
                );
                if let Ok(value) = HeaderValue::from_str(&allow) {
                    response.headers_mut().insert(ALLOW, value);
                }
                return response;
            }
            ResourceMatch::NotFound => {
                return error_response(
                    StatusCode::NOT_FOUND,
                    &format!("no resource of API {} matches {path}", api.name()),
                    path,
                );
            }
        };
        let Some(resource) = resources.get(index) else {
            return error_response(StatusCode::INTERNAL_SERVER_ERROR, "resource vanished", path);
        };

        // Refuse a declared oversized body before reading any of it;
        // undeclared (chunked) ones are cut off by the body's own limit.
        let max = self.config.max_request_body_bytes;
        let declared = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|len| len > max as u64) {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the request body exceeds the limit of {max} bytes"),
                path,
            );
        }

        let mut ctx = MessageContext::new(
            api,
            &method,
            path,
            remainder,
            query,
            vars,
            headers,
            Body::from_client(
                incoming,
                max,
                self.config.body_read_timeout(),
                self.config.body_total_timeout(),
            ),
            remote.ip(),
            max,
        );
        let response = mediate(self, &mut ctx, resource).await;
        tracing::debug!(status = response.status().as_u16(), "answered");
        response
    }
}

/// A connection handed from the accept loop to the worker that serves it,
/// detached from the accepting runtime's reactor, with its slot under
/// `max_connections` (held until the connection closes).
type Handed = (std::net::TcpStream, SocketAddr, OwnedSemaphorePermit);

/// Serves API traffic on `listener` with [`DataPlaneConfig::worker_count`]
/// threads until `shutdown` is cancelled, then returns once every worker
/// has let its requests in flight finish.
///
/// Each worker runs a single-threaded runtime with its own [`DataPlane`]
/// (so its own upstream pool). The accept loop hands connections to the
/// workers in turn, so they share the load evenly; a request, the client
/// connection it came on and the upstream connection it is forwarded on
/// are then served by one thread. On the proxy path this saves the
/// cross-thread wake-ups between hyper's server and client connection
/// tasks that a work-stealing runtime incurs.
pub async fn serve_per_core(
    listener: TcpListener,
    table: SharedRoutingTable,
    config: DataPlaneConfig,
    unrouted: Arc<Counter>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let tls = endpoint_tls(config.endpoint_ca_file.as_deref()).map_err(std::io::Error::other)?;
    let mut workers = Vec::new();
    let mut done = Vec::new();
    for index in 0..config.worker_count() {
        let (handoff, connections) = tokio::sync::mpsc::unbounded_channel::<Handed>();
        let data_plane = Arc::new(DataPlane::with_tls(
            Arc::clone(&table),
            config.clone(),
            unrouted.clone(),
            Arc::clone(&tls),
        ));
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(format!("data-plane-{index}"))
            .spawn(move || {
                let result = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map(|runtime| runtime.block_on(serve_handed(connections, data_plane)));
                let _ = done_tx.send(result);
            })?;
        workers.push(handoff);
        done.push(done_rx);
    }
    log_listening(&listener);
    let slots = connection_slots(&config);
    let mut next = 0;
    while let Some((stream, remote, slot)) = accept(&listener, &slots, &shutdown).await {
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(err) => {
                tracing::warn!(error = %err, %remote, "could not hand over a connection");
                continue;
            }
        };
        // A worker is gone only if its runtime failed to start; the next
        // one takes the connection.
        let mut connection = Some((stream, remote, slot));
        for _ in 0..workers.len() {
            let worker = &workers[next % workers.len()];
            next = next.wrapping_add(1);
            match connection.take().map(|c| worker.send(c)) {
                Some(Err(tokio::sync::mpsc::error::SendError(back))) => connection = Some(back),
                _ => break,
            }
        }
        if connection.is_some() {
            tracing::error!("no data-plane worker is running; stopping");
            shutdown.cancel();
            break;
        }
    }
    drop(listener);
    // Closing the hand-off channels tells the workers to finish.
    drop(workers);
    let mut first_error = None;
    for worker in done {
        let result = worker
            .await
            .unwrap_or_else(|_| Err(std::io::Error::other("a data-plane worker thread panicked")));
        if let Err(err) = result {
            tracing::error!(error = %err, "a data-plane worker failed");
            first_error.get_or_insert(err);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Serves the connections handed to this worker until the hand-off closes,
/// then lets the requests in flight finish.
async fn serve_handed(
    mut connections: tokio::sync::mpsc::UnboundedReceiver<Handed>,
    data_plane: Arc<DataPlane>,
) {
    let graceful = GracefulShutdown::new();
    let http = http1_builder(data_plane.config());
    while let Some((stream, remote, slot)) = connections.recv().await {
        // Registers the connection with this worker's reactor.
        match TcpStream::from_std(stream) {
            Ok(stream) => serve_connection(&http, &graceful, stream, remote, slot, &data_plane),
            Err(err) => {
                tracing::warn!(error = %err, %remote, "could not take over a connection");
            }
        }
    }
    drain(graceful).await;
}

/// Serves API traffic on `listener` from the current runtime until
/// `shutdown` is cancelled; then stops accepting, lets requests in flight
/// finish (idle keep-alive connections are closed), and returns.
pub async fn serve(
    listener: TcpListener,
    data_plane: Arc<DataPlane>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let http = http1_builder(data_plane.config());
    let slots = connection_slots(data_plane.config());
    log_listening(&listener);
    while let Some((stream, remote, slot)) = accept(&listener, &slots, &shutdown).await {
        serve_connection(&http, &graceful, stream, remote, slot, &data_plane);
    }
    drop(listener);
    drain(graceful).await;
    Ok(())
}

fn http1_builder(config: &DataPlaneConfig) -> hyper::server::conn::http1::Builder {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .keep_alive(true)
        // Slowloris protection: a client must finish its headers in time.
        .header_read_timeout(config.header_read_timeout());
    http
}

/// The slots of `max_connections`: a connection holds one while it is open.
fn connection_slots(config: &DataPlaneConfig) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(
        config.max_connections.min(Semaphore::MAX_PERMITS),
    ))
}

fn log_listening(listener: &TcpListener) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "data plane listening");
    }
}

/// The next connection with its slot, or `None` once `shutdown` is
/// cancelled. With every slot taken, nothing is accepted until a connection
/// closes: further clients wait in the kernel's backlog.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
    shutdown: &CancellationToken,
) -> Option<(TcpStream, SocketAddr, OwnedSemaphorePermit)> {
    loop {
        let slot = tokio::select! {
            biased;
            () = shutdown.cancelled() => return None,
            slot = Arc::clone(slots).acquire_owned() => slot.ok()?,
        };
        let accepted = tokio::select! {
            biased;
            () = shutdown.cancelled() => return None,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, remote)) => return Some((stream, remote, slot)),
            Err(err) => {
                // Usually out of file descriptors or a connection reset
                // before accept: back off briefly instead of spinning.
                tracing::warn!(error = %err, "accepting a connection failed");
                tokio::select! {
                    () = shutdown.cancelled() => return None,
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        }
    }
}

/// Serves one connection on the current runtime.
fn serve_connection(
    http: &hyper::server::conn::http1::Builder,
    graceful: &GracefulShutdown,
    stream: TcpStream,
    remote: SocketAddr,
    slot: OwnedSemaphorePermit,
    data_plane: &Arc<DataPlane>,
) {
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(error = %err, "could not set TCP_NODELAY");
    }
    let data_plane = Arc::clone(data_plane);
    let service = service_fn(move |request| {
        let data_plane = Arc::clone(&data_plane);
        async move { Ok::<_, Infallible>(data_plane.handle(request, remote).await) }
    });
    let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
    tokio::spawn(async move {
        // The slot is free again once the connection is done.
        let _slot = slot;
        if let Err(err) = connection.await {
            tracing::debug!(error = %err, %remote, "connection ended with an error");
        }
    });
}

async fn drain(graceful: GracefulShutdown) {
    tracing::info!(
        connections = graceful.count(),
        "data plane stopping; waiting for requests in flight"
    );
    graceful.shutdown().await;
    tracing::info!("data plane stopped");
}
