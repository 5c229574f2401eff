//! The HTTP server: one native thread running a single-threaded tokio runtime, answering `/metrics`
//! from Rust-owned state; it never touches Python. Renders run on a small blocking pool beside it.

mod conn;
mod stats;

use std::collections::HashSet;
use std::convert::Infallible;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use flate2::write::GzEncoder;
use flate2::Compression;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ACCEPT, ACCEPT_ENCODING, ALLOW, CONTENT_ENCODING, CONTENT_TYPE, VARY};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

pub use conn::Limits;
use conn::{Close, Conn, Reply, Watched};
use stats::{Dropped, Stats};

use crate::errors::{ExporterError, Result};
use crate::exposition::{scrape, Format};
use crate::fork;
use crate::metrics::global;

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
}

/// What every connection of one server shares.
struct Shared {
    limits: Limits,
    stats: Stats,
    addr: SocketAddr,
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
    pub fn start(host: &str, port: u16, limits: Limits) -> Result<Self> {
        let listener = bind(host, port)?;
        listener.set_nonblocking(true).map_err(internal)?;
        let addr = listener.local_addr().map_err(internal)?;
        let shared = Arc::new(Shared {
            limits,
            stats: Stats::register(global())?,
            addr,
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
        Ok(ServerHandle { stop, thread, addr })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving; returns once the server thread is gone, and with it the listening socket.
    pub fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, mut stopped: oneshot::Receiver<()>, shared: Arc<Shared>) {
    let open = Arc::new(Semaphore::new(shared.limits.connections));
    let mut pause = ACCEPT_PAUSE.0;
    let mut logged = HashSet::new();
    loop {
        let accepted = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                pause = ACCEPT_PAUSE.0;
                match open.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let _ = stream.set_nodelay(true);
                        tokio::spawn(serve(stream, shared.clone(), permit));
                    }
                    // Dropping the stream closes it.
                    Err(_) => shared.stats.dropped(Dropped::Limit),
                }
            }
            Err(e) => {
                shared.stats.dropped(Dropped::AcceptError);
                if logged.insert(e.raw_os_error().unwrap_or(-1)) {
                    log_accept_error(shared.addr, &e);
                }
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

/// Once per kind of error and server: the server thread does not call into Python's logging.
fn log_accept_error(addr: SocketAddr, e: &std::io::Error) {
    const EMFILE: i32 = 24;
    const ENFILE: i32 = 23;
    let advice = match e.raw_os_error() {
        Some(EMFILE) => " The process is out of file descriptors: raise `ulimit -n`.",
        Some(ENFILE) => " The system is out of file descriptors.",
        _ => "",
    };
    eprintln!(
        "locust-prometheus-exporter: accepting a connection on {addr} failed: {e}.{advice} \
         Retrying every second at most; this error is logged once."
    );
}

async fn serve<IO>(io: IO, shared: Arc<Shared>, _permit: OwnedSemaphorePermit)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = Arc::new(Conn::new());
    let io = TokioIo::new(Watched { io, conn: conn.clone() });
    let service = {
        let (shared, conn) = (shared.clone(), conn.clone());
        service_fn(move |request| respond(request, shared.clone(), conn.clone()))
    };
    let mut builder = http1::Builder::new();
    builder.max_header_size(shared.limits.header_bytes);
    let stats = &shared.stats;
    tokio::select! {
        served = builder.serve_connection(io, service) => match served {
            // hyper answered the request itself before closing.
            Err(e) if e.is_parse_too_large() => {
                stats.response(431);
                stats.dropped(Dropped::TooLarge);
            }
            Err(e) if e.is_parse() => {
                stats.response(400);
                stats.dropped(Dropped::Malformed);
            }
            _ => {}
        },
        why = conn.watchdog(&shared.limits) => match why {
            Close::Idle => {}
            Close::HeadTimeout => stats.dropped(Dropped::HeadTimeout),
            Close::WriteTimeout => stats.dropped(Dropped::WriteTimeout),
        },
    }
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

/// OpenMetrics 1.0.0 when the client prefers it by q-value, text 0.0.4 otherwise.
pub fn negotiate_format(accept: &str) -> Format {
    let mut best = (Format::Text, 0.0);
    for (range, q, params) in ranges(accept) {
        let version = params.iter().find(|(k, _)| k == "version").map(|(_, v)| v.as_str());
        let format = match (range.as_str(), version) {
            ("application/openmetrics-text", None | Some("1.0.0") | Some("0.0.1")) => Format::OpenMetrics,
            ("text/plain" | "text/*" | "*/*", _) => Format::Text,
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
async fn render(format: Format, names: Vec<String>, gzip: bool) -> Option<(Vec<u8>, bool)> {
    tokio::task::spawn_blocking(move || {
        let body = {
            let _pass = fork::enter();
            scrape(global(), format, &names).into_bytes()
        };
        match gzip.then(|| gzip_bytes(&body)).flatten() {
            Some(z) => (z, true),
            None => (body, false),
        }
    })
    .await
    .ok()
}

async fn respond(
    request: Request<Incoming>,
    shared: Arc<Shared>,
    conn: Arc<Conn>,
) -> std::result::Result<Response<Reply>, Infallible> {
    conn.request_started();
    let path = request.uri().path();
    let known = matches!(path, "/" | "/metrics");
    let method_ok = matches!(*request.method(), Method::GET | Method::HEAD);
    let mut headers = Vec::new();
    let (status, body) = match (known, method_ok) {
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
            let format = negotiate_format(request_header(&request, ACCEPT));
            let gzip = accepts_gzip(request_header(&request, ACCEPT_ENCODING));
            let names = selected_names(request.uri().query().unwrap_or(""));
            match render(format, names, gzip).await {
                Some((body, gzipped)) => {
                    headers.push((CONTENT_TYPE, HeaderValue::from_static(format.content_type())));
                    headers.push((VARY, HeaderValue::from_static("Accept, Accept-Encoding")));
                    if gzipped {
                        headers.push((CONTENT_ENCODING, HeaderValue::from_static("gzip")));
                    }
                    (StatusCode::OK, Bytes::from(body))
                }
                // The render panicked; the server goes on.
                None => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Bytes::from_static(b"Internal Server Error\n"),
                ),
            }
        }
    };
    shared.stats.response(status.as_u16());
    // The length is known: hyper sends it as Content-Length (for HEAD too, without the body).
    let mut response = Response::new(Reply::new(body, conn));
    *response.status_mut() = status;
    response.headers_mut().extend(headers);
    Ok(response)
}

fn gzip_bytes(body: &[u8]) -> Option<Vec<u8>> {
    let mut enc = GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::fast());
    enc.write_all(body).ok()?;
    enc.finish().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

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
