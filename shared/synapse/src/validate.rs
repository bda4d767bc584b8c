//! DOM -> validated model. Every rejection names the element, its position
//! and (for things outside the subset) what is supported instead.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use regex::Regex;

use super::ArtifactError;
use super::expression::{
    SUPPORTED_CONDITIONS, SUPPORTED_EXPRESSIONS, parse_condition, parse_expression,
};
use super::model::*;
use super::parse::{Document, Element, Namespace, SYNAPSE_NS};
use super::template::{parse_uri_template, parse_url_mapping};

const ROOT_ELEMENTS: &str = "api, definitions";
const DEFINITIONS_CHILDREN: &str = "api, endpoint, sequence, localEntry";
const API_CHILDREN: &str = "resource, handlers";
const RESOURCE_CHILDREN: &str = "inSequence, outSequence, faultSequence";
const MEDIATORS: &str =
    "log, property, header, payloadFactory, respond, drop, filter, send, call, sequence, class";
const ENDPOINT_KINDS: &str = "http, address";
const ENDPOINT_SETTINGS: &str = "timeout, suspendOnFailure, markForSuspension, retryConfig, \
enableSecurity, enableAddressing, enableRM";
const IGNORED_ENDPOINT_SETTINGS: &[&str] = &[
    "suspendOnFailure",
    "markForSuspension",
    "retryConfig",
    "enableSecurity",
    "enableAddressing",
    "enableRM",
];
const PROPERTY_SCOPES: &str = "default, synapse, axis2, axis2-client, transport";
const HEADER_SCOPES: &str = "default, transport";
const MEDIA_TYPES: &str = "xml, json, text";

/// Validates a parsed document into an [`Artifact`].
pub(crate) fn validate(document: &Document) -> Result<Artifact, ArtifactError> {
    let root = &document.root;
    expect_synapse(root, ROOT_ELEMENTS)?;
    match root.name.as_str() {
        "api" => Validator::new(document, Bundle::default()).artifact(root),
        "definitions" => {
            let (api, bundle) = split_definitions(root)?;
            Validator::new(document, bundle).artifact(api)
        }
        _ => Err(unknown(
            root,
            "is not a supported root element",
            ROOT_ELEMENTS,
        )),
    }
}

/// The named elements of a `<definitions>` bundle, not yet validated.
#[derive(Default)]
struct Bundle<'d> {
    endpoints: BTreeMap<String, &'d Element>,
    sequences: BTreeMap<String, &'d Element>,
    local_entries: BTreeMap<String, &'d Element>,
}

fn split_definitions(definitions: &Element) -> Result<(&Element, Bundle<'_>), ArtifactError> {
    let mut apis = Vec::new();
    let mut bundle = Bundle::default();
    for child in &definitions.children {
        expect_synapse(child, DEFINITIONS_CHILDREN)?;
        match child.name.as_str() {
            "api" => apis.push(child),
            "endpoint" => register(&mut bundle.endpoints, child, "name")?,
            "sequence" => register(&mut bundle.sequences, child, "name")?,
            "localEntry" => register(&mut bundle.local_entries, child, "key")?,
            _ => {
                return Err(unknown(
                    child,
                    "is not supported in <definitions>",
                    DEFINITIONS_CHILDREN,
                ));
            }
        }
    }
    match apis.as_slice() {
        [api] => Ok((api, bundle)),
        [] => Err(invalid(
            definitions,
            "a <definitions> bundle must hold exactly one <api>, found none",
        )),
        [_, second, ..] => Err(invalid(
            second,
            format!(
                "a <definitions> bundle must hold exactly one <api>, found {}",
                apis.len()
            ),
        )),
    }
}

fn register<'d>(
    map: &mut BTreeMap<String, &'d Element>,
    element: &'d Element,
    key_attribute: &str,
) -> Result<(), ArtifactError> {
    let key = required(element, key_attribute)?;
    if map.insert(key.to_string(), element).is_some() {
        return Err(invalid(
            element,
            format!("a second <{}> with {key_attribute}=\"{key}\"", element.name),
        ));
    }
    Ok(())
}

/// A reference to a named element the bundle does not define. All of them
/// are collected so one error can name every missing key.
struct MissingReference {
    kind: &'static str,
    key: String,
    element: String,
    line: usize,
    column: usize,
}

struct Validator<'d> {
    document: &'d Document,
    bundle: Bundle<'d>,
    missing: Vec<MissingReference>,
    /// Class mediator names, in document order, for the one warning.
    classes: Vec<String>,
}

impl<'d> Validator<'d> {
    fn new(document: &'d Document, bundle: Bundle<'d>) -> Self {
        Validator {
            document,
            bundle,
            missing: Vec::new(),
            classes: Vec::new(),
        }
    }

    fn artifact(mut self, api_element: &Element) -> Result<Artifact, ArtifactError> {
        let local_entries = self.local_entries()?;
        let endpoints = self.named_endpoints()?;
        let sequences = self.named_sequences()?;
        let api = self.api(api_element)?;
        self.report_missing()?;
        check_sequence_cycles(&sequences, &self.bundle.sequences)?;
        let warnings = self.warnings(&api);
        Ok(Artifact {
            api,
            endpoints,
            sequences,
            local_entries,
            warnings,
        })
    }

    fn warnings(&self, api: &Api) -> Vec<String> {
        let mut warnings = Vec::new();
        let mut seen = BTreeSet::new();
        let classes: Vec<&str> = self
            .classes
            .iter()
            .filter(|class| seen.insert(class.as_str()))
            .map(String::as_str)
            .collect();
        if !classes.is_empty() {
            warnings.push(format!(
                "class mediators are accepted but not executed: {}",
                classes.join(", ")
            ));
        }
        if !api.handlers.is_empty() {
            let handlers: Vec<&str> = api.handlers.iter().map(|h| h.class.as_str()).collect();
            warnings.push(format!(
                "handlers are accepted but not executed: {}",
                handlers.join(", ")
            ));
        }
        warnings
    }

    fn report_missing(&self) -> Result<(), ArtifactError> {
        let Some(first) = self.missing.first() else {
            return Ok(());
        };
        let mut seen = BTreeSet::new();
        let names: Vec<String> = self
            .missing
            .iter()
            .filter(|missing| seen.insert((missing.kind, missing.key.as_str())))
            .map(|missing| format!("{} `{}`", missing.kind, missing.key))
            .collect();
        Err(ArtifactError::Invalid {
            element: first.element.clone(),
            line: first.line,
            column: first.column,
            message: format!(
                "refers to elements the artifact does not define: {}",
                names.join(", ")
            ),
        })
    }

    fn note_missing(&mut self, element: &Element, kind: &'static str, key: &str) {
        self.missing.push(MissingReference {
            kind,
            key: key.to_string(),
            element: element.name.clone(),
            line: element.line,
            column: element.column,
        });
    }

    // ---- named bundle elements ------------------------------------------

    fn local_entries(&self) -> Result<BTreeMap<String, String>, ArtifactError> {
        self.bundle
            .local_entries
            .iter()
            .map(|(key, element)| Ok((key.clone(), self.local_entry(element)?)))
            .collect()
    }

    /// Text content, or the inner XML as written when there are elements.
    fn local_entry(&self, element: &Element) -> Result<String, ArtifactError> {
        if element.attr("src").is_some() {
            return Err(unsupported(
                element,
                "remote local entries (src=) are not supported",
                "text or inline XML content",
            ));
        }
        Ok(self.content(element))
    }

    fn content(&self, element: &Element) -> String {
        if element.children.is_empty() {
            element.text.trim().to_string()
        } else {
            self.document.inner_source(element).trim().to_string()
        }
    }

    fn named_endpoints(&mut self) -> Result<BTreeMap<String, Endpoint>, ArtifactError> {
        let elements: Vec<(String, &Element)> = self
            .bundle
            .endpoints
            .iter()
            .map(|(name, element)| (name.clone(), *element))
            .collect();
        let mut endpoints = BTreeMap::new();
        for (name, element) in elements {
            if element.attr("key").is_some() {
                return Err(unsupported(
                    element,
                    "a named endpoint must be defined inline, not refer to another by key",
                    ENDPOINT_KINDS,
                ));
            }
            endpoints.insert(name, self.endpoint(element)?);
        }
        Ok(endpoints)
    }

    fn named_sequences(&mut self) -> Result<BTreeMap<String, Sequence>, ArtifactError> {
        let elements: Vec<(String, &Element)> = self
            .bundle
            .sequences
            .iter()
            .map(|(name, element)| (name.clone(), *element))
            .collect();
        let mut sequences = BTreeMap::new();
        for (name, element) in elements {
            let mediators = self.mediators(element)?;
            sequences.insert(
                name.clone(),
                Sequence {
                    name: Some(name),
                    mediators,
                },
            );
        }
        Ok(sequences)
    }

    // ---- api and resources ------------------------------------------------

    fn api(&mut self, element: &Element) -> Result<Api, ArtifactError> {
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

    fn resource(&mut self, element: &Element) -> Result<Resource, ArtifactError> {
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
    fn sequence_attribute(&mut self, element: &Element, attribute: &str) -> Option<Sequence> {
        let key = element.attr(attribute)?;
        if !self.bundle.sequences.contains_key(key) {
            self.note_missing(element, "sequence", key);
        }
        Some(Sequence {
            name: None,
            mediators: vec![Mediator::SequenceRef(key.to_string())],
        })
    }

    fn fault_sequence_attribute(&mut self, element: &Element) -> Option<FaultSequence> {
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

    fn inline_sequence(&mut self, element: &Element) -> Result<Sequence, ArtifactError> {
        Ok(Sequence {
            name: None,
            mediators: self.mediators(element)?,
        })
    }

    // ---- mediators --------------------------------------------------------

    fn mediators(&mut self, parent: &Element) -> Result<Vec<Mediator>, ArtifactError> {
        parent
            .children
            .iter()
            .filter(|child| !(child.name == "description" && is_synapse(child)))
            .map(|child| self.mediator(child))
            .collect()
    }

    fn mediator(&mut self, element: &Element) -> Result<Mediator, ArtifactError> {
        expect_synapse(element, MEDIATORS)?;
        match element.name.as_str() {
            "log" => Ok(Mediator::Log(log_mediator(element)?)),
            "property" => Ok(Mediator::Property(property_mediator(element)?)),
            "header" => Ok(Mediator::Header(header_mediator(element)?)),
            "payloadFactory" => Ok(Mediator::PayloadFactory(self.payload_factory(element)?)),
            "respond" => Ok(Mediator::Respond),
            "drop" => Ok(Mediator::Drop),
            "filter" => Ok(Mediator::Filter(Box::new(self.filter(element)?))),
            "send" => Ok(Mediator::Send(self.send(element)?)),
            "call" => Ok(Mediator::Call(self.call(element)?)),
            "sequence" => Ok(Mediator::SequenceRef(self.sequence_ref(element)?)),
            "class" => {
                let class = required(element, "name")?.to_string();
                self.classes.push(class.clone());
                Ok(Mediator::Class(class))
            }
            _ => Err(unknown(element, "is not a supported mediator", MEDIATORS)),
        }
    }

    fn sequence_ref(&mut self, element: &Element) -> Result<String, ArtifactError> {
        let key = required(element, "key")?;
        if !self.bundle.sequences.contains_key(key) {
            self.note_missing(element, "sequence", key);
        }
        Ok(key.to_string())
    }

    fn payload_factory(&mut self, element: &Element) -> Result<PayloadFactory, ArtifactError> {
        let media_type = media_type(element)?;
        if let Some(template) = element.attr("template-type")
            && !template.eq_ignore_ascii_case("default")
        {
            return Err(unsupported(
                element,
                format!("template-type=\"{template}\" is not supported"),
                "default",
            ));
        }
        let mut format = None;
        let mut args = Vec::new();
        for child in &element.children {
            expect_synapse(child, "format, args")?;
            match child.name.as_str() {
                "format" if format.is_none() => format = Some(self.format(child, media_type)),
                "format" => return Err(invalid(child, "a payloadFactory has one <format>")),
                "args" => args.extend(arguments(child)?),
                _ => {
                    return Err(unknown(
                        child,
                        "is not supported in <payloadFactory>",
                        "format, args",
                    ));
                }
            }
        }
        let format = format.ok_or_else(|| invalid(element, "a payloadFactory needs a <format>"))?;
        Ok(PayloadFactory {
            media_type,
            format,
            args,
        })
    }

    /// XML formats are kept exactly as written; JSON and text formats are
    /// unescaped (they may be written with entities or in CDATA).
    fn format(&mut self, element: &Element, media_type: MediaType) -> String {
        if let Some(key) = element.attr("key") {
            return match self.bundle.local_entries.get(key) {
                Some(entry) => self.content(entry),
                None => {
                    self.note_missing(element, "localEntry", key);
                    String::new()
                }
            };
        }
        if media_type == MediaType::Xml {
            self.document.inner_source(element).trim().to_string()
        } else {
            self.content(element)
        }
    }

    fn filter(&mut self, element: &Element) -> Result<Filter, ArtifactError> {
        let condition = filter_condition(element)?;
        let branches = element
            .children
            .iter()
            .any(|child| is_synapse(child) && matches!(child.name.as_str(), "then" | "else"));
        if !branches {
            return Ok(Filter {
                condition,
                then: self.mediators(element)?,
                otherwise: Vec::new(),
            });
        }
        let mut then = None;
        let mut otherwise = None;
        for child in &element.children {
            expect_synapse(child, "then, else")?;
            let slot = match child.name.as_str() {
                "then" => &mut then,
                "else" => &mut otherwise,
                "description" => continue,
                _ => {
                    return Err(invalid(
                        child,
                        "a filter holds either <then>/<else> or mediators directly, not both",
                    ));
                }
            };
            if slot.is_some() {
                return Err(invalid(child, format!("a filter has one <{}>", child.name)));
            }
            *slot = Some(self.mediators(child)?);
        }
        Ok(Filter {
            condition,
            then: then.unwrap_or_default(),
            otherwise: otherwise.unwrap_or_default(),
        })
    }

    fn send(&mut self, element: &Element) -> Result<Option<EndpointRef>, ArtifactError> {
        match single_endpoint_child(element)? {
            Some(endpoint) => Ok(Some(self.endpoint_ref(endpoint)?)),
            None => Ok(None),
        }
    }

    fn call(&mut self, element: &Element) -> Result<EndpointRef, ArtifactError> {
        match single_endpoint_child(element)? {
            Some(endpoint) => self.endpoint_ref(endpoint),
            None => Err(invalid(element, "a call needs an <endpoint>")),
        }
    }

    // ---- endpoints --------------------------------------------------------

    fn endpoint_ref(&mut self, element: &Element) -> Result<EndpointRef, ArtifactError> {
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

    fn endpoint(&mut self, element: &Element) -> Result<Endpoint, ArtifactError> {
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

// ---- api helpers ------------------------------------------------------------

fn api_context(element: &Element, version: Option<&str>) -> Result<String, ArtifactError> {
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

fn handler_list(element: &Element) -> Result<Vec<Handler>, ArtifactError> {
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

fn handler(element: &Element) -> Result<Handler, ArtifactError> {
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

fn resource_methods(element: &Element) -> Result<Vec<HttpMethod>, ArtifactError> {
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

fn resource_matcher(element: &Element) -> Result<ResourceMatcher, ArtifactError> {
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

// ---- mediator helpers ---------------------------------------------------------

fn log_mediator(element: &Element) -> Result<LogMediator, ArtifactError> {
    let level = match element
        .attr("level")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("simple") => LogLevel::Simple,
        Some("headers") => LogLevel::Headers,
        Some("full") => LogLevel::Full,
        Some("custom") => LogLevel::Custom,
        Some(other) => {
            return Err(invalid(
                element,
                format!("unknown log level `{other}` (use simple, headers, full or custom)"),
            ));
        }
    };
    let mut properties = Vec::new();
    for child in &element.children {
        expect_synapse(child, "property")?;
        if child.name != "property" {
            return Err(unknown(child, "is not supported in <log>", "property"));
        }
        let name = required(child, "name")?.to_string();
        let value = value_source(child)?.ok_or_else(|| {
            invalid(
                child,
                "a log property needs a value or an expression attribute",
            )
        })?;
        properties.push((name, value));
    }
    Ok(LogMediator {
        level,
        category: element.attr("category").unwrap_or("INFO").to_string(),
        separator: element.attr("separator").unwrap_or(",").to_string(),
        properties,
    })
}

fn property_mediator(element: &Element) -> Result<PropertyMediator, ArtifactError> {
    let name = required(element, "name")?.to_string();
    let scope = match element
        .attr("scope")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("default") | Some("synapse") => PropertyScope::Default,
        Some("axis2") | Some("axis2-client") => PropertyScope::Axis2,
        Some("transport") => PropertyScope::Transport,
        Some(other) => {
            return Err(unsupported(
                element,
                format!("scope=\"{other}\" is not supported"),
                PROPERTY_SCOPES,
            ));
        }
    };
    Ok(PropertyMediator {
        name,
        scope,
        action: property_action(element)?,
    })
}

fn header_mediator(element: &Element) -> Result<HeaderMediator, ArtifactError> {
    let name = required(element, "name")?.to_string();
    match element
        .attr("scope")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("default") | Some("transport") => {}
        Some(other) => {
            return Err(unsupported(
                element,
                format!("scope=\"{other}\" is not supported"),
                HEADER_SCOPES,
            ));
        }
    }
    Ok(HeaderMediator {
        name,
        action: property_action(element)?,
    })
}

/// `action="remove"`, or `value=` / `expression=` to set.
fn property_action(element: &Element) -> Result<PropertyAction, ArtifactError> {
    match element.attr("action") {
        Some("remove") => return Ok(PropertyAction::Remove),
        None | Some("set") => {}
        Some(other) => {
            return Err(invalid(
                element,
                format!("unknown action `{other}` (use set or remove)"),
            ));
        }
    }
    let value = value_source(element)?.ok_or_else(|| {
        invalid(
            element,
            "needs a value or an expression attribute (or action=\"remove\")",
        )
    })?;
    Ok(PropertyAction::Set(value))
}

/// The `value=` or `expression=` of an element, if any.
fn value_source(element: &Element) -> Result<Option<ValueSource>, ArtifactError> {
    match (element.attr("value"), element.attr("expression")) {
        (Some(_), Some(_)) => Err(invalid(
            element,
            "has both a value and an expression attribute",
        )),
        (Some(value), None) => Ok(Some(ValueSource::Literal(value.to_string()))),
        (None, Some(raw)) => Ok(Some(ValueSource::Expression(expression(
            element,
            "expression",
            raw,
        )?))),
        (None, None) => Ok(None),
    }
}

fn expression(element: &Element, attribute: &str, raw: &str) -> Result<Expression, ArtifactError> {
    parse_expression(raw).map_err(|why| {
        unsupported(
            element,
            format!("{attribute}=\"{raw}\" is not supported: {why}"),
            SUPPORTED_EXPRESSIONS,
        )
    })
}

fn media_type(element: &Element) -> Result<MediaType, ArtifactError> {
    match element
        .attr("media-type")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("xml") => Ok(MediaType::Xml),
        Some("json") => Ok(MediaType::Json),
        Some("text") => Ok(MediaType::Text),
        Some(other) => Err(unsupported(
            element,
            format!("media-type=\"{other}\" is not supported"),
            MEDIA_TYPES,
        )),
    }
}

fn arguments(element: &Element) -> Result<Vec<ValueSource>, ArtifactError> {
    element
        .children
        .iter()
        .map(|child| {
            expect_synapse(child, "arg")?;
            if child.name != "arg" {
                return Err(unknown(child, "is not supported in <args>", "arg"));
            }
            argument(child)
        })
        .collect()
}

fn argument(element: &Element) -> Result<ValueSource, ArtifactError> {
    match element.attr("evaluator") {
        None | Some("xml") | Some("json") => {}
        Some(other) => {
            return Err(invalid(
                element,
                format!("unknown evaluator `{other}` (use xml or json)"),
            ));
        }
    }
    value_source(element)?
        .ok_or_else(|| invalid(element, "an arg needs a value or an expression attribute"))
}

fn filter_condition(element: &Element) -> Result<FilterCondition, ArtifactError> {
    match (
        element.attr("source"),
        element.attr("regex"),
        element.attr("xpath"),
    ) {
        (Some(source), Some(pattern), None) => {
            let source = expression(element, "source", source)?;
            // Synapse uses Matcher.matches(): the whole value must match.
            let regex = Regex::new(&format!("^(?:{pattern})$")).map_err(|error| {
                invalid(element, format!("regex=\"{pattern}\" is invalid: {error}"))
            })?;
            Ok(FilterCondition::Regex { source, regex })
        }
        (None, None, Some(xpath)) => {
            parse_condition(xpath)
                .map(FilterCondition::XPath)
                .map_err(|why| {
                    unsupported(
                        element,
                        format!("xpath=\"{xpath}\" is not supported: {why}"),
                        SUPPORTED_CONDITIONS,
                    )
                })
        }
        _ => Err(invalid(
            element,
            "a filter needs either source and regex, or xpath",
        )),
    }
}

/// The one `<endpoint>` child of a send or call, if any.
fn single_endpoint_child(element: &Element) -> Result<Option<&Element>, ArtifactError> {
    let mut endpoint = None;
    for child in &element.children {
        expect_synapse(child, "endpoint")?;
        if child.name != "endpoint" {
            return Err(unknown(
                child,
                format!("is not supported in <{}>", element.name),
                "endpoint",
            ));
        }
        if endpoint.replace(child).is_some() {
            return Err(invalid(
                child,
                format!("a {} has one <endpoint>", element.name),
            ));
        }
    }
    Ok(endpoint)
}

// ---- endpoint helpers -----------------------------------------------------------

fn endpoint_kind(element: &Element) -> Result<EndpointKind, ArtifactError> {
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

fn check_http_uri(element: &Element, uri: &str) -> Result<(), ArtifactError> {
    let lower = uri.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"));
    match rest {
        Some(rest) if !rest.is_empty() => Ok(()),
        _ => Err(invalid(
            element,
            format!("URI \"{uri}\" must start with http:// or https://"),
        )),
    }
}

/// The gateway fills `{uri.var.x}` from the resource template; other
/// placeholders would be sent to the backend literally.
fn check_uri_placeholders(element: &Element, uri: &str) -> Result<(), ArtifactError> {
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

fn endpoint_timeout(element: &Element) -> Result<Option<Duration>, ArtifactError> {
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
fn timeout_duration(element: &Element) -> Result<Option<Duration>, ArtifactError> {
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

fn endpoint_attributes(element: &Element) -> BTreeMap<String, String> {
    let own = |key: &str| matches!(key, "uri" | "uri-template" | "method");
    element
        .attributes
        .iter()
        .filter(|(key, _)| !own(key))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

// ---- sequence cycles ------------------------------------------------------------

/// Named sequences referring to each other in a loop would recurse forever
/// at request time.
fn check_sequence_cycles(
    sequences: &BTreeMap<String, Sequence>,
    elements: &BTreeMap<String, &Element>,
) -> Result<(), ArtifactError> {
    let graph: BTreeMap<&str, Vec<&str>> = sequences
        .iter()
        .map(|(name, sequence)| {
            let mut refs = Vec::new();
            collect_sequence_refs(&sequence.mediators, &mut refs);
            (name.as_str(), refs)
        })
        .collect();
    let mut done = BTreeSet::new();
    for start in graph.keys() {
        let mut path = Vec::new();
        if let Some(cycle) = find_cycle(&graph, start, &mut path, &mut done) {
            let first = cycle.first().copied().unwrap_or(start);
            let message = format!(
                "sequences refer to each other in a cycle: {}",
                cycle.join(" -> ")
            );
            return Err(match elements.get(first) {
                Some(element) => invalid(element, message),
                None => ArtifactError::Invalid {
                    element: "sequence".to_string(),
                    line: 1,
                    column: 1,
                    message,
                },
            });
        }
    }
    Ok(())
}

fn find_cycle<'g>(
    graph: &BTreeMap<&'g str, Vec<&'g str>>,
    node: &'g str,
    path: &mut Vec<&'g str>,
    done: &mut BTreeSet<&'g str>,
) -> Option<Vec<&'g str>> {
    if let Some(position) = path.iter().position(|seen| *seen == node) {
        let mut cycle = path[position..].to_vec();
        cycle.push(node);
        return Some(cycle);
    }
    if done.contains(node) {
        return None;
    }
    path.push(node);
    for next in graph.get(node).into_iter().flatten() {
        if let Some(cycle) = find_cycle(graph, next, path, done) {
            return Some(cycle);
        }
    }
    path.pop();
    done.insert(node);
    None
}

fn collect_sequence_refs<'m>(mediators: &'m [Mediator], refs: &mut Vec<&'m str>) {
    for mediator in mediators {
        match mediator {
            Mediator::SequenceRef(key) => refs.push(key),
            Mediator::Filter(filter) => {
                collect_sequence_refs(&filter.then, refs);
                collect_sequence_refs(&filter.otherwise, refs);
            }
            _ => {}
        }
    }
}

// ---- element helpers ------------------------------------------------------------

fn is_synapse(element: &Element) -> bool {
    matches!(element.namespace, Namespace::Synapse | Namespace::None)
}

/// Rejects an element outside the Synapse namespace where a Synapse element
/// is expected.
fn expect_synapse(element: &Element, supported: &str) -> Result<(), ArtifactError> {
    let why = match &element.namespace {
        Namespace::Synapse | Namespace::None => return Ok(()),
        Namespace::Other(uri) => format!("<{}> is in namespace \"{uri}\"", element.name),
        Namespace::UndeclaredPrefix(prefix) => {
            format!("<{}> uses the undeclared prefix `{prefix}`", element.name)
        }
    };
    Err(unsupported(
        element,
        format!("{why}; Synapse elements are in \"{SYNAPSE_NS}\" or in no namespace"),
        supported,
    ))
}

fn required<'e>(element: &'e Element, attribute: &str) -> Result<&'e str, ArtifactError> {
    match element.attr(attribute) {
        Some(value) if !value.trim().is_empty() => Ok(value),
        Some(_) => Err(invalid(
            element,
            format!("attribute `{attribute}` must not be empty"),
        )),
        None => Err(invalid(
            element,
            format!("missing required attribute `{attribute}`"),
        )),
    }
}

fn invalid(element: &Element, message: impl Into<String>) -> ArtifactError {
    ArtifactError::Invalid {
        element: element.name.clone(),
        line: element.line,
        column: element.column,
        message: message.into(),
    }
}

/// An element that is not supported where it appears; the message reads
/// `<name> <why>`.
fn unknown(element: &Element, why: impl std::fmt::Display, supported: &str) -> ArtifactError {
    unsupported(element, format!("<{}> {why}", element.name), supported)
}

fn unsupported(element: &Element, message: impl Into<String>, supported: &str) -> ArtifactError {
    ArtifactError::Unsupported {
        element: element.name.clone(),
        line: element.line,
        column: element.column,
        message: message.into(),
        supported: supported.to_string(),
    }
}
