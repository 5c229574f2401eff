//! One connection's deadlines, kept from the bytes that move through it, whatever its transport.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::{Body, Bytes, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

use super::scrape_log::ScrapeLog;
use crate::clock;

/// What the server tolerates from its clients; see the README's limits table.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// From the connection's start, or from the first byte of a later request, to its complete head.
    pub head: Duration,
    /// Request line and headers.
    pub header_bytes: usize,
    /// Open connections. A new one beyond takes the place of the oldest that is not answering a
    /// request (slow or idle clients), or is closed at once when all are.
    pub connections: usize,
    /// A keep-alive connection waiting for its next request.
    pub idle: Duration,
    /// A response the client does not read.
    pub write_stall: Duration,
    /// Scrapes rendered (and compressed) at once, off the server's thread.
    pub renders: usize,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        head: Duration::from_secs(10),
        header_bytes: 16 * 1024,
        connections: 512,
        idle: Duration::from_secs(60),
        write_stall: Duration::from_secs(30),
        renders: 2,
    };

    /// How long a watchdog may sleep: any deadline set meanwhile lies further away than this.
    fn check_every(&self) -> Duration {
        self.head.min(self.idle).min(self.write_stall) / 2
    }
}

/// Why the watchdog closed a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Close {
    Idle,
    Evicted,
    HeadTimeout,
    WriteTimeout,
}

/// Milliseconds on the process clock, from 1: 0 stands for "not set" in `Conn`.
fn now_ms() -> u64 {
    clock::to_nanos(Instant::now()) / 1_000_000 + 1
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// A connection's state as its IO, its service and its watchdog see it (times from `now_ms`).
pub struct Conn {
    /// When it started waiting for a request: accepted, or its last response written.
    waiting_since: AtomicU64,
    /// First byte of the request head being awaited.
    head_since: AtomicU64,
    /// First write the client did not take since writes last went through.
    blocked_since: AtomicU64,
    /// A request is being answered.
    busy: AtomicBool,
    /// A request was answered: waiting now is keep-alive idleness, not a slow head.
    served: AtomicBool,
    /// Told to close, to make room for a new connection.
    evicted: Notify,
}

impl Conn {
    pub fn new() -> Self {
        Conn {
            waiting_since: AtomicU64::new(now_ms()),
            head_since: AtomicU64::new(0),
            blocked_since: AtomicU64::new(0),
            busy: AtomicBool::new(false),
            served: AtomicBool::new(false),
            evicted: Notify::new(),
        }
    }

    /// Whether it may be closed for a newcomer: it is not answering a request.
    pub fn evictable(&self) -> bool {
        !self.busy.load(Ordering::Relaxed)
    }

    pub fn evict(&self) {
        self.evicted.notify_one();
    }

    pub fn request_started(&self) {
        self.busy.store(true, Ordering::Relaxed);
        self.head_since.store(0, Ordering::Relaxed);
    }

    fn response_done(&self) {
        self.waiting_since.store(now_ms(), Ordering::Relaxed);
        self.served.store(true, Ordering::Relaxed);
        self.busy.store(false, Ordering::Relaxed);
    }

    fn bytes_read(&self) {
        if !self.busy.load(Ordering::Relaxed) && self.head_since.load(Ordering::Relaxed) == 0 {
            self.head_since.store(now_ms(), Ordering::Relaxed);
        }
    }

    fn write_progress(&self, blocked: bool) {
        if !blocked {
            self.blocked_since.store(0, Ordering::Relaxed);
        } else if self.blocked_since.load(Ordering::Relaxed) == 0 {
            self.blocked_since.store(now_ms(), Ordering::Relaxed);
        }
    }

    /// The time of the next check, or why to close now.
    fn check(&self, now: u64, limits: &Limits) -> std::result::Result<u64, Close> {
        let mut next = now + ms(limits.check_every()).max(1);
        let blocked = self.blocked_since.load(Ordering::Relaxed);
        if blocked != 0 {
            let deadline = blocked + ms(limits.write_stall);
            if now >= deadline {
                return Err(Close::WriteTimeout);
            }
            next = next.min(deadline);
        }
        if !self.busy.load(Ordering::Relaxed) {
            let head = self.head_since.load(Ordering::Relaxed);
            let waiting = self.waiting_since.load(Ordering::Relaxed);
            let (deadline, why) = if head != 0 {
                (head + ms(limits.head), Close::HeadTimeout)
            } else if self.served.load(Ordering::Relaxed) {
                (waiting + ms(limits.idle), Close::Idle)
            } else {
                (waiting + ms(limits.head), Close::HeadTimeout)
            };
            if now >= deadline {
                return Err(why);
            }
            next = next.min(deadline);
        }
        Ok(next)
    }

    /// Returns when the connection is to be closed, and why.
    pub async fn watchdog(&self, limits: &Limits) -> Close {
        tokio::select! {
            why = self.deadlines(limits) => why,
            _ = self.evicted.notified() => Close::Evicted,
        }
    }

    async fn deadlines(&self, limits: &Limits) -> Close {
        loop {
            let now = now_ms();
            match self.check(now, limits) {
                Err(why) => return why,
                Ok(next) => tokio::time::sleep(Duration::from_millis(next.saturating_sub(now))).await,
            }
        }
    }
}

/// The connection's transport (TCP now; TLS would wrap it the same way), reporting progress to `Conn`.
pub struct Watched<T> {
    pub io: T,
    pub conn: Arc<Conn>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.conn.bytes_read();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> Watched<T> {
    fn watch<R>(&self, polled: Poll<R>) -> Poll<R> {
        self.conn.write_progress(polled.is_pending());
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.watch(polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.watch(polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.watch(polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// A response body in one piece; dropping it (written, or cut short) ends the request for `Conn`.
pub struct Reply {
    data: Option<Bytes>,
    conn: Arc<Conn>,
    /// The start of the full scrape this answers, noted in the server's scrape log once the body is handed over.
    scrape: Option<(Arc<ScrapeLog>, Instant)>,
}

impl Reply {
    pub fn new(data: Bytes, conn: Arc<Conn>) -> Self {
        Reply {
            data: (!data.is_empty()).then_some(data),
            conn,
            scrape: None,
        }
    }

    pub fn noting_scrape(mut self, started: Option<(Arc<ScrapeLog>, Instant)>) -> Self {
        self.scrape = started;
        self
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        self.conn.response_done();
        // hyper drops the body once its last frame is taken and flushes in the same poll: a body
        // taken whole is an answered scrape; one dropped with data left is a client gone.
        if let (Some((log, started)), None) = (&self.scrape, &self.data) {
            log.answered(*started);
        }
    }
}

impl Body for Reply {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().data.take().map(|d| Ok(Frame::data(d))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        head: Duration::from_millis(100),
        idle: Duration::from_millis(600),
        write_stall: Duration::from_millis(300),
        ..Limits::DEFAULT
    };

    #[test]
    fn deadlines_follow_the_connection() {
        let conn = Arc::new(Conn::new());
        let t = conn.waiting_since.load(Ordering::Relaxed);
        // A new connection has `head` to send its request, byte or not.
        assert_eq!(conn.check(t + 99, &LIMITS), Ok(t + 100));
        assert_eq!(conn.check(t + 100, &LIMITS), Err(Close::HeadTimeout));
        conn.request_started();
        assert_eq!(
            conn.check(t + 1_000, &LIMITS),
            Ok(t + 1_050),
            "a busy connection has no read deadline"
        );
        conn.write_progress(true);
        let blocked = conn.blocked_since.load(Ordering::Relaxed);
        assert_eq!(conn.check(blocked + 299, &LIMITS), Ok(blocked + 300));
        assert_eq!(conn.check(blocked + 300, &LIMITS), Err(Close::WriteTimeout));
        conn.write_progress(false);
        drop(Reply::new(Bytes::from_static(b"x"), conn.clone()));
        // Answered: waiting for the next request is idleness, until its first byte.
        let done = conn.waiting_since.load(Ordering::Relaxed);
        assert_eq!(conn.check(done + 599, &LIMITS), Ok(done + 600));
        assert_eq!(conn.check(done + 600, &LIMITS), Err(Close::Idle));
        conn.bytes_read();
        let head = conn.head_since.load(Ordering::Relaxed);
        assert_eq!(conn.check(head + 100, &LIMITS), Err(Close::HeadTimeout));
    }
}
