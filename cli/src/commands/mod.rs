//! The operator's client commands (DESIGN.md §12). Each talks to the
//! publisher REST API only, prints a table or JSON, and ends with an exit
//! code: 0 done, 1 failed (the publisher's message is printed), 2 usage,
//! 3 timed out.

pub mod apis;
pub mod apply;
pub mod import;
pub mod wait;

use std::process::ExitCode;

use serde_json::Value;

use crate::connection::{Publisher, encode};

/// A node failed, or the publisher refused the change.
pub const EXIT_FAILED: u8 = 1;
/// The command was used wrongly (bad arguments, no publisher known).
pub const EXIT_USAGE: u8 = 2;
/// Waiting ran out of time.
pub const EXIT_TIMEOUT: u8 = 3;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The publisher answered with an error.
    #[error("{what}: the publisher answered {status}: {message}")]
    Api {
        what: String,
        status: u16,
        message: String,
    },
    #[error("{0}")]
    Unreachable(String),
    #[error("{0}")]
    Usage(String),
    #[error("{path}: {message}")]
    File { path: String, message: String },
    /// The work ran, and part of it failed (already reported).
    #[error("{0}")]
    Failed(String),
    #[error("{0}")]
    Timeout(String),
}

impl CommandError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::Usage(_) => EXIT_USAGE,
            CommandError::Timeout(_) => EXIT_TIMEOUT,
            _ => EXIT_FAILED,
        }
    }

    pub(crate) fn file(path: &std::path::Path, message: impl std::fmt::Display) -> Self {
        CommandError::File {
            path: path.display().to_string(),
            message: message.to_string(),
        }
    }
}

/// Runs a command and turns its end into the process's exit code.
pub async fn finish(
    name: &str,
    result: impl std::future::Future<Output = Result<(), CommandError>>,
) -> ExitCode {
    match result.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("artisync {name}: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// An API as the operator names it: its id, or `name:version`.
pub async fn resolve_api(publisher: &Publisher, api: &str) -> Result<Value, CommandError> {
    if uuid::Uuid::parse_str(api).is_ok() {
        return publisher
            .get(
                &format!("/api/v1/apis/{}", encode(api)),
                &format!("API {api}"),
            )
            .await;
    }
    let Some((name, version)) = api.rsplit_once(':') else {
        return Err(CommandError::Usage(format!(
            "{api:?} is neither an API id nor name:version"
        )));
    };
    let list = publisher.get("/api/v1/apis", "list APIs").await?;
    let found = list["apis"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["name"] == name && a["version"] == version);
    match found {
        Some(api) => {
            let id = api["id"].as_str().unwrap_or_default();
            publisher
                .get(
                    &format!("/api/v1/apis/{}", encode(id)),
                    &format!("API {id}"),
                )
                .await
        }
        None => Err(CommandError::Api {
            what: format!("API {api}"),
            status: 404,
            message: format!("no API named {name:?} with version {version:?} is published"),
        }),
    }
}

/// A `30s`, `500ms`, `2m` or plain-seconds duration.
pub fn parse_duration(raw: &str) -> Result<std::time::Duration, String> {
    let raw = raw.trim();
    let (number, unit) = match raw.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => raw.split_at(i),
        None => (raw, "s"),
    };
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{raw:?} is not a duration such as 30s, 500ms or 2m"))?;
    let seconds = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{raw:?}: unknown unit {unit:?}; use ms, s, m or h")),
    };
    if !seconds.is_finite() || !(0.0..=86_400.0 * 7.0).contains(&seconds) {
        return Err(format!("{raw:?} is out of range"));
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations_take_the_usual_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert!(parse_duration("5 weeks").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
