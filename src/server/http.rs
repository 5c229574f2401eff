//! One connection's HTTP: routing, the auth and rate checks, and `/metrics` rendered (and gzipped) off
//! the server's thread.

use std::convert::Infallible;
use std::io::Write;
use std::sync::Arc;

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
use tokio::io::{AsyncRead, AsyncWrite};

use super::auth;
use super::conn::{Conn, Reply};
use super::live_config::Applied;
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

async fn authorized(web: &Applied, request: &Request<Incoming>) -> bool {
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
            match render(shared.node.clone(), format, names, gzip).await {
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

    #[test]
    fn name_selection() {
        assert_eq!(selected_names("name[]=a_total&name%5B%5D=b&x=1"), vec!["a_total", "b"]);
        assert_eq!(selected_names("name[]=%61+b%"), vec!["a b%"]);
        assert!(selected_names("").is_empty());
    }
}
