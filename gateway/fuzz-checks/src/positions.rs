//! SSE position lists (`channels=`, `Last-Event-ID`).

use chat_proto::parse_channel;
use chat_proto::positions::{format_positions, parse_positions};

/// Parses `data` (as UTF-8, lossily: it comes from a query or a header).
pub fn parse(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(list) = parse_positions(&text) else {
        return;
    };
    for (i, (channel, _)) in list.iter().enumerate() {
        assert!(parse_channel(channel).is_ok(), "{channel:?}");
        assert!(
            list[..i].iter().all(|(c, _)| c != channel),
            "{channel} listed twice"
        );
    }
    // Printed, the entries with a position parse back to themselves.
    let printed = format_positions(&list);
    let known: Vec<_> = list.iter().filter(|(_, s)| s.is_some()).cloned().collect();
    assert_eq!(
        parse_positions(&printed),
        Ok(known),
        "printed as {printed:?}"
    );
}
