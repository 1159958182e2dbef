//! The transport of one upstream connection (plain TCP or TLS), how its
//! bytes are read, what an idle one has received, and the byte stream a
//! `101 Switching Protocols` leaves.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Bytes read from the socket at a time.
pub(super) const READ_CHUNK: usize = 16 * 1024;

/// The transport of an upstream connection.
pub enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// What arrived on an idle connection since its last response ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Idle {
    Nothing,
    /// The upstream closed it (or it failed).
    Closed,
    /// Bytes nobody asked for: the connection must not carry them to a request.
    Bytes,
}

impl Io {
    /// Whether TLS's ALPN picked `h2`.
    pub(super) fn alpn_h2(&self) -> bool {
        match self {
            Io::Plain(_) => false,
            Io::Tls(io) => io.get_ref().1.alpn_protocol() == Some(b"h2"),
        }
    }

    /// Reads more bytes into `buf`; `Ok(0)` at end of stream.
    pub(super) fn poll_fill(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        match self {
            Io::Plain(io) => loop {
                ready!(io.poll_read_ready(cx))?;
                buf.reserve(READ_CHUNK);
                match crate::sock::read_drained(io, buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    r => return Poll::Ready(r),
                }
            },
            Io::Tls(io) => {
                buf.reserve(READ_CHUNK);
                let read = tokio::io::AsyncReadExt::read_buf(&mut **io, buf);
                std::pin::pin!(read).poll(cx)
            }
        }
    }

    /// What arrived on this idle connection, from the runtime's cached
    /// readiness: no system call unless the runtime has seen the socket
    /// become readable (then one read tells a close from bytes).
    pub(super) fn idle_state(&mut self) -> Idle {
        // `try_io` with a closure that does nothing asks the runtime whether it
        // has seen the socket readable, without a system call or a waker.
        let seen_readable = |tcp: &TcpStream| tcp.try_io(tokio::io::Interest::READABLE, || Ok(())).is_ok();
        match self {
            Io::Plain(io) => {
                if !seen_readable(io) {
                    return Idle::Nothing;
                }
                let mut probe = [0u8; 1];
                match io.try_read(&mut probe) {
                    Ok(0) => Idle::Closed,
                    Ok(_) => Idle::Bytes,
                    // Readiness left from the last read (one that filled the buffer); now cleared.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Idle::Nothing,
                    Err(_) => Idle::Closed,
                }
            }
            Io::Tls(io) => {
                if !seen_readable(io.get_ref().0) {
                    return Idle::Nothing;
                }
                // TLS records that carry no data (session tickets) are taken
                // in by the read and leave it pending.
                let mut cx = Context::from_waker(Waker::noop());
                let mut probe = [0u8; 1];
                let mut out = ReadBuf::new(&mut probe);
                match Pin::new(&mut **io).poll_read(&mut cx, &mut out) {
                    Poll::Pending => Idle::Nothing,
                    Poll::Ready(Ok(())) if out.filled().is_empty() => Idle::Closed,
                    Poll::Ready(Ok(())) => Idle::Bytes,
                    Poll::Ready(Err(_)) => Idle::Closed,
                }
            }
        }
    }
}

use std::future::Future as _;

impl AsyncRead for Io {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(io) => Pin::new(io).poll_read(cx, out),
            Io::Tls(io) => Pin::new(&mut **io).poll_read(cx, out),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(io) => Pin::new(io).poll_write(cx, data),
            Io::Tls(io) => Pin::new(&mut **io).poll_write(cx, data),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Io::Tls(io) => Pin::new(&mut **io).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Plain(io) => io.is_write_vectored(),
            Io::Tls(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(io) => Pin::new(io).poll_flush(cx),
            Io::Tls(io) => Pin::new(&mut **io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(io) => Pin::new(io).poll_shutdown(cx),
            Io::Tls(io) => Pin::new(&mut **io).poll_shutdown(cx),
        }
    }
}

/// The upstream end of an upgraded connection (after its `101`): the bytes
/// already read after the response head come first.
pub struct Upgraded {
    read: Bytes,
    io: Io,
}

impl Upgraded {
    pub(super) fn new(read: Bytes, io: Io) -> Upgraded {
        Upgraded { read, io }
    }
}

impl AsyncRead for Upgraded {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.read.is_empty() {
            let n = this.read.len().min(out.remaining());
            out.put_slice(&this.read.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, out)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// The connection of a `101` response, in its extensions until the gateway
/// splices it to the client's (a response extension must be `Clone`).
#[derive(Clone)]
pub struct PendingUpgrade(Arc<Mutex<Option<Upgraded>>>);

impl PendingUpgrade {
    pub(super) fn new(upgraded: Upgraded) -> PendingUpgrade {
        PendingUpgrade(Arc::new(Mutex::new(Some(upgraded))))
    }

    /// The upgraded connection (once).
    pub fn take(&self) -> Option<Upgraded> {
        self.0.lock().ok()?.take()
    }
}
