//! Sign-in for administrators: which roles must use a second factor, who has not enrolled,
//! resetting a user's second factors, every user's sessions and API tokens, login throttles,
//! and the sign-in history.

use super::admin::role_label;
use super::layout::{csrf_field, empty, frame};
use super::signin::{browser_name, history_section};
use super::{Form, OrPage, Page, PageResult, html, redirect};
use crate::WebState;
use crate::error::current_op_id;
use axum::extract::{Path, State};
use holdfast_app::{AppError, login, two_factor, users};
use maud::html;

pub async fn page(State(state): State<WebState>, page: Page) -> PageResult {
    administrators_only(&page)?;
    let tr = &page.tr;
    let app = &state.app;
    let required = two_factor::policy(app, &page.actor).await.or_page(tr)?;
    let enrolments = two_factor::enrolments(app, &page.actor).await.or_page(tr)?;
    let throttles = login::throttles(app, &page.actor).await.or_page(tr)?;
    let history = login::history(app, &page.actor, None).await.or_page(tr)?;
    let roles = page.actor.access.roles.clone();
    let missing = enrolments.iter().filter(|e| e.factors.is_empty()).count();
    let body = html! {
        section.card id="policy" {
            h2 { (tr.t("admin_signin.policy")) }
            p { (tr.t("admin_signin.policy_help")) }
            table {
                thead { tr { th { (tr.t("form.role")) } th { (tr.t("admin_signin.second_factor")) } th {} } }
                tbody {
                    @for role in &roles {
                        @let on = required.contains(&role.key);
                        tr data-role=(role.key) {
                            td { (role_label(tr, role)) }
                            td { (tr.t(if on { "admin_signin.required" } else { "admin_signin.optional" })) }
                            td {
                                form.inline method="post" action=(format!("/admin/sign-in/roles/{}", role.key)) {
                                    (csrf_field(&page.csrf))
                                    input type="hidden" name="required" value=(if on { "no" } else { "yes" });
                                    button type="submit" { (tr.t(if on { "admin_signin.make_optional" } else { "admin_signin.make_required" })) }
                                }
                            }
                        }
                    }
                }
            }
        }
        section.card id="enrolment" {
            h2 { (tr.t("admin_signin.enrolment")) }
            p { (tr.f("admin_signin.missing", &[("count", &missing)])) }
            table {
                thead { tr { th { (tr.t("form.username")) } th { (tr.t("form.role")) } th { (tr.t("admin_signin.second_factor")) } th { (tr.t("table.actions")) } } }
                tbody {
                    @for e in &enrolments {
                        tr.failed[e.factors.is_empty() && e.required] data-user=(e.user.username) {
                            td { (e.user.display_name) " (" (e.user.username) ")" }
                            td { (page.actor.access.role(&e.user.role).map(|r| role_label(tr, r)).unwrap_or_else(|| e.user.role.clone())) }
                            td {
                                @if e.factors.is_empty() {
                                    (tr.t(if e.required { "admin_signin.not_enrolled_required" } else { "admin_signin.not_enrolled" }))
                                } @else {
                                    @for (i, f) in e.factors.iter().enumerate() {
                                        @if i > 0 { ", " }
                                        (tr.t(if f.kind == "passkey" { "signin.kind_passkey" } else { "signin.kind_totp" }))
                                    }
                                }
                            }
                            td {
                                a href=(format!("/admin/users/{}/sign-in", e.user.id)) { (tr.t("admin_signin.sessions_tokens")) }
                                @if !e.factors.is_empty() {
                                    form.inline method="post" action=(format!("/admin/users/{}/two-factor/reset", e.user.id)) {
                                        (csrf_field(&page.csrf))
                                        button.danger type="submit" { (tr.t("admin_signin.reset")) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section.card id="throttles" {
            h2 { (tr.t("admin_signin.throttles")) }
            p { (tr.t("admin_signin.throttles_help")) }
            @if throttles.is_empty() { (empty(tr, "admin_signin.no_throttles")) } @else {
                table {
                    thead { tr { th { (tr.t("admin_signin.key")) } th { (tr.t("admin_signin.failures")) } th { (tr.t("admin_signin.waits_until")) } th {} } }
                    tbody {
                        @for t in &throttles {
                            tr {
                                td { code { (t.key) } }
                                td { (t.failures) " / " (t.limit) }
                                td { (t.blocked_until.map(|at| tr.datetime(at)).unwrap_or_else(|| "—".into())) }
                                td {
                                    form.inline method="post" action="/admin/sign-in/throttles/clear" {
                                        (csrf_field(&page.csrf))
                                        input type="hidden" name="key" value=(t.key);
                                        button type="submit" { (tr.t("admin_signin.clear")) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        (history_section(tr, &history))
    };
    Ok(html(
        frame(&page, tr.t("admin_signin.title"), "admin_signin", body),
        &page.csrf,
        page.new_csrf,
    ))
}

pub async fn policy_post(
    State(state): State<WebState>,
    page: Page,
    Path(key): Path<String>,
    form: Form,
) -> PageResult {
    administrators_only(&page)?;
    let required = form.get("required") == "yes";
    two_factor::set_required(&state.app, &page.actor, &current_op_id(), &key, required)
        .await
        .or_page(&page.tr)?;
    Ok(redirect("/admin/sign-in", "policy_saved"))
}

pub async fn throttle_clear_post(
    State(state): State<WebState>,
    page: Page,
    form: Form,
) -> PageResult {
    administrators_only(&page)?;
    login::clear_throttle(&state.app, &page.actor, &current_op_id(), form.get("key"))
        .await
        .or_page(&page.tr)?;
    Ok(redirect("/admin/sign-in#throttles", "throttle_cleared"))
}

/// Deny by default: the right first, before the input is looked at.
fn administrators_only(page: &Page) -> Result<(), axum::response::Response> {
    super::require(page, holdfast_domain::Action::Administer)
}

fn id_param(text: &str, what: &str) -> Result<i64, AppError> {
    text.parse::<i64>()
        .map_err(|_| AppError::not_found(format!("{what} {text}")))
}

pub async fn user_page(
    State(state): State<WebState>,
    page: Page,
    Path(id): Path<String>,
) -> PageResult {
    administrators_only(&page)?;
    let tr = &page.tr;
    let id = id_param(&id, "user").or_page(tr)?;
    let user = users::get(&state.app, &page.actor, id).await.or_page(tr)?;
    let (sessions, tokens) = users::credentials_of(&state.app, &page.actor, id)
        .await
        .or_page(tr)?;
    let history = login::history(&state.app, &page.actor, Some(id))
        .await
        .or_page(tr)?;
    let now = state.app.now();
    let body = html! {
        p { a href="/admin/sign-in" { (tr.t("admin_signin.back")) } }
        section.card id="freeze" {
            h2 { (tr.t("incident.freeze")) }
            @match &user.frozen {
                Some((at, reason)) => {
                    p.warn { (tr.f("incident.frozen_since", &[("since", &tr.datetime(*at)), ("reason", reason)])) }
                    form method="post" action=(format!("/admin/users/{id}/unfreeze")) {
                        (csrf_field(&page.csrf))
                        button.primary type="submit" { (tr.t("incident.unfreeze")) }
                    }
                },
                None => {
                    p { (tr.t("incident.freeze_help")) }
                    form.inline method="post" action=(format!("/admin/users/{id}/freeze")) {
                        (csrf_field(&page.csrf))
                        label { (tr.t("incident.reason")) input name="reason" required maxlength="500"; }
                        button.danger type="submit" { (tr.t("incident.freeze")) }
                    }
                },
            }
        }
        section.card id="sessions" {
            h2 { (tr.t("settings.sessions")) }
            @if sessions.is_empty() { (empty(tr, "admin_signin.no_sessions")) } @else {
                table {
                    thead { tr { th { (tr.t("table.started")) } th { (tr.t("table.last_seen")) } th { (tr.t("table.address")) } th { (tr.t("signin.browser")) } th { (tr.t("signin.method")) } th {} } }
                    tbody {
                        @for s in &sessions {
                            tr {
                                td { (tr.datetime(s.created_at)) }
                                td { (tr.datetime(s.last_seen_at)) }
                                td { (s.address.as_deref().unwrap_or("—")) }
                                td { (browser_name(s.user_agent.as_deref())) }
                                td { (tr.or(&format!("signin.method_{}", s.method.replace('+', "_")), &s.method)) }
                                td {
                                    form.inline method="post" action=(format!("/admin/users/{id}/sessions/{}/revoke", s.id)) {
                                        (csrf_field(&page.csrf))
                                        button.danger type="submit" { (tr.t("action.revoke")) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section.card id="tokens" {
            h2 { (tr.t("settings.tokens")) }
            @if tokens.is_empty() { (empty(tr, "settings.no_tokens")) } @else {
                table {
                    thead { tr { th { (tr.t("form.token_name")) } th { (tr.t("table.created")) } th { (tr.t("table.last_used")) } th { (tr.t("table.state")) } th {} } }
                    tbody {
                        @for t in &tokens {
                            @let working = t.revoked_at.is_none() && t.expires_at.is_none_or(|at| at > now);
                            tr {
                                td { (t.name) @if t.read_only { " · " (tr.t("admin_signin.read_only")) } }
                                td { (tr.datetime(t.created_at)) }
                                td { (t.last_used_at.map(|at| tr.datetime(at)).unwrap_or_else(|| "—".into())) }
                                td {
                                    (tr.t(if working { "state.active" } else { "state.revoked" }))
                                    @if t.frozen_at.is_some() { " · " (tr.t("incident.suspended")) }
                                }
                                td {
                                    @if working {
                                        @let verb = if t.frozen_at.is_some() { "unfreeze" } else { "freeze" };
                                        form.inline method="post" action=(format!("/admin/users/{id}/tokens/{}/{verb}", t.id)) {
                                            (csrf_field(&page.csrf))
                                            button type="submit" { (tr.t(if t.frozen_at.is_some() { "incident.resume_token" } else { "incident.suspend_token" })) }
                                        }
                                        form.inline method="post" action=(format!("/admin/users/{id}/tokens/{}/revoke", t.id)) {
                                            (csrf_field(&page.csrf))
                                            button.danger type="submit" { (tr.t("action.revoke")) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        (history_section(tr, &history))
    };
    let title = tr.f("admin_signin.user_title", &[("name", &user.display_name)]);
    Ok(html(
        frame(&page, &title, "admin_signin", body),
        &page.csrf,
        page.new_csrf,
    ))
}

pub async fn reset_post(
    State(state): State<WebState>,
    page: Page,
    Path(id): Path<String>,
    _form: Form,
) -> PageResult {
    administrators_only(&page)?;
    let id = id_param(&id, "user").or_page(&page.tr)?;
    two_factor::reset_user(&state.app, &page.actor, &current_op_id(), id)
        .await
        .or_page(&page.tr)?;
    Ok(redirect("/admin/sign-in#enrolment", "second_factor_reset"))
}

pub async fn session_revoke_post(
    State(state): State<WebState>,
    page: Page,
    Path((id, session)): Path<(String, String)>,
    _form: Form,
) -> PageResult {
    revoke_one(&state, &page, &id, &session, users::Credentials::Sessions).await
}

pub async fn token_revoke_post(
    State(state): State<WebState>,
    page: Page,
    Path((id, token)): Path<(String, String)>,
    _form: Form,
) -> PageResult {
    revoke_one(&state, &page, &id, &token, users::Credentials::Tokens).await
}

/// Ends one session or revokes one API token of a user, back to their page.
async fn revoke_one(
    state: &WebState,
    page: &Page,
    id: &str,
    credential: &str,
    what: users::Credentials,
) -> PageResult {
    administrators_only(page)?;
    let id = id_param(id, "user").or_page(&page.tr)?;
    let credential = id_param(credential, "credential").or_page(&page.tr)?;
    users::revoke_one(
        &state.app,
        &page.actor,
        &current_op_id(),
        id,
        what,
        credential,
    )
    .await
    .or_page(&page.tr)?;
    let notice = match what {
        users::Credentials::Sessions => "session_revoked",
        users::Credentials::Tokens => "token_revoked",
    };
    Ok(redirect(&format!("/admin/users/{id}/sign-in"), notice))
}

pub async fn freeze_post(
    State(state): State<WebState>,
    page: Page,
    Path(id): Path<String>,
    form: Form,
) -> PageResult {
    administrators_only(&page)?;
    let id = id_param(&id, "user").or_page(&page.tr)?;
    holdfast_app::containment::freeze_user(
        &state.app,
        &page.actor,
        &current_op_id(),
        id,
        form.get("reason"),
    )
    .await
    .or_page(&page.tr)?;
    Ok(redirect(
        &format!("/admin/users/{id}/sign-in"),
        "user_frozen",
    ))
}

pub async fn unfreeze_post(
    State(state): State<WebState>,
    page: Page,
    Path(id): Path<String>,
    _form: Form,
) -> PageResult {
    administrators_only(&page)?;
    let id = id_param(&id, "user").or_page(&page.tr)?;
    holdfast_app::containment::unfreeze_user(&state.app, &page.actor, &current_op_id(), id)
        .await
        .or_page(&page.tr)?;
    Ok(redirect(
        &format!("/admin/users/{id}/sign-in"),
        "user_unfrozen",
    ))
}

pub async fn token_freeze_post(
    State(state): State<WebState>,
    page: Page,
    Path((id, token)): Path<(String, String)>,
    _form: Form,
) -> PageResult {
    token_freeze_to(&state, &page, &id, &token, true).await
}

pub async fn token_unfreeze_post(
    State(state): State<WebState>,
    page: Page,
    Path((id, token)): Path<(String, String)>,
    _form: Form,
) -> PageResult {
    token_freeze_to(&state, &page, &id, &token, false).await
}

async fn token_freeze_to(
    state: &WebState,
    page: &Page,
    id: &str,
    token: &str,
    frozen: bool,
) -> PageResult {
    administrators_only(page)?;
    let id = id_param(id, "user").or_page(&page.tr)?;
    let token = id_param(token, "token").or_page(&page.tr)?;
    holdfast_app::containment::freeze_token(
        &state.app,
        &page.actor,
        &current_op_id(),
        id,
        token,
        frozen,
    )
    .await
    .or_page(&page.tr)?;
    Ok(redirect(
        &format!("/admin/users/{id}/sign-in"),
        if frozen {
            "token_suspended"
        } else {
            "token_resumed"
        },
    ))
}
