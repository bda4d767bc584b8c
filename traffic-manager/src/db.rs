//! `[database]`: where the traffic manager's data is.
//!
//! The database URL comes either from the configuration (`url`) or from a
//! credentials file (`credentials_file`) holding one line
//! `postgres://user:pass@host:port/db` (password URL-encoded). The file is
//! watched: when a secret manager rotates it, new connections use the new
//! credentials without a restart (existing connections stay authenticated,
//! which PostgreSQL allows, and are recycled by `max_connection_lifetime_seconds`).

use std::path::PathBuf;

use artisync_config::storage::Wso2Database;
use serde::Deserialize;

/// `[database]`: where the traffic manager's PostgreSQL is and how many
/// connections it may hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Database URL: `postgres://…`, `mysql://…` or `sqlite://PATH`. Exactly
    /// one of `url` and `credentials_file` must be set.
    #[serde(default)]
    pub url: Option<String>,
    /// File holding the database URL on its first non-empty line (password
    /// URL-encoded). Watched: a change applies to new connections without a
    /// restart. Exactly one of `url` and `credentials_file` must be set.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// WSO2's artifact database section, as WSO2 writes it (`type`,
    /// `url = "jdbc:…"`, `username`, `password`, `driver`); used when
    /// neither `url` nor `credentials_file` is set.
    #[serde(default)]
    pub sync_runtime_artifacts_db: Option<Wso2Database>,
    /// Maximum number of connections to PostgreSQL (the Persistence
    /// Gateway's `max-backend-connection-pool`). Default 20.
    #[serde(default = "default_max_backend_connection_pool")]
    pub max_backend_connection_pool: u32,
    /// How long a request waits for a free connection before failing with
    /// 503, in milliseconds. Default 5000.
    #[serde(default = "default_acquire_timeout_ms")]
    pub acquire_timeout_ms: u64,
    /// Connections older than this are closed and reopened, in seconds, so
    /// that after a credentials rotation no connection keeps the old
    /// credentials for longer. Default 1800.
    #[serde(default = "default_max_connection_lifetime_seconds")]
    pub max_connection_lifetime_seconds: u64,
}

fn default_max_backend_connection_pool() -> u32 {
    20
}

fn default_acquire_timeout_ms() -> u64 {
    5_000
}

fn default_max_connection_lifetime_seconds() -> u64 {
    1_800
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: None,
            credentials_file: None,
            sync_runtime_artifacts_db: None,
            max_backend_connection_pool: default_max_backend_connection_pool(),
            acquire_timeout_ms: default_acquire_timeout_ms(),
            max_connection_lifetime_seconds: default_max_connection_lifetime_seconds(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("invalid database configuration: `{key}` {reason}")]
    Config { key: &'static str, reason: String },
}

impl DatabaseConfig {
    /// Checks the configuration; the error names the offending key.
    pub fn validate(&self) -> Result<(), DbError> {
        match (&self.url, &self.credentials_file) {
            (None, None) if self.sync_runtime_artifacts_db.is_none() => {
                return Err(DbError::Config {
                    key: "url",
                    reason: "or `credentials_file`, or `[database.sync_runtime_artifacts_db]`, must be set"
                        .to_owned(),
                });
            }
            (Some(_), Some(_)) => {
                return Err(DbError::Config {
                    key: "credentials_file",
                    reason: "cannot be combined with `url`: set only one".to_owned(),
                });
            }
            (Some(url), None) if url.trim().is_empty() => {
                return Err(DbError::Config {
                    key: "url",
                    reason: "is empty".to_owned(),
                });
            }
            _ => {}
        }
        if self.max_backend_connection_pool == 0 {
            return Err(DbError::Config {
                key: "max_backend_connection_pool",
                reason: "must be at least 1".to_owned(),
            });
        }
        if self.acquire_timeout_ms == 0 {
            return Err(DbError::Config {
                key: "acquire_timeout_ms",
                reason: "must be at least 1".to_owned(),
            });
        }
        if self.max_connection_lifetime_seconds == 0 {
            return Err(DbError::Config {
                key: "max_connection_lifetime_seconds",
                reason: "must be at least 1".to_owned(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_source_is_required() {
        let none = DatabaseConfig::default();
        assert!(matches!(
            none.validate(),
            Err(DbError::Config { key: "url", .. })
        ));
        let both = DatabaseConfig {
            url: Some("postgres://a@h/db".into()),
            credentials_file: Some("/x".into()),
            ..DatabaseConfig::default()
        };
        assert!(matches!(
            both.validate(),
            Err(DbError::Config {
                key: "credentials_file",
                ..
            })
        ));
        let zero = DatabaseConfig {
            url: Some("postgres://a@h/db".into()),
            max_backend_connection_pool: 0,
            ..DatabaseConfig::default()
        };
        assert!(matches!(
            zero.validate(),
            Err(DbError::Config {
                key: "max_backend_connection_pool",
                ..
            })
        ));
    }

    #[test]
    fn defaults_apply_when_keys_are_absent() {
        let config: DatabaseConfig =
            serde_json::from_str(r#"{"url": "postgres://h/db"}"#).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.max_backend_connection_pool, 20);
        assert_eq!(config.acquire_timeout_ms, 5_000);
    }
}
