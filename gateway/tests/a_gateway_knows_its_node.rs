//! Every gateway is a node with an id: `hello.node`, `GET /v1/nodes`
//! (without credentials). With the embedded store the list is this node
//! alone; the id is kept in the data directory across restarts unless
//! configured.

#![allow(clippy::unwrap_used)]

mod common;

use common::{http, start_with, test_config, Client};

#[test]
fn a_single_gateway_lists_itself_and_names_its_node_in_hello() {
    let gw = start_with(2, |_| {});
    let (status, body) = http(gw.addr(), "GET", "/v1/nodes", None);
    assert_eq!(status, 200, "{body}");
    let nodes = body["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1, "{body}");
    let id = body["node"].as_str().unwrap().to_owned();
    assert!(id.starts_with("n-"), "{body}");
    assert_eq!(nodes[0]["id"], id.as_str());
    assert_eq!(nodes[0]["url"], format!("ws://{}/ws", gw.addr()));
    assert_eq!(nodes[0]["self"], true);
    let hello = Client::connect(gw.addr(), "alice", "d1").hello;
    assert_eq!(hello["node"], id.as_str(), "{hello}");
}

#[test]
fn the_node_id_survives_a_restart_on_the_same_data_dir_and_can_be_configured() {
    let dir = tempfile::tempdir().unwrap();
    let first = gateway::Gateway::start(test_config(dir.path(), 1)).unwrap();
    let id = Client::connect(first.local_addr(), "u", "d").hello["node"].clone();
    first.shutdown();
    let again = gateway::Gateway::start(test_config(dir.path(), 1)).unwrap();
    assert_eq!(
        Client::connect(again.local_addr(), "u", "d").hello["node"],
        id
    );
    again.shutdown();
    let mut cfg = test_config(dir.path(), 1);
    cfg.node_id = Some("edge-7".into());
    cfg.advertise_url = Some("wss://edge-7.example.com/ws".into());
    let named = gateway::Gateway::start(cfg).unwrap();
    let (_, body) = http(named.local_addr(), "GET", "/v1/nodes", None);
    assert_eq!(body["node"], "edge-7");
    assert_eq!(body["nodes"][0]["url"], "wss://edge-7.example.com/ws");
    named.shutdown();
}
