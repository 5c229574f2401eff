//! The HTTP server: one native thread running a single-threaded tokio runtime, answering `/metrics`
//! from Rust-owned state; it never touches Python. Renders run on a small blocking pool beside it.

mod auth;
mod conn;
mod http;
mod live_config;
mod scrape_log;
mod shared;
mod stats;
mod tls;
pub mod web_config;

use std::collections::VecDeque;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::oneshot;

pub use conn::Limits;
use conn::{Close, Conn, Watched};
use http::http;
pub use live_config::LiveConfig;
pub use scrape_log::ScrapeLog;
use shared::Shared;
use stats::{Dropped, Stats};

use crate::distributed::Node;
use crate::errors::{ExporterError, Result};
use crate::log_once::LogOnce;

/// After a failed `accept()`, the pause before the next one: doubled while failures go on.
const ACCEPT_PAUSE: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(1));

/// Waits this long for renders under way when the server stops.
const STOP_GRACE: Duration = Duration::from_secs(1);

pub struct ServerHandle {
    stop: oneshot::Sender<()>,
    thread: JoinHandle<()>,
    addr: SocketAddr,
    scrapes: Arc<ScrapeLog>,
}

fn internal(e: impl std::fmt::Display) -> ExporterError {
    ExporterError::Internal(e.to_string())
}

fn bind(host: &str, port: u16) -> Result<TcpListener> {
    let shown = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let error = |source| ExporterError::Bind {
        addr: shown.clone(),
        source,
    };
    let mut last = std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, "no address found");
    for addr in (host, port).to_socket_addrs().map_err(error)? {
        // std sets SO_REUSEADDR; "::" also accepts IPv4 where the system allows it (Linux default).
        match TcpListener::bind(addr) {
            Ok(l) => return Ok(l),
            Err(e) => last = e,
        }
    }
    Err(error(last))
}

impl ServerHandle {
    /// Binds now (so errors reach the caller) and serves from a background thread.
    pub fn start(node: Arc<Node>, host: &str, port: u16, limits: Limits, web: Option<LiveConfig>) -> Result<Self> {
        let listener = bind(host, port)?;
        listener.set_nonblocking(true).map_err(internal)?;
        let addr = listener.local_addr().map_err(internal)?;
        let scrapes = Arc::new(ScrapeLog::new());
        let shared = Arc::new(Shared {
            stats: Stats::register(&node.registry)?,
            node,
            scrapes: scrapes.clone(),
            limits,
            addr,
            web,
            logged: LogOnce::default(),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .max_blocking_threads(limits.renders)
            .thread_name("lpe-render")
            .build()
            .map_err(internal)?;
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(listener).map_err(internal)?
        };
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("lpe-http".into())
            .spawn(move || {
                // The listener is dropped, and the port free, when `accept_loop` returns.
                runtime.block_on(accept_loop(listener, stopped, shared));
                runtime.shutdown_timeout(STOP_GRACE);
            })
            .map_err(internal)?;
        Ok(ServerHandle {
            stop,
            thread,
            addr,
            scrapes,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn scrape_log(&self) -> Arc<ScrapeLog> {
        self.scrapes.clone()
    }

    /// Stops serving; returns once the server thread is gone, and with it the listening socket.
    pub fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, mut stopped: oneshot::Receiver<()>, shared: Arc<Shared>) {
    let open = Arc::new(AtomicUsize::new(0));
    // Every connection accepted, oldest first: the candidates to make room at the limit.
    let mut accepted_conns: VecDeque<Weak<Conn>> = VecDeque::new();
    let mut pause = ACCEPT_PAUSE.0;
    loop {
        let accepted = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                pause = ACCEPT_PAUSE.0;
                if open.load(Ordering::Relaxed) >= shared.limits.connections {
                    shared.stats.dropped(Dropped::Limit);
                    if !make_room(&mut accepted_conns) {
                        // Every connection is answering a request: this one is closed by dropping it.
                        continue;
                    }
                }
                let conn = Arc::new(Conn::new());
                if accepted_conns.len() >= 2 * shared.limits.connections {
                    accepted_conns.retain(|c| c.strong_count() > 0);
                }
                accepted_conns.push_back(Arc::downgrade(&conn));
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(stream, conn, shared.clone(), Open::new(open.clone())));
            }
            Err(e) => {
                shared.stats.dropped(Dropped::AcceptError);
                let kind = format!("accept {}", e.raw_os_error().unwrap_or(-1));
                shared.log_once(&kind, || accept_error(shared.addr, &e));
                // The failed connection stays queued: without a pause the loop would spin on it.
                tokio::select! {
                    _ = &mut stopped => return,
                    _ = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(ACCEPT_PAUSE.1);
            }
        }
    }
}

/// Evicts the oldest connection not answering a request; false if there is none.
fn make_room(conns: &mut VecDeque<Weak<Conn>>) -> bool {
    let victim = conns.iter().position(|c| c.upgrade().is_some_and(|c| c.evictable()));
    match victim.and_then(|i| conns.remove(i)).and_then(|c| c.upgrade()) {
        Some(conn) => {
            conn.evict();
            true
        }
        None => false,
    }
}

/// One open connection, counted while its task lives.
struct Open(Arc<AtomicUsize>);

impl Open {
    fn new(count: Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Open(count)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn accept_error(addr: SocketAddr, e: &std::io::Error) -> String {
    const EMFILE: i32 = 24;
    const ENFILE: i32 = 23;
    let advice = match e.raw_os_error() {
        Some(EMFILE) => " The process is out of file descriptors: raise `ulimit -n`.",
        Some(ENFILE) => " The system is out of file descriptors.",
        _ => "",
    };
    format!("accepting a connection on {addr} failed: {e}.{advice} Retrying every second at most")
}

/// How a connection ended, before its watchdog closed it.
enum Ended {
    Http(hyper::Result<()>),
    /// Plain HTTP on the TLS port, answered 400.
    PlainHttp,
    HandshakeFailed,
    /// Closed by the client before its first byte.
    Gone,
}

async fn serve(stream: TcpStream, conn: Arc<Conn>, shared: Arc<Shared>, _open: Open) {
    let stats = &shared.stats;
    tokio::select! {
        ended = connection(stream, conn.clone(), shared.clone()) => match ended {
            // hyper answered the request itself before closing.
            Ended::Http(Err(e)) if e.is_parse_too_large() => {
                stats.response(431);
                stats.dropped(Dropped::TooLarge);
            }
            // An HTTP/2 preface gets no answer from hyper.
            Ended::Http(Err(e)) if e.is_parse_version_h2() => stats.dropped(Dropped::Malformed),
            Ended::Http(Err(e)) if e.is_parse() => {
                stats.response(400);
                stats.dropped(Dropped::Malformed);
            }
            Ended::PlainHttp => {
                stats.response(400);
                stats.dropped(Dropped::Malformed);
            }
            Ended::HandshakeFailed => stats.dropped(Dropped::Handshake),
            // A normal close, or the client gone mid-request or mid-answer (reset, closed early): the
            // client's doing, nothing the server could have answered.
            Ended::Http(_) | Ended::Gone => {}
        },
        // The watchdog's deadline from the connection's start bounds the TLS handshake too.
        why = conn.watchdog(&shared.limits) => match why {
            // Counted as `limit` when it happened.
            Close::Idle | Close::Evicted => {}
            Close::HeadTimeout => stats.dropped(Dropped::HeadTimeout),
            Close::WriteTimeout => stats.dropped(Dropped::WriteTimeout),
        },
    }
}

/// TLS first when the web config has it (the certificate in use when the connection came), then HTTP.
async fn connection(stream: TcpStream, conn: Arc<Conn>, shared: Arc<Shared>) -> Ended {
    let acceptor = shared.web.as_ref().and_then(|w| w.current().tls.clone());
    let Some(acceptor) = acceptor else {
        return Ended::Http(
            http(
                Watched {
                    io: stream,
                    conn: conn.clone(),
                },
                conn,
                shared,
            )
            .await,
        );
    };
    match tls::starts_tls(&stream).await {
        None => return Ended::Gone,
        Some(false) => {
            tls::refuse_plain_http(stream).await;
            return Ended::PlainHttp;
        }
        Some(true) => {}
    }
    match acceptor
        .accept(Watched {
            io: stream,
            conn: conn.clone(),
        })
        .await
    {
        Ok(stream) => Ended::Http(http(stream, conn, shared).await),
        Err(e) => {
            shared.log_once("tls handshake", || {
                format!(
                    "a TLS handshake on {} failed: {e} (each failure is counted in \
                     locust_exporter_connections_dropped_total{{reason=\"tls_handshake\"}})",
                    shared.addr
                )
            });
            Ended::HandshakeFailed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Instant;

    use crate::metrics::{Counter, Desc, Kind};

    const SHORT: Limits = Limits {
        head: Duration::from_millis(300),
        idle: Duration::from_millis(600),
        write_stall: Duration::from_millis(400),
        connections: 2,
        ..Limits::DEFAULT
    };

    fn connect(server: &ServerHandle) -> TcpStream {
        let stream = TcpStream::connect(server.addr()).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        stream
    }

    /// Reads one response head and its `Content-Length` body; the head as text.
    fn response(stream: &mut TcpStream) -> String {
        let mut head = Vec::new();
        let mut byte = [0u8];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(stream.read(&mut byte).unwrap(), 1, "closed before a response");
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map_or(0, |n| n.parse().unwrap());
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).unwrap();
        head
    }

    /// How long until the server closes the connection (reading and dropping what it sends).
    fn time_to_close(stream: &mut TcpStream) -> Duration {
        let start = Instant::now();
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).unwrap() > 0 {}
        start.elapsed()
    }

    #[test]
    fn slow_heads_and_idle_keep_alive_are_closed() {
        let server = ServerHandle::start(Arc::default(), "127.0.0.1", 0, SHORT, None).unwrap();
        let mut half = connect(&server);
        half.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").unwrap();
        let took = time_to_close(&mut half);
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_secs(2),
            "{took:?}"
        );

        let mut kept = connect(&server);
        for _ in 0..3 {
            kept.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            assert!(response(&mut kept).starts_with("HTTP/1.1 200"));
        }
        // Idle for longer than `head` but less than `idle`: still open.
        std::thread::sleep(Duration::from_millis(400));
        kept.write_all(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert!(response(&mut kept).starts_with("HTTP/1.1 404"));
        let took = time_to_close(&mut kept);
        assert!(
            took >= Duration::from_millis(550) && took < Duration::from_secs(3),
            "{took:?}"
        );
        server.shutdown();
    }

    #[test]
    fn at_the_limit_the_oldest_waiting_connection_makes_room() {
        let server = ServerHandle::start(
            Arc::default(),
            "127.0.0.1",
            0,
            Limits {
                head: Duration::from_secs(30),
                ..SHORT
            },
            None,
        )
        .unwrap();
        let mut slow: Vec<TcpStream> = (0..2).map(|_| connect(&server)).collect();
        for s in &mut slow {
            s.write_all(b"GET /").unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
        let mut scrape = connect(&server);
        scrape.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert!(response(&mut scrape).starts_with("HTTP/1.1 200"));
        assert!(
            time_to_close(&mut slow[0]) < Duration::from_secs(1),
            "the oldest was not evicted"
        );
        server.shutdown();
    }

    #[test]
    fn a_client_that_does_not_read_is_dropped() {
        // A body far larger than what the socket buffers hold.
        let node = Arc::new(Node::default());
        let family = node
            .registry
            .get_or_register::<Counter>(Desc::new("rust_test_big", "h", Kind::Counter, vec!["l".into()]).unwrap())
            .unwrap();
        let long = "x".repeat(200);
        for i in 0..60_000 {
            family.child(&[format!("{long}{i}")]).unwrap();
        }
        let server = ServerHandle::start(node, "127.0.0.1", 0, SHORT, None).unwrap();
        let mut stalled = connect(&server);
        stalled.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        // The stall counts from the answer's start, which waits for the render (slow in a debug build on
        // a busy machine): peek, which leaves the socket's buffers full, until the answer has begun.
        stalled.peek(&mut [0u8; 1]).unwrap();
        std::thread::sleep(Duration::from_millis(1_500));
        let start = Instant::now();
        let mut received = Vec::new();
        let mut sink = [0u8; 65536];
        loop {
            match stalled.read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&sink[..n]),
            }
        }
        assert!(received.starts_with(b"HTTP/1.1 200"));
        let received = received.len();
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "still open after the stall limit"
        );
        assert!(received < 60_000 * 200, "the whole body was sent: {received} bytes");
        server.shutdown();
    }

    #[test]
    fn shutdown_frees_the_port() {
        let server = ServerHandle::start(Arc::default(), "127.0.0.1", 0, Limits::DEFAULT, None).unwrap();
        let addr = server.addr();
        let _open = connect(&server);
        server.shutdown();
        assert!(std::net::TcpListener::bind(addr).is_ok());
    }
}
