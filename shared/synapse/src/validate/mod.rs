//! DOM -> validated model. Every rejection names the element, its position
//! and (for things outside the subset) what is supported instead. One
//! module per kind of element; this one walks the document and holds what
//! they share.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use regex::Regex;

mod api;
mod bundle;
mod cycles;
mod elements;
mod endpoints;
mod mediators;

use crate::expression::{
    SUPPORTED_CONDITIONS, SUPPORTED_EXPRESSIONS, parse_condition, parse_expression,
};
use crate::model::*;
use crate::parse::{Document, Element, Namespace, SYNAPSE_NS};
use crate::template::{parse_uri_template, parse_url_mapping};
use crate::{ArtifactError, LIMITS};

use cycles::*;
use elements::*;

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
            "endpoint" => register(
                &mut bundle.endpoints,
                child,
                "name",
                ("max_endpoints", LIMITS.max_endpoints),
            )?,
            "sequence" => register(
                &mut bundle.sequences,
                child,
                "name",
                ("max_sequences", LIMITS.max_sequences),
            )?,
            "localEntry" => register(
                &mut bundle.local_entries,
                child,
                "key",
                ("max_local_entries", LIMITS.max_local_entries),
            )?,
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

/// Adds a named element to the bundle, refusing a repeated name and more
/// such elements than `cap` (its name in [`crate::Limits`] and its value).
fn register<'d>(
    map: &mut BTreeMap<String, &'d Element>,
    element: &'d Element,
    key_attribute: &str,
    (cap, max): (&'static str, usize),
) -> Result<(), ArtifactError> {
    if map.len() >= max {
        return Err(ArtifactError::OverLimit {
            element: element.name.clone(),
            line: element.line,
            column: element.column,
            cap,
            max,
            what: format!("the number of <{}> elements in a bundle", element.name),
        });
    }
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
        check_mediation_depth(api_element, &api, &sequences, &self.bundle.sequences)?;
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
}
