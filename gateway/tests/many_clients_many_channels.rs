//! 2 shards, 20 clients, 5 channels, 2,000 messages: every client sees every
//! seq of its channels exactly once, in order.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use std::collections::HashMap;

#[test]
fn every_client_sees_every_seq_of_its_channels_once_in_order() {
    let tg = start(2);
    let addr = tg.addr();
    let channels: Vec<String> = (0..5).map(|i| format!("room:ch{i}")).collect();
    let mut clients: Vec<(Client, Vec<String>)> = (0..20)
        .map(|i| {
            let mut c = Client::connect(addr, &format!("user{i}"), "d");
            // Each client joins 2 or 3 channels.
            let mine: Vec<String> = channels
                .iter()
                .enumerate()
                .filter(|(k, _)| (i + k) % 2 == 0)
                .map(|(_, ch)| ch.clone())
                .collect();
            for ch in &mine {
                c.join(ch, None);
            }
            (c, mine)
        })
        .collect();
    let shards: std::collections::HashSet<u64> = clients.iter().map(|(c, _)| c.shard()).collect();
    assert_eq!(shards.len(), 2, "clients landed on both shards");

    // 2,000 messages: each client sends 100 spread over its channels,
    // pipelined (no waiting for acks).
    let mut sent: HashMap<String, u64> = HashMap::new();
    for round in 0..100 {
        for (i, (c, mine)) in clients.iter_mut().enumerate() {
            let ch = &mine[round % mine.len()];
            c.send_msg_async(ch, &format!("c{i}-{round}"), &format!("{i}:{round}"));
            *sent.entry(ch.clone()).or_default() += 1;
        }
    }
    assert_eq!(sent.values().sum::<u64>(), 2000);
    for (c, mine) in clients.iter_mut() {
        for ch in mine.iter() {
            let n = sent[ch];
            let msgs = c.msgs(ch, n as usize);
            assert_seqs(&msgs, 1, n);
        }
        // No stray msg beyond the head arrives later.
        let p = c.request(serde_json::json!({"type": "ping"}));
        assert_eq!(p["type"], "pong");
    }
}
