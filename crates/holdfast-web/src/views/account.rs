//! Login, first-run setup, the language switch, logout, and the user's own settings.

use super::layout::{csrf_field, language_name, public_page};
use super::{Form, Page, Visitor, error_message, error_page, html, html_status, redirect};
use crate::WebState;
use crate::error::current_op_id;
use crate::extract::session_set_cookie;
use crate::i18n::{Locale, Tr};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use holdfast_app::login::{self, LoginStep};
use holdfast_app::{AppError, auth, users};
use holdfast_domain::FieldErrors;
use maud::{Markup, html};
use std::collections::HashMap;
use std::net::SocketAddr;

/// Only same-site paths are followed after login, so a crafted link cannot send a user away.
/// Browsers drop tabs and newlines from URLs and read `\` as `/`, so `/\t/evil.cn` or `/\evil.cn`
/// would become `//evil.cn`, another site: a path with any control character, white space or
/// backslash is refused, as is one whose second character (even encoded) is a slash.
pub(crate) fn safe_next(next: Option<&String>) -> String {
    let Some(next) = next else {
        return "/".into();
    };
    let lower = next.to_ascii_lowercase();
    let same_site = next.starts_with('/')
        && !next.starts_with("//")
        && !lower.starts_with("/%2f")
        && !lower.starts_with("/%5c")
        && !next
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '\\');
    if same_site { next.clone() } else { "/".into() }
}

/// Problems shown above a form that is not about particular fields.
pub(crate) fn problems(tr: &Tr, errors: &FieldErrors) -> Markup {
    html! {
        @if !errors.is_empty() {
            div.problems role="alert" {
                ul {
                    @for e in &errors.0 {
                        li { (field_label(tr, &e.field)) ": " (error_message(tr, e.code, &e.message)) }
                    }
                }
            }
        }
    }
}

fn field_label<'a>(tr: &Tr, field: &'a str) -> &'a str {
    tr.or(&format!("form.{field}"), field)
}

fn login_form(tr: &Tr, csrf: &str, next: &str, username: &str, problem: Option<String>) -> Markup {
    html! {
        @if let Some(problem) = problem {
            div.problems role="alert" { p { (problem) } }
        }
        form.stack method="post" action="/login" {
            (csrf_field(csrf))
            input type="hidden" name="next" value=(next);
            label { (tr.t("form.username")) input name="username" id="login-username" value=(username) autocomplete="username webauthn" required autofocus; }
            label { (tr.t("form.password")) input type="password" name="password" autocomplete="current-password" required; }
            label.check { input type="checkbox" name="remember" value="yes" id="login-remember"; " " (tr.t("login.remember")) }
            button.primary type="submit" { (tr.t("login.submit")) }
        }
        div.passkey-only hidden {
            p { (tr.t("signin.or")) }
            button type="button" data-passkey="login" data-next=(next) data-failed=(tr.t("signin.passkey_failed")) data-need-name=(tr.t("signin.passkey_need_name")) {
                (tr.t("signin.sign_in_with_passkey"))
            }
        }
    }
}

pub async fn login_page(
    State(state): State<WebState>,
    visitor: Visitor,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let tr = &visitor.tr;
    let needs_setup = auth::setup_needed(&state.app).await.unwrap_or(false);
    let body = html! {
        @if let Some(notice) = &visitor.notice {
            p.notice role="status" { (notice) }
        }
        @if needs_setup {
            p.notice { (tr.t("login.no_users")) " " a href="/setup" { (tr.t("login.go_setup")) } }
        }
        (login_form(tr, &visitor.csrf, &safe_next(query.get("next")), "", None))
    };
    html(
        public_page(tr, &visitor.csrf, tr.t("login.title"), body),
        &visitor.csrf,
        visitor.new_csrf,
    )
}

pub async fn login_post(
    State(state): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    visitor: Visitor,
    headers: HeaderMap,
    form: Form,
) -> Response {
    let tr = &visitor.tr;
    let client = crate::extract::SignInClient::of(&state.app, peer, &headers);
    let attempt = login::LoginAttempt {
        username: form.get("username"),
        password: form.get("password"),
        client: client.client(),
        remember: form.get("remember") == "yes",
    };
    let next = safe_next(form.0.get("next"));
    match login::login(&state.app, &current_op_id(), attempt).await {
        Ok(LoginStep::Session(session)) => {
            super::signin::signed_in_redirect(&state, &session, next)
        }
        Ok(LoginStep::SecondFactor(pending)) => {
            super::signin::second_step_redirect(&state, &pending.token, &next)
        }
        Err(error) => {
            let (status, problem) = match &error {
                AppError::Unauthenticated { code, message } => {
                    (StatusCode::UNAUTHORIZED, error_message(tr, code, message))
                }
                _ => match super::signin::form_problem(tr, &error) {
                    Some(problem) => problem,
                    None => return error_page(tr, error),
                },
            };
            let body = login_form(
                tr,
                &visitor.csrf,
                &next,
                form.get("username"),
                Some(problem),
            );
            html_status(
                status,
                public_page(tr, &visitor.csrf, tr.t("login.title"), body),
                &visitor.csrf,
                visitor.new_csrf,
            )
        }
    }
}

fn setup_form(tr: &Tr, csrf: &str, form: Option<&Form>, errors: &FieldErrors) -> Markup {
    let value = |key: &str| form.map(|f| f.get(key).to_owned()).unwrap_or_default();
    html! {
        p { (tr.t("setup.intro")) }
        (problems(tr, errors))
        form.stack method="post" action="/setup" {
            (csrf_field(csrf))
            label { (tr.t("form.setup_token")) input name="token" value=(value("token")) required autocomplete="off"; small { (tr.t("setup.token_help")) } }
            label { (tr.t("form.username")) input name="username" value=(value("username")) required autocomplete="username"; }
            label { (tr.t("form.display_name")) input name="display_name" value=(value("display_name")) required; }
            label { (tr.t("form.password")) input type="password" name="password" required autocomplete="new-password"; small { (tr.t("form.password_help")) } }
            button.primary type="submit" { (tr.t("setup.submit")) }
        }
    }
}

pub async fn setup_page(State(state): State<WebState>, visitor: Visitor) -> Response {
    let tr = &visitor.tr;
    match auth::setup_needed(&state.app).await {
        Ok(true) => html(
            public_page(
                tr,
                &visitor.csrf,
                tr.t("setup.title"),
                setup_form(tr, &visitor.csrf, None, &FieldErrors::default()),
            ),
            &visitor.csrf,
            visitor.new_csrf,
        ),
        Ok(false) => Redirect::to("/login").into_response(),
        Err(error) => error_page(tr, error),
    }
}

pub async fn setup_post(State(state): State<WebState>, visitor: Visitor, form: Form) -> Response {
    let tr = &visitor.tr;
    let result = auth::complete_setup(
        &state.app,
        &current_op_id(),
        form.get("token"),
        form.get("username"),
        form.get("display_name"),
        form.get("password"),
    )
    .await;
    let errors = match result {
        Ok(_) => return redirect("/login", "setup_done"),
        Err(AppError::Invalid(errors)) => errors,
        Err(AppError::Forbidden(denial)) => {
            FieldErrors::single("setup_token", denial.code, denial.message)
        }
        Err(error) => return error_page(tr, error),
    };
    html_status(
        StatusCode::UNPROCESSABLE_ENTITY,
        public_page(
            tr,
            &visitor.csrf,
            tr.t("setup.title"),
            setup_form(tr, &visitor.csrf, Some(&form), &errors),
        ),
        &visitor.csrf,
        visitor.new_csrf,
    )
}

/// The language switch: for a logged-in user it is saved with their account, for a visitor in
/// a cookie; either way the browser goes back where it was.
pub async fn language_post(
    State(state): State<WebState>,
    headers: HeaderMap,
    form: Form,
) -> Response {
    let locale = Locale::from_tag(form.get("locale"));
    let back = headers
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.split_once("://").map(|(_, rest)| rest))
        .and_then(|rest| rest.find('/').map(|i| rest[i..].to_owned()))
        .unwrap_or_else(|| "/".into());
    let back = safe_next(Some(&back));
    if let Some(token) = super::cookie(&headers, crate::extract::SESSION_COOKIE)
        && let Ok((actor, _)) = auth::session_user(&state.app, &token).await
    {
        let tag = locale.map(Locale::tag);
        if let Err(error) = users::set_my_locale(&state.app, &actor, &current_op_id(), tag).await {
            let tr = Tr::new(Locale::En, 0);
            return error_page(&tr, error);
        }
    }
    let mut response = Redirect::to(&back).into_response();
    if let Some(locale) = locale
        && let Ok(value) = HeaderValue::from_str(&format!(
            "{}={}; Path=/; SameSite=Lax; Max-Age=31536000",
            super::LANG_COOKIE,
            locale.tag()
        ))
    {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

pub async fn logout_post(State(state): State<WebState>, page: Page, _form: Form) -> Response {
    if let Err(error) = auth::logout(&state.app, &page.actor, &current_op_id()).await {
        return error_page(&page.tr, error);
    }
    let mut response = redirect("/login", "logged_out");
    if let Ok(value) = HeaderValue::from_str(&session_set_cookie(&state.app, None)) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// What the settings page shows besides the user's settings: problems with the last form,
/// secrets shown once.
#[derive(Default)]
pub struct SettingsNotes<'a> {
    pub password_errors: FieldErrors,
    pub new_token: Option<&'a str>,
    pub two_factor: super::signin::TwoFactorNotes<'a>,
}

async fn settings_body(
    state: &WebState,
    page: &Page,
    notes: &SettingsNotes<'_>,
) -> Result<Markup, AppError> {
    let password_errors = &notes.password_errors;
    let new_token = notes.new_token;
    let tr = &page.tr;
    let tokens = auth::my_tokens(&state.app, &page.actor).await?;
    let sessions = auth::my_sessions(&state.app, &page.actor).await?;
    let two_factor = super::signin::two_factor_section(state, page, &notes.two_factor).await?;
    let history = login::my_history(&state.app, &page.actor).await?;
    Ok(html! {
        section.card {
            h2 { (tr.t("settings.language")) }
            form.inline method="post" action="/language" {
                (csrf_field(&page.csrf))
                label {
                    span.sr { (tr.t("settings.language")) }
                    select name="locale" {
                        @for locale in Locale::ALL {
                            option value=(locale.tag()) selected[page.user.locale.as_deref() == Some(locale.tag())] { (language_name(locale)) }
                        }
                    }
                }
                button type="submit" { (tr.t("action.save")) }
            }
        }
        p.hint { a href="/security-basics" { (tr.t("awareness.basics_link")) } }
        section.card id="password" {
            h2 { (tr.t("settings.password")) }
            p { (tr.t("settings.password_note")) }
            (problems(tr, password_errors))
            form.stack method="post" action="/settings/password" {
                (csrf_field(&page.csrf))
                label { (tr.t("form.current_password")) input type="password" name="current_password" required autocomplete="current-password"; }
                label { (tr.t("form.new_password")) input type="password" name="new_password" required autocomplete="new-password"; small { (tr.t("form.password_help")) } }
                button type="submit" { (tr.t("settings.change_password")) }
            }
        }
        (two_factor)
        section.card {
            h2 { (tr.t("settings.tokens")) }
            p { (tr.t("settings.tokens_help")) }
            @if let Some(secret) = new_token {
                div.notice role="status" {
                    p { (tr.t("settings.token_shown_once")) }
                    code.secret { (secret) }
                }
            }
            @if tokens.is_empty() { (super::layout::empty(tr, "settings.no_tokens")) } @else {
                table {
                    thead { tr { th { (tr.t("form.token_name")) } th { (tr.t("table.created")) } th { (tr.t("table.last_used")) } th { (tr.t("table.state")) } th {} } }
                    tbody {
                        @for token in &tokens {
                            tr {
                                td {
                                    (token.name)
                                    @if let Some(modules) = &token.modules {
                                        " · " (modules.iter().map(|m| tr.or(&format!("module.{m}"), m).to_owned()).collect::<Vec<_>>().join(", "))
                                    }
                                }
                                td { (tr.datetime(token.created_at)) }
                                td { (token.last_used_at.map(|t| tr.datetime(t)).unwrap_or_else(|| "—".into())) }
                                td { @if token.revoked_at.is_some() { (tr.t("state.revoked")) } @else { (tr.t("state.active")) } }
                                td {
                                    @if token.revoked_at.is_none() {
                                        form method="post" action=(format!("/settings/tokens/{}/revoke", token.id)) {
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
            form.inline method="post" action="/settings/tokens" {
                (csrf_field(&page.csrf))
                label { (tr.t("form.token_name")) input name="name" required maxlength="100"; }
                label { (tr.t("settings.token_days")) input name="expires_in_days" type="number" min="1" max="365" value="90"; }
                label { input type="checkbox" name="read_only" value="yes"; " " (tr.t("settings.token_read_only")) }
                @if state.app.config.tokens_may_never_expire {
                    label { input type="checkbox" name="never_expires" value="yes"; " " (tr.t("settings.token_never_expires")) }
                }
                fieldset.modules {
                    legend { (tr.t("settings.token_modules")) }
                    @for module in holdfast_domain::Module::ALL {
                        @if page.actor.access.role(&page.user.role).is_some_and(|r| r.rights.iter().any(|(m, _)| *m == module)) {
                            label { input type="checkbox" name=(format!("module_{}", module.key())) value="yes"; " " (tr.t(&format!("module.{}", module.key()))) }
                        }
                    }
                }
                label { (tr.t("settings.token_password")) input type="password" name="password" required autocomplete="current-password"; }
                button type="submit" { (tr.t("settings.create_token")) }
            }
        }
        section.card {
            h2 { (tr.t("settings.sessions")) }
            table {
                thead { tr { th { (tr.t("table.started")) } th { (tr.t("table.last_seen")) } th { (tr.t("table.address")) } } }
                tbody {
                    @for session in sessions.iter().filter(|s| s.revoked_at.is_none()) {
                        tr { td { (tr.datetime(session.created_at)) } td { (tr.datetime(session.last_seen_at)) } td { (session.address.as_deref().unwrap_or("—")) } }
                    }
                }
            }
        }
        (super::signin::history_section(tr, &history))
    })
}

pub async fn settings_page(State(state): State<WebState>, page: Page) -> Response {
    render_settings_with(&state, &page, &SettingsNotes::default(), StatusCode::OK).await
}

pub(crate) async fn render_settings_with(
    state: &WebState,
    page: &Page,
    notes: &SettingsNotes<'_>,
    status: StatusCode,
) -> Response {
    match settings_body(state, page, notes).await {
        Ok(body) => html_status(
            status,
            super::layout::frame(page, page.tr.t("settings.title"), "settings", body),
            &page.csrf,
            page.new_csrf,
        ),
        Err(error) => error_page(&page.tr, error),
    }
}

/// The settings page again, with what was wrong with the last form.
async fn settings_refused(state: &WebState, page: &Page, errors: &FieldErrors) -> Response {
    let notes = SettingsNotes {
        password_errors: errors.clone(),
        ..Default::default()
    };
    render_settings_with(state, page, &notes, StatusCode::UNPROCESSABLE_ENTITY).await
}

pub async fn password_post(State(state): State<WebState>, page: Page, form: Form) -> Response {
    let result = auth::change_password(
        &state.app,
        &page.actor,
        &current_op_id(),
        form.get("current_password"),
        form.get("new_password"),
    )
    .await;
    match result {
        Ok(_) => redirect("/settings", "password_changed"),
        Err(AppError::Invalid(errors)) => settings_refused(&state, &page, &errors).await,
        Err(AppError::Unauthenticated { code, message }) => {
            let errors = FieldErrors::single("current_password", code, message);
            settings_refused(&state, &page, &errors).await
        }
        Err(error) => error_page(&page.tr, error),
    }
}

pub async fn token_create_post(State(state): State<WebState>, page: Page, form: Form) -> Response {
    let request = auth::TokenRequest {
        name: form.get("name"),
        expires_in_days: form.get("expires_in_days").trim().parse().ok(),
        read_only: form.get("read_only") == "yes",
        password: form.get("password"),
        // Ticked modules limit the token; none ticked: all of the user's rights.
        modules: {
            let ticked: Vec<String> = holdfast_domain::Module::ALL
                .iter()
                .filter(|m| form.get(&format!("module_{}", m.key())) == "yes")
                .map(|m| m.key().to_owned())
                .collect();
            (!ticked.is_empty()).then_some(ticked)
        },
        never_expires: form.get("never_expires") == "yes",
    };
    match auth::create_token(&state.app, &page.actor, &current_op_id(), request).await {
        Ok(token) => {
            let notes = SettingsNotes {
                new_token: Some(&token.secret),
                ..Default::default()
            };
            render_settings_with(&state, &page, &notes, StatusCode::OK).await
        }
        Err(AppError::Invalid(errors)) => settings_refused(&state, &page, &errors).await,
        Err(error) => error_page(&page.tr, error),
    }
}

pub async fn token_revoke_post(
    State(state): State<WebState>,
    page: Page,
    Path(id): Path<String>,
    _form: Form,
) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return error_page(&page.tr, AppError::not_found(format!("token {id}")));
    };
    match auth::revoke_token(&state.app, &page.actor, &current_op_id(), id).await {
        Ok(_) => redirect("/settings", "token_revoked"),
        Err(error) => error_page(&page.tr, error),
    }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_same_site_paths_are_followed_after_login() {
        for away in [
            "//evil.cn",
            "/\\evil.cn",
            "/\t/evil.cn",
            "/\n/evil.cn",
            "/\r//evil.cn",
            "/%2F/evil.cn",
            "/%2f%2fevil.cn",
            "/%5C/evil.cn",
            "https:evil.cn",
            "https://evil.cn",
            "javascript:alert(1)",
            "evil.cn",
            "/ /evil.cn",
            "/\u{0}/evil.cn",
        ] {
            assert_eq!(safe_next(Some(&away.to_owned())), "/", "{away:?}");
        }
        for home in ["/", "/contacts?q=%E5%BC%A0", "/deals/12/history"] {
            assert_eq!(safe_next(Some(&home.to_owned())), home);
        }
    }
}
