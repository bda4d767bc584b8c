//! The life of a binary: config, start, SIGTERM / SIGINT, graceful shutdown.

use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Runs a component: a bad config exits 2 before anything is bound, a
/// failed start exits 1; otherwise it runs until SIGTERM or SIGINT, then
/// cancels `start`'s token, waits for the task it returned to drain, and
/// flushes telemetry.
pub async fn run_until_signalled<S, C, E, F, Fut>(
    name: &str,
    settings: Result<S, C>,
    start: F,
) -> ExitCode
where
    F: FnOnce(S, CancellationToken) -> Fut,
    Fut: Future<Output = Result<JoinHandle<()>, E>>,
    E: Display,
    C: Display,
{
    let settings = match settings {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(2);
        }
    };
    let shutdown = CancellationToken::new();
    let task = match start(settings, shutdown.clone()).await {
        Ok(task) => task,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::FAILURE;
        }
    };
    wait_for_termination().await;
    tracing::info!("shutting down");
    shutdown.cancel();
    let _ = task.await;
    crate::shutdown();
    ExitCode::SUCCESS
}

/// Resolves on the first SIGTERM or SIGINT (Ctrl-C).
pub async fn wait_for_termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
