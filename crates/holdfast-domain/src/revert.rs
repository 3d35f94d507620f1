//! Undoing what one user (or everyone) did to a record since a time, field by field.
//!
//! A revert "by user U to T" must put back only what U changed and leave everyone else's later
//! work alone. [`plan`] reads a record's history from T on (the version in force at T, then each
//! later version with who wrote it) and decides, for every field and for the record's presence
//! (live, or in the recycle bin / not yet created):
//! - a field whose newest change after T is U's goes back to the value it had before U's last run
//!   of changes — the value at T when nobody else touched it, otherwise the value the last other
//!   writer left;
//! - a field U changed that someone else changed *later* is a [`Conflict`]: listed, and left as it
//!   is unless the administrator chooses to revert it to its value at T;
//! - a record U created goes to the recycle bin, one U deleted comes back; a record U created
//!   that others changed afterwards is a conflict too (binning it would hide their work).
//!
//! Pure: no IO. The app layer reads the history, turns the plan into changes for the one write
//! path, and reports every record either as changed or with the reason it was not.

use crate::record::diff;
use serde::Serialize;
use serde_json::{Value, json};

/// One version after T: who wrote it and the record as it stood afterwards.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    pub actor_id: i64,
    pub snapshot: &'a Value,
    /// Written by what [`Whose::Marked`] reverts (an API token's requests, say).
    pub marked: bool,
}

/// Whose changes a revert undoes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whose {
    /// Every change after T: the record goes back to how it was then.
    Everyone,
    User(i64),
    /// The steps the caller marked: those made through one API token, for instance.
    Marked,
}

impl Whose {
    fn matches(self, actor_id: i64, marked: bool) -> bool {
        match self {
            Whose::Everyone => true,
            Whose::User(id) => id == actor_id,
            Whose::Marked => marked,
        }
    }
}

/// A field set back to an earlier value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldRevert {
    /// A field name, `owner_id`, `tags`, or `custom.KEY`.
    pub field: String,
    pub from: Value,
    pub to: Value,
}

/// What kind of disagreement a [`Conflict`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictKind {
    /// Someone else changed the field after the reverted user did.
    Field,
    /// The reverted user created (or restored) the record and others changed it afterwards:
    /// moving it to the recycle bin would hide their work.
    ChangedByOthers,
    /// The reverted user deleted or restored the record and someone else did the opposite later.
    Presence,
    /// Records of other people hang off the record: moving it to the recycle bin would take them
    /// along. Found by the app layer, which knows the links.
    HasDependents,
}

/// A change of the reverted user that a later change of someone else builds on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Conflict {
    pub kind: ConflictKind,
    /// The field, or `record` for the record's presence.
    pub field: String,
    /// The value at T (for `record`: `live`, `in_recycle_bin` or `absent`).
    pub value_then: Value,
    /// What the reverted user left.
    pub user_value: Value,
    /// What is there now.
    pub later_value: Value,
    /// Who wrote it last.
    pub later_by: i64,
}

/// Whether a record should end up live or out of sight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceChange {
    /// Out of the recycle bin.
    Restore,
    /// Into the recycle bin.
    Delete,
}

/// Why a record in the plan will not change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unchanged {
    /// Everything the user changed has since been put back (or changed to the same value).
    AlreadyAsThen,
    /// The user created and deleted it after T: it is in the recycle bin, where it belongs.
    AlreadyInRecycleBin,
    /// Every change of the user is a conflict that is being kept.
    OnlyConflicts,
    /// The user's field changes would be undone, but someone else moved the record to the
    /// recycle bin since: restore it first, then revert again.
    InRecycleBin,
    /// It would come back from the recycle bin, but it went there with another record that
    /// stays: it comes back when that one does.
    StaysWithRoot,
}

/// The decision for one record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordPlan {
    pub presence: Option<PresenceChange>,
    pub fields: Vec<FieldRevert>,
    pub conflicts: Vec<Conflict>,
}

impl RecordPlan {
    /// Why nothing will change, when nothing will (after conflicts were resolved).
    pub fn unchanged(&self, live_now: bool, then_live: bool) -> Option<Unchanged> {
        if self.presence.is_some() || (!self.fields.is_empty() && live_now) {
            return None;
        }
        Some(if !self.fields.is_empty() {
            Unchanged::InRecycleBin
        } else if !self.conflicts.is_empty() {
            Unchanged::OnlyConflicts
        } else if !live_now && !then_live {
            Unchanged::AlreadyInRecycleBin
        } else {
            Unchanged::AlreadyAsThen
        })
    }

    /// Takes a conflict's "revert" side: the field (or the record's presence) goes back to how
    /// it was at T. `live_now` and `then_live` say where the record stands.
    pub fn resolve_by_reverting(&mut self, index: usize, live_now: bool, then_live: bool) {
        if index >= self.conflicts.len() {
            return;
        }
        let conflict = self.conflicts.remove(index);
        match conflict.kind {
            ConflictKind::Field => self.fields.push(FieldRevert {
                field: conflict.field,
                from: conflict.later_value,
                to: conflict.value_then,
            }),
            ConflictKind::ChangedByOthers
            | ConflictKind::Presence
            | ConflictKind::HasDependents => {
                self.presence = match (live_now, then_live) {
                    (true, false) => Some(PresenceChange::Delete),
                    (false, true) => Some(PresenceChange::Restore),
                    _ => None,
                };
                if self.presence == Some(PresenceChange::Delete) {
                    self.fields.clear();
                }
            }
        }
    }

    /// Holds back a planned move to the recycle bin as a conflict of `kind` (the app layer
    /// found records of others hanging off it).
    pub fn hold_delete(&mut self, later_by: i64) {
        if self.presence == Some(PresenceChange::Delete) {
            self.presence = None;
            self.conflicts.push(Conflict {
                kind: ConflictKind::HasDependents,
                field: "record".into(),
                value_then: json!("absent"),
                user_value: json!("live"),
                later_value: json!("live"),
                later_by,
            });
        }
    }
}

/// Whether a snapshot describes a live record (`None`: it did not exist).
pub fn is_live(snapshot: Option<&Value>) -> bool {
    snapshot.is_some_and(|s| s.get("deleted_at").is_none_or(Value::is_null))
}

/// Keys of a snapshot that describe presence rather than content.
const PRESENCE_KEYS: &[&str] = &["deleted_at", "deleted_with"];

/// One change of one field after T.
struct Touch {
    /// Index of the step in `steps`.
    step: usize,
    actor_id: i64,
    marked: bool,
    before: Value,
    after: Value,
}

/// Where a record stands for a revert: not yet created and in the recycle bin are the same,
/// out of sight.
fn sight(snapshot: Option<&Value>) -> Value {
    json!(if is_live(snapshot) {
        "live"
    } else {
        "in_recycle_bin"
    })
}

fn presence_name(snapshot: Option<&Value>) -> Value {
    match snapshot {
        None => json!("absent"),
        Some(_) if is_live(snapshot) => json!("live"),
        Some(_) => json!("in_recycle_bin"),
    }
}

/// Decides what reverting `whose` changes since T does to one record. `then` is the record's
/// version in force at T (`None` if it did not exist yet); `steps` are its versions after T,
/// oldest first. Returns `None` when `whose` changed nothing in them.
pub fn plan(then: Option<&Value>, steps: &[Step<'_>], whose: Whose) -> Option<RecordPlan> {
    if !steps.iter().any(|s| whose.matches(s.actor_id, s.marked)) {
        return None;
    }
    // Every field's changes after T, in order; presence as its own list.
    let mut fields: Vec<(String, Vec<Touch>)> = Vec::new();
    let mut presence: Vec<Touch> = Vec::new();
    let mut previous = then;
    for (index, step) in steps.iter().enumerate() {
        let was = sight(previous);
        let now = sight(Some(step.snapshot));
        if was != now {
            presence.push(Touch {
                step: index,
                actor_id: step.actor_id,
                marked: step.marked,
                before: was,
                after: now,
            });
        }
        let empty = Value::Null;
        for change in diff(previous.unwrap_or(&empty), step.snapshot) {
            if PRESENCE_KEYS.contains(&change.field.as_str()) {
                continue;
            }
            let touch = Touch {
                step: index,
                actor_id: step.actor_id,
                marked: step.marked,
                before: change.before,
                after: change.after,
            };
            match fields.iter_mut().find(|(name, _)| *name == change.field) {
                Some((_, touches)) => touches.push(touch),
                None => fields.push((change.field, vec![touch])),
            }
        }
        previous = Some(step.snapshot);
    }
    let live_now = is_live(previous);
    let mut out = RecordPlan {
        presence: None,
        fields: Vec::new(),
        conflicts: Vec::new(),
    };

    // Presence first: where the record should end up decides whether fields matter.
    let mut target_live = live_now;
    let mut user_moved_it = false;
    match decide(&presence, whose) {
        Decision::Untouched => {}
        Decision::Same => user_moved_it = true,
        Decision::Back { to, .. } => {
            target_live = to == json!("live");
            user_moved_it = true;
        }
        Decision::Conflict {
            value_then,
            user_value,
            later_by,
        } => out.conflicts.push(Conflict {
            kind: ConflictKind::Presence,
            field: "record".into(),
            value_then,
            user_value,
            later_value: presence_name(previous),
            later_by,
        }),
    }
    if !target_live && live_now {
        // Into the recycle bin — unless others changed the record after the user brought it
        // into sight: binning it would hide their work.
        let brought_in = presence.last().map_or(0, |t| t.step);
        match steps[brought_in..]
            .iter()
            .rev()
            .find(|s| !whose.matches(s.actor_id, s.marked))
        {
            Some(other) => out.conflicts.push(Conflict {
                kind: ConflictKind::ChangedByOthers,
                field: "record".into(),
                value_then: presence_name(then),
                user_value: json!("live"),
                later_value: json!("live"),
                later_by: other.actor_id,
            }),
            None => out.presence = Some(PresenceChange::Delete),
        }
        return Some(out);
    }
    if !target_live && user_moved_it {
        // Created and deleted, or deleted, by the user: it stays in the recycle bin.
        return Some(out);
    }
    if target_live && !live_now {
        out.presence = Some(PresenceChange::Restore);
    }
    for (field, touches) in &fields {
        match decide(touches, whose) {
            Decision::Untouched | Decision::Same => {}
            Decision::Back { from, to } => out.fields.push(FieldRevert {
                field: field.clone(),
                from,
                to,
            }),
            Decision::Conflict {
                value_then,
                user_value,
                later_by,
            } => out.conflicts.push(Conflict {
                kind: ConflictKind::Field,
                field: field.clone(),
                value_then,
                user_value,
                later_value: touches.last().map(|t| t.after.clone()).unwrap_or_default(),
                later_by,
            }),
        }
    }
    Some(out)
}

enum Decision {
    /// The user did not touch it.
    Untouched,
    /// The user touched it, but it is already back where the revert would put it.
    Same,
    Back {
        from: Value,
        to: Value,
    },
    Conflict {
        value_then: Value,
        user_value: Value,
        later_by: i64,
    },
}

/// One field's (or the presence's) changes after T → what the revert does with it.
fn decide(touches: &[Touch], whose: Whose) -> Decision {
    let Some(last_user) = touches
        .iter()
        .rposition(|t| whose.matches(t.actor_id, t.marked))
    else {
        return Decision::Untouched;
    };
    let (Some(first), Some(last)) = (touches.first(), touches.last()) else {
        return Decision::Untouched;
    };
    if last_user + 1 == touches.len() {
        // The user wrote last: back to the value before their last run of changes.
        let run_start = touches
            .iter()
            .rposition(|t| !whose.matches(t.actor_id, t.marked))
            .map_or(0, |other| other + 1);
        let to = touches[run_start].before.clone();
        return if same(&to, &last.after) {
            Decision::Same
        } else {
            Decision::Back {
                from: last.after.clone(),
                to,
            }
        };
    }
    // Someone else wrote after the user: theirs stands unless it already equals the old value.
    if same(&first.before, &last.after) {
        return Decision::Same;
    }
    Decision::Conflict {
        value_then: first.before.clone(),
        user_value: touches[last_user].after.clone(),
        later_by: last.actor_id,
    }
}

/// Values equal for a person: an empty list or text is the same as none.
fn same(a: &Value, b: &Value) -> bool {
    a == b || diff(&json!({ "v": a }), &json!({ "v": b })).is_empty()
}

#[cfg(test)]
mod tests;
