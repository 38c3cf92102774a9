//! Names: user and device ids, and channel names (protocol.md, "Names and
//! units").
//!
//! All names are ASCII, so "characters" and bytes coincide here.

/// The longest channel name, in bytes.
pub const MAX_CHANNEL_BYTES: usize = 160;

/// The longest user id, device id or group id, in characters (= bytes).
pub const MAX_ID_CHARS: usize = 64;

/// Whether `s` is a valid user or device id: 1–64 characters of
/// `[A-Za-z0-9_.-]`.
#[must_use]
pub fn is_valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_CHARS
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Whether `s` is a valid group id: 1–64 characters of `[A-Za-z0-9_-]`.
#[must_use]
pub fn is_valid_group_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_CHARS
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// Whether `s` is a valid room name: one or more characters of
/// `[A-Za-z0-9_.:-]` (the whole channel, `room:` included, is at most
/// [`MAX_CHANNEL_BYTES`]).
///
/// This rule is an addition to the protocol, which names rooms `room:<name>`
/// without saying what a name may hold. It allows the id characters plus `:`
/// (for hierarchical names such as `room:lobby:eu`), all of which appear
/// unescaped in URL paths and JSON.
#[must_use]
pub fn is_valid_room_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// A parsed channel name, borrowing from the string it was parsed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChannelName<'a> {
    /// `dm:<a>:<b>`: the direct messages of exactly users `a` and `b`,
    /// `a < b` in byte order.
    Dm {
        /// The smaller user id.
        a: &'a str,
        /// The larger user id.
        b: &'a str,
    },
    /// `group:<id>`: a group; members only.
    Group(&'a str),
    /// `room:<name>`: a room; open unless configured otherwise.
    Room(&'a str),
}

impl<'a> ChannelName<'a> {
    /// For a DM, whether `user` is one of its two users; `None` for groups and
    /// rooms (whose membership lives elsewhere).
    #[must_use]
    pub fn dm_includes(&self, user: &str) -> Option<bool> {
        match self {
            ChannelName::Dm { a, b } => Some(*a == user || *b == user),
            ChannelName::Group(_) | ChannelName::Room(_) => None,
        }
    }

    /// For a DM that includes `user`, the other user.
    #[must_use]
    pub fn dm_peer(&self, user: &str) -> Option<&'a str> {
        match *self {
            ChannelName::Dm { a, b } if a == user => Some(b),
            ChannelName::Dm { a, b } if b == user => Some(a),
            _ => None,
        }
    }
}

/// Parses and validates a channel name. `Err` holds a human-readable reason,
/// suitable for an `invalid_channel` error message.
///
/// Rules: `dm:<a>:<b>` with `a < b` (byte order), both valid ids
/// ([`is_valid_id`]); `group:<id>` ([`is_valid_group_id`]); `room:<name>`
/// ([`is_valid_room_name`]); the whole name at most [`MAX_CHANNEL_BYTES`].
pub fn parse_channel(s: &str) -> Result<ChannelName<'_>, &'static str> {
    if s.len() > MAX_CHANNEL_BYTES {
        return Err("channel name is longer than 160 bytes");
    }
    if let Some(users) = s.strip_prefix("dm:") {
        let Some((a, b)) = users.split_once(':') else {
            return Err("a dm channel is dm:<user>:<user>");
        };
        if !is_valid_id(a) || !is_valid_id(b) {
            return Err("a dm channel names two user ids of 1-64 characters [A-Za-z0-9_.-]");
        }
        if a >= b {
            return Err("the two users of a dm channel must differ and be in ascending order");
        }
        Ok(ChannelName::Dm { a, b })
    } else if let Some(id) = s.strip_prefix("group:") {
        if is_valid_group_id(id) {
            Ok(ChannelName::Group(id))
        } else {
            Err("a group id is 1-64 characters [A-Za-z0-9_-]")
        }
    } else if let Some(name) = s.strip_prefix("room:") {
        if is_valid_room_name(name) {
            Ok(ChannelName::Room(name))
        } else {
            Err("a room name is 1 or more characters [A-Za-z0-9_.:-]")
        }
    } else {
        Err("a channel starts with dm:, group: or room:")
    }
}

/// The DM channel of two users: `dm:<smaller>:<larger>`. The result is only
/// valid (see [`parse_channel`]) when both ids are valid and differ.
#[must_use]
pub fn dm_channel(u1: &str, u2: &str) -> String {
    let (a, b) = if u1 <= u2 { (u1, u2) } else { (u2, u1) };
    let mut s = String::with_capacity(4 + a.len() + b.len());
    s.push_str("dm:");
    s.push_str(a);
    s.push(':');
    s.push_str(b);
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_1_to_64_chars_of_the_id_alphabet() {
        assert!(is_valid_id("alice"));
        assert!(is_valid_id("A.b_c-9"));
        assert!(is_valid_id(&"x".repeat(64)));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id(&"x".repeat(65)));
        assert!(!is_valid_id("a:b"));
        assert!(!is_valid_id("a b"));
        assert!(!is_valid_id("é"));
        assert!(!is_valid_id("a/b"));
    }

    #[test]
    fn dm_channels_need_two_valid_ids_in_ascending_order() {
        assert_eq!(
            parse_channel("dm:alice:bob"),
            Ok(ChannelName::Dm {
                a: "alice",
                b: "bob"
            })
        );
        assert!(parse_channel("dm:bob:alice").is_err());
        assert!(parse_channel("dm:alice:alice").is_err());
        assert!(parse_channel("dm:alice").is_err());
        assert!(parse_channel("dm::bob").is_err());
        assert!(parse_channel("dm:alice:bob:carol").is_err());
        assert!(
            parse_channel("dm:Bob:alice").is_ok(),
            "byte order: 'B' < 'a'"
        );
    }

    #[test]
    fn group_ids_exclude_dots_and_colons() {
        assert_eq!(
            parse_channel("group:g_1-x"),
            Ok(ChannelName::Group("g_1-x"))
        );
        assert!(parse_channel("group:").is_err());
        assert!(parse_channel("group:a.b").is_err());
        assert!(parse_channel("group:a:b").is_err());
        assert!(parse_channel(&format!("group:{}", "g".repeat(65))).is_err());
    }

    #[test]
    fn room_names_allow_colons_and_dots() {
        assert_eq!(
            parse_channel("room:lobby:eu.1"),
            Ok(ChannelName::Room("lobby:eu.1"))
        );
        assert!(parse_channel("room:").is_err());
        assert!(parse_channel("room:a b").is_err());
        assert!(parse_channel("room:a/b").is_err());
    }

    #[test]
    fn channels_are_at_most_160_bytes() {
        let ok = format!("room:{}", "r".repeat(155));
        assert_eq!(ok.len(), 160);
        assert!(parse_channel(&ok).is_ok());
        assert!(parse_channel(&format!("{ok}r")).is_err());
    }

    #[test]
    fn unknown_prefixes_are_refused() {
        for s in ["", "chan:x", "Room:x", "dm", "group", "x"] {
            assert!(parse_channel(s).is_err(), "{s}");
        }
    }

    #[test]
    fn dm_channel_sorts_the_pair() {
        assert_eq!(dm_channel("bob", "alice"), "dm:alice:bob");
        assert_eq!(dm_channel("alice", "bob"), "dm:alice:bob");
        assert!(parse_channel(&dm_channel("zed", "amy")).is_ok());
    }

    #[test]
    fn dm_peer_and_membership() {
        let dm = parse_channel("dm:alice:bob").unwrap();
        assert_eq!(dm.dm_peer("alice"), Some("bob"));
        assert_eq!(dm.dm_peer("bob"), Some("alice"));
        assert_eq!(dm.dm_peer("carol"), None);
        assert_eq!(dm.dm_includes("carol"), Some(false));
        assert_eq!(parse_channel("room:x").unwrap().dm_includes("a"), None);
    }
}
