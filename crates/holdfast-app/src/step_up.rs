//! Step-up: sensitive actions (exports, API tokens, permission changes, purge, restores,
//! reverts, deactivating users, turning two-step sign-in off) ask for the password or a second
//! factor again when the session last proved it more than [`STEP_UP_MINUTES`] ago, so an
//! unlocked browser or a stolen session cookie cannot do them.
//!
//! API tokens are not asked: a token was made with the password again, expires, can be made
//! read-only, and cannot answer a question. The server's own actor is not asked either.

use crate::{App, AppError, auth, two_factor};
use holdfast_domain::{Actor, ActorKind};
use holdfast_store::AuditDraft;
use serde_json::json;

pub const STEP_UP_MINUTES: i64 = 10;

/// Refuses with [`AppError::StepUpRequired`] unless the actor's session proved who they are
/// within the last [`STEP_UP_MINUTES`].
pub async fn require(app: &App, actor: &Actor) -> Result<(), AppError> {
    let ActorKind::Session { session_id } = actor.kind else {
        return Ok(());
    };
    let fresh = app
        .db
        .session_verified_at(session_id)
        .await?
        .is_some_and(|at| at.plus_seconds(STEP_UP_MINUTES * 60) > app.now());
    if fresh {
        Ok(())
    } else {
        Err(AppError::StepUpRequired)
    }
}

/// Whether the session would be asked (pages show the confirmation field beforehand).
pub async fn needed(app: &App, actor: &Actor) -> Result<bool, AppError> {
    Ok(matches!(
        require(app, actor).await,
        Err(AppError::StepUpRequired)
    ))
}

/// The user proves who they are again with their password or a second-factor code; the
/// session counts as confirmed for the next [`STEP_UP_MINUTES`]. Wrong answers count against
/// the account's sign-in throttle.
pub async fn confirm(app: &App, actor: &Actor, op_id: &str, answer: &str) -> Result<(), AppError> {
    let ActorKind::Session { session_id } = actor.kind else {
        return Err(AppError::invalid(
            "session",
            "not_a_session",
            "Only a browser session confirms who it is; API tokens are not asked",
        ));
    };
    let user = app
        .db
        .user(actor.user_id)
        .await?
        .filter(|u| u.active)
        .ok_or_else(|| AppError::not_found("your account"))?;
    let guard =
        crate::login::Guard::start(app, &user.username, actor.client.as_deref(), None).await?;
    let answer = answer.trim();
    let mut tx = app.db.begin_write_in_read_only_mode(app.now()).await?;
    let method = if answer
        .chars()
        .all(|c| c.is_ascii_digit() || c.is_whitespace())
        || two_factor::is_recovery_code(answer)
    {
        two_factor::second_factor_method(app, &mut tx, &user, answer).await?
    } else {
        None
    };
    let method = match method {
        Some(method) => method,
        None if auth::password_matches(app, &user, answer).await? => "password",
        None => {
            drop(tx);
            guard.failed(app).await?;
            return Err(AppError::invalid(
                "password",
                "wrong_password",
                "That is neither your password nor a current code from your authenticator app",
            ));
        }
    };
    tx.audit_event(AuditDraft::new(
        actor,
        op_id,
        "auth.step_up",
        json!({"method": method}),
    ))
    .await?;
    tx.commit().await?;
    guard.succeeded(app).await?;
    app.db.session_verified(session_id, app.now()).await?;
    Ok(())
}
