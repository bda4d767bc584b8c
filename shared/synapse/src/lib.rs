#![forbid(unsafe_code)]
//! Synapse XML artifacts: parse, validate and model the subset a gateway
//! executes (DESIGN.md §3). The publisher and the gateway run the same code.

mod error;
pub mod expression;
mod limits;
pub mod model;
mod parse;
pub mod references;
mod template;
mod validate;

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;

pub use error::ArtifactError;
pub use limits::{LIMITS, Limits};
pub use model::*;

/// Parses and validates an artifact document (a bare `<api>` or a
/// `<definitions>` bundle holding exactly one `<api>`) within [`LIMITS`].
/// The work is linear in the document's size; still, callers on an async
/// runtime run it on a blocking pool, as a 10 MiB document takes a while.
pub fn parse_artifact(xml: &[u8]) -> Result<Artifact, ArtifactError> {
    let document = parse::parse_document(xml)?;
    validate::validate(&document)
}
