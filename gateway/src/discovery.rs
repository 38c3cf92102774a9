//! Channel discovery: how a user learns which channels are theirs.
//!
//! Two halves:
//!
//! - **`channel_added`** `{channel, kind}`: pushed to every connection of a
//!   user (WebSocket and SSE) when the user becomes a member of a channel
//!   they did not have: added to a group (or in the members of a new group,
//!   the creator included), or a DM whose first message (seq 1) was just
//!   committed (both of its users: the sender's other devices learn of it
//!   too). The group's or DM's owner sends it once the change is durable,
//!   through the user's owner shard like `read` and `presence_update`.
//! - **`GET /v1/me/channels`**: the user's groups and DMs (the store's
//!   `channels_of` index) with members, head, read cursor and unread count,
//!   read off the executor like `GET /v1/me/unread`. A client lists this
//!   once at start and keeps it current with `channel_added`.

use std::sync::Arc;

use serde::Serialize;

use crate::protocol::names::{self, ChannelName};
use crate::protocol::response::write_json;
use crate::protocol::ws::encode_text_with;
use crate::shard::Effects;

/// `"dm"`, `"group"` or `"room"`.
fn kind_of(channel: &str) -> &'static str {
    match names::parse_channel(channel) {
        Ok(ChannelName::Dm { .. }) => "dm",
        Ok(ChannelName::Group(_)) => "group",
        _ => "room",
    }
}

/// The `channel_added` frame `{type, channel, kind}`.
pub(crate) fn channel_added_frame(channel: &str) -> Arc<[u8]> {
    #[derive(Serialize)]
    struct ChannelAdded<'a> {
        r#type: &'static str,
        channel: &'a str,
        kind: &'static str,
    }
    let mut out = Vec::new();
    encode_text_with(&mut out, |buf| {
        write_json(
            buf,
            &ChannelAdded {
                r#type: "channel_added",
                channel,
                kind: kind_of(channel),
            },
        );
    });
    Arc::from(out)
}

/// Tells every connection of each of `users` that `channel` is now theirs.
pub(crate) fn announce(fx: &mut Effects, users: Vec<String>, channel: &str) {
    if users.is_empty() {
        return;
    }
    let frame = channel_added_frame(channel);
    let nr = fx.nr_shards;
    fx.send_to_users(users, &frame, nr);
}

/// For a DM whose seq 1 was just committed: its two users.
pub(crate) fn first_dm_users(channel: &str, seq: u64) -> Vec<String> {
    match names::parse_channel(channel) {
        Ok(ChannelName::Dm { a, b }) if seq == 1 => vec![a.to_string(), b.to_string()],
        _ => Vec::new(),
    }
}

/// One entry of `GET /v1/me/channels`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct ChannelInfo {
    /// The channel name.
    pub(crate) channel: String,
    /// `dm` or `group`.
    pub(crate) kind: &'static str,
    /// The members, sorted (a DM: its two users).
    pub(crate) members: Vec<String>,
    /// Last committed seq.
    pub(crate) head: u64,
    /// The user's read cursor.
    pub(crate) read: u64,
    /// `head - read`, as in `GET /v1/me/unread`.
    pub(crate) unread: u64,
}

/// The user's groups and DMs with members, head, read cursor and unread
/// count, sorted by channel. Blocking: run off the executor.
pub(crate) fn my_channels(
    s: &dyn storage::Store,
    user: &str,
) -> Result<Vec<ChannelInfo>, storage::StoreError> {
    let mut out = Vec::new();
    for channel in s.channels_of(user)? {
        let members = match names::parse_channel(&channel) {
            Ok(ChannelName::Dm { a, b }) => vec![a.to_string(), b.to_string()],
            Ok(ChannelName::Group(_)) => match s.members(&channel)? {
                Some(m) => m,
                None => continue,
            },
            _ => continue,
        };
        let head = s.head(&channel)?.0;
        let read = s.read_cursor(user, &channel)?.0.min(head);
        out.push(ChannelInfo {
            kind: kind_of(&channel),
            channel,
            members,
            head,
            read,
            unread: head - read,
        });
    }
    Ok(out)
}

/// The JSON body of `GET /v1/me/channels`: `{"channels": [...]}`.
pub(crate) fn my_channels_body(channels: &[ChannelInfo]) -> Vec<u8> {
    #[derive(Serialize)]
    struct Body<'a> {
        channels: &'a [ChannelInfo],
    }
    let mut out = Vec::new();
    write_json(&mut out, &Body { channels });
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use storage::{ChannelAppend, MessageKind, NewMessage, Store};

    fn text(from: &str, id: &str) -> NewMessage {
        NewMessage {
            from: from.into(),
            device: "d".into(),
            client_msg_id: id.into(),
            kind: MessageKind::Text,
            text: "hi".into(),
            target: None,
            media: None,
            ts: 1,
        }
    }

    #[test]
    fn channel_added_is_one_text_frame() {
        let f = channel_added_frame("dm:alice:bob");
        assert_eq!(f[0], 0x81);
        let json: serde_json::Value = serde_json::from_slice(&f[2..]).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type":"channel_added","channel":"dm:alice:bob","kind":"dm"})
        );
    }

    #[test]
    fn only_the_first_dm_message_announces() {
        assert_eq!(first_dm_users("dm:a:b", 1), vec!["a", "b"]);
        assert!(first_dm_users("dm:a:b", 2).is_empty());
        assert!(first_dm_users("room:x", 1).is_empty());
    }

    #[test]
    fn my_channels_lists_groups_and_dms_with_unread() {
        let s = storage::MemStore::new();
        s.create_group("g1", &["alice".into(), "bob".into()])
            .unwrap();
        s.append(&[ChannelAppend {
            channel: "dm:alice:carol".into(),
            messages: vec![text("carol", "1"), text("carol", "2")],
        }])
        .unwrap();
        s.append(&[ChannelAppend {
            channel: "group:g1".into(),
            messages: vec![text("alice", "1")],
        }])
        .unwrap();
        let list = my_channels(&s, "alice").unwrap();
        assert_eq!(
            list,
            vec![
                ChannelInfo {
                    channel: "dm:alice:carol".into(),
                    kind: "dm",
                    members: vec!["alice".into(), "carol".into()],
                    head: 2,
                    read: 0,
                    unread: 2,
                },
                ChannelInfo {
                    channel: "group:g1".into(),
                    kind: "group",
                    members: vec!["alice".into(), "bob".into()],
                    head: 1,
                    read: 1,
                    unread: 0,
                },
            ]
        );
        let body: serde_json::Value = serde_json::from_slice(&my_channels_body(&list)).unwrap();
        assert_eq!(body["channels"][0]["unread"], 2);
    }
}
