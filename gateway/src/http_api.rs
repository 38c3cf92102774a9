//! The `/v1` HTTP API beside the WebSocket, on the same port.
//!
//! An HTTP request is served as a short-lived session on the shard that
//! accepted it: the body becomes the same JSON request a WebSocket client
//! would send (so validation, access checks, the owner path and dedup are
//! the very same code), and the core answers it typed ([`Answer`]), which
//! this module maps to a status and a JSON body. HTTP sessions are not
//! devices: they do not replace WebSocket connections and take no part in
//! presence. Each call counts against `max_http_calls_per_user` and is
//! bounded in time, response included (`listener.rs`).

use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use crate::rt::net::TcpStream;
use chat_core::vocab::GroupOp;
use chat_core::{Answer, ConnId, ShardState};
use chat_model::Channel;
use chat_proto::api::{self, ApiCall, ApiError};
use chat_proto::auth::Identity;
use chat_proto::http::{Reply, RequestHead};
use chat_proto::response::{self, MsgView};
use chat_proto::ErrorCode;
use futures_lite::AsyncReadExt;
use serde_json::{json, Map, Value};

use crate::shard_task::Shard;
use crate::util::now_ms;

/// What one API call turns into, once the shard's part is decided.
enum Call {
    /// A WebSocket-style request (JSON text) answered by one frame.
    Request(String),
    /// The caller's unread counts.
    Unread,
    /// The caller's groups and DMs (`discovery`).
    MyChannels,
    /// A membership change, sent to the group's owner; `created` answers 201
    /// with the channel, else 204.
    Group {
        channel: Channel,
        op: GroupOp,
        created: bool,
    },
}

/// A fresh group id: 128 bits from the operating system's random source,
/// base64url without padding (22 characters of `[A-Za-z0-9_-]`). Nothing
/// about it can be derived from another id (the store still refuses a
/// duplicate, answered 409). `None` when the OS has no randomness to give.
fn new_group_id() -> Option<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).ok()?;
    Some(data_encoding::BASE64URL_NOPAD.encode(&bytes))
}

/// The call for a routed request (`chat_proto::api::route`, the pure part):
/// a new group gets its id here.
fn call_of(routed: ApiCall) -> Result<Call, ApiError> {
    Ok(match routed {
        ApiCall::Request(text) => Call::Request(text),
        ApiCall::Unread => Call::Unread,
        ApiCall::MyChannels => Call::MyChannels,
        ApiCall::CreateGroup { members } => {
            let id = new_group_id().ok_or_else(|| ApiError {
                status: 503,
                code: ErrorCode::Unavailable.as_str(),
                message: "no randomness available for a group id".to_string(),
            })?;
            // A fresh id is a valid group id.
            let channel = Channel::from_validated(Arc::from(storage::group_channel(&id)));
            Call::Group {
                channel,
                op: GroupOp::Create(members),
                created: true,
            }
        }
        ApiCall::AddMember { channel, user } => Call::Group {
            channel,
            op: GroupOp::Add(user),
            created: false,
        },
        ApiCall::RemoveMember { channel, user } => Call::Group {
            channel,
            op: GroupOp::Remove(user),
            created: false,
        },
    })
}

/// Reads the rest of a body of `len` bytes; returns the body and the bytes
/// read past it (the start of the next request on a kept-alive
/// connection).
async fn read_body(
    stream: &mut TcpStream,
    mut body: Vec<u8>,
    len: usize,
) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut chunk = vec![0u8; 16 * 1024];
    while body.len() < len {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let next = body.split_off(len);
    Some((body, next))
}

/// The HTTP response for a typed answer. `created`: a group was created
/// (201 with its channel rather than 204).
fn to_http(answer: Answer, created: Option<&str>) -> Reply {
    let ok = |body: Value| Reply::json(200, body.to_string());
    match answer {
        Answer::Ack {
            channel,
            client_msg_id,
            seq,
            ts,
            duplicate,
        } => ok(json!({
            "channel": channel,
            "client_msg_id": client_msg_id,
            "seq": seq,
            "ts": ts,
            "duplicate": duplicate,
        })),
        Answer::Error { code, message } => {
            Reply::error(code.http_status(), code.as_str(), &message)
        }
        Answer::History { channel, page } => {
            let views: Vec<MsgView<'_>> = page.messages.iter().map(MsgView::from_stored).collect();
            let mut body = Vec::new();
            response::history_json(&mut body, &channel, &views, page.has_more);
            Reply::json(200, body)
        }
        Answer::Presence {
            channel,
            online,
            count,
        } => {
            let online: Vec<&str> = online.iter().map(|u| &**u).collect();
            let mut body = Vec::new();
            response::presence_json(&mut body, &channel, &online, count);
            Reply::json(200, body)
        }
        Answer::GroupDone { channel } => match created {
            Some(_) => Reply::json(201, json!({ "channel": channel }).to_string()),
            None => Reply::empty(204),
        },
        Answer::Done => Reply::empty(204),
        Answer::Unread(counts) => {
            let unread: Map<String, Value> = counts
                .into_iter()
                .map(|(ch, n)| (ch.to_string(), Value::from(n)))
                .collect();
            ok(json!({ "unread": unread }))
        }
        Answer::Channels(list) => ok(json!({ "channels": list })),
    }
}

/// Runs one call as a short-lived session on `shard` and waits (at most
/// `timeout`) for its typed answer.
async fn run_call(
    shard: &Rc<Shard>,
    identity: &Identity,
    start: impl FnOnce(&mut ShardState, ConnId),
    timeout: Duration,
) -> Option<Answer> {
    let conn = shard.with(|st| {
        let id = st.open_http(identity, now_ms());
        start(st, id);
        id
    });
    let s = shard.clone();
    let answer = crate::rt::timeout(timeout, async move {
        futures_lite::future::poll_fn(|cx| {
            if s.state.borrow().has_queued(conn) {
                s.with(|st| st.admit_queued(conn, now_ms()));
            }
            let mut st = s.state.borrow_mut();
            if !st.is_open(conn) {
                return Poll::Ready(None);
            }
            if let Some(a) = st.take_http_answer(conn) {
                return Poll::Ready(Some(a));
            }
            s.park(&mut st, conn, cx.waker());
            Poll::Pending
        })
        .await
    })
    .await
    .ok()
    .flatten();
    shard.forget(conn);
    shard.with(|st| st.close_conn(conn, now_ms()));
    answer
}

/// Ends a user's HTTP call (`max_http_calls_per_user`) however the call
/// ends: answered, refused, timed out or dropped.
struct CallSlot {
    shard: Rc<Shard>,
    user: Arc<str>,
}

impl Drop for CallSlot {
    fn drop(&mut self) {
        self.shard.state.borrow_mut().end_http_call(&self.user);
    }
}

/// What one call comes to.
pub(crate) struct Served {
    /// The response, for the caller to write with the connection's headers.
    pub(crate) reply: Reply,
    /// The bytes read past the request's body (the next request's, on a
    /// kept-alive connection); `None` when the call was refused before its
    /// body was read, so the connection cannot go on.
    pub(crate) rest: Option<Vec<u8>>,
}

/// Serves one `/v1` request on `shard`: reads its body and returns the
/// response, or `None` when the client left before sending its body. The
/// caller bounds the whole call (body, work and response) by
/// `http_timeout_ms`.
pub(crate) async fn serve(
    shard: Rc<Shard>,
    stream: &mut TcpStream,
    head: RequestHead,
    rest: Vec<u8>,
    identity: Identity,
) -> Option<Served> {
    let refused = |reply: Reply| Some(Served { reply, rest: None });
    let answered = |reply: Reply, next: Vec<u8>| {
        Some(Served {
            reply,
            rest: Some(next),
        })
    };
    let user: Arc<str> = Arc::from(identity.user.as_str());
    let max_calls = shard.cfg().max_http_calls_per_user;
    if !shard.state.borrow_mut().start_http_call(&user) {
        return refused(Reply::error(
            429,
            ErrorCode::RateLimited.as_str(),
            &format!(
                "at most {max_calls} HTTP calls of one user at once (max_http_calls_per_user)"
            ),
        ));
    }
    let _slot = CallSlot {
        shard: shard.clone(),
        user: user.clone(),
    };
    let timeout = Duration::from_millis(shard.cfg().http_timeout_ms);
    let len = head.content_length.unwrap_or(0);
    if len > shard.cfg().max_frame_bytes {
        return refused(Reply::error(
            413,
            "message_too_large",
            "request body too large",
        ));
    }
    let (body, next) = read_body(stream, rest, len).await?;

    let routed = api::route(&head, &body, &identity.user, shard.cfg().max_group_members);
    let call = match routed.and_then(call_of) {
        Ok(c) => c,
        Err(e) => {
            return answered(Reply::error(e.status, e.code, &e.message), next);
        }
    };
    if let Call::Group { created: true, .. } = call {
        let max = shard.cfg().max_groups_created_per_hour;
        if !shard
            .state
            .borrow_mut()
            .take_group_creation(&user, now_ms())
        {
            return answered(
                Reply::error(
                    429,
                    ErrorCode::RateLimited.as_str(),
                    &format!(
                    "at most {max} groups created per user per hour (max_groups_created_per_hour)"
                ),
                ),
                next,
            );
        }
    }
    let (answer, created) = match call {
        Call::Request(text) => {
            let start = move |st: &mut ShardState, id| st.on_request(id, &text, now_ms());
            (run_call(&shard, &identity, start, timeout).await, None)
        }
        Call::MyChannels => {
            let start = |st: &mut ShardState, id| st.my_channels_request(id, now_ms());
            (run_call(&shard, &identity, start, timeout).await, None)
        }
        Call::Unread => {
            let start = |st: &mut ShardState, id| st.unread_request(id, now_ms());
            (run_call(&shard, &identity, start, timeout).await, None)
        }
        Call::Group {
            channel,
            op,
            created,
        } => {
            let ch = channel.clone();
            let start = move |st: &mut ShardState, id| st.group_request(id, ch, op, now_ms());
            let answer = run_call(&shard, &identity, start, timeout).await;
            (answer, created.then_some(channel))
        }
    };
    let reply = match answer {
        Some(a) => to_http(a, created.as_deref()),
        None => Reply::error(503, "unavailable", "no reply in time"),
    };
    answered(reply, next)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn status_and_body(r: &Reply) -> (u16, Value) {
        let r = r.encode(chat_proto::http::ConnHeaders::CLOSE);
        let text = std::str::from_utf8(&r).unwrap();
        let status = text[9..12].parse().unwrap();
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    #[test]
    fn typed_answers_map_to_statuses_and_bodies() {
        let ack = Answer::Ack {
            channel: Channel::from_validated(Arc::from("room:x")),
            client_msg_id: "c1".into(),
            seq: chat_model::Seq(3),
            ts: 9,
            duplicate: false,
        };
        let (s, b) = status_and_body(&to_http(ack, None));
        assert_eq!(s, 200);
        assert_eq!(
            b,
            json!({"channel":"room:x","client_msg_id":"c1","seq":3,"ts":9,"duplicate":false})
        );
        let (s, b) = status_and_body(&to_http(Answer::error(ErrorCode::NotMember, "m"), None));
        assert_eq!(s, 403);
        assert_eq!(b["code"], "not_member");
        let (s, _) = status_and_body(&to_http(
            Answer::error(ErrorCode::MessageTooLarge, "m"),
            None,
        ));
        assert_eq!(s, 413);
        let done = Answer::GroupDone {
            channel: Channel::from_validated(Arc::from("group:g")),
        };
        let (s, b) = status_and_body(&to_http(done.clone(), Some("group:g")));
        assert_eq!((s, b), (201, json!({"channel":"group:g"})));
        assert_eq!(status_and_body(&to_http(done, None)).0, 204);
    }
}
