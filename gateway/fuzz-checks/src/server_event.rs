//! The client side's event decoder (loadgen, the tests): differential with
//! `serde_json`, and a round trip through the gateway's own encoders.

use chat_model::MessageKind;
use chat_proto::client::{ClientMsg, ServerEvent};
use chat_proto::response::{self, MsgView};
use chat_proto::{decode_server_event, ErrorCode, Role, WsDecoder, WsEvent};
use serde_json::Value;

use crate::request::is_json_object;

/// Decodes `data` (as UTF-8, as a text frame holds) as a server event.
pub fn decode(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(event) = decode_server_event(text) else {
        return;
    };
    // By JSON's grammar (see `is_json_object`): `Value` also refuses numbers
    // out of `f64`'s range and lone surrogates, which the decoder skips in
    // fields it ignores, as serde_json does.
    assert!(is_json_object(text), "decoded what is not a JSON object");
    if let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(text) {
        assert!(obj.get("type").is_some_and(Value::is_string));
    }
    if let Some(frame) = encode(&event) {
        let mut decoder = WsDecoder::new(Role::Client, usize::MAX);
        let mut texts = Vec::new();
        let fed = decoder.feed(&frame, &mut |e| {
            if let WsEvent::Text(t) = e {
                texts.push(t.to_owned());
            }
        });
        assert_eq!((fed, texts.len()), (Ok(()), 1));
        let again = decode_server_event(&texts[0]).map_err(|e| e.to_string());
        let (mut again, mut event) = (again, event);
        // serde_json (without `float_roundtrip`) may read a printed double
        // back one ulp off (`184674400955161737095516164` → `…174e+26` →
        // `…177e+26`): ids holding one are compared as present, not by value.
        // The gateway echoes ids as raw text, so this never reaches a client.
        if id_mut(&mut event).is_some_and(|id| id.as_ref().is_some_and(has_float)) {
            for e in [again.as_mut().ok(), Some(&mut event)]
                .into_iter()
                .flatten()
            {
                if let Some(id) = id_mut(e) {
                    *id = id.take().map(|_| Value::Null);
                }
            }
        }
        assert_eq!(again, Ok(event), "re-encoded as {}", texts[0]);
    }
}

/// The echoed id of the events that carry one.
fn id_mut(event: &mut ServerEvent) -> Option<&mut Option<Value>> {
    match event {
        ServerEvent::Joined { id, .. }
        | ServerEvent::Left { id, .. }
        | ServerEvent::Ack { id, .. }
        | ServerEvent::History { id, .. }
        | ServerEvent::Pong { id }
        | ServerEvent::Error { id, .. } => Some(id),
        _ => None,
    }
}

/// Whether `v` holds a number that is not an integer.
fn has_float(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_f64(),
        Value::Array(a) => a.iter().any(has_float),
        Value::Object(o) => o.values().any(has_float),
        _ => false,
    }
}

fn kind(name: &str) -> Option<MessageKind> {
    [
        MessageKind::Text,
        MessageKind::Media,
        MessageKind::Edit,
        MessageKind::Delete,
    ]
    .into_iter()
    .find(|k| k.as_str() == name)
}

/// The view of a decoded message, when the gateway could have sent it
/// (a known kind; `text` absent only for a deleted message).
fn view(m: &ClientMsg) -> Option<MsgView<'_>> {
    let kind = kind(&m.kind)?;
    if m.text.is_none() != m.deleted {
        return None;
    }
    Some(MsgView {
        seq: m.seq,
        from: &m.from,
        device: &m.device,
        client_msg_id: &m.client_msg_id,
        kind,
        text: m.text.as_deref(),
        ts: m.ts,
        target: m.target,
        media: m.media.as_ref(),
        edited: m.edited,
        deleted: m.deleted,
    })
}

/// The event as the gateway writes it, for the events it writes from
/// these fields (`None` for the others).
fn encode(event: &ServerEvent) -> Option<Vec<u8>> {
    let raw = |id: &Option<Value>| id.as_ref().map(Value::to_string);
    let mut out = Vec::new();
    match event {
        ServerEvent::Joined { id, channel, head } => {
            response::joined(&mut out, raw(id).as_deref(), channel, *head);
        }
        ServerEvent::Left { id, channel } => response::left(&mut out, raw(id).as_deref(), channel),
        ServerEvent::Ack {
            id,
            channel,
            client_msg_id,
            seq,
            ts,
            duplicate,
        } => response::ack(
            &mut out,
            raw(id).as_deref(),
            channel,
            client_msg_id,
            *seq,
            *ts,
            *duplicate,
        ),
        ServerEvent::Msg(m) => response::msg(&mut out, &m.channel, &view(m)?),
        ServerEvent::History {
            id,
            channel,
            messages,
            has_more,
        } => {
            // A page's messages carry the page's channel.
            if messages.iter().any(|m| m.channel != *channel) {
                return None;
            }
            let views = messages.iter().map(view).collect::<Option<Vec<_>>>()?;
            response::history(&mut out, raw(id).as_deref(), channel, &views, *has_more);
        }
        ServerEvent::Pong { id } => response::pong(&mut out, raw(id).as_deref()),
        ServerEvent::Error { id, code, message } => {
            let code = ErrorCode::ALL.into_iter().find(|c| c.as_str() == code)?;
            response::error(&mut out, raw(id).as_deref(), code, message);
        }
        ServerEvent::Typing { channel, user } => response::typing(&mut out, channel, user),
        ServerEvent::Head { channel, head } => response::head(&mut out, channel, *head),
        ServerEvent::Hello {
            user,
            device,
            session,
            shard,
            heartbeat_ms,
            limits,
        } => response::hello(
            &mut out,
            user,
            device,
            session,
            *shard,
            *heartbeat_ms,
            limits,
            None,
        ),
        ServerEvent::Other(_) => return None,
    }
    Some(out)
}
