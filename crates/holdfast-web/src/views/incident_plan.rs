//! The incident page: what to do when something goes wrong — contain, see, recover, report —
//! with the state of each (is the CRM locked down, which guards wait for review), who is
//! responsible, and the incident drills run on the server; and the security basics every user
//! can read.

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
    let policy = incident::policy(&state.app).await.or_page(tr)?;
    let acks = incident::acknowledgements(&state.app, &page.actor)
        .await
        .or_page(tr)?;
    let not_yet: Vec<&str> = acks
        .iter()
        .filter(|(_, at)| at.is_none())
        .map(|(user, _)| user.display_name.as_str())
        .collect();
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
        section.card id="policy" {
            h2 { (tr.t("awareness.policy_card")) }
            p { (tr.t("awareness.policy_help")) }
            @match &policy {
                Some(policy) => p { strong { (tr.f("awareness.policy_acked", &[("acked", &(acks.len() - not_yet.len())), ("total", &acks.len()), ("version", &policy.version)])) } },
                None => p { (tr.t("awareness.policy_none")) },
            }
            @if !not_yet.is_empty() { p.warn { (tr.t("awareness.policy_not_yet")) " " (not_yet.join(", ")) } }
            @if admin {
                form.stack method="post" action="/admin/incident/policy" {
                    (csrf_field(&page.csrf))
                    textarea name="policy" rows="6" maxlength="5000" { (policy.as_ref().map(|p| p.text.clone()).unwrap_or_default()) }
                    button type="submit" { (tr.t("awareness.policy_save")) }
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

/// Security basics for everyone, in one short page: phishing, shared passwords, exports on
/// personal devices, and whom to tell when something looks wrong.
pub async fn basics_page(State(state): State<WebState>, page: Page) -> PageResult {
    let tr = &page.tr;
    let responsible = incident::responsible(&state.app).await.or_page(tr)?;
    let admins = holdfast_app::users::admin_names(&state.app)
        .await
        .or_page(tr)?
        .join(", ");
    let tell = match responsible.is_empty() {
        true => admins,
        false => responsible,
    };
    let body = html! {
        article.card id="basics" {
            h2 { (tr.t("awareness.basics_title")) }
            @for topic in ["phishing", "passwords", "exports", "desk"] {
                section {
                    h3 { (tr.t(&format!("awareness.{topic}_title"))) }
                    p { (tr.t(&format!("awareness.{topic}"))) }
                }
            }
            section id="tell" {
                h3 { (tr.t("awareness.tell_title")) }
                p { (tr.f("awareness.tell", &[("who", &tell)])) }
            }
        }
    };
    Ok(html(
        frame(&page, tr.t("awareness.basics_title"), "settings", body),
        &page.csrf,
        page.new_csrf,
    ))
}

/// A path inside Holdfast to go on to, or the home page.
fn next_of(next: &str) -> &str {
    if next.starts_with('/') && !next.starts_with("//") && !next.starts_with("/\\") {
        next
    } else {
        "/"
    }
}

/// The security policy to acknowledge.
pub async fn policy_page(
    State(state): State<WebState>,
    page: Page,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> axum::response::Response {
    use axum::response::{IntoResponse as _, Redirect};
    let tr = &page.tr;
    let next = next_of(query.get("next").map(String::as_str).unwrap_or("/")).to_owned();
    let policy = match incident::unacknowledged(&state.app, page.actor.user_id).await {
        Ok(Some(policy)) => policy,
        Ok(None) => return Redirect::to(&next).into_response(),
        Err(error) => return super::error_page(tr, error),
    };
    let body = html! {
        article.card id="policy" {
            h2 { (tr.t("awareness.policy_title")) }
            p { (tr.t("awareness.policy_intro")) }
            div.policy-text { (policy.text) }
            p.hint { (tr.f("awareness.policy_version", &[("version", &policy.version), ("by", &policy.set_by), ("at", &tr.datetime(policy.set_at))])) }
            form method="post" action="/policy" {
                (csrf_field(&page.csrf))
                input type="hidden" name="version" value=(policy.version);
                input type="hidden" name="next" value=(next);
                button.primary type="submit" { (tr.t("awareness.policy_accept")) }
            }
            p { a href="/security-basics" { (tr.t("awareness.basics_link")) } }
        }
    };
    html(
        frame(&page, tr.t("awareness.policy_title"), "settings", body),
        &page.csrf,
        page.new_csrf,
    )
}

pub async fn policy_post(State(state): State<WebState>, page: Page, form: Form) -> PageResult {
    let version = form.get("version").parse::<i64>().unwrap_or(0);
    incident::acknowledge(&state.app, &page.actor, &current_op_id(), version)
        .await
        .or_page(&page.tr)?;
    Ok(redirect(next_of(form.get("next")), "policy_acknowledged"))
}

pub async fn policy_set_post(State(state): State<WebState>, page: Page, form: Form) -> PageResult {
    super::require(&page, holdfast_domain::Action::Administer)?;
    incident::set_policy(
        &state.app,
        &page.actor,
        &current_op_id(),
        form.get("policy"),
    )
    .await
    .or_page(&page.tr)?;
    Ok(redirect("/admin/incident#policy", "security_policy_saved"))
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
