use thiserror::Error;

/// Why an artifact was refused. `Malformed` is a syntax error (HTTP 400);
/// every other variant is a well-formed document outside the supported
/// subset or with broken references (HTTP 422).
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
}

impl ArtifactError {
    /// The HTTP status the publisher answers with for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            ArtifactError::Malformed { .. } => 400,
            ArtifactError::Unsupported { .. } | ArtifactError::Invalid { .. } => 422,
        }
    }
}
