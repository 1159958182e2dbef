//! The lean HTTP/1.1 server, for the common request: HTTP/1.1, no body, no
//! upgrade. The connection's task reads and parses the request head itself
//! (httparse, as hyper does), hands the request to [`Gateway::handle`] and
//! writes the response, with no connection state machine or dispatcher in
//! between.
//!
//! It takes only what it is sure of. The first request it is not — a body
//! (`Content-Length`, `Transfer-Encoding`), `Upgrade`, `Expect`, `TE`,
//! CONNECT, HTTP/1.0, a head that does not parse or is over the limits — ends
//! its part: the connection, with every byte read so far, goes to hyper's
//! server ([`End::Handover`]), which answers that request and the rest as it
//! always did (errors such as 400 and 431 included). So the two servers
//! differ only in who serves a plain request, never in what is accepted.
//!
//! The response is written as hyper writes it: `content-length` from the
//! body's exact size (an upstream's own value kept), else `transfer-encoding:
//! chunked`; no body for HEAD, 1xx, 204 and 304; `date` added when missing;
//! `connection: close` when the client asked to close.

use std::io;
use std::pin::pin;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header;
use http::{Method, Request, StatusCode, Uri, Version};
use http_body_util::Either;
use hyper::body::Body as _;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::body::RequestBody;
use crate::gateway::{Gateway, Writer};
use crate::h1::head::RequestParse;
use crate::h1::{self, encode::Written, Field};
use crate::headers::{self, ClientConn};

/// Longest request target accepted here (hyper's limit; longer goes to hyper, which answers 414).
const MAX_URI_LEN: usize = (u16::MAX - 1) as usize;
/// Response bytes gathered before they are written (a body's frames are
/// written as they come when the body has to be waited for).
const WRITE_BATCH: usize = 64 * 1024;

/// The limits and timeouts of one connection (from `[server]`).
pub(super) struct Limits {
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    /// A connection that starts with the HTTP/2 preface goes to hyper's HTTP/2 server.
    pub h2c: bool,
}

/// The HTTP/2 connection preface (RFC 9113 §3.4), which an h2c client with
/// prior knowledge sends first.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How the lean server's part of a connection ended.
pub(super) enum End {
    /// The connection is finished (closed by either side, timed out, or shut down).
    Closed,
    /// A request the lean server does not take: hyper serves the connection
    /// from here, starting with the bytes already read.
    Handover(Rewind),
    /// The connection starts with the HTTP/2 preface (`[server] h2c`): hyper's
    /// HTTP/2 server serves it, starting with the bytes already read.
    H2c(Rewind),
}

/// Serves plain requests on `io` until the connection ends or a request needs hyper.
pub(super) async fn serve(
    io: std::net::TcpStream,
    gateway: &Gateway,
    client: &ClientConn,
    limits: &Limits,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> End {
    let mut io = Socket::Direct(io);
    // Sized by the first read (see `read_direct`); 8 KiB at a time after it.
    let mut buf = BytesMut::new();
    let mut out = Vec::with_capacity(8 * 1024);
    let mut fields = Vec::with_capacity(16);
    // The first request's head must come within the header timeout of the
    // connection's start; a later one's within the header timeout of its first
    // byte, which may take the idle timeout to come.
    let mut deadline = Instant::now() + limits.header_read_timeout;
    let mut started = true;
    let mut timer = pin!(tokio::time::sleep_until(deadline));
    let mut watch = stop.clone();
    let mut stopped = pin!(async move {
        let _ = watch.wait_for(|s| *s).await;
    });
    // Only a connection's first bytes may be the HTTP/2 preface.
    let mut may_be_h2 = limits.h2c;
    loop {
        let parsed = loop {
            if may_be_h2 && !buf.is_empty() {
                if buf.starts_with(H2_PREFACE) {
                    return io.into_polled().map_or(End::Closed, |io| End::H2c(Rewind::new(buf, io)));
                }
                may_be_h2 = H2_PREFACE.starts_with(&buf);
                if may_be_h2 {
                    // A part of the preface: read on.
                    match read(&mut io, &mut buf, deadline, timer.as_mut(), stopped.as_mut()).await {
                        Read::Data => continue,
                        Read::Closed => return End::Closed,
                    }
                }
            }
            if !buf.is_empty() {
                match parse(&mut buf, limits, &mut fields) {
                    Parse::Complete(req) => break req,
                    Parse::Partial => {}
                    Parse::NotMine => {
                        return io.into_polled().map_or(End::Closed, |io| End::Handover(Rewind::new(buf, io)))
                    }
                }
                if !started {
                    started = true;
                    deadline = Instant::now() + limits.header_read_timeout;
                }
            }
            match read(&mut io, &mut buf, deadline, timer.as_mut(), stopped.as_mut()).await {
                Read::Data => {}
                Read::Closed => return End::Closed,
            }
        };
        let (req, keep_alive) = parsed;
        let head_request = req.method() == Method::HEAD;
        let resp = gateway.handle(req, client, Writer::Lean).await;
        let keep_alive = keep_alive && !*stop.borrow();
        match write_response(&mut io, &mut out, resp, head_request, keep_alive).await {
            Ok(true) => {}
            Ok(false) | Err(_) => return End::Closed,
        }
        // The next request is waited for: the socket is registered now
        // (bytes already there raise a readiness event at once).
        if io.polled().is_err() {
            return End::Closed;
        }
        deadline = Instant::now() + limits.idle_timeout;
        started = false;
        out.clear();
        if out.capacity() > WRITE_BATCH * 2 {
            out.shrink_to(8 * 1024);
        }
    }
}

enum Read {
    Data,
    /// End of stream, an error, the deadline, or shutdown with no request begun.
    Closed,
}

/// The client's socket: read and written directly until it has to be waited
/// on, then registered with the runtime's poller (see [`crate::sock::Listener`]).
enum Socket {
    Direct(std::net::TcpStream),
    Polled(TcpStream),
    /// Registration failed: the connection is closed.
    Lost,
}

impl Socket {
    /// The socket, registered with the poller if it was not yet.
    fn polled(&mut self) -> io::Result<&mut TcpStream> {
        if let Socket::Direct(_) = self {
            *self = Socket::Polled(std::mem::replace(self, Socket::Lost).into_polled()?);
        }
        match self {
            Socket::Polled(io) => Ok(io),
            _ => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    fn into_polled(self) -> io::Result<TcpStream> {
        match self {
            Socket::Direct(io) => TcpStream::from_std(io),
            Socket::Polled(io) => Ok(io),
            Socket::Lost => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Writes all of `data`: directly while the socket takes it, then, if it
    /// is full, registered and waiting for room.
    async fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        if let Socket::Direct(io) = self {
            while !data.is_empty() {
                match io::Write::write(io, data) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => data = &data[n..],
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            if data.is_empty() {
                return Ok(());
            }
        }
        self.polled()?.write_all(data).await
    }
}

thread_local! {
    /// A worker's room for reads from sockets not yet registered: safe code
    /// cannot read into a buffer's uninitialized spare room, and zeroing a
    /// connection's buffer each time would cost more than copying what came.
    static DIRECT_READ: std::cell::RefCell<Box<[u8]>> = std::cell::RefCell::new(vec![0; 8 * 1024].into_boxed_slice());
}

/// Reads what a socket not yet registered has, appending it to `buf`.
fn read_direct(io: &mut std::net::TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    DIRECT_READ.with_borrow_mut(|room| {
        let n = io::Read::read(io, room)?;
        buf.extend_from_slice(&room[..n]);
        Ok(n)
    })
}

/// Reads more of the request into `buf` (at once when bytes are waiting).
/// `timer` is reset only when `deadline` comes before it: a later deadline
/// (the usual case, each response pushes the idle deadline on) is taken up
/// when the timer fires, so a request costs no timer registration.
async fn read(
    socket: &mut Socket,
    buf: &mut BytesMut,
    deadline: Instant,
    mut timer: Pin<&mut tokio::time::Sleep>,
    mut stopped: Pin<&mut impl std::future::Future<Output = ()>>,
) -> Read {
    if let Socket::Direct(io) = socket {
        match read_direct(io, buf) {
            Ok(0) => return Read::Closed,
            Ok(_) => return Read::Data,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Read::Closed,
        }
    }
    let Ok(io) = socket.polled() else {
        return Read::Closed;
    };
    if timer.deadline() > deadline {
        timer.as_mut().reset(deadline);
    }
    loop {
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(8 * 1024);
        }
        match crate::sock::read_drained(io, buf) {
            Ok(0) => return Read::Closed,
            Ok(_) => return Read::Data,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return Read::Closed,
        }
        let waiting = buf.is_empty();
        tokio::select! {
            biased;
            ready = io.readable() => {
                if ready.is_err() {
                    return Read::Closed;
                }
            }
            () = timer.as_mut() => {
                if Instant::now() >= deadline {
                    return Read::Closed;
                }
                timer.as_mut().reset(deadline);
            }
            // Shutdown closes a connection between requests, not inside one.
            () = stopped.as_mut(), if waiting => return Read::Closed,
        }
    }
}

// Returned once per request and taken apart at once: boxing the large
// variant would add an allocation per request for nothing.
#[allow(clippy::large_enum_variant)]
enum Parse {
    /// The request (its head taken off `buf`), and whether the client keeps the connection open.
    Complete((Request<RequestBody>, bool)),
    Partial,
    /// Anything the lean server leaves to hyper (`buf` as it was).
    NotMine,
}

/// One request head from the start of `buf`, taken off it when complete:
/// the request's target and header values are slices of those very bytes
/// (no copy; `fields` is the connection's scratch list).
fn parse(buf: &mut BytesMut, limits: &Limits, fields: &mut Vec<Field>) -> Parse {
    fields.clear();
    let (len, method, target, keep_alive) = match scan(buf, limits, fields) {
        Scan::Complete(found) => found,
        Scan::Partial => return Parse::Partial,
        Scan::NotMine => return Parse::NotMine,
    };
    let head = buf.split_to(len).freeze();
    match request(&head, method, target, fields) {
        Some(req) => Parse::Complete((req, keep_alive)),
        None => {
            // The head goes back in front of the rest (no copy: nothing holds it now).
            let mut all = BytesMut::from(head);
            all.unsplit(std::mem::take(buf));
            *buf = all;
            Parse::NotMine
        }
    }
}

enum Scan {
    /// The head's length, method, target (where it lies), and whether the connection stays open.
    Complete((usize, Method, std::ops::Range<usize>, bool)),
    Partial,
    NotMine,
}

/// Parses the head at the start of `buf` and checks it is one the lean server takes.
fn scan(buf: &[u8], limits: &Limits, fields: &mut Vec<Field>) -> Scan {
    let head = match h1::head::parse_request(buf, limits.max_headers, fields) {
        // The head as it would be forwarded (one space after each colon) must
        // fit the limit, measured as the gateway measures heads hyper's server
        // reads: one limit whichever server reads it.
        RequestParse::Complete(head) if head.len <= limits.max_header_bytes && head.size <= limits.max_header_bytes => {
            head
        }
        RequestParse::Partial if buf.len() < limits.max_header_bytes => return Scan::Partial,
        _ => return Scan::NotMine,
    };
    if !head.http11 || head.method == Method::CONNECT || head.target.len() > MAX_URI_LEN {
        return Scan::NotMine;
    }
    let mut keep_alive = true;
    for (name, value) in fields.iter() {
        if matches!(
            *name,
            header::CONTENT_LENGTH | header::TRANSFER_ENCODING | header::UPGRADE | header::EXPECT | header::TE
        ) {
            return Scan::NotMine;
        }
        if name == header::CONNECTION && h1::lists_token(&buf[value.clone()], b"close") {
            keep_alive = false;
        }
    }
    Scan::Complete((head.len, head.method, head.target, keep_alive))
}

/// The request whose head is `head` (as [`scan`] found it); `None` if its
/// target or a header value is not valid for `http`'s types.
fn request(
    head: &Bytes,
    method: Method,
    target: std::ops::Range<usize>,
    fields: &mut Vec<Field>,
) -> Option<Request<RequestBody>> {
    let uri = Uri::from_maybe_shared(head.slice(target)).ok()?;
    // Room for the headers the gateway adds upstream (`x-forwarded-for`,
    // `-proto`, `-host`, `x-request-id`) without growing.
    let headers = h1::header_map(head, fields, 4, |_| false).ok()?;
    let mut req = Request::new(RequestBody::Empty);
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = headers;
    Some(req)
}

/// Writes the response head and body; `Ok(true)` when the connection goes on,
/// `Ok(false)` when it closes as said in the response, `Err` when it cannot go
/// on (the client went away, or the body broke off or did not match its length).
async fn write_response(
    io: &mut Socket,
    out: &mut Vec<u8>,
    resp: http::Response<crate::error::Body>,
    head_request: bool,
    keep_alive: bool,
) -> io::Result<bool> {
    let (mut parts, body) = resp.into_parts();
    // As hyper: a 101 ends HTTP on the connection; any other 1xx cannot be a
    // final response and becomes a 500.
    let keep_alive = keep_alive && !parts.status.is_informational();
    let replaced = parts.status.is_informational() && parts.status != StatusCode::SWITCHING_PROTOCOLS;
    if replaced {
        parts = http::Response::new(()).into_parts().0;
        parts.status = StatusCode::INTERNAL_SERVER_ERROR;
    }
    // What hyper calls the body's length: none when it has already ended.
    let ended = replaced || body.is_end_stream();
    let length = if ended { Some(0) } else { body.size_hint().exact() };
    let status = parts.status;
    let written = match &body {
        Either::Left(upstream) if !replaced => upstream.received().map(|(fields, request_id)| {
            let fields = headers::client_response_fields(fields, request_id);
            h1::encode::response_head(out, status, fields, head_request, keep_alive, ended, length)
        }),
        _ => None,
    };
    let written = match written {
        Some(written) => written,
        None => {
            let fields = parts.headers.iter().map(|(name, value)| (name, value.as_bytes()));
            h1::encode::response_head(out, status, fields, head_request, keep_alive, ended, length)
        }
    };
    let Written { no_body, chunked, length: framing } = written.map_err(io::Error::other)?;
    if no_body || ended {
        io.write_all(out).await?;
        return Ok(keep_alive);
    }
    let mut left = framing;
    let mut body = pin!(body);
    loop {
        // A frame that is there now joins the bytes to write; before waiting
        // for one, what is gathered goes out.
        let frame = match std::future::poll_fn(|cx| Poll::Ready(body.as_mut().poll_frame(cx))).await {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                io.write_all(out).await?;
                out.clear();
                std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await
            }
        };
        let data = match frame {
            None => break,
            Some(Err(e)) => {
                // Broken off: what came goes out, then the connection closes.
                let _ = io.write_all(out).await;
                return Err(io::Error::other(e.to_string()));
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                // Trailers: not sent. The lean server takes no request with
                // `TE`, so its clients have not said they accept them (hyper's
                // server sends those the response's `Trailer` names to a
                // client that sent `TE: trailers`).
                Err(_) => continue,
            },
        };
        if data.is_empty() {
            continue;
        }
        if let Some(left) = &mut left {
            if data.len() as u64 > *left {
                return Err(io::Error::other("response body longer than its length"));
            }
            *left -= data.len() as u64;
        }
        if chunked {
            h1::chunked::encode_size(out, data.len());
        }
        if out.len() + data.len() <= WRITE_BATCH {
            out.extend_from_slice(&data);
        } else {
            io.write_all(out).await?;
            out.clear();
            io.write_all(&data).await?;
        }
        if chunked {
            out.extend_from_slice(b"\r\n");
        }
    }
    if chunked {
        h1::chunked::encode_end(out, None);
    }
    if left.is_some_and(|n| n > 0) {
        // Cut short: what came goes out, then the connection closes.
        let _ = io.write_all(out).await;
        return Err(io::Error::other("response body shorter than its length"));
    }
    io.write_all(out).await?;
    Ok(keep_alive)
}

/// A connection handed to hyper: the bytes already read come first.
pub(super) struct Rewind {
    read: Bytes,
    io: TcpStream,
}

impl Rewind {
    fn new(read: BytesMut, io: TcpStream) -> Rewind {
        Rewind { read: read.freeze(), io }
    }
}

impl AsyncRead for Rewind {
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

impl AsyncWrite for Rewind {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            header_read_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            h2c: false,
        }
    }

    /// A head taken off the buffer leaves exactly the bytes after it; its
    /// target and header values are slices of the head.
    #[test]
    fn a_complete_head_is_taken_off_the_buffer() {
        let wire = b"GET /v1/users/7?x=1 HTTP/1.1\r\nHost: gw.test\r\nX-A: one\r\n\r\nGET /next HTTP/1.1\r\n";
        let mut buf = BytesMut::from(&wire[..]);
        let mut fields = Vec::new();
        let Parse::Complete((req, keep_alive)) = parse(&mut buf, &limits(), &mut fields) else {
            panic!("a plain request")
        };
        assert!(keep_alive);
        assert_eq!(req.uri(), "/v1/users/7?x=1");
        assert_eq!(req.headers()["host"], "gw.test");
        assert_eq!(req.headers()["x-a"], "one");
        assert_eq!(&buf[..], b"GET /next HTTP/1.1\r\n");
    }

    /// A head that parses but that `http`'s types refuse (a target `Uri`
    /// does not take) goes to hyper with every byte where it was.
    #[test]
    fn a_head_refused_after_parsing_is_left_whole_in_the_buffer() {
        let mut refused_late = 0;
        for target in ["/a\"b", "/a{b}", "/a|b", "/caf\u{e9}", "/a^b", "/a`b"] {
            let wire = format!("GET {target} HTTP/1.1\r\nHost: gw.test\r\n\r\nGET /next HTTP/1.1\r\n");
            let mut fields = Vec::new();
            let parsed = matches!(scan(wire.as_bytes(), &limits(), &mut fields), Scan::Complete(_));
            if !parsed || Uri::try_from(target).is_ok() {
                continue; // refused by the parser already, or a valid `Uri`: not this test's case
            }
            refused_late += 1;
            let mut buf = BytesMut::with_capacity(64 * 1024);
            buf.extend_from_slice(wire.as_bytes());
            assert!(matches!(parse(&mut buf, &limits(), &mut fields), Parse::NotMine), "{target}");
            assert_eq!(&buf[..], wire.as_bytes(), "{target}");
        }
        assert!(refused_late > 0, "no target was refused after parsing");
    }

    /// A socket not yet registered is written directly while it takes the
    /// bytes; when it is full, it is registered and the rest waits for room:
    /// nothing is lost or written twice. (The reader is polled only after the
    /// writer has filled the socket, so the switch always happens.)
    #[tokio::test(flavor = "current_thread")]
    async fn a_write_larger_than_the_socket_takes_goes_on_registered() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let mut socket = Socket::Direct(server);
        let data: Vec<u8> = (0..16 << 20).map(|i: u32| (i % 251) as u8).collect();
        let (written, received) = tokio::join!(
            async {
                socket.write_all(&data).await.unwrap();
                let registered = matches!(socket, Socket::Polled(_));
                drop(socket);
                registered
            },
            async {
                let mut got = Vec::new();
                tokio::io::AsyncReadExt::read_to_end(&mut client, &mut got).await.unwrap();
                got
            }
        );
        assert!(written, "16 MiB fit in the socket at once: the test did not reach the switch");
        assert_eq!(received.len(), data.len());
        assert!(received == data, "the bytes arrived changed");
    }

    /// A first read finds what the client sent before the connection was
    /// taken; a later one, with nothing there, registers the socket and waits.
    #[tokio::test(flavor = "current_thread")]
    async fn a_read_with_nothing_there_registers_and_waits() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        io::Write::write_all(&mut client, b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let mut socket = Socket::Direct(server);
        let mut buf = BytesMut::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut timer = pin!(tokio::time::sleep_until(deadline));
        let mut never = pin!(std::future::pending::<()>());
        // Poll until the bytes are in (they were written before the accept,
        // but loopback delivery is not promised before `accept` returns).
        while buf.len() < 18 {
            assert!(matches!(read(&mut socket, &mut buf, deadline, timer.as_mut(), never.as_mut()).await, Read::Data));
        }
        assert_eq!(&buf[..], b"GET / HTTP/1.1\r\n\r\n");
        let (more, ()) = tokio::join!(read(&mut socket, &mut buf, deadline, timer.as_mut(), never.as_mut()), async {
            io::Write::write_all(&mut client, b"GET /2 HTTP/1.1\r\n\r\n").unwrap();
        });
        assert!(matches!(more, Read::Data));
        assert!(matches!(socket, Socket::Polled(_)), "waited for without being registered");
        assert_eq!(&buf[18..], b"GET /2 HTTP/1.1\r\n\r\n");
    }
}
