//! A local HTTP backend for proxied APIs: echoes what it received.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::Request;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::any;
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub struct Backend {
    pub addr: SocketAddr,
    received: Arc<AtomicUsize>,
    shutdown: CancellationToken,
}

impl Backend {
    /// Starts an echo server on 127.0.0.1:0: every request gets
    /// `{"method", "path", "query", "headers", "body"}`. A path with a
    /// `/slow/<ms>` segment is answered after that many milliseconds.
    pub async fn start() -> anyhow::Result<Backend> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let received = Arc::new(AtomicUsize::new(0));
        let counter = received.clone();
        let app = Router::new().fallback(any(move |request: Request| {
            counter.fetch_add(1, Ordering::SeqCst);
            echo(request)
        }));
        let token = shutdown.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(token.cancelled_owned())
                .await;
        });
        Ok(Backend {
            addr,
            received,
            shutdown,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many requests have arrived so far (counted as they arrive,
    /// before any `/slow/` wait).
    pub fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn echo(request: Request) -> impl IntoResponse {
    let (parts, body) = request.into_parts();
    let slow = parts
        .uri
        .path()
        .split_once("/slow/")
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|ms| ms.parse::<u64>().ok());
    if let Some(ms) = slow {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let body: Bytes = axum::body::to_bytes(body, 16 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let headers: serde_json::Map<String, serde_json::Value> = header_map(&parts.headers);
    axum::Json(json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    }))
}

fn header_map(h: &HeaderMap) -> serde_json::Map<String, serde_json::Value> {
    h.iter()
        .map(|(k, v)| (k.as_str().to_owned(), json!(v.to_str().unwrap_or(""))))
        .collect()
}
