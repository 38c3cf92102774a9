//! The request decoder: differential with `serde_json`, and a round trip
//! through the client's encoder.

use chat_proto::client::encode_request;
use chat_proto::request::{Limits, Request};
use chat_proto::{decode_request, parse_channel, ErrorCode, Role, WsDecoder, WsEvent};
use serde_json::value::RawValue;
use serde_json::Value;

/// The limits a run uses: the defaults, and small ones so the bounds are
/// reached by short inputs.
const LIMITS: [Limits; 2] = [
    Limits {
        max_text_chars: 100_000,
        history_max_limit: 200,
        history_default_limit: 50,
    },
    Limits {
        max_text_chars: 4,
        history_max_limit: 3,
        history_default_limit: 2,
    },
];

/// Decodes `data` (as UTF-8; other bytes cannot reach the decoder, the
/// frame decoder refuses them) with each of [`LIMITS`].
pub fn decode(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let object = is_json_object(text);
    for limits in &LIMITS {
        check(text, object, limits);
    }
}

/// Whether `text` is a JSON object by JSON's grammar (serde_json's
/// `RawValue`). Not `Value`: it also refuses escaped lone surrogates
/// (`"\ud800"`) and numbers beyond `f64` (`1e400`), which the grammar
/// allows and the decoders skip in fields they ignore, as serde_json itself
/// does — harmless, nothing of them is kept. Where they would be kept (an
/// echoed `id`) they are refused.
pub fn is_json_object(text: &str) -> bool {
    serde_json::from_str::<&RawValue>(text).is_ok()
        && text
            .trim_start_matches([' ', '\t', '\n', '\r'])
            .starts_with('{')
}

fn check(text: &str, object: bool, limits: &Limits) {
    match decode_request(text, limits) {
        Ok(envelope) => {
            assert!(object, "accepted what is not a JSON object");
            if let Some(id) = envelope.id {
                check_id(id);
            }
            check_request(&envelope.request, limits);
            // Round trip: the client's encoder, then the server's decoders.
            let mut frame = Vec::new();
            encode_request(&mut frame, envelope.id, &envelope.request, [9, 8, 7, 6]);
            let mut decoder = WsDecoder::new(Role::Server, usize::MAX);
            let mut texts = Vec::new();
            let fed = decoder.feed(&frame, &mut |e| {
                if let WsEvent::Text(t) = e {
                    texts.push(t.to_owned());
                }
            });
            assert_eq!((fed, texts.len()), (Ok(()), 1));
            let again = decode_request(&texts[0], limits);
            assert_eq!(
                again.as_ref(),
                Ok(&envelope),
                "re-encoded as {:?}",
                texts[0]
            );
        }
        Err((id, e)) => {
            if let Some(id) = id {
                check_id(id);
            }
            // Not JSON, or not an object: the client's fault, and said so.
            if !object {
                assert_eq!(e.code, ErrorCode::BadRequest, "{e}");
            }
        }
    }
}

/// An echoed id is a JSON number or string.
fn check_id(id: &str) {
    match serde_json::from_str::<Value>(id) {
        Ok(Value::Number(_) | Value::String(_)) => {}
        other => panic!("id {id:?} is {other:?}"),
    }
}

fn check_request(request: &Request<'_>, limits: &Limits) {
    if let Some(channel) = request.channel() {
        assert!(parse_channel(channel).is_ok(), "{channel:?}");
    }
    match request {
        Request::Send(send) => {
            assert!(send.text.chars().count() <= limits.max_text_chars);
            let n = send.client_msg_id.chars().count();
            assert!((1..=64).contains(&n), "client_msg_id of {n} characters");
            assert_ne!(send.target, Some(0), "target 0");
        }
        Request::History { limit, .. } => {
            assert!(
                (1..=limits.history_max_limit.max(limits.history_default_limit)).contains(limit)
            );
        }
        _ => {}
    }
}
