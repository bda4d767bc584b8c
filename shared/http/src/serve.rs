//! Serving a router until shutdown.

use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long requests in flight at shutdown may take to finish. A request
/// still running then (a slow client, a large artifact still being
/// validated) is abandoned, so no request holds the process up.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown`, then lets the requests
/// in flight finish for at most [`SHUTDOWN_GRACE`].
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_with_grace(listener, router, shutdown, SHUTDOWN_GRACE).await
}

/// [`serve`] with another grace period.
pub async fn serve_with_grace(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    grace: Duration,
) -> std::io::Result<()> {
    let server = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .into_future();
    let mut server = std::pin::pin!(server);
    tokio::select! {
        result = &mut server => return result,
        () = shutdown.cancelled() => {}
    }
    match tokio::time::timeout(grace, server).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!(
                grace_ms = grace.as_millis(),
                "requests still in flight after the shutdown grace period are abandoned"
            );
            Ok(())
        }
    }
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
