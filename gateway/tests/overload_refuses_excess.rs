//! More connections than the gateway may hold: the excess is refused, the
//! gateway does not spin, and clients already connected keep chatting.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[test]
fn connections_past_the_maximum_get_503_and_others_keep_chatting() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let gw = Child::spawn(
        "",
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
            "--max-connections",
            "40",
        ],
    )
    .unwrap();
    let mut clients: Vec<Client> = (0..40)
        .map(|i| Client::connect(gw.addr, &format!("u{i}"), "d"))
        .collect();
    let mut refused = 0;
    for i in 0..30 {
        match Client::try_connect(gw.addr, &format!("x{i}"), "d") {
            Ok(_) => panic!("connection {i} past the maximum was accepted"),
            Err(e) => {
                assert!(e.contains("503"), "refused with HTTP 503: {e}");
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 30);
    clients[0].join("room:still", None);
    let ack = clients[1].send_msg("room:still", "m1", "still here");
    assert_eq!(ack["seq"], 1);
    assert_eq!(clients[0].msgs("room:still", 1)[0]["text"], "still here");
    // A slot freed is usable again.
    clients.pop().unwrap().close();
    std::thread::sleep(Duration::from_millis(200));
    Client::connect(gw.addr, "late", "d");
}

#[test]
fn exhausted_file_table_does_not_spin_and_served_clients_keep_chatting() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // 256 descriptors for the whole process, but a configured maximum far
    // above it: accept hits EMFILE.
    let gw = Child::spawn(
        "ulimit -n 256;",
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
            "--shards",
            "2",
            "--max-connections",
            "5000",
            // On purpose beyond what 256 descriptors hold.
            "--skip-preflight",
        ],
    )
    .unwrap();
    let mut a = Client::connect(gw.addr, "alice", "d");
    let mut b = Client::connect(gw.addr, "bob", "d");
    a.join("room:emfile", None);

    // Flood: far more TCP connections than descriptors. Those past the limit
    // wait in the kernel's backlog or are reset; none must disturb the rest.
    let mut flood = Vec::new();
    for _ in 0..600 {
        if let Ok(s) = TcpStream::connect_timeout(&gw.addr, Duration::from_millis(200)) {
            flood.push(s);
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let t0 = gw.cpu_ticks();
    let start = Instant::now();
    // Chat while the table is exhausted.
    for i in 0..20 {
        let ack = b.send_msg("room:emfile", &format!("m{i}"), "during the flood");
        assert_eq!(ack["type"], "ack", "{ack}");
    }
    assert_eq!(a.msgs("room:emfile", 20).len(), 20);
    std::thread::sleep(Duration::from_millis(1500));
    let ticks = gw.cpu_ticks() - t0;
    let elapsed = start.elapsed().as_secs_f64();
    // Clock ticks are 1/100 s: spinning would burn ~100 per second per core.
    assert!(
        (ticks as f64) < 40.0 * elapsed,
        "gateway used {ticks} ticks of CPU in {elapsed:.1}s while EMFILE: it spins"
    );
    // When the flood goes away, new clients are served again.
    drop(flood);
    std::thread::sleep(Duration::from_millis(500));
    let mut late = Client::connect(gw.addr, "late", "d");
    assert_eq!(
        late.request(serde_json::json!({"type": "ping"}))["type"],
        "pong"
    );
    // The flood really exhausted the file table (not just the backlog).
    let (_, metrics) = http_get(gw.addr, "/metrics");
    let errors: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("gateway_accept_errors_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(errors > 0, "accept saw EMFILE: {metrics}");
}

#[test]
fn a_maximum_the_host_cannot_hold_is_refused_at_start_with_found_and_required() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let err = Child::spawn(
        "ulimit -n 300;",
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
            "--max-connections",
            "5000",
        ],
    )
    .err()
    .expect("refused");
    assert!(err.contains("RLIMIT_NOFILE"), "{err}");
    assert!(err.contains("found hard 300"), "{err}");
    // The default maximum follows the limit, so the same host starts.
    let gw = Child::spawn(
        "ulimit -n 300;",
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ],
    )
    .unwrap();
    Client::connect(gw.addr, "alice", "d");
}
