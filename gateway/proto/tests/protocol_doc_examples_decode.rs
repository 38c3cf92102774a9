//! `docs/protocol.md` shows every frame by example: each client example is
//! a request this crate accepts, each server example one the client decoder
//! reads (with its own variant where it models the type), every request type and every error code has its example
//! or row.
#![allow(clippy::unwrap_used)]

use chat_proto::client::{decode_server_event, ServerEvent};
use chat_proto::request::{decode_request, Limits};
use chat_proto::ErrorCode;

fn doc() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/protocol.md"
    ))
    .unwrap()
}

/// The JSON lines of the `json` code blocks after `heading`, block by block.
fn blocks_after(doc: &str, heading: &str) -> Vec<Vec<String>> {
    let start = doc.find(heading).unwrap_or_else(|| panic!("no {heading}"));
    let section = &doc[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    section
        .split("```json\n")
        .skip(1)
        .map(|b| {
            b.split("```")
                .next()
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

#[test]
fn every_client_example_is_a_valid_request_and_every_type_has_one() {
    let doc = doc();
    let blocks = blocks_after(&doc, "## Every frame, by example");
    assert_eq!(blocks.len(), 2, "client and server blocks");
    let mut types = std::collections::BTreeSet::new();
    for line in &blocks[0] {
        if let Err((_, e)) = decode_request(line, &Limits::default()) {
            panic!("{line}: {e:?}");
        }
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        types.insert(v["type"].as_str().unwrap().to_owned());
    }
    for t in [
        "join",
        "leave",
        "send",
        "edit",
        "delete",
        "history",
        "read",
        "delivered",
        "typing",
        "presence",
        "ping",
    ] {
        assert!(types.contains(t), "no example of a `{t}` request");
    }
}

#[test]
fn every_server_example_decodes_as_a_known_event() {
    let doc = doc();
    let blocks = blocks_after(&doc, "## Every frame, by example");
    let mut types = std::collections::BTreeSet::new();
    for line in &blocks[1] {
        let ev = decode_server_event(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let ty = v["type"].as_str().unwrap().to_owned();
        // The events the client decoder models must decode to their own
        // variant (fields and types as the server writes them); the others
        // it passes on by name.
        let modelled = [
            "hello", "joined", "left", "ack", "msg", "history", "pong", "error", "typing", "head",
        ];
        assert_eq!(
            matches!(ev, ServerEvent::Other(_)),
            !modelled.contains(&ty.as_str()),
            "{line}: {ev:?}"
        );
        types.insert(ty);
    }
    for t in [
        "hello",
        "joined",
        "left",
        "ack",
        "msg",
        "history",
        "presence",
        "presence_update",
        "typing",
        "read",
        "channel_added",
        "head",
        "pong",
        "error",
    ] {
        assert!(types.contains(t), "no example of a `{t}` event");
    }
}

#[test]
fn every_error_code_has_a_row_with_its_http_status() {
    let doc = doc();
    let start = doc.find("## Error codes").unwrap();
    let table = &doc[start..start + doc[start..].find("## Close codes").unwrap()];
    for code in ErrorCode::ALL {
        let row = table
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` |", code.as_str())))
            .unwrap_or_else(|| panic!("no row for {}", code.as_str()));
        assert!(
            row.contains(&format!("| {} |", code.http_status())),
            "{row}: HTTP {}",
            code.http_status()
        );
    }
}
