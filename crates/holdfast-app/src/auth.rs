//! Passwords, sessions, API tokens and login throttling.
//!
//! Secrets never rest in the database in usable form: passwords are argon2id hashes, session
//! cookies and API tokens are stored as SHA-256 hashes, so a copy of the database lets nobody
//! log in. Failed logins are counted per account and per client address in the database, so
//! the limits hold across several Holdfast instances.

use crate::{App, AppError, random_hex, sha256_hex};
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use holdfast_domain::{Actor, ActorKind, Timestamp};
use holdfast_store::{AuditDraft, SessionRow, SessionScope, TokenRow, UserRow};
use serde_json::json;

pub const MIN_PASSWORD_CHARS: usize = 10;
pub const MAX_PASSWORD_CHARS: usize = 1024;
/// Prefix of API tokens, so a leaked token is recognisable in logs and secret scanners.
pub const TOKEN_PREFIX: &str = "hf_";
/// Sessions are marked as used at most this often, so reads do not each cost a write.
const TOUCH_INTERVAL_SECONDS: i64 = 60;

fn argon2() -> anyhow::Result<Argon2<'static>> {
    // OWASP's argon2id baseline: 19 MiB, 2 passes, 1 lane.
    let params = Params::new(19 * 1024, 2, 1, None)
        .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Checks a new password against the policy (length, and not one attackers try first, see
/// [`crate::passwords`]); `names` are the user's username and display name. The error names
/// the field.
pub fn check_password_policy(field: &str, password: &str, names: &[&str]) -> Result<(), AppError> {
    let length = password.chars().count();
    if length < MIN_PASSWORD_CHARS {
        return Err(AppError::invalid(
            field,
            "too_short",
            format!("Use at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    if length > MAX_PASSWORD_CHARS {
        return Err(AppError::invalid(
            field,
            "too_long",
            format!("At most {MAX_PASSWORD_CHARS} characters"),
        ));
    }
    if let Some((code, message)) = crate::passwords::weakness(password, names) {
        return Err(AppError::invalid(field, code, message));
    }
    Ok(())
}

/// A turn to compute a password hash. Each costs 19 MiB and tens of milliseconds by design, so
/// only so many run at once; a request that gets no turn within the busy wait is answered 503
/// with `Retry-After` instead of queueing without bound.
async fn hashing_turn(app: &App) -> Result<tokio::sync::OwnedSemaphorePermit, AppError> {
    let wait = std::time::Duration::from_millis(app.config.busy_wait_ms);
    match tokio::time::timeout(wait, app.hashing.clone().acquire_owned()).await {
        Ok(Ok(permit)) => Ok(permit),
        _ => {
            tracing::warn!("password checks at their limit; answering busy");
            Err(AppError::Busy {
                retry_after_seconds: 5,
            })
        }
    }
}

/// Hashes off the async threads: argon2 is deliberately slow.
pub async fn hash_password(app: &App, password: &str) -> Result<String, AppError> {
    let _turn = hashing_turn(app).await?;
    let password = password.to_owned();
    let hash = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
        let hash = argon2()?
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| anyhow::anyhow!("hashing: {e}"))?;
        Ok(hash.to_string())
    })
    .await
    .map_err(|e| anyhow::anyhow!("hashing task: {e}"))??;
    Ok(hash)
}

pub(crate) async fn verify_password(
    app: &App,
    password: &str,
    hash: &str,
) -> Result<bool, AppError> {
    let _turn = hashing_turn(app).await?;
    let password = password.to_owned();
    let hash = hash.to_owned();
    let ok = tokio::task::spawn_blocking(move || -> anyhow::Result<bool> {
        let parsed =
            PasswordHash::new(&hash).map_err(|e| anyhow::anyhow!("stored hash unreadable: {e}"))?;
        Ok(argon2()?
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
    .map_err(|e| anyhow::anyhow!("verifying task: {e}"))??;
    Ok(ok)
}

/// Whether `password` is the user's password.
pub async fn password_matches(app: &App, user: &UserRow, password: &str) -> Result<bool, AppError> {
    verify_password(app, password, &user.password_hash).await
}

/// The user's password asked again before a lasting change (a token, recovery codes, turning
/// a second factor off); `field` names the form field in the refusal.
pub async fn require_password(
    app: &App,
    user: &UserRow,
    field: &str,
    password: &str,
) -> Result<(), AppError> {
    if password_matches(app, user, password).await? {
        Ok(())
    } else {
        Err(AppError::invalid(
            field,
            "wrong_password",
            "Your password is needed again for this, and this is not it",
        ))
    }
}

/// The actor for a user, with the permission settings in force now.
pub async fn actor_of(app: &App, user: &UserRow, kind: ActorKind) -> Result<Actor, AppError> {
    Ok(Actor {
        user_id: user.id,
        username: user.username.clone(),
        kind,
        access: app.access_config().await?,
        now: app.now(),
        client: None,
    })
}

/// The actor for a user named on the server's command line (`holdfast revert --as NAME`):
/// whoever runs it has the server's shell, which proves more than signing in would, so the
/// steps of signing in (replacing a password an administrator set, enrolling a second factor)
/// do not stand in the way.
pub async fn operator_actor(app: &App, user: &UserRow) -> Result<Actor, AppError> {
    let mut actor = actor_of(app, user, ActorKind::System).await?;
    let mut config = (*actor.access).clone();
    if let Some(access) = config.users.get_mut(&user.id) {
        access.must_change_password = false;
        access.must_enrol_second_factor = false;
    }
    actor.access = std::sync::Arc::new(config);
    Ok(actor)
}

fn session_ended(message: &str) -> AppError {
    AppError::Unauthenticated {
        code: "session_expired",
        message: message.to_owned(),
    }
}

/// The actor behind a session cookie, or why there is none.
pub async fn authenticate_session(app: &App, token: &str) -> Result<Actor, AppError> {
    Ok(session_user(app, token).await?.0)
}

/// The actor behind a session cookie together with their account (for the web pages, which
/// need the user's name and language as well).
pub async fn session_user(app: &App, token: &str) -> Result<(Actor, UserRow), AppError> {
    let now = app.now();
    let (session, user) = app
        .db
        .session_with_user(&sha256_hex(token))
        .await?
        .ok_or_else(|| session_ended("Your session is not valid any more; log in again"))?;
    if session.revoked_at.is_some() {
        return Err(session_ended(
            "Your session was ended (logged out or revoked); log in again",
        ));
    }
    if session.expires_at <= now {
        return Err(session_ended(
            "Your session reached its maximum age; log in again",
        ));
    }
    // A session on a device the user asked to remember has no idle limit, only its
    // (longer) absolute one.
    if !session.remembered
        && session
            .last_seen_at
            .plus_seconds(app.config.session_idle_minutes * 60)
            <= now
    {
        return Err(session_ended(
            "Your session ended after a period of inactivity; log in again",
        ));
    }
    let user = require_unfrozen(require_active(user)?)?;
    if session.last_seen_at.plus_seconds(TOUCH_INTERVAL_SECONDS) <= now {
        app.db.touch_session(session.id, now).await?;
    }
    let actor = actor_of(
        app,
        &user,
        ActorKind::Session {
            session_id: session.id,
        },
    )
    .await?;
    Ok((actor, user))
}

/// The actor behind an `Authorization: Bearer hf_…` token and whether the token only reads,
/// or why there is none.
pub async fn authenticate_token(app: &App, token: &str) -> Result<(Actor, bool), AppError> {
    let now = app.now();
    let invalid = |message: &str| AppError::Unauthenticated {
        code: "invalid_token",
        message: message.to_owned(),
    };
    let (row, user) = app
        .db
        .token_with_user(&sha256_hex(token))
        .await?
        .ok_or_else(|| invalid("This API token is not valid"))?;
    if row.revoked_at.is_some() {
        return Err(invalid("This API token was revoked"));
    }
    if row.expires_at.is_some_and(|at| at <= now) {
        return Err(invalid("This API token has expired"));
    }
    let user = require_unfrozen(require_active(user)?)?;
    if let Some(at) = row.frozen_at {
        return Err(AppError::Unauthenticated {
            code: "token_frozen",
            message: format!(
                "An administrator suspended this API token on {}; it works again when they resume it",
                at.to_rfc3339()
            ),
        });
    }
    if row
        .last_used_at
        .is_none_or(|at| at.plus_seconds(TOUCH_INTERVAL_SECONDS) <= now)
    {
        app.db.touch_token(row.id, now).await?;
    }
    let mut actor = actor_of(app, &user, ActorKind::ApiToken { token_id: row.id }).await?;
    if let Some(lockdown) = actor.access.lockdown.clone() {
        return Err(AppError::Unauthenticated {
            code: "lockdown",
            message: format!(
                "Every API token is suspended while Holdfast is locked down (since {}, by {}: {}); sign in with a browser, or wait until an administrator lifts the lockdown",
                lockdown.since.to_rfc3339(),
                lockdown.by,
                lockdown.reason
            ),
        });
    }

    if let Some(keys) = &row.modules {
        let modules = keys
            .iter()
            .filter_map(|key| holdfast_domain::Module::parse(key))
            .collect();
        actor.access = std::sync::Arc::new(actor.access.limited_to(user.id, &modules));
    }
    Ok((actor, row.read_only))
}

async fn active_user(app: &App, user_id: i64) -> Result<UserRow, AppError> {
    match app.db.user(user_id).await? {
        Some(user) => require_active(user),
        None => Err(deactivated()),
    }
}

fn require_active(user: UserRow) -> Result<UserRow, AppError> {
    if user.active {
        Ok(user)
    } else {
        Err(deactivated())
    }
}

/// A frozen user's sessions and tokens are refused with the reason, until the freeze is lifted.
fn require_unfrozen(user: UserRow) -> Result<UserRow, AppError> {
    match &user.frozen {
        Some((at, reason)) => Err(AppError::Unauthenticated {
            code: "account_frozen",
            message: format!(
                "An administrator froze this account on {} ({reason}); every session and API token of it is suspended until they lift the freeze",
                at.to_rfc3339()
            ),
        }),
        None => Ok(user),
    }
}

fn deactivated() -> AppError {
    AppError::Unauthenticated {
        code: "account_deactivated",
        message: "This account is deactivated; an administrator can reactivate it".into(),
    }
}

/// Ends the current session (logout).
pub async fn logout(app: &App, actor: &Actor, op_id: &str) -> Result<(), AppError> {
    let ActorKind::Session { session_id } = actor.kind else {
        return Err(AppError::invalid(
            "session",
            "not_a_session",
            "Only a browser session can log out; revoke API tokens instead",
        ));
    };
    revoke_session(app, actor, op_id, session_id).await
}

pub async fn revoke_session(
    app: &App,
    actor: &Actor,
    op_id: &str,
    session_id: i64,
) -> Result<(), AppError> {
    let mut tx = app.db.begin_write_in_read_only_mode(app.now()).await?;
    let audit = AuditDraft::new(
        actor,
        op_id,
        "session.revoke",
        json!({"session_id": session_id}),
    );
    let revoked = tx
        .revoke_sessions(actor.user_id, SessionScope::One(session_id), audit)
        .await?;
    if revoked == 0 {
        return Err(AppError::not_found(format!("active session {session_id}")));
    }
    tx.commit().await?;
    Ok(())
}

pub async fn my_sessions(app: &App, actor: &Actor) -> Result<Vec<SessionRow>, AppError> {
    let now = app.now();
    let sessions = app.db.sessions_of(actor.user_id).await?;
    Ok(sessions
        .into_iter()
        .filter(|s| s.expires_at > now)
        .collect())
}

/// A new API token: the secret (shown once) and its row.
pub struct NewToken {
    pub secret: String,
    pub token: TokenRow,
}

/// Tokens a user makes live at most this long; 90 days unless they choose otherwise.
pub const TOKEN_DEFAULT_DAYS: i64 = 90;
pub const TOKEN_MAX_DAYS: i64 = 365;

/// What a user asks for when they make an API token.
pub struct TokenRequest<'a> {
    pub name: &'a str,
    /// `None`: [`TOKEN_DEFAULT_DAYS`]. At most [`TOKEN_MAX_DAYS`]; tokens never live forever.
    pub expires_in_days: Option<i64>,
    /// The token may read but never change anything.
    pub read_only: bool,
    /// The user's password (or a code from their authenticator app), asked again: whoever
    /// sits at an unlocked browser, or holds a stolen session, cannot mint a lasting credential
    /// with it.
    pub password: &'a str,
    /// Only these modules (keys such as `contacts`); `None`: all the user's rights.
    pub modules: Option<Vec<String>>,
    /// No expiry: only where the administrators' policy allows it
    /// (`AppConfig::tokens_may_never_expire`).
    pub never_expires: bool,
}

/// A user makes an API token for themselves: only from a signed-in browser session (a token
/// cannot make more tokens), with their password again, and always with an expiry.
pub async fn create_token(
    app: &App,
    actor: &Actor,
    op_id: &str,
    request: TokenRequest<'_>,
) -> Result<NewToken, AppError> {
    if matches!(actor.kind, ActorKind::ApiToken { .. }) {
        return Err(AppError::Forbidden(holdfast_domain::Denial::simple(
            "token_cannot_make_tokens",
            "An API token cannot make API tokens: sign in with your password and make it under Settings",
        )));
    }
    let days = request.expires_in_days.unwrap_or(TOKEN_DEFAULT_DAYS);
    if request.never_expires && !app.config.tokens_may_never_expire {
        return Err(AppError::invalid(
            "never_expires",
            "not_allowed",
            format!(
                "Every API token here expires (at most {TOKEN_MAX_DAYS} days): the administrators' policy ([login] tokens_may_never_expire) does not allow tokens without an expiry"
            ),
        ));
    }
    if !(1..=TOKEN_MAX_DAYS).contains(&days) {
        return Err(AppError::invalid(
            "expires_in_days",
            "out_of_range",
            format!(
                "Must be from 1 to {TOKEN_MAX_DAYS} days (default {TOKEN_DEFAULT_DAYS}); make a new token when it runs out"
            ),
        ));
    }
    let modules = match &request.modules {
        Some(keys) => Some(token_modules(keys)?),
        None => None,
    };
    let user = active_user(app, actor.user_id).await?;
    require_password_or_code(app, &user, request.password).await?;
    mint_token(
        app,
        actor,
        op_id,
        NewTokenSpec {
            name: request.name,
            expires_in_days: (!request.never_expires).then_some(days),
            read_only: request.read_only,
            modules,
            notify: true,
        },
    )
    .await
}

/// The modules a token is limited to, each a module key; at least one.
fn token_modules(keys: &[String]) -> Result<Vec<String>, AppError> {
    let mut modules = std::collections::BTreeSet::new();
    for key in keys {
        let module = holdfast_domain::Module::parse(key.trim()).ok_or_else(|| {
            let known: Vec<&str> = holdfast_domain::Module::ALL
                .iter()
                .map(|m| m.key())
                .collect();
            AppError::invalid(
                "modules",
                "invalid_choice",
                format!("{key:?} is not a module; choose from {}", known.join(", ")),
            )
        })?;
        modules.insert(module.key().to_owned());
    }
    if modules.is_empty() {
        return Err(AppError::invalid(
            "modules",
            "required",
            "Name at least one module, or leave the list out for all of your rights",
        ));
    }
    Ok(modules.into_iter().collect())
}

/// The password again, or a current code from the user's authenticator app.
async fn require_password_or_code(app: &App, user: &UserRow, answer: &str) -> Result<(), AppError> {
    let looks_like_code =
        answer.trim().len() == 6 && answer.trim().chars().all(|c| c.is_ascii_digit());
    if looks_like_code {
        let mut tx = app.db.begin_write_in_read_only_mode(app.now()).await?;
        if crate::two_factor::prove_second_factor(app, &mut tx, user, answer.trim()).await? {
            tx.commit().await?;
            return Ok(());
        }
    }
    require_password(app, user, "password", answer).await
}

/// What [`mint_token`] makes.
struct NewTokenSpec<'a> {
    name: &'a str,
    expires_in_days: Option<i64>,
    read_only: bool,
    modules: Option<Vec<String>>,
    /// Tell the user (a token they made; not the server's own test and bench tokens).
    notify: bool,
}

/// Issues a read-write token without asking for the password, for the server's own use: test
/// users and the benchmark's clients. Users make theirs with [`create_token`].
pub async fn issue_token(
    app: &App,
    actor: &Actor,
    op_id: &str,
    name: &str,
    expires_in_days: Option<i64>,
) -> Result<NewToken, AppError> {
    let spec = NewTokenSpec {
        name,
        expires_in_days,
        read_only: false,
        modules: None,
        notify: false,
    };
    mint_token(app, actor, op_id, spec).await
}

async fn mint_token(
    app: &App,
    actor: &Actor,
    op_id: &str,
    spec: NewTokenSpec<'_>,
) -> Result<NewToken, AppError> {
    let NewTokenSpec {
        name,
        expires_in_days,
        read_only,
        modules,
        notify,
    } = spec;
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(AppError::invalid(
            "name",
            "invalid_name",
            "Give the token a name of 1 to 100 characters, e.g. \"import script\"",
        ));
    }
    let now = app.now();
    let secret = format!("{TOKEN_PREFIX}{}", random_hex(32)?);
    let expires_at = expires_in_days.map(|days| now.plus_days(days));
    let audit = AuditDraft::new(
        actor,
        op_id,
        "token.create",
        json!({"name": name, "read_only": read_only, "modules": modules, "expires_at": expires_at.map(Timestamp::to_rfc3339)}),
    );
    let mut tx = app.db.begin_write(now).await?;
    let id = tx
        .create_token(
            &holdfast_store::NewTokenRow {
                user_id: actor.user_id,
                name,
                token_hash: &sha256_hex(&secret),
                expires_at,
                read_only,
                modules: modules.as_deref(),
            },
            audit,
        )
        .await?;
    if notify {
        crate::notices::notify(
            &mut tx,
            actor.user_id,
            "token_created",
            json!({"name": name, "read_only": read_only, "token_id": id}),
        )
        .await?;
    }
    tx.commit().await?;
    let token = TokenRow {
        id,
        user_id: actor.user_id,
        name: name.to_owned(),
        created_at: now,
        last_used_at: None,
        expires_at,
        revoked_at: None,
        read_only,
        modules,
        frozen_at: None,
    };
    Ok(NewToken { secret, token })
}

pub async fn my_tokens(app: &App, actor: &Actor) -> Result<Vec<TokenRow>, AppError> {
    Ok(app.db.tokens_of(actor.user_id).await?)
}

pub async fn revoke_token(
    app: &App,
    actor: &Actor,
    op_id: &str,
    token_id: i64,
) -> Result<(), AppError> {
    let mut tx = app.db.begin_write(app.now()).await?;
    let audit = AuditDraft::new(actor, op_id, "token.revoke", json!({"token_id": token_id}));
    if tx
        .revoke_tokens(actor.user_id, Some(token_id), audit)
        .await?
        == 0
    {
        return Err(AppError::not_found(format!("active API token {token_id}")));
    }
    tx.commit().await?;
    Ok(())
}

/// Changes the actor's own password after checking the current one, ends their other sessions
/// (whoever else was logged in as them is logged out) and revokes their API tokens; returns how
/// many tokens were revoked.
pub async fn change_password(
    app: &App,
    actor: &Actor,
    op_id: &str,
    current: &str,
    new: &str,
) -> Result<u64, AppError> {
    let user = active_user(app, actor.user_id).await?;
    check_password_policy("new_password", new, &[&user.username, &user.display_name])?;
    if !verify_password(app, current, &user.password_hash).await? {
        return Err(AppError::invalid(
            "current_password",
            "wrong_password",
            "The current password is not right",
        ));
    }
    let hash = hash_password(app, new).await?;
    let mut tx = app.db.begin_write(app.now()).await?;
    let update = holdfast_store::UserUpdate {
        password_hash: Some(hash),
        must_change_password: Some(false),
        locale: None,
        ..Default::default()
    };
    tx.update_user(
        actor.user_id,
        update,
        AuditDraft::new(
            actor,
            op_id,
            "user.password_change",
            json!({"user_id": actor.user_id}),
        ),
    )
    .await?;
    let keep = match actor.kind {
        ActorKind::Session { session_id } => Some(session_id),
        _ => None,
    };
    let audit = AuditDraft::new(
        actor,
        op_id,
        "session.revoke_others",
        json!({"kept_session": keep}),
    );
    tx.revoke_sessions(actor.user_id, SessionScope::AllExcept(keep), audit)
        .await?;
    // A token made while someone else knew the old password must not outlive it.
    let revoked = tx
        .revoke_tokens(
            actor.user_id,
            None,
            AuditDraft::new(
                actor,
                op_id,
                "token.revoke_all",
                json!({"user_id": actor.user_id, "why": "password_change"}),
            ),
        )
        .await?;
    crate::notices::notify(&mut tx, actor.user_id, "password_changed", json!({})).await?;
    tx.commit().await?;
    Ok(revoked)
}

/// Issues the one-time setup token printed by `serve` while no user exists. Returns `None`
/// once any user exists: from then on only administrators create users.
pub async fn issue_setup_token(app: &App) -> Result<Option<String>, AppError> {
    if app.db.user_count().await? > 0 {
        app.db.delete_meta("setup_token").await?;
        return Ok(None);
    }
    let token = random_hex(16)?;
    app.db.set_meta("setup_token", &sha256_hex(&token)).await?;
    Ok(Some(token))
}

/// Creates the first administrator with the setup token printed on the server console.
pub async fn complete_setup(
    app: &App,
    op_id: &str,
    token: &str,
    username: &str,
    display_name: &str,
    password: &str,
) -> Result<UserRow, AppError> {
    let stored = app.db.meta("setup_token").await?;
    let matches = stored.is_some_and(|hash| hash == sha256_hex(token.trim()));
    if !matches || app.db.user_count().await? > 0 {
        return Err(AppError::Forbidden(holdfast_domain::Denial::simple(
            "setup_closed",
            "Setup is closed or the setup token is wrong. The token is printed on the server console at start-up \
             while no user exists; otherwise ask an administrator, or run `holdfast admin create` on the server",
        )));
    }
    let user = crate::users::create_user_unchecked(
        app,
        &Actor::system(),
        op_id,
        username,
        display_name,
        password,
        holdfast_domain::access::ADMIN,
    )
    .await?;
    app.db.delete_meta("setup_token").await?;
    Ok(user)
}

/// Whether the first administrator still has to be created (the setup page is open).
pub async fn setup_needed(app: &App) -> Result<bool, AppError> {
    Ok(app.db.user_count().await? == 0)
}
