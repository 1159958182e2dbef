//! `rolegate health`: probe the admin `/readyz` (a container's HEALTHCHECK,
//! where the runtime image has no curl): exit 0 when it answers 200, else 1.

use std::io::{Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use clap::Args;

#[derive(Debug, Args)]
pub(super) struct HealthArgs {
    /// The endpoint to probe (`http://` only): the admin listener's `/readyz`, or `/healthz`
    /// for liveness alone.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:9901/readyz")]
    url: String,
    /// How long the whole probe may take, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    timeout_ms: u64,
}

/// Prints `URL: STATUS BODY` and exits 0 on a 200; an error line and 1 otherwise.
pub(super) fn health(args: &HealthArgs) -> anyhow::Result<ExitCode> {
    let (status, body) = probe(&args.url, Duration::from_millis(args.timeout_ms.max(1)))
        .with_context(|| format!("{}: no answer", args.url))?;
    let body = body.lines().next().unwrap_or("").trim();
    if status == 200 {
        println!("{}: {status} {body}", args.url);
        Ok(ExitCode::SUCCESS)
    } else {
        super::print_error(format!("{}: {status} {body}", args.url));
        Ok(ExitCode::FAILURE)
    }
}

/// One `GET` over HTTP/1.1 with `Connection: close`: the status and the body (heads are small).
fn probe(url: &str, timeout: Duration) -> anyhow::Result<(u16, String)> {
    let deadline = Instant::now() + timeout;
    let rest = url.strip_prefix("http://").ok_or_else(|| anyhow!("only http:// URLs can be probed"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let with_port = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let addr = with_port.to_socket_addrs()?.next().ok_or_else(|| anyhow!("{authority} has no address"))?;
    let left = || deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    let mut stream = TcpStream::connect_timeout(&addr, left())?;
    stream.set_write_timeout(Some(left()))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: rolegate-health\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if Instant::now() >= deadline {
            bail!("timed out");
        }
        stream.set_read_timeout(Some(left()))?;
        match stream.read(&mut buf)? {
            0 => break,
            n if response.len() + n > 64 * 1024 => bail!("the answer is over 64 KiB"),
            n => response.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&response);
    let status = text
        .strip_prefix("HTTP/1.")
        .and_then(|r| r.get(2..5))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| anyhow!("not an HTTP response"))?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    Ok((status, body))
}
