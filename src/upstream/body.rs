//! The body of an upstream response, streamed to the client, whichever
//! exchange produced it.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use hyper::body::{Body, Frame, SizeHint};

use super::http1::{self, Received};
use super::http2;

/// An upstream response body. An HTTP/1.1 connection goes back to the pool
/// when the body has been read to its exact end (a body dropped before its
/// end closes the connection instead); an HTTP/2 stream ends with its body.
///
/// It may carry the response's header fields as they were received, in
/// place of its header map (for a client writer that takes them so).
pub struct UpstreamBody {
    kind: Kind,
    received: Option<Box<Received>>,
}

enum Kind {
    Http1(http1::Body),
    Http2(http2::Body),
}

impl UpstreamBody {
    pub(super) fn http1(body: http1::Body, received: Option<Box<Received>>) -> UpstreamBody {
        UpstreamBody { kind: Kind::Http1(body), received }
    }

    pub(super) fn http2(body: hyper::body::Incoming, in_flight: http2::InFlight) -> UpstreamBody {
        UpstreamBody { kind: Kind::Http2(http2::Body { body, _in_flight: in_flight }), received: None }
    }

    /// Whether it carries the response's header fields (see [`Self::received`]).
    pub fn has_fields(&self) -> bool {
        self.received.is_some()
    }

    /// The response's header fields as received, hop-by-hop ones left out,
    /// and the request id for its `x-request-id`, when they are carried here
    /// (its header map is then empty; `headers::client_response_fields`
    /// gives the client's).
    pub fn received(&self) -> Option<(impl Iterator<Item = (&HeaderName, &[u8])> + Clone, &HeaderValue)> {
        let r = self.received.as_ref()?;
        Some((r.fields.iter(), &r.request_id))
    }
}

/// Why an upstream response body broke off: the client's response is cut short.
#[derive(Debug)]
pub struct BodyError(pub &'static str);

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "upstream response body: {}", self.0)
    }
}

impl std::error::Error for BodyError {}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match &mut self.get_mut().kind {
            Kind::Http1(body) => body.poll_frame(cx),
            Kind::Http2(body) => body.poll_frame(cx).map(|f| {
                f.map(|r| {
                    r.map_err(|e| {
                        tracing::debug!(error = %e, "upstream HTTP/2 body broke off");
                        BodyError("the HTTP/2 stream broke off")
                    })
                })
            }),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Http1(body) => body.is_end_stream(),
            Kind::Http2(body) => body.body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Http1(body) => body.size_hint(),
            Kind::Http2(body) => body.body.size_hint(),
        }
    }
}
