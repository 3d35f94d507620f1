//! "Why can't I see this?" and access requests in the pages: the denial page with the chain of
//! reasons and a way to ask, the request form, and "My access" (my rights and where each comes
//! from, my requests, my notifications, and the requests waiting for my decision).

use super::layout::{csrf_field, error_body, frame};
use super::{Form, OrPage, Page, PageResult, error_message, html, html_status, redirect};
use crate::WebState;
use crate::access_api::parse_record_ref;
use crate::error::current_op_id;
use crate::i18n::Tr;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use holdfast_app::access::{self, Decision};
use holdfast_app::{AccessRequestRow, AppError};
use holdfast_domain::access::{Step, parse_permission};
use holdfast_domain::{Denial, Module, Right, Timestamp};
use maud::{Markup, html};
use std::collections::HashMap;

/// `contact 12` (as notifications store it) as "Contact 12" / "联系人 12".
pub fn record_label(tr: &Tr, text: &str) -> String {
    match text.split_once(' ') {
        Some((kind, id)) if tr.get(&format!("entity.{kind}.one")).is_some() => {
            format!("{} {id}", tr.t(&format!("entity.{kind}.one")))
        }
        _ => text.to_owned(),
    }
}

/// A menu of every right (`name="permission"`), `selected` chosen.
pub fn permission_select(tr: &Tr, selected: &str) -> Markup {
    html! {
        select name="permission" {
            @for module in Module::ALL { @for right in module.rights() {
                @let key = format!("{}.{}", module.key(), right.key());
                option value=(key) selected[key == selected] { (permission_label(tr, &key)) }
            } }
        }
    }
}

/// `deals.edit` as "Deals · edit" / "商机 · 编辑".
pub fn permission_label(tr: &Tr, key: &str) -> String {
    match key.split_once('.') {
        Some((module, right)) if tr.get(&format!("module.{module}")).is_some() => format!(
            "{} · {}",
            tr.t(&format!("module.{module}")),
            tr.or(&format!("right.{right}"), right)
        ),
        _ => key.to_owned(),
    }
}

/// One check of the chain in the reader's language (the use case's English when untranslated).
pub fn step_text(tr: &Tr, step: &Step) -> String {
    if tr.get(&format!("why.{}", step.code)).is_none() {
        return step.message.clone();
    }
    let param = |name: &str| {
        step.params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    };
    let shown: Vec<(&str, String)> = step
        .params
        .iter()
        .map(|(name, value)| {
            let value = match *name {
                "role" => match param("role_key") {
                    Some(key) => tr.or(&format!("role.{key}"), value).to_owned(),
                    None => value.clone(),
                },
                "module" => tr.or(&format!("module.{value}"), value).to_owned(),
                "permission" => permission_label(tr, value),
                "scope" => tr.or(&format!("access.scope.{value}"), value).to_owned(),
                _ => value.clone(),
            };
            (*name, value)
        })
        .collect();
    let args: Vec<(&str, &dyn std::fmt::Display)> = shown
        .iter()
        .map(|(name, value)| (*name, value as &dyn std::fmt::Display))
        .collect();
    tr.f(&format!("why.{}", step.code), &args)
}

pub fn chain(tr: &Tr, steps: &[Step]) -> Markup {
    html! {
        ol.why {
            @for step in steps {
                li.ok[step.ok].denied[!step.ok] {
                    (if step.ok { "✓ " } else { "✗ " })
                    (step_text(tr, step))
                    @if !step.ok && !step.can_change.is_empty() {
                        br;
                        small { (tr.f("access.can_change", &[("names", &step.can_change.join(", "))])) }
                    }
                }
            }
        }
    }
}

/// The page for a refusal: what failed, the whole chain, who can change it, and a link to ask.
pub fn denial_page(tr: &Tr, denial: &Denial) -> Response {
    let title = error_message(tr, denial.code, &denial.message);
    let Some(explanation) = &denial.explanation else {
        // A refusal outside the chain of checks (a guard, a token rule) still says who can help.
        let who = if denial.grantable_by.is_empty() {
            String::new()
        } else {
            tr.f(
                "access.can_change",
                &[("names", &denial.grantable_by.join(", "))],
            )
        };
        let body = error_body(tr, &title, &who, Some(("/", tr.t("nav.home"))));
        return refused(html_status(StatusCode::FORBIDDEN, body, "", false), denial);
    };
    // What to ask for: the right that failed, on the record if there was one.
    let ask = explanation.steps.iter().find_map(|s| {
        let permission = s.params.iter().find(|(n, _)| *n == "permission")?.1.clone();
        parse_permission(&permission)?;
        Some(permission)
    });
    let failed = explanation.failed();
    let askable = failed.is_some_and(|s| matches!(s.code, "no_right" | "out_of_scope"));
    // For a record outside the scope, ask for that record to be shared.
    let record = failed
        .and_then(|s| s.params.iter().find(|(n, _)| *n == "record"))
        .map(|(_, r)| r.clone());
    let mut query = vec![("permission", ask.clone().unwrap_or_default())];
    query.extend(record.map(|r| ("record", r)));
    let href = format!(
        "/access/request?{}",
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(query)
            .finish()
    );
    let body = html! {
        (maud::DOCTYPE)
        html lang=(tr.locale.tag()) {
            (super::layout::head(tr, &title))
            body.public {
                main id="main" class="narrow" {
                    p.brand-big { a href="/" { "Holdfast" } }
                    h1 { (title) }
                    h2 { (tr.t("access.why_title")) }
                    (chain(tr, &explanation.steps))
                    @if askable {
                        p { a.button.primary href=(href) id="ask-access" { (tr.t("access.request")) } }
                    }
                    p { a href="/" { (tr.t("nav.home")) } }
                }
            }
        }
    };
    refused(html_status(StatusCode::FORBIDDEN, body, "", false), denial)
}

/// Marks the page as a refusal for the audit log (see `record_refusals`).
fn refused(mut response: Response, denial: &Denial) -> Response {
    response
        .extensions_mut()
        .insert(crate::extract::Refused(denial.code));
    response
}

/// The request form, reached from a denial: `permission` and, for one record, `record`.
pub async fn request_page(page: Page, Query(query): Query<HashMap<String, String>>) -> PageResult {
    render_request(&page, &query, None, StatusCode::OK)
}

fn render_request(
    page: &Page,
    query: &HashMap<String, String>,
    problem: Option<String>,
    status: StatusCode,
) -> PageResult {
    let tr = &page.tr;
    let permission = query.get("permission").cloned().unwrap_or_default();
    let record = query.get("record").cloned().unwrap_or_default();
    let body = html! {
        section.card {
            h2 { (tr.t("access.request_title")) }
            @if let Some(problem) = problem { div.problems role="alert" { (problem) } }
            form.stack method="post" action="/access/requests" {
                (csrf_field(&page.csrf))
                label { (tr.t("access.request_what"))
                    (permission_select(tr, &permission))
                }
                label { (tr.t("access.request_record")) input name="record" value=(record) placeholder="contact:12"; small { (tr.t("access.request_record_help")) } }
                label { (tr.t("access.request_reason")) textarea name="reason" required maxlength="500" {} small { (tr.t("access.request_reason_help")) } }
                button.primary type="submit" id="send-request" { (tr.t("access.request_send")) }
            }
        }
    };
    Ok(html_status(
        status,
        frame(page, tr.t("access.request_title"), "access", body),
        &page.csrf,
        page.new_csrf,
    ))
}

pub async fn request_post(State(state): State<WebState>, page: Page, form: Form) -> PageResult {
    let tr = &page.tr;
    let mut query = HashMap::new();
    query.insert("permission".to_owned(), form.get("permission").to_owned());
    query.insert("record".to_owned(), form.get("record").to_owned());
    let record = match form.get("record").trim() {
        "" => None,
        text => match parse_record_ref(text) {
            Ok(record) => Some(record),
            Err(_) => {
                let problem = error_message(tr, "invalid_record", "Name a record as KIND:ID");
                return render_request(
                    &page,
                    &query,
                    Some(problem),
                    StatusCode::UNPROCESSABLE_ENTITY,
                );
            }
        },
    };
    let permission =
        parse_permission(form.get("permission")).unwrap_or((Module::Contacts, Right::View));
    match access::request(
        &state.app,
        &page.actor,
        &current_op_id(),
        permission,
        record,
        form.get("reason"),
    )
    .await
    {
        Ok(_) => Ok(redirect("/access", "request_sent")),
        Err(AppError::Invalid(errors)) => {
            let problem = errors
                .0
                .iter()
                .map(|e| error_message(tr, e.code, &e.message))
                .collect::<Vec<_>>()
                .join(" ");
            render_request(
                &page,
                &query,
                Some(problem),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
        }
        Err(error) => Err(super::error_page(tr, error)),
    }
}

fn request_row(
    tr: &Tr,
    request: &AccessRequestRow,
    now: Timestamp,
    names: &dyn Fn(i64) -> String,
) -> Markup {
    html! {
        td { (names(request.user_id)) }
        td { (permission_label(tr, &request.permission)) @if let Some((entity, id)) = request.record { " " a href=(format!("/{}/{id}", entity.plural())) { (record_label(tr, &format!("{} {id}", entity.name()))) } } }
        td { (request.reason) }
        td { (tr.datetime(request.created_at)) }
        td { (tr.t(&format!("access.status.{}", request.state(now))))
            @if let Some(until) = request.expires_at { " → " (tr.datetime(until)) }
            @if let Some(note) = &request.decision_note { br; small { (note) } } }
    }
}

/// My access: rights and where each comes from, my requests, notifications, and requests
/// waiting for my decision.
pub async fn access_page(State(state): State<WebState>, page: Page) -> PageResult {
    let tr = &page.tr;
    let app = &state.app;
    let now = app.now();
    let summary = access::summary(app, &page.actor, page.actor.user_id)
        .await
        .or_page(tr)?;
    let mine = access::my_requests(app, &page.actor).await.or_page(tr)?;
    let to_decide = access::pending_requests(app, &page.actor)
        .await
        .or_page(tr)?;
    let notes = access::notifications(app, &page.actor).await.or_page(tr)?;
    let config = page.actor.access.clone();
    let names = |id: i64| {
        config
            .user(id)
            .map(|u| u.display_name.clone())
            .unwrap_or_else(|| id.to_string())
    };
    let body = html! {
        @if !notes.is_empty() {
            section.card {
                h2 { (tr.t("access.notifications")) }
                ul { @for n in &notes { li.unread[n.read_at.is_none()] {
                    (tr.datetime(n.at)) " — "
                    @let text = |key: &str| n.detail.get(key).and_then(|v| v.as_str()).unwrap_or("").to_owned();
                    @let permission = permission_label(tr, &text("permission"));
                    @let record = record_label(tr, &text("record"));
                    (tr.f(&format!("access.notice.{}", n.kind), &[("by", &text("by")), ("permission", &permission), ("record", &record), ("note", &text("note"))]))
                } } }
                form.inline method="post" action="/access/notifications/read" { (csrf_field(&page.csrf)) button type="submit" { (tr.t("access.mark_read")) } }
            }
        }
        @if !to_decide.is_empty() {
            section.card {
                h2 { (tr.t("access.requests_to_decide")) }
                div.table-wrap { table.list id="requests-to-decide" {
                    thead { tr { th { (tr.t("access.requested_by")) } th { (tr.t("access.what")) } th { (tr.t("access.request_reason")) } th { (tr.t("access.requested_at")) } th { (tr.t("access.status_label")) } th { (tr.t("table.actions")) } } }
                    tbody { @for request in &to_decide { tr {
                        (request_row(tr, request, now, &names))
                        td.actions {
                            form.inline method="post" action=(format!("/access/requests/{}/approve", request.id)) {
                                (csrf_field(&page.csrf))
                                label.inline-label { small { (tr.t("access.expires_at")) } input type="datetime-local" name="expires_at"; }
                                button.primary type="submit" { (tr.t("access.approve")) }
                            }
                            form.inline method="post" action=(format!("/access/requests/{}/decline", request.id)) {
                                (csrf_field(&page.csrf))
                                label { span.sr { (tr.t("access.decline_note")) } input name="note" required placeholder=(tr.t("access.decline_note")); }
                                button.danger type="submit" { (tr.t("access.decline")) }
                            }
                        }
                    } } }
                } }
            }
        }
        section.card {
            h2 { (tr.t("access.rights")) }
            p { (tr.t("access.status_label")) ": " (tr.t(&format!("state.{}", summary.status))) " · " (tr.t("form.role")) ": " (tr.or(&format!("role.{}", summary.role), &summary.role_name))
                @if let Some(team) = &summary.team { " · " (tr.t("access.team")) ": " (team) } }
            p { (tr.t("access.scope_label")) ": " (tr.t(&format!("access.scope.{}", summary.scope))) }
            (rights_matrix(tr, &summary.rights))
        }
        section.card {
            h2 { (tr.t("access.my_requests")) }
            @if mine.is_empty() { p { (tr.t("access.no_requests")) } } @else {
                div.table-wrap { table.list id="my-requests" {
                    thead { tr { th { (tr.t("access.requested_by")) } th { (tr.t("access.what")) } th { (tr.t("access.request_reason")) } th { (tr.t("access.requested_at")) } th { (tr.t("access.status_label")) } } }
                    tbody { @for request in &mine { tr { (request_row(tr, request, now, &names)) } } }
                } }
            }
            p { a.button href="/access/request" { (tr.t("access.request")) } }
        }
    };
    Ok(html(
        frame(&page, tr.t("access.title"), "access", body),
        &page.csrf,
        page.new_csrf,
    ))
}

pub async fn decide_post(
    State(state): State<WebState>,
    page: Page,
    Path((id, verb)): Path<(String, String)>,
    form: Form,
) -> PageResult {
    let tr = &page.tr;
    let id = id
        .parse::<i64>()
        .map_err(|_| super::error_page(tr, AppError::not_found(format!("access request {id}"))))?;
    let decision = match verb.as_str() {
        "approve" => {
            let expires_at = match form.get("expires_at").trim() {
                "" => None,
                text => Some(
                    super::records::parse_local_time(tr, text, "expires_at")
                        .map_err(|error| super::error_page(tr, error))?,
                ),
            };
            Decision::Approve { expires_at }
        }
        "decline" => Decision::Decline {
            note: form.get("note").to_owned(),
        },
        _ => {
            return Err(super::error_page(
                tr,
                AppError::not_found(format!("action {verb}")),
            ));
        }
    };
    access::decide(&state.app, &page.actor, &current_op_id(), id, decision)
        .await
        .or_page(tr)?;
    Ok(redirect("/access", "request_decided"))
}

pub async fn notifications_read_post(
    State(state): State<WebState>,
    page: Page,
    _form: Form,
) -> PageResult {
    access::mark_notifications_read(&state.app, &page.actor)
        .await
        .or_page(&page.tr)?;
    Ok(redirect("/access", "notifications_read"))
}

/// A user's rights as a table: a row per module, a column per right, each cell saying what
/// gives it (role, approved request), that the module is off, or nothing.
pub fn rights_matrix(tr: &Tr, rights: &[access::RightSource]) -> Markup {
    html! {
        div.table-wrap { table.list.rights id="rights" {
            thead { tr {
                th { (tr.t("access.module")) }
                @for right in Right::ALL { th { (tr.t(&format!("right.{}", right.key()))) } }
            } }
            tbody { @for module in Module::ALL { tr {
                td { (tr.t(&format!("module.{}", module.key()))) }
                @for right in Right::ALL {
                    @let key = format!("{}.{}", module.key(), right.key());
                    @match rights.iter().find(|r| r.permission == key) {
                        Some(found) if found.source == "role" || found.source == "grant" => {
                            td.yes title=(found.detail) { "✓ " small { (tr.t(&format!("access.source_{}", found.source))) } }
                        }
                        Some(found) if found.source == "module_off" => {
                            td.off title=(found.detail) { (tr.t("access.source_module_off")) }
                        }
                        Some(found) => { td.no title=(found.detail) { "—" } }
                        None => { td.na {} }
                    }
                }
            } } }
        } }
    }
}
