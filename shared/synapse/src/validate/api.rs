//! `<api>`, its `<resource>`s and their sequences.

use super::*;

impl<'d> Validator<'d> {
    pub(super) fn api(&mut self, element: &Element) -> Result<Api, ArtifactError> {
        let name = required(element, "name")?.to_string();
        let version = element
            .attr("version")
            .filter(|version| !version.is_empty())
            .map(str::to_string);
        let context = api_context(element, version.as_deref())?;
        let mut resources = Vec::new();
        let mut handlers = Vec::new();
        for child in &element.children {
            expect_synapse(child, API_CHILDREN)?;
            match child.name.as_str() {
                "resource" => resources.push(self.resource(child)?),
                "handlers" => handlers.extend(handler_list(child)?),
                "description" => {}
                _ => {
                    return Err(unknown(child, "is not supported in <api>", API_CHILDREN));
                }
            }
        }
        if resources.is_empty() {
            return Err(invalid(element, "an <api> needs at least one <resource>"));
        }
        Ok(Api {
            name,
            version,
            context,
            resources,
            handlers,
        })
    }

    pub(super) fn resource(&mut self, element: &Element) -> Result<Resource, ArtifactError> {
        let methods = resource_methods(element)?;
        let matcher = resource_matcher(element)?;
        let mut in_sequence = self.sequence_attribute(element, "inSequence");
        let mut out_sequence = self.sequence_attribute(element, "outSequence");
        let mut fault_sequence = self.fault_sequence_attribute(element);
        for child in &element.children {
            expect_synapse(child, RESOURCE_CHILDREN)?;
            let slot_filled = match child.name.as_str() {
                "inSequence" => in_sequence.replace(self.inline_sequence(child)?).is_some(),
                "outSequence" => out_sequence.replace(self.inline_sequence(child)?).is_some(),
                "faultSequence" => {
                    let inline = FaultSequence::Inline(self.inline_sequence(child)?);
                    fault_sequence.replace(inline).is_some()
                }
                "description" => false,
                _ => {
                    return Err(unknown(
                        child,
                        "is not supported in <resource>",
                        RESOURCE_CHILDREN,
                    ));
                }
            };
            if slot_filled {
                return Err(invalid(
                    child,
                    format!(
                        "the resource already has a {} (as an element or an attribute)",
                        child.name
                    ),
                ));
            }
        }
        Ok(Resource {
            methods,
            matcher,
            in_sequence,
            out_sequence,
            fault_sequence,
        })
    }

    /// `inSequence="name"`: a sequence that only runs the named one.
    pub(super) fn sequence_attribute(
        &mut self,
        element: &Element,
        attribute: &str,
    ) -> Option<Sequence> {
        let key = element.attr(attribute)?;
        if !self.bundle.sequences.contains_key(key) {
            self.note_missing(element, "sequence", key);
        }
        Some(Sequence {
            name: None,
            mediators: vec![Mediator::SequenceRef(key.to_string())],
        })
    }

    pub(super) fn fault_sequence_attribute(&mut self, element: &Element) -> Option<FaultSequence> {
        let key = element.attr("faultSequence")?;
        if self.bundle.sequences.contains_key(key) {
            return Some(FaultSequence::Named(key.to_string()));
        }
        if key == "fault" {
            return Some(FaultSequence::BuiltinDefault);
        }
        self.note_missing(element, "sequence", key);
        Some(FaultSequence::Named(key.to_string()))
    }

    pub(super) fn inline_sequence(&mut self, element: &Element) -> Result<Sequence, ArtifactError> {
        Ok(Sequence {
            name: None,
            mediators: self.mediators(element)?,
        })
    }

    // ---- mediators --------------------------------------------------------
}

pub(super) fn api_context(
    element: &Element,
    version: Option<&str>,
) -> Result<String, ArtifactError> {
    let raw = required(element, "context")?;
    let context = if raw.contains("{version}") {
        let version = version.ok_or_else(|| {
            invalid(
                element,
                "context uses {version} but the api has no version attribute",
            )
        })?;
        raw.replace("{version}", version)
    } else {
        raw.to_string()
    };
    if !context.starts_with('/') {
        return Err(invalid(
            element,
            format!("context \"{raw}\" must start with `/`"),
        ));
    }
    if context.contains(['{', '}', '*', '?', '#']) {
        return Err(invalid(
            element,
            format!("context \"{raw}\" may only hold a path (and the {{version}} placeholder)"),
        ));
    }
    let trimmed = context.trim_end_matches('/');
    Ok(if trimmed.is_empty() {
        "/".to_string()
    } else {
        trimmed.to_string()
    })
}

pub(super) fn handler_list(element: &Element) -> Result<Vec<Handler>, ArtifactError> {
    element
        .children
        .iter()
        .map(|child| {
            expect_synapse(child, "handler")?;
            if child.name != "handler" {
                return Err(unknown(child, "is not supported in <handlers>", "handler"));
            }
            handler(child)
        })
        .collect()
}

pub(super) fn handler(element: &Element) -> Result<Handler, ArtifactError> {
    let class = required(element, "class")?.to_string();
    let mut properties = BTreeMap::new();
    for child in &element.children {
        expect_synapse(child, "property")?;
        if child.name != "property" {
            return Err(unknown(child, "is not supported in <handler>", "property"));
        }
        let name = required(child, "name")?.to_string();
        let value = child
            .attr("value")
            .map_or_else(|| child.text.trim().to_string(), str::to_string);
        properties.insert(name, value);
    }
    Ok(Handler { class, properties })
}

pub(super) fn resource_methods(element: &Element) -> Result<Vec<HttpMethod>, ArtifactError> {
    let Some(raw) = element.attr("methods") else {
        return Ok(Vec::new());
    };
    let mut methods = Vec::new();
    for word in raw.split_whitespace() {
        let method = HttpMethod::parse(word).ok_or_else(|| {
            invalid(
                element,
                format!(
                    "unknown HTTP method `{word}` (use GET, POST, PUT, DELETE, PATCH, HEAD, OPTIONS)"
                ),
            )
        })?;
        if !methods.contains(&method) {
            methods.push(method);
        }
    }
    Ok(methods)
}

pub(super) fn resource_matcher(element: &Element) -> Result<ResourceMatcher, ArtifactError> {
    let template = element.attr("uri-template");
    let mapping = element.attr("url-mapping");
    let pattern = element.attr("url-pattern");
    match (template, mapping, pattern) {
        (None, None, None) => Ok(ResourceMatcher::Any),
        (Some(template), None, None) => parse_uri_template(template)
            .map(ResourceMatcher::UriTemplate)
            .map_err(|message| invalid(element, message)),
        (None, Some(mapping), None) | (None, None, Some(mapping)) => parse_url_mapping(mapping)
            .map(ResourceMatcher::UrlMapping)
            .map_err(|message| invalid(element, message)),
        _ => Err(invalid(
            element,
            "a resource has at most one of uri-template, url-mapping and url-pattern",
        )),
    }
}
