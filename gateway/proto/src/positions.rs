//! Position lists: the `channels=` parameter of `GET /v1/events` and the
//! `id` of its events (which an `EventSource` sends back as
//! `Last-Event-ID`).
//!
//! A list is comma-separated entries `channel` or `channel=seq`, spaces
//! around entries ignored. [`parse_positions`] reads one (both come from
//! the client, so this is one of the fuzzed decoders: `gateway/fuzz`,
//! target `sse_positions`); [`format_positions`] writes the entries whose
//! position is known, in the same format, so a parsed id is what was
//! written.

use chat_model::{Channel, Seq};

/// A channel list: each channel with its position, if given.
pub type PositionList = Vec<(Channel, Option<Seq>)>;

/// Parses a position list. Entries must be valid channel names; a channel
/// listed twice keeps its first place and its last position.
///
/// # Errors
///
/// A message naming the first entry that is not a valid channel or whose
/// position is not a non-negative integer.
pub fn parse_positions(s: &str) -> Result<PositionList, String> {
    let mut out: PositionList = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, seq) = match item.split_once('=') {
            Some((n, v)) => {
                let seq = v
                    .parse::<u64>()
                    .map_err(|_| format!("position of {n:?} must be a non-negative integer"))?;
                (n, Some(Seq(seq)))
            }
            None => (item, None),
        };
        let Ok(channel) = Channel::parse(name) else {
            return Err(format!("invalid channel {name:?}"));
        };
        match out.iter_mut().find(|(c, _)| *c == channel) {
            Some(entry) => entry.1 = seq.or(entry.1),
            None => out.push((channel, seq)),
        }
    }
    Ok(out)
}

/// `channel=seq,…` for every entry with a known position, in order (the
/// event id of an SSE stream).
#[must_use]
pub fn format_positions(list: &[(Channel, Option<Seq>)]) -> String {
    let mut id = String::new();
    for (channel, seq) in list {
        if let Some(seq) = seq {
            if !id.is_empty() {
                id.push(',');
            }
            id.push_str(channel.as_str());
            id.push('=');
            id.push_str(&seq.0.to_string());
        }
    }
    id
}
