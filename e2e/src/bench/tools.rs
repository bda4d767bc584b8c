//! Helper processes and load tools: etcd (the peer anchor), nginx (the data
//! plane peer), wrk (the load generator) and a static HTTP backend.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use artisync_e2e::cluster::free_port;
use tokio::process::{Child, Command};

use super::{Stats, TempDir};

/// Whether an executable is on the PATH (or at that path).
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    if program.contains('/') {
        let p = std::path::PathBuf::from(program);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// A child process killed on drop, with its work directory.
pub struct Helper {
    child: Child,
    pub dir: TempDir,
    pub port: u16,
}

impl Helper {
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGTERM first, so that a master process (nginx) stops its workers
    /// too; SIGKILL if it has not exited after 5 s.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("log")).unwrap_or_default()
    }
}

async fn wait_port(helper: &mut Helper, what: &str) -> anyhow::Result<()> {
    for _ in 0..400 {
        if tokio::net::TcpStream::connect(("127.0.0.1", helper.port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        if let Ok(Some(status)) = helper.child.try_wait() {
            bail!("{what} exited with {status}: {}", helper.log());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bail!("{what} did not listen within 10 s: {}", helper.log())
}

fn spawn(program: &std::path::Path, args: &[String], dir: &TempDir) -> anyhow::Result<Child> {
    let log = std::fs::File::create(dir.0.join("log"))?;
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", program.display()))
}

/// A single-member etcd with its data on local disk, as APISIX runs it.
pub async fn start_etcd() -> anyhow::Result<Option<Helper>> {
    let Some(etcd) = which("etcd") else {
        return Ok(None);
    };
    let dir = TempDir::new("etcd")?;
    let client = free_port()?;
    let peer = free_port()?;
    let c = format!("http://127.0.0.1:{client}");
    let p = format!("http://127.0.0.1:{peer}");
    let args: Vec<String> = [
        "--name",
        "bench",
        "--data-dir",
        &dir.0.join("data").display().to_string(),
        "--listen-client-urls",
        &c,
        "--advertise-client-urls",
        &c,
        "--listen-peer-urls",
        &p,
        "--initial-advertise-peer-urls",
        &p,
        "--initial-cluster",
        &format!("bench={p}"),
        "--logger",
        "zap",
        "--log-level",
        "error",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let child = spawn(&etcd, &args, &dir)?;
    let mut helper = Helper {
        child,
        dir,
        port: client,
    };
    wait_port(&mut helper, "etcd").await?;
    Ok(Some(helper))
}

/// nginx proxying `/proxied/` to the backend with upstream keep-alive, as
/// one would configure it in front of a service; `worker_processes auto`.
pub async fn start_nginx(backend_port: u16) -> anyhow::Result<Option<Helper>> {
    let Some(nginx) = which("nginx") else {
        return Ok(None);
    };
    let dir = TempDir::new("nginx")?;
    let port = free_port()?;
    let d = dir.0.display().to_string();
    let conf = format!(
        r#"worker_processes auto;
pid {d}/nginx.pid;
error_log {d}/error.log error;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream backend {{
        server 127.0.0.1:{backend_port};
        keepalive 128;
    }}
    server {{
        listen 127.0.0.1:{port};
        location /proxied/ {{
            proxy_pass http://backend/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"#
    );
    let conf_path = dir.0.join("nginx.conf");
    std::fs::write(&conf_path, conf)?;
    let args = vec![
        "-p".to_owned(),
        d.clone(),
        "-c".to_owned(),
        conf_path.display().to_string(),
        "-g".to_owned(),
        "daemon off; user root;".to_owned(),
    ];
    let child = spawn(&nginx, &args, &dir)?;
    let mut helper = Helper { child, dir, port };
    wait_port(&mut helper, "nginx").await?;
    Ok(Some(helper))
}

/// What one wrk run measured.
#[derive(Debug, Clone, Default)]
pub struct WrkResult {
    pub requests: u64,
    pub rps: f64,
    pub latency: Stats,
    pub non_2xx: u64,
    pub socket_errors: u64,
}

pub struct WrkLoad {
    pub threads: u32,
    pub connections: u32,
    pub duration: Duration,
}

/// Runs wrk against `url` and parses its report.
pub async fn wrk(url: &str, load: &WrkLoad) -> anyhow::Result<WrkResult> {
    let program = which("wrk").context("wrk is not installed (scripts/bench.sh installs it)")?;
    let secs = load.duration.as_secs().max(1);
    let output = Command::new(program)
        .args([
            format!("-t{}", load.threads),
            format!("-c{}", load.connections),
            format!("-d{secs}s"),
            "--timeout".into(),
            "5s".into(),
            "--latency".into(),
            url.into(),
        ])
        .stdin(Stdio::null())
        .output()
        .await?;
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    if !output.status.success() {
        bail!(
            "wrk failed: {}{}",
            text,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse_wrk(&text).with_context(|| format!("cannot parse wrk's report:\n{text}"))
}

fn parse_duration_ms(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, factor) = if let Some(v) = s.strip_suffix("us") {
        (v, 1e-3)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix("m") {
        (v, 60_000.0)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1000.0)
    } else {
        (s, 1.0)
    };
    num.parse::<f64>().ok().map(|v| v * factor)
}

pub fn parse_wrk(text: &str) -> Option<WrkResult> {
    let mut r = WrkResult::default();
    let mut in_distribution = false;
    for line in text.lines() {
        let t = line.trim();
        let words: Vec<&str> = t.split_whitespace().collect();
        if t.starts_with("Latency Distribution") {
            in_distribution = true;
            continue;
        }
        if in_distribution && words.len() == 2 && words[0].ends_with('%') {
            let v = parse_duration_ms(words[1])?;
            match words[0] {
                "50%" => r.latency.p50 = v,
                "90%" => r.latency.p90 = v,
                "99%" => r.latency.p99 = v,
                _ => {}
            }
            continue;
        }
        in_distribution = false;
        if words.first() == Some(&"Latency") && words.len() >= 4 {
            r.latency.mean = parse_duration_ms(words[1])?;
            r.latency.max = parse_duration_ms(words[3])?;
        } else if t.contains("requests in") {
            r.requests = words.first()?.parse().ok()?;
        } else if let Some(v) = t.strip_prefix("Requests/sec:") {
            r.rps = v.trim().parse().ok()?;
        } else if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            r.non_2xx = v.trim().parse().ok()?;
        } else if let Some(v) = t.strip_prefix("Socket errors:") {
            r.socket_errors = v
                .split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum();
        }
    }
    r.latency.n = r.requests as usize;
    (r.requests > 0).then_some(r)
}

/// A minimal HTTP backend: every request gets the same small JSON body.
/// Runs on its own runtime so the benchmark's tasks never slow it down.
pub struct StaticBackend {
    pub port: u16,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StaticBackend {
    pub fn start(worker_threads: usize) -> anyhow::Result<StaticBackend> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(worker_threads.max(1))
            .thread_name("bench-backend")
            .enable_all()
            .build()?;
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                let app = axum::Router::new().fallback(|| async {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        r#"{"service":"backend","status":"ok"}"#,
                    )
                });
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await;
            });
        });
        Ok(StaticBackend {
            port,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for StaticBackend {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_a_wrk_report() {
        let text = "Running 10s test @ http://127.0.0.1:8080/
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   605.11us  208.35us  10.79ms   88.26%
    Req/Sec    52.17k     3.22k   58.58k    70.50%
  Latency Distribution
     50%  580.00us
     75%  0.88ms
     90%    1.02ms
     99%    1.19ms
  1038154 requests in 10.00s, 165.34MB read
  Non-2xx or 3xx responses: 5
  Socket errors: connect 0, read 1, write 0, timeout 2
Requests/sec: 103799.05
Transfer/sec:     16.53MB
";
        let r = super::parse_wrk(text).unwrap();
        assert_eq!(r.requests, 1038154);
        assert!((r.latency.p50 - 0.58).abs() < 1e-9);
        assert!((r.latency.p99 - 1.19).abs() < 1e-9);
        assert!((r.latency.max - 10.79).abs() < 1e-9);
        assert_eq!(r.non_2xx, 5);
        assert_eq!(r.socket_errors, 3);
        assert!((r.rps - 103799.05).abs() < 1e-6);
    }
}
