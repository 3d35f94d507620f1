//! Permission administration pages: access reviews, the permission report, module switches
//! (previewed before they apply) and the explainer of any user's access.

use super::access::{chain, permission_label};
use super::layout::{csrf_field, frame};
use super::{Form, OrPage, Page, PageResult, html, redirect};
use crate::WebState;
use crate::access_api::parse_record_ref;
use crate::error::current_op_id;
use axum::extract::{Path, Query, State};
use holdfast_app::AppError;
use holdfast_app::access::{self, AccessChange, Question};
use holdfast_domain::access::parse_permission;
use holdfast_domain::{Module, Right};
use maud::html;
use std::collections::HashMap;

pub async fn access_admin_page(State(state): State<WebState>, page: Page) -> PageResult {
    let tr = &page.tr;
    let app = &state.app;
    let reviews = access::reviews(app, &page.actor).await.or_page(tr)?;
    let report = access::report(app, &page.actor).await.or_page(tr)?;
    let off = access::modules_off(app).await.or_page(tr)?;
    let overdue = reviews.iter().filter(|r| r.overdue).count();
    let role_name = |key: &str| {
        page.actor
            .access
            .role(key)
            .map(|r| super::admin::role_label(tr, r))
            .unwrap_or_else(|| key.to_owned())
    };
    let body = html! {
        p.toolbar {
            a.button href="/admin/access/explain" { (tr.t("admin_access.explain_link")) }
            " " a.button href="/admin/access/roles" { (tr.t("admin_roles.roles")) }
            " " a.button href="/admin/access/teams" { (tr.t("admin_roles.teams")) }
        }
        section.card id="reviews" {
            h2 { (tr.t("admin_access.reviews")) }
            p { (tr.f("admin_access.reviews_help", &[("days", &app.config.access_review_days), ("overdue", &overdue)])) }
            div.table-wrap { table.list {
                thead { tr {
                    th { (tr.t("form.display_name")) } th { (tr.t("form.role")) } th { (tr.t("admin_access.last_review")) }
                    th { (tr.t("admin_access.due")) } th { (tr.t("table.actions")) }
                } }
                tbody { @for review in &reviews { tr.overdue[review.overdue] {
                    td { (review.display_name) }
                    td { (role_name(&review.role)) }
                    td { @match review.last_reviewed_at {
                        Some(at) => { (tr.datetime(at)) " · " (review.last_reviewed_by.clone().unwrap_or_default()) " · " (tr.t(&format!("admin_access.outcome.{}", review.last_outcome.clone().unwrap_or_default()))) }
                        None => { (tr.t("admin_access.never")) }
                    } }
                    td { @if review.overdue { strong { (tr.t("admin_access.overdue")) } " " } (tr.datetime(review.due_at)) }
                    td.actions {
                        form.inline method="post" action=(format!("/admin/access/reviews/{}", review.user_id)) {
                            (csrf_field(&page.csrf))
                            input type="hidden" name="outcome" value="confirmed";
                            button type="submit" { (tr.t("admin_access.confirm")) }
                        }
                        form.inline method="post" action=(format!("/admin/access/reviews/{}", review.user_id)) {
                            (csrf_field(&page.csrf))
                            input type="hidden" name="outcome" value="trimmed";
                            label { span.sr { (tr.t("admin_access.note")) } input name="note" placeholder=(tr.t("admin_access.trim_note")); }
                            button type="submit" { (tr.t("admin_access.trimmed")) }
                        }
                        " " a href=(format!("/admin/access/explain?user_id={}", review.user_id)) { (tr.t("admin_access.summary")) }
                    }
                } } }
            } }
        }
        section.card id="report" {
            h2 { (tr.t("admin_access.report")) }
            h3 { (tr.t("admin_access.powerful")) }
            div.table-wrap { table.list {
                thead { tr { th { (tr.t("access.what")) } th { (tr.t("admin_access.holders")) } } }
                tbody { @for holders in &report.powerful { tr {
                    td { (permission_label(tr, &holders.permission)) }
                    td { @for (i, (name, source)) in holders.users.iter().enumerate() {
                        @if i > 0 { ", " }
                        (name) @if *source == "grant" { " (" (tr.t("access.source_grant")) ")" }
                    } }
                } } }
            } }
            p { (tr.t("admin_access.no_two_factor")) }
            h3 { (tr.f("admin_access.dormant", &[("days", &report.dormant_after_days)])) }
            @if report.dormant.is_empty() { p { (tr.t("admin_access.none")) } } @else {
                ul { @for (_, name, last) in &report.dormant { li { (name) " — " (last.map(|t| tr.datetime(t)).unwrap_or_else(|| tr.t("admin_access.never_logged_in").to_owned())) } } }
            }
            h3 { (tr.f("admin_access.unused", &[("days", &report.unused_after_days)])) }
            @if report.unused.is_empty() { p { (tr.t("admin_access.none")) } } @else {
                ul { @for unused in &report.unused { li { (unused.display_name) ": " (permission_label(tr, &unused.permission)) } } }
            }
        }
        section.card id="modules" {
            h2 { (tr.t("admin_access.modules")) }
            p { (tr.t("admin_access.modules_help")) }
            div.table-wrap { table.list {
                tbody { @for module in Module::ALL { tr {
                    td { (tr.t(&format!("module.{}", module.key()))) }
                    td { @if off.contains(&module) { strong { (tr.t("admin_access.off")) } } @else { (tr.t("admin_access.on")) } }
                    td.actions { @if module.can_switch_off() {
                        form.inline method="post" action=(format!("/admin/access/modules/{}", module.key())) {
                            (csrf_field(&page.csrf))
                            input type="hidden" name="on" value=(if off.contains(&module) { "true" } else { "false" });
                            button type="submit" { (if off.contains(&module) { tr.t("admin_access.switch_on") } else { tr.t("admin_access.switch_off") }) }
                        }
                    } }
                } } }
            } }
        }
        section.card id="changes" {
            h2 { (tr.t("admin_access.changes")) }
            div.table-wrap { table.list {
                thead { tr { th { (tr.t("admin_access.when")) } th { (tr.t("admin_access.by")) } th { (tr.t("admin_access.what")) } } }
                tbody { @for change in report.changes.iter().take(50) { tr {
                    td { (tr.datetime(change.at)) }
                    td { (change.actor_name) }
                    td { code { (change.action) } " " small { (change.detail.to_string().chars().take(200).collect::<String>()) } }
                } } }
            } }
        }
    };
    Ok(html(
        frame(&page, tr.t("admin_access.title"), "admin_access", body),
        &page.csrf,
        page.new_csrf,
    ))
}

pub async fn review_post(
    State(state): State<WebState>,
    page: Page,
    Path(id): Path<String>,
    form: Form,
) -> PageResult {
    let tr = &page.tr;
    super::require(&page, holdfast_domain::Action::Administer)?;
    let id = id
        .parse::<i64>()
        .map_err(|_| super::error_page(tr, AppError::not_found(format!("user {id}"))))?;
    let note = Some(form.get("note")).filter(|n| !n.trim().is_empty());
    access::review(
        &state.app,
        &page.actor,
        &current_op_id(),
        id,
        form.get("outcome"),
        note,
    )
    .await
    .or_page(tr)?;
    Ok(redirect("/admin/access", "review_recorded"))
}

/// Switching a module: first the preview of who loses what, then (with `confirm`) the switch.
pub async fn module_post(
    State(state): State<WebState>,
    page: Page,
    Path(key): Path<String>,
    form: Form,
) -> PageResult {
    let tr = &page.tr;
    super::require(&page, holdfast_domain::Action::Administer)?;
    let module = Module::parse(&key)
        .ok_or_else(|| super::error_page(tr, AppError::not_found(format!("module {key}"))))?;
    let on = form.get("on") == "true";
    let confirm = form.get("confirm") == "yes";
    let outcome = access::change(
        &state.app,
        &page.actor,
        &current_op_id(),
        AccessChange::SwitchModule(module, on),
        !confirm,
    )
    .await
    .or_page(tr)?;
    if confirm {
        return Ok(redirect("/admin/access", "module_switched"));
    }
    let what = tr.t(&format!("module.{}", module.key())).to_owned();
    let title = tr.f(
        if on {
            "admin_access.preview_on"
        } else {
            "admin_access.preview_off"
        },
        &[("module", &what)],
    );
    let action = format!("/admin/access/modules/{}", module.key());
    super::admin_roles::preview_page(&page, &title, &outcome, &action, "/admin/access", &form)
}

/// "Why can('t) this user …?" for any user: the chain, and the user's access summary.
pub async fn explain_page(
    State(state): State<WebState>,
    page: Page,
    Query(query): Query<HashMap<String, String>>,
) -> PageResult {
    let tr = &page.tr;
    let app = &state.app;
    // Listing users needs the same right as explaining them; refuse before showing the form.
    super::require(&page, holdfast_domain::Action::Audit)?;
    let users = holdfast_app::users::list(app, &page.actor)
        .await
        .or_page(tr)?;
    let value = |key: &str| query.get(key).cloned().unwrap_or_default();
    let user_id = value("user_id").parse::<i64>().ok();
    let mut problem = None;
    let mut answer = None;
    let summary = match user_id {
        Some(id) => Some(access::summary(app, &page.actor, id).await.or_page(tr)?),
        None => None,
    };
    if let Some(user_id) = user_id
        && (!value("permission").is_empty() || !value("record").is_empty())
    {
        let record = match value("record").trim() {
            "" => None,
            text => match parse_record_ref(text) {
                Ok(record) => Some(record),
                Err(_) => {
                    problem = Some(tr.t("error.invalid_record").to_owned());
                    None
                }
            },
        };
        let permission =
            parse_permission(&value("permission")).unwrap_or((Module::Contacts, Right::View));
        let field = Some(value("field")).filter(|f| !f.is_empty());
        if problem.is_none() {
            match access::explain_for(
                app,
                &page.actor,
                Question {
                    user_id,
                    permission,
                    record,
                    field,
                },
            )
            .await
            {
                Ok(chain) => answer = Some(chain),
                Err(AppError::Invalid(errors)) => {
                    problem = Some(
                        errors
                            .0
                            .iter()
                            .map(|e| super::error_message(tr, e.code, &e.message))
                            .collect::<Vec<_>>()
                            .join(" "),
                    )
                }
                Err(error) => return Err(super::error_page(tr, error)),
            }
        }
    }
    let body = html! {
        section.card {
            h2 { (tr.t("admin_access.explain_title")) }
            form.stack method="get" action="/admin/access/explain" {
                label { (tr.t("admin_access.user"))
                    select name="user_id" { @for user in &users {
                        option value=(user.id) selected[user_id == Some(user.id)] { (user.display_name) " (" (user.username) ")" }
                    } }
                }
                label { (tr.t("access.what"))
                    (super::access::permission_select(tr, &value("permission")))
                }
                label { (tr.t("access.request_record")) input name="record" value=(value("record")) placeholder="contact:12"; }
                label { (tr.t("admin_access.field")) input name="field" value=(value("field")) placeholder="phone"; }
                button.primary type="submit" { (tr.t("admin_access.explain_button")) }
            }
            @if let Some(problem) = problem { div.problems role="alert" { (problem) } }
            @if let Some(answer) = &answer {
                h3 { @if answer.allowed() { (tr.t("admin_access.allowed")) } @else { (tr.t("admin_access.denied")) } }
                (chain(tr, &answer.steps))
            }
        }
        @if let Some(summary) = &summary {
            section.card id="summary" {
                h2 { (tr.f("admin_access.summary_of", &[("user", &summary.display_name)])) }
                p { (tr.t("access.status_label")) ": " (tr.t(&format!("state.{}", summary.status))) " · " (tr.t("form.role")) ": " (tr.or(&format!("role.{}", summary.role), &summary.role_name))
                    @if let Some(team) = &summary.team { " · " (tr.t("access.team")) ": " (team) } }
                p { (tr.t("access.scope_label")) ": " (tr.t(&format!("access.scope.{}", summary.scope)))
                    @if let Some(owners) = &summary.reaches_owners { " (" (owners.join(", ")) ")" } }
                (super::access::rights_matrix(tr, &summary.rights))
                @if !summary.hidden_fields.is_empty() { p { (tr.t("admin_access.hidden_fields")) ": " (summary.hidden_fields.join(", ")) } }
                @if !summary.read_only_fields.is_empty() { p { (tr.t("admin_access.read_only_fields")) ": " (summary.read_only_fields.join(", ")) } }
                @if !summary.shared_records.is_empty() { p { (tr.t("admin_access.shared")) ": " (summary.shared_records.join(", ")) } }
            }
        }
    };
    Ok(html(
        frame(
            &page,
            tr.t("admin_access.explain_title"),
            "admin_access",
            body,
        ),
        &page.csrf,
        page.new_csrf,
    ))
}
