//! The listener of a shard: accepting connections (backing off on
//! EMFILE/ENFILE, refusing past the maximum; with the socket ring, the ring
//! accepts and answers upgrades itself, `ring/accept.rs`, and hands every
//! other request here), reading the HTTP request head (bounded in size and
//! time), and routing it: the WebSocket upgrade
//! (`driver.rs`), the SSE stream (`sse.rs`), the HTTP API (`http_api.rs`),
//! the demo page, `/healthz`, `/readyz` and `/metrics`.

use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::rt::net::TcpStream;
use chat_proto::http::{self, ConnHeaders, Persist, Reply, RequestHead};
use chat_proto::origin::{self, OriginVerdict};
use futures_lite::{AsyncReadExt, AsyncWriteExt};

use crate::shard_task::{Global, Shard};
use crate::util::{now_ms, write_and_close};

/// Releases a connection slot when a connection's task ends.
pub(crate) struct Slot(Arc<Global>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.stats.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

fn is_fd_exhaustion(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// Accepts connections until the shard stops accepting (this task is
/// cancelled, which closes the listener). A shard with a socket ring lets
/// the ring accept (`ring.rs`: one multishot accept, the upgrade answered
/// on the ring) and only holds the listener here; it falls back to
/// accepting here (`rt::net::TcpListener`: `accept4` when a one-shot poll
/// on the runtime's ring says readable) when the kernel refuses a
/// multishot accept.
pub(crate) async fn accept_loop(shard: Rc<Shard>, listener: std::net::TcpListener) {
    if let Some(ring) = shard.ring.clone() {
        // Stops the ring's accept before the listener closes (the kernel
        // keeps a listening socket open while an accept on it is armed).
        let listening = crate::ring::Listening::start(&ring, listener.as_raw_fd());
        listening.until_refused().await;
    }
    // A listening socket nobody accepts on would leave clients hanging in
    // its queue (`lib.rs`, `abort_on_panic`): failing here is fatal.
    let mut listener = match crate::rt::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => panic!(
            "the shard's listener could not be made non-blocking ({e}); it would accept nothing"
        ),
    };
    let mut warned_at = 0u64;
    loop {
        if !shard.accepting.get() {
            return;
        }
        match listener.accept().await {
            Ok(stream) => match admit_connection(&shard) {
                Ok(slot) => {
                    crate::rt::spawn(serve(shard.clone(), stream, slot, Vec::new())).detach();
                }
                Err(slot) => {
                    crate::rt::spawn(refuse(stream, slot)).detach();
                }
            },
            Err(e) => {
                let pause = accept_failed(&shard, &e, &mut warned_at);
                crate::rt::sleep(pause).await;
            }
        }
    }
}

/// Counts an accepted connection: `Ok` while under the connection maximum
/// and accepting, else `Err` (counted as refused; answer with
/// [`limit_reached`]). Either way the slot counts it until dropped.
pub(crate) fn admit_connection(shard: &Shard) -> Result<Slot, Slot> {
    let global = shard.global.clone();
    let n = global.stats.connections.fetch_add(1, Ordering::Relaxed);
    let slot = Slot(global.clone());
    if n >= global.max_connections || !shard.accepting.get() {
        global.stats.refused.fetch_add(1, Ordering::Relaxed);
        return Err(slot);
    }
    Ok(slot)
}

/// Counts a failed accept and logs it (at most every 5 s); returns how long
/// to pause before accepting again. EMFILE/ENFILE fail at once without
/// waiting: without a pause the accepting loop would spin and starve every
/// connection.
pub(crate) fn accept_failed(shard: &Shard, e: &std::io::Error, warned_at: &mut u64) -> Duration {
    shard
        .global
        .stats
        .accept_errors
        .fetch_add(1, Ordering::Relaxed);
    let now = now_ms();
    if now.saturating_sub(*warned_at) > 5_000 {
        *warned_at = now;
        tracing::warn!(error = %e, "accept failed; backing off");
    }
    Duration::from_millis(if is_fd_exhaustion(e) { 50 } else { 5 })
}

/// The answer to a connection past the maximum.
pub(crate) fn limit_reached() -> Vec<u8> {
    http::json_error_response(503, "unavailable", "connection limit reached")
}

/// Answers a connection past the maximum with 503 and closes it.
async fn refuse(mut stream: TcpStream, _slot: Slot) {
    let resp = limit_reached();
    let _ = crate::rt::timeout(Duration::from_millis(500), async move {
        let _ = stream.write_all(&resp).await;
        let _ = stream.close().await;
    })
    .await;
}

/// Serves a connection the socket ring accepted whose first request is not
/// a WebSocket upgrade: `head` holds the bytes read so far (at least one
/// whole request head).
pub(crate) fn serve_handed_over(shard: Rc<Shard>, stream: TcpStream, slot: Slot, head: Vec<u8>) {
    crate::rt::spawn(serve(shard, stream, slot, head)).detach();
}

/// Checks a request's `Origin` (`allowed_origins`, `origin.rs` of
/// chat-proto): `Ok` with the origin to answer CORS headers for, if any;
/// `Err` with the 403 to answer before closing (counted).
pub(crate) fn check_origin(shard: &Shard, head: &RequestHead) -> Result<Option<String>, Vec<u8>> {
    match shard
        .origins
        .check(head.origin.as_deref(), head.host.as_deref())
    {
        OriginVerdict::NoOrigin => Ok(None),
        OriginVerdict::Allowed(origin) => Ok(Some(origin)),
        OriginVerdict::Refused(origin) => {
            shard
                .global
                .stats
                .origin_refused
                .fetch_add(1, Ordering::Relaxed);
            Err(http::json_error_response(
                403,
                "forbidden",
                &format!("origin {origin} is not allowed (allowed_origins)"),
            ))
        }
    }
}

/// The answer to a request head that could not be read.
pub(crate) fn head_error(e: http::HttpError) -> Vec<u8> {
    match e {
        http::HttpError::TooLarge => {
            http::json_error_response(431, "bad_request", "request head too large")
        }
        http::HttpError::Malformed(m) => http::json_error_response(400, "bad_request", &m),
    }
}

/// Reads the HTTP request head (bounded size), after the bytes already in
/// `buf` (what followed the previous request on a kept-alive connection).
async fn read_head(
    stream: &mut TcpStream,
    mut buf: Vec<u8>,
    max: usize,
) -> Result<Option<(RequestHead, Vec<u8>)>, http::HttpError> {
    if let Some((head, used)) = http::parse_request_head(&buf, max)? {
        let rest = buf.split_off(used);
        return Ok(Some((head, rest)));
    }
    // On the heap, and only while a head is read: an array here would sit
    // in every connection's future for its whole life.
    let mut chunk = vec![0u8; 1024];
    let mut first = true;
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(n) => n,
        };
        let fresh = buf.len();
        buf.extend_from_slice(&chunk[..n]);
        // Parsed again only when it may be complete (or too large): a
        // trickled head costs a scan, not a parse per piece. The first
        // read is parsed anyway, so that garbage is answered at once.
        if !std::mem::take(&mut first) && buf.len() < max && !http::head_may_have_ended(&buf, fresh)
        {
            continue;
        }
        if let Some((head, used)) = http::parse_request_head(&buf, max)? {
            let rest = buf.split_off(used);
            return Ok(Some((head, rest)));
        }
    }
}

/// Serves one accepted connection: HTTP endpoints or a WebSocket session.
/// An HTTP API call may be followed by more on the same connection
/// (keep-alive, [`api_call`]); everything else ends it. `buf` holds bytes
/// already read from it (a connection the socket ring handed over).
async fn serve(shard: Rc<Shard>, mut stream: TcpStream, slot: Slot, mut buf: Vec<u8>) {
    let max_head = shard.cfg.max_request_head_bytes;
    // The first head within the handshake timeout; a next one (keep-alive)
    // within the idle timeout.
    let mut wait = Duration::from_millis(shard.cfg.handshake_timeout_ms);
    loop {
        let head = crate::rt::timeout(
            wait,
            read_head(&mut stream, std::mem::take(&mut buf), max_head),
        )
        .await;
        let (head, rest) = match head {
            Ok(Ok(Some(h))) => h,
            Ok(Ok(None)) | Err(_) => return,
            Ok(Err(e)) => return write_and_close(&mut stream, &head_error(e)).await,
        };
        // Browser pages: refused unless allowed; an allowed one gets CORS
        // headers on every answer.
        let cors = match check_origin(&shard, &head) {
            Ok(cors) => cors,
            Err(refusal) => return write_and_close(&mut stream, &refusal).await,
        };
        let is_api_call = head.path.starts_with("/v1/")
            && head.method != "OPTIONS"
            && !(head.method == "GET" && (head.path == "/v1/events" || head.path == "/v1/nodes"));
        if !is_api_call {
            return Box::pin(route(shard, stream, head, rest, cors, slot)).await;
        }
        // Boxed (as `route` above): a future's size is that of its largest
        // path, and this one lives across keep-alive calls.
        match Box::pin(api_call(&shard, &mut stream, head, rest, cors.as_deref())).await {
            Some(next) => {
                buf = next;
                wait = Duration::from_millis(shard.cfg.http_idle_timeout_ms);
            }
            None => {
                let _ = stream.close().await;
                return;
            }
        }
    }
}

/// One `/v1` API call: authenticates it, runs it (body, work and response
/// within `http_timeout_ms`) and answers with the connection's headers.
/// Returns the bytes read past the call when the connection stays open
/// (keep-alive: the client allows it, `http_idle_timeout_ms` > 0, the body
/// was read, no drain has begun); `None` when it is to be closed.
async fn api_call(
    shard: &Rc<Shard>,
    stream: &mut TcpStream,
    head: RequestHead,
    rest: Vec<u8>,
    cors: Option<&str>,
) -> Option<Vec<u8>> {
    let idle_timeout_ms = shard.cfg.http_idle_timeout_ms;
    let may_persist = head.keep_alive && idle_timeout_ms > 0;
    let identity = crate::driver::admit(shard, stream, &head, cors).await?;
    // The whole call — body, work, response — within the timeout: a client
    // that does not take its response is cut off.
    let timeout = Duration::from_millis(shard.cfg.http_timeout_ms);
    crate::rt::timeout(timeout, async {
        let served = crate::http_api::serve(shard.clone(), stream, head, rest, identity).await?;
        let persist =
            may_persist && served.rest.is_some() && !shard.global.draining.load(Ordering::Acquire);
        let conn = ConnHeaders {
            persist: if persist {
                Persist::KeepAlive { idle_timeout_ms }
            } else {
                Persist::Close
            },
            cors_origin: cors,
        };
        if stream.write_all(&served.reply.encode(conn)).await.is_err() {
            return None;
        }
        served.rest.filter(|_| persist)
    })
    .await
    .ok()
    .flatten()
}

/// Routes a request that ends its connection: the WebSocket upgrade, a
/// preflight, the event stream, the demo page, health, readiness, metrics.
async fn route(
    shard: Rc<Shard>,
    mut stream: TcpStream,
    head: RequestHead,
    rest: Vec<u8>,
    cors: Option<String>,
    slot: Slot,
) {
    match (head.method.as_str(), head.path.as_str()) {
        // The upgrade hands the session to a task of its own (`driver.rs`),
        // and this future ends: a session does not keep the routing state.
        (_, "/ws") => Box::pin(crate::driver::upgrade(shard, stream, head, rest, slot)).await,
        ("OPTIONS", p) if p.starts_with("/v1/") => {
            // A CORS preflight (or a bare OPTIONS): what a page may send.
            let mut reply = Reply::empty(204);
            if let (Some(origin), Some(_)) = (cors.as_deref(), head.preflight_method.as_ref()) {
                reply.headers.extend(origin::preflight_headers(origin));
            } else {
                reply = reply.with_header("Allow", origin::ALLOWED_METHODS);
            }
            write_and_close(&mut stream, &reply.encode(ConnHeaders::CLOSE)).await;
        }
        ("GET", "/v1/events") => {
            let Some(identity) =
                crate::driver::admit(&shard, &mut stream, &head, cors.as_deref()).await
            else {
                return;
            };
            // Boxed: this future is the size of its largest path.
            Box::pin(crate::sse::serve(shard, stream, head, identity, cors)).await;
        }
        ("GET", p) if p == "/demo" || p.starts_with("/demo/") => {
            crate::demo::serve(&shard, &mut stream, &head).await;
        }
        ("GET", "/healthz") => {
            let r = match shard.store.health() {
                storage::Health::Healthy => {
                    http::response(200, "application/json", b"{\"status\":\"ok\"}", &[])
                }
                storage::Health::Poisoned(why) => {
                    let body =
                        serde_json::json!({"status": "unhealthy", "reason": why}).to_string();
                    http::response(503, "application/json", body.as_bytes(), &[])
                }
            };
            write_and_close(&mut stream, &r).await;
        }
        ("GET", "/readyz") => {
            // Ready = this shard listens, the store is healthy, no drain
            // has begun (load balancers stop sending new clients at once).
            let draining = shard.global.draining.load(Ordering::Acquire) || !shard.accepting.get();
            let (status, body) = match (draining, shard.store.health()) {
                (true, _) => (503, serde_json::json!({"status": "draining"})),
                (false, storage::Health::Poisoned(why)) => (
                    503,
                    serde_json::json!({"status": "unhealthy", "reason": why}),
                ),
                (false, storage::Health::Healthy) => (200, serde_json::json!({"status": "ready"})),
            };
            let r = http::response(status, "application/json", body.to_string().as_bytes(), &[]);
            write_and_close(&mut stream, &r).await;
        }
        ("GET", "/v1/nodes") => {
            // Discovery, for clients and load balancers: no credentials.
            let body = crate::nodes::nodes_body(&shard).to_string();
            let r = http::response(200, "application/json", body.as_bytes(), &[]);
            write_and_close(&mut stream, &r).await;
        }
        ("GET", "/metrics") => {
            let mut body = crate::metrics::render(&shard.global.stats.snapshot());
            let nr = shard.state.borrow().nr_shards();
            crate::metrics::render_detail(&shard.global.stats.detail, nr, &mut body);
            crate::metrics::render_process(&crate::sys::process_stats(), &mut body);
            let r = http::response(200, "text/plain; version=0.0.4", body.as_bytes(), &[]);
            write_and_close(&mut stream, &r).await;
        }
        _ => {
            let r = http::json_error_response(404, "not_found", "no such endpoint");
            write_and_close(&mut stream, &r).await;
        }
    }
}
