//! The conformance suite: the [`Store`] contract as executable checks.
//!
//! Every backend must pass every check. Each check is a public function
//! named after the behaviour it proves, takes a fresh, empty store, and
//! panics with a message saying what broke. Instantiate the whole suite for a
//! backend with [`conformance_tests!`](crate::conformance_tests), one
//! `#[test]` per check:
//!
//! ```
//! storage::conformance_tests!(mem_store, storage::MemStore::new());
//! ```
//!
//! `$make` is evaluated once per test and must yield a value that implements
//! [`Store`]; when the backend needs a guard kept alive (a temporary
//! directory, a test cluster), return a struct that owns both and implements
//! `Store` by delegation (see `tests/conformance.rs`). A backend that is
//! expensive to set up can call [`run_all`] from a single test instead.
//!
//! The checks are deterministic apart from the two concurrency checks,
//! which let four threads race and then verify the result is dense and
//! unique.

use std::collections::HashSet;

use crate::{
    AppendOutcome, ChannelAppend, ChannelOutcome, DeliveredUpdate, Media, MessageKind, NewMessage,
    ReadLimit, ReadRange, ReadUpdate, Seq, Store, StoreError, StoredMessage,
};

/// A read limit that never cuts a page short in these checks.
const ALL: ReadLimit = ReadLimit {
    messages: 100_000,
    bytes: usize::MAX,
};

/// A text message from `u1` on device `d1`.
fn text(id: &str, body: &str, ts: u64) -> NewMessage {
    NewMessage {
        from: "u1".into(),
        device: "d1".into(),
        client_msg_id: id.into(),
        kind: MessageKind::Text,
        text: body.into(),
        target: None,
        media: None,
        ts,
    }
}

fn one(channel: &str, messages: Vec<NewMessage>) -> ChannelAppend {
    ChannelAppend {
        channel: channel.into(),
        messages,
    }
}

/// Appends to one channel and returns its outcome, panicking on error.
fn append_one<S: Store>(store: &S, channel: &str, messages: Vec<NewMessage>) -> ChannelOutcome {
    let mut out = store
        .append(&[one(channel, messages)])
        .unwrap_or_else(|e| panic!("append to {channel:?} failed: {e}"));
    assert_eq!(out.len(), 1, "append must return one outcome per channel");
    out.remove(0)
}

fn head<S: Store>(store: &S, channel: &str) -> u64 {
    store
        .head(channel)
        .unwrap_or_else(|e| panic!("head of {channel:?} failed: {e}"))
        .0
}

fn read<S: Store>(
    store: &S,
    channel: &str,
    range: ReadRange,
    limit: ReadLimit,
) -> (Vec<u64>, bool) {
    let page = store
        .read(channel, range, limit)
        .unwrap_or_else(|e| panic!("read {channel:?} {range:?} failed: {e}"));
    (page.messages.iter().map(|m| m.seq).collect(), page.has_more)
}

/// The whole channel, paging forward.
fn read_all<S: Store>(store: &S, channel: &str) -> Vec<StoredMessage> {
    let mut all: Vec<StoredMessage> = Vec::new();
    loop {
        let after = Seq(all.last().map_or(0, |m| m.seq));
        let page = store
            .read(channel, ReadRange::After(after), ALL)
            .unwrap_or_else(|e| panic!("read {channel:?} after {after} failed: {e}"));
        let more = page.has_more;
        assert!(
            !(more && page.messages.is_empty()),
            "read {channel:?}: an empty page must not claim has_more"
        );
        all.extend(page.messages);
        if !more {
            return all;
        }
    }
}

fn stored(seq: u64, ts: u64) -> AppendOutcome {
    AppendOutcome::Stored { seq: Seq(seq), ts }
}

fn seqs(range: std::ops::RangeInclusive<u64>) -> Vec<u64> {
    range.collect()
}

/// Fills `channel` with messages 1..=n (text `"m{seq}"`, 2 or 3 bytes).
fn fill<S: Store>(store: &S, channel: &str, n: u64) {
    let msgs = (1..=n)
        .map(|i| text(&format!("fill-{i}"), &format!("m{i}"), i))
        .collect();
    let out = append_one(store, channel, msgs);
    assert_eq!(out.head, Seq(n), "filling {channel:?}");
}

/// An empty channel has head 0, and every read of it is an empty page
/// without `has_more`.
pub fn empty_channel_has_head_zero_and_reads_empty<S: Store>(store: &S) {
    assert_eq!(head(store, "empty"), 0, "head of an empty channel");
    for range in [
        ReadRange::Latest,
        ReadRange::After(Seq(0)),
        ReadRange::After(Seq(5)),
        ReadRange::Before(Seq(5)),
        ReadRange::Before(Seq(u64::MAX)),
    ] {
        assert_eq!(
            read(store, "empty", range, ALL),
            (vec![], false),
            "read {range:?} of an empty channel"
        );
    }
}

/// The first message of a channel gets seq 1 and its own timestamp.
pub fn first_append_gets_seq_one<S: Store>(store: &S) {
    let out = append_one(store, "first", vec![text("a", "hello", 1_000)]);
    assert_eq!(out.outcomes, vec![stored(1, 1_000)], "first append outcome");
    assert_eq!(out.head, Seq(1), "head reported by the first append");
    assert_eq!(head(store, "first"), 1, "head after the first append");
}

/// Seqs are dense across several appends, in the order given, and each
/// channel has its own sequence.
pub fn seqs_are_dense_and_channels_independent<S: Store>(store: &S) {
    let mut expected = 0;
    for call in 0..5u64 {
        let n = call + 1; // 1, 2, .. 5 messages per call
        let msgs = (0..n)
            .map(|i| text(&format!("a-{call}-{i}"), "x", call * 10 + i))
            .collect();
        let out = append_one(store, "dense:a", msgs);
        let want: Vec<_> = (0..n)
            .map(|i| stored(expected + 1 + i, call * 10 + i))
            .collect();
        assert_eq!(out.outcomes, want, "outcomes of call {call} on dense:a");
        expected += n;
        assert_eq!(out.head, Seq(expected), "head after call {call}");
    }
    let out = append_one(
        store,
        "dense:b",
        vec![text("b-0", "y", 1), text("b-1", "y", 2)],
    );
    assert_eq!(
        out.outcomes,
        vec![stored(1, 1), stored(2, 2)],
        "a second channel starts at seq 1"
    );
    assert_eq!(
        head(store, "dense:a"),
        expected,
        "head of dense:a unchanged by dense:b"
    );
    let all = read_all(store, "dense:a");
    assert_eq!(
        all.iter().map(|m| m.seq).collect::<Vec<_>>(),
        seqs(1..=expected),
        "dense:a holds every seq once, in order"
    );
    let ids: Vec<_> = all.iter().map(|m| m.client_msg_id.clone()).collect();
    let mut want_ids = Vec::new();
    for call in 0..5u64 {
        for i in 0..=call {
            want_ids.push(format!("a-{call}-{i}"));
        }
    }
    assert_eq!(ids, want_ids, "messages are sequenced in the order given");
}

/// One call can append to several channels; each gets its own outcome, in
/// the order of the request.
pub fn one_call_appends_to_several_channels<S: Store>(store: &S) {
    fill(store, "multi:b", 3);
    let out = store
        .append(&[
            one("multi:a", vec![text("1", "x", 1), text("2", "x", 2)]),
            one("multi:b", vec![text("3", "x", 3)]),
            one("multi:c", vec![]),
        ])
        .unwrap_or_else(|e| panic!("multi-channel append failed: {e}"));
    assert_eq!(out.len(), 3, "one outcome per channel");
    assert_eq!(out[0].outcomes, vec![stored(1, 1), stored(2, 2)], "multi:a");
    assert_eq!(out[0].head, Seq(2), "multi:a head");
    assert_eq!(
        out[1].outcomes,
        vec![stored(4, 3)],
        "multi:b continues after 3"
    );
    assert_eq!(out[1].head, Seq(4), "multi:b head");
    assert_eq!(out[2].outcomes, vec![], "multi:c had no messages");
    assert_eq!(out[2].head, Seq(0), "multi:c head");
    assert_eq!(head(store, "multi:a"), 2, "multi:a head after");
    assert_eq!(head(store, "multi:b"), 4, "multi:b head after");
    assert_eq!(head(store, "multi:c"), 0, "multi:c head after");
}

/// An append with no channels, or with channels but no messages, stores
/// nothing and moves no head.
pub fn empty_append_changes_nothing<S: Store>(store: &S) {
    fill(store, "noop", 2);
    let out = store
        .append(&[])
        .unwrap_or_else(|e| panic!("empty append failed: {e}"));
    assert!(out.is_empty(), "empty append returns no outcomes");
    let out = append_one(store, "noop", vec![]);
    assert_eq!(
        out,
        ChannelOutcome {
            outcomes: vec![],
            head: Seq(2)
        },
        "append of no messages"
    );
    assert_eq!(head(store, "noop"), 2, "head unchanged");
}

/// A repeated dedup key within one call is stored once; the repeat gets
/// `Duplicate` with the first one's seq and ts and uses no seq.
pub fn duplicate_within_one_call_is_stored_once<S: Store>(store: &S) {
    let out = append_one(
        store,
        "dup:call",
        vec![
            text("a", "hello", 10),
            text("a", "hello", 11),
            text("b", "world", 12),
        ],
    );
    assert_eq!(
        out.outcomes,
        vec![
            stored(1, 10),
            AppendOutcome::Duplicate {
                seq: Seq(1),
                ts: 10
            },
            stored(2, 12),
        ],
        "a duplicate within one call"
    );
    assert_eq!(out.head, Seq(2), "the duplicate used no seq");
    let all = read_all(store, "dup:call");
    assert_eq!(all.len(), 2, "stored once: {all:?}");
    assert_eq!(all[0].ts, 10, "the original is kept");
}

/// A retry in a later call gets `Duplicate` with the original seq and ts,
/// stores nothing, and leaves the head alone.
pub fn duplicate_across_calls_returns_original<S: Store>(store: &S) {
    append_one(
        store,
        "dup:later",
        vec![text("a", "hello", 100), text("b", "x", 101)],
    );
    let out = append_one(store, "dup:later", vec![text("a", "hello", 200)]);
    assert_eq!(
        out.outcomes,
        vec![AppendOutcome::Duplicate {
            seq: Seq(1),
            ts: 100
        }],
        "retry of an earlier message"
    );
    assert_eq!(out.head, Seq(2), "head unchanged by a duplicate");
    assert_eq!(head(store, "dup:later"), 2, "head unchanged by a duplicate");
    // A duplicate among new messages does not consume a seq.
    let out = append_one(
        store,
        "dup:later",
        vec![
            text("c", "new", 300),
            text("b", "x", 301),
            text("d", "new", 302),
        ],
    );
    assert_eq!(
        out.outcomes,
        vec![
            stored(3, 300),
            AppendOutcome::Duplicate {
                seq: Seq(2),
                ts: 101
            },
            stored(4, 302),
        ],
        "duplicate between new messages"
    );
    let all = read_all(store, "dup:later");
    assert_eq!(
        all.iter().map(|m| m.seq).collect::<Vec<_>>(),
        seqs(1..=4),
        "dense, stored once"
    );
    assert_eq!(all[0].ts, 100, "original timestamp kept");
}

/// The same dedup key with different content (text, kind, target or media)
/// is a `Conflict` carrying the original's seq; nothing is written.
pub fn same_key_different_content_conflicts<S: Store>(store: &S) {
    append_one(store, "conflict", vec![text("a", "hello", 1)]);
    let variants = [
        text("a", "hello!", 2),
        NewMessage {
            kind: MessageKind::Edit,
            target: Some(1),
            ..text("a", "hello", 2)
        },
        NewMessage {
            kind: MessageKind::Media,
            media: Some(Media {
                url: "https://x/y".into(),
                mime: "image/png".into(),
                size: 1,
            }),
            ..text("a", "hello", 2)
        },
    ];
    for v in variants {
        let out = append_one(store, "conflict", vec![v.clone()]);
        assert_eq!(
            out.outcomes,
            vec![AppendOutcome::Conflict { seq: Seq(1) }],
            "same key, different content: {v:?}"
        );
        assert_eq!(out.head, Seq(1), "a conflict writes nothing");
    }
    // Within one call too.
    let out = append_one(
        store,
        "conflict:call",
        vec![text("k", "one", 1), text("k", "two", 2)],
    );
    assert_eq!(
        out.outcomes,
        vec![stored(1, 1), AppendOutcome::Conflict { seq: Seq(1) }],
        "conflict within one call"
    );
    let all = read_all(store, "conflict");
    assert_eq!(all.len(), 1, "only the original is stored");
    assert_eq!(all[0].text, "hello", "the original is unchanged");
}

/// The dedup key is (channel, from, device, client_msg_id): the same id from
/// another channel, user or device is a new message.
pub fn dedup_key_is_scoped_to_channel_sender_and_device<S: Store>(store: &S) {
    let base = text("same", "hi", 1);
    append_one(store, "scope:a", vec![base.clone()]);
    let other_user = NewMessage {
        from: "u2".into(),
        ..base.clone()
    };
    let other_device = NewMessage {
        device: "d2".into(),
        ..base.clone()
    };
    let out = append_one(store, "scope:a", vec![other_user, other_device]);
    assert_eq!(
        out.outcomes,
        vec![stored(2, 1), stored(3, 1)],
        "same client_msg_id from another user / device"
    );
    let out = append_one(store, "scope:b", vec![base]);
    assert_eq!(
        out.outcomes,
        vec![stored(1, 1)],
        "same key in another channel"
    );
}

/// One expected page: what to read, and the seqs and `has_more` it must give.
type Expect = (ReadRange, ReadLimit, std::ops::RangeInclusive<u64>, bool);

/// Reads each case and compares; an empty range ([`NONE`]) means an empty page.
fn expect_pages<S: Store>(store: &S, channel: &str, cases: &[Expect]) {
    for (range, limit, want, more) in cases {
        assert_eq!(
            read(store, channel, *range, *limit),
            (want.clone().collect::<Vec<_>>(), *more),
            "read {channel:?} {range:?} with {limit:?}: (seqs, has_more)"
        );
    }
}

const fn msgs(messages: usize) -> ReadLimit {
    ReadLimit {
        messages,
        bytes: usize::MAX,
    }
}

const fn bytes(bytes: usize) -> ReadLimit {
    ReadLimit {
        messages: 100,
        bytes,
    }
}

/// No messages: an empty range of seqs.
#[allow(clippy::reversed_empty_ranges)] // deliberately empty
const NONE: std::ops::RangeInclusive<u64> = 1..=0;

/// `After(s)` pages forward from s+1 (exclusive bound), with `has_more` set
/// while newer messages remain. A message limit of 0 counts as 1.
pub fn read_after_pages_forward<S: Store>(store: &S) {
    use ReadRange::After;
    fill(store, "after", 10);
    expect_pages(
        store,
        "after",
        &[
            (After(Seq(0)), msgs(4), 1..=4, true),
            (After(Seq(4)), msgs(4), 5..=8, true),
            (After(Seq(8)), msgs(4), 9..=10, false),
            (After(Seq(6)), msgs(4), 7..=10, false), // exactly the rest
            (After(Seq(5)), ALL, 6..=10, false),
            (After(Seq(10)), msgs(4), NONE, false), // at the head
            (After(Seq(99)), msgs(4), NONE, false), // beyond the head
            (After(Seq(u64::MAX)), msgs(4), NONE, false),
            (After(Seq(0)), msgs(0), 1..=1, true),
        ],
    );
}

/// `Latest` and `Before(s)` page backward (exclusive bound) and return pages
/// ascending, with `has_more` set while older messages remain. Neighbouring
/// channels (one name a prefix of another) never leak into a page.
pub fn read_before_and_latest_page_backward<S: Store>(store: &S) {
    use ReadRange::{Before, Latest};
    fill(store, "before", 10);
    fill(store, "before2", 3);
    fill(store, "befor", 2);
    expect_pages(
        store,
        "before",
        &[
            (Latest, msgs(4), 7..=10, true),
            (Before(Seq(7)), msgs(4), 3..=6, true),
            (Before(Seq(3)), msgs(4), 1..=2, false),
            (Before(Seq(5)), msgs(4), 1..=4, false), // exactly the rest
            (Before(Seq(11)), ALL, 1..=10, false),
            (Before(Seq(u64::MAX)), msgs(4), 7..=10, true),
            (Latest, ALL, 1..=10, false),
            (Latest, msgs(0), 10..=10, true),
        ],
    );
    expect_pages(store, "befor", &[(Latest, ALL, 1..=2, false)]);
    expect_pages(store, "before2", &[(Latest, ALL, 1..=3, false)]);
}

/// `Before(0)` and `Before(1)` are empty: nothing precedes seq 1.
pub fn before_zero_and_one_are_empty<S: Store>(store: &S) {
    use ReadRange::Before;
    fill(store, "b01", 3);
    expect_pages(
        store,
        "b01",
        &[
            (Before(Seq(0)), ALL, NONE, false),
            (Before(Seq(1)), ALL, NONE, false),
            (Before(Seq(2)), ALL, 1..=1, false),
        ],
    );
}

/// A byte limit ends the page once its text reaches the limit (the message
/// that reaches it is included), and a page holds at least one message even
/// when that one alone is over the limit.
pub fn byte_limit_returns_at_least_one_message<S: Store>(store: &S) {
    use ReadRange::{After, Before, Latest};
    let ten_bytes = (1..=6)
        .map(|i| text(&format!("b{i}"), &"x".repeat(10), i))
        .collect();
    append_one(store, "bytes", ten_bytes);
    expect_pages(
        store,
        "bytes",
        &[
            (After(Seq(0)), bytes(1), 1..=1, true),
            (Latest, bytes(1), 6..=6, true),
            (After(Seq(0)), bytes(0), 1..=1, true),
            (After(Seq(0)), bytes(25), 1..=3, true), // 30 bytes reach 25
            (After(Seq(0)), bytes(20), 1..=2, true), // 20 bytes reach 20
            (Before(Seq(6)), bytes(20), 4..=5, true),
            (After(Seq(3)), bytes(30), 4..=6, false), // exactly the rest
        ],
    );
    append_one(store, "bytes", vec![text("big", &"y".repeat(5_000), 7)]);
    expect_pages(store, "bytes", &[(Latest, bytes(100), 7..=7, true)]);
}

/// Every field of a message reads back exactly as written: kinds, unicode
/// text, media, extreme timestamps, a 400 KB text; `edit` and `delete`
/// events too (with their targets' views changed).
pub fn messages_round_trip_exactly<S: Store>(store: &S) {
    let big: String = "ab€😀".repeat(400 * 1024 / 9 + 1);
    assert!(big.len() >= 400 * 1024);
    let msgs = vec![
        text(
            "t",
            "héllo 👋 مرحبا 你好 \u{0} \n\t\"'\\",
            1_700_000_000_000,
        ),
        NewMessage {
            from: "user-ü".into(),
            device: "📱".into(),
            client_msg_id: "id with spaces/and:colons".into(),
            kind: MessageKind::Media,
            text: "caption".into(),
            target: None,
            media: Some(Media {
                url: "https://cdn.example/objects/abc?x=1&y=2".into(),
                mime: "image/jpeg".into(),
                size: u64::MAX,
            }),
            ts: 0,
        },
        NewMessage {
            from: String::new(),
            device: String::new(),
            ..text("", "empty ids", 6)
        },
        text("big", &big, 7),
    ];
    let out = append_one(store, "round:trip ü", msgs.clone());
    assert_eq!(out.head, Seq(msgs.len() as u64), "all stored");
    let mut want: Vec<StoredMessage> = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| StoredMessage::from_new(Seq(i as u64 + 1), m))
        .collect();
    let check = |want: &[StoredMessage], when: &str| {
        let got = read_all(store, "round:trip ü");
        assert_eq!(got.len(), want.len(), "message count {when}");
        for (g, w) in got.iter().zip(want) {
            assert!(
                g == w,
                "message {} does not round-trip {when} (text {} bytes)",
                w.seq,
                w.text.len()
            );
        }
    };
    check(&want, "");
    let latest = store
        .read(
            "round:trip ü",
            ReadRange::Latest,
            ReadLimit {
                messages: 1,
                bytes: usize::MAX,
            },
        )
        .unwrap_or_else(|e| panic!("read latest failed: {e}"));
    assert!(
        latest.messages == want[want.len() - 1..],
        "the 400 KB message reads back via Latest"
    );

    let events = vec![
        NewMessage {
            kind: MessageKind::Edit,
            target: Some(1),
            ..text("e", "hello, edited ✓", u64::MAX)
        },
        NewMessage {
            from: String::new(),
            device: String::new(),
            kind: MessageKind::Delete,
            target: Some(3),
            ..text("d", "", 5)
        },
    ];
    let out = append_one(store, "round:trip ü", events.clone());
    assert_eq!(
        out.outcomes,
        vec![stored(5, u64::MAX), stored(6, 5)],
        "edit and delete stored"
    );
    want[0].text = "hello, edited ✓".into();
    want[0].edited = true;
    want[2].text = String::new();
    want[2].deleted = true;
    want.push(StoredMessage::from_new(Seq(5), &events[0]));
    want.push(StoredMessage::from_new(Seq(6), &events[1]));
    check(&want, "after an edit and a delete");
}

/// The same channel twice in one call is refused with `Invalid`, and the
/// whole call (every channel in it) writes nothing.
pub fn same_channel_twice_in_one_call_is_invalid<S: Store>(store: &S) {
    fill(store, "twice", 1);
    let res = store.append(&[
        one("twice:other", vec![text("o", "x", 1)]),
        one("twice", vec![text("a", "x", 1)]),
        one("twice", vec![text("b", "x", 2)]),
    ]);
    assert!(
        matches!(res, Err(StoreError::Invalid(_))),
        "same channel twice must be Invalid, got {res:?}"
    );
    assert_eq!(
        head(store, "twice"),
        1,
        "nothing written to the repeated channel"
    );
    assert_eq!(
        head(store, "twice:other"),
        0,
        "nothing written to the other channel"
    );
    let out = append_one(store, "twice", vec![text("a", "x", 1)]);
    assert_eq!(
        out.outcomes,
        vec![stored(2, 1)],
        "the refused call left no dedup key"
    );
}

const THREADS: u64 = 4;
const CALLS_PER_THREAD: u64 = 25;
const MSGS_PER_CALL: u64 = 2;

/// Appends from `THREADS` threads; thread `t` writes to `channel_of(t)`.
/// Returns, per thread, the (seq, client_msg_id) of everything it stored.
fn race<S: Store>(store: &S, channel_of: impl Fn(u64) -> String + Sync) -> Vec<Vec<(u64, String)>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let channel_of = &channel_of;
                s.spawn(move || {
                    let channel = channel_of(t);
                    let mut mine = Vec::new();
                    for c in 0..CALLS_PER_THREAD {
                        let msgs: Vec<_> = (0..MSGS_PER_CALL)
                            .map(|i| NewMessage {
                                from: format!("u{t}"),
                                ..text(&format!("t{t}-c{c}-m{i}"), "race", c)
                            })
                            .collect();
                        let out = append_one(store, &channel, msgs.clone());
                        for (m, o) in msgs.iter().zip(&out.outcomes) {
                            match o {
                                AppendOutcome::Stored { seq, .. } => {
                                    mine.push((seq.0, m.client_msg_id.clone()));
                                }
                                other => panic!("thread {t}: unique message got {other:?}"),
                            }
                        }
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| panic!("an appending thread panicked"))
            })
            .collect()
    })
}

/// Checks that `channel` holds exactly `got`'s messages at seqs 1..=n.
fn assert_dense(store: &impl Store, channel: &str, got: &[(u64, String)]) {
    let n = got.len() as u64;
    let mut seen = HashSet::new();
    for (seq, _) in got {
        assert!(seen.insert(*seq), "{channel}: seq {seq} assigned twice");
    }
    assert!(
        (1..=n).all(|s| seen.contains(&s)),
        "{channel}: seqs have a hole: {:?}",
        {
            let mut v: Vec<_> = seen.iter().copied().collect();
            v.sort_unstable();
            v
        }
    );
    assert_eq!(head(store, channel), n, "{channel}: head");
    let all = read_all(store, channel);
    assert_eq!(all.len() as u64, n, "{channel}: stored message count");
    for (seq, id) in got {
        let m = &all[(*seq - 1) as usize];
        assert_eq!(m.seq, *seq, "{channel}: message order");
        assert_eq!(&m.client_msg_id, id, "{channel}: message at seq {seq}");
    }
}

/// Appends racing from four threads to one channel serialize: seqs stay
/// dense and unique, and each thread's own messages are in its order.
pub fn concurrent_appends_to_one_channel_stay_dense<S: Store>(store: &S) {
    let per_thread = race(store, |_| "race:one".to_string());
    for (t, mine) in per_thread.iter().enumerate() {
        assert!(
            mine.windows(2).all(|w| w[0].0 < w[1].0),
            "thread {t}: its seqs must increase: {mine:?}"
        );
    }
    let all: Vec<_> = per_thread.into_iter().flatten().collect();
    assert_eq!(all.len() as u64, THREADS * CALLS_PER_THREAD * MSGS_PER_CALL);
    assert_dense(store, "race:one", &all);
}

/// Appends racing from four threads to four channels leave each channel
/// dense, unique and independent.
pub fn concurrent_appends_to_different_channels_stay_dense<S: Store>(store: &S) {
    let per_thread = race(store, |t| format!("race:{t}"));
    for (t, mine) in per_thread.iter().enumerate() {
        assert_dense(store, &format!("race:{t}"), mine);
    }
}

// ------------------------------------------------------------ groups --

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|&n| n.to_owned()).collect()
}

fn members_of<S: Store>(store: &S, channel: &str) -> Option<Vec<String>> {
    store
        .members(channel)
        .unwrap_or_else(|e| panic!("members of {channel:?} failed: {e}"))
}

fn is_member<S: Store>(store: &S, channel: &str, user: &str) -> bool {
    store
        .is_member(channel, user)
        .unwrap_or_else(|e| panic!("is_member({channel:?}, {user:?}) failed: {e}"))
}

fn channels_of<S: Store>(store: &S, user: &str) -> Vec<String> {
    store
        .channels_of(user)
        .unwrap_or_else(|e| panic!("channels_of({user:?}) failed: {e}"))
}

fn add<S: Store>(store: &S, channel: &str, user: &str) -> bool {
    store
        .add_member(channel, user)
        .unwrap_or_else(|e| panic!("add_member({channel:?}, {user:?}) failed: {e}"))
}

fn remove<S: Store>(store: &S, channel: &str, user: &str) -> bool {
    store
        .remove_member(channel, user)
        .unwrap_or_else(|e| panic!("remove_member({channel:?}, {user:?}) failed: {e}"))
}

/// A DM appears in `channels_of` for both of its users once a message was
/// stored in it, beside the groups.
pub fn dms_are_indexed_for_both_users_once_written<S: Store>(store: &S) {
    assert_eq!(channels_of(store, "alice"), Vec::<String>::new());
    append_one(store, "dm:alice:bob", vec![text("c1", "hi", 1)]);
    assert_eq!(channels_of(store, "alice"), strings(&["dm:alice:bob"]));
    assert_eq!(channels_of(store, "bob"), strings(&["dm:alice:bob"]));
    store
        .create_group("g1", &strings(&["bob"]))
        .unwrap_or_else(|e| panic!("create_group failed: {e}"));
    assert_eq!(
        channels_of(store, "bob"),
        strings(&["dm:alice:bob", "group:g1"])
    );
}

/// Groups: `create_group` makes `group:<id>` with its members (repeats
/// ignored), `members` lists them sorted, `is_member` and the by-user index
/// `channels_of` agree, `add_member` / `remove_member` say whether they
/// changed anything, a group emptied of members still exists, and
/// membership changes take no seq.
pub fn group_membership_round_trips<S: Store>(store: &S) {
    assert_eq!(crate::group_channel("g1"), "group:g1");
    store
        .create_group("g1", &strings(&["carol", "alice", "bob", "alice"]))
        .unwrap_or_else(|e| panic!("create_group g1 failed: {e}"));
    store
        .create_group("g2", &strings(&["bob"]))
        .unwrap_or_else(|e| panic!("create_group g2 failed: {e}"));
    assert_eq!(
        members_of(store, "group:g1"),
        Some(strings(&["alice", "bob", "carol"])),
        "members are a sorted set"
    );
    assert!(is_member(store, "group:g1", "alice"), "alice in g1");
    assert!(!is_member(store, "group:g1", "dave"), "dave not in g1");
    assert!(!is_member(store, "group:nope", "alice"), "no such group");
    assert_eq!(
        channels_of(store, "bob"),
        strings(&["group:g1", "group:g2"]),
        "bob's groups, sorted"
    );
    assert_eq!(channels_of(store, "alice"), strings(&["group:g1"]));
    assert_eq!(channels_of(store, "dave"), Vec::<String>::new());

    assert!(add(store, "group:g1", "dave"), "adding a new member");
    assert!(!add(store, "group:g1", "dave"), "adding a member twice");
    assert_eq!(
        members_of(store, "group:g1"),
        Some(strings(&["alice", "bob", "carol", "dave"])),
        "after add"
    );
    assert_eq!(channels_of(store, "dave"), strings(&["group:g1"]));
    assert!(is_member(store, "group:g1", "dave"), "dave added");

    assert!(remove(store, "group:g1", "bob"), "removing a member");
    assert!(!remove(store, "group:g1", "bob"), "removing a non-member");
    assert!(!is_member(store, "group:g1", "bob"), "bob removed");
    assert_eq!(channels_of(store, "bob"), strings(&["group:g2"]));
    assert_eq!(
        members_of(store, "group:g1"),
        Some(strings(&["alice", "carol", "dave"])),
        "after remove"
    );

    assert!(remove(store, "group:g2", "bob"), "removing the last member");
    assert_eq!(
        members_of(store, "group:g2"),
        Some(vec![]),
        "an emptied group still exists"
    );
    assert_eq!(channels_of(store, "bob"), Vec::<String>::new());
    assert!(
        add(store, "group:g2", "erin"),
        "an emptied group takes members"
    );

    assert_eq!(members_of(store, "group:nope"), None, "no such group");
    assert_eq!(members_of(store, "room:g1"), None, "rooms are not groups");
    for res in [
        store.add_member("group:nope", "alice"),
        store.remove_member("group:nope", "alice"),
    ] {
        assert!(
            matches!(res, Err(StoreError::NotFound(_))),
            "membership change of a group never created must be NotFound, got {res:?}"
        );
    }
    assert_eq!(channels_of(store, "alice"), strings(&["group:g1"]));
    assert_eq!(head(store, "group:g1"), 0, "membership takes no seq");
}

/// Creating a group that exists is a `Conflict` and changes nothing; a group
/// may be created empty.
pub fn creating_an_existing_group_is_a_conflict<S: Store>(store: &S) {
    store
        .create_group("dup", &strings(&["alice"]))
        .unwrap_or_else(|e| panic!("create_group failed: {e}"));
    let res = store.create_group("dup", &strings(&["bob"]));
    assert!(
        matches!(res, Err(StoreError::Conflict(_))),
        "second create must be Conflict, got {res:?}"
    );
    assert_eq!(
        members_of(store, "group:dup"),
        Some(strings(&["alice"])),
        "the refused create changed nothing"
    );
    assert_eq!(channels_of(store, "bob"), Vec::<String>::new());
    store
        .create_group("empty", &[])
        .unwrap_or_else(|e| panic!("create_group of an empty group failed: {e}"));
    assert_eq!(members_of(store, "group:empty"), Some(vec![]));
}

// ----------------------------------------------------------- cursors --

fn read_cursor<S: Store>(store: &S, user: &str, channel: &str) -> u64 {
    store
        .read_cursor(user, channel)
        .unwrap_or_else(|e| panic!("read_cursor({user:?}, {channel:?}) failed: {e}"))
        .0
}

fn advance_read<S: Store>(store: &S, user: &str, channel: &str, seq: u64) -> u64 {
    store
        .advance_read(user, channel, Seq(seq))
        .unwrap_or_else(|e| panic!("advance_read({user:?}, {channel:?}, {seq}) failed: {e}"))
        .0
}

fn read_cursors<S: Store>(store: &S, user: &str) -> Vec<(String, u64)> {
    store
        .read_cursors(user)
        .unwrap_or_else(|e| panic!("read_cursors({user:?}) failed: {e}"))
        .into_iter()
        .map(|(c, s)| (c, s.0))
        .collect()
}

fn delivered<S: Store>(store: &S, user: &str, device: &str, channel: &str) -> u64 {
    store
        .delivered_cursor(user, device, channel)
        .unwrap_or_else(|e| panic!("delivered_cursor({user:?}, {device:?}, {channel:?}): {e}"))
        .0
}

/// A message from `from` (device `d1`).
fn by(from: &str, id: &str, body: &str, ts: u64) -> NewMessage {
    NewMessage {
        from: from.into(),
        ..text(id, body, ts)
    }
}

/// An edit by `from` of `target`.
fn edit(from: &str, id: &str, target: u64, body: &str) -> NewMessage {
    NewMessage {
        kind: MessageKind::Edit,
        target: Some(target),
        ..by(from, id, body, 1_000 + target)
    }
}

/// A delete by `from` of `target`.
fn delete(from: &str, id: &str, target: u64) -> NewMessage {
    NewMessage {
        kind: MessageKind::Delete,
        target: Some(target),
        ..by(from, id, "", 2_000 + target)
    }
}

/// A read cursor starts at 0, never moves backwards, is clamped to the
/// head, and is listed by `read_cursors` (sorted by channel) once it moved.
pub fn read_cursor_is_monotonic_and_clamped_to_head<S: Store>(store: &S) {
    fill(store, "cur:r", 5);
    assert_eq!(read_cursor(store, "reader", "cur:r"), 0, "no cursor yet");
    assert_eq!(read_cursors(store, "reader"), vec![], "no cursors yet");
    assert_eq!(advance_read(store, "reader", "cur:r", 3), 3, "forward");
    assert_eq!(advance_read(store, "reader", "cur:r", 2), 3, "never back");
    assert_eq!(advance_read(store, "reader", "cur:r", 0), 3, "never back");
    assert_eq!(
        read_cursor(store, "reader", "cur:r"),
        3,
        "after a step back"
    );
    assert_eq!(advance_read(store, "reader", "cur:r", 99), 5, "clamped");
    assert_eq!(
        advance_read(store, "reader", "cur:r", u64::MAX),
        5,
        "clamped"
    );
    append_one(
        store,
        "cur:r",
        vec![text("more-1", "x", 6), text("more-2", "x", 7)],
    );
    assert_eq!(advance_read(store, "reader", "cur:r", 6), 6, "new head");
    assert_eq!(
        advance_read(store, "reader", "cur:empty", 4),
        0,
        "an empty channel clamps to 0"
    );
    fill(store, "cur:a", 2);
    assert_eq!(advance_read(store, "reader", "cur:a", 1), 1);
    assert_eq!(
        read_cursors(store, "reader"),
        vec![("cur:a".to_string(), 1), ("cur:r".to_string(), 6)],
        "cursors past 0, sorted by channel"
    );
    assert_eq!(read_cursor(store, "other", "cur:r"), 0, "per user");
    assert_eq!(read_cursors(store, "reade"), vec![], "users do not overlap");
}

/// `append` moves the sender's read cursor to each message it stores for
/// them (sends, edits, deletes), in every channel of the call; duplicates,
/// conflicts and rejected messages do not move it, nor other users'.
pub fn own_messages_advance_the_senders_read_cursor<S: Store>(store: &S) {
    append_one(
        store,
        "own",
        vec![by("alice", "a1", "x", 1), by("alice", "a2", "x", 2)],
    );
    assert_eq!(read_cursor(store, "alice", "own"), 2, "own sends");
    assert_eq!(read_cursor(store, "bob", "own"), 0, "others' cursors stay");
    append_one(store, "own", vec![by("bob", "b1", "x", 3)]);
    assert_eq!(read_cursor(store, "bob", "own"), 3, "bob's send");
    assert_eq!(read_cursor(store, "alice", "own"), 2, "alice's unmoved");

    let out = append_one(store, "own", vec![edit("alice", "e1", 1, "y")]);
    assert_eq!(out.outcomes, vec![stored(4, 1_001)], "alice's edit");
    assert_eq!(read_cursor(store, "alice", "own"), 4, "an edit moves it");
    let out = append_one(store, "own", vec![delete("alice", "d2", 2)]);
    assert_eq!(out.outcomes, vec![stored(5, 2_002)], "alice's delete");
    assert_eq!(read_cursor(store, "alice", "own"), 5, "a delete moves it");

    // Nothing stored for bob: a duplicate, a conflict, a rejected edit.
    append_one(store, "own", vec![by("alice", "a3", "x", 6)]);
    let out = append_one(
        store,
        "own",
        vec![
            by("bob", "b1", "x", 3),
            by("bob", "b1", "changed", 3),
            edit("bob", "e-bob", 1, "mine now"),
        ],
    );
    assert!(
        matches!(out.outcomes[2], AppendOutcome::Rejected { .. }),
        "bob may not edit alice's message: {:?}",
        out.outcomes
    );
    assert_eq!(
        read_cursor(store, "bob", "own"),
        3,
        "only stored messages move a cursor"
    );

    let out = store
        .append(&[
            one("own:x", vec![by("alice", "x1", "x", 1)]),
            one(
                "own:y",
                vec![by("bob", "y1", "x", 1), by("alice", "y2", "x", 2)],
            ),
        ])
        .unwrap_or_else(|e| panic!("multi-channel append failed: {e}"));
    assert_eq!(out.len(), 2);
    assert_eq!(
        read_cursors(store, "alice"),
        vec![
            ("own".to_string(), 6),
            ("own:x".to_string(), 1),
            ("own:y".to_string(), 2),
        ],
        "alice's cursors in every channel of the call"
    );
    assert_eq!(read_cursor(store, "bob", "own:y"), 1, "bob's in own:y");
    assert_eq!(
        advance_read(store, "alice", "own:y", 1),
        2,
        "a report below an own send does not move it back"
    );
}

/// Read cursors also move in batches: forward only, clamped to the head,
/// repeats coalesced to the highest; each update reports its cursor before
/// and after the call, and a batch that moves nothing writes nothing.
pub fn read_cursors_advance_in_batches<S: Store>(store: &S) {
    fill(store, "rb:a", 5);
    fill(store, "rb:b", 2);
    let upd =
        |user: &str, channel: &str, seq: u64| (user.to_string(), channel.to_string(), Seq(seq));
    let apply = |updates: Vec<ReadUpdate>| -> Vec<(u64, u64)> {
        store
            .advance_read_batch(&updates)
            .unwrap_or_else(|e| panic!("advance_read_batch {updates:?} failed: {e}"))
            .into_iter()
            .map(|(b, a)| (b.0, a.0))
            .collect()
    };
    assert_eq!(apply(vec![]), vec![], "an empty batch");
    assert_eq!(
        apply(vec![
            upd("alice", "rb:a", 2),
            upd("alice", "rb:a", 4),
            upd("bob", "rb:a", 9),
            upd("alice", "rb:b", 1),
            upd("alice", "rb:none", 3),
        ]),
        vec![(0, 4), (0, 4), (0, 5), (0, 1), (0, 0)],
        "repeats coalesce to the highest, clamped to the head"
    );
    assert_eq!(read_cursor(store, "alice", "rb:a"), 4);
    assert_eq!(read_cursor(store, "bob", "rb:a"), 5);
    assert_eq!(
        read_cursor(store, "alice", "rb:none"),
        0,
        "an empty channel"
    );
    assert_eq!(
        apply(vec![upd("alice", "rb:a", 3), upd("alice", "rb:b", 2)]),
        vec![(4, 4), (1, 2)],
        "never back; forward"
    );
    assert_eq!(
        advance_read(store, "alice", "rb:a", 5),
        5,
        "same cursor as advance_read"
    );
    assert_eq!(
        read_cursors(store, "alice"),
        vec![("rb:a".to_string(), 5), ("rb:b".to_string(), 2)]
    );
}

/// `count_messages` counts text and media messages in `(after, through]`,
/// clamped to the head; edit and delete events are not counted.
pub fn count_messages_skips_edit_and_delete_events<S: Store>(store: &S) {
    let count = |after: u64, through: u64| {
        store
            .count_messages("cnt", Seq(after), Seq(through))
            .unwrap_or_else(|e| panic!("count_messages({after}, {through}) failed: {e}"))
    };
    assert_eq!(count(0, 10), 0, "an empty channel");
    append_one(
        store,
        "cnt",
        vec![
            by("alice", "c1", "one", 1),
            by("alice", "c2", "two", 2),
            by("bob", "c3", "three", 3),
        ],
    );
    append_one(
        store,
        "cnt",
        vec![edit("alice", "c4", 1, "uno"), delete("bob", "c5", 3)],
    );
    append_one(store, "cnt", vec![by("bob", "c6", "six", 6)]);
    assert_eq!(head(store, "cnt"), 6);
    assert_eq!(
        count(0, 6),
        4,
        "seqs 1, 2, 3 and 6; not the edit (4) or delete (5)"
    );
    assert_eq!(count(0, 100), 4, "clamped to the head");
    assert_eq!(count(3, 6), 1, "only seq 6 after 3");
    assert_eq!(count(3, 5), 0, "only events in (3, 5]");
    assert_eq!(
        count(2, 3),
        1,
        "a deleted message still counts where it stands"
    );
    assert_eq!(count(6, 6), 0, "nothing after the head");
    assert_eq!(count(5, 2), 0, "through before after");
    assert_eq!(
        store
            .count_messages("cn", Seq(0), Seq(6))
            .unwrap_or_else(|e| panic!("count_messages on a prefix failed: {e}")),
        0,
        "a prefix channel is another channel"
    );
}

/// Delivered cursors are per (user, device, channel), move forward only,
/// are clamped to the head, and coalesce repeats within one batch to the
/// highest. They are independent of read cursors.
pub fn delivered_cursors_are_monotonic_per_device<S: Store>(store: &S) {
    fill(store, "dlv", 5);
    let upd = |user: &str, device: &str, channel: &str, seq: u64| {
        (
            user.to_string(),
            device.to_string(),
            channel.to_string(),
            Seq(seq),
        )
    };
    let apply = |updates: Vec<DeliveredUpdate>| {
        store
            .advance_delivered_batch(&updates)
            .unwrap_or_else(|e| panic!("advance_delivered_batch {updates:?} failed: {e}"));
    };
    assert_eq!(delivered(store, "alice", "d1", "dlv"), 0, "none yet");
    apply(vec![
        upd("alice", "d1", "dlv", 3),
        upd("alice", "d2", "dlv", 1),
        upd("alice", "d1", "dlv", 2),
        upd("bob", "d1", "dlv", 9),
        upd("alice", "d1", "dlv:empty", 3),
    ]);
    assert_eq!(delivered(store, "alice", "d1", "dlv"), 3, "highest repeat");
    assert_eq!(delivered(store, "alice", "d2", "dlv"), 1, "per device");
    assert_eq!(delivered(store, "bob", "d1", "dlv"), 5, "clamped to head");
    assert_eq!(delivered(store, "alice", "d1", "dlv:empty"), 0, "empty");
    apply(vec![
        upd("alice", "d1", "dlv", 1),
        upd("alice", "d2", "dlv", 4),
    ]);
    assert_eq!(delivered(store, "alice", "d1", "dlv"), 3, "never back");
    assert_eq!(delivered(store, "alice", "d2", "dlv"), 4, "forward");
    apply(vec![]);
    assert_eq!(
        read_cursor(store, "alice", "dlv"),
        0,
        "delivered does not move the read cursor"
    );
    assert_eq!(delivered(store, "alice", "d3", "dlv"), 0, "other device");
}

// -------------------------------------------------- edits and deletes --

/// The message at `seq` via `Store::message`.
fn message<S: Store>(store: &S, channel: &str, seq: u64) -> Option<StoredMessage> {
    store
        .message(channel, Seq(seq))
        .unwrap_or_else(|e| panic!("message({channel:?}, {seq}) failed: {e}"))
}

/// Every way of reading `seq` gives `want`: `message`, `After`, `Before`,
/// `Latest`.
fn assert_view<S: Store>(store: &S, channel: &str, want: &StoredMessage, when: &str) {
    let seq = want.seq;
    assert_eq!(
        message(store, channel, seq).as_ref(),
        Some(want),
        "message({seq}) {when}"
    );
    let find = |page: crate::Page, how: &str| {
        let got = page.messages.into_iter().find(|m| m.seq == seq);
        assert_eq!(got.as_ref(), Some(want), "{how} page holding {seq} {when}");
    };
    let page = |range| {
        store
            .read(channel, range, ALL)
            .unwrap_or_else(|e| panic!("read {channel:?} {range:?} failed: {e}"))
    };
    find(page(ReadRange::After(Seq(seq - 1))), "After");
    find(page(ReadRange::Before(Seq(seq + 1))), "Before");
    find(page(ReadRange::Latest), "Latest");
}

/// An edit stores an `edit` event at the next seq and changes its target's
/// view in every read to the latest text with `edited`; the event itself and
/// every other field of the target stay as they were.
pub fn edit_changes_the_targets_view_in_reads<S: Store>(store: &S) {
    let base = vec![
        by("alice", "m1", "one", 1),
        by("alice", "m2", "two", 2),
        by("bob", "m3", "three", 3),
        NewMessage {
            kind: MessageKind::Media,
            media: Some(Media {
                url: "https://x/p.png".into(),
                mime: "image/png".into(),
                size: 9,
            }),
            ..by("alice", "m4", "caption", 4)
        },
    ];
    append_one(store, "edit:v", base.clone());
    let e1 = edit("alice", "e1", 2, "two, edited");
    let out = append_one(store, "edit:v", vec![e1.clone()]);
    assert_eq!(out.outcomes, vec![stored(5, e1.ts)], "edit stored at 5");

    let mut two = StoredMessage::from_new(Seq(2), &base[1]);
    two.text = "two, edited".into();
    two.edited = true;
    assert_view(store, "edit:v", &two, "after one edit");
    let event = StoredMessage::from_new(Seq(5), &e1);
    assert_view(store, "edit:v", &event, "(the edit event)");
    assert_view(
        store,
        "edit:v",
        &StoredMessage::from_new(Seq(1), &base[0]),
        "(untouched neighbour)",
    );

    let e2 = edit("alice", "e2", 2, "two, again");
    let e3 = edit("alice", "e3", 4, "new caption");
    let out = append_one(store, "edit:v", vec![e2.clone(), e3.clone()]);
    assert_eq!(
        out.outcomes,
        vec![stored(6, e2.ts), stored(7, e3.ts)],
        "second edit and a caption edit"
    );
    two.text = "two, again".into();
    assert_view(store, "edit:v", &two, "after a second edit");
    assert_view(store, "edit:v", &event, "(the first event is unchanged)");
    let mut four = StoredMessage::from_new(Seq(4), &base[3]);
    four.text = "new caption".into();
    four.edited = true;
    assert_view(
        store,
        "edit:v",
        &four,
        "(an edited caption keeps its media)",
    );
    assert_eq!(head(store, "edit:v"), 7, "events are in the sequence");
}

/// A delete stores a `delete` event and makes its target read back with
/// `deleted`, no text and no media (an earlier edit's `edited` stays);
/// the event itself stays as sent.
pub fn delete_hides_the_targets_content<S: Store>(store: &S) {
    let media = NewMessage {
        kind: MessageKind::Media,
        media: Some(Media {
            url: "https://x/secret.png".into(),
            mime: "image/png".into(),
            size: 9,
        }),
        ..by("alice", "m2", "caption", 2)
    };
    let base = vec![
        by("alice", "m1", "secret", 1),
        media,
        by("alice", "m3", "x", 3),
    ];
    append_one(store, "del:v", base.clone());
    let events = vec![
        delete("alice", "d1", 1),
        delete("alice", "d2", 2),
        edit("alice", "e3", 3, "edited first"),
        delete("alice", "d3", 3),
    ];
    let out = append_one(store, "del:v", events.clone());
    assert_eq!(
        out.outcomes,
        events
            .iter()
            .zip(4..)
            .map(|(m, seq)| stored(seq, m.ts))
            .collect::<Vec<_>>(),
        "deletes (and an edit) stored"
    );
    for (i, orig) in base.iter().enumerate() {
        let mut want = StoredMessage::from_new(Seq(i as u64 + 1), orig);
        want.text = String::new();
        want.media = None;
        want.deleted = true;
        want.edited = i == 2;
        assert_view(store, "del:v", &want, "after its delete");
    }
    for (i, ev) in events.iter().enumerate() {
        let want = StoredMessage::from_new(Seq(i as u64 + 4), ev);
        assert_view(store, "del:v", &want, "(event as sent)");
    }
}

/// Edits and deletes whose target is missing, is itself an event, is by
/// another sender, or was deleted are `Rejected` (in that order of checks):
/// they take no seq, leave no dedup key and change nothing, and later
/// messages of the call (and other channels of it) are stored densely.
pub fn invalid_edits_and_deletes_are_rejected_without_a_seq<S: Store>(store: &S) {
    use crate::RejectReason::{NotAuthor, TargetDeleted, TargetIsEvent, TargetMissing};
    let setup = vec![
        by("alice", "m1", "one", 1),
        by("bob", "m2", "two", 2),
        edit("alice", "e1", 1, "one!"),
        by("alice", "m4", "four", 4),
        delete("alice", "d4", 4),
    ];
    append_one(store, "rej", setup);
    let before = read_all(store, "rej");

    let no_target = NewMessage {
        target: None,
        ..edit("alice", "r-none", 1, "x")
    };
    let attempts = vec![
        (edit("bob", "r-author", 1, "mine"), Some(NotAuthor)),
        (delete("bob", "r-author-del", 1), Some(NotAuthor)),
        (edit("alice", "r-far", 99, "x"), Some(TargetMissing)),
        (edit("alice", "r-zero", 0, "x"), Some(TargetMissing)),
        (no_target, Some(TargetMissing)),
        (delete("alice", "r-event", 3), Some(TargetIsEvent)),
        (edit("alice", "r-event-del", 5, "x"), Some(TargetIsEvent)),
        (edit("alice", "r-deleted", 4, "x"), Some(TargetDeleted)),
        (delete("alice", "r-deleted2", 4), Some(TargetDeleted)),
        (by("alice", "ok1", "after", 10), None),
        // Seq 7 does not exist yet when this is checked.
        (edit("alice", "r-ahead", 7, "x"), Some(TargetMissing)),
        (by("alice", "ok2", "after", 11), None),
        // A rejected message left no dedup key: this one is checked again.
        (edit("bob", "r-author", 1, "mine"), Some(NotAuthor)),
    ];
    let out = store
        .append(&[
            one("rej", attempts.iter().map(|(m, _)| m.clone()).collect()),
            one("rej:other", vec![by("bob", "o1", "x", 1)]),
        ])
        .unwrap_or_else(|e| panic!("append with rejected messages failed: {e}"));
    let mut next = 5;
    let want: Vec<AppendOutcome> = attempts
        .iter()
        .map(|(m, reason)| match reason {
            Some(reason) => AppendOutcome::Rejected { reason: *reason },
            None => {
                next += 1;
                stored(next, m.ts)
            }
        })
        .collect();
    assert_eq!(out[0].outcomes, want, "outcomes in order");
    assert_eq!(out[0].head, Seq(7), "rejected messages took no seq");
    assert_eq!(out[1].outcomes, vec![stored(1, 1)], "other channel");

    let after = read_all(store, "rej");
    assert_eq!(
        after.iter().map(|m| m.seq).collect::<Vec<_>>(),
        seqs(1..=7),
        "dense"
    );
    assert_eq!(after[..5], before[..], "rejected changes changed nothing");
    assert_eq!(read_cursor(store, "bob", "rej"), 2, "bob stored nothing");

    // The key of a rejected message is free for a new message.
    let out = append_one(store, "rej", vec![by("bob", "r-author", "fresh", 12)]);
    assert_eq!(out.outcomes, vec![stored(8, 12)], "no dedup key was left");
}

/// An edit or delete may target a message stored earlier in the same call,
/// and sees the changes made earlier in the call.
pub fn edits_and_deletes_see_earlier_messages_of_the_same_call<S: Store>(store: &S) {
    use crate::RejectReason::{TargetDeleted, TargetIsEvent};
    let msgs = vec![
        by("alice", "m1", "one", 1),
        edit("alice", "e1", 1, "x"),
        edit("alice", "e2", 1, "y"),
        edit("alice", "e3", 2, "edit of an edit"),
        delete("alice", "d1", 1),
        edit("alice", "e4", 1, "too late"),
        by("alice", "m2", "two", 2),
    ];
    let out = append_one(store, "call", msgs.clone());
    assert_eq!(
        out.outcomes,
        vec![
            stored(1, 1),
            stored(2, msgs[1].ts),
            stored(3, msgs[2].ts),
            AppendOutcome::Rejected {
                reason: TargetIsEvent
            },
            stored(4, msgs[4].ts),
            AppendOutcome::Rejected {
                reason: TargetDeleted
            },
            stored(5, 2),
        ],
        "changes within one call"
    );
    let mut one_view = StoredMessage::from_new(Seq(1), &msgs[0]);
    one_view.text = String::new();
    one_view.edited = true;
    one_view.deleted = true;
    assert_view(store, "call", &one_view, "edited then deleted in one call");
    assert_view(
        store,
        "call",
        &StoredMessage::from_new(Seq(2), &msgs[1]),
        "(the first edit event)",
    );
}

/// Dedup compares with the message as sent: after an edit or delete of the
/// original, its retry is still a `Duplicate` (a changed retry a
/// `Conflict`), and the retry of an accepted edit or delete is a
/// `Duplicate`, not checked again.
pub fn retries_of_edited_and_deleted_messages_are_duplicates<S: Store>(store: &S) {
    let orig = by("alice", "a", "hello", 10);
    let e = edit("alice", "e", 1, "bye");
    let d = delete("alice", "d", 1);
    append_one(store, "retry", vec![orig.clone(), e.clone()]);
    let out = append_one(
        store,
        "retry",
        vec![
            orig.clone(),
            by("alice", "a", "hello?", 99),
            e.clone(),
            d.clone(),
        ],
    );
    assert_eq!(
        out.outcomes,
        vec![
            AppendOutcome::Duplicate {
                seq: Seq(1),
                ts: 10
            },
            AppendOutcome::Conflict { seq: Seq(1) },
            AppendOutcome::Duplicate {
                seq: Seq(2),
                ts: e.ts
            },
            stored(3, d.ts),
        ],
        "retries after an edit"
    );
    let out = append_one(store, "retry", vec![orig, e.clone(), d.clone()]);
    assert_eq!(
        out.outcomes,
        vec![
            AppendOutcome::Duplicate {
                seq: Seq(1),
                ts: 10
            },
            AppendOutcome::Duplicate {
                seq: Seq(2),
                ts: e.ts
            },
            AppendOutcome::Duplicate {
                seq: Seq(3),
                ts: d.ts
            },
        ],
        "retries after a delete"
    );
    assert_eq!(head(store, "retry"), 3, "no retry stored anything");
}

/// `message` reads one message by seq: `None` for seq 0, beyond the head, or
/// an unknown channel.
pub fn message_reads_one_message<S: Store>(store: &S) {
    let m = by("alice", "m1", "hi", 5);
    append_one(store, "point", vec![m.clone()]);
    assert_eq!(
        message(store, "point", 1),
        Some(StoredMessage::from_new(Seq(1), &m)),
        "seq 1"
    );
    assert_eq!(message(store, "point", 0), None, "seq 0");
    assert_eq!(message(store, "point", 2), None, "beyond the head");
    assert_eq!(message(store, "point", u64::MAX), None, "u64::MAX");
    assert_eq!(message(store, "poin", 1), None, "a prefix channel");
    assert_eq!(message(store, "nowhere", 1), None, "unknown channel");
}

/// Every check, in order, each on a fresh store from `make`. For backends
/// that prefer one test over many (expensive setup).
pub fn run_all<S: Store>(make: impl Fn() -> S) {
    for (&check, name) in CheckId::ALL.iter().zip(CHECK_NAMES) {
        tracing::debug!(check = name, "conformance");
        let store = make();
        check.run(&store);
    }
}

/// Generates, from one list of check names, the list [`run_all`] walks and
/// the exported [`conformance_tests!`](crate::conformance_tests) macro, so
/// the two can never drift apart. `$d` is a literal `$`, which the inner
/// macro needs for its own metavariables.
macro_rules! checks {
    ($d:tt; $($name:ident),* $(,)?) => {
        /// The names of all checks, in the order [`run_all`] runs them.
        pub const CHECK_NAMES: &[&str] = &[$(stringify!($name)),*];

        /// One value per check, so [`run_all`] can iterate over them (a
        /// generic fn cannot be stored without naming its type parameter).
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy)]
        enum CheckId { $($name),* }

        impl CheckId {
            const ALL: &[CheckId] = &[$(CheckId::$name),*];

            fn run<S: Store>(self, store: &S) {
                match self { $(CheckId::$name => $name(store)),* }
            }
        }

        /// Instantiates the whole conformance suite as one `#[test]` per check
        /// in a module `$modname`. `$make` is evaluated once per test, inside
        /// that module (which glob-imports its parent, so names in scope at
        /// the call site work), and must yield a fresh [`Store`](crate::Store).
        ///
        /// ```
        /// storage::conformance_tests!(mem_store, storage::MemStore::new());
        /// ```
        #[macro_export]
        macro_rules! conformance_tests {
            ($d modname:ident, $d make:expr) => {
                mod $d modname {
                    #[allow(unused_imports)]
                    use super::*;
                    $(
                        #[test]
                        fn $name() {
                            let store = $d make;
                            $d crate::conformance::$name(&store);
                        }
                    )*
                }
            };
        }
    };
}

checks!(
    $;
    dms_are_indexed_for_both_users_once_written,
    empty_channel_has_head_zero_and_reads_empty,
    first_append_gets_seq_one,
    seqs_are_dense_and_channels_independent,
    one_call_appends_to_several_channels,
    empty_append_changes_nothing,
    duplicate_within_one_call_is_stored_once,
    duplicate_across_calls_returns_original,
    same_key_different_content_conflicts,
    dedup_key_is_scoped_to_channel_sender_and_device,
    read_after_pages_forward,
    read_before_and_latest_page_backward,
    before_zero_and_one_are_empty,
    byte_limit_returns_at_least_one_message,
    messages_round_trip_exactly,
    same_channel_twice_in_one_call_is_invalid,
    concurrent_appends_to_one_channel_stay_dense,
    concurrent_appends_to_different_channels_stay_dense,
    group_membership_round_trips,
    creating_an_existing_group_is_a_conflict,
    read_cursor_is_monotonic_and_clamped_to_head,
    own_messages_advance_the_senders_read_cursor,
    delivered_cursors_are_monotonic_per_device,
    read_cursors_advance_in_batches,
    count_messages_skips_edit_and_delete_events,
    edit_changes_the_targets_view_in_reads,
    delete_hides_the_targets_content,
    invalid_edits_and_deletes_are_rejected_without_a_seq,
    edits_and_deletes_see_earlier_messages_of_the_same_call,
    retries_of_edited_and_deleted_messages_are_duplicates,
    message_reads_one_message,
);

#[cfg(test)]
mod tests {
    // The suite against MemStore, from inside the crate (textual scope:
    // a macro-expanded exported macro cannot be named by path here).
    conformance_tests!(mem_store_in_crate, crate::MemStore::new());

    #[test]
    fn run_all_runs_every_check() {
        assert_eq!(super::CheckId::ALL.len(), super::CHECK_NAMES.len());
        super::run_all(crate::MemStore::new);
    }
}
