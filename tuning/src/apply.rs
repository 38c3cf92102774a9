//! Carries out a [`Plan`]'s sysctls through `/proc/sys` — or, in a dry run,
//! says what it would write. Each write is read back: the kernel may clamp
//! or refuse a value.
//!
//! Deliberately out of reach: resource limits (they belong to each process;
//! see [`Plan`]'s manual steps) and files under `/etc` (persistence is the
//! operator's decision; the plan prints the lines).

use std::path::PathBuf;

use crate::plan::{Plan, SysctlChange};
use crate::read::HostPaths;

/// Write or only say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Say what would be written; touch nothing (the default of the CLI).
    DryRun,
    /// Write every planned sysctl.
    Write,
}

/// Why one sysctl could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The write failed: not root, a read-only `/proc/sys` (containers), a
    /// sysctl not in this network namespace, or a value the kernel rejects
    /// (`EINVAL`). Not retryable without changing one of those.
    #[error("cannot write {key} ({}): {source}{}", path.display(), hint(source))]
    Write {
        /// Dotted sysctl name.
        key: String,
        /// The file written.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The write succeeded but the kernel reports another value (it clamps
    /// some values to their range).
    #[error("{key}: wrote `{wanted}` but the kernel now reports `{found}`")]
    NotTaken {
        /// Dotted sysctl name.
        key: String,
        /// Value written.
        wanted: String,
        /// Value read back.
        found: String,
    },
}

fn hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => {
            " (needs root; fs.* sysctls are not namespaced, so a container cannot set them)"
        }
        std::io::ErrorKind::ReadOnlyFilesystem => {
            " (/proc/sys is mounted read-only here, as in most containers)"
        }
        std::io::ErrorKind::NotFound => " (this kernel has no such sysctl)",
        _ => "",
    }
}

/// What happened to one planned sysctl.
#[derive(Debug)]
pub struct Applied {
    /// The change.
    pub change: SysctlChange,
    /// The file behind it.
    pub path: PathBuf,
    /// `Ok(true)`: written and read back; `Ok(false)`: dry run, nothing
    /// written; `Err`: why it failed.
    pub result: Result<bool, ApplyError>,
}

impl Applied {
    /// One line for people.
    #[must_use]
    pub fn line(&self) -> String {
        let c = &self.change;
        let from = c.from.as_deref().unwrap_or("unknown");
        match &self.result {
            Ok(false) => format!(
                "would write {}: {from} → {} ({})",
                c.key,
                c.to,
                self.path.display()
            ),
            Ok(true) => format!("wrote {}: {from} → {}", c.key, c.to),
            Err(e) => format!("FAILED {e}"),
        }
    }
}

/// Applies (or, with [`Mode::DryRun`], describes) the plan's sysctls under
/// `paths.proc`. Every change is attempted; failures are reported per
/// change, not as one error.
#[must_use]
pub fn apply(plan: &Plan, paths: &HostPaths, mode: Mode) -> Vec<Applied> {
    plan.sysctls
        .iter()
        .map(|change| {
            let path = paths.sysctl(&change.key);
            let result = match mode {
                Mode::DryRun => Ok(false),
                Mode::Write => write_sysctl(change, &path).map(|()| true),
            };
            Applied {
                change: change.clone(),
                path,
                result,
            }
        })
        .collect()
}

fn write_sysctl(change: &SysctlChange, path: &std::path::Path) -> Result<(), ApplyError> {
    std::fs::write(path, format!("{}\n", change.to)).map_err(|source| ApplyError::Write {
        key: change.key.clone(),
        path: path.to_path_buf(),
        source,
    })?;
    let found = std::fs::read_to_string(path).map_err(|source| ApplyError::Write {
        key: change.key.clone(),
        path: path.to_path_buf(),
        source,
    })?;
    let normal = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    if normal(&found) != normal(&change.to) {
        return Err(ApplyError::NotTaken {
            key: change.key.clone(),
            wanted: change.to.clone(),
            found: normal(&found),
        });
    }
    Ok(())
}
