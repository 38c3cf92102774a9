//! The servers `bench run --server` can drive: the gateway, or one of the
//! in-memory peers in `bench/peers/` (Node `ws`, Bun). Pure helpers (which
//! command starts which server, parsing its "listening on" line, result file
//! names) plus `bench peers setup` (`npm install` in `bench/peers`).
//!
//! The peers keep everything in memory (see `bench/peers/chat-state.js`):
//! comparisons with them pit the gateway's durable acks against in-memory
//! ones.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

/// Which server a run drives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerKind {
    /// The gateway (release build), durable acks.
    #[default]
    Gateway,
    /// `node bench/peers/node-ws-server.js` (npm `ws`), in memory.
    Node,
    /// `bench/peers/node_modules/.bin/bun bench/peers/bun-server.js`
    /// (Bun.serve, uWebSockets inside), in memory.
    Bun,
}

/// The names `--server` accepts.
pub const SERVER_NAMES: &[&str] = &["gateway", "node", "bun"];

impl ServerKind {
    /// Parses a `--server` value.
    pub fn parse(s: &str) -> anyhow::Result<ServerKind> {
        match s {
            "gateway" => Ok(ServerKind::Gateway),
            "node" => Ok(ServerKind::Node),
            "bun" => Ok(ServerKind::Bun),
            other => bail!(
                "unknown server {other:?}; known: {}",
                SERVER_NAMES.join(", ")
            ),
        }
    }

    /// The name, as `--server` spells it.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Gateway => "gateway",
            ServerKind::Node => "node",
            ServerKind::Bun => "bun",
        }
    }

    /// A peer (in memory, no persistence)?
    #[must_use]
    pub fn is_peer(self) -> bool {
        self != ServerKind::Gateway
    }

    /// Program and arguments starting this peer on any free port, given
    /// the `bench/peers` directory; `None` for the gateway (started by
    /// [`crate::run`] with its own flags).
    #[must_use]
    pub fn peer_command(self, peers_dir: &Path) -> Option<(PathBuf, Vec<PathBuf>)> {
        match self {
            ServerKind::Gateway => None,
            ServerKind::Node => Some((
                PathBuf::from("node"),
                vec![peers_dir.join("node-ws-server.js"), PathBuf::from("0")],
            )),
            ServerKind::Bun => Some((
                peers_dir.join("node_modules/.bin/bun"),
                vec![peers_dir.join("bun-server.js"), PathBuf::from("0")],
            )),
        }
    }
}

impl std::fmt::Display for ServerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The `ws://…` URL of a server's first stdout line: the gateway's
/// `gateway listening on ws://… (…)` or a peer's `listening on ws://…`.
#[must_use]
pub fn parse_listening_line(line: &str) -> Option<String> {
    let (_, rest) = line.split_once("listening on ")?;
    let url = rest.split_whitespace().next()?;
    url.starts_with("ws://").then(|| url.to_string())
}

/// `<scenario>-<timestamp>.json` for the gateway (as before peers existed),
/// `<scenario>-<server>-<timestamp>.json` for a peer.
#[must_use]
pub fn result_file_name(scenario: &str, server: ServerKind, timestamp: u64) -> String {
    if server.is_peer() {
        format!("{scenario}-{server}-{timestamp}.json")
    } else {
        format!("{scenario}-{timestamp}.json")
    }
}

/// `bench/peers` of the workspace.
#[must_use]
pub fn peers_dir() -> PathBuf {
    workspace_root().join("bench/peers")
}

/// Checks that a peer can start: its script exists and, for Bun, `npm
/// install` has been run.
pub fn check_installed(kind: ServerKind, dir: &Path) -> anyhow::Result<()> {
    let Some((program, args)) = kind.peer_command(dir) else {
        return Ok(());
    };
    for a in args.iter().filter(|a| a.extension().is_some()) {
        if !a.exists() {
            bail!("{} is missing", a.display());
        }
    }
    let needs = match kind {
        ServerKind::Bun => Some(program),
        _ => Some(dir.join("node_modules/ws/package.json")),
    };
    if let Some(p) = needs {
        if !p.exists() {
            bail!(
                "{} is missing: run `bench peers setup` (npm install in {}) first",
                p.display(),
                dir.display()
            );
        }
    }
    Ok(())
}

/// `bench peers setup`: `npm install` in `bench/peers` (versions pinned in
/// its package.json).
pub fn setup(dir: &Path) -> anyhow::Result<()> {
    eprintln!(
        "bench: running `npm install --no-audit --no-fund` in {}",
        dir.display()
    );
    let st = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                anyhow::anyhow!(
                    "`npm` not found on PATH: install Node.js (20+) with npm to set up the peers"
                )
            } else {
                anyhow::Error::new(e).context("running npm install")
            }
        })?;
    if !st.success() {
        bail!("npm install in {} failed: {st}", dir.display());
    }
    for kind in [ServerKind::Node, ServerKind::Bun] {
        check_installed(kind, dir).with_context(|| format!("after npm install ({kind})"))?;
    }
    eprintln!(
        "bench: peers installed (ws, bun) in {}",
        dir.join("node_modules").display()
    );
    Ok(())
}

/// The workspace root (`bench/..`).
#[must_use]
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn server_names_round_trip() {
        for n in SERVER_NAMES {
            assert_eq!(ServerKind::parse(n).unwrap().name(), *n);
        }
        assert!(ServerKind::parse("nginx").is_err());
        assert!(!ServerKind::Gateway.is_peer());
        assert!(ServerKind::Node.is_peer() && ServerKind::Bun.is_peer());
        assert_eq!(ServerKind::default(), ServerKind::Gateway);
    }

    #[test]
    fn peer_commands() {
        let d = Path::new("/w/bench/peers");
        assert!(ServerKind::Gateway.peer_command(d).is_none());
        let (p, a) = ServerKind::Node.peer_command(d).unwrap();
        assert_eq!(p, Path::new("node"));
        assert_eq!(a[0], Path::new("/w/bench/peers/node-ws-server.js"));
        let (p, a) = ServerKind::Bun.peer_command(d).unwrap();
        assert_eq!(p, Path::new("/w/bench/peers/node_modules/.bin/bun"));
        assert_eq!(a[0], Path::new("/w/bench/peers/bun-server.js"));
    }

    #[test]
    fn listening_lines() {
        assert_eq!(
            parse_listening_line(
                "gateway listening on ws://127.0.0.1:4000/ws (2 shards, data in /tmp/x)\n"
            )
            .as_deref(),
            Some("ws://127.0.0.1:4000/ws")
        );
        assert_eq!(
            parse_listening_line("listening on ws://127.0.0.1:39211/ws\n").as_deref(),
            Some("ws://127.0.0.1:39211/ws")
        );
        assert_eq!(parse_listening_line("listening on port 4000"), None);
        assert_eq!(parse_listening_line(""), None);
    }

    #[test]
    fn result_names() {
        assert_eq!(
            result_file_name("dm-latency", ServerKind::Gateway, 7),
            "dm-latency-7.json"
        );
        assert_eq!(
            result_file_name("dm-latency", ServerKind::Bun, 7),
            "dm-latency-bun-7.json"
        );
    }

    #[test]
    fn missing_peers_say_how_to_install() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("node-ws-server.js"), "").unwrap();
        let e = check_installed(ServerKind::Node, d.path()).unwrap_err();
        assert!(format!("{e}").contains("bench peers setup"), "{e}");
        assert!(check_installed(ServerKind::Gateway, d.path()).is_ok());
    }
}
