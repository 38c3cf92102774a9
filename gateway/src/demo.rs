//! The demo chat page at `GET /demo/`: a browser app built on the
//! JavaScript SDK (`clients/demo`, `clients/js/src`), compiled into the
//! binary so a newcomer needs nothing but the gateway to try it.
//!
//! On by default only in dev auth (config `demo`). Files are served as they
//! are in the repository (ES modules, no build step), with `no-cache` so a
//! rebuilt gateway is picked up at the next reload.

use std::rc::Rc;

use crate::rt::net::TcpStream;
use futures_lite::AsyncWriteExt;

use crate::shard_task::Shard;
use chat_proto::http::{self, RequestHead};

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Path, content type, body.
const FILES: &[(&str, &str, &str)] = &[
    (
        "/demo/",
        HTML,
        include_str!("../../clients/demo/index.html"),
    ),
    (
        "/demo/index.html",
        HTML,
        include_str!("../../clients/demo/index.html"),
    ),
    (
        "/demo/app.js",
        JS,
        include_str!("../../clients/demo/app.js"),
    ),
    (
        "/demo/style.css",
        CSS,
        include_str!("../../clients/demo/style.css"),
    ),
    (
        "/demo/sdk/index.js",
        JS,
        include_str!("../../clients/js/src/index.js"),
    ),
    (
        "/demo/sdk/client.js",
        JS,
        include_str!("../../clients/js/src/client.js"),
    ),
    (
        "/demo/sdk/codes.js",
        JS,
        include_str!("../../clients/js/src/codes.js"),
    ),
    (
        "/demo/sdk/emitter.js",
        JS,
        include_str!("../../clients/js/src/emitter.js"),
    ),
    (
        "/demo/sdk/outbox.js",
        JS,
        include_str!("../../clients/js/src/outbox.js"),
    ),
    (
        "/demo/sdk/sse.js",
        JS,
        include_str!("../../clients/js/src/sse.js"),
    ),
    (
        "/demo/sdk/token.js",
        JS,
        include_str!("../../clients/js/src/token.js"),
    ),
];

/// The response for a `GET` of `path` under `/demo`.
fn respond(enabled: bool, path: &str) -> Vec<u8> {
    if !enabled {
        return http::json_error_response(
            404,
            "not_found",
            "the demo page is off (config `demo = true` turns it on)",
        );
    }
    if path == "/demo" {
        return http::response(301, "", b"", &[("Location", "/demo/")]);
    }
    match FILES.iter().find(|(p, _, _)| *p == path) {
        Some((_, content_type, body)) => http::response(
            200,
            content_type,
            body.as_bytes(),
            &[("Cache-Control", "no-cache")],
        ),
        None => http::json_error_response(404, "not_found", "no such file"),
    }
}

/// Serves one `GET /demo...` request.
pub(crate) async fn serve(shard: &Rc<Shard>, stream: &mut TcpStream, head: &RequestHead) {
    let r = respond(shard.cfg().demo_enabled(), &head.path);
    let _ = stream.write_all(&r).await;
    let _ = stream.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_served_only_when_enabled() {
        let r = String::from_utf8(respond(true, "/demo/sdk/client.js")).unwrap_or_default();
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(r.contains("text/javascript"));
        assert!(String::from_utf8_lossy(&respond(false, "/demo/")).starts_with("HTTP/1.1 404"));
        assert!(String::from_utf8_lossy(&respond(true, "/demo")).contains("Location: /demo/"));
        assert!(String::from_utf8_lossy(&respond(true, "/demo/x")).starts_with("HTTP/1.1 404"));
    }
}
