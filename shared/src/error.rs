//! The one error type of depot-core. It carries structure (what was not found, which
//! name), so that each surface rewords it in one place; `http::status_of` maps it to an
//! HTTP status for every surface.

/// What a not-found or already-exists error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Project,
    Repository,
    Package,
    Version,
    User,
    Token,
    Permission,
    Upload,
    StagedBlob,
    Blob,
    File,
    Route,
}

impl Kind {
    /// How messages name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Project => "project",
            Kind::Repository => "repository",
            Kind::Package => "package",
            Kind::Version => "version",
            Kind::User => "user",
            Kind::Token => "token",
            Kind::Permission => "permission",
            Kind::Upload => "upload session",
            Kind::StagedBlob => "staged blob",
            Kind::Blob => "blob",
            Kind::File => "file",
            Kind::Route => "route",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The named thing does not exist. `name` identifies it (`p/r` for a repository).
    #[error("{message}")]
    NotFound { what: Kind, name: String, message: String },
    /// The named thing already exists.
    #[error("{message}")]
    Exists { what: Kind, name: String, message: String },
    /// A required parameter is absent.
    #[error("{message}")]
    Missing { param: String, message: String },
    /// The path exists, the method does not: `allowed` are the ones it has.
    #[error("method not allowed here: use {}", allowed.join(", "))]
    NotAllowed { allowed: Vec<String> },
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
    /// Busy for a moment: the request may be repeated as it is, after `retry_after`
    /// seconds (503).
    #[error("{message}")]
    Unavailable { message: String, retry_after: u64 },
    /// Too many requests of this kind from this caller: refused for `retry_after`
    /// seconds (429).
    #[error("{message}")]
    Throttled { message: String, retry_after: u64 },
    /// A `Range` outside the bytes there are (416, with `Content-Range: bytes */{size}`).
    #[error("{message}")]
    RangeNotSatisfiable { message: String, size: u64 },
    /// A bug or a failed dependency. Logged with its trace id.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn internal(e: impl std::fmt::Display) -> Self {
        Error::Internal(e.to_string())
    }

    /// Busy: retry after `retry_after` seconds.
    pub fn unavailable(message: impl Into<String>, retry_after: u64) -> Self {
        Error::Unavailable { message: message.into(), retry_after }
    }

    /// When the client may try again, for the errors that say so.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Error::Unavailable { retry_after, .. } | Error::Throttled { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// `{what} [{name}] not found`.
    pub fn not_found(what: Kind, name: impl Into<String>) -> Self {
        let name = name.into();
        let message = format!("{what} [{}] not found", crate::model::printable(&name));
        Error::NotFound { what, name, message }
    }

    /// A not-found error with its own wording.
    pub fn not_found_as(what: Kind, name: impl Into<String>, message: impl Into<String>) -> Self {
        Error::NotFound { what, name: name.into(), message: message.into() }
    }

    /// `{what} [{name}] already exists`.
    pub fn exists(what: Kind, name: impl Into<String>) -> Self {
        let name = name.into();
        let message = format!("{what} [{}] already exists", crate::model::printable(&name));
        Error::Exists { what, name, message }
    }

    /// An already-exists error with its own wording.
    pub fn exists_as(what: Kind, name: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Exists { what, name: name.into(), message: message.into() }
    }

    /// `Parameter [{param}] is missing`.
    pub fn missing(param: &str) -> Self {
        Error::Missing { param: param.to_string(), message: format!("Parameter [{param}] is missing") }
    }

    /// The version `version` of package `key`, not found.
    pub fn version_not_found(key: &str, version: &str) -> Self {
        let (k, v) = (crate::model::printable(key), crate::model::printable(version));
        Error::not_found_as(Kind::Version, version, format!("version [{v}] of package [{k}] not found"))
    }

    /// A conflict that names no operation.
    pub fn conflict(message: impl Into<String>) -> Self {
        Error::Conflict { message: message.into(), failed: Vec::new() }
    }

    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict { .. })
    }

    /// Whether this is a not-found error (of any kind).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
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
