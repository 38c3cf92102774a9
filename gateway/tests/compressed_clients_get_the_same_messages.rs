//! permessage-deflate (RFC 7692) against real clients: Python `websockets`
//! with compression on (`tests/py/deflate_client.py`, which counts the
//! bytes each client reads) beside a plain client, a deflate bomb, and an
//! offer the gateway cannot honour.
//!
//! Needs `python3` with `websockets` (`python3 -m pip install --user
//! websockets`; `.ci/run` installs it and sets `CHAT_TESTS_NEED_PYTHON=1`,
//! which turns a missing module into a failure instead of a skip).
#![allow(clippy::unwrap_used)]
mod common;
use common::*;

use serde_json::Value;

/// Runs the Python client with `args`; `None` (after saying why) when
/// Python or `websockets` is missing and the environment allows skipping.
fn python(args: &[&str]) -> Option<Value> {
    let probe = std::process::Command::new("python3")
        .args(["-c", "import websockets"])
        .output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        let why = "python3 with the `websockets` module is needed \
                   (python3 -m pip install --user websockets)";
        assert!(
            std::env::var_os("CHAT_TESTS_NEED_PYTHON").is_none(),
            "{why}"
        );
        eprintln!("SKIPPED: {why}");
        return None;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/deflate_client.py");
    let out = std::process::Command::new("timeout")
        .arg("120")
        .arg("python3")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "deflate_client.py {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

const ANSWER: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

#[test]
fn a_deflate_member_gets_the_same_messages_as_a_plain_one_in_fewer_bytes() {
    // The default driver: the shard's socket ring.
    same_messages_fewer_bytes(&start(2));
}

#[test]
fn the_task_driver_negotiates_and_inflates_the_same() {
    same_messages_fewer_bytes(&start_with(2, |c| c.socket_ring = false));
}

fn same_messages_fewer_bytes(tg: &TestGateway) {
    let addr = tg.addr().to_string();
    let Some(r) = python(&["compare", &addr, "200"]) else {
        return;
    };
    assert_eq!(r["zipped_extension"], ANSWER, "{r}");
    assert_eq!(r["plain_extension"], Value::Null, "{r}");
    assert_eq!(r["messages"], 220, "{r}");
    assert_eq!(r["same"], true, "both members got the same messages: {r}");
    assert_eq!(r["texts_ok"], true, "{r}");
    assert_eq!(r["seqs_in_order"], true, "{r}");
    let (zipped, plain) = (
        r["zipped_bytes"].as_f64().unwrap(),
        r["plain_bytes"].as_f64().unwrap(),
    );
    // Short chat lines, each compressed on its own (no context takeover):
    // about a quarter fewer bytes (docs/benchmarks.md).
    assert!(
        zipped < 0.85 * plain,
        "deflate member read {zipped} bytes, plain {plain}: {r}"
    );
}

#[test]
fn a_deflate_bomb_closes_the_connection_with_1009() {
    // A 1 MiB text compresses to about a kilobyte: far under the 64 KiB
    // frame limit on the wire, far over it once inflated.
    let tg = start_with(1, |c| c.max_frame_bytes = 64 * 1024);
    let addr = tg.addr().to_string();
    let Some(r) = python(&["bomb", &addr, "1048576"]) else {
        return;
    };
    assert_eq!(r["extension"], ANSWER, "{r}");
    assert_eq!(r["close_code"], 1009, "{r}");
}

#[test]
fn an_offer_the_gateway_cannot_honour_gets_no_extension_and_plain_frames() {
    // `server_max_window_bits=10`: the gateway compresses with a 4 KiB
    // window at least, so it declines; the client works without compression.
    let tg = start(1);
    let addr = tg.addr().to_string();
    let Some(r) = python(&["decline", &addr]) else {
        return;
    };
    assert_eq!(r["extension"], Value::Null, "{r}");
    assert_eq!(r["negotiated"], serde_json::json!([]), "{r}");
    assert_eq!(r["text_ok"], true, "{r}");
}

#[test]
fn with_compression_off_an_offer_gets_plain_frames() {
    let tg = start_with(1, |c| c.permessage_deflate = false);
    let addr = tg.addr().to_string();
    let Some(r) = python(&["compare", &addr, "20"]) else {
        return;
    };
    assert_eq!(r["zipped_extension"], Value::Null, "{r}");
    assert_eq!(r["same"], true, "{r}");
}
