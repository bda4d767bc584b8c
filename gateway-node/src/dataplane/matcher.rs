//! Matching the path after an API's context against its resources
//! (`uri-template` and `url-mapping`), plus the percent-decoding helpers the
//! matcher and the expressions share.
//!
//! Everything borrows from the request and the artifact; a variable is only
//! copied when it has to be percent-decoded.

use std::borrow::Cow;

use artisync_synapse::{
    HttpMethod, Resource, ResourceMatcher, TemplateSegment, UriTemplate, UrlMapping,
};

/// `uri.var.*` values filled by a template match: (variable, decoded value).
pub type UriVars<'a> = Vec<(&'a str, Cow<'a, str>)>;

/// The outcome of matching a request against an API's resources.
#[derive(Debug)]
pub enum ResourceMatch<'a> {
    /// The first resource (in document order) whose path and method match.
    Found {
        index: usize,
        vars: UriVars<'a>,
    },
    /// Some resource's path matched but none allowed the method; the bits
    /// are the methods those resources allow.
    MethodNotAllowed {
        allowed: u8,
    },
    NotFound,
}

/// One bit per [`HttpMethod`].
pub fn method_bit(method: HttpMethod) -> u8 {
    1 << (method as u8)
}

/// The bits of a resource's `methods`; an empty list allows every method.
pub fn methods_mask(methods: &[HttpMethod]) -> u8 {
    if methods.is_empty() {
        u8::MAX
    } else {
        methods.iter().fold(0, |mask, m| mask | method_bit(*m))
    }
}

const ALL_METHODS: [HttpMethod; 7] = [
    HttpMethod::Get,
    HttpMethod::Post,
    HttpMethod::Put,
    HttpMethod::Delete,
    HttpMethod::Patch,
    HttpMethod::Head,
    HttpMethod::Options,
];

/// An `Allow` header value for a method mask: `GET, PUT`.
pub fn allow_header(mask: u8) -> String {
    let mut out = String::new();
    for method in ALL_METHODS {
        if mask & method_bit(method) != 0 {
            if !out.is_empty() {
                out.push_str(", ");
            }
            out.push_str(method.as_str());
        }
    }
    out
}

/// The model's method for an HTTP method; `None` for methods no resource can
/// name (they only match resources that allow every method).
pub fn model_method(method: &http::Method) -> Option<HttpMethod> {
    // `http::Method` constants cannot be used as patterns; compare instead.
    if *method == http::Method::GET {
        Some(HttpMethod::Get)
    } else if *method == http::Method::POST {
        Some(HttpMethod::Post)
    } else if *method == http::Method::PUT {
        Some(HttpMethod::Put)
    } else if *method == http::Method::DELETE {
        Some(HttpMethod::Delete)
    } else if *method == http::Method::PATCH {
        Some(HttpMethod::Patch)
    } else if *method == http::Method::HEAD {
        Some(HttpMethod::Head)
    } else if *method == http::Method::OPTIONS {
        Some(HttpMethod::Options)
    } else {
        None
    }
}

/// Finds the resource for a request. `masks[i]` is [`methods_mask`] of
/// `resources[i]` (precomputed at deploy time); `remainder` is the raw path
/// after the context (may be empty), `query` the raw query string.
pub fn match_resource<'a>(
    resources: &'a [Resource],
    masks: &[u8],
    method: Option<HttpMethod>,
    remainder: &'a str,
    query: Option<&'a str>,
) -> ResourceMatch<'a> {
    let bit = method.map_or(0, method_bit);
    let mut allowed = 0u8;
    let mut vars = UriVars::new();
    for (index, resource) in resources.iter().enumerate() {
        let mask = masks.get(index).copied().unwrap_or(u8::MAX);
        // A method mismatch only matters if the path matches, but the path
        // check is the costlier one: skip it when the answer cannot change.
        let method_ok = mask == u8::MAX || mask & bit != 0;
        if !method_ok && allowed & mask == mask {
            continue;
        }
        vars.clear();
        if !matches(&resource.matcher, remainder, query, &mut vars) {
            continue;
        }
        if method_ok {
            return ResourceMatch::Found { index, vars };
        }
        allowed |= mask;
    }
    if allowed != 0 {
        ResourceMatch::MethodNotAllowed { allowed }
    } else {
        ResourceMatch::NotFound
    }
}

/// Does a resource's matcher accept this path remainder? Fills `vars` on a
/// template match.
pub fn matches<'a>(
    matcher: &'a ResourceMatcher,
    remainder: &'a str,
    query: Option<&'a str>,
    vars: &mut UriVars<'a>,
) -> bool {
    match matcher {
        ResourceMatcher::Any => true,
        ResourceMatcher::UriTemplate(template) => match_template(template, remainder, query, vars),
        ResourceMatcher::UrlMapping(mapping) => match_mapping(mapping, remainder),
    }
}

/// The remainder without its leading `/` and without one trailing `/`
/// (`/order/123/` is the same resource as `/order/123`).
fn trimmed(remainder: &str) -> &str {
    let path = remainder.strip_prefix('/').unwrap_or(remainder);
    path.strip_suffix('/').unwrap_or(path)
}

/// Matches a `uri-template`. Template query parameters must be present in
/// the request (in any order) and fill their variables too.
pub fn match_template<'a>(
    template: &'a UriTemplate,
    remainder: &'a str,
    query: Option<&'a str>,
    vars: &mut UriVars<'a>,
) -> bool {
    let start = vars.len();
    let ok = match_template_inner(template, remainder, query, vars);
    if !ok {
        vars.truncate(start);
    }
    ok
}

fn match_template_inner<'a>(
    template: &'a UriTemplate,
    remainder: &'a str,
    query: Option<&'a str>,
    vars: &mut UriVars<'a>,
) -> bool {
    let path = trimmed(remainder);
    // `None` once every segment of the request is consumed.
    let mut rest = if path.is_empty() { None } else { Some(path) };
    for segment in &template.segments {
        match segment {
            TemplateSegment::Rest(name) => {
                if let Some(name) = name {
                    vars.push((name.as_str(), percent_decode(rest.unwrap_or(""), false)));
                }
                rest = None;
                break;
            }
            TemplateSegment::Literal(literal) => {
                // A template of just `/` has one empty literal segment.
                if literal.is_empty() && rest.is_none() {
                    continue;
                }
                match next_segment(&mut rest) {
                    Some(seg) if seg == literal => {}
                    _ => return false,
                }
            }
            TemplateSegment::Variable(name) => match next_segment(&mut rest) {
                Some(seg) if !seg.is_empty() => {
                    vars.push((name.as_str(), percent_decode(seg, false)));
                }
                _ => return false,
            },
        }
    }
    if rest.is_some() {
        return false;
    }
    for (param, var) in &template.query {
        match query.and_then(|q| query_param(q, param)) {
            Some(value) => vars.push((var.as_str(), value)),
            None => return false,
        }
    }
    true
}

fn next_segment<'a>(rest: &mut Option<&'a str>) -> Option<&'a str> {
    let current = rest.take()?;
    match current.split_once('/') {
        Some((head, tail)) => {
            *rest = Some(tail);
            Some(head)
        }
        None => Some(current),
    }
}

/// Matches a servlet-style `url-mapping`.
pub fn match_mapping(mapping: &UrlMapping, remainder: &str) -> bool {
    let path = trimmed(remainder);
    match mapping {
        UrlMapping::Exact(exact) => trimmed(exact) == path,
        UrlMapping::Prefix(prefix) => {
            let prefix = trimmed(prefix);
            prefix.is_empty()
                || path == prefix
                || path
                    .strip_prefix(prefix)
                    .is_some_and(|tail| tail.starts_with('/'))
        }
        UrlMapping::Extension(extension) => {
            let last = path.rsplit('/').next().unwrap_or(path);
            let extension = extension.strip_prefix('*').unwrap_or(extension);
            !extension.is_empty() && last.len() > extension.len() && last.ends_with(extension)
        }
    }
}

/// The first value of a query parameter, percent-decoded (`+` is a space, as
/// in forms).
pub fn query_param<'q>(query: &'q str, name: &str) -> Option<Cow<'q, str>> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key, true) == name).then(|| percent_decode(value, true))
    })
}

/// Percent-decodes `raw`; borrows when there is nothing to decode. Broken
/// escapes are kept as written and invalid UTF-8 is replaced, since a
/// request must never make the gateway fail.
pub fn percent_decode(raw: &str, plus_as_space: bool) -> Cow<'_, str> {
    let needs = raw
        .bytes()
        .any(|b| b == b'%' || (plus_as_space && b == b'+'));
    if !needs {
        return Cow::Borrowed(raw);
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match (hex_value(bytes[i + 1]), hex_value(bytes[i + 2])) {
                    (Some(hi), Some(lo)) => {
                        out.push(hi << 4 | lo);
                        i += 3;
                    }
                    _ => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' if plus_as_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(match String::from_utf8(out) {
        Ok(text) => text,
        Err(err) => String::from_utf8_lossy(err.as_bytes()).into_owned(),
    })
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}
