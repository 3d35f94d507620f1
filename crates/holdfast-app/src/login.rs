//! Signing in: the password, then a second factor when the user has one, then a session;
//! throttling with back-off; devices a user signed in from before; the sign-in history and the
//! notice about a sign-in from a new device.
//!
//! **Throttling.** An attempt is recorded as a failure before its password is checked (and
//! taken back when it succeeds or cannot be checked), so parallel guesses cannot outrun the
//! count. Failures count under three keys, each with a back-off that doubles from one second
//! once its free failures are used up, within the window:
//! - `pair:NAME|CLIENT` (this account from this client) — the guesser's own key;
//! - `addr:CLIENT` (any account from this client; IPv6 per /64, the client a trusted proxy
//!   names) — one client trying many accounts;
//! - `user:NAME` (this account from anywhere) — softer: it waits at most a minute, and does not
//!   apply at all from a device the user signed in from before (the `holdfast_device` cookie)
//!   or to an account with a second factor, so a stranger's guesses slow the real user down but
//!   never lock them out.

use crate::{App, AppError, notices, random_hex, sha256_hex, two_factor};
use holdfast_domain::{Actor, ActorKind, Timestamp};
use holdfast_store::{AuditDraft, LoginEventRow, NewSessionRow, UserRow};
use serde_json::json;

pub use holdfast_store::signin::LOGIN_HISTORY_DAYS;

/// A half-done sign-in (password right, second factor to come) lasts this long.
const SECOND_FACTOR_MINUTES: i64 = 5;
/// Wrong codes one half-done sign-in takes before the password must be typed again.
const SECOND_FACTOR_TRIES: i64 = 5;
/// A device is remembered this long after its last sign-in.
pub const KNOWN_DEVICE_DAYS: i64 = 180;
/// The per-account back-off never waits longer than this.
const ACCOUNT_BACK_OFF_CAP_SECONDS: i64 = 60;

/// Who is signing in from where.
pub struct LoginAttempt<'a> {
    pub username: &'a str,
    pub password: &'a str,
    pub client: Client<'a>,
    /// "Remember this device": a longer session without the idle limit.
    pub remember: bool,
}

/// What the server knows about the client of a sign-in.
#[derive(Clone, Copy, Default)]
pub struct Client<'a> {
    pub address: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    /// The `holdfast_device` cookie, if the browser sent one.
    pub device: Option<&'a str>,
}

/// A new session: the cookie value (shown once, never stored) and the session row.
pub struct NewSession {
    pub token: String,
    pub session_id: i64,
    pub user: UserRow,
    pub expires_at: Timestamp,
    /// The device cookie to set (new, or the same one refreshed).
    pub device_token: String,
}

/// The password was right; a second factor must follow within a few minutes.
pub struct SecondFactorNeeded {
    /// Identifies this half-done sign-in (a cookie for pages, a field for the API).
    pub token: String,
    pub user: UserRow,
    /// `totp` (which also takes recovery codes) and/or `passkey`.
    pub methods: Vec<&'static str>,
    pub expires_at: Timestamp,
}

pub enum LoginStep {
    Session(NewSession),
    SecondFactor(SecondFactorNeeded),
}

fn wrong_credentials() -> AppError {
    AppError::Unauthenticated {
        code: "invalid_credentials",
        message: "Wrong username or password".into(),
    }
}

/// The first step: username and password.
pub async fn login(
    app: &App,
    op_id: &str,
    attempt: LoginAttempt<'_>,
) -> Result<LoginStep, AppError> {
    let username = attempt.username.trim().to_lowercase();
    let user = app.db.user_by_username(&username).await?;
    let device_user = device_user(app, attempt.client.device).await?;
    let lenient = match &user {
        Some(user) => device_user == Some(user.id) || has_second_factor(app, user.id).await?,
        None => false,
    };
    let user_id = user.as_ref().map(|u| u.id);
    let event = |outcome: &str| LoginEventRow {
        id: 0,
        user_id,
        at: app.now(),
        address: attempt.client.address.map(str::to_owned),
        user_agent: attempt.client.user_agent.map(str::to_owned),
        method: "password".into(),
        outcome: outcome.into(),
        new_device: false,
    };
    let guard = match Guard::start(app, &username, attempt.client.address, Some(lenient)).await {
        Ok(guard) => guard,
        Err(error) => {
            if matches!(error, AppError::Throttled { .. }) && user.is_some() {
                app.db.record_login_event(&event("throttled")).await?;
            }
            return Err(error);
        }
    };
    let verified = match &user {
        Some(user) => {
            crate::auth::verify_password(app, attempt.password, &user.password_hash).await
        }
        // Spend the same time on unknown names, so timing does not reveal which names exist.
        None => crate::auth::hash_password(app, attempt.password)
            .await
            .map(|_| false),
    };
    let verified = match verified {
        Ok(verified) => verified,
        Err(error) => {
            guard.abandon(app).await?;
            return Err(error);
        }
    };
    // A deactivated account gets the answer a wrong password gets: a right password must not be
    // confirmed to whoever holds it (the account may have been closed because it leaked).
    let user = match user {
        Some(user) if verified && user.active && user.frozen.is_none() => user,
        Some(user) => {
            // A frozen account is refused like a deactivated one: whoever holds its password
            // learns nothing from the answer.
            let outcome = match (verified, user.active) {
                (false, _) => "wrong_password",
                (true, false) => "deactivated",
                (true, true) => "frozen",
            };
            app.db.record_login_event(&event(outcome)).await?;
            guard.failed(app).await?;
            return Err(wrong_credentials());
        }
        None => {
            guard.failed(app).await?;
            return Err(wrong_credentials());
        }
    };
    let factors = two_factor::factors_of(app, user.id).await?;
    if factors.is_empty() {
        guard.succeeded(app).await?;
        let session = start_session(
            app,
            op_id,
            &user,
            "password",
            attempt.remember,
            attempt.client,
        )
        .await?;
        return Ok(LoginStep::Session(session));
    }
    // The password was right: the attempt stops counting against the client, but the account
    // key keeps its failures until the second factor is passed too.
    guard.abandon(app).await?;
    let mut methods = Vec::new();
    if factors.iter().any(|f| f.kind == "totp") || app.db.recovery_codes_left(user.id).await? > 0 {
        methods.push("totp");
    }
    if factors.iter().any(|f| f.kind == "passkey") {
        methods.push("passkey");
    }
    let token = random_hex(32)?;
    let now = app.now();
    let expires_at = now.plus_seconds(SECOND_FACTOR_MINUTES * 60);
    let state = json!({"remember": attempt.remember}).to_string();
    app.db
        .create_challenge(
            &sha256_hex(&token),
            Some(user.id),
            "second_factor",
            &state,
            now,
            expires_at,
        )
        .await?;
    Ok(LoginStep::SecondFactor(SecondFactorNeeded {
        token,
        user,
        methods,
        expires_at,
    }))
}

/// A half-done sign-in, or why it cannot go on.
pub(crate) async fn pending_sign_in(
    app: &App,
    token: &str,
) -> Result<(holdfast_store::ChallengeRow, UserRow, bool), AppError> {
    let expired = || AppError::Unauthenticated {
        code: "sign_in_expired",
        message: format!(
            "This sign-in was not finished within {SECOND_FACTOR_MINUTES} minutes or took too many wrong codes; sign in with your password again"
        ),
    };
    let challenge = app
        .db
        .challenge(&sha256_hex(token))
        .await?
        .filter(|c| c.purpose == "second_factor" && c.expires_at > app.now())
        .ok_or_else(expired)?;
    let user = match challenge.user_id {
        Some(id) => app.db.user(id).await?.filter(|u| u.active),
        None => None,
    }
    .ok_or_else(expired)?;
    let remember = serde_json::from_str::<serde_json::Value>(&challenge.state)
        .ok()
        .and_then(|state| state["remember"].as_bool())
        .unwrap_or(false);
    Ok((challenge, user, remember))
}

/// The second step: a code from the authenticator app or a recovery code.
pub async fn second_factor(
    app: &App,
    op_id: &str,
    token: &str,
    code: &str,
    client: Client<'_>,
) -> Result<NewSession, AppError> {
    let (challenge, user, remember) = pending_sign_in(app, token).await?;
    let guard = Guard::start(app, &user.username, client.address, Some(true)).await?;
    let mut tx = app.db.begin_write_in_read_only_mode(app.now()).await?;
    let method = two_factor::second_factor_method(app, &mut tx, &user, code.trim()).await?;
    let Some(method) = method else {
        drop(tx);
        guard.failed(app).await?;
        let failures = app.db.challenge_failed(challenge.id).await?;
        app.db
            .record_login_event(&LoginEventRow {
                id: 0,
                user_id: Some(user.id),
                at: app.now(),
                address: client.address.map(str::to_owned),
                user_agent: client.user_agent.map(str::to_owned),
                method: "password+totp".into(),
                outcome: "wrong_code".into(),
                new_device: false,
            })
            .await?;
        if failures >= SECOND_FACTOR_TRIES {
            app.db.end_challenge(challenge.id).await?;
        }
        return Err(AppError::invalid(
            "code",
            "wrong_code",
            "That code is not right: type the 6 digits your authenticator app shows now, or one of your recovery codes",
        ));
    };
    if method == "recovery_code" {
        let left = app.db.recovery_codes_left(user.id).await?.saturating_sub(1);
        notices::notify(
            &mut tx,
            user.id,
            "recovery_code_used",
            json!({"left": left}),
        )
        .await?;
    }
    tx.commit().await?;
    if !app.db.end_challenge(challenge.id).await? {
        return Err(AppError::Unauthenticated {
            code: "sign_in_expired",
            message: "This sign-in was already finished; sign in again".into(),
        });
    }
    guard.succeeded(app).await?;
    start_session(
        app,
        op_id,
        &user,
        &format!("password+{method}"),
        remember,
        client,
    )
    .await
}

/// Starts a session for a user who proved who they are; records the sign-in, remembers the
/// device and tells the user when it is new to their account.
pub(crate) async fn start_session(
    app: &App,
    op_id: &str,
    user: &UserRow,
    method: &str,
    remember: bool,
    client: Client<'_>,
) -> Result<NewSession, AppError> {
    let now = app.now();
    let known_device = device_user(app, client.device).await? == Some(user.id);
    let new_device = !known_device
        && app.db.ever_signed_in(user.id).await?
        && !app
            .db
            .signed_in_before_from(user.id, client.address, client.user_agent)
            .await?;
    let token = random_hex(32)?;
    let expires_at = if remember {
        now.plus_days(app.config.session_remember_days)
    } else {
        now.plus_seconds(app.config.session_absolute_hours * 3600)
    };
    let mut actor = crate::auth::actor_of(app, user, ActorKind::System).await?;
    actor.client = client.address.map(str::to_owned);
    let audit = AuditDraft::new(
        &actor,
        op_id,
        "auth.login",
        json!({"address": client.address, "method": method, "remember": remember, "new_device": new_device}),
    );
    let mut tx = app.db.begin_write_in_read_only_mode(now).await?;
    let session_id = tx
        .create_session(
            &NewSessionRow {
                user_id: user.id,
                token_hash: &sha256_hex(&token),
                expires_at,
                address: client.address,
                user_agent: client.user_agent,
                method,
                remembered: remember,
            },
            audit,
        )
        .await?;
    if new_device {
        notices::notify(
            &mut tx,
            user.id,
            "new_sign_in",
            json!({"address": client.address, "user_agent": client.user_agent, "session_id": session_id, "method": method}),
        )
        .await?;
    }
    tx.commit().await?;
    app.db
        .record_login_event(&LoginEventRow {
            id: 0,
            user_id: Some(user.id),
            at: now,
            address: client.address.map(str::to_owned),
            user_agent: client.user_agent.map(str::to_owned),
            method: method.into(),
            outcome: "success".into(),
            new_device,
        })
        .await?;
    let device_token = match client.device {
        Some(device) if known_device => device.to_owned(),
        _ => random_hex(32)?,
    };
    app.db
        .remember_device(
            user.id,
            &sha256_hex(&device_token),
            now,
            now.plus_days(KNOWN_DEVICE_DAYS),
        )
        .await?;
    Ok(NewSession {
        token,
        session_id,
        user: user.clone(),
        expires_at,
        device_token,
    })
}

async fn device_user(app: &App, device: Option<&str>) -> Result<Option<i64>, AppError> {
    match device {
        Some(device) if !device.is_empty() => Ok(app
            .db
            .known_device_user(&sha256_hex(device), app.now())
            .await?),
        _ => Ok(None),
    }
}

async fn has_second_factor(app: &App, user_id: i64) -> Result<bool, AppError> {
    Ok(!two_factor::factors_of(app, user_id).await?.is_empty())
}

/// A client, or one account from anywhere, used up its free failures: administrators hear of
/// it (once an hour per client or account; see [`crate::alerts::Event::SigninBurst`]).
async fn burst_alert(app: &App, key: &str, failures: i64) {
    let client = match key.split_once(':') {
        Some(("addr", client)) => client.to_owned(),
        Some(("user", username)) => format!("(account {username})"),
        _ => return,
    };
    crate::alerts::raise(app, crate::alerts::Event::SigninBurst { client, failures }).await;
}

/// Waits, doubling from one second, once `free` failures are used up; at most `cap`.
fn back_off_seconds(failures_before: i64, free: i64, cap: i64) -> i64 {
    if failures_before < free {
        return 0;
    }
    let doublings = u32::try_from((failures_before - free).min(30)).unwrap_or(30);
    (1i64 << doublings).min(cap)
}

/// One sign-in attempt counted under its throttling keys until it is known to have failed or
/// succeeded.
pub(crate) struct Guard {
    rows: Vec<i64>,
    succeed_clears: Vec<String>,
}

impl Guard {
    /// Records the attempt (as a failure, before anything is checked) and refuses it when one
    /// of its keys is backing off. `lenient`: `Some(true)` leaves out the per-account key (a
    /// known device, an account with a second factor); `None` counts only that key.
    pub(crate) async fn start(
        app: &App,
        username: &str,
        address: Option<&str>,
        lenient: Option<bool>,
    ) -> Result<Guard, AppError> {
        let now = app.now();
        let config = &app.config;
        let window = config.login_window_minutes * 60;
        let username = username.trim().to_lowercase();
        let account_key = format!("user:{username}");
        let mut keys = vec![(
            account_key.clone(),
            config.login_max_failures_per_account,
            ACCOUNT_BACK_OFF_CAP_SECONDS,
            lenient == Some(true),
        )];
        let mut succeed_clears = vec![account_key];
        if let Some(address) = address.filter(|_| lenient.is_some()) {
            let client = crate::security::throttle_key(address);
            let pair = format!("pair:{username}|{client}");
            keys.push((
                pair.clone(),
                config.login_max_failures_per_client_and_account,
                window,
                false,
            ));
            keys.push((
                format!("addr:{client}"),
                config.login_max_failures_per_address,
                window,
                false,
            ));
            succeed_clears.push(pair);
        }
        let names: Vec<String> = keys.iter().map(|(key, ..)| key.clone()).collect();
        let rows = app.db.record_login_attempt(&names, now).await?;
        let since = now.plus_seconds(-window);
        let mut wait = 0;
        for ((key, free, cap, skip), row) in keys.iter().zip(&rows) {
            if *skip {
                continue;
            }
            let (failures, newest) = app.db.login_failures_before(key, *row, since).await?;
            if failures >= *free {
                burst_alert(app, key, failures + 1).await;
            }
            if let Some(newest) = newest {
                let until = newest.plus_seconds(back_off_seconds(failures, *free, *cap));
                let micros = until.micros() - now.micros();
                let seconds =
                    (micros + Timestamp::MICROS_PER_SECOND - 1) / Timestamp::MICROS_PER_SECOND;
                if seconds > 0 {
                    tracing::warn!(key = %key, failures, seconds, "login backing off");
                    wait = wait.max(seconds);
                }
            }
        }
        let guard = Guard {
            rows,
            succeed_clears,
        };
        if wait > 0 {
            guard.abandon(app).await?;
            return Err(AppError::Throttled {
                retry_after_seconds: wait,
            });
        }
        Ok(guard)
    }

    /// The attempt failed: it stays counted.
    pub(crate) async fn failed(self, _app: &App) -> Result<(), AppError> {
        Ok(())
    }

    /// The attempt could not be judged (busy, or the password was right and a second factor
    /// follows): it does not count.
    pub(crate) async fn abandon(self, app: &App) -> Result<(), AppError> {
        app.db.forget_login_attempts(&self.rows).await?;
        Ok(())
    }

    /// The user proved who they are: their account's and this client's failures for it are
    /// forgotten.
    pub(crate) async fn succeeded(self, app: &App) -> Result<(), AppError> {
        app.db.forget_login_attempts(&self.rows).await?;
        let since = app
            .now()
            .plus_seconds(-app.config.login_window_minutes * 60);
        for key in &self.succeed_clears {
            app.db.clear_login_failures(key, since).await?;
        }
        Ok(())
    }
}

/// A key login throttling counts failures under and where it stands.
#[derive(Debug, Clone)]
pub struct Throttle {
    pub key: String,
    pub failures: i64,
    /// Failures allowed before the back-off starts.
    pub limit: i64,
    /// Attempts under this key wait until then.
    pub blocked_until: Option<Timestamp>,
}

fn key_limits(app: &App, key: &str) -> (i64, i64) {
    let window = app.config.login_window_minutes * 60;
    if key.starts_with("user:") {
        (
            app.config.login_max_failures_per_account,
            ACCOUNT_BACK_OFF_CAP_SECONDS,
        )
    } else if key.starts_with("pair:") {
        (app.config.login_max_failures_per_client_and_account, window)
    } else {
        (app.config.login_max_failures_per_address, window)
    }
}

/// Accounts and clients with recent failed sign-ins (administrators).
pub async fn throttles(app: &App, actor: &Actor) -> Result<Vec<Throttle>, AppError> {
    holdfast_domain::access::authorize(actor, holdfast_domain::Action::Administer)?;
    let now = app.now();
    let window = app.config.login_window_minutes * 60;
    let rows = app.db.login_throttles(now.plus_seconds(-window)).await?;
    Ok(rows
        .into_iter()
        .map(|(key, failures, newest)| {
            let (limit, cap) = key_limits(app, &key);
            let until = newest.plus_seconds(back_off_seconds(failures, limit, cap));
            Throttle {
                blocked_until: (until > now).then_some(until),
                key,
                failures,
                limit,
            }
        })
        .collect())
}

/// An administrator lifts a throttle (the real user is slowed down); audited.
pub async fn clear_throttle(
    app: &App,
    actor: &Actor,
    op_id: &str,
    key: &str,
) -> Result<u64, AppError> {
    holdfast_domain::access::authorize(actor, holdfast_domain::Action::Administer)?;
    if !["user:", "addr:", "pair:"]
        .iter()
        .any(|prefix| key.starts_with(prefix))
    {
        return Err(AppError::invalid(
            "key",
            "invalid_choice",
            "A throttle key starts with user:, pair: or addr: (GET /api/v1/auth/throttles lists them)",
        ));
    }
    let cleared = app.db.forget_login_key(key).await?;
    let mut tx = app.db.begin_write_in_read_only_mode(app.now()).await?;
    tx.audit_event(AuditDraft::new(
        actor,
        op_id,
        "auth.throttle_cleared",
        json!({"key": key, "failures": cleared}),
    ))
    .await?;
    tx.commit().await?;
    Ok(cleared)
}

/// The sign-in history of the actor.
pub async fn my_history(app: &App, actor: &Actor) -> Result<Vec<LoginEventRow>, AppError> {
    Ok(app.db.login_events(Some(actor.user_id), 50).await?)
}

/// Everyone's sign-in history, or one user's (administrators).
pub async fn history(
    app: &App,
    actor: &Actor,
    user_id: Option<i64>,
) -> Result<Vec<LoginEventRow>, AppError> {
    holdfast_domain::access::authorize(actor, holdfast_domain::Action::Administer)?;
    Ok(app.db.login_events(user_id, 200).await?)
}

#[cfg(test)]
mod tests {
    use super::back_off_seconds;

    #[test]
    fn back_off_doubles_after_the_free_failures_up_to_its_cap() {
        assert_eq!(back_off_seconds(4, 5, 900), 0);
        assert_eq!(back_off_seconds(5, 5, 900), 1);
        assert_eq!(back_off_seconds(6, 5, 900), 2);
        assert_eq!(back_off_seconds(9, 5, 900), 16);
        assert_eq!(back_off_seconds(50, 5, 900), 900);
        assert_eq!(back_off_seconds(500, 5, 60), 60);
    }
}
