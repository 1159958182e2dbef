//! A load client that opens a new connection for every request: plain TCP,
//! or TLS with a full handshake each time, or TLS resuming the session of an
//! earlier connection (tickets or the server's session cache). wrk cannot do
//! the last two; bench/workloads.sh runs this against nginx and rolegate
//! side by side.
//!
//! Environment: `CHURN_URL` (`http://` or `https://host:port/path`),
//! `CHURN_TOKEN` (sent as a bearer token), `CHURN_CONNS` (concurrent
//! clients, default 32), `CHURN_SECS` (default 8), `CHURN_RESUME=1` (resume
//! TLS sessions). Prints one line: `requests N rps R p50_us P p99_us Q errors
//! E resumed S`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Accepts any server certificate: this client measures, it does not authenticate.
#[derive(Debug)]
struct AnyCert;

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms.supported_schemes()
    }
}

async fn one(
    addr: &str,
    host: &str,
    request: &[u8],
    tls: Option<&tokio_rustls::TlsConnector>,
) -> Result<bool, Box<dyn std::error::Error>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(1024);
    match tls {
        None => {
            let mut s = tcp;
            s.write_all(request).await?;
            s.read_to_end(&mut buf).await?;
            check(&buf)?;
            Ok(false)
        }
        Some(connector) => {
            let mut s = connector.connect(ServerName::try_from(host.to_owned())?, tcp).await?;
            let resumed = s.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
            s.write_all(request).await?;
            // The server closes after its answer (`Connection: close`); a missing
            // close_notify is not this client's concern.
            let _ = s.read_to_end(&mut buf).await;
            check(&buf)?;
            Ok(resumed)
        }
    }
}

fn check(buf: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
    if buf.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        Err(format!("unexpected answer: {:?}", String::from_utf8_lossy(&buf[..buf.len().min(40)])).into())
    }
}

fn main() {
    let url = std::env::var("CHURN_URL").expect("CHURN_URL");
    let token = std::env::var("CHURN_TOKEN").unwrap_or_default();
    let conns: usize = std::env::var("CHURN_CONNS").ok().and_then(|v| v.parse().ok()).unwrap_or(32);
    let secs: u64 = std::env::var("CHURN_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    let resume = std::env::var("CHURN_RESUME").is_ok_and(|v| v == "1");
    let (scheme, rest) = url.split_once("://").expect("scheme://");
    let (authority, path) = rest.split_once('/').map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h).to_owned();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    let tls = (scheme == "https").then(|| {
        let mut config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCert))
                .with_no_client_auth();
        config.resumption = if resume { Resumption::in_memory_sessions(4096) } else { Resumption::disabled() };
        tokio_rustls::TlsConnector::from(Arc::new(config))
    });
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let latencies = Arc::new(Mutex::new(Vec::<u32>::with_capacity(1 << 20)));
    let (errors, resumed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let started = Instant::now();
    let end = started + Duration::from_secs(secs);
    rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let (authority, host, request, tls) = (authority.to_owned(), host.clone(), request.clone(), tls.clone());
            let (latencies, errors, resumed) = (Arc::clone(&latencies), Arc::clone(&errors), Arc::clone(&resumed));
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                while Instant::now() < end {
                    let t = Instant::now();
                    match one(&authority, &host, &request, tls.as_ref()).await {
                        Ok(r) => {
                            mine.push(t.elapsed().as_micros() as u32);
                            if r {
                                resumed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                latencies.lock().unwrap().extend(mine);
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    let took = started.elapsed().as_secs_f64();
    let mut l = latencies.lock().unwrap().clone();
    l.sort_unstable();
    let pct = |p: f64| l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1))).copied().unwrap_or(0);
    println!(
        "requests {} rps {:.0} p50_us {} p99_us {} errors {} resumed {}",
        l.len(),
        l.len() as f64 / took,
        pct(0.50),
        pct(0.99),
        errors.load(Ordering::Relaxed),
        resumed.load(Ordering::Relaxed)
    );
}
