//! # fdb-double — a libfdb_c stand-in for tests
//!
//! No FoundationDB server and no `libfdb_c` can be installed where this
//! project is built and tested, yet the FoundationDB backend of `storage`
//! must run through the real `foundationdb` crate. This crate builds
//! `libfdb_c.so`: the subset of `fdb_c.h` (API version 730) that the crate
//! links to, over an in-memory store. Point the crate's link step at it
//! (`FDB_CLIENT_LIB_PATH`) and the loader at run time (`LD_LIBRARY_PATH`);
//! `scripts/test-fdb` does both. **Test-only: it keeps nothing on disk.**
//!
//! ## What it implements (semantics in `kv.rs`)
//!
//! | calls | behaviour |
//! |---|---|
//! | `fdb_select_api_version_impl`, `fdb_get_max_api_version` (730), `fdb_get_client_version` | version handshake |
//! | `fdb_setup_network`, `fdb_run_network`, `fdb_stop_network`, `fdb_network_set_option`, `fdb_add_network_thread_completion_hook` | setup once; run blocks until stop; options accepted and ignored |
//! | `fdb_create_database` | one in-memory database per cluster-file path per process; the file must exist (1515) but is not parsed |
//! | `fdb_database_create_transaction`, `_destroy`, `_set_option`, `_get_main_thread_busyness`, `_get_client_status` | |
//! | `fdb_transaction_get`, `_get_key`, `_get_range` | MVCC reads at the read version plus the transaction's own writes; key selectors with any or_equal/offset; `limit`, `target_bytes`, `reverse`; streaming modes return ≤ 256 rows per call with `more` so callers page |
//! | `fdb_transaction_set`, `_clear`, `_clear_range`, `_atomic_op` | buffered until commit; atomic ops ADD, BIT_AND/OR/XOR, MAX, MIN, BYTE_MIN/MAX on the committed value |
//! | `fdb_transaction_commit` | conflict check (1020), age (1007), limits (2101/2102/2103), one new version per writing commit |
//! | `fdb_transaction_on_error` | retryable codes (1007, 1009, 1020, 1021, 1037, 1213) reset and retry after a short backoff, honouring `retry_limit` and `timeout` (1031); others come back |
//! | `fdb_transaction_set_option` | `timeout` (500), `retry_limit` (501), `size_limit` (503); others accepted and ignored |
//! | `_get_read_version`, `_set_read_version`, `_get_committed_version`, `_get_approximate_size`, `_get_estimated_range_size_bytes`, `_add_conflict_range`, `_reset`, `_cancel` | |
//! | `fdb_future_*` | every future is ready when returned; `set_callback` calls back at once |
//! | `fdb_get_error`, `fdb_error_predicate` | messages and the retryable / maybe-committed predicates |
//! | `fdb_double_inject_commit_errors` (not in fdb_c.h) | test hook: make the next commits fail with given codes, optionally after applying them (a `commit_unknown_result` that committed) |
//!
//! ## What it does not do
//!
//! No durability (memory only, gone at exit), no multi-process sharing (two
//! processes never see each other's data), no watches, versionstamps,
//! tenants, mapped ranges or blob granules (they fail with 4100), no
//! latency, no real network thread (callbacks run on the calling thread),
//! no read-version batching. Conflict ranges of range reads are the whole
//! requested range (FDB narrows them to what was read), so it may report a
//! conflict FDB would not. Versions count commits, not microseconds.

#![allow(unsafe_code)]

pub mod ffi;
pub mod kv;
