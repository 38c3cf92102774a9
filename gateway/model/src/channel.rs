//! [`Channel`]: a validated channel name, shared rather than copied.

use std::sync::Arc;

use crate::names::{parse_channel, ChannelName};

/// A channel name that passed [`parse_channel`], as the core holds it: one
/// allocation shared by every map, message and batch that names the
/// channel (a clone is a reference count).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
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
}
