//! TCP on the shard runtime: non-blocking sockets that try the call first
//! and, when the kernel says "would block", wait for readiness with a
//! one-shot poll on the executor's ring (`rt::readable` / `rt::writable`).
//!
//! This serves the connections that are not the socket ring's sessions —
//! HTTP API calls, SSE streams, the demo page, outgoing push calls, and
//! WebSocket sessions when `socket_ring = false` — so it favours the
//! fewest moving parts over the last syscall: a read that has data costs
//! one `recv`, one that has none a `recv`, a poll and a second `recv`.
//! A pending poll is kept in the stream (a read cut short by a timeout
//! resumes it) and cancelled when the stream is dropped.

#![allow(unsafe_code)]

use std::future::Future;
use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};

use super::exec::{readable, writable, Op};

/// Polls a pending readiness op; `Ready` once it completed (it is then
/// cleared, and the call is to be tried again).
fn wait(op: &mut Option<Op>, cx: &mut Context<'_>) -> Poll<()> {
    if let Some(pending) = op {
        match Pin::new(pending).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(_) => *op = None,
        }
    }
    Poll::Ready(())
}

/// A connected TCP socket (non-blocking).
#[derive(Debug)]
pub struct TcpStream {
    // Declared before `inner`: a pending poll is cancelled before the
    // socket closes.
    read_wait: Option<Op>,
    write_wait: Option<Op>,
    inner: std::net::TcpStream,
}

impl TcpStream {
    /// Adopts a connected std stream (made non-blocking).
    ///
    /// # Errors
    ///
    /// When it cannot be made non-blocking.
    pub fn from_std(inner: std::net::TcpStream) -> io::Result<TcpStream> {
        inner.set_nonblocking(true)?;
        Ok(TcpStream {
            read_wait: None,
            write_wait: None,
            inner,
        })
    }

    /// Connects to the first address `addr` resolves to that answers.
    /// (Name resolution, if `addr` is a name, blocks the thread: the
    /// gateway connects out only to configured push endpoints.)
    ///
    /// # Errors
    ///
    /// Resolution and connection errors (the last address's).
    pub async fn connect(addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to");
        for a in addr.to_socket_addrs()? {
            match connect_one(a).await {
                Ok(s) => return Ok(s),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Shuts down one or both directions.
    ///
    /// # Errors
    ///
    /// As `shutdown(2)`.
    pub async fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.inner.shutdown(how)
    }

    /// The peer's address.
    ///
    /// # Errors
    ///
    /// As `getpeername(2)`.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }

    /// Disables Nagle's algorithm.
    ///
    /// # Errors
    ///
    /// As `setsockopt(2)`.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.inner.set_nodelay(on)
    }
}

async fn connect_one(addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_nonblocking(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
            let events = writable(socket.as_raw_fd()).await;
            if events < 0 {
                return Err(io::Error::from_raw_os_error(-events));
            }
            if let Some(e) = socket.take_error()? {
                return Err(e);
            }
        }
        Err(e) => return Err(e),
    }
    TcpStream::from_std(socket.into())
}

impl FromRawFd for TcpStream {
    /// # Safety
    ///
    /// `fd` is a connected TCP socket the caller owns and gives away.
    unsafe fn from_raw_fd(fd: RawFd) -> TcpStream {
        // SAFETY: the caller's promise.
        let inner = unsafe { std::net::TcpStream::from_raw_fd(fd) };
        // A socket that cannot be made non-blocking is not a socket: its
        // first read fails and ends the connection.
        let _ = inner.set_nonblocking(true);
        TcpStream {
            read_wait: None,
            write_wait: None,
            inner,
        }
    }
}

impl AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

impl AsyncRead for TcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            if wait(&mut this.read_wait, cx).is_pending() {
                return Poll::Pending;
            }
            match (&this.inner).read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    this.read_wait = Some(readable(this.inner.as_raw_fd()));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => return Poll::Ready(r),
            }
        }
    }
}

/// One non-blocking `send` without `SIGPIPE` (a peer gone is an error,
/// not a signal); also the socket ring's one-piece write.
pub(crate) fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of its length for the call.
    let n = unsafe {
        libc::send(
            fd,
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

impl AsyncWrite for TcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            if wait(&mut this.write_wait, cx).is_pending() {
                return Poll::Pending;
            }
            match send(this.inner.as_raw_fd(), buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    this.write_wait = Some(writable(this.inner.as_raw_fd()));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => return Poll::Ready(r),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Shuts the write side down (the peer reads end-of-stream); the socket
    /// closes when the stream is dropped.
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.inner.shutdown(Shutdown::Write))
    }
}

/// A listening TCP socket (non-blocking).
#[derive(Debug)]
pub struct TcpListener {
    wait: Option<Op>,
    inner: std::net::TcpListener,
}

impl TcpListener {
    /// Adopts a bound, listening std socket (made non-blocking).
    ///
    /// # Errors
    ///
    /// When it cannot be made non-blocking.
    pub fn from_std(inner: std::net::TcpListener) -> io::Result<TcpListener> {
        inner.set_nonblocking(true)?;
        Ok(TcpListener { wait: None, inner })
    }

    /// The next connection (non-blocking, close-on-exec).
    ///
    /// # Errors
    ///
    /// As `accept4(2)` (EMFILE and ENFILE among them: the caller backs off).
    pub async fn accept(&mut self) -> io::Result<TcpStream> {
        let fd = self.inner.as_raw_fd();
        std::future::poll_fn(|cx| loop {
            if wait(&mut self.wait, cx).is_pending() {
                return Poll::Pending;
            }
            // SAFETY: plain syscall; the new fd is owned by the stream.
            let s = unsafe {
                libc::accept4(
                    fd,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                )
            };
            if s >= 0 {
                // SAFETY: a new connected socket nothing else owns.
                let inner = unsafe { std::net::TcpStream::from_raw_fd(s) };
                return Poll::Ready(Ok(TcpStream {
                    read_wait: None,
                    write_wait: None,
                    inner,
                }));
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock => self.wait = Some(readable(fd)),
                io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted => {}
                _ => return Poll::Ready(Err(e)),
            }
        })
        .await
    }
}

impl IntoRawFd for TcpStream {
    fn into_raw_fd(mut self) -> RawFd {
        self.read_wait = None;
        self.write_wait = None;
        let TcpStream { inner, .. } = self;
        inner.into_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rt::{block_on, spawn, timeout};
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    use std::time::Duration;

    #[test]
    fn a_stream_carries_bytes_both_ways_and_close_ends_the_peers_reads() {
        block_on(async {
            let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = std_listener.local_addr().expect("addr");
            let mut listener = TcpListener::from_std(std_listener).expect("listener");
            let server = spawn(async move {
                let mut s = listener.accept().await.expect("accept");
                let mut buf = vec![0u8; 5];
                s.read_exact(&mut buf).await.expect("read");
                s.write_all(&buf).await.expect("echo");
                s.close().await.expect("close");
                s // kept open: the peer's read must end by the close alone
            });
            let mut c = TcpStream::connect(addr).await.expect("connect");
            // Nothing to read yet: the read waits (and is cut short here).
            let mut one = [0u8; 1];
            assert!(timeout(Duration::from_millis(20), c.read(&mut one))
                .await
                .is_err());
            c.write_all(b"hello").await.expect("write");
            let mut back = Vec::new();
            c.read_to_end(&mut back).await.expect("read to the end");
            assert_eq!(back, b"hello");
            drop(server.await);
        })
        .expect("an executor");
    }

    #[test]
    fn a_large_write_waits_for_the_peer_to_read() {
        block_on(async {
            let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = std_listener.local_addr().expect("addr");
            let mut listener = TcpListener::from_std(std_listener).expect("listener");
            let big = vec![7u8; 8 << 20];
            let len = big.len();
            let server = spawn(async move {
                let mut s = listener.accept().await.expect("accept");
                s.write_all(&big)
                    .await
                    .expect("a write larger than the buffers");
            });
            let mut c = TcpStream::connect(addr).await.expect("connect");
            crate::rt::sleep(Duration::from_millis(20)).await; // the writer fills the buffers
            let mut got = Vec::new();
            c.read_to_end(&mut got).await.expect("read");
            assert_eq!(got.len(), len);
            server.await;
        })
        .expect("an executor");
    }

    #[test]
    fn connecting_to_a_closed_port_fails() {
        block_on(async {
            let port = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
                l.local_addr().expect("addr").port()
            };
            let e = TcpStream::connect(("127.0.0.1", port))
                .await
                .expect_err("refused");
            assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        })
        .expect("an executor");
    }
}
