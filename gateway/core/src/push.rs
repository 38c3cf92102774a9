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
//! This module holds the notices, the coalescing and the webhook address;
//! the delivery (HTTP, retries, the dead-letter file) is the gateway's
//! `push.rs`.
//!
//! The queue is in memory: jobs not yet delivered when the process stops
//! are lost (the messages themselves are durable; a client catches up with
//! `since`). Durable push queues are future work.

use chat_model::{Channel, Seq};
use serde::Serialize;
use std::sync::Arc;

use crate::maps::Map;

/// One message a user should hear about.
#[derive(Clone, Debug, Serialize)]
pub struct Notice {
    pub channel: Channel,
    pub seq: Seq,
    pub from: Arc<str>,
    /// The first 200 characters of the text.
    pub preview: String,
}

/// The webhook's body: everything coalesced for one user.
#[derive(Debug, Serialize)]
pub struct PushBatch {
    pub user: Arc<str>,
    pub notifications: Vec<Notice>,
    /// Delivery attempts so far (in the dead-letter record: all of them).
    pub attempts: u32,
}

/// Notices gathered per user until their coalescing window ends.
#[derive(Default)]
pub(crate) struct Pending {
    users: Map<Arc<str>, (u64, Vec<Notice>)>,
}

impl Pending {
    /// Queues a notice; the first one of a window fixes when it is sent.
    pub(crate) fn add(&mut self, user: Arc<str>, notice: Notice, send_at_ms: u64) {
        let e = self.users.entry(user).or_insert((send_at_ms, Vec::new()));
        e.1.push(notice);
    }

    /// Jobs whose window ended at `now_ms`.
    pub(crate) fn due(&mut self, now_ms: u64) -> Vec<PushBatch> {
        let users: Vec<Arc<str>> = self
            .users
            .iter()
            .filter(|(_, (t, _))| *t <= now_ms)
            .map(|(u, _)| u.clone())
            .collect();
        users
            .into_iter()
            .filter_map(|u| {
                self.users.remove(&u).map(|(_, notifications)| PushBatch {
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

/// What is wrong with a webhook URL.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    /// Not `http://…` (TLS is not supported: terminate it in a local relay).
    #[error("push_webhook must be an http:// URL, not {0:?}")]
    NotHttp(String),
    /// The port is not a number in 0..=65535.
    #[error("bad port in {0:?}")]
    BadPort(String),
    /// No host before the port or path.
    #[error("no host in {0:?}")]
    NoHost(String),
}

/// A parsed `http://host:port/path` webhook address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Webhook {
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl Webhook {
    /// Parses a plain-HTTP URL (TLS is not supported: terminate it in a
    /// local relay).
    pub fn parse(url: &str) -> Result<Webhook, WebhookError> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| WebhookError::NotHttp(url.to_owned()))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse()
                    .map_err(|_| WebhookError::BadPort(url.to_owned()))?,
            ),
            None => (authority, 80),
        };
        if host.is_empty() {
            return Err(WebhookError::NoHost(url.to_owned()));
        }
        Ok(Webhook {
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }
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
        assert!(matches!(
            Webhook::parse("https://x/y"),
            Err(WebhookError::NotHttp(_))
        ));
        assert!(matches!(
            Webhook::parse("http://:80/"),
            Err(WebhookError::NoHost(_))
        ));
        assert!(matches!(
            Webhook::parse("http://h:99999/"),
            Err(WebhookError::BadPort(_))
        ));
    }

    #[test]
    fn notices_coalesce_per_user_until_due() {
        let mut p = Pending::default();
        let n = |seq| Notice {
            channel: Channel::from_validated(Arc::from("dm:a:b")),
            seq: Seq(seq),
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
