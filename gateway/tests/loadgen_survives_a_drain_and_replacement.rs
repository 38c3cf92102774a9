//! A rolling deploy under load: the gateway drains (SIGTERM's path) in the
//! middle of a loadgen run and a new gateway takes over on the same data
//! directory and address. Every connection is closed with 1001 (none cut
//! off), they come back to the replacement, and no acked message is lost,
//! duplicated or reordered.
#![allow(clippy::unwrap_used)]

#[path = "loadgen_common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{assert_delivered, retry, serial, small, start_gateway_with};
use gateway::Gateway;
use loadgen::ScenarioKind;

#[test]
fn a_drained_gateway_replaced_on_the_same_address_loses_and_doubles_nothing() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let drain = |c: &mut gateway::Config| {
        c.drain_notice_ms = 300;
        c.drain_window_ms = 1_000;
    };
    let gw = start_gateway_with(dir.path(), "127.0.0.1:0".parse().unwrap(), drain);
    let addr = gw.local_addr();
    let mut cfg = small(ScenarioKind::Groups, addr, 40);
    cfg.scenario.rate = 400.0;
    cfg.duration_ms = 5_000;
    let run = std::thread::spawn(move || common::run(&cfg));

    // Drain in the middle of the send phase.
    std::thread::sleep(Duration::from_millis(1_500));
    let t0 = Instant::now();
    gw.drain();
    let drained_in = t0.elapsed();
    assert!(
        drained_in >= Duration::from_millis(300) && drained_in < Duration::from_millis(5_000),
        "notice + window, then out: {drained_in:?}"
    );
    // The replacement: same data directory, same address.
    let gw: Gateway = retry(Duration::from_secs(10), || {
        gateway::Gateway::start(gateway::Config {
            listen: addr,
            data_dir: dir.path().to_path_buf(),
            shards: Some(2),
            ..gateway::Config::default()
        })
        .map_err(|e| eprintln!("replacement: {e}"))
        .ok()
    })
    .expect("the replacement starts on the same address");

    let report = run.join().unwrap();
    eprintln!("{}", report.table());
    assert_delivered(&report);
    // Connect errors while no gateway listened are expected; nothing else.
    assert_eq!(
        report.errors,
        report.counters.connect_errors,
        "{}",
        report.table()
    );
    let c = report.counters;
    assert!(
        c.going_away >= 40,
        "every connection was drained: {}",
        report.table()
    );
    assert_eq!(
        c.disconnects,
        c.going_away,
        "every close was a 1001, none a cut: {}",
        report.table()
    );
    assert_eq!(c.unexpected_duplicate_acks, 0, "{}", report.table());
    assert!(c.connects >= 80, "{}", report.table());
    assert_eq!(report.delivered, 5 * report.acked);
    gw.shutdown();
}
