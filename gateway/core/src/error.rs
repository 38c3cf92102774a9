//! Errors of the core's layer: what a finished job reports.

use std::sync::Arc;

use chat_proto::ErrorCode;
use storage::StoreError;

/// Why a job ([`crate::IoJob`]) did not produce its result. Cloneable, so
/// one failure can answer every sender waiting on a commit.
#[derive(Clone, Debug, thiserror::Error)]
pub enum JobError {
    /// The store failed; its error is kept as the source.
    #[error("store: {0}")]
    Store(#[source] Arc<StoreError>),
    /// The store refused the request on the caller's terms (not a member,
    /// no such group): answered with `code`, never retried.
    #[error("{message}")]
    Refused {
        /// What the client is told.
        code: ErrorCode,
        /// Why.
        message: &'static str,
    },
    /// The store call panicked (a bug in a backend): the shard goes on.
    #[error("the store call panicked")]
    Panicked,
    /// The committer thread is gone (shutdown).
    #[error("the committer stopped")]
    Stopped,
}

impl JobError {
    /// Whether the same job may succeed later.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            JobError::Store(e) => e.is_retryable(),
            JobError::Refused { .. } | JobError::Panicked => false,
            JobError::Stopped => true,
        }
    }

    /// What a client is told.
    #[must_use]
    pub fn code(&self) -> ErrorCode {
        match self {
            JobError::Store(e) => match **e {
                StoreError::NotFound(_) => ErrorCode::NotFound,
                StoreError::Conflict(_) => ErrorCode::Conflict,
                StoreError::Invalid(_) => ErrorCode::BadRequest,
                _ => ErrorCode::Unavailable,
            },
            JobError::Refused { code, .. } => *code,
            JobError::Panicked | JobError::Stopped => ErrorCode::Unavailable,
        }
    }
}

impl From<StoreError> for JobError {
    fn from(e: StoreError) -> JobError {
        JobError::Store(Arc::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_keep_their_meaning_for_clients() {
        let e = JobError::from(StoreError::NotFound("group".into()));
        assert_eq!(e.code(), ErrorCode::NotFound);
        assert!(!e.is_retryable());
        assert!(
            std::error::Error::source(&e).is_some(),
            "the source is kept"
        );
        let e = JobError::from(StoreError::Unavailable("busy".into()));
        assert_eq!(e.code(), ErrorCode::Unavailable);
        assert!(e.is_retryable());
        let e = JobError::Refused {
            code: ErrorCode::NotMember,
            message: "not a member of this group",
        };
        assert_eq!(e.to_string(), "not a member of this group");
    }
}
