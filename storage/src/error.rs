//! The storage error type.

/// Errors of every `Store` backend. Whether a caller may retry is data:
/// see [`StoreError::is_retryable`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The operation did not happen and may succeed if retried (a transient
    /// fault, a timeout, a conflicting writer). Nothing was written.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A write failed in a way that leaves durability in doubt (for example a
    /// failed fsync). The store refuses every later write.
    #[error("store poisoned: {0}")]
    Poisoned(String),
    /// The caller broke the contract (for example the same channel twice in one
    /// append). Not retryable.
    #[error("invalid store request: {0}")]
    Invalid(String),
    /// The request conflicts with what is stored (for example creating a
    /// group that already exists). Nothing was written. Not retryable: the
    /// same request fails the same way.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The request names something that does not exist (for example adding
    /// a member to a group that was never created). Nothing was written. Not
    /// retryable.
    #[error("not found: {0}")]
    NotFound(String),
    /// The data directory is in use by another process.
    #[error("data directory {path} is locked by another process")]
    Locked {
        /// The directory.
        path: String,
    },
    /// The data on disk was written by a format this build does not know.
    #[error("data format version {found} is not supported (this build reads version {supported})")]
    UnsupportedFormat {
        /// Version found on disk.
        found: u32,
        /// Version this build reads and writes.
        supported: u32,
    },
    /// Stored data could not be decoded.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// An error of a backend's own (for example a FoundationDB error code)
    /// that is not one of the above. Whether a retry may help is data.
    #[error("{message}")]
    Backend {
        /// The backend's error code (FoundationDB: its numeric error code).
        code: i32,
        /// What failed, with the backend's description.
        message: String,
        /// Whether retrying the same call later may succeed.
        retryable: bool,
    },
    /// An I/O error outside a write (opening, reading).
    #[error("storage I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl StoreError {
    /// Whether retrying the same call later may succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_)
                | StoreError::Backend {
                    retryable: true,
                    ..
                }
        )
    }
}
