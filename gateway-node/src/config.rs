//! Gateway node configuration (DESIGN.md §7): deserialised from TOML and
//! the environment, then validated into [`Settings`] before any port is
//! bound.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use artisync_config::{self as config, ConfigError};
use artisync_domain::signature::PublisherPublicKey;
use artisync_domain::topology::Topology;
use artisync_domain::{GatewayLabel, NodeId};
use artisync_http::tls::{ServerTlsFiles, server_tls_files};
use serde::Deserialize;

use crate::dataplane::DataPlaneConfig;

/// The node's TOML file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub gateway: RawGateway,
    /// WSO2 API Manager's sections, accepted as WSO2 users write them.
    #[serde(default)]
    pub apim: RawApim,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawGateway {
    /// Node id; names the node's queue and its status reports. Default: the
    /// host name.
    pub id: Option<String>,
    /// Address of the API traffic listener.
    pub listen: String,
    /// Address of the local admin API.
    pub admin_listen: String,
    /// Bearer token of the admin API (at least 16 bytes, not a placeholder).
    pub admin_token: Option<String>,
    /// With `admin_tls_key_file`: the admin API serves HTTPS with this
    /// certificate chain (PEM, leaf first). Unset: plain HTTP.
    pub admin_tls_cert_file: Option<PathBuf>,
    /// The private key of `admin_tls_cert_file` (PEM).
    pub admin_tls_key_file: Option<PathBuf>,
    /// Base URL of the traffic manager's internal data API.
    pub traffic_manager_url: String,
    /// Bearer token for the traffic manager, scoped to this node's labels.
    pub traffic_manager_token: Option<String>,
    /// With an `https://` traffic manager: trust only the CAs of this PEM
    /// file (default: the system's roots).
    pub traffic_manager_ca_file: Option<PathBuf>,
    /// With `traffic_manager_client_key_file`: the certificate chain (PEM)
    /// this node presents to a traffic manager that requires one (mutual
    /// TLS).
    pub traffic_manager_client_cert_file: Option<PathBuf>,
    /// The private key of `traffic_manager_client_cert_file` (PEM).
    pub traffic_manager_client_key_file: Option<PathBuf>,
    /// Broker URL; `AMQP_URL` overrides it.
    pub amqp_url: String,
    /// Exchange the publisher sends deployment events to.
    pub exchange: String,
    /// The node's queue is this prefix plus the node id.
    pub queue_prefix: String,
    /// The broker deletes the node's queue once unused this long, in ms
    /// (`x-expires`; default 7 days); the node declares it again on its
    /// return and its reconcile loads what it missed.
    pub queue_expires_ms: u64,
    /// Most events the node's queue holds; past it the oldest are dropped
    /// (and dead-lettered), which the reconcile repairs (default 100,000).
    pub queue_max_length: u32,
    /// Most messages the node's dead-letter queue keeps, oldest dropped
    /// first (default 10,000).
    pub dead_letter_max_length: u32,
    /// Where applied artifacts are kept for starts without upstream.
    pub cache_dir: PathBuf,
    /// Anti-entropy check against the traffic manager, in milliseconds.
    pub reconcile_interval: u64,
    /// Heartbeat / full status report to the traffic manager, in milliseconds.
    pub status_interval: u64,
    /// How long requests to the traffic manager may take, in milliseconds.
    pub traffic_manager_timeout: u64,
    /// Deliveries handled at once (AMQP prefetch).
    pub event_prefetch: u16,
    /// Time allowed for in-flight requests and deliveries on shutdown, in
    /// milliseconds.
    pub shutdown_grace_period: u64,
    /// Tuning of the API traffic listener.
    pub data_plane: DataPlaneConfig,
    /// `traffic_manager`: pull each change from the traffic manager when its
    /// event arrives, and reconcile. `publisher`: take the deploys the
    /// publisher pushes to the admin API (`publish_directly_to_gateway`);
    /// no traffic manager, broker or traffic-manager token is used.
    pub artifact_source: String,
    /// Largest artifact the publisher may push (`publisher` source); larger
    /// ones get 413.
    pub max_pushed_artifact_bytes: usize,
    /// The publisher's Ed25519 public key (PEM, or its 32 bytes in base64).
    /// When set, events without the publisher's valid signature are
    /// refused: the node keeps what it runs and reports the refusal.
    pub publisher_public_key: Option<String>,
}

impl Default for RawGateway {
    fn default() -> Self {
        let topology = Topology::default();
        RawGateway {
            id: None,
            listen: "0.0.0.0:8280".into(),
            admin_listen: "127.0.0.1:9600".into(),
            admin_tls_cert_file: None,
            admin_tls_key_file: None,
            admin_token: None,
            traffic_manager_url: "http://127.0.0.1:9500".into(),
            traffic_manager_token: None,
            traffic_manager_ca_file: None,
            traffic_manager_client_cert_file: None,
            traffic_manager_client_key_file: None,
            amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            exchange: topology.exchange,
            queue_prefix: topology.queue_prefix,
            queue_expires_ms: topology.queue_expires_ms,
            queue_max_length: topology.queue_max_length,
            dead_letter_max_length: topology.dead_letter_max_length,
            cache_dir: PathBuf::from("/var/lib/artisync/gateway"),
            reconcile_interval: 30_000,
            status_interval: 10_000,
            traffic_manager_timeout: 10_000,
            event_prefetch: 64,
            shutdown_grace_period: 10_000,
            data_plane: DataPlaneConfig::default(),
            artifact_source: "traffic_manager".into(),
            max_pushed_artifact_bytes: 10 * 1024 * 1024,
            publisher_public_key: None,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApim {
    #[serde(default)]
    pub sync_runtime_artifacts: RawSyncRuntimeArtifacts,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSyncRuntimeArtifacts {
    #[serde(default)]
    pub gateway: RawSync,
}

/// `[apim.sync_runtime_artifacts.gateway]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSync {
    /// Labels this node serves (at least one).
    pub gateway_labels: Vec<String>,
    /// Only `DBRetriever`: artifacts come from the traffic manager's store.
    pub artifact_retriever: String,
    /// First retry delay after a failed deployment, in milliseconds;
    /// doubles per failure, capped at one hour.
    pub deployment_retry_duration: u64,
    /// Retries after the first failure before the API is marked failed.
    pub max_retry_count: u32,
    /// `sync`: readiness waits for the start-up deployment; `async`: serve
    /// at once and deploy in the background.
    pub data_retrieval_mode: String,
    /// Milliseconds to wait after an event before fetching.
    pub event_waiting_time: u64,
}

impl Default for RawSync {
    fn default() -> Self {
        RawSync {
            gateway_labels: Vec::new(),
            artifact_retriever: "DBRetriever".into(),
            deployment_retry_duration: 15_000,
            max_retry_count: 5,
            data_retrieval_mode: "async".into(),
            event_waiting_time: 0,
        }
    }
}

/// TLS towards the traffic manager.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrafficManagerTls {
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain and key files.
    pub client_identity: Option<(PathBuf, PathBuf)>,
}

/// Where a node's deploys come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploySource {
    /// Pulled from the traffic manager on events, and reconciled.
    TrafficManager,
    /// Pushed by the publisher to the admin API.
    Publisher { max_artifact_bytes: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetrievalMode {
    Sync,
    Async,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub node_id: NodeId,
    pub labels: Vec<GatewayLabel>,
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// HTTPS of the admin API.
    pub admin_tls: Option<ServerTlsFiles>,
    pub admin_token: String,
    pub traffic_manager_url: String,
    pub traffic_manager_token: String,
    pub traffic_manager_timeout: Duration,
    /// How the node trusts the traffic manager, and what it presents.
    pub traffic_manager_tls: TrafficManagerTls,
    pub amqp_url: String,
    pub topology: Topology,
    pub cache_dir: PathBuf,
    pub reconcile_interval: Duration,
    pub status_interval: Duration,
    pub event_prefetch: u16,
    pub shutdown_grace_period: Duration,
    pub retry: RetryPolicy,
    pub mode: RetrievalMode,
    pub event_waiting_time: Duration,
    pub data_plane: DataPlaneConfig,
    pub deploy_source: DeploySource,
    pub publisher_key: Option<PublisherPublicKey>,
}

/// When failed deployments are tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub first_delay: Duration,
    pub max_delay: Duration,
    pub max_retries: u32,
}

impl RetryPolicy {
    /// The delays between attempts: `first_delay`, doubling, capped at
    /// `max_delay`, `max_retries` of them.
    pub fn backoff(&self) -> backon::ExponentialBuilder {
        backon::ExponentialBuilder::default()
            .with_min_delay(self.first_delay)
            .with_factor(2.0)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_retries as usize)
    }
}

pub const ENV_ALIASES: &[(&str, &str)] = &[
    ("AMQP_URL", "gateway.amqp_url"),
    ("GATEWAY_ID", "gateway.id"),
    ("TRAFFIC_MANAGER_URL", "gateway.traffic_manager_url"),
    ("TRAFFIC_MANAGER_TOKEN", "gateway.traffic_manager_token"),
    ("GATEWAY_ADMIN_TOKEN", "gateway.admin_token"),
    ("PUBLISHER_PUBLIC_KEY", "gateway.publisher_public_key"),
];

pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
    let raw: RawConfig = config::load(file, ENV_ALIASES)?;
    raw.validate()
}

fn host_name() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

fn secret(key: &str, value: Option<String>) -> Result<String, ConfigError> {
    match value {
        Some(v) => config::check_token(key, &v).map(|()| v),
        None => Err(ConfigError::invalid(key, "is required")),
    }
}

impl RawConfig {
    pub fn validate(self) -> Result<Settings, ConfigError> {
        let g = self.gateway;
        let s = self.apim.sync_runtime_artifacts.gateway;
        let raw_id = g.id.or_else(host_name).ok_or_else(|| {
            ConfigError::invalid("gateway.id", "is not set and the host name is unknown")
        })?;
        let node_id = NodeId::parse(&raw_id)
            .map_err(|e| ConfigError::invalid("gateway.id", e.to_string()))?;
        const LABELS: &str = "apim.sync_runtime_artifacts.gateway.gateway_labels";
        if s.gateway_labels.is_empty() {
            return Err(ConfigError::invalid(LABELS, "must name at least one label"));
        }
        let mut labels = Vec::new();
        for raw in &s.gateway_labels {
            let label = GatewayLabel::parse(raw)
                .map_err(|e| ConfigError::invalid(LABELS, e.to_string()))?;
            if !labels.contains(&label) {
                labels.push(label);
            }
        }
        if s.artifact_retriever != "DBRetriever" {
            return Err(ConfigError::invalid(
                "apim.sync_runtime_artifacts.gateway.artifact_retriever",
                format!(
                    "{:?} is not supported; artisync retrieves artifacts with \"DBRetriever\"",
                    s.artifact_retriever
                ),
            ));
        }
        let mode = match s.data_retrieval_mode.to_ascii_lowercase().as_str() {
            "sync" => RetrievalMode::Sync,
            "async" => RetrievalMode::Async,
            other => {
                return Err(ConfigError::invalid(
                    "apim.sync_runtime_artifacts.gateway.data_retrieval_mode",
                    format!("{other:?} is not \"sync\" or \"async\""),
                ));
            }
        };
        if s.deployment_retry_duration == 0 {
            return Err(ConfigError::invalid(
                "apim.sync_runtime_artifacts.gateway.deployment_retry_duration",
                "must be greater than 0",
            ));
        }
        let positive = |key: &str, v: u64| {
            if v == 0 {
                Err(ConfigError::invalid(key, "must be greater than 0"))
            } else {
                Ok(Duration::from_millis(v))
            }
        };
        for (key, value) in [
            ("gateway.queue_expires_ms", g.queue_expires_ms),
            ("gateway.queue_max_length", u64::from(g.queue_max_length)),
            (
                "gateway.dead_letter_max_length",
                u64::from(g.dead_letter_max_length),
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(key, "must be greater than 0"));
            }
        }
        // RabbitMQ takes x-expires as a 32-bit count of milliseconds.
        if g.queue_expires_ms > i32::MAX as u64 {
            return Err(ConfigError::invalid(
                "gateway.queue_expires_ms",
                format!("must be at most {} (about 24 days)", i32::MAX),
            ));
        }
        let topology = Topology {
            exchange: g.exchange,
            queue_prefix: g.queue_prefix,
            queue_expires_ms: g.queue_expires_ms,
            queue_max_length: g.queue_max_length,
            dead_letter_max_length: g.dead_letter_max_length,
        };
        if topology.exchange.is_empty() {
            return Err(ConfigError::invalid(
                "gateway.exchange",
                "must not be empty",
            ));
        }
        if g.event_prefetch == 0 {
            return Err(ConfigError::invalid(
                "gateway.event_prefetch",
                "must be greater than 0",
            ));
        }
        if g.data_plane.max_request_body_bytes == 0 {
            return Err(ConfigError::invalid(
                "gateway.data_plane.max_request_body_bytes",
                "must be greater than 0",
            ));
        }
        for (key, value) in [
            (
                "gateway.data_plane.body_read_timeout_ms",
                g.data_plane.body_read_timeout_ms,
            ),
            (
                "gateway.data_plane.body_total_timeout_ms",
                g.data_plane.body_total_timeout_ms,
            ),
            (
                "gateway.data_plane.header_read_timeout_ms",
                g.data_plane.header_read_timeout_ms,
            ),
            (
                "gateway.data_plane.max_connections",
                g.data_plane.max_connections as u64,
            ),
            (
                "gateway.data_plane.max_out_only_in_flight",
                g.data_plane.max_out_only_in_flight as u64,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(key, "must be greater than 0"));
            }
        }
        let admin_tls = server_tls_files(
            "gateway.admin_",
            g.admin_tls_cert_file.as_deref(),
            g.admin_tls_key_file.as_deref(),
            None,
        )
        .map_err(|(key, message)| ConfigError::invalid(key, message))?;
        if let Some(files) = &admin_tls {
            files
                .acceptor()
                .map_err(|e| ConfigError::invalid("gateway.admin_tls_cert_file", e.to_string()))?;
        }
        match g.data_plane.tls_files() {
            Err((key, message)) => return Err(ConfigError::invalid(key, message)),
            Ok(Some(files)) => {
                if let Err(e) = files.acceptor() {
                    return Err(ConfigError::invalid(
                        "gateway.data_plane.tls_cert_file",
                        e.to_string(),
                    ));
                }
            }
            Ok(None) => {}
        }
        if let Err(e) = crate::dataplane::endpoint_tls(g.data_plane.endpoint_ca_file.as_deref()) {
            return Err(ConfigError::invalid(
                "gateway.data_plane.endpoint_ca_file",
                e.to_string(),
            ));
        }
        if g.data_plane.workers > 1024 {
            return Err(ConfigError::invalid(
                "gateway.data_plane.workers",
                "must be at most 1024 (0 means one per core)",
            ));
        }
        let deploy_source = match g.artifact_source.as_str() {
            "traffic_manager" => DeploySource::TrafficManager,
            "publisher" => {
                if g.max_pushed_artifact_bytes == 0 {
                    return Err(ConfigError::invalid(
                        "gateway.max_pushed_artifact_bytes",
                        "must be greater than 0",
                    ));
                }
                DeploySource::Publisher {
                    max_artifact_bytes: g.max_pushed_artifact_bytes,
                }
            }
            other => {
                return Err(ConfigError::invalid(
                    "gateway.artifact_source",
                    format!("{other:?} is not \"traffic_manager\" or \"publisher\""),
                ));
            }
        };
        let publisher_key = g
            .publisher_public_key
            .as_deref()
            .map(PublisherPublicKey::parse)
            .transpose()
            .map_err(|e| ConfigError::invalid("gateway.publisher_public_key", e.to_string()))?;
        // A node the publisher pushes to never calls the traffic manager.
        let traffic_manager_token = match (deploy_source, g.traffic_manager_token) {
            (DeploySource::Publisher { .. }, None) => String::new(),
            (_, token) => secret("gateway.traffic_manager_token", token)?,
        };
        let client_identity = match (
            g.traffic_manager_client_cert_file,
            g.traffic_manager_client_key_file,
        ) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some((cert, key)),
            (Some(_), None) => {
                return Err(ConfigError::invalid(
                    "gateway.traffic_manager_client_key_file",
                    "is required with traffic_manager_client_cert_file",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::invalid(
                    "gateway.traffic_manager_client_cert_file",
                    "is required with traffic_manager_client_key_file",
                ));
            }
        };
        for (key, path) in [
            (
                "gateway.traffic_manager_ca_file",
                g.traffic_manager_ca_file.as_ref(),
            ),
            (
                "gateway.traffic_manager_client_cert_file",
                client_identity.as_ref().map(|(c, _)| c),
            ),
            (
                "gateway.traffic_manager_client_key_file",
                client_identity.as_ref().map(|(_, k)| k),
            ),
        ] {
            if let Some(path) = path
                && let Err(e) = std::fs::metadata(path)
            {
                return Err(ConfigError::invalid(
                    key,
                    format!("{}: {e}", path.display()),
                ));
            }
        }
        let traffic_manager_tls = TrafficManagerTls {
            ca_file: g.traffic_manager_ca_file,
            client_identity,
        };
        let traffic_manager_url = config::url_with_scheme(
            "gateway.traffic_manager_url",
            g.traffic_manager_url.trim_end_matches('/'),
            &["http", "https"],
        )?;
        Ok(Settings {
            node_id,
            labels,
            listen: config::socket_addr("gateway.listen", &g.listen)?,
            admin_listen: config::socket_addr("gateway.admin_listen", &g.admin_listen)?,
            admin_tls,
            admin_token: secret("gateway.admin_token", g.admin_token)?,
            traffic_manager_url,
            traffic_manager_token,
            traffic_manager_tls,
            traffic_manager_timeout: positive(
                "gateway.traffic_manager_timeout",
                g.traffic_manager_timeout,
            )?,
            // The broker client has no TLS: amqps:// is refused here, not at connect.
            amqp_url: config::url_with_scheme("gateway.amqp_url", &g.amqp_url, &["amqp"])?,
            topology,
            cache_dir: g.cache_dir,
            reconcile_interval: positive("gateway.reconcile_interval", g.reconcile_interval)?,
            status_interval: positive("gateway.status_interval", g.status_interval)?,
            event_prefetch: g.event_prefetch,
            shutdown_grace_period: Duration::from_millis(g.shutdown_grace_period),
            retry: RetryPolicy {
                first_delay: Duration::from_millis(s.deployment_retry_duration),
                max_delay: Duration::from_secs(3600),
                max_retries: s.max_retry_count,
            },
            mode,
            event_waiting_time: Duration::from_millis(s.event_waiting_time),
            data_plane: g.data_plane,
            deploy_source,
            publisher_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<Settings, ConfigError> {
        let raw: RawConfig = figment::Figment::from(
            <figment::providers::Toml as figment::providers::Format>::string(toml_text),
        )
        .extract()
        .map_err(|e| ConfigError::Parse(e.to_string()))?;
        raw.validate()
    }

    const GOOD: &str = r#"
        [gateway]
        id = "gw-1"
        admin_token = "admin-secret-0123456"
        traffic_manager_token = "gateway-secret-0123456"
        [apim.sync_runtime_artifacts.gateway]
        gateway_labels = ["Production and Sandbox", "Label1"]
        artifact_retriever = "DBRetriever"
        deployment_retry_duration = 15000
        max_retry_count = 5
        data_retrieval_mode = "sync"
        event_waiting_time = 0
    "#;

    #[test]
    fn the_documented_sample_validates() {
        let s = parse(GOOD).unwrap();
        assert_eq!(s.node_id.as_str(), "gw-1");
        assert_eq!(s.labels.len(), 2);
        assert_eq!(s.mode, RetrievalMode::Sync);
        assert_eq!(s.retry.first_delay, Duration::from_secs(15));
        assert_eq!(s.reconcile_interval, Duration::from_secs(30));
        assert_eq!(s.topology.queue_max_length, 100_000);
        assert_eq!(s.topology.dead_letter_max_length, 10_000);
        assert_eq!(s.topology.queue_expires_ms, 7 * 24 * 3600 * 1000);
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            (
                "data_retrieval_mode = \"sync\"",
                "data_retrieval_mode = \"later\"",
                "data_retrieval_mode",
            ),
            (
                "artifact_retriever = \"DBRetriever\"",
                "artifact_retriever = \"FileRetriever\"",
                "artifact_retriever",
            ),
            (
                "gateway_labels = [\"Production and Sandbox\", \"Label1\"]",
                "gateway_labels = []",
                "gateway_labels",
            ),
            ("id = \"gw-1\"", "id = \"gw/1\"", "gateway.id"),
            (
                "deployment_retry_duration = 15000",
                "deployment_retry_duration = 0",
                "deployment_retry_duration",
            ),
            (
                "admin_token = \"admin-secret-0123456\"",
                "admin_token = \"short\"",
                "gateway.admin_token",
            ),
            (
                "admin_token = \"admin-secret-0123456\"",
                "admin_token = \"éé\"",
                "gateway.admin_token",
            ),
            (
                "admin_token = \"admin-secret-0123456\"",
                "admin_token = \"change-me-gateway-admin-token\"",
                "gateway.admin_token",
            ),
            (
                "traffic_manager_token = \"gateway-secret-0123456\"",
                "traffic_manager_token = \"change-me-gateway-1-token\"",
                "gateway.traffic_manager_token",
            ),
            (
                "id = \"gw-1\"",
                "id = \"gw-1\"\nqueue_max_length = 0",
                "gateway.queue_max_length",
            ),
            (
                "id = \"gw-1\"",
                "id = \"gw-1\"\ndead_letter_max_length = 0",
                "gateway.dead_letter_max_length",
            ),
            (
                "id = \"gw-1\"",
                "id = \"gw-1\"\nqueue_expires_ms = 3000000000",
                "gateway.queue_expires_ms",
            ),
        ];
        for (from, to, key) in cases {
            let err = parse(&GOOD.replace(from, to)).unwrap_err().to_string();
            assert!(err.contains(key), "{to}: {err}");
            assert!(!err.contains("change-me-") && !err.contains("éé"), "{err}");
        }
        let err = parse(&format!("{GOOD}\nunknown_key = 1\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown_key"), "{err}");
    }

    #[test]
    fn bad_data_plane_values_name_their_key() {
        let data_plane = |line: &str| {
            GOOD.replace(
                "[apim.sync_runtime_artifacts.gateway]",
                &format!("[gateway.data_plane]\n{line}\n[apim.sync_runtime_artifacts.gateway]"),
            )
        };
        for (line, key) in [
            (
                "body_read_timeout_ms = 0",
                "gateway.data_plane.body_read_timeout_ms",
            ),
            (
                "body_total_timeout_ms = 0",
                "gateway.data_plane.body_total_timeout_ms",
            ),
            (
                "header_read_timeout_ms = 0",
                "gateway.data_plane.header_read_timeout_ms",
            ),
            ("max_connections = 0", "gateway.data_plane.max_connections"),
            (
                "max_out_only_in_flight = 0",
                "gateway.data_plane.max_out_only_in_flight",
            ),
            (
                "endpoint_ca_file = \"/nonexistent/artisync-ca.pem\"",
                "gateway.data_plane.endpoint_ca_file",
            ),
        ] {
            let err = parse(&data_plane(line)).unwrap_err().to_string();
            assert!(err.contains(key), "{line}: {err}");
        }
        let s = parse(&data_plane("max_connections = 5")).unwrap();
        assert_eq!(s.data_plane.max_connections, 5);
    }

    #[test]
    fn a_pushed_node_needs_no_traffic_manager_token() {
        assert_eq!(
            parse(GOOD).unwrap().deploy_source,
            DeploySource::TrafficManager
        );
        let pushed = GOOD
            .replace("traffic_manager_token = \"gateway-secret-0123456\"", "")
            .replace("[gateway]", "[gateway]\nartifact_source = \"publisher\"");
        let s = parse(&pushed).unwrap();
        assert_eq!(
            s.deploy_source,
            DeploySource::Publisher {
                max_artifact_bytes: 10 * 1024 * 1024
            }
        );
        // Pulling without a token is still an error.
        let err = parse(&GOOD.replace("traffic_manager_token = \"gateway-secret-0123456\"", ""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("gateway.traffic_manager_token"), "{err}");
        let err = parse(&pushed.replace("\"publisher\"", "\"pushed\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("gateway.artifact_source"), "{err}");
        let err = parse(&pushed.replace("[gateway]", "[gateway]\nmax_pushed_artifact_bytes = 0"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("gateway.max_pushed_artifact_bytes"), "{err}");
    }

    #[test]
    fn tls_files_come_in_pairs_and_must_load() {
        let err = parse(&GOOD.replace(
            "[gateway]",
            "[gateway]\nadmin_tls_cert_file = \"/etc/artisync/admin.pem\"",
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("gateway.admin_tls_key_file"), "{err}");
        let err = parse(&GOOD.replace(
            "[gateway]",
            "[gateway]\nadmin_tls_cert_file = \"/nonexistent/a.pem\"\nadmin_tls_key_file = \"/nonexistent/a.key\"",
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("gateway.admin_tls_cert_file"), "{err}");
        let err = parse(&format!(
            "{GOOD}\n[gateway.data_plane]\ntls_key_file = \"/etc/artisync/data.key\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("gateway.data_plane.tls_cert_file"), "{err}");
    }

    #[test]
    fn retry_delays_double_and_cap() {
        use backon::BackoffBuilder;
        let p = RetryPolicy {
            first_delay: Duration::from_secs(15),
            max_delay: Duration::from_secs(3600),
            max_retries: 10,
        };
        let delays: Vec<u64> = p.backoff().build().map(|d| d.as_secs()).collect();
        assert_eq!(
            delays,
            vec![15, 30, 60, 120, 240, 480, 960, 1920, 3600, 3600]
        );
    }
}
