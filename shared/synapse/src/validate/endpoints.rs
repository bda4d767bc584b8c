//! Endpoints: `http` and `address`, inline or by key, their URIs and timeouts.

use super::*;

impl<'d> Validator<'d> {
    pub(super) fn endpoint_ref(&mut self, element: &Element) -> Result<EndpointRef, ArtifactError> {
        let Some(key) = element.attr("key") else {
            return Ok(EndpointRef::Inline(self.endpoint(element)?));
        };
        if element.children.iter().any(is_synapse) {
            return Err(invalid(
                element,
                "an endpoint either refers to a key or is defined inline, not both",
            ));
        }
        if !self.bundle.endpoints.contains_key(key) {
            self.note_missing(element, "endpoint", key);
        }
        Ok(EndpointRef::Key(key.to_string()))
    }

    pub(super) fn endpoint(&mut self, element: &Element) -> Result<Endpoint, ArtifactError> {
        let mut definition = None;
        for child in &element.children {
            expect_synapse(child, ENDPOINT_KINDS)?;
            match child.name.as_str() {
                // Endpoint-level properties only tune Synapse internals.
                "property" | "description" => {}
                "http" | "address" if definition.is_none() => definition = Some(child),
                "http" | "address" => {
                    return Err(invalid(child, "an endpoint has one <http> or <address>"));
                }
                _ => {
                    return Err(unknown(
                        child,
                        "is not a supported endpoint kind",
                        ENDPOINT_KINDS,
                    ));
                }
            }
        }
        let definition =
            definition.ok_or_else(|| invalid(element, "an endpoint needs <http> or <address>"))?;
        let kind = endpoint_kind(definition)?;
        Ok(Endpoint {
            name: element.attr("name").map(str::to_string),
            kind,
            timeout: endpoint_timeout(definition)?,
            attributes: endpoint_attributes(definition),
        })
    }
}

pub(super) fn endpoint_kind(element: &Element) -> Result<EndpointKind, ArtifactError> {
    if element.name == "http" {
        let uri_template = required(element, "uri-template")?;
        check_http_uri(element, uri_template)?;
        check_uri_placeholders(element, uri_template)?;
        let method = element
            .attr("method")
            .map(|raw| {
                HttpMethod::parse(raw)
                    .ok_or_else(|| invalid(element, format!("unknown HTTP method `{raw}`")))
            })
            .transpose()?;
        Ok(EndpointKind::Http {
            uri_template: uri_template.to_string(),
            method,
        })
    } else {
        let uri = required(element, "uri")?;
        check_http_uri(element, uri)?;
        Ok(EndpointKind::Address {
            uri: uri.to_string(),
        })
    }
}

pub(super) fn check_http_uri(element: &Element, uri: &str) -> Result<(), ArtifactError> {
    let lower = uri.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"));
    let rest = match rest {
        Some(rest) if !rest.is_empty() => rest,
        _ => {
            return Err(invalid(
                element,
                format!("URI \"{uri}\" must start with http:// or https://"),
            ));
        }
    };
    // The authority (user info, host and port) is fixed at publish time:
    // filled from the request, it would let a caller choose where the
    // gateway sends requests. Placeholders stay allowed in path and query.
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    if authority.contains(['{', '}']) {
        return Err(invalid(
            element,
            format!(
                "URI \"{uri}\" has a placeholder in its host or port; the host and port \
                 must be literal (placeholders such as {{uri.var.name}} are allowed in the \
                 path and query only)"
            ),
        ));
    }
    Ok(())
}

/// The gateway fills `{uri.var.x}` from the resource template; other
/// placeholders would be sent to the backend literally.
pub(super) fn check_uri_placeholders(element: &Element, uri: &str) -> Result<(), ArtifactError> {
    let mut rest = uri;
    while let Some(open) = rest.find(['{', '}']) {
        let after = &rest[open + 1..];
        let close = match (rest[open..].starts_with('{'), after.find('}')) {
            (true, Some(close)) => close,
            _ => {
                return Err(invalid(
                    element,
                    format!("unbalanced braces in URI \"{uri}\""),
                ));
            }
        };
        let placeholder = &after[..close];
        let valid = placeholder
            .strip_prefix("uri.var.")
            .is_some_and(|name| !name.is_empty() && !name.contains('{'));
        if !valid {
            return Err(invalid(
                element,
                format!(
                    "placeholder {{{placeholder}}} in URI \"{uri}\" is not supported (use {{uri.var.name}})"
                ),
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

pub(super) fn endpoint_timeout(element: &Element) -> Result<Option<Duration>, ArtifactError> {
    let mut timeout = None;
    for child in &element.children {
        expect_synapse(child, ENDPOINT_SETTINGS)?;
        match child.name.as_str() {
            "timeout" => timeout = timeout_duration(child)?,
            name if IGNORED_ENDPOINT_SETTINGS.contains(&name) => {}
            _ => {
                return Err(unknown(
                    child,
                    format!("is not supported in <{}>", element.name),
                    ENDPOINT_SETTINGS,
                ));
            }
        }
    }
    Ok(timeout)
}

/// `<duration>` in milliseconds; `<responseAction>` does not change what the
/// gateway does on timeout (it always answers with an error).
pub(super) fn timeout_duration(element: &Element) -> Result<Option<Duration>, ArtifactError> {
    let Some(duration) = element
        .children
        .iter()
        .find(|child| child.name == "duration" && is_synapse(child))
    else {
        return Ok(None);
    };
    let raw = duration.text.trim();
    raw.parse::<u64>()
        .map(|millis| Some(Duration::from_millis(millis)))
        .map_err(|_| {
            invalid(
                duration,
                format!("duration \"{raw}\" must be a whole number of milliseconds"),
            )
        })
}

pub(super) fn endpoint_attributes(element: &Element) -> BTreeMap<String, String> {
    let own = |key: &str| matches!(key, "uri" | "uri-template" | "method");
    element
        .attributes
        .iter()
        .filter(|(key, _)| !own(key))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}
