//! Reverting records to how they were at a time, for everyone's changes or one user's.
//!
//! [`preview`] reads the history of every record changed since the time (by the user, if one is
//! named) and lets `holdfast_domain::revert::plan` decide each record: fields put back, a record
//! restored from or moved to the recycle bin, conflicts where someone else changed the same thing
//! later, or the reason nothing will change. [`apply`] computes the same preview, takes the
//! administrator's choices for the conflicts, and carries it out through the one write path
//! (`records::apply_changes`), in batches of `records::MAX_BATCH`, each all or nothing. The
//! revert is a change like any other: its versions are by the administrator, so it can be
//! reverted in turn.

mod made;
pub use made::Made;

use crate::records::{self, Change, MAX_BATCH};
use crate::{App, AppError};
use holdfast_domain::revert::{self, PresenceChange, RecordPlan, Step, Unchanged, Whose, is_live};
use holdfast_domain::{Action, Actor, Entity, Timestamp, access::authorize};
use holdfast_store::RecordHistory;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Most records one revert looks at.
pub const MAX_RECORDS: i64 = 100_000;

/// What to do with a conflict: keep the later change (the default) or revert it anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Keep,
    Revert,
}

impl Choice {
    pub fn parse(text: &str) -> Option<Choice> {
        match text {
            "keep" => Some(Choice::Keep),
            "revert" => Some(Choice::Revert),
            _ => None,
        }
    }
}

/// What an administrator asked for.
#[derive(Debug, Clone)]
pub struct Request {
    pub to: Timestamp,
    /// Whose changes: one user's, or everyone's.
    pub by: Option<i64>,
    /// Only what was done through this API token (a stolen one, say): its record changes, and
    /// the API tokens and users it made, which are revoked and deactivated.
    pub token: Option<i64>,
    /// For every conflict not named in `choices`.
    pub conflicts: Choice,
    /// Per conflict: record and field (`record` for the record's presence).
    pub choices: BTreeMap<(Entity, i64, String), Choice>,
    /// Written into each version's reason after the standard text (who ran it from where).
    pub note: Option<String>,
}

/// One record of a revert, and what happens to it.
#[derive(Debug, Clone)]
pub struct Item {
    pub entity: Entity,
    pub id: i64,
    pub title: String,
    /// The record's version now: the revert refuses to write over a newer one.
    pub version: i64,
    pub live_now: bool,
    pub then_live: bool,
    /// For a record in the recycle bin: the record whose deletion took it there.
    pub root: Option<(Entity, i64)>,
    pub plan: RecordPlan,
    /// `None` when something will change.
    pub unchanged: Option<Unchanged>,
}

impl Item {
    /// `restore`, `delete`, `revert_fields` or `none`.
    pub fn action(&self) -> &'static str {
        match (self.unchanged, self.plan.presence) {
            (Some(_), _) => "none",
            (None, Some(PresenceChange::Restore)) => "restore",
            (None, Some(PresenceChange::Delete)) => "delete",
            (None, None) => "revert_fields",
        }
    }
}

/// What a revert will do (or did), record by record.
#[derive(Debug, Clone)]
pub struct Preview {
    pub to: Timestamp,
    pub by: Option<i64>,
    pub token: Option<i64>,
    pub items: Vec<Item>,
    /// What the user or token made or changed besides records in the time (API tokens, users,
    /// users' access, roles, access grants), still in force: undone too.
    pub made: Vec<Made>,
}

/// Figures of a [`Preview`], as the preview and the result both state them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub records: usize,
    pub changing: usize,
    pub fields: usize,
    pub restored: usize,
    pub deleted: usize,
    pub conflicts: usize,
    pub unchanged: usize,
}

impl Preview {
    pub fn counts(&self) -> Counts {
        let mut counts = Counts {
            records: self.items.len(),
            ..Counts::default()
        };
        for item in &self.items {
            counts.conflicts += item.plan.conflicts.len();
            if item.unchanged.is_some() {
                counts.unchanged += 1;
                continue;
            }
            counts.changing += 1;
            match item.plan.presence {
                Some(PresenceChange::Restore) => counts.restored += 1,
                Some(PresenceChange::Delete) => counts.deleted += 1,
                None => {}
            }
            if item.plan.presence != Some(PresenceChange::Delete) {
                counts.fields += item.plan.fields.len();
            }
        }
        counts
    }
}

/// Reverting many records at once is for administrators.
fn check(actor: &Actor) -> Result<(), AppError> {
    authorize(actor, Action::Administer)?;
    Ok(())
}

/// What [`apply`] would do with `request`, changing nothing.
pub async fn preview(app: &App, actor: &Actor, request: &Request) -> Result<Preview, AppError> {
    check(actor)?;
    let (whose, changed, ops) = match request.token {
        Some(token) => {
            let ops = app.db.ops_of_token(token, request.to).await?;
            let changed = app.db.changed_in_ops(request.to, &ops).await?;
            (Whose::Marked, changed, ops)
        }
        None => {
            let whose = request.by.map_or(Whose::Everyone, Whose::User);
            let changed = app
                .db
                .changed_since(request.to, request.by, MAX_RECORDS)
                .await?;
            (whose, changed, BTreeSet::new())
        }
    };
    let mut by_entity: BTreeMap<Entity, Vec<i64>> = BTreeMap::new();
    for (entity, id) in changed {
        by_entity.entry(entity).or_default().push(id);
    }
    let mut items = Vec::new();
    for entity in Entity::ALL {
        let Some(ids) = by_entity.get(&entity) else {
            continue;
        };
        for history in app.db.history_since(entity, ids, request.to).await? {
            if let Some(item) = plan_item(app, request, whose, &ops, &history).await? {
                items.push(item);
            }
        }
    }
    stays_with_root(&mut items);
    Ok(Preview {
        to: request.to,
        by: request.by,
        token: request.token,
        items,
        made: made::made_by(app, request).await?,
    })
}

/// One record's plan, from its history around the time; `None` if `whose` did not change it.
async fn plan_item(
    app: &App,
    request: &Request,
    whose: Whose,
    ops: &BTreeSet<String>,
    history: &RecordHistory,
) -> Result<Option<Item>, AppError> {
    let entity = history.entity;
    let Some(last) = history.after.last() else {
        return Ok(None);
    };
    let then = history.then.as_ref().map(|v| &v.snapshot);
    let steps: Vec<Step<'_>> = history
        .after
        .iter()
        .map(|v| Step {
            actor_id: v.actor_id,
            snapshot: &v.snapshot,
            marked: ops.contains(&v.op_id),
        })
        .collect();
    let Some(mut plan) = revert::plan(then, &steps, whose) else {
        return Ok(None);
    };
    let live_now = is_live(Some(&last.snapshot));
    let then_live = is_live(then);
    if plan.presence == Some(PresenceChange::Delete) {
        hold_if_others_hang_off(app, request, entity, history.record_id, &mut plan).await?;
    }
    resolve(
        request,
        entity,
        history.record_id,
        &mut plan,
        live_now,
        then_live,
    );
    let title = last
        .snapshot
        .get(entity.title_field())
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let root = last.snapshot.get("deleted_with").and_then(|with| {
        Some((
            Entity::from_name(with.get("entity")?.as_str()?)?,
            with.get("id")?.as_i64()?,
        ))
    });
    Ok(Some(Item {
        root,
        entity,
        id: history.record_id,
        title,
        version: last.version,
        live_now,
        then_live,
        unchanged: plan.unchanged(live_now, then_live),
        plan,
    }))
}

/// A record the revert would move to the recycle bin takes what hangs off it along: if any of
/// that is not itself going (made after the time by the user, and last changed by them), the
/// move becomes a conflict (kept unless chosen otherwise).
async fn hold_if_others_hang_off(
    app: &App,
    request: &Request,
    entity: Entity,
    id: i64,
    plan: &mut RecordPlan,
) -> Result<(), AppError> {
    let mut pending = vec![(entity, id)];
    while let Some((entity, id)) = pending.pop() {
        for dependent in app.db.live_dependents(entity, id).await? {
            let going = dependent.created_at > request.to
                && request.by.is_none_or(|user| {
                    dependent.created_by == user && dependent.updated_by == user
                });
            if !going {
                plan.hold_delete(dependent.updated_by);
                return Ok(());
            }
            pending.push((dependent.entity, dependent.id));
        }
    }
    Ok(())
}

/// Applies the administrator's choices to a record's conflicts.
fn resolve(
    request: &Request,
    entity: Entity,
    id: i64,
    plan: &mut RecordPlan,
    live_now: bool,
    then_live: bool,
) {
    let mut index = 0;
    while index < plan.conflicts.len() {
        let field = plan.conflicts[index].field.clone();
        let choice = request
            .choices
            .get(&(entity, id, field))
            .copied()
            .unwrap_or(request.conflicts);
        if choice == Choice::Revert {
            plan.resolve_by_reverting(index, live_now, then_live);
        } else {
            index += 1;
        }
    }
}

/// A record restored from the recycle bin comes back with the deletion it went in with. If that
/// deletion's root stays in the bin, the record stays too, and says why.
fn stays_with_root(items: &mut [Item]) {
    let restoring: BTreeSet<(Entity, i64)> = items
        .iter()
        .filter(|i| i.unchanged.is_none() && i.plan.presence == Some(PresenceChange::Restore))
        .map(|i| (i.entity, i.id))
        .collect();
    for item in items.iter_mut() {
        if item.unchanged.is_none()
            && item.plan.presence == Some(PresenceChange::Restore)
            && let Some(root) = item.root
            && root != (item.entity, item.id)
            && !restoring.contains(&root)
        {
            item.unchanged = Some(Unchanged::StaysWithRoot);
        }
    }
}

/// Carries out what [`preview`] says, with the administrator's choices, as new versions by
/// `actor`. Returns the preview it carried out; every item without a reason was changed.
pub async fn apply(
    app: &App,
    actor: &Actor,
    op_id: &str,
    request: &Request,
) -> Result<Preview, AppError> {
    let preview = preview(app, actor, request).await?;
    crate::step_up::require(app, actor).await?;
    let touched = preview
        .items
        .iter()
        .filter(|i| i.unchanged.is_none())
        .count();
    crate::guards::take(
        app,
        actor,
        op_id,
        crate::guards::Kind::Reverts,
        i64::try_from(touched).unwrap_or(i64::MAX),
    )
    .await?;
    let mut reason = match (request.token, request.by) {
        (Some(token), _) => format!(
            "reverted the changes made through API token {token} since {}",
            request.to.to_rfc3339()
        ),
        (None, Some(user)) => format!(
            "reverted the changes of user {user} since {}",
            request.to.to_rfc3339()
        ),
        (None, None) => format!("restored to how it was at {}", request.to.to_rfc3339()),
    };
    if let Some(note) = &request.note {
        reason = format!("{reason} ({note})");
    }
    let order = |entity: Entity| Entity::ALL.iter().position(|e| *e == entity);
    let mut restores = Vec::new();
    let mut fields = Vec::new();
    let mut deletes = Vec::new();
    let mut roots = BTreeSet::new();
    for item in preview.items.iter().filter(|i| i.unchanged.is_none()) {
        let mut version = item.version;
        match item.plan.presence {
            Some(PresenceChange::Delete) => {
                deletes.push((
                    std::cmp::Reverse(order(item.entity)),
                    item.id,
                    Change::Delete {
                        entity: item.entity,
                        id: item.id,
                        expected_version: Some(item.version),
                        reason: Some(reason.clone()),
                    },
                ));
                continue;
            }
            Some(PresenceChange::Restore) => {
                let root = item.root.unwrap_or((item.entity, item.id));
                if roots.insert(root) {
                    restores.push((
                        order(root.0),
                        root.1,
                        Change::Restore {
                            entity: root.0,
                            id: root.1,
                            reason: Some(reason.clone()),
                        },
                    ));
                }
                // Restoring writes one version of every record of the deletion.
                version += 1;
            }
            None => {}
        }
        if !item.plan.fields.is_empty() {
            fields.push((
                order(item.entity),
                item.id,
                Change::RevertFields {
                    entity: item.entity,
                    id: item.id,
                    expected_version: version,
                    values: item
                        .plan
                        .fields
                        .iter()
                        .map(|f| (f.field.clone(), f.to.clone()))
                        .collect(),
                    reason: reason.clone(),
                },
            ));
        }
    }
    // Parents come back before their dependents; dependents go to the bin before their parents,
    // so a company's deletion does not take along a contact that is queued too.
    restores.sort_by_key(|(o, id, _)| (*o, *id));
    fields.sort_by_key(|(o, id, _)| (*o, *id));
    deletes.sort_by_key(|(o, id, _)| (*o, *id));
    let changes: Vec<Change> = restores
        .into_iter()
        .map(|(_, _, c)| c)
        .chain(fields.into_iter().map(|(_, _, c)| c))
        .chain(deletes.into_iter().map(|(_, _, c)| c))
        .collect();
    let total = changes.len();
    let mut done = 0;
    for batch in changes.chunks(MAX_BATCH) {
        if let Err(error) = records::apply_changes(app, actor, op_id, batch.to_vec()).await {
            if done == 0 {
                return Err(error);
            }
            return Err(AppError::conflict(
                "revert_incomplete",
                format!(
                    "{done} of {total} changes of this revert were made; the rest stopped at: {error}. \
                     Preview the revert again: what is done is not repeated"
                ),
            ));
        }
        done += batch.len();
    }
    made::undo(app, actor, op_id, &preview.made, preview.to).await?;
    Ok(preview)
}
