//! Server mode end to end without the `foundationdb` crate: the real
//! `fdb-double-server` binary, and this process as its client through the
//! same handles the C ABI uses. (The crate-level, two-process tests are in
//! `storage/tests/fdb_processes_share_one_database.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use fdb_c::client::{Client, ClusterFile};
use fdb_c::future::{Future, Value};
use fdb_c::handle::{Db, Trx};
use fdb_c::kv::{code, mutation};
use fdb_c::net;
use fdb_c::proto::Op;

/// A running server process, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
    cluster_file: PathBuf,
    _dir: TempDir,
}

/// A directory removed when dropped (std only: no tempfile here).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "fdb-double-test-{}-{name}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Server {
    fn start(port: u16) -> Server {
        let dir = TempDir::new("server");
        let cluster_file = dir.0.join("fdb.cluster");
        let mut child = Command::new(env!("CARGO_BIN_EXE_fdb-double-server"))
            .args(["--port", &port.to_string(), "--cluster-file"])
            .arg(&cluster_file)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the server");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .split_whitespace()
            .nth(3)
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        Server {
            child,
            addr,
            cluster_file,
            _dir: dir,
        }
    }

    fn kill(mut self) -> u16 {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.addr.port()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The client's network thread, once per test process.
fn network() {
    static NET: Once = Once::new();
    NET.call_once(|| {
        assert_eq!(net::setup(), 0);
        std::thread::Builder::new()
            .name("fdb-net".into())
            .spawn(net::run)
            .unwrap();
    });
}

fn db(server: &Server) -> Arc<Db> {
    network();
    let text = std::fs::read_to_string(&server.cluster_file).unwrap();
    match fdb_c::client::parse_cluster_file(&text).unwrap() {
        ClusterFile::Server(addr) => Db::remote(Client::of(addr)),
        ClusterFile::InProcess => panic!("the server wrote an in-process cluster file"),
    }
}

/// Waits for `f` and returns its value or error code.
fn wait(f: Arc<Future>) -> Result<Arc<Future>, i32> {
    f.wait();
    match f.error() {
        0 => Ok(f),
        e => Err(e),
    }
}

fn get(t: &Trx, key: &[u8]) -> Result<Option<Vec<u8>>, i32> {
    let f = wait(t.call(Op::Get {
        key: key.to_vec(),
        snapshot: false,
    }))?;
    let mut out = None;
    f.with_value(|v| match v {
        Value::Bytes(b) => {
            out = b.clone();
            true
        }
        _ => false,
    });
    Ok(out)
}

fn set(t: &Trx, key: &[u8], value: &[u8]) {
    t.mutate(Op::Set {
        key: key.to_vec(),
        value: value.to_vec(),
    });
}

fn commit(t: &Trx) -> Result<(), i32> {
    wait(t.commit()).map(|_| ())
}

#[test]
fn transactions_on_the_server_see_each_other_conflict_and_get_increasing_stamps() {
    let server = Server::start(0);
    let (d1, d2) = (db(&server), db(&server));
    let a = d1.create_transaction();
    set(&a, b"k", b"v1");
    commit(&a).unwrap();
    assert!(a.committed_version() > 0);

    let (x, y) = (d1.create_transaction(), d2.create_transaction());
    assert_eq!(get(&x, b"k").unwrap(), Some(b"v1".to_vec()));
    assert_eq!(get(&y, b"k").unwrap(), Some(b"v1".to_vec()));
    set(&x, b"k", b"x");
    set(&y, b"k", b"y");
    commit(&y).unwrap();
    assert_eq!(commit(&x), Err(code::NOT_COMMITTED));
    wait(x.on_error(code::NOT_COMMITTED)).expect("retryable");
    assert_eq!(get(&x, b"k").unwrap(), Some(b"y".to_vec()));

    let mut stamps = Vec::new();
    for d in [&d1, &d2, &d1] {
        let t = d.create_transaction();
        let mut key = b"log/".to_vec();
        key.extend_from_slice(&[0; 10]);
        key.extend_from_slice(&4u32.to_le_bytes());
        t.mutate(Op::Atomic {
            key,
            param: b"".to_vec(),
            op: mutation::SET_VERSIONSTAMPED_KEY,
        });
        let stamp = t.versionstamp();
        commit(&t).unwrap();
        let stamp = wait(stamp).unwrap();
        stamp.with_value(|v| match v {
            Value::Bytes(Some(s)) => {
                assert_eq!(s.len(), 10);
                assert_eq!(&s[..8], &t.committed_version().to_be_bytes());
                stamps.push(s.clone());
                true
            }
            _ => false,
        });
    }
    assert!(stamps.windows(2).all(|w| w[0] < w[1]), "{stamps:?}");
    let ro = d2.create_transaction();
    get(&ro, b"k").unwrap();
    let stamp = ro.versionstamp();
    commit(&ro).unwrap();
    assert_eq!(wait(stamp).err(), Some(code::NO_COMMIT_VERSION));
}

extern "C" fn record_thread(_f: *mut Future, param: *mut std::ffi::c_void) {
    // SAFETY: the test passes a leaked Box<std::sync::mpsc::Sender<String>>.
    #[allow(unsafe_code)]
    let tx = unsafe { Box::from_raw(param.cast::<std::sync::mpsc::Sender<String>>()) };
    let name = std::thread::current().name().unwrap_or("").to_string();
    let _ = tx.send(name);
}

#[test]
fn a_watch_fires_on_the_network_thread_within_milliseconds_of_another_commit() {
    let server = Server::start(0);
    let d = db(&server);
    let w = d.create_transaction();
    assert_eq!(get(&w, b"lease").unwrap(), None);
    let watch = w.watch(b"lease");
    commit(&w).unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    // SAFETY: `record_thread` takes back the leaked sender, once.
    #[allow(unsafe_code)]
    unsafe {
        watch.set_callback(record_thread, Box::into_raw(Box::new(tx)).cast());
    }
    std::thread::sleep(Duration::from_millis(20));
    assert!(!watch.is_ready(), "nothing changed yet");
    let t = d.create_transaction();
    set(&t, b"lease", b"node-2");
    let started = Instant::now();
    commit(&t).unwrap();
    let thread = rx.recv_timeout(Duration::from_secs(5)).expect("fired");
    let took = started.elapsed();
    assert_eq!(thread, "fdb-net", "callbacks run on the network thread");
    assert_eq!(watch.error(), 0);
    assert!(took < Duration::from_millis(250), "fired after {took:?}");
}

#[test]
fn watches_past_max_watches_fail_with_1032_and_cancelled_transactions_with_1025() {
    let server = Server::start(0);
    let d = db(&server);
    assert_eq!(d.set_option(20, Some(&2i64.to_le_bytes())), 0);
    let t = d.create_transaction();
    let w1 = t.watch(b"a");
    let w2 = t.watch(b"b");
    assert_eq!(wait(t.watch(b"c")).err(), Some(code::TOO_MANY_WATCHES));
    t.cancel();
    assert_eq!(wait(w1).err(), Some(code::TRANSACTION_CANCELLED));
    assert_eq!(wait(w2).err(), Some(code::TRANSACTION_CANCELLED));
    // Both slots are free again.
    let t = d.create_transaction();
    let w = t.watch(b"a");
    commit(&t).unwrap();
    w.cancel();
    assert_eq!(wait(w).err(), Some(code::OPERATION_CANCELLED));
}

#[test]
fn a_server_restart_fails_pending_work_with_retryable_errors_and_the_retry_reconnects() {
    let server = Server::start(0);
    let d = db(&server);
    let t = d.create_transaction();
    set(&t, b"k", b"before");
    commit(&t).unwrap();

    let t = d.create_transaction();
    assert_eq!(get(&t, b"k").unwrap(), Some(b"before".to_vec()));
    let w = d.create_transaction();
    let watch = w.watch(b"k");
    commit(&w).unwrap();
    let port = server.kill();

    // The armed watch and the open transaction fail, retryably, at once.
    assert_eq!(wait(watch).err(), Some(code::TRANSACTION_TOO_OLD));
    set(&t, b"k", b"after");
    let err = commit(&t).unwrap_err();
    assert!(
        err == code::TRANSACTION_TOO_OLD || err == code::COMMIT_UNKNOWN_RESULT,
        "{err}"
    );
    assert!(fdb_c::kv::is_retryable(err));
    // While it is down, retries fail fast rather than hang.
    let started = Instant::now();
    wait(t.on_error(err)).expect("retryable");
    assert!(get(&t, b"k").is_err());
    assert!(started.elapsed() < Duration::from_secs(2));

    let server = Server::start(port);
    wait(t.on_error(code::TRANSACTION_TOO_OLD)).expect("retryable");
    assert_eq!(get(&t, b"k").unwrap(), None, "a restarted server is empty");
    set(&t, b"k", b"after");
    commit(&t).unwrap();
    let r = d.create_transaction();
    assert_eq!(get(&r, b"k").unwrap(), Some(b"after".to_vec()));
    drop(server);
}

fn run(bin_args: &[&str], cluster_file: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fdb-double-server"))
        .args(bin_args)
        .arg("--cluster-file")
        .arg(cluster_file)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn the_server_counts_commits_and_bytes_and_prints_them_when_stopped() {
    let mut server = Server::start(0);
    let d = db(&server);
    let t = d.create_transaction();
    set(&t, b"abc", b"12345");
    commit(&t).unwrap();
    let (ok, stats) = run(&["stats"], &server.cluster_file);
    assert!(ok);
    assert!(stats.contains("\"commits\":1,"), "{stats}");
    assert!(stats.contains("\"bytes_written\":8,"), "{stats}");
    let (ok, _) = run(&["stop"], &server.cluster_file);
    assert!(ok);
    let status = server.child.wait().unwrap();
    assert!(status.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(server.child.stdout.as_mut().unwrap(), &mut rest).unwrap();
    assert!(rest.contains("fdb-double-server stats {"), "{rest}");
}
