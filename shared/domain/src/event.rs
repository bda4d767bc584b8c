//! The deployment event published on RabbitMQ (DESIGN.md §5).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{ApiId, GatewayLabel, Revision, Sha256Digest};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventType {
    DeployApiInGateway,
    RemoveApiFromGateway,
}

/// One change of what a set of labels should run. Gateways treat it as a
/// hint: they re-read the desired state from the traffic manager, so a
/// duplicate or out-of-order event can never make them go backwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentEvent {
    pub event_id: Uuid,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub timestamp: DateTime<Utc>,
    pub api_id: ApiId,
    pub name: String,
    pub version: String,
    pub context: String,
    pub revision: Revision,
    pub sha256: Sha256Digest,
    pub gateway_labels: Vec<GatewayLabel>,
    /// Global, monotonic number of the change.
    pub sequence: i64,
    /// The artifact of `revision` itself, on deploy events when it is small
    /// (the publisher's `inline_artifact_max_bytes`). A gateway that gets
    /// it checks it against `sha256` and deploys without fetching it from
    /// the traffic manager; without it (or on any doubt) it fetches.
    /// Not part of the minimal contract: consumers must not require it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
    /// The publisher's Ed25519 signature of [`DeploymentEvent::signed_content`]
    /// (base64), when it has a `signing_key_file`. A gateway with
    /// `publisher_public_key` refuses events without a valid one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

impl DeploymentEvent {
    /// What a publisher signs: which change this is and what it deploys
    /// where (the type, API, revision, artifact digest, labels, change
    /// number and time), in one canonical encoding. The artifact itself is
    /// covered by its digest, which every gateway checks.
    pub fn signed_content(&self) -> Vec<u8> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Signed<'a> {
            v: u8,
            #[serde(rename = "type")]
            event_type: EventType,
            api_id: &'a ApiId,
            revision: Revision,
            sha256: &'a Sha256Digest,
            labels: Vec<&'a str>,
            sequence: i64,
            timestamp: &'a DateTime<Utc>,
        }
        let mut labels: Vec<&str> = self.gateway_labels.iter().map(|l| l.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        serde_json::to_vec(&Signed {
            v: 1,
            event_type: self.event_type,
            api_id: &self.api_id,
            revision: self.revision,
            sha256: &self.sha256,
            labels,
            sequence: self.sequence,
            timestamp: &self.timestamp,
        })
        .unwrap_or_default()
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serialising this plain struct cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_contract_field_names() {
        let event = DeploymentEvent {
            event_id: Uuid::new_v4(),
            event_type: EventType::DeployApiInGateway,
            timestamp: Utc::now(),
            api_id: ApiId::new_random(),
            name: "Pizza".into(),
            version: "1.0.0".into(),
            context: "/pizza/1.0.0".into(),
            revision: Revision::FIRST,
            sha256: Sha256Digest::of(b"x"),
            gateway_labels: vec![GatewayLabel::parse("Production and Sandbox").unwrap()],
            sequence: 42,
            artifact: None,
            signature: None,
        };
        let json: serde_json::Value = serde_json::from_slice(&event.to_json()).unwrap();
        for key in [
            "eventId",
            "type",
            "timestamp",
            "apiId",
            "name",
            "version",
            "context",
            "revision",
            "sha256",
            "gatewayLabels",
            "sequence",
        ] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        assert_eq!(json["type"], "DEPLOY_API_IN_GATEWAY");
        assert!(json.get("artifact").is_none(), "absent, not null");
        assert_eq!(DeploymentEvent::from_json(&event.to_json()).unwrap(), event);

        let inline = DeploymentEvent {
            artifact: Some("<api/>".into()),
            ..event
        };
        let json: serde_json::Value = serde_json::from_slice(&inline.to_json()).unwrap();
        assert_eq!(json["artifact"], "<api/>");
        assert_eq!(
            DeploymentEvent::from_json(&inline.to_json()).unwrap(),
            inline
        );
    }

    #[test]
    fn rejects_bad_labels_and_revisions() {
        let bad = r#"{"eventId":"6f1c1b1e-9c43-4d4e-8f5d-2a3e1b1c1d1e","type":"REMOVE_API_FROM_GATEWAY","timestamp":"2026-01-01T00:00:00Z","apiId":"6f1c1b1e-9c43-4d4e-8f5d-2a3e1b1c1d1e","name":"a","version":"","context":"/a","revision":0,"sha256":"00","gatewayLabels":[],"sequence":1}"#;
        assert!(DeploymentEvent::from_json(bad.as_bytes()).is_err());
    }
}
