//! The incident page: what to do when something goes wrong — contain, see, recover, report —
//! with the state of each (is the CRM locked down, which guards wait for review), who is
//! responsible, and the incident drills run on the server.

use super::layout::{csrf_field, empty, frame};
use super::{Form, OrPage, Page, PageResult, html, redirect};
use crate::WebState;
use crate::error::current_op_id;
use axum::extract::State;
use holdfast_app::incident;
use maud::html;

pub async fn incident_page(State(state): State<WebState>, page: Page) -> PageResult {
    super::require(&page, holdfast_domain::Action::Audit)?;
    let tr = &page.tr;
    let responsible = incident::responsible(&state.app).await.or_page(tr)?;
    let drills = incident::drills(&state.app, &page.actor)
        .await
        .or_page(tr)?;
    let trips = holdfast_app::guards::trips(&state.app, &page.actor)
        .await
        .or_page(tr)?;
    let waiting = trips.iter().filter(|t| t.released_at.is_none()).count();
    let admin = page.actor.is_admin();
    let seconds = |ms: Option<i64>| format!("{:.1} s", ms.unwrap_or(0) as f64 / 1000.0);
    let body = html! {
        section.card id="responsible" {
            h2 { (tr.t("incident.plan_responsible")) }
            @if responsible.is_empty() {
                p.warn { (tr.t("incident.plan_nobody")) }
            } @else {
                p { strong { (responsible) } }
            }
            @if admin {
                form.inline method="post" action="/admin/incident/responsible" {
                    (csrf_field(&page.csrf))
                    label { (tr.t("incident.plan_who")) input name="responsible" size="60" maxlength="500" value=(responsible); }
                    button type="submit" { (tr.t("action.save")) }
                }
            }
        }
        section.card id="plan" {
            h2 { (tr.t("incident.plan_title")) }
            ol.plan {
                li id="contain" {
                    h3 { (tr.t("incident.plan_contain")) }
                    p { (tr.t("incident.plan_contain_text")) }
                    @match &page.actor.access.lockdown {
                        Some(lockdown) => p.bad { (tr.f("incident.plan_locked", &[("by", &lockdown.by), ("reason", &lockdown.reason)])) },
                        None => p { (tr.t("incident.plan_not_locked")) },
                    }
                    p { a href="/admin/sign-in" { (tr.t("nav.sign_in")) } " · " a href="/admin/security#lockdown-switch" { (tr.t("incident.lockdown")) } }
                }
                li id="see" {
                    h3 { (tr.t("incident.plan_see")) }
                    p { (tr.t("incident.plan_see_text")) }
                    @if waiting > 0 { p.warn { (tr.f("incident.plan_guards_waiting", &[("count", &waiting)])) } }
                    p { a href="/admin/timeline" { (tr.t("nav.timeline")) } }
                }
                li id="recover" {
                    h3 { (tr.t("incident.plan_recover")) }
                    p { (tr.t("incident.plan_recover_text")) }
                    p { a href="/admin/timeline" { (tr.t("nav.timeline")) } " · " a href="/bin" { (tr.t("nav.bin")) } " · " a href="/admin/backups" { (tr.t("nav.backups")) } }
                }
                li id="report" {
                    h3 { (tr.t("incident.plan_report")) }
                    p { (tr.t("incident.plan_report_text")) }
                    p { a href="/admin/security" { (tr.t("nav.security")) } }
                }
            }
        }
        section.card id="drills" {
            h2 { (tr.t("incident.drills")) }
            p { (tr.t("incident.drills_help")) " " code { "holdfast incident drill" } }
            @if drills.is_empty() { (empty(tr, "incident.drills_none")) } @else {
                table {
                    thead { tr {
                        th { (tr.t("signin.when")) } th { (tr.t("incident.drill_result")) }
                        th { (tr.t("incident.drill_detect")) } th { (tr.t("incident.drill_contain")) } th { (tr.t("incident.drill_recover")) }
                    } }
                    tbody {
                        @for drill in &drills {
                            tr class=(if drill.ok { "ok" } else { "bad" }) {
                                td { (tr.datetime(drill.at)) }
                                td {
                                    @if drill.ok { (tr.f("incident.drill_ok", &[("deleted", &drill.deleted)])) }
                                    @else { (tr.t("incident.drill_failed")) " " code { (drill.error.clone().unwrap_or_default()) } }
                                }
                                td { (seconds(drill.detect_ms)) }
                                td { (seconds(drill.contain_ms)) }
                                td { (seconds(drill.recover_ms)) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(html(
        frame(&page, tr.t("incident.plan_page"), "incident", body),
        &page.csrf,
        page.new_csrf,
    ))
}

pub async fn responsible_post(State(state): State<WebState>, page: Page, form: Form) -> PageResult {
    super::require(&page, holdfast_domain::Action::Administer)?;
    incident::set_responsible(
        &state.app,
        &page.actor,
        &current_op_id(),
        form.get("responsible"),
    )
    .await
    .or_page(&page.tr)?;
    Ok(redirect("/admin/incident", "responsible_saved"))
}
