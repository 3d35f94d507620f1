//! Incident response as a practised routine: who is responsible (a setting the incident page
//! shows), and `holdfast incident drill`, which stages a rogue administrator with a stolen API
//! token on a scratch copy of the data and times the three things that must work — the
//! mass-delete guard stopping them (detection), freezing their account (containment) and
//! reverting what they did (recovery) — then records the result, as backup drills are recorded.
//! The live data is only read (to make the copy); the drill's alerts go nowhere.

use crate::guards::Kind;
use crate::records::{self, Change};
use crate::{App, AppError, SystemClock};
use anyhow::Context as _;
use holdfast_domain::access::{ADMIN, authorize};
use holdfast_domain::{Action, Actor, ActorKind, Entity};
use holdfast_store::AuditDraft;
pub use holdfast_store::incidents::DrillRow;
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

const RESPONSIBLE: &str = "incident_responsible";

/// Who to call in an incident, as administrators wrote it (names, phone numbers).
pub async fn responsible(app: &App) -> Result<String, AppError> {
    Ok(app.db.meta(RESPONSIBLE).await?.unwrap_or_default())
}

/// Sets who is responsible (administrators); audited.
pub async fn set_responsible(
    app: &App,
    actor: &Actor,
    op_id: &str,
    text: &str,
) -> Result<(), AppError> {
    authorize(actor, Action::Administer)?;
    let text = text.trim();
    if text.chars().count() > 500 {
        return Err(AppError::invalid(
            "responsible",
            "too_long",
            "At most 500 characters: names and how to reach them",
        ));
    }
    let mut tx = app.db.begin_write(app.now()).await?;
    tx.set_meta(RESPONSIBLE, text).await?;
    tx.audit_event(AuditDraft::new(
        actor,
        op_id,
        "incident.responsible",
        json!({"responsible": text}),
    ))
    .await?;
    tx.commit().await?;
    Ok(())
}

const POLICY: &str = "security_policy";

/// The security policy users acknowledge at their next sign-in (optional; administrators write
/// it). Each change makes a new version, which everyone acknowledges again.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Policy {
    pub text: String,
    pub version: i64,
    pub set_by: String,
    pub set_at: holdfast_domain::Timestamp,
}

/// The policy in force, if administrators wrote one.
pub async fn policy(app: &App) -> Result<Option<Policy>, AppError> {
    Ok(app
        .db
        .meta(POLICY)
        .await?
        .and_then(|text| serde_json::from_str::<Policy>(&text).ok())
        .filter(|policy| !policy.text.trim().is_empty()))
}

/// Writes (or, with empty text, withdraws) the policy (administrators); audited.
pub async fn set_policy(
    app: &App,
    actor: &Actor,
    op_id: &str,
    text: &str,
) -> Result<Option<Policy>, AppError> {
    authorize(actor, Action::Administer)?;
    let text = text.trim();
    if text.chars().count() > 5000 {
        return Err(AppError::invalid(
            "policy",
            "too_long",
            "At most 5,000 characters: a policy people read in a minute",
        ));
    }
    let before = app
        .db
        .meta(POLICY)
        .await?
        .and_then(|t| serde_json::from_str::<Policy>(&t).ok());
    let policy = Policy {
        text: text.to_owned(),
        version: before.map_or(1, |p| p.version + 1),
        set_by: actor.username.clone(),
        set_at: app.now(),
    };
    let mut tx = app.db.begin_write(app.now()).await?;
    tx.set_meta(
        POLICY,
        &serde_json::to_string(&policy).map_err(anyhow::Error::from)?,
    )
    .await?;
    tx.audit_event(AuditDraft::new(
        actor,
        op_id,
        "security.policy",
        json!({"version": policy.version, "withdrawn": text.is_empty()}),
    ))
    .await?;
    tx.commit().await?;
    Ok((!text.is_empty()).then_some(policy))
}

/// The policy `user_id` still has to acknowledge, if any.
pub async fn unacknowledged(app: &App, user_id: i64) -> Result<Option<Policy>, AppError> {
    let Some(policy) = policy(app).await? else {
        return Ok(None);
    };
    Ok((!app.db.policy_acked(user_id, policy.version).await?).then_some(policy))
}

/// The acting user acknowledges `version` of the policy; audited.
pub async fn acknowledge(
    app: &App,
    actor: &Actor,
    op_id: &str,
    version: i64,
) -> Result<(), AppError> {
    let current = policy(app).await?;
    if current.as_ref().is_none_or(|p| p.version != version) {
        return Err(AppError::Conflict {
            code: "policy_changed",
            message: "The policy changed while you were reading it: read the new version".into(),
            current: None,
        });
    }
    if app.db.policy_acked(actor.user_id, version).await? {
        return Ok(());
    }
    let mut tx = app.db.begin_write(app.now()).await?;
    tx.ack_policy(
        actor.user_id,
        version,
        AuditDraft::new(
            actor,
            op_id,
            "security.policy_ack",
            json!({"version": version}),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Every active user and when they acknowledged the policy in force (administrators and
/// auditors); `None` for those who have not.
pub async fn acknowledgements(
    app: &App,
    actor: &Actor,
) -> Result<Vec<(crate::UserRow, Option<holdfast_domain::Timestamp>)>, AppError> {
    authorize(actor, Action::Audit)?;
    let Some(policy) = policy(app).await? else {
        return Ok(Vec::new());
    };
    let acks: std::collections::HashMap<i64, holdfast_domain::Timestamp> = app
        .db
        .policy_acks(policy.version)
        .await?
        .into_iter()
        .collect();
    Ok(app
        .db
        .users()
        .await?
        .into_iter()
        .filter(|u| u.active && !u.pending)
        .map(|u| {
            let at = acks.get(&u.id).copied();
            (u, at)
        })
        .collect())
}

/// The newest drills (administrators and auditors).
pub async fn drills(app: &App, actor: &Actor) -> Result<Vec<DrillRow>, AppError> {
    authorize(actor, Action::Audit)?;
    Ok(app.db.incident_drills(20).await?)
}

/// Runs a drill on a scratch copy (in `scratch_parent`, or the system's temporary folder) and
/// records its outcome in the live database and audit log.
pub async fn drill(app: &App, scratch_parent: Option<&Path>) -> anyhow::Result<DrillRow> {
    let at = app.now();
    let row = match on_a_copy(app, scratch_parent).await {
        Ok(row) => row,
        Err(error) => DrillRow {
            id: 0,
            at,
            ok: false,
            deleted: 0,
            detect_ms: None,
            contain_ms: None,
            recover_ms: None,
            restored: None,
            error: Some(format!("{error:#}")),
        },
    };
    app.db.record_incident_drill(&row).await?;
    let mut tx = app.db.begin_write(app.now()).await?;
    tx.audit_event(AuditDraft::new(
        &Actor::system(),
        &crate::random_hex(8)?,
        "incident.drill",
        serde_json::to_value(&row)?,
    ))
    .await?;
    tx.commit().await?;
    Ok(row)
}

async fn on_a_copy(app: &App, scratch_parent: Option<&Path>) -> anyhow::Result<DrillRow> {
    let (_folder, copy) = crate::backup::scratch_copy(&app.db, scratch_parent, app.now()).await?;
    let mut config = (*app.config).clone();
    config.alerts = crate::alerts::Config::default();
    config.audit_head_file = None;
    let scratch = App::new(copy, config, Arc::new(SystemClock));
    let result = stage(&scratch).await;
    scratch.db.close().await;
    result
}

fn describe(error: AppError) -> anyhow::Error {
    anyhow::anyhow!("{error}")
}

/// The drill itself, on the scratch copy.
async fn stage(app: &App) -> anyhow::Result<DrillRow> {
    let system = Actor::system();
    let password = format!("{}-drill", crate::random_hex(16)?);
    let make = |username: &'static str| {
        let password = password.clone();
        let system = system.clone();
        async move {
            crate::users::create_user_unchecked(
                app, &system, "drill", username, username, &password, ADMIN,
            )
            .await
            .map_err(describe)
        }
    };
    // The staged accounts have no second factor to enrol: on the copy, none is required.
    crate::two_factor::set_roles_as_system(app, &[])
        .await
        .map_err(describe)?;
    let rogue = make("drill-rogue").await?;
    let responder = make("drill-responder").await?;
    let responder = crate::auth::operator_actor(app, &responder)
        .await
        .map_err(describe)?;
    // Enough customers for the guard to have something to stop.
    let limit = app.config.guards.of(Kind::Deletes, ADMIN);
    let mut ids = Vec::new();
    let wanted = usize::try_from(limit + 1).unwrap_or(usize::MAX);
    while ids.len() < wanted {
        let batch = (wanted - ids.len()).min(records::MAX_BATCH);
        let changes = (0..batch)
            .map(|n| Change::Create {
                entity: Entity::Contact,
                input: json!({"name": format!("Drill customer {}", ids.len() + n + 1)}),
            })
            .collect();
        let made = records::apply_changes(app, &responder, "drill", changes)
            .await
            .map_err(describe)?;
        ids.extend(made.into_iter().map(|o| o.record.into_record().id));
    }
    let before = app.now();

    // A stolen administrator's token deletes customers one by one until the guard stops it.
    let token = crate::auth::actor_of(app, &rogue, ActorKind::ApiToken { token_id: 0 })
        .await
        .map_err(describe)?;
    let started = Instant::now();
    let mut deleted = 0;
    let mut detected = None;
    for id in &ids {
        let change = Change::Delete {
            entity: Entity::Contact,
            id: *id,
            expected_version: None,
            reason: Some("incident drill: the rogue".into()),
        };
        match records::apply_change(app, &token, "drill-rogue", change).await {
            Ok(_) => deleted += 1,
            Err(AppError::Forbidden(denial)) if denial.code == "guard_tripped" => {
                detected = Some(started.elapsed());
                break;
            }
            Err(error) => return Err(describe(error).context("the rogue's delete failed")),
        }
    }
    let detect = detected.with_context(|| {
        format!("the mass-delete guard did not stop {deleted} deletes (limit {limit})")
    })?;

    // The responder freezes the account, then undoes what it did.
    let started = Instant::now();
    crate::containment::freeze_user(app, &responder, "drill", rogue.id, "incident drill")
        .await
        .map_err(describe)?;
    let contain = started.elapsed();
    let frozen = app
        .db
        .user(rogue.id)
        .await?
        .is_some_and(|u| u.frozen.is_some());
    anyhow::ensure!(
        frozen,
        "the rogue's account is not frozen after freezing it"
    );
    let started = Instant::now();
    let request = crate::revert::Request {
        to: before,
        by: Some(rogue.id),
        token: None,
        conflicts: crate::revert::Choice::Keep,
        choices: Default::default(),
        note: Some("incident drill".into()),
    };
    let done = crate::revert::apply(app, &responder, "drill", &request)
        .await
        .map_err(describe)?;
    let recover = started.elapsed();
    let restored = i64::try_from(done.counts().restored).unwrap_or(i64::MAX);
    let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let ok = restored == deleted;
    Ok(DrillRow {
        id: 0,
        at: before,
        ok,
        deleted,
        detect_ms: Some(ms(detect)),
        contain_ms: Some(ms(contain)),
        recover_ms: Some(ms(recover)),
        restored: Some(restored),
        error: (!ok).then(|| format!("{deleted} records were deleted but {restored} came back")),
    })
}
