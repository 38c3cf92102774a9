//! The double server's wire protocol: what a client process asks of the
//! server and what it answers, as data, plus their binary form. Sans-IO:
//! [`decode_frame`] takes bytes and returns `Ok(None)` until a whole frame
//! is there; [`read_frame`] is the one helper that touches a socket.
//!
//! **Frames** are a `u32` little-endian body length, then the body: a tag
//! byte and the fields, integers little-endian, byte strings as a `u32`
//! length then the bytes, optional byte strings as a presence byte first.
//!
//! **Requests** ([`Request`]) name a client-chosen transaction id and, when
//! they want an answer, a request id (`req`, never 0). Mutations (`set`,
//! `clear`, atomic ops, options) carry `req` 0: no round trip, the socket
//! keeps them in order before the next read or the commit. A watch is a
//! request whose answer comes when the watch fires (or fails).
//!
//! **Responses** ([`Response`]) carry the request id and an FDB error code
//! or a [`Payload`].
//!
//! The same [`Op`] values drive the engine in both modes: [`Op::run`] runs
//! one against a [`Transaction`] — in the client process (in-process mode)
//! or in the server (server mode).

use std::io::Read;

use crate::kv::{code, Committed, RangeParams, Selector, Stamp, Transaction};

/// Bumped on every incompatible change; a client and a server of different
/// versions refuse each other at `Hello`.
pub const PROTOCOL_VERSION: u32 = 1;

/// The largest frame accepted (FDB's 10 MB transaction limit, with room).
pub const MAX_FRAME: usize = 64 << 20;

/// Why bytes are not a message.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// The frame ended before its fields did.
    #[error("truncated frame")]
    Truncated,
    /// A tag this version does not know (a peer of another version).
    #[error("unknown tag {0}")]
    UnknownTag(u8),
    /// A frame over [`MAX_FRAME`].
    #[error("frame of {0} bytes is over the limit")]
    TooLarge(usize),
    /// Bytes left after the last field.
    #[error("{0} bytes after the last field")]
    Trailing(usize),
    /// A string field that is not UTF-8.
    #[error("text field is not UTF-8")]
    NotUtf8,
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// One operation on one transaction (the C calls that reach the engine).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Creates the transaction `txn` (server mode).
    Begin,
    /// Destroys it; watches not armed fail with 1025.
    End,
    /// `fdb_transaction_reset`.
    Reset,
    /// What `on_error` does once it decided to retry: clears the
    /// transaction, keeping its options.
    Restart,
    Cancel,
    SetOption {
        option: i32,
        value: Option<Vec<u8>>,
    },
    SetReadVersion(i64),
    GetReadVersion,
    Get {
        key: Vec<u8>,
        snapshot: bool,
    },
    GetKey {
        selector: Selector,
        snapshot: bool,
    },
    GetRange {
        begin: Selector,
        end: Selector,
        params: RangeParams,
    },
    Set {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Clear {
        key: Vec<u8>,
    },
    ClearRange {
        begin: Vec<u8>,
        end: Vec<u8>,
    },
    Atomic {
        key: Vec<u8>,
        param: Vec<u8>,
        op: i32,
    },
    AddConflictRange {
        begin: Vec<u8>,
        end: Vec<u8>,
        write: bool,
    },
    /// Answered when the watch fires or fails (server mode).
    Watch {
        key: Vec<u8>,
    },
    Commit,
    ApproximateSize,
    EstimatedRangeSize {
        begin: Vec<u8>,
        end: Vec<u8>,
    },
}

/// A client's message to the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// First message on a connection; answered with the server's name.
    Hello { protocol: u32 },
    /// An operation; `req` 0 wants no answer.
    Txn { txn: u64, req: u64, op: Op },
    /// Drops the watch asked by request `req` without firing it.
    CancelWatch { req: u64 },
    /// The fault-injection test hook (`fdb_double_inject_commit_errors`).
    InjectFaults { faults: Vec<(i32, bool)> },
    /// The server's counters, as one JSON object ([`Payload::Text`]).
    Stats { req: u64 },
    /// Answers, prints the final counters and exits the server.
    Shutdown { req: u64 },
}

/// What an answered request returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    None,
    Int64(i64),
    Value(Option<Vec<u8>>),
    Key(Vec<u8>),
    Rows {
        rows: Vec<(Vec<u8>, Vec<u8>)>,
        more: bool,
    },
    Committed(Committed),
    Text(String),
}

/// The server's message to a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub req: u64,
    /// An FDB error code, or the answer.
    pub result: Result<Payload, i32>,
}

impl Op {
    /// Whether a lost connection leaves this op's outcome unknown (a commit
    /// that may have been applied: 1021) rather than simply lost.
    pub fn may_commit(&self) -> bool {
        matches!(self, Op::Commit)
    }

    /// Runs the op against `t`. `Begin`, `End` and `Watch` belong to the
    /// caller (they create, drop or outlive transactions).
    pub fn run(self, t: &mut Transaction) -> Result<Payload, i32> {
        match self {
            Op::Begin | Op::End | Op::Watch { .. } => Err(code::INTERNAL_ERROR),
            Op::Reset => {
                t.reset();
                Ok(Payload::None)
            }
            Op::Restart => {
                t.restart();
                Ok(Payload::None)
            }
            Op::Cancel => {
                t.cancel();
                Ok(Payload::None)
            }
            Op::SetOption { option, value } => t
                .set_option(option, value.as_deref())
                .map(|()| Payload::None),
            Op::SetReadVersion(v) => {
                t.set_read_version(v);
                Ok(Payload::None)
            }
            Op::GetReadVersion => t.get_read_version().map(Payload::Int64),
            Op::Get { key, snapshot } => t.get(&key, snapshot).map(Payload::Value),
            Op::GetKey { selector, snapshot } => t.get_key(&selector, snapshot).map(Payload::Key),
            Op::GetRange { begin, end, params } => {
                t.get_range(&begin, &end, params).map(|r| Payload::Rows {
                    rows: r.rows,
                    more: r.more,
                })
            }
            Op::Set { key, value } => {
                t.set(&key, &value);
                Ok(Payload::None)
            }
            Op::Clear { key } => {
                t.clear(&key);
                Ok(Payload::None)
            }
            Op::ClearRange { begin, end } => {
                t.clear_range(&begin, &end);
                Ok(Payload::None)
            }
            Op::Atomic { key, param, op } => {
                t.atomic_op(&key, &param, op);
                Ok(Payload::None)
            }
            Op::AddConflictRange { begin, end, write } => t
                .add_conflict_range(&begin, &end, write)
                .map(|()| Payload::None),
            Op::Commit => t.commit().map(Payload::Committed),
            Op::ApproximateSize => Ok(Payload::Int64(t.approximate_size() as i64)),
            Op::EstimatedRangeSize { begin, end } => {
                t.estimated_range_size(&begin, &end).map(Payload::Int64)
            }
        }
    }
}

// ---------------------------------------------------------------- encode --

/// Appends to a frame under construction.
struct Enc<'a>(&'a mut Vec<u8>);

impl Enc<'_> {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn bool(&mut self, v: bool) {
        self.0.push(u8::from(v));
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i32(&mut self, v: i32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    fn opt(&mut self, b: Option<&[u8]>) {
        match b {
            Some(b) => {
                self.u8(1);
                self.bytes(b);
            }
            None => self.u8(0),
        }
    }
    fn selector(&mut self, s: &Selector) {
        self.bytes(&s.key);
        self.bool(s.or_equal);
        self.i32(s.offset);
    }
}

/// Appends one frame (length, then body) to `out`.
fn frame(out: &mut Vec<u8>, body: impl FnOnce(&mut Enc<'_>)) {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    body(&mut Enc(out));
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

impl Op {
    fn encode(&self, e: &mut Enc<'_>) {
        match self {
            Op::Begin => e.u8(0),
            Op::End => e.u8(1),
            Op::Reset => e.u8(2),
            Op::Restart => e.u8(3),
            Op::Cancel => e.u8(4),
            Op::SetOption { option, value } => {
                e.u8(5);
                e.i32(*option);
                e.opt(value.as_deref());
            }
            Op::SetReadVersion(v) => {
                e.u8(6);
                e.i64(*v);
            }
            Op::GetReadVersion => e.u8(7),
            Op::Get { key, snapshot } => {
                e.u8(8);
                e.bytes(key);
                e.bool(*snapshot);
            }
            Op::GetKey { selector, snapshot } => {
                e.u8(9);
                e.selector(selector);
                e.bool(*snapshot);
            }
            Op::GetRange { begin, end, params } => {
                e.u8(10);
                e.selector(begin);
                e.selector(end);
                e.i32(params.limit);
                e.i32(params.target_bytes);
                e.i32(params.mode);
                e.bool(params.snapshot);
                e.bool(params.reverse);
            }
            Op::Set { key, value } => {
                e.u8(11);
                e.bytes(key);
                e.bytes(value);
            }
            Op::Clear { key } => {
                e.u8(12);
                e.bytes(key);
            }
            Op::ClearRange { begin, end } => {
                e.u8(13);
                e.bytes(begin);
                e.bytes(end);
            }
            Op::Atomic { key, param, op } => {
                e.u8(14);
                e.bytes(key);
                e.bytes(param);
                e.i32(*op);
            }
            Op::AddConflictRange { begin, end, write } => {
                e.u8(15);
                e.bytes(begin);
                e.bytes(end);
                e.bool(*write);
            }
            Op::Watch { key } => {
                e.u8(16);
                e.bytes(key);
            }
            Op::Commit => e.u8(17),
            Op::ApproximateSize => e.u8(18),
            Op::EstimatedRangeSize { begin, end } => {
                e.u8(19);
                e.bytes(begin);
                e.bytes(end);
            }
        }
    }
}

impl Request {
    /// Appends this request as one frame to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        frame(out, |e| match self {
            Request::Hello { protocol } => {
                e.u8(0);
                e.u32(*protocol);
            }
            Request::Txn { txn, req, op } => {
                e.u8(1);
                e.u64(*txn);
                e.u64(*req);
                op.encode(e);
            }
            Request::CancelWatch { req } => {
                e.u8(2);
                e.u64(*req);
            }
            Request::InjectFaults { faults } => {
                e.u8(3);
                e.u32(faults.len() as u32);
                for (c, applied) in faults {
                    e.i32(*c);
                    e.bool(*applied);
                }
            }
            Request::Stats { req } => {
                e.u8(4);
                e.u64(*req);
            }
            Request::Shutdown { req } => {
                e.u8(5);
                e.u64(*req);
            }
        });
    }
}

impl Response {
    /// Appends this response as one frame to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        frame(out, |e| {
            e.u64(self.req);
            match &self.result {
                Err(c) => {
                    e.u8(0);
                    e.i32(*c);
                }
                Ok(Payload::None) => e.u8(1),
                Ok(Payload::Int64(v)) => {
                    e.u8(2);
                    e.i64(*v);
                }
                Ok(Payload::Value(v)) => {
                    e.u8(3);
                    e.opt(v.as_deref());
                }
                Ok(Payload::Key(k)) => {
                    e.u8(4);
                    e.bytes(k);
                }
                Ok(Payload::Rows { rows, more }) => {
                    e.u8(5);
                    e.u32(rows.len() as u32);
                    for (k, v) in rows {
                        e.bytes(k);
                        e.bytes(v);
                    }
                    e.bool(*more);
                }
                Ok(Payload::Committed(c)) => {
                    e.u8(6);
                    e.i64(c.version);
                    e.opt(c.stamp.as_ref().map(|s| s.as_slice()));
                }
                Ok(Payload::Text(t)) => {
                    e.u8(7);
                    e.bytes(t.as_bytes());
                }
            }
        });
    }
}

// ---------------------------------------------------------------- decode --

/// Reads the fields of one frame body.
struct Dec<'a>(&'a [u8]);

impl<'a> Dec<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtoError> {
        if self.0.len() < n {
            return Err(ProtoError::Truncated);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N], ProtoError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, ProtoError> {
        Ok(self.take(1)?[0])
    }
    fn bool(&mut self) -> Result<bool, ProtoError> {
        Ok(self.u8()? != 0)
    }
    fn u32(&mut self) -> Result<u32, ProtoError> {
        self.arr().map(u32::from_le_bytes)
    }
    fn i32(&mut self) -> Result<i32, ProtoError> {
        self.arr().map(i32::from_le_bytes)
    }
    fn u64(&mut self) -> Result<u64, ProtoError> {
        self.arr().map(u64::from_le_bytes)
    }
    fn i64(&mut self) -> Result<i64, ProtoError> {
        self.arr().map(i64::from_le_bytes)
    }
    fn bytes(&mut self) -> Result<Vec<u8>, ProtoError> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    fn opt(&mut self) -> Result<Option<Vec<u8>>, ProtoError> {
        Ok(match self.u8()? {
            0 => None,
            _ => Some(self.bytes()?),
        })
    }
    fn selector(&mut self) -> Result<Selector, ProtoError> {
        Ok(Selector {
            key: self.bytes()?,
            or_equal: self.bool()?,
            offset: self.i32()?,
        })
    }
    fn end(self) -> Result<(), ProtoError> {
        match self.0.len() {
            0 => Ok(()),
            n => Err(ProtoError::Trailing(n)),
        }
    }

    fn op(&mut self) -> Result<Op, ProtoError> {
        Ok(match self.u8()? {
            0 => Op::Begin,
            1 => Op::End,
            2 => Op::Reset,
            3 => Op::Restart,
            4 => Op::Cancel,
            5 => Op::SetOption {
                option: self.i32()?,
                value: self.opt()?,
            },
            6 => Op::SetReadVersion(self.i64()?),
            7 => Op::GetReadVersion,
            8 => Op::Get {
                key: self.bytes()?,
                snapshot: self.bool()?,
            },
            9 => Op::GetKey {
                selector: self.selector()?,
                snapshot: self.bool()?,
            },
            10 => Op::GetRange {
                begin: self.selector()?,
                end: self.selector()?,
                params: RangeParams {
                    limit: self.i32()?,
                    target_bytes: self.i32()?,
                    mode: self.i32()?,
                    snapshot: self.bool()?,
                    reverse: self.bool()?,
                },
            },
            11 => Op::Set {
                key: self.bytes()?,
                value: self.bytes()?,
            },
            12 => Op::Clear { key: self.bytes()? },
            13 => Op::ClearRange {
                begin: self.bytes()?,
                end: self.bytes()?,
            },
            14 => Op::Atomic {
                key: self.bytes()?,
                param: self.bytes()?,
                op: self.i32()?,
            },
            15 => Op::AddConflictRange {
                begin: self.bytes()?,
                end: self.bytes()?,
                write: self.bool()?,
            },
            16 => Op::Watch { key: self.bytes()? },
            17 => Op::Commit,
            18 => Op::ApproximateSize,
            19 => Op::EstimatedRangeSize {
                begin: self.bytes()?,
                end: self.bytes()?,
            },
            t => return Err(ProtoError::UnknownTag(t)),
        })
    }
}

/// The body of the first whole frame in `buf` and the bytes it used;
/// `Ok(None)` when `buf` does not hold a whole frame yet.
pub fn decode_frame(buf: &[u8]) -> Result<Option<(&[u8], usize)>, ProtoError> {
    let Some(len) = buf.get(..4) else {
        return Ok(None);
    };
    let mut n = [0u8; 4];
    n.copy_from_slice(len);
    let n = u32::from_le_bytes(n) as usize;
    if n > MAX_FRAME {
        return Err(ProtoError::TooLarge(n));
    }
    Ok(buf.get(4..4 + n).map(|body| (body, 4 + n)))
}

/// Reads one frame body from a blocking reader; `Ok(None)` at a clean end
/// of stream (between frames).
pub fn read_frame(r: &mut impl Read) -> Result<Option<Vec<u8>>, ProtoError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let n = u32::from_le_bytes(len) as usize;
    if n > MAX_FRAME {
        return Err(ProtoError::TooLarge(n));
    }
    let mut body = vec![0u8; n];
    r.read_exact(&mut body)?;
    Ok(Some(body))
}

impl Request {
    /// Decodes one frame body.
    pub fn decode(body: &[u8]) -> Result<Request, ProtoError> {
        let mut d = Dec(body);
        let r = match d.u8()? {
            0 => Request::Hello { protocol: d.u32()? },
            1 => Request::Txn {
                txn: d.u64()?,
                req: d.u64()?,
                op: d.op()?,
            },
            2 => Request::CancelWatch { req: d.u64()? },
            3 => {
                let n = d.u32()? as usize;
                let mut faults = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    faults.push((d.i32()?, d.bool()?));
                }
                Request::InjectFaults { faults }
            }
            4 => Request::Stats { req: d.u64()? },
            5 => Request::Shutdown { req: d.u64()? },
            t => return Err(ProtoError::UnknownTag(t)),
        };
        d.end()?;
        Ok(r)
    }
}

impl Response {
    /// Decodes one frame body.
    pub fn decode(body: &[u8]) -> Result<Response, ProtoError> {
        let mut d = Dec(body);
        let req = d.u64()?;
        let result = match d.u8()? {
            0 => Err(d.i32()?),
            1 => Ok(Payload::None),
            2 => Ok(Payload::Int64(d.i64()?)),
            3 => Ok(Payload::Value(d.opt()?)),
            4 => Ok(Payload::Key(d.bytes()?)),
            5 => {
                let n = d.u32()? as usize;
                let mut rows = Vec::with_capacity(n.min(1 << 16));
                for _ in 0..n {
                    rows.push((d.bytes()?, d.bytes()?));
                }
                Ok(Payload::Rows {
                    rows,
                    more: d.bool()?,
                })
            }
            6 => {
                let version = d.i64()?;
                let stamp = match d.opt()? {
                    None => None,
                    Some(s) => {
                        Some(Stamp::try_from(s.as_slice()).map_err(|_| ProtoError::Truncated)?)
                    }
                };
                Ok(Payload::Committed(Committed { version, stamp }))
            }
            7 => Ok(Payload::Text(
                String::from_utf8(d.bytes()?).map_err(|_| ProtoError::NotUtf8)?,
            )),
            t => return Err(ProtoError::UnknownTag(t)),
        };
        d.end()?;
        Ok(Response { req, result })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(k: &[u8]) -> Selector {
        Selector {
            key: k.to_vec(),
            or_equal: true,
            offset: -3,
        }
    }

    #[test]
    fn every_request_and_response_round_trips_through_its_frame() {
        let ops = vec![
            Op::Begin,
            Op::End,
            Op::Reset,
            Op::Restart,
            Op::Cancel,
            Op::SetOption {
                option: 500,
                value: Some(5i64.to_le_bytes().to_vec()),
            },
            Op::SetOption {
                option: 11,
                value: None,
            },
            Op::SetReadVersion(-7),
            Op::GetReadVersion,
            Op::Get {
                key: b"k".to_vec(),
                snapshot: true,
            },
            Op::GetKey {
                selector: sel(b"a"),
                snapshot: false,
            },
            Op::GetRange {
                begin: sel(b"a"),
                end: sel(b"\xff"),
                params: RangeParams {
                    limit: 3,
                    target_bytes: 9,
                    mode: -2,
                    snapshot: true,
                    reverse: true,
                },
            },
            Op::Set {
                key: vec![],
                value: vec![0; 300],
            },
            Op::Clear { key: b"x".to_vec() },
            Op::ClearRange {
                begin: b"a".to_vec(),
                end: b"b".to_vec(),
            },
            Op::Atomic {
                key: b"n".to_vec(),
                param: vec![1, 0, 0, 0],
                op: 14,
            },
            Op::AddConflictRange {
                begin: b"a".to_vec(),
                end: b"b".to_vec(),
                write: true,
            },
            Op::Watch { key: b"w".to_vec() },
            Op::Commit,
            Op::ApproximateSize,
            Op::EstimatedRangeSize {
                begin: b"a".to_vec(),
                end: b"z".to_vec(),
            },
        ];
        let mut reqs: Vec<Request> = ops
            .into_iter()
            .enumerate()
            .map(|(i, op)| Request::Txn {
                txn: 7,
                req: i as u64,
                op,
            })
            .collect();
        reqs.extend([
            Request::Hello { protocol: 1 },
            Request::CancelWatch { req: 9 },
            Request::InjectFaults {
                faults: vec![(1021, true), (1020, false)],
            },
            Request::Stats { req: 1 },
            Request::Shutdown { req: 2 },
        ]);
        let mut buf = Vec::new();
        for r in &reqs {
            r.encode(&mut buf);
        }
        let mut at = 0;
        for r in &reqs {
            let (body, used) = decode_frame(&buf[at..]).expect("frame").expect("whole");
            assert_eq!(&Request::decode(body).expect("decodes"), r);
            at += used;
        }
        assert_eq!(at, buf.len());

        let payloads = vec![
            Err(1020),
            Ok(Payload::None),
            Ok(Payload::Int64(i64::MIN)),
            Ok(Payload::Value(None)),
            Ok(Payload::Value(Some(b"v".to_vec()))),
            Ok(Payload::Key(b"k".to_vec())),
            Ok(Payload::Rows {
                rows: vec![(b"a".to_vec(), b"1".to_vec()), (vec![], vec![])],
                more: true,
            }),
            Ok(Payload::Committed(Committed {
                version: 42,
                stamp: Some(crate::kv::stamp(42, 1)),
            })),
            Ok(Payload::Committed(Committed {
                version: -1,
                stamp: None,
            })),
            Ok(Payload::Text("{}".into())),
        ];
        for (i, result) in payloads.into_iter().enumerate() {
            let r = Response {
                req: i as u64,
                result,
            };
            let mut buf = Vec::new();
            r.encode(&mut buf);
            let (body, _) = decode_frame(&buf).expect("frame").expect("whole");
            assert_eq!(Response::decode(body).expect("decodes"), r);
        }
    }

    #[test]
    fn a_partial_frame_is_not_an_error_and_garbage_is() {
        let mut buf = Vec::new();
        Request::Stats { req: 1 }.encode(&mut buf);
        for cut in 0..buf.len() {
            assert!(decode_frame(&buf[..cut]).expect("no error").is_none());
        }
        assert!(matches!(
            Request::decode(&[99]),
            Err(ProtoError::UnknownTag(99))
        ));
        assert!(matches!(
            Request::decode(&[4, 1, 2]),
            Err(ProtoError::Truncated)
        ));
        assert!(matches!(
            decode_frame(&u32::MAX.to_le_bytes()),
            Err(ProtoError::TooLarge(_))
        ));
    }
}
