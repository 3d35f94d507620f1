//! The `[alerts]` section of the configuration: where alerts go (e-mail, webhooks), checked
//! when the configuration loads so that a typo is found at start, not when the first alert
//! should have gone out.

use crate::config::SecretText;
use anyhow::{Context as _, bail};
use holdfast_app::alerts::{self, SmtpSecurity, WebhookKind};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsSection {
    /// Let alerts reach private, loopback and link-local addresses (a relay in the office).
    pub allow_private_addresses: bool,
    /// `en` or `zh-CN`.
    pub language: String,
    pub email: Option<EmailSection>,
    pub webhooks: Vec<WebhookSection>,
}

impl Default for AlertsSection {
    fn default() -> Self {
        AlertsSection {
            allow_private_addresses: false,
            language: "en".into(),
            email: None,
            webhooks: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSection {
    pub smtp_host: String,
    /// 0: the usual port of `security` (465, 587 or 25).
    #[serde(default)]
    pub smtp_port: u16,
    /// `starttls` (default), `tls`, or `none` (a private relay only).
    #[serde(default = "starttls")]
    pub security: String,
    #[serde(default)]
    pub username: String,
    /// Or `password_file`; `HOLDFAST_ALERTS__EMAIL__PASSWORD` in the environment.
    #[serde(default)]
    pub password: SecretText,
    #[serde(default)]
    pub password_file: PathBuf,
    pub from: String,
    pub to: Vec<String>,
}

fn starttls() -> String {
    "starttls".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    pub name: String,
    /// `generic`, `wecom`, `dingtalk` or `feishu`.
    pub kind: String,
    pub url: SecretText,
    #[serde(default)]
    pub secret: SecretText,
    #[serde(default)]
    pub secret_file: PathBuf,
}

/// The value itself, or the first line of the file it names.
fn secret(value: &SecretText, file: &Path, key: &str) -> anyhow::Result<Option<String>> {
    match (value.0.is_empty(), file.as_os_str().is_empty()) {
        (true, true) => Ok(None),
        (false, false) => bail!("{key}: give the value or {key}_file, not both"),
        (false, true) => Ok(Some(value.0.clone())),
        (true, false) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("{key}_file: cannot read {}", file.display()))?;
            Ok(Some(text.trim().to_owned()))
        }
    }
}

impl AlertsSection {
    /// The channels, checked.
    pub fn to_app(&self) -> anyhow::Result<alerts::Config> {
        anyhow::ensure!(
            matches!(self.language.as_str(), "en" | "zh-CN"),
            "alerts.language must be en or zh-CN"
        );
        let email = self.email.as_ref().map(email_of).transpose()?;
        let mut webhooks = Vec::new();
        for (index, hook) in self.webhooks.iter().enumerate() {
            let at = format!("alerts.webhooks[{index}]");
            let name = hook.name.trim();
            anyhow::ensure!(
                !name.is_empty() && name != "email" && name.chars().count() <= 40,
                "{at}.name must be 1 to 40 characters and not \"email\""
            );
            anyhow::ensure!(
                !webhooks.iter().any(|w: &alerts::Webhook| w.name == name),
                "{at}.name: another webhook is already named {name:?}"
            );
            let kind = WebhookKind::parse(&hook.kind)
                .with_context(|| format!("{at}.kind must be generic, wecom, dingtalk or feishu"))?;
            let url = reqwest::Url::parse(&hook.url.0)
                .ok()
                .filter(|url| matches!(url.scheme(), "https" | "http") && url.host().is_some())
                .with_context(|| format!("{at}.url is not an https:// address"))?;
            let secret = secret(&hook.secret, &hook.secret_file, &format!("{at}.secret"))?;
            anyhow::ensure!(
                kind != WebhookKind::Generic || secret.as_ref().is_some_and(|s| s.len() >= 16),
                "{at}.secret: a generic webhook is signed; give a secret of at least 16 characters, which the receiver checks"
            );
            webhooks.push(alerts::Webhook {
                name: name.to_owned(),
                kind,
                url: url.to_string(),
                secret,
            });
        }
        Ok(alerts::Config {
            allow_private_addresses: self.allow_private_addresses,
            language: self.language.clone(),
            email,
            webhooks,
        })
    }
}

fn email_of(section: &EmailSection) -> anyhow::Result<alerts::Email> {
    let security = match section.security.as_str() {
        "tls" => SmtpSecurity::Tls,
        "starttls" => SmtpSecurity::StartTls,
        "none" => SmtpSecurity::None,
        _ => bail!("alerts.email.security must be starttls, tls or none"),
    };
    let port = match (section.smtp_port, security) {
        (0, SmtpSecurity::Tls) => 465,
        (0, SmtpSecurity::StartTls) => 587,
        (0, SmtpSecurity::None) => 25,
        (port, _) => port,
    };
    anyhow::ensure!(
        !section.smtp_host.trim().is_empty(),
        "alerts.email.smtp_host is empty"
    );
    let looks_like_address = |text: &str| {
        let text = text.trim();
        text.contains('@') && !text.starts_with('@') && !text.ends_with('@')
    };
    anyhow::ensure!(
        looks_like_address(&section.from),
        "alerts.email.from is not an e-mail address"
    );
    anyhow::ensure!(
        !section.to.is_empty() && section.to.iter().all(|to| looks_like_address(to)),
        "alerts.email.to must list at least one e-mail address"
    );
    let password = secret(
        &section.password,
        &section.password_file,
        "alerts.email.password",
    )?;
    Ok(alerts::Email {
        host: section.smtp_host.trim().to_owned(),
        port,
        security,
        username: Some(section.username.trim().to_owned()).filter(|u| !u.is_empty()),
        password,
        from: section.from.trim().to_owned(),
        to: section.to.iter().map(|to| to.trim().to_owned()).collect(),
    })
}
