//! [`Channel`]: a validated channel name, shared rather than copied.

use std::sync::Arc;

use crate::names::{parse_channel, ChannelName};

/// A channel name that passed [`parse_channel`], as the core holds it: one
/// allocation shared by every map, message and batch that names the
/// channel (a clone is a reference count).
///
/// It compares, orders, hashes and prints (`Display` and `Debug`) exactly as
/// its name does, so a map keyed by `Channel` is looked up by `&str`
/// ([`Borrow<str>`](std::borrow::Borrow)) and iterates in the order a map
/// keyed by the bare name would.
#[derive(Clone)]
pub struct Channel(Arc<str>);

/// What kind of channel a name is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelKind {
    /// `dm:<a>:<b>`.
    Dm,
    /// `group:<id>`.
    Group,
    /// `room:<name>`.
    Room,
}

impl Channel {
    /// Validates `name`.
    ///
    /// # Errors
    ///
    /// What is wrong with the name (see [`parse_channel`]).
    pub fn parse(name: &str) -> Result<Channel, &'static str> {
        parse_channel(name)?;
        Ok(Channel(Arc::from(name)))
    }

    /// A name the caller already validated (decoded requests carry
    /// validated names). Debug builds check it.
    #[must_use]
    pub fn from_validated(name: Arc<str>) -> Channel {
        debug_assert!(parse_channel(&name).is_ok(), "not a channel: {name:?}");
        Channel(name)
    }

    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The shared name.
    #[must_use]
    pub fn as_arc(&self) -> &Arc<str> {
        &self.0
    }

    /// The shared name, giving up the newtype.
    #[must_use]
    pub fn into_arc(self) -> Arc<str> {
        self.0
    }

    /// The parsed name.
    #[must_use]
    pub fn parsed(&self) -> ChannelName<'_> {
        // Validated at construction.
        parse_channel(&self.0).unwrap_or(ChannelName::Room(""))
    }

    /// DM, group or room.
    #[must_use]
    pub fn kind(&self) -> ChannelKind {
        match self.parsed() {
            ChannelName::Dm { .. } => ChannelKind::Dm,
            ChannelName::Group(_) => ChannelKind::Group,
            ChannelName::Room(_) => ChannelKind::Room,
        }
    }
}

// Equality, order and hash are the name's (what `Borrow<str>` requires).

impl PartialEq for Channel {
    fn eq(&self, other: &Channel) -> bool {
        *self.0 == *other.0
    }
}

impl Eq for Channel {}

impl PartialOrd for Channel {
    fn partial_cmp(&self, other: &Channel) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Channel {
    fn cmp(&self, other: &Channel) -> std::cmp::Ordering {
        (*self.0).cmp(&*other.0)
    }
}

impl std::hash::Hash for Channel {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (*self.0).hash(state);
    }
}

impl PartialEq<str> for Channel {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&str> for Channel {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

impl std::ops::Deref for Channel {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Channel {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Channel {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// As the name's: `"room:x"`, quoted.
impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.0, f)
    }
}

impl From<Channel> for Arc<str> {
    fn from(c: Channel) -> Arc<str> {
        c.0
    }
}

/// As the bare name: `"room:x"`.
impl serde::Serialize for Channel {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// From the bare name, validated ([`Channel::parse`]).
impl<'de> serde::Deserialize<'de> for Channel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Channel, D::Error> {
        let name = String::deserialize(d)?;
        Channel::parse(&name).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_parse_once_and_say_their_kind() {
        assert_eq!(
            Channel::parse("dm:a:b").map(|c| c.kind()),
            Ok(ChannelKind::Dm)
        );
        assert_eq!(
            Channel::parse("group:x").map(|c| c.kind()),
            Ok(ChannelKind::Group)
        );
        assert_eq!(
            Channel::parse("room:x").map(|c| c.kind()),
            Ok(ChannelKind::Room)
        );
        assert!(Channel::parse("dm:b:a").is_err());
        assert!(Channel::parse("nope").is_err());
        let c = Channel::parse("room:x").unwrap_or_else(|_| unreachable!());
        let set: std::collections::HashSet<Channel> = [c.clone()].into();
        assert!(set.contains("room:x"), "looked up by &str");
    }

    #[test]
    fn a_channel_hashes_orders_and_prints_as_its_name() {
        use std::hash::BuildHasher;
        let c = Channel::from_validated(Arc::from("room:x"));
        let h = std::collections::hash_map::RandomState::new();
        assert_eq!(h.hash_one(&c), h.hash_one("room:x"));
        let arc: Arc<str> = Arc::from("room:x");
        assert_eq!(h.hash_one(&c), h.hash_one(&arc), "as the bare Arc<str>");
        let d = Channel::from_validated(Arc::from("dm:a:b"));
        assert_eq!(c.cmp(&d), "room:x".cmp("dm:a:b"));
        assert_eq!(format!("{c} {c:?}"), r#"room:x "room:x""#);
        assert_eq!(c, "room:x");
        assert!(
            Arc::ptr_eq(c.clone().as_arc(), &c.into_arc()),
            "a clone shares"
        );
    }

    #[test]
    fn channels_and_seqs_are_plain_strings_and_numbers_in_serde() {
        let c = Channel::parse("dm:a:b").unwrap_or_else(|_| unreachable!());
        let json = serde_json::to_string(&(c.clone(), crate::Seq(7))).unwrap_or_default();
        assert_eq!(json, r#"["dm:a:b",7]"#);
        let back: (Channel, crate::Seq) =
            serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, (c, crate::Seq(7)));
        assert!(
            serde_json::from_str::<Channel>(r#""dm:b:a""#).is_err(),
            "validated"
        );
        assert!(serde_json::from_str::<crate::Seq>(r#""7""#).is_err());
    }
}
