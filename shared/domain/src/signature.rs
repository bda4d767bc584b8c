//! Signed changes (DESIGN.md §16): the publisher signs every event it
//! publishes with an Ed25519 key, and a gateway that knows the publisher's
//! public key deploys nothing from an event whose signature is missing or
//! wrong. A holder of broker credentials can then neither inject nor alter
//! a deployment.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use crate::event::DeploymentEvent;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error(
        "is not an Ed25519 private key in PKCS#8 PEM (`openssl genpkey -algorithm ed25519`): {0}"
    )]
    Private(String),
    #[error(
        "is not an Ed25519 public key: give the PEM of `openssl pkey -pubout`, or the 32 raw bytes in base64"
    )]
    Public,
}

/// Why an event's signature does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the event carries no publisher signature")]
    Missing,
    #[error("the event's signature is not 64 bytes of base64")]
    Malformed,
    #[error("the event's signature does not match its content and the publisher's key")]
    Invalid,
}

/// The publisher's signing key.
pub struct EventSigningKey(SigningKey);

impl EventSigningKey {
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        SigningKey::from_pkcs8_pem(pem)
            .map(EventSigningKey)
            .map_err(|e| KeyError::Private(e.to_string()))
    }

    /// From the 32-byte seed (tests, key generation).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        EventSigningKey(SigningKey::from_bytes(&seed))
    }

    /// The key in PKCS#8 PEM, as `signing_key_file` holds it.
    pub fn to_pem(&self) -> Result<String, KeyError> {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
        self.0
            .to_pkcs8_pem(LineEnding::LF)
            .map(|pem| pem.to_string())
            .map_err(|e| KeyError::Private(e.to_string()))
    }

    /// The public key, base64 of its 32 bytes (`publisher_public_key`).
    pub fn public_key_base64(&self) -> String {
        STANDARD.encode(self.0.verifying_key().as_bytes())
    }

    /// Signs `event` in place.
    pub fn sign(&self, event: &mut DeploymentEvent) {
        let signature = self.0.sign(&event.signed_content());
        event.signature = Some(STANDARD.encode(signature.to_bytes()));
    }
}

impl std::fmt::Debug for EventSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventSigningKey(..)")
    }
}

/// The publisher's public key, as a gateway knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublisherPublicKey(VerifyingKey);

impl PublisherPublicKey {
    /// A PEM public key (`-----BEGIN PUBLIC KEY-----`), or the 32 raw bytes
    /// in base64.
    pub fn parse(raw: &str) -> Result<Self, KeyError> {
        let raw = raw.trim();
        if raw.starts_with("-----BEGIN") {
            return VerifyingKey::from_public_key_pem(raw)
                .map(PublisherPublicKey)
                .map_err(|_| KeyError::Public);
        }
        let bytes: [u8; 32] = STANDARD
            .decode(raw)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(KeyError::Public)?;
        VerifyingKey::from_bytes(&bytes)
            .map(PublisherPublicKey)
            .map_err(|_| KeyError::Public)
    }

    pub fn verify(&self, event: &DeploymentEvent) -> Result<(), SignatureError> {
        let encoded = event.signature.as_deref().ok_or(SignatureError::Missing)?;
        let bytes: [u8; 64] = STANDARD
            .decode(encoded)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(SignatureError::Malformed)?;
        self.0
            .verify(&event.signed_content(), &Signature::from_bytes(&bytes))
            .map_err(|_| SignatureError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventType;
    use crate::{ApiId, GatewayLabel, Revision, Sha256Digest};

    fn event() -> DeploymentEvent {
        DeploymentEvent {
            event_id: uuid::Uuid::new_v4(),
            event_type: EventType::DeployApiInGateway,
            timestamp: chrono::Utc::now(),
            api_id: ApiId::new_random(),
            name: "A".into(),
            version: "1".into(),
            context: "/a".into(),
            revision: Revision::FIRST,
            sha256: Sha256Digest::of(b"<api/>"),
            gateway_labels: vec![GatewayLabel::parse("Label1").unwrap()],
            sequence: 7,
            artifact: Some("<api/>".into()),
            signature: None,
        }
    }

    #[test]
    fn a_signed_event_verifies_after_a_round_trip_and_any_change_breaks_it() {
        let key = EventSigningKey::from_seed([7; 32]);
        let public = PublisherPublicKey::parse(&key.public_key_base64()).unwrap();
        let mut e = event();
        assert_eq!(public.verify(&e), Err(SignatureError::Missing));
        key.sign(&mut e);
        let e = DeploymentEvent::from_json(&e.to_json()).unwrap();
        assert_eq!(public.verify(&e), Ok(()));

        type Tamper = Box<dyn Fn(&mut DeploymentEvent)>;
        let tampered: Vec<Tamper> = vec![
            Box::new(|e| e.revision = Revision::new(999).unwrap()),
            Box::new(|e| e.sha256 = Sha256Digest::of(b"forged")),
            Box::new(|e| e.api_id = ApiId::new_random()),
            Box::new(|e| e.sequence += 1),
            Box::new(|e| e.gateway_labels.push(GatewayLabel::parse("Other").unwrap())),
            Box::new(|e| e.timestamp += chrono::Duration::hours(1)),
            Box::new(|e| e.event_type = EventType::RemoveApiFromGateway),
        ];
        for tamper in tampered {
            let mut forged = e.clone();
            tamper(&mut forged);
            assert_eq!(public.verify(&forged), Err(SignatureError::Invalid));
        }
        let mut garbled = e.clone();
        garbled.signature = Some("not base64!".into());
        assert_eq!(public.verify(&garbled), Err(SignatureError::Malformed));
        // Another publisher's key does not verify it.
        let other = EventSigningKey::from_seed([8; 32]);
        let other = PublisherPublicKey::parse(&other.public_key_base64()).unwrap();
        assert_eq!(other.verify(&e), Err(SignatureError::Invalid));
    }

    #[test]
    fn keys_parse_from_pem_or_base64_and_garbage_is_refused() {
        use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey, spki::der::pem::LineEnding};
        let signing = SigningKey::from_bytes(&[3; 32]);
        let pem = signing.to_pkcs8_pem(LineEnding::LF).unwrap();
        let key = EventSigningKey::from_pem(&pem).unwrap();
        let again = EventSigningKey::from_pem(&key.to_pem().unwrap()).unwrap();
        assert_eq!(again.public_key_base64(), key.public_key_base64());
        let public_pem = signing
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        assert_eq!(
            PublisherPublicKey::parse(&public_pem).unwrap(),
            PublisherPublicKey::parse(&key.public_key_base64()).unwrap()
        );
        assert!(
            EventSigningKey::from_pem(
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"
            )
            .is_err()
        );
        for bad in [
            "",
            "abc",
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
            &STANDARD.encode([1u8; 31]),
        ] {
            assert_eq!(
                PublisherPublicKey::parse(bad),
                Err(KeyError::Public),
                "{bad:?}"
            );
        }
    }
}
