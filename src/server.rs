//! The HTTP server: one native thread running a single-threaded tokio runtime, answering `/metrics`
//! from Rust-owned state; it never touches Python. Renders run on a small blocking pool beside it.

mod auth;
mod conn;
mod stats;
mod tls;
mod web;

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use flate2::write::GzEncoder;
use flate2::Compression;
use hyper::body::{Bytes, Incoming};
use hyper::header::{
    HeaderValue, ACCEPT, ACCEPT_ENCODING, ALLOW, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, VARY, WWW_AUTHENTICATE,
};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

pub use conn::Limits;
use conn::{Close, Conn, Reply, Watched};
use stats::{Dropped, Stats};
pub use web::Web;

use crate::errors::{ExporterError, Result};
use crate::exposition::{scrape_body, Format};
use crate::fork;
use crate::metrics::Registry;
use crate::scrape_log::ScrapeLog;

const INDEX: &str = "<!doctype html>\n<html><head><title>Locust Prometheus exporter</title></head>\n\
<body><h1>Locust Prometheus exporter</h1><p><a href=\"metrics\">Metrics</a></p></body></html>\n";

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

/// What every connection of one server shares.
struct Shared {
    /// What `/metrics` serves.
    registry: Arc<Registry>,
    /// When `/metrics` was scraped in full, for the end of a run.
    scrapes: Arc<ScrapeLog>,
    limits: Limits,
    stats: Stats,
    addr: SocketAddr,
    /// TLS, basic auth, headers and rate limit of a web config file; `None`: plain HTTP, open.
    web: Option<Web>,
    /// The kinds of error already logged (see `log_once`).
    logged: Mutex<HashSet<String>>,
}

impl Shared {
    /// Logs an error of the server's threads the first time its `kind` happens: they never call into
    /// Python's logging, so this goes to stderr. Every occurrence is counted in the server's own metrics.
    fn log_once(&self, kind: &str, message: impl FnOnce() -> String) {
        if self.logged.lock().insert(kind.to_string()) {
            eprintln!("locust-prometheus-exporter: {}; this error is logged once.", message());
        }
    }
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
    pub fn start(registry: Arc<Registry>, host: &str, port: u16, limits: Limits, web: Option<Web>) -> Result<Self> {
        let listener = bind(host, port)?;
        listener.set_nonblocking(true).map_err(internal)?;
        let addr = listener.local_addr().map_err(internal)?;
        let scrapes = Arc::new(ScrapeLog::new());
        let shared = Arc::new(Shared {
            stats: Stats::register(&registry)?,
            registry,
            scrapes: scrapes.clone(),
            limits,
            addr,
            web,
            logged: Mutex::new(HashSet::new()),
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

async fn http<IO>(io: IO, conn: Arc<Conn>, shared: Arc<Shared>) -> hyper::Result<()>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = {
        let shared = shared.clone();
        service_fn(move |request| respond(request, shared.clone(), conn.clone()))
    };
    let mut builder = http1::Builder::new();
    builder.max_header_size(shared.limits.header_bytes);
    builder.serve_connection(TokioIo::new(io), service).await
}

fn request_header(request: &Request<Incoming>, name: hyper::header::HeaderName) -> &str {
    request.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// The media ranges of an `Accept`-like header with their q-values.
fn ranges(value: &str) -> impl Iterator<Item = (String, f64, Vec<(String, String)>)> + '_ {
    value.split(',').filter_map(|part| {
        let mut pieces = part.split(';');
        let range = pieces.next()?.trim().to_ascii_lowercase();
        let mut q = 1.0;
        let mut params = Vec::new();
        for p in pieces {
            let (k, v) = p.split_once('=')?;
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().trim_matches('"').to_string());
            if k == "q" {
                q = v.parse().ok().filter(|q: &f64| (0.0..=1.0).contains(q))?;
            } else {
                params.push((k, v));
            }
        }
        (!range.is_empty()).then_some((range, q, params))
    })
}

/// OpenMetrics 1.0.0 or protobuf when the client prefers it by q-value, text 0.0.4 otherwise.
pub fn negotiate_format(accept: &str) -> Format {
    let mut best = (Format::Text, 0.0);
    for (range, q, params) in ranges(accept) {
        let version = params.iter().find(|(k, _)| k == "version").map(|(_, v)| v.as_str());
        let format = match (range.as_str(), version) {
            ("application/openmetrics-text", None | Some("1.0.0") | Some("0.0.1")) => Format::OpenMetrics,
            ("text/plain" | "text/*" | "*/*", _) => Format::Text,
            (range, _) if crate::protobuf_exposition::is_protobuf_range(range, &params) => Format::Protobuf,
            _ => continue,
        };
        if q > best.1 || (q == best.1 && q > 0.0 && format == Format::OpenMetrics) {
            best = (format, q);
        }
    }
    best.0
}

/// Whether `gzip` is acceptable: named (or `*`) with a q-value above zero.
pub fn accepts_gzip(accept_encoding: &str) -> bool {
    let mut star = false;
    for (coding, q, _) in ranges(accept_encoding) {
        match coding.as_str() {
            "gzip" => return q > 0.0,
            "*" => star = q > 0.0,
            _ => {}
        }
    }
    star
}

/// The `name[]` values of a query string, percent-decoded.
fn selected_names(query: &str) -> Vec<String> {
    form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "name[]")
        .map(|(_, v)| v.into_owned())
        .collect()
}

/// Renders (and compresses) off the server's thread; at most `Limits::renders` at once, the rest queue.
async fn render(
    registry: Arc<Registry>,
    format: Format,
    names: Vec<String>,
    gzip: bool,
) -> std::result::Result<(Vec<u8>, bool), tokio::task::JoinError> {
    tokio::task::spawn_blocking(move || {
        let body = {
            let _pass = fork::enter();
            scrape_body(&registry, format, &names)
        };
        match gzip.then(|| gzip_bytes(&body)).flatten() {
            Some(z) => (z, true),
            None => (body, false),
        }
    })
    .await
}

async fn respond(
    request: Request<Incoming>,
    shared: Arc<Shared>,
    conn: Arc<Conn>,
) -> std::result::Result<Response<Reply>, Infallible> {
    conn.request_started();
    // A full scrape (not HEAD, not a selection) is what the end of a run waits for.
    let full_scrape = (request.uri().path() == "/metrics"
        && *request.method() == Method::GET
        && selected_names(request.uri().query().unwrap_or("")).is_empty())
    .then(|| shared.scrapes.start());
    let web = shared.web.as_ref().map(|w| w.current());
    let mut headers = Vec::new();
    let (status, body) = match &web {
        Some(web) if !web.allow() => (
            StatusCode::TOO_MANY_REQUESTS,
            Bytes::from_static(b"Too Many Requests\n"),
        ),
        Some(web) if !authorized(web, &request).await => {
            headers.push((WWW_AUTHENTICATE, HeaderValue::from_static(auth::CHALLENGE)));
            (StatusCode::UNAUTHORIZED, Bytes::from_static(b"Unauthorized\n"))
        }
        _ => route(&request, &shared, &mut headers).await,
    };
    if let Some(web) = &web {
        headers.extend(web.headers.iter().cloned());
    }
    shared.stats.response(status.as_u16());
    // The length is known: hyper sends it as Content-Length (for HEAD too, without the body).
    let scrape = full_scrape.filter(|_| status == StatusCode::OK);
    let reply = Reply::new(body, conn).noting_scrape(scrape.map(|started| (shared.scrapes.clone(), started)));
    let mut response = Response::new(reply);
    *response.status_mut() = status;
    response.headers_mut().extend(headers);
    Ok(response)
}

async fn authorized(web: &web::Active, request: &Request<Incoming>) -> bool {
    match &web.users {
        Some(users) => users.check(request_header(request, AUTHORIZATION)).await,
        None => true,
    }
}

async fn route(
    request: &Request<Incoming>,
    shared: &Shared,
    headers: &mut Vec<(hyper::header::HeaderName, HeaderValue)>,
) -> (StatusCode, Bytes) {
    let path = request.uri().path();
    let known = matches!(path, "/" | "/metrics");
    let method_ok = matches!(*request.method(), Method::GET | Method::HEAD);
    match (known, method_ok) {
        (false, _) => (StatusCode::NOT_FOUND, Bytes::from_static(b"Not Found\n")),
        (true, false) => {
            headers.push((ALLOW, HeaderValue::from_static("GET, HEAD")));
            (
                StatusCode::METHOD_NOT_ALLOWED,
                Bytes::from_static(b"Method Not Allowed\n"),
            )
        }
        (true, true) if path == "/" => {
            headers.push((CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")));
            (StatusCode::OK, Bytes::from_static(INDEX.as_bytes()))
        }
        (true, true) => {
            let format = negotiate_format(request_header(request, ACCEPT));
            let gzip = accepts_gzip(request_header(request, ACCEPT_ENCODING));
            let names = selected_names(request.uri().query().unwrap_or(""));
            match render(shared.registry.clone(), format, names, gzip).await {
                Ok((body, gzipped)) => {
                    headers.push((CONTENT_TYPE, HeaderValue::from_static(format.content_type())));
                    headers.push((VARY, HeaderValue::from_static("Accept, Accept-Encoding")));
                    if gzipped {
                        headers.push((CONTENT_ENCODING, HeaderValue::from_static("gzip")));
                    }
                    (StatusCode::OK, Bytes::from(body))
                }
                // The render panicked; the server goes on.
                Err(e) => {
                    shared.log_once("render", || format!("rendering /metrics failed: {e} (answered 500)"));
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        Bytes::from_static(b"Internal Server Error\n"),
                    )
                }
            }
        }
    }
}

fn gzip_bytes(body: &[u8]) -> Option<Vec<u8>> {
    let mut enc = GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::fast());
    enc.write_all(body).ok()?;
    enc.finish().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpStream;
    use std::time::Instant;

    use crate::metrics::{Desc, Kind};

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
        let registry = Arc::new(Registry::default());
        let family = registry
            .get_or_register::<crate::metrics::Counter>(
                Desc::new("rust_test_big", "h", Kind::Counter, vec!["l".into()]).unwrap(),
            )
            .unwrap();
        let long = "x".repeat(200);
        for i in 0..60_000 {
            family.child(&[format!("{long}{i}")]).unwrap();
        }
        let server = ServerHandle::start(registry, "127.0.0.1", 0, SHORT, None).unwrap();
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

    const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
        version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

    #[test]
    fn format_negotiation() {
        assert_eq!(negotiate_format(PROMETHEUS_ACCEPT), Format::OpenMetrics);
        assert_eq!(negotiate_format(""), Format::Text);
        assert_eq!(negotiate_format("*/*"), Format::Text);
        assert_eq!(negotiate_format("foo/bar"), Format::Text);
        assert_eq!(negotiate_format(&",".repeat(10_000)), Format::Text);
        assert_eq!(
            negotiate_format("application/openmetrics-text;q=0.2,text/plain;q=0.9"),
            Format::Text
        );
        assert_eq!(
            negotiate_format("application/openmetrics-text;version=2.0.0"),
            Format::Text
        );
        assert_eq!(negotiate_format("application/openmetrics-text;q=0"), Format::Text);
        // What Prometheus sends once native histograms are enabled.
        let with_protobuf = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;\
            encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        assert_eq!(negotiate_format(with_protobuf), Format::Protobuf);
        assert_eq!(
            negotiate_format("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;q=0.9"),
            Format::Text,
            "not delimited"
        );
    }

    #[test]
    fn gzip_negotiation() {
        assert!(accepts_gzip("gzip"));
        assert!(accepts_gzip("br, gzip;q=0.5"));
        assert!(accepts_gzip("*"));
        for no in ["", "gzip;q=0", "identity", "br", "x-gzip", "notgzip", "*;q=0"] {
            assert!(!accepts_gzip(no), "{no}");
        }
    }

    #[test]
    fn name_selection() {
        assert_eq!(selected_names("name[]=a_total&name%5B%5D=b&x=1"), vec!["a_total", "b"]);
        assert_eq!(selected_names("name[]=%61+b%"), vec!["a b%"]);
        assert!(selected_names("").is_empty());
    }
}
