//! The security page: how users reach Holdfast (HTTPS, a proxy, or plain HTTP), whether the
//! database and the backups are encrypted, and the backup key's recovery sheet, which
//! administrators print and keep away from the machine. Auditors see the status; only
//! administrators see the sheet (each showing is audited) and confirm it is stored.

use super::layout::{csrf_field, frame};
use super::{Form, OrPage, Page, PageResult, html, redirect};
use crate::WebState;
use crate::error::current_op_id;
use axum::extract::State;
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
    let admin = page.actor.is_admin();
    let body = html! {
        section.card {
            h2 { (tr.t("security.status")) }
            ul.checks {
                @for check in &status.checks {
                    li class=(level_class(check.level)) data-code=(check.code) {
                        strong { (tr.t(&format!("security.level.{}", level_class(check.level)))) } " "
                        (tr.t(&format!("security.{}", check.code)))
                        @if !check.detail.is_empty() { " " code { (check.detail) } }
                    }
                }
            }
        }
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
