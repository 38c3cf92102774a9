//! `FDBDatabase` and `FDBTransaction` as the C calls see them, in either
//! mode: every call becomes an [`Op`] that runs on a [`Transaction`] in this
//! process (in-process mode: the future is ready when returned) or goes to
//! the server (server mode: the future is pending until the answer).
//!
//! Server mode, per transaction handle:
//!
//! - The handle binds to a server-side transaction on the current
//!   connection at its first operation (`Begin`, then the options and read
//!   version it was given). Mutations go out without waiting; reads and the
//!   commit wait for their answer.
//! - The handle keeps what must survive a lost connection: the options and
//!   retry count ([`Retry`]), so `timeout` and `retry_limit` bound the whole
//!   call across reconnects, and `on_error` is decided here (its backoff is
//!   a timer on the network thread, not a sleep).
//! - If the connection dies, the handle stays bound to it: every later
//!   operation fails with 1007 until `on_error` or `reset` unbinds it, and
//!   the next operation binds to a new connection. A mutation that could not
//!   be sent breaks the transaction the same way, so a commit never goes out
//!   without one of its writes.
//!
//! Both modes: `get_versionstamp` and `get_committed_version` read the
//! commit's [`Outcome`]; watches count against the database's `max_watches`
//! (1032 `too_many_watches` past it).

use std::ffi::c_int;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::client::{Client, Conn};
use crate::future::{Future, Value};
use crate::kv::{code, Committed, Database, Retry, Stamp, Transaction, WatchId};
use crate::net;
use crate::proto::{Op, Payload, Request};

/// FDB's default `max_watches` per database.
pub const DEFAULT_MAX_WATCHES: usize = 10_000;

enum Backend {
    Local(Arc<Database>),
    Remote(Arc<Client>),
}

/// `FDBDatabase`.
pub struct Db {
    backend: Backend,
    /// Watches whose future is not ready yet, and the limit.
    watches: Arc<AtomicUsize>,
    max_watches: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Db {
    pub fn local(db: Arc<Database>) -> Arc<Db> {
        Db::with(Backend::Local(db))
    }

    pub fn remote(client: Arc<Client>) -> Arc<Db> {
        Db::with(Backend::Remote(client))
    }

    fn with(backend: Backend) -> Arc<Db> {
        Arc::new(Db {
            backend,
            watches: Arc::new(AtomicUsize::new(0)),
            max_watches: AtomicUsize::new(DEFAULT_MAX_WATCHES),
        })
    }

    /// `fdb_database_set_option`: `max_watches` (20); others are accepted.
    pub fn set_option(&self, option: c_int, value: Option<&[u8]>) -> c_int {
        if option == 20 {
            let Some(Ok(v)) = value.map(<[u8; 8]>::try_from) else {
                return code::INVALID_OPTION_VALUE;
            };
            match i64::from_le_bytes(v) {
                n @ 0..=1_000_000 => self.max_watches.store(n as usize, Ordering::Relaxed),
                _ => return code::INVALID_OPTION_VALUE,
            }
        }
        0
    }

    pub fn create_transaction(self: &Arc<Db>) -> Trx {
        let mode = match &self.backend {
            Backend::Local(db) => Mode::Local(Transaction::new(db.clone())),
            Backend::Remote(c) => Mode::Remote(Remote {
                client: c.clone(),
                bound: None,
                broken: None,
                retry: Retry::default(),
                options: Vec::new(),
                read_version: None,
            }),
        };
        Trx {
            db: self.clone(),
            inner: Mutex::new(Inner {
                mode,
                outcome: new_outcome(),
            }),
        }
    }
}

/// What a commit produced, for `get_versionstamp` and
/// `get_committed_version`; shared with the commit's answer handler.
#[derive(Default)]
pub struct OutcomeState {
    committed_version: i64,
    stamp: Option<Result<Stamp, c_int>>,
    waiters: Vec<Arc<Future>>,
}

type Outcome = Arc<Mutex<OutcomeState>>;

fn new_outcome() -> Outcome {
    Arc::new(Mutex::new(OutcomeState {
        committed_version: -1,
        ..OutcomeState::default()
    }))
}

/// Records a commit's result and completes the versionstamp futures: the
/// stamp, 2021 `no_commit_version` for a read-only commit, or the commit's
/// error.
fn settle(outcome: &Outcome, r: Result<Committed, c_int>) {
    let mut o = lock(outcome);
    let stamp = match r {
        Ok(c) => {
            o.committed_version = c.version;
            c.stamp.ok_or(code::NO_COMMIT_VERSION)
        }
        Err(e) => Err(e),
    };
    o.stamp = Some(stamp);
    let waiters = std::mem::take(&mut o.waiters);
    drop(o);
    for w in waiters {
        net::post(w, stamp.map(|s| Value::Bytes(Some(s.to_vec()))));
    }
}

/// Fails a discarded outcome's unanswered versionstamp futures (1025).
fn discard(o: &Outcome) {
    let waiters = std::mem::take(&mut lock(o).waiters);
    for w in waiters {
        net::post(w, Err(code::TRANSACTION_CANCELLED));
    }
}

/// A server-mode transaction handle's state (see the module docs).
struct Remote {
    client: Arc<Client>,
    /// The connection and server-side transaction id, once bound.
    bound: Option<(Arc<Conn>, u64)>,
    /// Set when a mutation could not be sent: every operation fails with it
    /// until `on_error` or `reset`.
    broken: Option<c_int>,
    retry: Retry,
    /// Options given so far (replayed when binding).
    options: Vec<(c_int, Option<Vec<u8>>)>,
    read_version: Option<i64>,
}

impl Remote {
    /// The live connection and transaction id, binding if needed.
    fn bind(&mut self) -> Result<(Arc<Conn>, u64), c_int> {
        if let Some(e) = self.broken {
            return Err(e);
        }
        if let Some((c, t)) = &self.bound {
            return if c.alive() {
                Ok((c.clone(), *t))
            } else {
                Err(code::TRANSACTION_TOO_OLD)
            };
        }
        let c = self
            .client
            .connection()
            .map_err(|_| code::TRANSACTION_TOO_OLD)?;
        let t = c.next_txn();
        let send = |op| c.send(&Request::Txn { txn: t, req: 0, op }, false);
        send(Op::Begin);
        for (option, value) in &self.options {
            send(Op::SetOption {
                option: *option,
                value: value.clone(),
            });
        }
        if let Some(v) = self.read_version {
            send(Op::SetReadVersion(v));
        }
        self.bound = Some((c.clone(), t));
        Ok((c, t))
    }

    /// Sends an op that wants no answer (a mutation, an option).
    fn send(&mut self, op: Op) {
        match self.bind() {
            Ok((c, txn)) => c.send(&Request::Txn { txn, req: 0, op }, false),
            Err(e) => {
                self.broken.get_or_insert(e);
            }
        }
    }

    /// Sends an op to the bound live connection, if any (no binding).
    fn send_if_bound(&mut self, op: Op) {
        match &self.bound {
            Some((c, txn)) if c.alive() => c.send(
                &Request::Txn {
                    txn: *txn,
                    req: 0,
                    op,
                },
                true,
            ),
            _ => self.bound = None,
        }
    }

    /// Sends an op whose answer completes the returned future; `done` sees
    /// the answer first (on the connection's reader thread).
    fn call(
        &mut self,
        op: Op,
        done: impl FnOnce(&Result<Payload, c_int>) + Send + 'static,
    ) -> Arc<Future> {
        if self.retry.timed_out() {
            return Future::ready(Err(code::TRANSACTION_TIMED_OUT));
        }
        let (conn, txn) = match self.bind() {
            Ok(b) => b,
            Err(e) => {
                done(&Err(e));
                return Future::ready(Err(e));
            }
        };
        let fut = Future::pending();
        let f = fut.clone();
        let lost = if op.may_commit() {
            code::COMMIT_UNKNOWN_RESULT
        } else {
            code::TRANSACTION_TOO_OLD
        };
        conn.request(
            txn,
            op,
            lost,
            Box::new(move |r| {
                done(&r);
                net::post(f, r.map(to_value));
            }),
        );
        fut
    }

    /// Forgets the server-side transaction's state (`on_error`, `reset`).
    fn unbind_or(&mut self, op: Op) {
        self.broken = None;
        self.read_version = None;
        self.send_if_bound(op);
    }
}

/// An answer as a future's value.
fn to_value(p: Payload) -> Value {
    match p {
        Payload::None | Payload::Committed(_) => Value::None,
        Payload::Int64(v) => Value::Int64(v),
        Payload::Value(v) => Value::Bytes(v),
        Payload::Key(k) => Value::Bytes(Some(k)),
        Payload::Rows { rows, more } => Value::key_values(rows, more),
        Payload::Text(t) => Value::Bytes(Some(t.into_bytes())),
    }
}

enum Mode {
    Local(Transaction),
    Remote(Remote),
}

struct Inner {
    mode: Mode,
    outcome: Outcome,
}

/// `FDBTransaction`.
pub struct Trx {
    db: Arc<Db>,
    inner: Mutex<Inner>,
}

impl Trx {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// An op whose answer is a future (reads, sizes, read version).
    pub fn call(&self, op: Op) -> Arc<Future> {
        let mut g = self.inner();
        match &mut g.mode {
            Mode::Local(t) => Future::ready(op.run(t).map(to_value)),
            Mode::Remote(r) => r.call(op, |_| {}),
        }
    }

    /// An op without an answer (mutations). Errors surface at commit.
    pub fn mutate(&self, op: Op) {
        let mut g = self.inner();
        match &mut g.mode {
            Mode::Local(t) => {
                let _ = op.run(t);
            }
            Mode::Remote(r) => r.send(op),
        }
    }

    pub fn set_option(&self, option: c_int, value: Option<&[u8]>) -> c_int {
        let mut g = self.inner();
        match &mut g.mode {
            Mode::Local(t) => t.set_option(option, value).err().unwrap_or(0),
            Mode::Remote(r) => {
                if let Err(e) = r.retry.set_option(option, value) {
                    return e;
                }
                let value = value.map(<[u8]>::to_vec);
                r.options.push((option, value.clone()));
                if r.bound.is_some() {
                    r.send(Op::SetOption { option, value });
                }
                0
            }
        }
    }

    pub fn set_read_version(&self, v: i64) {
        let mut g = self.inner();
        match &mut g.mode {
            Mode::Local(t) => t.set_read_version(v),
            Mode::Remote(r) => {
                r.read_version = Some(v);
                if r.bound.is_some() {
                    r.send(Op::SetReadVersion(v));
                }
            }
        }
    }

    pub fn add_conflict_range(&self, begin: &[u8], end: &[u8], write: bool) -> c_int {
        let mut g = self.inner();
        match &mut g.mode {
            Mode::Local(t) => t.add_conflict_range(begin, end, write).err().unwrap_or(0),
            Mode::Remote(r) => {
                if begin > end {
                    return code::INVERTED_RANGE;
                }
                r.send(Op::AddConflictRange {
                    begin: begin.to_vec(),
                    end: end.to_vec(),
                    write,
                });
                0
            }
        }
    }

    pub fn commit(&self) -> Arc<Future> {
        let mut g = self.inner();
        let outcome = g.outcome.clone();
        match &mut g.mode {
            Mode::Local(t) => {
                let r = t.commit();
                settle(&outcome, r);
                Future::ready(r.map(|_| Value::None))
            }
            Mode::Remote(r) => r.call(Op::Commit, move |res| {
                settle(
                    &outcome,
                    match res {
                        Ok(Payload::Committed(c)) => Ok(*c),
                        Ok(_) => Err(code::INTERNAL_ERROR),
                        Err(e) => Err(*e),
                    },
                );
            }),
        }
    }

    pub fn committed_version(&self) -> i64 {
        lock(&self.inner().outcome).committed_version
    }

    pub fn versionstamp(&self) -> Arc<Future> {
        let g = self.inner();
        let mut o = lock(&g.outcome);
        if let Some(r) = o.stamp {
            return Future::ready(r.map(|s| Value::Bytes(Some(s.to_vec()))));
        }
        let f = Future::pending();
        o.waiters.push(f.clone());
        f
    }

    pub fn watch(&self, key: &[u8]) -> Arc<Future> {
        let db = &self.db;
        if db.watches.fetch_add(1, Ordering::Relaxed) >= db.max_watches.load(Ordering::Relaxed) {
            db.watches.fetch_sub(1, Ordering::Relaxed);
            return Future::ready(Err(code::TOO_MANY_WATCHES));
        }
        let fut = Future::pending();
        fut.release_when_ready(db.watches.clone());
        let f = fut.clone();
        let mut g = self.inner();
        match &mut g.mode {
            Mode::Local(t) => {
                let WatchId(id) = t.watch(
                    key,
                    Box::new(move |r| net::post(f, r.map(|()| Value::None))),
                );
                if let Backend::Local(d) = &db.backend {
                    let d = d.clone();
                    fut.on_cancel(Box::new(move || d.cancel_watch(WatchId(id))));
                }
            }
            Mode::Remote(r) => {
                if r.retry.timed_out() {
                    fut.complete(Err(code::TRANSACTION_TIMED_OUT));
                    return fut;
                }
                match r.bind() {
                    Ok((conn, txn)) => {
                        let req = conn.request(
                            txn,
                            Op::Watch { key: key.to_vec() },
                            code::TRANSACTION_TOO_OLD,
                            Box::new(move |r| net::post(f, r.map(|_| Value::None))),
                        );
                        fut.on_cancel(Box::new(move || conn.cancel_watch(req)));
                    }
                    Err(e) => {
                        fut.complete(Err(e));
                    }
                }
            }
        }
        fut
    }

    /// `fdb_transaction_on_error`: the future is ready (after the backoff)
    /// when the caller should retry, or holds the error to give up with.
    pub fn on_error(&self, err: c_int) -> Arc<Future> {
        let mut g = self.inner();
        let r = match &mut g.mode {
            Mode::Local(t) => t.on_error(err).map(|()| Future::ready(Ok(Value::None))),
            Mode::Remote(r) => r.retry.on_error(err).map(|backoff| {
                r.unbind_or(Op::Restart);
                let f = Future::pending();
                net::post_after(backoff, f.clone(), Ok(Value::None));
                f
            }),
        };
        match r {
            Ok(f) => {
                let old = std::mem::replace(&mut g.outcome, new_outcome());
                discard(&old);
                f
            }
            Err(e) => Future::ready(Err(e)),
        }
    }

    pub fn reset(&self) {
        let mut g = self.inner();
        match &mut g.mode {
            Mode::Local(t) => t.reset(),
            Mode::Remote(r) => {
                r.retry = Retry::default();
                r.options.clear();
                r.unbind_or(Op::Reset);
            }
        }
        let old = std::mem::replace(&mut g.outcome, new_outcome());
        discard(&old);
    }

    pub fn cancel(&self) {
        let mut g = self.inner();
        match &mut g.mode {
            Mode::Local(t) => t.cancel(),
            Mode::Remote(r) => {
                r.broken = Some(code::TRANSACTION_CANCELLED);
                r.send_if_bound(Op::Cancel);
            }
        }
    }
}

impl Drop for Trx {
    fn drop(&mut self) {
        let g = self.inner();
        discard(&g.outcome);
        drop(g);
        if let Mode::Remote(r) = &mut lock(&self.inner).mode {
            r.send_if_bound(Op::End);
        }
    }
}
