//! `tuning check` run against this host: a million connections are blocked
//! by the open-file limit (20,000 soft and hard here, and not raisable
//! without CAP_SYS_RESOURCE); a target under it passes.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

fn tuning(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tuning"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The hard open-file limit the binary inherits from this test.
fn hard_nofile() -> u64 {
    tuning::read_host().nofile.unwrap().hard
}

fn with_separators(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[test]
fn a_million_connections_fail_on_the_fd_cap() {
    let hard = hard_nofile();
    assert!(
        hard < 1_000_512,
        "this test expects a host below a million files"
    );
    let out = tuning(&["check", "--connections", "1000000", "--shards", "2"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");

    let fd_line = text
        .lines()
        .find(|l| l.contains("RLIMIT_NOFILE") && !l.starts_with(' '))
        .unwrap();
    assert!(fd_line.starts_with("short  RLIMIT_NOFILE"), "{fd_line}");
    assert!(
        fd_line.contains(&format!("found hard {},", with_separators(hard))),
        "{fd_line}"
    );
    assert!(
        fd_line.contains("required ≥ 1,000,512 (1,000,000 connections + 512 reserved)"),
        "{fd_line}"
    );
    assert!(text.contains("fix: systemd unit [Service]: LimitNOFILE=1000512"));
    // The fd cap is the blocker: nothing else is short.
    let short: Vec<&str> = text.lines().filter(|l| l.starts_with("short")).collect();
    assert_eq!(short.len(), 1, "{short:#?}");
    assert!(
        text.contains("SHORT: this host cannot hold 1,000,000 connections on 2 shards; blocked by RLIMIT_NOFILE"),
        "{text}"
    );
    if hard == 20_000 {
        // This machine.
        assert!(
            fd_line.contains("found hard 20,000, soft 20,000"),
            "{fd_line}"
        );
        assert!(text.contains("19,488 connections fit, 1,000,000 asked"));
    }
}

#[test]
fn json_names_the_short_item() {
    let out = tuning(&[
        "check",
        "--connections",
        "1000000",
        "--shards",
        "2",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["report"]["passed"], false);
    let items = v["report"]["items"].as_array().unwrap();
    let fd = items.iter().find(|i| i["name"] == "RLIMIT_NOFILE").unwrap();
    assert_eq!(fd["status"], "short");
    assert_eq!(fd["found_value"], hard_nofile());
    assert_eq!(fd["required_value"], 1_000_512);
    assert_eq!(v["readings"]["nofile"]["hard"], hard_nofile());
}

#[test]
fn a_target_under_the_fd_cap_passes() {
    let out = tuning(&["check", "--connections", "10000", "--shards", "2"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("PASS: this host can hold 10,000 connections on 2 shards"));
    assert!(text.contains("cpu plan: "));
}

#[test]
fn apply_without_yes_is_a_dry_run() {
    let before = tuning::read_host();
    let out = tuning(&["apply", "--connections", "1000000", "--shards", "2"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("dry run: nothing is written"), "{text}");
    assert!(text.contains("would write net.ipv4.tcp_mem"), "{text}");
    assert!(text.contains("what apply cannot do (an operator must):"));
    assert!(text.contains("RLIMIT_NOFILE (short)"));
    let after = tuning::read_host();
    assert_eq!(before.tcp_mem, after.tcp_mem);
    assert_eq!(before.tcp_rmem, after.tcp_rmem);
}
