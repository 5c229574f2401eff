//! One connection's HTTP: routing, the auth and rate checks, and `/metrics` rendered (and gzipped) off
//! the server's thread.

use std::convert::Infallible;
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use flate2::write::GzEncoder;
use flate2::Compression;
use hyper::body::{Bytes, Incoming};
use hyper::header::{
    HeaderName, HeaderValue, ACCEPT, ACCEPT_ENCODING, ALLOW, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, VARY,
    WWW_AUTHENTICATE,
};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::auth::{self, Verdict};
use super::conn::{Conn, Reply};
use super::live_config::Live;
use super::shared::Shared;
use crate::distributed::Node;
use crate::exposition::{accepts_gzip, negotiate_format, scrape, Format};
use crate::fork;

const INDEX: &str = "<!doctype html>\n<html><head><title>Locust Prometheus exporter</title></head>\n\
<body><h1>Locust Prometheus exporter</h1><p><a href=\"metrics\">Metrics</a></p></body></html>\n";

pub async fn http<IO>(io: IO, conn: Arc<Conn>, shared: Arc<Shared>) -> hyper::Result<()>
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

/// The `name[]` values of a query string, percent-decoded.
fn selected_names(query: &str) -> Vec<String> {
    form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "name[]")
        .map(|(_, v)| v.into_owned())
        .collect()
}

/// Renders (and compresses) off the server's thread; at most `Limits::renders` at once, the rest queue.
async fn render(
    node: Arc<Node>,
    format: Format,
    names: Vec<String>,
    gzip: bool,
) -> std::result::Result<(Vec<u8>, bool), tokio::task::JoinError> {
    tokio::task::spawn_blocking(move || {
        let body = {
            let _pass = fork::enter();
            scrape(&node, format, &names)
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
    let began = Instant::now();
    let live = shared.live();
    let mut headers = Vec::new();
    // Before the request counts as being answered: a connection waiting for its password check is one
    // a newcomer may take the place of, so that a flood of wrong passwords cannot hold every slot.
    let refused = match &live {
        Some(live) => refusal(live, &request, &mut headers).await,
        None => None,
    };
    conn.request_started();
    let mut in_flight = None;
    let (status, body) = match refused {
        Some(refused) => refused,
        None => match shared.in_flight.clone().try_acquire_owned() {
            Ok(permit) => {
                in_flight = Some(permit);
                conn.admit();
                route(&request, &shared, &mut headers).await
            }
            Err(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                Bytes::from_static(b"Service Unavailable\n"),
            ),
        },
    };
    if let Some(Live::Valid(web)) = &live {
        headers.extend(web.headers.iter().cloned());
    }
    shared.stats.response(status.as_u16());
    // A full scrape answered (not HEAD, not a selection, not refused) is what the end of a run waits for.
    let full_scrape = status == StatusCode::OK
        && request.uri().path() == "/metrics"
        && *request.method() == Method::GET
        && selected_names(request.uri().query().unwrap_or("")).is_empty();
    if full_scrape {
        shared.scrapes.start(began);
    }
    // The length is known: hyper sends it as Content-Length (for HEAD too, without the body).
    let reply = Reply::new(body, conn)
        .noting_scrape(full_scrape.then(|| (shared.scrapes.clone(), began)))
        .in_flight(in_flight);
    let mut response = Response::new(reply);
    *response.status_mut() = status;
    response.headers_mut().extend(headers);
    Ok(response)
}

/// The answer to a request the web config refuses: the file is not valid, the rate limit, the password.
async fn refusal(
    live: &Live,
    request: &Request<Incoming>,
    headers: &mut Vec<(HeaderName, HeaderValue)>,
) -> Option<(StatusCode, Bytes)> {
    let web = match live {
        Live::Invalid(_) => {
            return Some((
                StatusCode::INTERNAL_SERVER_ERROR,
                Bytes::from_static(b"Internal Server Error\n"),
            ))
        }
        Live::Valid(web) => web,
    };
    if !web.allow() {
        return Some((
            StatusCode::TOO_MANY_REQUESTS,
            Bytes::from_static(b"Too Many Requests\n"),
        ));
    }
    match web.users.as_ref()?.check(request_header(request, AUTHORIZATION)).await {
        Verdict::Pass => None,
        Verdict::Fail => {
            headers.push((WWW_AUTHENTICATE, HeaderValue::from_static(auth::CHALLENGE)));
            Some((StatusCode::UNAUTHORIZED, Bytes::from_static(b"Unauthorized\n")))
        }
        Verdict::Busy => Some((
            StatusCode::SERVICE_UNAVAILABLE,
            Bytes::from_static(b"Service Unavailable\n"),
        )),
    }
}

async fn route(
    request: &Request<Incoming>,
    shared: &Shared,
    headers: &mut Vec<(HeaderName, HeaderValue)>,
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
            let rendered = render(shared.node.clone(), format, names, gzip).await;
            scrape_answer(rendered, format, headers, |message| {
                shared.log_once("render", || message)
            })
        }
    }
}

/// The answer to a scrape: what was rendered, or a 500 if the render panicked (logged; the server goes on).
fn scrape_answer(
    rendered: std::result::Result<(Vec<u8>, bool), tokio::task::JoinError>,
    format: Format,
    headers: &mut Vec<(HeaderName, HeaderValue)>,
    log: impl FnOnce(String),
) -> (StatusCode, Bytes) {
    match rendered {
        Ok((body, gzipped)) => {
            headers.push((CONTENT_TYPE, HeaderValue::from_static(format.content_type())));
            headers.push((VARY, HeaderValue::from_static("Accept, Accept-Encoding")));
            if gzipped {
                headers.push((CONTENT_ENCODING, HeaderValue::from_static("gzip")));
            }
            (StatusCode::OK, Bytes::from(body))
        }
        Err(e) => {
            log(format!("rendering /metrics failed: {e} (answered 500)"));
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Bytes::from_static(b"Internal Server Error\n"),
            )
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

    #[test]
    fn a_render_that_panicked_is_answered_500_and_logged() {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let panicked = runtime.block_on(async {
            tokio::task::spawn_blocking(|| -> (Vec<u8>, bool) { panic!("a render that fails") }).await
        });
        let (mut headers, mut logged) = (Vec::new(), None);
        let (status, body) = scrape_answer(panicked, Format::Text, &mut headers, |m| logged = Some(m));
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(&body[..], b"Internal Server Error\n");
        assert!(headers.is_empty(), "no Content-Type of an exposition");
        let logged = logged.expect("the failure is logged");
        assert!(logged.starts_with("rendering /metrics failed: ") && logged.ends_with("(answered 500)"));

        let (status, body) = scrape_answer(Ok((b"x 1\n".to_vec(), true)), Format::Text, &mut headers, |_| {
            panic!("nothing to log")
        });
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"x 1\n"[..]));
        assert!(headers.iter().any(|(n, v)| n == CONTENT_ENCODING && v == "gzip"));
    }

    #[test]
    fn name_selection() {
        assert_eq!(selected_names("name[]=a_total&name%5B%5D=b&x=1"), vec!["a_total", "b"]);
        assert_eq!(selected_names("name[]=%61+b%"), vec!["a b%"]);
        assert!(selected_names("").is_empty());
    }
}
