//! User administration: create users, approve pending ones, change a user's role or team (after
//! a preview of who gains or loses what), deactivate and reactivate them, reset a forgotten
//! password, end someone's sessions. Administrators only (the use cases check it).

use super::layout::{csrf_field, frame};
use super::{Form, OrPage, Page, PageResult, error_message, error_page, html_status, redirect};
use crate::WebState;
use crate::error::current_op_id;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use holdfast_app::access::{self, AccessChange};
use holdfast_app::{AppError, users};
use holdfast_domain::{FieldErrors, RoleDef};
use maud::html;

pub async fn users_page(State(state): State<WebState>, page: Page) -> PageResult {
    render(&state, &page, None, &FieldErrors::default(), StatusCode::OK).await
}

async fn render(
    state: &WebState,
    page: &Page,
    form: Option<&Form>,
    errors: &FieldErrors,
    status: StatusCode,
) -> PageResult {
    let tr = &page.tr;
    let list = users::list(&state.app, &page.actor).await.or_page(tr)?;
    let value = |key: &str| form.map(|f| f.get(key).to_owned()).unwrap_or_default();
    let roles = page.actor.access.roles.clone();
    let teams = page.actor.access.teams.clone();
    // Auditors read this page; only administrators get the controls that change users.
    let can_change = page.actor.is_admin();
    let role_of = |key: &str| {
        roles
            .iter()
            .find(|r| r.key == key)
            .map(|r| role_label(tr, r))
            .unwrap_or_else(|| key.to_owned())
    };
    let body = html! {
        div.table-wrap {
            table.list {
                thead { tr {
                    th { (tr.t("form.username")) } th { (tr.t("form.display_name")) } th { (tr.t("form.role")) }
                    th { (tr.t("table.state")) } th { (tr.t("table.last_login")) } th { (tr.t("table.actions")) }
                } }
                tbody {
                    @for user in &list {
                        tr.inactive[!user.active] {
                            td { (user.username) }
                            td { (user.display_name) }
                            td {
                                @if !can_change { (role_of(&user.role)) } @else {
                                form.inline method="post" action=(format!("/admin/users/{}/access", user.id)) {
                                    (csrf_field(&page.csrf))
                                    label { span.sr { (tr.t("form.role")) }
                                        select name="role" {
                                            @for role in &roles {
                                                option value=(role.key) selected[user.role == role.key] { (role_label(tr, role)) }
                                            }
                                        }
                                    }
                                    label { span.sr { (tr.t("access.team")) }
                                        select name="team_id" {
                                            option value="" selected[user.team_id.is_none()] { (tr.t("access.no_team")) }
                                            @for team in &teams {
                                                option value=(team.id) selected[user.team_id == Some(team.id)] { (team.name) }
                                            }
                                        }
                                    }
                                    button type="submit" { (tr.t("access.preview_change")) }
                                }
                                }
                            }
                            td {
                                @if !user.active { (tr.t("state.deactivated")) }
                                @else if user.pending {
                                    strong { (tr.t("state.pending")) }
                                    @if can_change {
                                    form.inline method="post" action=(format!("/admin/users/{}/access", user.id)) {
                                        (csrf_field(&page.csrf))
                                        input type="hidden" name="approve" value="true";
                                        input type="hidden" name="role" value=(user.role);
                                        button.primary type="submit" { (tr.t("access.approve")) }
                                    }
                                    }
                                }
                                @else { (tr.t("state.active")) }
                            }
                            td { (user.last_login_at.map(|t| tr.datetime(t)).unwrap_or_else(|| "—".into())) }
                            td.actions { @if can_change {
                                form.inline method="post" action=(format!("/admin/users/{}/active", user.id)) {
                                    (csrf_field(&page.csrf))
                                    input type="hidden" name="active" value=(if user.active { "false" } else { "true" });
                                    @if user.active {
                                        button.danger type="submit" { (tr.t("admin.deactivate")) }
                                    } @else {
                                        button type="submit" { (tr.t("admin.activate")) }
                                    }
                                }
                                form.inline method="post" action=(format!("/admin/users/{}/revoke-sessions", user.id)) {
                                    (csrf_field(&page.csrf))
                                    button type="submit" { (tr.t("admin.revoke_sessions")) }
                                }
                                form.inline method="post" action=(format!("/admin/users/{}/revoke-tokens", user.id)) {
                                    (csrf_field(&page.csrf))
                                    button type="submit" { (tr.t("admin.revoke_tokens")) }
                                }
                                details {
                                    summary { (tr.t("admin.reset_password")) }
                                    form.inline method="post" action=(format!("/admin/users/{}/password", user.id)) {
                                        (csrf_field(&page.csrf))
                                        label { span.sr { (tr.t("form.new_password")) } input type="password" name="password" required autocomplete="new-password" placeholder=(tr.t("form.new_password")); }
                                        button type="submit" { (tr.t("action.save")) }
                                    }
                                }
                            } }
                        }
                    }
                }
            }
        }
        @if can_change {
        section.card {
            h2 { (tr.t("admin.create")) }
            @if !errors.is_empty() {
                div.problems role="alert" {
                    ul { @for e in &errors.0 { li { (tr.or(&format!("form.{}", e.field), &e.field)) ": " (error_message(tr, e.code, &e.message)) } } }
                }
            }
            form.stack method="post" action="/admin/users" {
                (csrf_field(&page.csrf))
                label { (tr.t("form.username")) input name="username" value=(value("username")) required autocomplete="off"; }
                label { (tr.t("form.display_name")) input name="display_name" value=(value("display_name")) required; }
                label { (tr.t("form.role"))
                    select name="role" {
                        @for role in &roles {
                            option value=(role.key) selected[value("role") == role.key || (value("role").is_empty() && role.key == "rep")] { (role_label(tr, role)) }
                        }
                    }
                }
                label { (tr.t("form.password")) input type="password" name="password" required autocomplete="new-password"; small { (tr.t("admin.password_help")) } }
                p.hint { (tr.t("access.created_pending")) }
                button.primary type="submit" { (tr.t("admin.create")) }
            }
        }
        }
    };
    Ok(html_status(
        status,
        frame(page, tr.t("admin.title"), "admin", body),
        &page.csrf,
        page.new_csrf,
    ))
}

pub async fn user_create_post(State(state): State<WebState>, page: Page, form: Form) -> PageResult {
    let result = users::create(
        &state.app,
        &page.actor,
        &current_op_id(),
        form.get("username"),
        form.get("display_name"),
        form.get("password"),
        form.get("role"),
    )
    .await;
    match result {
        Ok(_) => Ok(redirect("/admin/users", "user_created")),
        Err(AppError::Invalid(errors)) => {
            render(
                &state,
                &page,
                Some(&form),
                &errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(AppError::Conflict { code, message, .. }) => {
            let errors = FieldErrors::single("username", code, message);
            render(&state, &page, Some(&form), &errors, StatusCode::CONFLICT).await
        }
        Err(error) => Err(error_page(&page.tr, error)),
    }
}

fn user_id(page: &Page, id: &str) -> Result<i64, Response> {
    id.parse::<i64>()
        .map_err(|_| error_page(&page.tr, AppError::not_found(format!("user {id}"))))
}

pub async fn user_active_post(
    State(state): State<WebState>,
    page: Page,
    Path(id): Path<String>,
    form: Form,
) -> PageResult {
    let id = user_id(&page, &id)?;
    let change = users::UserChange {
        active: Some(form.get("active") == "true"),
        ..Default::default()
    };
    users::update(&state.app, &page.actor, &current_op_id(), id, change)
        .await
        .or_page(&page.tr)?;
    Ok(redirect("/admin/users", "user_updated"))
}

pub async fn user_password_post(
    State(state): State<WebState>,
    page: Page,
    Path(id): Path<String>,
    form: Form,
) -> PageResult {
    let id = user_id(&page, &id)?;
    match users::reset_password(
        &state.app,
        &page.actor,
        &current_op_id(),
        id,
        form.get("password"),
    )
    .await
    {
        Ok(()) => Ok(redirect("/admin/users", "password_reset")),
        Err(AppError::Invalid(errors)) => {
            render(
                &state,
                &page,
                None,
                &errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(error) => Err(error_page(&page.tr, error)),
    }
}

pub async fn user_revoke_post(
    State(state): State<WebState>,
    page: Page,
    Path(id): Path<String>,
    _form: Form,
) -> PageResult {
    let id = user_id(&page, &id)?;
    users::revoke_sessions(&state.app, &page.actor, &current_op_id(), id)
        .await
        .or_page(&page.tr)?;
    Ok(redirect("/admin/users", "sessions_revoked"))
}

pub async fn user_tokens_revoke_post(
    State(state): State<WebState>,
    page: Page,
    Path(id): Path<String>,
    _form: Form,
) -> PageResult {
    let id = user_id(&page, &id)?;
    users::revoke_tokens(&state.app, &page.actor, &current_op_id(), id)
        .await
        .or_page(&page.tr)?;
    Ok(redirect("/admin/users", "tokens_revoked"))
}

/// A role's name in the reader's language: built-in roles are translated, custom ones are shown
/// as their administrator named them.
pub fn role_label(tr: &crate::i18n::Tr, role: &RoleDef) -> String {
    if role.built_in {
        tr.or(&format!("role.{}", role.key), &role.name).to_owned()
    } else {
        role.name.clone()
    }
}

/// A role, team or approval change: first a preview of who gains or loses what, then (with
/// `confirm`) the change itself.
pub async fn user_access_post(
    State(state): State<WebState>,
    page: Page,
    Path(id): Path<String>,
    form: Form,
) -> PageResult {
    let tr = &page.tr;
    super::require(&page, holdfast_domain::Action::Administer)?;
    let id = user_id(&page, &id)?;
    let team_id = match form.get("team_id") {
        "" => None,
        text => Some(text.parse::<i64>().map_err(|_| {
            error_page(tr, AppError::invalid("team_id", "invalid_id", "Not a team"))
        })?),
    };
    let approve = form.get("approve") == "true";
    let role = Some(form.get("role").to_owned()).filter(|r| !r.is_empty());
    let change = AccessChange::SetUser {
        user_id: id,
        role: role.clone(),
        team_id: (!approve).then_some(team_id),
        pending: approve.then_some(false),
    };
    let confirm = form.get("confirm") == "yes";
    let outcome = access::change(&state.app, &page.actor, &current_op_id(), change, !confirm)
        .await
        .or_page(tr)?;
    if confirm {
        return Ok(redirect("/admin/users", "user_updated"));
    }
    let name = page
        .actor
        .access
        .user(id)
        .map(|u| u.display_name.clone())
        .unwrap_or_default();
    let title = tr.f("access.preview_title", &[("user", &name)]);
    let action = format!("/admin/users/{id}/access");
    super::admin_roles::preview_page(&page, &title, &outcome, &action, "/admin/users", &form)
}
