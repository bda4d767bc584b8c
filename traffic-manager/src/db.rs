//! The traffic manager's PostgreSQL connection pool.
//!
//! The database URL comes either from the configuration (`url`) or from a
//! credentials file (`credentials_file`) holding one line
//! `postgres://user:pass@host:port/db` (password URL-encoded). The file is
//! watched: when a secret manager rotates it, new connections use the new
//! credentials without a restart (existing connections stay authenticated,
//! which PostgreSQL allows, and are recycled by `max_connection_lifetime_seconds`).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often the credentials file is re-read. A file of one line costs
/// nothing to read, and comparing contents (not only the mtime) also catches
/// rewrites within the mtime's granularity and Kubernetes' symlink swaps.
const CREDENTIALS_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// `[database]`: where the traffic manager's PostgreSQL is and how many
/// connections it may hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Database URL, `postgres://user:pass@host:port/db`. Exactly one of
    /// `url` and `credentials_file` must be set.
    #[serde(default)]
    pub url: Option<String>,
    /// File holding the database URL on its first non-empty line (password
    /// URL-encoded). Watched: a change applies to new connections without a
    /// restart. Exactly one of `url` and `credentials_file` must be set.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
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
    #[error("cannot read the database credentials file {path}: {source}")]
    ReadCredentials {
        path: PathBuf,
        source: std::io::Error,
    },
    // The URL itself is never part of a message: it holds a password.
    #[error("invalid database URL (from {origin}): {source}")]
    InvalidUrl { origin: String, source: sqlx::Error },
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
}

impl DatabaseConfig {
    /// Checks the configuration; the error names the offending key.
    pub fn validate(&self) -> Result<(), DbError> {
        match (&self.url, &self.credentials_file) {
            (None, None) => {
                return Err(DbError::Config {
                    key: "url",
                    reason: "or `credentials_file` must be set".to_owned(),
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

    /// The connection options from `url` or from the credentials file.
    pub fn connect_options(&self) -> Result<PgConnectOptions, DbError> {
        self.validate()?;
        match (&self.url, &self.credentials_file) {
            (Some(url), _) => parse_url(url, "`url`"),
            (None, Some(path)) => read_credentials_file(path),
            // validate() rejected this case already.
            (None, None) => Err(DbError::Config {
                key: "url",
                reason: "or `credentials_file` must be set".to_owned(),
            }),
        }
    }

    fn pool_options(&self) -> PgPoolOptions {
        artisync_shared::db::pool_options()
            .max_connections(self.max_backend_connection_pool)
            .acquire_timeout(Duration::from_millis(self.acquire_timeout_ms))
            .max_lifetime(Duration::from_secs(self.max_connection_lifetime_seconds))
    }
}

/// Opens the pool and checks that the database answers.
pub async fn connect(config: &DatabaseConfig) -> Result<PgPool, DbError> {
    let options = config.connect_options()?;
    config
        .pool_options()
        .connect_with(options)
        .await
        .map_err(DbError::Connect)
}

/// Creates the pool without connecting: for a process that must start (and
/// answer `/api/v1/status/ready` with 503) while the database is still down.
pub fn connect_lazy(config: &DatabaseConfig) -> Result<PgPool, DbError> {
    let options = config.connect_options()?;
    Ok(config.pool_options().connect_lazy_with(options))
}

fn parse_url(url: &str, origin: &str) -> Result<PgConnectOptions, DbError> {
    PgConnectOptions::from_str(url.trim()).map_err(|source| DbError::InvalidUrl {
        origin: origin.to_owned(),
        source,
    })
}

fn credentials_line(contents: &str) -> &str {
    contents
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
}

/// Reads the URL from the first non-empty line of a credentials file.
pub fn read_credentials_file(path: &Path) -> Result<PgConnectOptions, DbError> {
    let contents = std::fs::read_to_string(path).map_err(|source| DbError::ReadCredentials {
        path: path.to_owned(),
        source,
    })?;
    parse_url(credentials_line(&contents), &path.display().to_string())
}

/// Re-reads the credentials file every second and, when its URL changed,
/// makes the pool open its future connections with it. An unreadable or
/// invalid file keeps the previous credentials (and is logged): a rotation
/// tool writing the file non-atomically must not take the service down.
pub fn watch_credentials_file(
    pool: PgPool,
    path: PathBuf,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        // The first successful read is applied silently: it is what the
        // pool was built from, unless the file changed in between, in which
        // case applying it is exactly right.
        let mut last: Option<String> = None;
        let mut first = true;
        let mut unreadable = false;
        let mut interval = tokio::time::interval(CREDENTIALS_POLL_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = interval.tick() => {}
            }
            let contents = match tokio::fs::read_to_string(&path).await {
                Ok(c) => {
                    unreadable = false;
                    c
                }
                Err(error) => {
                    // Log the transition, not every second of a missing file.
                    if !unreadable {
                        tracing::warn!(path = %path.display(), %error,
                            "database credentials file unreadable; keeping the current credentials");
                        unreadable = true;
                    }
                    continue;
                }
            };
            if last.as_deref() == Some(contents.as_str()) {
                continue;
            }
            match parse_url(credentials_line(&contents), &path.display().to_string()) {
                Ok(options) if first => pool.set_connect_options(options),
                Ok(options) => {
                    tracing::info!(
                        path = %path.display(),
                        user = options.get_username(),
                        host = options.get_host(),
                        "database credentials changed; new connections use them"
                    );
                    pool.set_connect_options(options);
                }
                Err(error) => {
                    tracing::warn!(%error, "database credentials file invalid; keeping the current credentials");
                }
            }
            last = Some(contents);
            first = false;
        }
    })
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

    #[test]
    fn encoded_passwords_are_decoded_and_not_shown() {
        let options = parse_url(
            "\n postgres://svc:p%40ss%2Fw%3Ard@db.example:6543/objects \n",
            "test",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(options.get_username(), "svc");
        assert_eq!(options.get_host(), "db.example");
        assert_eq!(options.get_port(), 6543);
        assert_eq!(options.get_database(), Some("objects"));
        assert_eq!(
            credentials_line("\n\n  postgres://a@b/c  \nrest"),
            "postgres://a@b/c"
        );
    }
}
