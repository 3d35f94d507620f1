//! What an alert says, in the language the configuration names (`en` or `zh-CN`): a title, one
//! or two sentences with what happened and what to do, and the page to open.

use super::{Alert, Event};
use crate::App;

pub(super) fn alert(app: &App, event: &Event) -> Alert {
    let zh = app.config.alerts.language == "zh-CN";
    let (severity, title, text, path) = words(event, zh);
    let link = app
        .config
        .public_url
        .as_ref()
        .map(|base| format!("{}{path}", base.trim_end_matches('/')));
    Alert {
        event: event.code().to_owned(),
        severity: severity.to_owned(),
        title,
        text,
        at: app.now().to_rfc3339(),
        link,
    }
}

/// Severity, title, text and the page to open.
fn words(event: &Event, zh: bool) -> (&'static str, String, String, &'static str) {
    let pick = |en: String, cn: String| if zh { cn } else { en };
    match event {
        Event::BackupFailed { error } => (
            "critical",
            pick("Backup failed".into(), "备份失败".into()),
            pick(
                format!(
                    "The newest backup failed: {error}. Open Backups to see why and take one by hand."
                ),
                format!("最近一次备份失败：{error}。请打开“备份”页面查看原因，并手动备份一次。"),
            ),
            "/admin/backups",
        ),
        Event::BackupStale { newest } => {
            let newest = newest.clone().unwrap_or_else(|| "—".into());
            (
                "critical",
                pick("Backups are out of date".into(), "备份已过期".into()),
                pick(
                    format!(
                        "No verified backup within twice the schedule; the newest good one is {newest}. Open Backups."
                    ),
                    format!(
                        "超过两个备份周期没有通过验证的备份；最近一份可用备份是 {newest}。请打开“备份”页面。"
                    ),
                ),
                "/admin/backups",
            )
        }
        Event::DrillFailed { error } => (
            "critical",
            pick("Restore drill failed".into(), "恢复演练失败".into()),
            pick(
                format!(
                    "The newest backup did not restore cleanly in its drill: {error}. Do not rely on it; open Backups."
                ),
                format!(
                    "最近一份备份在恢复演练中未能完整恢复：{error}。不要依赖这份备份，请打开“备份”页面。"
                ),
            ),
            "/admin/backups",
        ),
        Event::Corruption { detail } => (
            "critical",
            pick("The database is damaged".into(), "数据库已损坏".into()),
            pick(
                format!(
                    "Holdfast found damage in its database ({detail}) and serves read-only. Restore the newest verified backup: see /readyz or holdfast doctor."
                ),
                format!(
                    "Holdfast 发现数据库损坏（{detail}），现以只读方式运行。请恢复最近一份已验证的备份：见 /readyz 或 holdfast doctor。"
                ),
            ),
            "/admin/security",
        ),
        Event::GuardTripped {
            username,
            kind,
            amount,
            threshold,
        } => (
            "critical",
            pick(
                format!("Guard tripped: {username}"),
                format!("批量操作保护已触发：{username}"),
            ),
            pick(
                format!(
                    "{username} did {amount} {kind} within minutes (limit {threshold}). Their actions of this kind are paused until an administrator reviews them on the Timeline."
                ),
                format!(
                    "{username} 在几分钟内执行了 {amount} 次{kind}（上限 {threshold}）。在管理员于“时间线”页面审查之前，此类操作已暂停。"
                ),
            ),
            "/admin/timeline",
        ),
        Event::Lockdown {
            on: true,
            by,
            reason,
        } => (
            "critical",
            pick("Holdfast is locked down".into(), "Holdfast 已锁定".into()),
            pick(
                format!(
                    "{by} locked the CRM down: {reason}. Everyone is read-only and API tokens are suspended until it is lifted."
                ),
                format!("{by} 锁定了 CRM：{reason}。解除前所有人只读，API 令牌暂停使用。"),
            ),
            "/admin/security",
        ),
        Event::Lockdown { on: false, by, .. } => (
            "info",
            pick("Lockdown lifted".into(), "锁定已解除".into()),
            pick(
                format!("{by} lifted the lockdown."),
                format!("{by} 解除了锁定。"),
            ),
            "/admin/security",
        ),
        Event::NewAdmin { username, by } => (
            "warning",
            pick(
                format!("New administrator: {username}"),
                format!("新增管理员：{username}"),
            ),
            pick(
                format!(
                    "{by} made {username} an administrator. If nobody meant to, freeze both accounts and open the Timeline."
                ),
                format!(
                    "{by} 将 {username} 设为管理员。如果这不是有意为之，请冻结这两个账户并打开“时间线”。"
                ),
            ),
            "/admin/users",
        ),
        Event::AdminTwoStepOff { username, by } => (
            "warning",
            pick(
                format!("Two-step sign-in turned off for {username}"),
                format!("{username} 的两步登录已关闭"),
            ),
            pick(
                format!(
                    "{by} turned off two-step sign-in for the administrator {username}. If nobody meant to, freeze the account."
                ),
                format!(
                    "{by} 关闭了管理员 {username} 的两步登录。如果这不是有意为之，请冻结该账户。"
                ),
            ),
            "/admin/users",
        ),
        Event::SigninBurst { client, failures } => (
            "warning",
            pick("Many failed sign-ins".into(), "大量登录失败".into()),
            pick(
                format!(
                    "{failures} failed sign-ins from {client} within minutes; Holdfast is slowing it down. Open the sign-in history."
                ),
                format!(
                    "几分钟内来自 {client} 的登录失败 {failures} 次；Holdfast 已对其限速。请查看登录记录。"
                ),
            ),
            "/admin/sign-in",
        ),
        Event::Test { by } => (
            "info",
            pick("Holdfast test alert".into(), "Holdfast 测试告警".into()),
            pick(
                format!(
                    "{by} sent this test alert from the security page. If you can read this, alerts reach you."
                ),
                format!("{by} 从“安全”页面发送了这条测试告警。能看到这条消息，说明告警可以送达。"),
            ),
            "/admin/security",
        ),
    }
}
