//! One accepted connection, from its first byte to its close: TLS when the server has it, then HTTP, each
//! end counted by why it ended.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::conn::{Close, Conn, Watched};
use super::http::http;
use super::reserve;
use super::shared::Shared;
use super::stats::Dropped;
use super::tls;

/// How a connection ended, before its watchdog closed it.
enum Ended {
    Http(hyper::Result<()>),
    /// Plain HTTP on the TLS port, answered 400.
    PlainHttp,
    HandshakeFailed,
    /// Closed by the client before its first byte.
    Gone,
}

pub async fn serve(stream: reserve::Stream, conn: Arc<Conn>, shared: Arc<Shared>, _open: Open) {
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

/// TLS first when the server started with it (with the certificate in use when the connection came), then HTTP.
async fn connection(mut stream: reserve::Stream, conn: Arc<Conn>, shared: Arc<Shared>) -> Ended {
    if !shared.web.as_ref().is_some_and(|w| w.tls()) {
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
            tls::refuse_plain_http(&mut stream).await;
            return Ended::PlainHttp;
        }
        Some(true) => {}
    }
    // None: the file's TLS material is unusable (its reload was logged and counted).
    let Some(acceptor) = shared.live().and_then(|live| live.tls().cloned()) else {
        return Ended::HandshakeFailed;
    };
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

/// One open connection, counted while its task lives.
pub struct Open(Arc<AtomicUsize>);

impl Open {
    pub fn new(count: Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Open(count)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
