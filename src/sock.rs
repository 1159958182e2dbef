//! Reading from a socket the way nginx does: a read that leaves room in the
//! buffer took everything the socket had, so the socket is taken as not
//! readable until the next readiness event, instead of finding that out with
//! one more `recv` that fails with `EAGAIN` (measured: ~0.6 such calls per
//! proxied request under load before this).

use std::io;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};

use bytes::BytesMut;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// A listening socket whose connections come out as plain sockets, not yet
/// registered with the runtime's poller: the lean server registers one only
/// when it has to wait on it, and a connection whose request is there when it
/// is accepted and that closes after its response never is (two `epoll_ctl`
/// calls and a wake-up saved per connection).
pub struct Listener {
    socket: AsyncFd<std::net::TcpListener>,
}

impl Listener {
    /// Watches `listener` (set to non-blocking here) for connections.
    pub fn new(listener: std::net::TcpListener) -> io::Result<Listener> {
        listener.set_nonblocking(true)?;
        // The safe constructor (deprecated for types whose descriptor may
        // change or close under it; an owned `TcpListener`'s cannot, so its
        // contract holds: the crate forbids `unsafe`, which the new one is).
        #[allow(deprecated)]
        let socket = AsyncFd::with_interest(listener, Interest::READABLE)?;
        Ok(Listener { socket })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.get_ref().local_addr()
    }

    pub fn get_ref(&self) -> &std::net::TcpListener {
        self.socket.get_ref()
    }

    /// The next connection, non-blocking, and its peer's address.
    pub async fn accept(&self) -> io::Result<(std::net::TcpStream, SocketAddr)> {
        loop {
            let mut ready = self.socket.readable().await?;
            if let Ok(accepted) = ready.try_io(|listener| accept(listener.get_ref())) {
                return accepted;
            }
        }
    }
}

/// `accept4` with the socket made non-blocking in the same call.
#[cfg(target_os = "linux")]
fn accept(listener: &std::net::TcpListener) -> io::Result<(std::net::TcpStream, SocketAddr)> {
    use rustix::net::{acceptfrom_with, SocketFlags};
    let (fd, peer) = acceptfrom_with(listener, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC)?;
    let stream = std::net::TcpStream::from(fd);
    match peer.and_then(|p| SocketAddr::try_from(p).ok()) {
        Some(peer) => Ok((stream, peer)),
        None => {
            let peer = stream.peer_addr()?;
            Ok((stream, peer))
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn accept(listener: &std::net::TcpListener) -> io::Result<(std::net::TcpStream, SocketAddr)> {
    let (stream, peer) = listener.accept()?;
    stream.set_nonblocking(true)?;
    Ok((stream, peer))
}

/// Reads what `io` has into `buf`'s spare room, which the caller reserves
/// (`Ok(0)` at end of stream; `WouldBlock` when it has nothing).
///
/// After a short read, the runtime's readiness flag is cleared with the
/// readiness seen *before* the read: a TCP `recv` hands over every queued
/// byte up to the room given, so nothing was left behind, and bytes that
/// arrive after it raise a new readiness event, which tokio counts apart and
/// which a clear based on the older one does not erase. So no wake-up is
/// lost, and the next read waits for the event rather than trying first.
pub fn read_drained(io: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    let room = buf.capacity() - buf.len();
    let mut got = None;
    let read = io.try_io(Interest::READABLE, || {
        let n = io.try_read_buf(buf)?;
        got = Some(n);
        if n > 0 && n < room {
            // Not an error: the bytes are in `buf`; this only tells tokio to clear readiness.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    // A short read comes back as `WouldBlock` from `try_io`: its bytes count.
    got.map_or(read, Ok)
}

/// An address as `Display` writes it, IPv4 (the common case) without the
/// formatting machinery: for the access log, and for `X-Forwarded-For`
/// (made once per accepted connection).
pub fn write_ip(out: &mut Vec<u8>, addr: IpAddr) {
    match addr {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(itoa::Buffer::new().format(octet).as_bytes());
            }
        }
        IpAddr::V6(_) => {
            let _ = write!(out, "{addr}");
        }
    }
}
