//! Sign-in pages beyond the password: the second step (a code, a recovery code or a passkey),
//! "confirm it's you" before sensitive actions, the two-step section of Settings, the sign-in
//! history, and the security notices on the home page.

use super::layout::{csrf_field, empty, public_page};
use super::{
    Form, Page, PageResult, Visitor, error_message, error_page, html, html_status, redirect,
};
use crate::WebState;
use crate::error::current_op_id;
use crate::extract::{SIGN_IN_COOKIE, SignInClient, cookie_value, set_cookie, sign_in_cookies};
use crate::i18n::Tr;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use holdfast_app::login::{self, NewSession};
use holdfast_app::{AppError, LoginEventRow, NotificationRow, notices, step_up, two_factor};
use holdfast_domain::FieldErrors;
use maud::{Markup, PreEscaped, html};
use std::collections::HashMap;
use std::net::SocketAddr;

/// Where to go once signed in: the page asked for, or Settings when the password an
/// administrator chose must be replaced or a second factor enrolled.
pub fn after_sign_in(session: &NewSession, next: String) -> String {
    if session.user.must_change_password && !session.user.pending {
        "/settings?notice=password_change_required#password".to_owned()
    } else {
        next
    }
}

/// The redirect that finishes a sign-in, with its cookies.
pub fn signed_in_redirect(state: &WebState, session: &NewSession, next: String) -> Response {
    let mut response = Redirect::to(&after_sign_in(session, next)).into_response();
    for cookie in sign_in_cookies(&state.app, session) {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// The redirect to the second step, carrying the half-done sign-in in a short cookie.
pub fn second_step_redirect(state: &WebState, token: &str, next: &str) -> Response {
    let next: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
    let mut response = Redirect::to(&format!("/login/second-factor?next={next}")).into_response();
    let cookie = set_cookie(&state.app, SIGN_IN_COOKIE, token, 300);
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

fn second_factor_form(
    tr: &Tr,
    csrf: &str,
    next: &str,
    token: &str,
    problem: Option<String>,
) -> Markup {
    html! {
        p { (tr.t("signin.second_step_intro")) }
        @if let Some(problem) = problem {
            div.problems role="alert" { p { (problem) } }
        }
        form.stack method="post" action="/login/second-factor" {
            (csrf_field(csrf))
            input type="hidden" name="next" value=(next);
            label {
                (tr.t("signin.code"))
                input name="code" autocomplete="one-time-code" inputmode="numeric" required autofocus;
                small { (tr.t("signin.code_help")) }
            }
            button.primary type="submit" { (tr.t("signin.verify")) }
        }
        div.passkey-only hidden {
            p { (tr.t("signin.or")) }
            button type="button" data-passkey="second-factor" data-sign-in-token=(token) data-next=(next) data-failed=(tr.t("signin.passkey_failed")) {
                (tr.t("signin.use_passkey"))
            }
        }
        p { a href="/login" { (tr.t("signin.start_again")) } }
    }
}

pub async fn second_factor_page(
    visitor: Visitor,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let tr = &visitor.tr;
    let Some(token) = cookie_value(&headers, SIGN_IN_COOKIE).filter(|t| !t.is_empty()) else {
        return redirect("/login", "sign_in_expired");
    };
    let next = super::account::safe_next(query.get("next"));
    let body = second_factor_form(tr, &visitor.csrf, &next, &token, None);
    html(
        public_page(tr, &visitor.csrf, tr.t("signin.second_step_title"), body),
        &visitor.csrf,
        visitor.new_csrf,
    )
}

pub async fn second_factor_post(
    State(state): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    visitor: Visitor,
    headers: HeaderMap,
    form: Form,
) -> Response {
    let tr = &visitor.tr;
    let Some(token) = cookie_value(&headers, SIGN_IN_COOKIE).filter(|t| !t.is_empty()) else {
        return redirect("/login", "sign_in_expired");
    };
    let next = super::account::safe_next(form.0.get("next"));
    let client = SignInClient::of(&state.app, peer, &headers);
    match login::second_factor(
        &state.app,
        &current_op_id(),
        &token,
        form.get("code"),
        client.client(),
    )
    .await
    {
        Ok(session) => signed_in_redirect(&state, &session, next),
        Err(AppError::Unauthenticated { .. }) => redirect("/login", "sign_in_expired"),
        Err(error) => {
            let Some((status, problem)) = form_problem(tr, &error) else {
                return error_page(tr, error);
            };
            let body = second_factor_form(tr, &visitor.csrf, &next, &token, Some(problem));
            html_status(
                status,
                public_page(tr, &visitor.csrf, tr.t("signin.second_step_title"), body),
                &visitor.csrf,
                visitor.new_csrf,
            )
        }
    }
}

/// What a refused sign-in form says above itself: its problems, or how long to wait; `None`
/// for errors that get the error page.
pub(crate) fn form_problem(tr: &Tr, error: &AppError) -> Option<(StatusCode, String)> {
    match error {
        AppError::Invalid(errors) => Some((
            StatusCode::UNPROCESSABLE_ENTITY,
            errors
                .0
                .iter()
                .map(|e| error_message(tr, e.code, &e.message))
                .collect::<Vec<_>>()
                .join(" "),
        )),
        AppError::Throttled {
            retry_after_seconds,
        } => Some((
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "{} {}",
                tr.t("error.too_many_attempts"),
                tr.f("error.retry_after", &[("seconds", retry_after_seconds)])
            ),
        )),
        _ => None,
    }
}

// ---- confirm it's you (step-up) --------------------------------------------------------------

tokio::task_local! {
    /// What the "confirm it's you" form needs when a sensitive action is refused for an old
    /// confirmation: where the user came from and the session's anti-forgery token. Set for
    /// every request by the operation-id middleware.
    pub static PAGE_CONTEXT: PageContext;
}

#[derive(Clone, Debug, Default)]
pub struct PageContext {
    /// A page asked for with GET: itself; a post: the page it was sent from.
    pub back: String,
    pub csrf: Option<String>,
}

impl PageContext {
    pub fn of(
        method: &axum::http::Method,
        uri: &axum::http::Uri,
        headers: &HeaderMap,
    ) -> PageContext {
        let back = if method == axum::http::Method::GET {
            uri.path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_else(|| "/".into())
        } else {
            headers
                .get(header::REFERER)
                .and_then(|v| v.to_str().ok())
                .and_then(|r| r.split_once("://").map(|(_, rest)| rest))
                .and_then(|rest| rest.find('/').map(|i| rest[i..].to_owned()))
                .unwrap_or_else(|| "/".into())
        };
        let csrf = crate::extract::cookie_value(headers, crate::extract::SESSION_COOKIE)
            .map(|session| super::session_csrf(&session));
        PageContext { back, csrf }
    }
}

fn confirm_form(tr: &Tr, csrf: &str, next: &str, problem: Option<String>) -> Markup {
    html! {
        p { (tr.f("signin.confirm_intro", &[("minutes", &step_up::STEP_UP_MINUTES)])) }
        @if let Some(problem) = problem {
            div.problems role="alert" { p { (problem) } }
        }
        form.stack method="post" action="/confirm" {
            (csrf_field(csrf))
            input type="hidden" name="next" value=(next);
            label {
                (tr.t("signin.password_or_code"))
                input type="password" name="password" autocomplete="current-password" required autofocus;
            }
            button.primary type="submit" { (tr.t("signin.confirm")) }
        }
        div.passkey-only hidden {
            p { (tr.t("signin.or")) }
            button type="button" data-passkey="confirm" data-next=(next) data-failed=(tr.t("signin.passkey_failed")) {
                (tr.t("signin.use_passkey"))
            }
        }
    }
}

/// The page a sensitive action shows when the session must confirm who it is first.
pub fn step_up_page(tr: &Tr) -> Response {
    let context = PAGE_CONTEXT.try_with(Clone::clone).unwrap_or_default();
    let next = super::account::safe_next(Some(&context.back));
    let Some(csrf) = context.csrf else {
        return Redirect::to("/login").into_response();
    };
    let body = confirm_form(tr, &csrf, &next, None);
    html_status(
        StatusCode::FORBIDDEN,
        public_page(tr, &csrf, tr.t("signin.confirm_title"), body),
        &csrf,
        false,
    )
}

pub async fn confirm_page(page: Page, Query(query): Query<HashMap<String, String>>) -> Response {
    let tr = &page.tr;
    let next = super::account::safe_next(query.get("next"));
    html(
        public_page(
            tr,
            &page.csrf,
            tr.t("signin.confirm_title"),
            confirm_form(tr, &page.csrf, &next, None),
        ),
        &page.csrf,
        page.new_csrf,
    )
}

pub async fn confirm_post(State(state): State<WebState>, page: Page, form: Form) -> Response {
    let tr = &page.tr;
    let next = super::account::safe_next(form.0.get("next"));
    match step_up::confirm(
        &state.app,
        &page.actor,
        &current_op_id(),
        form.get("password"),
    )
    .await
    {
        Ok(()) => redirect(&next, "confirmed"),
        Err(error) => {
            let Some((status, problem)) = form_problem(tr, &error) else {
                return error_page(tr, error);
            };
            html_status(
                status,
                public_page(
                    tr,
                    &page.csrf,
                    tr.t("signin.confirm_title"),
                    confirm_form(tr, &page.csrf, &next, Some(problem)),
                ),
                &page.csrf,
                page.new_csrf,
            )
        }
    }
}

// ---- Settings: two-step sign-in and history ---------------------------------------------------

/// What the two-step section shows besides the user's factors.
#[derive(Default)]
pub struct TwoFactorNotes<'a> {
    pub errors: Option<&'a FieldErrors>,
    /// Recovery codes just made: shown once.
    pub recovery_codes: Option<&'a [String]>,
}

fn kind_label<'a>(tr: &'a Tr, kind: &str) -> &'a str {
    tr.t(if kind == "passkey" {
        "signin.kind_passkey"
    } else {
        "signin.kind_totp"
    })
}

pub async fn two_factor_section(
    state: &WebState,
    page: &Page,
    notes: &TwoFactorNotes<'_>,
) -> Result<Markup, AppError> {
    let tr = &page.tr;
    let status = two_factor::status(&state.app, &page.actor).await?;
    let pending = two_factor::pending_totp(&state.app, &page.actor).await?;
    let has_totp = status.factors.iter().any(|f| f.kind == "totp");
    Ok(html! {
        section.card id="two-factor" {
            h2 { (tr.t("signin.two_factor")) }
            p {
                @if status.required { strong { (tr.t("signin.required_by_role")) } " " }
                (tr.t("signin.two_factor_help"))
            }
            @if let Some(errors) = notes.errors {
                (super::account::problems(tr, errors))
            }
            @if let Some(codes) = notes.recovery_codes {
                div.notice role="status" id="recovery-codes" {
                    p { strong { (tr.t("signin.recovery_codes_once")) } }
                    ol.codes { @for code in codes { li { code { (code) } } } }
                }
            }
            @if status.factors.is_empty() {
                (empty(tr, "signin.no_factors"))
            } @else {
                table {
                    thead { tr { th { (tr.t("signin.factor")) } th { (tr.t("table.created")) } th { (tr.t("table.last_used")) } th { (tr.t("signin.remove")) } } }
                    tbody {
                        @for factor in &status.factors {
                            tr {
                                td { (kind_label(tr, &factor.kind)) @if factor.kind == "passkey" { " · " (factor.name) } }
                                td { (tr.datetime(factor.created_at)) }
                                td { (factor.last_used_at.map(|t| tr.datetime(t)).unwrap_or_else(|| "—".into())) }
                                td {
                                    form.inline method="post" action=(format!("/settings/two-factor/{}/remove", factor.id)) {
                                        (csrf_field(&page.csrf))
                                        label { span.sr { (tr.t("form.password")) } input type="password" name="password" placeholder=(tr.t("form.password")) required autocomplete="current-password"; }
                                        label { span.sr { (tr.t("signin.code")) } input name="code" placeholder=(tr.t("signin.code")) autocomplete="one-time-code"; }
                                        button.danger type="submit" { (tr.t("signin.remove")) }
                                    }
                                }
                            }
                        }
                    }
                }
                p { (tr.f("signin.recovery_left", &[("count", &status.recovery_codes_left)])) }
                form.inline method="post" action="/settings/two-factor/recovery-codes" {
                    (csrf_field(&page.csrf))
                    label { (tr.t("form.password")) input type="password" name="password" required autocomplete="current-password"; }
                    button type="submit" { (tr.t("signin.new_recovery_codes")) }
                }
            }
            @if let Some(enrolment) = &pending {
                div.enrol id="enrol" {
                    h3 { (tr.t("signin.add_app")) }
                    p { (tr.t("signin.scan")) }
                    div.qr role="img" aria-label=(tr.t("signin.qr_label")) { (PreEscaped(&enrolment.qr_svg)) }
                    p { (tr.t("signin.or_type")) " " code.secret id="totp-secret" { (grouped(&enrolment.secret)) } }
                    form.inline method="post" action="/settings/two-factor/totp/confirm" {
                        (csrf_field(&page.csrf))
                        input type="hidden" name="factor_id" value=(enrolment.factor_id);
                        label { (tr.t("signin.code")) input name="code" autocomplete="one-time-code" inputmode="numeric" required; }
                        button.primary type="submit" { (tr.t("signin.turn_on")) }
                    }
                }
            } @else {
                form.inline method="post" action="/settings/two-factor/totp" {
                    (csrf_field(&page.csrf))
                    button type="submit" { (tr.t(if has_totp { "signin.replace_app" } else { "signin.add_app" })) }
                }
            }
            div.passkey-only hidden {
                h3 { (tr.t("signin.add_passkey")) }
                div.inline {
                    label { (tr.t("signin.passkey_name")) input name="passkey_name" id="passkey-name" maxlength="100" placeholder=(tr.t("signin.passkey_name_example")); }
                    button type="button" data-passkey="register" data-failed=(tr.t("signin.passkey_failed")) { (tr.t("signin.add_passkey")) }
                }
            }
        }
    })
}

/// A key to type in groups of four, as authenticator apps show them (spaces are ignored).
fn grouped(secret: &str) -> String {
    secret
        .as_bytes()
        .chunks(4)
        .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn history_section(tr: &Tr, events: &[LoginEventRow]) -> Markup {
    html! {
        section.card id="sign-ins" {
            h2 { (tr.t("signin.history")) }
            @if events.is_empty() { (empty(tr, "signin.no_history")) } @else {
                table {
                    thead { tr { th { (tr.t("signin.when")) } th { (tr.t("table.address")) } th { (tr.t("signin.browser")) } th { (tr.t("signin.method")) } th { (tr.t("signin.outcome")) } } }
                    tbody {
                        @for event in events {
                            tr.failed[event.outcome != "success"] {
                                td { (tr.datetime(event.at)) }
                                td { (event.address.as_deref().unwrap_or("—")) }
                                td { (browser_name(event.user_agent.as_deref())) }
                                td { (tr.or(&format!("signin.method_{}", event.method.replace('+', "_")), &event.method)) }
                                td {
                                    (tr.or(&format!("signin.outcome_{}", event.outcome), &event.outcome))
                                    @if event.new_device { " · " strong { (tr.t("signin.new_device")) } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A browser's name and system from its user agent, for people rather than parsers.
pub fn browser_name(user_agent: Option<&str>) -> String {
    let Some(ua) = user_agent else {
        return "—".into();
    };
    let browser = [
        ("Edg/", "Edge"),
        ("Firefox/", "Firefox"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
    ]
    .iter()
    .find(|(needle, _)| ua.contains(needle))
    .map(|(_, name)| *name);
    let system = [
        ("Windows", "Windows"),
        ("Android", "Android"),
        ("iPhone", "iPhone"),
        ("Mac OS", "macOS"),
        ("Linux", "Linux"),
    ]
    .iter()
    .find(|(needle, _)| ua.contains(needle))
    .map(|(_, name)| *name);
    match (browser, system) {
        (Some(b), Some(s)) => format!("{b} · {s}"),
        (Some(b), None) => b.to_owned(),
        _ => ua.chars().take(40).collect(),
    }
}

/// What a two-step form on Settings did: new recovery codes to show once, a notice, or the
/// page again with the problem beside the section.
enum Done {
    Codes(Vec<String>),
    Notice(&'static str),
}

async fn two_factor_outcome(
    state: &WebState,
    page: &Page,
    result: Result<Done, AppError>,
) -> Response {
    let (errors, status) = match result {
        Ok(Done::Notice(notice)) => return redirect("/settings#two-factor", notice),
        Ok(Done::Codes(codes)) => {
            let notes = TwoFactorNotes {
                recovery_codes: Some(&codes),
                ..Default::default()
            };
            return settings_with(state, page, notes, StatusCode::OK).await;
        }
        Err(AppError::Invalid(errors)) => (errors, StatusCode::UNPROCESSABLE_ENTITY),
        Err(AppError::Conflict { code, message, .. }) => (
            FieldErrors::single("code", code, message),
            StatusCode::CONFLICT,
        ),
        Err(error) => return error_page(&page.tr, error),
    };
    let notes = TwoFactorNotes {
        errors: Some(&errors),
        ..Default::default()
    };
    settings_with(state, page, notes, status).await
}

async fn settings_with(
    state: &WebState,
    page: &Page,
    notes: TwoFactorNotes<'_>,
    status: StatusCode,
) -> Response {
    let notes = super::account::SettingsNotes {
        two_factor: notes,
        ..Default::default()
    };
    super::account::render_settings_with(state, page, &notes, status).await
}

pub async fn totp_start_post(State(state): State<WebState>, page: Page, _form: Form) -> Response {
    match two_factor::start_totp(&state.app, &page.actor, &current_op_id()).await {
        Ok(_) => Redirect::to("/settings#enrol").into_response(),
        Err(error) => error_page(&page.tr, error),
    }
}

pub async fn totp_confirm_post(State(state): State<WebState>, page: Page, form: Form) -> Response {
    let factor_id = form.get("factor_id").trim().parse::<i64>().unwrap_or(0);
    let result = two_factor::confirm_totp(
        &state.app,
        &page.actor,
        &current_op_id(),
        factor_id,
        form.get("code"),
    )
    .await
    .map(|codes| codes.map_or(Done::Notice("two_factor_on"), Done::Codes));
    two_factor_outcome(&state, &page, result).await
}

pub async fn recovery_codes_post(
    State(state): State<WebState>,
    page: Page,
    form: Form,
) -> Response {
    let result = two_factor::regenerate_recovery_codes(
        &state.app,
        &page.actor,
        &current_op_id(),
        form.get("password"),
    )
    .await
    .map(Done::Codes);
    two_factor_outcome(&state, &page, result).await
}

pub async fn factor_remove_post(
    State(state): State<WebState>,
    page: Page,
    Path(id): Path<String>,
    form: Form,
) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return error_page(&page.tr, AppError::not_found(format!("second factor {id}")));
    };
    let result = two_factor::remove_factor(
        &state.app,
        &page.actor,
        &current_op_id(),
        Some(id),
        form.get("password"),
        form.get("code"),
    )
    .await
    .map(|()| Done::Notice("two_factor_removed"));
    two_factor_outcome(&state, &page, result).await
}

// ---- security notices on the home page ---------------------------------------------------------

fn notice_text(tr: &Tr, notice: &NotificationRow) -> String {
    let kind = notice.kind.trim_start_matches("security.");
    let detail = &notice.detail;
    let text = |key: &str| detail[key].as_str().unwrap_or("—").to_owned();
    tr.f(
        &format!("signin.notice_{kind}"),
        &[
            ("address", &text("address")),
            ("browser", &browser_name(detail["user_agent"].as_str())),
            ("name", &text("name")),
            ("by", &text("by")),
            ("username", &text("username")),
            ("left", &detail["left"].as_i64().unwrap_or(0)),
            ("amount", &detail["amount"].as_i64().unwrap_or(0)),
            ("threshold", &detail["threshold"].as_i64().unwrap_or(0)),
            (
                "kind",
                &tr.or(&format!("incident.guard_{}", text("kind")), &text("kind"))
                    .to_owned(),
            ),
        ],
    )
}

/// The user's unanswered security notices, each with "this was me" and "this wasn't me".
pub async fn notices_card(state: &WebState, page: &Page) -> Result<Markup, AppError> {
    let tr = &page.tr;
    let found = notices::mine(&state.app, &page.actor).await?;
    Ok(html! {
        @if !found.is_empty() {
            section.card.alert id="security-notices" {
                h2 { (tr.t("signin.notices")) }
                ul.notices {
                    @for notice in &found {
                        li {
                            span.when { (tr.datetime(notice.at)) } " "
                            (notice_text(tr, notice))
                            form.inline method="post" action=(format!("/notices/{}/ack", notice.id)) {
                                (csrf_field(&page.csrf))
                                button type="submit" { (tr.t(if notices::is_report(notice) { "signin.noted" } else { "signin.was_me" })) }
                            }
                            @if !notices::is_report(notice) {
                                form.inline method="post" action=(format!("/notices/{}/not-me", notice.id)) {
                                    (csrf_field(&page.csrf))
                                    button.danger type="submit" { (tr.t("signin.not_me")) }
                                }
                            }
                        }
                    }
                }
            }
        }
    })
}

pub async fn notice_ack_post(
    State(state): State<WebState>,
    page: Page,
    Path(id): Path<String>,
    _form: Form,
) -> PageResult {
    let id = id.parse::<i64>().unwrap_or(0);
    super::OrPage::or_page(
        notices::acknowledge(&state.app, &page.actor, id).await,
        &page.tr,
    )?;
    Ok(redirect("/", "notice_put_away"))
}

pub async fn not_me_post(
    State(state): State<WebState>,
    page: Page,
    Path(id): Path<String>,
    _form: Form,
) -> PageResult {
    let id = id.parse::<i64>().ok();
    super::OrPage::or_page(
        notices::disown(&state.app, &page.actor, &current_op_id(), id).await,
        &page.tr,
    )?;
    Ok(redirect("/settings#password", "not_me_done"))
}
