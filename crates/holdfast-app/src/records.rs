//! Customer records: the one write path, and the reads beside it.
//!
//! [`apply_change`] is the only function that changes customer records. In one write
//! transaction it checks the actor's permission, validates the change, and hands each
//! resulting record state to `WriteTx::commit_record_change`, which stores the row, its
//! version and its audit entry together. A delete that takes related records along, or a
//! restore that brings them back, is one transaction too: all of it lands, or none of it does.

use crate::visible::VisibleRecord;
use crate::{App, AppError};
use holdfast_domain::access::{FieldContext, FieldEffect, FieldRule, authorize, authorize_record};
use holdfast_domain::change::validate_record;
use holdfast_domain::entity::FieldKind;
use holdfast_domain::record::diff;
use holdfast_domain::search::parse_query;
use holdfast_domain::{
    Action, Actor, Deletion, Entity, FieldChange, FieldErrors, Patch, PatchMode, Record, RecordRef,
    Timestamp,
};
use holdfast_store::{
    BinEntry, ListQuery, Reach, RecordWrite, Sort, SortValue, VersionRow, WriteTx,
};
use serde_json::Value;
use std::collections::BTreeSet;

/// A change to customer records, as a client asked for it.
#[derive(Debug, Clone)]
pub enum Change {
    Create {
        entity: Entity,
        input: Value,
    },
    Update {
        entity: Entity,
        id: i64,
        input: Value,
    },
    /// Moves the record, and what hangs off it, to the recycle bin.
    Delete {
        entity: Entity,
        id: i64,
        expected_version: Option<i64>,
        reason: Option<String>,
    },
    /// Brings a deletion back from the recycle bin: the record and everything deleted with it.
    Restore {
        entity: Entity,
        id: i64,
        reason: Option<String>,
    },
    /// Makes an earlier version the current one, as a new version.
    RestoreVersion {
        entity: Entity,
        id: i64,
        version: i64,
        expected_version: i64,
        reason: Option<String>,
    },
    /// Sets a record to the state `snapshot` describes (`Record::to_json`: a backup's copy, or
    /// its version at some earlier time), as a new version: out of the recycle bin if it is
    /// there, and back under its old id if it was purged. `action` is one of
    /// [`REVERT_ACTIONS`].
    Revert {
        entity: Entity,
        id: i64,
        snapshot: Value,
        action: &'static str,
        reason: String,
    },
    /// Sets some fields back (`owner_id`, `tags`, a field name or `custom.KEY`) and leaves the
    /// others as they are: how a revert undoes one user's changes without touching anyone
    /// else's. Refused (409) if the record moved past `expected_version` meanwhile.
    RevertFields {
        entity: Entity,
        id: i64,
        expected_version: i64,
        values: Vec<(String, Value)>,
        reason: String,
    },
}

/// How a [`Change::Revert`] is recorded in the record's history.
pub const REVERT_ACTIONS: &[&str] = &["restore_backup", "restore_to_time"];

/// What a change did: the record it was about, and every other record it moved along.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub record: VisibleRecord,
    pub related: Vec<VisibleRecord>,
}

/// What one change did inside the transaction, before it is shown to anyone.
struct Done {
    record: Record,
    related: Vec<Record>,
}

/// The one write path for customer records. See the module documentation.
pub async fn apply_change(
    app: &App,
    actor: &Actor,
    op_id: &str,
    change: Change,
) -> Result<Outcome, AppError> {
    let mut outcomes = apply_changes(app, actor, op_id, vec![change]).await?;
    outcomes
        .pop()
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("a change without an outcome")))
}

/// Most changes one call to [`apply_changes`] takes: an import sends its rows in batches of
/// this size, so one transaction never holds the write lock for long.
pub const MAX_BATCH: usize = 1000;

/// Several changes in one transaction: all of them, each with its own version and audit entry,
/// or none (the first refused change refuses the batch, naming its position in `batch.N`
/// field errors). Imports use it; it is the same path as [`apply_change`].
pub async fn apply_changes(
    app: &App,
    actor: &Actor,
    op_id: &str,
    changes: Vec<Change>,
) -> Result<Vec<Outcome>, AppError> {
    if changes.len() > MAX_BATCH {
        return Err(AppError::invalid(
            "batch",
            "too_many",
            format!("At most {MAX_BATCH} changes at once"),
        ));
    }
    for change in &changes {
        let action = match change {
            Change::Create { entity, .. } => Action::Create(*entity),
            Change::Update { entity, .. } | Change::RestoreVersion { entity, .. } => {
                Action::Update(*entity)
            }
            Change::Revert { entity, .. } | Change::RevertFields { entity, .. } => {
                Action::Restore(*entity)
            }
            Change::Delete { entity, .. } => Action::Delete(*entity),
            Change::Restore { entity, .. } => Action::Restore(*entity),
        };
        authorize(actor, action)?;
    }
    let deletes = changes
        .iter()
        .filter(|c| matches!(c, Change::Delete { .. }))
        .count();
    let owner_changes = changes
        .iter()
        .filter(|c| matches!(c, Change::Update { input, .. } if input.get("owner_id").is_some()))
        .count();
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    crate::guards::take(
        app,
        actor,
        op_id,
        crate::guards::Kind::Deletes,
        count(deletes),
    )
    .await?;
    crate::guards::take(
        app,
        actor,
        op_id,
        crate::guards::Kind::OwnerChanges,
        count(owner_changes),
    )
    .await?;
    // Settings that validation needs are read before the write lock is taken.
    let custom_defs = app.db.custom_fields().await?;
    let pipelines = app.db.pipelines().await?;
    let mut tx = app.db.begin_write(app.now()).await?;
    let ctx = WriteContext {
        actor,
        op_id,
        pipelines: &pipelines,
    };
    let batch = changes.len() > 1;
    let mut outcomes = Vec::with_capacity(changes.len());
    for (index, change) in changes.into_iter().enumerate() {
        match ctx.apply(app, &mut tx, &custom_defs, change).await {
            Ok(outcome) => outcomes.push(outcome),
            Err(AppError::Invalid(errors)) if batch => {
                let errors = errors
                    .0
                    .into_iter()
                    .map(|mut e| {
                        e.field = format!("batch.{index}.{}", e.field);
                        e
                    })
                    .collect();
                return Err(AppError::Invalid(holdfast_domain::FieldErrors(errors)));
            }
            Err(error) => return Err(error),
        }
    }
    tx.commit().await?;
    Ok(outcomes
        .into_iter()
        .map(|done| Outcome {
            record: VisibleRecord::of(actor, done.record),
            related: done
                .related
                .into_iter()
                .map(|r| VisibleRecord::of(actor, r))
                .collect(),
        })
        .collect())
}

impl WriteContext<'_> {
    /// One change inside an open write transaction.
    async fn apply(
        &self,
        app: &App,
        tx: &mut WriteTx,
        custom_defs: &[holdfast_domain::CustomFieldDef],
        change: Change,
    ) -> Result<Done, AppError> {
        let actor = self.actor;
        let outcome = match change {
            Change::Create { entity, input } => {
                let patch = Patch::parse(entity, &input, PatchMode::Create, custom_defs)?;
                let mut record = patch.apply(entity, None, actor.user_id, tx.now());
                check_fields(actor, None, &record)?;
                // A new record must be one its creator reaches (their own, or their team's).
                check_record(actor, Action::Create(entity), &record)?;
                self.finish_and_check(tx, &mut record, None).await?;
                let reason = patch.reason.as_deref();
                let record = self.commit(tx, None, record, "create", reason).await?;
                Done {
                    record,
                    related: Vec::new(),
                }
            }
            Change::Update { entity, id, input } => {
                let patch = Patch::parse(entity, &input, PatchMode::Update, custom_defs)?;
                let before = live_record(tx, entity, id, app).await?;
                check_record(actor, Action::Update(entity), &before)?;
                check_version(actor, &before, patch.expected_version)?;
                let mut record = patch.apply(entity, Some(&before), actor.user_id, tx.now());
                check_fields(actor, Some(&before), &record)?;
                if record.owner_id != before.owner_id {
                    // Handing a record over: the new owner must be within the actor's reach.
                    check_record(actor, Action::Update(entity), &record)?;
                }
                self.finish_and_check(tx, &mut record, Some(&before))
                    .await?;
                let reason = patch.reason.as_deref();
                let record = self
                    .commit(tx, Some(&before), record, "update", reason)
                    .await?;
                Done {
                    record,
                    related: Vec::new(),
                }
            }
            Change::Delete {
                entity,
                id,
                expected_version,
                reason,
            } => {
                let before = live_record(tx, entity, id, app).await?;
                check_record(actor, Action::Delete(entity), &before)?;
                if expected_version.is_some() {
                    check_version(actor, &before, expected_version)?;
                }
                self.delete(tx, before, reason.as_deref()).await?
            }
            Change::Restore { entity, id, reason } => {
                self.restore(tx, entity, id, reason.as_deref()).await?
            }
            Change::RestoreVersion {
                entity,
                id,
                version,
                expected_version,
                reason,
            } => {
                let before = live_record(tx, entity, id, app).await?;
                check_record(actor, Action::Update(entity), &before)?;
                check_version(actor, &before, Some(expected_version))?;
                let old = app.db.version(entity, id, version).await?.ok_or_else(|| {
                    AppError::not_found(format!("version {version} of {entity} {id}"))
                })?;
                let patch = Patch::from_snapshot(entity, &old.snapshot, &before);
                let mut record = patch.apply(entity, Some(&before), actor.user_id, tx.now());
                check_fields(actor, Some(&before), &record)?;
                if record.owner_id != before.owner_id {
                    check_record(actor, Action::Update(entity), &record)?;
                }
                self.finish_and_check(tx, &mut record, Some(&before))
                    .await?;
                let default_reason = format!("restored version {version}");
                let reason = reason.as_deref().unwrap_or(&default_reason);
                let record = self
                    .commit(tx, Some(&before), record, "restore_version", Some(reason))
                    .await?;
                Done {
                    record,
                    related: Vec::new(),
                }
            }
            Change::RevertFields {
                entity,
                id,
                expected_version,
                values,
                reason,
            } => {
                let before = live_record(tx, entity, id, app).await?;
                check_record(actor, Action::Restore(entity), &before)?;
                check_version(actor, &before, Some(expected_version))?;
                let mut snapshot = before.to_json();
                for (field, value) in values {
                    match field.strip_prefix("custom.") {
                        Some(key) => {
                            snapshot["custom"][key] = value;
                        }
                        None => snapshot[field.as_str()] = value,
                    }
                }
                let patch = Patch::from_snapshot(entity, &snapshot, &before);
                let mut record = patch.apply(entity, Some(&before), actor.user_id, tx.now());
                check_fields(actor, Some(&before), &record)?;
                self.finish_and_check(tx, &mut record, Some(&before))
                    .await?;
                let record = self
                    .commit(tx, Some(&before), record, "revert", Some(&reason))
                    .await?;
                Done {
                    record,
                    related: Vec::new(),
                }
            }
            Change::Revert {
                entity,
                id,
                snapshot,
                action,
                reason,
            } => {
                if !REVERT_ACTIONS.contains(&action) {
                    return Err(anyhow::anyhow!("unknown revert action {action}").into());
                }
                let before = tx.record(entity, id).await?;
                match &before {
                    Some(before) => check_record(actor, Action::Restore(entity), before)?,
                    None => check_snapshot(actor, Action::Restore(entity), entity, id, &snapshot)?,
                }
                let mut record = match &before {
                    Some(before) => {
                        let patch = Patch::from_snapshot(entity, &snapshot, before);
                        patch.apply(entity, Some(before), actor.user_id, tx.now())
                    }
                    None => {
                        // Purged since: the record comes back under its old id, its version
                        // numbers continuing from the snapshot's.
                        let blank = Patch::default().apply(entity, None, actor.user_id, tx.now());
                        let patch = Patch::from_snapshot(entity, &snapshot, &blank);
                        let mut record = patch.apply(entity, None, actor.user_id, tx.now());
                        record.id = id;
                        record.version = snapshot["version"].as_i64().unwrap_or(0) + 1;
                        record
                    }
                };
                record.deleted = None;
                check_fields(actor, before.as_ref(), &record)?;
                self.finish_and_check(tx, &mut record, before.as_ref().filter(|b| !b.is_deleted()))
                    .await?;
                let record = self
                    .commit(tx, before.as_ref(), record, action, Some(&reason))
                    .await?;
                Done {
                    record,
                    related: Vec::new(),
                }
            }
        };
        Ok(outcome)
    }
}

struct WriteContext<'a> {
    actor: &'a Actor,
    op_id: &'a str,
    pipelines: &'a [(String, String, Vec<String>)],
}

impl WriteContext<'_> {
    async fn commit(
        &self,
        tx: &mut WriteTx,
        before: Option<&Record>,
        after: Record,
        action: &'static str,
        reason: Option<&str>,
    ) -> Result<Record, AppError> {
        let write = RecordWrite {
            before,
            after,
            action,
            actor: self.actor,
            op_id: self.op_id,
            reason,
        };
        Ok(tx.commit_record_change(write).await?)
    }

    /// Fills what depends on other settings (a deal's first stage), then checks the record as a
    /// whole and every reference that changed: linked records must be live, owners active users.
    async fn finish_and_check(
        &self,
        tx: &mut WriteTx,
        record: &mut Record,
        before: Option<&Record>,
    ) -> Result<(), AppError> {
        let mut errors = FieldErrors::default();
        if record.entity == Entity::Deal {
            let pipeline_key = record.field_str("pipeline").unwrap_or_default().to_owned();
            match self
                .pipelines
                .iter()
                .find(|(key, _, _)| *key == pipeline_key)
            {
                None => errors.push(
                    "pipeline",
                    "not_found",
                    format!(
                        "No pipeline '{pipeline_key}'. Pipelines: {}",
                        self.pipelines
                            .iter()
                            .map(|(k, _, _)| k.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
                Some((_, _, stages)) => {
                    let stage = record.field_str("stage").map(str::to_owned);
                    match stage {
                        None => {
                            if let Some(first) = stages.first() {
                                record
                                    .fields
                                    .insert("stage".into(), Value::String(first.clone()));
                            }
                        }
                        Some(stage) if !stages.contains(&stage) => errors.push(
                            "stage",
                            "invalid_choice",
                            format!(
                                "Pipeline '{pipeline_key}' has the stages: {}",
                                stages.join(", ")
                            ),
                        ),
                        Some(_) => {}
                    }
                }
            }
        }
        if let Err(found) = validate_record(record) {
            errors.0.extend(found.0);
        }
        for def in record.entity.fields() {
            let FieldKind::Ref(target) = def.kind else {
                continue;
            };
            let Some(id) = record.field_i64(def.name) else {
                continue;
            };
            if before.is_some_and(|b| b.field_i64(def.name) == Some(id)) {
                continue;
            }
            if !tx.is_live(target, id).await? {
                errors.push(
                    def.name,
                    "not_found",
                    format!(
                        "There is no {} with id {id}, or it is in the recycle bin",
                        target.name()
                    ),
                );
            }
        }
        if before.is_none_or(|b| b.owner_id != record.owner_id)
            && !tx.is_active_user(record.owner_id).await?
        {
            errors.push(
                "owner_id",
                "not_found",
                format!("There is no active user with id {}", record.owner_id),
            );
        }
        errors.into_result()?;
        Ok(())
    }

    /// Moves `root` and every live record hanging off it to the recycle bin as one deletion.
    async fn delete(
        &self,
        tx: &mut WriteTx,
        root: Record,
        reason: Option<&str>,
    ) -> Result<Done, AppError> {
        let deletion = Deletion {
            at: tx.now(),
            by: self.actor.user_id,
            root_entity: root.entity,
            root_id: root.id,
        };
        let mut seen = BTreeSet::from([(root.entity, root.id)]);
        let mut pending = vec![root.clone()];
        let mut batch = Vec::new();
        while let Some(record) = pending.pop() {
            for (dependent, field) in record.entity.dependents() {
                for found in tx
                    .records_referencing(*dependent, field, record.id, false)
                    .await?
                {
                    if seen.insert((found.entity, found.id)) {
                        pending.push(found.clone());
                        batch.push(found);
                    }
                }
            }
        }
        // Records of others that would go along must be within the actor's reach too: otherwise
        // they would vanish from their owners' lists into a deletion those owners cannot see.
        let outside: Vec<String> = batch
            .iter()
            .filter(|r| check_record(self.actor, Action::Delete(r.entity), r).is_err())
            .map(|r| format!("{} {} ({})", r.entity, r.id, r.title()))
            .collect();
        if !outside.is_empty() {
            return Err(AppError::conflict(
                "dependents_out_of_scope",
                format!(
                    "{} {} has records you do not reach that would be deleted with it: {}. Their owners or an administrator can delete it",
                    root.entity,
                    root.id,
                    outside.join(", ")
                ),
            ));
        }
        let root_reason = reason.map(str::to_owned);
        let related_reason = format!("deleted together with {} {}", root.entity, root.id);
        let mut related = Vec::with_capacity(batch.len());
        for before in batch {
            let mut after = before.next_version(self.actor.user_id, tx.now());
            after.deleted = Some(deletion);
            related.push(
                self.commit(tx, Some(&before), after, "delete", Some(&related_reason))
                    .await?,
            );
        }
        let mut after = root.next_version(self.actor.user_id, tx.now());
        after.deleted = Some(deletion);
        let record = self
            .commit(tx, Some(&root), after, "delete", root_reason.as_deref())
            .await?;
        Ok(Done { record, related })
    }

    /// Brings back everything one deletion moved to the recycle bin, with the same ids.
    async fn restore(
        &self,
        tx: &mut WriteTx,
        entity: Entity,
        id: i64,
        reason: Option<&str>,
    ) -> Result<Done, AppError> {
        let record = tx
            .record(entity, id)
            .await?
            .ok_or_else(|| AppError::not_found(format!("{entity} {id}")))?;
        check_record(self.actor, Action::Restore(entity), &record)?;
        let Some(deletion) = record.deleted else {
            return Err(AppError::conflict(
                "not_deleted",
                format!("{entity} {id} is not in the recycle bin"),
            ));
        };
        if (deletion.root_entity, deletion.root_id) != (entity, id) {
            return Err(AppError::conflict(
                "restore_with_root",
                format!(
                    "{entity} {id} was deleted together with {} {}; restore that one and this comes back with it",
                    deletion.root_entity, deletion.root_id
                ),
            ));
        }
        let mut restored = None;
        let mut related = Vec::new();
        for before in tx.records_in_batch(entity, id).await? {
            let mut after = before.next_version(self.actor.user_id, tx.now());
            after.deleted = None;
            let is_root = (before.entity, before.id) == (entity, id);
            let saved = self
                .commit(tx, Some(&before), after, "restore", reason)
                .await?;
            if is_root {
                restored = Some(saved)
            } else {
                related.push(saved)
            }
        }
        let record = restored
            .ok_or_else(|| anyhow::anyhow!("{entity} {id} missing from its own deletion batch"))?;
        Ok(Done { record, related })
    }
}

async fn live_record(
    tx: &mut WriteTx,
    entity: Entity,
    id: i64,
    app: &App,
) -> Result<Record, AppError> {
    let record = tx
        .record(entity, id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("{entity} {id}")))?;
    if let Some(deletion) = record.deleted {
        return Err(in_bin(app, entity, id, deletion));
    }
    Ok(record)
}

fn in_bin(app: &App, entity: Entity, id: i64, deletion: Deletion) -> AppError {
    AppError::InRecycleBin {
        entity,
        id,
        deleted_at: deletion.at,
        restorable_until: deletion.at.plus_days(app.config.recycle_bin_days),
    }
}

fn check_version(actor: &Actor, record: &Record, expected: Option<i64>) -> Result<(), AppError> {
    match expected {
        Some(version) if version == record.version => Ok(()),
        _ => Err(AppError::Conflict {
            code: "version_conflict",
            message: format!(
                "This {} was changed by someone else after you loaded it: you based your change on version {}, it is now at version {}. \
                 Compare with the current version below, then send your change again with expected_version {}",
                record.entity,
                expected.unwrap_or(0),
                record.version,
                record.version
            ),
            current: Some(VisibleRecord::of(actor, record.clone()).to_json()),
        }),
    }
}

/// One record, if the actor may read it. Records in the recycle bin are reported as such
/// (with when and until when they can be restored) unless `include_deleted` asks for them.
pub async fn get(
    app: &App,
    actor: &Actor,
    entity: Entity,
    id: i64,
    include_deleted: bool,
) -> Result<VisibleRecord, AppError> {
    authorize(actor, Action::Read(entity))?;
    let record = app
        .db
        .record(entity, id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("{entity} {id}")))?;
    check_record(actor, Action::Read(entity), &record)?;
    match record.deleted {
        Some(deletion) if !include_deleted => Err(in_bin(app, entity, id, deletion)),
        _ => Ok(VisibleRecord::of(actor, record)),
    }
}

/// A page of a list and the cursor of the next page, if there is one.
#[derive(Debug, Clone)]
pub struct Page {
    pub items: Vec<VisibleRecord>,
    pub next_cursor: Option<String>,
}

pub const DEFAULT_PAGE_SIZE: i64 = 50;
pub const MAX_PAGE_SIZE: i64 = 200;

/// Lists live records. `params` are the query-string pairs as the client sent them; every key
/// must be known, so a typo in a filter is an error rather than a silently unfiltered list.
/// A list page read through the API: with an API token it counts towards the bulk-read guard
/// (paging through every record by API is an export; people browsing pages are not counted).
pub async fn list_in_bulk(
    app: &App,
    actor: &Actor,
    op_id: &str,
    entity: Entity,
    params: &[(String, String)],
) -> Result<Page, AppError> {
    let page = list(app, actor, entity, params).await?;
    if matches!(actor.kind, holdfast_domain::ActorKind::ApiToken { .. }) {
        let amount = i64::try_from(page.items.len()).unwrap_or(i64::MAX);
        crate::guards::take(app, actor, op_id, crate::guards::Kind::BulkReads, amount).await?;
    }
    Ok(page)
}

pub async fn list(
    app: &App,
    actor: &Actor,
    entity: Entity,
    params: &[(String, String)],
) -> Result<Page, AppError> {
    authorize(actor, Action::Read(entity))?;
    let mut query = parse_list_query(entity, params)?;
    query.reach = reach(actor, entity);
    let mut fetch = query.clone();
    fetch.limit = query.limit + 1;
    let mut items = app.db.list_records(entity, &fetch).await?;
    let next_cursor = if items.len() as i64 > query.limit {
        items.truncate(usize::try_from(query.limit).unwrap_or(0));
        items
            .last()
            .map(|last| encode_cursor(&query.sort, &query.sort.value_of(last), last.id))
    } else {
        None
    };
    if let Some(terms) = &query.search {
        // Search terms do not say which field they came from: a match found only through a
        // field the actor's role hides would tell what that field holds. Such rows are left
        // out (the cursor still continues after the last row read).
        let hides = entity.fields().iter().any(|d| {
            matches!(
                actor.field_rule(entity, d.name),
                Some(FieldRule::Hidden | FieldRule::HiddenOutsideTeam)
            )
        });
        if hides {
            let matches = |record: &Record| {
                let found = holdfast_domain::search::terms_for(record);
                terms.iter().all(|term| term.matches_any(&found))
            };
            items.retain(|record| {
                let mut visible = record.clone();
                redact(actor, &mut visible);
                // Found through its visible fields, or not through its own fields at all (a
                // contact found through its company's name).
                matches(&visible) || !matches(record)
            });
        }
    }
    let items = items
        .into_iter()
        .map(|item| VisibleRecord::of(actor, item))
        .collect();
    Ok(Page { items, next_cursor })
}

/// Query parameters every list accepts, before the entity's own filters.
pub const COMMON_LIST_PARAMS: &[&str] = &[
    "limit",
    "cursor",
    "sort",
    "q",
    "owner_id",
    "tag",
    "updated_since",
];

/// Filters an entity's list accepts besides [`COMMON_LIST_PARAMS`]: reference and choice fields.
pub fn list_filters(entity: Entity) -> Vec<&'static str> {
    entity
        .fields()
        .iter()
        .filter(|def| {
            matches!(def.kind, FieldKind::Ref(_) | FieldKind::Choice(_))
                || matches!(def.name, "pipeline" | "stage")
        })
        .map(|def| def.name)
        .collect()
}

fn parse_list_query(entity: Entity, params: &[(String, String)]) -> Result<ListQuery, AppError> {
    let mut errors = FieldErrors::default();
    let mut query = ListQuery {
        int_filters: Vec::new(),
        text_filters: Vec::new(),
        tag: None,
        updated_since: None,
        search: None,
        sort: Sort {
            column: "updated_at",
            descending: true,
        },
        after: None,
        limit: DEFAULT_PAGE_SIZE,
        reach: None,
    };
    let filters = list_filters(entity);
    let mut cursor = None;
    let mut seen = BTreeSet::new();
    for (key, value) in params {
        if !seen.insert(key.as_str()) {
            errors.push(key.as_str(), "repeated", "Give this parameter once");
            continue;
        }
        match key.as_str() {
            "limit" => match value.parse::<i64>() {
                Ok(limit) if (1..=MAX_PAGE_SIZE).contains(&limit) => query.limit = limit,
                _ => errors.push(
                    "limit",
                    "out_of_range",
                    format!("Must be a whole number from 1 to {MAX_PAGE_SIZE}"),
                ),
            },
            "cursor" => cursor = Some(value.clone()),
            "sort" => {
                let (descending, column) = match value.strip_prefix('-') {
                    Some(column) => (true, column),
                    None => (false, value.as_str()),
                };
                let allowed: Vec<&'static str> = ["updated_at", "created_at"]
                    .into_iter()
                    .chain(entity.sortable().iter().copied())
                    .collect();
                match allowed.iter().find(|c| **c == column) {
                    Some(column) => query.sort = Sort { column, descending },
                    None => errors.push(
                        "sort",
                        "invalid_choice",
                        format!(
                            "Sort by one of {} (prefix - for descending)",
                            allowed.join(", ")
                        ),
                    ),
                }
            }
            "q" => {
                if !value.trim().is_empty() {
                    match parse_query(value) {
                        Some(terms) => query.search = Some(terms),
                        None => errors.push(
                            "q",
                            "invalid_search",
                            "Search for words, Chinese characters or at least 4 digits of a phone number (at most 16 terms)",
                        ),
                    }
                }
            }
            "owner_id" => match value.parse::<i64>() {
                Ok(id) if id > 0 => query.int_filters.push(("owner_id", id)),
                _ => errors.push("owner_id", "invalid_id", "Must be a user id"),
            },
            "tag" => query.tag = Some(value.trim().to_owned()),
            "updated_since" => match Timestamp::parse_rfc3339(value) {
                Some(since) => query.updated_since = Some(since),
                None => errors.push(
                    "updated_since",
                    "invalid_time",
                    "Must be a time such as 2026-11-01T00:00:00Z",
                ),
            },
            other => match filters
                .iter()
                .find(|f| **f == other)
                .and_then(|name| entity.field(name))
            {
                Some(def) if matches!(def.kind, FieldKind::Ref(_)) => match value.parse::<i64>() {
                    Ok(id) if id > 0 => query.int_filters.push((def.name, id)),
                    _ => errors.push(other, "invalid_id", "Must be a record id"),
                },
                Some(def) => query.text_filters.push((def.name, value.clone())),
                None => errors.push(
                    other,
                    "unknown_parameter",
                    format!(
                        "Lists of {} accept: {}, {}",
                        entity.plural(),
                        COMMON_LIST_PARAMS.join(", "),
                        filters.join(", ")
                    ),
                ),
            },
        }
    }
    if let Some(cursor) = cursor {
        match decode_cursor(&query.sort, &cursor) {
            Some(after) => query.after = Some(after),
            None => errors.push(
                "cursor",
                "invalid_cursor",
                "Not a cursor from this list with this sort order; start again without it",
            ),
        }
    }
    errors.into_result()?;
    Ok(query)
}

/// A cursor that continues a list sorted by name after (`name`, `id`): lets the benchmark jump
/// deep into a long list the way a user paging far would arrive there.
pub fn cursor_after_name(name: &str, id: i64) -> String {
    let sort = Sort {
        column: "name",
        descending: false,
    };
    encode_cursor(&sort, &SortValue::Text(name.to_owned()), id)
}

/// Cursors are opaque to clients: hex-encoded JSON of the sort, the last value and the last id.
fn encode_cursor(sort: &Sort, value: &SortValue, id: i64) -> String {
    let value = match value {
        SortValue::Int(number) => Value::from(*number),
        SortValue::Text(text) => Value::from(text.clone()),
    };
    let json = serde_json::json!([sort.column, sort.descending, value, id]).to_string();
    json.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_cursor(sort: &Sort, cursor: &str) -> Option<(SortValue, i64)> {
    if !cursor.len().is_multiple_of(2) || cursor.len() > 2000 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..cursor.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(cursor.get(i..i + 2)?, 16).ok())
        .collect();
    let json: Value = serde_json::from_slice(&bytes?).ok()?;
    let parts = json.as_array()?;
    if parts.len() != 4
        || parts[0].as_str()? != sort.column
        || parts[1].as_bool()? != sort.descending
    {
        return None;
    }
    let value = if sort.is_integer() {
        SortValue::Int(parts[2].as_i64()?)
    } else {
        SortValue::Text(parts[2].as_str()?.to_owned())
    };
    Some((value, parts[3].as_i64()?))
}

/// Every version of a record, oldest first. Works for records in the recycle bin too.
pub async fn history(
    app: &App,
    actor: &Actor,
    entity: Entity,
    id: i64,
) -> Result<Vec<VersionRow>, AppError> {
    authorize(actor, Action::Read(entity))?;
    let mut versions = app.db.versions(entity, id).await?;
    let Some(last) = versions.last() else {
        return Err(AppError::not_found(format!("{entity} {id}")));
    };
    check_current_scope(app, actor, entity, id, &last.snapshot).await?;
    for version in &mut versions {
        redact_version(actor, version);
    }
    Ok(versions)
}

pub async fn version(
    app: &App,
    actor: &Actor,
    entity: Entity,
    id: i64,
    version: i64,
) -> Result<VersionRow, AppError> {
    authorize(actor, Action::Read(entity))?;
    let mut row = app
        .db
        .version(entity, id, version)
        .await?
        .ok_or_else(|| AppError::not_found(format!("version {version} of {entity} {id}")))?;
    check_current_scope(app, actor, entity, id, &row.snapshot).await?;
    redact_version(actor, &mut row);
    Ok(row)
}

/// A record's history is as visible as the record: by its current owner, or (purged) by its
/// owner in `fallback`, a version's snapshot.
async fn check_current_scope(
    app: &App,
    actor: &Actor,
    entity: Entity,
    id: i64,
    fallback: &Value,
) -> Result<(), AppError> {
    match app.db.record(entity, id).await? {
        Some(record) => check_record(actor, Action::Read(entity), &record),
        None => check_snapshot(actor, Action::Read(entity), entity, id, fallback),
    }
}

/// Field-by-field difference between two versions of a record.
pub async fn diff_versions(
    app: &App,
    actor: &Actor,
    entity: Entity,
    id: i64,
    from: i64,
    to: i64,
) -> Result<Vec<FieldChange>, AppError> {
    let older = version(app, actor, entity, id, from).await?;
    let newer = version(app, actor, entity, id, to).await?;
    Ok(diff(&older.snapshot, &newer.snapshot))
}

/// The recycle bin: one entry per deletion, newest first.
pub async fn recycle_bin(
    app: &App,
    actor: &Actor,
    entity: Option<Entity>,
    limit: i64,
) -> Result<Vec<BinEntry>, AppError> {
    authorize(actor, Action::SeeBin)?;
    if let Some(entity) = entity {
        authorize(actor, Action::Read(entity))?;
    }
    // Each kind the actor can read, and of it the deletions whose record they reach.
    let readable: Vec<Entity> = Entity::ALL
        .into_iter()
        .filter(|e| authorize(actor, Action::Read(*e)).is_ok())
        .collect();
    let entries = app
        .db
        .recycle_bin(entity, limit.clamp(1, MAX_PAGE_SIZE), |kind| {
            if readable.contains(&kind) {
                reach(actor, kind)
            } else {
                Some(Reach::default())
            }
        })
        .await?;
    Ok(entries
        .into_iter()
        .map(|mut entry| {
            redact(actor, &mut entry.root);
            entry
        })
        .collect())
}

/// Removes a deletion from the recycle bin for good, before its retention period ends.
/// Administrators only; audited. Returns how many records were purged.
pub async fn purge(
    app: &App,
    actor: &Actor,
    op_id: &str,
    entity: Entity,
    id: i64,
    reason: Option<&str>,
) -> Result<usize, AppError> {
    authorize(actor, Action::Purge)?;
    if let Some(record) = app.db.record(entity, id).await? {
        check_record(actor, Action::Purge, &record)?;
    }
    crate::step_up::require(app, actor).await?;
    let reason = reason.map(str::trim).filter(|r| !r.is_empty()).ok_or_else(|| {
        AppError::invalid("reason", "required", "Say why this is purged before its retention period ends; it goes into the audit log")
    })?;
    purge_deletion(app, actor, op_id, entity, id, reason).await
}

/// The scheduled retention purge: removes deletions older than the retention period.
/// Returns how many records were purged.
pub async fn purge_expired(app: &App, op_id: &str) -> Result<usize, AppError> {
    let cutoff = app.now().plus_days(-app.config.recycle_bin_days);
    let system = Actor::system();
    let reason = format!(
        "in the recycle bin longer than {} days",
        app.config.recycle_bin_days
    );
    let mut purged = 0;
    loop {
        let due = app.db.expired_bin_roots(cutoff, 100).await?;
        if due.is_empty() {
            return Ok(purged);
        }
        for (entity, id) in due {
            purged += purge_deletion(app, &system, op_id, entity, id, &reason).await?;
        }
    }
}

async fn purge_deletion(
    app: &App,
    actor: &Actor,
    op_id: &str,
    entity: Entity,
    id: i64,
    reason: &str,
) -> Result<usize, AppError> {
    let mut tx = app.db.begin_write(app.now()).await?;
    let record = tx
        .record(entity, id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("{entity} {id}")))?;
    match record.deleted {
        None => {
            return Err(AppError::conflict(
                "not_deleted",
                format!("{entity} {id} is not in the recycle bin; delete it first"),
            ));
        }
        Some(deletion) if (deletion.root_entity, deletion.root_id) != (entity, id) => {
            return Err(AppError::conflict(
                "purge_with_root",
                format!(
                    "{entity} {id} was deleted together with {} {}; purge that one",
                    deletion.root_entity, deletion.root_id
                ),
            ));
        }
        Some(_) => {}
    }
    let batch = tx.records_in_batch(entity, id).await?;
    for record in &batch {
        tx.purge_record(record, actor, op_id, reason).await?;
    }
    // Records outside the batch that still point at a purged record (say, a contact restored
    // on its own) lose that link, as a new version that says why.
    let purged: BTreeSet<(Entity, i64)> = batch.iter().map(|r| (r.entity, r.id)).collect();
    for (gone_entity, gone_id) in &purged {
        for referrer in Entity::ALL {
            for def in referrer
                .fields()
                .iter()
                .filter(|d| d.kind == FieldKind::Ref(*gone_entity))
            {
                for before in tx
                    .records_referencing(referrer, def.name, *gone_id, true)
                    .await?
                {
                    let mut after = before.next_version(actor.user_id, tx.now());
                    after.fields.insert(def.name.to_owned(), Value::Null);
                    let why = format!("{gone_entity} {gone_id} was purged");
                    let write = RecordWrite {
                        before: Some(&before),
                        after,
                        action: "update",
                        actor,
                        op_id,
                        reason: Some(&why),
                    };
                    tx.commit_record_change(write).await?;
                }
            }
        }
    }
    tx.commit().await?;
    Ok(batch.len())
}

/// Titles of linked records, so a client can show "Acme Ltd" rather than "company 12".
pub async fn linked_titles(app: &App, actor: &Actor, record: &Record) -> Result<Value, AppError> {
    let mut out = serde_json::Map::new();
    for def in record.entity.fields() {
        let FieldKind::Ref(target) = def.kind else {
            continue;
        };
        let Some(id) = record.field_i64(def.name) else {
            continue;
        };
        if authorize(actor, Action::Read(target)).is_err() {
            continue;
        }
        if let Some((_, title, deleted, owner_id)) =
            app.db.titles(target, &[id]).await?.into_iter().next()
        {
            let linked = RecordRef {
                entity: target,
                id,
                owner_id,
            };
            if authorize_record(actor, Action::Read(target), linked).is_err() {
                out.insert(
                    def.name.to_owned(),
                    serde_json::json!({"id": id, "title": null, "out_of_scope": true}),
                );
                continue;
            }
            out.insert(
                def.name.to_owned(),
                serde_json::json!({"id": id, "title": title, "in_recycle_bin": deleted}),
            );
        }
    }
    Ok(Value::Object(out))
}

/// Titles of records of one kind by id, for lists that show what each row links to; one query
/// per kind rather than one per row. Ids the actor may not read, or that do not exist, are left out.
pub async fn titles(
    app: &App,
    actor: &Actor,
    entity: Entity,
    ids: &[i64],
) -> Result<std::collections::HashMap<i64, String>, AppError> {
    if ids.is_empty() || authorize(actor, Action::Read(entity)).is_err() {
        return Ok(std::collections::HashMap::new());
    }
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    Ok(app
        .db
        .titles(entity, &ids)
        .await?
        .into_iter()
        .filter(|(id, _, _, owner_id)| {
            let linked = RecordRef {
                entity,
                id: *id,
                owner_id: *owner_id,
            };
            authorize_record(actor, Action::Read(entity), linked).is_ok()
        })
        .map(|(id, title, _, _)| (id, title))
        .collect())
}

/// A record as it was at `at`: its newest version then. `None` if it did not exist yet (or
/// was purged since, which removes its history).
pub async fn as_of(
    app: &App,
    actor: &Actor,
    entity: Entity,
    id: i64,
    at: Timestamp,
) -> Result<Option<VersionRow>, AppError> {
    authorize(actor, Action::Read(entity))?;
    let Some(mut row) = app.db.version_at(entity, id, at).await? else {
        return Ok(None);
    };
    check_current_scope(app, actor, entity, id, &row.snapshot).await?;
    redact_version(actor, &mut row);
    Ok(Some(row))
}

/// A page of a list as it was at `at`, and where the next page starts (`None` at the end).
#[derive(Debug, Clone)]
pub struct AsOfPage {
    pub items: Vec<VersionRow>,
    /// The record id to continue after. A page can be short and still have a next one: the
    /// reading stops after [`AS_OF_SCAN_PAGES`] pages of history, so that no request reads a
    /// whole history table.
    pub next_after: Option<i64>,
}

/// How many pages of history one as-of list request reads at most.
pub const AS_OF_SCAN_PAGES: usize = 5;

/// A page of a list as it was at `at`: records that existed then and were not in the recycle
/// bin, as they were then, in id order after `after_id`. The actor's reach is part of the query.
pub async fn list_as_of(
    app: &App,
    actor: &Actor,
    entity: Entity,
    at: Timestamp,
    after_id: i64,
    limit: i64,
) -> Result<AsOfPage, AppError> {
    authorize(actor, Action::Read(entity))?;
    let limit = limit.clamp(1, MAX_PAGE_SIZE);
    let reach = reach(actor, entity);
    let mut items = Vec::new();
    let mut after = after_id;
    for _ in 0..AS_OF_SCAN_PAGES {
        let page = app
            .db
            .versions_as_of(entity, at, after, limit, reach.as_ref())
            .await?;
        let full = page.len() as i64 == limit;
        let Some(last) = page.last() else {
            return Ok(AsOfPage {
                items,
                next_after: None,
            });
        };
        after = last.record_id;
        for mut version in page {
            if version
                .snapshot
                .get("deleted_at")
                .is_none_or(Value::is_null)
            {
                redact_version(actor, &mut version);
                items.push(version);
            }
            if items.len() as i64 == limit {
                // Continue after the last record shown, not the last one read.
                let next_after = items.last().map(|v| v.record_id);
                return Ok(AsOfPage { items, next_after });
            }
        }
        if !full {
            return Ok(AsOfPage {
                items,
                next_after: None,
            });
        }
    }
    Ok(AsOfPage {
        items,
        next_after: Some(after),
    })
}

/// Puts one record back as it was at `at`, as a new version (`restore_to_time`).
pub async fn restore_to_time(
    app: &App,
    actor: &Actor,
    op_id: &str,
    entity: Entity,
    id: i64,
    at: Timestamp,
) -> Result<Outcome, AppError> {
    authorize(actor, Action::Restore(entity))?;
    let missing = || AppError::not_found(format!("{entity} {id} as it was at {}", at.to_rfc3339()));
    // `as_of` checks the actor's reach; its answer has the actor's hidden fields taken out,
    // and restoring from that would blank them, so the snapshot comes unredacted from the
    // store (the write path still refuses a change to a field the actor may not see).
    as_of(app, actor, entity, id, at)
        .await?
        .ok_or_else(missing)?;
    let then = app
        .db
        .version_at(entity, id, at)
        .await?
        .ok_or_else(missing)?;
    apply_change(
        app,
        actor,
        op_id,
        Change::Revert {
            entity,
            id,
            snapshot: then.snapshot,
            action: "restore_to_time",
            reason: format!("restored to how it was at {}", at.to_rfc3339()),
        },
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// Record scope and field rules

/// The records of `entity` the actor reaches, as a list condition; `None` for all of them.
pub fn reach(actor: &Actor, entity: Entity) -> Option<Reach> {
    let owners = actor.scope_owners()?;
    Some(Reach {
        owners: owners.into_iter().collect(),
        ids: actor.shared(entity).into_iter().collect(),
    })
}

fn record_ref(record: &Record) -> RecordRef {
    RecordRef {
        entity: record.entity,
        id: record.id,
        owner_id: record.owner_id,
    }
}

/// The right and the scope check for one record.
fn check_record(actor: &Actor, action: Action, record: &Record) -> Result<(), AppError> {
    Ok(authorize_record(actor, action, record_ref(record))?)
}

/// The scope check for a record known only by a version's snapshot (purged since, or as it
/// was): its owner then.
pub(crate) fn check_snapshot(
    actor: &Actor,
    action: Action,
    entity: Entity,
    id: i64,
    snapshot: &Value,
) -> Result<(), AppError> {
    let owner_id = snapshot
        .get("owner_id")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    Ok(authorize_record(
        actor,
        action,
        RecordRef {
            entity,
            id,
            owner_id,
        },
    )?)
}

/// Fields the actor's role hides, taken out of a record before it is shown.
pub fn redact(actor: &Actor, record: &mut Record) {
    let status = record.field_str("status").map(str::to_owned);
    let context = FieldContext {
        owner_id: record.owner_id,
        status: status.as_deref(),
    };
    for def in record.entity.fields() {
        if actor.field_effect(record.entity, def.name, Some(context)) == Some(FieldEffect::Hidden) {
            record.fields.remove(def.name);
        }
    }
}

/// The same for a version: its snapshot and its list of changed fields.
pub fn redact_version(actor: &Actor, version: &mut VersionRow) {
    let hidden = redact_snapshot(actor, version.entity, &mut version.snapshot);
    version.changed.retain(|name| !hidden.contains(name));
}

/// Takes the fields the actor's role hides out of a record's JSON (a version's or a backup's
/// copy); returns their names.
pub fn redact_snapshot(actor: &Actor, entity: Entity, snapshot: &mut Value) -> Vec<String> {
    let owner_id = snapshot
        .get("owner_id")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let status = snapshot
        .get("status")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let context = FieldContext {
        owner_id,
        status: status.as_deref(),
    };
    let hidden: Vec<String> = entity
        .fields()
        .iter()
        .filter(|def| {
            actor.field_effect(entity, def.name, Some(context)) == Some(FieldEffect::Hidden)
        })
        .map(|def| def.name.to_owned())
        .collect();
    if let Some(map) = snapshot.as_object_mut() {
        map.retain(|key, _| !hidden.contains(key));
    }
    hidden
}

/// A change may not touch a field the actor's role hides or makes read-only.
fn check_fields(actor: &Actor, before: Option<&Record>, after: &Record) -> Result<(), AppError> {
    let mut errors = FieldErrors::default();
    // The record as it stood decides (a deal already won); a new one as it is being made.
    let basis = before.unwrap_or(after);
    let status = basis.field_str("status").map(str::to_owned);
    let context = FieldContext {
        owner_id: basis.owner_id,
        status: status.as_deref(),
    };
    let blank = before
        .is_none()
        .then(|| holdfast_domain::Patch::default().apply(after.entity, None, 0, after.created_at));
    for def in after.entity.fields() {
        let Some(effect) = actor.field_effect(after.entity, def.name, Some(context)) else {
            continue;
        };
        let old = before
            .and_then(|b| b.fields.get(def.name))
            .unwrap_or(&Value::Null);
        let new = after.fields.get(def.name).unwrap_or(&Value::Null);
        // A new record gets the field's default; only what the actor set counts as a change.
        let default = blank
            .as_ref()
            .is_some_and(|b| b.fields.get(def.name).unwrap_or(&Value::Null) == new);
        if old != new && !default {
            let (code, what) = match effect {
                FieldEffect::Hidden => ("field_hidden", "hidden"),
                FieldEffect::ReadOnly => ("read_only", "read-only"),
            };
            let role = actor.role().map_or("", |r| r.name.as_str());
            errors.push(
                def.name,
                code,
                format!(
                    "This field is {what} for your role {role}; an administrator ({}) can change that",
                    actor.access.admin_names().join(", ")
                ),
            );
        }
    }
    errors.into_result()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Exports

/// Most rows one export holds; a larger one is refused with a request to narrow it.
pub const MAX_EXPORT_ROWS: usize = 10_000;

/// A CSV file of records, as the actor sees them.
#[derive(Debug, Clone)]
pub struct Export {
    pub file_name: String,
    pub csv: Vec<u8>,
    pub rows: usize,
}

/// The records of `entity` a list with `params` (filters, search, sort) would show the actor,
/// every page of them, as CSV: only records within the actor's scope, without the fields their
/// role hides. Needs the export right on the module and on exports; audited with the count and
/// the filters, so a mass export is visible in the log.
pub async fn export(
    app: &App,
    actor: &Actor,
    op_id: &str,
    entity: Entity,
    params: &[(String, String)],
) -> Result<Export, AppError> {
    authorize(actor, Action::ExportFiles)?;
    authorize(actor, Action::Export(entity))?;
    crate::step_up::require(app, actor).await?;
    if let Some((key, _)) = params.iter().find(|(k, _)| k == "limit" || k == "cursor") {
        return Err(AppError::invalid(
            key,
            "unknown_parameter",
            "An export holds every matching record; leave out limit and cursor",
        ));
    }
    let mut rows: Vec<VisibleRecord> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut page_params = params.to_vec();
        page_params.push(("limit".into(), MAX_PAGE_SIZE.to_string()));
        if let Some(cursor) = &cursor {
            page_params.push(("cursor".into(), cursor.clone()));
        }
        let page = list(app, actor, entity, &page_params).await?;
        rows.extend(page.items);
        if rows.len() > MAX_EXPORT_ROWS {
            return Err(AppError::invalid(
                "q",
                "too_many",
                format!(
                    "More than {MAX_EXPORT_ROWS} {} match; narrow the export with a search or filters",
                    entity.plural()
                ),
            ));
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let visible: Vec<&'static str> = entity
        .fields()
        .iter()
        .filter(|d| {
            !actor
                .field_rule(entity, d.name)
                .is_some_and(FieldRule::hides_always)
        })
        .map(|d| d.name)
        .collect();
    let mut writer = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["id", "owner_id"];
    header.extend(&visible);
    header.extend(["tags", "created_at", "updated_at"]);
    writer
        .write_record(&header)
        .map_err(|e| AppError::Internal(e.into()))?;
    for record in &rows {
        let cell = |value: Option<&Value>| match value {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(text)) => spreadsheet_safe(text),
            Some(other) => other.to_string(),
        };
        let mut line = vec![record.id.to_string(), record.owner_id.to_string()];
        line.extend(visible.iter().map(|name| cell(record.fields.get(*name))));
        line.push(spreadsheet_safe(&record.tags.join(" ")));
        line.push(record.created_at.to_rfc3339());
        line.push(record.updated_at.to_rfc3339());
        writer
            .write_record(&line)
            .map_err(|e| AppError::Internal(e.into()))?;
    }
    let csv = writer
        .into_inner()
        .map_err(|e| AppError::Internal(anyhow::anyhow!("writing the export: {e}")))?;
    let filters: serde_json::Map<String, Value> = params
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let amount = i64::try_from(rows.len()).unwrap_or(i64::MAX);
    crate::guards::take(app, actor, op_id, crate::guards::Kind::BulkReads, amount).await?;
    let mut tx = app.db.begin_write(app.now()).await?;
    let detail = serde_json::json!({"rows": rows.len(), "filters": filters, "fields": visible});
    tx.audit_event(holdfast_store::AuditDraft::new(
        actor,
        op_id,
        format!("{}.export", entity.name()),
        detail,
    ))
    .await?;
    tx.commit().await?;
    Ok(Export {
        file_name: format!("{}-{}.csv", entity.plural(), crate::compact_utc(app.now())),
        csv,
        rows: rows.len(),
    })
}

/// A cell that Excel, WPS or LibreOffice will show as text rather than run as a formula: text
/// starting with `=`, `+`, `-`, `@`, a tab or a carriage return (or their full-width forms, which
/// WPS also reads as formula signs) gets a leading apostrophe. Plain numbers and phone numbers
/// (`+86 138 0013 8000`, `-12.5`) cannot call a function and are left as they are.
pub fn spreadsheet_safe(text: &str) -> String {
    const TRIGGERS: &[char] = &['=', '+', '-', '@', '\t', '\r', '＝', '＋', '－', '＠'];
    let Some(first) = text.chars().next() else {
        return String::new();
    };
    let plain_number = text
        .chars()
        .all(|c| c.is_ascii_digit() || " +-().#/xX".contains(c))
        && text.chars().any(|c| c.is_ascii_digit());
    if TRIGGERS.contains(&first) && !plain_number {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod csv_tests {
    use super::spreadsheet_safe;

    #[test]
    fn formulas_become_text_and_phone_numbers_stay() {
        for formula in [
            "=HYPERLINK(\"http://evil.example\",\"点我\")",
            "+cmd|' /C calc'!A0",
            "-2+3+cmd|' /C calc'!A0",
            "@SUM(1+1)*cmd|' /C calc'!A0",
            "\t=1+1",
            "\r=1+1",
            "＝HYPERLINK(\"x\")",
            "＋1＋1",
            "－1",
            "＠SUM(A1)",
        ] {
            assert_eq!(
                spreadsheet_safe(formula),
                format!("'{formula}"),
                "{formula}"
            );
        }
        for plain in [
            "+86 138 0013 8000",
            "-12",
            "010-6512 3456",
            "张伟",
            "a=b",
            "",
        ] {
            assert_eq!(spreadsheet_safe(plain), plain);
        }
    }
}
