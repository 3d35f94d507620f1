//! The sign-in API: password, second factor and passkey sign-in, step-up confirmation, the
//! user's own two-step settings, sign-in history and security notices, and what
//! administrators see and do about other users' sign-in.

use crate::WebState;
use crate::api::{
    ApiPath, ApiResult, created, id_of, ok, session_json, time, token_json, user_json,
};
use crate::error::current_op_id;
use crate::extract::{ApiJson, Auth, QueryPairs, SignInClient, passkey_origin, sign_in_cookies};
use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use holdfast_app::login::{self, LoginStep, NewSession};
use holdfast_app::{LoginEventRow, NotificationRow, SecondFactorRow};
use holdfast_app::{containment, notices, passkeys, step_up, two_factor, users};
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::SocketAddr;

/// A finished sign-in: the session and device cookies, and who signed in.
fn signed_in(state: &WebState, session: &NewSession) -> Response {
    let body = json!({
        "user": user_json(&session.user),
        "session_id": session.session_id,
        "expires_at": session.expires_at.to_rfc3339(),
    });
    let mut response = Json(body).into_response();
    for cookie in sign_in_cookies(&state.app, session) {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    username: String,
    password: String,
    /// "Remember this device": a longer session without the idle limit.
    #[serde(default)]
    remember: bool,
}

pub async fn login(
    State(state): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<LoginBody>,
) -> ApiResult {
    let client = SignInClient::of(&state.app, peer, &headers);
    let attempt = login::LoginAttempt {
        username: &body.username,
        password: &body.password,
        client: client.client(),
        remember: body.remember,
    };
    match login::login(&state.app, &current_op_id(), attempt).await? {
        LoginStep::Session(session) => Ok(signed_in(&state, &session)),
        LoginStep::SecondFactor(pending) => ok(json!({
            "second_factor_required": true,
            "sign_in_token": pending.token,
            "methods": pending.methods,
            "expires_at": pending.expires_at.to_rfc3339(),
            "next": "POST /api/v1/auth/second-factor with sign_in_token and a code (or a recovery code), or POST /api/v1/auth/second-factor/passkey-options with sign_in_token",
        })),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecondFactorBody {
    sign_in_token: String,
    code: String,
}

pub async fn second_factor(
    State(state): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SecondFactorBody>,
) -> ApiResult {
    let client = SignInClient::of(&state.app, peer, &headers);
    let session = login::second_factor(
        &state.app,
        &current_op_id(),
        &body.sign_in_token,
        &body.code,
        client.client(),
    )
    .await?;
    Ok(signed_in(&state, &session))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasskeyOptionsBody {
    username: String,
    #[serde(default)]
    remember: bool,
}

fn ceremony_json(ceremony: passkeys::Ceremony) -> Value {
    json!({"token": ceremony.token, "options": ceremony.options})
}

/// Password-less sign-in, first step.
pub async fn passkey_options(
    State(state): State<WebState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PasskeyOptionsBody>,
) -> ApiResult {
    let origin = passkey_origin(&state.app, &headers);
    let ceremony =
        passkeys::start_login(&state.app, &body.username, &origin, body.remember).await?;
    ok(ceremony_json(ceremony))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingBody {
    sign_in_token: String,
}

/// After the password: options to finish with a passkey.
pub async fn second_factor_passkey_options(
    State(state): State<WebState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PendingBody>,
) -> ApiResult {
    let origin = passkey_origin(&state.app, &headers);
    ok(ceremony_json(
        passkeys::start_second_factor(&state.app, &body.sign_in_token, &origin).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasskeyBody {
    token: String,
    credential: Value,
}

/// Password-less sign-in, second step.
pub async fn passkey(
    State(state): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PasskeyBody>,
) -> ApiResult {
    let client = SignInClient::of(&state.app, peer, &headers);
    let session = passkeys::finish_login(
        &state.app,
        &current_op_id(),
        &body.token,
        &body.credential,
        client.client(),
    )
    .await?;
    Ok(signed_in(&state, &session))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecondFactorPasskeyBody {
    sign_in_token: String,
    token: String,
    credential: Value,
}

/// After the password: the passkey's answer finishes the sign-in.
pub async fn second_factor_passkey(
    State(state): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SecondFactorPasskeyBody>,
) -> ApiResult {
    let client = SignInClient::of(&state.app, peer, &headers);
    let session = passkeys::finish_second_factor(
        &state.app,
        &current_op_id(),
        &body.sign_in_token,
        &body.token,
        &body.credential,
        client.client(),
    )
    .await?;
    Ok(signed_in(&state, &session))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmBody {
    /// The password, or a code from the authenticator app, or a recovery code.
    password: String,
}

fn confirmed(state: &WebState) -> ApiResult {
    let until = state.app.now().plus_seconds(step_up::STEP_UP_MINUTES * 60);
    ok(json!({"confirmed": true, "confirmed_until": until.to_rfc3339()}))
}

pub async fn confirm(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiJson(body): ApiJson<ConfirmBody>,
) -> ApiResult {
    step_up::confirm(&state.app, &actor, &current_op_id(), &body.password).await?;
    confirmed(&state)
}

pub async fn confirm_passkey(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiJson(body): ApiJson<PasskeyBody>,
) -> ApiResult {
    passkeys::finish_confirm(
        &state.app,
        &actor,
        &current_op_id(),
        &body.token,
        &body.credential,
    )
    .await?;
    confirmed(&state)
}

pub async fn confirm_options(
    State(state): State<WebState>,
    Auth(actor): Auth,
    headers: HeaderMap,
    query: QueryPairs,
) -> ApiResult {
    query.only(&[])?;
    let origin = passkey_origin(&state.app, &headers);
    ok(ceremony_json(
        passkeys::start_confirm(&state.app, &actor, &origin).await?,
    ))
}

fn factor_json(factor: &SecondFactorRow) -> Value {
    json!({
        "id": factor.id,
        "kind": factor.kind,
        "name": factor.name,
        "created_at": factor.created_at.to_rfc3339(),
        "last_used_at": time(factor.last_used_at),
    })
}

pub async fn two_factor_status(State(state): State<WebState>, Auth(actor): Auth) -> ApiResult {
    let status = two_factor::status(&state.app, &actor).await?;
    ok(json!({
        "factors": status.factors.iter().map(factor_json).collect::<Vec<_>>(),
        "recovery_codes_left": status.recovery_codes_left,
        "required": status.required,
    }))
}

pub async fn totp_start(
    State(state): State<WebState>,
    Auth(actor): Auth,
    query: QueryPairs,
) -> ApiResult {
    query.only(&[])?;
    let enrolment = two_factor::start_totp(&state.app, &actor, &current_op_id()).await?;
    created(json!({
        "factor_id": enrolment.factor_id,
        "secret": enrolment.secret,
        "otpauth_url": enrolment.otpauth_url,
        "next": "Add it to your authenticator app, then POST /api/v1/me/two-factor/totp/confirm with factor_id and the code it shows",
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TotpConfirmBody {
    factor_id: i64,
    code: String,
}

pub async fn totp_confirm(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiJson(body): ApiJson<TotpConfirmBody>,
) -> ApiResult {
    let codes = two_factor::confirm_totp(
        &state.app,
        &actor,
        &current_op_id(),
        body.factor_id,
        &body.code,
    )
    .await?;
    ok(json!({"enrolled": true, "recovery_codes": codes}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordAgainBody {
    password: String,
}

pub async fn recovery_codes(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiJson(body): ApiJson<PasswordAgainBody>,
) -> ApiResult {
    let codes =
        two_factor::regenerate_recovery_codes(&state.app, &actor, &current_op_id(), &body.password)
            .await?;
    ok(json!({"recovery_codes": codes, "note": "Shown once; the codes made before no longer work"}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FactorRemoveBody {
    password: String,
    #[serde(default)]
    code: String,
}

pub async fn factor_remove(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<FactorRemoveBody>,
) -> ApiResult {
    let id = id_of(&id, "second factor")?;
    two_factor::remove_factor(
        &state.app,
        &actor,
        &current_op_id(),
        Some(id),
        &body.password,
        &body.code,
    )
    .await?;
    ok(json!({"removed": id}))
}

pub async fn passkey_register_options(
    State(state): State<WebState>,
    Auth(actor): Auth,
    headers: HeaderMap,
    query: QueryPairs,
) -> ApiResult {
    query.only(&[])?;
    let origin = passkey_origin(&state.app, &headers);
    ok(ceremony_json(
        passkeys::start_registration(&state.app, &actor, &origin).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasskeyRegisterBody {
    token: String,
    #[serde(default)]
    name: String,
    credential: Value,
}

pub async fn passkey_register(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiJson(body): ApiJson<PasskeyRegisterBody>,
) -> ApiResult {
    let id = passkeys::finish_registration(
        &state.app,
        &actor,
        &current_op_id(),
        &body.token,
        &body.name,
        &body.credential,
    )
    .await?;
    created(json!({"id": id}))
}

pub fn event_json(event: &LoginEventRow) -> Value {
    json!({
        "at": event.at.to_rfc3339(),
        "user_id": event.user_id,
        "address": event.address,
        "user_agent": event.user_agent,
        "method": event.method,
        "outcome": event.outcome,
        "new_device": event.new_device,
    })
}

pub async fn my_sign_ins(State(state): State<WebState>, Auth(actor): Auth) -> ApiResult {
    let events = login::my_history(&state.app, &actor).await?;
    ok(json!({"items": events.iter().map(event_json).collect::<Vec<_>>()}))
}

fn notice_json(notice: &NotificationRow) -> Value {
    json!({
        "id": notice.id,
        "at": notice.at.to_rfc3339(),
        "kind": notice.kind.trim_start_matches("security."),
        "detail": notice.detail,
    })
}

pub async fn my_notices(State(state): State<WebState>, Auth(actor): Auth) -> ApiResult {
    let found = notices::mine(&state.app, &actor).await?;
    ok(json!({"items": found.iter().map(notice_json).collect::<Vec<_>>()}))
}

pub async fn notice_ack(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
    query: QueryPairs,
) -> ApiResult {
    query.only(&[])?;
    let id = id_of(&id, "security notice")?;
    notices::acknowledge(&state.app, &actor, id).await?;
    ok(json!({"acknowledged": id}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotMeBody {
    #[serde(default)]
    notice_id: Option<i64>,
}

pub async fn not_me(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiJson(body): ApiJson<NotMeBody>,
) -> ApiResult {
    let done = notices::disown(&state.app, &actor, &current_op_id(), body.notice_id).await?;
    ok(json!({
        "sessions_ended": done.sessions_ended,
        "tokens_revoked": done.tokens_revoked,
        "administrators_told": done.administrators_told,
        "next": "Change your password now (PUT /api/v1/me/password)",
    }))
}

// ---- administrators --------------------------------------------------------------------------

pub async fn admin_two_factor(State(state): State<WebState>, Auth(actor): Auth) -> ApiResult {
    let roles = two_factor::policy(&state.app, &actor).await?;
    let enrolments = two_factor::enrolments(&state.app, &actor).await?;
    let items: Vec<Value> = enrolments
        .iter()
        .map(|e| {
            json!({
                "user": user_json(&e.user),
                "required": e.required,
                "enrolled": !e.factors.is_empty(),
                "factors": e.factors.iter().map(factor_json).collect::<Vec<_>>(),
            })
        })
        .collect();
    ok(json!({"required_for_roles": roles, "items": items}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyBody {
    required: bool,
}

pub async fn admin_policy_put(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath(role): ApiPath<String>,
    ApiJson(body): ApiJson<PolicyBody>,
) -> ApiResult {
    let roles =
        two_factor::set_required(&state.app, &actor, &current_op_id(), &role, body.required)
            .await?;
    ok(json!({"required_for_roles": roles}))
}

pub async fn admin_two_factor_reset(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
    query: QueryPairs,
) -> ApiResult {
    query.only(&[])?;
    let id = id_of(&id, "user")?;
    let removed = two_factor::reset_user(&state.app, &actor, &current_op_id(), id).await?;
    ok(json!({"factors_removed": removed, "sessions_ended": true}))
}

pub async fn admin_user_credentials(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult {
    let id = id_of(&id, "user")?;
    let (sessions, tokens) = users::credentials_of(&state.app, &actor, id).await?;
    let history = login::history(&state.app, &actor, Some(id)).await?;
    ok(json!({
        "sessions": sessions.iter().map(session_json).collect::<Vec<_>>(),
        "tokens": tokens.iter().map(token_json).collect::<Vec<_>>(),
        "sign_ins": history.iter().map(event_json).collect::<Vec<_>>(),
    }))
}

pub async fn admin_session_revoke(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath((id, session)): ApiPath<(String, String)>,
    query: QueryPairs,
) -> ApiResult {
    query.only(&[])?;
    let (id, session) = (id_of(&id, "user")?, id_of(&session, "session")?);
    users::revoke_one(
        &state.app,
        &actor,
        &current_op_id(),
        id,
        users::Credentials::Sessions,
        session,
    )
    .await?;
    ok(json!({"revoked": session}))
}

pub async fn admin_token_revoke(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath((id, token)): ApiPath<(String, String)>,
    query: QueryPairs,
) -> ApiResult {
    query.only(&[])?;
    let (id, token) = (id_of(&id, "user")?, id_of(&token, "token")?);
    users::revoke_one(
        &state.app,
        &actor,
        &current_op_id(),
        id,
        users::Credentials::Tokens,
        token,
    )
    .await?;
    ok(json!({"revoked": token}))
}

pub async fn admin_sign_ins(
    State(state): State<WebState>,
    Auth(actor): Auth,
    query: QueryPairs,
) -> ApiResult {
    query.only(&["user_id"])?;
    let user_id = match query.get("user_id") {
        Some(id) => Some(id_of(id, "user")?),
        None => None,
    };
    let events = login::history(&state.app, &actor, user_id).await?;
    ok(json!({"items": events.iter().map(event_json).collect::<Vec<_>>()}))
}

// ---- containment ---------------------------------------------------------------------------

fn lockdown_json(lockdown: Option<&holdfast_domain::access::Lockdown>) -> Value {
    match lockdown {
        Some(l) => {
            json!({"on": true, "since": l.since.to_rfc3339(), "by": l.by, "reason": l.reason})
        }
        None => json!({"on": false}),
    }
}

pub async fn lockdown_get(State(state): State<WebState>, Auth(actor): Auth) -> ApiResult {
    holdfast_domain::access::authorize(&actor, holdfast_domain::Action::Audit)?;
    ok(lockdown_json(
        containment::lockdown(&state.app).await?.as_ref(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockdownBody {
    on: bool,
    #[serde(default)]
    reason: String,
}

pub async fn lockdown_put(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiJson(body): ApiJson<LockdownBody>,
) -> ApiResult {
    let reason = body.on.then_some(body.reason.as_str());
    let lockdown = containment::set_lockdown(&state.app, &actor, &current_op_id(), reason).await?;
    ok(lockdown_json(lockdown.as_ref()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreezeBody {
    reason: String,
}

pub async fn user_freeze(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<FreezeBody>,
) -> ApiResult {
    let id = id_of(&id, "user")?;
    containment::freeze_user(&state.app, &actor, &current_op_id(), id, &body.reason).await?;
    ok(json!({"frozen": id}))
}

pub async fn user_unfreeze(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
    query: QueryPairs,
) -> ApiResult {
    query.only(&[])?;
    let id = id_of(&id, "user")?;
    containment::unfreeze_user(&state.app, &actor, &current_op_id(), id).await?;
    ok(json!({"unfrozen": id}))
}

pub async fn token_freeze(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath((id, token)): ApiPath<(String, String)>,
    query: QueryPairs,
) -> ApiResult {
    token_freeze_to(&state, &actor, &id, &token, query, true).await
}

pub async fn token_unfreeze(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath((id, token)): ApiPath<(String, String)>,
    query: QueryPairs,
) -> ApiResult {
    token_freeze_to(&state, &actor, &id, &token, query, false).await
}

async fn token_freeze_to(
    state: &WebState,
    actor: &holdfast_domain::Actor,
    id: &str,
    token: &str,
    query: QueryPairs,
    frozen: bool,
) -> ApiResult {
    holdfast_domain::access::authorize(actor, holdfast_domain::Action::Administer)?;
    query.only(&[])?;
    let (id, token) = (id_of(id, "user")?, id_of(token, "token")?);
    containment::freeze_token(&state.app, actor, &current_op_id(), id, token, frozen).await?;
    ok(json!({"token": token, "frozen": frozen}))
}

// ---- incident timeline -----------------------------------------------------------------------

/// The timeline's query parameters.
pub const TIMELINE_PARAMS: &[&str] = &[
    "user_id",
    "token_id",
    "session_id",
    "client",
    "from",
    "to",
    "format",
];

/// Reads the timeline query from the query string (the API and the page share it).
pub fn timeline_query(
    query: &QueryPairs,
) -> Result<holdfast_app::timeline::Query, crate::error::ApiError> {
    let time = |name: &str| -> Result<Option<holdfast_domain::Timestamp>, crate::error::ApiError> {
        match query.get(name).filter(|v| !v.trim().is_empty()) {
            Some(text) => holdfast_domain::Timestamp::parse_rfc3339(text.trim())
                .map(Some)
                .ok_or_else(|| {
                    holdfast_app::AppError::invalid(
                        name,
                        "invalid_date",
                        "A time like 2026-12-01T09:00:00Z",
                    )
                    .into()
                }),
            None => Ok(None),
        }
    };
    Ok(holdfast_app::timeline::Query {
        user_id: query.int("user_id")?,
        token_id: query.int("token_id")?,
        session_id: query.int("session_id")?,
        client: query
            .get("client")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned),
        from: time("from")?,
        to: time("to")?,
    })
}

pub fn timeline_event_json(event: &holdfast_app::timeline::Event) -> Value {
    json!({
        "at": event.at.to_rfc3339(),
        "source": event.source,
        "actor": event.actor,
        "action": event.action,
        "subject": event.subject,
        "session_id": event.session_id,
        "token_id": event.token_id,
        "client": event.client,
        "detail": event.detail,
    })
}

pub async fn timeline(
    State(state): State<WebState>,
    Auth(actor): Auth,
    query: QueryPairs,
) -> ApiResult {
    query.only(TIMELINE_PARAMS)?;
    let wanted = timeline_query(&query)?;
    if query.get("format") == Some("csv") {
        let export = holdfast_app::timeline::export(&state.app, &actor, &wanted).await?;
        return Ok(crate::api::csv_response(export));
    }
    let events = holdfast_app::timeline::timeline(&state.app, &actor, &wanted).await?;
    ok(json!({"items": events.iter().map(timeline_event_json).collect::<Vec<_>>()}))
}

// ---- mass-action guards ----------------------------------------------------------------------

fn trip_json(trip: &holdfast_app::TripRow) -> Value {
    json!({
        "id": trip.id,
        "user_id": trip.user_id,
        "kind": trip.kind,
        "at": trip.at.to_rfc3339(),
        "amount": trip.amount,
        "threshold": trip.threshold,
        "released_at": time(trip.released_at),
        "released_by": trip.released_by,
    })
}

pub async fn guards_get(State(state): State<WebState>, Auth(actor): Auth) -> ApiResult {
    let trips = holdfast_app::guards::trips(&state.app, &actor).await?;
    let limits = &state.app.config.guards;
    ok(json!({
        "limits": {"window_minutes": limits.window_minutes, "deletes": limits.deletes, "bulk_reads": limits.bulk_reads, "owner_changes": limits.owner_changes, "reverts": limits.reverts},
        "items": trips.iter().map(trip_json).collect::<Vec<_>>(),
    }))
}

pub async fn guard_release(
    State(state): State<WebState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
    query: QueryPairs,
) -> ApiResult {
    query.only(&[])?;
    let id = id_of(&id, "tripped guard")?;
    let trip = holdfast_app::guards::release(&state.app, &actor, &current_op_id(), id).await?;
    ok(trip_json(&trip))
}
