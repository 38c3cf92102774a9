//! Two gateway processes on one FoundationDB namespace (`--store fdb`):
//! clients of both append to the same channel at once, and every message
//! gets a seq that is dense and unique across both nodes — the loser of each
//! race on the channel head retries on FDB's 1020. Run by `scripts/test-fdb`
//! against an `fdb-double-server` (`FDB_CLUSTER_FILE`), or starts one on a
//! free port itself when none is given.

#![cfg(feature = "fdb")]
#![allow(clippy::unwrap_used)]

mod common;
mod nodes_common;

use common::Client;
use nodes_common::{namespace, node, shared_cluster};
use serde_json::json;

#[test]
fn two_gateways_on_one_namespace_give_dense_unique_seqs_on_one_channel() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, _server) = shared_cluster(dir.path());
    let ns = namespace("two-gateways");
    let gw1 = node(&cluster, &ns, &dir.path().join("gw1"), "gw1");
    let gw2 = node(&cluster, &ns, &dir.path().join("gw2"), "gw2");
    const PER_CLIENT: u64 = 60;

    // Two senders on each node, all on one channel, all at once.
    let senders = [
        (gw1.addr, "alice"),
        (gw2.addr, "bob"),
        (gw1.addr, "carol"),
        (gw2.addr, "dave"),
    ];
    let per_sender: Vec<Vec<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = senders
            .iter()
            .map(|(addr, user)| {
                s.spawn(move || {
                    let mut c = Client::connect(*addr, user, "d1");
                    c.join("room:shared", None);
                    (0..PER_CLIENT)
                        .map(|i| {
                            let ack =
                                c.send_msg("room:shared", &format!("{user}-{i}"), &format!("{i}"));
                            ack["seq"]
                                .as_u64()
                                .unwrap_or_else(|| panic!("no seq in {ack}"))
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for seqs in &per_sender {
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    }
    let mut all: Vec<u64> = per_sender.concat();
    all.sort_unstable();
    let total = PER_CLIENT * senders.len() as u64;
    assert_eq!(all, (1..=total).collect::<Vec<u64>>(), "dense and unique");

    // Either node's history shows the same 240 messages, in seq order.
    for addr in [gw1.addr, gw2.addr] {
        let mut reader = Client::connect(addr, "erin", "d1");
        let mut seen = Vec::new();
        let mut after = 0;
        while (seen.len() as u64) < total {
            let h = reader.request(
                json!({"type": "history", "channel": "room:shared", "after": after, "limit": 200}),
            );
            let msgs = h["messages"].as_array().unwrap();
            assert!(!msgs.is_empty(), "history ended early at {after}: {h}");
            for m in msgs {
                seen.push(m["seq"].as_u64().unwrap());
            }
            after = *seen.last().unwrap();
        }
        assert_eq!(seen, (1..=total).collect::<Vec<u64>>());
    }
}
