//! Serving a router until shutdown, with bounds a hostile client cannot
//! stretch: a deadline for reading a request's headers, a cap on open
//! connections, and a grace period after which requests still in flight at
//! shutdown are abandoned.

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
use tokio_rustls::TlsAcceptor;
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

/// How long requests in flight at shutdown may take to finish. A request
/// still running then (a slow client, a large artifact still being
/// validated) is abandoned, so no request holds the process up.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The bounds of [`serve_with`].
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Deadline for a request's headers, from the first byte of a request
    /// (or the connection's start) to the end of its headers.
    pub header_read_timeout: Duration,
    /// Open connections at most; more are closed on accept.
    pub max_connections: usize,
    /// How long requests in flight at shutdown may still take.
    pub shutdown_grace: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            header_read_timeout: HEADER_READ_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            shutdown_grace: SHUTDOWN_GRACE,
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

/// [`serve`] with another grace period.
pub async fn serve_with_grace(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    grace: Duration,
) -> std::io::Result<()> {
    let limits = ServeLimits {
        shutdown_grace: grace,
        ..ServeLimits::default()
    };
    serve_with(listener, router, shutdown, limits).await
}

/// [`serve`] with explicit bounds.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    limits: ServeLimits,
) -> std::io::Result<()> {
    serve_on(listener, router, shutdown, limits, None).await
}

/// [`serve`] over TLS when `tls` is given (HTTPS, with the client
/// certificates it requires, if any); the handshake must finish within the
/// header read timeout.
pub async fn serve_on(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    limits: ServeLimits,
    tls: Option<TlsAcceptor>,
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
        let Some(acceptor) = tls.clone() else {
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
            continue;
        };
        let (builder, watcher) = (builder.clone(), graceful.watcher());
        let handshake_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!("TLS handshake timed out");
                    return;
                }
            };
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .into_owned();
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_ms = limits.shutdown_grace.as_millis() as u64,
            "requests still in flight after the shutdown grace period are abandoned"
        );
    }
    Ok(())
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use axum::routing::get;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_stuck_request_does_not_hold_shutdown_past_the_grace_period() {
        let (entered_tx, entered) = tokio::sync::mpsc::channel::<()>(1);
        let router = Router::new().route(
            "/stuck",
            get(move || {
                let entered_tx = entered_tx.clone();
                async move {
                    let _ = entered_tx.send(()).await;
                    std::future::pending::<()>().await;
                }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve_with_grace(
            listener,
            router,
            shutdown.clone(),
            Duration::from_millis(200),
        ));
        let mut client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        client
            .write_all(b"GET /stuck HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("request");
        let mut entered = entered;
        entered.recv().await.expect("the request is in flight");
        shutdown.cancel();
        // A deadline far past the grace period: the server has stopped.
        let stopped = tokio::time::timeout(Duration::from_secs(60), server).await;
        assert!(matches!(stopped, Ok(Ok(Ok(())))), "{stopped:?}");
        drop(client);
    }
}
