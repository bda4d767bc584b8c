use thiserror::Error;

/// Why a storage call failed, whatever the backend. The HTTP APIs map it
/// to a status in one place (`artisync-http`); the message of
/// [`StoreError::Unavailable`] is for logs, not for callers.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum StoreError {
    /// The thing addressed does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The change clashes with what is stored (409).
    #[error("{0}")]
    Conflict(String),
    /// The request is well formed but cannot be carried out (422).
    #[error("{0}")]
    Unprocessable(String),
    /// The backend could not answer. With `retryable`, the same call may
    /// succeed later (connection lost, pool exhausted, database busy or
    /// restarting: 503); without, it never will as it is (stored data is
    /// invalid, a statement is wrong: 500).
    #[error("{backend}: {message}")]
    Unavailable {
        backend: &'static str,
        message: String,
        retryable: bool,
    },
}

impl StoreError {
    /// A failure of the backend that a later attempt may not repeat.
    pub fn unavailable(backend: &'static str, message: impl Into<String>) -> Self {
        StoreError::Unavailable {
            backend,
            message: message.into(),
            retryable: true,
        }
    }

    /// A failure of the backend that will repeat (invalid stored data).
    pub fn broken(backend: &'static str, message: impl Into<String>) -> Self {
        StoreError::Unavailable {
            backend,
            message: message.into(),
            retryable: false,
        }
    }

    /// Whether the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable {
                retryable: true,
                ..
            }
        )
    }
}
