//! A client process's side of server mode: which mode a cluster file asks
//! for, and the connection to a double server.
//!
//! One [`Client`] per server address per process, shared by every database
//! handle on it; it holds at most one live [`Conn`] and opens a new one when
//! a transaction needs it and the last one is gone (so a restarted server is
//! picked up by the next transaction). A `Conn` is one TCP connection:
//! callers write requests under a lock (mutations are buffered and go out
//! with the next request that wants an answer); one reader thread per
//! connection reads answers and hands each to the handler its request left.
//! When the connection ends, every handler still waiting gets its request's
//! "lost" error: 1021 `commit_unknown_result` for a commit, 1007
//! `transaction_too_old` for anything else (see `lib.rs`, *Lost server*).

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use crate::kv::code;
use crate::proto::{read_frame, Op, Payload, ProtoError, Request, Response, PROTOCOL_VERSION};

/// What a cluster file asks of the double.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterFile {
    /// No coordinator (no `@`): a database inside this process.
    InProcess,
    /// `description:id@ip:port[,…]`: the double server at the first
    /// coordinator.
    Server(SocketAddr),
}

/// Reads a cluster file's text (FDB's format: `description:id@coordinators`,
/// `#` comments). `Err(2104 connection_string_invalid)` when it names a
/// coordinator that is not `ip:port`.
pub fn parse_cluster_file(text: &str) -> Result<ClusterFile, i32> {
    let Some(line) = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
    else {
        return Ok(ClusterFile::InProcess);
    };
    let Some((_, coordinators)) = line.split_once('@') else {
        return Ok(ClusterFile::InProcess);
    };
    let first = coordinators.split(',').next().unwrap_or("").trim();
    let first = first
        .strip_suffix("(tls)")
        .or_else(|| first.strip_suffix(":tls"))
        .unwrap_or(first);
    first
        .parse()
        .map(ClusterFile::Server)
        .map_err(|_| code::CONNECTION_STRING_INVALID)
}

/// Why a connection could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connecting to the fdb-double server at {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("talking to the fdb-double server: {0}")]
    Proto(#[from] ProtoError),
    #[error("the fdb-double server refused the handshake with FDB error {0}")]
    Refused(i32),
    #[error("the fdb-double server closed the connection")]
    Closed,
}

/// What a request's answer is given to (on the connection's reader thread).
pub type Handler = Box<dyn FnOnce(Result<Payload, i32>) + Send>;

struct Waiter {
    /// The error the handler gets if the connection ends first.
    lost: i32,
    handler: Handler,
}

#[derive(Default)]
struct Waiters {
    dead: bool,
    map: HashMap<u64, Waiter>,
}

struct Writer {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// Buffered mutations are written once they pass this many bytes even
/// without a request that wants an answer.
const WRITE_BUFFER: usize = 64 << 10;

/// One connection to a server.
pub struct Conn {
    writer: Mutex<Writer>,
    waiters: Mutex<Waiters>,
    alive: AtomicBool,
    next_req: AtomicU64,
    next_txn: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Opens a socket to `addr` and does the handshake.
fn handshake(addr: SocketAddr) -> Result<TcpStream, ClientError> {
    let connect = |source| ClientError::Connect { addr, source };
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(connect)?;
    s.set_nodelay(true).map_err(connect)?;
    let mut buf = Vec::new();
    Request::Hello {
        protocol: PROTOCOL_VERSION,
    }
    .encode(&mut buf);
    (&s).write_all(&buf).map_err(connect)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(connect)?;
    let body = read_frame(&mut &s)?.ok_or(ClientError::Closed)?;
    if let Err(e) = Response::decode(&body)?.result {
        return Err(ClientError::Refused(e));
    }
    s.set_read_timeout(None).map_err(connect)?;
    Ok(s)
}

impl Conn {
    fn open(addr: SocketAddr) -> Result<Arc<Conn>, ClientError> {
        let stream = handshake(addr)?;
        let reader = stream
            .try_clone()
            .map_err(|source| ClientError::Connect { addr, source })?;
        let conn = Arc::new(Conn {
            writer: Mutex::new(Writer {
                stream,
                buf: Vec::new(),
            }),
            waiters: Mutex::new(Waiters::default()),
            alive: AtomicBool::new(true),
            next_req: AtomicU64::new(1),
            next_txn: AtomicU64::new(1),
        });
        let c = conn.clone();
        std::thread::Builder::new()
            .name("fdb-double-conn".into())
            .spawn(move || c.read_loop(reader))
            .map_err(|source| ClientError::Connect { addr, source })?;
        Ok(conn)
    }

    pub fn alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// A transaction id unique on this connection.
    pub fn next_txn(&self) -> u64 {
        self.next_txn.fetch_add(1, Ordering::Relaxed)
    }

    /// Queues `r`; writes the queue when `flush` or when it is large. A
    /// failed write ends the connection (the reader thread then fails every
    /// waiting handler).
    pub fn send(&self, r: &Request, flush: bool) {
        let mut w = lock(&self.writer);
        r.encode(&mut w.buf);
        if flush || w.buf.len() >= WRITE_BUFFER {
            let Writer { stream, buf } = &mut *w;
            let res = stream.write_all(buf);
            buf.clear();
            if res.is_err() {
                self.kill(stream);
            }
        }
    }

    /// Sends `op` on transaction `txn` and gives its answer to `handler`;
    /// returns the request id. On a dead connection the handler gets `lost`
    /// at once.
    pub fn request(&self, txn: u64, op: Op, lost: i32, handler: Handler) -> u64 {
        let req = self.next_req.fetch_add(1, Ordering::Relaxed);
        {
            let mut ws = lock(&self.waiters);
            if ws.dead {
                drop(ws);
                handler(Err(lost));
                return req;
            }
            ws.map.insert(req, Waiter { lost, handler });
        }
        self.send(&Request::Txn { txn, req, op }, true);
        req
    }

    /// Forgets the watch asked by request `req` (its future was cancelled).
    pub fn cancel_watch(&self, req: u64) {
        let had = lock(&self.waiters).map.remove(&req).is_some();
        if had && self.alive() {
            self.send(&Request::CancelWatch { req }, true);
        }
    }

    fn kill(&self, stream: &TcpStream) {
        self.alive.store(false, Ordering::Release);
        let _ = stream.shutdown(Shutdown::Both);
    }

    fn read_loop(self: Arc<Conn>, stream: TcpStream) {
        let mut r = BufReader::with_capacity(64 << 10, &stream);
        while let Ok(Some(body)) = read_frame(&mut r) {
            let Ok(resp) = Response::decode(&body) else {
                break;
            };
            let waiter = lock(&self.waiters).map.remove(&resp.req);
            if let Some(w) = waiter {
                (w.handler)(resp.result);
            }
        }
        self.kill(&stream);
        let lost = {
            let mut ws = lock(&self.waiters);
            ws.dead = true;
            std::mem::take(&mut ws.map)
        };
        for (_, w) in lost {
            (w.handler)(Err(w.lost));
        }
    }
}

/// The process's link to one server address.
pub struct Client {
    addr: SocketAddr,
    current: Mutex<Option<Arc<Conn>>>,
}

impl Client {
    /// The process-wide client of `addr`.
    pub fn of(addr: SocketAddr) -> Arc<Client> {
        static CLIENTS: OnceLock<Mutex<HashMap<SocketAddr, Arc<Client>>>> = OnceLock::new();
        let mut all = lock(CLIENTS.get_or_init(Default::default));
        all.entry(addr)
            .or_insert_with(|| {
                Arc::new(Client {
                    addr,
                    current: Mutex::new(None),
                })
            })
            .clone()
    }

    /// The live connection, opening a new one if there is none.
    pub fn connection(&self) -> Result<Arc<Conn>, ClientError> {
        let mut cur = lock(&self.current);
        if let Some(c) = cur.as_ref().filter(|c| c.alive()) {
            return Ok(c.clone());
        }
        let c = Conn::open(self.addr)?;
        *cur = Some(c.clone());
        Ok(c)
    }
}

/// One request and its answer on a connection of its own (for tools: the
/// server binary's `stats` and `stop`). `make` gets the request id.
pub fn query(addr: SocketAddr, make: impl FnOnce(u64) -> Request) -> Result<Response, ClientError> {
    let s = handshake(addr)?;
    let mut buf = Vec::new();
    make(1).encode(&mut buf);
    (&s).write_all(&buf)
        .map_err(|source| ClientError::Connect { addr, source })?;
    loop {
        let body = read_frame(&mut &s)?.ok_or(ClientError::Closed)?;
        let resp = Response::decode(&body)?;
        if resp.req == 1 {
            return Ok(resp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_file_names_a_server_only_with_a_coordinator() {
        assert_eq!(parse_cluster_file(""), Ok(ClusterFile::InProcess));
        assert_eq!(
            parse_cluster_file("# fdb-double\ndouble:in-process\n"),
            Ok(ClusterFile::InProcess)
        );
        assert_eq!(
            parse_cluster_file("# c\n  double:test@127.0.0.1:4689,127.0.0.1:4690\n"),
            Ok(ClusterFile::Server("127.0.0.1:4689".parse().expect("addr")))
        );
        assert_eq!(
            parse_cluster_file("x:y@127.0.0.1:4500:tls"),
            Ok(ClusterFile::Server("127.0.0.1:4500".parse().expect("addr")))
        );
        assert_eq!(
            parse_cluster_file("x:y@db.example:4500"),
            Err(code::CONNECTION_STRING_INVALID)
        );
    }
}
