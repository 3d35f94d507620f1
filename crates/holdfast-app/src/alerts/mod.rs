//! Alerts that leave the building: e-mail over SMTP and webhooks (generic JSON signed with
//! HMAC-SHA256, and the group robots of 企业微信 WeCom, 钉钉 DingTalk and 飞书 Feishu), for what
//! an administrator must hear about even when nobody opens Holdfast: a backup that failed or
//! went stale, a failed restore drill, corruption, a tripped guard, a lockdown, a new
//! administrator, two-step sign-in turned off for an administrator, a burst of failed sign-ins.
//!
//! Channels are set in the server's configuration file, not in the pages: an intruder who holds
//! an administrator's account cannot silence them. Each alert is queued per channel in
//! `alert_deliveries` (the delivery log), sent at once, and retried with back-off (1, 5, 30
//! minutes, 2 and 6 hours) until delivered or given up. Outgoing connections refuse private,
//! loopback and link-local addresses unless the operator allows them
//! (`allow_private_addresses`, for a mail relay or a receiver on the office network).

mod send;
mod words;

use crate::{App, AppError};
use holdfast_domain::access::authorize;
use holdfast_domain::{Action, Actor, Timestamp};
use holdfast_store::AuditDraft;
use holdfast_store::alerts::DeliveryRow;
use serde::Serialize;
use serde_json::json;

pub use send::is_public;

/// Where alerts go (`[alerts]` in the configuration file).
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Let alerts reach private, loopback and link-local addresses.
    pub allow_private_addresses: bool,
    /// `en` or `zh-CN`: the language alerts are written in.
    pub language: String,
    pub email: Option<Email>,
    pub webhooks: Vec<Webhook>,
}

impl Config {
    pub fn is_on(&self) -> bool {
        self.email.is_some() || !self.webhooks.is_empty()
    }

    /// The channels' names: `email`, then each webhook's.
    pub fn channel_names(&self) -> Vec<String> {
        self.email
            .iter()
            .map(|_| "email".to_owned())
            .chain(self.webhooks.iter().map(|w| w.name.clone()))
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// TLS from the first byte (port 465).
    Tls,
    /// Plain connection upgraded with STARTTLS, which is required (port 587).
    StartTls,
    /// No encryption: only to a private or loopback relay, with `allow_private_addresses`.
    None,
}

#[derive(Clone)]
pub struct Email {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<String>,
    pub from: String,
    pub to: Vec<String>,
}

impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Email")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("to", &self.to)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookKind {
    /// JSON, signed: `X-Holdfast-Signature: sha256=HMAC(secret, "{timestamp}.{body}")`.
    Generic,
    WeCom,
    DingTalk,
    Feishu,
}

impl WebhookKind {
    pub fn parse(text: &str) -> Option<WebhookKind> {
        Some(match text {
            "generic" => WebhookKind::Generic,
            "wecom" => WebhookKind::WeCom,
            "dingtalk" => WebhookKind::DingTalk,
            "feishu" => WebhookKind::Feishu,
            _ => return None,
        })
    }
}

#[derive(Clone)]
pub struct Webhook {
    pub name: String,
    pub kind: WebhookKind,
    /// Secret: robots' addresses carry their key.
    pub url: String,
    /// The HMAC key (generic), or the robot's signing secret (DingTalk 加签, Feishu 签名校验).
    pub secret: Option<String>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// Something an administrator must hear about.
#[derive(Debug, Clone)]
pub enum Event {
    BackupFailed {
        error: String,
    },
    BackupStale {
        newest: Option<String>,
    },
    DrillFailed {
        error: String,
    },
    Corruption {
        detail: String,
    },
    GuardTripped {
        username: String,
        kind: String,
        amount: i64,
        threshold: i64,
    },
    Lockdown {
        on: bool,
        by: String,
        reason: String,
    },
    NewAdmin {
        username: String,
        by: String,
    },
    AdminTwoStepOff {
        username: String,
        by: String,
    },
    SigninBurst {
        client: String,
        failures: i64,
    },
    Test {
        by: String,
    },
}

impl Event {
    pub fn code(&self) -> &'static str {
        match self {
            Event::BackupFailed { .. } => "backup_failed",
            Event::BackupStale { .. } => "backup_stale",
            Event::DrillFailed { .. } => "drill_failed",
            Event::Corruption { .. } => "corruption",
            Event::GuardTripped { .. } => "guard_tripped",
            Event::Lockdown { .. } => "lockdown",
            Event::NewAdmin { .. } => "new_admin",
            Event::AdminTwoStepOff { .. } => "admin_two_step_off",
            Event::SigninBurst { .. } => "signin_burst",
            Event::Test { .. } => "test",
        }
    }

    /// Conditions that persist are told once per period, not at every check.
    fn dedupe(&self) -> Option<(String, i64)> {
        const HOUR: i64 = 3_600_000_000;
        match self {
            Event::BackupStale { .. } => Some(("backup_stale".into(), 24 * HOUR)),
            Event::Corruption { .. } => Some(("corruption".into(), 24 * HOUR)),
            Event::SigninBurst { client, .. } => Some((format!("signin_burst:{client}"), HOUR)),
            _ => None,
        }
    }
}

/// The alert as every channel receives it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Alert {
    pub event: String,
    /// `critical`, `warning` or `info`.
    pub severity: String,
    pub title: String,
    pub text: String,
    /// RFC 3339, UTC.
    pub at: String,
    /// The page to open (`public_url` + path), when Holdfast knows its address.
    pub link: Option<String>,
}

/// Queues `event` for every channel and starts sending it. Never fails the action that raised
/// it: an alert that cannot be queued is logged.
pub async fn raise(app: &App, event: Event) {
    if let Err(error) = queue(app, &event).await {
        tracing::error!(event = event.code(), error = %format!("{error:#}"), "an alert could not be queued");
    }
}

async fn queue(app: &App, event: &Event) -> anyhow::Result<usize> {
    let config = &app.config.alerts;
    if !config.is_on() {
        return Ok(0);
    }
    let alert = words::alert(app, event);
    let now = app.now();
    let dedupe = event.dedupe();
    let queued = app
        .db
        .queue_alert(
            event.code(),
            &config.channel_names(),
            &serde_json::to_string(&alert)?,
            dedupe
                .as_ref()
                .map(|(key, period)| (key.as_str(), Timestamp(now.0 - period))),
            now,
        )
        .await?;
    if queued > 0 {
        let app = app.clone();
        tokio::spawn(async move {
            if let Err(error) = deliver_due(&app).await {
                tracing::error!(error = %format!("{error:#}"), "sending alerts failed");
            }
        });
    }
    Ok(queued)
}

/// Minutes to wait after each failed attempt; after the last, the delivery is given up.
const BACK_OFF_MINUTES: [i64; 5] = [1, 5, 30, 120, 360];

/// Sends every delivery that is due. Returns how many were delivered.
pub async fn deliver_due(app: &App) -> anyhow::Result<usize> {
    let mut delivered = 0;
    let due = app.db.claim_due_alerts(app.now(), 120_000_000, 50).await?;
    for delivery in due {
        let alert: Alert = serde_json::from_str(&delivery.alert)?;
        let result = send::deliver(&app.config.alerts, &delivery.channel, &alert).await;
        let now = app.now();
        match result {
            Ok(()) => {
                delivered += 1;
                app.db.alert_attempted(delivery.id, now, None, None).await?;
            }
            Err(error) => {
                let error = format!("{error:#}");
                let retry = BACK_OFF_MINUTES
                    .get(delivery.attempts as usize)
                    .map(|minutes| Timestamp(now.0 + minutes * 60_000_000));
                tracing::warn!(
                    channel = delivery.channel,
                    event = delivery.event,
                    attempt = delivery.attempts + 1,
                    gave_up = retry.is_none(),
                    error,
                    "an alert was not delivered"
                );
                app.db
                    .alert_attempted(delivery.id, now, Some(&error), retry)
                    .await?;
            }
        }
    }
    Ok(delivered)
}

/// The server's minute: retries what is due, and raises alerts for conditions nobody acted
/// on — backups gone stale, a damaged database.
pub async fn tick(app: &App) -> anyhow::Result<()> {
    if !app.config.alerts.is_on() {
        return Ok(());
    }
    let backups = crate::backup::schedule::status(app).await?;
    if backups.problems.contains(&"stale") {
        let newest = backups.last_good.and_then(|run| run.file);
        raise(app, Event::BackupStale { newest }).await;
    }
    if let Some(fault) = app.db.health().corrupt() {
        raise(
            app,
            Event::Corruption {
                detail: fault.detail,
            },
        )
        .await;
    }
    deliver_due(app).await?;
    Ok(())
}

/// What the security page shows about alerts.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    pub channels: Vec<Channel>,
    pub deliveries: Vec<DeliveryRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Channel {
    pub name: String,
    /// `email`, `generic`, `wecom`, `dingtalk` or `feishu`.
    pub kind: String,
    /// Where it goes, without secrets: the mail relay and recipients, or the webhook's host.
    pub target: String,
}

/// Channels and the delivery log (administrators and auditors).
pub async fn overview(app: &App, actor: &Actor) -> Result<Overview, AppError> {
    authorize(actor, Action::Audit)?;
    let config = &app.config.alerts;
    let mut channels: Vec<Channel> = config
        .email
        .iter()
        .map(|email| Channel {
            name: "email".into(),
            kind: "email".into(),
            target: format!("{}:{} → {}", email.host, email.port, email.to.join(", ")),
        })
        .collect();
    channels.extend(config.webhooks.iter().map(|hook| {
        Channel {
            name: hook.name.clone(),
            kind: serde_json::to_value(hook.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            target: send::host_of(&hook.url),
        }
    }));
    Ok(Overview {
        channels,
        deliveries: app.db.alert_deliveries(50).await?,
    })
}

/// Sends a test alert to every channel (administrators). The delivery log shows the outcome.
pub async fn send_test(app: &App, actor: &Actor, op_id: &str) -> Result<usize, AppError> {
    authorize(actor, Action::Administer)?;
    if !app.config.alerts.is_on() {
        return Err(AppError::Conflict {
            code: "alerts_off",
            message: "No alert channel is set up: add [alerts.email] or [[alerts.webhooks]] to the server's configuration file (holdfast config example shows how), then restart Holdfast".into(),
            current: None,
        });
    }
    let queued = queue(
        app,
        &Event::Test {
            by: actor.username.clone(),
        },
    )
    .await?;
    let mut tx = app.db.begin_write(app.now()).await?;
    tx.audit_event(AuditDraft::new(
        actor,
        op_id,
        "alerts.test",
        json!({"channels": app.config.alerts.channel_names()}),
    ))
    .await?;
    tx.commit().await?;
    Ok(queued)
}

/// The checklist's line about alerts: none set up (amber), the newest delivery of a channel
/// failed (red), or all working.
pub async fn checklist_item(app: &App) -> crate::checklist::Item {
    use crate::security::Level;
    let item = |code, level, detail| crate::checklist::Item {
        area: "alerts",
        code,
        level,
        weight: 5,
        detail,
    };
    let config = &app.config.alerts;
    if !config.is_on() {
        return item("alerts_off", Level::Warn, String::new());
    }
    let deliveries = match app.db.alert_deliveries(200).await {
        Ok(deliveries) => deliveries,
        Err(error) => return item("check_failed", Level::Warn, format!("{error:#}")),
    };
    let failing: Vec<String> = config
        .channel_names()
        .into_iter()
        .filter(|name| {
            deliveries
                .iter()
                .find(|d| &d.channel == name && (d.delivered_at.is_some() || d.attempts > 0))
                .is_some_and(|d| d.delivered_at.is_none())
        })
        .collect();
    match failing.is_empty() {
        true => item("alerts_ok", Level::Good, config.channel_names().join(", ")),
        false => item("alerts_failing", Level::Bad, failing.join(", ")),
    }
}
