//! Accepting connections, through descriptor starvation: a failed `accept()` never stops the server, and
//! out of descriptors a waiting connection is accepted on a spare of the reserve; beyond the connection
//! limit, the oldest connection not being answered makes room.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::oneshot;

use super::conn::Conn;
use super::connection::{serve, Open};
use super::reserve::{self, Spare};
use super::shared::Shared;
use super::stats::Dropped;

/// After a failed `accept()` the connection waits on, the pause before the next one: doubled while failures go on.
const ACCEPT_PAUSE: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(1));

/// Out of descriptors with no connection waiting, the pause before `accept()` is tried again.
const STARVED_RECHECK: Duration = Duration::from_millis(50);

pub async fn accept_loop(listener: tokio::net::TcpListener, mut stopped: oneshot::Receiver<()>, shared: Arc<Shared>) {
    let open = Arc::new(AtomicUsize::new(0));
    // Every connection accepted, oldest first: the candidates to make room at the limit.
    let mut accepted_conns: VecDeque<Weak<Conn>> = VecDeque::new();
    let mut pause = ACCEPT_PAUSE.0;
    // A spare of the reserve was closed for the connection waiting on `accept()`.
    let mut spare_released = false;
    loop {
        let accepted = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                pause = ACCEPT_PAUSE.0;
                if std::mem::take(&mut spare_released) {
                    shared.stats.reserved();
                }
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
                let stream = reserve::Stream::new(stream);
                tokio::spawn(serve(stream, conn, shared.clone(), Open::new(open.clone())));
            }
            Err(e) => {
                let kind = format!("accept {}", e.raw_os_error().unwrap_or(-1));
                shared.log_once(&kind, || accept_error(shared.addr, &e));
                let starved = reserve::out_of_descriptors(&e);
                // The spare closed for this accept went to another thread first.
                let missed = std::mem::take(&mut spare_released) && starved;
                if missed {
                    shared.stats.reserve_missed();
                }
                // Spares lost earlier come back if descriptors are free, but not right after a miss: the
                // thread that took the last one would take this one too, round after round.
                let wait = match starved.then(|| reserve::release_for(&listener, !missed)) {
                    // The connection is still queued: accepted at once on the descriptor the spare leaves.
                    Some(Spare::Released) => {
                        spare_released = true;
                        continue;
                    }
                    // `accept()` keeps failing until a connection comes: looked at again soon.
                    Some(Spare::NoneWaiting) => STARVED_RECHECK,
                    Some(Spare::NoneLeft) | None => {
                        shared.stats.dropped(Dropped::AcceptError);
                        // The failed connection stays queued: without a pause the loop would spin on it.
                        let wait = pause;
                        pause = (pause * 2).min(ACCEPT_PAUSE.1);
                        wait
                    }
                };
                tokio::select! {
                    _ = &mut stopped => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// Evicts the oldest connection not answering a request, one with no request admitted first (slow heads,
/// wrong passwords) so that a scraper's keep-alive connection goes last; false if there is none.
fn make_room(conns: &mut VecDeque<Weak<Conn>>) -> bool {
    let oldest = |admitted: bool| {
        conns
            .iter()
            .position(|c| c.upgrade().is_some_and(|c| c.evictable() && c.admitted() == admitted))
    };
    let victim = oldest(false).or_else(|| oldest(true));
    match victim.and_then(|i| conns.remove(i)).and_then(|c| c.upgrade()) {
        Some(conn) => {
            conn.evict();
            true
        }
        None => false,
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
    let retry = if cfg!(target_os = "linux") && reserve::out_of_descriptors(e) {
        format!(
            "Scrapes are served on the server's {} spare descriptors meanwhile (counted in \
             locust_exporter_connections_reserved_total); beyond them, retrying every second at most",
            reserve::SPARES
        )
    } else {
        "Retrying every second at most".to_string()
    };
    format!("accepting a connection on {addr} failed: {e}.{advice} {retry}")
}
