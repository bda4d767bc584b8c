//! A credentials file holding the database URL, watched: when a secret
//! manager rotates it, new connections use the new credentials without a
//! restart (existing connections stay authenticated, which PostgreSQL
//! allows, and are recycled by the pool's maximum lifetime).

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{OpenError, parse_url};

/// How often the file is re-read. A file of one line costs nothing to
/// read, and comparing contents (not only the mtime) also catches rewrites
/// within the mtime's granularity and Kubernetes' symlink swaps.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The URL on the first non-empty line of a credentials file.
pub fn credentials_line(contents: &str) -> &str {
    contents
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
}

/// Reads the connect options from a credentials file.
pub fn read_credentials_file(path: &Path) -> Result<PgConnectOptions, CredentialsError> {
    let contents = std::fs::read_to_string(path).map_err(|source| CredentialsError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(parse_url(
        credentials_line(&contents),
        &path.display().to_string(),
    )?)
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot read the database credentials file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Invalid(#[from] OpenError),
}

/// Re-reads the file every second and, when its URL changed, makes the
/// pool open its future connections with it. An unreadable or invalid
/// file keeps the previous credentials (and is logged): a rotation tool
/// writing the file non-atomically must not take the service down.
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
        let mut interval = tokio::time::interval(POLL_INTERVAL);
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
        let err = parse_url("postgres://u:secret@[bad", "cfg")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("secret"), "{err}");
    }
}
