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
//!   `channels_of` index) with members, head, read cursor and unread count.
//!   It is `GET /v1/me/unread`'s query (`receipts.rs`: every shard's read
//!   cursors not written yet, then one store call off the executor), so
//!   both always agree. A client lists it once at start and keeps it
//!   current with `channel_added`.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use chat_model::names::{self, ChannelName};
use chat_model::{Channel, Seq};
use chat_proto::response::write_json;
use chat_proto::ws::encode_text_with;

pub use crate::vocab::ChannelInfo;
use crate::vocab::Effects;

/// `"dm"`, `"group"` or `"room"`.
fn kind_of(channel: &Channel) -> &'static str {
    match names::parse_channel(channel) {
        Ok(ChannelName::Dm { .. }) => "dm",
        Ok(ChannelName::Group(_)) => "group",
        _ => "room",
    }
}

/// The `channel_added` frame `{type, channel, kind}`.
pub(crate) fn channel_added_frame(channel: &Channel) -> Arc<[u8]> {
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
                channel: channel.as_str(),
                kind: kind_of(channel),
            },
        );
    });
    Arc::from(out)
}

/// Tells every connection of each of `users` that `channel` is now theirs.
pub(crate) fn announce(fx: &mut Effects, users: Vec<String>, channel: &Channel) {
    if users.is_empty() {
        return;
    }
    let frame = channel_added_frame(channel);
    fx.send_to_users(users, &frame);
}

/// For a DM whose seq 1 was just committed: its two users.
pub(crate) fn first_dm_users(channel: &Channel, seq: Seq) -> Vec<String> {
    match names::parse_channel(channel) {
        Ok(ChannelName::Dm { a, b }) if seq == Seq(1) => vec![a.to_string(), b.to_string()],
        _ => Vec::new(),
    }
}

/// The user's groups and DMs with members, head, read cursor and unread
/// count, sorted by channel; `pending`: read cursors reported and not
/// written yet. Blocking: run off the executor.
pub(crate) fn my_channels(
    s: &dyn storage::Store,
    user: &str,
    pending: &HashMap<Channel, Seq>,
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
        let channel = crate::receipts::stored_channel(channel);
        let head = s.head(&channel)?;
        let stored = s.read_cursor(user, &channel)?;
        let read = stored
            .max(pending.get(channel.as_str()).copied().unwrap_or(Seq::ZERO))
            .min(head);
        let unread = if head > read {
            s.count_messages(&channel, read, head)?
        } else {
            0
        };
        out.push(ChannelInfo {
            kind: kind_of(&channel),
            channel,
            members,
            head,
            read,
            unread,
        });
    }
    Ok(out)
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
        let f = channel_added_frame(&ch("dm:alice:bob"));
        assert_eq!(f[0], 0x81);
        let json: serde_json::Value = serde_json::from_slice(&f[2..]).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type":"channel_added","channel":"dm:alice:bob","kind":"dm"})
        );
    }

    fn ch(name: &str) -> Channel {
        Channel::from_validated(name.into())
    }

    #[test]
    fn only_the_first_dm_message_announces() {
        assert_eq!(first_dm_users(&ch("dm:a:b"), Seq(1)), vec!["a", "b"]);
        assert!(first_dm_users(&ch("dm:a:b"), Seq(2)).is_empty());
        assert!(first_dm_users(&ch("room:x"), Seq(1)).is_empty());
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
        let list = my_channels(&s, "alice", &HashMap::new()).unwrap();
        assert_eq!(
            list,
            vec![
                ChannelInfo {
                    channel: ch("dm:alice:carol"),
                    kind: "dm",
                    members: vec!["alice".into(), "carol".into()],
                    head: Seq(2),
                    read: Seq(0),
                    unread: 2,
                },
                ChannelInfo {
                    channel: ch("group:g1"),
                    kind: "group",
                    members: vec!["alice".into(), "bob".into()],
                    head: Seq(1),
                    read: Seq(1),
                    unread: 0,
                },
            ]
        );
        let mut frame = Vec::new();
        crate::answers::encode(
            &mut frame,
            None,
            &crate::vocab::Answer::Channels(list.clone()),
        );
        let json = frame.iter().position(|&b| b == b'{').unwrap();
        let body: serde_json::Value = serde_json::from_slice(&frame[json..]).unwrap();
        assert_eq!(body["type"], "channels");
        assert_eq!(body["channels"][0]["unread"], 2);
        assert_eq!(
            body["channels"][1],
            serde_json::json!({"channel": "group:g1", "kind": "group",
                "members": ["alice", "bob"], "head": 1, "read": 1, "unread": 0}),
            "names and seqs are plain JSON strings and numbers"
        );
        // A read reported and not written yet counts at once.
        let pending = HashMap::from([(ch("dm:alice:carol"), Seq(1))]);
        let list = my_channels(&s, "alice", &pending).unwrap();
        assert_eq!((list[0].read, list[0].unread), (Seq(1), 1));
    }
}
