//! Traffic manager configuration: deserialised from TOML + environment,
//! then validated into [`Settings`] before anything is bound.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use artisync_config::{self as config, ConfigError};
use artisync_domain::{GatewayLabel, NodeId};
use artisync_http::tls::{ServerTlsFiles, server_tls_files};
use serde::Deserialize;

use artisync_config::storage::{DatabaseSource, StorageOptions, StorageUrl};

use crate::auth::{LabelScope, TokenRegistry, TokenScope};
use crate::db::DatabaseConfig;
use crate::object_store::ObjectStoreConfig;
use crate::object_store::{NameScope, StoreScope};

/// The config file as written (`config/traffic-manager.toml`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub traffic_manager: RawTrafficManager,
    #[serde(default)]
    pub database: DatabaseConfig,
    /// The persistence store (object store) served beside the data API.
    #[serde(default)]
    pub object_store: ObjectStoreConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTrafficManager {
    /// Address of the internal data API and the persistence store.
    pub listen: String,
    /// Bearer tokens and the gateway labels each may read.
    pub tokens: Vec<RawToken>,
    /// Largest accepted status report body, in bytes.
    pub max_status_body_bytes: usize,
    /// How long one chunk of a `retrieve-runtime-artifacts` stream may
    /// wait for the client to take it, in ms; past it the stream ends with
    /// an error and its database connection is released (a client that
    /// stops reading cannot hold one).
    pub bulk_send_timeout_ms: u64,
    /// With `tls_key_file`: serve HTTPS with this certificate chain (PEM,
    /// leaf first). Unset: plain HTTP.
    pub tls_cert_file: Option<std::path::PathBuf>,
    /// The private key of `tls_cert_file` (PEM).
    pub tls_key_file: Option<std::path::PathBuf>,
    /// With TLS: clients must present a certificate signed by one of these
    /// CAs (PEM), besides their bearer token (mutual TLS).
    pub tls_client_ca_file: Option<std::path::PathBuf>,
}

impl Default for RawTrafficManager {
    fn default() -> Self {
        RawTrafficManager {
            listen: "0.0.0.0:9500".into(),
            tokens: Vec::new(),
            max_status_body_bytes: 16 * 1024 * 1024,
            bulk_send_timeout_ms: 30_000,
            tls_cert_file: None,
            tls_key_file: None,
            tls_client_ca_file: None,
        }
    }
}

/// `[[traffic_manager.tokens]]`: one bearer token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    /// Who uses the token, for logs and rate limiting (default: "token-N").
    pub name: Option<String>,
    /// The secret: at least 16 bytes, not a `.env.example` placeholder.
    pub token: String,
    /// Labels this token may read; `["*"]` grants every label.
    pub labels: Vec<String>,
    /// The gateway node id this token belongs to: status reports sent with
    /// it must be for this node (another node id gets 403). Unset, the
    /// token may report for any node (an operator's or a shared token);
    /// give every gateway its own token with `node` set.
    #[serde(default)]
    pub node: Option<String>,
    /// Organizations whose persistence stores this token may use (`["*"]`:
    /// all). Unset: all for a token without `node`, none for a gateway's.
    pub organizations: Option<Vec<String>>,
    /// Environments whose persistence stores this token may use (`["*"]`:
    /// all, the default).
    pub environments: Option<Vec<String>>,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub tokens: Arc<TokenRegistry>,
    pub max_status_body_bytes: usize,
    pub bulk_send_timeout: std::time::Duration,
    pub database_source: DatabaseSource,
    pub database: DatabaseConfig,
    pub object_store: ObjectStoreConfig,
    /// Where the persistence store is, when not in `database_source`.
    pub object_store_url: Option<StorageUrl>,
    /// HTTPS (and mutual TLS) of the listener.
    pub tls: Option<ServerTlsFiles>,
}

/// The persistence store's database when `[database]` is MySQL and
/// `object_store.database_url` is not set.
pub const DEFAULT_OBJECT_STORE_URL: &str = "sqlite://artisync-object-store.db";

impl Settings {
    /// How to open `database_source`.
    pub fn storage_options(&self) -> StorageOptions {
        StorageOptions {
            max_connections: self.database.max_backend_connection_pool,
            acquire_timeout: std::time::Duration::from_millis(self.database.acquire_timeout_ms),
            max_lifetime: std::time::Duration::from_secs(
                self.database.max_connection_lifetime_seconds,
            ),
            ..StorageOptions::default()
        }
    }
}

pub const ENV_ALIASES: &[(&str, &str)] = &[("DATABASE_URL", "database.url")];

pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
    let raw: RawConfig = config::load(file, ENV_ALIASES)?;
    raw.validate()
}

impl RawConfig {
    pub fn validate(self) -> Result<Settings, ConfigError> {
        let tm = self.traffic_manager;
        let listen = config::socket_addr("traffic_manager.listen", &tm.listen)?;
        if tm.tokens.is_empty() {
            return Err(ConfigError::invalid(
                "traffic_manager.tokens",
                "at least one token is required",
            ));
        }
        if tm.bulk_send_timeout_ms == 0 {
            return Err(ConfigError::invalid(
                "traffic_manager.bulk_send_timeout_ms",
                "must be greater than 0",
            ));
        }
        let mut scopes = Vec::with_capacity(tm.tokens.len());
        let mut seen = HashSet::new();
        for (i, t) in tm.tokens.into_iter().enumerate() {
            let key = format!("traffic_manager.tokens[{i}]");
            config::check_token(&format!("{key}.token"), &t.token)?;
            if !seen.insert(t.token.clone()) {
                return Err(ConfigError::invalid(
                    format!("{key}.token"),
                    "the same token is configured twice",
                ));
            }
            if t.labels.is_empty() {
                return Err(ConfigError::invalid(
                    format!("{key}.labels"),
                    "must name at least one label, or \"*\" for all",
                ));
            }
            let labels = if t.labels.iter().any(|l| l == "*") {
                LabelScope::All
            } else {
                LabelScope::Only(
                    t.labels
                        .iter()
                        .map(|l| GatewayLabel::parse(l))
                        .collect::<Result<_, _>>()
                        .map_err(|e| {
                            ConfigError::invalid(format!("{key}.labels"), e.to_string())
                        })?,
                )
            };
            let node = t
                .node
                .as_deref()
                .map(NodeId::parse)
                .transpose()
                .map_err(|e| ConfigError::invalid(format!("{key}.node"), e.to_string()))?;
            let stores = match (&t.organizations, &node) {
                (None, Some(_)) => StoreScope::Denied,
                (organizations, _) => StoreScope::Within {
                    organizations: organizations
                        .as_deref()
                        .map_or(NameScope::All, NameScope::of),
                    environments: t
                        .environments
                        .as_deref()
                        .map_or(NameScope::All, NameScope::of),
                },
            };
            scopes.push(TokenScope {
                name: t.name.unwrap_or_else(|| format!("token-{}", i + 1)),
                secret: t.token,
                labels,
                node,
                stores,
            });
        }
        self.database
            .validate()
            .map_err(|e| ConfigError::invalid("database", e.to_string()))?;
        let database_source = match (
            &self.database.url,
            &self.database.credentials_file,
            &self.database.sync_runtime_artifacts_db,
        ) {
            (Some(url), _, _) => DatabaseSource::Url(StorageUrl::parse("database.url", url)?),
            (None, Some(path), _) => DatabaseSource::CredentialsFile(path.clone()),
            (None, None, Some(wso2)) => {
                DatabaseSource::Url(wso2.storage_url("database.sync_runtime_artifacts_db")?)
            }
            (None, None, None) => {
                return Err(ConfigError::invalid(
                    "database.url",
                    "or database.credentials_file, or [database.sync_runtime_artifacts_db], must be set",
                ));
            }
        };
        self.object_store
            .validate()
            .map_err(|e| ConfigError::invalid(format!("object_store.{}", e.key), e.reason))?;
        let object_store_url = match &self.object_store.database_url {
            Some(raw) => {
                let url = StorageUrl::parse("object_store.database_url", raw)?;
                if let StorageUrl::MySql(_) = url {
                    return Err(ConfigError::invalid(
                        "object_store.database_url",
                        "the persistence store needs PostgreSQL (postgres://…) or SQLite (sqlite://PATH)",
                    ));
                }
                Some(url)
            }
            None if matches!(database_source, DatabaseSource::Url(StorageUrl::MySql(_))) => Some(
                StorageUrl::parse("object_store.database_url", DEFAULT_OBJECT_STORE_URL)?,
            ),
            None => None,
        };
        let tls = server_tls_files(
            "traffic_manager.",
            tm.tls_cert_file.as_deref(),
            tm.tls_key_file.as_deref(),
            tm.tls_client_ca_file.as_deref(),
        )
        .map_err(|(key, message)| ConfigError::invalid(key, message))?;
        if let Some(files) = &tls {
            files.acceptor().map_err(|e| {
                ConfigError::invalid("traffic_manager.tls_cert_file", e.to_string())
            })?;
        }
        Ok(Settings {
            listen,
            tokens: Arc::new(TokenRegistry::new(scopes)),
            max_status_body_bytes: tm.max_status_body_bytes,
            bulk_send_timeout: std::time::Duration::from_millis(tm.bulk_send_timeout_ms),
            database_source,
            database: self.database,
            object_store: self.object_store,
            object_store_url,
            tls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> RawConfig {
        RawConfig {
            traffic_manager: RawTrafficManager {
                tokens: vec![RawToken {
                    name: None,
                    token: "gateway-secret-0123456".into(),
                    labels: vec!["Label1".into()],
                    node: None,
                    organizations: None,
                    environments: None,
                }],
                ..Default::default()
            },
            database: DatabaseConfig {
                url: Some("postgres://postgres@127.0.0.1/x".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn validates_and_names_keys() {
        assert!(base().validate().is_ok());
        let mut c = base();
        c.traffic_manager.tokens[0].labels.clear();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("traffic_manager.tokens[0].labels"), "{e}");
        let mut c = base();
        c.traffic_manager.tokens[0].labels = vec![" bad".into()];
        assert!(c.validate().is_err());
        let mut c = base();
        c.traffic_manager.listen = "nope".into();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("traffic_manager.listen")
        );
        let mut c = base();
        c.database.url = None;
        assert!(c.validate().unwrap_err().to_string().contains("database"));
        // Short (non-ASCII too) and placeholder tokens, never echoed.
        for bad in ["éé", "gateway-secret", "change-me-gateway-1-token"] {
            let mut c = base();
            c.traffic_manager.tokens[0].token = bad.into();
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("traffic_manager.tokens[0].token"), "{e}");
            assert!(!e.contains(bad), "{e}");
        }
        let mut c = base();
        c.traffic_manager.tokens[0].node = Some("gw/1".into());
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("traffic_manager.tokens[0].node"), "{e}");
    }

    #[test]
    fn mysql_keeps_the_object_store_elsewhere() {
        let mut c = base();
        c.database.url = Some("mysql://root@127.0.0.1:3306/artisync".into());
        let s = c.clone().validate().unwrap();
        assert_eq!(
            s.object_store_url,
            Some(StorageUrl::Sqlite("artisync-object-store.db".into()))
        );
        c.object_store.database_url = Some("postgres://u@db/objects".into());
        let s = c.clone().validate().unwrap();
        assert_eq!(
            s.object_store_url,
            Some(StorageUrl::Postgres("postgres://u@db/objects".into()))
        );
        c.object_store.database_url = Some("mysql://u@db/objects".into());
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("object_store.database_url"), "{e}");
        // PostgreSQL holds it itself.
        assert_eq!(base().validate().unwrap().object_store_url, None);
    }

    #[test]
    fn the_wso2_database_section_is_accepted() {
        let mut c = base();
        c.database.url = None;
        c.database.sync_runtime_artifacts_db = Some(artisync_config::storage::Wso2Database {
            db_type: "mysql".into(),
            url: "jdbc:mysql://localhost:3306/WSO2AS_DB".into(),
            username: Some("wso2carbon".into()),
            password: Some("p@ss:w/rd".into()),
            driver: Some("com.mysql.cj.jdbc.Driver".into()),
            validation_query: None,
        });
        let s = c.clone().validate().unwrap();
        assert_eq!(
            s.database_source,
            DatabaseSource::Url(StorageUrl::MySql(
                "mysql://wso2carbon:p%40ss%3Aw%2Frd@localhost:3306/WSO2AS_DB".into()
            ))
        );
        if let Some(db) = c.database.sync_runtime_artifacts_db.as_mut() {
            db.db_type = "oracle".into();
        }
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("database.sync_runtime_artifacts_db.type"), "{e}");
    }
}
