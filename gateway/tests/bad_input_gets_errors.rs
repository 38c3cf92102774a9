//! Every kind of bad input gets the protocol's error and the connection
//! stays usable; an oversized frame closes with 1009.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use serde_json::json;
use tungstenite::Message;

fn assert_usable(c: &mut Client) {
    assert_eq!(c.request(json!({"type": "ping"}))["type"], "pong");
}

fn expect_error(c: &mut Client, raw: &str, code: &str) {
    c.send_raw(Message::text(raw.to_string()));
    let e = c.recv_type("error");
    assert_eq!(e["code"], code, "for {raw}: {e}");
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_usable(c);
}

#[test]
fn malformed_requests_get_errors_and_the_connection_stays_usable() {
    let tg = start(2);
    let mut c = Client::connect(tg.addr(), "alice", "d");
    expect_error(&mut c, "{not json", "bad_request");
    expect_error(&mut c, "[1,2]", "bad_request");
    expect_error(&mut c, r#"{"type":"dance"}"#, "unknown_type");
    expect_error(
        &mut c,
        r#"{"type":"send","channel":"room:a","text":"x"}"#,
        "bad_request",
    );
    expect_error(&mut c, r#"{"type":"join"}"#, "bad_request");
    expect_error(
        &mut c,
        r#"{"type":"join","channel":"lobby"}"#,
        "invalid_channel",
    );
    expect_error(
        &mut c,
        r#"{"type":"join","channel":"dm:bob:carol"}"#,
        "not_member",
    );
    expect_error(
        &mut c,
        r#"{"type":"history","channel":"room:a","before":5,"after":1}"#,
        "bad_request",
    );
    expect_error(
        &mut c,
        r#"{"type":"history","channel":"room:a","limit":201}"#,
        "bad_request",
    );
    let long = "é".repeat(100_001);
    let req =
        json!({"type":"send","channel":"room:a","client_msg_id":"big","text":long}).to_string();
    expect_error(&mut c, &req, "message_too_large");
    // Exactly the maximum is fine.
    let max = "é".repeat(100_000);
    let ack = c.send_msg("room:a", "max", &max);
    assert_eq!(ack["type"], "ack");
}

#[test]
fn the_error_reply_echoes_the_request_id() {
    let tg = start(1);
    let mut c = Client::connect(tg.addr(), "alice", "d");
    c.send_raw(Message::text(
        r#"{"id":"abc","type":"join","channel":"nope"}"#,
    ));
    let e = c.recv_type("error");
    assert_eq!(e["id"], "abc");
    assert_eq!(e["code"], "invalid_channel");
}

#[test]
fn a_binary_frame_gets_bad_request() {
    let tg = start(1);
    let mut c = Client::connect(tg.addr(), "alice", "d");
    c.send_raw(Message::binary(vec![1, 2, 3]));
    assert_eq!(c.recv_type("error")["code"], "bad_request");
    assert_usable(&mut c);
}

#[test]
fn a_frame_over_the_maximum_closes_with_1009() {
    let tg = start(1);
    let mut c = Client::connect(tg.addr(), "alice", "d");
    let huge = "a".repeat(2 * 1024 * 1024 + 1);
    // The server may close while the client is still writing; the close
    // frame must still arrive (the server lingers, discarding input).
    let _ = c.ws.send(Message::text(huge));
    assert_eq!(c.close_code(), Some(1009));
    // Other connections are unaffected.
    let mut d = Client::connect(tg.addr(), "bob", "d");
    assert_usable(&mut d);
}

#[test]
fn websocket_pings_are_answered() {
    let tg = start(1);
    let mut c = Client::connect(tg.addr(), "alice", "d");
    c.send_raw(Message::Ping(b"hi".to_vec().into()));
    match c.ws.read().unwrap() {
        Message::Pong(p) => assert_eq!(&p[..], b"hi"),
        other => panic!("expected pong, got {other:?}"),
    }
}

#[test]
fn upgrade_without_user_is_refused_with_401_and_unknown_paths_get_404() {
    let tg = start(1);
    let err = Client::try_connect(tg.addr(), "", "d")
        .err()
        .expect("refused");
    assert!(err.contains("401"), "{err}");
    let (status, _) = http_get(tg.addr(), "/nope");
    assert_eq!(status, 404);
    let (status, body) = http_get(tg.addr(), "/healthz");
    assert_eq!(status, 200, "{body}");
    let (status, body) = http_get(tg.addr(), "/metrics");
    assert_eq!(status, 200);
    assert!(body.contains("gateway_connections"));
    for name in [
        "gateway_commit_latency_ms_bucket{le=\"+Inf\"}",
        "gateway_commit_batch_messages_count",
        "gateway_shard_connections{shard=\"0\"}",
        "gateway_messages_received_total",
        "gateway_auth_failures_total",
        "gateway_slow_consumer_events_total",
    ] {
        assert!(body.contains(name), "metrics has {name}: {body}");
    }
}
