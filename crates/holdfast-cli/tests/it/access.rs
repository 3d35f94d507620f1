//! Permissions as users meet them: the permission matrix (every API route and page against
//! every built-in role and a user still waiting for approval), record scope against guessed
//! ids, explanations, access requests, pending accounts and the preview of a change.

use crate::pages::{CSRF, http, post_form};
use holdfast_domain::access::{ADMIN, AUDITOR, MANAGER, REP};
use holdfast_domain::{Module, Right, RoleDef};
use holdfast_test_support::{Client, TestApp, on_both_backends};
use serde_json::{Value, json};

/// What a route needs, written once per route; the expectation for each role is derived from
/// the roles' own rights (`RoleDef::built_in`), not written by hand.
#[derive(Debug, Clone, Copy)]
enum Need {
    /// Anyone, logged in or not.
    Public,
    /// Any logged-in user, even one whose access is still pending.
    LoggedIn,
    /// Any approved, active user.
    Approved,
    /// A right on a module.
    Right(Module, Right),
    /// A right on the module of `{collection}` (contacts in this test).
    Records(Right),
    /// Exporting `{collection}`: the export right on its module and on exports.
    Export,
    /// A signed-in browser session: refused to every API token, whatever the role (the matrix
    /// calls the API with tokens). Making API tokens is such a route.
    SessionOnly,
}

use Need::*;

const ADMIN_EDIT: Need = Right(Module::Administration, self::Right::Edit);
const ADMIN_VIEW: Need = Right(Module::Administration, self::Right::View);

/// Every API route and method: what it needs and a body that is valid enough to reach the
/// permission check. Ordered so that destructive steps come last.
fn api_table() -> Vec<(&'static str, &'static str, Need, Value)> {
    let none = Value::Null;
    vec![
        ("GET", "/healthz", Public, none.clone()),
        ("GET", "/readyz", Public, none.clone()),
        (
            "POST",
            "/api/v1/setup",
            Public,
            json!({"token": "x", "username": "x", "password": "long enough password"}),
        ),
        (
            "POST",
            "/api/v1/auth/login",
            Public,
            json!({"username": "nobody", "password": "long enough password"}),
        ),
        ("GET", "/api/v1/openapi.json", LoggedIn, none.clone()),
        ("GET", "/api/v1/auth/throttles", ADMIN_EDIT, none.clone()),
        (
            "DELETE",
            "/api/v1/auth/throttles?key=user:nobody",
            ADMIN_EDIT,
            none.clone(),
        ),
        (
            "POST",
            "/api/v1/auth/second-factor",
            Public,
            json!({"sign_in_token": "x", "code": "123456"}),
        ),
        (
            "POST",
            "/api/v1/auth/second-factor/passkey-options",
            Public,
            json!({"sign_in_token": "x"}),
        ),
        (
            "POST",
            "/api/v1/auth/second-factor/passkey",
            Public,
            json!({"sign_in_token": "x", "token": "x", "credential": {}}),
        ),
        (
            "POST",
            "/api/v1/auth/passkey/options",
            Public,
            json!({"username": "nobody"}),
        ),
        (
            "POST",
            "/api/v1/auth/passkey",
            Public,
            json!({"token": "x", "credential": {}}),
        ),
        (
            "POST",
            "/api/v1/auth/confirm",
            LoggedIn,
            json!({"password": "wrong password"}),
        ),
        (
            "POST",
            "/api/v1/auth/confirm/options",
            LoggedIn,
            none.clone(),
        ),
        (
            "POST",
            "/api/v1/auth/confirm/passkey",
            LoggedIn,
            json!({"token": "x", "credential": {}}),
        ),
        ("GET", "/api/v1/auth/sign-ins", ADMIN_EDIT, none.clone()),
        ("GET", "/api/v1/me/two-factor", LoggedIn, none.clone()),
        ("POST", "/api/v1/me/two-factor/totp", LoggedIn, none.clone()),
        (
            "POST",
            "/api/v1/me/two-factor/totp/confirm",
            LoggedIn,
            json!({"factor_id": 0, "code": "000000"}),
        ),
        (
            "POST",
            "/api/v1/me/two-factor/recovery-codes",
            LoggedIn,
            json!({"password": "wrong password"}),
        ),
        (
            "POST",
            "/api/v1/me/two-factor/{missing}/remove",
            LoggedIn,
            json!({"password": "wrong password"}),
        ),
        (
            "POST",
            "/api/v1/me/passkeys/options",
            LoggedIn,
            none.clone(),
        ),
        (
            "POST",
            "/api/v1/me/passkeys",
            LoggedIn,
            json!({"token": "x", "credential": {}}),
        ),
        ("GET", "/api/v1/me/sign-ins", LoggedIn, none.clone()),
        ("GET", "/api/v1/me/security-notices", LoggedIn, none.clone()),
        (
            "POST",
            "/api/v1/me/security-notices/{missing}/ack",
            LoggedIn,
            none.clone(),
        ),
        ("GET", "/api/v1/admin/two-factor", ADMIN_EDIT, none.clone()),
        ("GET", "/api/v1/admin/lockdown", ADMIN_VIEW, none.clone()),
        ("GET", "/api/v1/admin/guards", ADMIN_VIEW, none.clone()),
        ("GET", "/api/v1/admin/alerts", ADMIN_VIEW, none.clone()),
        (
            "POST",
            "/api/v1/admin/alerts/test",
            ADMIN_EDIT,
            none.clone(),
        ),
        (
            "POST",
            "/api/v1/admin/guards/{missing}/release",
            ADMIN_EDIT,
            none.clone(),
        ),
        (
            "GET",
            "/api/v1/audit/timeline?user_id={other}",
            ADMIN_VIEW,
            none.clone(),
        ),
        (
            "PUT",
            "/api/v1/admin/lockdown",
            ADMIN_EDIT,
            json!({"on": false}),
        ),
        (
            "POST",
            "/api/v1/users/{missing}/freeze",
            ADMIN_EDIT,
            json!({"reason": "matrix"}),
        ),
        (
            "POST",
            "/api/v1/users/{missing}/unfreeze",
            ADMIN_EDIT,
            none.clone(),
        ),
        (
            "POST",
            "/api/v1/users/{other}/tokens/{missing}/freeze",
            ADMIN_EDIT,
            none.clone(),
        ),
        (
            "POST",
            "/api/v1/users/{other}/tokens/{missing}/unfreeze",
            ADMIN_EDIT,
            none.clone(),
        ),
        (
            "PUT",
            "/api/v1/admin/two-factor/roles/{role}",
            ADMIN_EDIT,
            json!({"required": false}),
        ),
        (
            "GET",
            "/api/v1/users/{other}/sign-in",
            ADMIN_EDIT,
            none.clone(),
        ),
        (
            "DELETE",
            "/api/v1/users/{other}/sessions/{missing}",
            ADMIN_EDIT,
            none.clone(),
        ),
        (
            "DELETE",
            "/api/v1/users/{other}/tokens/{missing}",
            ADMIN_EDIT,
            none.clone(),
        ),
        (
            "POST",
            "/api/v1/users/{missing}/two-factor/reset",
            ADMIN_EDIT,
            none.clone(),
        ),
        ("GET", "/api/v1/me", LoggedIn, none.clone()),
        (
            "PUT",
            "/api/v1/me/password",
            LoggedIn,
            json!({"current_password": "wrong password", "new_password": "another long password"}),
        ),
        ("GET", "/api/v1/me/sessions", LoggedIn, none.clone()),
        (
            "DELETE",
            "/api/v1/me/sessions/{missing}",
            LoggedIn,
            none.clone(),
        ),
        ("GET", "/api/v1/me/tokens", LoggedIn, none.clone()),
        (
            "POST",
            "/api/v1/me/tokens",
            SessionOnly,
            json!({"name": "matrix", "password": "correct horse battery"}),
        ),
        (
            "DELETE",
            "/api/v1/me/tokens/{missing}",
            LoggedIn,
            none.clone(),
        ),
        ("GET", "/api/v1/me/notifications", LoggedIn, none.clone()),
        (
            "POST",
            "/api/v1/me/notifications/read",
            LoggedIn,
            none.clone(),
        ),
        (
            "GET",
            "/api/v1/access/explain?permission=deals.view",
            LoggedIn,
            none.clone(),
        ),
        ("GET", "/api/v1/access/summary/me", LoggedIn, none.clone()),
        (
            "GET",
            "/api/v1/access/summary/{other}",
            ADMIN_VIEW,
            none.clone(),
        ),
        (
            "GET",
            "/api/v1/access/explain?user_id={other}&permission=deals.view",
            ADMIN_VIEW,
            none.clone(),
        ),
        ("GET", "/api/v1/access/modules", LoggedIn, none.clone()),
        ("GET", "/api/v1/access/requests", LoggedIn, none.clone()),
        (
            "POST",
            "/api/v1/access/requests",
            Approved,
            json!({"permission": "exports.export", "reason": "quarterly report"}),
        ),
        (
            "GET",
            "/api/v1/access/requests/{request}",
            ADMIN_EDIT,
            none.clone(),
        ),
        (
            "POST",
            "/api/v1/access/requests/{request}/decline",
            ADMIN_EDIT,
            json!({"note": "not now"}),
        ),
        ("GET", "/api/v1/access/roles", ADMIN_VIEW, none.clone()),
        (
            "PUT",
            "/api/v1/access/roles/{role}",
            ADMIN_EDIT,
            json!({"name": "Field sales", "rights": ["contacts.view"], "scope": "own", "dry_run": true}),
        ),
        (
            "DELETE",
            "/api/v1/access/roles/{role}?dry_run=true",
            ADMIN_EDIT,
            none.clone(),
        ),
        ("GET", "/api/v1/access/teams", ADMIN_VIEW, none.clone()),
        (
            "POST",
            "/api/v1/access/teams",
            ADMIN_EDIT,
            json!({"name": "North", "dry_run": true}),
        ),
        (
            "PUT",
            "/api/v1/access/teams/{team}",
            ADMIN_EDIT,
            json!({"name": "East", "dry_run": true}),
        ),
        (
            "DELETE",
            "/api/v1/access/teams/{team}?dry_run=true",
            ADMIN_EDIT,
            none.clone(),
        ),
        (
            "PUT",
            "/api/v1/access/modules/{module}",
            ADMIN_EDIT,
            json!({"on": false, "dry_run": true}),
        ),
        ("GET", "/api/v1/access/reviews", ADMIN_VIEW, none.clone()),
        (
            "POST",
            "/api/v1/access/reviews/{other}",
            ADMIN_EDIT,
            json!({"outcome": "confirmed"}),
        ),
        ("GET", "/api/v1/access/report", ADMIN_VIEW, none.clone()),
        ("GET", "/api/v1/users", ADMIN_VIEW, none.clone()),
        (
            "POST",
            "/api/v1/users",
            ADMIN_EDIT,
            json!({"username": "x", "password": "short"}),
        ),
        ("GET", "/api/v1/users/{other}", ADMIN_VIEW, none.clone()),
        (
            "PATCH",
            "/api/v1/users/{other}",
            ADMIN_EDIT,
            json!({"display_name": "Boss"}),
        ),
        (
            "POST",
            "/api/v1/users/{other}/password",
            ADMIN_EDIT,
            json!({"password": "short"}),
        ),
        (
            "POST",
            "/api/v1/users/{missing}/revoke-sessions",
            ADMIN_EDIT,
            none.clone(),
        ),
        (
            "POST",
            "/api/v1/users/{missing}/revoke-tokens",
            ADMIN_EDIT,
            none.clone(),
        ),
        (
            "GET",
            "/api/v1/custom-fields",
            Records(self::Right::View),
            none.clone(),
        ),
        (
            "POST",
            "/api/v1/custom-fields",
            ADMIN_EDIT,
            json!({"entity": "contact", "key": "?", "label": "", "kind": "text"}),
        ),
        (
            "DELETE",
            "/api/v1/custom-fields/{missing}",
            ADMIN_EDIT,
            none.clone(),
        ),
        (
            "GET",
            "/api/v1/pipelines",
            Records(self::Right::View),
            none.clone(),
        ),
        (
            "PUT",
            "/api/v1/pipelines/{missing}",
            ADMIN_EDIT,
            json!({"name": "", "stages": []}),
        ),
        ("GET", "/api/v1/audit", ADMIN_VIEW, none.clone()),
        ("GET", "/api/v1/security", ADMIN_VIEW, none.clone()),
        (
            "POST",
            "/api/v1/security/backup-key-stored",
            ADMIN_EDIT,
            none.clone(),
        ),
        ("GET", "/api/v1/backups", ADMIN_EDIT, none.clone()),
        ("POST", "/api/v1/backups", ADMIN_EDIT, none.clone()),
        (
            "POST",
            "/api/v1/backups/{missing}/drill",
            ADMIN_EDIT,
            none.clone(),
        ),
        (
            "GET",
            "/api/v1/backups/{missing}/records",
            ADMIN_EDIT,
            none.clone(),
        ),
        (
            "POST",
            "/api/v1/backups/{missing}/restore",
            ADMIN_EDIT,
            json!({"ids": ["contact:999999"]}),
        ),
        (
            "POST",
            "/api/v1/revert",
            ADMIN_EDIT,
            json!({"to": "2026-01-01T00:00:00Z", "dry_run": true}),
        ),
        (
            "GET",
            "/api/v1/{collection}",
            Records(self::Right::View),
            none.clone(),
        ),
        (
            "POST",
            "/api/v1/{collection}",
            Records(self::Right::Create),
            json!({"name": "Matrix"}),
        ),
        (
            "GET",
            "/api/v1/{collection}/export?q=Owned",
            Export,
            none.clone(),
        ),
        (
            "GET",
            "/api/v1/{collection}/{id}",
            Records(self::Right::View),
            none.clone(),
        ),
        (
            "PATCH",
            "/api/v1/{collection}/{id}",
            Records(self::Right::Edit),
            json!({"title": "Buyer", "expected_version": 99}),
        ),
        (
            "GET",
            "/api/v1/{collection}/{id}/versions",
            Records(self::Right::View),
            none.clone(),
        ),
        (
            "GET",
            "/api/v1/{collection}/{id}/versions/1",
            Records(self::Right::View),
            none.clone(),
        ),
        (
            "POST",
            "/api/v1/{collection}/{id}/versions/1/restore",
            Records(self::Right::Edit),
            json!({"expected_version": 99}),
        ),
        (
            "GET",
            "/api/v1/{collection}/{id}/as-of?at=2030-01-01T00:00:00Z",
            Records(self::Right::View),
            none.clone(),
        ),
        (
            "POST",
            "/api/v1/{collection}/{id}/restore-to-time",
            Records(self::Right::Restore),
            json!({"at": "2000-01-01T00:00:00Z"}),
        ),
        (
            "GET",
            "/api/v1/{collection}/{id}/diff?from=1&to=1",
            Records(self::Right::View),
            none.clone(),
        ),
        (
            "GET",
            "/api/v1/recycle-bin",
            Right(Module::RecycleBin, self::Right::View),
            none.clone(),
        ),
        (
            "DELETE",
            "/api/v1/{collection}/{id}?expected_version=99",
            Records(self::Right::Delete),
            none.clone(),
        ),
        (
            "POST",
            "/api/v1/{collection}/{id}/restore",
            Records(self::Right::Restore),
            json!({}),
        ),
        (
            "DELETE",
            "/api/v1/recycle-bin/{collection}/{id}?reason=matrix",
            Right(Module::RecycleBin, self::Right::Delete),
            none.clone(),
        ),
        ("POST", "/api/v1/auth/logout", LoggedIn, none.clone()),
        // Ends every token of the caller: last.
        ("POST", "/api/v1/me/not-me", LoggedIn, json!({})),
    ]
}

/// Every page route and method, as [`api_table`].
fn page_table() -> Vec<(&'static str, &'static str, Need)> {
    vec![
        ("GET", "/assets/app.css", Public),
        ("GET", "/assets/app.js", Public),
        ("GET", "/login", Public),
        ("POST", "/login", Public),
        ("GET", "/setup", Public),
        ("POST", "/setup", Public),
        ("POST", "/language", Public),
        ("GET", "/login/second-factor", Public),
        ("POST", "/login/second-factor", Public),
        ("GET", "/confirm", LoggedIn),
        ("POST", "/confirm", LoggedIn),
        ("POST", "/settings/two-factor/totp", LoggedIn),
        ("POST", "/settings/two-factor/totp/confirm", LoggedIn),
        ("POST", "/settings/two-factor/recovery-codes", LoggedIn),
        ("POST", "/settings/two-factor/{missing}/remove", LoggedIn),
        ("POST", "/notices/{missing}/ack", LoggedIn),
        ("POST", "/notices/{missing}/not-me", LoggedIn),
        ("GET", "/admin/sign-in", ADMIN_EDIT),
        ("POST", "/admin/sign-in/roles/{role}", ADMIN_EDIT),
        ("POST", "/admin/sign-in/throttles/clear", ADMIN_EDIT),
        ("GET", "/admin/users/{other}/sign-in", ADMIN_EDIT),
        (
            "POST",
            "/admin/users/{missing}/two-factor/reset",
            ADMIN_EDIT,
        ),
        ("POST", "/admin/users/{missing}/freeze", ADMIN_EDIT),
        ("POST", "/admin/users/{missing}/unfreeze", ADMIN_EDIT),
        (
            "POST",
            "/admin/users/{other}/tokens/{missing}/freeze",
            ADMIN_EDIT,
        ),
        (
            "POST",
            "/admin/users/{other}/tokens/{missing}/unfreeze",
            ADMIN_EDIT,
        ),
        ("POST", "/admin/security/lockdown", ADMIN_EDIT),
        ("GET", "/admin/timeline", ADMIN_VIEW),
        ("POST", "/admin/guards/{missing}/release", ADMIN_EDIT),
        ("GET", "/admin/revert", ADMIN_EDIT),
        ("POST", "/admin/revert", ADMIN_EDIT),
        (
            "POST",
            "/admin/users/{other}/sessions/{missing}/revoke",
            ADMIN_EDIT,
        ),
        (
            "POST",
            "/admin/users/{other}/tokens/{missing}/revoke",
            ADMIN_EDIT,
        ),
        ("GET", "/", LoggedIn),
        ("GET", "/settings", LoggedIn),
        ("GET", "/security-basics", LoggedIn),
        ("GET", "/policy", LoggedIn),
        ("POST", "/policy", LoggedIn),
        ("POST", "/settings/password", LoggedIn),
        ("POST", "/settings/tokens", LoggedIn),
        ("POST", "/settings/tokens/{missing}/revoke", LoggedIn),
        ("GET", "/access", LoggedIn),
        ("GET", "/access/request", LoggedIn),
        ("POST", "/access/requests", Approved),
        ("POST", "/access/requests/{request}/decline", ADMIN_EDIT),
        ("POST", "/access/notifications/read", LoggedIn),
        ("GET", "/admin/access", ADMIN_VIEW),
        ("GET", "/admin/access/explain", ADMIN_VIEW),
        ("POST", "/admin/access/modules/{module}", ADMIN_EDIT),
        ("GET", "/admin/access/teams", ADMIN_VIEW),
        ("POST", "/admin/access/teams", ADMIN_EDIT),
        ("POST", "/admin/access/teams/{team}", ADMIN_EDIT),
        ("POST", "/admin/access/teams/{team}/delete", ADMIN_EDIT),
        ("GET", "/admin/access/roles", ADMIN_VIEW),
        ("GET", "/admin/access/roles/{role}", ADMIN_VIEW),
        ("POST", "/admin/access/roles/{role}", ADMIN_EDIT),
        ("POST", "/admin/access/roles/{role}/delete", ADMIN_EDIT),
        ("POST", "/admin/access/reviews/{other}", ADMIN_EDIT),
        ("GET", "/admin/users", ADMIN_VIEW),
        ("POST", "/admin/users", ADMIN_EDIT),
        ("POST", "/admin/users/{other}/access", ADMIN_EDIT),
        ("POST", "/admin/users/{missing}/active", ADMIN_EDIT),
        ("POST", "/admin/users/{missing}/password", ADMIN_EDIT),
        ("POST", "/admin/users/{missing}/revoke-sessions", ADMIN_EDIT),
        ("POST", "/admin/users/{missing}/revoke-tokens", ADMIN_EDIT),
        ("GET", "/admin/backups", ADMIN_EDIT),
        ("GET", "/admin/security", ADMIN_VIEW),
        ("GET", "/admin/security/recovery-sheet", ADMIN_EDIT),
        ("POST", "/admin/security/backup-key-stored", ADMIN_EDIT),
        ("POST", "/admin/security/test-alert", ADMIN_EDIT),
        ("GET", "/admin/incident", ADMIN_VIEW),
        ("POST", "/admin/incident/responsible", ADMIN_EDIT),
        ("POST", "/admin/incident/policy", ADMIN_EDIT),
        ("POST", "/admin/backups/run", ADMIN_EDIT),
        ("GET", "/admin/backups/{missing}", ADMIN_EDIT),
        ("POST", "/admin/backups/{missing}/drill", ADMIN_EDIT),
        ("POST", "/admin/backups/{missing}/restore", ADMIN_EDIT),
        ("GET", "/board", Right(Module::Deals, self::Right::View)),
        (
            "POST",
            "/board/{missing}/move",
            Right(Module::Deals, self::Right::Edit),
        ),
        (
            "GET",
            "/recycle-bin",
            Right(Module::RecycleBin, self::Right::View),
        ),
        ("GET", "/{collection}", Records(self::Right::View)),
        ("POST", "/{collection}", Records(self::Right::Create)),
        ("GET", "/{collection}/new", Records(self::Right::Create)),
        ("GET", "/{collection}/export", Export),
        ("GET", "/{collection}/{id}", Records(self::Right::View)),
        ("GET", "/{collection}/{id}/edit", Records(self::Right::Edit)),
        (
            "POST",
            "/{collection}/{id}/edit",
            Records(self::Right::Edit),
        ),
        (
            "GET",
            "/{collection}/{id}/history",
            Records(self::Right::View),
        ),
        (
            "POST",
            "/{collection}/{id}/history/{version}/restore",
            Records(self::Right::Edit),
        ),
        (
            "POST",
            "/{collection}/{id}/restore-to-time",
            Records(self::Right::Restore),
        ),
        (
            "POST",
            "/{collection}/{id}/done",
            Records(self::Right::Edit),
        ),
        (
            "POST",
            "/{collection}/{id}/delete",
            Records(self::Right::Delete),
        ),
        (
            "POST",
            "/recycle-bin/{collection}/{id}/restore",
            Records(self::Right::Restore),
        ),
        ("POST", "/logout", LoggedIn),
    ]
}

/// Whether `role` (or a pending account, `None`) meets `need`.
fn expected(role: Option<&str>, need: Need) -> bool {
    let rights = |role: &str| {
        RoleDef::built_in()
            .into_iter()
            .find(|r| r.key == role)
            .unwrap()
            .rights
    };
    match (need, role) {
        (Public | LoggedIn, _) => true,
        (SessionOnly, _) => false,
        (_, None) => false,
        (Approved, Some(_)) => true,
        (Right(module, right), Some(role)) => rights(role).contains(&(module, right)),
        (Records(right), Some(role)) => rights(role).contains(&(Module::Contacts, right)),
        (Export, Some(role)) => {
            rights(role).contains(&(Module::Contacts, self::Right::Export))
                && rights(role).contains(&(Module::Exports, self::Right::Export))
        }
    }
}

/// The path of `route` with its parameters filled in for `user`.
fn fill(route: &str, ids: &Ids, user: &Client) -> String {
    route
        .replace("{collection}", "contacts")
        .replace("{id}", &ids.contact_of[&user.user_id].to_string())
        .replace("{version}", "1")
        .replace("{missing}", "999999")
        .replace("{other}", &ids.admin.to_string())
        .replace("{request}", &ids.request.to_string())
        .replace("{role}", "field_sales")
        .replace("{team}", &ids.team.to_string())
        .replace("{module}", "exports")
}

struct Ids {
    admin: i64,
    request: i64,
    team: i64,
    contact_of: std::collections::HashMap<i64, i64>,
}

/// An approved user of each built-in role, and one waiting for approval.
async fn cast(app: &TestApp) -> (Client, Vec<(Option<&'static str>, Client)>) {
    let admin = app.admin().await;
    let mut users = vec![(Some(ADMIN), admin.clone())];
    for role in [MANAGER, REP, AUDITOR] {
        users.push((Some(role), app.user(&format!("u_{role}"), role).await));
    }
    users.push((None, pending_user(app, &admin, "newcomer").await));
    (admin, users)
}

/// A user an administrator created and has not approved yet, with an API token of their own.
pub async fn pending_user(app: &TestApp, admin: &Client, username: &str) -> Client {
    let created = admin
        .post(
            "/api/v1/users",
            json!({"username": username, "password": "correct horse battery", "role": "rep"}),
        )
        .await
        .expect(201);
    assert_eq!(created["pending"], true);
    let login = app
        .anonymous()
        .post(
            "/api/v1/auth/login",
            json!({"username": username, "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(
        login.status, 200,
        "a pending user can log in: {}",
        login.body
    );
    let id = created["id"].as_i64().unwrap();
    let actor = holdfast_test_support::actor(&app.app, id).await;
    let token = holdfast_app::auth::issue_token(&app.app, &actor, "t", "tests", None)
        .await
        .unwrap();
    app.client_with_token(id, &token.secret)
}

/// A session cookie (with the anti-forgery cookie) for an existing user.
async fn cookies(app: &TestApp, username: &str) -> String {
    let response = http()
        .post(format!("{}/api/v1/auth/login", app.base_url))
        .json(&json!({"username": username, "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{username} logs in");
    let cookie = response.headers()["set-cookie"].to_str().unwrap();
    format!(
        "{}; holdfast_csrf={CSRF}",
        cookie.split(';').next().unwrap()
    )
}

async fn setup_ids(app: &TestApp, admin: &Client, users: &[(Option<&str>, Client)]) -> Ids {
    let team = admin
        .post("/api/v1/access/teams", json!({"name": "East"}))
        .await
        .expect(201)["team_id"]
        .as_i64()
        .unwrap();
    admin
        .put(
            "/api/v1/access/roles/field_sales",
            json!({"name": "Field sales", "rights": ["contacts.view"], "scope": "own"}),
        )
        .await
        .expect(200);
    let request = admin
        .post(
            "/api/v1/access/requests",
            json!({"permission": "exports.export", "reason": "the matrix needs one"}),
        )
        .await
        .expect(201)["id"]
        .as_i64()
        .unwrap();
    let mut contact_of = std::collections::HashMap::new();
    for (_, user) in users {
        let id = admin
            .create(
                "contacts",
                json!({"name": format!("Owned by {}", user.user_id), "owner_id": user.user_id}),
            )
            .await;
        contact_of.insert(user.user_id, id);
    }
    let _ = app;
    Ids {
        admin: admin.user_id,
        request,
        team,
        contact_of,
    }
}

on_both_backends!(every_route_and_page_against_every_role, |app| {
    let (admin, users) = cast(&app).await;
    let ids = setup_ids(&app, &admin, &users).await;
    // Every route of the API is in the table: a route without a permission rule fails here.
    let table = api_table();
    for doc in holdfast_web::routes().docs() {
        for operation in &doc.operations {
            let listed = table.iter().any(|(method, path, ..)| {
                *method == operation.method
                    && normalise(path.split('?').next().unwrap_or_default()) == normalise(&doc.path)
            });
            assert!(
                listed,
                "{} {} has no row in the permission matrix",
                operation.method, doc.path
            );
        }
    }
    let (_, pages) = holdfast_web::views::pages();
    let page_rows = page_table();
    for page in &pages {
        for method in page.methods {
            let listed = page_rows
                .iter()
                .any(|(m, path, _)| m == method && normalise(path) == normalise(page.path));
            assert!(
                listed,
                "page {method} {} has no row in the permission matrix",
                page.path
            );
        }
    }
    let mut failures = Vec::new();
    for (role, client) in &users {
        for (method, route, need, body) in &table {
            let path = fill(route, &ids, client);
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let body = (!body.is_null()).then(|| body.clone());
            let reply = client.send(method.clone(), &path, body).await;
            let allowed = expected(*role, *need);
            let status = reply.status.as_u16();
            let ok = match need {
                // Public routes answer for themselves (a closed setup, wrong credentials).
                Public => status != 500,
                _ if allowed => status != 403 && status != 401 && status != 500,
                _ => status == 403,
            };
            if !ok {
                failures.push(format!(
                    "{role:?} {method} {path}: {status} (expected {}) {}",
                    if allowed { "allowed" } else { "403" },
                    reply.body
                ));
            }
        }
        let username = if role.is_none() {
            "newcomer".to_owned()
        } else if *role == Some(ADMIN) {
            "admin".to_owned()
        } else {
            format!("u_{}", role.unwrap())
        };
        let cookie = cookies(&app, &username).await;
        for (method, route, need) in &page_rows {
            if *route == "/logout" {
                continue;
            }
            let path = fill(route, &ids, client);
            let response = if *method == "GET" {
                http()
                    .get(format!("{}{path}", app.base_url))
                    .header("Cookie", &cookie)
                    .send()
                    .await
                    .unwrap()
            } else {
                post_form(
                    &app,
                    &path,
                    &cookie,
                    &[
                        ("csrf", CSRF),
                        ("expected_version", "99"),
                        ("reason", "matrix"),
                        ("role", "rep"),
                        ("note", "matrix"),
                    ],
                )
                .await
            };
            let status = response.status().as_u16();
            let allowed = expected(*role, *need);
            let to_login = response
                .headers()
                .get("location")
                .is_some_and(|l| l.to_str().unwrap_or("").starts_with("/login"));
            let ok = match need {
                Public => status != 500,
                _ if allowed => status != 403 && status != 500 && !to_login,
                _ => status == 403,
            };
            if !ok {
                failures.push(format!(
                    "{role:?} page {method} {path}: {status} (expected {})",
                    if allowed { "allowed" } else { "403" }
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
});

/// `/api/v1/{collection}/{id}/versions/1` and `/api/v1/{collection}/{id}/versions/{version}`
/// name the same route.
fn normalise(path: &str) -> String {
    path.split('/')
        .map(|part| {
            if part.starts_with('{') || part.chars().all(|c| c.is_ascii_digit()) && !part.is_empty()
            {
                "*".to_owned()
            } else {
                match part {
                    "approve" | "decline" | "revoke" | "me" => "*".to_owned(),
                    // `export` is a fixed segment beside `{id}`; keep it apart.
                    "export" => "export".to_owned(),
                    other => other.to_owned(),
                }
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The ids of `reply`'s items.
fn ids_of(reply: &Value) -> Vec<i64> {
    reply["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_i64().unwrap())
        .collect()
}

on_both_backends!(guessed_ids_reach_nothing_outside_the_scope, |app| {
    let admin = app.admin().await;
    let li = app.user("li", REP).await;
    let chen = app.user("chen", REP).await;
    // Chen's customer, with a contact, a deal and a follow-up.
    let company = chen
        .create(
            "companies",
            json!({"name": "陈氏贸易", "phone": "021 5555 0101"}),
        )
        .await;
    let contact = chen
        .create(
            "contacts",
            json!({"name": "陈静", "company_id": company, "mobile": "13800001234"}),
        )
        .await;
    chen.create(
        "deals",
        json!({"name": "陈氏 renewal", "company_id": company, "amount_minor": 500000}),
    )
    .await;
    // Li's own contact, linked (by an administrator) to Chen's company.
    let mine = li.create("contacts", json!({"name": "李雷"})).await;
    admin
        .patch(
            &format!("/api/v1/contacts/{mine}"),
            json!({"company_id": company, "expected_version": 1}),
        )
        .await
        .expect(200);

    // By id: read, change, delete, history, a version, a diff, as it was: all refused, saying why.
    for path in [
        format!("/api/v1/contacts/{contact}"),
        format!("/api/v1/contacts/{contact}/versions"),
        format!("/api/v1/contacts/{contact}/versions/1"),
        format!("/api/v1/contacts/{contact}/diff?from=1&to=1"),
        format!("/api/v1/contacts/{contact}/as-of?at=2030-01-01T00:00:00Z"),
    ] {
        let reply = li.get(&path).await;
        assert_eq!(
            (reply.status.as_u16(), reply.error_code()),
            (403, "out_of_scope"),
            "{path}"
        );
        assert_eq!(
            reply.body["error"]["grantable_by"],
            json!(["chen", "admin"]),
            "{path}"
        );
        let scope = &reply.body["error"]["reasons"][3];
        assert_eq!(
            (scope["check"].as_str(), scope["params"]["owner"].as_str()),
            (Some("scope"), Some("chen"))
        );
        assert_eq!(
            reply.body["error"]["request_access"],
            "POST /api/v1/access/requests"
        );
    }
    let edit = li
        .patch(
            &format!("/api/v1/contacts/{contact}"),
            json!({"title": "x", "expected_version": 1}),
        )
        .await;
    assert_eq!(edit.error_code(), "out_of_scope");
    let delete = li.delete(&format!("/api/v1/contacts/{contact}")).await;
    assert_eq!(delete.error_code(), "out_of_scope");
    // Handing their own contact to Chen is outside a rep's reach too.
    let give = li
        .patch(
            &format!("/api/v1/contacts/{mine}"),
            json!({"owner_id": chen.user_id, "expected_version": 2}),
        )
        .await;
    assert_eq!(give.error_code(), "out_of_scope");

    // Lists, searches and counts: only Li's own.
    assert_eq!(
        ids_of(&li.get("/api/v1/contacts").await.expect(200)),
        [mine]
    );
    assert_eq!(
        ids_of(&li.get("/api/v1/companies").await.expect(200)),
        Vec::<i64>::new()
    );
    assert_eq!(
        ids_of(&li.get("/api/v1/deals").await.expect(200)),
        Vec::<i64>::new()
    );
    for q in ["陈静", "1380000", "陈氏"] {
        let found = ids_of(&li.get(&format!("/api/v1/contacts?q={q}")).await.expect(200));
        assert!(
            !found.contains(&contact),
            "search {q} finds nothing of Chen's: {found:?}"
        );
        let theirs = ids_of(
            &chen
                .get(&format!("/api/v1/contacts?q={q}"))
                .await
                .expect(200),
        );
        assert!(theirs.contains(&contact), "Chen finds it with {q}");
    }
    assert_eq!(
        ids_of(
            &li.get(&format!("/api/v1/contacts?company_id={company}"))
                .await
                .expect(200)
        ),
        [mine]
    );
    // Li's contact links to a company Li cannot see: its title is not given away.
    let own = li
        .get(&format!("/api/v1/contacts/{mine}"))
        .await
        .expect(200);
    assert_eq!(own["links"]["company_id"]["title"], Value::Null, "{own}");

    // Chen deleting the company would take Li's contact along: refused, so nothing of Li's
    // vanishes into a deletion Li cannot see.
    let take_along = chen.delete(&format!("/api/v1/companies/{company}")).await;
    assert_eq!(
        take_along.error_code(),
        "dependents_out_of_scope",
        "{}",
        take_along.body
    );
    assert!(
        take_along.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("李雷")
    );
    // The recycle bin: Chen's deletion is not in Li's bin and cannot be restored by Li.
    chen.delete(&format!("/api/v1/contacts/{contact}"))
        .await
        .expect(200);
    let bin = li.get("/api/v1/recycle-bin").await.expect(200);
    assert_eq!(bin["items"], json!([]), "{bin}");
    let chen_bin = chen.get("/api/v1/recycle-bin").await.expect(200);
    assert_eq!(chen_bin["items"].as_array().unwrap().len(), 1);
    let restore = li
        .post(&format!("/api/v1/contacts/{contact}/restore"), json!({}))
        .await;
    assert_eq!(restore.error_code(), "out_of_scope");
    let purge = admin
        .delete(&format!(
            "/api/v1/recycle-bin/contacts/{contact}?reason=test"
        ))
        .await;
    assert_eq!(purge.status, 200, "{}", purge.body);
    // Purged: its history went with it, for everyone.
    assert_eq!(
        li.get(&format!("/api/v1/contacts/{contact}/versions"))
            .await
            .status
            .as_u16(),
        404
    );

    // The pipeline chart on Li's home page counts Li's deals only (none): Chen's 5,000 is not there.
    let home = page_text(&app, "li", "/").await;
    assert!(!home.contains("5,000"), "{home}");
    assert!(
        page_text(&app, "chen", "/").await.contains("5,000"),
        "Chen's chart counts it"
    );
    // The administrator reaches everything.
    assert_eq!(
        admin
            .get(&format!("/api/v1/companies/{company}"))
            .await
            .status,
        200
    );
});

/// A page as a logged-in user, in English.
async fn page_text(app: &TestApp, username: &str, path: &str) -> String {
    let cookie = cookies(app, username).await;
    http()
        .get(format!("{}{path}", app.base_url))
        .header("Cookie", cookie)
        .header("Accept-Language", "en")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Checks `explain` answers: the code of the failing step (or `None` when allowed).
async fn failing(client: &Client, query: &str) -> Option<String> {
    let answer = client
        .get(&format!("/api/v1/access/explain?{query}"))
        .await
        .expect(200);
    answer["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["ok"] == false)
        .map(|s| s["code"].as_str().unwrap().to_owned())
}

on_both_backends!(
    every_reason_is_explained_to_users_and_administrators,
    |app| {
        let admin = app.admin().await;
        let rep = app.user("rep", REP).await;
        let other = app.user("other", REP).await;
        let theirs = other
            .create(
                "contacts",
                json!({"name": "Theirs", "phone": "010 1234 5678"}),
            )
            .await;
        let mine = rep
            .create(
                "contacts",
                json!({"name": "Mine", "phone": "010 8765 4321", "email": "a@b.cn"}),
            )
            .await;
        // Allowed, by role and within scope.
        assert_eq!(failing(&rep, &format!("record=contact:{mine}")).await, None);
        // A record outside one's reach is not explained to oneself: that would tell whether it
        // exists, whose it is and where it stands. The answer is the one for a missing id.
        let unseen = rep
            .get(&format!("/api/v1/access/explain?record=contact:{theirs}"))
            .await;
        assert_eq!(unseen.status, 404, "{}", unseen.body);
        let missing = rep
            .get("/api/v1/access/explain?record=contact:999999")
            .await;
        assert_eq!(unseen.body["error"]["code"], missing.body["error"]["code"]);
        assert!(
            !unseen.body.to_string().contains("other"),
            "{}",
            unseen.body
        );
        // Once one has asked for access to it, the record's refusal is explained: out_of_scope.
        rep.post(
            "/api/v1/access/requests",
            json!({"record": format!("contact:{theirs}"), "reason": "同一个客户"}),
        )
        .await
        .expect(201);
        assert_eq!(
            failing(&rep, &format!("record=contact:{theirs}"))
                .await
                .as_deref(),
            Some("out_of_scope")
        );
        // no_right.
        assert_eq!(
            failing(&rep, "permission=administration.edit")
                .await
                .as_deref(),
            Some("no_right")
        );
        // Another user's access: only for auditors and administrators.
        let nosy = rep
            .get(&format!(
                "/api/v1/access/explain?user_id={}&permission=deals.view",
                other.user_id
            ))
            .await;
        assert_eq!(nosy.error_code(), "no_right");
        assert_eq!(
            failing(
                &admin,
                &format!("user_id={}&record=contact:{theirs}", rep.user_id)
            )
            .await
            .as_deref(),
            Some("out_of_scope")
        );
        // field_hidden and field_read_only, from a custom role.
        admin
        .put(
            "/api/v1/access/roles/careful_rep",
            json!({"name": "Careful rep", "rights": ["contacts.view", "contacts.create", "contacts.edit"], "scope": "own",
                   "fields": {"contact.phone": "hidden", "contact.email": "read_only"}}),
        )
        .await
        .expect(200);
        admin
            .patch(
                &format!("/api/v1/users/{}", rep.user_id),
                json!({"role": "careful_rep"}),
            )
            .await
            .expect(200);
        assert_eq!(
            failing(&rep, &format!("record=contact:{mine}&field=phone"))
                .await
                .as_deref(),
            Some("field_hidden")
        );
        assert_eq!(
            failing(
                &rep,
                &format!("record=contact:{mine}&field=email&permission=contacts.edit")
            )
            .await
            .as_deref(),
            Some("field_read_only")
        );
        assert_eq!(
            failing(&rep, &format!("record=contact:{mine}&field=email")).await,
            None
        );
        // What the field rules do: the phone is not shown nor searchable, the e-mail not changeable.
        let shown = rep
            .get(&format!("/api/v1/contacts/{mine}"))
            .await
            .expect(200);
        assert!(shown.get("phone").is_none_or(Value::is_null), "{shown}");
        assert_eq!(shown["email"], "a@b.cn");
        assert_eq!(
            ids_of(&rep.get("/api/v1/contacts?q=8765").await.expect(200)),
            Vec::<i64>::new()
        );
        assert_eq!(
            ids_of(&rep.get("/api/v1/contacts?q=Mine").await.expect(200)),
            [mine]
        );
        let change = rep
            .patch(
                &format!("/api/v1/contacts/{mine}"),
                json!({"email": "c@d.cn", "expected_version": 1}),
            )
            .await;
        assert_eq!(
            change.body["error"]["fields"][0]["code"], "read_only",
            "{}",
            change.body
        );
        let change = rep
            .patch(
                &format!("/api/v1/contacts/{mine}"),
                json!({"phone": "010 0000 0000", "expected_version": 1}),
            )
            .await;
        assert_eq!(
            change.body["error"]["fields"][0]["code"], "field_hidden",
            "{}",
            change.body
        );
        let history = rep
            .get(&format!("/api/v1/contacts/{mine}/versions"))
            .await
            .expect(200);
        assert!(
            history["items"][0]["snapshot"].get("phone").is_none(),
            "{history}"
        );
        // module_off: the whole organisation but administrators.
        admin
            .put("/api/v1/access/modules/contacts", json!({"on": false}))
            .await
            .expect(200);
        assert_eq!(
            failing(&rep, &format!("record=contact:{mine}"))
                .await
                .as_deref(),
            Some("module_off")
        );
        let off = rep.get("/api/v1/contacts").await;
        assert_eq!((off.status.as_u16(), off.error_code()), (403, "module_off"));
        assert!(
            off.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("switched off")
        );
        assert_eq!(
            admin
                .get(&format!("/api/v1/contacts/{theirs}"))
                .await
                .status,
            200,
            "administrators still see it"
        );
        admin
            .put("/api/v1/access/modules/contacts", json!({"on": true}))
            .await
            .expect(200);
        // account_deactivated, asked by an administrator.
        admin
            .patch(
                &format!("/api/v1/users/{}", other.user_id),
                json!({"active": false}),
            )
            .await
            .expect(200);
        assert_eq!(
            failing(
                &admin,
                &format!("user_id={}&permission=contacts.view", other.user_id)
            )
            .await
            .as_deref(),
            Some("account_deactivated")
        );
        // Deactivation hides nothing: the administrator still reaches the deactivated user's record.
        assert_eq!(
            failing(&admin, &format!("record=contact:{theirs}")).await,
            None
        );
        // account_pending.
        let newcomer = pending_user(&app, &admin, "newcomer").await;
        assert_eq!(
            failing(&newcomer, "permission=contacts.view")
                .await
                .as_deref(),
            Some("account_pending")
        );
        let refused = newcomer.get("/api/v1/contacts").await;
        assert_eq!(refused.error_code(), "account_pending");
        assert_eq!(
            refused.body["error"]["request_access"],
            Value::Null,
            "asking is not the answer to a pending account"
        );
        assert_eq!(refused.body["error"]["grantable_by"], json!(["admin"]));
    }
);

on_both_backends!(access_requests_are_approved_declined_and_expire, |app| {
    let admin = app.admin().await;
    let rep = app.user("rep", REP).await;
    let owner = app.user("owner", REP).await;
    let theirs = owner
        .create("contacts", json!({"name": "Shared later"}))
        .await;
    let path = format!("/api/v1/contacts/{theirs}");
    assert_eq!(rep.get(&path).await.error_code(), "out_of_scope");
    // Asking needs a reason.
    let bare = rep
        .post(
            "/api/v1/access/requests",
            json!({"record": format!("contact:{theirs}"), "reason": " "}),
        )
        .await;
    assert_eq!(bare.body["error"]["fields"][0]["field"], "reason");
    let asked = rep
        .post("/api/v1/access/requests", json!({"record": format!("contact:{theirs}"), "reason": "Covering for the owner this week"}))
        .await
        .expect(201);
    let request = asked["id"].as_i64().unwrap();
    assert_eq!(
        (asked["status"].as_str(), asked["permission"].as_str()),
        (Some("pending"), Some("contacts.view"))
    );
    // Another rep can neither see nor decide it; the record's owner and administrators can.
    let bystander = app.user("bystander", REP).await;
    assert_eq!(
        bystander
            .get(&format!("/api/v1/access/requests/{request}"))
            .await
            .status,
        403
    );
    assert_eq!(
        bystander
            .post(
                &format!("/api/v1/access/requests/{request}/approve"),
                json!({})
            )
            .await
            .status,
        403
    );
    assert!(
        page_text(&app, "owner", "/")
            .await
            .contains("1 access request(s) wait for your decision."),
        "the record's owner is told on their home page"
    );
    let to_decide = owner.get("/api/v1/access/requests").await.expect(200);
    assert_eq!(ids_of(&json!({"items": to_decide["to_decide"]})), [request]);
    // The owner approves for two days.
    let until = app.app.now().plus_days(2).to_rfc3339();
    let approved = owner
        .post(
            &format!("/api/v1/access/requests/{request}/approve"),
            json!({"expires_at": until}),
        )
        .await
        .expect(200);
    assert_eq!(approved["status"], "approved");
    assert_eq!(rep.get(&path).await.expect(200)["name"], "Shared later");
    assert!(ids_of(&rep.get("/api/v1/contacts").await.expect(200)).contains(&theirs));
    // View only: the share does not let the rep change it.
    assert_eq!(
        rep.patch(&path, json!({"title": "x", "expected_version": 1}))
            .await
            .error_code(),
        "out_of_scope"
    );
    let chain = rep
        .get(&format!("/api/v1/access/explain?record=contact:{theirs}"))
        .await
        .expect(200);
    assert!(
        chain["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["code"] == "by_grant"),
        "{chain}"
    );
    // The requester is told in the app.
    assert!(
        page_text(&app, "rep", "/")
            .await
            .contains("You have 1 new notification(s)")
    );
    let notes = rep.get("/api/v1/me/notifications").await.expect(200);
    assert_eq!(notes["items"][0]["kind"], "request_approved", "{notes}");
    assert_eq!(notes["items"][0]["read"], false);
    rep.post("/api/v1/me/notifications/read", json!({}))
        .await
        .expect(200);
    assert_eq!(
        rep.get("/api/v1/me/notifications").await.expect(200)["items"][0]["read"],
        true
    );
    // Deciding twice is refused.
    let again = owner
        .post(
            &format!("/api/v1/access/requests/{request}/decline"),
            json!({"note": "no"}),
        )
        .await;
    assert_eq!(again.error_code(), "already_decided");
    // Two days later the share has ended by itself.
    app.clock.advance_days(2);
    assert_eq!(rep.get(&path).await.error_code(), "out_of_scope");
    assert_eq!(
        rep.get(&format!("/api/v1/access/requests/{request}"))
            .await
            .expect(200)["status"],
        "expired"
    );
    // A right on a module: declined with a reason the requester reads.
    let export = rep
        .post(
            "/api/v1/access/requests",
            json!({"permission": "administration.view", "reason": "I want to read the audit log"}),
        )
        .await
        .expect(201)["id"]
        .as_i64()
        .unwrap();
    assert_eq!(
        owner
            .post(
                &format!("/api/v1/access/requests/{export}/approve"),
                json!({})
            )
            .await
            .status,
        403,
        "only administrators grant module rights"
    );
    let no_note = admin
        .post(
            &format!("/api/v1/access/requests/{export}/decline"),
            json!({}),
        )
        .await;
    assert_eq!(no_note.body["error"]["fields"][0]["field"], "note");
    admin
        .post(
            &format!("/api/v1/access/requests/{export}/decline"),
            json!({"note": "Ask your manager for the figures instead"}),
        )
        .await
        .expect(200);
    let notes = rep.get("/api/v1/me/notifications").await.expect(200);
    assert_eq!(notes["items"][0]["kind"], "request_declined");
    assert_eq!(
        notes["items"][0]["detail"]["note"],
        "Ask your manager for the figures instead"
    );
    // Approved without an end, then revoked.
    let audit = rep
        .post(
            "/api/v1/access/requests",
            json!({"permission": "administration.view", "reason": "Audit week"}),
        )
        .await
        .expect(201)["id"]
        .as_i64()
        .unwrap();
    let past = admin
        .post(
            &format!("/api/v1/access/requests/{audit}/approve"),
            json!({"expires_at": "2000-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(past.body["error"]["fields"][0]["code"], "in_the_past");
    admin
        .post(
            &format!("/api/v1/access/requests/{audit}/approve"),
            json!({}),
        )
        .await
        .expect(200);
    assert_eq!(rep.get("/api/v1/audit").await.status, 200);
    let summary = rep.get("/api/v1/access/summary/me").await.expect(200);
    let source = summary["rights"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["permission"] == "administration.view")
        .unwrap()["source"]
        .clone();
    assert_eq!(source, "grant");
    admin
        .post(
            &format!("/api/v1/access/requests/{audit}/revoke"),
            json!({"note": "Audit week is over"}),
        )
        .await
        .expect(200);
    assert_eq!(rep.get("/api/v1/audit").await.error_code(), "no_right");
    // Every step is in the audit log.
    let log = admin.get("/api/v1/audit?limit=1000").await.expect(200);
    let actions: Vec<&str> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions.iter().filter(|a| **a == "access.request").count(),
        3
    );
    assert_eq!(actions.iter().filter(|a| **a == "access.decide").count(), 4);
});

on_both_backends!(new_users_wait_for_approval_and_see_who_approves, |app| {
    let admin = app.admin().await;
    let newcomer = pending_user(&app, &admin, "xiaoming").await;
    let someones = admin
        .create(
            "contacts",
            json!({"name": "Anyone's", "owner_id": newcomer.user_id}),
        )
        .await;
    // Logged in, but nothing: not even the records they own.
    assert_eq!(
        newcomer
            .get(&format!("/api/v1/contacts/{someones}"))
            .await
            .error_code(),
        "account_pending"
    );
    assert_eq!(
        newcomer.get("/api/v1/me").await.expect(200)["pending"],
        true
    );
    let home = page_text(&app, "xiaoming", "/").await;
    assert!(
        home.contains("Your access is awaiting approval")
            && home.contains("Who can approve it: admin"),
        "{home}"
    );
    assert!(
        !home.contains("href=\"/contacts\""),
        "no modules offered: {home}"
    );
    let page = http()
        .get(format!("{}/contacts", app.base_url))
        .header("Cookie", cookies(&app, "xiaoming").await)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 403);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("waiting for an administrator")
    );
    // A pending user cannot ask for single rights: the approval is the answer.
    let asked = newcomer
        .post(
            "/api/v1/access/requests",
            json!({"permission": "contacts.view", "reason": "please"}),
        )
        .await;
    assert_eq!(asked.error_code(), "account_pending");
    // The administrator previews the approval, then approves.
    let preview = admin
        .patch(
            &format!("/api/v1/users/{}", newcomer.user_id),
            json!({"approve": true, "dry_run": true}),
        )
        .await
        .expect(200);
    assert_eq!(preview["applied"], false);
    assert_eq!(
        preview["preview"]["users"][0]["records_gained"], 1,
        "{preview}"
    );
    assert!(
        preview["preview"]["users"][0]["gains"]
            .as_array()
            .unwrap()
            .contains(&json!("contacts.view"))
    );
    assert_eq!(
        newcomer.get("/api/v1/contacts").await.error_code(),
        "account_pending",
        "a dry run changes nothing"
    );
    admin
        .patch(
            &format!("/api/v1/users/{}", newcomer.user_id),
            json!({"approve": true}),
        )
        .await
        .expect(200);
    // Approved: first the password the administrator chose is replaced, then records open.
    assert_eq!(
        newcomer.get("/api/v1/contacts").await.error_code(),
        "password_change_required"
    );
    newcomer
        .put(
            "/api/v1/me/password",
            json!({"current_password": "correct horse battery", "new_password": "my own quiet lighthouse"}),
        )
        .await
        .expect(200);
    // The change revoked their tokens (this one too); their script gets a new one.
    assert_eq!(newcomer.get("/api/v1/me").await.status, 401);
    let actor = holdfast_test_support::actor(&app.app, newcomer.user_id).await;
    let token = holdfast_app::auth::issue_token(&app.app, &actor, "t", "after", None)
        .await
        .unwrap();
    let newcomer = app.client_with_token(newcomer.user_id, &token.secret);
    assert_eq!(
        newcomer
            .get(&format!("/api/v1/contacts/{someones}"))
            .await
            .expect(200)["name"],
        "Anyone's"
    );
    let notes = newcomer.get("/api/v1/me/notifications").await.expect(200);
    assert_eq!(notes["items"][0]["kind"], "account_approved");
    let log = admin.get("/api/v1/audit?limit=1000").await.expect(200);
    let approval = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "user.approve")
        .unwrap()
        .clone();
    assert_eq!(approval["detail"]["before"]["pending"], true, "{approval}");
    assert_eq!(approval["detail"]["after"]["pending"], false);
});

on_both_backends!(
    changes_are_previewed_with_their_numbers_and_audited,
    |app| {
        let admin = app.admin().await;
        let manager = app.user("zhao", MANAGER).await;
        let rep = app.user("li", REP).await;
        let other = app.user("sun", REP).await;
        let team = admin
            .post(
                "/api/v1/access/teams",
                json!({"name": "East", "manager_id": manager.user_id}),
            )
            .await
            .expect(201)["team_id"]
            .as_i64()
            .unwrap();
        for user in [&rep, &other] {
            admin
                .patch(
                    &format!("/api/v1/users/{}", user.user_id),
                    json!({"team_id": team}),
                )
                .await
                .expect(200);
        }
        for n in 0..3 {
            rep.create("contacts", json!({"name": format!("Li {n}")}))
                .await;
        }
        other.create("companies", json!({"name": "Sun Ltd"})).await;
        // The manager reaches the team's 4 records.
        assert_eq!(
            manager.get("/api/v1/contacts").await.expect(200)["items"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
        // Taking Li out of the team: the manager would lose Li's 3 contacts.
        let preview = admin
            .patch(
                &format!("/api/v1/users/{}", rep.user_id),
                json!({"team_id": null, "dry_run": true}),
            )
            .await
            .expect(200)["preview"]
            .clone();
        assert_eq!(preview["users_affected"], 1, "{preview}");
        assert_eq!(preview["users"][0]["user_id"], manager.user_id);
        assert_eq!(preview["users"][0]["records_lost"], 3);
        assert_eq!(preview["records_hidden_from_someone"], 3);
        // Switching companies off: both reps and the manager lose companies.view; Sun Ltd becomes
        // invisible to everyone but administrators.
        let preview = admin
            .put(
                "/api/v1/access/modules/companies",
                json!({"on": false, "dry_run": true}),
            )
            .await
            .expect(200)["preview"]
            .clone();
        assert_eq!(preview["users_affected"], 3, "{preview}");
        assert_eq!(preview["records_hidden_from_someone"], 1);
        // A custom role: previewed against the users who have it.
        admin
            .put(
                "/api/v1/access/roles/lookers",
                json!({"name": "Lookers", "rights": ["contacts.view"], "scope": "all"}),
            )
            .await
            .expect(200);
        admin
            .patch(
                &format!("/api/v1/users/{}", other.user_id),
                json!({"role": "lookers"}),
            )
            .await
            .expect(200);
        let narrower = admin
        .put("/api/v1/access/roles/lookers", json!({"name": "Lookers", "rights": ["contacts.view"], "scope": "own", "dry_run": true}))
        .await
        .expect(200)["preview"]
        .clone();
        assert_eq!(narrower["users"][0]["records_lost"], 3, "{narrower}");
        // Built-in roles are fixed; roles in use cannot be deleted.
        assert_eq!(
            admin
                .put(
                    "/api/v1/access/roles/rep",
                    json!({"name": "x", "scope": "all"})
                )
                .await
                .error_code(),
            "built_in_role"
        );
        assert_eq!(
            admin
                .delete("/api/v1/access/roles/lookers")
                .await
                .error_code(),
            "role_in_use"
        );
        // Applying writes before and after into the audit log.
        admin
            .patch(
                &format!("/api/v1/users/{}", rep.user_id),
                json!({"team_id": null}),
            )
            .await
            .expect(200);
        assert_eq!(
            manager.get("/api/v1/contacts").await.expect(200)["items"],
            json!([])
        );
        let log = admin.get("/api/v1/audit?limit=1000").await.expect(200);
        let change = log["items"]
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .find(|e| e["action"] == "access.user")
            .unwrap()
            .clone();
        assert_eq!(change["detail"]["before"]["team_id"], team, "{change}");
        assert_eq!(change["detail"]["after"]["team_id"], Value::Null);
        assert_eq!(
            change["detail"]["preview"]["records_hidden_from_someone"],
            3
        );
        // Nothing may leave the installation without an active administrator.
        let last = admin
            .patch(
                &format!("/api/v1/users/{}", admin.user_id),
                json!({"role": "rep"}),
            )
            .await;
        assert_eq!(last.error_code(), "last_admin");
    }
);

on_both_backends!(access_reviews_come_due_and_are_flagged, |app| {
    let admin = app.admin().await;
    let rep = app.user("rep", REP).await;
    let reviews = admin.get("/api/v1/access/reviews").await.expect(200);
    assert_eq!(reviews["every_days"], 90);
    assert!(
        reviews["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["overdue"] == false)
    );
    assert!(
        !page_text(&app, "admin", "/")
            .await
            .contains("Access reviews are overdue")
    );
    app.clock.advance_days(89);
    assert!(
        admin.get("/api/v1/access/reviews").await.expect(200)["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["overdue"] == false)
    );
    app.clock.advance_days(1);
    let reviews = admin.get("/api/v1/access/reviews").await.expect(200);
    assert_eq!(
        reviews["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["overdue"] == true)
            .count(),
        2,
        "{reviews}"
    );
    let home = page_text(&app, "admin", "/").await;
    assert!(
        home.contains("Access reviews are overdue for 2 user(s)."),
        "{home}"
    );
    assert!(
        !page_text(&app, "rep", "/")
            .await
            .contains("Access reviews are overdue"),
        "reps are not asked"
    );
    // Confirming one, trimming the other.
    let confirmed = admin
        .post(
            &format!("/api/v1/access/reviews/{}", rep.user_id),
            json!({"outcome": "confirmed"}),
        )
        .await
        .expect(200);
    assert_eq!(confirmed["overdue"], false);
    assert_eq!(confirmed["last_outcome"], "confirmed");
    let odd = admin
        .post(
            &format!("/api/v1/access/reviews/{}", admin.user_id),
            json!({"outcome": "maybe"}),
        )
        .await;
    assert_eq!(odd.body["error"]["fields"][0]["field"], "outcome");
    admin
        .post(
            &format!("/api/v1/access/reviews/{}", admin.user_id),
            json!({"outcome": "trimmed", "note": "dropped exports"}),
        )
        .await
        .expect(200);
    assert!(
        !page_text(&app, "admin", "/")
            .await
            .contains("Access reviews are overdue")
    );
    assert_eq!(
        rep.post(
            &format!("/api/v1/access/reviews/{}", rep.user_id),
            json!({"outcome": "confirmed"})
        )
        .await
        .status,
        403
    );
    // Ninety days after the review, due again.
    app.clock.advance_days(90);
    let reviews = admin.get("/api/v1/access/reviews").await.expect(200);
    assert_eq!(
        reviews["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["overdue"] == true)
            .count(),
        2
    );
    // The report: the rep has not used delete or restore; nobody logged in for 180 days is dormant.
    let report = admin.get("/api/v1/access/report").await.expect(200);
    assert_eq!(report["two_factor_available"], false);
    let holders = report["powerful"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["permission"] == "administration.edit")
        .unwrap()
        .clone();
    assert_eq!(holders["users"], json!([["admin", "role"]]));
    let unused: Vec<String> = report["unused"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["user_id"] == rep.user_id)
        .map(|u| u["permission"].as_str().unwrap().to_owned())
        .collect();
    assert!(unused.contains(&"contacts.delete".to_owned()), "{unused:?}");
    assert!(
        report["dormant"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["user_id"] == rep.user_id)
    );
    assert!(
        report["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["action"] == "access.review")
    );
});

on_both_backends!(no_record_becomes_invisible_to_every_administrator, |app| {
    let admin = app.admin().await;
    let second = app.user("second_admin", ADMIN).await;
    let manager = app.user("manager", MANAGER).await;
    let rep = app.user("leaver", REP).await;
    let team = admin
        .post(
            "/api/v1/access/teams",
            json!({"name": "North", "manager_id": manager.user_id}),
        )
        .await
        .expect(201)["team_id"]
        .as_i64()
        .unwrap();
    admin
        .patch(
            &format!("/api/v1/users/{}", rep.user_id),
            json!({"team_id": team}),
        )
        .await
        .expect(200);
    let mut records = Vec::new();
    for (collection, body) in [
        ("companies", json!({"name": "Leaver Co"})),
        ("contacts", json!({"name": "Leaver contact"})),
        ("deals", json!({"name": "Leaver deal"})),
        (
            "activities",
            json!({"subject": "Leaver call", "kind": "call"}),
        ),
    ] {
        records.push((collection, rep.create(collection, body).await));
    }
    // Everything that can hide records from someone, at once.
    admin
        .patch(
            &format!("/api/v1/users/{}", rep.user_id),
            json!({"active": false}),
        )
        .await
        .expect(200);
    for module in [
        "companies",
        "contacts",
        "deals",
        "activities",
        "recycle_bin",
    ] {
        admin
            .put(
                &format!("/api/v1/access/modules/{module}"),
                json!({"on": false}),
            )
            .await
            .expect(200);
    }
    // The manager still reaches the deactivated rep's records once modules are back on.
    for module in [
        "companies",
        "contacts",
        "deals",
        "activities",
        "recycle_bin",
    ] {
        admin
            .put(
                &format!("/api/v1/access/modules/{module}"),
                json!({"on": true}),
            )
            .await
            .expect(200);
    }
    for (collection, id) in &records {
        assert_eq!(
            manager
                .get(&format!("/api/v1/{collection}/{id}"))
                .await
                .status,
            200,
            "{collection} {id}"
        );
    }
    admin
        .put("/api/v1/access/modules/deals", json!({"on": false}))
        .await
        .expect(200);
    admin
        .delete(&format!("/api/v1/access/teams/{team}"))
        .await
        .expect(200);
    // Every record is visible to at least one active administrator, whatever happened.
    for (collection, id) in &records {
        for client in [&admin, &second] {
            assert_eq!(
                client
                    .get(&format!("/api/v1/{collection}/{id}"))
                    .await
                    .status,
                200,
                "{collection} {id}"
            );
        }
    }
    // The last active administrator cannot be removed, demoted or sent back to pending.
    admin
        .patch(
            &format!("/api/v1/users/{}", second.user_id),
            json!({"active": false}),
        )
        .await
        .expect(200);
    for change in [json!({"active": false}), json!({"role": "auditor"})] {
        let refused = admin
            .patch(&format!("/api/v1/users/{}", admin.user_id), change)
            .await;
        assert_eq!(refused.error_code(), "last_admin");
    }
});

on_both_backends!(exports_hold_only_what_the_exporter_may_see, |app| {
    let admin = app.admin().await;
    admin
        .put(
            "/api/v1/access/roles/exporter",
            json!({"name": "Exporter", "rights": ["contacts.view", "contacts.create", "contacts.export", "exports.export"],
                   "scope": "own", "fields": {"contact.mobile": "hidden"}}),
        )
        .await
        .expect(200);
    let exporter = app.user("exporter", "exporter").await;
    let rep = app.user("rep", REP).await;
    // The mobile number is hidden from the exporter: an administrator recorded it.
    admin
        .create(
            "contacts",
            json!({"name": "王芳", "mobile": "13900001111", "email": "wang@example.cn", "owner_id": exporter.user_id}),
        )
        .await;
    exporter
        .create(
            "contacts",
            json!({"name": "Smith, \"Bob\"", "email": "bob@example.com"}),
        )
        .await;
    rep.create(
        "contacts",
        json!({"name": "Not theirs", "mobile": "13700002222"}),
    )
    .await;
    let response = reqwest::Client::new()
        .get(format!("{}/api/v1/contacts/export?sort=name", app.base_url))
        .header(
            "Authorization",
            exporter_token(&app, exporter.user_id).await,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/csv; charset=utf-8"
    );
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"contacts-")
    );
    let text = response.text().await.unwrap();
    let text = text
        .strip_prefix('\u{FEFF}')
        .expect("a byte-order mark for spreadsheets");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert!(
        header.contains(&"email".to_owned()) && !header.contains(&"mobile".to_owned()),
        "{header:?}"
    );
    let names: Vec<String> = reader.records().map(|r| r.unwrap()[2].to_owned()).collect();
    assert_eq!(
        names,
        ["Smith, \"Bob\"", "王芳"],
        "only the exporter's own, quoted properly"
    );
    assert!(!text.contains("13900001111") && !text.contains("Not theirs"));
    // A rep has no export right; an auditor sees exports but may not make them.
    assert_eq!(
        rep.get("/api/v1/contacts/export").await.error_code(),
        "no_right"
    );
    // The export is in the audit log with its size.
    let log = admin.get("/api/v1/audit?limit=1000").await.expect(200);
    let entry = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "contact.export")
        .unwrap()
        .clone();
    assert_eq!(entry["detail"]["rows"], 2, "{entry}");
    assert_eq!(entry["actor_id"], exporter.user_id);
    // The report counts the export as a use of the right.
    let report = admin.get("/api/v1/access/report").await.expect(200);
    assert!(
        !report["unused"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["user_id"] == exporter.user_id && u["permission"] == "contacts.export")
    );
});

/// The `Authorization` header of a fresh token for `user_id`.
async fn exporter_token(app: &TestApp, user_id: i64) -> String {
    let actor = holdfast_test_support::actor(&app.app, user_id).await;
    let token = holdfast_app::auth::issue_token(&app.app, &actor, "export", "tests", None)
        .await
        .unwrap();
    format!("Bearer {}", token.secret)
}

on_both_backends!(
    conditional_field_rules_follow_the_team_and_the_deal,
    |app| {
        let admin = app.admin().await;
        // Reps who see every customer, but not other teams' phone numbers, and who cannot change
        // the amount of a deal once it is won.
        admin
        .put(
            "/api/v1/access/roles/wide_rep",
            json!({"name": "Wide rep", "rights": ["contacts.view", "contacts.edit", "deals.view", "deals.create", "deals.edit"],
                   "scope": "all", "fields": {"contact.mobile": "hidden_outside_team", "deal.amount_minor": "read_only_when_won"}}),
        )
        .await
        .expect(200);
        let east = admin
            .post("/api/v1/access/teams", json!({"name": "East"}))
            .await
            .expect(201)["team_id"]
            .as_i64()
            .unwrap();
        let west = admin
            .post("/api/v1/access/teams", json!({"name": "West"}))
            .await
            .expect(201)["team_id"]
            .as_i64()
            .unwrap();
        let li = app.user("li", "wide_rep").await;
        let mate = app.user("mate", REP).await;
        let far = app.user("far", REP).await;
        for (user, team) in [(&li, east), (&mate, east), (&far, west)] {
            admin
                .patch(
                    &format!("/api/v1/users/{}", user.user_id),
                    json!({"team_id": team}),
                )
                .await
                .expect(200);
        }
        let near = mate
            .create("contacts", json!({"name": "Near", "mobile": "13811112222"}))
            .await;
        let away = far
            .create("contacts", json!({"name": "Away", "mobile": "13933334444"}))
            .await;
        let shown = li
            .get(&format!("/api/v1/contacts/{near}"))
            .await
            .expect(200);
        assert_eq!(shown["mobile"], "13811112222", "a team mate's number shows");
        let hidden = li
            .get(&format!("/api/v1/contacts/{away}"))
            .await
            .expect(200);
        assert_eq!(hidden["name"], "Away");
        assert!(
            hidden.get("mobile").is_none_or(Value::is_null),
            "another team's number is hidden: {hidden}"
        );
        assert_eq!(
            ids_of(&li.get("/api/v1/contacts?q=3333").await.expect(200)),
            Vec::<i64>::new(),
            "nor found by it"
        );
        assert_eq!(
            ids_of(&li.get("/api/v1/contacts?q=1111").await.expect(200)),
            [near]
        );
        let why = li
            .get(&format!(
                "/api/v1/access/explain?record=contact:{away}&field=mobile"
            ))
            .await
            .expect(200);
        assert_eq!(
            why["steps"].as_array().unwrap().last().unwrap()["code"],
            "field_hidden"
        );
        let change = li
            .patch(
                &format!("/api/v1/contacts/{away}"),
                json!({"mobile": "13900000000", "expected_version": 1}),
            )
            .await;
        assert_eq!(change.body["error"]["fields"][0]["code"], "field_hidden");
        // A won deal's amount is read-only; before it was won it was not.
        let deal = li
            .create("deals", json!({"name": "Big one", "amount_minor": 100000}))
            .await;
        li.patch(
            &format!("/api/v1/deals/{deal}"),
            json!({"amount_minor": 120000, "expected_version": 1}),
        )
        .await
        .expect(200);
        let open_deal = li
            .get(&format!(
                "/api/v1/access/explain?record=deal:{deal}&field=amount_minor&permission=deals.edit"
            ))
            .await
            .expect(200);
        assert_eq!(
            open_deal["allowed"], true,
            "open: the amount may change: {open_deal}"
        );
        li.patch(
            &format!("/api/v1/deals/{deal}"),
            json!({"status": "won", "expected_version": 2}),
        )
        .await
        .expect(200);
        let after_won = li
            .patch(
                &format!("/api/v1/deals/{deal}"),
                json!({"amount_minor": 1, "expected_version": 3}),
            )
            .await;
        assert_eq!(
            after_won.body["error"]["fields"][0]["code"], "read_only",
            "{}",
            after_won.body
        );
        let won = li
            .get(&format!(
                "/api/v1/access/explain?record=deal:{deal}&field=amount_minor&permission=deals.edit"
            ))
            .await
            .expect(200);
        assert_eq!(
            won["steps"].as_array().unwrap().last().unwrap()["code"],
            "field_read_only",
            "{won}"
        );
        assert_eq!(
            li.get(&format!("/api/v1/deals/{deal}")).await.expect(200)["amount_minor"],
            120000
        );
        // Administrators are not bound by the role's rules.
        admin
            .patch(
                &format!("/api/v1/deals/{deal}"),
                json!({"amount_minor": 110000, "expected_version": 3}),
            )
            .await
            .expect(200);
    }
);

on_both_backends!(
    teams_and_roles_are_edited_in_the_pages_after_a_preview,
    |app| {
        let admin = app.admin().await;
        let manager = app.user("zhao", MANAGER).await;
        let rep = app.user("li", REP).await;
        rep.create("contacts", json!({"name": "Li's"})).await;
        let cookie = cookies(&app, "admin").await;
        // A team: the first post previews, the confirmed one applies.
        let team_fields = [
            ("csrf", CSRF),
            ("name", "华东"),
            ("parent_id", ""),
            ("manager_id", &manager.user_id.to_string()),
        ];
        let preview = post_form(&app, "/admin/access/teams", &cookie, &team_fields).await;
        assert_eq!(preview.status(), 200);
        let text = preview.text().await.unwrap();
        assert!(text.contains("id=\"apply-change\""), "{text}");
        // One sentence says what applying does and how to undo it.
        assert!(
            text.contains("to undo it, make the opposite change here"),
            "{text}"
        );
        assert_eq!(
            admin.get("/api/v1/access/teams").await.expect(200)["items"],
            json!([]),
            "nothing yet"
        );
        let mut confirmed = team_fields.to_vec();
        confirmed.push(("confirm", "yes"));
        let done = post_form(&app, "/admin/access/teams", &cookie, &confirmed).await;
        assert_eq!(done.status(), 303);
        let teams = admin.get("/api/v1/access/teams").await.expect(200);
        let team = teams["items"][0]["id"].as_i64().unwrap();
        assert_eq!(teams["items"][0]["manager_id"], manager.user_id);
        // Putting Li in the team from the users page: the preview counts the manager's gain.
        let user_path = format!("/admin/users/{}/access", rep.user_id);
        let team_id = team.to_string();
        let preview = post_form(
            &app,
            &user_path,
            &cookie,
            &[("csrf", CSRF), ("role", "rep"), ("team_id", &team_id)],
        )
        .await;
        let text = preview.text().await.unwrap();
        assert!(
            text.contains("zhao") && text.contains("1 would become visible to someone"),
            "{text}"
        );
        post_form(
            &app,
            &user_path,
            &cookie,
            &[
                ("csrf", CSRF),
                ("role", "rep"),
                ("team_id", &team_id),
                ("confirm", "yes"),
            ],
        )
        .await;
        assert_eq!(
            ids_of(&manager.get("/api/v1/contacts").await.expect(200)).len(),
            1
        );
        // A custom role from the role editor: rights as checkboxes, a field rule.
        let role_fields = [
            ("csrf", CSRF),
            ("key", "viewer"),
            ("name", "Viewer"),
            ("scope", "team"),
            ("right.contacts.view", "on"),
            ("right.companies.view", "on"),
            ("field.contact.mobile", "hidden"),
            ("field.contact.email", ""),
        ];
        let preview = post_form(&app, "/admin/access/roles/new", &cookie, &role_fields).await;
        assert_eq!(preview.status(), 200);
        let mut confirmed = role_fields.to_vec();
        confirmed.push(("confirm", "yes"));
        assert_eq!(
            post_form(&app, "/admin/access/roles/new", &cookie, &confirmed)
                .await
                .status(),
            303
        );
        let roles = admin.get("/api/v1/access/roles").await.expect(200);
        let viewer = roles["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == "viewer")
            .unwrap()
            .clone();
        assert_eq!(viewer["rights"], json!(["companies.view", "contacts.view"]));
        assert_eq!(viewer["scope"], "team");
        assert_eq!(viewer["fields"], json!({"contact.mobile": "hidden"}));
        // Built-in roles are shown, not edited; a bad key is refused with its field named.
        let page = page_text(&app, "admin", "/admin/access/roles/rep").await;
        assert!(
            page.contains("A built-in role cannot be changed")
                && !page.contains("id=\"role-form\""),
            "{page}"
        );
        let bad = post_form(
            &app,
            "/admin/access/roles/new",
            &cookie,
            &[
                ("csrf", CSRF),
                ("key", "Bad Key"),
                ("name", "x"),
                ("scope", "own"),
            ],
        )
        .await;
        assert_eq!(bad.status(), 422);
        // Every step is audited with before and after.
        let log = admin.get("/api/v1/audit?limit=1000").await.expect(200);
        let actions: Vec<&str> = log["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        for action in ["access.team", "access.user", "access.role"] {
            assert!(actions.contains(&action), "{action} in {actions:?}");
        }
        // Deleting the team (previewed): the manager loses Li's record.
        let delete_path = format!("/admin/access/teams/{team}/delete");
        let preview = post_form(&app, &delete_path, &cookie, &[("csrf", CSRF)])
            .await
            .text()
            .await
            .unwrap();
        assert!(
            preview.contains("1 record(s) would become invisible to someone"),
            "{preview}"
        );
        post_form(
            &app,
            &delete_path,
            &cookie,
            &[("csrf", CSRF), ("confirm", "yes")],
        )
        .await;
        assert_eq!(
            manager.get("/api/v1/contacts").await.expect(200)["items"],
            json!([])
        );
    }
);

on_both_backends!(explaining_takes_a_username_as_well_as_an_id, |app| {
    let admin = app.admin().await;
    let rep = app.user("xiaoli", "rep").await;
    let by_name = admin
        .get("/api/v1/access/explain?user_id=XiaoLi&permission=contacts.view")
        .await
        .expect(200);
    let by_id = admin
        .get(&format!(
            "/api/v1/access/explain?user_id={}&permission=contacts.view",
            rep.user_id
        ))
        .await
        .expect(200);
    assert_eq!(by_name, by_id);
    let missing = admin
        .get("/api/v1/access/explain?user_id=nobody&permission=contacts.view")
        .await;
    assert_eq!(missing.status, 404);
    // A member may ask about themselves by name, not about others (whether or not they exist).
    rep.get("/api/v1/access/explain?user_id=xiaoli&permission=contacts.view")
        .await
        .expect(200);
    for name in ["admin", "nobody"] {
        let refused = rep
            .get(&format!(
                "/api/v1/access/explain?user_id={name}&permission=contacts.view"
            ))
            .await;
        assert_eq!(refused.status, 403, "{name}");
    }
});

on_both_backends!(exported_cells_never_run_as_spreadsheet_formulas, |app| {
    let admin = app.admin().await;
    admin
        .create(
            "contacts",
            json!({"name": "=HYPERLINK(\"http://evil.example\",\"点我\")", "title": "＝1+1", "phone": "+86 138 0013 8000", "tags": ["@SUM(1)"]}),
        )
        .await;
    let response = reqwest::Client::new()
        .get(format!("{}/api/v1/contacts/export", app.base_url))
        .header("Authorization", exporter_token(&app, admin.user_id).await)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.trim_start_matches('\u{FEFF}').as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    let row = reader.records().next().unwrap().unwrap();
    let cell = |name: &str| row[header.iter().position(|h| h == name).unwrap()].to_owned();
    assert_eq!(
        cell("name"),
        "'=HYPERLINK(\"http://evil.example\",\"点我\")"
    );
    assert_eq!(cell("title"), "'＝1+1");
    assert_eq!(cell("tags"), "'@SUM(1)");
    assert_eq!(
        cell("phone"),
        "+86 138 0013 8000",
        "phone numbers stay readable"
    );
});

on_both_backends!(
    administering_through_a_custom_role_grants_nothing_beyond_its_own,
    |app| {
        let admin = app.admin().await;
        admin
        .put(
            "/api/v1/access/roles/deputy",
            json!({"name": "Deputy", "rights": ["administration.view", "administration.edit", "contacts.view"], "scope": "own"}),
        )
        .await
        .expect(200);
        let deputy = app.user("deputy", "deputy").await;
        let rep = app.user("xiaoma", REP).await;
        // The token's first use stamps it; after that, a refused request changes nothing.
        deputy.get("/api/v1/me").await.expect(200);
        let before = app.fingerprint().await;
        let refusals = [
            (
                "PATCH",
                format!("/api/v1/users/{}", deputy.user_id),
                json!({"role": ADMIN}),
            ),
            (
                "PATCH",
                format!("/api/v1/users/{}", rep.user_id),
                json!({"role": ADMIN}),
            ),
            (
                "PATCH",
                format!("/api/v1/users/{}", rep.user_id),
                json!({"role": MANAGER}),
            ),
            (
                "POST",
                "/api/v1/users".to_owned(),
                json!({"username": "backdoor", "password": "a long enough password", "role": ADMIN}),
            ),
            (
                "PUT",
                "/api/v1/access/roles/deputy".to_owned(),
                json!({"name": "Deputy", "rights": ["administration.view", "administration.edit", "contacts.view", "contacts.delete"], "scope": "own"}),
            ),
            (
                "PUT",
                "/api/v1/access/roles/wide".to_owned(),
                json!({"name": "Wide", "rights": ["contacts.view"], "scope": "all"}),
            ),
        ];
        for (method, path, body) in refusals {
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let reply = deputy.send(method.clone(), &path, Some(body.clone())).await;
            assert_eq!(reply.status, 403, "{method} {path} {body}: {}", reply.body);
            assert_eq!(reply.error_code(), "not_grantable");
            assert!(
                reply.body["error"]["grantable_by"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty())
            );
        }
        assert!(app.fingerprint().await == before, "nothing changed");
        // Within their own rights and reach they may act.
        deputy
            .put(
                "/api/v1/access/roles/narrow",
                json!({"name": "Narrow", "rights": ["contacts.view"], "scope": "own"}),
            )
            .await
            .expect(200);
        // An administrator can do all of it.
        admin
            .patch(
                &format!("/api/v1/users/{}", rep.user_id),
                json!({"role": MANAGER}),
            )
            .await
            .expect(200);
    }
);

on_both_backends!(nobody_approves_their_own_access_request, |app| {
    let admin = app.admin().await;
    admin
        .put(
            "/api/v1/access/roles/viewer",
            json!({"name": "Viewer", "rights": ["contacts.view", "contacts.create"], "scope": "own"}),
        )
        .await
        .expect(200);
    let viewer = app.user("viewer", "viewer").await;
    let own = viewer
        .create("contacts", json!({"name": "自己的客户"}))
        .await;
    let request = viewer
        .post(
            "/api/v1/access/requests",
            json!({"permission": "contacts.edit", "record": format!("contact:{own}"), "reason": "想改电话"}),
        )
        .await
        .expect(201)["id"]
        .as_i64()
        .unwrap();
    let approve = format!("/api/v1/access/requests/{request}/approve");
    let refused = viewer.post(&approve, json!({})).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(refused.error_code(), "own_request");
    let edit = viewer
        .patch(
            &format!("/api/v1/contacts/{own}"),
            json!({"expected_version": 1, "title": "经理"}),
        )
        .await;
    assert_eq!(edit.status, 403, "still without the edit right");
    admin.post(&approve, json!({})).await.expect(200);
});

on_both_backends!(writes_and_their_errors_never_return_a_hidden_field, |app| {
    let admin = app.admin().await;
    admin
        .put(
            "/api/v1/access/roles/no_mobile",
            json!({"name": "No mobile", "rights": ["contacts.view", "contacts.create", "contacts.edit", "contacts.delete", "contacts.restore"],
                   "scope": "own", "fields": {"contact.mobile": "hidden"}}),
        )
        .await
        .expect(200);
    let user = app.user("nomobile", "no_mobile").await;
    let id = admin
        .create(
            "contacts",
            json!({"name": "刘洋", "mobile": "13912345678", "owner_id": user.user_id}),
        )
        .await;
    let secret = "13912345678";
    let hidden = |label: &str, body: &Value| {
        let text = body.to_string();
        assert!(
            !text.contains(secret),
            "{label} leaked the hidden mobile: {text}"
        );
        assert!(
            !text.contains("\"mobile\""),
            "{label} carries the hidden field: {text}"
        );
    };
    let path = format!("/api/v1/contacts/{id}");
    hidden("GET", &user.get(&path).await.expect(200));
    let updated = user
        .patch(
            &path,
            json!({"expected_version": 1, "name": "刘洋（北京）"}),
        )
        .await
        .expect(200);
    hidden("PATCH", &updated);
    let stale = user
        .patch(&path, json!({"expected_version": 1, "name": "旧版本"}))
        .await;
    assert_eq!(stale.status, 409);
    hidden("409 of a stale PATCH", &stale.body);
    let restored_version = user
        .post(
            &format!("{path}/versions/1/restore"),
            json!({"expected_version": 2}),
        )
        .await
        .expect(200);
    hidden("restore-version", &restored_version);
    let stale_restore = user
        .post(
            &format!("{path}/versions/1/restore"),
            json!({"expected_version": 1}),
        )
        .await;
    assert_eq!(stale_restore.status, 409);
    hidden("409 of a stale restore-version", &stale_restore.body);
    let then = app.app.now();
    app.clock.advance_seconds(60);
    hidden(
        "restore-to-time",
        &user
            .post(
                &format!("{path}/restore-to-time"),
                json!({"at": then.to_rfc3339()}),
            )
            .await
            .expect(200),
    );
    hidden("DELETE", &user.delete(&path).await.expect(200));
    hidden(
        "restore from the bin",
        &user
            .post(&format!("{path}/restore"), json!({}))
            .await
            .expect(200),
    );
    let created = user
        .post("/api/v1/contacts", json!({"name": "新客户"}))
        .await
        .expect(201);
    hidden("POST", &created);
    hidden("list", &user.get("/api/v1/contacts").await.expect(200));
});

on_both_backends!(
    the_backup_record_picker_shows_only_what_the_role_may_see,
    holdfast_test_support::spawn_app_with_backups,
    |app| {
        let admin = app.admin().await;
        admin
            .put(
                "/api/v1/access/roles/keeper",
                json!({"name": "Backup keeper", "rights": ["administration.view", "administration.edit", "contacts.view"],
                       "scope": "own", "fields": {"contact.mobile": "hidden"}}),
            )
            .await
            .expect(200);
        let keeper = app.user("keeper", "keeper").await;
        let mine = admin
            .create(
                "contacts",
                json!({"name": "客户甲", "mobile": "13800001111", "owner_id": keeper.user_id}),
            )
            .await;
        admin
            .create(
                "contacts",
                json!({"name": "客户乙", "mobile": "13900002222"}),
            )
            .await;
        let run = holdfast_app::backup::schedule::run(&app.app, "manual")
            .await
            .unwrap();
        let path = format!(
            "/api/v1/backups/{}/records?entity=contact&matching=%E5%AE%A2%E6%88%B7",
            run.id
        );
        let everything = admin.get(&path).await.expect(200);
        assert_eq!(
            everything["items"].as_array().unwrap().len(),
            2,
            "{everything}"
        );
        let seen = keeper.get(&path).await.expect(200);
        let items = seen["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{seen}");
        assert_eq!(items[0]["id"], mine);
        let text = seen.to_string();
        assert!(
            !text.contains("13800001111") && !text.contains("13900002222"),
            "{text}"
        );
    }
);

// The permission matrix once more, as a user whose role hides fields: no answer of any route or
// page — success or error — carries a hidden value.
on_both_backends!(no_route_or_page_answers_with_a_hidden_field, |app| {
    let admin = app.admin().await;
    admin
        .put(
            "/api/v1/access/roles/discreet",
            json!({"name": "Discreet", "scope": "own",
                   "rights": ["contacts.view", "contacts.create", "contacts.edit", "contacts.delete", "contacts.restore", "contacts.export",
                              "exports.export", "recycle_bin.view", "recycle_bin.restore", "reports.view", "deals.view", "activities.view"],
                   "fields": {"contact.mobile": "hidden", "contact.email": "hidden", "contact.notes": "hidden"}}),
        )
        .await
        .expect(200);
    let user = app.user("discreet", "discreet").await;
    let users = vec![(Some("discreet"), user.clone())];
    let ids = setup_ids(&app, &admin, &users).await;
    let contact = ids.contact_of[&user.user_id];
    let secrets = ["13511112222", "secret@hidden.example", "秘密备注"];
    admin
        .patch(
            &format!("/api/v1/contacts/{contact}"),
            json!({"expected_version": 1, "mobile": secrets[0], "email": secrets[1], "notes": secrets[2]}),
        )
        .await
        .expect(200);
    // A second change, so history and diffs have something to show.
    admin
        .patch(
            &format!("/api/v1/contacts/{contact}"),
            json!({"expected_version": 2, "title": "经理"}),
        )
        .await
        .expect(200);
    let mut leaks = Vec::new();
    let mut check = |what: String, text: &str| {
        for secret in secrets {
            if text.contains(secret) {
                leaks.push(format!("{what} shows {secret}"));
            }
        }
    };
    for (method, route, _, body) in api_table() {
        let path = fill(route, &ids, &user);
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let body = (!body.is_null()).then(|| body.clone());
        let reply = user.send(method.clone(), &path, body).await;
        check(
            format!("{method} {path} ({})", reply.status),
            &reply.body.to_string(),
        );
    }
    // Lists as they were, as-of reads and diffs between the versions that hold the values.
    for path in [
        format!("/api/v1/contacts/{contact}/diff?from=1&to=3"),
        format!("/api/v1/contacts/{contact}/versions/2"),
        format!(
            "/api/v1/contacts?as_of={}",
            app.app.now().to_rfc3339().replace('+', "%2B")
        ),
        "/api/v1/contacts?q=13511112222".to_owned(),
    ] {
        let reply = user.get(&path).await;
        check(
            format!("GET {path} ({})", reply.status),
            &reply.body.to_string(),
        );
    }
    let cookie = cookies(&app, "discreet").await;
    for (method, route, _) in page_table() {
        if method != "GET" {
            continue;
        }
        let path = fill(route, &ids, &user);
        let response = http()
            .get(format!("{}{path}", app.base_url))
            .header("Cookie", &cookie)
            .send()
            .await
            .unwrap();
        let status = response.status();
        check(
            format!("page {path} ({status})"),
            &response.text().await.unwrap(),
        );
    }
    assert!(leaks.is_empty(), "{}", leaks.join("\n"));
});
