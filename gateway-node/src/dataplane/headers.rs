//! Header rules the gateway applies to every message it forwards.

use http::HeaderMap;
use http::header::{CONNECTION, HeaderName, TE, TRAILER, TRANSFER_ENCODING, UPGRADE};

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), including those the
/// `Connection` header names, so they never cross the gateway.
///
/// Applied to a message as it arrives from its peer (the client's request
/// before mediation, an endpoint's response before the outSequence), so a
/// peer's `Connection` header can only name its own headers, never ones a
/// mediator sets afterwards.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers named in `Connection` are hop-by-hop too. Collect them first:
    // the map cannot be changed while its values are borrowed. Rare enough
    // that the small allocation does not matter.
    if headers.contains_key(CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
        headers.remove(CONNECTION);
    }
    for name in [&KEEP_ALIVE, &TE, &TRAILER, &TRANSFER_ENCODING, &UPGRADE] {
        headers.remove(name);
    }
    // `Proxy-Authorization`, `Proxy-Connection`, ...: checked by name, since
    // the family is open-ended.
    if headers.keys().any(|k| k.as_str().starts_with("proxy-")) {
        let proxy: Vec<HeaderName> = headers
            .keys()
            .filter(|k| k.as_str().starts_with("proxy-"))
            .cloned()
            .collect();
        for name in proxy {
            headers.remove(name);
        }
    }
}

/// Removes the headers that describe one connection's framing, which the
/// client that sends a message sets itself. Applied to a mediated message
/// just before it is sent: unlike [`strip_hop_by_hop`] it does not remove
/// what a `Connection` header names, so every header a mediator set
/// survives.
pub fn strip_framing(headers: &mut HeaderMap) {
    for name in [
        &CONNECTION,
        &KEEP_ALIVE,
        &TE,
        &TRAILER,
        &TRANSFER_ENCODING,
        &UPGRADE,
    ] {
        headers.remove(name);
    }
}
