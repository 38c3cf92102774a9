//! # chat-proto — the wire protocol, without I/O
//!
//! Everything the gateway says to a client, and everything it understands
//! from one, is decided here — and nothing here reads a socket, looks at a
//! clock or spawns a task. Functions take bytes (or `&str`) and caller-owned
//! buffers and return values; the driver that owns the sockets calls them.
//! This keeps the hot paths testable byte for byte, reusable by the load
//! generator, and fuzzable (protocol.md is the contract these files
//! implement; `docs/protocol.md` lists our additions). Every decoder of
//! untrusted bytes here has a fuzz target (`gateway/fuzz`; the properties
//! they assert are in `chat-fuzz-checks`, see `docs/reliability.md`).
//!
//! ## Layout
//!
//! | file | concept |
//! |---|---|
//! | [`http`] | the HTTP/1.1 request head (upgrade and HTTP API), responses |
//! | [`api`] | the `/v1` HTTP API: method, path and body → an [`api::ApiCall`] |
//! | [`positions`] | SSE position lists (`channels=`, event ids, `Last-Event-ID`) |
//! | [`ws`] | RFC 6455 frames: [`WsDecoder`] and the `encode_*` functions |
//! | [`deflate`] | permessage-deflate (RFC 7692): negotiation, compress once, bounded inflate |
//! | [`request`] | client JSON requests → [`Request`]; [`ErrorCode`]s |
//! | [`response`] | server events → frames (`hello`, `ack`, `msg`, …) |
//! | [`names`] | ids and channel names (re-exported from `chat-model`) |
//! | [`origin`] | browser origins: the `allowed_origins` rule and CORS headers |
//! | [`client`] | the client side: request encoders, [`ServerEvent`] decoder |
//! | [`auth`] | tokens: HS256 JWT sign and verify, `now` passed in |
//!
//! ## A connection's bytes, in order
//!
//! 1. **Head.** The driver reads into its buffer and calls
//!    [`http::parse_request_head`] until it returns a head (`Ok(None)` means
//!    "read more", and costs nothing). A WebSocket upgrade is answered with
//!    [`http::upgrade_response_with`] (carrying permessage-deflate when
//!    [`deflate::negotiate`] accepts the client's offer); the small HTTP API with an
//!    [`http::Reply`] encoded with its connection's headers (keep-alive,
//!    CORS: [`origin`]), or [`http::json_error_response`] before hanging up.
//!    Bytes after `consumed` already belong to the next stage (a body, the
//!    next request of a kept-alive connection, or WebSocket frames).
//! 2. **Frames.** A [`WsDecoder`] in [`Role::Server`] gets every read
//!    ([`WsDecoder::feed_mut`] unmasks in place; [`WsDecoder::feed`] takes a
//!    shared slice). It calls back once per [`WsEvent`]: complete text or
//!    binary messages (fragments reassembled, text checked as UTF-8), pings,
//!    pongs and close. Complete frames are never copied; only a partial frame
//!    or a fragmented message is buffered, bounded by the message limit,
//!    which is enforced from the frame header before any payload is kept. A
//!    compressed message (permessage-deflate) is inflated by the shard's one
//!    [`deflate::Inflater`], its output bounded by the same limit. A
//!    [`WsError`] is fatal and carries its close code (1009, 1002, 1007).
//! 3. **Requests.** Each text message goes to [`decode_request`], which
//!    returns an [`Envelope`]: the raw `id` to echo, and a [`Request`] whose
//!    strings borrow from the frame when they contain no escapes, and whose
//!    channel has been validated ([`parse_channel`]). A failure is a
//!    [`ProtocolError`] — a code and a plain message for an `error` reply,
//!    never a reason to close the connection.
//! 4. **Responses.** [`response`]'s functions each append one complete
//!    unmasked text frame to a caller-owned `Vec<u8>`, writing JSON straight
//!    after a reserved frame header ([`ws::encode_text_with`]). A `msg` frame
//!    is encoded once and the same bytes go to every subscriber.
//!
//! ## Names
//!
//! User and device ids are 1–64 characters of `[A-Za-z0-9_.-]`. Channels are
//! `dm:<a>:<b>` (a < b), `group:<id>` and `room:<name>`, at most 160 bytes;
//! [`names`] has the rules, including the room-name rule this implementation
//! adds.
//!
//! ## Who uses it
//!
//! * The gateway's connection driver: [`http`], [`ws`], [`request`],
//!   [`response`].
//! * The `loadgen` crate and black-box tests: [`ws`] in [`Role::Client`] (masked
//!   frames out, unmasked in), [`client`]'s request encoders and
//!   [`decode_server_event`].

pub mod api;
pub mod auth;
pub mod client;
pub mod deflate;
pub mod http;
pub mod origin;
pub mod positions;
/// Names of users, devices and channels (from `chat-model`).
pub use chat_model::names;
pub mod request;
pub mod response;
pub mod ws;

pub use client::{decode_msg_ref, decode_server_event, ClientMsg, MsgRef, ServerEvent};
pub use http::{parse_request_head, HttpError, RequestHead};
pub use names::{dm_channel, is_valid_id, parse_channel, ChannelName, MAX_CHANNEL_BYTES};
pub use request::{
    decode_request, Envelope, ErrorCode, HistoryRange, JoinMode, Limits, ProtocolError, Request,
    SendRequest,
};
pub use response::{HelloLimits, MsgView};
pub use ws::{
    encode_close, encode_frame, encode_text_with, Role, WsDecoder, WsError, WsEvent, WsOpcode,
};
