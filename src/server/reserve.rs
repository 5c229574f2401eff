//! The descriptor reserve: spare descriptors the servers of a process hold, so that a scrape is
//! accepted and answered while the process has none left (a load generator out of descriptors is when
//! its numbers matter most). libuv's "EMFILE trick", except that the connection accepted on a spare is
//! served, not dropped.
//!
//! One reserve per process, made when its first server starts: a worker, which does not serve, holds
//! none. Its slots are atomics, not a lock, so a fork may happen anywhere; a forked child closes its
//! copies (`forget_after_fork`). Linux only (`dup3`); elsewhere there is no reserve.

use std::io;
use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Connections accepted while the process has no descriptor: a scraper's keep-alive connection, a
/// second scraper, the final scrape, and one spare for a descriptor another thread takes first.
/// Renders need none. The reserve holds one more descriptor, the template the spares are copies of.
pub const SPARES: usize = 4;

#[cfg(target_os = "linux")]
mod slots {
    use std::fs::File;
    use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
    use std::sync::atomic::{AtomicI32, Ordering};

    use super::SPARES;

    const EMPTY: RawFd = -1;

    /// `/dev/null`, never released: what a closing connection's descriptor is turned into to rejoin the reserve.
    static TEMPLATE: AtomicI32 = AtomicI32::new(EMPTY);
    static SLOTS: [AtomicI32; SPARES] = [const { AtomicI32::new(EMPTY) }; SPARES];

    fn close(fd: RawFd) {
        // SAFETY: `fd` came out of a slot (or the template), which owned it alone.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    }

    /// Puts `fd` in an empty slot; closes it if there is none.
    fn store(fd: RawFd) {
        if !SLOTS.iter().any(|slot| {
            slot.compare_exchange(EMPTY, fd, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        }) {
            close(fd);
        }
    }

    fn lacking() -> bool {
        SLOTS.iter().any(|slot| slot.load(Ordering::Relaxed) == EMPTY)
    }

    pub fn hold() {
        if TEMPLATE.load(Ordering::Acquire) == EMPTY {
            // std opens with O_CLOEXEC: no program a locustfile runs inherits the reserve.
            let Ok(null) = File::open("/dev/null") else { return };
            let fd = OwnedFd::from(null).into_raw_fd();
            if TEMPLATE
                .compare_exchange(EMPTY, fd, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                close(fd);
            }
        }
        refill();
    }

    pub fn refill() {
        let template = TEMPLATE.load(Ordering::Acquire);
        if template == EMPTY {
            return;
        }
        while lacking() {
            // SAFETY: the template stays open for the life of the process (a fork's child aside).
            let Ok(spare) = unsafe { BorrowedFd::borrow_raw(template) }.try_clone_to_owned() else {
                return;
            };
            store(spare.into_raw_fd());
        }
    }

    pub fn release() -> bool {
        SLOTS.iter().any(|slot| {
            let fd = slot.swap(EMPTY, Ordering::AcqRel);
            if fd != EMPTY {
                close(fd);
            }
            fd != EMPTY
        })
    }

    pub fn close_socket(socket: OwnedFd) {
        let template = TEMPLATE.load(Ordering::Acquire);
        if template == EMPTY || !lacking() {
            return;
        }
        // `dup3` closes the socket and makes its number a copy of the template in one system call:
        // no other thread can take the descriptor in between, as it could between `close` and `open`.
        // SAFETY: both descriptors are open; the socket's is owned here and handed to the slot.
        if unsafe { libc::dup3(template, socket.as_raw_fd(), libc::O_CLOEXEC) } >= 0 {
            store(socket.into_raw_fd());
        }
    }

    pub fn connection_waiting(listener: &tokio::net::TcpListener) -> bool {
        let mut fd = libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one `pollfd`, no wait; a listening socket is readable when its accept queue is not empty.
        unsafe { libc::poll(&mut fd, 1, 0) > 0 && fd.revents & libc::POLLIN != 0 }
    }

    pub fn forget_after_fork() {
        for slot in SLOTS.iter().chain([&TEMPLATE]) {
            let fd = slot.swap(EMPTY, Ordering::AcqRel);
            if fd != EMPTY {
                close(fd);
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod slots {
    pub fn hold() {}
    pub fn refill() {}
    pub fn release() -> bool {
        false
    }
    pub fn connection_waiting(_: &tokio::net::TcpListener) -> bool {
        true
    }
    pub fn forget_after_fork() {}
}

/// Makes the reserve, or fills it again; called as a server starts.
pub fn hold() {
    slots::hold();
}

/// What the reserve did for an `accept()` that failed for want of a descriptor.
#[derive(Debug, PartialEq, Eq)]
pub enum Spare {
    /// One spare closed: accepting again takes its descriptor.
    Released,
    /// No connection is waiting (`accept()` fails without a descriptor whether one waits or not).
    NoneWaiting,
    /// None left: the connection waits until a descriptor is free.
    NoneLeft,
}

/// Closes a spare for the connection waiting on `listener`. `refill`: first take back spares lost to other
/// threads earlier, if descriptors are free now.
pub fn release_for(listener: &tokio::net::TcpListener, refill: bool) -> Spare {
    if refill {
        slots::refill();
    }
    if !slots::connection_waiting(listener) {
        Spare::NoneWaiting
    } else if slots::release() {
        Spare::Released
    } else {
        Spare::NoneLeft
    }
}

/// In a forked child: the parent's reserve is not the child's (a child that serves makes its own).
pub fn forget_after_fork() {
    slots::forget_after_fork();
}

/// Whether `accept()` failed for want of a descriptor, in the process (EMFILE) or the system (ENFILE).
pub fn out_of_descriptors(e: &io::Error) -> bool {
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    matches!(e.raw_os_error(), Some(EMFILE | ENFILE))
}

/// An accepted connection whose descriptor, as it closes, becomes a spare if the reserve lacks one.
pub struct Stream(ManuallyDrop<TcpStream>);

impl Stream {
    pub fn new(stream: TcpStream) -> Self {
        Stream(ManuallyDrop::new(stream))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // SAFETY: taken once, here, and never used again.
        let stream = unsafe { ManuallyDrop::take(&mut self.0) };
        // Out of tokio's reactor first; the descriptor is closed by `close_socket` or as it returns.
        #[cfg(target_os = "linux")]
        if let Ok(stream) = stream.into_std() {
            slots::close_socket(stream.into());
        }
        #[cfg(not(target_os = "linux"))]
        drop(stream);
    }
}

impl Deref for Stream {
    type Target = TcpStream;

    fn deref(&self) -> &TcpStream {
        &self.0
    }
}

impl DerefMut for Stream {
    fn deref_mut(&mut self) -> &mut TcpStream {
        &mut self.0
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut **self.get_mut()).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut **self.get_mut()).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut **self.get_mut()).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        (**self).is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut **self.get_mut()).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut **self.get_mut()).poll_shutdown(cx)
    }
}
