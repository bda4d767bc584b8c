//! `[[apim.gateway.environment]]` as WSO2 writes it, and what it becomes
//! with `publish_directly_to_gateway = true`: the gateways the publisher
//! pushes each label's deploys to.

use std::collections::BTreeMap;
use std::time::Duration;

use artisync_config::{self as config, ConfigError};
use artisync_domain::GatewayLabel;
use serde::Deserialize;

const KEY: &str = "apim.gateway.environment";

/// WSO2's keys of an environment that artisync accepts and does not use
/// (the developer portal's display, the gateway's public endpoints, and
/// the SOAP admin credentials, which `token` replaces).
const WSO2_KEYS: &[&str] = &[
    "type",
    "gateway_type",
    "provider",
    "display_name",
    "display_in_api_console",
    "description",
    "show_as_token_endpoint_url",
    "username",
    "password",
    "http_endpoint",
    "https_endpoint",
    "ws_endpoint",
    "wss_endpoint",
    "websub_event_receiver_http_endpoint",
    "websub_event_receiver_https_endpoint",
    "virtual_host",
];

/// One `[[apim.gateway.environment]]`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawEnvironment {
    /// The environment: the gateway label whose deploys go to this gateway.
    pub name: Option<String>,
    /// Base URL of the gateway's admin API (`http://host:9600`). Several
    /// environments with the same `name` are several gateways of it.
    pub service_url: Option<String>,
    /// Bearer token of that admin API (the gateway's `admin_token`).
    pub token: Option<String>,
    /// WSO2's other keys ([`WSO2_KEYS`]): accepted, not used.
    #[serde(flatten)]
    pub wso2: BTreeMap<String, serde_json::Value>,
}

/// `[apim.gateway]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApimGateway {
    #[serde(default)]
    pub environment: Vec<RawEnvironment>,
}

/// A gateway the publisher pushes to, with the labels it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushGateway {
    pub service_url: String,
    pub token: String,
    pub labels: Vec<GatewayLabel>,
}

/// Direct publishing, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectPush {
    pub gateways: Vec<PushGateway>,
    /// How often every gateway is compared with the desired state even
    /// when nothing changed (a gateway that lost its disk, say).
    pub resync_interval: Duration,
    /// How long one call to a gateway may take.
    pub timeout: Duration,
}

/// The gateways of `environments`, one per `service_url`, with the labels
/// of every environment that names it.
pub fn push_gateways(environments: &[RawEnvironment]) -> Result<Vec<PushGateway>, ConfigError> {
    if environments.is_empty() {
        return Err(ConfigError::invalid(
            KEY,
            "publish_directly_to_gateway = true needs at least one [[apim.gateway.environment]] with name, service_url and token",
        ));
    }
    let mut gateways: Vec<PushGateway> = Vec::new();
    for (i, env) in environments.iter().enumerate() {
        let key = |field: &str| format!("{KEY}[{i}].{field}");
        if let Some(unknown) = env.wso2.keys().find(|k| !WSO2_KEYS.contains(&k.as_str())) {
            return Err(ConfigError::invalid(
                key(unknown),
                "is not a key of [[apim.gateway.environment]]",
            ));
        }
        let name = env
            .name
            .as_deref()
            .ok_or_else(|| ConfigError::invalid(key("name"), "is required"))?;
        let label = GatewayLabel::parse(name)
            .map_err(|e| ConfigError::invalid(key("name"), e.to_string()))?;
        let raw_url = env.service_url.as_deref().ok_or_else(|| {
            ConfigError::invalid(
                key("service_url"),
                "is required (the gateway's admin API URL)",
            )
        })?;
        let service_url = config::url_with_scheme(
            &key("service_url"),
            raw_url.trim_end_matches('/'),
            // The push client speaks plain HTTP only (see the README).
            &["http"],
        )?;
        let token = match env.token.as_deref() {
            Some(t) => {
                config::check_token(&key("token"), t)?;
                t.to_owned()
            }
            None => {
                return Err(ConfigError::invalid(
                    key("token"),
                    "is required (the gateway's admin_token)",
                ));
            }
        };
        match gateways.iter_mut().find(|g| g.service_url == service_url) {
            Some(gateway) => {
                if gateway.token != token {
                    return Err(ConfigError::invalid(
                        key("token"),
                        "differs from the token of an earlier environment with the same service_url",
                    ));
                }
                if !gateway.labels.contains(&label) {
                    gateway.labels.push(label);
                }
            }
            None => gateways.push(PushGateway {
                service_url,
                token,
                labels: vec![label],
            }),
        }
    }
    Ok(gateways)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str, url: &str, token: &str) -> RawEnvironment {
        RawEnvironment {
            name: Some(name.into()),
            service_url: Some(url.into()),
            token: Some(token.into()),
            wso2: BTreeMap::new(),
        }
    }

    #[test]
    fn environments_with_one_url_are_one_gateway() {
        let gateways = push_gateways(&[
            env("Default", "http://gw-1:9600/", "admin-secret-0123456"),
            env("Default", "http://gw-2:9600", "admin-secret-0123456"),
            env("Internal", "http://gw-1:9600", "admin-secret-0123456"),
        ])
        .unwrap();
        assert_eq!(gateways.len(), 2);
        assert_eq!(gateways[0].service_url, "http://gw-1:9600");
        let labels: Vec<&str> = gateways[0].labels.iter().map(|l| l.as_str()).collect();
        assert_eq!(labels, ["Default", "Internal"]);
        assert_eq!(gateways[1].labels.len(), 1);
    }

    #[test]
    fn wso2_keys_are_accepted_and_typos_are_not() {
        let mut e = env("Default", "http://gw-1:9600", "admin-secret-0123456");
        e.wso2.insert("type".into(), serde_json::json!("hybrid"));
        e.wso2.insert(
            "https_endpoint".into(),
            serde_json::json!("https://localhost:8243"),
        );
        assert!(push_gateways(std::slice::from_ref(&e)).is_ok());
        e.wso2.insert("servic_url".into(), serde_json::json!("x"));
        let err = push_gateways(&[e]).unwrap_err().to_string();
        assert!(
            err.contains("apim.gateway.environment[0].servic_url"),
            "{err}"
        );
    }

    #[test]
    fn each_missing_or_bad_field_is_named() {
        let cases = [
            (
                RawEnvironment {
                    name: None,
                    ..env("x", "http://gw:9600", "admin-secret-0123456")
                },
                "[0].name",
            ),
            (
                env("bad\nlabel", "http://gw:9600", "admin-secret-0123456"),
                "[0].name",
            ),
            (
                RawEnvironment {
                    service_url: None,
                    ..env("x", "http://gw:9600", "admin-secret-0123456")
                },
                "[0].service_url",
            ),
            (
                env("x", "ftp://gw:9600", "admin-secret-0123456"),
                "[0].service_url",
            ),
            (
                env("x", "https://gw:9600", "admin-secret-0123456"),
                "[0].service_url",
            ),
            (
                RawEnvironment {
                    token: None,
                    ..env("x", "http://gw:9600", "admin-secret-0123456")
                },
                "[0].token",
            ),
            (env("x", "http://gw:9600", "short"), "[0].token"),
        ];
        for (e, field) in cases {
            let err = push_gateways(&[e]).unwrap_err().to_string();
            assert!(err.contains(&format!("{KEY}{field}")), "{field}: {err}");
        }
        let err = push_gateways(&[]).unwrap_err().to_string();
        assert!(err.contains(KEY), "{err}");
        let err = push_gateways(&[
            env("a", "http://gw:9600", "admin-secret-0123456"),
            env("b", "http://gw:9600", "other-secret"),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("[1].token"), "{err}");
    }
}
