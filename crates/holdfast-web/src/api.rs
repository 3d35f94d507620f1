//! JSON API handlers under `/api/v1`. Each parses its input, calls one use case in
//! `holdfast-app` with the authenticated actor, and renders the result. No SQL, no rules here.

use crate::WebState;
use crate::error::{ApiError, current_op_id};
use crate::extract::{ApiJson, Auth, QueryPairs, session_set_cookie};
use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use holdfast_app::backup;
use holdfast_app::records::{self, Change};
use holdfast_app::{AppError, access, auth, revert, settings, users};
use holdfast_app::{SessionRow, TokenRow, UserRow, VersionRow};
use holdfast_domain::access::authorize;
use holdfast_domain::{Action, CustomFieldDef, CustomFieldKind, Entity, Timestamp};
use serde::Deserialize;
use serde_json::{Value, json};

pub(crate) type ApiResult = Result<Response, ApiError>;

/// Path segments, with rejections in our error format.
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => Err(path_rejection(rejection)),
        }
    }
}

fn path_rejection(rejection: PathRejection) -> Response {
    ApiError::bad_request(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("No such resource: {}", rejection.body_text()),
    )
}

pub(crate) fn entity_of(collection: &str) -> Result<Entity, ApiError> {
    Entity::from_plural(collection).ok_or_else(|| {
        let known: Vec<&str> = Entity::ALL.iter().map(|e| e.plural()).collect();
        ApiError(AppError::not_found(format!(
            "collection '{}' (collections: {})",
            collection.chars().take(40).collect::<String>(),
            known.join(", ")
        )))
    })
}

pub(crate) fn id_of(text: &str, what: &str) -> Result<i64, ApiError> {
    match text.parse::<i64>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(ApiError(AppError::not_found(format!(
            "{what} '{}'",
            text.chars().take(40).collect::<String>()
        )))),
    }
}

fn target(collection: &str, id: &str) -> Result<(Entity, i64), ApiError> {
    let entity = entity_of(collection)?;
    Ok((entity, id_of(id, entity.name())?))
}

pub(crate) fn ok(value: Value) -> ApiResult {
    Ok(Json(value).into_response())
}

pub(crate) fn created(value: Value) -> ApiResult {
    Ok((StatusCode::CREATED, Json(value)).into_response())
}

pub(crate) fn time(t: Option<Timestamp>) -> Value {
    t.map(|t| Value::String(t.to_rfc3339()))
        .unwrap_or(Value::Null)
}

// ---- records ---------------------------------------------------------------------------------

pub async fn record_list(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath(collection): ApiPath<String>,
    query: QueryPairs,
) -> ApiResult {
    let entity = entity_of(&collection)?;
    if query.get("as_of").is_some() {
        return record_list_as_of(&state, &actor, entity, &query).await;
    }
    let page =
        records::list_in_bulk(&state.app, &actor, &current_op_id(), entity, &query.0).await?;
    ok(json!({
        "items": page.items.iter().map(|r| r.to_json()).collect::<Vec<_>>(),
        "next_cursor": page.next_cursor,
    }))
}

/// Every record a list with these filters would show, as CSV (export rights needed).
pub async fn record_export(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath(collection): ApiPath<String>,
    query: QueryPairs,
) -> ApiResult {
    let entity = entity_of(&collection)?;
    let export = records::export(&state.app, &actor, &current_op_id(), entity, &query.0).await?;
    Ok(csv_response(export))
}

/// A CSV download. The byte-order mark makes spreadsheet programs read Chinese text as UTF-8.
pub fn csv_response(export: records::Export) -> Response {
    let mut body = "\u{FEFF}".as_bytes().to_vec();
    body.extend(export.csv);
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(value) =
        HeaderValue::from_str(&format!("attachment; filename=\"{}\"", export.file_name))
    {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    if let Ok(value) = HeaderValue::from_str(&export.rows.to_string()) {
        headers.insert("x-holdfast-rows", value);
    }
    response
}

pub async fn record_create(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath(collection): ApiPath<String>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult {
    let entity = entity_of(&collection)?;
    let outcome = records::apply_change(
        &state.app,
        &actor,
        &current_op_id(),
        Change::Create {
            entity,
            input: body,
        },
    )
    .await?;
    created(outcome.record.to_json())
}

pub async fn record_get(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath((collection, id)): ApiPath<(String, String)>,
    query: QueryPairs,
) -> ApiResult {
    query.only(&["include_deleted"])?;
    let (entity, id) = target(&collection, &id)?;
    let include_deleted = matches!(query.get("include_deleted"), Some("true" | "1"));
    let record = records::get(&state.app, &actor, entity, id, include_deleted).await?;
    let mut body = record.to_json();
    body["links"] = records::linked_titles(&state.app, &actor, &record).await?;
    ok(body)
}

pub async fn record_update(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath((collection, id)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult {
    let (entity, id) = target(&collection, &id)?;
    let outcome = records::apply_change(
        &state.app,
        &actor,
        &current_op_id(),
        Change::Update {
            entity,
            id,
            input: body,
        },
    )
    .await?;
    ok(outcome.record.to_json())
}

fn outcome_json(outcome: &records::Outcome) -> Value {
    json!({
        "record": outcome.record.to_json(),
        "related": outcome.related.iter().map(|r| json!({"entity": r.entity.name(), "id": r.id, "version": r.version})).collect::<Vec<_>>(),
    })
}

pub async fn record_delete(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath((collection, id)): ApiPath<(String, String)>,
    query: QueryPairs,
) -> ApiResult {
    query.only(&["expected_version", "reason"])?;
    let (entity, id) = target(&collection, &id)?;
    let expected_version = query.int("expected_version")?;
    let reason = query
        .get("reason")
        .map(|r| r.chars().take(500).collect::<String>());
    let change = Change::Delete {
        entity,
        id,
        expected_version,
        reason,
    };
    let outcome = records::apply_change(&state.app, &actor, &current_op_id(), change).await?;
    let mut body = outcome_json(&outcome);
    body["message"] = format!(
        "Moved to the recycle bin with {} related record(s); restore with POST /api/v1/{}/{id}/restore within {} days",
        outcome.related.len(),
        entity.plural(),
        state.app.config.recycle_bin_days
    )
    .into();
    ok(body)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    expected_version: Option<i64>,
}

/// An optional JSON body: empty means defaults.
fn optional_body(bytes: &[u8]) -> Result<ReasonBody, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(ReasonBody::default());
    }
    serde_json::from_slice(bytes).map_err(|error| {
        ApiError(AppError::invalid(
            "body",
            "invalid_body",
            format!("Expected {{\"reason\": …, \"expected_version\": …}}: {error}"),
        ))
    })
}

pub async fn record_restore(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath((collection, id)): ApiPath<(String, String)>,
    query: QueryPairs,
    body: axum::body::Bytes,
) -> ApiResult {
    query.only(&[])?;
    let (entity, id) = target(&collection, &id)?;
    let body = optional_body(&body)?;
    let outcome = records::apply_change(
        &state.app,
        &actor,
        &current_op_id(),
        Change::Restore {
            entity,
            id,
            reason: body.reason,
        },
    )
    .await?;
    ok(outcome_json(&outcome))
}

fn version_json(version: &VersionRow, with_snapshot: bool) -> Value {
    let mut out = json!({
        "version": version.version,
        "action": version.action,
        "at": version.at.to_rfc3339(),
        "actor_id": version.actor_id,
        "actor": version.actor_name,
        "op_id": version.op_id,
        "reason": version.reason,
        "changed": version.changed,
    });
    if with_snapshot {
        out["snapshot"] = version.snapshot.clone();
    }
    out
}

pub async fn record_versions(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath((collection, id)): ApiPath<(String, String)>,
) -> ApiResult {
    let (entity, id) = target(&collection, &id)?;
    let versions = records::history(&state.app, &actor, entity, id).await?;
    ok(json!({"items": versions.iter().map(|v| version_json(v, false)).collect::<Vec<_>>()}))
}

pub async fn record_version(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath((collection, id, version)): ApiPath<(String, String, String)>,
) -> ApiResult {
    let (entity, id) = target(&collection, &id)?;
    let version = id_of(&version, "version")?;
    let found = records::version(&state.app, &actor, entity, id, version).await?;
    ok(version_json(&found, true))
}

pub async fn record_version_restore(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath((collection, id, version)): ApiPath<(String, String, String)>,
    query: QueryPairs,
    body: axum::body::Bytes,
) -> ApiResult {
    query.only(&[])?;
    let (entity, id) = target(&collection, &id)?;
    let version = id_of(&version, "version")?;
    let body = optional_body(&body)?;
    let expected_version = body.expected_version.ok_or_else(|| {
        ApiError(AppError::invalid("expected_version", "required", "Send the current version you are replacing, so a change made meanwhile is not overwritten"))
    })?;
    let change = Change::RestoreVersion {
        entity,
        id,
        version,
        expected_version,
        reason: body.reason,
    };
    let outcome = records::apply_change(&state.app, &actor, &current_op_id(), change).await?;
    ok(outcome.record.to_json())
}

pub async fn record_diff(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath((collection, id)): ApiPath<(String, String)>,
    query: QueryPairs,
) -> ApiResult {
    query.only(&["from", "to"])?;
    let (entity, id) = target(&collection, &id)?;
    let (Some(from), Some(to)) = (query.int("from")?, query.int("to")?) else {
        return Err(ApiError(AppError::invalid(
            "from",
            "required",
            "Give both ?from=VERSION&to=VERSION",
        )));
    };
    let changes = records::diff_versions(&state.app, &actor, entity, id, from, to).await?;
    ok(json!({"from": from, "to": to, "changes": changes}))
}

// ---- recycle bin -----------------------------------------------------------------------------

pub async fn bin_list(
    State(state): State<WebState>,
    Auth(actor): Auth,
    query: QueryPairs,
) -> ApiResult {
    query.only(&["entity", "limit"])?;
    // `contact` or `contacts`: the routes say the plural, people often type the singular.
    let entity = match query.get("entity") {
        Some(name) => Some(
            Entity::from_name(name)
                .or_else(|| Entity::from_plural(name))
                .ok_or_else(|| {
                    ApiError(AppError::invalid(
                        "entity",
                        "invalid_choice",
                        "One of companies, contacts, deals, activities (or the singular)",
                    ))
                })?,
        ),
        None => None,
    };
    let limit = query.int("limit")?.unwrap_or(records::DEFAULT_PAGE_SIZE);
    let entries = records::recycle_bin(&state.app, &actor, entity, limit).await?;
    let days = state.app.config.recycle_bin_days;
    ok(json!({"items": entries.iter().map(|entry| {
        let deletion = entry.root.deleted;
        json!({
            "entity": entry.root.entity.name(),
            "id": entry.root.id,
            "title": entry.root.title(),
            "version": entry.root.version,
            "deleted_at": time(deletion.map(|d| d.at)),
            "deleted_by": deletion.map(|d| d.by),
            "purge_after": time(deletion.map(|d| d.at.plus_days(days))),
            "related": entry.related.iter().map(|(e, n)| (e.plural().to_owned(), Value::from(*n))).collect::<serde_json::Map<_, _>>(),
        })
    }).collect::<Vec<_>>()}))
}

pub async fn bin_purge(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath((collection, id)): ApiPath<(String, String)>,
    query: QueryPairs,
) -> ApiResult {
    query.only(&["reason"])?;
    let (entity, id) = target(&collection, &id)?;
    let purged = records::purge(
        &state.app,
        &actor,
        &current_op_id(),
        entity,
        id,
        query.get("reason"),
    )
    .await?;
    ok(json!({"purged": purged}))
}

// ---- setup, login, own account -----------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetupBody {
    token: String,
    username: String,
    #[serde(default)]
    display_name: String,
    password: String,
}

pub async fn setup(State(state): State<WebState>, ApiJson(body): ApiJson<SetupBody>) -> ApiResult {
    let user = auth::complete_setup(
        &state.app,
        &current_op_id(),
        &body.token,
        &body.username,
        &body.display_name,
        &body.password,
    )
    .await?;
    created(user_json(&user))
}

pub async fn logout(
    State(state): State<WebState>,
    Auth(actor): Auth,
    query: QueryPairs,
) -> ApiResult {
    query.only(&[])?;
    auth::logout(&state.app, &actor, &current_op_id()).await?;
    let mut response = Json(json!({"logged_out": true})).into_response();
    if let Ok(value) = HeaderValue::from_str(&session_set_cookie(&state.app, None)) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

pub(crate) fn user_json(user: &UserRow) -> Value {
    json!({
        "id": user.id,
        "username": user.username,
        "display_name": user.display_name,
        "role": user.role,
        "team_id": user.team_id,
        "active": user.active,
        "pending": user.pending,
        "created_at": user.created_at.to_rfc3339(),
        "last_login_at": time(user.last_login_at),
    })
}

pub async fn me(State(state): State<WebState>, Auth(actor): Auth) -> ApiResult {
    let user = users::get(&state.app, &actor, actor.user_id).await?;
    ok(user_json(&user))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordChangeBody {
    current_password: String,
    new_password: String,
}

pub async fn me_password(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiJson(body): ApiJson<PasswordChangeBody>,
) -> ApiResult {
    let tokens_revoked = auth::change_password(
        &state.app,
        &actor,
        &current_op_id(),
        &body.current_password,
        &body.new_password,
    )
    .await?;
    ok(json!({"changed": true, "other_sessions_ended": true, "tokens_revoked": tokens_revoked}))
}

pub(crate) fn session_json(session: &SessionRow) -> Value {
    json!({
        "id": session.id,
        "created_at": session.created_at.to_rfc3339(),
        "last_seen_at": session.last_seen_at.to_rfc3339(),
        "expires_at": session.expires_at.to_rfc3339(),
        "address": session.address,
        "user_agent": session.user_agent,
        "method": session.method,
        "remembered": session.remembered,
    })
}

pub async fn me_sessions(State(state): State<WebState>, Auth(actor): Auth) -> ApiResult {
    let sessions = auth::my_sessions(&state.app, &actor).await?;
    ok(json!({"items": sessions.iter().map(session_json).collect::<Vec<_>>()}))
}

pub async fn me_session_revoke(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
    query: QueryPairs,
) -> ApiResult {
    query.only(&[])?;
    let id = id_of(&id, "session")?;
    auth::revoke_session(&state.app, &actor, &current_op_id(), id).await?;
    ok(json!({"revoked": id}))
}

pub(crate) fn token_json(token: &TokenRow) -> Value {
    json!({
        "id": token.id,
        "name": token.name,
        "created_at": token.created_at.to_rfc3339(),
        "last_used_at": time(token.last_used_at),
        "expires_at": time(token.expires_at),
        "revoked_at": time(token.revoked_at),
        "read_only": token.read_only,
        "modules": token.modules,
    })
}

pub async fn me_tokens(State(state): State<WebState>, Auth(actor): Auth) -> ApiResult {
    let tokens = auth::my_tokens(&state.app, &actor).await?;
    ok(json!({"items": tokens.iter().map(token_json).collect::<Vec<_>>()}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    name: String,
    #[serde(default)]
    expires_in_days: Option<i64>,
    #[serde(default)]
    read_only: bool,
    /// The user's password (or a code from their authenticator app), asked again.
    password: String,
    /// Only these modules; left out: all of the user's rights.
    #[serde(default)]
    modules: Option<Vec<String>>,
    #[serde(default)]
    never_expires: bool,
}

pub async fn me_token_create(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiJson(body): ApiJson<TokenBody>,
) -> ApiResult {
    let request = auth::TokenRequest {
        name: &body.name,
        expires_in_days: body.expires_in_days,
        read_only: body.read_only,
        password: &body.password,
        modules: body.modules,
        never_expires: body.never_expires,
    };
    let token = auth::create_token(&state.app, &actor, &current_op_id(), request).await?;
    let mut out = token_json(&token.token);
    out["secret"] = token.secret.into();
    out["note"] =
        "Copy the secret now: it is shown only once. Use it as Authorization: Bearer <secret>"
            .into();
    created(out)
}

pub async fn me_token_revoke(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
    query: QueryPairs,
) -> ApiResult {
    query.only(&[])?;
    let id = id_of(&id, "token")?;
    auth::revoke_token(&state.app, &actor, &current_op_id(), id).await?;
    ok(json!({"revoked": id}))
}

// ---- user administration ---------------------------------------------------------------------

pub async fn user_list(State(state): State<WebState>, Auth(actor): Auth) -> ApiResult {
    let found = users::list(&state.app, &actor).await?;
    ok(json!({"items": found.iter().map(user_json).collect::<Vec<_>>()}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserCreateBody {
    username: String,
    #[serde(default)]
    display_name: String,
    password: String,
    #[serde(default = "rep")]
    role: String,
}

fn rep() -> String {
    holdfast_domain::access::REP.into()
}

pub async fn user_create(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiJson(body): ApiJson<UserCreateBody>,
) -> ApiResult {
    let user = users::create(
        &state.app,
        &actor,
        &current_op_id(),
        &body.username,
        &body.display_name,
        &body.password,
        &body.role,
    )
    .await?;
    created(user_json(&user))
}

pub async fn user_get(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult {
    let id = id_of(&id, "user")?;
    ok(user_json(&users::get(&state.app, &actor, id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserUpdateBody {
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    role: Option<String>,
    /// A team id, or null to take the user out of their team.
    #[serde(default, with = "serde_with_double_option")]
    team_id: Option<Option<i64>>,
    #[serde(default)]
    active: Option<bool>,
    /// `true` approves a pending user's access.
    #[serde(default)]
    approve: bool,
    /// With `true`, nothing changes: the answer is the preview of a role or team change.
    #[serde(default)]
    dry_run: bool,
}

/// `"team_id": null` (take out of the team) differs from no `team_id` (leave it).
mod serde_with_double_option {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
        Ok(Some(Option::deserialize(d)?))
    }
}

pub async fn user_update(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<UserUpdateBody>,
) -> ApiResult {
    let id = id_of(&id, "user")?;
    let access = body.role.is_some() || body.team_id.is_some() || body.approve;
    let account = users::UserChange {
        display_name: body.display_name,
        active: body.active,
        ..Default::default()
    };
    let account_changes = account.display_name.is_some() || account.active.is_some();
    if body.dry_run {
        // Every part of the change is checked and previewed; nothing is written.
        let mut answer = json!({"applied": false});
        if access {
            let change = access::AccessChange::SetUser {
                user_id: id,
                role: body.role,
                team_id: body.team_id,
                pending: body.approve.then_some(false),
            };
            let outcome =
                access::change(&state.app, &actor, &current_op_id(), change, true).await?;
            answer["preview"] = json!(outcome.preview);
        }
        if account_changes {
            let (_, preview) = users::preview_update(&state.app, &actor, id, &account).await?;
            answer["account"] = json!(preview);
        }
        return ok(answer);
    }
    if access {
        // Role, team and approval change who sees what: previewed and audited with before/after.
        let change = access::AccessChange::SetUser {
            user_id: id,
            role: body.role,
            team_id: body.team_id,
            pending: body.approve.then_some(false),
        };
        access::change(&state.app, &actor, &current_op_id(), change, false).await?;
    }
    if account_changes {
        users::update(&state.app, &actor, &current_op_id(), id, account).await?;
    }
    ok(user_json(&users::get(&state.app, &actor, id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetBody {
    password: String,
}

pub async fn user_password_reset(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<PasswordResetBody>,
) -> ApiResult {
    let id = id_of(&id, "user")?;
    users::reset_password(&state.app, &actor, &current_op_id(), id, &body.password).await?;
    ok(json!({"reset": true, "sessions_ended": true}))
}

pub async fn user_sessions_revoke(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
    query: QueryPairs,
) -> ApiResult {
    query.only(&[])?;
    let id = id_of(&id, "user")?;
    let revoked = users::revoke_sessions(&state.app, &actor, &current_op_id(), id).await?;
    // Said plainly: logging out of browsers does not stop scripts.
    let tokens = users::working_tokens(&state.app, id).await?;
    ok(json!({"sessions_revoked": revoked, "api_tokens_still_working": tokens}))
}

pub async fn user_tokens_revoke(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
    query: QueryPairs,
) -> ApiResult {
    query.only(&[])?;
    let id = id_of(&id, "user")?;
    let revoked = users::revoke_tokens(&state.app, &actor, &current_op_id(), id).await?;
    ok(json!({"tokens_revoked": revoked}))
}

// ---- settings and audit ------------------------------------------------------------------------

pub async fn custom_field_list(State(state): State<WebState>, Auth(actor): Auth) -> ApiResult {
    let defs = settings::custom_fields(&state.app, &actor).await?;
    ok(json!({"items": defs}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomFieldBody {
    entity: String,
    key: String,
    label: String,
    kind: String,
    #[serde(default)]
    options: Vec<String>,
}

pub async fn custom_field_create(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiJson(body): ApiJson<CustomFieldBody>,
) -> ApiResult {
    let entity = Entity::from_name(&body.entity).ok_or_else(|| {
        ApiError(AppError::invalid(
            "entity",
            "invalid_choice",
            "One of company, contact, deal, activity",
        ))
    })?;
    let kind = CustomFieldKind::parse(&body.kind).ok_or_else(|| {
        ApiError(AppError::invalid(
            "kind",
            "invalid_choice",
            "One of text, number, date, select",
        ))
    })?;
    let draft = CustomFieldDef {
        id: 0,
        entity,
        key: body.key,
        label: body.label,
        kind,
        options: body.options,
        archived: false,
    };
    let def = settings::create_custom_field(&state.app, &actor, &current_op_id(), draft).await?;
    created(json!(def))
}

pub async fn custom_field_archive(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
    query: QueryPairs,
) -> ApiResult {
    query.only(&[])?;
    let id = id_of(&id, "custom field")?;
    settings::archive_custom_field(&state.app, &actor, &current_op_id(), id).await?;
    ok(json!({"archived": id, "note": "Stored values are kept; the field takes no new values"}))
}

pub async fn pipeline_list(State(state): State<WebState>, Auth(actor): Auth) -> ApiResult {
    let found = settings::pipelines(&state.app, &actor).await?;
    ok(
        json!({"items": found.iter().map(|(key, name, stages)| json!({"key": key, "name": name, "stages": stages})).collect::<Vec<_>>()}),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineBody {
    name: String,
    stages: Vec<String>,
}

pub async fn pipeline_put(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath(key): ApiPath<String>,
    ApiJson(body): ApiJson<PipelineBody>,
) -> ApiResult {
    settings::put_pipeline(
        &state.app,
        &actor,
        &current_op_id(),
        &key,
        &body.name,
        body.stages.clone(),
    )
    .await?;
    ok(json!({"key": key, "name": body.name.trim(), "stages": body.stages}))
}

pub async fn audit_list(
    State(state): State<WebState>,
    Auth(actor): Auth,
    query: QueryPairs,
) -> ApiResult {
    authorize(&actor, Action::Audit).map_err(AppError::from)?;
    query.only(AUDIT_FILTERS)?;
    let entity = match query.get("entity") {
        Some(name) => Some(Entity::from_name(name).ok_or_else(|| {
            ApiError(AppError::invalid(
                "entity",
                "invalid_choice",
                "One of company, contact, deal, activity",
            ))
        })?),
        None => None,
    };
    let time = |name: &str| {
        query
            .get(name)
            .map(|t| time_param(Some(t), name))
            .transpose()
    };
    let filter = holdfast_app::AuditFilter {
        entity,
        record_id: query.int("record_id")?,
        actor_id: query.int("actor_id")?,
        token_id: query.int("token_id")?,
        session_id: query.int("session_id")?,
        client: query.get("client").map(str::to_owned),
        action: query.get("action").map(str::to_owned),
        from: time("from")?,
        to: time("to")?,
        after_seq: query.int("after")?,
    };
    let limit = query.int("limit")?.unwrap_or(100);
    let entries = settings::audit_log(&state.app, &actor, &filter, limit).await?;
    ok(json!({"items": entries.iter().map(|e| json!({
        "seq": e.seq,
        "at": e.at.to_rfc3339(),
        "actor_id": e.actor_id,
        "actor": e.actor_name,
        "session_id": e.via.session_id,
        "token_id": e.via.token_id,
        "client": e.via.client,
        "op_id": e.op_id,
        "action": e.action,
        "entity": e.entity,
        "record_id": e.record_id,
        "version": e.version,
        "detail": e.detail,
        "hash": e.hash,
    })).collect::<Vec<_>>()}))
}

/// The audit log's query parameters.
pub const AUDIT_FILTERS: &[&str] = &[
    "entity",
    "record_id",
    "actor_id",
    "token_id",
    "session_id",
    "client",
    "action",
    "from",
    "to",
    "after",
    "limit",
];

fn time_param(value: Option<&str>, field: &str) -> Result<Timestamp, ApiError> {
    let text = value.ok_or_else(|| {
        ApiError(AppError::invalid(
            field,
            "required",
            "A time is required, e.g. 2026-12-01T09:00:00+08:00",
        ))
    })?;
    Timestamp::parse_rfc3339(text).ok_or_else(|| {
        ApiError(AppError::invalid(
            field,
            "invalid_time",
            "Not a time such as 2026-12-01T09:00:00+08:00",
        ))
    })
}

/// `GET /api/v1/{collection}?as_of=…`: the list as it was then.
async fn record_list_as_of(
    state: &WebState,
    actor: &holdfast_domain::Actor,
    entity: Entity,
    query: &QueryPairs,
) -> ApiResult {
    query.only(&["as_of", "after", "limit"])?;
    let at = time_param(query.get("as_of"), "as_of")?;
    let after = query.int("after")?.unwrap_or(0);
    let limit = query.int("limit")?.unwrap_or(records::DEFAULT_PAGE_SIZE);
    let page = records::list_as_of(&state.app, actor, entity, at, after, limit).await?;
    ok(json!({
        "as_of": at.to_rfc3339(),
        "items": page.items.iter().map(|v| v.snapshot.clone()).collect::<Vec<_>>(),
        "next_after": page.next_after,
    }))
}

pub async fn record_as_of(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath((collection, id)): ApiPath<(String, String)>,
    query: QueryPairs,
) -> ApiResult {
    query.only(&["at"])?;
    let (entity, id) = target(&collection, &id)?;
    let at = time_param(query.get("at"), "at")?;
    let version = records::as_of(&state.app, &actor, entity, id, at)
        .await?
        .ok_or_else(|| {
            ApiError(AppError::not_found(format!(
                "{entity} {id} as it was at {}",
                at.to_rfc3339()
            )))
        })?;
    ok(json!({"at": at.to_rfc3339(), "version": version_json(&version, true)}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AtBody {
    at: String,
}

pub async fn record_restore_to_time(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath((collection, id)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<AtBody>,
) -> ApiResult {
    let (entity, id) = target(&collection, &id)?;
    let at = time_param(Some(&body.at), "at")?;
    let outcome =
        records::restore_to_time(&state.app, &actor, &current_op_id(), entity, id, at).await?;
    ok(outcome_json(&outcome))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevertBody {
    to: String,
    by_user_id: Option<i64>,
    /// Only what was done through this API token; the tokens and users it made are undone too.
    by_token_id: Option<i64>,
    #[serde(default)]
    dry_run: bool,
    /// `keep` (default) or `revert`: what to do with every conflict not named in `choices`.
    #[serde(default)]
    conflicts: Option<String>,
    #[serde(default)]
    choices: Vec<RevertChoiceBody>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevertChoiceBody {
    entity: String,
    id: i64,
    field: String,
    choice: String,
}

fn revert_request(body: RevertBody) -> Result<(revert::Request, bool), ApiError> {
    let to = time_param(Some(&body.to), "to")?;
    let choice = |text: &str, field: String| {
        revert::Choice::parse(text).ok_or_else(|| {
            ApiError(AppError::invalid(
                &field,
                "invalid_choice",
                "Choose keep (leave the later change) or revert (put the value at the time back)",
            ))
        })
    };
    let conflicts = match body.conflicts.as_deref() {
        None => revert::Choice::Keep,
        Some(text) => choice(text, "conflicts".into())?,
    };
    let mut choices = std::collections::BTreeMap::new();
    for (index, item) in body.choices.into_iter().enumerate() {
        let entity = Entity::from_name(&item.entity).ok_or_else(|| {
            ApiError(AppError::invalid(
                &format!("choices.{index}.entity"),
                "invalid_choice",
                "One of company, contact, deal, activity",
            ))
        })?;
        let value = choice(&item.choice, format!("choices.{index}.choice"))?;
        choices.insert((entity, item.id, item.field), value);
    }
    let request = revert::Request {
        to,
        by: body.by_user_id,
        token: body.by_token_id,
        conflicts,
        choices,
        note: None,
    };
    Ok((request, body.dry_run))
}

/// A revert's preview or result, record by record, with its figures.
fn revert_json(preview: &revert::Preview, dry_run: bool) -> Value {
    let counts = preview.counts();
    let records: Vec<Value> = preview
        .items
        .iter()
        .map(|item| {
            json!({
                "entity": item.entity.name(),
                "id": item.id,
                "title": item.title,
                "action": item.action(),
                "reason": item.unchanged,
                "fields": item.plan.fields,
                "conflicts": item.plan.conflicts,
            })
        })
        .collect();
    json!({
        "dry_run": dry_run,
        "to": preview.to.to_rfc3339(),
        "by_user_id": preview.by,
        "by_token_id": preview.token,
        "records": records,
        "made": preview.made,
        "summary": {
            "records": counts.records,
            "changing": counts.changing,
            "fields": counts.fields,
            "restored": counts.restored,
            "deleted": counts.deleted,
            "conflicts": counts.conflicts,
            "unchanged": counts.unchanged,
        },
        "changed": if dry_run { 0 } else { counts.changing },
    })
}

pub async fn revert(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiJson(body): ApiJson<RevertBody>,
) -> ApiResult {
    authorize(&actor, Action::Administer).map_err(AppError::from)?;
    let (request, dry_run) = revert_request(body)?;
    let preview = if dry_run {
        revert::preview(&state.app, &actor, &request).await?
    } else {
        revert::apply(&state.app, &actor, &current_op_id(), &request).await?
    };
    ok(revert_json(&preview, dry_run))
}

fn run_json(run: &holdfast_app::backup::schedule::BackupRunRow) -> Value {
    let at = |micros: Option<i64>| time(micros.map(Timestamp));
    json!({
        "id": run.id,
        "reason": run.reason,
        "started_at": at(Some(run.started_at)),
        "finished_at": at(run.finished_at),
        "file": run.file,
        "bytes": run.bytes,
        "sha256": run.sha256,
        "rows": run.rows_total,
        "encrypted": run.encrypted,
        "error": run.error,
        "copied_to": run.copied_to,
        "drill_at": at(run.drill_at),
        "drill_ms": run.drill_ms,
        "drill_error": run.drill_error,
    })
}

pub async fn backups_get(State(state): State<WebState>, Auth(actor): Auth) -> ApiResult {
    let (status, runs) = backup::overview(&state.app, &actor).await?;
    ok(json!({
        "state": status.state,
        "problems": status.problems,
        "encrypted": status.encrypted,
        "every_minutes": status.every_minutes,
        "last_good": status.last_good.as_ref().map(run_json),
        "last_drill": status.last_drill.as_ref().map(run_json),
        "running": status.running,
        "items": runs.iter().map(run_json).collect::<Vec<_>>(),
    }))
}

pub async fn backups_post(State(state): State<WebState>, Auth(actor): Auth) -> ApiResult {
    backup::start(&state.app, &actor, backup::Job::Backup)?;
    Ok((StatusCode::ACCEPTED, Json(json!({"started": "backup"}))).into_response())
}

pub async fn backup_drill_post(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult {
    let id = id_of(&id, "backup")?;
    backup::start(&state.app, &actor, backup::Job::Drill(id))?;
    Ok((StatusCode::ACCEPTED, Json(json!({"started": "drill"}))).into_response())
}

/// The selection a backup's record routes take: `ids` (`contact:12`), `deleted_since`, or
/// `entity` with `matching`.
fn selection(
    ids: &[String],
    deleted_since: Option<&str>,
    entity: Option<&str>,
    matching: Option<&str>,
) -> Result<backup::Selection, ApiError> {
    if !ids.is_empty() {
        let parsed = ids
            .iter()
            .map(|key| {
                Entity::parse_ref(key).ok_or_else(|| {
                    ApiError(AppError::invalid(
                        "ids",
                        "invalid_id",
                        format!("{key:?} is not KIND:ID such as contact:12"),
                    ))
                })
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        return Ok(backup::Selection::Ids(parsed));
    }
    if let (Some(entity), Some(text)) = (entity, matching) {
        let entity = Entity::from_name(entity).ok_or_else(|| {
            ApiError(AppError::invalid(
                "entity",
                "invalid_choice",
                "One of company, contact, deal, activity",
            ))
        })?;
        return Ok(backup::Selection::Matching(entity, text.to_owned()));
    }
    Ok(backup::Selection::DeletedSince(time_param(
        deleted_since,
        "deleted_since",
    )?))
}

fn candidate_json(candidate: &backup::Candidate) -> Value {
    json!({
        "entity": candidate.entity.name(),
        "id": candidate.id,
        "title": candidate.title,
        "now": candidate.now,
        "snapshot": candidate.snapshot,
    })
}

pub async fn backup_records_get(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
    query: QueryPairs,
) -> ApiResult {
    backup::require(&actor)?;
    query.only(&["deleted_since", "entity", "matching"])?;
    let id = id_of(&id, "backup")?;
    let selection = selection(
        &[],
        query.get("deleted_since"),
        query.get("entity"),
        query.get("matching"),
    )?;
    let found = backup::candidates_in_run(&state.app, &actor, id, &selection).await?;
    ok(json!({"items": found.iter().map(candidate_json).collect::<Vec<_>>()}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRecordsBody {
    #[serde(default)]
    ids: Vec<String>,
    deleted_since: Option<String>,
    entity: Option<String>,
    matching: Option<String>,
}

pub async fn backup_restore_post(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<RestoreRecordsBody>,
) -> ApiResult {
    backup::require(&actor)?;
    let id = id_of(&id, "backup")?;
    let selection = selection(
        &body.ids,
        body.deleted_since.as_deref(),
        body.entity.as_deref(),
        body.matching.as_deref(),
    )?;
    let outcomes =
        backup::restore_from_run(&state.app, &actor, &current_op_id(), id, &selection).await?;
    ok(json!({"items": outcomes.iter().map(|o| o.record.to_json()).collect::<Vec<_>>()}))
}

// ---- login throttles ---------------------------------------------------------------------------

/// Accounts and client addresses with recent failed logins, and which are refused now.
pub async fn throttles_get(
    State(state): State<WebState>,
    Auth(actor): Auth,
    query: QueryPairs,
) -> ApiResult {
    query.only(&[])?;
    let items: Vec<Value> = holdfast_app::login::throttles(&state.app, &actor)
        .await?
        .iter()
        .map(|t| {
            json!({"key": t.key, "failures": t.failures, "limit": t.limit,
                   "blocked_until": t.blocked_until.map(holdfast_domain::Timestamp::to_rfc3339)})
        })
        .collect();
    ok(json!({"items": items}))
}

/// Lifts a throttle (`key` as listed), for a real user locked out by someone else's guesses.
pub async fn throttles_delete(
    State(state): State<WebState>,
    Auth(actor): Auth,
    query: QueryPairs,
) -> ApiResult {
    query.only(&["key"])?;
    let key = query.get("key").unwrap_or_default();
    let cleared =
        holdfast_app::login::clear_throttle(&state.app, &actor, &current_op_id(), key).await?;
    ok(json!({"cleared": cleared}))
}
