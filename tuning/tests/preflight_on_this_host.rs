//! The gateway's preflight against this host: 10,000 connections pass, a
//! million are refused with the open-file limit named, and the default
//! maximum (open-file limit minus the reserve) passes by construction.
#![allow(clippy::unwrap_used)]

use tuning::{preflight, PreflightError, Requirements};

#[test]
fn ten_thousand_connections_pass() {
    let report = preflight(&Requirements::new(10_000, 2)).unwrap();
    assert!(report.passed);
    assert_eq!(report.short_items().count(), 0);
}

#[test]
fn the_default_maximum_passes() {
    // What the gateway does with no max_connections configured: the
    // open-file limit (soft raised to hard) minus reserved_fds.
    let hard = tuning::read_host().nofile.unwrap().hard;
    let mut req = Requirements::new(hard - 512, 2);
    req.reserved_fds = 512;
    let report = preflight(&req).unwrap();
    assert_eq!(
        report.item("RLIMIT_NOFILE").unwrap().status,
        tuning::Status::Ok
    );
}

#[test]
fn a_million_connections_are_refused_naming_the_fd_limit() {
    let hard = tuning::read_host().nofile.unwrap().hard;
    let err = preflight(&Requirements::new(1_000_000, 2)).unwrap_err();
    assert!(err.is_overridable());
    let report = err.report().unwrap();
    let short: Vec<&str> = report.short_items().map(|i| i.name).collect();
    assert!(short.contains(&"RLIMIT_NOFILE"), "{short:?}");
    let fd = report.item("RLIMIT_NOFILE").unwrap();
    assert_eq!(fd.found_value, Some(hard));
    assert_eq!(fd.required_value, Some(1_000_512));

    let text = err.to_string();
    assert!(
        text.starts_with("this host cannot hold 1,000,000 connections on 2 shards:"),
        "{text}"
    );
    assert!(text.contains("\n  RLIMIT_NOFILE: found hard "), "{text}");
    assert!(
        text.contains("required ≥ 1,000,512 (1,000,000 connections + 512 reserved)"),
        "{text}"
    );
    if hard == 20_000 {
        assert!(text.contains("RLIMIT_NOFILE: found hard 20,000, soft 20,000;"));
        assert!(text
            .contains("capacity as the host is now: 19,488 connections (bound by RLIMIT_NOFILE)"));
    }
}

#[test]
fn zero_shards_is_not_overridable() {
    let err = preflight(&Requirements::new(10, 0)).unwrap_err();
    assert!(matches!(err, PreflightError::InvalidRequirements { .. }));
    assert!(!err.is_overridable());
}
