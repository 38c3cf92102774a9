//! A run survives a gateway restart on the same data directory and port:
//! connections reconnect, rejoin with `since`, resend what was not acked,
//! and no acked message is lost, duplicated or reordered.
#![allow(clippy::unwrap_used)]

#[path = "loadgen_common/mod.rs"]
mod common;

use std::time::Duration;

use common::{assert_delivered, retry, serial, small, start_gateway};
use gateway::Gateway;
use loadgen::ScenarioKind;

#[test]
fn no_acked_message_is_lost_across_a_restart() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let gw = start_gateway(dir.path(), "127.0.0.1:0".parse().unwrap());
    let addr = gw.local_addr();
    let mut cfg = small(ScenarioKind::Groups, addr, 40);
    cfg.scenario.rate = 400.0;
    cfg.duration_ms = 4_000;
    let run = std::thread::spawn(move || common::run(&cfg));

    // Restart in the middle of the send phase.
    std::thread::sleep(Duration::from_millis(1_500));
    gw.shutdown();
    // The same port right away: the shards' listeners set SO_REUSEPORT
    // (`sys::bind_listener`), so the server side's TIME_WAIT sockets do not
    // block the bind. Retried in case the kernel disagrees.
    let mut attempts = 0;
    let gw: Gateway = retry(Duration::from_secs(10), || {
        attempts += 1;
        gateway::Gateway::start(gateway::Config {
            listen: addr,
            data_dir: dir.path().to_path_buf(),
            shards: Some(2),
            ..gateway::Config::default()
        })
        .map_err(|e| eprintln!("restart attempt {attempts}: {e}"))
        .ok()
    })
    .expect("the gateway restarts on the same port");
    eprintln!("restarted on {addr} after {attempts} attempt(s)");

    let report = run.join().unwrap();
    eprintln!("{}", report.table());
    // Connect errors while the gateway was down are expected; nothing else.
    assert_delivered(&report);
    assert_eq!(
        report.errors,
        report.counters.connect_errors,
        "{}",
        report.table()
    );
    // Every connection was closed by the restart and came back.
    assert!(report.counters.going_away + report.counters.disconnects >= 40);
    assert!(report.counters.connects >= 80, "{}", report.table());
    assert_eq!(report.delivered, 5 * report.acked);
    gw.shutdown();
}
