//! Where the client finds the publisher and its token: `--url` /
//! `ARTISYNC_URL` and `--token` / `ARTISYNC_TOKEN`, else the state file
//! that `artisync up` writes.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::commands::CommandError;

/// The state file `artisync up` writes by default.
pub const DEFAULT_STATE_FILE: &str = ".artisync/state.json";

#[derive(Debug, Clone, clap::Args)]
/// Global within the command that flattens it, so that a nested
/// subcommand (`import wso2`) takes them after its own name.
pub struct ConnectionArgs {
    /// The publisher's URL [default: from the state file of `artisync up`].
    #[arg(long, env = "ARTISYNC_URL", global = true)]
    pub url: Option<String>,
    /// The publisher's bearer token [default: from the state file].
    #[arg(long, env = "ARTISYNC_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// The state file `artisync up` wrote.
    #[arg(long, env = "ARTISYNC_STATE_FILE", default_value = DEFAULT_STATE_FILE, global = true)]
    pub state_file: PathBuf,
}

impl ConnectionArgs {
    /// The publisher to talk to.
    pub fn connect(&self) -> Result<Publisher, CommandError> {
        let (url, token) = match (&self.url, &self.token) {
            (Some(url), Some(token)) => (url.clone(), token.clone()),
            _ => {
                let state = std::fs::read(&self.state_file).map_err(|e| {
                    CommandError::Usage(format!(
                        "no publisher given: pass --url and --token (or ARTISYNC_URL and ARTISYNC_TOKEN), \
                         or run `artisync up`, which writes {} ({e})",
                        self.state_file.display()
                    ))
                })?;
                let state: Value = serde_json::from_slice(&state).map_err(|e| {
                    CommandError::Usage(format!(
                        "{} is not a state file of `artisync up`: {e}",
                        self.state_file.display()
                    ))
                })?;
                let from_state = |field: &str| {
                    state["publisher"][field]
                        .as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| {
                            CommandError::Usage(format!(
                                "{} has no publisher.{field}",
                                self.state_file.display()
                            ))
                        })
                };
                (
                    match &self.url {
                        Some(url) => url.clone(),
                        None => from_state("url")?,
                    },
                    match &self.token {
                        Some(token) => token.clone(),
                        None => from_state("token")?,
                    },
                )
            }
        };
        let base = url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(CommandError::Usage(format!(
                "--url {url:?} must start with http:// or https://"
            )));
        }
        Publisher::new(base, token)
    }
}

/// The publisher REST API, as the client uses it.
#[derive(Clone)]
pub struct Publisher {
    pub base: String,
    token: String,
    pub(crate) http: reqwest::Client,
}

impl Publisher {
    pub fn new(base: String, token: String) -> Result<Self, CommandError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| CommandError::Usage(format!("cannot build an HTTP client: {e}")))?;
        Ok(Publisher { base, token, http })
    }

    pub(crate) fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    /// Sends a request and reads its JSON answer; a non-2xx answer becomes
    /// an error with the publisher's message.
    pub async fn call(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<Value, CommandError> {
        let response = request
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .map_err(|e| CommandError::transport(what, &self.base, e))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| CommandError::transport(what, &self.base, e))?;
        if !status.is_success() {
            return Err(CommandError::from_answer(what, status, &text));
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn get(&self, path: &str, what: &str) -> Result<Value, CommandError> {
        self.call(self.request(Method::GET, path), what).await
    }

    /// The raw bytes of a GET (artifacts).
    pub async fn get_bytes(&self, path: &str, what: &str) -> Result<Vec<u8>, CommandError> {
        let response = self
            .request(Method::GET, path)
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .map_err(|e| CommandError::transport(what, &self.base, e))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| CommandError::transport(what, &self.base, e))?;
        if !status.is_success() {
            return Err(CommandError::from_answer(
                what,
                status,
                &String::from_utf8_lossy(&bytes),
            ));
        }
        Ok(bytes.to_vec())
    }
}

impl CommandError {
    pub(crate) fn transport(what: &str, base: &str, e: reqwest::Error) -> Self {
        CommandError::Unreachable(format!("{what}: cannot reach the publisher at {base}: {e}"))
    }

    pub(crate) fn from_answer(what: &str, status: StatusCode, text: &str) -> Self {
        let message = serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| text.trim().to_owned());
        CommandError::Api {
            what: what.to_owned(),
            status: status.as_u16(),
            message,
        }
    }
}

/// Percent-encodes one path segment or query value (labels may contain
/// spaces and slashes).
pub fn encode(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
