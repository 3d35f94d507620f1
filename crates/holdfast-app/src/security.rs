//! What keeps the customers safe in transit and at rest, as the admin security page and
//! `holdfast doctor` show it: how the server meets the network, whether the database is
//! encrypted, and whether backups are encrypted with a key that is also kept off this machine.
//!
//! The backup key's recovery sheet (the key written out for printing) is shown to
//! administrators only and every showing is audited; until an administrator confirms the key is
//! stored away from the machine, the pages keep reminding them.

use crate::{App, AppError};
use holdfast_domain::access::authorize;
use holdfast_domain::{Action, Actor, Timestamp};
use holdfast_store::AuditDraft;
use serde::Serialize;
use serde_json::json;
use std::path::PathBuf;

/// How this server meets the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Plain HTTP on a loopback address: only this machine can connect.
    Loopback,
    /// HTTPS served by Holdfast with these files (`redirect_from`: a plain-HTTP listener that
    /// only redirects).
    Tls {
        cert_file: PathBuf,
        key_file: PathBuf,
        redirect_from: Option<String>,
    },
    /// Plain HTTP behind a proxy that users reach over HTTPS (`public_url`).
    Proxy { public_url: String },
    /// Plain HTTP on the network, allowed by `insecure_http = true`: passwords, cookies and
    /// customers cross the network in clear.
    InsecureHttp { listen: String },
}

/// Green, amber or red.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Good,
    Warn,
    Bad,
}

/// One line of the security page: a translatable `code` (`security.<code>` in the pages), its
/// level, and the facts that go with it (file names, fingerprints) untranslated.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What is checked (`transport`, `database`, `backup_key`), as the checklist names it.
    pub area: &'static str,
    /// How much it counts towards the checklist's score.
    pub weight: u32,
    pub code: &'static str,
    pub level: Level,
    pub detail: String,
}

/// The backup key as the pages show it (never the key itself).
#[derive(Debug, Clone, Serialize)]
pub struct BackupKeyState {
    pub fingerprint: String,
    /// `key` (an age key) or `passphrase`.
    pub kind: &'static str,
    /// Who confirmed this very key is stored off the machine, and when.
    pub confirmed_by: Option<String>,
    pub confirmed_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub checks: Vec<Check>,
    /// `None` when this server takes no backups or they are not encrypted.
    pub backup_key: Option<BackupKeyState>,
}

impl Status {
    /// The worst level of all checks.
    pub fn level(&self) -> Level {
        let levels = self.checks.iter().map(|c| c.level);
        if levels.clone().any(|l| l == Level::Bad) {
            Level::Bad
        } else if levels.clone().any(|l| l == Level::Warn) {
            Level::Warn
        } else {
            Level::Good
        }
    }

    /// The backup key still waits for an administrator to confirm it is stored away.
    pub fn backup_key_unconfirmed(&self) -> bool {
        self.backup_key
            .as_ref()
            .is_some_and(|key| key.confirmed_at.is_none())
    }
}

const CONFIRMED: &str = "backup_key_confirmed";

/// The security status (administrators and auditors).
pub async fn status(app: &App, actor: &Actor) -> Result<Status, AppError> {
    authorize(actor, Action::Audit)?;
    Ok(status_unchecked(app).await?)
}

/// The same for the server's own use (`doctor`, the reminder on administrators' pages).
pub async fn status_unchecked(app: &App) -> anyhow::Result<Status> {
    let mut checks = vec![transport_check(&app.config.transport)];
    checks.push(database_check(app).await);
    let backup_key = backup_key_state(app).await?;
    // Without backups there is no key to keep (the checklist's backups item is red instead).
    checks.extend(match (&app.backups, &backup_key) {
        (None, _) => None,
        (Some(_), None) => Some(Check {
            area: "backup_key",
            weight: 5,
            code: "backup_key_missing",
            level: Level::Bad,
            detail: String::new(),
        }),
        (Some(_), Some(key)) if key.confirmed_at.is_none() => Some(Check {
            area: "backup_key",
            weight: 5,
            code: "backup_key_unconfirmed",
            level: Level::Warn,
            detail: key.fingerprint.clone(),
        }),
        (Some(_), Some(key)) => Some(Check {
            area: "backup_key",
            weight: 5,
            code: "backups_encrypted",
            level: Level::Good,
            detail: key.fingerprint.clone(),
        }),
    });
    Ok(Status { checks, backup_key })
}

fn transport_check(transport: &Transport) -> Check {
    match transport {
        Transport::Loopback => Check {
            area: "transport",
            weight: 15,
            code: "transport_loopback",
            level: Level::Good,
            detail: String::new(),
        },
        Transport::Tls { cert_file, .. } => Check {
            area: "transport",
            weight: 15,
            code: "transport_tls",
            level: Level::Good,
            detail: cert_file.display().to_string(),
        },
        Transport::Proxy { public_url } => Check {
            area: "transport",
            weight: 15,
            code: "transport_proxy",
            level: Level::Good,
            detail: public_url.clone(),
        },
        Transport::InsecureHttp { listen } => Check {
            area: "transport",
            weight: 15,
            code: "transport_insecure",
            level: Level::Bad,
            detail: listen.clone(),
        },
    }
}

async fn database_check(app: &App) -> Check {
    match app.db.backend() {
        holdfast_store::Backend::Sqlite => match app.db.key() {
            Some(key) => Check {
                area: "database",
                weight: 10,
                code: "database_encrypted",
                level: Level::Good,
                detail: key.fingerprint(),
            },
            None => Check {
                area: "database",
                weight: 10,
                code: "database_plain",
                level: Level::Warn,
                detail: String::new(),
            },
        },
        holdfast_store::Backend::Postgres => match app.db.postgres_connection_encrypted().await {
            Ok(true) => Check {
                area: "database",
                weight: 10,
                code: "postgres_tls",
                level: Level::Good,
                detail: String::new(),
            },
            Ok(false) => Check {
                area: "database",
                weight: 10,
                code: "postgres_plain",
                level: Level::Warn,
                detail: String::new(),
            },
            Err(error) => Check {
                area: "database",
                weight: 10,
                code: "postgres_unknown",
                level: Level::Warn,
                detail: format!("{error:#}"),
            },
        },
    }
}

async fn backup_key_state(app: &App) -> anyhow::Result<Option<BackupKeyState>> {
    let Some(key) = app.backups.as_ref().and_then(|b| b.key.as_ref()) else {
        return Ok(None);
    };
    let fingerprint = key.fingerprint();
    let kind = key.kind();
    let confirmed: Option<serde_json::Value> = app
        .db
        .meta(CONFIRMED)
        .await?
        .and_then(|text| serde_json::from_str(&text).ok())
        .filter(|value: &serde_json::Value| value["fingerprint"] == fingerprint.as_str());
    Ok(Some(BackupKeyState {
        fingerprint,
        kind,
        confirmed_by: confirmed
            .as_ref()
            .and_then(|c| c["by"].as_str().map(str::to_owned)),
        confirmed_at: confirmed
            .as_ref()
            .and_then(|c| c["at"].as_i64())
            .map(Timestamp),
    }))
}

/// Writes a refusal into the audit log: what `actor` asked for and the check that failed.
pub async fn record_refusal(
    app: &App,
    actor: &Actor,
    op_id: &str,
    method: &str,
    path: &str,
    check: &str,
) -> anyhow::Result<()> {
    let mut tx = app.db.begin_write(app.now()).await?;
    tx.audit_event(AuditDraft::new(
        actor,
        op_id,
        "access.refused",
        json!({"method": method, "path": path, "check": check}),
    ))
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The backup key written out for printing and storing away (administrators; audited).
pub struct RecoverySheet {
    pub secret: String,
    pub fingerprint: String,
    pub kind: &'static str,
    /// The file name the sheet tells its reader to type the key into on a new machine.
    pub file_name: &'static str,
}

pub async fn recovery_sheet(
    app: &App,
    actor: &Actor,
    op_id: &str,
) -> Result<RecoverySheet, AppError> {
    authorize(actor, Action::Administer)?;
    let key = app
        .backups
        .as_ref()
        .and_then(|b| b.key.clone())
        .ok_or_else(|| AppError::not_found("this server has no backup key"))?;
    let sheet = RecoverySheet {
        secret: key.secret_text(),
        fingerprint: key.fingerprint(),
        kind: key.kind(),
        file_name: match key.kind() {
            "key" => "backup.key",
            _ => "backup-passphrase.txt",
        },
    };
    let mut tx = app.db.begin_write(app.now()).await?;
    tx.audit_event(AuditDraft::new(
        actor,
        op_id,
        "security.backup_key_shown",
        json!({"fingerprint": sheet.fingerprint}),
    ))
    .await?;
    tx.commit().await?;
    Ok(sheet)
}

/// An administrator confirms that this very backup key is stored away from the machine; the
/// reminders stop until the key changes.
pub async fn confirm_backup_key(app: &App, actor: &Actor, op_id: &str) -> Result<(), AppError> {
    authorize(actor, Action::Administer)?;
    let key = app
        .backups
        .as_ref()
        .and_then(|b| b.key.as_ref())
        .ok_or_else(|| AppError::not_found("this server has no backup key"))?;
    let fingerprint = key.fingerprint();
    let now = app.now();
    let mut tx = app.db.begin_write(now).await?;
    tx.set_meta(
        CONFIRMED,
        &json!({"fingerprint": fingerprint, "by": actor.username, "at": now.micros()}).to_string(),
    )
    .await?;
    tx.audit_event(AuditDraft::new(
        actor,
        op_id,
        "security.backup_key_stored",
        json!({"fingerprint": fingerprint}),
    ))
    .await?;
    tx.commit().await?;
    Ok(())
}

/// A network, `10.0.0.0/8` or a single address, for `[server] trusted_proxies`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    pub addr: std::net::IpAddr,
    pub prefix: u8,
}

impl std::str::FromStr for IpNet {
    type Err = String;

    fn from_str(text: &str) -> Result<IpNet, String> {
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text.trim(), None),
        };
        let addr: std::net::IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or network such as 10.0.0.0/8"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix must be from 0 to {max}"))?,
        };
        Ok(IpNet { addr, prefix })
    }
}

impl IpNet {
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let bits = |ip: std::net::IpAddr| -> Option<u128> {
            match (self.addr, ip) {
                (std::net::IpAddr::V4(_), std::net::IpAddr::V4(ip)) => {
                    Some(u128::from(u32::from(ip)) << 96)
                }
                (std::net::IpAddr::V6(_), std::net::IpAddr::V6(ip)) => Some(u128::from(ip)),
                _ => None,
            }
        };
        let (Some(net), Some(ip)) = (bits(self.addr), bits(ip)) else {
            return false;
        };
        // IPv4 addresses sit in the top 32 bits, so their prefix counts from the top as well.
        let prefix = u32::from(self.prefix);
        if prefix == 0 {
            return true;
        }
        let mask = u128::MAX << (128 - prefix);
        net & mask == ip & mask
    }
}

/// The address a request came from: the connection's peer, unless the peer is a trusted
/// proxy, in which case the nearest address in `X-Forwarded-For` (or `Forwarded: for=`) that
/// is not itself a trusted proxy. Without trusted proxies the headers are ignored: anyone can
/// write them.
pub fn client_address(
    peer: std::net::IpAddr,
    forwarded_for: Option<&str>,
    forwarded: Option<&str>,
    trusted: &[IpNet],
) -> std::net::IpAddr {
    let is_trusted = |ip: std::net::IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let from_forwarded = forwarded.map(|value| {
        value
            .split(',')
            .flat_map(|element| element.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .filter(|(name, _)| name.eq_ignore_ascii_case("for"))
            .map(|(_, value)| value.trim_matches('"').to_owned())
            .collect::<Vec<_>>()
    });
    let chain: Vec<String> = match (forwarded_for, from_forwarded) {
        (Some(list), _) => list.split(',').map(|a| a.trim().to_owned()).collect(),
        (None, Some(list)) => list,
        (None, None) => Vec::new(),
    };
    let parse = |text: &str| -> Option<std::net::IpAddr> {
        let text = text.trim();
        if let Ok(ip) = text.parse() {
            return Some(ip);
        }
        // `[2001:db8::1]:443`, `192.0.2.1:8080`
        text.parse::<std::net::SocketAddr>()
            .ok()
            .map(|s| s.ip())
            .or_else(|| {
                text.trim_start_matches('[')
                    .split(']')
                    .next()
                    .and_then(|t| t.parse().ok())
            })
    };
    for hop in chain.iter().rev() {
        match parse(hop) {
            Some(ip) if is_trusted(ip) => continue,
            Some(ip) => return ip,
            None => return peer,
        }
    }
    peer
}

/// The key login throttling counts a client under: its address, or for IPv6 its /64 (one
/// household or office gets a whole /64, and every address in it is one client).
pub fn throttle_key(address: &str) -> String {
    match address.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(ip)) if ip.to_ipv4_mapped().is_none() => {
            let s = ip.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        _ => address.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_is_the_peer_unless_a_trusted_proxy_forwarded_it() {
        let nets: Vec<IpNet> = ["127.0.0.1", "10.0.0.0/8"]
            .iter()
            .map(|t| t.parse().unwrap())
            .collect();
        let ip = |t: &str| t.parse::<std::net::IpAddr>().unwrap();
        // Not a proxy: its headers are ignored.
        assert_eq!(
            client_address(ip("192.0.2.9"), Some("198.51.100.1"), None, &nets),
            ip("192.0.2.9")
        );
        // A proxy chain: the nearest untrusted hop; a client-written first hop is not believed.
        assert_eq!(
            client_address(
                ip("127.0.0.1"),
                Some("6.6.6.6, 198.51.100.1, 10.1.2.3"),
                None,
                &nets
            ),
            ip("198.51.100.1")
        );
        assert_eq!(
            client_address(
                ip("10.0.0.5"),
                None,
                Some("for=\"[2001:db8::7]:4711\";proto=https"),
                &nets
            ),
            ip("2001:db8::7")
        );
        assert_eq!(
            client_address(ip("127.0.0.1"), None, None, &nets),
            ip("127.0.0.1")
        );
        assert_eq!(
            client_address(ip("127.0.0.1"), Some("garbage"), None, &nets),
            ip("127.0.0.1")
        );
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        assert!("::/0".parse::<IpNet>().unwrap().contains(ip("2001:db8::1")));
        assert!(
            !"10.0.0.0/8"
                .parse::<IpNet>()
                .unwrap()
                .contains(ip("2001:db8::1"))
        );
    }

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        assert_eq!(
            throttle_key("2001:db8:0:0:1::1"),
            throttle_key("2001:db8::ffff:1")
        );
        assert_ne!(
            throttle_key("2001:db8:0:1::1"),
            throttle_key("2001:db8:0:2::1")
        );
        assert_eq!(throttle_key("192.0.2.1"), "192.0.2.1");
    }
}
