//! The incident timeline page: everything one user, API token, session or client address did
//! between two times, with a CSV download for the report.

use super::layout::{empty, frame};
use super::{OrPage, Page, PageResult, html};
use crate::WebState;
use crate::extract::QueryPairs;
use crate::signin_api::timeline_query;
use axum::extract::{Query, State};
use holdfast_app::{revert, timeline};
use maud::html;
use std::collections::HashMap;

/// The timeline of what led to a tripped guard: the user's window before it.
fn guard_timeline(state: &WebState, trip: &holdfast_app::TripRow) -> String {
    let from = trip
        .at
        .plus_seconds(-state.app.config.guards.window_minutes * 60)
        .to_rfc3339();
    let from: String = form_urlencoded::byte_serialize(from.as_bytes()).collect();
    format!("/admin/timeline?user_id={}&from={from}", trip.user_id)
}

fn pairs(query: &HashMap<String, String>) -> QueryPairs {
    QueryPairs(query.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

pub async fn timeline_page(
    State(state): State<WebState>,
    page: Page,
    Query(query): Query<HashMap<String, String>>,
) -> PageResult {
    super::require(&page, holdfast_domain::Action::Audit)?;
    let tr = &page.tr;
    let value = |key: &str| query.get(key).cloned().unwrap_or_default();
    let asked = ["user_id", "token_id", "session_id", "client"]
        .iter()
        .any(|key| query.get(*key).is_some_and(|v| !v.trim().is_empty()));
    let events = if asked {
        let wanted = timeline_query(&pairs(&query)).map_err(|e| super::error_page(tr, e.0))?;
        Some(
            timeline::timeline(&state.app, &page.actor, &wanted)
                .await
                .or_page(tr)?,
        )
    } else {
        None
    };
    let users = holdfast_app::users::list(&state.app, &page.actor)
        .await
        .or_page(tr)?;
    let trips = holdfast_app::guards::trips(&state.app, &page.actor)
        .await
        .or_page(tr)?;
    let name_of = |id: i64| {
        users
            .iter()
            .find(|u| u.id == id)
            .map(|u| u.display_name.clone())
            .unwrap_or_else(|| id.to_string())
    };
    let open: Vec<_> = trips.iter().filter(|t| t.released_at.is_none()).collect();
    let export: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(query.iter().filter(|(k, _)| k.as_str() != "format"))
        .finish();
    let body = html! {
        @if !open.is_empty() {
            section.card.alert id="guards" {
                h2 { (tr.t("incident.guards")) }
                p { (tr.t("incident.guards_help")) }
                table {
                    thead { tr { th { (tr.t("incident.who")) } th { (tr.t("incident.what")) } th { (tr.t("signin.when")) } th {} } }
                    tbody {
                        @for trip in &open {
                            tr {
                                td { a href=(guard_timeline(&state, trip)) { (name_of(trip.user_id)) } }
                                td { (tr.f("incident.guard_line", &[("amount", &trip.amount), ("kind", &tr.or(&format!("incident.guard_{}", trip.kind), &trip.kind).to_owned()), ("threshold", &trip.threshold)])) }
                                td { (tr.datetime(trip.at)) }
                                td {
                                    @if page.actor.is_admin() {
                                        form.inline method="post" action=(format!("/admin/guards/{}/release", trip.id)) {
                                            (super::layout::csrf_field(&page.csrf))
                                            button type="submit" { (tr.t("incident.release")) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section.card {
            p { (tr.t("incident.timeline_help")) }
            form.inline method="get" action="/admin/timeline" {
                label { (tr.t("incident.user"))
                    select name="user_id" {
                        option value="" { "—" }
                        @for user in &users {
                            option value=(user.id) selected[value("user_id") == user.id.to_string()] { (user.display_name) " (" (user.username) ")" }
                        }
                    }
                }
                label { (tr.t("incident.token")) input name="token_id" inputmode="numeric" size="6" value=(value("token_id")); }
                label { (tr.t("table.address")) input name="client" size="16" value=(value("client")); }
                label { (tr.t("incident.from")) input name="from" placeholder="2026-12-01T00:00:00Z" value=(value("from")); }
                label { (tr.t("incident.to")) input name="to" placeholder="2026-12-02T00:00:00Z" value=(value("to")); }
                button.primary type="submit" { (tr.t("incident.show")) }
            }
        }
        @if let Some(events) = &events {
            section.card id="timeline" {
                p {
                    (tr.f("incident.events", &[("count", &events.len())])) " "
                    a href=(format!("/api/v1/audit/timeline?{export}&format=csv")) { (tr.t("incident.download")) }
                }
                @if let (Some(first), true) = (events.first(), page.actor.is_admin()) {
                    @let since = form_urlencoded::byte_serialize(query.get("from").cloned().unwrap_or_else(|| holdfast_domain::Timestamp(first.at.micros() - 1).to_rfc3339()).as_bytes()).collect::<String>();
                    @if let Some(token) = query.get("token_id").filter(|t| !t.is_empty()) {
                        p { a.button href=(format!("/admin/revert?token_id={token}&to={since}")) { (tr.t("incident.undo_token")) } }
                    } @else if let Some(user) = query.get("user_id").filter(|u| !u.is_empty()) {
                        p { a.button href=(format!("/admin/revert?user_id={user}&to={since}")) { (tr.t("incident.undo_user")) } }
                    }
                }
                @if events.is_empty() { (empty(tr, "incident.nothing")) } @else {
                    table {
                        thead { tr { th { (tr.t("signin.when")) } th { (tr.t("incident.who")) } th { (tr.t("incident.what")) } th { (tr.t("incident.record")) } th { (tr.t("incident.via")) } } }
                        tbody {
                            @for event in events {
                                tr.failed[event.action.ends_with(".delete") || event.action.ends_with(".export") || (event.source == "sign_in" && event.action != "sign_in.success")] {
                                    td { (tr.datetime(event.at)) }
                                    td { (event.actor) }
                                    td { code { (event.action) } }
                                    td { (event.subject.as_deref().unwrap_or("—")) }
                                    td {
                                        @if let Some(token) = event.token_id { (tr.f("incident.via_token", &[("id", &token)])) " " }
                                        @if let Some(session) = event.session_id { (tr.f("incident.via_session", &[("id", &session)])) " " }
                                        (event.client.as_deref().unwrap_or(""))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(html(
        frame(&page, tr.t("incident.timeline"), "timeline", body),
        &page.csrf,
        page.new_csrf,
    ))
}

/// Releases a tripped guard after review (administrators, with step-up).
pub async fn guard_release_post(
    State(state): State<WebState>,
    page: Page,
    axum::extract::Path(id): axum::extract::Path<String>,
    _form: super::Form,
) -> PageResult {
    super::require(&page, holdfast_domain::Action::Administer)?;
    let id = id.parse::<i64>().unwrap_or(0);
    holdfast_app::guards::release(&state.app, &page.actor, &crate::error::current_op_id(), id)
        .await
        .or_page(&page.tr)?;
    Ok(super::redirect("/admin/timeline", "guard_released"))
}

// ---- revert: undo one user's changes since a time ---------------------------------------------

fn revert_request(
    query: &HashMap<String, String>,
) -> Result<holdfast_app::revert::Request, holdfast_app::AppError> {
    use holdfast_app::AppError;
    let to = query
        .get("to")
        .and_then(|t| holdfast_domain::Timestamp::parse_rfc3339(t.trim()))
        .ok_or_else(|| {
            AppError::invalid("to", "invalid_date", "A time like 2026-12-01T09:00:00Z")
        })?;
    let by = match query
        .get("user_id")
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
    {
        Some(id) => Some(
            id.parse::<i64>()
                .map_err(|_| AppError::invalid("user_id", "invalid_id", "Choose a user"))?,
        ),
        None => None,
    };
    let conflicts = match query.get("conflicts").map(String::as_str) {
        Some("revert") => holdfast_app::revert::Choice::Revert,
        _ => holdfast_app::revert::Choice::Keep,
    };
    let token =
        match query
            .get("token_id")
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
        {
            Some(id) => Some(id.parse::<i64>().map_err(|_| {
                AppError::invalid("token_id", "invalid_id", "An API token's number")
            })?),
            None => None,
        };
    Ok(holdfast_app::revert::Request {
        to,
        by,
        token,
        conflicts,
        choices: Default::default(),
        note: Some("from the revert page".into()),
    })
}

/// The preview of undoing a user's (or everyone's) changes since a time, with the button that
/// does it.
pub async fn revert_page(
    State(state): State<WebState>,
    page: Page,
    Query(query): Query<HashMap<String, String>>,
) -> PageResult {
    super::require(&page, holdfast_domain::Action::Administer)?;
    let tr = &page.tr;
    let request = revert_request(&query).or_page(tr)?;
    let preview = holdfast_app::revert::preview(&state.app, &page.actor, &request)
        .await
        .or_page(tr)?;
    let counts = preview.counts();
    let whose = match (request.token, request.by) {
        (Some(token), _) => tr.f("incident.through_token", &[("token", &token)]),
        (None, Some(id)) => {
            holdfast_app::users::get(&state.app, &page.actor, id)
                .await
                .or_page(tr)?
                .display_name
        }
        (None, None) => tr.t("incident.everyone").to_owned(),
    };
    let body = html! {
        section.card id="revert-preview" {
            p { (tr.f("incident.revert_intro", &[("whose", &whose), ("since", &tr.datetime(request.to))])) }
            p { strong { (tr.f("incident.revert_counts", &[("changing", &counts.changing), ("restored", &counts.restored), ("deleted", &counts.deleted), ("fields", &counts.fields), ("conflicts", &counts.conflicts)])) } }
            @if preview.items.is_empty() { (empty(tr, "incident.revert_nothing")) } @else {
                table {
                    thead { tr { th { (tr.t("incident.record")) } th { (tr.t("incident.what")) } th { (tr.t("incident.conflicts")) } } }
                    tbody {
                        @for item in &preview.items {
                            tr {
                                td { a href=(format!("/{}/{}", item.entity.plural(), item.id)) { (item.title) } }
                                td { (tr.t(&format!("incident.revert_{}", item.action()))) }
                                td { (item.plan.conflicts.len()) }
                            }
                        }
                    }
                }
            }
            @if !preview.made.is_empty() {
                h3 { (tr.t("incident.made_title")) }
                ul id="made" {
                    @for made in &preview.made {
                        li data-kind=(made.kind) { (tr.f(&format!("incident.made_{}", made.kind), &[("name", &made.name), ("id", &made.id), ("detail", &made.detail)])) }
                    }
                }
            }
            @if counts.changing > 0 || preview.made.iter().any(revert::Made::undoes) {
                form.stack method="post" action="/admin/revert" {
                    (super::layout::csrf_field(&page.csrf))
                    input type="hidden" name="to" value=(request.to.to_rfc3339());
                    input type="hidden" name="user_id" value=(request.by.map(|id| id.to_string()).unwrap_or_default());
                    input type="hidden" name="token_id" value=(request.token.map(|id| id.to_string()).unwrap_or_default());
                    @if counts.conflicts > 0 {
                        label.check { input type="radio" name="conflicts" value="keep" checked; " " (tr.t("incident.keep_conflicts")) }
                        label.check { input type="radio" name="conflicts" value="revert"; " " (tr.t("incident.revert_conflicts")) }
                    }
                    p { (tr.t("incident.revert_undoable")) }
                    button.danger type="submit" { (tr.t("incident.revert_apply")) }
                }
            }
        }
    };
    Ok(html(
        frame(&page, tr.t("incident.revert_title"), "timeline", body),
        &page.csrf,
        page.new_csrf,
    ))
}

pub async fn revert_post(
    State(state): State<WebState>,
    page: Page,
    form: super::Form,
) -> PageResult {
    super::require(&page, holdfast_domain::Action::Administer)?;
    let request = revert_request(&form.0).or_page(&page.tr)?;
    let done = holdfast_app::revert::apply(
        &state.app,
        &page.actor,
        &crate::error::current_op_id(),
        &request,
    )
    .await
    .or_page(&page.tr)?;
    let counts = done.counts();
    let tr = &page.tr;
    let body = html! {
        section.card id="revert-done" {
            p { strong { (tr.f("incident.revert_done", &[("changing", &counts.changing), ("restored", &counts.restored), ("deleted", &counts.deleted)])) } }
            @if done.made.iter().any(revert::Made::undoes) { p { (tr.f("incident.made_done", &[("count", &done.made.iter().filter(|m| m.undoes()).count())])) } }
            p { a href="/admin/timeline" { (tr.t("nav.timeline")) } }
        }
    };
    Ok(html(
        frame(&page, tr.t("incident.revert_title"), "timeline", body),
        &page.csrf,
        page.new_csrf,
    ))
}
