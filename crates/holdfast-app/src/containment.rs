//! Containment during an incident: freeze a user (every session and API token of theirs is
//! suspended, nothing deleted), suspend one API token, or lock the whole CRM down (read-only
//! for everyone but administrators, who must confirm it is them for each change; every API
//! token suspended). Administrators do it from the pages or the API after step-up; whoever runs
//! the server does it with `holdfast lockdown on|off`, which works even when every
//! administrator account is compromised. Everything is audited.

use crate::{App, AppError, step_up};
use holdfast_domain::access::{Lockdown, authorize};
use holdfast_domain::{Action, Actor};
use holdfast_store::AuditDraft;
use serde_json::json;

fn reason_of(reason: &str) -> Result<String, AppError> {
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(AppError::invalid(
            "reason",
            "required",
            "Say why in a few words (at most 500 characters): it is shown to those affected and kept in the audit log",
        ));
    }
    Ok(reason.to_owned())
}

/// Freezes a user: their sessions and API tokens stop working at their next request, and they
/// cannot sign in, until an administrator lifts the freeze. Nothing is revoked or deleted.
pub async fn freeze_user(
    app: &App,
    actor: &Actor,
    op_id: &str,
    user_id: i64,
    reason: &str,
) -> Result<(), AppError> {
    authorize(actor, Action::Administer)?;
    let reason = reason_of(reason)?;
    step_up::require(app, actor).await?;
    if user_id == actor.user_id {
        return Err(AppError::invalid(
            "user",
            "cannot_freeze_self",
            "You cannot freeze your own account; sign out everywhere under Settings instead",
        ));
    }
    let audit = AuditDraft::new(
        actor,
        op_id,
        "user.freeze",
        json!({"user_id": user_id, "reason": reason}),
    );
    let mut tx = app.db.begin_write(app.now()).await?;
    if !tx.freeze_user(user_id, Some(&reason), audit).await? {
        return Err(AppError::not_found(format!("user {user_id}")));
    }
    tx.commit().await?;
    Ok(())
}

/// Lifts a user's freeze: their sessions and tokens work again.
pub async fn unfreeze_user(
    app: &App,
    actor: &Actor,
    op_id: &str,
    user_id: i64,
) -> Result<(), AppError> {
    authorize(actor, Action::Administer)?;
    step_up::require(app, actor).await?;
    let audit = AuditDraft::new(actor, op_id, "user.unfreeze", json!({"user_id": user_id}));
    let mut tx = app.db.begin_write(app.now()).await?;
    if !tx.freeze_user(user_id, None, audit).await? {
        return Err(AppError::not_found(format!("user {user_id}")));
    }
    tx.commit().await?;
    Ok(())
}

/// Suspends (`frozen`) or resumes one API token of a user.
pub async fn freeze_token(
    app: &App,
    actor: &Actor,
    op_id: &str,
    user_id: i64,
    token_id: i64,
    frozen: bool,
) -> Result<(), AppError> {
    authorize(actor, Action::Administer)?;
    step_up::require(app, actor).await?;
    let action = if frozen {
        "token.freeze"
    } else {
        "token.unfreeze"
    };
    let audit = AuditDraft::new(
        actor,
        op_id,
        action,
        json!({"user_id": user_id, "token_id": token_id}),
    );
    let mut tx = app.db.begin_write(app.now()).await?;
    if !tx.freeze_token(user_id, token_id, frozen, audit).await? {
        return Err(AppError::not_found(format!(
            "active API token {token_id} of user {user_id}"
        )));
    }
    tx.commit().await?;
    Ok(())
}

/// The lockdown in force, if any.
pub async fn lockdown(app: &App) -> Result<Option<Lockdown>, AppError> {
    Ok(app.access_config().await?.lockdown.clone())
}

/// Locks the CRM down (`Some(reason)`) or lifts the lockdown (`None`): administrators, with
/// step-up.
pub async fn set_lockdown(
    app: &App,
    actor: &Actor,
    op_id: &str,
    reason: Option<&str>,
) -> Result<Option<Lockdown>, AppError> {
    authorize(actor, Action::Administer)?;
    let reason = reason.map(reason_of).transpose()?;
    step_up::require(app, actor).await?;
    write_lockdown(app, actor, op_id, reason).await
}

/// `holdfast lockdown on|off` on the server's console, as the system.
pub async fn set_lockdown_by_operator(
    app: &App,
    op_id: &str,
    reason: Option<&str>,
) -> Result<Option<Lockdown>, AppError> {
    let reason = reason.map(reason_of).transpose()?;
    write_lockdown(app, &Actor::system(), op_id, reason).await
}

async fn write_lockdown(
    app: &App,
    actor: &Actor,
    op_id: &str,
    reason: Option<String>,
) -> Result<Option<Lockdown>, AppError> {
    let lockdown = reason.map(|reason| Lockdown {
        since: app.now(),
        by: if actor.user_id == 0 {
            "holdfast lockdown (server console)".into()
        } else {
            actor.username.clone()
        },
        reason,
    });
    let action = if lockdown.is_some() {
        "lockdown.on"
    } else {
        "lockdown.off"
    };
    let detail = json!({"reason": lockdown.as_ref().map(|l| l.reason.clone())});
    let mut tx = app.db.begin_write(app.now()).await?;
    tx.set_lockdown(
        lockdown.as_ref(),
        AuditDraft::new(actor, op_id, action, detail),
    )
    .await?;
    tx.commit().await?;
    let by = match &lockdown {
        Some(lockdown) => lockdown.by.clone(),
        None if actor.user_id == 0 => "holdfast lockdown (server console)".into(),
        None => actor.username.clone(),
    };
    let event = crate::alerts::Event::Lockdown {
        on: lockdown.is_some(),
        by,
        reason: lockdown
            .as_ref()
            .map(|l| l.reason.clone())
            .unwrap_or_default(),
    };
    crate::alerts::raise(app, event).await;
    Ok(lockdown)
}
