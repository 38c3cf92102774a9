//! Presence: online while any device is connected, offline after the last
//! one closes plus a debounce, pushed to DM and group members; `presence`
//! queries answer with the count and the first 100 online users.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

#[test]
fn dm_partner_is_told_online_and_offline_after_the_debounce() {
    let tg = start_with(2, |c| c.presence_debounce_ms = 400);
    let addr = tg.addr();
    let dm = "dm:alice:bob";
    let mut alice = Client::connect(addr, "alice", "d");
    // The DM exists once alice wrote in it (that is how the gateway knows
    // bob's partner), so bob's first device is announced to her. Writing
    // first makes the order fixed: were bob connected before the message,
    // his announcement could be computed before or after the DM existed.
    alice.send_msg(dm, "a1", "hi");
    let mut bob = Client::connect(addr, "bob", "d");
    let on = alice.recv_type("presence_update");
    assert_eq!(
        on,
        json!({"type": "presence_update", "channel": dm, "user": "bob", "status": "online"})
    );
    bob.send_msg(dm, "b1", "hey");
    bob.close();
    let off = alice.recv_type("presence_update");
    assert_eq!(
        off,
        json!({"type": "presence_update", "channel": dm, "user": "bob", "status": "offline"})
    );
    let bob = Client::connect(addr, "bob", "phone");
    let on = alice.recv_type("presence_update");
    assert_eq!(on["status"], "online");
    assert_eq!(on["user"], "bob");
    // Flapping within the debounce: no event at all.
    bob.close();
    std::thread::sleep(Duration::from_millis(100));
    let _bob = Client::connect(addr, "bob", "phone");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(alice
        .recv_matching_now(|v| v["type"] == "presence_update")
        .is_none());
}

#[test]
fn presence_queries_count_online_users_of_rooms_and_dms() {
    let tg = start(2);
    let addr = tg.addr();
    let mut alice = Client::connect_on_shard(addr, "alice", 0);
    let mut bob = Client::connect_on_shard(addr, "bob", 1);
    alice.join("room:p", None);
    bob.join("room:p", None);
    let p = alice.request(json!({"type": "presence", "channel": "room:p"}));
    assert_eq!(p["type"], "presence");
    assert_eq!(p["count"], 2);
    assert_eq!(p["online"], json!(["alice", "bob"]));
    let p = alice.request(json!({"type": "presence", "channel": "dm:alice:carol"}));
    assert_eq!(p["online"], json!(["alice"]));
    assert_eq!(p["count"], 1);
    let (status, body) = http_get(addr, "/v1/channels/room:p/presence?user=carol");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["count"], 2);
    assert_eq!(v["channel"], "room:p");
}

#[test]
fn a_dm_partner_who_never_wrote_is_still_told_and_has_unread() {
    let tg = start_with(2, |c| c.presence_debounce_ms = 200);
    let addr = tg.addr();
    let dm = "dm:alice:carol";
    let mut carol = Client::connect(addr, "carol", "d");
    // Only carol writes; alice has never touched the DM.
    carol.send_msg(dm, "c1", "ping?");
    carol.send_msg(dm, "c2", "ping??");
    let (status, body) = http_get(addr, "/v1/me/unread?user=alice");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["unread"], json!({ dm: 2 }));
    let alice = Client::connect(addr, "alice", "d");
    let on = carol.recv_type("presence_update");
    assert_eq!(on["user"], "alice");
    assert_eq!(on["status"], "online");
    alice.close();
    let off = carol.recv_type("presence_update");
    assert_eq!(off["status"], "offline");
}

/// "watcher", connected, with a DM holding a message with each of the
/// users `<prefix>000`… (`n` of them), so each is the watcher's contact.
fn watcher_of(addr: std::net::SocketAddr, prefix: &str, n: usize) -> Client {
    let mut watcher = Client::connect(addr, "watcher", "d");
    for i in 0..n {
        let dm = format!("dm:{prefix}{i:03}:watcher");
        let ack = watcher.send_msg(&dm, &format!("m{i}"), "hi");
        assert_eq!(ack["type"], "ack", "{ack}");
    }
    watcher
}

#[test]
fn a_crowd_coming_online_at_once_is_announced_to_their_contact_once_each() {
    // A shard looks presence fan-outs up in batches (those of ~5 ms in one
    // trip to the store threads): every announcement of a crowd that
    // connects at once still arrives, each exactly once.
    let tg = start(2);
    let addr = tg.addr();
    let n = 120;
    let mut watcher = watcher_of(addr, "u", n);
    let crowd: Vec<_> = (0..n)
        .map(|i| std::thread::spawn(move || Client::connect(addr, &format!("u{i:03}"), "d")))
        .collect();
    let crowd: Vec<Client> = crowd.into_iter().map(|t| t.join().unwrap()).collect();
    let mut told = BTreeSet::new();
    while told.len() < n {
        let v = watcher.recv_type("presence_update");
        assert_eq!(v["status"], "online", "{v}");
        let user = v["user"].as_str().unwrap().to_string();
        assert_eq!(v["channel"], format!("dm:{user}:watcher"), "{v}");
        assert!(told.insert(user), "announced twice: {v}");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(watcher
        .recv_matching_now(|v| v["type"] == "presence_update")
        .is_none());
    // And they were batched: fewer trips to the store threads than
    // fan-outs (the crowd's and the watcher's own).
    let fanouts = metric(addr, "gateway_presence_fanouts_total");
    let trips = metric(addr, "gateway_presence_trips_total");
    assert!(fanouts > n as f64, "fan-outs {fanouts}");
    assert!(trips < fanouts, "trips {trips}, fan-outs {fanouts}");
    drop(crowd);
}

#[test]
fn a_crowd_that_comes_and_goes_at_once_is_announced_online_then_offline_once_each() {
    // Each user's offline transition waits for their online one, which is
    // in a batch: it must go in a later trip, in order, exactly once.
    let tg = start_with(2, |c| c.presence_debounce_ms = 0);
    let addr = tg.addr();
    let n = 60;
    let mut watcher = watcher_of(addr, "v", n);
    let crowd: Vec<_> = (0..n)
        .map(|i| {
            std::thread::spawn(move || {
                Client::connect(addr, &format!("v{i:03}"), "d").close();
            })
        })
        .collect();
    for t in crowd {
        t.join().unwrap();
    }
    let mut heard: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut offline = 0;
    while offline < n {
        let v = watcher.recv_type("presence_update");
        let user = v["user"].as_str().unwrap().to_string();
        let status = v["status"].as_str().unwrap().to_string();
        offline += usize::from(status == "offline");
        heard.entry(user).or_default().push(status);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(watcher
        .recv_matching_now(|v| v["type"] == "presence_update")
        .is_none());
    assert_eq!(heard.len(), n);
    for (user, statuses) in heard {
        assert_eq!(statuses, ["online", "offline"], "{user}");
    }
}
