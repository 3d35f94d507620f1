//! Mass-action guards. Within a sliding window (10 minutes by default) a user may delete so many
//! records, read so many rows in bulk (exports, and lists read with an API token: paging through
//! every record by API is an export), change the owner of so many records, and revert so many.
//! The action that would cross a threshold is refused, the user's actions of that kind stay
//! paused until an administrator reviews and releases them, and every administrator is told.
//! Administrators are guarded too — a stolen administrator token is the worst case: their API
//! tokens are refused like anyone's, and in a browser they continue only after confirming it is
//! them (step-up).

use crate::{App, AppError, notices, step_up};
use holdfast_domain::access::authorize;
use holdfast_domain::{Action, Actor, ActorKind, Denial};
use holdfast_store::{AuditDraft, TripRow};
use serde_json::json;

/// What a guard counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Deletes,
    BulkReads,
    OwnerChanges,
    Reverts,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::Deletes,
        Kind::BulkReads,
        Kind::OwnerChanges,
        Kind::Reverts,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Kind::Deletes => "deletes",
            Kind::BulkReads => "bulk_reads",
            Kind::OwnerChanges => "owner_changes",
            Kind::Reverts => "reverts",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Kind::Deletes => "records deleted",
            Kind::BulkReads => "records exported or read in bulk",
            Kind::OwnerChanges => "owner changes",
            Kind::Reverts => "records reverted",
        }
    }
}

/// The thresholds, per window (`[guards]` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub window_minutes: i64,
    pub deletes: i64,
    pub bulk_reads: i64,
    pub owner_changes: i64,
    pub reverts: i64,
    /// Other limits for some roles (`[guards.roles.rep] deletes = 20`), by role key.
    pub roles: std::collections::BTreeMap<String, RoleLimits>,
}

/// A role's own limits; what it leaves out is the general limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoleLimits {
    pub deletes: Option<i64>,
    pub bulk_reads: Option<i64>,
    pub owner_changes: Option<i64>,
    pub reverts: Option<i64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            window_minutes: 10,
            deletes: 100,
            bulk_reads: 1_000,
            owner_changes: 200,
            reverts: 500,
            roles: std::collections::BTreeMap::new(),
        }
    }
}

impl Limits {
    /// The limit of `kind` for a user of `role` (a token limited to modules counts as its
    /// user's role).
    pub fn of(&self, kind: Kind, role: &str) -> i64 {
        let own = self.roles.get(role.trim_end_matches("+token"));
        let (general, special) = match kind {
            Kind::Deletes => (self.deletes, own.and_then(|r| r.deletes)),
            Kind::BulkReads => (self.bulk_reads, own.and_then(|r| r.bulk_reads)),
            Kind::OwnerChanges => (self.owner_changes, own.and_then(|r| r.owner_changes)),
            Kind::Reverts => (self.reverts, own.and_then(|r| r.reverts)),
        };
        special.unwrap_or(general)
    }

    /// Every limit, general and per role, is at least 1.
    pub fn all_positive(&self) -> bool {
        let general = [
            self.deletes,
            self.bulk_reads,
            self.owner_changes,
            self.reverts,
        ];
        general.iter().all(|n| *n >= 1)
            && self.roles.values().all(|r| {
                [r.deletes, r.bulk_reads, r.owner_changes, r.reverts]
                    .iter()
                    .flatten()
                    .all(|n| *n >= 1)
            })
    }
}

/// Counts `amount` of `kind` for the actor before the action happens, or refuses it: over the
/// threshold (the guard trips: recorded, audited, administrators told), or while an earlier
/// trip of this kind waits for review.
pub async fn take(
    app: &App,
    actor: &Actor,
    op_id: &str,
    kind: Kind,
    amount: i64,
) -> Result<(), AppError> {
    // The server's own work and its console (`holdfast revert --as`) are not guarded: they
    // are how an incident is recovered from.
    if amount <= 0 || matches!(actor.kind, ActorKind::System) {
        return Ok(());
    }
    let limits = &app.config.guards;
    let role = actor
        .access
        .user(actor.user_id)
        .map(|u| u.role.clone())
        .unwrap_or_default();
    let threshold = limits.of(kind, &role);
    let now = app.now();
    let window_start = now.plus_seconds(-limits.window_minutes * 60);
    let admins = actor.access.admin_names();
    let admin_session = actor.is_admin() && matches!(actor.kind, ActorKind::Session { .. });
    if let Some(trip) = app.db.open_guard_trip(actor.user_id, kind.key()).await? {
        if !admin_session {
            return Err(paused_with_window(
                kind,
                &trip,
                limits.window_minutes,
                admins,
            ));
        }
        // An administrator in a browser continues once they confirmed it is them.
        step_up::require(app, actor).await?;
    } else {
        let done = app
            .db
            .guard_sum(actor.user_id, kind.key(), window_start)
            .await?;
        if done + amount > threshold {
            let trip = trip(app, actor, op_id, kind, done + amount, threshold).await?;
            if !admin_session {
                return Err(paused_with_window(
                    kind,
                    &trip,
                    limits.window_minutes,
                    admins,
                ));
            }
            step_up::require(app, actor).await?;
        }
    }
    app.db
        .guard_count(actor.user_id, kind.key(), amount, now, window_start)
        .await?;
    Ok(())
}

fn paused_with_window(kind: Kind, trip: &TripRow, window: i64, admins: Vec<String>) -> AppError {
    let mut denial = Denial::simple(
        "guard_tripped",
        format!(
            "Paused: {} {} within {window} minutes crossed the limit of {} (at {}). Nothing more of this kind is done for this account until an administrator reviews it (Administration → Timeline)",
            trip.amount,
            kind.describe(),
            trip.threshold,
            trip.at.to_rfc3339()
        ),
    );
    denial.grantable_by = admins;
    AppError::Forbidden(denial)
}

async fn trip(
    app: &App,
    actor: &Actor,
    op_id: &str,
    kind: Kind,
    amount: i64,
    threshold: i64,
) -> Result<TripRow, AppError> {
    let config = app.access_config().await?;
    let admins = config.admin_ids();
    let detail = json!({
        "user_id": actor.user_id,
        "username": actor.username,
        "kind": kind.key(),
        "amount": amount,
        "threshold": threshold,
        "window_minutes": app.config.guards.window_minutes,
        "token_id": match actor.kind { ActorKind::ApiToken { token_id } => Some(token_id), _ => None },
        "address": actor.client,
    });
    let mut tx = app.db.begin_write(app.now()).await?;
    tx.trip_guard(
        actor.user_id,
        kind.key(),
        amount,
        threshold,
        AuditDraft::new(actor, op_id, "guard.tripped", detail.clone()),
    )
    .await?;
    for admin in admins {
        notices::notify(&mut tx, admin, "guard_tripped", detail.clone()).await?;
    }
    tx.commit().await?;
    tracing::warn!(user = %actor.username, kind = kind.key(), amount, threshold, "mass-action guard tripped");
    crate::alerts::raise(
        app,
        crate::alerts::Event::GuardTripped {
            username: actor.username.clone(),
            kind: kind.key().to_owned(),
            amount,
            threshold,
        },
    )
    .await;
    app.db
        .open_guard_trip(actor.user_id, kind.key())
        .await?
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("the guard trip just written is gone")))
}

/// Tripped guards, the open ones first (auditors and administrators).
pub async fn trips(app: &App, actor: &Actor) -> Result<Vec<TripRow>, AppError> {
    authorize(actor, Action::Audit)?;
    Ok(app.db.guard_trips(100).await?)
}

/// An administrator reviewed what tripped the guard and lets the user continue; audited.
pub async fn release(app: &App, actor: &Actor, op_id: &str, id: i64) -> Result<TripRow, AppError> {
    authorize(actor, Action::Administer)?;
    step_up::require(app, actor).await?;
    let mut tx = app.db.begin_write(app.now()).await?;
    let released = tx
        .release_guard(
            id,
            &actor.username,
            AuditDraft::new(actor, op_id, "guard.released", json!({"trip_id": id})),
        )
        .await?
        .ok_or_else(|| AppError::not_found(format!("tripped guard {id} waiting for review")))?;
    tx.commit().await?;
    Ok(released)
}
