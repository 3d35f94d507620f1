//! The security API: the checklist (`holdfast doctor`'s, as the security page shows it), the
//! backup key's confirmation, and alerts — the channels, the delivery log and a test alert.

use crate::WebState;
use crate::api::{ApiResult, ok};
use crate::error::current_op_id;
use crate::extract::{Auth, QueryPairs};
use axum::extract::State;
use holdfast_app::{alerts, checklist, security};
use serde_json::json;

/// How customers are protected: the scored checklist, and the backup key (auditors and
/// administrators).
pub async fn security_get(
    State(state): State<WebState>,
    Auth(actor): Auth,
    query: QueryPairs,
) -> ApiResult {
    query.only(&[])?;
    let status = security::status(&state.app, &actor).await?;
    let checklist = checklist::for_actor(&state.app, &actor).await?;
    ok(json!({
        "level": checklist.level,
        "score": checklist.score,
        "checks": checklist.items,
        "backup_key": status.backup_key,
    }))
}

/// An administrator confirms the backup key's recovery sheet is stored off the machine.
pub async fn security_backup_key_stored(
    State(state): State<WebState>,
    Auth(actor): Auth,
    query: QueryPairs,
) -> ApiResult {
    query.only(&[])?;
    security::confirm_backup_key(&state.app, &actor, &current_op_id()).await?;
    ok(json!({"confirmed": true}))
}

/// Where alerts go and what became of the last ones (auditors and administrators).
pub async fn alerts_get(
    State(state): State<WebState>,
    Auth(actor): Auth,
    query: QueryPairs,
) -> ApiResult {
    query.only(&[])?;
    let overview = alerts::overview(&state.app, &actor).await?;
    ok(json!({"channels": overview.channels, "deliveries": overview.deliveries}))
}

/// Sends a test alert to every channel (administrators).
pub async fn alerts_test(
    State(state): State<WebState>,
    Auth(actor): Auth,
    query: QueryPairs,
) -> ApiResult {
    query.only(&[])?;
    let queued = alerts::send_test(&state.app, &actor, &current_op_id()).await?;
    ok(json!({"queued": queued}))
}
