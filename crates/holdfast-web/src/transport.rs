//! How the server meets the network: plain HTTP or HTTPS (rustls, TLS 1.2 and 1.3 only) on one
//! listener, a time limit on each request's headers and on each TLS handshake, certificate files
//! reloaded when they change on disk, and a plain-HTTP listener that only redirects to HTTPS.

use axum::Router;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_server::tls_rustls::RustlsConfig;
use holdfast_app::App;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How often the certificate files are looked at for a change.
pub const RELOAD_CHECK: Duration = Duration::from_secs(2);
/// Time a client gets for its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time requests in flight get to finish once shutdown begins.
const DRAIN: Duration = Duration::from_secs(30);

/// The certificate chain and private key files (PEM) HTTPS is served with.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl TlsFiles {
    /// Reads and checks both files: the chain parses, the key parses and belongs to the
    /// first certificate. Errors name the file and what to do.
    pub fn load(&self) -> anyhow::Result<rustls::ServerConfig> {
        let cert_pem = std::fs::read(&self.cert_file).map_err(|e| {
            anyhow::anyhow!(
                "cannot read the TLS certificate file {}: {e}",
                self.cert_file.display()
            )
        })?;
        let certs = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                anyhow::anyhow!(
                    "the TLS certificate file {} is not PEM certificates: {e:?}",
                    self.cert_file.display()
                )
            })?;
        anyhow::ensure!(
            !certs.is_empty(),
            "the TLS certificate file {} holds no certificate (expected -----BEGIN CERTIFICATE-----)",
            self.cert_file.display()
        );
        let key_pem = std::fs::read(&self.key_file).map_err(|e| {
            anyhow::anyhow!(
                "cannot read the TLS key file {}: {e}",
                self.key_file.display()
            )
        })?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            anyhow::anyhow!(
                "the TLS key file {} holds no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e:?}",
                self.key_file.display()
            )
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| anyhow::anyhow!("TLS setup: {e}"))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| {
                anyhow::anyhow!(
                    "the TLS key {} does not fit the certificate {}: {e}",
                    self.key_file.display(),
                    self.cert_file.display()
                )
            })?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }

    /// When either file last changed (and its size), to notice a renewed certificate.
    fn stamp(&self) -> Option<(SystemTime, u64, SystemTime, u64)> {
        let cert = std::fs::metadata(&self.cert_file).ok()?;
        let key = std::fs::metadata(&self.key_file).ok()?;
        Some((
            cert.modified().ok()?,
            cert.len(),
            key.modified().ok()?,
            key.len(),
        ))
    }
}

/// Serves the application on `listener` until `shutdown` completes, then stops accepting and
/// lets requests in flight finish (a commit under way is committed and answered). With `tls`,
/// only HTTPS is spoken on this listener and the certificate is reloaded when its files change.
pub async fn serve(
    listener: std::net::TcpListener,
    app: App,
    tls: Option<TlsFiles>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let header_timeout = Duration::from_secs(app.config.header_timeout_seconds.max(1));
    let service = crate::router(app).into_make_service_with_connect_info::<SocketAddr>();
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(Some(DRAIN));
    });
    match tls {
        None => {
            let mut server = axum_server::from_tcp(listener)?.handle(handle);
            limit_header_time(server.http_builder(), header_timeout);
            server
                .first_request_timeout(header_timeout)
                .serve(service)
                .await
        }
        Some(files) => {
            let config = files.load().map_err(std::io::Error::other)?;
            let config = RustlsConfig::from_config(Arc::new(config));
            let reloader = tokio::spawn(reload_on_change(files, config.clone()));
            let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(config)
                .handshake_timeout(HANDSHAKE_TIMEOUT);
            let mut server = axum_server::from_tcp(listener)?
                .acceptor(acceptor)
                .handle(handle);
            limit_header_time(server.http_builder(), header_timeout);
            let served = server
                .first_request_timeout(header_timeout)
                .serve(service)
                .await;
            reloader.abort();
            served
        }
    }
}

/// A client that opens a connection and then sends its request headers slowly (or never) is
/// cut off after `timeout`, so slow clients cannot hold connections open.
fn limit_header_time(
    builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    timeout: Duration,
) {
    builder.http1().header_read_timeout(Some(timeout));
    builder
        .http2()
        .keep_alive_interval(Some(timeout))
        .keep_alive_timeout(timeout);
}

/// Swaps in a renewed certificate without a restart; a file that does not load (half written,
/// a key that does not fit) is logged and the certificate in use is kept.
async fn reload_on_change(files: TlsFiles, config: RustlsConfig) {
    let mut seen = files.stamp();
    let mut tick = tokio::time::interval(RELOAD_CHECK);
    loop {
        tick.tick().await;
        let now = files.stamp();
        if now == seen {
            continue;
        }
        match files.load() {
            Ok(server_config) => {
                config.reload_from_config(Arc::new(server_config));
                seen = now;
                tracing::info!(
                    cert_file = %files.cert_file.display(),
                    "TLS certificate reloaded"
                );
            }
            Err(error) => tracing::warn!(
                error = %format!("{error:#}"),
                "the TLS certificate files changed but do not load; still serving the previous certificate"
            ),
        }
    }
}

/// A plain-HTTP server whose only answer is a permanent redirect to the same path over HTTPS:
/// to `public_url` when it is set, else to the host the browser asked for on `https_port`.
pub async fn serve_redirect(
    listener: std::net::TcpListener,
    public_url: Option<String>,
    https_port: u16,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = Router::new().fallback(move |request: Request| {
        let target = redirect_target(&request, public_url.as_deref(), https_port);
        async move { redirect_response(target) }
    });
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(Some(Duration::from_secs(1)));
    });
    let mut server = axum_server::from_tcp(listener)?.handle(handle);
    limit_header_time(server.http_builder(), Duration::from_secs(10));
    server.serve(router.into_make_service()).await
}

fn redirect_target(request: &Request, public_url: Option<&str>, https_port: u16) -> Option<String> {
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    if let Some(base) = public_url {
        return Some(format!("{}{path}", base.trim_end_matches('/')));
    }
    let host = request.headers().get(header::HOST)?.to_str().ok()?;
    let host = host_without_port(host)?;
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    Some(format!("https://{host}{port}{path}"))
}

/// `crm.example.com:80` → `crm.example.com`; `[::1]:80` → `[::1]`. `None` for anything that is
/// not a plain host name or address (the redirect must not be steered to another shape of URL).
fn host_without_port(host: &str) -> Option<&str> {
    let name = if host.starts_with('[') {
        &host[..=host.find(']')?]
    } else {
        host.split(':').next()?
    };
    let plain = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'));
    (plain && !name.is_empty()).then_some(name)
}

fn redirect_response(target: Option<String>) -> Response {
    match target.and_then(|t| axum::http::HeaderValue::from_str(&t).ok()) {
        Some(location) => {
            let mut response = (
                StatusCode::PERMANENT_REDIRECT,
                "Holdfast is served over HTTPS only.\n",
            )
                .into_response();
            response.headers_mut().insert(header::LOCATION, location);
            response
        }
        None => (
            StatusCode::BAD_REQUEST,
            "Holdfast is served over HTTPS only; open its https:// address.\n",
        )
            .into_response(),
    }
}

/// SHA-256 of a certificate's DER as colon-separated hex, the way browsers show it.
pub fn fingerprint(der: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The fingerprint of the first certificate in a PEM file.
pub fn file_fingerprint(cert_file: &Path) -> anyhow::Result<String> {
    let pem = std::fs::read(cert_file)?;
    let first = CertificateDer::pem_slice_iter(&pem)
        .next()
        .ok_or_else(|| anyhow::anyhow!("{} holds no certificate", cert_file.display()))?
        .map_err(|e| anyhow::anyhow!("{}: {e:?}", cert_file.display()))?;
    Ok(fingerprint(&first))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_keep_the_path_and_never_leave_the_host_shape() {
        let request = |host: &str, path: &str| {
            Request::builder()
                .uri(path)
                .header(header::HOST, host)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let cases = [
            (
                "crm.lan",
                "/contacts?q=1",
                8443,
                Some("https://crm.lan:8443/contacts?q=1"),
            ),
            ("crm.lan:80", "/", 443, Some("https://crm.lan/")),
            (
                "192.168.1.5:8080",
                "/login",
                8443,
                Some("https://192.168.1.5:8443/login"),
            ),
            ("[::1]:80", "/", 443, Some("https://[::1]/")),
            ("evil.cn/x", "/", 443, None),
            ("a@b", "/", 443, None),
        ];
        for (host, path, port, expected) in cases {
            assert_eq!(
                redirect_target(&request(host, path), None, port).as_deref(),
                expected,
                "{host}"
            );
        }
        assert_eq!(
            redirect_target(&request("x", "/a?b"), Some("https://crm.example.com/"), 443)
                .as_deref(),
            Some("https://crm.example.com/a?b")
        );
    }
}
