//! `FDBFuture`: a result that is ready now or later, with at most one
//! callback.
//!
//! In-process mode creates most futures ready (the engine runs inside the
//! call). Server mode creates them pending; the connection's reader thread
//! hands the answer to the network thread ([`crate::net`]), which completes
//! the future and calls its callback there, as libfdb_c does. A callback set
//! on a future that is already ready runs at once on the calling thread
//! (libfdb_c does the same).
//!
//! The C side holds an `Arc` turned into a raw pointer: the network thread
//! and a connection may still hold clones when the caller destroys it.
//! Destroying a pending future cancels it (1101 `operation_cancelled`): its
//! callback runs with that error and its cancel hook (a watch's) runs.

use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::kv::code;

/// `FDBCallback`.
pub type Callback = unsafe extern "C" fn(*mut Future, *mut c_void);

/// `FDBKey`, `#pragma pack(4)`.
#[repr(C, packed(4))]
pub struct FdbKey {
    pub key: *const u8,
    pub key_length: c_int,
}

/// `FDBKeyValue`, `#pragma pack(4)`.
#[repr(C, packed(4))]
pub struct FdbKeyValue {
    pub key: *const u8,
    pub key_length: c_int,
    pub value: *const u8,
    pub value_length: c_int,
}

/// What a ready future holds. The C views (`ffi`, `ptrs`) point into the
/// owned vectors next to them, whose heap buffers never move.
pub enum Value {
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

// SAFETY: the raw pointers in `Value` point into heap buffers owned by the
// same `Value` (rows, keys, CStrings), which are never mutated or moved
// after construction; sending the whole value to another thread keeps them
// valid, and they are only read.
unsafe impl Send for Value {}

impl Value {
    /// Rows with their C view.
    pub fn key_values(rows: Vec<(Vec<u8>, Vec<u8>)>, more: bool) -> Value {
        let ffi = rows
            .iter()
            .map(|(k, v)| FdbKeyValue {
                key: k.as_ptr(),
                key_length: k.len() as c_int,
                value: v.as_ptr(),
                value_length: v.len() as c_int,
            })
            .collect();
        Value::KeyValues { rows, ffi, more }
    }

    /// Keys with their C view.
    pub fn keys(keys: Vec<Vec<u8>>) -> Value {
        let ffi = keys
            .iter()
            .map(|k| FdbKey {
                key: k.as_ptr(),
                key_length: k.len() as c_int,
            })
            .collect();
        Value::Keys { keys, ffi }
    }

    /// Strings with their C view.
    pub fn strings(owned: Vec<CString>) -> Value {
        let ptrs = owned.iter().map(|s| s.as_ptr()).collect();
        Value::Strings {
            _owned: owned,
            ptrs,
        }
    }
}

/// What runs once when a pending future is cancelled (a watch's removal).
pub type CancelHook = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct State {
    /// (error, value) once ready.
    outcome: Option<(c_int, Value)>,
    /// The callback and its parameter (as an address: it is the caller's).
    callback: Option<(Callback, usize)>,
    on_cancel: Option<CancelHook>,
    /// A counter to decrement once ready (a database's outstanding watches).
    release: Option<Arc<AtomicUsize>>,
}

/// `FDBFuture`.
#[derive(Default)]
pub struct Future {
    state: Mutex<State>,
    ready: Condvar,
}

impl Future {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn pending() -> Arc<Future> {
        Arc::new(Future::default())
    }

    pub fn ready(r: Result<Value, c_int>) -> Arc<Future> {
        let f = Future::pending();
        f.lock().outcome = Some(split(r));
        f
    }

    /// Hands the future to C.
    pub fn into_raw(f: Arc<Future>) -> *mut Future {
        Arc::into_raw(f).cast_mut()
    }

    /// Sets the result and runs the callback on this thread; `false` (and
    /// nothing happens) when the future was already ready.
    pub fn complete(&self, r: Result<Value, c_int>) -> bool {
        let mut st = self.lock();
        if st.outcome.is_some() {
            return false;
        }
        st.outcome = Some(split(r));
        let callback = st.callback.take();
        let on_cancel = st.on_cancel.take();
        let release = st.release.take();
        drop(st);
        self.ready.notify_all();
        drop(on_cancel);
        if let Some(c) = release {
            c.fetch_sub(1, Ordering::Relaxed);
        }
        if let Some((cb, param)) = callback {
            let me: *const Future = self;
            // SAFETY: the caller's callback with the parameter it gave, called
            // once, with this future (alive: `self` is borrowed).
            unsafe { cb(me.cast_mut(), param as *mut c_void) };
        }
        true
    }

    /// Cancels a pending future: its cancel hook runs, then it completes
    /// with 1101 `operation_cancelled`. A ready future is left alone.
    pub fn cancel(&self) {
        let hook = {
            let mut st = self.lock();
            if st.outcome.is_some() {
                return;
            }
            st.on_cancel.take()
        };
        if let Some(h) = hook {
            h();
        }
        self.complete(Err(code::OPERATION_CANCELLED));
    }

    /// Sets what runs if this future is cancelled while pending.
    pub fn on_cancel(&self, hook: CancelHook) {
        let mut st = self.lock();
        if st.outcome.is_none() {
            st.on_cancel = Some(hook);
        }
    }

    /// Decrements `counter` once this future is ready (now, if it is).
    pub fn release_when_ready(&self, counter: Arc<AtomicUsize>) {
        let mut st = self.lock();
        if st.outcome.is_some() {
            counter.fetch_sub(1, Ordering::Relaxed);
        } else {
            st.release = Some(counter);
        }
    }

    pub fn is_ready(&self) -> bool {
        self.lock().outcome.is_some()
    }

    pub fn wait(&self) {
        let mut st = self.lock();
        while st.outcome.is_none() {
            st = self
                .ready
                .wait(st)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// Calls `cb` now if ready, else when it becomes ready.
    ///
    /// # Safety
    /// `cb` must be safe to call once with this future and `param`, from
    /// this thread or the network thread.
    pub unsafe fn set_callback(&self, cb: Callback, param: *mut c_void) {
        let mut st = self.lock();
        if st.outcome.is_none() {
            st.callback = Some((cb, param as usize));
            return;
        }
        drop(st);
        let me: *const Future = self;
        // SAFETY: per this function's contract; called once, as libfdb_c
        // does for a ready future.
        unsafe { cb(me.cast_mut(), param) };
    }

    /// The error of a ready future (0 for success; 2015 when not ready).
    pub fn error(&self) -> c_int {
        match &self.lock().outcome {
            Some((e, _)) => *e,
            None => FUTURE_NOT_SET,
        }
    }

    /// Runs `read` on the value when the future is ready without error;
    /// the error otherwise (4100 when the value has another type).
    pub fn with_value(&self, read: impl FnOnce(&Value) -> bool) -> c_int {
        let st = self.lock();
        match &st.outcome {
            None => FUTURE_NOT_SET,
            Some((e, _)) if *e != 0 => *e,
            Some((_, v)) => {
                if read(v) {
                    0
                } else {
                    code::INTERNAL_ERROR
                }
            }
        }
    }
}

/// FDB's 2015 `future_not_set`.
const FUTURE_NOT_SET: c_int = 2015;

fn split(r: Result<Value, c_int>) -> (c_int, Value) {
    match r {
        Ok(v) => (0, v),
        Err(e) => (e, Value::None),
    }
}
