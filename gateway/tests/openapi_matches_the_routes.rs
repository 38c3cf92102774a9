//! `docs/openapi.json` describes the HTTP routes as they are: every
//! documented operation is served (not 404) with a documented status, and
//! every other method on a documented path is not.
#![allow(clippy::unwrap_used)]
mod common;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use common::*;
use serde_json::Value;

/// One request; the status and the head (the body is not waited for on a
/// stream).
fn status(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    while !out.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&out).to_string();
    (text[9..12].parse().unwrap(), text)
}

#[test]
fn every_documented_operation_is_served_and_no_other_method_is() {
    let doc: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json"))
            .unwrap(),
    )
    .unwrap();
    let tg = start(1);
    let addr = tg.addr();
    // A group to address: the caller (alice) is its member.
    let (_, created) = http(
        addr,
        "POST",
        "/v1/groups?user=alice",
        Some(&serde_json::json!({"members": ["bob"]})),
    );
    let group = created["channel"].as_str().unwrap();
    let group_id = group.strip_prefix("group:").unwrap().to_string();

    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 10, "{paths:?}");
    let mut operations = 0;
    for (template, item) in paths {
        let path = template
            .replace("{channel}", "room:openapi")
            .replace("{id}", &group_id)
            .replace("{user}", "bob");
        let query = match template.as_str() {
            "/v1/events" => "?user=alice&channels=room:openapi",
            p if p.starts_with("/v1/") => "?user=alice",
            _ => "",
        };
        for method in ["get", "post", "delete", "put", "patch"] {
            let upper = method.to_uppercase();
            let Some(op) = item.get(method) else {
                if template == "/ws" {
                    continue; // any method reaches the upgrade, which says 400
                }
                let (got, head) = status(addr, &upper, &format!("{path}{query}"), "{}");
                assert_eq!(got, 404, "{upper} {template} is not documented: {head}");
                continue;
            };
            operations += 1;
            let body = op["requestBody"]["content"]["application/json"]["example"]
                .as_object()
                .map(|o| Value::Object(o.clone()).to_string())
                .unwrap_or_default();
            let (got, head) = status(addr, &upper, &format!("{path}{query}"), &body);
            let documented = op["responses"].as_object().unwrap();
            assert!(
                documented.contains_key(&got.to_string()),
                "{upper} {template} answered {got}, documented {:?}: {head}",
                documented.keys().collect::<Vec<_>>()
            );
            assert!(
                got != 404 || template == "/demo/",
                "{upper} {template} is documented but not served: {head}"
            );
        }
    }
    assert!(operations >= 15, "{operations}");
}
