//! Small single-purpose primitives: a cross-thread one-shot and a local
//! notification flag.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

struct OneshotInner<T> {
    value: Option<T>,
    waker: Option<Waker>,
    sender_gone: bool,
}

/// Sending half of a one-shot channel; usable from any thread.
pub(crate) struct OneshotSender<T>(Arc<Mutex<OneshotInner<T>>>);

/// Receiving half: a future resolving to `Some(value)`, or `None` when the
/// sender was dropped without sending.
pub(crate) struct OneshotReceiver<T>(Arc<Mutex<OneshotInner<T>>>);

/// A one-shot channel whose receiver may be awaited on a shard's executor
/// while the sender runs on a plain thread (the runtime's wakers are
/// `Send`: a foreign wake, `rt`).
pub(crate) fn oneshot<T>() -> (OneshotSender<T>, OneshotReceiver<T>) {
    let inner = Arc::new(Mutex::new(OneshotInner {
        value: None,
        waker: None,
        sender_gone: false,
    }));
    (OneshotSender(inner.clone()), OneshotReceiver(inner))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<T> OneshotSender<T> {
    /// Delivers the value and wakes the receiver.
    pub(crate) fn send(self, value: T) {
        let waker = {
            let mut g = lock(&self.0);
            g.value = Some(value);
            g.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Drop for OneshotSender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut g = lock(&self.0);
            g.sender_gone = true;
            g.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Future for OneshotReceiver<T> {
    type Output = Option<T>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut g = lock(&self.0);
        if let Some(v) = g.value.take() {
            return Poll::Ready(Some(v));
        }
        if g.sender_gone {
            return Poll::Ready(None);
        }
        g.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// A level-triggered wake-up flag for one waiting task on the same thread.
#[derive(Default)]
pub(crate) struct Notify {
    set: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Notify {
    /// Sets the flag and wakes the waiter, if any.
    pub(crate) fn notify(&self) {
        self.set.set(true);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// Waits until the flag is set, then clears it.
    pub(crate) fn notified(&self) -> impl Future<Output = ()> + '_ {
        futures_lite::future::poll_fn(move |cx| {
            if self.set.replace(false) {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Writes `bytes` and closes the connection.
pub(crate) async fn write_and_close(stream: &mut crate::rt::net::TcpStream, bytes: &[u8]) {
    use futures_lite::AsyncWriteExt;
    let _ = stream.write_all(bytes).await;
    let _ = stream.close().await;
}
