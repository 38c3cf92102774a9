//! The FoundationDB backend through the real `foundationdb` crate.
//!
//! Runs only with the `fdb` feature. Linked to the libfdb_c test double
//! (`storage/fdb-double/`) by `scripts/test-fdb`, or to a real client library with
//! `FDB_CLUSTER_FILE` naming a reachable cluster (then every store uses a
//! fresh namespace of that cluster and clears it first). Tests that inject
//! faults need the double's hook and skip themselves on a real cluster.

#![cfg(feature = "fdb")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use storage::{
    AppendOutcome, ChannelAppend, FdbConfig, FdbStore, MessageKind, NewMessage, ReadLimit,
    ReadRange, Seq, Store, StoreError,
};

/// The cluster file shared by the tests: `FDB_CLUSTER_FILE` (a real cluster,
/// or a double server: `scripts/test-fdb` runs this suite both ways), or an
/// in-process database of the double.
fn shared_cluster_file() -> PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| match std::env::var_os("FDB_CLUSTER_FILE") {
        Some(p) => PathBuf::from(p),
        None => private_cluster_file("shared"),
    })
    .clone()
}

/// A cluster file of its own: it names no coordinator, so the double keeps
/// an in-process database for its path and faults injected there touch no
/// other test. Only for double-only tests.
fn private_cluster_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fdb-double-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.cluster"));
    std::fs::write(
        &path,
        "# fdb-double: in-process database\ndouble:in-process\n",
    )
    .unwrap();
    path
}

fn namespace() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn open(cfg: FdbConfig) -> FdbStore {
    let store = FdbStore::open(cfg).expect("open the fdb store");
    store.clear_namespace().expect("clear the test namespace");
    store
}

/// A store on a fresh namespace of the shared cluster.
fn fresh() -> FdbStore {
    open(FdbConfig {
        cluster_file: Some(shared_cluster_file()),
        namespace: namespace(),
        ..FdbConfig::default()
    })
}

storage::conformance_tests!(fdb_store, fresh());

/// The double's fault hook, when the loaded libfdb_c is the double.
fn inject(cluster_file: &std::path::Path, faults: &[(i32, bool)]) -> bool {
    type Hook = unsafe extern "C" fn(*const libc::c_char, *const i32, *const i32, i32) -> i32;
    // SAFETY: dlsym with a NUL-terminated name; RTLD_DEFAULT searches the
    // libraries already loaded (libfdb_c among them).
    #[allow(unsafe_code)]
    let sym = unsafe {
        libc::dlsym(
            libc::RTLD_DEFAULT,
            c"fdb_double_inject_commit_errors".as_ptr(),
        )
    };
    if sym.is_null() {
        eprintln!("not the libfdb_c test double: skipping a fault-injection test");
        return false;
    }
    // SAFETY: the double exports the hook with this signature.
    #[allow(unsafe_code)]
    let hook: Hook = unsafe { std::mem::transmute::<*mut libc::c_void, Hook>(sym) };
    let path = std::ffi::CString::new(cluster_file.to_string_lossy().as_bytes()).unwrap();
    let codes: Vec<i32> = faults.iter().map(|f| f.0).collect();
    let applied: Vec<i32> = faults.iter().map(|f| i32::from(f.1)).collect();
    // SAFETY: arrays of faults.len() values; the path is NUL-terminated.
    #[allow(unsafe_code)]
    let rc = unsafe {
        hook(
            path.as_ptr(),
            codes.as_ptr(),
            applied.as_ptr(),
            codes.len() as i32,
        )
    };
    assert_eq!(rc, 0);
    true
}

fn msg(from: &str, id: &str, text: &str) -> NewMessage {
    NewMessage {
        from: from.into(),
        device: "d1".into(),
        client_msg_id: id.into(),
        kind: MessageKind::Text,
        text: text.into(),
        target: None,
        media: None,
        ts: 1_700_000_000_000,
    }
}

fn append(store: &impl Store, channel: &str, msgs: Vec<NewMessage>) -> Vec<AppendOutcome> {
    let out = store
        .append(&[ChannelAppend {
            channel: channel.into(),
            messages: msgs,
        }])
        .expect("append");
    out.into_iter().next().expect("one channel").outcomes
}

fn stored_seq(o: &AppendOutcome) -> u64 {
    match o {
        AppendOutcome::Stored { seq, .. } => seq.0,
        other => panic!("expected Stored, got {other:?}"),
    }
}

const ALL: ReadLimit = ReadLimit {
    messages: 100_000,
    bytes: usize::MAX,
};

#[test]
fn two_gateway_nodes_racing_on_one_channel_get_dense_unique_seqs() {
    let ns = namespace();
    let cfg = FdbConfig {
        cluster_file: Some(shared_cluster_file()),
        namespace: ns,
        ..FdbConfig::default()
    };
    let a = open(cfg.clone());
    let b = FdbStore::open(cfg).expect("second node");
    let per_writer: Vec<Vec<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|w| {
                let store = if w % 2 == 0 { &a } else { &b };
                s.spawn(move || {
                    let mut seqs = Vec::new();
                    for call in 0..40 {
                        let msgs = (0..3)
                            .map(|i| msg(&format!("w{w}"), &format!("{call}-{i}"), "hi"))
                            .collect();
                        seqs.extend(append(store, "room:race", msgs).iter().map(stored_seq));
                    }
                    seqs
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all: Vec<u64> = per_writer.iter().flatten().copied().collect();
    for mine in &per_writer {
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "a writer's seqs increase"
        );
    }
    all.sort_unstable();
    assert_eq!(all, (1..=480).collect::<Vec<u64>>(), "dense and unique");
    assert_eq!(a.head("room:race").unwrap(), Seq(480));
    let page = b.read("room:race", ReadRange::After(Seq(0)), ALL).unwrap();
    assert_eq!(page.messages.len(), 480);
    assert!(page
        .messages
        .iter()
        .enumerate()
        .all(|(i, m)| m.seq == i as u64 + 1));
}

#[test]
fn a_400_kb_message_is_stored_in_chunks_and_reads_back_exactly() {
    let store = fresh();
    let big: String = "ü🙂x".repeat(100_000 / 3 + 1); // ~233 KB of UTF-8
    let bigger = "🙂".repeat(100_000); // 400 KB: the protocol's largest text
    let outs = append(
        &store,
        "room:big",
        vec![
            msg("u", "1", &big),
            msg("u", "2", "small"),
            msg("u", "3", &bigger),
        ],
    );
    assert_eq!(
        outs.iter().map(stored_seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let page = store.read("room:big", ReadRange::Latest, ALL).unwrap();
    let texts: Vec<&str> = page.messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, vec![big.as_str(), "small", bigger.as_str()]);
    assert_eq!(
        store.message("room:big", Seq(3)).unwrap().unwrap().text,
        bigger
    );
    // An edit rewrites the big record with a small one: no stale chunks.
    let mut edit = msg("u", "4", "now short");
    edit.kind = MessageKind::Edit;
    edit.target = Some(3);
    assert_eq!(stored_seq(&append(&store, "room:big", vec![edit])[0]), 4);
    let m = store.message("room:big", Seq(3)).unwrap().unwrap();
    assert_eq!((m.text.as_str(), m.edited), ("now short", true));
}

#[test]
fn an_append_over_the_transaction_budget_is_split_and_stays_dense_and_ordered() {
    let store = open(FdbConfig {
        cluster_file: Some(shared_cluster_file()),
        namespace: namespace(),
        max_txn_bytes: 300_000,
        max_txn_messages: 7,
        ..FdbConfig::default()
    });
    let text = "y".repeat(40_000);
    let batch: Vec<ChannelAppend> = ["room:s1", "room:s2"]
        .iter()
        .map(|c| ChannelAppend {
            channel: (*c).into(),
            messages: (0..20)
                .map(|i| msg("u", &format!("{c}-{i}"), &text))
                .collect(),
        })
        .chain(std::iter::once(ChannelAppend {
            channel: "room:s1-dup".into(),
            messages: vec![msg("u", "same", "a"), msg("u", "same", "a")],
        }))
        .collect();
    let out = store.append(&batch).unwrap();
    for (ca, co) in batch.iter().zip(&out) {
        if ca.channel == "room:s1-dup" {
            assert_eq!(stored_seq(&co.outcomes[0]), 1);
            assert!(matches!(
                co.outcomes[1],
                AppendOutcome::Duplicate { seq: Seq(1), .. }
            ));
            continue;
        }
        let seqs: Vec<u64> = co.outcomes.iter().map(stored_seq).collect();
        assert_eq!(seqs, (1..=20).collect::<Vec<u64>>());
        assert_eq!(co.head, Seq(20));
        let page = store
            .read(&ca.channel, ReadRange::After(Seq(0)), ALL)
            .unwrap();
        let ids: Vec<&str> = page
            .messages
            .iter()
            .map(|m| m.client_msg_id.as_str())
            .collect();
        let want: Vec<String> = (0..20).map(|i| format!("{}-{i}", ca.channel)).collect();
        assert_eq!(ids, want.iter().map(String::as_str).collect::<Vec<_>>());
    }
    // A retry of the whole call finds every message as a duplicate.
    let again = store.append(&batch).unwrap();
    assert!(again
        .iter()
        .flat_map(|c| &c.outcomes)
        .all(|o| matches!(o, AppendOutcome::Duplicate { .. })));
}

#[test]
fn a_commit_with_unknown_result_that_did_commit_is_reported_stored_once() {
    let file = private_cluster_file("unknown-result");
    let store = open(FdbConfig {
        cluster_file: Some(file.clone()),
        namespace: namespace(),
        ..FdbConfig::default()
    });
    if !inject(&file, &[(1021, true), (1021, false)]) {
        return;
    }
    let outs = append(
        &store,
        "room:u",
        vec![msg("u", "a", "1"), msg("u", "b", "2")],
    );
    assert_eq!(outs.iter().map(stored_seq).collect::<Vec<_>>(), vec![1, 2]);
    let outs = append(&store, "room:u", vec![msg("u", "c", "3")]);
    assert_eq!(outs.iter().map(stored_seq).collect::<Vec<_>>(), vec![3]);
    assert_eq!(store.head("room:u").unwrap(), Seq(3));
    let page = store.read("room:u", ReadRange::After(Seq(0)), ALL).unwrap();
    assert_eq!(page.messages.len(), 3);
    // create_group after an unknown result that committed is not a conflict.
    inject(&file, &[(1021, true)]);
    store
        .create_group("g1", &["ann".into(), "bob".into()])
        .unwrap();
    assert_eq!(
        store.members("group:g1").unwrap().unwrap(),
        vec!["ann", "bob"]
    );
}

#[test]
fn conflicts_past_the_retry_limit_fail_as_unavailable_and_store_nothing() {
    let file = private_cluster_file("retry-limit");
    let store = open(FdbConfig {
        cluster_file: Some(file.clone()),
        namespace: namespace(),
        retry_limit: 3,
        ..FdbConfig::default()
    });
    if !inject(&file, &[(1020, false); 4]) {
        return;
    }
    let err = store
        .append(&[ChannelAppend {
            channel: "room:r".into(),
            messages: vec![msg("u", "a", "1")],
        }])
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(store.head("room:r").unwrap(), Seq(0));
    // A non-retryable FDB error is a Backend error with its code.
    inject(&file, &[(2101, false)]);
    let err = store
        .append(&[ChannelAppend {
            channel: "room:r".into(),
            messages: vec![msg("u", "a", "1")],
        }])
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Backend {
                code: 2101,
                retryable: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    // And then it works.
    assert_eq!(
        stored_seq(&append(&store, "room:r", vec![msg("u", "a", "1")])[0]),
        1
    );
}

#[test]
fn a_missing_cluster_file_is_a_clear_error() {
    let err = FdbStore::open(FdbConfig {
        cluster_file: Some("/nonexistent/fdb.cluster".into()),
        ..FdbConfig::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("FoundationDB error"), "{err}");
}

/// The `Cluster` contract (nodes, subscriptions, inboxes) on FoundationDB:
/// each check on a fresh namespace, every "node" its own `FdbStore` handle
/// on it, as separate gateway processes would open.
#[test]
fn cluster_conformance() {
    storage::cluster::conformance::run_all(&|| {
        let ns = namespace();
        open(FdbConfig {
            cluster_file: Some(shared_cluster_file()),
            namespace: ns.clone(),
            ..FdbConfig::default()
        });
        move || {
            FdbStore::open(FdbConfig {
                cluster_file: Some(shared_cluster_file()),
                namespace: ns.clone(),
                ..FdbConfig::default()
            })
            .expect("open")
        }
    });
}
