//! The API of permissions: "why can't I see this?", access summaries, roles, teams, module
//! switches (each change previewable with `dry_run`), access requests and notifications.

use crate::WebState;
use crate::api::{ApiPath, ApiResult, created, id_of, ok, time};
use crate::error::{ApiError, current_op_id};
use crate::extract::{ApiJson, Auth, QueryPairs};
use axum::extract::State;
use holdfast_app::access::{self, AccessChange, Decision, Question};
use holdfast_app::{AccessRequestRow, AppError, RoleRow};
use holdfast_domain::access::{Team, parse_permission};
use holdfast_domain::{Entity, Module, RoleDef, Timestamp};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// `contact:12` → (contact, 12), or the field error a client can act on.
pub fn parse_record_ref(text: &str) -> Result<(Entity, i64), ApiError> {
    Entity::parse_ref(text).ok_or_else(|| {
        ApiError(AppError::invalid(
            "record",
            "invalid_record",
            "Name a record as KIND:ID, for example contact:12",
        ))
    })
}

fn permission_of(text: &str, field: &str) -> Result<(Module, holdfast_domain::Right), ApiError> {
    parse_permission(text).ok_or_else(|| {
        ApiError(AppError::invalid(
            field,
            "invalid_choice",
            "Write a right as module.right, for example deals.view or exports.export",
        ))
    })
}

pub async fn explain(
    State(state): State<WebState>,
    Auth(actor): Auth,
    query: QueryPairs,
) -> ApiResult {
    query.only(&["user_id", "permission", "record", "field"])?;
    let user_id = match query.get("user_id") {
        Some(id_or_name) => access::user_named(&state.app, &actor, id_or_name).await?,
        None => actor.user_id,
    };
    let record = query.get("record").map(parse_record_ref).transpose()?;
    let permission = match (query.get("permission"), record) {
        (Some(text), _) => permission_of(text, "permission")?,
        (None, Some((entity, _))) => (Module::of(entity), holdfast_domain::Right::View),
        (None, None) => {
            return Err(ApiError(AppError::invalid(
                "permission",
                "required",
                "Ask about a right (permission=deals.view) or a record (record=contact:12)",
            )));
        }
    };
    let question = Question {
        user_id,
        permission,
        record,
        field: query.get("field").map(str::to_owned),
    };
    let chain = access::explain_for(&state.app, &actor, question).await?;
    ok(json!({"allowed": chain.allowed(), "steps": chain.steps}))
}

pub async fn summary(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult {
    let id = if id == "me" {
        actor.user_id
    } else {
        id_of(&id, "user")?
    };
    ok(serde_json::to_value(access::summary(&state.app, &actor, id).await?).unwrap_or_default())
}

fn role_json(role: &RoleDef) -> Value {
    let row = RoleRow::from_def(role);
    json!({"key": row.key, "name": row.name, "built_in": role.built_in, "rights": row.rights, "scope": row.scope, "fields": row.fields})
}

pub async fn roles(State(state): State<WebState>, Auth(actor): Auth) -> ApiResult {
    let roles = access::roles(&state.app, &actor).await?;
    ok(json!({"items": roles.iter().map(role_json).collect::<Vec<_>>()}))
}

/// Applies or previews a permission change and answers with the preview.
async fn apply(
    state: &WebState,
    actor: &holdfast_domain::Actor,
    change: AccessChange,
    dry_run: bool,
) -> ApiResult {
    let outcome = access::change(&state.app, actor, &current_op_id(), change, dry_run).await?;
    ok(json!({"applied": outcome.applied, "preview": outcome.preview, "team_id": outcome.team_id}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleBody {
    name: String,
    #[serde(default)]
    rights: Vec<String>,
    scope: String,
    #[serde(default)]
    fields: BTreeMap<String, String>,
    #[serde(default)]
    dry_run: bool,
}

pub async fn role_put(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath(key): ApiPath<String>,
    ApiJson(body): ApiJson<RoleBody>,
) -> ApiResult {
    let row = RoleRow {
        key,
        name: body.name.trim().to_owned(),
        rights: body.rights,
        scope: body.scope,
        fields: body.fields,
    };
    apply(&state, &actor, AccessChange::PutRole(row), body.dry_run).await
}

pub async fn role_delete(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath(key): ApiPath<String>,
    query: QueryPairs,
) -> ApiResult {
    let dry_run = dry_run_query(&query)?;
    apply(&state, &actor, AccessChange::DeleteRole(key), dry_run).await
}

fn team_json(team: &Team) -> Value {
    json!({"id": team.id, "name": team.name, "parent_id": team.parent_id, "manager_id": team.manager_id})
}

pub async fn teams(State(state): State<WebState>, Auth(actor): Auth) -> ApiResult {
    let teams = access::teams(&state.app, &actor).await?;
    ok(json!({"items": teams.iter().map(team_json).collect::<Vec<_>>()}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamBody {
    name: String,
    #[serde(default)]
    parent_id: Option<i64>,
    #[serde(default)]
    manager_id: Option<i64>,
    #[serde(default)]
    dry_run: bool,
}

impl TeamBody {
    fn team(&self, id: i64) -> Team {
        Team {
            id,
            name: self.name.trim().to_owned(),
            parent_id: self.parent_id,
            manager_id: self.manager_id,
        }
    }
}

/// `?dry_run=true` on a DELETE, the only parameter those take.
fn dry_run_query(query: &QueryPairs) -> Result<bool, ApiError> {
    query.only(&["dry_run"])?;
    Ok(query.get("dry_run") == Some("true"))
}

pub async fn team_create(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiJson(body): ApiJson<TeamBody>,
) -> ApiResult {
    let mut response = apply(
        &state,
        &actor,
        AccessChange::PutTeam(body.team(0)),
        body.dry_run,
    )
    .await?;
    if !body.dry_run {
        *response.status_mut() = axum::http::StatusCode::CREATED;
    }
    Ok(response)
}

pub async fn team_put(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<TeamBody>,
) -> ApiResult {
    let team = body.team(id_of(&id, "team")?);
    apply(&state, &actor, AccessChange::PutTeam(team), body.dry_run).await
}

pub async fn team_delete(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
    query: QueryPairs,
) -> ApiResult {
    let dry_run = dry_run_query(&query)?;
    apply(
        &state,
        &actor,
        AccessChange::DeleteTeam(id_of(&id, "team")?),
        dry_run,
    )
    .await
}

pub async fn modules(State(state): State<WebState>, Auth(_actor): Auth) -> ApiResult {
    let off = access::modules_off(&state.app).await?;
    let items: Vec<Value> = Module::ALL
        .iter()
        .map(|m| json!({"module": m.key(), "on": !off.contains(m), "can_switch_off": m.can_switch_off()}))
        .collect();
    ok(json!({"items": items}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleBody {
    on: bool,
    #[serde(default)]
    dry_run: bool,
}

pub async fn module_put(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath(key): ApiPath<String>,
    ApiJson(body): ApiJson<ModuleBody>,
) -> ApiResult {
    let module = Module::parse(&key).ok_or_else(|| {
        let known: Vec<&str> = Module::ALL.iter().map(|m| m.key()).collect();
        ApiError(AppError::not_found(format!(
            "module '{key}' (modules: {})",
            known.join(", ")
        )))
    })?;
    apply(
        &state,
        &actor,
        AccessChange::SwitchModule(module, body.on),
        body.dry_run,
    )
    .await
}

pub fn request_json(request: &AccessRequestRow, now: Timestamp) -> Value {
    json!({
        "id": request.id,
        "user_id": request.user_id,
        "permission": request.permission,
        "record": request.record.map(|(e, id)| format!("{}:{id}", e.name())),
        "reason": request.reason,
        "status": request.state(now),
        "created_at": request.created_at.to_rfc3339(),
        "decided_by": request.decided_by,
        "decided_at": time(request.decided_at),
        "decision_note": request.decision_note,
        "expires_at": time(request.expires_at),
    })
}

pub async fn requests(State(state): State<WebState>, Auth(actor): Auth) -> ApiResult {
    let now = state.app.now();
    let to_decide = access::pending_requests(&state.app, &actor).await?;
    let mine = access::my_requests(&state.app, &actor).await?;
    ok(json!({
        "to_decide": to_decide.iter().map(|r| request_json(r, now)).collect::<Vec<_>>(),
        "mine": mine.iter().map(|r| request_json(r, now)).collect::<Vec<_>>(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestBody {
    #[serde(default)]
    permission: Option<String>,
    /// KIND:ID of one record to have shared.
    #[serde(default)]
    record: Option<String>,
    reason: String,
}

pub async fn request_create(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiJson(body): ApiJson<RequestBody>,
) -> ApiResult {
    let record = body.record.as_deref().map(parse_record_ref).transpose()?;
    let permission = match (&body.permission, record) {
        (Some(text), _) => permission_of(text, "permission")?,
        (None, Some((entity, _))) => (Module::of(entity), holdfast_domain::Right::View),
        (None, None) => {
            return Err(ApiError(AppError::invalid(
                "permission",
                "required",
                "Ask for a right (permission: deals.view) or a record (record: contact:12)",
            )));
        }
    };
    let request = access::request(
        &state.app,
        &actor,
        &current_op_id(),
        permission,
        record,
        &body.reason,
    )
    .await?;
    created(request_json(&request, state.app.now()))
}

pub async fn request_get(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult {
    let request = access::request_by_id(&state.app, &actor, id_of(&id, "access request")?).await?;
    ok(request_json(&request, state.app.now()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    /// For an approval: when the access ends (RFC 3339); none for no end.
    #[serde(default)]
    expires_at: Option<String>,
    /// For a decline or revocation: why (the requester reads it).
    #[serde(default)]
    note: Option<String>,
}

pub async fn request_decide(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath((id, verb)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<DecisionBody>,
) -> ApiResult {
    let id = id_of(&id, "access request")?;
    let decision = match verb.as_str() {
        "approve" => {
            let expires_at = match body.expires_at.as_deref() {
                None | Some("") => None,
                Some(text) => Some(Timestamp::parse_rfc3339(text).ok_or_else(|| {
                    ApiError(AppError::invalid(
                        "expires_at",
                        "invalid_time",
                        "Must be a time such as 2026-12-31T18:00:00Z",
                    ))
                })?),
            };
            Decision::Approve { expires_at }
        }
        "decline" => Decision::Decline {
            note: body.note.unwrap_or_default(),
        },
        "revoke" => Decision::Revoke {
            note: body.note.unwrap_or_default(),
        },
        other => {
            return Err(ApiError(AppError::not_found(format!(
                "action '{other}' (approve, decline, revoke)"
            ))));
        }
    };
    let request = access::decide(&state.app, &actor, &current_op_id(), id, decision).await?;
    ok(request_json(&request, state.app.now()))
}

pub async fn notifications(State(state): State<WebState>, Auth(actor): Auth) -> ApiResult {
    let items = access::notifications(&state.app, &actor).await?;
    let items: Vec<Value> = items
        .iter()
        .map(|n| json!({"id": n.id, "at": n.at.to_rfc3339(), "kind": n.kind, "detail": n.detail, "read": n.read_at.is_some()}))
        .collect();
    ok(json!({"items": items}))
}

pub async fn notifications_read(State(state): State<WebState>, Auth(actor): Auth) -> ApiResult {
    access::mark_notifications_read(&state.app, &actor).await?;
    ok(json!({"read": true}))
}

pub async fn reviews(State(state): State<WebState>, Auth(actor): Auth) -> ApiResult {
    let items = access::reviews(&state.app, &actor).await?;
    ok(json!({"every_days": state.app.config.access_review_days, "items": items}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewBody {
    /// `confirmed` or `trimmed`.
    outcome: String,
    #[serde(default)]
    note: Option<String>,
}

pub async fn review_post(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ReviewBody>,
) -> ApiResult {
    let id = id_of(&id, "user")?;
    let status = access::review(
        &state.app,
        &actor,
        &current_op_id(),
        id,
        &body.outcome,
        body.note.as_deref(),
    )
    .await?;
    ok(serde_json::to_value(status).unwrap_or_default())
}

pub async fn report(State(state): State<WebState>, Auth(actor): Auth) -> ApiResult {
    let report = access::report(&state.app, &actor).await?;
    let changes: Vec<Value> = report
        .changes
        .iter()
        .map(|c| json!({"seq": c.seq, "at": c.at.to_rfc3339(), "by": c.actor_name, "action": c.action, "detail": c.detail}))
        .collect();
    ok(json!({
        "powerful": report.powerful,
        "two_factor_available": report.two_factor_available,
        "dormant_after_days": report.dormant_after_days,
        "dormant": report.dormant.iter().map(|(id, name, last)| json!({"user_id": id, "display_name": name, "last_login_at": time(*last)})).collect::<Vec<_>>(),
        "unused_after_days": report.unused_after_days,
        "unused": report.unused,
        "changes": changes,
    }))
}
