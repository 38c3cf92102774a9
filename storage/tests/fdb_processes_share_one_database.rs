//! Two OS processes on one FoundationDB database, through the real
//! `foundationdb` crate: this test process and a child (this same test
//! binary, re-run with `FDB_PEER_CLUSTER_FILE` set, serving commands on
//! stdin). Linked to the libfdb_c test double, both talk to an
//! `fdb-double-server` the test starts on a free port; with
//! `FDB_CLUSTER_FILE` set they use that cluster instead (the restart test
//! then skips itself). Run by `scripts/test-fdb`.

#![cfg(feature = "fdb")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use foundationdb::options::MutationType;
use foundationdb::{Database, Transaction};
use futures_lite::future::block_on;
use storage::{
    AppendOutcome, ChannelAppend, FdbConfig, FdbStore, MessageKind, NewMessage, Seq, Store,
    StoreError,
};

const PEER_ENV: &str = "FDB_PEER_CLUSTER_FILE";

// ------------------------------------------------------------ the server --

/// The double server binary: `FDB_DOUBLE_SERVER`, else next to this test's
/// target directory (`target/debug/fdb-double-server`, which
/// `cargo build -p fdb-double` makes).
fn server_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("FDB_DOUBLE_SERVER") {
        return p.into();
    }
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(Path::parent)
        .unwrap()
        .join("fdb-double-server")
}

/// A double server process, killed when dropped.
struct DoubleServer {
    child: Child,
    port: u16,
    cluster_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl DoubleServer {
    fn start(port: u16) -> DoubleServer {
        let dir = tempfile::tempdir().unwrap();
        let cluster_file = dir.path().join("fdb.cluster");
        let bin = server_binary();
        let mut child = Command::new(&bin)
            .args(["--port", &port.to_string(), "--cluster-file"])
            .arg(&cluster_file)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting {} ({e}): build it with `cargo build -p fdb-double`",
                    bin.display()
                )
            });
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr: std::net::SocketAddr = line
            .split_whitespace()
            .nth(3)
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        DoubleServer {
            child,
            port: addr.port(),
            cluster_file,
            _dir: dir,
        }
    }

    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for DoubleServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the loaded libfdb_c is the double (it exports its test hook).
fn is_double() -> bool {
    // SAFETY: dlsym with a NUL-terminated name; RTLD_DEFAULT searches the
    // libraries already loaded (libfdb_c among them).
    #[allow(unsafe_code)]
    let sym = unsafe {
        libc::dlsym(
            libc::RTLD_DEFAULT,
            c"fdb_double_inject_commit_errors".as_ptr(),
        )
    };
    !sym.is_null()
}

/// The cluster both processes use: `FDB_CLUSTER_FILE`, or a double server
/// of this test's own (kept alive by the returned guard).
fn shared_cluster() -> (PathBuf, Option<DoubleServer>) {
    storage::fdb::boot_network().unwrap();
    match std::env::var_os("FDB_CLUSTER_FILE") {
        Some(p) => (p.into(), None),
        None => {
            assert!(is_double(), "without FDB_CLUSTER_FILE, link to the double");
            let s = DoubleServer::start(0);
            (s.cluster_file.clone(), Some(s))
        }
    }
}

/// Keys of one test run: no two tests (or runs on a real cluster) meet.
fn prefix() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "fdb-processes-{}-{}/",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

// -------------------------------------------------------------- the peer --

/// The other process: this binary, running only [`peer_process`].
struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Peer {
    fn spawn(cluster_file: &Path) -> Peer {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "peer_process",
                "--exact",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(PEER_ENV, cluster_file)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut p = Peer {
            child,
            stdin,
            stdout,
        };
        assert_eq!(p.line(), "ready");
        p
    }

    /// The peer's next answer (what follows `peer: `; the harness's own
    /// output, which may share the line, is skipped).
    fn line(&mut self) -> String {
        loop {
            let mut l = String::new();
            let n = self.stdout.read_line(&mut l).unwrap();
            assert!(n > 0, "the peer process exited");
            if let Some((_, rest)) = l.trim_end().split_once("peer: ") {
                return rest.to_string();
            }
        }
    }

    fn send(&mut self, cmd: &str) {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
    }

    fn ask(&mut self, cmd: &str) -> String {
        self.send(cmd);
        self.line()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A versionstamped key: `prefix`, the 10-byte placeholder, its offset.
fn stamped_key(prefix: &[u8]) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&[0xff; 10]);
    k.extend_from_slice(&(prefix.len() as u32).to_le_bytes());
    k
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// One versionstamped commit in commit order: reads the counter at
/// `prefix + "seq"` (a conflicting read, so such commits are serialised),
/// writes counter + 1 and a versionstamped key `prefix + "vs/" + stamp` whose
/// value is the counter. Returns (counter, stamp).
async fn stamped_commit(db: &Database, prefix: &str) -> (u64, Vec<u8>) {
    let seq_key = format!("{prefix}seq").into_bytes();
    let mut trx: Transaction = db.create_trx().unwrap();
    loop {
        let seq = trx
            .get(&seq_key, false)
            .await
            .unwrap()
            .map_or(0, |v| u64::from_le_bytes(v[..8].try_into().unwrap()));
        trx.set(&seq_key, &(seq + 1).to_le_bytes());
        trx.atomic_op(
            &stamped_key(format!("{prefix}vs/").as_bytes()),
            &seq.to_be_bytes(),
            MutationType::SetVersionstampedKey,
        );
        let stamp = trx.get_versionstamp();
        match trx.commit().await {
            Ok(_) => return (seq, stamp.await.unwrap().to_vec()),
            Err(e) => trx = e.on_error().await.unwrap(),
        }
    }
}

/// The child's side: commands on stdin, answers as `peer: …` lines.
#[test]
fn peer_process() {
    let Some(cluster_file) = std::env::var_os(PEER_ENV) else {
        return; // Only a process spawned by the tests below does anything.
    };
    storage::fdb::boot_network().unwrap();
    let db = Database::new(Some(cluster_file.to_str().unwrap())).unwrap();
    let say = |s: &str| {
        println!("peer: {s}");
        std::io::stdout().flush().unwrap();
    };
    say("ready");
    let mut held: Option<Transaction> = None;
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["write", k, v] => {
                let trx = db.create_trx().unwrap();
                trx.set(k.as_bytes(), v.as_bytes());
                block_on(trx.commit()).unwrap();
                say("ok");
            }
            ["read", k] => {
                let trx = db.create_trx().unwrap();
                match block_on(trx.get(k.as_bytes(), false)).unwrap() {
                    Some(v) => say(&format!("value {}", String::from_utf8_lossy(&v))),
                    None => say("none"),
                }
            }
            ["hold", k] => {
                let trx = db.create_trx().unwrap();
                let v = block_on(trx.get(k.as_bytes(), false)).unwrap();
                held = Some(trx);
                say(&format!("held {}", v.is_some()));
            }
            ["commit_held", k, v] => {
                let trx = held.take().unwrap();
                trx.set(k.as_bytes(), v.as_bytes());
                match block_on(trx.commit()) {
                    Ok(_) => say("committed"),
                    Err(e) => say(&format!("error {}", e.code())),
                }
            }
            ["watch", k] => {
                let trx = db.create_trx().unwrap();
                block_on(trx.get(k.as_bytes(), false)).unwrap();
                let watch = trx.watch(k.as_bytes());
                block_on(trx.commit()).unwrap();
                say("watching");
                std::thread::spawn(move || match block_on(watch) {
                    Ok(()) => say("fired"),
                    Err(e) => say(&format!("watch error {}", e.code())),
                });
            }
            ["stamps", prefix, n] => {
                let n: usize = n.parse().unwrap();
                let mut out = Vec::new();
                for _ in 0..n {
                    let (seq, stamp) = block_on(stamped_commit(&db, prefix));
                    out.push(format!("{seq}:{}", hex(&stamp)));
                }
                say(&format!("stamps {}", out.join(",")));
            }
            ["quit"] => break,
            other => panic!("unknown peer command {other:?}"),
        }
    }
    drop(held);
    drop(db);
    storage::fdb::stop_network();
}

// ----------------------------------------------------------------- tests --

#[test]
fn a_write_in_one_process_is_read_by_the_other() {
    let (cluster, _server) = shared_cluster();
    let db = Database::new(Some(cluster.to_str().unwrap())).unwrap();
    let mut peer = Peer::spawn(&cluster);
    let p = prefix();

    let trx = db.create_trx().unwrap();
    trx.set(format!("{p}from-parent").as_bytes(), b"hello");
    block_on(trx.commit()).unwrap();
    assert_eq!(peer.ask(&format!("read {p}from-parent")), "value hello");

    assert_eq!(peer.ask(&format!("write {p}from-child hi")), "ok");
    let trx = db.create_trx().unwrap();
    let v = block_on(trx.get(format!("{p}from-child").as_bytes(), false)).unwrap();
    assert_eq!(v.as_deref(), Some(&b"hi"[..]));
}

#[test]
fn conflicting_transactions_in_two_processes_fail_the_loser_with_1020() {
    let (cluster, _server) = shared_cluster();
    let db = Database::new(Some(cluster.to_str().unwrap())).unwrap();
    let mut peer = Peer::spawn(&cluster);
    let key = format!("{}head", prefix());

    // Both read the head, then both write it: the second commit loses.
    let mine = db.create_trx().unwrap();
    assert!(block_on(mine.get(key.as_bytes(), false)).unwrap().is_none());
    assert_eq!(peer.ask(&format!("hold {key}")), "held false");
    mine.set(key.as_bytes(), b"parent");
    block_on(mine.commit()).unwrap();
    assert_eq!(peer.ask(&format!("commit_held {key} child")), "error 1020");

    // And the other way round.
    assert_eq!(peer.ask(&format!("hold {key}")), "held true");
    let mine = db.create_trx().unwrap();
    block_on(mine.get(key.as_bytes(), false)).unwrap();
    assert_eq!(peer.ask(&format!("commit_held {key} child")), "committed");
    mine.set(key.as_bytes(), b"parent");
    let err = block_on(mine.commit()).unwrap_err();
    assert_eq!(err.code(), 1020);
    assert!(err.is_retryable());
}

#[test]
fn a_watch_in_one_process_fires_within_milliseconds_of_a_commit_in_the_other() {
    let (cluster, _server) = shared_cluster();
    let db = Database::new(Some(cluster.to_str().unwrap())).unwrap();
    let mut peer = Peer::spawn(&cluster);
    let key = format!("{}inbox-notice", prefix());
    assert_eq!(peer.ask(&format!("watch {key}")), "watching");
    std::thread::sleep(Duration::from_millis(50));

    let trx = db.create_trx().unwrap();
    trx.set(key.as_bytes(), b"new message");
    let started = Instant::now();
    block_on(trx.commit()).unwrap();
    assert_eq!(peer.line(), "fired");
    let took = started.elapsed();
    eprintln!("commit here + watch firing there: {took:?}");
    assert!(took < Duration::from_millis(250), "took {took:?}");
}

#[test]
fn versionstamped_keys_written_by_both_processes_sort_in_commit_order() {
    let (cluster, _server) = shared_cluster();
    let db = Database::new(Some(cluster.to_str().unwrap())).unwrap();
    let mut peer = Peer::spawn(&cluster);
    let p = prefix();
    const N: usize = 30;

    peer.send(&format!("stamps {p} {N}"));
    let mine: Vec<(u64, Vec<u8>)> = (0..N).map(|_| block_on(stamped_commit(&db, &p))).collect();
    let answer = peer.line();
    let theirs: Vec<(u64, String)> = answer
        .strip_prefix("stamps ")
        .unwrap()
        .split(',')
        .map(|s| {
            let (seq, stamp) = s.split_once(':').unwrap();
            (seq.parse().unwrap(), stamp.to_string())
        })
        .collect();
    assert_eq!(theirs.len(), N);

    // Read back: key order (stamp order) is the order of the counter, which
    // the conflicting reads made the true commit order across both.
    let trx = db.create_trx().unwrap();
    let begin = format!("{p}vs/").into_bytes();
    let end = format!("{p}vs0").into_bytes();
    let rows = block_on(trx.get_range(
        &foundationdb::RangeOption::from((begin.clone(), end)),
        1,
        false,
    ))
    .unwrap();
    let seqs: Vec<u64> = rows
        .iter()
        .map(|kv| u64::from_be_bytes(kv.value().try_into().unwrap()))
        .collect();
    assert_eq!(seqs, (0..2 * N as u64).collect::<Vec<_>>());

    // Every key carries the stamp its writer got from get_versionstamp.
    let stamp_of: std::collections::HashMap<u64, String> = mine
        .iter()
        .map(|(s, st)| (*s, hex(st)))
        .chain(theirs.iter().cloned())
        .collect();
    for kv in rows.iter() {
        let seq = u64::from_be_bytes(kv.value().try_into().unwrap());
        assert_eq!(hex(&kv.key()[begin.len()..]), stamp_of[&seq]);
    }
    // Both processes interleaved rather than one running after the other.
    let child_seqs: Vec<u64> = theirs.iter().map(|(s, _)| *s).collect();
    assert!(child_seqs.windows(2).all(|w| w[0] < w[1]));
    assert!(mine.windows(2).all(|w| w[0].0 < w[1].0));
}

fn msg(id: &str) -> NewMessage {
    NewMessage {
        from: "u".into(),
        device: "d".into(),
        client_msg_id: id.into(),
        kind: MessageKind::Text,
        text: "hi".into(),
        target: None,
        media: None,
        ts: 1_700_000_000_000,
    }
}

fn append(store: &FdbStore, id: &str) -> Result<u64, StoreError> {
    let out = store.append(&[ChannelAppend {
        channel: "room:restart".into(),
        messages: vec![msg(id)],
    }])?;
    match &out[0].outcomes[0] {
        AppendOutcome::Stored { seq, .. } => Ok(seq.0),
        other => panic!("expected Stored, got {other:?}"),
    }
}

#[test]
fn a_restarted_double_server_fails_appends_retryably_then_serves_again() {
    storage::fdb::boot_network().unwrap();
    if std::env::var_os("FDB_CLUSTER_FILE").is_some() || !is_double() {
        eprintln!("not the double with a server of its own: skipping the restart test");
        return;
    }
    let mut server = DoubleServer::start(0);
    let store = FdbStore::open(FdbConfig {
        cluster_file: Some(server.cluster_file.clone()),
        namespace: "restart".into(),
        timeout_ms: 3_000,
        ..FdbConfig::default()
    })
    .unwrap();
    assert_eq!(append(&store, "a").unwrap(), 1);
    assert_eq!(store.head("room:restart").unwrap(), Seq(1));

    // Down: the call fails, retryably, well before its timeout.
    server.kill();
    let started = Instant::now();
    let err = append(&store, "b").unwrap_err();
    assert!(
        matches!(err, StoreError::Unavailable(_)) && err.is_retryable(),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3), "{err:?}");

    // Back (empty: the double keeps nothing): the same store reconnects.
    let _restarted = DoubleServer::start(server.port);
    assert_eq!(
        append(&store, "c").unwrap(),
        1,
        "a restarted server is empty"
    );
    assert_eq!(store.head("room:restart").unwrap(), Seq(1));
}
