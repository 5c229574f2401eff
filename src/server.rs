//! The HTTP server: native threads that answer `/metrics` from Rust-owned state, never touching Python.

use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use flate2::write::GzEncoder;
use flate2::Compression;
use tiny_http::{Header, Method, Request, Response};

use crate::errors::{no_panic, ExporterError, Result};
use crate::exposition::{scrape, Format};
use crate::metrics::global;
use crate::scrape_log::scrape_log;

const HANDLER_THREADS: usize = 2;
const POLL: Duration = Duration::from_millis(200);

const INDEX: &str = "<!doctype html>\n<html><head><title>Locust Prometheus exporter</title></head>\n\
<body><h1>Locust Prometheus exporter</h1><p><a href=\"metrics\">Metrics</a></p></body></html>\n";

pub struct ServerHandle {
    server: Arc<tiny_http::Server>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    addr: SocketAddr,
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
    /// Binds now (so errors reach the caller) and serves from background threads.
    pub fn start(host: &str, port: u16) -> Result<Self> {
        let listener = bind(host, port)?;
        let addr = listener
            .local_addr()
            .map_err(|e| ExporterError::Internal(e.to_string()))?;
        let server = Arc::new(
            tiny_http::Server::from_listener(listener, None).map_err(|e| ExporterError::Internal(e.to_string()))?,
        );
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for i in 0..HANDLER_THREADS {
            let (server, stop) = (server.clone(), stop.clone());
            let thread = std::thread::Builder::new()
                .name(format!("lpe-http-{i}"))
                .spawn(move || serve(&server, &stop))
                .map_err(|e| ExporterError::Internal(e.to_string()))?;
            threads.push(thread);
        }
        Ok(ServerHandle {
            server,
            stop,
            threads,
            addr,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the handler threads and closes the socket, so the port can be bound again.
    pub fn shutdown(self) {
        self.stop.store(true, Ordering::SeqCst);
        for _ in &self.threads {
            self.server.unblock();
        }
        for t in self.threads {
            let _ = t.join();
        }
        // The last handle: tiny_http wakes its accept thread, which closes the socket on its way out.
        drop(self.server);
        wait_until_closed(self.addr);
    }
}

/// tiny_http does not join its accept thread; wait (briefly) until the port refuses connections,
/// so that the caller may bind it again at once.
fn wait_until_closed(addr: SocketAddr) {
    let probe = match addr.ip() {
        ip if ip.is_unspecified() && addr.is_ipv4() => SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port())),
        ip if ip.is_unspecified() => SocketAddr::from((Ipv6Addr::LOCALHOST, addr.port())),
        _ => addr,
    };
    for _ in 0..200 {
        if TcpStream::connect_timeout(&probe, POLL).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn serve(server: &tiny_http::Server, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        if let Ok(Some(request)) = server.recv_timeout(POLL) {
            // A panic here drops the request, which tiny_http answers with a 500; the thread lives on.
            let _ = no_panic(|| {
                respond(request);
                Ok(())
            });
        }
    }
}

/// Adds a header; only our own ASCII constants reach here, so parsing does not fail.
fn with_header<R: std::io::Read>(response: Response<R>, name: &str, value: &str) -> Response<R> {
    match Header::from_bytes(name.as_bytes(), value.as_bytes()) {
        Ok(h) => response.with_header(h),
        Err(()) => response,
    }
}

fn request_header<'a>(request: &'a Request, name: &'static str) -> &'a str {
    request
        .headers()
        .iter()
        .find(|h| h.field.equiv(name))
        .map(|h| h.value.as_str())
        .unwrap_or("")
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
fn selected_names(url: &str) -> Vec<String> {
    let Some((_, query)) = url.split_once('?') else {
        return Vec::new();
    };
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(k, _)| matches!(*k, "name[]" | "name%5B%5D" | "name%5b%5d"))
        .map(|(_, v)| percent_decode(v))
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn respond(request: Request) {
    let path = request.url().split('?').next().unwrap_or("");
    let known = matches!(path, "/" | "/metrics");
    let method_ok = matches!(request.method(), Method::Get | Method::Head);
    // A full scrape (not HEAD, not a selection) is what the end of a run waits for.
    let full_scrape =
        (path == "/metrics" && *request.method() == Method::Get && selected_names(request.url()).is_empty())
            .then(|| scrape_log().start());
    let response = match (known, method_ok) {
        (false, _) => Response::from_string("Not Found\n").with_status_code(404),
        (true, false) => with_header(
            Response::from_string("Method Not Allowed\n").with_status_code(405),
            "Allow",
            "GET, HEAD",
        ),
        (true, true) if path == "/" => {
            with_header(Response::from_string(INDEX), "Content-Type", "text/html; charset=utf-8")
        }
        (true, true) => {
            let format = negotiate_format(request_header(&request, "Accept"));
            let body = scrape(global(), format, &selected_names(request.url())).into_bytes();
            let gzip = accepts_gzip(request_header(&request, "Accept-Encoding"));
            let compressed = if gzip { gzip_bytes(&body) } else { None };
            let response = match compressed {
                Some(z) => with_header(Response::from_data(z), "Content-Encoding", "gzip"),
                None => Response::from_data(body),
            }
            // The length is known: send it, rather than tiny_http's chunked encoding for large bodies.
            .with_chunked_threshold(usize::MAX);
            with_header(
                with_header(response, "Content-Type", format.content_type()),
                "Vary",
                "Accept, Accept-Encoding",
            )
        }
    };
    // The client may have gone; nothing to do about it.
    if request.respond(response).is_ok() {
        if let Some(started) = full_scrape {
            scrape_log().answered(started);
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
        assert_eq!(
            selected_names("/metrics?name[]=a_total&name%5B%5D=b&x=1"),
            vec!["a_total", "b"]
        );
        assert_eq!(selected_names("/metrics?name[]=%61+b%"), vec!["a b%"]);
        assert!(selected_names("/metrics").is_empty());
    }
}
