//! A local artisync cluster: publisher, traffic manager and gateway nodes
//! as child processes, configured by generated TOML files.
//!
//! `artisync up` and the end-to-end tests start clusters with this code.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::process::{Launch, ManagedProcess};

/// One gateway node of a cluster.
#[derive(Debug, Clone)]
pub struct GatewaySpec {
    pub id: String,
    pub labels: Vec<String>,
    pub port: u16,
    pub admin_port: u16,
    /// `sync` or `async`.
    pub mode: String,
    pub reconcile_interval_ms: u64,
    pub retry_duration_ms: u64,
    pub max_retry_count: u32,
    pub event_waiting_time_ms: u64,
    pub status_interval_ms: u64,
    /// Overrides the traffic manager URL (e.g. through a fault proxy).
    pub traffic_manager_url: Option<String>,
    /// Overrides the broker URL (e.g. through a fault proxy).
    pub amqp_url: Option<String>,
    /// The node's token for the traffic manager, scoped there to its
    /// labels; drawn at random, independently of every other token.
    pub traffic_manager_token: String,
}

impl GatewaySpec {
    pub fn new(id: &str, labels: &[&str], port: u16, admin_port: u16) -> Self {
        GatewaySpec {
            id: id.to_owned(),
            labels: labels.iter().map(|l| (*l).to_owned()).collect(),
            port,
            admin_port,
            mode: "sync".into(),
            reconcile_interval_ms: 30_000,
            retry_duration_ms: 15_000,
            max_retry_count: 5,
            event_waiting_time_ms: 0,
            status_interval_ms: 10_000,
            traffic_manager_url: None,
            amqp_url: None,
            traffic_manager_token: random_token(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub database_url: String,
    pub amqp_url: String,
    pub exchange: String,
    pub queue_prefix: String,
    pub publisher_port: u16,
    pub traffic_manager_port: u16,
    pub gateways: Vec<GatewaySpec>,
    /// Config files, caches and logs go here.
    pub work_dir: PathBuf,
    pub publisher_token: String,
    pub admin_token: String,
    /// `RUST_LOG` for the children.
    pub log_level: String,
    /// Overrides the broker URL of the publisher's outbox relay (e.g.
    /// through a fault proxy); `amqp_url` when `None`.
    pub publisher_amqp_url: Option<String>,
    /// The publisher's `gateway_stale_after_ms`; its default when `None`.
    pub gateway_stale_after_ms: Option<u64>,
    /// The publisher's `max_apply_bytes`; its default when `None`.
    pub publisher_max_apply_bytes: Option<u64>,
    /// A traffic-manager token that may read every label (operators and
    /// tests), drawn at random.
    pub operator_token: String,
    /// Signed changes: the publisher's `signing_key_file` and the
    /// gateways' `publisher_public_key`; unsigned when `None`.
    pub signing: Option<Signing>,
}

/// The publisher's signing key file and the public key gateways check.
#[derive(Debug, Clone)]
pub struct Signing {
    pub key_file: PathBuf,
    pub public_key: String,
}

impl ClusterSpec {
    /// The topology of `artisync up`: gw-1 and gw-2 on "Production and
    /// Sandbox", gw-3 on "Label1".
    pub fn local(database_url: String, amqp_url: String, work_dir: PathBuf) -> Self {
        ClusterSpec {
            database_url,
            amqp_url,
            exchange: "artisync.deployments".into(),
            queue_prefix: "artisync.gateway.".into(),
            publisher_port: 9400,
            traffic_manager_port: 9500,
            gateways: vec![
                GatewaySpec::new("gw-1", &["Production and Sandbox"], 8280, 9600),
                GatewaySpec::new("gw-2", &["Production and Sandbox"], 8281, 9601),
                GatewaySpec::new("gw-3", &["Label1"], 8282, 9602),
            ],
            work_dir,
            publisher_token: random_token(),
            admin_token: random_token(),
            log_level: "info".into(),
            publisher_amqp_url: None,
            gateway_stale_after_ms: None,
            publisher_max_apply_bytes: None,
            operator_token: random_token(),
            signing: None,
        }
    }

    pub fn publisher_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.publisher_port)
    }

    pub fn traffic_manager_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.traffic_manager_port)
    }

    /// The traffic manager token of a gateway (scoped to its labels).
    pub fn gateway_token(&self, id: &str) -> String {
        self.gateways
            .iter()
            .find(|g| g.id == id)
            .map(|g| g.traffic_manager_token.clone())
            .unwrap_or_default()
    }

    /// A token of the traffic manager that may read every label.
    pub fn operator_token(&self) -> String {
        self.operator_token.clone()
    }
}

pub fn random_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A port that was free a moment ago, for components started later.
///
/// Chosen below the kernel's ephemeral range (32768 and up on Linux): a port
/// the kernel handed out for `:0` may be given again to any outgoing
/// connection, and a process restarted on it would find it taken. Ports
/// handed out by this process are never handed out twice.
pub fn free_port() -> std::io::Result<u16> {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let given = GIVEN.get_or_init(|| Mutex::new(HashSet::new()));
    let mut given = given.lock().unwrap_or_else(|p| p.into_inner());
    const LOW: u16 = 20_000;
    const SPAN: u16 = 12_000;
    let start = uuid::Uuid::new_v4().as_u128() as u16 % SPAN;
    for step in 0..SPAN {
        let port = LOW + (start + step) % SPAN;
        if given.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrNotAvailable,
        "no free port between 20000 and 32000",
    ))
}

fn toml_string(s: &str) -> String {
    // TOML basic strings share JSON's escaping rules for what we write.
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn toml_list(items: &[String]) -> String {
    format!(
        "[{}]",
        items
            .iter()
            .map(|s| toml_string(s))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

pub fn publisher_config(spec: &ClusterSpec) -> String {
    let stale = spec
        .gateway_stale_after_ms
        .map(|ms| format!("gateway_stale_after_ms = {ms}\n"))
        .unwrap_or_default()
        + &spec
            .publisher_max_apply_bytes
            .map(|n| format!("max_apply_bytes = {n}\n"))
            .unwrap_or_default()
        + &spec
            .signing
            .as_ref()
            .map(|s| {
                format!(
                    "signing_key_file = {}\n",
                    toml_string(&s.key_file.display().to_string())
                )
            })
            .unwrap_or_default();
    format!(
        r#"[publisher]
listen = "127.0.0.1:{port}"
tokens = [{token}]
{stale}
[database]
url = {db}

[amqp]
url = {amqp}
exchange = {exchange}
"#,
        port = spec.publisher_port,
        token = toml_string(&spec.publisher_token),
        db = toml_string(&spec.database_url),
        amqp = toml_string(spec.publisher_amqp_url.as_deref().unwrap_or(&spec.amqp_url)),
        exchange = toml_string(&spec.exchange),
    )
}

pub fn traffic_manager_config(spec: &ClusterSpec) -> String {
    let mut out = format!(
        "[traffic_manager]\nlisten = \"127.0.0.1:{}\"\n\n",
        spec.traffic_manager_port
    );
    for gw in &spec.gateways {
        out.push_str(&format!(
            "[[traffic_manager.tokens]]\nname = {}\ntoken = {}\nlabels = {}\n\n",
            toml_string(&gw.id),
            toml_string(&spec.gateway_token(&gw.id)),
            toml_list(&gw.labels)
        ));
    }
    out.push_str(&format!(
        "[[traffic_manager.tokens]]\nname = \"operator\"\ntoken = {}\nlabels = [\"*\"]\n\n",
        toml_string(&spec.operator_token())
    ));
    out.push_str(&format!(
        "[database]\nurl = {}\n",
        toml_string(&spec.database_url)
    ));
    if is_mysql(&spec.database_url) {
        // MySQL does not hold the persistence store: a SQLite file in the
        // work dir does (one traffic manager here).
        out.push_str(&format!(
            "\n[object_store]\ndatabase_url = {}\n",
            toml_string(&format!(
                "sqlite://{}",
                spec.work_dir.join("object-store.db").display()
            ))
        ));
    }
    out
}

/// Whether a database URL names MySQL or MariaDB.
pub fn is_mysql(url: &str) -> bool {
    let scheme = url.trim().split(':').next().unwrap_or("");
    scheme.eq_ignore_ascii_case("mysql") || scheme.eq_ignore_ascii_case("mariadb")
}

pub fn gateway_config(spec: &ClusterSpec, gw: &GatewaySpec) -> String {
    format!(
        r#"[gateway]
id = {id}
listen = "127.0.0.1:{port}"
admin_listen = "127.0.0.1:{admin_port}"
admin_token = {admin_token}
traffic_manager_url = {tm_url}
traffic_manager_token = {tm_token}
amqp_url = {amqp}
exchange = {exchange}
queue_prefix = {queue_prefix}
cache_dir = {cache_dir}
reconcile_interval = {reconcile}
status_interval = {status}
{signing}
[apim.sync_runtime_artifacts.gateway]
gateway_labels = {labels}
artifact_retriever = "DBRetriever"
deployment_retry_duration = {retry}
max_retry_count = {max_retry}
data_retrieval_mode = {mode}
event_waiting_time = {wait}
"#,
        id = toml_string(&gw.id),
        port = gw.port,
        admin_port = gw.admin_port,
        admin_token = toml_string(&spec.admin_token),
        tm_url = toml_string(
            gw.traffic_manager_url
                .as_deref()
                .unwrap_or(&spec.traffic_manager_url())
        ),
        tm_token = toml_string(&spec.gateway_token(&gw.id)),
        amqp = toml_string(gw.amqp_url.as_deref().unwrap_or(&spec.amqp_url)),
        exchange = toml_string(&spec.exchange),
        queue_prefix = toml_string(&spec.queue_prefix),
        cache_dir = toml_string(
            &spec
                .work_dir
                .join("cache")
                .join(&gw.id)
                .display()
                .to_string()
        ),
        reconcile = gw.reconcile_interval_ms,
        status = gw.status_interval_ms,
        labels = toml_list(&gw.labels),
        retry = gw.retry_duration_ms,
        max_retry = gw.max_retry_count,
        mode = toml_string(&gw.mode),
        wait = gw.event_waiting_time_ms,
        signing = spec
            .signing
            .as_ref()
            .map(|s| format!("publisher_public_key = {}\n", toml_string(&s.public_key)))
            .unwrap_or_default(),
    )
}

/// What `--state-file` holds, for scripts.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateFile {
    pub publisher: Endpoint,
    pub traffic_manager: Endpoint,
    pub gateways: Vec<GatewayState>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Endpoint {
    pub url: String,
    pub token: String,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayState {
    pub id: String,
    pub labels: Vec<String>,
    pub url: String,
    pub admin_url: String,
    pub admin_token: String,
    pub pid: Option<u32>,
}

impl StateFile {
    /// The cluster `spec` describes; `pid_of` names each gateway's process.
    pub fn of(spec: &ClusterSpec, pid_of: impl Fn(&str) -> Option<u32>) -> StateFile {
        StateFile {
            publisher: Endpoint {
                url: spec.publisher_url(),
                token: spec.publisher_token.clone(),
            },
            traffic_manager: Endpoint {
                url: spec.traffic_manager_url(),
                token: spec.operator_token(),
            },
            gateways: spec
                .gateways
                .iter()
                .map(|g| GatewayState {
                    id: g.id.clone(),
                    labels: g.labels.clone(),
                    url: format!("http://127.0.0.1:{}", g.port),
                    admin_url: format!("http://127.0.0.1:{}", g.admin_port),
                    admin_token: spec.admin_token.clone(),
                    pid: pid_of(&g.id),
                })
                .collect(),
        }
    }

    /// Writes it atomically (a temporary file renamed over `path`),
    /// readable by its owner only: it holds tokens.
    pub fn write(&self, path: &Path) -> Result<(), ClusterError> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| ClusterError::Io {
            what: "serialising the state".into(),
            source: std::io::Error::other(e),
        })?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        }
        let tmp = path.with_extension("tmp");
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut file = std::fs::File::options()
                .create(true)
                .write(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io(format!("writing {}", tmp.display())))?;
            file.write_all(&json)
                .map_err(io(format!("writing {}", tmp.display())))?;
        }
        std::fs::rename(&tmp, path).map_err(io(format!("writing {}", path.display())))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{name} did not become ready within {seconds} s; its log:\n{log}")]
    NotReady {
        name: String,
        seconds: u64,
        log: String,
    },
    #[error("{name} exited during start-up; its log:\n{log}")]
    Exited { name: String, log: String },
    #[error("no process named {0}")]
    Unknown(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
    let what = what.into();
    move |source| ClusterError::Io { what, source }
}

pub struct Cluster {
    pub spec: ClusterSpec,
    processes: BTreeMap<String, ManagedProcess>,
    http: reqwest::Client,
}

pub const PUBLISHER: &str = "publisher";
pub const TRAFFIC_MANAGER: &str = "traffic-manager";

impl Cluster {
    /// Writes the configs and starts every component, in dependency order,
    /// waiting for each to be ready.
    pub async fn start(spec: ClusterSpec) -> Result<Cluster, ClusterError> {
        let ids: Vec<String> = spec.gateways.iter().map(|g| g.id.clone()).collect();
        Self::start_gateways(spec, &ids).await
    }

    /// Like [`Cluster::start`], but starts only the gateways named in `ids`;
    /// the others are configured (the traffic manager knows their tokens)
    /// and can be spawned later.
    pub async fn start_gateways(
        spec: ClusterSpec,
        ids: &[String],
    ) -> Result<Cluster, ClusterError> {
        let mut cluster = Cluster::prepare(spec)?;
        cluster.spawn(PUBLISHER).await?;
        cluster.spawn(TRAFFIC_MANAGER).await?;
        for id in ids {
            cluster.spawn_process(id)?;
        }
        for id in ids {
            cluster.wait_ready(id, Duration::from_secs(60)).await?;
        }
        Ok(cluster)
    }

    /// Writes configs without starting anything.
    pub fn prepare(spec: ClusterSpec) -> Result<Cluster, ClusterError> {
        let dirs = [spec.work_dir.join("config"), spec.work_dir.join("logs")];
        for dir in &dirs {
            std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        }
        let write = |name: &str, text: String| {
            let path = spec.work_dir.join("config").join(name);
            std::fs::write(&path, text).map_err(io(format!("writing {}", path.display())))
        };
        write("publisher.toml", publisher_config(&spec))?;
        write("traffic-manager.toml", traffic_manager_config(&spec))?;
        for gw in &spec.gateways {
            write(&format!("{}.toml", gw.id), gateway_config(&spec, gw))?;
        }
        Ok(Cluster {
            spec,
            processes: BTreeMap::new(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .map_err(|e| ClusterError::Io {
                    what: "building an HTTP client".into(),
                    source: std::io::Error::other(e),
                })?,
        })
    }

    fn config_path(&self, name: &str) -> PathBuf {
        self.spec
            .work_dir
            .join("config")
            .join(format!("{name}.toml"))
    }

    fn component_of(&self, name: &str) -> Result<&'static str, ClusterError> {
        match name {
            PUBLISHER => Ok("publisher"),
            TRAFFIC_MANAGER => Ok("traffic-manager"),
            id if self.spec.gateways.iter().any(|g| g.id == id) => Ok("gateway-node"),
            other => Err(ClusterError::Unknown(other.to_owned())),
        }
    }

    /// Starts a process without waiting for it.
    pub fn spawn_process(&mut self, name: &str) -> Result<(), ClusterError> {
        let component = self.component_of(name)?;
        let config = self.config_path(name);
        let mut launch =
            Launch::component(component, &config).map_err(io(format!("locating {component}")))?;
        launch
            .env
            .push(("RUST_LOG".into(), self.spec.log_level.clone()));
        let log = self.spec.work_dir.join("logs").join(format!("{name}.log"));
        let process =
            ManagedProcess::spawn(name, launch, log).map_err(io(format!("starting {name}")))?;
        self.processes.insert(name.to_owned(), process);
        Ok(())
    }

    /// Starts a process and waits until it is ready.
    pub async fn spawn(&mut self, name: &str) -> Result<(), ClusterError> {
        self.spawn_process(name)?;
        self.wait_ready(name, Duration::from_secs(60)).await
    }

    /// The readiness URL of a process.
    pub fn ready_url(&self, name: &str) -> Option<String> {
        match name {
            PUBLISHER => Some(format!("{}/health/ready", self.spec.publisher_url())),
            TRAFFIC_MANAGER => Some(format!("{}/health/ready", self.spec.traffic_manager_url())),
            id => self
                .spec
                .gateways
                .iter()
                .find(|g| g.id == id)
                .map(|g| format!("http://127.0.0.1:{}/health/ready", g.admin_port)),
        }
    }

    pub async fn wait_ready(&mut self, name: &str, timeout: Duration) -> Result<(), ClusterError> {
        let url = self
            .ready_url(name)
            .ok_or_else(|| ClusterError::Unknown(name.to_owned()))?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(r) = self.http.get(&url).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            let process = self
                .processes
                .get_mut(name)
                .ok_or_else(|| ClusterError::Unknown(name.to_owned()))?;
            if !process.is_running() {
                return Err(ClusterError::Exited {
                    name: name.to_owned(),
                    log: process.log(),
                });
            }
            if Instant::now() > deadline {
                return Err(ClusterError::NotReady {
                    name: name.to_owned(),
                    seconds: timeout.as_secs(),
                    log: process.log(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn process(&mut self, name: &str) -> Option<&mut ManagedProcess> {
        self.processes.get_mut(name)
    }

    /// SIGKILL a process.
    pub async fn kill(&mut self, name: &str) -> Result<(), ClusterError> {
        let p = self
            .processes
            .get_mut(name)
            .ok_or_else(|| ClusterError::Unknown(name.to_owned()))?;
        p.kill().await;
        Ok(())
    }

    /// Starts a killed or stopped process again (same config).
    pub fn restart_process(&mut self, name: &str) -> Result<(), ClusterError> {
        let p = self
            .processes
            .get_mut(name)
            .ok_or_else(|| ClusterError::Unknown(name.to_owned()))?;
        p.start().map_err(io(format!("restarting {name}")))
    }

    pub fn log(&self, name: &str) -> String {
        self.processes
            .get(name)
            .map(|p| p.log())
            .unwrap_or_default()
    }

    pub fn state(&self) -> StateFile {
        StateFile::of(&self.spec, |id| {
            self.processes.get(id).and_then(|p| p.pid())
        })
    }

    pub fn write_state_file(&self, path: &Path) -> Result<(), ClusterError> {
        self.state().write(path)
    }

    /// SIGTERM everything, gateways first, then wait for them.
    pub async fn stop(&mut self) {
        let mut order: Vec<String> = self.spec.gateways.iter().map(|g| g.id.clone()).collect();
        order.push(TRAFFIC_MANAGER.into());
        order.push(PUBLISHER.into());
        for name in order {
            if let Some(p) = self.processes.get_mut(&name) {
                p.stop(Duration::from_secs(15)).await;
            }
        }
    }
}
