//! The incident timeline page: everything one user, API token, session or client address did
//! between two times, with a CSV download for the report.

use super::layout::{empty, frame};
use super::{OrPage, Page, PageResult, html};
use crate::WebState;
use crate::extract::QueryPairs;
use crate::signin_api::timeline_query;
use axum::extract::{Query, State};
use holdfast_app::timeline;
use maud::html;
use std::collections::HashMap;

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
                                td { a href=(format!("/admin/timeline?user_id={}", trip.user_id)) { (name_of(trip.user_id)) } }
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
