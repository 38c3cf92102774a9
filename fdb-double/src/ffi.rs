//! The C ABI: the functions of `fdb_c.h` (API 730) that the `foundationdb`
//! crate links to, over [`crate::kv`]. Every future is created ready (the
//! operation runs inside the call), so `fdb_future_set_callback` calls the
//! callback at once on the calling thread, as libfdb_c does for a ready
//! future.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

use crate::kv::{self, code, Database, RangeParams, Selector, Transaction};

type FdbError = c_int;
type FdbBool = c_int;
type Callback = Option<unsafe extern "C" fn(*mut Future, *mut c_void)>;

/// `FDBKey`, `#pragma pack(4)`.
#[repr(C, packed(4))]
pub struct FdbKey {
    key: *const u8,
    key_length: c_int,
}

/// `FDBKeyValue`, `#pragma pack(4)`.
#[repr(C, packed(4))]
pub struct FdbKeyValue {
    key: *const u8,
    key_length: c_int,
    value: *const u8,
    value_length: c_int,
}

enum Value {
    None,
    Int64(i64),
    Bytes(Option<Vec<u8>>),
    KeyValues {
        rows: Vec<(Vec<u8>, Vec<u8>)>,
        ffi: Vec<FdbKeyValue>,
        more: bool,
    },
    Keys {
        keys: Vec<Vec<u8>>,
        ffi: Vec<FdbKey>,
    },
    Strings {
        _owned: Vec<CString>,
        ptrs: Vec<*const c_char>,
    },
}

/// `FDBFuture`: always ready.
pub struct Future {
    error: FdbError,
    value: Value,
}

fn ready(r: Result<Value, i32>) -> *mut Future {
    let f = match r {
        Ok(value) => Future { error: 0, value },
        Err(error) => Future {
            error,
            value: Value::None,
        },
    };
    Box::into_raw(Box::new(f))
}

/// `FDBDatabase`.
pub struct Db(Arc<Database>);
/// `FDBTransaction`.
pub struct Trx(Mutex<Transaction>);

fn trx<'a>(t: *mut Trx) -> MutexGuard<'a, Transaction> {
    // SAFETY: the caller passes a pointer from fdb_database_create_transaction
    // that it has not destroyed (the C contract).
    let t = unsafe { &*t };
    t.0.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A byte slice from C (null with length 0 is the empty slice).
fn bytes<'a>(p: *const u8, len: c_int) -> &'a [u8] {
    if p.is_null() || len <= 0 {
        return &[];
    }
    // SAFETY: the C contract: `p` points at `len` readable bytes for the call.
    unsafe { std::slice::from_raw_parts(p, len as usize) }
}

fn databases() -> &'static Mutex<HashMap<String, Arc<Database>>> {
    static DBS: OnceLock<Mutex<HashMap<String, Arc<Database>>>> = OnceLock::new();
    DBS.get_or_init(Default::default)
}

const DEFAULT_CLUSTER_FILE: &str = "/etc/foundationdb/fdb.cluster";

fn database_for(path: &str) -> Arc<Database> {
    let mut dbs = databases()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    dbs.entry(path.to_string()).or_default().clone()
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
        1515 => c"Cluster file not found",
        2004 => c"Key outside legal range",
        2005 => c"Range begin key larger than end key",
        2006 => c"Option set with an invalid value",
        2008 => c"Action not possible before the network is configured",
        2009 => c"Network can be configured only once",
        2101 => c"Transaction exceeds byte limit",
        2102 => c"Key length exceeds limit",
        2103 => c"Value length exceeds limit",
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

#[derive(Default)]
struct Net {
    api_version: Option<c_int>,
    setup: bool,
    stopped: bool,
}

fn net() -> &'static (Mutex<Net>, Condvar) {
    static NET: OnceLock<(Mutex<Net>, Condvar)> = OnceLock::new();
    NET.get_or_init(Default::default)
}

fn net_lock() -> MutexGuard<'static, Net> {
    net()
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

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

#[no_mangle]
pub extern "C" fn fdb_select_api_version_impl(runtime: c_int, header: c_int) -> FdbError {
    if runtime > MAX_API_VERSION || header > MAX_API_VERSION || runtime < 1 {
        return code::API_VERSION_NOT_SUPPORTED;
    }
    net_lock().api_version = Some(runtime);
    0
}

#[no_mangle]
pub extern "C" fn fdb_network_set_option(_o: c_int, _v: *const u8, _l: c_int) -> FdbError {
    0
}

#[no_mangle]
pub extern "C" fn fdb_setup_network() -> FdbError {
    let mut n = net_lock();
    if n.setup {
        return code::NETWORK_ALREADY_SETUP;
    }
    n.setup = true;
    0
}

/// Blocks until `fdb_stop_network` (the double has no network work to do).
#[no_mangle]
pub extern "C" fn fdb_run_network() -> FdbError {
    let (lock, cvar) = net();
    let mut n = lock
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !n.setup {
        return code::NETWORK_NOT_SETUP;
    }
    while !n.stopped {
        n = cvar
            .wait(n)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
    }
    0
}

#[no_mangle]
pub extern "C" fn fdb_stop_network() -> FdbError {
    let mut n = net_lock();
    if !n.setup {
        return code::NETWORK_NOT_SETUP;
    }
    n.stopped = true;
    net().1.notify_all();
    0
}

#[no_mangle]
pub extern "C" fn fdb_add_network_thread_completion_hook(
    _hook: Option<unsafe extern "C" fn(*mut c_void)>,
    _param: *mut c_void,
) -> FdbError {
    0
}

// -------------------------------------------------------------- database --

/// Opens the in-memory database of `cluster_file_path` (one per path and
/// process; the default path when null). The file must exist, as for
/// libfdb_c; its content is not read.
///
/// # Safety
/// `path` is null or a NUL-terminated string; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn fdb_create_database(path: *const c_char, out: *mut *mut Db) -> FdbError {
    let path = if path.is_null() {
        DEFAULT_CLUSTER_FILE.to_string()
    } else {
        // SAFETY: NUL-terminated per the C contract.
        unsafe { CStr::from_ptr(path) }
            .to_string_lossy()
            .into_owned()
    };
    if !std::path::Path::new(&path).exists() {
        return code::NO_CLUSTER_FILE_FOUND;
    }
    let db = Box::new(Db(database_for(&path)));
    // SAFETY: `out` is writable per the C contract.
    unsafe { *out = Box::into_raw(db) };
    0
}

/// # Safety
/// `d` came from `fdb_create_database` and is not used after.
#[no_mangle]
pub unsafe extern "C" fn fdb_database_destroy(d: *mut Db) {
    if !d.is_null() {
        // SAFETY: created by Box::into_raw in fdb_create_database.
        drop(unsafe { Box::from_raw(d) });
    }
}

#[no_mangle]
pub extern "C" fn fdb_database_set_option(
    _d: *mut Db,
    _o: c_int,
    _v: *const u8,
    _l: c_int,
) -> FdbError {
    0
}

/// # Safety
/// `d` is a live database; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn fdb_database_create_transaction(
    d: *mut Db,
    out: *mut *mut Trx,
) -> FdbError {
    // SAFETY: live database per the C contract.
    let db = unsafe { &*d }.0.clone();
    let t = Box::new(Trx(Mutex::new(Transaction::new(db))));
    // SAFETY: writable per the C contract.
    unsafe { *out = Box::into_raw(t) };
    0
}

#[no_mangle]
pub extern "C" fn fdb_database_get_main_thread_busyness(_d: *mut Db) -> f64 {
    0.0
}

#[no_mangle]
pub extern "C" fn fdb_database_get_client_status(_d: *mut Db) -> *mut Future {
    ready(Ok(Value::Bytes(Some(
        br#"{"Healthy":true,"TestDouble":true}"#.to_vec(),
    ))))
}

#[no_mangle]
pub extern "C" fn fdb_database_open_tenant(
    _d: *mut Db,
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
/// of `path` fail with `codes[i]`; when `applied[i]` is non-zero the commit
/// is applied first (a `commit_unknown_result` that did commit). Tests find
/// it with `dlsym`, so they skip it against a real libfdb_c.
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
    // SAFETY: per this function's contract.
    let path = unsafe { CStr::from_ptr(path) }
        .to_string_lossy()
        .into_owned();
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
    database_for(&path).inject_commit_errors(&faults);
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
    let value = (!v.is_null()).then(|| bytes(v, l));
    match trx(t).set_option(o, value) {
        Ok(()) => 0,
        Err(e) => e,
    }
}

#[no_mangle]
pub extern "C" fn fdb_transaction_set_read_version(t: *mut Trx, version: i64) {
    trx(t).set_read_version(version);
}

#[no_mangle]
pub extern "C" fn fdb_transaction_get_read_version(t: *mut Trx) -> *mut Future {
    ready(trx(t).get_read_version().map(Value::Int64))
}

#[no_mangle]
pub extern "C" fn fdb_transaction_get(
    t: *mut Trx,
    k: *const u8,
    l: c_int,
    snapshot: FdbBool,
) -> *mut Future {
    ready(trx(t).get(bytes(k, l), snapshot != 0).map(Value::Bytes))
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
    let sel = Selector {
        key: bytes(k, l).to_vec(),
        or_equal: or_equal != 0,
        offset,
    };
    ready(
        trx(t)
            .get_key(&sel, snapshot != 0)
            .map(|k| Value::Bytes(Some(k))),
    )
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
    let p = RangeParams {
        limit,
        target_bytes,
        mode,
        snapshot: snapshot != 0,
        reverse: reverse != 0,
    };
    ready(trx(t).get_range(&begin, &end, p).map(|r| {
        let ffi = r
            .rows
            .iter()
            .map(|(k, v)| FdbKeyValue {
                key: k.as_ptr(),
                key_length: k.len() as c_int,
                value: v.as_ptr(),
                value_length: v.len() as c_int,
            })
            .collect();
        Value::KeyValues {
            rows: r.rows,
            ffi,
            more: r.more,
        }
    }))
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
    trx(t).set(bytes(k, kl), bytes(v, vl));
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
    trx(t).atomic_op(bytes(k, kl), bytes(p, pl), op);
}

#[no_mangle]
pub extern "C" fn fdb_transaction_clear(t: *mut Trx, k: *const u8, kl: c_int) {
    trx(t).clear(bytes(k, kl));
}

#[no_mangle]
pub extern "C" fn fdb_transaction_clear_range(
    t: *mut Trx,
    b: *const u8,
    bl: c_int,
    e: *const u8,
    el: c_int,
) {
    trx(t).clear_range(bytes(b, bl), bytes(e, el));
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
    match trx(t).add_conflict_range(bytes(b, bl), bytes(e, el), kind == 1) {
        Ok(()) => 0,
        Err(e) => e,
    }
}

#[no_mangle]
pub extern "C" fn fdb_transaction_watch(_t: *mut Trx, _k: *const u8, _l: c_int) -> *mut Future {
    ready(Err(code::INTERNAL_ERROR))
}

#[no_mangle]
pub extern "C" fn fdb_transaction_commit(t: *mut Trx) -> *mut Future {
    ready(trx(t).commit().map(|()| Value::None))
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
    ready(Ok(Value::Int64(trx(t).approximate_size() as i64)))
}

#[no_mangle]
pub extern "C" fn fdb_transaction_get_versionstamp(_t: *mut Trx) -> *mut Future {
    ready(Err(code::INTERNAL_ERROR))
}

#[no_mangle]
pub extern "C" fn fdb_transaction_on_error(t: *mut Trx, err: FdbError) -> *mut Future {
    ready(trx(t).on_error(err).map(|()| Value::None))
}

#[no_mangle]
pub extern "C" fn fdb_transaction_get_estimated_range_size_bytes(
    t: *mut Trx,
    b: *const u8,
    bl: c_int,
    e: *const u8,
    el: c_int,
) -> *mut Future {
    ready(
        trx(t)
            .estimated_range_size(bytes(b, bl), bytes(e, el))
            .map(Value::Int64),
    )
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
    let keys = vec![bytes(b, bl).to_vec(), bytes(e, el).to_vec()];
    let ffi = keys
        .iter()
        .map(|k| FdbKey {
            key: k.as_ptr(),
            key_length: k.len() as c_int,
        })
        .collect();
    ready(Ok(Value::Keys { keys, ffi }))
}

#[no_mangle]
pub extern "C" fn fdb_transaction_get_addresses_for_key(
    _t: *mut Trx,
    _k: *const u8,
    _l: c_int,
) -> *mut Future {
    let owned = vec![CString::from(c"127.0.0.1:4500")];
    let ptrs = owned.iter().map(|s| s.as_ptr()).collect();
    ready(Ok(Value::Strings {
        _owned: owned,
        ptrs,
    }))
}

// --------------------------------------------------------------- futures --

fn fut<'a>(f: *mut Future) -> &'a Future {
    // SAFETY: a live future from this library (the C contract).
    unsafe { &*f }
}

/// # Safety
/// `f` came from this library and is not used after.
#[no_mangle]
pub unsafe extern "C" fn fdb_future_destroy(f: *mut Future) {
    if !f.is_null() {
        // SAFETY: created by Box::into_raw in `ready`.
        drop(unsafe { Box::from_raw(f) });
    }
}

#[no_mangle]
pub extern "C" fn fdb_future_cancel(_f: *mut Future) {}

#[no_mangle]
pub extern "C" fn fdb_future_release_memory(_f: *mut Future) {}

#[no_mangle]
pub extern "C" fn fdb_future_is_ready(_f: *mut Future) -> FdbBool {
    1
}

#[no_mangle]
pub extern "C" fn fdb_future_block_until_ready(_f: *mut Future) -> FdbError {
    0
}

/// # Safety
/// `cb` is callable with (f, param).
#[no_mangle]
pub unsafe extern "C" fn fdb_future_set_callback(
    f: *mut Future,
    cb: Callback,
    param: *mut c_void,
) -> FdbError {
    if let Some(cb) = cb {
        // SAFETY: the caller's callback, called once as libfdb_c does for a
        // ready future.
        unsafe { cb(f, param) };
    }
    0
}

#[no_mangle]
pub extern "C" fn fdb_future_get_error(f: *mut Future) -> FdbError {
    fut(f).error
}

/// Writes through `out` when the future holds no error; the pointers the
/// caller gets stay valid until the future is destroyed.
fn with_value(f: *mut Future, write: impl FnOnce(&Value) -> bool) -> FdbError {
    let f = fut(f);
    if f.error != 0 {
        return f.error;
    }
    if write(&f.value) {
        0
    } else {
        code::INTERNAL_ERROR
    }
}

/// # Safety
/// `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn fdb_future_get_int64(f: *mut Future, out: *mut i64) -> FdbError {
    with_value(f, |v| match v {
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
    with_value(f, |v| match v {
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
    with_value(f, |v| match v {
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
    with_value(f, |v| match v {
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
    with_value(f, |v| match v {
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
    with_value(f, |v| match v {
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
