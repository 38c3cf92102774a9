//! The double server: one in-memory [`Database`] shared by every client
//! process over loopback TCP (the binary `fdb-double-server` runs it).
//! **Test-only: nothing is kept on disk; a restart starts empty.**
//!
//! One thread per client connection reads [`Request`]s in order and runs
//! them on that connection's transactions (a map from the client's
//! transaction ids to [`Transaction`]s), answering on the same socket. The
//! engine's lock orders commits across connections, so conflicts, read
//! versions and versionstamps are global. A watch's answer is written by
//! whichever thread's commit fires it (the socket's writer is shared behind
//! a lock). When a connection ends, its transactions are dropped and its
//! armed watches forgotten.
//!
//! [`ServerStats`] adds wire counters (frames, bytes, connections) to the
//! engine's [`crate::kv::Stats`]; `Stats` answers them as one JSON object,
//! and `Shutdown` prints them as the server's last line.

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::kv::{code, Database, Transaction, WatchId};
use crate::proto::{read_frame, Op, Payload, Request, Response, PROTOCOL_VERSION};

/// The server's own counters (the engine counts the rest).
#[derive(Default)]
pub struct ServerStats {
    pub connections: AtomicU64,
    pub open_connections: AtomicU64,
    pub frames_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub frames_out: AtomicU64,
    pub bytes_out: AtomicU64,
}

struct Shared {
    db: Arc<Database>,
    stats: ServerStats,
    started: Instant,
}

/// A bound, not yet running, server.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
}

/// The server's description line for FDB's cluster-file format.
pub fn cluster_file_line(addr: SocketAddr) -> String {
    format!("fdb_double:server{}@{addr}\n", std::process::id())
}

impl Server {
    /// Binds `addr` (port 0: any free port). Versions start at the wall
    /// clock in microseconds, so they keep growing across restarts.
    pub fn bind(addr: SocketAddr) -> std::io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        let now_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        Ok(Server {
            listener,
            shared: Arc::new(Shared {
                db: Arc::new(Database::starting_at(now_us)),
                stats: ServerStats::default(),
                started: Instant::now(),
            }),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The database (for tests in this process).
    pub fn database(&self) -> Arc<Database> {
        self.shared.db.clone()
    }

    /// Accepts connections forever, one thread each.
    pub fn run(self) -> std::io::Result<()> {
        for stream in self.listener.incoming() {
            let Ok(stream) = stream else {
                continue;
            };
            let shared = self.shared.clone();
            std::thread::Builder::new()
                .name("fdb-double-session".into())
                .spawn(move || Session::serve(shared, stream))?;
        }
        Ok(())
    }

    /// Runs [`Server::run`] on a thread of its own (tests).
    pub fn spawn(self) -> std::io::Result<std::thread::JoinHandle<std::io::Result<()>>> {
        std::thread::Builder::new()
            .name("fdb-double-server".into())
            .spawn(move || self.run())
    }
}

fn stats_json(shared: &Shared) -> String {
    let s = &shared.stats;
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let mut fields: Vec<(&str, u64)> = shared.db.stats().snapshot();
    fields.extend([
        ("armed_watches", shared.db.armed_watches() as u64),
        ("connections", get(&s.connections)),
        ("open_connections", get(&s.open_connections)),
        ("frames_in", get(&s.frames_in)),
        ("bytes_in", get(&s.bytes_in)),
        ("frames_out", get(&s.frames_out)),
        ("bytes_out", get(&s.bytes_out)),
        ("uptime_ms", shared.started.elapsed().as_millis() as u64),
    ]);
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    format!("{{\"version\":{},{}}}", shared.db.version(), body.join(","))
}

/// The writing half of a connection, shared with watch handlers.
struct Out {
    stream: Mutex<TcpStream>,
    shared: Arc<Shared>,
}

impl Out {
    fn send(&self, r: &Response) {
        let mut buf = Vec::new();
        r.encode(&mut buf);
        let s = &self.shared.stats;
        s.frames_out.fetch_add(1, Ordering::Relaxed);
        s.bytes_out.fetch_add(buf.len() as u64, Ordering::Relaxed);
        let mut stream = self
            .stream
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A failed write means the client is gone; its reader ends the
        // session.
        let _ = stream.write_all(&buf);
    }
}

/// One client connection's state.
struct Session {
    shared: Arc<Shared>,
    out: Arc<Out>,
    txns: HashMap<u64, Transaction>,
    /// Watches by the request that set them (until fired or cancelled).
    watches: Arc<Mutex<HashMap<u64, WatchId>>>,
}

impl Session {
    fn serve(shared: Arc<Shared>, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let Ok(write_half) = stream.try_clone() else {
            return;
        };
        shared.stats.connections.fetch_add(1, Ordering::Relaxed);
        shared
            .stats
            .open_connections
            .fetch_add(1, Ordering::Relaxed);
        let mut session = Session {
            out: Arc::new(Out {
                stream: Mutex::new(write_half),
                shared: shared.clone(),
            }),
            shared,
            txns: HashMap::new(),
            watches: Arc::default(),
        };
        session.read_loop(&stream);
        let _ = stream.shutdown(std::net::Shutdown::Both);
        session.close();
    }

    fn read_loop(&mut self, stream: &TcpStream) {
        let mut r = BufReader::with_capacity(64 << 10, stream);
        let mut greeted = false;
        while let Ok(Some(body)) = read_frame(&mut r) {
            let s = &self.shared.stats;
            s.frames_in.fetch_add(1, Ordering::Relaxed);
            s.bytes_in
                .fetch_add(body.len() as u64 + 4, Ordering::Relaxed);
            let Ok(req) = Request::decode(&body) else {
                return;
            };
            match req {
                Request::Hello { protocol } => {
                    let result = if protocol == PROTOCOL_VERSION {
                        Ok(Payload::Text(format!(
                            "fdb-double-server protocol {PROTOCOL_VERSION} (test-only)"
                        )))
                    } else {
                        Err(code::API_VERSION_NOT_SUPPORTED)
                    };
                    let ok = result.is_ok();
                    self.out.send(&Response { req: 0, result });
                    if !ok {
                        return;
                    }
                    greeted = true;
                }
                _ if !greeted => return,
                Request::Txn { txn, req, op } => self.op(txn, req, op),
                Request::CancelWatch { req } => {
                    let id = self.lock_watches().remove(&req);
                    if let Some(id) = id {
                        self.shared.db.cancel_watch(id);
                    }
                }
                Request::InjectFaults { faults } => self.shared.db.inject_commit_errors(&faults),
                Request::Stats { req } => {
                    let text = stats_json(&self.shared);
                    self.out.send(&Response {
                        req,
                        result: Ok(Payload::Text(text)),
                    });
                }
                Request::Shutdown { req } => {
                    let text = stats_json(&self.shared);
                    self.out.send(&Response {
                        req,
                        result: Ok(Payload::None),
                    });
                    println!("fdb-double-server stats {text}");
                    println!("fdb-double-server stopped (test-only: its data is gone)");
                    let _ = std::io::stdout().flush();
                    std::process::exit(0);
                }
            }
        }
    }

    fn lock_watches(&self) -> std::sync::MutexGuard<'_, HashMap<u64, WatchId>> {
        self.watches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn op(&mut self, txn: u64, req: u64, op: Op) {
        match op {
            Op::Begin => {
                self.txns
                    .insert(txn, Transaction::new(self.shared.db.clone()));
            }
            Op::End => {
                self.txns.remove(&txn);
            }
            Op::Watch { key } => {
                let Some(t) = self.txns.get_mut(&txn) else {
                    self.out.send(&Response {
                        req,
                        result: Err(code::TRANSACTION_CANCELLED),
                    });
                    return;
                };
                let out = self.out.clone();
                let watches = self.watches.clone();
                // Listed before it exists, so a watch that fails at once
                // (and unlists itself) leaves nothing behind.
                self.watches
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(req, WatchId(u64::MAX));
                let id = t.watch(
                    &key,
                    Box::new(move |r| {
                        watches
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .remove(&req);
                        out.send(&Response {
                            req,
                            result: r.map(|()| Payload::None),
                        });
                    }),
                );
                if let Some(slot) = self.lock_watches().get_mut(&req) {
                    *slot = id;
                }
            }
            op => {
                let result = match self.txns.get_mut(&txn) {
                    Some(t) => op.run(t),
                    None => Err(code::TRANSACTION_CANCELLED),
                };
                if req != 0 {
                    self.out.send(&Response { req, result });
                }
            }
        }
    }

    /// The client is gone: its transactions end, its watches are dropped.
    fn close(mut self) {
        self.txns.clear();
        let ids: Vec<WatchId> = self.lock_watches().drain().map(|(_, id)| id).collect();
        for id in ids {
            self.shared.db.cancel_watch(id);
        }
        self.shared
            .stats
            .open_connections
            .fetch_sub(1, Ordering::Relaxed);
    }
}
