//! The HTTP/1.1 wire rules, written once: head parsing into fields, the
//! framing decision for each direction (RFC 9112 §6), chunked coding both
//! ways (§7.1), and head encoding. The lean server, the upstream exchange and
//! the header rules in `headers.rs` use these and nothing else; no framing
//! rule is written anywhere but here.
//!
//! Where RFC 9112 lets a recipient be lenient, these rules are strict, and the
//! same on every path:
//! - a chunk-size line is `1*HEXDIG *( BWS ";" BWS token [ BWS "=" BWS
//!   ( token / quoted-string ) ] ) CRLF`: no whitespace after the size unless
//!   an extension follows, no bare CR or LF, no other control character; a
//!   size that does not fit in 64 bits is refused;
//! - the CRLF after chunk data is exactly that;
//! - trailer lines end in CRLF (a bare LF is refused) and parse as header
//!   fields; they are passed on as trailers;
//! - a response with `Transfer-Encoding` in HTTP/1.0 is refused (§6.1); with
//!   both `Transfer-Encoding` and `Content-Length`, the length is removed and
//!   the connection is not reused (§6.3 item 3); `Content-Length` is one
//!   decimal number (equal repeats allowed), else refused.

pub mod chunked;
pub mod encode;
pub mod framing;
pub mod head;
pub mod hop;

pub use chunked::{ChunkError, ChunkedDecoder, Decoded};
pub use framing::Framing;
pub use head::{content_length, header_map, lists_token, place, Field};
