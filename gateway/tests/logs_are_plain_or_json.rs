//! Logs: plain text without ANSI colours when standard error is not a
//! terminal; `--log-format json` (or `log_format = "json"`) writes one JSON
//! object per line. Also: SIGTERM with no connection exits at once.
#![allow(clippy::unwrap_used)]
mod common;
use std::io::Read;
use std::time::{Duration, Instant};

use common::*;

/// Stops the gateway with SIGTERM (a drain: with no connection it is over
/// at once) and returns what it wrote to standard error.
fn stderr_after_sigterm(mut child: Child) -> String {
    let mut stderr = child.proc.stderr.take().unwrap();
    let t0 = Instant::now();
    child.signal("TERM");
    let status = child.proc.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "a drain with no connection exits at once ({:?})",
        t0.elapsed()
    );
    let mut text = String::new();
    stderr.read_to_string(&mut text).unwrap();
    text
}

#[test]
fn text_logs_carry_no_colours_when_not_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let child = Child::spawn(
        "",
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ],
    )
    .unwrap();
    let text = stderr_after_sigterm(child);
    assert!(text.contains("DEV AUTH"), "{text}");
    assert!(text.contains("draining"), "{text}");
    assert!(!text.contains('\u{1b}'), "no ANSI escapes in {text:?}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let child = Child::spawn(
        "",
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
            "--log-format",
            "json",
        ],
    )
    .unwrap();
    let text = stderr_after_sigterm(child);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    let dev = lines
        .iter()
        .find(|l| {
            l["fields"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("DEV AUTH")
        })
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(dev["level"], "WARN");
    assert!(dev["timestamp"].is_string());
    assert!(dev["target"].is_string());
    assert!(lines.iter().any(|l| l["fields"]["signal"] == 15), "{text}");
}

#[test]
fn the_config_file_chooses_json_logs_too() {
    let mut c = ConfiguredChild::start("[server]\nlog_format = \"json\"\n");
    let stderr = c.child.proc.stderr.take().unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stderr), &mut first).unwrap();
    let line: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert!(line["level"].is_string(), "{first}");
}
