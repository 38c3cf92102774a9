//! Typed answers as WebSocket frames: how a connection that speaks
//! WebSocket (or SSE, which rewrites the same frames) hears an [`Answer`].
//! HTTP calls keep the answer typed; the gateway's HTTP API maps it.

use chat_proto::response::{self, MsgView};
use chat_proto::ws::{encode_frame, encode_text_with, WsOpcode};

use crate::vocab::Answer;

/// Appends `answer` to request `id` as one text frame.
pub fn encode(out: &mut Vec<u8>, id: Option<&str>, answer: &Answer) {
    match answer {
        Answer::Ack {
            channel,
            client_msg_id,
            seq,
            ts,
            duplicate,
        } => response::ack(out, id, channel, client_msg_id, seq.0, *ts, *duplicate),
        Answer::Error { code, message } => response::error(out, id, *code, message),
        Answer::History { channel, page } => {
            let views: Vec<MsgView<'_>> = page.messages.iter().map(MsgView::from_stored).collect();
            response::history(out, id, channel, &views, page.has_more);
        }
        Answer::Presence {
            channel,
            online,
            count,
        } => {
            let online: Vec<&str> = online.iter().map(|u| &**u).collect();
            response::presence(out, id, channel, &online, *count);
        }
        Answer::GroupDone { channel } => response::group_done(out, id, channel),
        Answer::Done => response::done(out, id),
        Answer::Unread(counts) => {
            let unread: serde_json::Map<String, serde_json::Value> = counts
                .iter()
                .map(|(ch, n)| (ch.to_string(), serde_json::Value::from(*n)))
                .collect();
            let body = serde_json::json!({"type": "unread", "unread": unread}).to_string();
            encode_frame(out, WsOpcode::Text, body.as_bytes(), None);
        }
        Answer::Channels(list) => {
            encode_text_with(out, |buf| {
                let body = serde_json::json!({"type": "channels", "channels": list});
                let _ = serde_json::to_writer(buf, &body);
            });
        }
    }
}
