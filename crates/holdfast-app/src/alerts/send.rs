//! Sending one alert to one channel: SMTP with TLS or STARTTLS (lettre), or an HTTPS POST in
//! the channel's format. Every address a name resolves to is checked before connecting, and a
//! name that resolves only to private, loopback or link-local addresses is refused unless the
//! operator allowed them: a webhook address must not be a way to reach the office network or a
//! cloud machine's metadata service. Redirects are not followed for the same reason.

use super::{Alert, Config, Email, SmtpSecurity, Webhook, WebhookKind};
use anyhow::{Context as _, bail};
use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use serde_json::{Value, json};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(15);

pub(super) async fn deliver(config: &Config, channel: &str, alert: &Alert) -> anyhow::Result<()> {
    if channel == "email" {
        let email = config
            .email
            .as_ref()
            .context("e-mail is no longer set up")?;
        return send_email(email, config.allow_private_addresses, alert).await;
    }
    let hook = config
        .webhooks
        .iter()
        .find(|hook| hook.name == channel)
        .with_context(|| format!("the webhook {channel} is no longer set up"))?;
    post_webhook(hook, config.allow_private_addresses, alert).await
}

/// Whether an address is on the public internet: not loopback, private (RFC 1918, unique
/// local), link-local (which holds cloud metadata services), shared (CGNAT), unspecified,
/// multicast or reserved for documentation.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

/// The addresses `host` resolves to that alerts may reach.
async fn allowed_addresses(
    host: &str,
    port: u16,
    allow_private: bool,
) -> anyhow::Result<Vec<SocketAddr>> {
    let found: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("cannot resolve {host}"))?
        .collect();
    let allowed: Vec<SocketAddr> = found
        .iter()
        .copied()
        .filter(|addr| allow_private || is_public(addr.ip()))
        .collect();
    if allowed.is_empty() {
        bail!(
            "{host} is a private, loopback or link-local address ({}); alerts go there only with allow_private_addresses = true in [alerts]",
            found
                .iter()
                .map(|a| a.ip().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(allowed)
}

/// A resolver for the webhook client that drops addresses alerts may not reach.
struct GuardedResolver {
    allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let addresses = allowed_addresses(name.as_str(), 0, allow_private)
                .await
                .map_err(|error| -> Box<dyn std::error::Error + Send + Sync> { error.into() })?;
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The host (and port) of a webhook address, without its path and key, for the pages.
pub fn host_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|url| {
            let host = url.host_str()?.to_owned();
            Some(match url.port() {
                Some(port) => format!("{host}:{port}"),
                None => host,
            })
        })
        .unwrap_or_else(|| "?".into())
}

async fn send_email(email: &Email, allow_private: bool, alert: &Alert) -> anyhow::Result<()> {
    use lettre::message::header::ContentType;
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};

    let address = allowed_addresses(&email.host, email.port, allow_private).await?[0];
    let tls = match email.security {
        SmtpSecurity::Tls => Tls::Wrapper(TlsParameters::new(email.host.clone())?),
        SmtpSecurity::StartTls => Tls::Required(TlsParameters::new(email.host.clone())?),
        SmtpSecurity::None if !is_public(address.ip()) => Tls::None,
        SmtpSecurity::None => bail!(
            "unencrypted SMTP is refused to a public address ({}): set security = \"starttls\" or \"tls\"",
            address.ip()
        ),
    };
    let mut message = Message::builder()
        .from(email.from.parse().context("[alerts.email] from")?)
        .subject(format!("[Holdfast] {}", alert.title))
        .header(ContentType::TEXT_PLAIN);
    for to in &email.to {
        message = message.to(to
            .parse()
            .with_context(|| format!("[alerts.email] to: {to}"))?);
    }
    let message = message.body(plain_text(alert))?;
    // Connect to the address that was checked; TLS still verifies the relay's name.
    let mut transport =
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(address.ip().to_string())
            .port(address.port())
            .tls(tls)
            .timeout(Some(TIMEOUT));
    if let Some(username) = &email.username {
        transport = transport.credentials(Credentials::new(
            username.clone(),
            email.password.clone().unwrap_or_default(),
        ));
    }
    transport
        .build()
        .send(message)
        .await
        .with_context(|| format!("SMTP {}:{}", email.host, email.port))?;
    Ok(())
}

/// The alert as one block of text (e-mail body, robot messages).
fn plain_text(alert: &Alert) -> String {
    let mut text = format!("{}\n\n{}\n\n{}", alert.title, alert.text, alert.at);
    if let Some(link) = &alert.link {
        text.push('\n');
        text.push_str(link);
    }
    text
}

async fn post_webhook(hook: &Webhook, allow_private: bool, alert: &Alert) -> anyhow::Result<()> {
    let url = reqwest::Url::parse(&hook.url).context("the webhook address is not a URL")?;
    let literal = match url.host() {
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        Some(url::Host::Domain(_)) => None,
        None => bail!("the webhook address has no host"),
    };
    if let Some(ip) = literal.filter(|ip| !allow_private && !is_public(*ip)) {
        bail!(
            "{ip} is a private, loopback or link-local address; alerts go there only with allow_private_addresses = true in [alerts]"
        );
    }
    if url.scheme() != "https" && !allow_private {
        bail!("webhooks are sent over https only");
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let request = format_request(hook, alert, now.as_millis() as i64)?;
    let client = reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver { allow_private }))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TIMEOUT)
        .build()?;
    let mut post = client
        .post(request.url)
        .header("content-type", "application/json")
        .body(request.body);
    for (name, value) in request.headers {
        post = post.header(name, value);
    }
    // reqwest's error text would carry the address, whose query holds the robot's key.
    let response = post
        .send()
        .await
        .map_err(|error| anyhow::anyhow!("{}", chain(&error.without_url())))?;
    let status = response.status();
    let reply = response.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("the receiver answered {status}: {}", clip(&reply));
    }
    if hook.kind != WebhookKind::Generic {
        // The robots answer 200 with an error code in the body.
        let body: Value = serde_json::from_str(&reply).unwrap_or(Value::Null);
        let code = body
            .get("errcode")
            .or_else(|| body.get("code"))
            .or_else(|| body.get("StatusCode"))
            .and_then(Value::as_i64);
        if code != Some(0) {
            bail!("the robot refused the message: {}", clip(&reply));
        }
    }
    Ok(())
}

/// An error with its causes, as `{:#}` prints an anyhow error.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn clip(text: &str) -> String {
    text.chars().take(300).collect()
}

/// A webhook request as the channel's documented format wants it.
#[derive(Debug)]
pub struct Request {
    pub url: String,
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key)?;
    mac.update(message);
    Ok(mac.finalize().into_bytes().to_vec())
}

/// Builds the request for `hook` at `now_ms` (milliseconds since 1970).
pub fn format_request(hook: &Webhook, alert: &Alert, now_ms: i64) -> anyhow::Result<Request> {
    let text = format!("【Holdfast】{}", plain_text(alert));
    let base64 = base64::engine::general_purpose::STANDARD;
    Ok(match hook.kind {
        WebhookKind::Generic => {
            let body = serde_json::to_string(alert)?;
            let seconds = (now_ms / 1000).to_string();
            let secret = hook.secret.as_deref().unwrap_or_default();
            let signature = hmac_sha256(secret.as_bytes(), format!("{seconds}.{body}").as_bytes())?;
            Request {
                url: hook.url.clone(),
                body,
                headers: vec![
                    ("x-holdfast-event", alert.event.clone()),
                    ("x-holdfast-timestamp", seconds),
                    (
                        "x-holdfast-signature",
                        format!("sha256={}", hex(&signature)),
                    ),
                ],
            }
        }
        // 企业微信群机器人: {"msgtype": "text", "text": {"content": …}}.
        WebhookKind::WeCom => Request {
            url: hook.url.clone(),
            body: json!({"msgtype": "text", "text": {"content": text}}).to_string(),
            headers: Vec::new(),
        },
        // 钉钉自定义机器人, 加签: timestamp (ms) and sign = urlencode(base64(HMAC-SHA256(secret,
        // "{timestamp}\n{secret}"))) added to the address.
        WebhookKind::DingTalk => {
            let mut url = hook.url.clone();
            if let Some(secret) = &hook.secret {
                let signed =
                    hmac_sha256(secret.as_bytes(), format!("{now_ms}\n{secret}").as_bytes())?;
                let sign: String =
                    form_urlencoded::byte_serialize(base64.encode(signed).as_bytes()).collect();
                let joiner = if url.contains('?') { '&' } else { '?' };
                url.push_str(&format!("{joiner}timestamp={now_ms}&sign={sign}"));
            }
            Request {
                url,
                body: json!({"msgtype": "text", "text": {"content": text}}).to_string(),
                headers: Vec::new(),
            }
        }
        // 飞书自定义机器人, 签名校验: timestamp (s) and sign = base64(HMAC-SHA256 keyed with
        // "{timestamp}\n{secret}" over nothing) in the body.
        WebhookKind::Feishu => {
            let mut body = json!({"msg_type": "text", "content": {"text": text}});
            if let Some(secret) = &hook.secret {
                let seconds = now_ms / 1000;
                let signed = hmac_sha256(format!("{seconds}\n{secret}").as_bytes(), b"")?;
                body["timestamp"] = seconds.to_string().into();
                body["sign"] = base64.encode(signed).into();
            }
            Request {
                url: hook.url.clone(),
                body: body.to_string(),
                headers: Vec::new(),
            }
        }
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert() -> Alert {
        Alert {
            event: "test".into(),
            severity: "info".into(),
            title: "T".into(),
            text: "X".into(),
            at: "2026-12-03T00:00:00Z".into(),
            link: None,
        }
    }

    fn hook(kind: WebhookKind, secret: Option<&str>) -> Webhook {
        Webhook {
            name: "h".into(),
            kind,
            url: "https://example.com/hook?access_token=abc".into(),
            secret: secret.map(str::to_owned),
        }
    }

    #[test]
    fn private_loopback_and_metadata_addresses_are_not_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["8.8.8.8", "47.95.1.1", "2400:3200::1"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    /// DingTalk's 加签 for timestamp 1577262236757 and secret "this is secret", as computed by
    /// the Python sample in DingTalk's documentation.
    #[test]
    fn dingtalk_signs_the_address_as_documented() {
        let request = format_request(
            &hook(WebhookKind::DingTalk, Some("this is secret")),
            &alert(),
            1_577_262_236_757,
        )
        .unwrap();
        // Python: quote_plus(b64encode(hmac.new(secret, f"{ts}\n{secret}", sha256).digest()))
        assert_eq!(
            request.url,
            "https://example.com/hook?access_token=abc&timestamp=1577262236757&sign=hmPWwU%2B7lVdm3ZZz0r9tSfx0L4Q26jWOZr9%2BGs6EZQM%3D"
        );
        let body: Value = serde_json::from_str(&request.body).unwrap();
        assert_eq!(body["msgtype"], "text");
        assert!(body["text"]["content"].as_str().unwrap().contains("T\n\nX"));
    }

    #[test]
    fn feishu_signs_the_body_with_the_timestamp_and_secret_as_key() {
        let request = format_request(
            &hook(WebhookKind::Feishu, Some("s3")),
            &alert(),
            1_700_000_000_123,
        )
        .unwrap();
        let body: Value = serde_json::from_str(&request.body).unwrap();
        assert_eq!(body["timestamp"], "1700000000");
        // Python: b64encode(hmac.new(f"{ts}\n{secret}", b"", sha256).digest())
        assert_eq!(body["sign"], "eadg3K8D5pJHina1SanWPdQUcpqxvN+0kGvFxsngPzI=");
        assert_eq!(body["msg_type"], "text");
        assert!(body["content"]["text"].is_string());
    }
}
