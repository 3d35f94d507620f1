//! User administration: create, change role, deactivate, reset password, revoke sessions.
//!
//! Deactivating a user never touches their records: they stay owned by that user and visible to
//! everyone who could see them, until reassigned. At least one active administrator always
//! remains, so the installation can never lock itself out.

use crate::auth::{check_password_policy, hash_password};
use crate::{App, AppError};
use holdfast_domain::access::authorize;
use holdfast_domain::{Action, Actor, Role};
use holdfast_store::{AuditDraft, NewUser, SessionScope, UserRow, UserUpdate};
use serde_json::json;

pub async fn list(app: &App, actor: &Actor) -> Result<Vec<UserRow>, AppError> {
    authorize(actor, Action::Administer)?;
    Ok(app.db.users().await?)
}

pub async fn get(app: &App, actor: &Actor, id: i64) -> Result<UserRow, AppError> {
    if actor.user_id != id {
        authorize(actor, Action::Administer)?;
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
    role: Role,
) -> Result<UserRow, AppError> {
    authorize(actor, Action::Administer)?;
    create_user_unchecked(app, actor, op_id, username, display_name, password, role).await
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
    role: Role,
) -> Result<UserRow, AppError> {
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
    check_password_policy("password", password)?;
    let hash = hash_password(password).await?;
    let audit = AuditDraft::new(
        actor,
        op_id,
        "user.create",
        json!({"username": username, "role": role.name()}),
    );
    let mut tx = app.db.begin_write(app.now()).await?;
    let user = NewUser {
        username: &username,
        display_name,
        password_hash: &hash,
        role,
    };
    let id = tx.create_user(user, audit).await?;
    tx.commit().await?;
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
    pub role: Option<Role>,
    pub active: Option<bool>,
}

pub async fn update(
    app: &App,
    actor: &Actor,
    op_id: &str,
    id: i64,
    change: UserChange,
) -> Result<UserRow, AppError> {
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
    let loses_admin = user.role == Role::Admin
        && user.active
        && (change.role.is_some_and(|r| r != Role::Admin) || change.active == Some(false));
    if loses_admin {
        let other_admins = app
            .db
            .users()
            .await?
            .iter()
            .filter(|u| u.id != id && u.active && u.role == Role::Admin)
            .count();
        if other_admins == 0 {
            return Err(AppError::conflict(
                "last_admin",
                "This is the last active administrator; make someone else an administrator first",
            ));
        }
    }
    let deactivating = change.active == Some(false) && user.active;
    let detail = json!({
        "user_id": id,
        "display_name": change.display_name.is_some(),
        "role": change.role.map(Role::name),
        "active": change.active,
    });
    let mut tx = app.db.begin_write(app.now()).await?;
    let update = UserUpdate {
        display_name: change.display_name.map(|n| n.trim().to_owned()),
        role: change.role,
        active: change.active,
        password_hash: None,
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
    app.db
        .user(id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("user {id}")))?;
    check_password_policy("password", password)?;
    let hash = hash_password(password).await?;
    let mut tx = app.db.begin_write(app.now()).await?;
    let update = UserUpdate {
        password_hash: Some(hash),
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
    tx.commit().await?;
    Ok(())
}

/// Logs a user out everywhere. Returns how many sessions ended.
pub async fn revoke_sessions(
    app: &App,
    actor: &Actor,
    op_id: &str,
    id: i64,
) -> Result<u64, AppError> {
    authorize(actor, Action::Administer)?;
    app.db
        .user(id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("user {id}")))?;
    let mut tx = app.db.begin_write(app.now()).await?;
    let revoked = tx
        .revoke_sessions(
            id,
            SessionScope::AllExcept(None),
            AuditDraft::new(actor, op_id, "session.revoke_all", json!({"user_id": id})),
        )
        .await?;
    tx.commit().await?;
    Ok(revoked)
}

/// Names of active administrators: who can grant what a member was denied.
pub async fn admin_names(app: &App) -> Result<Vec<String>, AppError> {
    Ok(app
        .db
        .users()
        .await?
        .into_iter()
        .filter(|u| u.active && u.role == Role::Admin)
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
        display_name: None,
        role: None,
        active: None,
        password_hash: None,
        locale: Some(locale.map(str::to_owned)),
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
