//! HTTPS built in, as a LAN install meets it: `holdfast tls self-signed`, the real server over
//! TLS with `__Host-` cookies and HSTS, a certificate replaced while serving, the plain-HTTP
//! redirect, Chromium trusting the pinned certificate, and plain HTTP on the network refused.

use crate::browser::{Journey, browser_available, open_browser_with, start_driver};
use crate::cli::{admin_create_at, holdfast, run_err, run_ok};
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

struct Server {
    child: Child,
    base: String,
    redirect: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `holdfast serve` over the data folder's self-signed certificate, with a redirect listener.
fn serve(data: &str, dir: &Path) -> Server {
    let mut child = holdfast(
        &["serve", "--data-dir", data, "--listen", "127.0.0.1:0"],
        dir,
    )
    .env("HOLDFAST_TLS__REDIRECT_HTTP_FROM", "127.0.0.1:0")
    .env("HOLDFAST_BACKUP__EVERY_MINUTES", "0")
    .env("HOLDFAST_BACKUP__ON_SHUTDOWN", "false")
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut base, mut redirect) = (None, None);
    while base.is_none() || redirect.is_none() {
        let line = lines
            .next()
            .expect("the server printed its addresses")
            .unwrap();
        let url_after = |marker: &str| {
            line.split(marker)
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_owned)
        };
        base = base.or_else(|| url_after("listening on "));
        redirect = redirect.or_else(|| url_after("Plain HTTP on "));
    }
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        base: base.unwrap(),
        redirect: redirect.unwrap(),
    }
}

/// A client that trusts exactly this certificate file and reports the certificate it met.
fn client_trusting(cert: &Path) -> reqwest::Client {
    let pem = std::fs::read(cert).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .tls_info(true)
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn presented_fingerprint(response: &reqwest::Response) -> String {
    let info = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .unwrap();
    holdfast_web::transport::fingerprint(info.peer_certificate().unwrap())
}

/// The line after `heading` in the command's output, trimmed.
fn line_after(out: &str, heading: &str) -> String {
    let mut lines = out.lines();
    lines.find(|l| l.contains(heading)).unwrap();
    lines.next().unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_self_signed_certificate_cookies_redirect_reload_and_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    admin_create_at(&["--data-dir", data_arg], "boss", dir.path());
    holdfast_test_support::without_second_factor_rule(
        &format!("sqlite://{}?mode=rw", data.join("holdfast.db").display()),
        &data.join("audit.key"),
    )
    .await;
    let (out, _) = run_ok(
        &[
            "tls",
            "self-signed",
            "--hosts",
            "127.0.0.1,localhost",
            "--data-dir",
            data_arg,
        ],
        dir.path(),
    );
    let fingerprint = line_after(&out, "SHA-256 fingerprint:");
    let pin = out
        .split("sha256//")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .unwrap()
        .to_owned();
    let cert = data.join("tls/cert.pem");
    assert!(
        run_err(
            &["tls", "self-signed", "--hosts", "x", "--data-dir", data_arg],
            dir.path()
        )
        .contains("--replace"),
        "an existing certificate is not replaced by accident"
    );

    let server = serve(data_arg, dir.path());
    assert!(
        server.base.starts_with("https://127.0.0.1:"),
        "{}",
        server.base
    );
    let http = client_trusting(&cert);
    let health = http
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(presented_fingerprint(&health), fingerprint);
    assert_eq!(
        health.headers()["strict-transport-security"],
        "max-age=31536000"
    );

    // Cookies carry the __Host- prefix and Secure; a plain-named cookie is not accepted.
    let login = http
        .post(format!("{}/api/v1/auth/login", server.base))
        .json(&serde_json::json!({"username": "boss", "password": "a long enough password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let set_cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set_cookie.starts_with("__Host-holdfast_session="),
        "{set_cookie}"
    );
    assert!(
        set_cookie.contains("; Secure") && set_cookie.contains("Path=/"),
        "{set_cookie}"
    );
    let pair = set_cookie.split(';').next().unwrap().to_owned();
    let me = |cookie: String| {
        http.get(format!("{}/api/v1/me", server.base))
            .header("cookie", cookie)
            .send()
    };
    assert_eq!(me(pair.clone()).await.unwrap().status(), 200);
    let planted = pair.replace("__Host-holdfast_session", "holdfast_session");
    assert_eq!(me(planted).await.unwrap().status(), 401);

    // Plain HTTP only redirects, to the same path over HTTPS.
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let redirected = plain
        .get(format!("{}/contacts?q=1", server.redirect))
        .send()
        .await
        .unwrap();
    assert_eq!(redirected.status(), 308);
    assert_eq!(
        redirected.headers()["location"],
        format!("{}/contacts?q=1", server.base).as_str()
    );

    if browser_available() {
        let driver = start_driver().await;
        let profile = tempfile::tempdir().unwrap();
        let browser = open_browser_with(
            &driver,
            "en",
            profile.path(),
            &[format!("--ignore-certificate-errors-spki-list={pin}")],
        )
        .await;
        let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        let j = Journey {
            browser,
            base: &server.base,
            lang: "en",
            shots,
        };
        j.go("/login").await;
        j.fill("input[name=username]", "boss").await;
        j.fill("input[name=password]", "a long enough password")
            .await;
        j.click("form.stack button[type=submit]").await;
        assert_eq!(j.path().await, "/", "signed in over HTTPS");
        assert!(j.text("#security-alert").await.contains("backup key"));
        j.go("/admin/security").await;
        let page = j.body().await;
        assert!(page.contains("Holdfast serves HTTPS"), "{page}");
        j.shot("https-security").await;
        j.browser.close().await.unwrap();
    }

    // A renewed certificate is served without a restart.
    let (out, _) = run_ok(
        &[
            "tls",
            "self-signed",
            "--hosts",
            "127.0.0.1",
            "--replace",
            "--data-dir",
            data_arg,
        ],
        dir.path(),
    );
    let renewed = line_after(&out, "SHA-256 fingerprint:");
    assert_ne!(renewed, fingerprint);
    let mut seen = String::new();
    for _ in 0..60 {
        if let Ok(response) = client_trusting(&cert)
            .get(format!("{}/healthz", server.base))
            .send()
            .await
        {
            seen = presented_fingerprint(&response);
            if seen == renewed {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(seen, renewed, "the replaced certificate is served");
}

#[test]
fn plain_http_on_the_network_is_refused_before_anything_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let error = run_err(
        &[
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            "0.0.0.0:0",
        ],
        dir.path(),
    );
    assert!(error.contains("refusing to serve plain HTTP"), "{error}");
    assert!(error.contains("holdfast tls self-signed"), "{error}");
    assert!(error.contains("insecure_http = true"), "{error}");
    assert!(!data.exists(), "nothing was created");
}
