//! Holdfast's HTTP layer: the JSON API under `/api/v1`, the web pages ([`views`], in the
//! languages of [`i18n`]), health probes, and the OpenAPI document.
//!
//! A request passes the operation-id middleware (which names it in logs, in the `x-op-id`
//! response header and in every error body), then its handler in [`api`], which authenticates
//! through the [`extract::Auth`] extractor and calls one use case in `holdfast-app`. This crate
//! has no SQL and does not depend on `holdfast-store`'s write side.
//!
//! Routes are registered through [`Routes`], which records each route's documentation as it
//! adds the handler, so the OpenAPI document is generated from the very table that builds the
//! router and cannot list a route that does not exist or miss one that does.

pub mod access_api;
pub mod api;
pub mod error;
pub mod extract;
pub mod i18n;
pub mod openapi;
pub mod security_api;
pub mod signin_api;
pub mod transport;
pub mod views;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use error::{ApiError, OP_ID};
use holdfast_app::App;
use openapi::{Body, RouteDoc};
use serde_json::json;
use std::time::Instant;

/// Largest request body accepted (a record with long notes is well under this).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Clone)]
pub struct WebState {
    pub app: App,
    /// Permits for requests being handled at once (`AppConfig::max_concurrent_requests`).
    pub gate: std::sync::Arc<tokio::sync::Semaphore>,
}

/// The router plus the documentation of every route it has.
pub struct Routes {
    router: Router<WebState>,
    docs: Vec<RouteDoc>,
}

impl Routes {
    fn new() -> Routes {
        Routes {
            router: Router::new(),
            docs: Vec::new(),
        }
    }

    fn add(mut self, path: &str, method: MethodRouter<WebState>, doc: RouteDoc) -> Routes {
        self.router = self.router.route(path, method);
        self.docs.push(doc.at(path));
        self
    }

    pub fn docs(&self) -> &[RouteDoc] {
        &self.docs
    }
}

/// Every route of the server with its documentation.
pub fn routes() -> Routes {
    use openapi::RouteDoc as D;
    Routes::new()
        .add("/healthz", get(healthz), D::public("GET", "Liveness: the process is up", Body::None, "Health"))
        .add("/readyz", get(readyz), D::public("GET", "Readiness: the database answers and its schema is current; also whether backups are healthy", Body::None, "Health"))
        .add("/api/v1/openapi.json", get(openapi_json), D::new("GET", "This document", Body::None, "Object"))
        .add("/api/v1/setup", post(api::setup), D::public("POST", "Create the first administrator with the setup token printed on the server console", Body::Named("Setup"), "User").created())
        .add("/api/v1/auth/login", post(signin_api::login), D::public("POST", "Sign in with username and password. Without a second factor this sets the session cookie; with one, the answer has second_factor_required, a sign_in_token and the methods to finish with", Body::Named("Login"), "Login"))
        .add("/api/v1/auth/second-factor", post(signin_api::second_factor), D::public("POST", "Finish a sign-in with a code from the authenticator app or a recovery code; sets the session cookie", Body::Named("SecondFactor"), "Login"))
        .add("/api/v1/auth/second-factor/passkey-options", post(signin_api::second_factor_passkey_options), D::public("POST", "Options for navigator.credentials.get to finish a sign-in whose password was right with a passkey", Body::Named("Pending"), "Ceremony"))
        .add("/api/v1/auth/second-factor/passkey", post(signin_api::second_factor_passkey), D::public("POST", "Finish a sign-in whose password was right with the browser's passkey answer; sets the session cookie", Body::Named("SecondFactorPasskey"), "Login"))
        .add("/api/v1/auth/passkey/options", post(signin_api::passkey_options), D::public("POST", "Options for navigator.credentials.get to sign in with a passkey instead of the password", Body::Named("PasskeyOptions"), "Ceremony"))
        .add("/api/v1/auth/passkey", post(signin_api::passkey), D::public("POST", "Sign in with the browser's passkey answer; sets the session cookie", Body::Named("PasskeyAnswer"), "Login"))
        .add("/api/v1/auth/confirm", post(signin_api::confirm), D::new("POST", "Confirm it is you with your password or a code: sensitive actions then work for 10 minutes in this session", Body::Named("Confirm"), "Object"))
        .add("/api/v1/auth/confirm/options", post(signin_api::confirm_options), D::new("POST", "Options for confirming it is you with a passkey", Body::None, "Ceremony"))
        .add("/api/v1/auth/confirm/passkey", post(signin_api::confirm_passkey), D::new("POST", "Confirm it is you with the browser's passkey answer", Body::Named("PasskeyAnswer"), "Object"))
        .add("/api/v1/auth/logout", post(api::logout), D::new("POST", "End the current session", Body::None, "Object"))
        .add("/api/v1/auth/throttles", get(api::throttles_get).delete(api::throttles_delete), D::new("GET", "Accounts (user:NAME), clients (addr:ADDRESS, IPv6 per /64) and account-client pairs (pair:NAME|ADDRESS) with recent failed sign-ins, and until when each waits (administrators)", Body::None, "List").also("DELETE", "Lift one throttle, for a real user slowed down by someone else's guesses; audited (administrators)", Body::None, "Object").params(&["key"]))
        .add("/api/v1/auth/sign-ins", get(signin_api::admin_sign_ins), D::new("GET", "Sign-ins and failed attempts of everyone, or of one user, newest first (administrators)", Body::None, "List").params(&["user_id"]))
        .add("/api/v1/me/two-factor", get(signin_api::two_factor_status), D::new("GET", "Your second factors (authenticator app, passkeys), recovery codes left, and whether your role requires one", Body::None, "Object"))
        .add("/api/v1/me/two-factor/totp", post(signin_api::totp_start), D::new("POST", "Start adding an authenticator app: its secret and otpauth:// address; it counts once confirmed with a code", Body::None, "Object").created())
        .add("/api/v1/me/two-factor/totp/confirm", post(signin_api::totp_confirm), D::new("POST", "Confirm the authenticator app with the code it shows; the first time, ten recovery codes come back, shown once", Body::Named("TotpConfirm"), "Object"))
        .add("/api/v1/me/two-factor/recovery-codes", post(signin_api::recovery_codes), D::new("POST", "Ten new recovery codes replace the old ones (your password again)", Body::Named("PasswordAgain"), "Object"))
        .add("/api/v1/me/two-factor/{id}/remove", post(signin_api::factor_remove), D::new("POST", "Remove a second factor with your password and a current code (or, with a passkey, after confirming within 10 minutes); refused for the last one when your role requires one", Body::Named("FactorRemove"), "Object"))
        .add("/api/v1/me/passkeys/options", post(signin_api::passkey_register_options), D::new("POST", "Options for navigator.credentials.create to add a passkey (confirm it is you first)", Body::None, "Ceremony"))
        .add("/api/v1/me/passkeys", post(signin_api::passkey_register), D::new("POST", "Add the passkey the browser created", Body::Named("PasskeyRegister"), "Object").created())
        .add("/api/v1/me/sign-ins", get(signin_api::my_sign_ins), D::new("GET", "Your sign-ins and failed attempts, newest first: time, address, browser, method, outcome", Body::None, "List"))
        .add("/api/v1/me/security-notices", get(signin_api::my_notices), D::new("GET", "Security notices not yet answered: new device, password or second factor changed, token made, recovery code used", Body::None, "List"))
        .add("/api/v1/me/security-notices/{id}/ack", post(signin_api::notice_ack), D::new("POST", "\"This was me\": put a security notice away", Body::None, "Object"))
        .add("/api/v1/me/not-me", post(signin_api::not_me), D::new("POST", "\"This wasn't me\": end your other sessions and every API token, forget your devices and tell the administrators", Body::Named("NotMe"), "Object"))
        .add("/api/v1/admin/lockdown", get(signin_api::lockdown_get).put(signin_api::lockdown_put), D::new("GET", "Whether the CRM is locked down, since when, by whom and why (auditors and administrators)", Body::None, "Object").also("PUT", "Lock the CRM down (read-only for everyone but administrators, who confirm each change; every API token suspended) or lift it; a reason is required to lock (administrators; confirm it is you first)", Body::Named("LockdownSwitch"), "Object"))
        .add("/api/v1/admin/guards", get(signin_api::guards_get), D::new("GET", "The mass-action guards' limits, and the guards users tripped, those waiting for review first (auditors and administrators)", Body::None, "List"))
        .add("/api/v1/admin/guards/{id}/release", post(signin_api::guard_release), D::new("POST", "Release a tripped guard after review: the user's actions of that kind continue (administrators; confirm it is you first)", Body::None, "Object"))
        .add("/api/v1/admin/two-factor", get(signin_api::admin_two_factor), D::new("GET", "Which roles must use a second factor, and every active user with their second factors: who has not enrolled (administrators)", Body::None, "Object"))
        .add("/api/v1/admin/two-factor/roles/{role}", put(signin_api::admin_policy_put), D::new("PUT", "Require a second factor for a role, or stop requiring it (administrators; confirm it is you first)", Body::Named("TwoFactorPolicy"), "Object"))
        .add("/api/v1/me", get(api::me), D::new("GET", "The logged-in user", Body::None, "User"))
        .add("/api/v1/me/password", put(api::me_password), D::new("PUT", "Change your password; ends your other sessions", Body::Named("PasswordChange"), "Object"))
        .add("/api/v1/me/sessions", get(api::me_sessions), D::new("GET", "Your active sessions", Body::None, "List"))
        .add("/api/v1/me/sessions/{id}", delete(api::me_session_revoke), D::new("DELETE", "End one of your sessions", Body::None, "Object"))
        .add("/api/v1/me/tokens", get(api::me_tokens).post(api::me_token_create), D::new("GET", "Your API tokens", Body::None, "List").also("POST", "Create an API token; the secret is shown once", Body::Named("TokenCreate"), "Token").created())
        .add("/api/v1/me/tokens/{id}", delete(api::me_token_revoke), D::new("DELETE", "Revoke one of your API tokens", Body::None, "Object"))
        .add("/api/v1/users", get(api::user_list).post(api::user_create), D::new("GET", "All users (administrators)", Body::None, "List").also("POST", "Create a user (administrators)", Body::Named("UserCreate"), "User").created())
        .add("/api/v1/users/{id}", get(api::user_get).patch(api::user_update), D::new("GET", "One user", Body::None, "User").also("PATCH", "Change a user's name, role or active state (administrators)", Body::Named("UserUpdate"), "User"))
        .add("/api/v1/users/{id}/password", post(api::user_password_reset), D::new("POST", "Set a new password for a user and end their sessions (administrators)", Body::Named("PasswordReset"), "Object"))
        .add("/api/v1/users/{id}/revoke-sessions", post(api::user_sessions_revoke), D::new("POST", "Log a user out of every browser (administrators); their API tokens keep working and the answer says how many", Body::None, "Object"))
        .add("/api/v1/users/{id}/revoke-tokens", post(api::user_tokens_revoke), D::new("POST", "Revoke every API token of a user: their scripts stop (administrators)", Body::None, "Object"))
        .add("/api/v1/users/{id}/sign-in", get(signin_api::admin_user_credentials), D::new("GET", "A user's sessions in force, API tokens and recent sign-ins (administrators)", Body::None, "Object"))
        .add("/api/v1/users/{id}/sessions/{session}", delete(signin_api::admin_session_revoke), D::new("DELETE", "End one session of a user (administrators)", Body::None, "Object"))
        .add("/api/v1/users/{id}/tokens/{token}", delete(signin_api::admin_token_revoke), D::new("DELETE", "Revoke one API token of a user (administrators)", Body::None, "Object"))
        .add("/api/v1/users/{id}/freeze", post(signin_api::user_freeze), D::new("POST", "Freeze a user: every session and API token of theirs is suspended (nothing deleted) until unfrozen; they are refused with the reason (administrators; confirm it is you first)", Body::Named("Freeze"), "Object"))
        .add("/api/v1/users/{id}/unfreeze", post(signin_api::user_unfreeze), D::new("POST", "Lift a user's freeze (administrators; confirm it is you first)", Body::None, "Object"))
        .add("/api/v1/users/{id}/tokens/{token}/freeze", post(signin_api::token_freeze), D::new("POST", "Suspend one API token of a user, without revoking it (administrators; confirm it is you first)", Body::None, "Object"))
        .add("/api/v1/users/{id}/tokens/{token}/unfreeze", post(signin_api::token_unfreeze), D::new("POST", "Resume a suspended API token (administrators; confirm it is you first)", Body::None, "Object"))
        .add("/api/v1/users/{id}/two-factor/reset", post(signin_api::admin_two_factor_reset), D::new("POST", "Remove every second factor of a user who lost them, and end their sessions; they are told (administrators; confirm it is you first)", Body::None, "Object"))
        .add("/api/v1/access/explain", get(access_api::explain), D::new("GET", "Why a user can or cannot do something: the chain of checks (account, module, right, scope, field) and who can change each; about yourself, or anyone for auditors and administrators", Body::None, "Explanation").params(&["user_id", "permission", "record", "field"]))
        .add("/api/v1/access/summary/{id}", get(access_api::summary), D::new("GET", "A user's access: each right and what gives it (role or grant), scope, hidden fields, shared records (`me` for yourself)", Body::None, "Object"))
        .add("/api/v1/access/roles", get(access_api::roles), D::new("GET", "Roles, built in and custom (auditors and administrators)", Body::None, "List"))
        .add("/api/v1/access/roles/{key}", put(access_api::role_put).delete(access_api::role_delete), D::new("PUT", "Create or change a custom role; dry_run previews who gains or loses what (administrators)", Body::Named("Role"), "AccessChange").also("DELETE", "Delete an unused custom role (administrators)", Body::None, "AccessChange").params(&["dry_run"]))
        .add("/api/v1/access/teams", get(access_api::teams).post(access_api::team_create), D::new("GET", "Teams (auditors and administrators)", Body::None, "List").also("POST", "Create a team; dry_run previews (administrators)", Body::Named("Team"), "AccessChange").created())
        .add("/api/v1/access/teams/{id}", put(access_api::team_put).delete(access_api::team_delete), D::new("PUT", "Change a team's name, parent or manager; dry_run previews (administrators)", Body::Named("Team"), "AccessChange").also("DELETE", "Remove a team; its members keep their records (administrators)", Body::None, "AccessChange").params(&["dry_run"]))
        .add("/api/v1/access/modules", get(access_api::modules), D::new("GET", "Which modules are switched on for the organisation", Body::None, "List"))
        .add("/api/v1/access/modules/{module}", put(access_api::module_put), D::new("PUT", "Switch a module on or off for everyone but administrators; dry_run previews (administrators)", Body::Named("ModuleSwitch"), "AccessChange"))
        .add("/api/v1/access/requests", get(access_api::requests).post(access_api::request_create), D::new("GET", "Access requests you can decide, and your own", Body::None, "Object").also("POST", "Ask for a right or for one record to be shared, with a reason", Body::Named("AccessRequest"), "Object").created())
        .add("/api/v1/access/requests/{id}", get(access_api::request_get), D::new("GET", "One access request (yours, or one you can decide)", Body::None, "Object"))
        .add("/api/v1/access/requests/{id}/{decision}", post(access_api::request_decide), D::new("POST", "approve (optional expires_at), decline or revoke (note required) an access request (administrators; the owner for a share of their record)", Body::Named("Decision"), "Object"))
        .add("/api/v1/access/reviews", get(access_api::reviews), D::new("GET", "Each user's periodic access review: last one, next due, overdue (auditors and administrators)", Body::None, "List"))
        .add("/api/v1/access/reviews/{id}", post(access_api::review_post), D::new("POST", "Record the review of a user's access: confirmed or trimmed (administrators)", Body::Named("Review"), "Object"))
        .add("/api/v1/access/report", get(access_api::report), D::new("GET", "The permission report: who can delete, restore, export or administer; dormant accounts; unused rights; every permission change (auditors and administrators)", Body::None, "Object"))
        .add("/api/v1/me/notifications", get(access_api::notifications), D::new("GET", "Your notifications, newest first", Body::None, "List"))
        .add("/api/v1/me/notifications/read", post(access_api::notifications_read), D::new("POST", "Mark your notifications read", Body::None, "Object"))
        .add("/api/v1/custom-fields", get(api::custom_field_list).post(api::custom_field_create), D::new("GET", "Custom field definitions", Body::None, "List").also("POST", "Define a custom field (administrators)", Body::Named("CustomFieldCreate"), "Object").created())
        .add("/api/v1/custom-fields/{id}", delete(api::custom_field_archive), D::new("DELETE", "Archive a custom field; stored values are kept (administrators)", Body::None, "Object"))
        .add("/api/v1/pipelines", get(api::pipeline_list), D::new("GET", "Deal pipelines and their stages", Body::None, "List"))
        .add("/api/v1/pipelines/{key}", put(api::pipeline_put), D::new("PUT", "Create or redefine a pipeline (administrators)", Body::Named("Pipeline"), "Object"))
        .add("/api/v1/audit", get(api::audit_list), D::new("GET", "The tamper-evident audit log, oldest first: filter by record, actor, API token, session, action (exact, or a prefix ending in a dot such as `contact.`) and time (`from`, `to`, inclusive); page on with `after` (a seq). Each entry names the session or token and the client address (administrators and auditors)", Body::None, "List").params(api::AUDIT_FILTERS))
        .add("/api/v1/audit/timeline", get(signin_api::timeline), D::new("GET", "Everything a user, API token, session or client address did between two times (default: the last 7 days) — sign-ins and failures, changes, exports, permission changes, tokens and users made — oldest first; format=csv for a report (auditors and administrators)", Body::None, "List").params(signin_api::TIMELINE_PARAMS))
        .add("/api/v1/backups", get(api::backups_get).post(api::backups_post), D::new("GET", "Backup status (red when the newest verified backup is older than twice the schedule or a drill failed) and recent runs (administrators)", Body::None, "List").also("POST", "Take a backup now, in the background (administrators)", Body::None, "Object"))
        .add("/api/v1/backups/{id}/drill", post(api::backup_drill_post), D::new("POST", "Restore-drill a backup again, in the background (administrators)", Body::None, "Object"))
        .add("/api/v1/backups/{id}/records", get(api::backup_records_get), D::new("GET", "Customer records in a backup that a selective restore would bring back, with where each stands now (administrators)", Body::None, "List").params(&["deleted_since", "entity", "matching"]))
        .add("/api/v1/backups/{id}/restore", post(api::backup_restore_post), D::new("POST", "Bring chosen records back from a backup as new versions (administrators)", Body::Named("RestoreRecords"), "List"))
        .add("/api/v1/security", get(security_api::security_get), D::new("GET", "The security checklist holdfast doctor prints, scored 0-100: transport, encryption at rest, backups and drills, file permissions, administrators, sign-in policy, audit chain, integrity, advisories, alerts; and the backup key (auditors and administrators)", Body::None, "Object"))
        .add("/api/v1/admin/alerts", get(security_api::alerts_get), D::new("GET", "Where alerts go (channels from the server's configuration, without secrets) and the delivery log, newest first (auditors and administrators)", Body::None, "Object"))
        .add("/api/v1/admin/alerts/test", post(security_api::alerts_test), D::new("POST", "Send a test alert to every channel; the delivery log shows whether it arrived (administrators)", Body::None, "Object"))
        .add("/api/v1/security/backup-key-stored", post(security_api::security_backup_key_stored), D::new("POST", "Confirm that the backup key's recovery sheet is stored away from this machine; the reminders stop until the key changes (administrators)", Body::None, "Object"))
        .add("/api/v1/revert", post(api::revert), D::new("POST", "Undo everything changed since a time, or one user's changes only: fields that user changed go back, later changes by others are kept and listed as conflicts, records they created go to the recycle bin and ones they deleted come back; dry_run previews record by record (administrators)", Body::Named("Revert"), "Object"))
        .add("/api/v1/recycle-bin", get(api::bin_list), D::new("GET", "Deletions in the recycle bin, newest first", Body::None, "List").params(&["entity", "limit"]))
        .add("/api/v1/recycle-bin/{collection}/{id}", delete(api::bin_purge), D::per_entity("DELETE", "Purge a deletion for good before its retention ends (administrators; reason required)", Body::None, "Object").params(&["reason"]))
        .add("/api/v1/{collection}", get(api::record_list).post(api::record_create), D::per_entity("GET", "List live records: filters, search (q), sort, cursor pagination", Body::None, "RecordList").also("POST", "Create a record", Body::EntityInput, "Record").created())
        .add("/api/v1/{collection}/export", get(api::record_export), D::per_entity("GET", "Every record the list with these filters and search would show you, as CSV without the fields your role hides (export rights on the module and on exports; audited)", Body::None, "Csv").params(&["q", "sort", "owner_id", "tag", "updated_since"]))
        .add("/api/v1/{collection}/{id}", get(api::record_get).patch(api::record_update).delete(api::record_delete), D::per_entity("GET", "One record, with the titles of what it links to", Body::None, "Record").params(&["include_deleted"])
            .also("PATCH", "Change fields; send expected_version (409 if someone changed it meanwhile)", Body::EntityPatch, "Record")
            .also("DELETE", "Move to the recycle bin, with what hangs off it", Body::None, "Outcome").params(&["expected_version", "reason"]))
        .add("/api/v1/{collection}/{id}/restore", post(api::record_restore), D::per_entity("POST", "Bring a deletion back from the recycle bin, with everything deleted with it", Body::Named("Reason"), "Outcome"))
        .add("/api/v1/{collection}/{id}/versions", get(api::record_versions), D::per_entity("GET", "Every version of the record, oldest first", Body::None, "List"))
        .add("/api/v1/{collection}/{id}/versions/{version}", get(api::record_version), D::per_entity("GET", "One version with its full snapshot", Body::None, "Object"))
        .add("/api/v1/{collection}/{id}/versions/{version}/restore", post(api::record_version_restore), D::per_entity("POST", "Make an earlier version current again (as a new version)", Body::Named("RestoreVersion"), "Record"))
        .add("/api/v1/{collection}/{id}/as-of", get(api::record_as_of), D::per_entity("GET", "The record as it was at a time (its newest version then)", Body::None, "Object").params(&["at"]))
        .add("/api/v1/{collection}/{id}/restore-to-time", post(api::record_restore_to_time), D::per_entity("POST", "Put the record back as it was at a time, as a new version", Body::Named("At"), "Outcome"))
        .add("/api/v1/{collection}/{id}/diff", get(api::record_diff), D::per_entity("GET", "Field-by-field difference between two versions", Body::None, "Object").params(&["from", "to"]))
}

/// The application: every API route and page, the operation-id middleware, the body limit, and
/// 404s in the format of whoever asked (JSON under `/api/`, a page elsewhere).
pub fn router(app: App) -> Router {
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(
        app.config.max_concurrent_requests.max(1),
    ));
    let state = WebState { app, gate };
    let (pages, _) = views::pages();
    routes()
        .router
        .merge(pages)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(state.clone(), record_faults))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            record_refusals,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), limits))
        .layer(middleware::from_fn(op_id_middleware))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            security_headers,
        ))
        .with_state(state)
}

pub use transport::serve;

/// Headers every response carries, whatever produced it (JSON, CSV, pages, errors, 404s):
/// no content sniffing, no referrer to other sites, no powerful browser features, never framed,
/// and no caching of data unless the handler chose otherwise (the stylesheet and script do).
/// Reached over HTTPS, browsers are also told to use nothing else for a year (HSTS).
async fn security_headers(
    State(state): State<WebState>,
    mut request: Request,
    next: Next,
) -> Response {
    let https = state.app.config.https;
    if https {
        host_cookies_in(request.headers_mut());
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if https {
        host_cookies_out(headers);
        headers.insert(
            "strict-transport-security",
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
        (
            "permissions-policy",
            "camera=(), microphone=(), geolocation=(), payment=(), usb=(), interest-cohort=()",
        ),
        ("x-frame-options", "DENY"),
        // Pages set their own, stricter for scripts; data answers load nothing at all.
        (
            "content-security-policy",
            "default-src 'none'; frame-ancestors 'none'",
        ),
        ("cache-control", "no-store"),
    ] {
        if !headers.contains_key(name) {
            headers.insert(name, axum::http::HeaderValue::from_static(value));
        }
    }
    response
}

/// Over HTTPS our cookies are named `__Host-holdfast_…`: browsers accept such a cookie only
/// from a secure page of this very host, so a plain-HTTP page or a sibling subdomain cannot
/// plant a session or anti-forgery cookie. Handlers keep using the plain names: incoming
/// `__Host-` cookies are handed on under them and plain `holdfast_` ones (which anyone on the
/// network could have set) are dropped; outgoing ones are renamed and marked `Secure`.
fn host_cookies_in(headers: &mut axum::http::HeaderMap) {
    let kept: Vec<String> = headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.starts_with("holdfast_"))
        .map(|pair| pair.strip_prefix("__Host-").unwrap_or(pair).to_owned())
        .collect();
    headers.remove(axum::http::header::COOKIE);
    if let Ok(value) = HeaderValue::from_str(&kept.join("; "))
        && !kept.is_empty()
    {
        headers.insert(axum::http::header::COOKIE, value);
    }
}

fn host_cookies_out(headers: &mut axum::http::HeaderMap) {
    let cookies: Vec<HeaderValue> = headers
        .get_all(axum::http::header::SET_COOKIE)
        .iter()
        .cloned()
        .collect();
    if cookies.is_empty() {
        return;
    }
    headers.remove(axum::http::header::SET_COOKIE);
    for cookie in cookies {
        let renamed = cookie.to_str().ok().and_then(|text| {
            let secure = if text.contains("; Secure") {
                ""
            } else {
                "; Secure"
            };
            let text = match text.strip_prefix("holdfast_") {
                Some(rest) => format!("__Host-holdfast_{rest}{secure}"),
                None => text.to_owned(),
            };
            HeaderValue::from_str(&text).ok()
        });
        headers.append(axum::http::header::SET_COOKIE, renamed.unwrap_or(cookie));
    }
}

/// Slow or too many clients cannot hold the server: the body must arrive within the body
/// timeout (read here, before any handler or database connection is involved; 408 otherwise),
/// and only so many requests are handled at once (the rest wait briefly, then get 503 `busy`
/// with `Retry-After`). Handlers then run to completion, so a change is never cut off halfway.
async fn limits(State(state): State<WebState>, request: Request, next: Next) -> Response {
    let config = &state.app.config;
    let (parts, body) = request.into_parts();
    let read = axum::body::to_bytes(body, MAX_BODY_BYTES + 1);
    let body = match tokio::time::timeout(
        std::time::Duration::from_secs(config.body_timeout_seconds),
        read,
    )
    .await
    {
        Ok(Ok(bytes)) => bytes,
        // Too large: the body-limit layer inside answers 413 with the usual body.
        Ok(Err(_)) => axum::body::Bytes::from(vec![0u8; MAX_BODY_BYTES + 1]),
        Err(_) => {
            return error::ApiError::bad_request(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "The request body did not arrive within {} seconds; nothing was done. Send it again",
                    config.body_timeout_seconds
                ),
            )
            .into_response();
        }
    };
    let request = Request::from_parts(parts, axum::body::Body::from(body));
    let wait = std::time::Duration::from_millis(config.busy_wait_ms);
    let Ok(Ok(_permit)) = tokio::time::timeout(wait, state.gate.clone().acquire_owned()).await
    else {
        let mut response = error::ApiError::bad_request(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "The server is handling as many requests as it takes at once; try again in a few seconds".to_owned(),
        )
        .into_response();
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("5"),
        );
        return response;
    };
    next.run(request).await
}

/// Remembers the database faults answers ran into (a damaged database, a full disk), so that
/// `/readyz`, the admin pages and the write path know of them.
async fn record_faults(State(state): State<WebState>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if let Some(fault) = response.extensions().get::<error::ObservedFault>() {
        state
            .app
            .db
            .health()
            .record(fault.kind, &fault.detail, "serving");
    }
    response
}

/// Writes every refusal by the chain of checks into the audit log: who (their session or API
/// token, their address), what they asked for, and the check that failed — an intruder
/// probing for what a stolen account can reach shows on the timeline.
async fn record_refusals(State(state): State<WebState>, request: Request, next: Next) -> Response {
    let acting = std::sync::Arc::new(std::sync::Mutex::new(None));
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let response = extract::ACTING
        .scope(acting.clone(), next.run(request))
        .await;
    let Some(extract::Refused(check)) = response.extensions().get::<extract::Refused>().cloned()
    else {
        return response;
    };
    let actor = acting.lock().ok().and_then(|mut slot| slot.take());
    if let Some(actor) = actor {
        let op_id = error::current_op_id();
        if let Err(error) = holdfast_app::security::record_refusal(
            &state.app, &actor, &op_id, &method, &path, check,
        )
        .await
        {
            tracing::warn!(op_id, error = %format!("{error:#}"), "a refusal could not be written to the audit log");
        }
    }
    response
}

/// Names each request with an operation id (the client's `x-request-id` if it is sane), logs
/// it with its outcome, and echoes the id in `x-op-id`.
async fn op_id_middleware(request: Request, next: Next) -> Response {
    let supplied = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (8..=64).contains(&v.len()) && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        .map(str::to_owned);
    let op_id = supplied
        .unwrap_or_else(|| holdfast_app::random_hex(8).unwrap_or_else(|_| "no-random".into()));
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    let context =
        views::signin::PageContext::of(request.method(), request.uri(), request.headers());
    let mut response = OP_ID
        .scope(
            op_id.clone(),
            views::signin::PAGE_CONTEXT.scope(context, next.run(request)),
        )
        .await;
    let status = response.status().as_u16();
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    if status >= 500 {
        tracing::warn!(op_id = %op_id, %method, %path, status, elapsed_ms, "request failed");
    } else {
        tracing::info!(op_id = %op_id, %method, %path, status, elapsed_ms, "request");
    }
    if let Ok(value) = HeaderValue::from_str(&op_id) {
        response.headers_mut().insert("x-op-id", value);
    }
    response
}

async fn not_found(request: Request) -> Response {
    if !request.uri().path().starts_with("/api/") {
        return views::not_found_page(request.headers().clone()).await;
    }
    ApiError::bad_request(
        StatusCode::NOT_FOUND,
        "not_found",
        "No such endpoint; see /api/v1/openapi.json",
    )
}

async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

async fn readyz(State(state): State<WebState>) -> Response {
    // A damaged database or a full disk is not ready, whatever a ping says.
    let health = holdfast_app::db_health::status(&state.app).await;
    if !health.is_ok() {
        tracing::warn!(state = health.state, "not ready: database fault");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({
                "status": "not_ready",
                "reason": health.faults.first().map(|f| format!("{}: {}", f.kind.code(), f.detail)),
                "database_health": health,
            })),
        )
            .into_response();
    }
    let db = state.app.db.ping().await;
    let schema = state.app.db.schema_state().await;
    match (db, schema) {
        (Ok(()), Ok(holdfast_app::SchemaState::Current)) => {
            // Backups turn red here too, for monitoring; they do not make the instance unready.
            let backups = match holdfast_app::backup::schedule::status(&state.app).await {
                Ok(status) => json!({
                    "state": status.state,
                    "problems": status.problems,
                    "last_good_at": status.last_good.map(|r| holdfast_domain::Timestamp(r.started_at).to_rfc3339()),
                    "last_drill_at": status.last_drill.and_then(|r| r.drill_at).map(|t| holdfast_domain::Timestamp(t).to_rfc3339()),
                }),
                Err(error) => json!({"state": "unknown", "problems": [format!("{error:#}")]}),
            };
            axum::Json(json!({"status": "ready", "database": state.app.db.backend().name(), "database_health": health, "backups": backups}))
                .into_response()
        }
        (db, schema) => {
            let reason = match (db, schema) {
                (Err(error), _) => {
                    // A fault the ping itself ran into (a damaged file) is remembered too.
                    state.app.db.health().observe(&error, "serving");
                    format!("database unreachable: {error:#}")
                }
                (_, Ok(state)) => format!("schema not current: {state:?}"),
                (_, Err(error)) => format!("schema unreadable: {error:#}"),
            };
            tracing::warn!(%reason, "not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"status": "not_ready", "reason": reason})),
            )
                .into_response()
        }
    }
}

async fn openapi_json(extract::Auth(_actor): extract::Auth) -> Response {
    axum::Json(openapi::document(routes().docs())).into_response()
}
