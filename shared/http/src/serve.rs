//! Serving a router until shutdown, with bounds a hostile client cannot
//! stretch: a deadline for reading a request's headers and a cap on open
//! connections.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// How long a client may take to send a request's headers (HTTP/1) before
/// its connection is closed: bounds slowloris clients.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How many connections one listener serves at once. Past the cap, a new
/// connection is accepted and closed at once (the client sees the
/// connection closed before any answer and may retry), so that an idle
/// flood can make the process hold neither more sockets than this nor a
/// growing accept queue; once a connection closes, new ones are served
/// again.
pub const MAX_CONNECTIONS: usize = 1024;

/// The bounds of [`serve_with`].
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Deadline for a request's headers, from the first byte of a request
    /// (or the connection's start) to the end of its headers.
    pub header_read_timeout: Duration,
    /// Open connections at most; more are closed on accept.
    pub max_connections: usize,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            header_read_timeout: HEADER_READ_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

/// Serves `router` on `listener` until `shutdown`, then lets the requests
/// in flight finish, with the default [`ServeLimits`].
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_with(listener, router, shutdown, ServeLimits::default()).await
}

/// [`serve`] with explicit bounds.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    limits: ServeLimits,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors and the like: back off
                    // rather than spin on the error.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        () = shutdown.cancelled() => break,
                    }
                }
            },
            () = shutdown.cancelled() => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // At the cap: close at once rather than hold the socket.
            tracing::debug!(
                max_connections = limits.max_connections,
                "connection refused: too many open connections"
            );
            drop(stream);
            continue;
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            router.clone().oneshot(request.map(Body::new))
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}
