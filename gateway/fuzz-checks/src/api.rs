//! The HTTP API: a request head and its body, as the gateway reads them.

use chat_proto::api::{body_object, route as api_route, ApiCall};
use chat_proto::{decode_request, is_valid_id, parse_channel, parse_request_head, ChannelName};
use serde_json::Value;

/// The caller's user id.
const USER: &str = "caller";

/// `data` is what a client sends: a request head, then its body (the first
/// `Content-Length` bytes after it, or what is there). The first byte is
/// `max_group_members` (0–255).
pub fn route(data: &[u8]) {
    let Some((&max_members, stream)) = data.split_first() else {
        return;
    };
    let max_members = usize::from(max_members);
    let Ok(Some((head, consumed))) = parse_request_head(stream, 8192) else {
        return;
    };
    let rest = &stream[consumed..];
    let body = &rest[..head.content_length.unwrap_or(0).min(rest.len())];
    let is_object = matches!(serde_json::from_slice::<Value>(body), Ok(Value::Object(_)));
    assert_eq!(body_object(body).is_ok(), is_object, "body {body:?}");
    match api_route(&head, body, USER, max_members) {
        Ok(ApiCall::Request(text)) => {
            let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(&text) else {
                panic!("not a JSON object: {text}");
            };
            let ty = obj.get("type").and_then(Value::as_str);
            assert!(
                matches!(
                    ty,
                    Some("send" | "edit" | "delete" | "read" | "presence" | "history")
                ),
                "{text}"
            );
            let channel = obj.get("channel").and_then(Value::as_str);
            let in_path = head
                .path
                .strip_prefix("/v1/channels/")
                .and_then(|r| r.rsplit_once('/'))
                .map(|(c, _)| c);
            assert_eq!(channel, in_path, "{text}");
            let _ = decode_request(&text, &chat_proto::Limits::default());
        }
        Ok(ApiCall::CreateGroup { members }) => {
            assert!(is_object);
            assert_eq!(members.first().map(String::as_str), Some(USER));
            assert!(members.len() <= max_members);
            for (i, m) in members.iter().enumerate() {
                assert!(is_valid_id(m), "{m:?}");
                assert!(!members[..i].contains(m), "{m} twice");
            }
        }
        Ok(ApiCall::AddMember { channel, user } | ApiCall::RemoveMember { channel, user }) => {
            assert!(matches!(
                parse_channel(channel.as_str()),
                Ok(ChannelName::Group(_))
            ));
            assert!(is_valid_id(&user), "{user:?}");
        }
        Ok(ApiCall::Unread | ApiCall::MyChannels) => assert_eq!(head.method, "GET"),
        Err(e) => {
            assert!(matches!(e.status, 400 | 403 | 404), "{e:?}");
            assert!(!e.message.is_empty());
        }
    }
}
