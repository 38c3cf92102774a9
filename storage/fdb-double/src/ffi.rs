//! The C ABI: the functions of `fdb_c.h` (API 730) that the `foundationdb`
//! crate links to. Thin: pointers in, [`crate::handle`] calls, futures out.
//! Which mode a database runs in is decided here, by its cluster file
//! ([`crate::client::parse_cluster_file`]).

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::{Arc, Mutex, OnceLock};

use crate::client::{parse_cluster_file, Client, ClusterFile};
use crate::future::{Callback, FdbKey, FdbKeyValue, Future, Value};
use crate::handle::{Db, Trx};
use crate::kv::{self, code, Database, RangeParams, Selector};
use crate::net;
use crate::proto::{Op, Request};

type FdbError = c_int;
type FdbBool = c_int;

fn out(f: Arc<Future>) -> *mut Future {
    Future::into_raw(f)
}

fn ready(r: Result<Value, i32>) -> *mut Future {
    out(Future::ready(r))
}

fn trx<'a>(t: *mut Trx) -> &'a Trx {
    // SAFETY: the caller passes a pointer from fdb_database_create_transaction
    // that it has not destroyed (the C contract).
    unsafe { &*t }
}

/// A byte slice from C (null with length 0 is the empty slice).
fn bytes<'a>(p: *const u8, len: c_int) -> &'a [u8] {
    if p.is_null() || len <= 0 {
        return &[];
    }
    // SAFETY: the C contract: `p` points at `len` readable bytes for the call.
    unsafe { std::slice::from_raw_parts(p, len as usize) }
}

/// The in-process database of a cluster-file path (one per path and
/// process).
fn database_for(path: &str) -> Arc<Database> {
    static DBS: OnceLock<Mutex<HashMap<String, Arc<Database>>>> = OnceLock::new();
    let mut dbs = DBS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    dbs.entry(path.to_string()).or_default().clone()
}

const DEFAULT_CLUSTER_FILE: &str = "/etc/foundationdb/fdb.cluster";

/// A cluster file's path and mode: `path`, else `FDB_CLUSTER_FILE`, else
/// the default path, as libfdb_c. The file must exist (1515).
fn cluster_file(path: *const c_char) -> Result<(String, ClusterFile), FdbError> {
    let path = if path.is_null() {
        std::env::var("FDB_CLUSTER_FILE").unwrap_or_else(|_| DEFAULT_CLUSTER_FILE.to_string())
    } else {
        // SAFETY: NUL-terminated per the C contract.
        unsafe { CStr::from_ptr(path) }
            .to_string_lossy()
            .into_owned()
    };
    let text = std::fs::read_to_string(&path).map_err(|_| code::NO_CLUSTER_FILE_FOUND)?;
    Ok((path, parse_cluster_file(&text)?))
}

// ---------------------------------------------------------------- errors --

#[no_mangle]
pub extern "C" fn fdb_get_error(code: FdbError) -> *const c_char {
    let s: &'static CStr = match code {
        0 => c"Success",
        1007 => c"Transaction is too old to perform reads or be committed",
        1009 => c"Request for future version",
        1020 => c"Transaction not committed due to conflict with another transaction",
        1021 => c"Transaction may or may not have committed",
        1025 => c"Operation aborted because the transaction was cancelled",
        1031 => c"Operation aborted because the transaction timed out",
        1032 => c"Too many watches currently set",
        1036 => c"Read or wrote an unreadable key",
        1101 => c"Asynchronous operation cancelled",
        1515 => c"Cluster file not found",
        2000 => c"Invalid API call",
        2004 => c"Key outside legal range",
        2005 => c"Range begin key larger than end key",
        2006 => c"Option set with an invalid value",
        2008 => c"Action not possible before the network is configured",
        2009 => c"Network can be configured only once",
        2015 => c"Future not ready",
        2021 => c"Transaction is read-only and therefore does not have a commit version",
        2101 => c"Transaction exceeds byte limit",
        2102 => c"Key length exceeds limit",
        2103 => c"Value length exceeds limit",
        2104 => c"Connection string invalid",
        2203 => c"API version not supported",
        4100 => c"Not implemented by the libfdb_c test double",
        _ => c"Unknown error (libfdb_c test double)",
    };
    s.as_ptr()
}

#[no_mangle]
pub extern "C" fn fdb_error_predicate(predicate: c_int, code: FdbError) -> FdbBool {
    let r = match predicate {
        50000 => kv::is_retryable(code),
        50001 => kv::maybe_committed(code),
        50002 => kv::is_retryable(code) && !kv::maybe_committed(code),
        _ => false,
    };
    FdbBool::from(r)
}

// --------------------------------------------------------------- network --

/// The highest API version the double speaks (the crate's `fdb-7_3`).
const MAX_API_VERSION: c_int = 730;

#[no_mangle]
pub extern "C" fn fdb_get_max_api_version() -> c_int {
    MAX_API_VERSION
}

#[no_mangle]
pub extern "C" fn fdb_get_client_version() -> *const c_char {
    c"7.3.0-test-double".as_ptr()
}

/// Versionstamp offsets are read as API ≥ 520 encodes them (4 bytes), so
/// older versions are refused.
#[no_mangle]
pub extern "C" fn fdb_select_api_version_impl(runtime: c_int, header: c_int) -> FdbError {
    if runtime > MAX_API_VERSION || header > MAX_API_VERSION || runtime < 520 {
        return code::API_VERSION_NOT_SUPPORTED;
    }
    net::select_api_version(runtime);
    0
}

#[no_mangle]
pub extern "C" fn fdb_network_set_option(_o: c_int, _v: *const u8, _l: c_int) -> FdbError {
    0
}

#[no_mangle]
pub extern "C" fn fdb_setup_network() -> FdbError {
    net::setup()
}

/// Runs the network thread's loop until `fdb_stop_network`.
#[no_mangle]
pub extern "C" fn fdb_run_network() -> FdbError {
    net::run()
}

#[no_mangle]
pub extern "C" fn fdb_stop_network() -> FdbError {
    net::stop()
}

#[no_mangle]
pub extern "C" fn fdb_add_network_thread_completion_hook(
    _hook: Option<unsafe extern "C" fn(*mut c_void)>,
    _param: *mut c_void,
) -> FdbError {
    0
}

// -------------------------------------------------------------- database --

/// Opens the database of a cluster file: the in-process database of its
/// path when it names no coordinator, else the double server it names (the
/// connection opens with the first transaction, as libfdb_c's does).
///
/// # Safety
/// `path` is null or a NUL-terminated string; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn fdb_create_database(
    path: *const c_char,
    out: *mut *mut Arc<Db>,
) -> FdbError {
    let db = match cluster_file(path) {
        Ok((path, ClusterFile::InProcess)) => Db::local(database_for(&path)),
        Ok((_, ClusterFile::Server(addr))) => Db::remote(Client::of(addr)),
        Err(e) => return e,
    };
    // SAFETY: `out` is writable per the C contract.
    unsafe { *out = Box::into_raw(Box::new(db)) };
    0
}

/// # Safety
/// `d` came from `fdb_create_database` and is not used after.
#[no_mangle]
pub unsafe extern "C" fn fdb_database_destroy(d: *mut Arc<Db>) {
    if !d.is_null() {
        // SAFETY: created by Box::into_raw in fdb_create_database.
        drop(unsafe { Box::from_raw(d) });
    }
}

/// # Safety
/// `d` is a live database.
#[no_mangle]
pub unsafe extern "C" fn fdb_database_set_option(
    d: *mut Arc<Db>,
    o: c_int,
    v: *const u8,
    l: c_int,
) -> FdbError {
    // SAFETY: live database per the C contract.
    let db = unsafe { &*d };
    db.set_option(o, (!v.is_null()).then(|| bytes(v, l)))
}

/// # Safety
/// `d` is a live database; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn fdb_database_create_transaction(
    d: *mut Arc<Db>,
    out: *mut *mut Trx,
) -> FdbError {
    // SAFETY: live database per the C contract.
    let db = unsafe { &*d };
    let t = Box::new(db.create_transaction());
    // SAFETY: writable per the C contract.
    unsafe { *out = Box::into_raw(t) };
    0
}

#[no_mangle]
pub extern "C" fn fdb_database_get_main_thread_busyness(_d: *mut Arc<Db>) -> f64 {
    0.0
}

#[no_mangle]
pub extern "C" fn fdb_database_get_client_status(_d: *mut Arc<Db>) -> *mut Future {
    ready(Ok(Value::Bytes(Some(
        br#"{"Healthy":true,"TestDouble":true}"#.to_vec(),
    ))))
}

#[no_mangle]
pub extern "C" fn fdb_database_open_tenant(
    _d: *mut Arc<Db>,
    _name: *const u8,
    _len: c_int,
    _out: *mut *mut c_void,
) -> FdbError {
    code::INTERNAL_ERROR
}

#[no_mangle]
pub extern "C" fn fdb_tenant_create_transaction(_t: *mut c_void, _out: *mut *mut Trx) -> FdbError {
    code::INTERNAL_ERROR
}

#[no_mangle]
pub extern "C" fn fdb_tenant_destroy(_t: *mut c_void) {}

/// Test hook (not in fdb_c.h): the next `n` writing commits on the database
/// of the cluster file `path` fail with `codes[i]`; when `applied[i]` is
/// non-zero the commit is applied first (a `commit_unknown_result` that did
/// commit). On a server's database the faults hit the next commits of any
/// client. Tests find it with `dlsym`, so they skip it against a real
/// libfdb_c.
///
/// # Safety
/// `path` is NUL-terminated; `codes` and `applied` hold `n` values.
#[no_mangle]
pub unsafe extern "C" fn fdb_double_inject_commit_errors(
    path: *const c_char,
    codes: *const c_int,
    applied: *const c_int,
    n: c_int,
) -> FdbError {
    if path.is_null() || n < 0 {
        return code::INVALID_OPTION_VALUE;
    }
    let n = n as usize;
    // SAFETY: per this function's contract.
    let (codes, applied) = unsafe {
        (
            std::slice::from_raw_parts(codes, n),
            std::slice::from_raw_parts(applied, n),
        )
    };
    let faults: Vec<(i32, bool)> = codes
        .iter()
        .zip(applied)
        .map(|(c, a)| (*c, *a != 0))
        .collect();
    match cluster_file(path) {
        Ok((path, ClusterFile::InProcess)) => database_for(&path).inject_commit_errors(&faults),
        Ok((_, ClusterFile::Server(addr))) => match Client::of(addr).connection() {
            Ok(c) => c.send(&Request::InjectFaults { faults }, true),
            Err(_) => return code::TRANSACTION_TOO_OLD,
        },
        Err(e) => return e,
    }
    0
}

// ----------------------------------------------------------- transaction --

/// # Safety
/// `t` came from `fdb_database_create_transaction` and is not used after.
#[no_mangle]
pub unsafe extern "C" fn fdb_transaction_destroy(t: *mut Trx) {
    if !t.is_null() {
        // SAFETY: created by Box::into_raw.
        drop(unsafe { Box::from_raw(t) });
    }
}

#[no_mangle]
pub extern "C" fn fdb_transaction_cancel(t: *mut Trx) {
    trx(t).cancel();
}

#[no_mangle]
pub extern "C" fn fdb_transaction_reset(t: *mut Trx) {
    trx(t).reset();
}

#[no_mangle]
pub extern "C" fn fdb_transaction_set_option(
    t: *mut Trx,
    o: c_int,
    v: *const u8,
    l: c_int,
) -> FdbError {
    trx(t).set_option(o, (!v.is_null()).then(|| bytes(v, l)))
}

#[no_mangle]
pub extern "C" fn fdb_transaction_set_read_version(t: *mut Trx, version: i64) {
    trx(t).set_read_version(version);
}

#[no_mangle]
pub extern "C" fn fdb_transaction_get_read_version(t: *mut Trx) -> *mut Future {
    out(trx(t).call(Op::GetReadVersion))
}

#[no_mangle]
pub extern "C" fn fdb_transaction_get(
    t: *mut Trx,
    k: *const u8,
    l: c_int,
    snapshot: FdbBool,
) -> *mut Future {
    out(trx(t).call(Op::Get {
        key: bytes(k, l).to_vec(),
        snapshot: snapshot != 0,
    }))
}

#[no_mangle]
pub extern "C" fn fdb_transaction_get_key(
    t: *mut Trx,
    k: *const u8,
    l: c_int,
    or_equal: FdbBool,
    offset: c_int,
    snapshot: FdbBool,
) -> *mut Future {
    out(trx(t).call(Op::GetKey {
        selector: Selector {
            key: bytes(k, l).to_vec(),
            or_equal: or_equal != 0,
            offset,
        },
        snapshot: snapshot != 0,
    }))
}

#[allow(clippy::too_many_arguments)]
#[no_mangle]
pub extern "C" fn fdb_transaction_get_range(
    t: *mut Trx,
    bk: *const u8,
    bl: c_int,
    b_or_equal: FdbBool,
    b_offset: c_int,
    ek: *const u8,
    el: c_int,
    e_or_equal: FdbBool,
    e_offset: c_int,
    limit: c_int,
    target_bytes: c_int,
    mode: c_int,
    _iteration: c_int,
    snapshot: FdbBool,
    reverse: FdbBool,
) -> *mut Future {
    let begin = Selector {
        key: bytes(bk, bl).to_vec(),
        or_equal: b_or_equal != 0,
        offset: b_offset,
    };
    let end = Selector {
        key: bytes(ek, el).to_vec(),
        or_equal: e_or_equal != 0,
        offset: e_offset,
    };
    let params = RangeParams {
        limit,
        target_bytes,
        mode,
        snapshot: snapshot != 0,
        reverse: reverse != 0,
    };
    out(trx(t).call(Op::GetRange { begin, end, params }))
}

#[allow(clippy::too_many_arguments)]
#[no_mangle]
pub extern "C" fn fdb_transaction_get_mapped_range(
    _t: *mut Trx,
    _bk: *const u8,
    _bl: c_int,
    _bo: FdbBool,
    _boff: c_int,
    _ek: *const u8,
    _el: c_int,
    _eo: FdbBool,
    _eoff: c_int,
    _mk: *const u8,
    _ml: c_int,
    _limit: c_int,
    _tb: c_int,
    _mode: c_int,
    _it: c_int,
    _snapshot: FdbBool,
    _reverse: FdbBool,
) -> *mut Future {
    ready(Err(code::INTERNAL_ERROR))
}

#[no_mangle]
pub extern "C" fn fdb_transaction_set(
    t: *mut Trx,
    k: *const u8,
    kl: c_int,
    v: *const u8,
    vl: c_int,
) {
    trx(t).mutate(Op::Set {
        key: bytes(k, kl).to_vec(),
        value: bytes(v, vl).to_vec(),
    });
}

#[no_mangle]
pub extern "C" fn fdb_transaction_atomic_op(
    t: *mut Trx,
    k: *const u8,
    kl: c_int,
    p: *const u8,
    pl: c_int,
    op: c_int,
) {
    trx(t).mutate(Op::Atomic {
        key: bytes(k, kl).to_vec(),
        param: bytes(p, pl).to_vec(),
        op,
    });
}

#[no_mangle]
pub extern "C" fn fdb_transaction_clear(t: *mut Trx, k: *const u8, kl: c_int) {
    trx(t).mutate(Op::Clear {
        key: bytes(k, kl).to_vec(),
    });
}

#[no_mangle]
pub extern "C" fn fdb_transaction_clear_range(
    t: *mut Trx,
    b: *const u8,
    bl: c_int,
    e: *const u8,
    el: c_int,
) {
    trx(t).mutate(Op::ClearRange {
        begin: bytes(b, bl).to_vec(),
        end: bytes(e, el).to_vec(),
    });
}

#[no_mangle]
pub extern "C" fn fdb_transaction_add_conflict_range(
    t: *mut Trx,
    b: *const u8,
    bl: c_int,
    e: *const u8,
    el: c_int,
    kind: c_int,
) -> FdbError {
    trx(t).add_conflict_range(bytes(b, bl), bytes(e, el), kind == 1)
}

/// A future that becomes ready when `key` changes after this transaction
/// commits (see `kv.rs`, *Watches*).
#[no_mangle]
pub extern "C" fn fdb_transaction_watch(t: *mut Trx, k: *const u8, l: c_int) -> *mut Future {
    out(trx(t).watch(bytes(k, l)))
}

#[no_mangle]
pub extern "C" fn fdb_transaction_commit(t: *mut Trx) -> *mut Future {
    out(trx(t).commit())
}

/// # Safety
/// `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn fdb_transaction_get_committed_version(
    t: *mut Trx,
    out: *mut i64,
) -> FdbError {
    let v = trx(t).committed_version();
    // SAFETY: writable per the C contract.
    unsafe { *out = v };
    0
}

#[no_mangle]
pub extern "C" fn fdb_transaction_get_approximate_size(t: *mut Trx) -> *mut Future {
    out(trx(t).call(Op::ApproximateSize))
}

/// Ready with the 10-byte versionstamp once the transaction commits.
#[no_mangle]
pub extern "C" fn fdb_transaction_get_versionstamp(t: *mut Trx) -> *mut Future {
    out(trx(t).versionstamp())
}

#[no_mangle]
pub extern "C" fn fdb_transaction_on_error(t: *mut Trx, err: FdbError) -> *mut Future {
    out(trx(t).on_error(err))
}

#[no_mangle]
pub extern "C" fn fdb_transaction_get_estimated_range_size_bytes(
    t: *mut Trx,
    b: *const u8,
    bl: c_int,
    e: *const u8,
    el: c_int,
) -> *mut Future {
    out(trx(t).call(Op::EstimatedRangeSize {
        begin: bytes(b, bl).to_vec(),
        end: bytes(e, el).to_vec(),
    }))
}

#[no_mangle]
pub extern "C" fn fdb_transaction_get_range_split_points(
    _t: *mut Trx,
    b: *const u8,
    bl: c_int,
    e: *const u8,
    el: c_int,
    _chunk: i64,
) -> *mut Future {
    ready(Ok(Value::keys(vec![
        bytes(b, bl).to_vec(),
        bytes(e, el).to_vec(),
    ])))
}

#[no_mangle]
pub extern "C" fn fdb_transaction_get_addresses_for_key(
    _t: *mut Trx,
    _k: *const u8,
    _l: c_int,
) -> *mut Future {
    ready(Ok(Value::strings(vec![CString::from(c"127.0.0.1:4500")])))
}

// --------------------------------------------------------------- futures --

fn fut<'a>(f: *mut Future) -> &'a Future {
    // SAFETY: a live future from this library (the C contract).
    unsafe { &*f }
}

/// Cancels the future if it is pending (its callback runs with 1101), then
/// releases the caller's reference.
///
/// # Safety
/// `f` came from this library and is not used after.
#[no_mangle]
pub unsafe extern "C" fn fdb_future_destroy(f: *mut Future) {
    if !f.is_null() {
        // SAFETY: created by Arc::into_raw in Future::into_raw; this is the
        // caller's one reference.
        let f = unsafe { Arc::from_raw(f.cast_const()) };
        f.cancel();
    }
}

#[no_mangle]
pub extern "C" fn fdb_future_cancel(f: *mut Future) {
    fut(f).cancel();
}

#[no_mangle]
pub extern "C" fn fdb_future_release_memory(_f: *mut Future) {}

#[no_mangle]
pub extern "C" fn fdb_future_is_ready(f: *mut Future) -> FdbBool {
    FdbBool::from(fut(f).is_ready())
}

#[no_mangle]
pub extern "C" fn fdb_future_block_until_ready(f: *mut Future) -> FdbError {
    fut(f).wait();
    0
}

/// # Safety
/// `cb` is callable with (f, param).
#[no_mangle]
pub unsafe extern "C" fn fdb_future_set_callback(
    f: *mut Future,
    cb: Option<Callback>,
    param: *mut c_void,
) -> FdbError {
    if let Some(cb) = cb {
        // SAFETY: the C contract: `cb` is callable once with (f, param).
        unsafe { fut(f).set_callback(cb, param) };
    }
    0
}

#[no_mangle]
pub extern "C" fn fdb_future_get_error(f: *mut Future) -> FdbError {
    fut(f).error()
}

/// # Safety
/// `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn fdb_future_get_int64(f: *mut Future, out: *mut i64) -> FdbError {
    fut(f).with_value(|v| match v {
        Value::Int64(n) => {
            // SAFETY: writable per the C contract.
            unsafe { *out = *n };
            true
        }
        _ => false,
    })
}

/// # Safety
/// `out_key` and `out_len` are writable.
#[no_mangle]
pub unsafe extern "C" fn fdb_future_get_key(
    f: *mut Future,
    out_key: *mut *const u8,
    out_len: *mut c_int,
) -> FdbError {
    fut(f).with_value(|v| match v {
        Value::Bytes(Some(k)) => {
            // SAFETY: writable per the C contract.
            unsafe {
                *out_key = k.as_ptr();
                *out_len = k.len() as c_int;
            }
            true
        }
        _ => false,
    })
}

/// # Safety
/// The out pointers are writable.
#[no_mangle]
pub unsafe extern "C" fn fdb_future_get_value(
    f: *mut Future,
    out_present: *mut FdbBool,
    out_value: *mut *const u8,
    out_len: *mut c_int,
) -> FdbError {
    fut(f).with_value(|v| match v {
        Value::Bytes(b) => {
            // SAFETY: writable per the C contract.
            unsafe {
                *out_present = FdbBool::from(b.is_some());
                *out_value = b.as_ref().map_or(std::ptr::null(), |b| b.as_ptr());
                *out_len = b.as_ref().map_or(0, |b| b.len() as c_int);
            }
            true
        }
        _ => false,
    })
}

/// # Safety
/// The out pointers are writable.
#[no_mangle]
pub unsafe extern "C" fn fdb_future_get_keyvalue_array(
    f: *mut Future,
    out_kv: *mut *const FdbKeyValue,
    out_count: *mut c_int,
    out_more: *mut FdbBool,
) -> FdbError {
    fut(f).with_value(|v| match v {
        Value::KeyValues { rows, ffi, more } => {
            // SAFETY: writable per the C contract.
            unsafe {
                *out_kv = ffi.as_ptr();
                *out_count = rows.len() as c_int;
                *out_more = FdbBool::from(*more);
            }
            true
        }
        _ => false,
    })
}

#[no_mangle]
pub extern "C" fn fdb_future_get_mappedkeyvalue_array(
    _f: *mut Future,
    _out: *mut *const c_void,
    _count: *mut c_int,
    _more: *mut FdbBool,
) -> FdbError {
    code::INTERNAL_ERROR
}

/// # Safety
/// The out pointers are writable.
#[no_mangle]
pub unsafe extern "C" fn fdb_future_get_key_array(
    f: *mut Future,
    out: *mut *const FdbKey,
    count: *mut c_int,
) -> FdbError {
    fut(f).with_value(|v| match v {
        Value::Keys { keys, ffi } => {
            // SAFETY: writable per the C contract.
            unsafe {
                *out = ffi.as_ptr();
                *count = keys.len() as c_int;
            }
            true
        }
        _ => false,
    })
}

/// # Safety
/// The out pointers are writable.
#[no_mangle]
pub unsafe extern "C" fn fdb_future_get_string_array(
    f: *mut Future,
    out: *mut *const *const c_char,
    count: *mut c_int,
) -> FdbError {
    fut(f).with_value(|v| match v {
        Value::Strings { ptrs, .. } => {
            // SAFETY: writable per the C contract.
            unsafe {
                *out = ptrs.as_ptr();
                *count = ptrs.len() as c_int;
            }
            true
        }
        _ => false,
    })
}
