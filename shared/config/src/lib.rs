#![forbid(unsafe_code)]
//! Config loading: a TOML file, then environment overrides.
//!
//! Deserialisation (this module) and validation (each binary's settings
//! type) are separate steps; both run before any port is bound.

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::de::DeserializeOwned;
use thiserror::Error;

/// The prefix of generic overrides: `ARTISYNC_GATEWAY__ID=gw-1` sets
/// `gateway.id` (`__` separates nesting levels).
pub const ENV_PREFIX: &str = "ARTISYNC_";

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("config file {path}: {message}")]
    File { path: String, message: String },
    #[error("config: {0}")]
    Parse(String),
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

impl ConfigError {
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Loads `T` from an optional TOML file, then `ARTISYNC_*` variables, then
/// the well-known variables in `aliases` (`("DATABASE_URL", "database.url")`).
pub mod storage;

pub fn load<T: DeserializeOwned>(
    file: Option<&Path>,
    aliases: &[(&str, &str)],
) -> Result<T, ConfigError> {
    let mut figment = Figment::new();
    if let Some(path) = file {
        if !path.is_file() {
            return Err(ConfigError::File {
                path: path.display().to_string(),
                message: "not found or not a file".into(),
            });
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    figment = figment.merge(Env::prefixed(ENV_PREFIX).split("__"));
    for (variable, key) in aliases {
        if let Ok(value) = std::env::var(variable) {
            figment = figment.merge((*key, value));
        }
    }
    figment.extract().map_err(|e| describe(e, file))
}

fn describe(error: figment::Error, file: Option<&Path>) -> ConfigError {
    let mut messages = Vec::new();
    for e in error {
        let key = if e.path.is_empty() {
            String::new()
        } else {
            format!("config key `{}`: ", e.path.join("."))
        };
        let source = match (&e.metadata, file) {
            (Some(meta), _) => format!(" (from {})", meta.name),
            (None, Some(path)) => format!(" (from {})", path.display()),
            (None, None) => String::new(),
        };
        messages.push(format!("{key}{}{source}", e.kind));
    }
    ConfigError::Parse(messages.join("; "))
}

/// Deserialises a list that may also be written as one comma-separated
/// string, as environment variables carry it (`PUBLISHER_TOKENS=a,b`).
pub fn string_or_list<'de, D>(deserializer: D) -> Result<Vec<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(
        match <OneOrMany as serde::Deserialize>::deserialize(deserializer)? {
            OneOrMany::One(s) => s
                .split(',')
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect(),
            OneOrMany::Many(v) => v,
        },
    )
}

/// Parses a `host:port` listen address, naming the key on failure.
pub fn socket_addr(key: &str, raw: &str) -> Result<std::net::SocketAddr, ConfigError> {
    raw.parse().map_err(|_| {
        ConfigError::invalid(
            key,
            format!("{raw:?} is not a socket address such as 0.0.0.0:8280"),
        )
    })
}

/// Checks that a URL has one of the given schemes, naming the key on
/// failure. The error never shows the URL's password.
pub fn url_with_scheme(key: &str, raw: &str, schemes: &[&str]) -> Result<String, ConfigError> {
    let scheme = raw.split_once("://").map(|(s, _)| s);
    match scheme {
        Some(s) if schemes.contains(&s) && raw.len() > s.len() + 3 => Ok(raw.to_owned()),
        _ => Err(ConfigError::invalid(
            key,
            format!(
                "{:?} is not a URL with scheme {}",
                storage::redact(raw),
                schemes.join(" or ")
            ),
        )),
    }
}

/// The shortest accepted bearer token, in bytes.
pub const MIN_TOKEN_BYTES: usize = 16;

/// The placeholder secrets of `.env.example`: a token equal to one of them
/// (or to any value starting with `change-me`) was never replaced and is
/// refused.
pub const PLACEHOLDER_SECRETS: &[&str] = &[
    "change-me",
    "change-me-publisher-token",
    "change-me-gateway-admin-token",
    "change-me-gateway-1-token",
    "change-me-gateway-2-token",
    "change-me-gateway-3-token",
    "change-me-postgres-password",
    "change-me-rabbitmq-password",
    "change-me-mariadb-password",
    "change-me-mariadb-root-password",
];

/// Checks a bearer token from the config: at least [`MIN_TOKEN_BYTES`]
/// bytes and not a placeholder. The error names the key and never shows
/// any part of the token.
pub fn check_token(key: &str, token: &str) -> Result<(), ConfigError> {
    if PLACEHOLDER_SECRETS.contains(&token) || token.starts_with("change-me") {
        return Err(ConfigError::invalid(
            key,
            "is still the placeholder of .env.example; set a random secret \
             (e.g. `openssl rand -hex 32`)",
        ));
    }
    if token.len() < MIN_TOKEN_BYTES {
        return Err(ConfigError::invalid(
            key,
            format!("must be at least {MIN_TOKEN_BYTES} bytes"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        server: Server,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Server {
        port: u16,
    }

    #[test]
    fn type_errors_name_the_key() {
        let dir = std::env::temp_dir().join(format!("artisync-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, "[server]\nport = \"eighty\"\n").unwrap();
        let err = load::<Sample>(Some(&path), &[]).unwrap_err().to_string();
        assert!(err.contains("server.port"), "{err}");
        std::fs::write(&path, "[server]\nport = 80\n").unwrap();
        assert_eq!(load::<Sample>(Some(&path), &[]).unwrap().server.port, 80);
        std::fs::write(&path, "[server]\nport = 80\nprot = 1\n").unwrap();
        let err = load::<Sample>(Some(&path), &[]).unwrap_err().to_string();
        assert!(err.contains("prot"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[derive(Debug, Deserialize)]
    struct Tokens {
        #[serde(deserialize_with = "string_or_list")]
        tokens: Vec<String>,
    }

    #[test]
    fn lists_may_be_comma_separated_strings() {
        let dir = std::env::temp_dir().join(format!("artisync-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, "tokens = \"abc, def\"\n").unwrap();
        assert_eq!(
            load::<Tokens>(Some(&path), &[]).unwrap().tokens,
            ["abc", "def"]
        );
        std::fs::write(&path, "tokens = [\"abc\"]\n").unwrap();
        assert_eq!(load::<Tokens>(Some(&path), &[]).unwrap().tokens, ["abc"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_file_is_an_error() {
        let err = load::<Sample>(Some(Path::new("/nonexistent/x.toml")), &[]).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x.toml"));
    }

    #[test]
    fn urls_and_addresses_are_checked() {
        assert!(socket_addr("a.listen", "0.0.0.0:80").is_ok());
        let err = socket_addr("a.listen", "nowhere").unwrap_err().to_string();
        assert!(err.contains("a.listen"));
        assert!(url_with_scheme("k", "amqp://h:5672/%2f", &["amqp", "amqps"]).is_ok());
        assert!(url_with_scheme("k", "http://h", &["amqp"]).is_err());
        assert!(url_with_scheme("k", "amqp://", &["amqp"]).is_err());
        let err = url_with_scheme("k", "http://user:hunter2-secret@h/", &["amqp"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("k") && !err.contains("hunter2"), "{err}");
        for bad in [
            "postgres:/user:hunter2@h/db",
            "postgre://user:hunter2@h/db",
            "mysql:user:hunter2@h",
        ] {
            let err = storage::StorageUrl::parse("database.url", bad)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("database.url") && !err.contains("hunter2"),
                "{err}"
            );
            let err = url_with_scheme("amqp.url", bad, &["amqp"])
                .unwrap_err()
                .to_string();
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn tokens_are_long_and_not_placeholders() {
        assert!(check_token("k", "0123456789abcdef").is_ok());
        for bad in [
            "",
            "é",
            "éé",
            "short",
            "0123456789abcde",
            "change-me-publisher-token",
        ] {
            let err = check_token("a.token", bad).unwrap_err().to_string();
            assert!(err.contains("a.token"), "{err}");
            if !bad.is_empty() {
                assert!(!err.contains(bad), "{err}");
            }
        }
        // Non-ASCII is counted in bytes and never sliced.
        assert!(check_token("k", &"é".repeat(8)).is_ok());
        assert!(check_token("k", &"é".repeat(7)).is_err());
    }
}
