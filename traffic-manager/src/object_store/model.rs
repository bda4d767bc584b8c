//! Wire shapes of the Object Store v2 REST API and their validation.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::error::ApiError;

/// Longest key, in UTF-8 bytes (Object Store v2's limit).
pub const MAX_KEY_BYTES: usize = 1024;
/// Longest store, partition, organisation or environment id, in UTF-8 bytes
/// (the Persistence Gateway's `VARCHAR(256)`).
pub const MAX_NAME_BYTES: usize = 256;
/// Store TTL bounds: 1 second to 30 days.
pub const MIN_TTL_SECONDS: i64 = 1;
pub const MAX_TTL_SECONDS: i64 = 30 * 24 * 3600;
pub const DEFAULT_PAGE_SIZE: i64 = 25;
pub const MAX_PAGE_SIZE: i64 = 1000;

pub use artisync_ports::object_store::{ItemValue, Store, ValueType};

/// Path segments are already percent-decoded by axum; these checks keep
/// what PostgreSQL `text` cannot hold (NUL) and the schema's limits out.
pub fn validate_name(what: &str, value: &str) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > MAX_NAME_BYTES {
        return Err(ApiError::BadRequest(format!(
            "{what} must be 1 to {MAX_NAME_BYTES} UTF-8 bytes long"
        )));
    }
    if value.contains('\0') {
        return Err(ApiError::BadRequest(format!(
            "{what} must not contain NUL characters"
        )));
    }
    Ok(())
}

pub fn validate_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(ApiError::BadRequest(format!(
            "keyId must be 1 to {MAX_KEY_BYTES} UTF-8 bytes long, got {}",
            key.len()
        )));
    }
    // `|` is reserved by Object Store v2 clients as a separator.
    if key.contains('|') {
        return Err(ApiError::BadRequest(
            "keyId must not contain the character '|'".to_owned(),
        ));
    }
    if key.contains('\0') {
        return Err(ApiError::BadRequest(
            "keyId must not contain NUL characters".to_owned(),
        ));
    }
    Ok(())
}

/// The body of `PUT|POST .../keys/{keyId}`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ItemBody {
    #[serde(default)]
    key_id: Option<String>,
    #[serde(default)]
    value_type: Option<String>,
    #[serde(default)]
    string_value: Option<String>,
    // Kept as the raw literal so that numbers round-trip exactly (no f64).
    #[serde(default)]
    number_value: Option<Box<RawValue>>,
    #[serde(default)]
    binary_value: Option<String>,
}

/// Parses and validates an item body for the key in the path.
pub fn parse_item(body: &[u8], key: &str, max_value_bytes: usize) -> Result<ItemValue, ApiError> {
    let body: ItemBody = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid item JSON: {e}")))?;
    if let Some(body_key) = &body.key_id
        && body_key != key
    {
        return Err(ApiError::BadRequest(
            "keyId in the body differs from the keyId in the path".to_owned(),
        ));
    }
    let Some(value_type) = body.value_type.as_deref() else {
        return Err(ApiError::BadRequest(
            "valueType is required: STRING, NUMBER or BINARY".to_owned(),
        ));
    };
    let Some(value_type) = ValueType::parse(value_type) else {
        return Err(ApiError::BadRequest(format!(
            "unknown valueType {value_type:?}: expected STRING, NUMBER or BINARY"
        )));
    };
    let present = [
        ("stringValue", body.string_value.is_some()),
        ("numberValue", body.number_value.is_some()),
        ("binaryValue", body.binary_value.is_some()),
    ];
    let expected = match value_type {
        ValueType::String => "stringValue",
        ValueType::Number => "numberValue",
        ValueType::Binary => "binaryValue",
    };
    for (field, is_present) in present {
        if is_present && field != expected {
            return Err(ApiError::BadRequest(format!(
                "valueType {} does not allow {field}",
                value_type.as_str()
            )));
        }
    }
    let too_large = |len: usize| {
        ApiError::PayloadTooLarge(format!(
            "{expected} is {len} bytes, more than the limit of {max_value_bytes}"
        ))
    };
    let bytes = match value_type {
        ValueType::String => {
            let s = body
                .string_value
                .ok_or_else(|| ApiError::BadRequest("stringValue is required".to_owned()))?;
            if s.len() > max_value_bytes {
                return Err(too_large(s.len()));
            }
            s.into_bytes()
        }
        ValueType::Number => {
            let raw = body
                .number_value
                .ok_or_else(|| ApiError::BadRequest("numberValue is required".to_owned()))?;
            let literal = raw.get();
            if literal.len() > max_value_bytes {
                return Err(too_large(literal.len()));
            }
            // The raw value is valid JSON already; a JSON number is exactly
            // a value that starts with '-' or a digit.
            if !literal.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
                return Err(ApiError::BadRequest(
                    "numberValue must be a JSON number".to_owned(),
                ));
            }
            literal.as_bytes().to_vec()
        }
        ValueType::Binary => {
            let encoded = body
                .binary_value
                .ok_or_else(|| ApiError::BadRequest("binaryValue is required".to_owned()))?;
            if encoded.len() > max_value_bytes {
                return Err(too_large(encoded.len()));
            }
            STANDARD.decode(encoded.as_bytes()).map_err(|e| {
                ApiError::BadRequest(format!("binaryValue is not valid base64: {e}"))
            })?
        }
    };
    Ok(ItemValue { value_type, bytes })
}

/// An item as answered to clients.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemResponse {
    pub key_id: String,
    pub value_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub string_value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number_value: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binary_value: Option<String>,
}

impl ItemResponse {
    /// Builds the response from a stored row. A row that is not what this
    /// code writes (edited by hand) is an internal error, not a panic.
    pub fn from_value(key: String, value: ItemValue) -> Result<Self, ApiError> {
        let mut response = ItemResponse {
            key_id: key,
            value_type: value.value_type.as_str(),
            string_value: None,
            number_value: None,
            binary_value: None,
        };
        match value.value_type {
            ValueType::String => {
                response.string_value = Some(String::from_utf8(value.bytes).map_err(|_| {
                    ApiError::Internal("stored STRING value is not UTF-8".to_owned())
                })?);
            }
            ValueType::Number => {
                let literal = String::from_utf8(value.bytes).map_err(|_| {
                    ApiError::Internal("stored NUMBER value is not UTF-8".to_owned())
                })?;
                response.number_value = Some(RawValue::from_string(literal).map_err(|_| {
                    ApiError::Internal("stored NUMBER value is not a JSON number".to_owned())
                })?);
            }
            ValueType::Binary => response.binary_value = Some(STANDARD.encode(&value.bytes)),
        }
        Ok(response)
    }
}

/// The body of `PUT .../stores/{storeId}`; every field is optional.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoreBody {
    #[serde(default)]
    store_id: Option<String>,
    #[serde(default)]
    default_ttl_seconds: Option<i64>,
    #[serde(default)]
    is_fixed_ttl: Option<bool>,
    #[serde(default)]
    persistent: Option<bool>,
    #[serde(default)]
    encrypted: Option<bool>,
}

/// Parses a store body; absent fields take Object Store v2's defaults
/// (30 days, rolling TTL, persistent, not encrypted). An empty body is
/// allowed: `PUT` of a bare store creates it with the defaults.
pub fn parse_store(body: &[u8], store_id: &str) -> Result<Store, ApiError> {
    let body: StoreBody = if body.iter().all(u8::is_ascii_whitespace) {
        StoreBody {
            store_id: None,
            default_ttl_seconds: None,
            is_fixed_ttl: None,
            persistent: None,
            encrypted: None,
        }
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("invalid store JSON: {e}")))?
    };
    if let Some(id) = &body.store_id
        && id != store_id
    {
        return Err(ApiError::BadRequest(
            "storeId in the body differs from the storeId in the path".to_owned(),
        ));
    }
    let ttl = body.default_ttl_seconds.unwrap_or(MAX_TTL_SECONDS);
    if !(MIN_TTL_SECONDS..=MAX_TTL_SECONDS).contains(&ttl) {
        return Err(ApiError::BadRequest(format!(
            "defaultTtlSeconds must be between {MIN_TTL_SECONDS} and {MAX_TTL_SECONDS} (30 days), got {ttl}"
        )));
    }
    Ok(Store {
        store_id: store_id.to_owned(),
        // In range of i32 after the check above.
        default_ttl_seconds: ttl as i32,
        is_fixed_ttl: body.is_fixed_ttl.unwrap_or(false),
        persistent: body.persistent.unwrap_or(true),
        encrypted: body.encrypted.unwrap_or(false),
    })
}

/// Query parameters of every listing.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageParams {
    #[serde(default)]
    pub page_size: Option<String>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

/// A validated page request: how many, and after which name (exclusive).
pub struct PageRequest {
    pub size: i64,
    pub after: Option<String>,
}

impl PageParams {
    pub fn validate(&self) -> Result<PageRequest, ApiError> {
        let size = match self.page_size.as_deref() {
            None | Some("") => DEFAULT_PAGE_SIZE,
            Some(s) => s
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
                .ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "pageSize must be an integer from 1 to {MAX_PAGE_SIZE}"
                    ))
                })?,
        };
        let after = match self.next_page_token.as_deref() {
            None | Some("") => None,
            Some(token) => Some(decode_page_token(token)?),
        };
        Ok(PageRequest { size, after })
    }
}

/// Page tokens are opaque to clients: the last name of the page, encoded.
/// Keyset paging on it (`> last`) never skips or repeats an entry that
/// exists for the whole listing, whatever is written meanwhile.
pub fn encode_page_token(last: &str) -> String {
    URL_SAFE_NO_PAD.encode(last.as_bytes())
}

fn decode_page_token(token: &str) -> Result<String, ApiError> {
    URL_SAFE_NO_PAD
        .decode(token.as_bytes())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| ApiError::BadRequest("invalid nextPageToken".to_owned()))
}

/// `{"values": [..], "nextPageToken": ..}`; the token is `null` on the
/// last page.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub values: Vec<T>,
    pub next_page_token: Option<String>,
}

/// An entry of a key listing.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyEntry {
    pub key_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> ItemValue {
        parse_item(body.as_bytes(), "k", 100).unwrap_or_else(|e| panic!("{body}: {e}"))
    }

    fn err(body: &str) -> ApiError {
        match parse_item(body.as_bytes(), "k", 100) {
            Ok(v) => panic!("{body} accepted as {v:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn values_are_validated_against_their_type() {
        assert_eq!(
            ok(r#"{"keyId":"k","valueType":"STRING","stringValue":"a\u0000b"}"#).bytes,
            b"a\0b"
        );
        assert_eq!(
            ok(r#"{"valueType":"NUMBER","numberValue":-12345678901234567890.000000000001e-3}"#)
                .bytes,
            b"-12345678901234567890.000000000001e-3"
        );
        assert_eq!(
            ok(r#"{"valueType":"BINARY","binaryValue":"AAEC/w=="}"#).bytes,
            vec![0, 1, 2, 255]
        );
        for bad in [
            r#"{"valueType":"TEXT","stringValue":"x"}"#,
            r#"{"stringValue":"x"}"#,
            r#"{"valueType":"NUMBER","numberValue":"12"}"#,
            r#"{"valueType":"NUMBER","stringValue":"12"}"#,
            r#"{"valueType":"STRING","stringValue":"x","binaryValue":"AA=="}"#,
            r#"{"valueType":"BINARY","binaryValue":"not base64!"}"#,
            r#"{"valueType":"STRING"}"#,
            r#"{"keyId":"other","valueType":"STRING","stringValue":"x"}"#,
            r#"not json"#,
        ] {
            assert!(matches!(err(bad), ApiError::BadRequest(_)), "{bad}");
        }
        let big = format!(
            r#"{{"valueType":"STRING","stringValue":"{}"}}"#,
            "x".repeat(101)
        );
        assert!(matches!(err(&big), ApiError::PayloadTooLarge(_)));
    }

    #[test]
    fn numbers_round_trip_exactly() {
        let literal = "123456789012345678901234567890.5000";
        let value = ok(&format!(
            r#"{{"valueType":"NUMBER","numberValue":{literal}}}"#
        ));
        let response =
            ItemResponse::from_value("k".into(), value).unwrap_or_else(|e| panic!("{e}"));
        let json = serde_json::to_string(&response).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            json,
            format!(r#"{{"keyId":"k","valueType":"NUMBER","numberValue":{literal}}}"#)
        );
    }

    #[test]
    fn keys_are_limited() {
        assert!(validate_key("a").is_ok());
        assert!(validate_key(&"é".repeat(512)).is_ok());
        assert!(validate_key(&"é".repeat(513)).is_err());
        assert!(validate_key("").is_err());
        assert!(validate_key("a|b").is_err());
    }

    #[test]
    fn page_tokens_round_trip_and_bad_ones_are_rejected() {
        let params = PageParams {
            page_size: Some("100".into()),
            next_page_token: Some(encode_page_token("key/ü")),
        };
        let page = params.validate().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((page.size, page.after.as_deref()), (100, Some("key/ü")));
        for (size, token) in [("0", ""), ("1001", ""), ("x", ""), ("10", "%%%")] {
            let params = PageParams {
                page_size: Some(size.into()),
                next_page_token: Some(token.into()),
            };
            assert!(params.validate().is_err(), "{size} {token}");
        }
    }

    #[test]
    fn store_defaults_and_bounds() {
        let store = parse_store(b"", "s").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(store.default_ttl_seconds, 2_592_000);
        assert!(!store.is_fixed_ttl && store.persistent && !store.encrypted);
        assert!(parse_store(br#"{"defaultTtlSeconds":0}"#, "s").is_err());
        assert!(parse_store(br#"{"defaultTtlSeconds":2592001}"#, "s").is_err());
        assert!(parse_store(br#"{"storeId":"t"}"#, "s").is_err());
    }
}
