//! The serve helper against hostile clients over real TCP on loopback: a
//! client trickling header bytes is disconnected while others are served;
//! connections past the cap are closed, and the server serves again once
//! one of the open ones closes.

use std::net::SocketAddr;
use std::time::Duration;

use artisync_http::{ServeLimits, serve_with};
use axum::Router;
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

/// Long enough for any loaded machine; only reached when a bound is missing.
const DEADLINE: Duration = Duration::from_secs(30);

struct Server {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(limits: ServeLimits) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = Router::new().route("/health/live", get(|| async { "live" }));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve_with(listener, router, shutdown.clone(), limits));
    Server {
        addr,
        shutdown,
        task,
    }
}

impl Server {
    async fn stop(self) {
        self.shutdown.cancel();
        timeout(DEADLINE, self.task)
            .await
            .expect("graceful shutdown ends")
            .expect("serve task")
            .expect("serve");
    }
}

async fn live(addr: SocketAddr) -> reqwest::Result<reqwest::StatusCode> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(DEADLINE)
        .build()?
        .get(format!("http://{addr}/health/live"))
        .send()
        .await
        .map(|r| r.status())
}

/// Whether the server closed `stream`: a read ends (EOF or reset) rather
/// than waiting.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match timeout(DEADLINE, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A 408 or similar before the close is fine.
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn a_client_trickling_headers_is_disconnected_while_others_are_served() {
    let server = start(ServeLimits {
        header_read_timeout: Duration::from_secs(1),
        max_connections: 16,
        ..ServeLimits::default()
    })
    .await;
    let mut slow = TcpStream::connect(server.addr).await.expect("connect");
    slow.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("request line");

    // Trickle one header byte at a time until the server hangs up.
    let mut trickle = tokio::time::interval(Duration::from_millis(100));
    let started = Instant::now();
    let mut buf = [0u8; 512];
    let mut others_served = false;
    let disconnected = loop {
        if started.elapsed() > DEADLINE {
            break false;
        }
        tokio::select! {
            read = slow.read(&mut buf) => match read {
                Ok(0) | Err(_) => break true,
                Ok(_) => {}
            },
            _ = trickle.tick() => {
                if slow.write_all(b"a").await.is_err() {
                    break true;
                }
                if !others_served {
                    // Meanwhile, everyone else is answered.
                    assert_eq!(live(server.addr).await.expect("live"), 200);
                    others_served = true;
                }
            }
        }
    };
    assert!(
        disconnected,
        "a client trickling header bytes is never disconnected"
    );
    assert!(others_served);
    assert_eq!(live(server.addr).await.expect("live"), 200);
    server.stop().await;
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_and_service_resumes_when_one_closes() {
    const CAP: usize = 3;
    let server = start(ServeLimits {
        // Idle connections must not time out during this test.
        header_read_timeout: Duration::from_secs(600),
        max_connections: CAP,
        ..ServeLimits::default()
    })
    .await;
    // CAP idle connections take every slot (accepted in connect order).
    let mut idle = Vec::new();
    for _ in 0..CAP {
        idle.push(TcpStream::connect(server.addr).await.expect("connect"));
    }
    // One more: closed by the server without an answer.
    let mut extra = TcpStream::connect(server.addr).await.expect("connect");
    assert!(
        closed_by_server(&mut extra).await,
        "a connection past the cap is held open"
    );
    // The held ones are still open: one of them is served.
    let mut held = idle.pop().expect("held");
    held.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    timeout(DEADLINE, held.read_to_end(&mut answer))
        .await
        .expect("answered")
        .expect("read");
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
    // That connection closed: /health/live is answered on a new one.
    let started = Instant::now();
    let status = loop {
        match live(server.addr).await {
            Ok(status) => break status,
            Err(e) if started.elapsed() < DEADLINE => {
                // The slot frees when the server sees the close.
                tokio::task::yield_now().await;
                let _ = e;
            }
            Err(e) => panic!("/health/live never answered: {e}"),
        }
    };
    assert_eq!(status, 200);
    drop(idle);
    server.stop().await;
}
