//! HTTP/1.1 request heads, sans-IO: the WebSocket upgrade and the small HTTP
//! API share one port.
//!
//! [`parse_request_head`] parses with `httparse` (never by hand) into stack
//! arrays and allocates only once the head is complete, so "not enough bytes
//! yet" (`Ok(None)`) costs nothing. The caller keeps reading until it has a
//! head, then handles the body (`content_length` bytes) or the WebSocket
//! bytes that follow `consumed`.
//!
//! Bodies are only accepted with `Content-Length`; a request with
//! `Transfer-Encoding` is refused as malformed (the API's bodies are small
//! JSON documents and every HTTP client can send a length).
//!
//! Connections persist (HTTP/1.1 keep-alive) when the client allows it
//! ([`RequestHead::keep_alive`]) and the server chooses to: a [`Reply`] is
//! encoded with the connection's own headers ([`ConnHeaders`]: `Connection`
//! and `Keep-Alive`, and the CORS headers of an allowed origin). The plain
//! builders ([`response`], [`json_error_response`]) write `Connection:
//! close` responses for the answers after which the server hangs up.

use std::fmt;

use serde::Serialize;

/// Most header lines a request head may have.
pub const MAX_HEADERS: usize = 64;

/// A parsed request head.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestHead {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The percent-decoded path, without the query.
    pub path: String,
    /// The query's pairs in order, percent-decoded, `+` as space; a name
    /// without `=` has an empty value.
    pub query: Vec<(String, String)>,
    /// `Upgrade: websocket` (case-insensitive) and a `Connection` header with
    /// an `upgrade` token.
    pub upgrade_websocket: bool,
    /// `Sec-WebSocket-Key`, trimmed.
    pub ws_key: Option<String>,
    /// `Sec-WebSocket-Version`, trimmed.
    pub ws_version: Option<String>,
    /// `Sec-WebSocket-Extensions`, trimmed; several header lines joined
    /// with `, ` (the offers, for [`crate::deflate::negotiate`]).
    pub ws_extensions: Option<String>,
    /// `Authorization`, as sent.
    pub authorization: Option<String>,
    /// `Content-Length`.
    pub content_length: Option<usize>,
    /// `Last-Event-ID` (an `EventSource` reconnecting to `/v1/events`).
    pub last_event_id: Option<String>,
    /// `Origin`, as sent (browsers send it; see [`crate::origin`]).
    pub origin: Option<String>,
    /// `Host`, as sent.
    pub host: Option<String>,
    /// Whether the client lets the connection persist after the response:
    /// HTTP/1.1 unless `Connection: close`, HTTP/1.0 only with
    /// `Connection: keep-alive`.
    pub keep_alive: bool,
    /// `Access-Control-Request-Method` (an `OPTIONS` with it is a CORS
    /// preflight).
    pub preflight_method: Option<String>,
}

impl RequestHead {
    /// The value of the first query parameter called `name`.
    #[must_use]
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The token of `Authorization: Bearer <token>` (scheme
    /// case-insensitive).
    #[must_use]
    pub fn bearer_token(&self) -> Option<&str> {
        let value = self.authorization.as_deref()?.trim();
        let (scheme, token) = value.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim())
            .filter(|t| !t.is_empty())
    }

    /// Checks that this is a WebSocket opening handshake the gateway can
    /// accept (RFC 6455 §4.2.1: `GET`, the upgrade headers, version 13, a key
    /// of 16 base64-encoded bytes) and returns the key for
    /// [`upgrade_response`]. `Err` holds the reason; answer it with 400 (or
    /// 426 with `Sec-WebSocket-Version: 13` when only the version is wrong).
    pub fn websocket_key(&self) -> Result<&str, &'static str> {
        if self.method != "GET" {
            return Err("a WebSocket upgrade must be a GET");
        }
        if !self.upgrade_websocket {
            return Err("missing Upgrade: websocket / Connection: upgrade");
        }
        if self.ws_version.as_deref() != Some("13") {
            return Err("Sec-WebSocket-Version must be 13");
        }
        let key = self.ws_key.as_deref().ok_or("missing Sec-WebSocket-Key")?;
        let valid = key.len() == 24
            && key.ends_with("==")
            && key.as_bytes()[..22]
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
        if valid {
            Ok(key)
        } else {
            Err("Sec-WebSocket-Key must be 16 bytes in base64")
        }
    }
}

/// Why a request head is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// The head is longer than allowed or has too many headers (answer 431).
    TooLarge,
    /// The head is not valid HTTP/1.x or uses something unsupported (answer
    /// 400); the text says what.
    Malformed(String),
}

impl HttpError {
    /// The HTTP status to answer with: 431 or 400.
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            HttpError::TooLarge => 431,
            HttpError::Malformed(_) => 400,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::TooLarge => f.write_str("request head too large"),
            HttpError::Malformed(why) => write!(f, "malformed request: {why}"),
        }
    }
}

impl std::error::Error for HttpError {}

fn malformed(why: impl Into<String>) -> HttpError {
    HttpError::Malformed(why.into())
}

/// Parses the request head at the start of `buf`. `Ok(None)` = not enough
/// bytes yet. `Ok(Some((head, consumed)))` where `consumed` = bytes of the
/// head (body or WebSocket bytes may follow). At most [`MAX_HEADERS`]
/// headers; a head that does not end within `max_head_bytes` is
/// [`HttpError::TooLarge`].
pub fn parse_request_head(
    buf: &[u8],
    max_head_bytes: usize,
) -> Result<Option<(RequestHead, usize)>, HttpError> {
    let window = &buf[..buf.len().min(max_head_bytes)];
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(window) {
        Ok(httparse::Status::Complete(consumed)) => Ok(Some((build_head(&request)?, consumed))),
        Ok(httparse::Status::Partial) if window.len() < max_head_bytes => Ok(None),
        Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
            Err(HttpError::TooLarge)
        }
        Err(e) => Err(malformed(e.to_string())),
    }
}

/// Whether a request head may have ended in `buf` with the bytes from
/// `new_from` on: they hold (or complete) a blank line. A head read in
/// pieces is parsed again only then, so a client trickling its head costs
/// one scan of its bytes instead of a parse per piece (a parse is linear
/// in the bytes so far: byte by byte, a 16 KiB head would cost 16,000
/// parses of up to 16 KiB).
pub fn head_may_have_ended(buf: &[u8], new_from: usize) -> bool {
    let from = new_from.saturating_sub(3).min(buf.len());
    let tail = &buf[from..];
    tail.windows(2).any(|w| w == b"\n\n") || tail.windows(3).any(|w| w == b"\n\r\n")
}

fn build_head(request: &httparse::Request<'_, '_>) -> Result<RequestHead, HttpError> {
    let method = request.method.ok_or_else(|| malformed("no method"))?;
    let target = request.path.ok_or_else(|| malformed("no request target"))?;
    let (raw_path, raw_query) = target.split_once('?').unwrap_or((target, ""));
    let mut head = RequestHead {
        method: method.to_owned(),
        path: percent_decode(raw_path, false)?,
        query: parse_query(raw_query)?,
        ..RequestHead::default()
    };
    let (mut upgrade, mut connection_upgrade) = (false, false);
    let (mut connection_close, mut connection_keep_alive) = (false, false);
    for header in request.headers.iter() {
        let name = header.name;
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        if !(is("upgrade")
            || is("connection")
            || is("sec-websocket-key")
            || is("sec-websocket-version")
            || is("sec-websocket-extensions")
            || is("authorization")
            || is("content-length")
            || is("last-event-id")
            || is("origin")
            || is("host")
            || is("access-control-request-method")
            || is("transfer-encoding"))
        {
            continue;
        }
        let value = std::str::from_utf8(header.value)
            .map_err(|_| malformed(format!("header {name} is not UTF-8")))?
            .trim();
        if is("upgrade") {
            upgrade |= has_token(value, "websocket");
        } else if is("connection") {
            connection_upgrade |= has_token(value, "upgrade");
            connection_close |= has_token(value, "close");
            connection_keep_alive |= has_token(value, "keep-alive");
        } else if is("sec-websocket-key") {
            head.ws_key = Some(value.to_owned());
        } else if is("sec-websocket-version") {
            head.ws_version = Some(value.to_owned());
        } else if is("sec-websocket-extensions") {
            match &mut head.ws_extensions {
                Some(offers) => {
                    offers.push_str(", ");
                    offers.push_str(value);
                }
                None => head.ws_extensions = Some(value.to_owned()),
            }
        } else if is("authorization") {
            head.authorization = Some(value.to_owned());
        } else if is("content-length") {
            let length = parse_content_length(value)?;
            if head.content_length.is_some_and(|l| l != length) {
                return Err(malformed("conflicting Content-Length headers"));
            }
            head.content_length = Some(length);
        } else if is("last-event-id") {
            head.last_event_id = Some(value.to_owned());
        } else if is("origin") {
            head.origin = Some(value.to_owned());
        } else if is("host") {
            head.host = Some(value.to_owned());
        } else if is("access-control-request-method") {
            head.preflight_method = Some(value.to_owned());
        } else {
            return Err(malformed(
                "Transfer-Encoding is not supported; send Content-Length",
            ));
        }
    }
    head.upgrade_websocket = upgrade && connection_upgrade;
    head.keep_alive = match request.version {
        Some(1) => !connection_close,
        _ => connection_keep_alive && !connection_close,
    };
    Ok(head)
}

/// Whether the comma-separated header `value` contains `token`
/// (case-insensitive).
fn has_token(value: &str, token: &str) -> bool {
    value
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

fn parse_content_length(value: &str) -> Result<usize, HttpError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed("Content-Length must be a decimal number"));
    }
    value
        .parse()
        .map_err(|_| malformed("Content-Length is too large"))
}

fn parse_query(query: &str) -> Result<Vec<(String, String)>, HttpError> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((percent_decode(name, true)?, percent_decode(value, true)?))
        })
        .collect()
}

/// Percent-decodes `s` (and `+` to space if `plus_as_space`). A `%` not
/// followed by two hex digits is kept as is, like browsers do. The result
/// must be UTF-8.
fn percent_decode(s: &str, plus_as_space: bool) -> Result<String, HttpError> {
    let needs_decoding = s.contains('%') || (plus_as_space && s.contains('+'));
    if !needs_decoding {
        return Ok(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(byte) = hex {
                    out.push(byte);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' if plus_as_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| malformed("percent-decoded text is not UTF-8"))
}

/// The reason phrase of the statuses the gateway uses ("" for others; the
/// phrase is optional in HTTP/1.1).
fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// The `101 Switching Protocols` response accepting a WebSocket upgrade with
/// `Sec-WebSocket-Key` `ws_key`.
#[must_use]
pub fn upgrade_response(ws_key: &str) -> Vec<u8> {
    upgrade_response_with(ws_key, None)
}

/// [`upgrade_response`] with the negotiated extensions, if any: the value
/// of a `Sec-WebSocket-Extensions` header (e.g.
/// [`crate::deflate::Negotiated::response_header`]).
#[must_use]
pub fn upgrade_response_with(ws_key: &str, extensions: Option<&str>) -> Vec<u8> {
    let accept = tungstenite::handshake::derive_accept_key(ws_key.trim().as_bytes());
    let mut response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n"
    );
    if let Some(value) = extensions {
        response.push_str("Sec-WebSocket-Extensions: ");
        response.push_str(value);
        response.push_str("\r\n");
    }
    response.push_str("\r\n");
    response.into_bytes()
}

/// Whether the connection stays open after a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persist {
    /// `Connection: close`: the server closes after this response.
    Close,
    /// `Connection: keep-alive` with `Keep-Alive: timeout=<s>`: the server
    /// waits this long for the next request (rounded down to seconds, at
    /// least 1).
    KeepAlive {
        /// The idle timeout, in milliseconds.
        idle_timeout_ms: u64,
    },
}

/// The headers a response gets from its connection rather than from its
/// endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnHeaders<'a> {
    /// Keep-alive or close.
    pub persist: Persist,
    /// The allowed `Origin` to echo (`Access-Control-Allow-Origin` and
    /// `Vary: Origin`), if the request carried one.
    pub cors_origin: Option<&'a str>,
}

impl ConnHeaders<'_> {
    /// `Connection: close`, no CORS headers.
    pub const CLOSE: ConnHeaders<'static> = ConnHeaders {
        persist: Persist::Close,
        cors_origin: None,
    };
}

/// A response of an endpoint, before the connection's headers are added
/// ([`Reply::encode`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// `Content-Type` (left out when empty).
    pub content_type: &'static str,
    /// The body (not sent for 1xx, 204 and 304).
    pub body: Vec<u8>,
    /// Further headers of the endpoint.
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    /// A JSON body with `status`.
    #[must_use]
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: body.into(),
            headers: Vec::new(),
        }
    }

    /// An error body `{"code": code, "message": message}` with `status`.
    #[must_use]
    pub fn error(status: u16, code: &str, message: &str) -> Reply {
        #[derive(Serialize)]
        struct ErrorBody<'a> {
            code: &'a str,
            message: &'a str,
        }
        let mut body = Vec::new();
        super::response::write_json(&mut body, &ErrorBody { code, message });
        Reply::json(status, body)
    }

    /// A response with no body (`204`, or a redirect with its headers).
    #[must_use]
    pub fn empty(status: u16) -> Reply {
        Reply {
            status,
            content_type: "",
            body: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// Adds a header.
    #[must_use]
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    /// The complete response: status line, `Content-Type`,
    /// `Content-Length`, the connection's headers, the endpoint's headers
    /// and the body. Headers containing CR or LF are dropped (no header
    /// injection).
    #[must_use]
    pub fn encode(&self, conn: ConnHeaders<'_>) -> Vec<u8> {
        let mut extra: Vec<(&str, &str)> = Vec::with_capacity(self.headers.len() + 2);
        if let Some(origin) = conn.cors_origin {
            extra.push(("Access-Control-Allow-Origin", origin));
            extra.push(("Vary", "Origin"));
        }
        extra.extend(self.headers.iter().map(|(k, v)| (*k, v.as_str())));
        write_response(
            self.status,
            self.content_type,
            &self.body,
            conn.persist,
            &extra,
        )
    }
}

/// A complete response with `Content-Type` (left out when empty),
/// `Content-Length`, `Connection: close`, `extra_headers` and `body`.
/// Statuses without content (1xx, 204, 304) get neither length nor body.
/// Extra headers containing CR or LF are dropped (no header injection).
#[must_use]
pub fn response(
    status: u16,
    content_type: &str,
    body: &[u8],
    extra_headers: &[(&str, &str)],
) -> Vec<u8> {
    write_response(status, content_type, body, Persist::Close, extra_headers)
}

fn write_response(
    status: u16,
    content_type: &str,
    body: &[u8],
    persist: Persist,
    extra_headers: &[(&str, &str)],
) -> Vec<u8> {
    let no_content = matches!(status, 100..=199 | 204 | 304);
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status));
    let safe = |s: &str| !s.contains(['\r', '\n']);
    if !content_type.is_empty() && !no_content && safe(content_type) {
        head.push_str("Content-Type: ");
        head.push_str(content_type);
        head.push_str("\r\n");
    }
    if !no_content {
        head.push_str("Content-Length: ");
        head.push_str(&body.len().to_string());
        head.push_str("\r\n");
    }
    match persist {
        Persist::Close => head.push_str("Connection: close\r\n"),
        Persist::KeepAlive { idle_timeout_ms } => {
            head.push_str("Connection: keep-alive\r\nKeep-Alive: timeout=");
            head.push_str(&(idle_timeout_ms / 1000).max(1).to_string());
            head.push_str("\r\n");
        }
    }
    for (name, value) in extra_headers {
        if safe(name) && safe(value) && !name.is_empty() {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    if !no_content {
        out.extend_from_slice(body);
    }
    out
}

/// A JSON error response: body `{"code": code, "message": message}`,
/// `Connection: close`.
#[must_use]
pub fn json_error_response(status: u16, code: &str, message: &str) -> Vec<u8> {
    Reply::error(status, code, message).encode(ConnHeaders::CLOSE)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {

    #[test]
    fn a_head_may_have_ended_only_where_a_blank_line_is_completed() {
        let head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(head_may_have_ended(head, 0));
        // Every split: the end is seen exactly when the last byte arrives.
        for cut in 1..head.len() {
            assert!(!head_may_have_ended(&head[..cut], 0), "cut {cut}");
            assert!(head_may_have_ended(head, cut), "cut {cut}");
        }
        // Bare line feeds (httparse accepts them) end a head too.
        assert!(head_may_have_ended(b"GET / HTTP/1.1\nHost: x\n\n", 20));
        // Bytes before `new_from` are not scanned again.
        assert!(!head_may_have_ended(b"a\r\n\r\nGET / HTTP/1.1\r\nHost", 10));
    }

    use super::*;

    const UPGRADE: &str = "GET /ws?token=a%2Bb&user=al+ice&flag HTTP/1.1\r\n\
        Host: localhost\r\n\
        Upgrade: WebSocket\r\n\
        Connection: keep-alive, Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n\
        Authorization: Bearer abc.def\r\n\
        \r\n";

    fn parse(s: &str) -> Result<Option<(RequestHead, usize)>, HttpError> {
        parse_request_head(s.as_bytes(), 8192)
    }

    #[test]
    fn upgrade_request_head_is_parsed() {
        let mut bytes = UPGRADE.as_bytes().to_vec();
        bytes.extend_from_slice(&[0x81, 0x85]); // a WebSocket frame follows
        let (head, consumed) = parse_request_head(&bytes, 8192).unwrap().unwrap();
        assert_eq!(consumed, UPGRADE.len());
        assert_eq!(head.method, "GET");
        assert_eq!(head.path, "/ws");
        assert!(head.upgrade_websocket);
        assert_eq!(head.ws_key.as_deref(), Some("dGhlIHNhbXBsZSBub25jZQ=="));
        assert_eq!(head.ws_version.as_deref(), Some("13"));
        assert_eq!(head.authorization.as_deref(), Some("Bearer abc.def"));
        assert_eq!(head.bearer_token(), Some("abc.def"));
        assert_eq!(head.content_length, None);
        assert_eq!(head.query_param("token"), Some("a+b"));
        assert_eq!(head.query_param("user"), Some("al ice"));
        assert_eq!(head.query_param("flag"), Some(""));
        assert_eq!(head.query_param("missing"), None);
        assert_eq!(head.websocket_key(), Ok("dGhlIHNhbXBsZSBub25jZQ=="));
    }

    #[test]
    fn every_incomplete_prefix_is_not_enough_bytes_yet() {
        for end in 0..UPGRADE.len() {
            assert_eq!(parse(&UPGRADE[..end]), Ok(None), "prefix of {end} bytes");
        }
        assert!(parse(UPGRADE).unwrap().is_some());
    }

    #[test]
    fn path_and_query_are_percent_decoded() {
        let (head, _) = parse(
            "GET /v1/channels/room%3Alobby/messages?before=10&x=%E2%9C%93&bad=%zz&p=a+b%2B HTTP/1.1\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(head.path, "/v1/channels/room:lobby/messages");
        assert_eq!(head.query_param("before"), Some("10"));
        assert_eq!(head.query_param("x"), Some("✓"));
        assert_eq!(head.query_param("bad"), Some("%zz"));
        assert_eq!(head.query_param("p"), Some("a b+"));
        let (head, _) = parse("GET /a+b%20c HTTP/1.1\r\n\r\n").unwrap().unwrap();
        assert_eq!(head.path, "/a+b c", "+ is literal in paths");
        assert!(matches!(
            parse("GET /%ff HTTP/1.1\r\n\r\n"),
            Err(HttpError::Malformed(_))
        ));
    }

    #[test]
    fn too_large_heads_are_refused() {
        let big = format!("GET / HTTP/1.1\r\nX-Pad: {}\r\n\r\n", "p".repeat(10_000));
        assert_eq!(parse(&big), Err(HttpError::TooLarge));
        // Incomplete but already over the limit.
        assert_eq!(parse(&big[..9000]), Err(HttpError::TooLarge));
        // Too many headers.
        let many: String = (0..65).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(
            parse(&format!("GET / HTTP/1.1\r\n{many}\r\n")),
            Err(HttpError::TooLarge)
        );
        assert_eq!(HttpError::TooLarge.status(), 431);
        // Exactly at the limit is fine.
        let head = "GET / HTTP/1.1\r\n\r\n";
        assert!(parse_request_head(head.as_bytes(), head.len())
            .unwrap()
            .is_some());
    }

    #[test]
    fn malformed_heads_are_refused() {
        for bad in [
            "GET / HTTP/1.1\r\nBad Header\r\n\r\n",
            "\u{1}GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/9.9\r\n\r\n",
            "POST /x HTTP/1.1\r\nContent-Length: ten\r\n\r\n",
            "POST /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(matches!(err, HttpError::Malformed(_)), "{bad:?}: {err:?}");
            assert_eq!(err.status(), 400);
        }
    }

    #[test]
    fn content_length_is_read_and_body_bytes_are_not_consumed() {
        let req = "POST /v1/groups HTTP/1.1\r\ncontent-length: 13\r\n\r\n{\"members\":[]}";
        let (head, consumed) = parse(req).unwrap().unwrap();
        assert_eq!(head.method, "POST");
        assert_eq!(head.content_length, Some(13));
        assert_eq!(&req[consumed..], "{\"members\":[]}");
        assert!(!head.upgrade_websocket);
    }

    #[test]
    fn last_event_id_is_kept() {
        let req = "GET /v1/events?channels=room:a HTTP/1.1\r\nLast-Event-ID:  room:a=5 \r\n\r\n";
        let (head, _) = parse(req).unwrap().unwrap();
        assert_eq!(head.last_event_id.as_deref(), Some("room:a=5"));
    }

    #[test]
    fn upgrade_needs_both_headers() {
        let (head, _) = parse("GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!head.upgrade_websocket);
        assert!(head.websocket_key().is_err());
        let (head, _) = parse("GET /ws HTTP/1.1\r\nConnection: upgrade\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!head.upgrade_websocket);
        let (head, _) = parse(
            "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert!(head.upgrade_websocket);
        assert_eq!(
            head.websocket_key(),
            Err("Sec-WebSocket-Version must be 13")
        );
    }

    #[test]
    fn extension_offers_of_several_lines_are_joined() {
        let (head, _) = parse(
            "GET /ws HTTP/1.1\r\nSec-WebSocket-Extensions: permessage-deflate; x=1\r\n\
             sec-websocket-extensions:  permessage-deflate \r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            head.ws_extensions.as_deref(),
            Some("permessage-deflate; x=1, permessage-deflate")
        );
        let text = String::from_utf8(upgrade_response_with(
            "dGhlIHNhbXBsZSBub25jZQ==",
            Some("permessage-deflate; server_no_context_takeover"),
        ))
        .unwrap();
        assert!(text.contains(
            "\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n"
        ));
        assert!(text.ends_with("\r\n\r\n"));
        assert!(
            !String::from_utf8(upgrade_response("dGhlIHNhbXBsZSBub25jZQ=="))
                .unwrap()
                .contains("Extensions")
        );
    }

    #[test]
    fn upgrade_response_carries_the_rfc_accept_key() {
        let text = String::from_utf8(upgrade_response("dGhlIHNhbXBsZSBub25jZQ==")).unwrap();
        assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(text.contains("Upgrade: websocket\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn responses_have_length_and_close_and_204_has_no_body() {
        let r = response(
            200,
            "text/plain",
            b"ok",
            &[("X-A", "1"), ("X-Bad", "a\r\nb")],
        );
        assert_eq!(
            String::from_utf8(r).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\
             Connection: close\r\nX-A: 1\r\n\r\nok"
        );
        let r = response(204, "application/json", b"ignored", &[]);
        assert_eq!(
            String::from_utf8(r).unwrap(),
            "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
        );
        // Our own parser-side check: httparse reads it back as a response.
        let r = response(599, "", b"", &[]);
        let mut headers = [httparse::EMPTY_HEADER; 4];
        let mut parsed = httparse::Response::new(&mut headers);
        assert!(parsed.parse(&r).unwrap().is_complete());
        assert_eq!(parsed.code, Some(599));
    }

    #[test]
    fn json_error_response_has_code_and_message() {
        let r = json_error_response(401, "unauthorized", "bad \"token\"");
        let text = String::from_utf8(r).unwrap();
        assert!(text.starts_with("HTTP/1.1 401 Unauthorized\r\n"));
        assert!(text.contains("Content-Type: application/json\r\n"));
        let body = text.split("\r\n\r\n").nth(1).unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"code":"unauthorized","message":"bad \"token\""})
        );
        assert!(text.contains(&format!("Content-Length: {}\r\n", body.len())));
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection_header() {
        let ka = |req: &str| parse(req).unwrap().unwrap().0.keep_alive;
        assert!(ka("GET / HTTP/1.1\r\n\r\n"));
        assert!(!ka("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
        assert!(!ka("GET / HTTP/1.1\r\nConnection: Upgrade, Close\r\n\r\n"));
        assert!(!ka("GET / HTTP/1.0\r\n\r\n"));
        assert!(ka("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    }

    #[test]
    fn origin_host_and_preflight_headers_are_kept() {
        let (head, _) = parse(
            "OPTIONS /v1/me/unread HTTP/1.1\r\nHost: gw:8080\r\nOrigin: https://a.example\r\n\
             Access-Control-Request-Method: GET\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(head.host.as_deref(), Some("gw:8080"));
        assert_eq!(head.origin.as_deref(), Some("https://a.example"));
        assert_eq!(head.preflight_method.as_deref(), Some("GET"));
    }

    #[test]
    fn replies_carry_the_connection_headers() {
        let r = Reply::json(200, &b"{}"[..]).with_header("Cache-Control", "no-cache");
        let text = String::from_utf8(r.encode(ConnHeaders {
            persist: Persist::KeepAlive {
                idle_timeout_ms: 30_500,
            },
            cors_origin: Some("https://a.example"),
        }))
        .unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\
             Connection: keep-alive\r\nKeep-Alive: timeout=30\r\n\
             Access-Control-Allow-Origin: https://a.example\r\nVary: Origin\r\n\
             Cache-Control: no-cache\r\n\r\n{}"
        );
        let closed = String::from_utf8(Reply::empty(204).encode(ConnHeaders::CLOSE)).unwrap();
        assert_eq!(
            closed,
            "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
        );
        let evil = Reply::empty(204).encode(ConnHeaders {
            persist: Persist::Close,
            cors_origin: Some("x\r\nSet-Cookie: a"),
        });
        assert!(!String::from_utf8(evil).unwrap().contains("Set-Cookie"));
    }
}
