//! The web pages: server-rendered HTML in the user's language, built on the same use cases as
//! the JSON API (no second code path to the data).
//!
//! Every page handler takes a [`Page`] (a logged-in user; anonymous visitors are sent to the
//! login page) or, for the few public pages, a [`Visitor`]. Every form post carries the
//! cross-site request forgery token of [`csrf`], checked by [`Form`] before the handler runs.
//! After a successful post the handler redirects (post/redirect/get) with a notice key that the
//! next page shows; a refused post renders its form again with the problems beside the fields.
//!
//! Layout: [`layout`] is the page frame and shared widgets, [`account`] login, setup and the
//! user's own settings, [`home`] the day's overview, [`records`] lists, detail pages, forms and
//! history, [`board`] the deal pipeline, [`bin`] the recycle bin, [`admin`] user management.

// Helpers return the finished error page as their `Err`, and handlers return it at once; a
// boxed response would only add an allocation on the error path.
#![allow(clippy::result_large_err)]

pub mod access;
pub mod account;
pub mod admin;
pub mod admin_access;
pub mod admin_roles;
pub mod admin_signin;
pub mod backups;
pub mod bin;
pub mod board;
pub mod home;
pub mod incident;
pub mod incident_plan;
pub mod layout;
pub mod records;
pub mod security;
pub mod signin;

use crate::WebState;
use crate::error::current_op_id;
use crate::i18n::{Locale, Tr};
use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{MethodRouter, get, post};
use holdfast_app::{AppError, UserRow, auth};
use holdfast_domain::Actor;
use maud::Markup;
use std::collections::HashMap;

/// Cookie holding the anti-forgery token every form echoes (double-submit).
pub const CSRF_COOKIE: &str = "holdfast_csrf";
/// Cookie remembering the language a visitor picked before logging in.
pub const LANG_COOKIE: &str = "holdfast_lang";

/// Stable error codes the pages translate (`error.<code>` in the translation files). A code
/// missing here still shows the use case's English message, never nothing.
pub const ERROR_CODES: &[&str] = &[
    "required",
    "alerts_off",
    "policy_changed",
    "too_long",
    "too_short",
    "too_small",
    "too_many",
    "wrong_type",
    "unknown_field",
    "read_only",
    "invalid_email",
    "invalid_phone",
    "invalid_currency",
    "invalid_date",
    "invalid_time",
    "invalid_id",
    "invalid_choice",
    "invalid_characters",
    "invalid_tag",
    "invalid_number",
    "invalid_username",
    "invalid_name",
    "invalid_label",
    "invalid_search",
    "invalid_cursor",
    "invalid_stages",
    "invalid_credentials",
    "wrong_password",
    "common_password",
    "digits_only",
    "contains_name",
    "archived",
    "typo",
    "not_allowed",
    "out_of_range",
    "version_conflict",
    "restore_with_root",
    "restore_version",
    "not_deleted",
    "last_admin",
    "setup_closed",
    "admin_only",
    "too_many_attempts",
    "not_found",
    "in_recycle_bin",
    "forgery",
    "internal_error",
    "backups_off",
    "backup_running",
    "backup_file_gone",
    "no_right",
    "out_of_scope",
    "module_off",
    "account_pending",
    "password_change_required",
    "account_deactivated",
    "no_account",
    "field_hidden",
    "dependents_out_of_scope",
    "built_in_role",
    "role_in_use",
    "already_decided",
    "cycle",
    "invalid_key",
    "in_the_past",
    "invalid_record",
    "database_corrupt",
    "disk_full",
    "revert_incomplete",
    "not_grantable",
    "own_request",
    "wrong_code",
    "second_factor_required",
    "step_up_required",
    "sign_in_expired",
    "no_passkey",
    "passkey_refused",
    "passkey_expired",
    "passkeys_unavailable",
    "no_second_factor",
    "unknown_role",
    "not_a_session",
    "lockdown",
    "account_frozen",
    "token_frozen",
    "cannot_freeze_self",
    "guard_tripped",
];

/// How a page route is reached, for the test that every page checks who is asking.
#[derive(Debug, Clone, Copy)]
pub struct PageDoc {
    pub path: &'static str,
    pub methods: &'static [&'static str],
    /// Reachable without logging in (login, setup, the stylesheet and script).
    pub public: bool,
    /// Administrators only.
    pub admin: bool,
}

/// Every page route with its description.
pub fn pages() -> (Router<WebState>, Vec<PageDoc>) {
    let mut router = Router::new();
    let mut docs = Vec::new();
    let mut add = |path: &'static str,
                   route: MethodRouter<WebState>,
                   methods: &'static [&'static str],
                   public: bool,
                   admin: bool| {
        router = std::mem::take(&mut router).route(path, route);
        docs.push(PageDoc {
            path,
            methods,
            public,
            admin,
        });
    };
    const G: &[&str] = &["GET"];
    const P: &[&str] = &["POST"];
    const GP: &[&str] = &["GET", "POST"];
    add("/assets/app.css", get(layout::stylesheet), G, true, false);
    add("/assets/app.js", get(layout::script), G, true, false);
    add(
        "/login",
        get(account::login_page).post(account::login_post),
        GP,
        true,
        false,
    );
    add(
        "/setup",
        get(account::setup_page).post(account::setup_post),
        GP,
        true,
        false,
    );
    add(
        "/login/second-factor",
        get(signin::second_factor_page).post(signin::second_factor_post),
        GP,
        true,
        false,
    );
    add("/language", post(account::language_post), P, true, false);
    add(
        "/confirm",
        get(signin::confirm_page).post(signin::confirm_post),
        GP,
        false,
        false,
    );
    add(
        "/settings/two-factor/totp",
        post(signin::totp_start_post),
        P,
        false,
        false,
    );
    add(
        "/settings/two-factor/totp/confirm",
        post(signin::totp_confirm_post),
        P,
        false,
        false,
    );
    add(
        "/settings/two-factor/recovery-codes",
        post(signin::recovery_codes_post),
        P,
        false,
        false,
    );
    add(
        "/settings/two-factor/{id}/remove",
        post(signin::factor_remove_post),
        P,
        false,
        false,
    );
    add(
        "/notices/{id}/ack",
        post(signin::notice_ack_post),
        P,
        false,
        false,
    );
    add(
        "/notices/{id}/not-me",
        post(signin::not_me_post),
        P,
        false,
        false,
    );
    add("/logout", post(account::logout_post), P, false, false);
    add("/", get(home::home), G, false, false);
    add("/settings", get(account::settings_page), G, false, false);
    add("/policy", get(incident_plan::policy_page), G, false, false);
    add("/policy", post(incident_plan::policy_post), P, false, false);
    add(
        "/admin/incident/policy",
        post(incident_plan::policy_set_post),
        P,
        false,
        true,
    );
    add(
        "/security-basics",
        get(incident_plan::basics_page),
        G,
        false,
        false,
    );
    add(
        "/settings/password",
        post(account::password_post),
        P,
        false,
        false,
    );
    add(
        "/settings/tokens",
        post(account::token_create_post),
        P,
        false,
        false,
    );
    add(
        "/settings/tokens/{id}/revoke",
        post(account::token_revoke_post),
        P,
        false,
        false,
    );
    add("/access", get(access::access_page), G, false, false);
    add(
        "/access/request",
        get(access::request_page),
        G,
        false,
        false,
    );
    add(
        "/access/requests",
        post(access::request_post),
        P,
        false,
        false,
    );
    add(
        "/access/requests/{id}/{decision}",
        post(access::decide_post),
        P,
        false,
        false,
    );
    add(
        "/access/notifications/read",
        post(access::notifications_read_post),
        P,
        false,
        false,
    );
    add("/board", get(board::board), G, false, false);
    add("/board/{id}/move", post(board::move_post), P, false, false);
    add("/recycle-bin", get(bin::bin_page), G, false, false);
    add(
        "/recycle-bin/{collection}/{id}/restore",
        post(bin::restore_post),
        P,
        false,
        false,
    );
    add(
        "/admin/access",
        get(admin_access::access_admin_page),
        G,
        false,
        true,
    );
    add(
        "/admin/access/explain",
        get(admin_access::explain_page),
        G,
        false,
        true,
    );
    add(
        "/admin/access/teams",
        get(admin_roles::teams_page).post(admin_roles::team_create_post),
        GP,
        false,
        true,
    );
    add(
        "/admin/access/teams/{id}",
        post(admin_roles::team_update_post),
        P,
        false,
        true,
    );
    add(
        "/admin/access/teams/{id}/delete",
        post(admin_roles::team_delete_post),
        P,
        false,
        true,
    );
    add(
        "/admin/access/roles",
        get(admin_roles::roles_page),
        G,
        false,
        true,
    );
    add(
        "/admin/access/roles/{key}",
        get(admin_roles::role_page).post(admin_roles::role_post),
        GP,
        false,
        true,
    );
    add(
        "/admin/access/roles/{key}/delete",
        post(admin_roles::role_delete_post),
        P,
        false,
        true,
    );
    add(
        "/admin/access/reviews/{id}",
        post(admin_access::review_post),
        P,
        false,
        true,
    );
    add(
        "/admin/access/modules/{module}",
        post(admin_access::module_post),
        P,
        false,
        true,
    );
    add("/admin/sign-in", get(admin_signin::page), G, false, true);
    add(
        "/admin/timeline",
        get(incident::timeline_page),
        G,
        false,
        true,
    );
    add(
        "/admin/revert",
        get(incident::revert_page).post(incident::revert_post),
        GP,
        false,
        true,
    );
    add(
        "/admin/guards/{id}/release",
        post(incident::guard_release_post),
        P,
        false,
        true,
    );
    add(
        "/admin/sign-in/roles/{key}",
        post(admin_signin::policy_post),
        P,
        false,
        true,
    );
    add(
        "/admin/sign-in/throttles/clear",
        post(admin_signin::throttle_clear_post),
        P,
        false,
        true,
    );
    add(
        "/admin/users/{id}/sign-in",
        get(admin_signin::user_page),
        G,
        false,
        true,
    );
    add(
        "/admin/users/{id}/two-factor/reset",
        post(admin_signin::reset_post),
        P,
        false,
        true,
    );
    add(
        "/admin/users/{id}/sessions/{session}/revoke",
        post(admin_signin::session_revoke_post),
        P,
        false,
        true,
    );
    add(
        "/admin/users/{id}/freeze",
        post(admin_signin::freeze_post),
        P,
        false,
        true,
    );
    add(
        "/admin/users/{id}/unfreeze",
        post(admin_signin::unfreeze_post),
        P,
        false,
        true,
    );
    add(
        "/admin/users/{id}/tokens/{token}/freeze",
        post(admin_signin::token_freeze_post),
        P,
        false,
        true,
    );
    add(
        "/admin/users/{id}/tokens/{token}/unfreeze",
        post(admin_signin::token_unfreeze_post),
        P,
        false,
        true,
    );
    add(
        "/admin/security/lockdown",
        post(security::lockdown_post),
        P,
        false,
        true,
    );
    add(
        "/admin/users/{id}/tokens/{token}/revoke",
        post(admin_signin::token_revoke_post),
        P,
        false,
        true,
    );
    add("/admin/backups", get(backups::backups_page), G, false, true);
    add(
        "/admin/security",
        get(security::security_page),
        G,
        false,
        true,
    );
    add(
        "/admin/security/recovery-sheet",
        get(security::recovery_sheet),
        G,
        false,
        true,
    );
    add(
        "/admin/incident",
        get(incident_plan::incident_page),
        G,
        false,
        true,
    );
    add(
        "/admin/incident/responsible",
        post(incident_plan::responsible_post),
        P,
        false,
        true,
    );
    add(
        "/admin/security/test-alert",
        post(security::test_alert_post),
        P,
        false,
        true,
    );
    add(
        "/admin/security/backup-key-stored",
        post(security::backup_key_stored_post),
        P,
        false,
        true,
    );
    add(
        "/admin/backups/run",
        post(backups::run_post),
        P,
        false,
        true,
    );
    add(
        "/admin/backups/{id}",
        get(backups::backup_page),
        G,
        false,
        true,
    );
    add(
        "/admin/backups/{id}/drill",
        post(backups::drill_post),
        P,
        false,
        true,
    );
    add(
        "/admin/backups/{id}/restore",
        post(backups::restore_post),
        P,
        false,
        true,
    );
    add(
        "/admin/users",
        get(admin::users_page).post(admin::user_create_post),
        GP,
        false,
        true,
    );
    add(
        "/admin/users/{id}/access",
        post(admin::user_access_post),
        P,
        false,
        true,
    );
    add(
        "/admin/users/{id}/active",
        post(admin::user_active_post),
        P,
        false,
        true,
    );
    add(
        "/admin/users/{id}/password",
        post(admin::user_password_post),
        P,
        false,
        true,
    );
    add(
        "/admin/users/{id}/revoke-sessions",
        post(admin::user_revoke_post),
        P,
        false,
        true,
    );
    add(
        "/admin/users/{id}/revoke-tokens",
        post(admin::user_tokens_revoke_post),
        P,
        false,
        true,
    );
    add(
        "/{collection}",
        get(records::list_page).post(records::create_post),
        GP,
        false,
        false,
    );
    add("/{collection}/new", get(records::new_page), G, false, false);
    add(
        "/{collection}/export",
        get(records::export_page),
        G,
        false,
        false,
    );
    add(
        "/{collection}/{id}",
        get(records::detail_page),
        G,
        false,
        false,
    );
    add(
        "/{collection}/{id}/edit",
        get(records::edit_page).post(records::edit_post),
        GP,
        false,
        false,
    );
    add(
        "/{collection}/{id}/delete",
        post(records::delete_post),
        P,
        false,
        false,
    );
    add(
        "/{collection}/{id}/done",
        post(records::done_post),
        P,
        false,
        false,
    );
    add(
        "/{collection}/{id}/history",
        get(records::history_page),
        G,
        false,
        false,
    );
    add(
        "/{collection}/{id}/history/{version}/restore",
        post(records::version_restore_post),
        P,
        false,
        false,
    );
    add(
        "/{collection}/{id}/restore-to-time",
        post(records::restore_to_time_post),
        P,
        false,
        false,
    );
    (router, docs)
}

/// A logged-in user on a page. Anonymous or expired sessions are redirected to the login
/// page, which brings them back here afterwards.
pub struct Page {
    pub actor: Actor,
    pub user: UserRow,
    pub tr: Tr,
    pub csrf: String,
    /// Set when the request had no anti-forgery cookie yet; sent back with the response.
    pub new_csrf: bool,
    /// A notice from the previous step (`?notice=…`), already translated.
    pub notice: Option<String>,
    pub path: String,
}

/// Someone not logged in, on the login or setup page.
pub struct Visitor {
    pub tr: Tr,
    pub csrf: String,
    pub new_csrf: bool,
    pub notice: Option<String>,
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    crate::extract::cookie_value(headers, name)
}

/// The language for a request: the user's choice, else the visitor's cookie, else the browser.
fn locale_of(headers: &HeaderMap, user: Option<&UserRow>) -> Locale {
    user.and_then(|u| u.locale.as_deref())
        .and_then(Locale::from_tag)
        .or_else(|| cookie(headers, LANG_COOKIE).and_then(|tag| Locale::from_tag(&tag)))
        .or_else(|| {
            headers
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok())
                .and_then(Locale::from_accept_language)
        })
        .unwrap_or(Locale::En)
}

/// The anti-forgery token of a signed-in session: derived from the session's secret, so a
/// token planted in a browser (a cookie set by a sibling site) or lifted from another session
/// does not pass, and it ends with the session.
pub fn session_csrf(session_token: &str) -> String {
    holdfast_app::sha256_hex(&format!("holdfast-csrf:{session_token}"))[..32].to_owned()
}

fn csrf_of(headers: &HeaderMap) -> (String, bool) {
    match cookie(headers, CSRF_COOKIE)
        .filter(|t| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        Some(token) => (token, false),
        None => (
            holdfast_app::random_hex(16).unwrap_or_else(|_| "0".repeat(32)),
            true,
        ),
    }
}

impl FromRequestParts<WebState> for Page {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Self, Response> {
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".into());
        let login = || {
            let next: String = form_urlencoded::byte_serialize(path.as_bytes()).collect();
            Redirect::to(&format!("/login?next={next}")).into_response()
        };
        let Some(token) = crate::extract::session_cookie(parts) else {
            return Err(login());
        };
        let (actor, user) = match auth::session_user(&state.app, &token).await {
            Ok((actor, user)) => (crate::extract::with_client(&state.app, actor, parts), user),
            Err(AppError::Unauthenticated { .. }) => return Err(login()),
            Err(error) => {
                let tr = Tr::new(
                    locale_of(&parts.headers, None),
                    state.app.config.utc_offset_minutes,
                );
                return Err(error_page(&tr, error));
            }
        };
        let tr = Tr::new(
            locale_of(&parts.headers, Some(&user)),
            state.app.config.utc_offset_minutes,
        );
        if let Err(error) =
            crate::extract::lockdown_step_up(&state.app, &actor, &parts.method, parts.uri.path())
                .await
        {
            return Err(error_page(&tr, error));
        }
        // The security policy, when administrators wrote one, is acknowledged before anything
        // else (reading the basics and signing out stay open).
        let open = ["/policy", "/logout", "/security-basics"]
            .iter()
            .any(|p| parts.uri.path() == *p);
        if !open
            && let Ok(Some(_)) =
                holdfast_app::incident::unacknowledged(&state.app, actor.user_id).await
        {
            let next: String = form_urlencoded::byte_serialize(path.as_bytes()).collect();
            return Err(Redirect::to(&format!("/policy?next={next}")).into_response());
        }
        let (csrf, new_csrf) = (session_csrf(&token), false);
        let notice = notice_of(parts, &tr);
        Ok(Page {
            actor,
            user,
            tr,
            csrf,
            new_csrf,
            notice,
            path,
        })
    }
}

impl FromRequestParts<WebState> for Visitor {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Self, Response> {
        let (csrf, new_csrf) = csrf_of(&parts.headers);
        let tr = Tr::new(
            locale_of(&parts.headers, None),
            state.app.config.utc_offset_minutes,
        );
        let notice = notice_of(parts, &tr);
        Ok(Visitor {
            tr,
            csrf,
            new_csrf,
            notice,
        })
    }
}

/// The notice a redirect asked for (`?notice=saved`), translated; unknown keys show nothing.
fn notice_of(parts: &Parts, tr: &Tr) -> Option<String> {
    parts.uri.query().and_then(|query| {
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "notice")
            .and_then(|(_, v)| tr.get(&format!("notice.{v}")))
            .map(str::to_owned)
    })
}

/// A posted form whose anti-forgery token matched its cookie, and whose origin (when the
/// browser says) is this server. Anything else is refused before a handler sees the fields.
pub struct Form(pub HashMap<String, String>);

impl Form {
    pub fn get(&self, key: &str) -> &str {
        self.0.get(key).map(String::as_str).unwrap_or("")
    }

    /// A trimmed value, `None` when empty.
    pub fn value(&self, key: &str) -> Option<&str> {
        Some(self.get(key).trim()).filter(|v| !v.is_empty())
    }
}

impl<S: Send + Sync> FromRequest<S> for Form {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        let headers = request.headers().clone();
        let tr = Tr::new(locale_of(&headers, None), 0);
        let forged = || error_page_status(&tr, StatusCode::FORBIDDEN, "forgery", None);
        if let (Some(origin), Some(host)) = (
            headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
            headers.get(header::HOST).and_then(|v| v.to_str().ok()),
        ) {
            // `null` comes from sandboxed frames, data: pages and cross-site redirects: never
            // from a form of ours.
            let origin_host = origin.split("://").nth(1).unwrap_or(origin);
            if origin == "null" || origin_host != host {
                return Err(forged());
            }
        }
        let axum::Form(fields) =
            axum::Form::<HashMap<String, String>>::from_request(request, state)
                .await
                .map_err(|_| forged())?;
        // Signed in: the token belongs to the session; before signing in (login, setup): the
        // token in the anti-forgery cookie.
        let expected = match cookie(&headers, crate::extract::SESSION_COOKIE) {
            Some(session) => Some(session_csrf(&session)),
            None => cookie(&headers, CSRF_COOKIE),
        };
        match (expected, fields.get("csrf")) {
            (Some(cookie), Some(sent)) if !cookie.is_empty() && &cookie == sent => Ok(Form(fields)),
            _ => Err(forged()),
        }
    }
}

/// What a page handler returns: the page, or the page that says why not (`Err` lets handlers
/// use `?` on the steps that can fail).
pub type PageResult = Result<Response, Response>;

/// Turns a use case's error into the error page in the user's language.
pub trait OrPage<T> {
    fn or_page(self, tr: &Tr) -> Result<T, Response>;
}

impl<T> OrPage<T> for Result<T, AppError> {
    fn or_page(self, tr: &Tr) -> Result<T, Response> {
        self.map_err(|error| error_page(tr, error))
    }
}

/// The permission check a page makes before it looks at its input (deny by default: a user
/// without the right learns why, not what was wrong with a form they should not have sent).
pub fn require(page: &Page, action: holdfast_domain::Action) -> Result<(), Response> {
    holdfast_domain::access::authorize(&page.actor, action)
        .map_err(|denial| error_page(&page.tr, denial.into()))
}

/// A full HTML response; sets the anti-forgery cookie if the visitor had none.
pub fn html(markup: Markup, csrf: &str, new_csrf: bool) -> Response {
    html_status(StatusCode::OK, markup, csrf, new_csrf)
}

pub fn html_status(status: StatusCode, markup: Markup, csrf: &str, new_csrf: bool) -> Response {
    let mut response = (status, axum::response::Html(markup.into_string())).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    if new_csrf
        && let Ok(value) = HeaderValue::from_str(&format!(
            "{CSRF_COOKIE}={csrf}; Path=/; HttpOnly; SameSite=Strict"
        ))
    {
        headers.append(header::SET_COOKIE, value);
    }
    response
}

/// After a successful post: back to `to`, with a notice key the next page translates.
pub fn redirect(to: &str, notice: &str) -> Response {
    // The notice goes into the query, before any `#section`, or the server never sees it.
    let (path, fragment) = match to.split_once('#') {
        Some((path, fragment)) => (path, format!("#{fragment}")),
        None => (to, String::new()),
    };
    let sep = if path.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{path}{sep}notice={notice}{fragment}")).into_response()
}

/// The translated message for an error code, falling back to the use case's own words.
pub fn error_message(tr: &Tr, code: &str, fallback: &str) -> String {
    tr.get(&format!("error.{code}"))
        .map(str::to_owned)
        .unwrap_or_else(|| fallback.to_owned())
}

/// A page for an error that is not about one form field.
pub fn error_page(tr: &Tr, error: AppError) -> Response {
    match error {
        AppError::StepUpRequired => signin::step_up_page(tr),
        AppError::NotFound { what } => {
            error_page_status(tr, StatusCode::NOT_FOUND, "not_found", Some(&what))
        }
        AppError::InRecycleBin {
            deleted_at,
            restorable_until,
            ..
        } => {
            let detail = tr.f(
                "error.in_recycle_bin_detail",
                &[
                    ("when", &tr.datetime(deleted_at)),
                    ("until", &tr.datetime(restorable_until)),
                ],
            );
            let body = layout::error_body(
                tr,
                &tr.f("error.in_recycle_bin", &[]),
                &detail,
                Some(("/recycle-bin", tr.t("nav.bin"))),
            );
            html_status(StatusCode::NOT_FOUND, body, "", false)
        }
        AppError::Forbidden(denial) => access::denial_page(tr, &denial),
        AppError::Unauthenticated { .. } => Redirect::to("/login").into_response(),
        AppError::Conflict { code, message, .. } => {
            let body = layout::error_body(
                tr,
                &error_message(tr, code, &message),
                "",
                Some(("/", tr.t("nav.home"))),
            );
            html_status(StatusCode::CONFLICT, body, "", false)
        }
        AppError::Invalid(errors) => {
            let lines: Vec<String> = errors
                .0
                .iter()
                .map(|e| format!("{}: {}", e.field, error_message(tr, e.code, &e.message)))
                .collect();
            let body =
                layout::error_body(tr, tr.t("error.invalid_request"), &lines.join("; "), None);
            html_status(StatusCode::UNPROCESSABLE_ENTITY, body, "", false)
        }
        AppError::Throttled {
            retry_after_seconds,
        } => {
            let detail = tr.f("error.retry_after", &[("seconds", &retry_after_seconds)]);
            let body = layout::error_body(tr, tr.t("error.too_many_attempts"), &detail, None);
            html_status(StatusCode::TOO_MANY_REQUESTS, body, "", false)
        }
        AppError::Busy {
            retry_after_seconds,
        } => {
            let detail = tr.f("error.retry_after", &[("seconds", &retry_after_seconds)]);
            let body = layout::error_body(tr, tr.t("error.busy"), &detail, None);
            let mut response = html_status(StatusCode::SERVICE_UNAVAILABLE, body, "", false);
            if let Ok(value) = HeaderValue::from_str(&retry_after_seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        AppError::Unavailable {
            kind,
            detail,
            message,
            fresh,
        } => {
            tracing::error!(op_id = %current_op_id(), %detail, code = kind.code(), "database fault");
            let title = error_message(tr, kind.code(), kind.code());
            let body = layout::error_body(tr, &title, &message, Some(("/", tr.t("nav.home"))));
            let mut response = html_status(crate::error::fault_status(kind), body, "", false);
            if fresh {
                response
                    .extensions_mut()
                    .insert(crate::error::ObservedFault { kind, detail });
            }
            response
        }
        AppError::Internal(error) => {
            tracing::error!(op_id = %current_op_id(), error = ?error, "internal error");
            error_page_status(
                tr,
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                None,
            )
        }
    }
}

fn error_page_status(tr: &Tr, status: StatusCode, code: &str, what: Option<&str>) -> Response {
    let detail = match code {
        "internal_error" => tr.f("error.internal_detail", &[("op_id", &current_op_id())]),
        "forgery" => tr.t("error.forgery_detail").to_owned(),
        _ => what.unwrap_or_default().to_owned(),
    };
    let body = layout::error_body(
        tr,
        &error_message(tr, code, code),
        &detail,
        Some(("/", tr.t("nav.home"))),
    );
    html_status(status, body, "", false)
}

/// A pipeline's name; the one Holdfast seeds is shown in the user's language until an
/// administrator renames it.
pub fn pipeline_name<'a>(tr: &Tr, key: &str, name: &'a str) -> &'a str {
    if key == "default" && name == "Sales" {
        tr.t("pipeline.default")
    } else {
        name
    }
}

/// The page for a path no route knows.
pub async fn not_found_page(headers: HeaderMap) -> Response {
    let tr = Tr::new(locale_of(&headers, None), 0);
    error_page_status(&tr, StatusCode::NOT_FOUND, "not_found", None)
}
