//! Against a gateway that requires tokens, each connection signs its own
//! HS256 token; without the secret nothing connects and the run says why.
#![allow(clippy::unwrap_used)]

#[path = "loadgen_common/mod.rs"]
mod common;

use common::{assert_clean, serial, small, start_gateway_with};
use loadgen::{LocalHooks, RunError, ScenarioKind};

const SECRET: &str = "loadgen-test-secret-at-least-32-bytes";

#[test]
fn a_token_per_connection() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let gw = start_gateway_with(dir.path(), "127.0.0.1:0".parse().unwrap(), |c| {
        c.auth_secret = Some(SECRET.into());
    });
    let mut cfg = small(ScenarioKind::Dm, gw.local_addr(), 20);
    cfg.token_secret = Some(SECRET.into());
    let report = common::run(&cfg);
    eprintln!("{}", report.table());
    assert_clean(&report);
    assert_eq!(report.delivered, 2 * report.acked);

    // Without the secret: dev auth is refused (401), nothing connects, and
    // the run gives up saying so.
    cfg.token_secret = None;
    cfg.ready_grace_ms = 10_000;
    let mut hooks = LocalHooks {
        on_progress: |_, _: &_| {},
    };
    let err = loadgen::run(&cfg, &mut hooks).unwrap_err();
    gw.shutdown();
    match &err {
        RunError::CannotConnect { attempts, errors } => {
            assert!(*attempts >= 20);
            assert!(errors.contains("401"), "{errors}");
        }
        other => panic!("unexpected error {other}"),
    }
}
