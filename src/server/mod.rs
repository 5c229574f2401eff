//! The HTTP server: one native thread running a single-threaded tokio runtime, answering `/metrics`
//! from Rust-owned state; it never touches Python. Renders run on a small blocking pool beside it.

mod accept;
mod auth;
mod conn;
mod connection;
mod http;
mod listening;
mod live_config;
mod reserve;
mod scrape_log;
mod shared;
mod stats;
mod tls;
pub mod web_config;

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

pub use conn::Limits;
pub use live_config::LiveConfig;
pub use scrape_log::ScrapeLog;
use shared::Shared;
use stats::Stats;

use crate::distributed::Node;
use crate::errors::{ExporterError, Result};
use crate::log_once::LogOnce;

/// Waits this long for renders under way when the server stops.
const STOP_GRACE: Duration = Duration::from_secs(1);

pub struct ServerHandle {
    /// First: dropped (no longer listed for a forked child to close) before the listener closes.
    listening: listening::Listed,
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
        let listed = listening::Listed::new(&listener);
        // Held from now on, so that a scrape opens no descriptor.
        reserve::hold();
        {
            // The process metrics' files are kept under a lock that no fork may find taken.
            let _pass = crate::fork::enter();
            crate::metrics::hold_process_files();
        }
        let addr = listener.local_addr().map_err(internal)?;
        let scrapes = Arc::new(ScrapeLog::new());
        let shared = Arc::new(Shared {
            stats: Stats::register(&node.registry, web.is_some())?,
            node,
            scrapes: scrapes.clone(),
            limits,
            addr,
            web,
            logged: LogOnce::default(),
            in_flight: Arc::new(tokio::sync::Semaphore::new(limits.in_flight)),
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
                runtime.block_on(accept::accept_loop(listener, stopped, shared));
                runtime.shutdown_timeout(STOP_GRACE);
            })
            .map_err(internal)?;
        Ok(ServerHandle {
            listening: listed,
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
        let ServerHandle {
            listening,
            stop,
            thread,
            ..
        } = self;
        drop(listening);
        let _ = stop.send(());
        let _ = thread.join();
    }
}

/// In a forked child: the parent's listening sockets and spare descriptors are not the child's to hold
/// (a listening socket left open in a child would keep the parent's port bound after it closed).
pub fn forget_parent_sockets_after_fork() {
    listening::close_after_fork();
    reserve::forget_after_fork();
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
    fn a_scrapers_keep_alive_connection_makes_room_last() {
        let limits = Limits {
            head: Duration::from_secs(30),
            idle: Duration::from_secs(30),
            ..SHORT
        };
        let server = ServerHandle::start(Arc::default(), "127.0.0.1", 0, limits, None).unwrap();
        let mut kept = connect(&server);
        kept.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert!(response(&mut kept).starts_with("HTTP/1.1 200"));
        let mut slow = connect(&server);
        slow.write_all(b"GET /").unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let mut newcomer = connect(&server);
        newcomer.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert!(response(&mut newcomer).starts_with("HTTP/1.1 200"));
        // The slow head made room, though the idle keep-alive connection is older.
        assert!(time_to_close(&mut slow) < Duration::from_secs(1));
        kept.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert!(response(&mut kept).starts_with("HTTP/1.1 200"));
        server.shutdown();
    }

    /// Metrics whose body is far larger than what the socket buffers hold.
    fn big_node() -> Arc<Node> {
        let node = Arc::new(Node::default());
        let family = node
            .registry
            .get_or_register::<Counter>(Desc::new("rust_test_big", "h", Kind::Counter, vec!["l".into()]).unwrap())
            .unwrap();
        let long = "x".repeat(200);
        for i in 0..60_000 {
            family.child(&[format!("{long}{i}")]).unwrap();
        }
        node
    }

    #[test]
    fn past_the_requests_in_flight_the_answer_is_503() {
        let limits = Limits {
            in_flight: 1,
            head: Duration::from_secs(30),
            idle: Duration::from_secs(30),
            ..SHORT
        };
        let server = ServerHandle::start(big_node(), "127.0.0.1", 0, limits, None).unwrap();
        let mut rendering = connect(&server);
        rendering
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        // Sent while the first is still being rendered (for tens of milliseconds at least).
        let mut other = connect(&server);
        other.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert!(response(&mut other).starts_with("HTTP/1.1 503"));
        assert!(response(&mut rendering).starts_with("HTTP/1.1 200"));
        other.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert!(
            response(&mut other).starts_with("HTTP/1.1 200"),
            "its place is free again"
        );
        server.shutdown();
    }

    #[test]
    fn a_client_that_does_not_read_is_dropped() {
        let node = big_node();
        let server = ServerHandle::start(node.clone(), "127.0.0.1", 0, SHORT, None).unwrap();
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
        // Counted by its reason (when the watchdog's branch has run: it may follow the close by a moment).
        let counted = "locust_exporter_connections_dropped_total{reason=\"write_timeout\"} 1.0\n";
        let only = ["locust_exporter_connections_dropped_total".to_string()];
        let deadline = Instant::now() + Duration::from_secs(5);
        while !crate::exposition::registry_text(&node, crate::exposition::Format::Text, &only).contains(counted) {
            assert!(Instant::now() < deadline, "no write_timeout counted");
            std::thread::sleep(Duration::from_millis(20));
        }
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
