//! Helpers on elements: the Synapse namespace, required attributes, and
//! the errors that name an element and its position.

use super::*;

pub(super) fn is_synapse(element: &Element) -> bool {
    matches!(element.namespace, Namespace::Synapse | Namespace::None)
}

/// Rejects an element outside the Synapse namespace where a Synapse element
/// is expected.
pub(super) fn expect_synapse(element: &Element, supported: &str) -> Result<(), ArtifactError> {
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

pub(super) fn required<'e>(
    element: &'e Element,
    attribute: &str,
) -> Result<&'e str, ArtifactError> {
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

pub(super) fn invalid(element: &Element, message: impl Into<String>) -> ArtifactError {
    ArtifactError::Invalid {
        element: element.name.clone(),
        line: element.line,
        column: element.column,
        message: message.into(),
    }
}

/// An element that is not supported where it appears; the message reads
/// `<name> <why>`.
pub(super) fn unknown(
    element: &Element,
    why: impl std::fmt::Display,
    supported: &str,
) -> ArtifactError {
    unsupported(element, format!("<{}> {why}", element.name), supported)
}

pub(super) fn unsupported(
    element: &Element,
    message: impl Into<String>,
    supported: &str,
) -> ArtifactError {
    ArtifactError::Unsupported {
        element: element.name.clone(),
        line: element.line,
        column: element.column,
        message: message.into(),
        supported: supported.to_string(),
    }
}
