//! Sign-in beyond the password: second factors (TOTP apps and passkeys) with their recovery
//! codes, sign-ins half done (password right, second factor still to come; passkey
//! ceremonies), devices a user signed in from before, and the sign-in history.
//!
//! Enrolling or removing a second factor and the per-role policy change what a user may do
//! (the enrolment gate is a step of the permission checks), so those writes go through a
//! [`WriteTx`] with an audit entry and move the `access_generation` mark. Challenges, known
//! devices and history rows are bookkeeping of the sign-in itself, written directly.

use crate::write::AuditDraft;
use crate::{Db, StoreError, WriteTx};
use holdfast_domain::Timestamp;
use sqlx::Row as _;
use sqlx::any::AnyRow;
use std::collections::BTreeSet;

/// A second factor: a TOTP app or a passkey.
#[derive(Debug, Clone)]
pub struct SecondFactorRow {
    pub id: i64,
    pub user_id: i64,
    /// `totp` or `passkey`.
    pub kind: String,
    pub name: String,
    /// TOTP: the base32 secret; passkey: the credential as webauthn-rs serialises it.
    pub secret: String,
    /// Passkeys: the credential id (base64url), to find the passkey a browser offers.
    pub credential_id: Option<String>,
    pub created_at: Timestamp,
    /// A TOTP app counts once the user typed a code from it; a passkey at once.
    pub confirmed_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
}

/// A second factor to add.
pub struct NewSecondFactor<'a> {
    pub user_id: i64,
    pub kind: &'a str,
    pub name: &'a str,
    pub secret: &'a str,
    pub credential_id: Option<&'a str>,
    pub confirmed: bool,
}

/// A sign-in or enrolment half done.
#[derive(Debug, Clone)]
pub struct ChallengeRow {
    pub id: i64,
    pub user_id: Option<i64>,
    /// `second_factor` (password right, code to come), `passkey_login`, `passkey_register`.
    pub purpose: String,
    /// What the next step needs (JSON): the ceremony state, "remember this device", …
    pub state: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub failures: i64,
}

/// One sign-in attempt as its user (and administrators) see it in the history.
#[derive(Debug, Clone)]
pub struct LoginEventRow {
    pub id: i64,
    /// `None` for a name no account has.
    pub user_id: Option<i64>,
    pub at: Timestamp,
    pub address: Option<String>,
    pub user_agent: Option<String>,
    /// `password`, `password+totp`, `password+recovery_code`, `password+passkey`, `passkey`.
    pub method: String,
    /// `success`, `wrong_password`, `wrong_code`, `throttled`, `deactivated`, `unknown_account`,
    /// `second_factor_abandoned`…
    pub outcome: String,
    /// A success from a device and address this account had not signed in from before.
    pub new_device: bool,
}

const FACTOR_COLUMNS: &str =
    "id, user_id, kind, name, secret, credential_id, created_at, confirmed_at, last_used_at";
const CHALLENGE_COLUMNS: &str = "id, user_id, purpose, state, created_at, expires_at, failures";
const EVENT_COLUMNS: &str = "id, user_id, at, address, user_agent, method, outcome, new_device";

fn factor_from_row(row: &AnyRow) -> anyhow::Result<SecondFactorRow> {
    Ok(SecondFactorRow {
        id: row.try_get(0)?,
        user_id: row.try_get(1)?,
        kind: row.try_get(2)?,
        name: row.try_get(3)?,
        secret: row.try_get(4)?,
        credential_id: row.try_get(5)?,
        created_at: Timestamp(row.try_get(6)?),
        confirmed_at: row.try_get::<Option<i64>, _>(7)?.map(Timestamp),
        last_used_at: row.try_get::<Option<i64>, _>(8)?.map(Timestamp),
    })
}

fn challenge_from_row(row: &AnyRow) -> anyhow::Result<ChallengeRow> {
    Ok(ChallengeRow {
        id: row.try_get(0)?,
        user_id: row.try_get(1)?,
        purpose: row.try_get(2)?,
        state: row.try_get(3)?,
        created_at: Timestamp(row.try_get(4)?),
        expires_at: Timestamp(row.try_get(5)?),
        failures: row.try_get(6)?,
    })
}

fn event_from_row(row: &AnyRow) -> anyhow::Result<LoginEventRow> {
    Ok(LoginEventRow {
        id: row.try_get(0)?,
        user_id: row.try_get(1)?,
        at: Timestamp(row.try_get(2)?),
        address: row.try_get(3)?,
        user_agent: row.try_get(4)?,
        method: row.try_get(5)?,
        outcome: row.try_get(6)?,
        new_device: row.try_get::<i64, _>(7)? == 1,
    })
}

/// Sign-in history older than this is forgotten as new sign-ins come.
pub const LOGIN_HISTORY_DAYS: i64 = 400;

/// The meta key holding the roles that must use a second factor (a JSON list of role keys).
pub const SECOND_FACTOR_ROLES: &str = "second_factor_roles";

impl Db {
    /// A user's second factors, confirmed or not, oldest first.
    pub async fn second_factors_of(&self, user_id: i64) -> anyhow::Result<Vec<SecondFactorRow>> {
        let sql =
            format!("SELECT {FACTOR_COLUMNS} FROM second_factors WHERE user_id = $1 ORDER BY id");
        let found = sqlx::query(&sql)
            .bind(user_id)
            .fetch_all(self.read_pool())
            .await?;
        found.iter().map(factor_from_row).collect()
    }

    /// The passkey with this credential id.
    pub async fn passkey_by_credential(
        &self,
        credential_id: &str,
    ) -> anyhow::Result<Option<SecondFactorRow>> {
        let sql = format!(
            "SELECT {FACTOR_COLUMNS} FROM second_factors WHERE credential_id = $1 AND kind = 'passkey'"
        );
        let found = sqlx::query(&sql)
            .bind(credential_id.to_owned())
            .fetch_optional(self.read_pool())
            .await?;
        found.as_ref().map(factor_from_row).transpose()
    }

    /// Users with at least one confirmed second factor.
    pub async fn users_with_second_factor(&self) -> anyhow::Result<BTreeSet<i64>> {
        let found = sqlx::query(
            "SELECT DISTINCT user_id FROM second_factors WHERE confirmed_at IS NOT NULL",
        )
        .fetch_all(self.read_pool())
        .await?;
        found
            .iter()
            .map(|row| Ok(row.try_get::<i64, _>(0)?))
            .collect()
    }

    /// The roles whose users must use a second factor.
    pub async fn second_factor_roles(&self) -> anyhow::Result<BTreeSet<String>> {
        Ok(match self.meta(SECOND_FACTOR_ROLES).await? {
            Some(json) => serde_json::from_str(&json).unwrap_or_default(),
            None => BTreeSet::new(),
        })
    }

    /// Unused recovery codes of a user.
    pub async fn recovery_codes_left(&self, user_id: i64) -> anyhow::Result<i64> {
        Ok(sqlx::query(
            "SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL",
        )
        .bind(user_id)
        .fetch_one(self.read_pool())
        .await?
        .try_get::<i64, _>(0)?)
    }

    /// Starts a challenge; its token (only the hash is kept) goes to the client.
    pub async fn create_challenge(
        &self,
        token_hash: &str,
        user_id: Option<i64>,
        purpose: &str,
        state: &str,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> anyhow::Result<i64> {
        sqlx::query("DELETE FROM login_challenges WHERE expires_at < $1")
            .bind(now.micros())
            .execute(&self.write)
            .await?;
        let row = sqlx::query(
            "INSERT INTO login_challenges (token_hash, user_id, purpose, state, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(token_hash.to_owned())
        .bind(user_id)
        .bind(purpose.to_owned())
        .bind(state.to_owned())
        .bind(now.micros())
        .bind(expires_at.micros())
        .fetch_one(&self.write)
        .await?;
        Ok(row.try_get::<i64, _>(0)?)
    }

    pub async fn challenge(&self, token_hash: &str) -> anyhow::Result<Option<ChallengeRow>> {
        let sql = format!("SELECT {CHALLENGE_COLUMNS} FROM login_challenges WHERE token_hash = $1");
        let found = sqlx::query(&sql)
            .bind(token_hash.to_owned())
            .fetch_optional(&self.write)
            .await?;
        found.as_ref().map(challenge_from_row).transpose()
    }

    /// Counts a wrong answer to a challenge; returns the failures so far.
    pub async fn challenge_failed(&self, id: i64) -> anyhow::Result<i64> {
        let row = sqlx::query(
            "UPDATE login_challenges SET failures = failures + 1 WHERE id = $1 RETURNING failures",
        )
        .bind(id)
        .fetch_optional(&self.write)
        .await?;
        Ok(row
            .map(|row| row.try_get::<i64, _>(0))
            .transpose()?
            .unwrap_or(i64::MAX))
    }

    /// Ends a challenge; `false` when it was already gone (answered twice at once).
    pub async fn end_challenge(&self, id: i64) -> anyhow::Result<bool> {
        Ok(sqlx::query("DELETE FROM login_challenges WHERE id = $1")
            .bind(id)
            .execute(&self.write)
            .await?
            .rows_affected()
            == 1)
    }

    /// The user a remembered-device cookie belongs to, if it is still valid.
    pub async fn known_device_user(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> anyhow::Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT user_id FROM known_devices WHERE token_hash = $1 AND expires_at > $2",
        )
        .bind(token_hash.to_owned())
        .bind(now.micros())
        .fetch_optional(&self.write)
        .await?;
        Ok(row.map(|row| row.try_get::<i64, _>(0)).transpose()?)
    }

    /// Remembers (or refreshes) a device a user signed in from.
    pub async fn remember_device(
        &self,
        user_id: i64,
        token_hash: &str,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM known_devices WHERE expires_at < $1")
            .bind(now.micros())
            .execute(&self.write)
            .await?;
        sqlx::query(
            "INSERT INTO known_devices (user_id, token_hash, created_at, last_used_at, expires_at)
             VALUES ($1, $2, $3, $3, $4)
             ON CONFLICT (token_hash) DO UPDATE SET last_used_at = excluded.last_used_at, expires_at = excluded.expires_at",
        )
        .bind(user_id)
        .bind(token_hash.to_owned())
        .bind(now.micros())
        .bind(expires_at.micros())
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Forgets every device a user signed in from ("this wasn't me").
    pub async fn forget_devices(&self, user_id: i64) -> anyhow::Result<u64> {
        Ok(sqlx::query("DELETE FROM known_devices WHERE user_id = $1")
            .bind(user_id)
            .execute(&self.write)
            .await?
            .rows_affected())
    }

    /// Adds a line to the sign-in history, and forgets lines older than
    /// [`LOGIN_HISTORY_DAYS`] (the audit log keeps every successful sign-in for good).
    pub async fn record_login_event(&self, event: &LoginEventRow) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM login_events WHERE at < $1")
            .bind(event.at.plus_days(-LOGIN_HISTORY_DAYS).micros())
            .execute(&self.write)
            .await?;
        sqlx::query(
            "INSERT INTO login_events (user_id, at, address, user_agent, method, outcome, new_device)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(event.user_id)
        .bind(event.at.micros())
        .bind(event.address.clone())
        .bind(
            event
                .user_agent
                .as_ref()
                .map(|ua| ua.chars().take(300).collect::<String>()),
        )
        .bind(event.method.clone())
        .bind(event.outcome.clone())
        .bind(i64::from(event.new_device))
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// The sign-in history, newest first: one user's, or everyone's (`None`).
    pub async fn login_events(
        &self,
        user_id: Option<i64>,
        limit: i64,
    ) -> anyhow::Result<Vec<LoginEventRow>> {
        let found = match user_id {
            Some(user_id) => {
                let sql = format!(
                    "SELECT {EVENT_COLUMNS} FROM login_events WHERE user_id = $1 ORDER BY at DESC, id DESC LIMIT $2"
                );
                sqlx::query(&sql)
                    .bind(user_id)
                    .bind(limit)
                    .fetch_all(self.read_pool())
                    .await?
            }
            None => {
                let sql = format!(
                    "SELECT {EVENT_COLUMNS} FROM login_events ORDER BY at DESC, id DESC LIMIT $1"
                );
                sqlx::query(&sql)
                    .bind(limit)
                    .fetch_all(self.read_pool())
                    .await?
            }
        };
        found.iter().map(event_from_row).collect()
    }

    /// Sign-ins and failed attempts of a user and/or from a client address between two times
    /// (inclusive), oldest first.
    pub async fn login_events_between(
        &self,
        user_id: Option<i64>,
        address: Option<&str>,
        from: Timestamp,
        to: Timestamp,
        limit: i64,
    ) -> anyhow::Result<Vec<LoginEventRow>> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM login_events WHERE at >= $1 AND at <= $2
             AND ($3 IS NULL OR user_id = $3) AND ($4 IS NULL OR address = $4)
             ORDER BY at, id LIMIT $5"
        );
        let found = sqlx::query(&sql)
            .bind(from.micros())
            .bind(to.micros())
            .bind(user_id)
            .bind(address.map(str::to_owned))
            .bind(limit)
            .fetch_all(self.read_pool())
            .await?;
        found.iter().map(event_from_row).collect()
    }

    /// Whether the user signed in successfully before from this address with this browser.
    pub async fn signed_in_before_from(
        &self,
        user_id: i64,
        address: Option<&str>,
        user_agent: Option<&str>,
    ) -> anyhow::Result<bool> {
        let row = sqlx::query(
            "SELECT COUNT(*) FROM login_events WHERE user_id = $1 AND outcome = 'success'
             AND address IS NOT DISTINCT FROM $2 AND user_agent IS NOT DISTINCT FROM $3",
        )
        .bind(user_id)
        .bind(address.map(str::to_owned))
        .bind(user_agent.map(|ua| ua.chars().take(300).collect::<String>()))
        .fetch_one(self.read_pool())
        .await?;
        Ok(row.try_get::<i64, _>(0)? > 0)
    }

    /// Whether the user ever signed in successfully.
    pub async fn ever_signed_in(&self, user_id: i64) -> anyhow::Result<bool> {
        let row = sqlx::query(
            "SELECT COUNT(*) FROM login_events WHERE user_id = $1 AND outcome = 'success'",
        )
        .bind(user_id)
        .fetch_one(self.read_pool())
        .await?;
        Ok(row.try_get::<i64, _>(0)? > 0)
    }

    /// The user proved who they are again in this session (step-up).
    pub async fn session_verified(&self, session_id: i64, now: Timestamp) -> anyhow::Result<()> {
        sqlx::query("UPDATE sessions SET verified_at = $1, last_seen_at = $1 WHERE id = $2")
            .bind(now.micros())
            .bind(session_id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// When the user last proved who they are in this session.
    pub async fn session_verified_at(&self, session_id: i64) -> anyhow::Result<Option<Timestamp>> {
        let row = sqlx::query("SELECT verified_at, created_at FROM sessions WHERE id = $1")
            .bind(session_id)
            .fetch_optional(&self.write)
            .await?;
        row.map(|row| {
            Ok(Timestamp(
                row.try_get::<Option<i64>, _>(0)?
                    .unwrap_or(row.try_get::<i64, _>(1)?),
            ))
        })
        .transpose()
    }
}

impl WriteTx {
    /// Adds a second factor; a confirmed one moves the access mark (it may lift the enrolment
    /// gate).
    pub async fn add_second_factor(
        &mut self,
        factor: &NewSecondFactor<'_>,
        audit: AuditDraft,
    ) -> Result<i64, StoreError> {
        let now = self.now.micros();
        let row = sqlx::query(
            "INSERT INTO second_factors (user_id, kind, name, secret, credential_id, created_at, confirmed_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(factor.user_id)
        .bind(factor.kind.to_owned())
        .bind(factor.name.to_owned())
        .bind(factor.secret.to_owned())
        .bind(factor.credential_id.map(str::to_owned))
        .bind(now)
        .bind(factor.confirmed.then_some(now))
        .fetch_one(&mut *self.tx)
        .await?;
        let id = row.try_get::<i64, _>(0)?;
        if factor.confirmed {
            self.access_changed().await?;
        }
        let mut audit = audit;
        audit.detail["factor_id"] = id.into();
        self.append_audit(audit).await?;
        Ok(id)
    }

    /// Confirms a TOTP app once the user typed a code from it (`step` is that code's time
    /// step, so it cannot be used again to sign in).
    pub async fn confirm_second_factor(
        &mut self,
        user_id: i64,
        id: i64,
        step: i64,
        audit: AuditDraft,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE second_factors SET confirmed_at = $1, last_step = $2, last_used_at = $1
             WHERE id = $3 AND user_id = $4 AND confirmed_at IS NULL",
        )
        .bind(self.now.micros())
        .bind(step)
        .bind(id)
        .bind(user_id)
        .execute(&mut *self.tx)
        .await?
        .rows_affected()
            == 1;
        if done {
            // Enrolling again replaces the app enrolled before: one TOTP app per user.
            sqlx::query(
                "DELETE FROM second_factors WHERE user_id = $1 AND kind = 'totp' AND id <> $2",
            )
            .bind(user_id)
            .bind(id)
            .execute(&mut *self.tx)
            .await?;
            self.access_changed().await?;
            self.append_audit(audit).await?;
        }
        Ok(done)
    }

    /// Removes one second factor (`Some(id)`) or all of a user's, with their recovery codes
    /// when none is left. Returns how many factors went.
    pub async fn remove_second_factors(
        &mut self,
        user_id: i64,
        id: Option<i64>,
        audit: AuditDraft,
    ) -> Result<u64, StoreError> {
        let removed = match id {
            Some(id) => {
                sqlx::query("DELETE FROM second_factors WHERE user_id = $1 AND id = $2")
                    .bind(user_id)
                    .bind(id)
                    .execute(&mut *self.tx)
                    .await?
            }
            None => {
                sqlx::query("DELETE FROM second_factors WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&mut *self.tx)
                    .await?
            }
        }
        .rows_affected();
        let left = sqlx::query(
            "SELECT COUNT(*) FROM second_factors WHERE user_id = $1 AND confirmed_at IS NOT NULL",
        )
        .bind(user_id)
        .fetch_one(&mut *self.tx)
        .await?
        .try_get::<i64, _>(0)?;
        if left == 0 {
            sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *self.tx)
                .await?;
        }
        self.access_changed().await?;
        let mut audit = audit;
        audit.detail["factors_removed"] = removed.into();
        self.append_audit(audit).await?;
        Ok(removed)
    }

    /// Replaces a user's recovery codes (only their hashes are kept).
    pub async fn replace_recovery_codes(
        &mut self,
        user_id: i64,
        hashes: &[String],
        audit: AuditDraft,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *self.tx)
            .await?;
        for hash in hashes {
            sqlx::query(
                "INSERT INTO recovery_codes (user_id, code_hash, created_at) VALUES ($1, $2, $3)",
            )
            .bind(user_id)
            .bind(hash.clone())
            .bind(self.now.micros())
            .execute(&mut *self.tx)
            .await?;
        }
        self.append_audit(audit).await
    }

    /// Spends a recovery code; `false` when it is not one of the user's unused codes.
    pub async fn use_recovery_code(
        &mut self,
        user_id: i64,
        code_hash: &str,
    ) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "UPDATE recovery_codes SET used_at = $1 WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL",
        )
        .bind(self.now.micros())
        .bind(user_id)
        .bind(code_hash.to_owned())
        .execute(&mut *self.tx)
        .await?
        .rows_affected()
            == 1)
    }

    /// Accepts a TOTP code's time step once: `false` when this or a later step was used
    /// already (a code seen over someone's shoulder cannot be replayed).
    pub async fn use_totp_step(&mut self, factor_id: i64, step: i64) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "UPDATE second_factors SET last_step = $1, last_used_at = $2
             WHERE id = $3 AND (last_step IS NULL OR last_step < $1)",
        )
        .bind(step)
        .bind(self.now.micros())
        .bind(factor_id)
        .execute(&mut *self.tx)
        .await?
        .rows_affected()
            == 1)
    }

    /// A passkey was used: its counter and state move on.
    pub async fn passkey_used(&mut self, factor_id: i64, secret: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE second_factors SET secret = $1, last_used_at = $2 WHERE id = $3")
            .bind(secret.to_owned())
            .bind(self.now.micros())
            .bind(factor_id)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Sets which roles must use a second factor.
    pub async fn set_second_factor_roles(
        &mut self,
        roles: &BTreeSet<String>,
        audit: AuditDraft,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(roles)
            .map_err(|e| StoreError::Internal(anyhow::anyhow!("encoding roles: {e}")))?;
        self.set_meta(SECOND_FACTOR_ROLES, &json).await?;
        self.access_changed().await?;
        self.append_audit(audit).await
    }
}
