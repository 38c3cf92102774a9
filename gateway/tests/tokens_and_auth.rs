//! Token auth: HS256 tokens from the header or the query; bad, expired and
//! dev-auth upgrades are refused with 401; a token that expires during the
//! session closes it with 4001; `gateway token` mints a working token.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use std::net::{SocketAddr, TcpStream};
use tungstenite::client::IntoClientRequest;

const SECRET: &str = "test-secret-of-at-least-32-bytes!";

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn connect_with(addr: SocketAddr, url_query: &str, bearer: Option<&str>) -> Result<Client, String> {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut req = format!("ws://{addr}/ws{url_query}")
        .into_client_request()
        .unwrap();
    if let Some(t) = bearer {
        req.headers_mut()
            .insert("Authorization", format!("Bearer {t}").parse().unwrap());
    }
    let (ws, _) = tungstenite::client(req, stream).map_err(|e| e.to_string())?;
    Ok(Client::from_ws(ws))
}

#[test]
fn tokens_in_query_or_header_identify_user_and_device() {
    let tg = start_with(2, |c| c.auth_secret = Some(SECRET.into()));
    let t = gateway::auth::sign(SECRET.as_bytes(), "alice", Some("phone"), now_s() + 60);
    let c = connect_with(tg.addr(), &format!("?token={t}"), None).unwrap();
    assert_eq!(c.hello["user"], "alice");
    assert_eq!(c.hello["device"], "phone");
    let t = gateway::auth::sign(SECRET.as_bytes(), "bob", None, now_s() + 60);
    let c = connect_with(tg.addr(), "", Some(&t)).unwrap();
    assert_eq!(c.hello["user"], "bob");
    assert_eq!(c.hello["device"], "default");
}

#[test]
fn bad_expired_missing_and_dev_auth_upgrades_get_401() {
    let tg = start_with(1, |c| c.auth_secret = Some(SECRET.into()));
    let addr = tg.addr();
    let wrong = gateway::auth::sign(b"other", "alice", None, now_s() + 60);
    let expired = gateway::auth::sign(SECRET.as_bytes(), "alice", None, now_s() - 1);
    for (q, bearer) in [
        (format!("?token={wrong}"), None),
        (format!("?token={expired}"), None),
        ("?token=garbage".to_string(), None),
        (String::new(), None),
        ("?user=alice&device=d".to_string(), None),
        (String::new(), Some("not.a.token")),
    ] {
        let err = connect_with(addr, &q, bearer).err().expect("refused");
        assert!(err.contains("401"), "{q} {bearer:?}: {err}");
    }
    assert!(tg.gw().stats().auth_failures >= 6);
}

#[test]
fn a_token_expiring_during_the_session_closes_it_with_4001() {
    let tg = start_with(1, |c| c.auth_secret = Some(SECRET.into()));
    let t = gateway::auth::sign(SECRET.as_bytes(), "alice", None, now_s() + 2);
    let mut c = connect_with(tg.addr(), &format!("?token={t}"), None).unwrap();
    assert_eq!(c.close_code(), Some(4001));
}

#[test]
fn gateway_token_mints_a_token_the_gateway_accepts() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args([
            "token", "--user", "carol", "--device", "tab1", "--ttl", "1h",
        ])
        .env("GATEWAY_AUTH_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "prints only the token");
    let token = stdout.trim();
    let tg = start_with(1, |c| c.auth_secret = Some(SECRET.into()));
    let c = connect_with(tg.addr(), &format!("?token={token}"), None).unwrap();
    assert_eq!(c.hello["user"], "carol");
    assert_eq!(c.hello["device"], "tab1");
    // Without a secret it says so.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["token", "--user", "carol"])
        .env_remove("GATEWAY_AUTH_SECRET")
        .output()
        .unwrap();
    assert!(!out.status.success());
}
