//! Fault injection between a node and its upstreams: a TCP proxy that can
//! cut every connection and refuse new ones until healed, and an HTTP
//! proxy that answers chosen paths with an error.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A TCP proxy to `upstream` with a switch.
pub struct TcpFaultProxy {
    pub addr: SocketAddr,
    up: watch::Sender<bool>,
    attempts: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
    shutdown: CancellationToken,
}

impl TcpFaultProxy {
    pub async fn start(upstream: SocketAddr) -> anyhow::Result<TcpFaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (up, up_rx) = watch::channel(true);
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let attempts = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));
        let (attempts_seen, refused_seen) = (attempts.clone(), refused.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = token.cancelled() => return,
                    a = listener.accept() => a,
                };
                let Ok((client, _)) = accepted else { continue };
                attempts_seen.fetch_add(1, Ordering::SeqCst);
                if !*up_rx.borrow() {
                    // Cut: refuse by closing at once.
                    refused_seen.fetch_add(1, Ordering::SeqCst);
                    drop(client);
                    continue;
                }
                let mut up_rx = up_rx.clone();
                let token = token.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut client, mut server) = (client, server);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = up_rx.wait_for(|up| !*up) => {}
                        _ = token.cancelled() => {}
                    }
                });
            }
        });
        Ok(TcpFaultProxy {
            addr,
            up,
            attempts,
            refused,
            shutdown,
        })
    }

    /// Connections clients opened so far (refused ones included).
    pub fn connections(&self) -> usize {
        self.attempts.load(Ordering::SeqCst)
    }

    /// Connections refused because the proxy was cut.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    /// Closes every proxied connection and refuses new ones.
    pub fn cut(&self) {
        let _ = self.up.send(false);
    }

    pub fn heal(&self) {
        let _ = self.up.send(true);
    }
}

impl Drop for TcpFaultProxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// An HTTP proxy that fails requests whose path contains a chosen string,
/// and remembers every request it saw.
pub struct HttpFaultProxy {
    pub addr: SocketAddr,
    rules: Arc<Mutex<Vec<(String, StatusCode)>>>,
    log: Arc<Mutex<Vec<ProxiedRequest>>>,
    shutdown: CancellationToken,
}

/// One request as the proxy saw it arrive.
#[derive(Debug, Clone)]
pub struct ProxiedRequest {
    pub at: Instant,
    pub wall: chrono::DateTime<chrono::Utc>,
    pub method: String,
    pub path_and_query: String,
    /// The injected status, or `None` when it was forwarded.
    pub injected: Option<u16>,
}

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    rules: Arc<Mutex<Vec<(String, StatusCode)>>>,
    log: Arc<Mutex<Vec<ProxiedRequest>>>,
    http: reqwest::Client,
}

impl HttpFaultProxy {
    pub async fn start(upstream: &str) -> anyhow::Result<HttpFaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let rules = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let state = ProxyState {
            upstream: upstream.trim_end_matches('/').to_owned(),
            rules: rules.clone(),
            log: log.clone(),
            http: reqwest::Client::new(),
        };
        let app = Router::new().fallback(forward).with_state(state);
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(token.cancelled_owned())
                .await;
        });
        Ok(HttpFaultProxy {
            addr,
            rules,
            log,
            shutdown,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests whose path contains `needle` get `status`.
    pub fn fail(&self, needle: &str, status: StatusCode) {
        self.rules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((needle.to_owned(), status));
    }

    pub fn clear(&self) {
        self.rules.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// The requests seen so far whose path contains `needle`, in arrival
    /// order.
    pub fn requests(&self, needle: &str) -> Vec<ProxiedRequest> {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|r| r.path_and_query.contains(needle))
            .cloned()
            .collect()
    }
}

impl Drop for HttpFaultProxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn forward(State(state): State<ProxyState>, request: Request) -> Response {
    let (at, wall) = (Instant::now(), chrono::Utc::now());
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let failing = state
        .rules
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .find(|(needle, _)| path_and_query.contains(needle.as_str()))
        .map(|(_, s)| *s);
    state
        .log
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(ProxiedRequest {
            at,
            wall,
            method: request.method().to_string(),
            path_and_query: path_and_query.clone(),
            injected: failing.map(|s| s.as_u16()),
        });
    if let Some(status) = failing {
        return (status, "injected fault").into_response();
    }
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 64 * 1024 * 1024).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let mut upstream = state
        .http
        .request(parts.method, format!("{}{path_and_query}", state.upstream))
        .body(body);
    for (k, v) in parts.headers.iter() {
        if k != "host" {
            upstream = upstream.header(k, v);
        }
    }
    match upstream.send().await {
        Ok(r) => {
            let mut response = Response::builder().status(r.status());
            for (k, v) in r.headers() {
                response = response.header(k, v);
            }
            response
                .body(Body::from_stream(r.bytes_stream()))
                .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
        }
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}
