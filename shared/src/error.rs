//! The one error type of depot-core. Each surface maps it to its own envelope and status.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The named thing already exists.
    #[error("{0}")]
    Exists(String),
    /// The caller sent bad input; the message says which rule it broke.
    #[error("{0}")]
    Invalid(String),
    /// No or wrong credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// Valid credentials without the needed permission.
    #[error("{0}")]
    Forbidden(String),
    /// A body or archive over a configured limit.
    #[error("{0}")]
    TooLarge(String),
    /// A storage condition failed: a conditional write or a transaction was refused.
    /// `failed` holds the indexes of the transaction operations whose condition failed
    /// (empty for a single conditional write, or when the store does not say).
    #[error("{message}")]
    Conflict { message: String, failed: Vec<usize> },
    /// Busy for a moment: the request may be repeated as it is.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or a failed dependency. Logged with its trace id.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn internal(e: impl std::fmt::Display) -> Self {
        Error::Internal(e.to_string())
    }

    /// A conflict that names no operation.
    pub fn conflict(message: impl Into<String>) -> Self {
        Error::Conflict { message: message.into(), failed: Vec::new() }
    }

    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict { .. })
    }

    /// Whether this is a refused transaction whose operation `index` failed its condition.
    pub fn failed_op(&self, index: usize) -> bool {
        matches!(self, Error::Conflict { failed, .. } if failed.contains(&index))
    }

    /// Turns a failed storage condition into a domain answer, keeping other errors.
    pub fn on_conflict(self, f: impl FnOnce() -> Error) -> Error {
        if self.is_conflict() {
            f()
        } else {
            self
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Internal(format!("i/o error: {e}"))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
