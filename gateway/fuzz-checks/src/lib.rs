//! # chat-fuzz-checks — what the fuzzers assert, runnable without them
//!
//! The gateway reads untrusted bytes in a handful of places. Each has one
//! function here that takes arbitrary bytes, runs them through the decoder
//! and **asserts properties** — it panics when one fails, which a fuzzer
//! reports as a crash:
//!
//! | target ([`Target`]) | decoder | what is asserted besides "no panic" |
//! |---|---|---|
//! | `ws_frames` | [`chat_proto::WsDecoder`], both roles | the same events and verdict whether the bytes come in one piece ([`WsDecoder::feed`](chat_proto::WsDecoder::feed)) or in chunks ([`feed_mut`](chat_proto::WsDecoder::feed_mut)); buffers bounded by the limit; an error is sticky and frees the buffers; every event re-encodes and decodes to itself |
//! | `ws_deflate` | the same with permessage-deflate ([`chat_proto::deflate`]): RSV1 messages inflated by one shared inflater; the whole input also as `Sec-WebSocket-Extensions` offers | one piece and chunks agree; inflated messages within the limit (a bomb is `TooBig`); an error frees the buffers; an accepted offer's answer negotiates the same |
//! | `ws_tungstenite` | the same, against `tungstenite` | differential: the same messages, pings, pongs and closes, and the same valid/invalid verdict (the documented differences are normalised, see [`ws`]) |
//! | `request` | [`chat_proto::decode_request`] | differential with `serde_json` (not JSON, or not an object → `bad_request`); accepted requests have valid channels and bounded text; they re-encode ([`chat_proto::client::encode_request`]) to an equal request; an echoed id is a JSON number or string |
//! | `http_head` | [`chat_proto::parse_request_head`] | `consumed` within the buffer and the head limit; the head parses the same from exactly its bytes; strict prefixes are "not yet"; the accessors do not panic |
//! | `http_api` | [`chat_proto::api::route`] on a parsed head and its body | body accepted ⇔ `serde_json` sees an object; a request built from it is a JSON object of that type and channel; group calls carry valid, unique members within the limit |
//! | `server_event` | [`chat_proto::decode_server_event`] (loadgen's and the tests' side) | differential with `serde_json`; modelled events re-encode with the gateway's own [`chat_proto::response`] functions and decode to themselves |
//! | `token` | [`chat_proto::auth::verify`], [`chat_proto::auth::parse_ttl`] | an accepted token has valid ids and is not expired; sign → verify round-trips; a changed signature is refused |
//! | `sse_positions` | [`chat_proto::positions::parse_positions`] | valid, unique channels; print → parse round-trips |
//! | `config` | [`chat_core::config::Config::from_toml`] | no panic in parsing or validation |
//!
//! `gateway/fuzz` (a cargo-fuzz crate outside the workspace) has one target
//! per row, each a call to [`check`]. The corpora it builds are committed in
//! `gateway/fuzz/corpus/<target>/`; `tests/corpus_replay.rs` feeds every
//! file of them (and of `gateway/fuzz/regressions/<target>/`, the inputs of
//! bugs found) through the same functions under a plain `cargo test`, so CI
//! checks them on stable in seconds. `docs/reliability.md` ("Fuzzing") has
//! the commands and the figures of the runs.

pub mod api;
pub mod config;
pub mod deflate;
pub mod http_head;
pub mod positions;
pub mod request;
pub mod server_event;
pub mod token;
pub mod ws;

/// One fuzzed decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// [`ws::frames`].
    WsFrames,
    /// [`ws::against_tungstenite`].
    WsTungstenite,
    /// [`deflate::frames`].
    WsDeflate,
    /// [`request::decode`].
    Request,
    /// [`http_head::parse`].
    HttpHead,
    /// [`api::route`].
    HttpApi,
    /// [`server_event::decode`].
    ServerEvent,
    /// [`token::verify`].
    Token,
    /// [`positions::parse`].
    SsePositions,
    /// [`config::parse`].
    Config,
}

impl Target {
    /// Every target, in the order of the table above.
    pub const ALL: [Target; 10] = [
        Target::WsFrames,
        Target::WsDeflate,
        Target::WsTungstenite,
        Target::Request,
        Target::HttpHead,
        Target::HttpApi,
        Target::ServerEvent,
        Target::Token,
        Target::SsePositions,
        Target::Config,
    ];

    /// The target's name: its fuzz target's and its corpus folder's.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Target::WsFrames => "ws_frames",
            Target::WsDeflate => "ws_deflate",
            Target::WsTungstenite => "ws_tungstenite",
            Target::Request => "request",
            Target::HttpHead => "http_head",
            Target::HttpApi => "http_api",
            Target::ServerEvent => "server_event",
            Target::Token => "token",
            Target::SsePositions => "sse_positions",
            Target::Config => "config",
        }
    }
}

/// Runs `data` through `target`'s decoder and asserts its properties.
///
/// # Panics
///
/// When a property does not hold: that is the finding.
pub fn check(target: Target, data: &[u8]) {
    match target {
        Target::WsFrames => ws::frames(data),
        Target::WsDeflate => deflate::frames(data),
        Target::WsTungstenite => ws::against_tungstenite(data),
        Target::Request => request::decode(data),
        Target::HttpHead => http_head::parse(data),
        Target::HttpApi => api::route(data),
        Target::ServerEvent => server_event::decode(data),
        Target::Token => token::verify(data),
        Target::SsePositions => positions::parse(data),
        Target::Config => config::parse(data),
    }
}
