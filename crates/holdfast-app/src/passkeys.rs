//! Passkeys (WebAuthn, through webauthn-rs): a second factor after the password, and a
//! sign-in without a password where the browser supports them.
//!
//! A ceremony takes two requests (options to the browser, its signed answer back); its state
//! waits in `login_challenges`, so the answer may reach another instance behind the load
//! balancer. Passkeys are bound to the site's host name (the relying party id): Holdfast uses
//! the host of `public_url`, or of the address the browser used when none is configured.
//! Browsers refuse passkeys on a bare IP address; use a host name (`localhost` works).

use crate::login::{Client, NewSession};
use crate::two_factor::own_account;
use crate::{App, AppError, notices, random_hex, sha256_hex, step_up};
use holdfast_domain::Actor;
use holdfast_store::signin::NewSecondFactor;
use holdfast_store::{AuditDraft, SecondFactorRow, UserRow};
use serde_json::{Value, json};
use webauthn_rs::prelude::{
    Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Url, Uuid, Webauthn, WebauthnBuilder,
};

/// A ceremony's options and state last this long.
const CEREMONY_MINUTES: i64 = 5;

fn webauthn(origin: &str) -> Result<Webauthn, AppError> {
    let refused = |why: String| {
        AppError::invalid(
            "origin",
            "passkeys_unavailable",
            format!(
                "Passkeys need Holdfast to be reached by a host name over HTTPS (or http://localhost): {why}"
            ),
        )
    };
    let url = Url::parse(origin).map_err(|e| refused(format!("{origin}: {e}")))?;
    let host = url
        .host_str()
        .ok_or_else(|| refused(format!("{origin} has no host name")))?
        .to_owned();
    if host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') {
        return Err(refused(format!("{host} is an IP address")));
    }
    WebauthnBuilder::new(&host, &url)
        .and_then(|builder| builder.rp_name("Holdfast").build())
        .map_err(|e| refused(format!("{e}")))
}

fn internal(what: &str) -> impl Fn(serde_json::Error) -> AppError + '_ {
    move |e| AppError::Internal(anyhow::anyhow!("{what}: {e}"))
}

fn bad_answer(e: impl std::fmt::Display) -> AppError {
    AppError::invalid(
        "credential",
        "passkey_refused",
        format!("The browser's passkey answer was not accepted ({e}); try again"),
    )
}

fn user_handle(user: &UserRow) -> Uuid {
    Uuid::from_u128(u128::try_from(user.id).unwrap_or_default())
}

fn passkeys_of(factors: &[SecondFactorRow]) -> Result<Vec<(i64, Passkey)>, AppError> {
    factors
        .iter()
        .filter(|f| f.kind == "passkey" && f.confirmed_at.is_some())
        .map(|f| {
            serde_json::from_str::<Passkey>(&f.secret)
                .map(|p| (f.id, p))
                .map_err(internal("stored passkey unreadable"))
        })
        .collect()
}

/// A ceremony started: the token naming it and the options for `navigator.credentials`.
pub struct Ceremony {
    pub token: String,
    pub options: Value,
}

async fn save_ceremony(
    app: &App,
    user_id: Option<i64>,
    purpose: &str,
    state: Value,
    options: Value,
) -> Result<Ceremony, AppError> {
    let token = random_hex(32)?;
    let now = app.now();
    app.db
        .create_challenge(
            &sha256_hex(&token),
            user_id,
            purpose,
            &state.to_string(),
            now,
            now.plus_seconds(CEREMONY_MINUTES * 60),
        )
        .await?;
    Ok(Ceremony { token, options })
}

/// Takes a ceremony's state once (a second answer to the same options is refused).
async fn take_ceremony(
    app: &App,
    token: &str,
    purpose: &str,
) -> Result<(Option<i64>, Value), AppError> {
    let expired = || {
        AppError::invalid(
            "token",
            "passkey_expired",
            format!(
                "This passkey request is over (answered, or older than {CEREMONY_MINUTES} minutes); start again"
            ),
        )
    };
    let challenge = app
        .db
        .challenge(&sha256_hex(token))
        .await?
        .filter(|c| c.purpose == purpose && c.expires_at > app.now())
        .ok_or_else(expired)?;
    if !app.db.end_challenge(challenge.id).await? {
        return Err(expired());
    }
    let state = serde_json::from_str(&challenge.state).map_err(internal("ceremony state"))?;
    Ok((challenge.user_id, state))
}

/// Starts adding a passkey to the actor's account (with step-up: it is a lasting credential).
pub async fn start_registration(
    app: &App,
    actor: &Actor,
    origin: &str,
) -> Result<Ceremony, AppError> {
    step_up::require(app, actor).await?;
    let user = own_account(app, actor).await?;
    let webauthn = webauthn(origin)?;
    let existing = passkeys_of(&app.db.second_factors_of(user.id).await?)?;
    let exclude = existing
        .iter()
        .map(|(_, p)| p.cred_id().clone())
        .collect::<Vec<_>>();
    let (options, state) = webauthn
        .start_passkey_registration(
            user_handle(&user),
            &user.username,
            &user.display_name,
            Some(exclude),
        )
        .map_err(|e| AppError::Internal(anyhow::anyhow!("passkey registration: {e}")))?;
    let state = json!({"origin": origin, "registration": serde_json::to_value(&state).map_err(internal("registration state"))?});
    let options = serde_json::to_value(&options).map_err(internal("registration options"))?;
    save_ceremony(app, Some(user.id), "passkey_register", state, options).await
}

/// Finishes adding a passkey with the browser's answer; returns its id.
pub async fn finish_registration(
    app: &App,
    actor: &Actor,
    op_id: &str,
    token: &str,
    name: &str,
    credential: &Value,
) -> Result<i64, AppError> {
    let user = own_account(app, actor).await?;
    let name = name.trim();
    let name = if name.is_empty() { "Passkey" } else { name };
    if name.chars().count() > 100 {
        return Err(AppError::invalid(
            "name",
            "too_long",
            "At most 100 characters",
        ));
    }
    let (owner, state) = take_ceremony(app, token, "passkey_register").await?;
    if owner != Some(user.id) {
        return Err(AppError::invalid(
            "token",
            "passkey_expired",
            "This passkey request belongs to another sign-in; start again",
        ));
    }
    let registration: PasskeyRegistration = serde_json::from_value(state["registration"].clone())
        .map_err(internal("registration state"))?;
    let origin = state["origin"].as_str().unwrap_or_default();
    let answer: RegisterPublicKeyCredential =
        serde_json::from_value(credential.clone()).map_err(bad_answer)?;
    let passkey = webauthn(origin)?
        .finish_passkey_registration(&answer, &registration)
        .map_err(bad_answer)?;
    let credential_id = credential_key(passkey.cred_id().as_ref());
    let secret = serde_json::to_string(&passkey).map_err(internal("passkey"))?;
    let mut tx = app.db.begin_write(app.now()).await?;
    let id = tx
        .add_second_factor(
            &NewSecondFactor {
                user_id: user.id,
                kind: "passkey",
                name,
                secret: &secret,
                credential_id: Some(&credential_id),
                confirmed: true,
            },
            AuditDraft::new(
                actor,
                op_id,
                "two_factor.passkey_added",
                json!({"user_id": user.id, "name": name}),
            ),
        )
        .await?;
    notices::notify(
        &mut tx,
        user.id,
        "second_factor_added",
        json!({"kind": "passkey", "name": name}),
    )
    .await?;
    tx.commit().await?;
    Ok(id)
}

fn credential_key(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// Options for the browser to sign with one of `user`'s passkeys.
async fn start_authentication(
    app: &App,
    user: &UserRow,
    origin: &str,
    purpose: &str,
    extra: Value,
) -> Result<Ceremony, AppError> {
    let passkeys = passkeys_of(&app.db.second_factors_of(user.id).await?)?;
    if passkeys.is_empty() {
        return Err(AppError::invalid(
            "username",
            "no_passkey",
            "No passkey is set up for this account: sign in with the password",
        ));
    }
    let keys: Vec<Passkey> = passkeys.into_iter().map(|(_, p)| p).collect();
    let (options, state) = webauthn(origin)?
        .start_passkey_authentication(&keys)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("passkey authentication: {e}")))?;
    let state = json!({
        "origin": origin,
        "authentication": serde_json::to_value(&state).map_err(internal("authentication state"))?,
        "extra": extra,
    });
    let options = serde_json::to_value(&options).map_err(internal("authentication options"))?;
    save_ceremony(app, Some(user.id), purpose, state, options).await
}

/// Checks the browser's signature against the ceremony; the passkey's counter moves on inside
/// `tx`. Returns the passkey's factor id.
async fn check_authentication(
    app: &App,
    tx: &mut holdfast_store::WriteTx,
    user: &UserRow,
    state: &Value,
    credential: &Value,
) -> Result<Option<i64>, AppError> {
    let authentication: PasskeyAuthentication =
        serde_json::from_value(state["authentication"].clone())
            .map_err(internal("authentication state"))?;
    let origin = state["origin"].as_str().unwrap_or_default();
    let answer: PublicKeyCredential = match serde_json::from_value(credential.clone()) {
        Ok(answer) => answer,
        Err(_) => return Ok(None),
    };
    let Ok(result) = webauthn(origin)?.finish_passkey_authentication(&answer, &authentication)
    else {
        return Ok(None);
    };
    for (id, mut passkey) in passkeys_of(&app.db.second_factors_of(user.id).await?)? {
        if passkey.cred_id() == result.cred_id() {
            passkey.update_credential(&result);
            let secret = serde_json::to_string(&passkey).map_err(internal("passkey"))?;
            tx.passkey_used(id, &secret).await?;
            return Ok(Some(id));
        }
    }
    Ok(None)
}

/// Password-less sign-in, first step: the options for the user's passkeys.
pub async fn start_login(
    app: &App,
    username: &str,
    origin: &str,
    remember: bool,
) -> Result<Ceremony, AppError> {
    let user = app
        .db
        .user_by_username(&username.trim().to_lowercase())
        .await?
        .filter(|u| u.active);
    let Some(user) = user else {
        return Err(AppError::invalid(
            "username",
            "no_passkey",
            "No passkey is set up for this account: sign in with the password",
        ));
    };
    start_authentication(
        app,
        &user,
        origin,
        "passkey_login",
        json!({"remember": remember}),
    )
    .await
}

/// Password-less sign-in, second step: the browser's signature starts a session.
pub async fn finish_login(
    app: &App,
    op_id: &str,
    token: &str,
    credential: &Value,
    client: Client<'_>,
) -> Result<NewSession, AppError> {
    let (user_id, state) = take_ceremony(app, token, "passkey_login").await?;
    let user = match user_id {
        Some(id) => app.db.user(id).await?.filter(|u| u.active),
        None => None,
    }
    .ok_or_else(|| {
        AppError::invalid(
            "token",
            "passkey_expired",
            "This sign-in is over; start again",
        )
    })?;
    let remember = state["extra"]["remember"].as_bool().unwrap_or(false);
    verified_session(
        app, op_id, &user, &state, credential, client, "passkey", remember,
    )
    .await
}

/// After the password: options to confirm with a passkey instead of a code.
pub async fn start_second_factor(
    app: &App,
    pending_token: &str,
    origin: &str,
) -> Result<Ceremony, AppError> {
    let (challenge, user, remember) = crate::login::pending_sign_in(app, pending_token).await?;
    start_authentication(
        app,
        &user,
        origin,
        "passkey_second_factor",
        json!({"pending": challenge.id, "remember": remember}),
    )
    .await
}

/// After the password: the passkey's signature finishes the sign-in.
pub async fn finish_second_factor(
    app: &App,
    op_id: &str,
    pending_token: &str,
    token: &str,
    credential: &Value,
    client: Client<'_>,
) -> Result<NewSession, AppError> {
    let (pending, user, remember) = crate::login::pending_sign_in(app, pending_token).await?;
    let (owner, state) = take_ceremony(app, token, "passkey_second_factor").await?;
    if owner != Some(user.id) || state["extra"]["pending"].as_i64() != Some(pending.id) {
        return Err(AppError::invalid(
            "token",
            "passkey_expired",
            "This passkey request belongs to another sign-in; start again",
        ));
    }
    let session = verified_session(
        app,
        op_id,
        &user,
        &state,
        credential,
        client,
        "password+passkey",
        remember,
    )
    .await?;
    app.db.end_challenge(pending.id).await?;
    Ok(session)
}

#[allow(clippy::too_many_arguments)]
async fn verified_session(
    app: &App,
    op_id: &str,
    user: &UserRow,
    state: &Value,
    credential: &Value,
    client: Client<'_>,
    method: &str,
    remember: bool,
) -> Result<NewSession, AppError> {
    let guard = crate::login::Guard::start(app, &user.username, client.address, Some(true)).await?;
    let mut tx = app.db.begin_write_in_read_only_mode(app.now()).await?;
    if check_authentication(app, &mut tx, user, state, credential)
        .await?
        .is_none()
    {
        drop(tx);
        guard.failed(app).await?;
        app.db
            .record_login_event(&holdfast_store::LoginEventRow {
                id: 0,
                user_id: Some(user.id),
                at: app.now(),
                address: client.address.map(str::to_owned),
                user_agent: client.user_agent.map(str::to_owned),
                method: method.into(),
                outcome: "passkey_refused".into(),
                new_device: false,
            })
            .await?;
        return Err(bad_answer(
            "the signature does not match a passkey of this account",
        ));
    }
    tx.commit().await?;
    guard.succeeded(app).await?;
    crate::login::start_session(app, op_id, user, method, remember, client).await
}

/// Step-up with a passkey: options for the signed-in user.
pub async fn start_confirm(app: &App, actor: &Actor, origin: &str) -> Result<Ceremony, AppError> {
    let user = own_account(app, actor).await?;
    start_authentication(app, &user, origin, "passkey_confirm", json!({})).await
}

/// Step-up with a passkey: the signature confirms the session.
pub async fn finish_confirm(
    app: &App,
    actor: &Actor,
    op_id: &str,
    token: &str,
    credential: &Value,
) -> Result<(), AppError> {
    let holdfast_domain::ActorKind::Session { session_id } = actor.kind else {
        return Err(AppError::invalid(
            "session",
            "not_a_session",
            "Only a browser session confirms who it is",
        ));
    };
    let user = own_account(app, actor).await?;
    let (owner, state) = take_ceremony(app, token, "passkey_confirm").await?;
    if owner != Some(user.id) {
        return Err(AppError::invalid(
            "token",
            "passkey_expired",
            "This passkey request belongs to another sign-in; start again",
        ));
    }
    let mut tx = app.db.begin_write_in_read_only_mode(app.now()).await?;
    if check_authentication(app, &mut tx, &user, &state, credential)
        .await?
        .is_none()
    {
        return Err(bad_answer(
            "the signature does not match a passkey of this account",
        ));
    }
    tx.audit_event(AuditDraft::new(
        actor,
        op_id,
        "auth.step_up",
        json!({"method": "passkey"}),
    ))
    .await?;
    tx.commit().await?;
    app.db.session_verified(session_id, app.now()).await?;
    Ok(())
}
