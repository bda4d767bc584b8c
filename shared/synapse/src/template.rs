//! Resource `uri-template` and `url-mapping` parsing.

use std::collections::BTreeSet;

use super::model::{TemplateSegment, UriTemplate, UrlMapping};

/// Parses a resource `uri-template` such as `/items/{id}`, `/files/{+path}`,
/// `/all/*` or `/search?q={query}&page={page}`.
pub(crate) fn parse_uri_template(raw: &str) -> Result<UriTemplate, String> {
    if !raw.starts_with('/') {
        return Err(format!("uri-template `{raw}` must start with `/`"));
    }
    let (path, query) = match raw.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (raw, None),
    };
    let segments = path_segments(path)?;
    let query = match query {
        Some(query) => query_pairs(query)?,
        None => Vec::new(),
    };
    check_unique_variables(&segments, &query)?;
    Ok(UriTemplate {
        raw: raw.to_string(),
        segments,
        query,
    })
}

/// Empty segments are dropped, so `/items/` and `/items` are the same
/// template, as a request path `/items/` matches `/items` in Synapse.
fn path_segments(path: &str) -> Result<Vec<TemplateSegment>, String> {
    let parts: Vec<&str> = path.split('/').filter(|part| !part.is_empty()).collect();
    let last = parts.len().saturating_sub(1);
    parts
        .iter()
        .enumerate()
        .map(|(index, part)| {
            let segment = path_segment(part)?;
            if matches!(segment, TemplateSegment::Rest(_)) && index != last {
                return Err(format!(
                    "`{part}` matches the rest of the path, so it must be the last segment"
                ));
            }
            Ok(segment)
        })
        .collect()
}

fn path_segment(part: &str) -> Result<TemplateSegment, String> {
    if part == "*" {
        return Ok(TemplateSegment::Rest(None));
    }
    if let Some(inner) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
        if let Some(name) = inner.strip_prefix('+') {
            return Ok(TemplateSegment::Rest(Some(variable_name(name)?)));
        }
        return Ok(TemplateSegment::Variable(variable_name(inner)?));
    }
    if part.contains(['{', '}', '*']) {
        return Err(format!(
            "segment `{part}` is not supported: a segment is a literal, {{var}}, {{+var}} or a trailing *"
        ));
    }
    Ok(TemplateSegment::Literal(part.to_string()))
}

fn variable_name(name: &str) -> Result<String, String> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if valid {
        Ok(name.to_string())
    } else {
        Err(format!("`{name}` is not a valid template variable name"))
    }
}

/// `a={x}&b={y}` -> [(a, x), (b, y)].
fn query_pairs(query: &str) -> Result<Vec<(String, String)>, String> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("query part `{pair}` must be name={{var}}"))?;
            let variable = value
                .strip_prefix('{')
                .and_then(|v| v.strip_suffix('}'))
                .ok_or_else(|| format!("query part `{pair}` must be name={{var}}"))?;
            if name.is_empty() {
                return Err(format!("query part `{pair}` has no parameter name"));
            }
            Ok((name.to_string(), variable_name(variable)?))
        })
        .collect()
}

fn check_unique_variables(
    segments: &[TemplateSegment],
    query: &[(String, String)],
) -> Result<(), String> {
    let path_vars = segments.iter().filter_map(|segment| match segment {
        TemplateSegment::Variable(name) | TemplateSegment::Rest(Some(name)) => Some(name),
        _ => None,
    });
    let mut seen = BTreeSet::new();
    for name in path_vars.chain(query.iter().map(|(_, var)| var)) {
        if !seen.insert(name) {
            return Err(format!("template variable `{name}` is used twice"));
        }
    }
    Ok(())
}

/// Parses a servlet-style `url-mapping` / `url-pattern`.
pub(crate) fn parse_url_mapping(raw: &str) -> Result<UrlMapping, String> {
    if let Some(extension) = raw.strip_prefix('*') {
        if extension.starts_with('.') && extension.len() > 1 && !extension.contains(['*', '/']) {
            return Ok(UrlMapping::Extension(extension.to_string()));
        }
        return Err(format!(
            "url-mapping `{raw}`: an extension mapping looks like `*.ext`"
        ));
    }
    if !raw.starts_with('/') {
        return Err(format!(
            "url-mapping `{raw}` must start with `/` (or be an extension mapping `*.ext`)"
        ));
    }
    if let Some(prefix) = raw.strip_suffix("/*") {
        if prefix.contains('*') {
            return Err(format!(
                "url-mapping `{raw}`: `*` is only allowed as a trailing `/*`"
            ));
        }
        return Ok(UrlMapping::Prefix(prefix.to_string()));
    }
    if raw.contains('*') {
        return Err(format!(
            "url-mapping `{raw}`: `*` is only allowed as a trailing `/*`"
        ));
    }
    Ok(UrlMapping::Exact(raw.to_string()))
}
