#![forbid(unsafe_code)]
//! Synapse XML artifacts: parse, validate and model the subset a gateway
//! executes (DESIGN.md §3). The publisher and the gateway run the same code.

mod error;
pub mod expression;
pub mod model;
mod parse;
pub mod references;
mod template;
mod validate;

#[cfg(test)]
mod tests;

pub use error::ArtifactError;
pub use model::*;

/// Parses and validates an artifact document (a bare `<api>` or a
/// `<definitions>` bundle holding exactly one `<api>`).
pub fn parse_artifact(xml: &[u8]) -> Result<Artifact, ArtifactError> {
    let document = parse::parse_document(xml)?;
    validate::validate(&document)
}
