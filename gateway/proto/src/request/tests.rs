#![allow(clippy::unwrap_used)]

use super::*;

fn decode(text: &str) -> Result<Envelope<'_>, (Option<&str>, ProtocolError)> {
    decode_request(text, &Limits::default())
}

fn ok(text: &str) -> Request<'_> {
    match decode(text) {
        Ok(env) => env.request,
        Err((_, e)) => panic!("{text}: {e}"),
    }
}

fn err(text: &str) -> ProtocolError {
    match decode(text) {
        Ok(env) => panic!("{text}: decoded as {env:?}"),
        Err((_, e)) => e,
    }
}

fn code(text: &str) -> ErrorCode {
    err(text).code
}

#[test]
fn join_with_and_without_since() {
    assert_eq!(
        ok(r#"{"type":"join","channel":"room:lobby"}"#),
        Request::Join {
            channel: "room:lobby",
            since: None,
            mode: JoinMode::Live,
        }
    );
    assert_eq!(
        ok(r#"{"type":"join","channel":"dm:a:b","since":42}"#),
        Request::Join {
            channel: "dm:a:b",
            since: Some(42),
            mode: JoinMode::Live,
        }
    );
}

#[test]
fn leave_typing_presence_and_ping() {
    assert_eq!(
        ok(r#"{"type":"leave","channel":"group:g1"}"#),
        Request::Leave {
            channel: "group:g1"
        }
    );
    assert_eq!(
        ok(r#"{"type":"typing","channel":"group:g1"}"#),
        Request::Typing {
            channel: "group:g1"
        }
    );
    assert_eq!(
        ok(r#"{"type":"presence","channel":"room:x"}"#),
        Request::Presence { channel: "room:x" }
    );
    assert_eq!(ok(r#"{"type":"ping"}"#), Request::Ping);
}

#[test]
fn send_text_borrows_its_strings() {
    let req = ok(r#"{"type":"send","channel":"room:x","client_msg_id":"c-1","text":"hi there"}"#);
    let Request::Send(send) = req else {
        panic!("not a send")
    };
    assert_eq!(send.channel, "room:x");
    assert_eq!(send.kind, MessageKind::Text);
    assert_eq!(send.target, None);
    assert_eq!(send.media, None);
    assert!(matches!(send.client_msg_id, Cow::Borrowed("c-1")));
    assert!(matches!(send.text, Cow::Borrowed("hi there")));
}

#[test]
fn send_text_with_escapes_is_unescaped() {
    let Request::Send(send) = ok(
        r#"{"type":"send","channel":"room:x","client_msg_id":"1","kind":"text","text":"a\"b\n\u00e9"}"#,
    ) else {
        panic!("not a send")
    };
    assert_eq!(send.text, "a\"b\né");
}

#[test]
fn send_media_with_and_without_caption() {
    let Request::Send(send) = ok(
        r#"{"type":"send","channel":"room:x","client_msg_id":"m1","kind":"media",
           "media":{"url":"https://cdn.example/a.png","mime":"image/png","size":1234}}"#,
    ) else {
        panic!("not a send")
    };
    assert_eq!(send.kind, MessageKind::Media);
    assert_eq!(send.text, "");
    assert_eq!(
        send.media,
        Some(Media {
            url: "https://cdn.example/a.png".into(),
            mime: "image/png".into(),
            size: 1234
        })
    );
    let Request::Send(send) = ok(
        r#"{"type":"send","channel":"room:x","client_msg_id":"m2","kind":"media","text":"look",
           "media":{"url":"HTTP://x/y","mime":"video/mp4","size":0,"width":3}}"#,
    ) else {
        panic!("not a send")
    };
    assert_eq!(send.text, "look");
}

#[test]
fn media_errors_are_bad_requests() {
    let base = r#"{"type":"send","channel":"room:x","client_msg_id":"m","kind":"media","#;
    let cases = [
        r#""text":"no media"}"#.to_owned(),
        r#""media":{"url":"ftp://x/y","mime":"image/png","size":1}}"#.to_owned(),
        r#""media":{"url":"https://","mime":"image/png","size":1}}"#.to_owned(),
        r#""media":{"url":"https://a b","mime":"image/png","size":1}}"#.to_owned(),
        format!(
            r#""media":{{"url":"https://x/{}","mime":"image/png","size":1}}}}"#,
            "a".repeat(2048)
        ),
        r#""media":{"url":"https://x/y","mime":"imagepng","size":1}}"#.to_owned(),
        r#""media":{"url":"https://x/y","mime":"image/png; q=1","size":1}}"#.to_owned(),
        format!(
            r#""media":{{"url":"https://x/y","mime":"image/{}","size":1}}}}"#,
            "p".repeat(250)
        ),
        r#""media":{"url":"https://x/y","mime":"image/png","size":-1}}"#.to_owned(),
        r#""media":{"url":"https://x/y","mime":"image/png"}}"#.to_owned(),
        r#""media":"https://x/y"}"#.to_owned(),
        r#""media":["https://x/y","a/b",1]}"#.to_owned(),
        r#""media":null}"#.to_owned(),
        r#""media":{"url":"ééééééééé","mime":"a/b","size":1}}"#.to_owned(),
        r#""media":{"url":"HTTPS://x/y","mime":"a/b","size":1.5}}"#.to_owned(),
    ];
    for case in cases {
        let text = format!("{base}{case}");
        assert_eq!(code(&text), ErrorCode::BadRequest, "{text}");
    }
    assert_eq!(
        code(
            r#"{"type":"send","channel":"room:x","client_msg_id":"m","text":"t","media":{"url":"https://x/y","mime":"a/b","size":1}}"#
        ),
        ErrorCode::BadRequest,
        "media without kind media"
    );
    assert!(err(&format!("{base}\"media\":7}}"))
        .message
        .contains("media"));
}

#[test]
fn edit_and_delete_are_sends_with_a_target() {
    let Request::Send(edit) =
        ok(r#"{"type":"edit","channel":"room:x","target":7,"client_msg_id":"e1","text":"fixed"}"#)
    else {
        panic!("not a send")
    };
    assert_eq!(edit.kind, MessageKind::Edit);
    assert_eq!(edit.target, Some(7));
    assert_eq!(edit.text, "fixed");
    let Request::Send(delete) = ok(
        r#"{"type":"delete","channel":"room:x","target":7,"client_msg_id":"d1","text":"ignored"}"#,
    ) else {
        panic!("not a send")
    };
    assert_eq!(delete.kind, MessageKind::Delete);
    assert_eq!(delete.target, Some(7));
    assert_eq!(delete.text, "");
    assert_eq!(
        ok(r#"{"type":"delete","channel":"room:x","target":7,"client_msg_id":"d1"}"#).type_name(),
        "delete"
    );
}

#[test]
fn edit_needs_target_and_text_and_delete_needs_target() {
    for text in [
        r#"{"type":"edit","channel":"room:x","client_msg_id":"e","text":"t"}"#,
        r#"{"type":"edit","channel":"room:x","target":3,"client_msg_id":"e"}"#,
        r#"{"type":"edit","channel":"room:x","target":0,"client_msg_id":"e","text":"t"}"#,
        r#"{"type":"edit","channel":"room:x","target":3,"text":"t"}"#,
        r#"{"type":"delete","channel":"room:x","client_msg_id":"d"}"#,
        r#"{"type":"delete","channel":"room:x","target":"3","client_msg_id":"d"}"#,
    ] {
        assert_eq!(code(text), ErrorCode::BadRequest, "{text}");
    }
    assert!(
        err(r#"{"type":"edit","channel":"room:x","client_msg_id":"e","text":"t"}"#)
            .message
            .contains("target")
    );
}

#[test]
fn history_ranges_and_limits() {
    assert_eq!(
        ok(r#"{"type":"history","channel":"room:x"}"#),
        Request::History {
            channel: "room:x",
            range: HistoryRange::Latest,
            limit: 50
        }
    );
    assert_eq!(
        ok(r#"{"type":"history","channel":"room:x","before":10,"limit":200}"#),
        Request::History {
            channel: "room:x",
            range: HistoryRange::Before(10),
            limit: 200
        }
    );
    assert_eq!(
        ok(r#"{"type":"history","channel":"room:x","after":0,"limit":1}"#),
        Request::History {
            channel: "room:x",
            range: HistoryRange::After(0),
            limit: 1
        }
    );
    assert_eq!(
        HistoryRange::Before(3).to_read_range(),
        chat_model::ReadRange::Before(chat_model::Seq(3))
    );
}

#[test]
fn history_with_both_bounds_or_a_limit_out_of_range_is_a_bad_request() {
    for text in [
        r#"{"type":"history","channel":"room:x","before":10,"after":2}"#,
        r#"{"type":"history","channel":"room:x","limit":0}"#,
        r#"{"type":"history","channel":"room:x","limit":201}"#,
        r#"{"type":"history","channel":"room:x","limit":-1}"#,
        r#"{"type":"history","channel":"room:x","limit":2.5}"#,
        r#"{"type":"history","channel":"room:x","limit":"10"}"#,
    ] {
        assert_eq!(code(text), ErrorCode::BadRequest, "{text}");
    }
    assert!(err(r#"{"type":"history","channel":"room:x","limit":"10"}"#)
        .message
        .contains("`limit`"));
}

#[test]
fn read_and_delivered_need_a_seq() {
    assert_eq!(
        ok(r#"{"type":"read","channel":"dm:a:b","seq":5}"#),
        Request::Read {
            channel: "dm:a:b",
            seq: 5
        }
    );
    assert_eq!(
        ok(r#"{"type":"delivered","channel":"dm:a:b","seq":6}"#),
        Request::Delivered {
            channel: "dm:a:b",
            seq: 6
        }
    );
    assert_eq!(
        code(r#"{"type":"read","channel":"dm:a:b"}"#),
        ErrorCode::BadRequest
    );
    assert!(err(r#"{"type":"delivered","channel":"dm:a:b"}"#)
        .message
        .contains("seq"));
}

#[test]
fn not_json_or_not_an_object_is_a_bad_request() {
    for text in [
        "",
        "{",
        "nope",
        r#"{"type":"ping"} x"#,
        "[1,2]",
        r#"[1,"ping"]"#,
        "\"ping\"",
        "null",
        "3",
    ] {
        let (id, e) = decode(text).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest, "{text:?}");
        assert_eq!(id, None);
    }
    assert!(err("[1]").message.contains("object"));
    assert!(err("{").message.contains("JSON"));
}

#[test]
fn missing_or_wrong_typed_fields_are_bad_requests_naming_the_field() {
    let cases = [
        (r#"{"channel":"room:x"}"#, "type"),
        (r#"{"type":5}"#, "type"),
        (r#"{"type":"join"}"#, "channel"),
        (r#"{"type":"join","channel":7}"#, "channel"),
        (r#"{"type":"join","channel":"room:x","since":"1"}"#, "since"),
        (r#"{"type":"join","channel":"room:x","since":-1}"#, "since"),
        (
            r#"{"type":"send","channel":"room:x","text":"t"}"#,
            "client_msg_id",
        ),
        (
            r#"{"type":"send","channel":"room:x","client_msg_id":1,"text":"t"}"#,
            "client_msg_id",
        ),
        (
            r#"{"type":"send","channel":"room:x","client_msg_id":"c"}"#,
            "text",
        ),
        (
            r#"{"type":"send","channel":"room:x","client_msg_id":"c","text":["t"]}"#,
            "text",
        ),
        (
            r#"{"type":"send","channel":"room:x","client_msg_id":"c","text":"t","kind":1}"#,
            "kind",
        ),
        (
            r#"{"type":"send","channel":"room:x","client_msg_id":"c","text":"t","kind":"sticker"}"#,
            "kind",
        ),
        (
            r#"{"type":"send","channel":"room:x","client_msg_id":"c","text":"t","kind":"edit"}"#,
            "edit",
        ),
        (r#"{"type":"read","channel":"room:x","seq":true}"#, "seq"),
        (
            r#"{"type":"history","channel":"room:x","before":"1"}"#,
            "before",
        ),
        (
            r#"{"type":"history","channel":"room:x","after":{}}"#,
            "after",
        ),
    ];
    for (text, field) in cases {
        let e = err(text);
        assert_eq!(e.code, ErrorCode::BadRequest, "{text}");
        assert!(e.message.contains(field), "{text}: {}", e.message);
    }
}

#[test]
fn unknown_type_is_unknown_type() {
    let e = err(r#"{"type":"dance","channel":"room:x"}"#);
    assert_eq!(e.code, ErrorCode::UnknownType);
    assert!(e.message.contains("dance"));
}

#[test]
fn invalid_channels_are_invalid_channel() {
    for text in [
        r#"{"type":"join","channel":"lobby"}"#,
        r#"{"type":"join","channel":"dm:bob:alice"}"#,
        r#"{"type":"send","channel":"group:a.b","client_msg_id":"c","text":"t"}"#,
        r#"{"type":"history","channel":"room:"}"#,
        r#"{"type":"read","channel":"room:a b","seq":1}"#,
        r#"{"type":"typing","channel":"room:\u0061"}"#,
    ] {
        assert_eq!(code(text), ErrorCode::InvalidChannel, "{text}");
    }
    let long = format!(r#"{{"type":"join","channel":"room:{}"}}"#, "r".repeat(156));
    assert_eq!(code(&long), ErrorCode::InvalidChannel);
}

#[test]
fn text_longer_than_the_limit_is_message_too_large() {
    let limits = Limits {
        max_text_chars: 5,
        ..Limits::default()
    };
    let send = |t: &str| {
        format!(r#"{{"type":"send","channel":"room:x","client_msg_id":"c","text":"{t}"}}"#)
    };
    // Five characters, ten bytes: fits.
    assert!(decode_request(&send("ééééé"), &limits).is_ok());
    let text = send("éééééé");
    let (_, e) = decode_request(&text, &limits).unwrap_err();
    assert_eq!(e.code, ErrorCode::MessageTooLarge);
    let edit =
        r#"{"type":"edit","channel":"room:x","target":1,"client_msg_id":"c","text":"123456"}"#;
    let (_, e) = decode_request(edit, &limits).unwrap_err();
    assert_eq!(e.code, ErrorCode::MessageTooLarge);
    let default_max = send(&"a".repeat(100_001));
    assert_eq!(code(&default_max), ErrorCode::MessageTooLarge);
    assert!(decode(&send(&"a".repeat(100_000))).is_ok());
}

#[test]
fn client_msg_id_is_1_to_64_characters() {
    let send = |c: &str| {
        format!(r#"{{"type":"send","channel":"room:x","client_msg_id":"{c}","text":"t"}}"#)
    };
    assert!(decode(&send(&"é".repeat(64))).is_ok());
    assert_eq!(code(&send("")), ErrorCode::BadRequest);
    assert_eq!(code(&send(&"c".repeat(65))), ErrorCode::BadRequest);
}

#[test]
fn number_and_string_ids_are_kept_verbatim() {
    assert_eq!(decode(r#"{"type":"ping","id":17}"#).unwrap().id, Some("17"));
    assert_eq!(
        decode(r#"{"id": "req-\"1\"" ,"type":"ping"}"#).unwrap().id,
        Some(r#""req-\"1\"""#)
    );
    assert_eq!(
        decode(r#"{"type":"ping","id":-1.5e3}"#).unwrap().id,
        Some("-1.5e3")
    );
    assert_eq!(decode(r#"{"type":"ping"}"#).unwrap().id, None);
}

#[test]
fn ids_that_are_not_numbers_or_strings_are_bad_requests() {
    for text in [
        r#"{"type":"ping","id":null}"#,
        r#"{"type":"ping","id":true}"#,
        r#"{"type":"ping","id":{"a":1}}"#,
        r#"{"type":"ping","id":[1]}"#,
        r#"{"type":"join","channel":5,"id":[1]}"#,
    ] {
        let (id, e) = decode(text).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest, "{text}");
        assert!(e.message.contains("id"), "{text}");
        assert_eq!(id, None);
    }
}

#[test]
fn errors_echo_the_id_when_it_could_be_read() {
    let cases = [
        r#"{"id":9,"type":"join","channel":5}"#,
        r#"{"id":9,"type":"join","channel":"nope"}"#,
        r#"{"id":9,"type":"dance"}"#,
        r#"{"id":9,"type":"history","channel":"room:x","limit":1000}"#,
        r#"{"id":9}"#,
    ];
    for text in cases {
        let (id, _) = decode(text).unwrap_err();
        assert_eq!(id, Some("9"), "{text}");
    }
    let (id, _) = decode(r#"{"id":"abc","type":"send"}"#).unwrap_err();
    assert_eq!(id, Some(r#""abc""#));
}

#[test]
fn join_takes_an_audience_tier() {
    for (name, mode) in [
        ("live", JoinMode::Live),
        ("digest", JoinMode::Digest),
        ("counts", JoinMode::Counts),
    ] {
        let text = format!(r#"{{"type":"join","channel":"room:big","mode":"{name}"}}"#);
        assert_eq!(
            ok(&text),
            Request::Join {
                channel: "room:big",
                since: None,
                mode
            }
        );
    }
}

#[test]
fn an_unknown_join_mode_is_a_bad_request_with_its_id() {
    let (id, e) =
        decode(r#"{"id":7,"type":"join","channel":"room:x","mode":"firehose"}"#).unwrap_err();
    assert_eq!(id, Some("7"));
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert!(e.message.contains("firehose"), "{}", e.message);
    let (_, e) = decode(r#"{"type":"join","channel":"room:x","mode":3}"#).unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert!(e.message.contains("`mode`"), "{}", e.message);
}

#[test]
fn unknown_fields_and_nulls_are_ignored() {
    assert_eq!(
        ok(r#"{"type":"join","channel":"room:x","since":null,"future":{"x":[1,2]},"v":2}"#),
        Request::Join {
            channel: "room:x",
            since: None,
            mode: JoinMode::Live,
        }
    );
}

#[test]
fn duplicate_fields_are_bad_requests() {
    assert_eq!(
        code(r#"{"type":"join","channel":"room:x","channel":"room:y"}"#),
        ErrorCode::BadRequest
    );
}

#[test]
fn error_codes_have_their_wire_names_and_http_statuses() {
    let expected = [
        ("bad_request", 400),
        ("unknown_type", 400),
        ("invalid_channel", 400),
        ("not_member", 403),
        ("forbidden", 403),
        ("not_found", 404),
        ("message_too_large", 413),
        ("conflict", 409),
        ("rate_limited", 429),
        ("unavailable", 503),
    ];
    for (code, (name, status)) in ErrorCode::ALL.into_iter().zip(expected) {
        assert_eq!(code.as_str(), name);
        assert_eq!(code.http_status(), status, "{name}");
    }
}

#[test]
fn garbage_never_panics() {
    let samples = [
        r#"{"type":"send","media":{"url":1}}"#,
        r#"{"type":"send","channel":"room:x","client_msg_id":"\ud800","text":"x"}"#,
        r#"{"type":"\u0070ing"}"#,
        "{\"type\":\"join\",\"channel\":\"room:x\"",
        r#"{"":""}"#,
    ];
    for s in samples {
        let _ = decode(s);
    }
    assert_eq!(ok(r#"{"type":"\u0070ing"}"#), Request::Ping);
}

#[test]
fn an_id_no_client_could_read_is_refused_not_echoed() {
    // Found by the `request` fuzz target: JSON's grammar allows `"\ud800"`,
    // but an echoed id must be readable by every client.
    let (id, e) = decode(r#"{"type":"ping","id":"\ud800"}"#).unwrap_err();
    assert_eq!((id, e.code), (None, ErrorCode::BadRequest));
    let (id, e) = decode(r#"{"type":"ping","id":"a\udc00b"}"#).unwrap_err();
    assert_eq!((id, e.code), (None, ErrorCode::BadRequest));
    // A number no double holds.
    let (id, e) = decode(r#"{"type":"ping","id":1e400}"#).unwrap_err();
    assert_eq!((id, e.code), (None, ErrorCode::BadRequest));
    let ok = decode(r#"{"type":"ping","id":-1.5e300}"#).unwrap();
    assert_eq!(ok.id, Some("-1.5e300"));
    // Escaped, but Unicode: echoed as sent.
    let ok = decode(r#"{"type":"ping","id":"\ud83d\ude00\u0041"}"#).unwrap();
    assert_eq!(ok.id, Some(r#""\ud83d\ude00\u0041""#));
}
