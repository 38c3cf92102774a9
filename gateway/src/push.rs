//! Push notifications for members with no online device.
//!
//! When a DM or group message is committed, its owner tells the owner shard
//! of every other member (`ShardMsg::Notify`). The member's owner knows the
//! member's devices: if none is connected, the notification is queued for
//! that user. Queued notifications are coalesced per user for
//! `push_coalesce_ms` and sent as one JSON POST to the configured webhook
//! (`push_webhook`, plain `http://host:port/path`). A failed delivery (no
//! connection, a non-2xx status, a timeout) is retried with exponential
//! backoff; after `push_max_attempts` the job is appended to
//! `<data_dir>/push-dead-letter.jsonl` (one JSON object per line) so nothing
//! is silently lost.
//!
//! The queue is in memory: jobs not yet delivered when the process stops
//! are lost (the messages themselves are durable; a client catches up with
//! `since`). Durable push queues are future work.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use serde::Serialize;

/// One message a user should hear about.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Notice {
    pub(crate) channel: Arc<str>,
    pub(crate) seq: u64,
    pub(crate) from: Arc<str>,
    /// The first 200 characters of the text.
    pub(crate) preview: String,
}

/// The webhook's body: everything coalesced for one user.
#[derive(Debug, Serialize)]
pub(crate) struct Job {
    pub(crate) user: Arc<str>,
    pub(crate) notifications: Vec<Notice>,
    /// Delivery attempts so far (in the dead-letter record: all of them).
    pub(crate) attempts: u32,
}

/// Notices gathered per user until their coalescing window ends.
#[derive(Default)]
pub(crate) struct Pending {
    users: HashMap<Arc<str>, (u64, Vec<Notice>)>,
}

impl Pending {
    /// Queues a notice; the first one of a window fixes when it is sent.
    pub(crate) fn add(&mut self, user: Arc<str>, notice: Notice, send_at_ms: u64) {
        let e = self.users.entry(user).or_insert((send_at_ms, Vec::new()));
        e.1.push(notice);
    }

    /// Jobs whose window ended at `now_ms`.
    pub(crate) fn due(&mut self, now_ms: u64) -> Vec<Job> {
        let users: Vec<Arc<str>> = self
            .users
            .iter()
            .filter(|(_, (t, _))| *t <= now_ms)
            .map(|(u, _)| u.clone())
            .collect();
        users
            .into_iter()
            .filter_map(|u| {
                self.users.remove(&u).map(|(_, notifications)| Job {
                    user: u,
                    notifications,
                    attempts: 0,
                })
            })
            .collect()
    }
}

/// The first `n` characters of `text`.
pub(crate) fn preview(text: &str, n: usize) -> String {
    text.chars().take(n).collect()
}

/// A parsed `http://host:port/path` webhook address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Webhook {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) path: String,
}

impl Webhook {
    /// Parses a plain-HTTP URL (TLS is not supported: terminate it in a
    /// local relay).
    pub(crate) fn parse(url: &str) -> Result<Webhook, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("push_webhook must be an http:// URL, not {url:?}"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| format!("bad port in {url:?}"))?),
            None => (authority, 80),
        };
        if host.is_empty() {
            return Err(format!("no host in {url:?}"));
        }
        Ok(Webhook {
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }
}

/// Posts `body` to the webhook once; Ok when it answered 2xx.
pub(crate) async fn post(hook: &Webhook, body: &[u8], timeout: Duration) -> Result<(), String> {
    let addr = format!("{}:{}", hook.host, hook.port);
    let attempt = async {
        let mut s = glommio::net::TcpStream::connect(addr.as_str())
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            hook.path,
            hook.host,
            body.len()
        );
        s.write_all(head.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        s.write_all(body).await.map_err(|e| e.to_string())?;
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
                    Err(format!("webhook answered {code}"))
                };
            }
            let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 || buf.len() > 16 * 1024 {
                return Err("webhook closed without a response".into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    glommio::timer::timeout(timeout, async { Ok(attempt.await) })
        .await
        .unwrap_or_else(|_| Err("webhook timed out".into()))
}

/// Delivers one job with retries; returns it when every attempt failed.
pub(crate) async fn deliver(hook: &Webhook, mut job: Job, max_attempts: u32) -> Option<Job> {
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
        glommio::timer::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// Appends a failed job to the dead-letter file (blocking: run it off the
/// executor).
pub(crate) fn dead_letter(path: &std::path::Path, job: &Job, error: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let line = serde_json::json!({ "job": job, "error": error, "ts": crate::util::now_ms() });
    writeln!(f, "{line}")?;
    f.sync_data()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn webhook_urls_parse_and_tls_is_refused() {
        assert_eq!(
            Webhook::parse("http://127.0.0.1:9000/hook").unwrap(),
            Webhook {
                host: "127.0.0.1".into(),
                port: 9000,
                path: "/hook".into()
            }
        );
        assert_eq!(Webhook::parse("http://example").unwrap().port, 80);
        assert!(Webhook::parse("https://x/y").is_err());
        assert!(Webhook::parse("http://:80/").is_err());
    }

    #[test]
    fn notices_coalesce_per_user_until_due() {
        let mut p = Pending::default();
        let n = |seq| Notice {
            channel: Arc::from("dm:a:b"),
            seq,
            from: Arc::from("a"),
            preview: "hi".into(),
        };
        p.add(Arc::from("b"), n(1), 100);
        p.add(Arc::from("b"), n(2), 150);
        assert!(p.due(99).is_empty());
        let jobs = p.due(100);
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].notifications.len(), 2);
        assert!(p.due(1000).is_empty());
    }
}
