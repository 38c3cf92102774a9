//! Delivering push jobs to the webhook: one JSON POST per job, retried with
//! exponential backoff, then appended to the dead-letter file. The notices,
//! their coalescing and the webhook address are the core's (`chat_core::push`).

use std::time::Duration;

use chat_core::push::{PushBatch, Webhook};
use futures_lite::{AsyncReadExt, AsyncWriteExt};

/// Why one delivery attempt failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PushError {
    /// No connection to the webhook.
    #[error("connect {addr}: {source}")]
    Connect {
        /// host:port.
        addr: String,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// Writing the request or reading the answer failed.
    #[error("webhook I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The webhook answered a status outside 2xx.
    #[error("webhook answered {0}")]
    Status(u16),
    /// The webhook closed without a complete response (or sent more than
    /// 16 KiB of head).
    #[error("webhook closed without a response")]
    NoResponse,
    /// No answer within the attempt's timeout.
    #[error("webhook timed out")]
    Timeout,
}

/// Posts `body` to the webhook once; Ok when it answered 2xx.
pub(crate) async fn post(hook: &Webhook, body: &[u8], timeout: Duration) -> Result<(), PushError> {
    let addr = format!("{}:{}", hook.host, hook.port);
    let attempt = async {
        let mut s = crate::rt::net::TcpStream::connect(addr.as_str())
            .await
            .map_err(|e| PushError::Connect {
                addr: addr.clone(),
                source: e,
            })?;
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            hook.path,
            hook.host,
            body.len()
        );
        s.write_all(head.as_bytes()).await?;
        s.write_all(body).await?;
        let mut buf = Vec::with_capacity(512);
        let mut chunk = [0u8; 512];
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            if let Ok(httparse::Status::Complete(_)) = resp.parse(&buf) {
                let code = resp.code.unwrap_or(0);
                return if (200..300).contains(&code) {
                    Ok(())
                } else {
                    Err(PushError::Status(code))
                };
            }
            let n = s.read(&mut chunk).await?;
            if n == 0 || buf.len() > 16 * 1024 {
                return Err(PushError::NoResponse);
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    crate::rt::timeout(timeout, attempt)
        .await
        .unwrap_or(Err(PushError::Timeout))
}

/// Delivers one job with retries; returns it when every attempt failed.
pub(crate) async fn deliver(
    hook: &Webhook,
    mut job: PushBatch,
    max_attempts: u32,
) -> Option<PushBatch> {
    let mut backoff = Duration::from_millis(200);
    loop {
        job.attempts += 1;
        let body = serde_json::to_vec(&job).unwrap_or_default();
        match post(hook, &body, Duration::from_secs(5)).await {
            Ok(()) => return None,
            Err(e) => {
                tracing::debug!(user = %job.user, attempt = job.attempts, error = %e, "push failed");
                if job.attempts >= max_attempts {
                    return Some(job);
                }
            }
        }
        crate::rt::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// Appends a failed job to the dead-letter file (blocking: run it off the
/// executor).
pub(crate) fn dead_letter(
    path: &std::path::Path,
    job: &PushBatch,
    error: &str,
) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let line = serde_json::json!({ "job": job, "error": error, "ts": crate::util::now_ms() });
    writeln!(f, "{line}")?;
    f.sync_data()
}
