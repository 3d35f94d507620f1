//! Two-step sign-in: a TOTP app (RFC 6238: Google and Microsoft Authenticator, the Tencent and
//! Alibaba authenticator apps), ten single-use recovery codes, the per-role policy that
//! requires a second factor, and what administrators may do about other users' factors.
//! Passkeys, the other second factor, are in [`crate::passkeys`].
//!
//! A TOTP app counts once the user typed a code from it (so a mistyped secret cannot lock
//! them out); each code's time step is accepted once.

use crate::{App, AppError, auth, notices, sha256_hex, step_up};
use holdfast_domain::{Action, Actor, access::authorize};
use holdfast_store::signin::NewSecondFactor;
use holdfast_store::{AuditDraft, SecondFactorRow, UserRow};
use serde_json::json;
use std::collections::BTreeSet;
use totp_rs::{Builder, Secret};

/// Digits of a code, seconds per step, steps of clock drift tolerated either way.
const DIGITS: u8 = 6;
const STEP_SECONDS: u64 = 30;
const SKEW_STEPS: u16 = 1;
pub const RECOVERY_CODES: usize = 10;
/// Letters and digits nobody confuses when copying them from paper (no 0/o, 1/l/i).
const RECOVERY_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
const ISSUER: &str = "Holdfast";

fn totp(secret: &[u8], account: &str) -> Result<totp_rs::Totp, AppError> {
    Builder::new()
        .with_secret(secret.to_vec())
        .with_digits(DIGITS)
        .with_skew(SKEW_STEPS)
        .with_step_duration(STEP_SECONDS)
        .with_issuer(Some(ISSUER))
        .with_account_name(account.replace(':', "_"))
        .build()
        .map_err(|e| AppError::Internal(anyhow::anyhow!("TOTP parameters: {e:?}")))
}

fn secret_bytes(base32: &str) -> Result<Vec<u8>, AppError> {
    Secret::try_from_base32(base32)
        .map(|secret| secret.as_bytes().to_vec())
        .map_err(|e| AppError::Internal(anyhow::anyhow!("stored TOTP secret unreadable: {e:?}")))
}

/// The time step a code belongs to, if it is right for `unix_seconds` (± one step).
pub fn check_code(
    secret_base32: &str,
    code: &str,
    unix_seconds: u64,
) -> Result<Option<i64>, AppError> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != usize::from(DIGITS) || !code.chars().all(|c| c.is_ascii_digit()) {
        return Ok(None);
    }
    let totp = totp(&secret_bytes(secret_base32)?, "check")?;
    Ok(totp
        .check(&code, unix_seconds)
        .and_then(|step| i64::try_from(step).ok()))
}

/// The code a TOTP app shows at `unix_seconds` (tests compute codes as a phone would).
pub fn code_at(secret_base32: &str, unix_seconds: u64) -> Result<String, AppError> {
    Ok(totp(&secret_bytes(secret_base32)?, "code")?
        .generate(unix_seconds)
        .to_string())
}

fn unix_seconds(app: &App) -> u64 {
    u64::try_from(app.now().micros() / holdfast_domain::Timestamp::MICROS_PER_SECOND).unwrap_or(0)
}

/// What the user needs to add Holdfast to their app: the QR code (SVG, drawn here) and the
/// same secret as text for typing in.
pub struct TotpEnrolment {
    pub factor_id: i64,
    pub secret: String,
    pub otpauth_url: String,
    pub qr_svg: String,
}

/// Starts adding a TOTP app: a new secret, not yet in force.
pub async fn start_totp(app: &App, actor: &Actor, op_id: &str) -> Result<TotpEnrolment, AppError> {
    let user = own_account(app, actor).await?;
    let mut bytes = [0u8; 20];
    getrandom::fill(&mut bytes)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("no randomness: {e}")))?;
    let secret = Secret::from(bytes.to_vec()).to_base32();
    let otpauth_url = totp(&bytes, &user.username)?
        .to_url()
        .map_err(|e| AppError::Internal(anyhow::anyhow!("otpauth address: {e:?}")))?;
    let mut tx = app.db.begin_write(app.now()).await?;
    let factor_id = tx
        .add_second_factor(
            &NewSecondFactor {
                user_id: user.id,
                kind: "totp",
                name: "Authenticator app",
                secret: &secret,
                credential_id: None,
                confirmed: false,
            },
            AuditDraft::new(
                actor,
                op_id,
                "two_factor.totp_started",
                json!({"user_id": user.id}),
            ),
        )
        .await?;
    tx.commit().await?;
    Ok(TotpEnrolment {
        factor_id,
        qr_svg: qr_svg(&otpauth_url)?,
        secret,
        otpauth_url,
    })
}

/// An SVG QR code of `text`, drawn by Holdfast (no image service sees the secret).
pub fn qr_svg(text: &str) -> Result<String, AppError> {
    let code = qrcode::QrCode::new(text.as_bytes())
        .map_err(|e| AppError::Internal(anyhow::anyhow!("QR code: {e}")))?;
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(220, 220)
        .build();
    // Drop the XML declaration: the SVG goes inside an HTML page.
    Ok(match svg.find("<svg") {
        Some(start) => svg[start..].to_owned(),
        None => svg,
    })
}

/// The enrolment a user started and has not confirmed yet, to show its QR code again.
pub async fn pending_totp(app: &App, actor: &Actor) -> Result<Option<TotpEnrolment>, AppError> {
    let user = own_account(app, actor).await?;
    let factors = app.db.second_factors_of(user.id).await?;
    let Some(pending) = factors
        .into_iter()
        .rev()
        .find(|f| f.kind == "totp" && f.confirmed_at.is_none())
    else {
        return Ok(None);
    };
    let otpauth_url = totp(&secret_bytes(&pending.secret)?, &user.username)?
        .to_url()
        .map_err(|e| AppError::Internal(anyhow::anyhow!("otpauth address: {e:?}")))?;
    Ok(Some(TotpEnrolment {
        factor_id: pending.id,
        qr_svg: qr_svg(&otpauth_url)?,
        secret: pending.secret,
        otpauth_url,
    }))
}

/// Puts a TOTP app in force once the user typed a code from it. Returns new recovery codes
/// (shown once) when the user had none.
pub async fn confirm_totp(
    app: &App,
    actor: &Actor,
    op_id: &str,
    factor_id: i64,
    code: &str,
) -> Result<Option<Vec<String>>, AppError> {
    let user = own_account(app, actor).await?;
    let factor = app
        .db
        .second_factors_of(user.id)
        .await?
        .into_iter()
        .find(|f| f.id == factor_id && f.kind == "totp" && f.confirmed_at.is_none())
        .ok_or_else(|| AppError::not_found("an authenticator app being added (start again)"))?;
    let Some(step) = check_code(&factor.secret, code, unix_seconds(app))? else {
        return Err(AppError::invalid(
            "code",
            "wrong_code",
            "That is not the code the app shows now: check the phone's clock and type the 6 digits shown for Holdfast",
        ));
    };
    let codes = if app.db.recovery_codes_left(user.id).await? == 0 {
        Some(new_recovery_codes()?)
    } else {
        None
    };
    let mut tx = app.db.begin_write(app.now()).await?;
    let audit = AuditDraft::new(
        actor,
        op_id,
        "two_factor.totp_enrolled",
        json!({"user_id": user.id, "factor_id": factor_id}),
    );
    if !tx
        .confirm_second_factor(user.id, factor_id, step, audit)
        .await?
    {
        return Err(AppError::not_found(
            "an authenticator app being added (start again)",
        ));
    }
    if let Some(codes) = &codes {
        store_recovery_codes(&mut tx, actor, op_id, user.id, codes).await?;
    }
    notices::notify(
        &mut tx,
        user.id,
        "second_factor_added",
        json!({"kind": "totp"}),
    )
    .await?;
    tx.commit().await?;
    Ok(codes)
}

fn new_recovery_codes() -> Result<Vec<String>, AppError> {
    (0..RECOVERY_CODES)
        .map(|_| {
            let mut bytes = [0u8; 10];
            getrandom::fill(&mut bytes)
                .map_err(|e| AppError::Internal(anyhow::anyhow!("no randomness: {e}")))?;
            let chars: String = bytes
                .iter()
                .map(|b| char::from(RECOVERY_ALPHABET[usize::from(*b) % RECOVERY_ALPHABET.len()]))
                .collect();
            Ok(format!("{}-{}", &chars[..5], &chars[5..]))
        })
        .collect()
}

/// How a recovery code is compared: case, spaces and dashes do not matter.
pub fn recovery_code_hash(code: &str) -> String {
    let normal: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    sha256_hex(&format!("holdfast-recovery:{normal}"))
}

/// Whether what the user typed looks like a recovery code rather than an app's code.
pub fn is_recovery_code(code: &str) -> bool {
    code.chars().filter(|c| c.is_ascii_alphanumeric()).count() == 10
        && code.chars().any(|c| c.is_ascii_alphabetic())
}

async fn store_recovery_codes(
    tx: &mut holdfast_store::WriteTx,
    actor: &Actor,
    op_id: &str,
    user_id: i64,
    codes: &[String],
) -> Result<(), AppError> {
    let hashes: Vec<String> = codes.iter().map(|c| recovery_code_hash(c)).collect();
    tx.replace_recovery_codes(
        user_id,
        &hashes,
        AuditDraft::new(
            actor,
            op_id,
            "two_factor.recovery_codes_created",
            json!({"user_id": user_id, "count": codes.len()}),
        ),
    )
    .await?;
    Ok(())
}

/// New recovery codes replace the old ones (the password again, as for any lasting credential).
pub async fn regenerate_recovery_codes(
    app: &App,
    actor: &Actor,
    op_id: &str,
    password: &str,
) -> Result<Vec<String>, AppError> {
    let user = own_account(app, actor).await?;
    auth::require_password(app, &user, "password", password).await?;
    if !has_second_factor(app, user.id).await? {
        return Err(AppError::Conflict {
            code: "no_second_factor",
            message: "Recovery codes belong to two-step sign-in: set up an authenticator app or a passkey first".into(),
            current: None,
        });
    }
    let codes = new_recovery_codes()?;
    let mut tx = app.db.begin_write(app.now()).await?;
    store_recovery_codes(&mut tx, actor, op_id, user.id, &codes).await?;
    tx.commit().await?;
    Ok(codes)
}

async fn has_second_factor(app: &App, user_id: i64) -> Result<bool, AppError> {
    Ok(app
        .db
        .second_factors_of(user_id)
        .await?
        .iter()
        .any(|f| f.confirmed_at.is_some()))
}

/// The user's confirmed second factors.
pub async fn factors_of(app: &App, user_id: i64) -> Result<Vec<SecondFactorRow>, AppError> {
    Ok(app
        .db
        .second_factors_of(user_id)
        .await?
        .into_iter()
        .filter(|f| f.confirmed_at.is_some())
        .collect())
}

/// A user turns off one of their second factors (`None`: the authenticator app) with their
/// password and a current code (or a recovery code; a user with passkeys only, who has no
/// code, confirms the session with a passkey within the step-up minutes instead). Refused
/// when their role requires a second factor and it is their last.
pub async fn remove_factor(
    app: &App,
    actor: &Actor,
    op_id: &str,
    factor_id: Option<i64>,
    password: &str,
    code: &str,
) -> Result<(), AppError> {
    let user = own_account(app, actor).await?;
    let factors = factors_of(app, user.id).await?;
    let target = match factor_id {
        Some(id) => factors.iter().find(|f| f.id == id),
        None => factors.iter().find(|f| f.kind == "totp"),
    }
    .ok_or_else(|| AppError::not_found("that second factor"))?
    .clone();
    auth::require_password(app, &user, "password", password).await?;
    let mut tx = app.db.begin_write(app.now()).await?;
    // A code proves the second factor; without one (a passkey-only account) the session must
    // have confirmed itself within the last minutes, by passkey or code.
    let has_app = factors.iter().any(|f| f.kind == "totp");
    let proven = if code.trim().is_empty() && !has_app {
        !step_up::needed(app, actor).await?
    } else {
        prove_second_factor(app, &mut tx, &user, code).await?
    };
    if !proven {
        return Err(AppError::invalid(
            "code",
            "wrong_code",
            "Type a current code from your authenticator app or one of your recovery codes (or confirm with your passkey first)",
        ));
    }
    if factors.len() == 1 && required_for(app, &user).await? {
        return Err(AppError::Conflict {
            code: "second_factor_required",
            message: "Your role requires two-step sign-in: add another authenticator app or passkey before removing this one".into(),
            current: None,
        });
    }
    tx.remove_second_factors(
        user.id,
        Some(target.id),
        AuditDraft::new(
            actor,
            op_id,
            "two_factor.removed",
            json!({"user_id": user.id, "kind": target.kind, "name": target.name}),
        ),
    )
    .await?;
    notices::notify(
        &mut tx,
        user.id,
        "second_factor_removed",
        json!({"kind": target.kind}),
    )
    .await?;
    tx.commit().await?;
    if factors.len() == 1 && user.role == holdfast_domain::access::ADMIN {
        admin_two_step_off(app, &user, actor).await;
    }
    Ok(())
}

/// Alerts that an administrator's account has no second factor any more.
async fn admin_two_step_off(app: &App, user: &UserRow, actor: &Actor) {
    let event = crate::alerts::Event::AdminTwoStepOff {
        username: user.username.clone(),
        by: if actor.user_id == 0 {
            "holdfast admin reset-second-factor (server console)".into()
        } else {
            actor.username.clone()
        },
    };
    crate::alerts::raise(app, event).await;
}

/// Checks a TOTP code or spends a recovery code inside `tx`; a TOTP code's step is used up.
pub(crate) async fn prove_second_factor(
    app: &App,
    tx: &mut holdfast_store::WriteTx,
    user: &UserRow,
    code: &str,
) -> Result<bool, AppError> {
    Ok(second_factor_method(app, tx, user, code).await?.is_some())
}

/// Like [`prove_second_factor`], naming what was used (`totp` or `recovery_code`).
pub(crate) async fn second_factor_method(
    app: &App,
    tx: &mut holdfast_store::WriteTx,
    user: &UserRow,
    code: &str,
) -> Result<Option<&'static str>, AppError> {
    if is_recovery_code(code) {
        return Ok(tx
            .use_recovery_code(user.id, &recovery_code_hash(code))
            .await?
            .then_some("recovery_code"));
    }
    let now = unix_seconds(app);
    for factor in factors_of(app, user.id).await? {
        if factor.kind != "totp" {
            continue;
        }
        if let Some(step) = check_code(&factor.secret, code, now)? {
            return Ok(tx.use_totp_step(factor.id, step).await?.then_some("totp"));
        }
    }
    Ok(None)
}

pub(crate) async fn own_account(app: &App, actor: &Actor) -> Result<UserRow, AppError> {
    match app.db.user(actor.user_id).await? {
        Some(user) if user.active => Ok(user),
        _ => Err(AppError::not_found("your account")),
    }
}

/// Whether the user's role requires a second factor.
pub async fn required_for(app: &App, user: &UserRow) -> Result<bool, AppError> {
    Ok(app.db.second_factor_roles().await?.contains(&user.role))
}

/// Where a user stands with two-step sign-in.
pub struct Status {
    pub factors: Vec<SecondFactorRow>,
    pub recovery_codes_left: i64,
    pub required: bool,
}

pub async fn status(app: &App, actor: &Actor) -> Result<Status, AppError> {
    let user = own_account(app, actor).await?;
    Ok(Status {
        factors: factors_of(app, user.id).await?,
        recovery_codes_left: app.db.recovery_codes_left(user.id).await?,
        required: required_for(app, &user).await?,
    })
}

/// The roles that must use a second factor (administrators).
pub async fn policy(app: &App, actor: &Actor) -> Result<BTreeSet<String>, AppError> {
    authorize(actor, Action::Administer)?;
    Ok(app.db.second_factor_roles().await?)
}

/// Requires (or stops requiring) a second factor for a role; audited, with step-up.
pub async fn set_required(
    app: &App,
    actor: &Actor,
    op_id: &str,
    role: &str,
    required: bool,
) -> Result<BTreeSet<String>, AppError> {
    authorize(actor, Action::Administer)?;
    let config = app.access_config().await?;
    if config.role(role).is_none() {
        return Err(AppError::invalid(
            "role",
            "unknown_role",
            format!("There is no role {role:?}"),
        ));
    }
    step_up::require(app, actor).await?;
    let mut roles = app.db.second_factor_roles().await?;
    let changed = if required {
        roles.insert(role.to_owned())
    } else {
        roles.remove(role)
    };
    if changed {
        let mut tx = app.db.begin_write(app.now()).await?;
        tx.set_second_factor_roles(
            &roles,
            AuditDraft::new(
                actor,
                op_id,
                "two_factor.policy",
                json!({"role": role, "required": required}),
            ),
        )
        .await?;
        tx.commit().await?;
    }
    Ok(roles)
}

/// Sets the roles that must use a second factor as the server itself (`holdfast` commands and
/// tests); audited.
pub async fn set_roles_as_system(app: &App, roles: &[&str]) -> Result<(), AppError> {
    let roles: BTreeSet<String> = roles.iter().map(|r| (*r).to_owned()).collect();
    let mut tx = app.db.begin_write(app.now()).await?;
    tx.set_second_factor_roles(
        &roles,
        AuditDraft::new(
            &Actor::system(),
            "-",
            "two_factor.policy",
            json!({"roles": roles}),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// A user and where they stand with two-step sign-in, for administrators.
pub struct Enrolment {
    pub user: UserRow,
    pub factors: Vec<SecondFactorRow>,
    pub required: bool,
}

/// Every active user with their second factors (administrators): who has not enrolled.
pub async fn enrolments(app: &App, actor: &Actor) -> Result<Vec<Enrolment>, AppError> {
    authorize(actor, Action::Administer)?;
    let roles = app.db.second_factor_roles().await?;
    let mut out = Vec::new();
    for user in app.db.users().await?.into_iter().filter(|u| u.active) {
        out.push(Enrolment {
            factors: factors_of(app, user.id).await?,
            required: roles.contains(&user.role),
            user,
        });
    }
    Ok(out)
}

/// An administrator removes every second factor of a user who lost their phone and recovery
/// codes (audited, with step-up); the user is told, and enrols again at their next sign-in
/// if their role requires it. Their sessions end.
pub async fn reset_user(
    app: &App,
    actor: &Actor,
    op_id: &str,
    user_id: i64,
) -> Result<u64, AppError> {
    authorize(actor, Action::Administer)?;
    step_up::require(app, actor).await?;
    let user = app
        .db
        .user(user_id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("user {user_id}")))?;
    reset(app, actor, op_id, &user).await
}

/// `holdfast admin reset-second-factor`: the same, by whoever runs the server (the way back
/// in when the only administrator lost their second factors); audited as the system.
pub async fn reset_by_operator(app: &App, op_id: &str, username: &str) -> Result<u64, AppError> {
    let user = app
        .db
        .user_by_username(&username.trim().to_lowercase())
        .await?
        .ok_or_else(|| AppError::not_found(format!("user {username}")))?;
    reset(app, &Actor::system(), op_id, &user).await
}

async fn reset(app: &App, actor: &Actor, op_id: &str, user: &UserRow) -> Result<u64, AppError> {
    let mut tx = app.db.begin_write(app.now()).await?;
    let removed = tx
        .remove_second_factors(
            user.id,
            None,
            AuditDraft::new(
                actor,
                op_id,
                "two_factor.reset",
                json!({"user_id": user.id, "username": user.username}),
            ),
        )
        .await?;
    tx.revoke_sessions(
        user.id,
        holdfast_store::SessionScope::AllExcept(None),
        AuditDraft::new(
            actor,
            op_id,
            "session.revoke_all",
            json!({"user_id": user.id, "why": "second_factor_reset"}),
        ),
    )
    .await?;
    notices::notify(
        &mut tx,
        user.id,
        "second_factor_reset",
        json!({"by": actor.username}),
    )
    .await?;
    tx.commit().await?;
    if removed > 0 && user.role == holdfast_domain::access::ADMIN {
        admin_two_step_off(app, user, actor).await;
    }
    Ok(removed)
}
