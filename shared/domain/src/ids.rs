//! Domain identifiers, parsed once at the edge.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use thiserror::Error;
use uuid::Uuid;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum IdError {
    #[error("api id {0:?} is not a UUID")]
    ApiId(String),
    #[error("gateway label {0:?} is invalid: {1}")]
    Label(String, &'static str),
    #[error("revision {0:?} is invalid: revisions are whole numbers from 1")]
    Revision(String),
    #[error("sha256 digest {0:?} is invalid: expected 64 lowercase hex characters")]
    Digest(String),
    #[error("node id {0:?} is invalid: {1}")]
    NodeId(String, &'static str),
}

/// The identity of an API across revisions (a UUID chosen by the publisher).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ApiId(Uuid);

impl ApiId {
    pub fn new_random() -> Self {
        ApiId(Uuid::new_v4())
    }
    pub fn from_uuid(id: Uuid) -> Self {
        ApiId(id)
    }
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl FromStr for ApiId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s)
            .map(ApiId)
            .map_err(|_| IdError::ApiId(s.to_owned()))
    }
}

impl fmt::Display for ApiId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A gateway label ("Production and Sandbox"). Labels are AMQP routing keys,
/// so they are limited to 255 bytes; spaces are allowed, control characters
/// and surrounding white space are not.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct GatewayLabel(String);

impl GatewayLabel {
    pub const MAX_BYTES: usize = 255;

    pub fn parse(raw: &str) -> Result<Self, IdError> {
        let fail = |why| Err(IdError::Label(raw.to_owned(), why));
        if raw.is_empty() {
            return fail("it is empty");
        }
        if raw.len() > Self::MAX_BYTES {
            return fail("it is longer than 255 bytes");
        }
        if raw.trim() != raw {
            return fail("it starts or ends with white space");
        }
        if raw.chars().any(char::is_control) {
            return fail("it contains a control character");
        }
        Ok(GatewayLabel(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for GatewayLabel {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        GatewayLabel::parse(s)
    }
}

impl<'de> Deserialize<'de> for GatewayLabel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        GatewayLabel::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for GatewayLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A revision number of an API: 1 for the first artifact, +1 for every
/// artifact with a new digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Revision(u32);

impl Revision {
    pub const FIRST: Revision = Revision(1);

    pub fn new(n: i64) -> Result<Self, IdError> {
        u32::try_from(n)
            .ok()
            .filter(|n| *n >= 1)
            .map(Revision)
            .ok_or_else(|| IdError::Revision(n.to_string()))
    }
    pub fn get(self) -> u32 {
        self.0
    }
    pub fn as_i32(self) -> i32 {
        // Revisions come from an i32 column; the cast is lossless within it.
        i32::try_from(self.0).unwrap_or(i32::MAX)
    }
    pub fn next(self) -> Revision {
        Revision(self.0.saturating_add(1))
    }
}

impl FromStr for Revision {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim()
            .parse::<i64>()
            .map_err(|_| IdError::Revision(s.to_owned()))
            .and_then(Revision::new)
    }
}

impl<'de> Deserialize<'de> for Revision {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        Revision::new(n).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A SHA-256 digest, shown as 64 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Digest([u8; 32]);

impl Sha256Digest {
    pub fn of(bytes: &[u8]) -> Self {
        Sha256Digest(Sha256::digest(bytes).into())
    }
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        let fail = || IdError::Digest(raw.to_owned());
        if raw.len() != 64 || raw.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(fail());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(raw, &mut out).map_err(|_| fail())?;
        Ok(Sha256Digest(out))
    }
    pub fn to_hex(&self) -> String {
        self.with_hex(str::to_owned)
    }

    /// Hands the hex form to `f` from a stack buffer: serializing and
    /// displaying digests (manifests, status reports of thousands of APIs)
    /// allocates nothing.
    fn with_hex<T>(&self, f: impl FnOnce(&str) -> T) -> T {
        let mut buf = [0u8; 64];
        // Cannot fail: the buffer is exactly twice the digest's length,
        // and hex digits are ASCII.
        let hex = hex::encode_to_slice(self.0, &mut buf)
            .ok()
            .and_then(|()| std::str::from_utf8(&buf).ok())
            .unwrap_or_default();
        f(hex)
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({})", self.to_hex())
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.with_hex(|hex| f.write_str(hex))
    }
}

impl FromStr for Sha256Digest {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Sha256Digest::parse(s)
    }
}

impl Serialize for Sha256Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.with_hex(|hex| s.serialize_str(hex))
    }
}

impl<'de> Deserialize<'de> for Sha256Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Sha256Digest::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// A gateway node's id; it names the node's queue, so it is restricted to
/// characters that are safe in AMQP queue names and file names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct NodeId(String);

impl NodeId {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        let fail = |why| Err(IdError::NodeId(raw.to_owned(), why));
        if raw.is_empty() {
            return fail("it is empty");
        }
        if raw.len() > 128 {
            return fail("it is longer than 128 bytes");
        }
        if !raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return fail("only ASCII letters, digits, '-', '_' and '.' are allowed");
        }
        Ok(NodeId(raw.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        NodeId::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_allow_spaces_but_not_edges_or_controls() {
        assert!(GatewayLabel::parse("Production and Sandbox").is_ok());
        assert!(GatewayLabel::parse("Label1").is_ok());
        assert!(GatewayLabel::parse("").is_err());
        assert!(GatewayLabel::parse(" padded").is_err());
        assert!(GatewayLabel::parse("tab\there").is_err());
        assert!(GatewayLabel::parse(&"x".repeat(256)).is_err());
        assert!(GatewayLabel::parse(&"x".repeat(255)).is_ok());
    }

    #[test]
    fn revisions_start_at_one() {
        assert_eq!(Revision::new(1), Ok(Revision::FIRST));
        assert!(Revision::new(0).is_err());
        assert!(Revision::new(-3).is_err());
        assert!(Revision::new(i64::from(u32::MAX) + 1).is_err());
        assert_eq!("7".parse::<Revision>().map(Revision::get), Ok(7));
        assert!("seven".parse::<Revision>().is_err());
        assert!(serde_json::from_str::<Revision>("0").is_err());
    }

    #[test]
    fn digests_are_lowercase_hex_and_round_trip() {
        let d = Sha256Digest::of(b"abc");
        assert_eq!(
            d.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Sha256Digest::parse(&d.to_hex()), Ok(d));
        assert!(Sha256Digest::parse(&d.to_hex().to_uppercase()).is_err());
        assert!(Sha256Digest::parse("abc").is_err());
        assert!(Sha256Digest::parse(&"g".repeat(64)).is_err());
    }

    #[test]
    fn api_ids_are_uuids() {
        let id = ApiId::new_random();
        assert_eq!(id.to_string().parse::<ApiId>(), Ok(id));
        assert!("not-a-uuid".parse::<ApiId>().is_err());
    }

    #[test]
    fn node_ids_are_safe_for_queue_and_file_names() {
        assert!(NodeId::parse("gw-1").is_ok());
        assert!(NodeId::parse("gw.eu_1").is_ok());
        assert!(NodeId::parse("").is_err());
        assert!(NodeId::parse("gw/1").is_err());
        assert!(NodeId::parse("gw 1").is_err());
    }
}
