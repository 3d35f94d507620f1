//! User administration: create, approve, change role and team, deactivate, reset password,
//! revoke sessions.
//!
//! A user an administrator creates starts *pending*: they can log in and see only that their
//! access awaits approval, and who will approve it, until an administrator approves it.
//! Deactivating a user never touches their records: they stay owned by that user and visible to
//! everyone who could see them (their team's managers, administrators), until reassigned. At
//! least one active administrator always remains, so the installation can never lock itself
//! out, and every record stays visible to an administrator.

use crate::auth::{check_password_policy, hash_password};
use crate::{App, AppError};
use holdfast_domain::access::ADMIN;
use holdfast_domain::access::authorize;
use holdfast_domain::{Action, Actor};
use holdfast_store::{AuditDraft, NewUser, SessionScope, UserRow, UserUpdate};
use serde_json::json;

pub async fn list(app: &App, actor: &Actor) -> Result<Vec<UserRow>, AppError> {
    authorize(actor, Action::Audit)?;
    Ok(app.db.users().await?)
}

pub async fn get(app: &App, actor: &Actor, id: i64) -> Result<UserRow, AppError> {
    if actor.user_id != id {
        authorize(actor, Action::Audit)?;
    }
    app.db
        .user(id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("user {id}")))
}

pub async fn create(
    app: &App,
    actor: &Actor,
    op_id: &str,
    username: &str,
    display_name: &str,
    password: &str,
    role: &str,
) -> Result<UserRow, AppError> {
    authorize(actor, Action::Administer)?;
    check_role(actor, role)?;
    let user = NewAccount {
        username,
        display_name,
        password,
        role,
        pending: true,
        // The administrator knows this password: the user replaces it at their first login.
        must_change_password: true,
    };
    create_account(app, actor, op_id, user).await
}

/// A role key must name a role that exists.
fn check_role(actor: &Actor, role: &str) -> Result<(), AppError> {
    if let Some(def) = actor.access.role(role) {
        return crate::access::check_grantable(actor, def);
    }
    if actor.is_system() && role == ADMIN {
        return Ok(());
    }
    let known: Vec<&str> = actor.access.roles.iter().map(|r| r.key.as_str()).collect();
    Err(AppError::invalid(
        "role",
        "invalid_choice",
        format!("No role '{role}'. Roles: {}", known.join(", ")),
    ))
}

/// What a new account is made of.
pub struct NewAccount<'a> {
    pub username: &'a str,
    pub display_name: &'a str,
    pub password: &'a str,
    pub role: &'a str,
    /// Waits for an administrator's approval.
    pub pending: bool,
    /// Someone else chose the password; the user must replace it before doing anything.
    pub must_change_password: bool,
}

/// Creates a user without a permission check: for first-run setup and the server-side
/// `holdfast admin create`, whose callers proved their right by other means.
pub async fn create_user_unchecked(
    app: &App,
    actor: &Actor,
    op_id: &str,
    username: &str,
    display_name: &str,
    password: &str,
    role: &str,
) -> Result<UserRow, AppError> {
    let user = NewAccount {
        username,
        display_name,
        password,
        role,
        pending: false,
        must_change_password: false,
    };
    create_account(app, actor, op_id, user).await
}

async fn create_account(
    app: &App,
    actor: &Actor,
    op_id: &str,
    account: NewAccount<'_>,
) -> Result<UserRow, AppError> {
    let NewAccount {
        username,
        display_name,
        password,
        role,
        pending,
        must_change_password,
    } = account;
    let username = check_username(username)?;
    let display_name = display_name.trim();
    let display_name = if display_name.is_empty() {
        username.as_str()
    } else {
        display_name
    };
    if display_name.chars().count() > 100 || display_name.chars().any(char::is_control) {
        return Err(AppError::invalid(
            "display_name",
            "invalid_name",
            "At most 100 characters on one line",
        ));
    }
    check_password_policy("password", password, &[&username, display_name])?;
    let hash = hash_password(app, password).await?;
    let audit = AuditDraft::new(
        actor,
        op_id,
        "user.create",
        json!({"username": username, "role": role, "pending": pending}),
    );
    let mut tx = app.db.begin_write(app.now()).await?;
    let user = NewUser {
        username: &username,
        display_name,
        password_hash: &hash,
        role,
        team_id: None,
        pending,
        must_change_password,
    };
    let id = tx.create_user(user, audit).await?;
    tx.commit().await?;
    if role == ADMIN {
        crate::alerts::raise(
            app,
            crate::alerts::Event::NewAdmin {
                username: username.clone(),
                by: actor.username.clone(),
            },
        )
        .await;
    }
    app.db
        .user(id)
        .await?
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("user {id} vanished after creation")))
}

fn check_username(username: &str) -> Result<String, AppError> {
    let username = username.trim().to_lowercase();
    let valid = (2..=64).contains(&username.chars().count())
        && username
            .chars()
            .all(|c| c.is_alphanumeric() || "._-@".contains(c));
    if !valid {
        return Err(AppError::invalid(
            "username",
            "invalid_username",
            "Use 2 to 64 letters, digits or . _ - @ (no spaces); usernames are not case-sensitive",
        ));
    }
    Ok(username)
}

/// Changes to a user an administrator can make.
#[derive(Debug, Default)]
pub struct UserChange {
    pub display_name: Option<String>,
    pub role: Option<String>,
    /// `Some(None)` takes the user out of their team.
    pub team_id: Option<Option<i64>>,
    pub active: Option<bool>,
    /// `Some(false)` approves a pending user's access.
    pub pending: Option<bool>,
}

/// What [`update`] would do to a user, after every check it makes: a dry run's answer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UpdatePreview {
    pub user_id: i64,
    pub display_name: Option<String>,
    pub active: Option<bool>,
    /// Deactivating ends the user's sessions and revokes their API tokens: how many.
    pub sessions_ended: usize,
    pub tokens_revoked: usize,
}

/// Checks a change to a user and says what it would do, changing nothing.
pub async fn preview_update(
    app: &App,
    actor: &Actor,
    id: i64,
    change: &UserChange,
) -> Result<(UserRow, UpdatePreview), AppError> {
    authorize(actor, Action::Administer)?;
    let user = app
        .db
        .user(id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("user {id}")))?;
    if let Some(name) = &change.display_name
        && (name.trim().is_empty() || name.chars().count() > 100)
    {
        return Err(AppError::invalid(
            "display_name",
            "invalid_name",
            "1 to 100 characters",
        ));
    }
    if let Some(role) = &change.role {
        check_role(actor, role)?;
    }
    if let Some(Some(team)) = change.team_id
        && actor.access.team(team).is_none()
    {
        return Err(AppError::invalid(
            "team_id",
            "not_found",
            format!("There is no team with id {team}"),
        ));
    }
    let loses_admin = user.role == ADMIN
        && user.active
        && !user.pending
        && (change.role.as_deref().is_some_and(|r| r != ADMIN)
            || change.active == Some(false)
            || change.pending == Some(true));
    if loses_admin {
        let other_admins = app
            .db
            .users()
            .await?
            .iter()
            .filter(|u| u.id != id && u.active && !u.pending && u.role == ADMIN)
            .count();
        if other_admins == 0 {
            return Err(AppError::conflict(
                "last_admin",
                "This is the last active administrator; make someone else an administrator first",
            ));
        }
    }
    let deactivating = change.active == Some(false) && user.active;
    let now = app.now();
    let (mut sessions_ended, mut tokens_revoked) = (0, 0);
    if deactivating {
        sessions_ended = app
            .db
            .sessions_of(id)
            .await?
            .iter()
            .filter(|s| s.revoked_at.is_none() && s.expires_at > now)
            .count();
        tokens_revoked = working_tokens(app, id).await?;
    }
    let preview = UpdatePreview {
        user_id: id,
        display_name: change.display_name.as_ref().map(|n| n.trim().to_owned()),
        active: change.active,
        sessions_ended,
        tokens_revoked,
    };
    Ok((user, preview))
}

pub async fn update(
    app: &App,
    actor: &Actor,
    op_id: &str,
    id: i64,
    change: UserChange,
) -> Result<UserRow, AppError> {
    let (user, _) = preview_update(app, actor, id, &change).await?;
    let deactivating = change.active == Some(false) && user.active;
    // Taking someone's access away, or giving more, is a permission change.
    if deactivating
        || change.role.as_ref().is_some_and(|r| *r != user.role)
        || change.pending.is_some()
    {
        crate::step_up::require(app, actor).await?;
    }
    let detail = json!({
        "user_id": id,
        "display_name": change.display_name.is_some(),
        "before": {"role": user.role, "team_id": user.team_id, "active": user.active, "pending": user.pending},
        "role": change.role,
        "team_id": change.team_id,
        "active": change.active,
        "pending": change.pending,
    });
    let mut tx = app.db.begin_write(app.now()).await?;
    let update = UserUpdate {
        display_name: change.display_name.map(|n| n.trim().to_owned()),
        role: change.role,
        team_id: change.team_id,
        active: change.active,
        pending: change.pending,
        password_hash: None,
        must_change_password: None,
        locale: None,
    };
    tx.update_user(
        id,
        update,
        AuditDraft::new(actor, op_id, "user.update", detail),
    )
    .await?;
    if deactivating {
        // A deactivated user is logged out everywhere at once, and their scripts stop too.
        tx.revoke_sessions(
            id,
            SessionScope::AllExcept(None),
            AuditDraft::new(actor, op_id, "session.revoke_all", json!({"user_id": id})),
        )
        .await?;
        tx.revoke_tokens(
            id,
            None,
            AuditDraft::new(actor, op_id, "token.revoke_all", json!({"user_id": id})),
        )
        .await?;
    }
    tx.commit().await?;
    app.db
        .user(id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("user {id}")))
}

/// Sets a new password for a user (who forgot theirs) and logs them out everywhere.
pub async fn reset_password(
    app: &App,
    actor: &Actor,
    op_id: &str,
    id: i64,
    password: &str,
) -> Result<(), AppError> {
    authorize(actor, Action::Administer)?;
    let user = app
        .db
        .user(id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("user {id}")))?;
    check_password_policy("password", password, &[&user.username, &user.display_name])?;
    let hash = hash_password(app, password).await?;
    let mut tx = app.db.begin_write(app.now()).await?;
    let update = UserUpdate {
        password_hash: Some(hash),
        must_change_password: Some(true),
        locale: None,
        ..Default::default()
    };
    tx.update_user(
        id,
        update,
        AuditDraft::new(actor, op_id, "user.password_reset", json!({"user_id": id})),
    )
    .await?;
    tx.revoke_sessions(
        id,
        SessionScope::AllExcept(None),
        AuditDraft::new(actor, op_id, "session.revoke_all", json!({"user_id": id})),
    )
    .await?;
    // Scripts made under the old password stop too: a reset usually means it leaked.
    tx.revoke_tokens(
        id,
        None,
        AuditDraft::new(
            actor,
            op_id,
            "token.revoke_all",
            json!({"user_id": id, "why": "password_reset"}),
        ),
    )
    .await?;
    crate::notices::notify(&mut tx, id, "password_reset", json!({"by": actor.username})).await?;
    tx.commit().await?;
    Ok(())
}

/// What an administrator ends for a user: browser sessions, or API tokens. Kept apart because
/// a logout does not stop scripts, and stopping scripts need not log anyone out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials {
    Sessions,
    Tokens,
}

/// Logs a user out everywhere. Returns how many sessions ended.
pub async fn revoke_sessions(
    app: &App,
    actor: &Actor,
    op_id: &str,
    id: i64,
) -> Result<u64, AppError> {
    revoke(app, actor, op_id, id, Credentials::Sessions).await
}

/// Revokes every API token of a user (a leaked script key, someone leaving): their scripts stop
/// at their next request. Sessions in browsers are left alone; [`revoke_sessions`] ends those.
pub async fn revoke_tokens(
    app: &App,
    actor: &Actor,
    op_id: &str,
    id: i64,
) -> Result<u64, AppError> {
    revoke(app, actor, op_id, id, Credentials::Tokens).await
}

async fn revoke(
    app: &App,
    actor: &Actor,
    op_id: &str,
    id: i64,
    what: Credentials,
) -> Result<u64, AppError> {
    revoke_some(app, actor, op_id, id, what, None).await
}

/// Ends one session or revokes one API token of a user (administrators); audited.
pub async fn revoke_one(
    app: &App,
    actor: &Actor,
    op_id: &str,
    id: i64,
    what: Credentials,
    credential_id: i64,
) -> Result<(), AppError> {
    if revoke_some(app, actor, op_id, id, what, Some(credential_id)).await? == 0 {
        let kind = match what {
            Credentials::Sessions => "active session",
            Credentials::Tokens => "active API token",
        };
        return Err(AppError::not_found(format!(
            "{kind} {credential_id} of user {id}"
        )));
    }
    Ok(())
}

async fn revoke_some(
    app: &App,
    actor: &Actor,
    op_id: &str,
    id: i64,
    what: Credentials,
    one: Option<i64>,
) -> Result<u64, AppError> {
    authorize(actor, Action::Administer)?;
    app.db
        .user(id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("user {id}")))?;
    let mut tx = app.db.begin_write(app.now()).await?;
    let revoked = match (what, one) {
        (Credentials::Sessions, None) => {
            let audit = AuditDraft::new(actor, op_id, "session.revoke_all", json!({"user_id": id}));
            tx.revoke_sessions(id, SessionScope::AllExcept(None), audit)
                .await?
        }
        (Credentials::Sessions, Some(session)) => {
            let audit = AuditDraft::new(
                actor,
                op_id,
                "session.revoke",
                json!({"user_id": id, "session_id": session}),
            );
            tx.revoke_sessions(id, SessionScope::One(session), audit)
                .await?
        }
        (Credentials::Tokens, one) => {
            let action = if one.is_some() {
                "token.revoke"
            } else {
                "token.revoke_all"
            };
            let audit = AuditDraft::new(
                actor,
                op_id,
                action,
                json!({"user_id": id, "token_id": one}),
            );
            tx.revoke_tokens(id, one, audit).await?
        }
    };
    tx.commit().await?;
    Ok(revoked)
}

/// A user's sessions still in force and their API tokens (administrators).
pub async fn credentials_of(
    app: &App,
    actor: &Actor,
    id: i64,
) -> Result<
    (
        Vec<holdfast_store::SessionRow>,
        Vec<holdfast_store::TokenRow>,
    ),
    AppError,
> {
    authorize(actor, Action::Administer)?;
    let now = app.now();
    let sessions = app
        .db
        .sessions_of(id)
        .await?
        .into_iter()
        .filter(|s| s.expires_at > now)
        .collect();
    Ok((sessions, app.db.tokens_of(id).await?))
}

/// API tokens of a user that still work: what "log out everywhere" leaves alone.
pub async fn working_tokens(app: &App, id: i64) -> Result<usize, AppError> {
    let now = app.now();
    Ok(app
        .db
        .tokens_of(id)
        .await?
        .iter()
        .filter(|t| t.revoked_at.is_none() && t.expires_at.is_none_or(|at| at > now))
        .count())
}

/// Names of active administrators: who can grant what a member was denied.
pub async fn admin_names(app: &App) -> Result<Vec<String>, AppError> {
    Ok(app
        .db
        .users()
        .await?
        .into_iter()
        .filter(|u| u.active && !u.pending && u.role == ADMIN)
        .map(|u| u.display_name)
        .collect())
}

/// Interface languages a user can choose.
pub const LOCALES: &[&str] = &["en", "zh-CN"];

/// Sets (or with `None` clears) the acting user's own interface language.
pub async fn set_my_locale(
    app: &App,
    actor: &Actor,
    op_id: &str,
    locale: Option<&str>,
) -> Result<(), AppError> {
    if let Some(locale) = locale
        && !LOCALES.contains(&locale)
    {
        return Err(AppError::invalid(
            "locale",
            "invalid_choice",
            format!("Choose one of: {}", LOCALES.join(", ")),
        ));
    }
    let mut tx = app.db.begin_write(app.now()).await?;
    let update = UserUpdate {
        locale: Some(locale.map(str::to_owned)),
        ..Default::default()
    };
    let detail = json!({"user_id": actor.user_id, "locale": locale});
    tx.update_user(
        actor.user_id,
        update,
        AuditDraft::new(actor, op_id, "user.locale", detail),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
