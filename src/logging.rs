//! Logs: one subscriber for every line (tracing), written to stderr by a
//! log thread (`logging/queue.rs`), text or JSON; and the access log's own
//! fast path.
//!
//! The access log has a line per request, so its cost is per request: with
//! the JSON format (the default when stderr is not a terminal, as in a
//! container or under systemd), [`access`] writes the line itself — the same
//! bytes tracing's JSON formatter writes (`{"timestamp":…,"level":"INFO",
//! "message":"access",<fields>,"target":"rolegate::access"}`, absent fields
//! left out) — into a per-thread buffer, and appends it to the same queue as
//! every other line. Going through tracing's formatter cost
//! ~29,000 instructions per request (bench/instructions.sh `LOG=1`: field
//! visitors, serde, `fmt::Write` adapters); this costs a small part of that.
//! Whether the access log is on is still tracing's to say (`RUST_LOG`), and
//! the text format goes through tracing as before.

use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

mod queue;

pub use queue::Guard;
use queue::Queue;

/// The log queue, when the access log is written as JSON by [`access`].
static JSON_SINK: OnceLock<Queue> = OnceLock::new();

/// Logs go to stderr through a queue and a log thread that writes them in
/// batches: a request thread formats its access-log line and moves on,
/// instead of making a `write` syscall per line. Never lossy: when the queue
/// is full, loggers wait. The log thread writes every queued line when the
/// guard is dropped (`None` if it could not be started: lines are then
/// written to stderr directly).
pub fn init(format: Option<&str>) -> Option<Guard> {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        Some(f) => f == "json",
        None => !std::io::stderr().is_terminal(),
    };
    let Ok((queue, guard)) = Queue::start(std::io::stderr()) else {
        let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
        let _ = if json { builder.json().flatten_event(true).try_init() } else { builder.try_init() };
        return None;
    };
    if json {
        let _ = JSON_SINK.set(queue.clone());
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(queue);
    let _ = if json { builder.json().flatten_event(true).try_init() } else { builder.try_init() };
    Some(guard)
}

/// One access-log line: a request's outcome. Never the token (only `sub`
/// and `iss` from it, and the `log_claims` a table names).
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    pub request_id: &'a str,
    pub method: &'a str,
    pub host: Option<&'a str>,
    pub path: &'a str,
    pub route: &'a str,
    pub decision: &'a str,
    pub reason: &'a str,
    pub status: u16,
    pub subject: &'a str,
    pub issuer: &'a str,
    /// `[defaults] log_claims`, as JSON text.
    pub claims: Option<&'a str>,
    pub client: IpAddr,
    pub upstream: &'a str,
    /// A decision-API check: the dialect it was read in.
    pub authz: Option<&'a str>,
    pub response_bytes: Option<u64>,
    pub duration_us: u64,
}

/// The access-log line as a tracing event (the text formatter, or any
/// subscriber but rolegate's own JSON one); the fast path writes the same
/// JSON bytes as tracing's JSON formatter makes of this event (tested).
fn through_tracing(line: &Access<'_>) {
    tracing::info!(
        target: "rolegate::access",
        request_id = line.request_id,
        method = line.method,
        host = line.host,
        path = line.path,
        route = line.route,
        decision = line.decision,
        reason = line.reason,
        status = line.status,
        subject = line.subject,
        issuer = line.issuer,
        claims = line.claims,
        client = %line.client,
        upstream = line.upstream,
        authz = line.authz,
        response_bytes = line.response_bytes,
        duration_us = line.duration_us,
        "access"
    );
}

/// Writes one access-log line (target `rolegate::access`, level INFO): by
/// the fast path when the log is JSON, else through tracing.
pub fn access(line: &Access<'_>) {
    let Some(sink) = JSON_SINK.get() else {
        through_tracing(line);
        return;
    };
    thread_local! {
        static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    LINE.with_borrow_mut(|buf| {
        buf.clear();
        json_line(buf, line, SystemTime::now());
        sink.append(buf);
    });
}

/// The JSON line of `line` at time `now`, as tracing's JSON formatter
/// (with flattened events) writes it, newline included.
pub fn json_line(out: &mut Vec<u8>, line: &Access<'_>, now: SystemTime) {
    // `,"key":"` as one literal per field: one copy, not three.
    macro_rules! text {
        ($key:literal, $value:expr) => {{
            out.extend_from_slice(concat!(",\"", $key, "\":\"").as_bytes());
            escape(out, $value);
            out.push(b'"');
        }};
    }
    macro_rules! number {
        ($key:literal, $value:expr) => {{
            out.extend_from_slice(concat!(",\"", $key, "\":").as_bytes());
            out.extend_from_slice(itoa::Buffer::new().format($value).as_bytes());
        }};
    }
    out.extend_from_slice(b"{\"timestamp\":\"");
    timestamp(out, now);
    out.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":\"access\"");
    text!("request_id", line.request_id);
    text!("method", line.method);
    if let Some(host) = line.host {
        text!("host", host);
    }
    text!("path", line.path);
    text!("route", line.route);
    text!("decision", line.decision);
    text!("reason", line.reason);
    number!("status", line.status);
    text!("subject", line.subject);
    text!("issuer", line.issuer);
    if let Some(claims) = line.claims {
        text!("claims", claims);
    }
    out.extend_from_slice(b",\"client\":\"");
    crate::sock::write_ip(out, line.client);
    out.push(b'"');
    text!("upstream", line.upstream);
    if let Some(authz) = line.authz {
        text!("authz", authz);
    }
    if let Some(n) = line.response_bytes {
        number!("response_bytes", n);
    }
    number!("duration_us", line.duration_us);
    out.extend_from_slice(b",\"target\":\"rolegate::access\"}\n");
}

/// A JSON string's contents, escaped as serde_json escapes them. Text with
/// nothing to escape (nearly every field) is copied eight bytes at a time.
fn escape(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(chunk) = bytes.get(i..i + 8) {
            if !needs_escape(u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]))) {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x08 => b'b',
            0x0c => b'f',
            0..=0x1f => b'u',
            _ => {
                i += 1;
                continue;
            }
        };
        out.extend_from_slice(&bytes[start..i]);
        out.push(b'\\');
        out.push(short);
        if short == b'u' {
            out.extend_from_slice(&[b'0', b'0', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
        i += 1;
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Whether any of the eight bytes of `word` is a control byte (< 0x20), `"`
/// or `\\`: the bytes a JSON string escapes (the classic "has a zero byte"
/// and "has a byte less than n" tests of bit twiddling).
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero_in = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    (control | zero_in(word ^ (ONES * u64::from(b'"'))) | zero_in(word ^ (ONES * u64::from(b'\\')))) != 0
}

/// `2026-12-01T19:00:21.694918Z` (UTC, microseconds), the date and time of
/// day formatted once a second per thread.
fn timestamp(out: &mut Vec<u8>, now: SystemTime) {
    thread_local! {
        static SECOND: RefCell<(u64, [u8; 19])> = const { RefCell::new((u64::MAX, [0; 19])) };
    }
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with_borrow_mut(|(at, text)| {
        if *at != secs {
            *at = secs;
            *text = date_time(secs);
        }
        out.extend_from_slice(text);
    });
    let micros = since.subsec_micros();
    let mut digits = *b".000000Z";
    for (i, place) in [100_000, 10_000, 1_000, 100, 10, 1].into_iter().enumerate() {
        digits[1 + i] = b'0' + (micros / place % 10) as u8;
    }
    out.extend_from_slice(&digits);
}

/// `YYYY-MM-DDTHH:MM:SS` of a Unix time (the civil calendar from days, as in
/// Howard Hinnant's `civil_from_days`).
fn date_time(secs: u64) -> [u8; 19] {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = [0u8; 19];
    let mut put = |at: usize, value: u64, width: usize| {
        let mut v = value;
        for i in (0..width).rev() {
            out[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, year.max(0) as u64, 4);
    put(5, month as u64, 2);
    put(8, day as u64, 2);
    put(11, rem / 3600, 2);
    put(14, rem / 60 % 60, 2);
    put(17, rem % 60, 2);
    out[4] = b'-';
    out[7] = b'-';
    out[10] = b'T';
    out[13] = b':';
    out[16] = b':';
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    /// A writer tracing's formatter writes into, for the comparison.
    use queue::tests::Sink as Captured;

    /// The fast path writes the bytes tracing's JSON formatter writes, for
    /// lines with every field, with absent ones, and with text JSON must
    /// escape; only the timestamp differs (it is its own clock read).
    #[test]
    fn the_fast_line_is_the_line_tracing_writes() {
        let full = Access {
            request_id: "r-1",
            method: "GET",
            host: Some("api.example.com"),
            path: "/v1/users/7",
            route: "read users",
            decision: "allow",
            reason: "-",
            status: 200,
            subject: "alice",
            issuer: "https://idp.example.com",
            claims: Some("{\"tid\":\"acme\",\"ts_roles\":[\"reader\"]}"),
            client: "127.0.0.1".parse().unwrap(),
            upstream: "default",
            authz: None,
            response_bytes: Some(23),
            duration_us: 412,
        };
        let odd = Access {
            request_id: "quote\"back\\slash",
            host: None,
            path: "/caf%C3%A9/\u{e9}",
            reason: "line\nbreak\ttab\u{1}ctl\u{8}\u{c}\r",
            claims: None,
            client: "::1".parse().unwrap(),
            response_bytes: None,
            authz: Some("nginx"),
            status: 403,
            ..full
        };
        for line in [full, odd] {
            let captured = Captured::default();
            let writer = captured.clone();
            let subscriber =
                tracing_subscriber::fmt().json().flatten_event(true).with_writer(move || writer.clone()).finish();
            tracing::subscriber::with_default(subscriber, || through_tracing(&line));
            let theirs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
            let mut ours = Vec::new();
            json_line(&mut ours, &line, SystemTime::now());
            let ours = String::from_utf8(ours).unwrap();
            let without_time = |s: &str| s.split_once("\",\"level\"").map(|(_, rest)| rest.to_owned()).unwrap();
            assert_eq!(without_time(&ours), without_time(&theirs));
            assert!(theirs.ends_with('\n') && ours.ends_with('\n'));
            let _: serde_json::Value = serde_json::from_str(&ours).unwrap();
        }
    }

    /// Every ASCII character, and a two-byte one, at every offset of strings
    /// longer and shorter than the eight-byte steps: escaped as serde_json
    /// escapes them.
    #[test]
    fn escaping_agrees_with_serde_json_at_every_offset() {
        let mut specials: Vec<String> = (0u8..0x80).map(|b| char::from(b).to_string()).collect();
        specials.push("\u{e9}".to_owned());
        for special in &specials {
            for len in [1, 7, 8, 9, 16, 17, 23] {
                for at in 0..len {
                    let s: String = (0..len).map(|i| if i == at { special.as_str() } else { "a" }).collect();
                    let mut ours = b"\"".to_vec();
                    escape(&mut ours, &s);
                    ours.push(b'"');
                    assert_eq!(String::from_utf8(ours).unwrap(), serde_json::to_string(&s).unwrap(), "{s:?}");
                }
            }
        }
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for addr in [
            "127.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "10.20.3.40",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:1.2.3.4",
        ] {
            let addr: IpAddr = addr.parse().unwrap();
            let mut out = Vec::new();
            crate::sock::write_ip(&mut out, addr);
            assert_eq!(String::from_utf8(out).unwrap(), addr.to_string());
        }
    }

    #[test]
    fn timestamps() {
        let t = UNIX_EPOCH + std::time::Duration::from_micros(1_796_151_221_694_918);
        let mut out = Vec::new();
        timestamp(&mut out, t);
        assert_eq!(String::from_utf8(out).unwrap(), "2026-12-01T18:53:41.694918Z");
        for (secs, want) in
            [(0, "1970-01-01T00:00:00"), (951_782_400, "2000-02-29T00:00:00"), (4_102_444_799, "2099-12-31T23:59:59")]
        {
            assert_eq!(std::str::from_utf8(&date_time(secs)).unwrap(), want);
        }
        let mut out = Vec::new();
        timestamp(&mut out, UNIX_EPOCH + std::time::Duration::from_micros(5));
        assert_eq!(String::from_utf8(out).unwrap(), "1970-01-01T00:00:00.000005Z");
    }
}
