//! The security page: the scored checklist `holdfast doctor` prints (how users reach Holdfast,
//! encryption at rest, backups, file permissions, administrators, the audit chain, …), the
//! backup key's recovery sheet, which administrators print and keep away from the machine,
//! alerts (channels, a test, the delivery log) and the lockdown switch. Auditors see the status; only
//! administrators see the sheet (each showing is audited) and confirm it is stored.

use super::layout::{csrf_field, frame};
use super::{Form, OrPage, Page, PageResult, html, redirect};
use crate::WebState;
use crate::error::current_op_id;
use crate::i18n::Tr;
use axum::extract::State;
use holdfast_app::DeliveryRow;
use holdfast_app::alerts::{self, Overview};
use holdfast_app::checklist::{self, Checklist};
use holdfast_app::security::{self, Level, Status};
use maud::{Markup, html};

fn level_class(level: Level) -> &'static str {
    match level {
        Level::Good => "ok",
        Level::Warn => "warn",
        Level::Bad => "bad",
    }
}

pub async fn security_page(State(state): State<WebState>, page: Page) -> PageResult {
    let tr = &page.tr;
    let status = security::status(&state.app, &page.actor)
        .await
        .or_page(tr)?;
    let checklist = checklist::for_actor(&state.app, &page.actor)
        .await
        .or_page(tr)?;
    let alerts = alerts::overview(&state.app, &page.actor)
        .await
        .or_page(tr)?;
    let admin = page.actor.is_admin();
    let body = html! {
        (checklist_card(tr, &checklist))
        @if let Some(key) = &status.backup_key {
            section.card id="backup-key" {
                h2 { (tr.t("security.backup_key")) }
                p { (tr.t("security.backup_key_why")) }
                p { (tr.t("security.fingerprint")) " " code { (key.fingerprint) } }
                @match (&key.confirmed_by, key.confirmed_at) {
                    (Some(by), Some(at)) => p.ok { (tr.f("security.confirmed_by", &[("user", by), ("at", &tr.datetime(at))])) },
                    _ => p.warn role="alert" { (tr.t("security.backup_key_unconfirmed")) },
                }
                @if admin {
                    p { a href="/admin/security/recovery-sheet" { (tr.t("security.open_sheet")) } }
                    @if key.confirmed_at.is_none() {
                        form method="post" action="/admin/security/backup-key-stored" {
                            (csrf_field(&page.csrf))
                            label { input type="checkbox" name="stored" value="yes" required; " " (tr.t("security.stored_checkbox")) }
                            button type="submit" { (tr.t("security.confirm_stored")) }
                        }
                    }
                }
            }
        }
        (alerts_card(&page, &alerts))
        @if admin {
            section.card id="lockdown-switch" {
                h2 { (tr.t("incident.lockdown")) }
                p { (tr.t("incident.lockdown_help")) }
                @match &page.actor.access.lockdown {
                    Some(_) => form method="post" action="/admin/security/lockdown" {
                        (csrf_field(&page.csrf))
                        input type="hidden" name="on" value="no";
                        button.primary type="submit" { (tr.t("incident.lockdown_off")) }
                    },
                    None => form.inline method="post" action="/admin/security/lockdown" {
                        (csrf_field(&page.csrf))
                        input type="hidden" name="on" value="yes";
                        label { (tr.t("incident.reason")) input name="reason" required maxlength="500"; }
                        button.danger type="submit" { (tr.t("incident.lockdown_on")) }
                    },
                }
            }
        }
        section.card {
            h2 { (tr.t("security.howto")) }
            p { (tr.t("security.howto_text")) }
        }
    };
    Ok(html(
        frame(&page, tr.t("security.title"), "security", body),
        &page.csrf,
        page.new_csrf,
    ))
}

/// The scored checklist `holdfast doctor` prints: the score drawn as a bar, then every item
/// with its level, what it checks, what was found and how to fix it.
fn checklist_card(tr: &Tr, checklist: &Checklist) -> Markup {
    let level = level_class(checklist.level);
    html! {
        section.card id="checklist" {
            h2 { (tr.t("security.status")) }
            div.score class=(level) {
                strong { (tr.f("security.score", &[("score", &checklist.score)])) }
                meter min="0" max="100" low="60" high="90" optimum="100" value=(checklist.score) {
                    (checklist.score) "/100"
                }
                span { (tr.f("security.score_counts", &[
                    ("bad", &checklist.count(Level::Bad)),
                    ("warn", &checklist.count(Level::Warn)),
                ])) }
            }
            ul.checks {
                @for item in &checklist.items {
                    li class=(level_class(item.level)) data-code=(item.code) data-area=(item.area) {
                        strong { (tr.t(&format!("security.level.{}", level_class(item.level)))) }
                        " " em { (tr.t(&format!("security.area.{}", item.area))) } " "
                        @let (text, detail) = item_text(tr, item);
                        (text)
                        @if !detail.is_empty() { " " code { (detail) } }
                    }
                }
            }
            p.muted { (tr.t("security.doctor_hint")) }
        }
    }
}

/// What a checklist item found, in words: its text, then its detail (backup problems
/// translated; after a colon, or in brackets).
pub fn item_text(tr: &Tr, item: &checklist::Item) -> (String, String) {
    let text = tr.t(&format!("security.{}", item.code)).to_owned();
    let detail = match item.code {
        "backups_unhealthy" => item
            .detail
            .split(", ")
            .map(|code| tr.t(&format!("security.problem.{code}")).to_owned())
            .collect::<Vec<_>>()
            .join("; "),
        _ => item.detail.clone(),
    };
    (text, detail)
}

/// Where alerts go, a test button and the delivery log.
fn alerts_card(page: &Page, alerts: &Overview) -> Markup {
    let tr = &page.tr;
    html! {
        section.card id="alerts" {
            h2 { (tr.t("security.alerts")) }
            p { (tr.t("security.alerts_intro")) }
            @if alerts.channels.is_empty() {
                p.warn { (tr.t("security.alerts_off")) }
            } @else {
                table {
                    thead { tr { th { (tr.t("security.channel")) } th { (tr.t("security.channel_kind")) } th { (tr.t("security.channel_target")) } } }
                    tbody {
                        @for channel in &alerts.channels {
                            tr { td { (channel.name) } td { (tr.t(&format!("security.kind.{}", channel.kind))) } td { code { (channel.target) } } }
                        }
                    }
                }
                @if page.actor.is_admin() {
                    form method="post" action="/admin/security/test-alert" {
                        (csrf_field(&page.csrf))
                        button type="submit" { (tr.t("security.send_test")) }
                    }
                }
            }
            @if !alerts.deliveries.is_empty() {
                h3 { (tr.t("security.delivery_log")) }
                table.deliveries {
                    thead { tr {
                        th { (tr.t("security.delivery_at")) } th { (tr.t("security.delivery_event")) }
                        th { (tr.t("security.channel")) } th { (tr.t("security.delivery_state")) }
                    } }
                    tbody {
                        @for delivery in &alerts.deliveries {
                            tr data-event=(delivery.event) {
                                td { (tr.datetime(delivery.created_at)) }
                                td { (tr.t(&format!("security.event.{}", delivery.event))) }
                                td { (delivery.channel) }
                                td { (delivery_state(tr, delivery)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn delivery_state(tr: &Tr, delivery: &DeliveryRow) -> Markup {
    let error = delivery.last_error.as_deref().unwrap_or_default();
    html! {
        @match (delivery.delivered_at, delivery.next_at) {
            (Some(at), _) => span.ok { (tr.f("security.delivered", &[("at", &tr.datetime(at))])) },
            (None, Some(_)) if delivery.attempts == 0 => span { (tr.t("security.sending")) },
            (None, Some(next)) => span.warn { (tr.f("security.retrying", &[("attempts", &delivery.attempts), ("at", &tr.datetime(next))])) " " code { (error) } },
            (None, None) => span.bad { (tr.f("security.gave_up", &[("attempts", &delivery.attempts)])) " " code { (error) } },
        }
    }
}

/// Sends a test alert to every channel (administrators).
pub async fn test_alert_post(State(state): State<WebState>, page: Page) -> PageResult {
    super::require(&page, holdfast_domain::Action::Administer)?;
    alerts::send_test(&state.app, &page.actor, &current_op_id())
        .await
        .or_page(&page.tr)?;
    Ok(redirect("/admin/security#alerts", "test_alert_sent"))
}

/// The printable sheet: the key itself, its fingerprint, and how to restore on a new machine.
pub async fn recovery_sheet(State(state): State<WebState>, page: Page) -> PageResult {
    let tr = &page.tr;
    let sheet = security::recovery_sheet(&state.app, &page.actor, &current_op_id())
        .await
        .or_page(tr)?;
    let file = sheet.file_name;
    let restore = if sheet.kind == "key" {
        format!("holdfast backup restore BACKUP_FILE --data-dir NEW_FOLDER --key-file {file}")
    } else {
        format!(
            "holdfast backup restore BACKUP_FILE --data-dir NEW_FOLDER --passphrase-file {file}"
        )
    };
    let body = html! {
        article.card.sheet {
            h2 { (tr.t("security.sheet_title")) }
            p { (tr.t("security.sheet_intro")) }
            dl {
                dt { (tr.t("security.sheet_secret")) }
                dd { pre.secret { (sheet.secret) } }
                dt { (tr.t("security.fingerprint")) }
                dd { code { (sheet.fingerprint) } }
                dt { (tr.t("security.sheet_made")) }
                dd { (tr.datetime(state.app.now())) " · " (page.user.display_name) }
            }
            h3 { (tr.t("security.sheet_restore")) }
            ol {
                li { (tr.f("security.sheet_step1", &[("file", &file)])) }
                li { (tr.t("security.sheet_step2")) " " code { (restore) } }
                li { (tr.t("security.sheet_step3")) }
            }
            p.no-print { (tr.t("security.sheet_print")) " " a href="/admin/security" { (tr.t("security.back")) } }
        }
    };
    Ok(html(
        frame(&page, tr.t("security.sheet_title"), "security", body),
        &page.csrf,
        page.new_csrf,
    ))
}

pub async fn backup_key_stored_post(
    State(state): State<WebState>,
    page: Page,
    form: Form,
) -> PageResult {
    let tr = &page.tr;
    super::require(&page, holdfast_domain::Action::Administer)?;
    if form.get("stored") != "yes" {
        return Ok(redirect("/admin/security", "security_not_confirmed"));
    }
    security::confirm_backup_key(&state.app, &page.actor, &current_op_id())
        .await
        .or_page(tr)?;
    Ok(redirect("/admin/security", "security_key_stored"))
}

/// The reminder on administrators' home page: the backup key is not yet confirmed as stored
/// off the machine, or something on the security page is red.
pub async fn alert(state: &WebState, page: &Page) -> Markup {
    if !page.actor.is_admin() {
        return html! {};
    }
    let Ok(status): Result<Status, _> = security::status(&state.app, &page.actor).await else {
        return html! {};
    };
    let tr = &page.tr;
    let red = status.level() == Level::Bad;
    if !red && !status.backup_key_unconfirmed() {
        return html! {};
    }
    html! {
        section.card.alert role="alert" id="security-alert" {
            @if status.backup_key_unconfirmed() { p { (tr.t("security.backup_key_unconfirmed")) } }
            @if red { p { (tr.t("security.something_red")) } }
            p { a href="/admin/security" { (tr.t("security.open_page")) } }
        }
    }
}

/// Locks the CRM down or lifts the lockdown (administrators, with step-up).
pub async fn lockdown_post(State(state): State<WebState>, page: Page, form: Form) -> PageResult {
    super::require(&page, holdfast_domain::Action::Administer)?;
    let reason = (form.get("on") == "yes").then(|| form.get("reason"));
    let notice = if reason.is_some() {
        "lockdown_on"
    } else {
        "lockdown_off"
    };
    holdfast_app::containment::set_lockdown(&state.app, &page.actor, &current_op_id(), reason)
        .await
        .or_page(&page.tr)?;
    Ok(redirect("/admin/security#lockdown-switch", notice))
}
