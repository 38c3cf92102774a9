#![allow(clippy::unwrap_used)]

use super::super::ws::{Role, WsDecoder, WsEvent};
use super::*;
use serde_json::{json, Value};

/// Decodes the frames in `bytes` as a client and parses each as JSON.
fn frames(bytes: &[u8]) -> Vec<Value> {
    let mut dec = WsDecoder::new(Role::Client, usize::MAX);
    let mut out = Vec::new();
    dec.feed(bytes, &mut |e| match e {
        WsEvent::Text(t) => out.push(serde_json::from_str(t).unwrap()),
        other => panic!("unexpected {other:?}"),
    })
    .unwrap();
    assert_eq!(dec.buffered_bytes(), 0);
    out
}

fn one(bytes: &[u8]) -> Value {
    let mut all = frames(bytes);
    assert_eq!(all.len(), 1);
    all.pop().unwrap()
}

fn stored(seq: u64) -> StoredMessage {
    StoredMessage {
        seq,
        from: "alice".into(),
        device: "d1".into(),
        client_msg_id: format!("c{seq}"),
        kind: MessageKind::Text,
        text: format!("hello \"{seq}\"\n"),
        target: None,
        media: None,
        ts: 1_700_000_000_000 + seq,
        edited: false,
        deleted: false,
    }
}

#[test]
fn hello_has_the_protocol_fields() {
    let mut out = Vec::new();
    let limits = HelloLimits {
        max_text_chars: 100_000,
        max_frame_bytes: 2 << 20,
        history_max_limit: 200,
    };
    hello(&mut out, "alice", "d1", "s-1", 0, 30_000, &limits, None);
    assert_eq!(
        one(&out),
        json!({"type":"hello","user":"alice","device":"d1","session":"s-1","shard":0,
               "heartbeat_ms":30000,
               "limits":{"max_text_chars":100000,"max_frame_bytes":2097152,"history_max_limit":200}})
    );
}

#[test]
fn replies_echo_number_and_string_ids_verbatim() {
    for (raw, value) in [
        ("17", json!(17)),
        ("-2.5e3", json!(-2500.0)),
        (r#""req \"7\"""#, json!("req \"7\"")),
    ] {
        let mut out = Vec::new();
        joined(&mut out, Some(raw), "room:x", 5);
        left(&mut out, Some(raw), "room:x");
        ack(&mut out, Some(raw), "room:x", "c1", 6, 99, false);
        history(&mut out, Some(raw), "room:x", &[], false);
        pong(&mut out, Some(raw));
        error(&mut out, Some(raw), ErrorCode::Conflict, "differs");
        presence(&mut out, Some(raw), "room:x", &[], 0);
        for v in frames(&out) {
            assert_eq!(v["id"], value, "{v}");
        }
        // Verbatim: the raw text appears as is.
        let mut out = Vec::new();
        pong(&mut out, Some(raw));
        let text = String::from_utf8(out[2..].to_vec()).unwrap();
        assert_eq!(text, format!(r#"{{"type":"pong","id":{raw}}}"#));
    }
}

#[test]
fn replies_without_an_id_omit_the_field() {
    let mut out = Vec::new();
    pong(&mut out, None);
    assert_eq!(one(&out), json!({"type":"pong"}));
    let mut out = Vec::new();
    joined(&mut out, None, "dm:a:b", 0);
    assert_eq!(
        one(&out),
        json!({"type":"joined","channel":"dm:a:b","head":0})
    );
    let mut out = Vec::new();
    left(&mut out, None, "dm:a:b");
    assert_eq!(one(&out), json!({"type":"left","channel":"dm:a:b"}));
}

#[test]
fn ack_has_the_protocol_fields() {
    let mut out = Vec::new();
    ack(
        &mut out,
        Some("1"),
        "room:x",
        "c-9",
        12,
        1_700_000_000_123,
        true,
    );
    assert_eq!(
        one(&out),
        json!({"type":"ack","id":1,"channel":"room:x","client_msg_id":"c-9","seq":12,
               "ts":1_700_000_000_123u64,"duplicate":true})
    );
    let mut body = Vec::new();
    ack_json(&mut body, "room:x", "c-9", 12, 5, false);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({"channel":"room:x","client_msg_id":"c-9","seq":12,"ts":5,"duplicate":false})
    );
}

#[test]
fn msg_has_the_protocol_fields_and_escapes_text() {
    let m = stored(3);
    let mut out = Vec::new();
    msg(&mut out, "room:x", &MsgView::from_stored(&m));
    assert_eq!(
        one(&out),
        json!({"type":"msg","channel":"room:x","seq":3,"from":"alice","device":"d1",
               "client_msg_id":"c3","kind":"text","text":"hello \"3\"\n","ts":1_700_000_000_003u64})
    );
}

#[test]
fn msg_optional_fields_appear_only_when_set() {
    let media = Media {
        url: "https://x/y.png".into(),
        mime: "image/png".into(),
        size: 10,
    };
    let mut out = Vec::new();
    let view = MsgView {
        seq: 4,
        from: "bob",
        device: "d2",
        client_msg_id: "m",
        kind: MessageKind::Media,
        text: Some(""),
        ts: 1,
        target: None,
        media: Some(&media),
        edited: true,
        deleted: false,
    };
    msg(&mut out, "group:g", &view);
    let deleted = MsgView {
        kind: MessageKind::Text,
        text: None,
        media: None,
        edited: false,
        deleted: true,
        ..view
    };
    msg(&mut out, "group:g", &deleted);
    let edit = MsgView {
        kind: MessageKind::Edit,
        text: Some("new"),
        media: None,
        edited: false,
        target: Some(2),
        ..view
    };
    msg(&mut out, "group:g", &edit);
    let all = frames(&out);
    assert_eq!(
        all[0],
        json!({"type":"msg","channel":"group:g","seq":4,"from":"bob","device":"d2",
               "client_msg_id":"m","kind":"media","text":"","ts":1,
               "media":{"url":"https://x/y.png","mime":"image/png","size":10},"edited":true})
    );
    assert_eq!(
        all[1],
        json!({"type":"msg","channel":"group:g","seq":4,"from":"bob","device":"d2",
               "client_msg_id":"m","kind":"text","ts":1,"deleted":true})
    );
    assert_eq!(all[2]["kind"], "edit");
    assert_eq!(all[2]["target"], 2);
    assert!(all[2].get("edited").is_none());
}

#[test]
fn history_messages_are_complete_msg_objects() {
    let stored: Vec<StoredMessage> = (1..=3).map(stored).collect();
    let views: Vec<MsgView<'_>> = stored.iter().map(MsgView::from_stored).collect();
    let mut out = Vec::new();
    history(&mut out, Some("\"h\""), "room:x", &views, true);
    let v = one(&out);
    assert_eq!(v["type"], "history");
    assert_eq!(v["id"], "h");
    assert_eq!(v["channel"], "room:x");
    assert_eq!(v["has_more"], true);
    let messages = v["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3);
    let mut single = Vec::new();
    msg(&mut single, "room:x", &views[1]);
    assert_eq!(messages[1], one(&single));
    let mut body = Vec::new();
    history_json(&mut body, "room:x", &views, false);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["messages"], v["messages"]);
    assert_eq!(body["has_more"], false);
    assert!(body.get("type").is_none());
}

#[test]
fn error_typing_presence_and_read_have_the_protocol_fields() {
    let mut out = Vec::new();
    error(&mut out, None, ErrorCode::NotMember, "not a \"member\"");
    typing(&mut out, "dm:a:b", "a");
    presence(&mut out, None, "room:x", &["a", "b"], 7);
    presence_update(&mut out, "dm:a:b", "b", false);
    read(&mut out, "dm:a:b", "a", 9);
    let all = frames(&out);
    assert_eq!(
        all,
        vec![
            json!({"type":"error","code":"not_member","message":"not a \"member\""}),
            json!({"type":"typing","channel":"dm:a:b","user":"a"}),
            json!({"type":"presence","channel":"room:x","online":["a","b"],"count":7}),
            json!({"type":"presence_update","channel":"dm:a:b","user":"b","status":"offline"}),
            json!({"type":"read","channel":"dm:a:b","user":"a","seq":9}),
        ]
    );
    let mut body = Vec::new();
    presence_json(&mut body, "room:x", &["a"], 1);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({"channel":"room:x","online":["a"],"count":1})
    );
}

#[test]
fn large_history_pages_use_the_64_bit_length_form() {
    let mut big = stored(1);
    big.text = "y".repeat(70_000);
    let views = [MsgView::from_stored(&big)];
    let mut out = Vec::new();
    history(&mut out, None, "room:x", &views, false);
    assert_eq!(out[1], 127);
    assert_eq!(
        one(&out)["messages"][0]["text"].as_str().unwrap().len(),
        70_000
    );
}

#[test]
fn history_fit_keeps_whole_messages_from_the_side_read_within_the_frame() {
    // Control characters escape as \u00XX: six bytes per character.
    let msgs: Vec<StoredMessage> = (1..=10)
        .map(|seq| StoredMessage {
            text: "\u{1}".repeat(10_000),
            ..stored(seq)
        })
        .collect();
    let views: Vec<MsgView<'_>> = msgs.iter().map(MsgView::from_stored).collect();
    let cap = 200_000;
    let newest = history_fit(Some("7"), "room:x", &views, true, cap);
    assert_eq!(newest, 7..10, "three 60 KB messages fit 200 KB");
    let mut out = Vec::new();
    history(&mut out, Some("7"), "room:x", &views[newest.clone()], true);
    assert!(out.len() <= cap, "{} bytes", out.len());
    assert_eq!(one(&out)["messages"][0]["seq"], 8);
    let oldest = history_fit(None, "room:x", &views, false, cap);
    assert_eq!(oldest, 0..3);
    assert_eq!(
        history_fit(None, "room:x", &views, true, 10),
        9..10,
        "at least one message"
    );
    assert_eq!(history_fit(None, "room:x", &[], true, 10), 0..0);
    let all = history_fit(None, "room:x", &views, true, MAX_SERVER_FRAME_BYTES);
    assert_eq!(all, 0..10, "600 KB fit the frame maximum");
}

#[test]
fn the_largest_possible_message_fits_a_server_frame() {
    // 100,000 characters, each escaped to six bytes, with the longest
    // ids and media fields, escaped too.
    let m = StoredMessage {
        seq: u64::MAX,
        from: "u".repeat(64),
        device: "d".repeat(64),
        client_msg_id: "\u{1}".repeat(64),
        kind: MessageKind::Media,
        text: "\u{1}".repeat(100_000),
        target: Some(u64::MAX),
        media: Some(chat_model::Media {
            url: format!("https://{}", "\"".repeat(2040)),
            mime: format!("a/{}", "\"".repeat(250)),
            size: u64::MAX,
        }),
        ts: u64::MAX,
        edited: true,
        deleted: false,
    };
    let channel = format!("room:{}", "x".repeat(155));
    let views = [MsgView::from_stored(&m)];
    let mut out = Vec::new();
    history(&mut out, Some("\"x\""), &channel, &views, true);
    assert!(out.len() < 700 * 1024, "{} bytes", out.len());
    assert!(out.len() < MAX_SERVER_FRAME_BYTES);
}

#[test]
fn a_head_event_names_the_channel_and_its_head() {
    let mut out = Vec::new();
    head(&mut out, "room:big", 42);
    assert_eq!(
        one(&out),
        json!({"type":"head","channel":"room:big","head":42})
    );
}
