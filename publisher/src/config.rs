//! Publisher configuration: deserialised from TOML + environment, then
//! validated into [`Settings`] before anything is bound or connected.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use artisync_config::storage::{StorageOptions, StorageUrl, Wso2Database};
use artisync_config::{self as config, ConfigError};
use artisync_domain::GatewayLabel;
use artisync_domain::signature::EventSigningKey;
use artisync_domain::topology::Topology;
use artisync_http::tls::{ServerTlsFiles, server_tls_files};
use serde::Deserialize;

use crate::environments::push_gateways;
pub use crate::environments::{DirectPush, PushGateway, RawApimGateway, RawEnvironment};

/// The publisher's config file as written (`config/publisher.toml`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub publisher: RawPublisher,
    #[serde(default)]
    pub database: RawDatabase,
    #[serde(default)]
    pub amqp: RawAmqp,
    /// WSO2 API Manager's own section, accepted as WSO2 users write it.
    #[serde(default)]
    pub apim: RawApim,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPublisher {
    /// Address of the REST API.
    pub listen: String,
    /// Bearer tokens accepted by the REST API (at least one, each at least
    /// 16 bytes and not a `.env.example` placeholder); a list, or
    /// one comma-separated string (`PUBLISHER_TOKENS=a,b`).
    #[serde(deserialize_with = "config::string_or_list")]
    pub tokens: Vec<String>,
    /// Largest accepted request body; larger bodies get 413.
    pub max_body_bytes: usize,
    /// Largest accepted `POST /api/v1/apply` body, which carries many
    /// artifacts (each line within `max_body_bytes`); larger bodies get
    /// 413. The body is streamed, so this bounds the call, not memory.
    pub max_apply_bytes: u64,
    /// When non-empty, deployments to any other label are refused with 422
    /// (catches typos in label names). Empty accepts every valid label.
    pub known_labels: Vec<String>,
    /// How often the outbox relay looks for unsent events when no
    /// notification arrived (ms); notifications wake it at once.
    pub relay_poll_interval_ms: u64,
    /// Sent outbox rows older than this are deleted (hours).
    pub outbox_retention_hours: u64,
    /// A gateway node without a heartbeat for this long is reported stale (ms).
    pub gateway_stale_after_ms: u64,
    /// Deploy events carry the artifact itself when it is at most this many
    /// bytes, so gateways deploy without fetching it; 0 never inlines.
    /// At most 1 MiB, to keep broker messages small.
    pub inline_artifact_max_bytes: usize,
    /// With `publish_directly_to_gateway`: how often each gateway is
    /// compared with the desired state even when nothing changed (ms).
    pub push_resync_interval_ms: u64,
    /// With `publish_directly_to_gateway`: how long one call to a gateway's
    /// admin API may take (ms).
    pub push_timeout_ms: u64,
    /// An Ed25519 private key in PKCS#8 PEM (`openssl genpkey -algorithm
    /// ed25519`): every published event is signed with it, and gateways
    /// with the matching `publisher_public_key` refuse unsigned events.
    pub signing_key_file: Option<std::path::PathBuf>,
    /// With `tls_key_file`: serve HTTPS with this certificate chain (PEM,
    /// leaf first). Unset: plain HTTP.
    pub tls_cert_file: Option<std::path::PathBuf>,
    /// The private key of `tls_cert_file` (PEM).
    pub tls_key_file: Option<std::path::PathBuf>,
}

impl Default for RawPublisher {
    fn default() -> Self {
        RawPublisher {
            listen: "0.0.0.0:9400".into(),
            tokens: Vec::new(),
            max_body_bytes: 10 * 1024 * 1024,
            max_apply_bytes: 4 * 1024 * 1024 * 1024,
            known_labels: Vec::new(),
            relay_poll_interval_ms: 1000,
            outbox_retention_hours: 24 * 7,
            gateway_stale_after_ms: 30_000,
            inline_artifact_max_bytes: 64 * 1024,
            push_resync_interval_ms: 30_000,
            push_timeout_ms: 10_000,
            signing_key_file: None,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDatabase {
    /// `postgres://…`, `mysql://…` or `sqlite://PATH`; `DATABASE_URL`
    /// overrides it. Takes precedence over `[database.sync_runtime_artifacts_db]`.
    pub url: Option<String>,
    /// Size of the connection pool.
    pub max_connections: Option<u32>,
    /// WSO2's artifact database section.
    pub sync_runtime_artifacts_db: Option<Wso2Database>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAmqp {
    /// `amqp://user:pass@host:port/vhost`; `AMQP_URL` overrides it.
    pub url: String,
    /// The durable direct exchange deployment events are published to.
    pub exchange: String,
}

impl Default for RawAmqp {
    fn default() -> Self {
        RawAmqp {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            exchange: Topology::default().exchange,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApim {
    #[serde(default)]
    pub sync_runtime_artifacts: RawSyncRuntimeArtifacts,
    /// `[[apim.gateway.environment]]`: the gateways the publisher pushes to
    /// with `publish_directly_to_gateway = true`.
    #[serde(default)]
    pub gateway: RawApimGateway,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSyncRuntimeArtifacts {
    pub publisher: Option<RawWso2Publisher>,
}

/// `[apim.sync_runtime_artifacts.publisher]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWso2Publisher {
    /// Only `DBSaver`: artifacts are stored as database blobs.
    pub artifact_saver: Option<String>,
    /// `true`: push each deploy and undeploy to the admin API of every
    /// gateway of `[[apim.gateway.environment]]`, besides the events.
    pub publish_directly_to_gateway: Option<bool>,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub tokens: Vec<String>,
    pub max_body_bytes: usize,
    pub max_apply_bytes: u64,
    pub known_labels: Vec<GatewayLabel>,
    pub database: StorageUrl,
    pub max_connections: u32,
    pub amqp_url: String,
    pub topology: Topology,
    pub relay_poll_interval: Duration,
    pub outbox_retention: Duration,
    pub gateway_stale_after: Duration,
    pub inline_artifact_max_bytes: usize,
    /// `publish_directly_to_gateway = true`: where deploys are pushed.
    pub direct_push: Option<DirectPush>,
    /// Signs every published event (`signing_key_file`).
    pub signing_key: Option<Arc<EventSigningKey>>,
    /// HTTPS of the REST API.
    pub tls: Option<ServerTlsFiles>,
}

impl Settings {
    /// How to open `database`.
    pub fn storage_options(&self) -> StorageOptions {
        StorageOptions {
            max_connections: self.max_connections,
            inline_artifact_max_bytes: self.inline_artifact_max_bytes,
            ..StorageOptions::default()
        }
    }
}

/// The largest artifact a deploy event may carry.
pub const MAX_INLINE_ARTIFACT_BYTES: usize = 1024 * 1024;

/// Environment variables that override keys under their usual names.
pub const ENV_ALIASES: &[(&str, &str)] = &[
    ("DATABASE_URL", "database.url"),
    ("AMQP_URL", "amqp.url"),
    ("PUBLISHER_TOKENS", "publisher.tokens"),
];

pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
    let raw: RawConfig = config::load(file, ENV_ALIASES)?;
    raw.validate()
}

impl RawConfig {
    pub fn validate(self) -> Result<Settings, ConfigError> {
        let p = self.publisher;
        let listen = config::socket_addr("publisher.listen", &p.listen)?;
        let tokens: Vec<String> = p
            .tokens
            .into_iter()
            .flat_map(|t| {
                t.split(',')
                    .map(|s| s.trim().to_owned())
                    .collect::<Vec<_>>()
            })
            .filter(|t| !t.is_empty())
            .collect();
        if tokens.is_empty() {
            return Err(ConfigError::invalid(
                "publisher.tokens",
                "at least one bearer token is required",
            ));
        }
        // Never echo any part of a token.
        for (i, t) in tokens.iter().enumerate() {
            config::check_token(&format!("publisher.tokens[{i}]"), t)?;
        }
        if p.inline_artifact_max_bytes > MAX_INLINE_ARTIFACT_BYTES {
            return Err(ConfigError::invalid(
                "publisher.inline_artifact_max_bytes",
                format!("must be at most {MAX_INLINE_ARTIFACT_BYTES} (0 turns inlining off)"),
            ));
        }
        if p.max_body_bytes < 1024 {
            return Err(ConfigError::invalid(
                "publisher.max_body_bytes",
                "must be at least 1024",
            ));
        }
        if p.max_apply_bytes < p.max_body_bytes as u64 {
            return Err(ConfigError::invalid(
                "publisher.max_apply_bytes",
                "must be at least publisher.max_body_bytes",
            ));
        }
        let known_labels = p
            .known_labels
            .iter()
            .map(|l| GatewayLabel::parse(l))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ConfigError::invalid("publisher.known_labels", e.to_string()))?;
        if p.relay_poll_interval_ms == 0 {
            return Err(ConfigError::invalid(
                "publisher.relay_poll_interval_ms",
                "must be greater than 0",
            ));
        }

        let wso2 = self.apim.sync_runtime_artifacts.publisher.as_ref();
        if let Some(saver) = wso2.and_then(|w| w.artifact_saver.as_ref())
            && saver != "DBSaver"
        {
            return Err(ConfigError::invalid(
                "apim.sync_runtime_artifacts.publisher.artifact_saver",
                format!("{saver:?} is not supported; artisync stores artifacts with \"DBSaver\""),
            ));
        }
        let direct = wso2.and_then(|w| w.publish_directly_to_gateway) == Some(true);
        let direct_push = if direct {
            let positive = |key: &str, ms: u64| {
                if ms == 0 {
                    Err(ConfigError::invalid(key, "must be greater than 0"))
                } else {
                    Ok(Duration::from_millis(ms))
                }
            };
            Some(DirectPush {
                gateways: push_gateways(&self.apim.gateway.environment)?,
                resync_interval: positive(
                    "publisher.push_resync_interval_ms",
                    p.push_resync_interval_ms,
                )?,
                timeout: positive("publisher.push_timeout_ms", p.push_timeout_ms)?,
            })
        } else {
            None
        };

        let signing_key = match &p.signing_key_file {
            None => None,
            Some(path) => Some(Arc::new(signing_key(path)?)),
        };
        let tls = server_tls_files(
            "publisher.",
            p.tls_cert_file.as_deref(),
            p.tls_key_file.as_deref(),
            None,
        )
        .map_err(|(key, message)| ConfigError::invalid(key, message))?;
        if let Some(files) = &tls {
            files
                .acceptor()
                .map_err(|e| ConfigError::invalid("publisher.tls_cert_file", e.to_string()))?;
        }
        let database = database_url(&self.database)?;
        let max_connections = self.database.max_connections.unwrap_or(10);
        if max_connections == 0 {
            return Err(ConfigError::invalid(
                "database.max_connections",
                "must be greater than 0",
            ));
        }
        let amqp_url = config::url_with_scheme("amqp.url", &self.amqp.url, &["amqp"])?;
        let topology = Topology {
            exchange: self.amqp.exchange,
            ..Topology::default()
        };
        validate_topology(&topology)?;
        Ok(Settings {
            listen,
            tokens,
            max_body_bytes: p.max_body_bytes,
            max_apply_bytes: p.max_apply_bytes,
            known_labels,
            database,
            max_connections,
            amqp_url,
            topology,
            relay_poll_interval: Duration::from_millis(p.relay_poll_interval_ms),
            outbox_retention: Duration::from_secs(p.outbox_retention_hours * 3600),
            gateway_stale_after: Duration::from_millis(p.gateway_stale_after_ms.max(1)),
            inline_artifact_max_bytes: p.inline_artifact_max_bytes,
            direct_push,
            signing_key,
            tls,
        })
    }
}

fn signing_key(path: &Path) -> Result<EventSigningKey, ConfigError> {
    const KEY: &str = "publisher.signing_key_file";
    let pem = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::invalid(KEY, format!("cannot read {}: {e}", path.display())))?;
    EventSigningKey::from_pem(&pem)
        .map_err(|e| ConfigError::invalid(KEY, format!("{}: {e}", path.display())))
}

pub(crate) fn validate_topology(t: &Topology) -> Result<(), ConfigError> {
    if t.exchange.is_empty() || t.exchange.len() > 255 {
        return Err(ConfigError::invalid(
            "amqp.exchange",
            "must be 1 to 255 bytes",
        ));
    }
    Ok(())
}

fn database_url(db: &RawDatabase) -> Result<StorageUrl, ConfigError> {
    if let Some(url) = &db.url {
        return StorageUrl::parse("database.url", url);
    }
    match &db.sync_runtime_artifacts_db {
        Some(wso2) => wso2.storage_url("database.sync_runtime_artifacts_db"),
        None => Err(ConfigError::invalid(
            "database.url",
            "is required (or DATABASE_URL, or [database.sync_runtime_artifacts_db])",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> RawConfig {
        RawConfig {
            publisher: RawPublisher {
                tokens: vec!["publisher-secret".into()],
                ..Default::default()
            },
            database: RawDatabase {
                url: Some("postgres://postgres@127.0.0.1/x".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn defaults_validate() {
        let s = base().validate().unwrap();
        assert_eq!(s.listen.port(), 9400);
        assert_eq!(s.max_body_bytes, 10 * 1024 * 1024);
        assert_eq!(s.topology.exchange, "artisync.deployments");
        assert_eq!(s.inline_artifact_max_bytes, 64 * 1024);
    }

    #[test]
    fn errors_name_the_key() {
        let mut c = base();
        c.publisher.tokens.clear();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("publisher.tokens")
        );
        for bad in ["éé", "short-token", "change-me-publisher-token"] {
            let mut c = base();
            c.publisher.tokens = vec!["publisher-secret".into(), bad.into()];
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("publisher.tokens[1]"), "{e}");
            assert!(!e.contains(bad), "{e}");
        }
        let mut c = base();
        c.amqp.url = "http://guest:hunter2-secret@h/".into();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("amqp.url") && !e.contains("hunter2"), "{e}");
        let mut c = base();
        c.publisher.inline_artifact_max_bytes = MAX_INLINE_ARTIFACT_BYTES + 1;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("publisher.inline_artifact_max_bytes")
        );
        let mut c = base();
        c.publisher.listen = "bad".into();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("publisher.listen")
        );
        let mut c = base();
        c.apim.sync_runtime_artifacts.publisher = Some(RawWso2Publisher {
            artifact_saver: Some("FileSaver".into()),
            publish_directly_to_gateway: None,
        });
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("artifact_saver")
        );
        let mut c = base();
        c.apim.sync_runtime_artifacts.publisher = Some(RawWso2Publisher {
            artifact_saver: Some("DBSaver".into()),
            publish_directly_to_gateway: Some(true),
        });
        // Direct publishing needs somewhere to push to.
        assert!(
            c.clone()
                .validate()
                .unwrap_err()
                .to_string()
                .contains("apim.gateway.environment")
        );
        c.apim.gateway.environment = vec![RawEnvironment {
            name: Some("Default".into()),
            service_url: Some("http://127.0.0.1:9600".into()),
            token: Some("gateway-admin-secret".into()),
            ..Default::default()
        }];
        let push = c.validate().unwrap().direct_push.unwrap();
        assert_eq!(push.gateways.len(), 1);
        assert_eq!(push.gateways[0].labels[0].as_str(), "Default");
        assert_eq!(push.resync_interval, Duration::from_secs(30));
    }

    #[test]
    fn wso2_database_section_is_translated() {
        let mut c = base();
        c.database.url = None;
        c.database.sync_runtime_artifacts_db = Some(Wso2Database {
            db_type: "postgre".into(),
            url: "jdbc:postgresql://db:5432/apim_db".into(),
            username: Some("wso2".into()),
            password: Some("p@ss".into()),
            driver: None,
            validation_query: None,
        });
        let s = c.clone().validate().unwrap();
        assert_eq!(
            s.database,
            StorageUrl::Postgres("postgres://wso2:p%40ss@db:5432/apim_db".into())
        );
        if let Some(db) = c.database.sync_runtime_artifacts_db.as_mut() {
            db.db_type = "oracle".into();
        }
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("sync_runtime_artifacts_db.type"), "{err}");
    }
}
