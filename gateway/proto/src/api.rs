//! The `/v1` HTTP API's requests, without I/O: method, path and body → what
//! the call is.
//!
//! [`route`] is everything the gateway decides from an API request's bytes
//! before any shard is asked: which endpoint, whether the body is a JSON
//! object with the fields the endpoint needs, and — for the endpoints that
//! are WebSocket requests under another name — the JSON request text a
//! WebSocket client would have sent (so [`crate::decode_request`] validates
//! it the same way). The gateway's `http_api.rs` reads the body, calls this
//! and runs the [`ApiCall`]; nothing here touches a socket, a clock or a
//! random source (a new group's id is chosen by the caller).
//!
//! Bodies are untrusted: this function is one of the fuzzed decoders
//! (`gateway/fuzz`, target `http_api`).

use serde_json::{json, Map, Value};

use crate::http::RequestHead;
use crate::names;
use crate::request::ErrorCode;

/// What one API call turns into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiCall {
    /// A WebSocket-style request (JSON text) answered by one frame.
    Request(String),
    /// `GET /v1/me/unread`: the caller's unread counts.
    Unread,
    /// `GET /v1/me/channels`: the caller's groups and DMs.
    MyChannels,
    /// `POST /v1/groups`: create a group of these members (the caller first,
    /// no duplicates, at most `max_members`). The caller picks its id.
    CreateGroup {
        /// The members, the caller first.
        members: Vec<String>,
    },
    /// `POST /v1/groups/{id}/members`: add `user` to `channel`.
    AddMember {
        /// The group's channel (`group:<id>`, valid).
        channel: chat_model::Channel,
        /// The user to add (a valid id).
        user: String,
    },
    /// `DELETE /v1/groups/{id}/members/{user}`: remove `user` from `channel`.
    RemoveMember {
        /// The group's channel (`group:<id>`, valid).
        channel: chat_model::Channel,
        /// The user to remove (a valid id).
        user: String,
    },
}

/// Why an API request is refused before any work: answered with `status`
/// and a JSON body `{code, message}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status (400, 403 or 404).
    pub status: u16,
    /// The error code (`bad_request`, `forbidden`, `invalid_channel`,
    /// `not_found`).
    pub code: &'static str,
    /// A plain-language explanation.
    pub message: String,
}

impl ApiError {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, ErrorCode::BadRequest.as_str(), message)
    }

    fn no_endpoint(head: &RequestHead) -> ApiError {
        ApiError::new(
            404,
            "not_found",
            format!("no endpoint {} {}", head.method, head.path),
        )
    }
}

/// Maps method and path (already percent-decoded in `head`) and the body to
/// a call. `user` is the authenticated caller; `max_members` is
/// `max_group_members`.
///
/// # Errors
///
/// An [`ApiError`] for an unknown endpoint (404), a body that is not a JSON
/// object or lacks a field (400), an invalid user or group id (400), or a
/// group over `max_members` (403).
pub fn route(
    head: &RequestHead,
    body: &[u8],
    user: &str,
    max_members: usize,
) -> Result<ApiCall, ApiError> {
    let path = head.path.strip_prefix("/v1/").unwrap_or("");
    if path == "me/unread" && head.method == "GET" {
        return Ok(ApiCall::Unread);
    }
    if path == "me/channels" && head.method == "GET" {
        return Ok(ApiCall::MyChannels);
    }
    if path == "groups" {
        return group_route(head, "", body, user, max_members);
    }
    if let Some(rest) = path.strip_prefix("groups/") {
        return group_route(head, rest, body, user, max_members);
    }
    if let Some(rest) = path.strip_prefix("channels/") {
        let (channel, tail) = rest
            .rsplit_once('/')
            .ok_or_else(|| ApiError::new(404, "not_found", "no such endpoint"))?;
        match (head.method.as_str(), tail) {
            ("POST", "messages") => {
                let mut obj = body_object(body)?;
                // An edit or delete is a send with that kind and a target.
                let ty = match obj.get("kind").and_then(Value::as_str) {
                    Some(k @ ("edit" | "delete")) => k.to_string(),
                    _ => "send".to_string(),
                };
                if ty != "send" {
                    obj.remove("kind");
                }
                obj.insert("type".into(), json!(ty));
                obj.insert("channel".into(), json!(channel));
                return Ok(ApiCall::Request(Value::Object(obj).to_string()));
            }
            ("POST", "read") => {
                let mut obj = body_object(body)?;
                obj.insert("type".into(), json!("read"));
                obj.insert("channel".into(), json!(channel));
                return Ok(ApiCall::Request(Value::Object(obj).to_string()));
            }
            ("GET", "presence") => {
                let req = json!({"type": "presence", "channel": channel});
                return Ok(ApiCall::Request(req.to_string()));
            }
            ("GET", "messages") => {
                let mut obj = Map::new();
                obj.insert("type".into(), json!("history"));
                obj.insert("channel".into(), json!(channel));
                for key in ["before", "after", "limit"] {
                    if let Some(v) = head.query_param(key) {
                        let n: u64 = v.parse().map_err(|_| {
                            ApiError::bad_request(format!("{key} must be a non-negative integer"))
                        })?;
                        obj.insert(key.into(), json!(n));
                    }
                }
                return Ok(ApiCall::Request(Value::Object(obj).to_string()));
            }
            _ => {}
        }
    }
    Err(ApiError::no_endpoint(head))
}

fn valid_user(u: &str) -> Result<String, ApiError> {
    if names::is_valid_id(u) {
        Ok(u.to_string())
    } else {
        Err(ApiError::bad_request(format!("invalid user id {u:?}")))
    }
}

fn group_route(
    head: &RequestHead,
    rest: &str,
    body: &[u8],
    caller: &str,
    max_members: usize,
) -> Result<ApiCall, ApiError> {
    match (
        head.method.as_str(),
        rest.split('/').collect::<Vec<_>>().as_slice(),
    ) {
        ("POST", [""] | []) => {
            let obj = body_object(body)?;
            let not_ids = || ApiError::bad_request("members must be an array of user ids");
            let listed = obj
                .get("members")
                .and_then(Value::as_array)
                .ok_or_else(not_ids)?;
            let mut members = vec![caller.to_string()];
            for m in listed {
                let u = valid_user(m.as_str().ok_or_else(not_ids)?)?;
                if !members.contains(&u) {
                    members.push(u);
                }
            }
            if members.len() > max_members {
                return Err(ApiError::new(
                    403,
                    ErrorCode::Forbidden.as_str(),
                    format!(
                        "a group has at most {max_members} members, the creator included \
                         (max_group_members)"
                    ),
                ));
            }
            Ok(ApiCall::CreateGroup { members })
        }
        ("POST", [id, "members"]) => {
            let obj = body_object(body)?;
            let user = obj
                .get("user")
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::bad_request("user is required"))?;
            Ok(ApiCall::AddMember {
                channel: group_channel_of(id)?,
                user: valid_user(user)?,
            })
        }
        ("DELETE", [id, "members", user]) => Ok(ApiCall::RemoveMember {
            channel: group_channel_of(id)?,
            user: valid_user(user)?,
        }),
        _ => Err(ApiError::no_endpoint(head)),
    }
}

/// `group:<id>` when that is a valid group channel.
fn group_channel_of(id: &str) -> Result<chat_model::Channel, ApiError> {
    let channel = chat_model::group_channel(id);
    match names::parse_channel(&channel) {
        Ok(names::ChannelName::Group(_)) => Ok(chat_model::Channel::from_validated(channel.into())),
        _ => Err(ApiError::new(
            400,
            "invalid_channel",
            format!("invalid group id {id:?}"),
        )),
    }
}

/// The body as a JSON object.
///
/// # Errors
///
/// `bad_request` when the body is not JSON or not an object.
pub fn body_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request("the body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!("the body is not JSON: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn head(method: &str, path: &str) -> RequestHead {
        RequestHead {
            method: method.into(),
            path: path.into(),
            ..RequestHead::default()
        }
    }

    #[test]
    fn a_message_post_becomes_the_websocket_send() {
        let call = route(
            &head("POST", "/v1/channels/room:a/messages"),
            br#"{"client_msg_id":"c","text":"hi"}"#,
            "u",
            100,
        )
        .unwrap();
        let ApiCall::Request(text) = call else {
            panic!("{call:?}")
        };
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["type"], "send");
        assert_eq!(v["channel"], "room:a");
        let edit = route(
            &head("POST", "/v1/channels/room:a/messages"),
            br#"{"kind":"edit","target":1,"client_msg_id":"c","text":"x"}"#,
            "u",
            100,
        )
        .unwrap();
        let ApiCall::Request(text) = edit else {
            panic!()
        };
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!((v["type"].as_str(), v.get("kind")), (Some("edit"), None));
    }

    #[test]
    fn group_creation_puts_the_caller_first_and_counts_it() {
        let call = route(
            &head("POST", "/v1/groups"),
            br#"{"members":["b","a","b"]}"#,
            "a",
            100,
        )
        .unwrap();
        assert_eq!(
            call,
            ApiCall::CreateGroup {
                members: vec!["a".into(), "b".into()]
            }
        );
        let e = route(
            &head("POST", "/v1/groups"),
            br#"{"members":["b","c"]}"#,
            "a",
            2,
        )
        .unwrap_err();
        assert_eq!((e.status, e.code), (403, "forbidden"));
    }

    #[test]
    fn bad_bodies_and_ids_are_400_and_unknown_paths_404() {
        let e = route(&head("POST", "/v1/groups"), b"[1]", "a", 9).unwrap_err();
        assert_eq!((e.status, e.code), (400, "bad_request"));
        let e = route(&head("POST", "/v1/groups/g/members"), b"{}", "a", 9).unwrap_err();
        assert_eq!(e.message, "user is required");
        let e = route(&head("DELETE", "/v1/groups/%%/members/x"), b"", "a", 9).unwrap_err();
        assert_eq!((e.status, e.code), (400, "invalid_channel"));
        let e = route(&head("GET", "/v1/nope"), b"", "a", 9).unwrap_err();
        assert_eq!(e.status, 404);
        let mut h = head("GET", "/v1/channels/room:a/messages");
        h.query = vec![("limit".into(), "-1".into())];
        assert_eq!(route(&h, b"", "a", 9).unwrap_err().status, 400);
    }
}
