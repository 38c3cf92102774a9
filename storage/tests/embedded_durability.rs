//! What the embedded store keeps across a restart, and how it refuses what it
//! must refuse: a second opener, an unknown format, writes after a failure.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use storage::{
    AppendOutcome, ChannelAppend, EmbeddedConfig, EmbeddedStore, FaultyStore, Health, MessageKind,
    NewMessage, ReadLimit, ReadRange, RejectReason, Seq, Store, StoreError,
};

fn msg(id: &str, text: &str, ts: u64) -> NewMessage {
    NewMessage {
        from: "alice".into(),
        device: "phone".into(),
        client_msg_id: id.into(),
        kind: MessageKind::Text,
        text: text.into(),
        target: None,
        media: None,
        ts,
    }
}

fn append(store: &impl Store, channel: &str, msgs: Vec<NewMessage>) -> Vec<AppendOutcome> {
    let mut out = store
        .append(&[ChannelAppend {
            channel: channel.into(),
            messages: msgs,
        }])
        .unwrap();
    out.remove(0).outcomes
}

fn open(dir: &Path) -> Result<EmbeddedStore, StoreError> {
    EmbeddedStore::open(&EmbeddedConfig::new(dir))
}

const ALL: ReadLimit = ReadLimit {
    messages: 10_000,
    bytes: usize::MAX,
};

#[test]
fn reopen_after_drop_keeps_messages_heads_and_dedup_keys() {
    let dir = tempfile::tempdir().unwrap();
    let mut written = Vec::new();
    {
        let store = open(dir.path()).unwrap();
        for i in 0..20u64 {
            let m = msg(&format!("m{i}"), &format!("text {i}"), 1_000 + i);
            append(&store, "room:a", vec![m.clone()]);
            written.push(m);
        }
        append(&store, "room:ab", vec![msg("x", "other", 1)]);
    }
    let store = open(dir.path()).unwrap();
    assert_eq!(store.head("room:a").unwrap(), Seq(20));
    assert_eq!(store.head("room:ab").unwrap(), Seq(1));
    let page = store.read("room:a", ReadRange::After(Seq(0)), ALL).unwrap();
    assert!(!page.has_more);
    let got: Vec<_> = page
        .messages
        .iter()
        .map(|m| (m.seq, m.text.clone(), m.ts))
        .collect();
    let want: Vec<_> = written
        .iter()
        .enumerate()
        .map(|(i, m)| (i as u64 + 1, m.text.clone(), m.ts))
        .collect();
    assert_eq!(got, want);
    // Dedup keys survived: a retry is a duplicate with the original ts.
    assert_eq!(
        append(&store, "room:a", vec![msg("m3", "text 3", 9_999)]),
        vec![AppendOutcome::Duplicate {
            seq: Seq(4),
            ts: 1_003
        }]
    );
    assert_eq!(
        append(&store, "room:a", vec![msg("m3", "changed", 9_999)]),
        vec![AppendOutcome::Conflict { seq: Seq(4) }]
    );
    // And the sequence continues densely from the stored head.
    assert_eq!(
        append(&store, "room:a", vec![msg("new", "after restart", 2_000)]),
        vec![AppendOutcome::Stored {
            seq: Seq(21),
            ts: 2_000
        }]
    );
}

#[test]
fn second_open_of_the_same_dir_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path()).unwrap();
    let second = open(dir.path());
    assert!(
        matches!(second, Err(StoreError::Locked { .. })),
        "expected Locked, got {second:?}"
    );
    drop(first);
    // Released on drop.
    open(dir.path()).unwrap();
}

#[test]
fn dir_with_another_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()).unwrap());
    // Rewrite meta/format as a future version would.
    set_format(dir.path(), 99);
    match open(dir.path()) {
        Err(StoreError::UnsupportedFormat { found, supported }) => {
            assert_eq!(found, 99);
            assert_eq!(supported, storage::embedded::FORMAT_VERSION);
        }
        other => panic!("expected UnsupportedFormat, got {other:?}"),
    }
}

/// Writes a `meta/format` value as another build would have.
fn set_format(dir: &Path, version: u32) {
    let db = fjall::Database::builder(dir.join("fjall")).open().unwrap();
    let meta = db
        .keyspace("meta", fjall::KeyspaceCreateOptions::default)
        .unwrap();
    meta.insert("format", version.to_be_bytes().to_vec())
        .unwrap();
    db.persist(fjall::PersistMode::SyncAll).unwrap();
}

#[test]
fn dir_written_by_format_one_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    {
        // A format-1 directory: meta, msgs, heads, dedup only.
        let db = fjall::Database::builder(dir.path().join("fjall"))
            .open()
            .unwrap();
        for name in ["meta", "msgs", "heads", "dedup"] {
            db.keyspace(name, fjall::KeyspaceCreateOptions::default)
                .unwrap();
        }
        db.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    set_format(dir.path(), 1);
    match open(dir.path()) {
        Err(StoreError::UnsupportedFormat { found, supported }) => {
            assert_eq!(found, 1);
            assert_eq!(supported, 3);
            assert_eq!(supported, storage::embedded::FORMAT_VERSION);
        }
        other => panic!("expected UnsupportedFormat, got {other:?}"),
    }
    let db = fjall::Database::builder(dir.path().join("fjall"))
        .open()
        .unwrap();
    let mut names: Vec<String> = db
        .list_keyspace_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["dedup", "heads", "meta", "msgs"],
        "no keyspace added"
    );
}

#[test]
fn dir_of_format_two_is_migrated_and_counts_events_right() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path()).unwrap();
        append(
            &store,
            "room:m",
            vec![msg("a", "one", 1), msg("b", "two", 2)],
        );
        let edit = NewMessage {
            kind: MessageKind::Edit,
            target: Some(1),
            ..msg("c", "uno", 3)
        };
        append(&store, "room:m", vec![edit, msg("d", "four", 4)]);
    }
    {
        // What a format-2 build left: the same data without the events index.
        let db = fjall::Database::builder(dir.path().join("fjall"))
            .open()
            .unwrap();
        let events = db
            .keyspace("events", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        let keys: Vec<Vec<u8>> = events
            .iter()
            .map(|g| g.into_inner().unwrap().0.to_vec())
            .collect();
        assert_eq!(keys.len(), 1, "one event was indexed");
        for k in keys {
            events.remove(k).unwrap();
        }
        db.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    set_format(dir.path(), 2);
    let store = open(dir.path()).unwrap();
    assert_eq!(
        store.count_messages("room:m", Seq(0), Seq(4)).unwrap(),
        3,
        "the edit at seq 3 is not a message, also after the migration"
    );
    drop(store);
    let db = fjall::Database::builder(dir.path().join("fjall"))
        .open()
        .unwrap();
    let meta = db
        .keyspace("meta", fjall::KeyspaceCreateOptions::default)
        .unwrap();
    let v = meta.get("format").unwrap().unwrap();
    assert_eq!(
        &*v,
        &3u32.to_be_bytes()[..],
        "the directory is now format 3"
    );
}

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|&n| n.to_owned()).collect()
}

#[test]
fn reopen_keeps_groups_cursors_and_edits() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path()).unwrap();
        store
            .create_group("g", &strings(&["bob", "alice"]))
            .unwrap();
        store.create_group("h", &strings(&["alice"])).unwrap();
        assert!(store.add_member("group:g", "carol").unwrap());
        assert!(store.remove_member("group:h", "alice").unwrap());
        append(
            &store,
            "group:g",
            vec![
                msg("m1", "one", 1),
                msg("m2", "two", 2),
                msg("m3", "three", 3),
            ],
        );
        append(
            &store,
            "group:g",
            vec![
                NewMessage {
                    kind: MessageKind::Edit,
                    target: Some(1),
                    ..msg("e1", "one, edited", 4)
                },
                NewMessage {
                    kind: MessageKind::Delete,
                    target: Some(2),
                    ..msg("d2", "", 5)
                },
            ],
        );
        assert_eq!(
            store.advance_read("bob", "group:g", Seq(3)).unwrap(),
            Seq(3)
        );
        store
            .advance_delivered_batch(&[("bob".into(), "tablet".into(), "group:g".into(), Seq(4))])
            .unwrap();
    }
    let store = open(dir.path()).unwrap();
    assert_eq!(
        store.members("group:g").unwrap(),
        Some(strings(&["alice", "bob", "carol"]))
    );
    assert_eq!(store.members("group:h").unwrap(), Some(vec![]));
    assert_eq!(store.channels_of("alice").unwrap(), strings(&["group:g"]));
    assert!(matches!(
        store.create_group("g", &[]),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.read_cursor("alice", "group:g").unwrap(), Seq(5));
    assert_eq!(store.read_cursor("bob", "group:g").unwrap(), Seq(3));
    assert_eq!(
        store.delivered_cursor("bob", "tablet", "group:g").unwrap(),
        Seq(4)
    );
    let one = store.message("group:g", Seq(1)).unwrap().unwrap();
    assert_eq!(
        (one.text.as_str(), one.edited, one.deleted),
        ("one, edited", true, false)
    );
    let two = store.message("group:g", Seq(2)).unwrap().unwrap();
    assert_eq!((two.text.as_str(), two.deleted), ("", true));
    // The deleted target stays deleted across a restart.
    let out = append(
        &store,
        "group:g",
        vec![NewMessage {
            kind: MessageKind::Edit,
            target: Some(2),
            ..msg("e2", "resurrect", 6)
        }],
    );
    assert_eq!(
        out,
        vec![AppendOutcome::Rejected {
            reason: RejectReason::TargetDeleted
        }]
    );
}

#[test]
fn a_failed_append_leaves_edit_targets_and_cursors_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    append(&store, "ch", vec![msg("a", "original", 1)]);
    let mut bad = msg("b", "x", 2);
    bad.device = "d".repeat(300); // refused before the commit
    let res = store.append(&[
        ChannelAppend {
            channel: "ch".into(),
            messages: vec![NewMessage {
                kind: MessageKind::Edit,
                target: Some(1),
                ..msg("e", "changed", 3)
            }],
        },
        ChannelAppend {
            channel: "bad".into(),
            messages: vec![bad],
        },
    ]);
    assert!(matches!(res, Err(StoreError::Invalid(_))), "{res:?}");
    let m = store.message("ch", Seq(1)).unwrap().unwrap();
    assert_eq!((m.text.as_str(), m.edited), ("original", false));
    assert_eq!(store.head("ch").unwrap(), Seq(1));
    assert_eq!(store.read_cursor("alice", "ch").unwrap(), Seq(1));
}

#[test]
fn overlong_ids_in_membership_and_cursors_are_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    let long = "u".repeat(256);
    store.create_group("g", &[]).unwrap();
    assert!(matches!(
        store.create_group("g2", std::slice::from_ref(&long)),
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(store.members("group:g2").unwrap(), None, "nothing written");
    assert!(matches!(
        store.add_member("group:g", &long),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.advance_read(&long, "ch", Seq(1)),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.advance_delivered_batch(&[("u".into(), long.clone(), "ch".into(), Seq(1))]),
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(store.health(), Health::Healthy);
}

#[test]
fn injected_append_failure_writes_nothing_and_sequence_continues_densely() {
    let dir = tempfile::tempdir().unwrap();
    let store = FaultyStore::new(open(dir.path()).unwrap());
    append(&store, "ch", vec![msg("a", "1", 1)]);

    store.faults().fail_next_appends(2);
    for _ in 0..2 {
        let res = store.append(&[ChannelAppend {
            channel: "ch".into(),
            messages: vec![msg("b", "2", 2)],
        }]);
        match res {
            Err(e @ StoreError::Unavailable(_)) => assert!(e.is_retryable()),
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
    assert_eq!(store.head("ch").unwrap(), Seq(1));
    // The retry is stored (not a duplicate: the failed call left no key).
    assert_eq!(
        append(&store, "ch", vec![msg("b", "2", 2)]),
        vec![AppendOutcome::Stored { seq: Seq(2), ts: 2 }]
    );
    assert_eq!(store.faults().appends_attempted(), 4);
    let seqs: Vec<_> = store
        .read("ch", ReadRange::Latest, ALL)
        .unwrap()
        .messages
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(seqs, vec![1, 2]);
}

#[test]
fn poisoned_store_refuses_writes_and_reports_unhealthy() {
    let dir = tempfile::tempdir().unwrap();
    let store = FaultyStore::new(open(dir.path()).unwrap());
    append(&store, "ch", vec![msg("a", "1", 1)]);
    assert_eq!(store.health(), Health::Healthy);

    store.faults().poison_next_append();
    let batch = [ChannelAppend {
        channel: "ch".into(),
        messages: vec![msg("b", "2", 2)],
    }];
    for _ in 0..3 {
        let res = store.append(&batch);
        match res {
            Err(e @ StoreError::Poisoned(_)) => assert!(!e.is_retryable()),
            other => panic!("expected Poisoned, got {other:?}"),
        }
    }
    assert!(matches!(store.health(), Health::Poisoned(_)));
    // Nothing was written, and reads still work.
    assert_eq!(store.head("ch").unwrap(), Seq(1));
    assert_eq!(
        store
            .read("ch", ReadRange::Latest, ALL)
            .unwrap()
            .messages
            .len(),
        1
    );
}

#[test]
fn buffered_durability_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = EmbeddedConfig {
        durability: storage::Durability::Buffered,
        ..EmbeddedConfig::new(dir.path())
    };
    {
        let store = EmbeddedStore::open(&cfg).unwrap();
        append(&store, "ch", vec![msg("a", "1", 1), msg("b", "2", 2)]);
    }
    let store = EmbeddedStore::open(&cfg).unwrap();
    assert_eq!(store.head("ch").unwrap(), Seq(2));
}

#[test]
fn overlong_key_is_invalid_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    let mut bad = msg("b", "x", 2);
    bad.device = "d".repeat(300); // over the 255-byte device id limit
    let res = store.append(&[
        ChannelAppend {
            channel: "ok".into(),
            messages: vec![msg("a", "x", 1)],
        },
        ChannelAppend {
            channel: "bad".into(),
            messages: vec![bad],
        },
    ]);
    assert!(matches!(res, Err(StoreError::Invalid(_))), "{res:?}");
    assert_eq!(store.head("ok").unwrap(), Seq(0));
    assert_eq!(store.health(), Health::Healthy);
    assert_eq!(
        append(&store, "ok", vec![msg("a", "x", 1)]),
        vec![AppendOutcome::Stored { seq: Seq(1), ts: 1 }]
    );
}

/// Only a `buffered` store says its append does not wait for I/O (the
/// gateway then commits on the shard's own thread); `fsync` waits for the
/// disk, so its appends stay on the committer thread.
#[test]
fn only_buffered_appends_skip_the_wait_for_io() {
    let fsync = tempfile::tempdir().unwrap();
    assert!(open(fsync.path()).unwrap().append_waits_for_io());
    let buffered = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&EmbeddedConfig {
        durability: storage::Durability::Buffered,
        ..EmbeddedConfig::new(buffered.path())
    })
    .unwrap();
    assert!(!store.append_waits_for_io());
    // And what a shard is told never waits still stores and reads back.
    assert_eq!(append(&store, "b", vec![msg("m1", "hi", 1)]).len(), 1);
    assert_eq!(store.head("b").unwrap(), Seq(1));
}
