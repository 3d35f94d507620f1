//! Teams and custom roles, edited in the pages. Every change shows its preview first (who gains
//! or loses which rights and records) and applies only when confirmed, like the API's `dry_run`.

use super::access::{permission_label, rights_matrix};
use super::layout::{csrf_field, frame};
use super::{Form, OrPage, Page, PageResult, html, redirect};
use crate::WebState;
use crate::error::current_op_id;
use axum::extract::{Path, State};
use holdfast_app::access::{self, AccessChange, ChangeOutcome, RightSource};
use holdfast_app::{AppError, RoleRow};
use holdfast_domain::access::{FieldRule, Team, permission_key};
use holdfast_domain::{Entity, Module, RoleDef, Scope};
use maud::{Markup, html};
use std::collections::BTreeMap;

/// The preview of a change with a button that applies it: the same form again, confirmed.
pub fn preview_page(
    page: &Page,
    title: &str,
    outcome: &ChangeOutcome,
    action: &str,
    back: &str,
    form: &Form,
) -> PageResult {
    let tr = &page.tr;
    let preview = &outcome.preview;
    let mut fields: Vec<(&String, &String)> = form
        .0
        .iter()
        .filter(|(k, _)| *k != "csrf" && *k != "confirm")
        .collect();
    fields.sort();
    let body = html! {
        section.card id="preview" {
            h2 { (title) }
            p { (tr.f("access.preview_summary", &[
                ("users", &preview.users_affected),
                ("hidden", &preview.records_hidden_from_someone),
                ("shown", &preview.records_shown_to_someone),
            ])) }
            @if !preview.users.is_empty() {
                div.table-wrap { table.list {
                    thead { tr { th { (tr.t("form.display_name")) } th { (tr.t("access.gains")) } th { (tr.t("access.loses")) } th { (tr.t("access.records_gained")) } th { (tr.t("access.records_lost")) } } }
                    tbody { @for effect in &preview.users { tr {
                        td { (effect.display_name) }
                        td { (effect.gains.iter().map(|p| permission_label(tr, p)).collect::<Vec<_>>().join(", ")) }
                        td { (effect.loses.iter().map(|p| permission_label(tr, p)).collect::<Vec<_>>().join(", ")) }
                        td.num { (effect.records_gained) }
                        td.num { (effect.records_lost) }
                    } } }
                } }
            }
            p.hint id="risk-note" { (tr.t("awareness.access_change")) }
            form.inline method="post" action=(action) {
                (csrf_field(&page.csrf))
                @for (key, value) in &fields { input type="hidden" name=(key) value=(value); }
                input type="hidden" name="confirm" value="yes";
                button.primary type="submit" id="apply-change" { (tr.t("access.apply_change")) }
                " "
                a href=(back) { (tr.t("action.cancel")) }
            }
        }
    };
    Ok(html(
        frame(page, tr.t("admin_access.title"), "admin_access", body),
        &page.csrf,
        page.new_csrf,
    ))
}

/// Previews or (confirmed) applies `change`, then goes back to `back`.
async fn previewed(
    state: &WebState,
    page: &Page,
    form: &Form,
    change: AccessChange,
    title: &str,
    action: &str,
    back: &str,
) -> PageResult {
    let confirm = form.get("confirm") == "yes";
    let outcome = access::change(&state.app, &page.actor, &current_op_id(), change, !confirm)
        .await
        .or_page(&page.tr)?;
    if confirm {
        return Ok(redirect(back, "access_changed"));
    }
    preview_page(page, title, &outcome, action, back, form)
}

fn optional_id(form: &Form, key: &str) -> Option<i64> {
    form.get(key).parse::<i64>().ok()
}

// ---- teams ------------------------------------------------------------------------------------

pub async fn teams_page(State(state): State<WebState>, page: Page) -> PageResult {
    let tr = &page.tr;
    let teams = access::teams(&state.app, &page.actor).await.or_page(tr)?;
    let config = page.actor.access.clone();
    let users: Vec<_> = config.users.values().filter(|u| u.active).collect();
    let name_of = |id: Option<i64>| {
        id.and_then(|id| config.user(id))
            .map(|u| u.display_name.clone())
            .unwrap_or_else(|| "—".into())
    };
    let team_name = |id: Option<i64>| {
        id.and_then(|id| config.team(id))
            .map(|t| t.name.clone())
            .unwrap_or_else(|| "—".into())
    };
    let team_form = |team: Option<&Team>| {
        html! {
            label { (tr.t("admin_roles.team_name")) input name="name" required value=(team.map(|t| t.name.clone()).unwrap_or_default()); }
            label { (tr.t("admin_roles.parent"))
                select name="parent_id" {
                    option value="" { "—" }
                    @for other in teams.iter().filter(|o| team.is_none_or(|t| t.id != o.id)) {
                        option value=(other.id) selected[team.is_some_and(|t| t.parent_id == Some(other.id))] { (other.name) }
                    }
                }
            }
            label { (tr.t("admin_roles.manager"))
                select name="manager_id" {
                    option value="" { "—" }
                    @for user in &users {
                        option value=(user.id) selected[team.is_some_and(|t| t.manager_id == Some(user.id))] { (user.display_name) }
                    }
                }
            }
        }
    };
    let body = html! {
        section.card {
            h2 { (tr.t("admin_roles.teams")) }
            p { (tr.t("admin_roles.teams_help")) }
            div.table-wrap { table.list id="teams" {
                thead { tr { th { (tr.t("admin_roles.team_name")) } th { (tr.t("admin_roles.parent")) } th { (tr.t("admin_roles.manager")) } th { (tr.t("admin_roles.members")) } th { (tr.t("table.actions")) } } }
                tbody { @for team in &teams { tr {
                    td { (team.name) }
                    td { (team_name(team.parent_id)) }
                    td { (name_of(team.manager_id)) }
                    td { (config.users.values().filter(|u| u.team_id == Some(team.id)).map(|u| u.display_name.as_str()).collect::<Vec<_>>().join(", ")) }
                    td.actions {
                        details {
                            summary { (tr.t("action.edit")) }
                            form.stack method="post" action=(format!("/admin/access/teams/{}", team.id)) {
                                (csrf_field(&page.csrf))
                                (team_form(Some(team)))
                                button type="submit" { (tr.t("access.preview_change")) }
                            }
                        }
                        form.inline method="post" action=(format!("/admin/access/teams/{}/delete", team.id)) {
                            (csrf_field(&page.csrf))
                            button.danger type="submit" { (tr.t("admin_roles.delete_team")) }
                        }
                    }
                } } }
            } }
        }
        section.card {
            h2 { (tr.t("admin_roles.new_team")) }
            form.stack method="post" action="/admin/access/teams" {
                (csrf_field(&page.csrf))
                (team_form(None))
                button.primary type="submit" { (tr.t("access.preview_change")) }
            }
        }
    };
    Ok(html(
        frame(&page, tr.t("admin_roles.teams"), "admin_access", body),
        &page.csrf,
        page.new_csrf,
    ))
}

pub async fn team_post(
    State(state): State<WebState>,
    page: Page,
    id: Option<Path<String>>,
    form: Form,
) -> PageResult {
    super::require(&page, holdfast_domain::Action::Administer)?;
    let id = match &id {
        Some(Path(id)) => id
            .parse::<i64>()
            .map_err(|_| super::error_page(&page.tr, AppError::not_found(format!("team {id}"))))?,
        None => 0,
    };
    let team = Team {
        id,
        name: form.get("name").trim().to_owned(),
        parent_id: optional_id(&form, "parent_id"),
        manager_id: optional_id(&form, "manager_id"),
    };
    let action = if id == 0 {
        "/admin/access/teams".to_owned()
    } else {
        format!("/admin/access/teams/{id}")
    };
    let title = page
        .tr
        .f("admin_roles.preview_team", &[("team", &team.name)]);
    previewed(
        &state,
        &page,
        &form,
        AccessChange::PutTeam(team),
        &title,
        &action,
        "/admin/access/teams",
    )
    .await
}

pub async fn team_create_post(state: State<WebState>, page: Page, form: Form) -> PageResult {
    team_post(state, page, None, form).await
}

pub async fn team_update_post(
    state: State<WebState>,
    page: Page,
    id: Path<String>,
    form: Form,
) -> PageResult {
    team_post(state, page, Some(id), form).await
}

pub async fn team_delete_post(
    State(state): State<WebState>,
    page: Page,
    Path(id): Path<String>,
    form: Form,
) -> PageResult {
    super::require(&page, holdfast_domain::Action::Administer)?;
    let tr = &page.tr;
    let id = id
        .parse::<i64>()
        .map_err(|_| super::error_page(tr, AppError::not_found(format!("team {id}"))))?;
    let name = page
        .actor
        .access
        .team(id)
        .map(|t| t.name.clone())
        .unwrap_or_default();
    let title = tr.f("admin_roles.preview_team_delete", &[("team", &name)]);
    let action = format!("/admin/access/teams/{id}/delete");
    previewed(
        &state,
        &page,
        &form,
        AccessChange::DeleteTeam(id),
        &title,
        &action,
        "/admin/access/teams",
    )
    .await
}

// ---- roles ------------------------------------------------------------------------------------

pub async fn roles_page(State(state): State<WebState>, page: Page) -> PageResult {
    let tr = &page.tr;
    let roles = access::roles(&state.app, &page.actor).await.or_page(tr)?;
    let config = page.actor.access.clone();
    let body = html! {
        section.card {
            h2 { (tr.t("admin_roles.roles")) }
            p { (tr.t("admin_roles.roles_help")) }
            div.table-wrap { table.list id="roles" {
                thead { tr { th { (tr.t("form.role")) } th { (tr.t("access.scope_label")) } th { (tr.t("admin_roles.users")) } th { (tr.t("table.actions")) } } }
                tbody { @for role in &roles { tr {
                    td { (super::admin::role_label(tr, role)) @if role.built_in { " " small { (tr.t("admin_roles.built_in")) } } }
                    td { (tr.t(&format!("access.scope.{}", role.scope.key()))) }
                    td { (config.users.values().filter(|u| u.role == role.key).map(|u| u.display_name.as_str()).collect::<Vec<_>>().join(", ")) }
                    td.actions { a href=(format!("/admin/access/roles/{}", role.key)) { (if role.built_in { tr.t("admin_roles.view") } else { tr.t("action.edit") }) } }
                } } }
            } }
            p { a.button.primary href="/admin/access/roles/new" { (tr.t("admin_roles.new_role")) } }
        }
    };
    Ok(html(
        frame(&page, tr.t("admin_roles.roles"), "admin_access", body),
        &page.csrf,
        page.new_csrf,
    ))
}

/// The rights of `role` as the rights table shows them.
fn role_rights(role: &RoleDef) -> Vec<RightSource> {
    Module::ALL
        .iter()
        .flat_map(|m| m.rights().iter().map(move |r| (*m, *r)))
        .map(|p| RightSource {
            permission: permission_key(p),
            source: if role.rights.contains(&p) {
                "role"
            } else {
                "none"
            },
            detail: String::new(),
        })
        .collect()
}

fn role_editor(page: &Page, role: Option<&RoleDef>) -> Markup {
    let tr = &page.tr;
    let has = |key: &str| role.is_some_and(|r| r.rights.iter().any(|p| permission_key(*p) == key));
    let rule_of = |entity: Entity, field: &str| role.and_then(|r| r.field_rule(entity, field));
    html! {
        form.stack method="post" action=(format!("/admin/access/roles/{}", role.map_or("new", |r| r.key.as_str()))) id="role-form" {
            (csrf_field(&page.csrf))
            @if role.is_none() {
                label { (tr.t("admin_roles.key")) input name="key" required pattern="[a-z0-9_]{2,40}" placeholder="field_sales"; small { (tr.t("admin_roles.key_help")) } }
            }
            label { (tr.t("admin_roles.role_name")) input name="name" required value=(role.map(|r| r.name.clone()).unwrap_or_default()); }
            label { (tr.t("access.scope_label"))
                select name="scope" { @for scope in Scope::ALL {
                    option value=(scope.key()) selected[role.is_some_and(|r| r.scope == scope)] { (tr.t(&format!("access.scope.{}", scope.key()))) }
                } }
            }
            h3 { (tr.t("access.rights")) }
            div.table-wrap { table.list.rights {
                thead { tr { th { (tr.t("access.module")) } @for right in holdfast_domain::Right::ALL { th { (tr.t(&format!("right.{}", right.key()))) } } } }
                tbody { @for module in Module::ALL { tr {
                    td { (tr.t(&format!("module.{}", module.key()))) }
                    @for right in holdfast_domain::Right::ALL {
                        td { @if module.rights().contains(&right) {
                            @let key = format!("{}.{}", module.key(), right.key());
                            label { span.sr { (permission_label(tr, &key)) } input type="checkbox" name=(format!("right.{key}")) checked[has(&key)]; }
                        } }
                    }
                } } }
            } }
            h3 { (tr.t("admin_roles.fields")) }
            div.table-wrap { table.list {
                tbody { @for entity in Entity::ALL { @for def in entity.fields() { tr {
                    td { (tr.t(&format!("entity.{}.one", entity.name()))) " · " (tr.or(&format!("field.{}.{}", entity.name(), def.name), def.name)) }
                    td { select name=(format!("field.{}.{}", entity.name(), def.name)) {
                        option value="" { "—" }
                        @for rule in FieldRule::ALL {
                            @if rule != FieldRule::ReadOnlyWhenWon || (entity == Entity::Deal) {
                                option value=(rule.key()) selected[rule_of(entity, def.name) == Some(rule)] { (tr.t(&format!("admin_roles.rule.{}", rule.key()))) }
                            }
                        }
                    } }
                } } } }
            } }
            button.primary type="submit" { (tr.t("access.preview_change")) }
        }
    }
}

pub async fn role_page(
    State(state): State<WebState>,
    page: Page,
    Path(key): Path<String>,
) -> PageResult {
    let tr = &page.tr;
    let roles = access::roles(&state.app, &page.actor).await.or_page(tr)?;
    let role = roles.iter().find(|r| r.key == key);
    if role.is_none() && key != "new" {
        return Err(super::error_page(
            tr,
            AppError::not_found(format!("role {key}")),
        ));
    }
    let title = role.map_or_else(
        || tr.t("admin_roles.new_role").to_owned(),
        |r| super::admin::role_label(tr, r),
    );
    let body = html! {
        section.card {
            h2 { (title) }
            @match role {
                Some(role) if role.built_in => {
                    p { (tr.t("admin_roles.built_in_help")) }
                    p { (tr.t("access.scope_label")) ": " (tr.t(&format!("access.scope.{}", role.scope.key()))) }
                    (rights_matrix(tr, &role_rights(role)))
                }
                _ => {
                    (role_editor(&page, role))
                    @if let Some(role) = role {
                        form.inline method="post" action=(format!("/admin/access/roles/{}/delete", role.key)) {
                            (csrf_field(&page.csrf))
                            button.danger type="submit" { (tr.t("admin_roles.delete_role")) }
                        }
                    }
                }
            }
        }
    };
    Ok(html(
        frame(&page, tr.t("admin_roles.roles"), "admin_access", body),
        &page.csrf,
        page.new_csrf,
    ))
}

pub async fn role_post(
    State(state): State<WebState>,
    page: Page,
    Path(key): Path<String>,
    form: Form,
) -> PageResult {
    super::require(&page, holdfast_domain::Action::Administer)?;
    let key = if key == "new" {
        form.get("key").trim().to_owned()
    } else {
        key
    };
    let rights: Vec<String> = form
        .0
        .iter()
        .filter(|(k, v)| k.starts_with("right.") && !v.is_empty())
        .map(|(k, _)| k["right.".len()..].to_owned())
        .collect();
    let fields: BTreeMap<String, String> = form
        .0
        .iter()
        .filter(|(k, v)| k.starts_with("field.") && !v.is_empty())
        .map(|(k, v)| (k["field.".len()..].to_owned(), v.clone()))
        .collect();
    let row = RoleRow {
        key: key.clone(),
        name: form.get("name").trim().to_owned(),
        rights,
        scope: form.get("scope").to_owned(),
        fields,
    };
    let title = page
        .tr
        .f("admin_roles.preview_role", &[("role", &row.name)]);
    // A new role posts to /new; its confirmation must too, with the key it was given.
    let action = if form.0.contains_key("key") {
        "/admin/access/roles/new".to_owned()
    } else {
        format!("/admin/access/roles/{key}")
    };
    previewed(
        &state,
        &page,
        &form,
        AccessChange::PutRole(row),
        &title,
        &action,
        "/admin/access/roles",
    )
    .await
}

pub async fn role_delete_post(
    State(state): State<WebState>,
    page: Page,
    Path(key): Path<String>,
    form: Form,
) -> PageResult {
    super::require(&page, holdfast_domain::Action::Administer)?;
    let title = page
        .tr
        .f("admin_roles.preview_role_delete", &[("role", &key)]);
    let action = format!("/admin/access/roles/{key}/delete");
    previewed(
        &state,
        &page,
        &form,
        AccessChange::DeleteRole(key.clone()),
        &title,
        &action,
        "/admin/access/roles",
    )
    .await
}
