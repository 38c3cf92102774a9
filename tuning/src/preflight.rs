//! The gateway's preflight: read the host, check it against the configured
//! maximum of connections and shards, and refuse with found and required
//! values when the host cannot hold them.

use std::fmt::Write as _;

use crate::costs::Requirements;
use crate::read::read_host;
use crate::readings::HostReadings;
use crate::report::Report;
use crate::units::count;

/// Why the preflight refuses.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// The host cannot hold the connections: at least one item is short.
    /// An operator may override this (the gateway then starts with a
    /// warning); the report says what is short and how to fix it.
    #[error("{}", describe_short(report))]
    HostShort {
        /// The full report; its short items are the reasons.
        report: Box<Report>,
    },
    /// The requirements themselves are impossible (no shards). Not
    /// overridable: it is a bug in the caller.
    #[error("preflight requirements are invalid: {reason}")]
    InvalidRequirements {
        /// What is wrong.
        reason: String,
    },
}

impl PreflightError {
    /// The report behind a [`PreflightError::HostShort`].
    #[must_use]
    pub fn report(&self) -> Option<&Report> {
        match self {
            PreflightError::HostShort { report } => Some(report),
            PreflightError::InvalidRequirements { .. } => None,
        }
    }

    /// An operator flag may start the gateway anyway (with a warning).
    #[must_use]
    pub fn is_overridable(&self) -> bool {
        matches!(self, PreflightError::HostShort { .. })
    }
}

/// Multi-line refusal: the target, then each short item with found,
/// required, why and the first fix.
fn describe_short(report: &Report) -> String {
    let req = &report.requirements;
    let mut s = format!(
        "this host cannot hold {} connections on {} shards:",
        count(req.connections),
        req.shards
    );
    for item in report.short_items() {
        let _ = write!(
            s,
            "\n  {}: found {}; required {}",
            item.name, item.found, item.required
        );
        if !item.message.is_empty() {
            let _ = write!(s, "\n    {}", item.message);
        }
        for line in item.fixes.iter().flat_map(|f| f.lines()) {
            let _ = write!(s, "\n    fix: {line}");
        }
    }
    let _ = write!(
        s,
        "\n  capacity as the host is now: {} connections (bound by {})",
        count(report.capacity.connections),
        report.capacity.bound
    );
    s
}

/// Reads this host and checks it against `req`.
///
/// `Ok(report)` when the host can hold `req.connections` on `req.shards`
/// shards; the report's [`Report::warnings`] are worth logging. Otherwise
/// [`PreflightError::HostShort`] naming each short item with found and
/// required values.
///
/// Call it after raising the soft open-file limit (the gateway does that
/// first), with `connections` = the maximum in force. When that maximum is
/// derived from the open-file limit minus `reserved_fds`, the file check
/// passes by construction.
pub fn preflight(req: &Requirements) -> Result<Report, PreflightError> {
    validate(req)?;
    preflight_with(&read_host(), req)
}

/// [`preflight`] on given readings (pure; for tests and for callers that
/// read the host themselves).
pub fn preflight_with(
    readings: &HostReadings,
    req: &Requirements,
) -> Result<Report, PreflightError> {
    validate(req)?;
    let report = Report::new(readings, req);
    if report.passed {
        Ok(report)
    } else {
        Err(PreflightError::HostShort {
            report: Box::new(report),
        })
    }
}

fn validate(req: &Requirements) -> Result<(), PreflightError> {
    if req.shards == 0 {
        return Err(PreflightError::InvalidRequirements {
            reason: "shards must be at least 1".into(),
        });
    }
    Ok(())
}
