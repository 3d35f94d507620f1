//! Security notices: a sign-in from a new device or address, a password changed, an API token
//! made, a second factor added or removed, a recovery code used. Each stays on the user's home
//! page until they answer it: "this was me" puts it away; "this wasn't me" ends every other
//! session and every API token of theirs, forgets their devices and tells the administrators.
//! (E-mail joins when alerting does; the notices are in-app today.)

use crate::{App, AppError};
use holdfast_domain::{Actor, ActorKind};
use holdfast_store::{AuditDraft, NotificationRow, SessionScope, WriteTx};
use serde_json::{Value, json};

/// Adds a notice for a user inside `tx`, so it exists exactly when what it reports does.
pub async fn notify(
    tx: &mut WriteTx,
    user_id: i64,
    kind: &str,
    detail: Value,
) -> Result<(), AppError> {
    tx.notify(user_id, &format!("security.{kind}"), detail)
        .await?;
    Ok(())
}

/// Whether a notice tells an administrator about someone else (a user disowned a sign-in, a
/// guard tripped): it has no "this wasn't me" of its own.
pub fn is_report(notice: &NotificationRow) -> bool {
    matches!(
        notice.kind.as_str(),
        "security.reported" | "security.guard_tripped"
    )
}

/// The actor's unanswered security notices, newest first.
pub async fn mine(app: &App, actor: &Actor) -> Result<Vec<NotificationRow>, AppError> {
    Ok(app.db.security_notices(actor.user_id).await?)
}

/// "This was me": the notice is put away.
pub async fn acknowledge(app: &App, actor: &Actor, id: i64) -> Result<(), AppError> {
    if app
        .db
        .mark_notification_read(actor.user_id, id, app.now())
        .await?
    {
        Ok(())
    } else {
        Err(AppError::not_found(format!("security notice {id}")))
    }
}

/// What "this wasn't me" did.
pub struct Disowned {
    pub sessions_ended: u64,
    pub tokens_revoked: u64,
    pub administrators_told: usize,
}

/// "This wasn't me": ends every session but the one asking and every API token of the user,
/// forgets the devices they signed in from, puts the notice away and tells every active
/// administrator (audited). The user should change their password next.
pub async fn disown(
    app: &App,
    actor: &Actor,
    op_id: &str,
    id: Option<i64>,
) -> Result<Disowned, AppError> {
    let notice = match id {
        Some(id) => Some(
            mine(app, actor)
                .await?
                .into_iter()
                .find(|n| n.id == id)
                .ok_or_else(|| AppError::not_found(format!("security notice {id}")))?,
        ),
        None => None,
    };
    let keep = match actor.kind {
        ActorKind::Session { session_id } => Some(session_id),
        _ => None,
    };
    let config = app.access_config().await?;
    let admins = config.admin_ids();
    let detail = json!({
        "user_id": actor.user_id,
        "username": actor.username,
        "notice": notice.as_ref().map(|n| json!({"kind": n.kind, "detail": n.detail, "at": n.at.to_rfc3339()})),
        "address": actor.client,
    });
    let mut tx = app.db.begin_write_in_read_only_mode(app.now()).await?;
    let sessions_ended = tx
        .revoke_sessions(
            actor.user_id,
            SessionScope::AllExcept(keep),
            AuditDraft::new(actor, op_id, "security.not_me", detail.clone()),
        )
        .await?;
    let tokens_revoked = tx
        .revoke_tokens(
            actor.user_id,
            None,
            AuditDraft::new(
                actor,
                op_id,
                "token.revoke_all",
                json!({"user_id": actor.user_id, "why": "not_me"}),
            ),
        )
        .await?;
    for admin in &admins {
        tx.notify(*admin, "security.reported", detail.clone())
            .await?;
    }
    tx.commit().await?;
    app.db.forget_devices(actor.user_id).await?;
    if let Some(notice) = notice {
        app.db
            .mark_notification_read(actor.user_id, notice.id, app.now())
            .await?;
    }
    Ok(Disowned {
        sessions_ended,
        tokens_revoked,
        administrators_told: admins.len(),
    })
}
