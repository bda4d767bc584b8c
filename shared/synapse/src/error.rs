use thiserror::Error;

/// Why an artifact was refused. `Malformed` is a syntax error (HTTP 400);
/// every other variant is a well-formed document outside the supported
/// subset, with broken references or over a cap (HTTP 422).
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ArtifactError {
    #[error("malformed XML at line {line}, column {column}: {message}")]
    Malformed {
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "unsupported <{element}> at line {line}, column {column}: {message}; supported: {supported}"
    )]
    Unsupported {
        element: String,
        line: usize,
        column: usize,
        message: String,
        supported: String,
    },
    #[error("invalid <{element}> at line {line}, column {column}: {message}")]
    Invalid {
        element: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// The document is over one of the caps of [`crate::Limits`]; `cap` is
    /// the field's name, so a caller learns which one.
    #[error(
        "<{element}> at line {line}, column {column}: {what} exceeds the cap {cap} = {max}; the artifact is refused"
    )]
    OverLimit {
        element: String,
        line: usize,
        column: usize,
        /// The name of the [`crate::Limits`] field.
        cap: &'static str,
        max: usize,
        /// What went over it, for the message.
        what: String,
    },
}

impl ArtifactError {
    /// The HTTP status the publisher answers with for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            ArtifactError::Malformed { .. } => 400,
            ArtifactError::Unsupported { .. }
            | ArtifactError::Invalid { .. }
            | ArtifactError::OverLimit { .. } => 422,
        }
    }
}
