//! Where a component keeps its data, named by URL: `postgres://…`,
//! `mysql://…` or `sqlite://PATH`, or by WSO2's
//! `[database.sync_runtime_artifacts_db]` section with a `jdbc:` URL.
//! Parsed once, here, so that a bad value stops the binary before it binds
//! a port, with the key named (and never the password).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::ConfigError;

/// How to open storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageOptions {
    /// Connections in the pool (where the backend pools).
    pub max_connections: u32,
    /// How long a request waits for a free connection.
    pub acquire_timeout: Duration,
    /// Connections older than this are reopened.
    pub max_lifetime: Duration,
    /// Deploy events carry artifacts up to this size (0: never).
    pub inline_artifact_max_bytes: usize,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            max_lifetime: Duration::from_secs(1800),
            inline_artifact_max_bytes: 64 * 1024,
        }
    }
}

/// Where the data is: a URL, or a watched file holding one (rotated
/// credentials apply to new connections without a restart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseSource {
    Url(StorageUrl),
    CredentialsFile(PathBuf),
}

/// A storage backend and how to reach it.
#[derive(Clone, PartialEq, Eq)]
pub enum StorageUrl {
    /// `postgres://user:pass@host:port/db?sslmode=…`
    Postgres(String),
    /// `mysql://user:pass@host:port/db?…` (MySQL 8 or MariaDB ≥ 10.6).
    MySql(String),
    /// One SQLite file.
    Sqlite(PathBuf),
}

impl StorageUrl {
    /// Parses a URL from config key `key`.
    pub fn parse(key: &str, raw: &str) -> Result<Self, ConfigError> {
        let raw = raw.trim();
        let unsupported = || {
            ConfigError::invalid(
                key,
                format!(
                    "{} is not a storage URL: use postgres://…, mysql://… or sqlite://PATH",
                    redact(raw)
                ),
            )
        };
        let (scheme, rest) = raw.split_once(':').ok_or_else(unsupported)?;
        match scheme.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => {
                let rest = rest.strip_prefix("//").filter(|r| !r.is_empty());
                rest.ok_or_else(unsupported)?;
                Ok(StorageUrl::Postgres(format!(
                    "postgres:{}",
                    &raw[scheme.len() + 1..]
                )))
            }
            "mysql" | "mariadb" => {
                let rest = rest.strip_prefix("//").filter(|r| !r.is_empty());
                rest.ok_or_else(unsupported)?;
                Ok(StorageUrl::MySql(format!(
                    "mysql:{}",
                    &raw[scheme.len() + 1..]
                )))
            }
            "sqlite" => {
                // sqlite://relative/path, sqlite:///absolute/path, sqlite:path
                let path = rest.strip_prefix("//").unwrap_or(rest);
                let path = path.split('?').next().unwrap_or("");
                if path.is_empty() || path == ":memory:" {
                    return Err(ConfigError::invalid(
                        key,
                        "sqlite:// needs the path of a database file (an in-memory database would lose every change)",
                    ));
                }
                Ok(StorageUrl::Sqlite(PathBuf::from(path)))
            }
            "jdbc" => StorageUrl::from_jdbc(key, raw, None, None),
            _ => Err(unsupported()),
        }
    }

    /// `jdbc:postgresql://host:5432/db?x=y` or `jdbc:mysql://host:3306/db?x=y`,
    /// with the user name and password of the WSO2 section put in, escaped.
    pub fn from_jdbc(
        key: &str,
        raw: &str,
        username: Option<&str>,
        password: Option<&str>,
    ) -> Result<Self, ConfigError> {
        let malformed = |why: &str| {
            ConfigError::invalid(
                key,
                format!(
                    "{} is not a jdbc:postgresql://host[:port]/database or jdbc:mysql://host[:port]/database URL: {why}",
                    redact(raw)
                ),
            )
        };
        let raw = raw.trim();
        let (kind, rest) = if let Some(rest) = raw.strip_prefix("jdbc:postgresql://") {
            ("postgres", rest)
        } else if let Some(rest) = raw.strip_prefix("jdbc:mysql://") {
            ("mysql", rest)
        } else if let Some(rest) = raw.strip_prefix("jdbc:mariadb://") {
            ("mysql", rest)
        } else {
            return Err(malformed("unknown scheme"));
        };
        let (authority_and_path, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let (authority, database) = authority_and_path
            .split_once('/')
            .ok_or_else(|| malformed("no database name"))?;
        if authority.is_empty() || authority.contains('@') {
            return Err(malformed(
                "the host is missing, or credentials are in the URL (use username and password)",
            ));
        }
        if database.is_empty() || database.contains('/') {
            return Err(malformed("no database name"));
        }
        if let Some((_, port)) = authority.rsplit_once(':')
            && !authority.ends_with(']')
            && port.parse::<u16>().is_err()
        {
            return Err(malformed("the port is not a number"));
        }
        let credentials = match (username, password) {
            (Some(u), Some(p)) => format!("{}:{}@", encode(u), encode(p)),
            (Some(u), None) => format!("{}@", encode(u)),
            (None, Some(_)) => {
                return Err(ConfigError::invalid(key, "a password needs a username"));
            }
            (None, None) => String::new(),
        };
        let query = query
            .map(|q| format!("?{}", translate_jdbc_params(kind, q)))
            .filter(|q| q.len() > 1)
            .unwrap_or_default();
        let url = format!("{kind}://{credentials}{authority}/{database}{query}");
        Ok(match kind {
            "postgres" => StorageUrl::Postgres(url),
            _ => StorageUrl::MySql(url),
        })
    }

    /// The scheme, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            StorageUrl::Postgres(_) => "PostgreSQL",
            StorageUrl::MySql(_) => "MySQL",
            StorageUrl::Sqlite(_) => "SQLite",
        }
    }
}

/// JDBC drivers take parameters the Rust drivers do not know; the ones
/// with an equivalent are renamed, the ones without are dropped (they tune
/// the Java driver: `useSSL`, `autoReconnect`, `serverTimezone` ...).
fn translate_jdbc_params(kind: &str, query: &str) -> String {
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let translated = match (kind, name) {
            ("postgres", "sslmode" | "application_name" | "options") => {
                Some(format!("{name}={value}"))
            }
            ("postgres", "ssl") if value.eq_ignore_ascii_case("true") => {
                Some("sslmode=require".to_owned())
            }
            (
                "mysql",
                "ssl-mode" | "ssl-ca" | "charset" | "timezone" | "statement-cache-capacity",
            ) => Some(format!("{name}={value}")),
            ("mysql", "sslMode") => Some(format!("ssl-mode={value}")),
            ("mysql", "useSSL") if value.eq_ignore_ascii_case("false") => {
                Some("ssl-mode=disabled".to_owned())
            }
            ("mysql", "characterEncoding") => Some(format!("charset={value}")),
            _ => None,
        };
        kept.extend(translated);
    }
    kept.join("&")
}

/// Percent-encodes a user name or password for the authority of a URL:
/// a raw `@`, `:` or `/` would otherwise end it early.
pub fn encode(part: &str) -> String {
    part.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A URL with its password replaced, for errors and logs; also when the
/// URL is malformed (`postgres:/user:pw@host`, a missing `//`).
pub fn redact(url: &str) -> String {
    let Some(at) = url.rfind('@') else {
        return url.to_owned();
    };
    let start = match (url.find("://"), url.find(':')) {
        (Some(scheme), _) if scheme < at => scheme + 3,
        (_, Some(colon)) if colon < at => colon + 1,
        _ => return url.to_owned(),
    };
    let userinfo = &url[start..at];
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{}{}:***{}", &url[..start], user, &url[at..]),
        None => url.to_owned(),
    }
}

impl fmt::Debug for StorageUrl {
    // Never print a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageUrl::Postgres(u) => write!(f, "Postgres({})", redact(u)),
            StorageUrl::MySql(u) => write!(f, "MySql({})", redact(u)),
            StorageUrl::Sqlite(p) => write!(f, "Sqlite({})", p.display()),
        }
    }
}

/// `[database.sync_runtime_artifacts_db]` as WSO2 writes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wso2Database {
    /// `mysql`, or `postgre` / `postgres` / `postgresql`.
    #[serde(rename = "type")]
    pub db_type: String,
    /// `jdbc:mysql://host:3306/db?…` or `jdbc:postgresql://host:5432/db?…`
    /// (a `mysql://` or `postgres://` URL works too).
    pub url: String,
    /// Put into the URL for you, escaped.
    pub username: Option<String>,
    pub password: Option<String>,
    /// The JDBC driver class: accepted, not needed.
    pub driver: Option<String>,
    /// Accepted for compatibility and ignored.
    #[serde(rename = "validationQuery")]
    pub validation_query: Option<String>,
}

impl Wso2Database {
    /// The storage the section names; errors name `key` and its fields.
    pub fn storage_url(&self, key: &str) -> Result<StorageUrl, ConfigError> {
        let kind = match self.db_type.to_ascii_lowercase().as_str() {
            "postgre" | "postgres" | "postgresql" => "postgres",
            "mysql" | "mariadb" => "mysql",
            _ => {
                return Err(ConfigError::invalid(
                    format!("{key}.type"),
                    format!(
                        "{:?} is not supported; use \"mysql\", \"postgre\", \"postgres\" or \"postgresql\"",
                        self.db_type
                    ),
                ));
            }
        };
        let url_key = format!("{key}.url");
        let url = if self.url.trim_start().starts_with("jdbc:") {
            StorageUrl::from_jdbc(
                &url_key,
                &self.url,
                self.username.as_deref(),
                self.password.as_deref(),
            )?
        } else {
            let parsed = StorageUrl::parse(&url_key, &self.url)?;
            if self.username.is_some() || self.password.is_some() {
                // A plain URL carries its own credentials.
                return Err(ConfigError::invalid(
                    format!("{key}.username"),
                    "username and password go with a jdbc: URL; a postgres:// or mysql:// URL carries its own",
                ));
            }
            parsed
        };
        let matches = matches!(
            (&url, kind),
            (StorageUrl::Postgres(_), "postgres") | (StorageUrl::MySql(_), "mysql")
        );
        if !matches {
            return Err(ConfigError::invalid(
                url_key,
                format!("is a {} URL, but type is {:?}", url.kind(), self.db_type),
            ));
        }
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_backend() {
        assert_eq!(
            StorageUrl::parse("k", "postgresql://u@h/db").unwrap(),
            StorageUrl::Postgres("postgres://u@h/db".into())
        );
        assert_eq!(
            StorageUrl::parse("k", "mysql://root@127.0.0.1:3306/test").unwrap(),
            StorageUrl::MySql("mysql://root@127.0.0.1:3306/test".into())
        );
        assert_eq!(
            StorageUrl::parse("k", "sqlite:///var/lib/a.db").unwrap(),
            StorageUrl::Sqlite("/var/lib/a.db".into())
        );
        assert_eq!(
            StorageUrl::parse("k", "sqlite://data/a.db").unwrap(),
            StorageUrl::Sqlite("data/a.db".into())
        );
        let err = StorageUrl::parse("database.url", "redis://u:secret@h/0")
            .unwrap_err()
            .to_string();
        assert!(err.contains("database.url"), "{err}");
        assert!(!err.contains("secret"), "{err}");
        assert!(StorageUrl::parse("k", "sqlite://:memory:").is_err());
        assert!(StorageUrl::parse("k", "postgres://").is_err());
    }

    #[test]
    fn the_wso2_example_block_works_as_written() {
        let section = Wso2Database {
            db_type: "mysql".into(),
            url: "jdbc:mysql://localhost:3306/WSO2AS_DB".into(),
            username: Some("wso2carbon".into()),
            password: Some("wso2carbon".into()),
            driver: Some("com.mysql.cj.jdbc.Driver".into()),
            validation_query: None,
        };
        assert_eq!(
            section
                .storage_url("database.sync_runtime_artifacts_db")
                .unwrap(),
            StorageUrl::MySql("mysql://wso2carbon:wso2carbon@localhost:3306/WSO2AS_DB".into())
        );
    }

    #[test]
    fn credentials_are_escaped_and_params_translated() {
        let url = StorageUrl::from_jdbc(
            "k",
            "jdbc:mysql://db:3306/apim?useSSL=false&autoReconnect=true&characterEncoding=utf8mb4",
            Some("svc"),
            Some("p@ss:w/rd"),
        )
        .unwrap();
        assert_eq!(
            url,
            StorageUrl::MySql(
                "mysql://svc:p%40ss%3Aw%2Frd@db:3306/apim?ssl-mode=disabled&charset=utf8mb4".into()
            )
        );
        let url = StorageUrl::from_jdbc(
            "k",
            "jdbc:postgresql://db:5432/apim?sslmode=require&loginTimeout=5",
            Some("wso2"),
            Some("p@ss"),
        )
        .unwrap();
        assert_eq!(
            url,
            StorageUrl::Postgres("postgres://wso2:p%40ss@db:5432/apim?sslmode=require".into())
        );
    }

    #[test]
    fn bad_sections_name_the_key() {
        let mut section = Wso2Database {
            db_type: "oracle".into(),
            url: "jdbc:oracle:thin:@db:1521/x".into(),
            username: None,
            password: None,
            driver: None,
            validation_query: None,
        };
        let err = section
            .storage_url("database.sync_runtime_artifacts_db")
            .unwrap_err();
        assert!(
            err.to_string().contains("sync_runtime_artifacts_db.type"),
            "{err}"
        );
        section.db_type = "mysql".into();
        for bad in [
            "jdbc:mysql:/db:3306/x",
            "jdbc:mysql://db:port/x",
            "jdbc:mysql://db:3306",
            "jdbc:mysql://u:p@db/x",
            "jdbc:postgresql://db/x",
        ] {
            section.url = bad.into();
            let err = section
                .storage_url("database.sync_runtime_artifacts_db")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("sync_runtime_artifacts_db.url"),
                "{bad}: {err}"
            );
        }
    }
}
