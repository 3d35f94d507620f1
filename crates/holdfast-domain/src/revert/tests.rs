#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use serde_json::Map;

const A: i64 = 1;
const B: i64 = 2;
const C: i64 = 3;
const ADMIN: i64 = 9;

fn record(fields: &[(&str, &str)]) -> Value {
    let mut out = Map::new();
    for (key, value) in fields {
        out.insert((*key).into(), json!(value));
    }
    out.insert("deleted_at".into(), Value::Null);
    Value::Object(out)
}

fn with(base: &Value, field: &str, value: &str) -> Value {
    let mut next = base.clone();
    next[field] = json!(value);
    next
}

fn deleted(base: &Value) -> Value {
    let mut next = base.clone();
    next["deleted_at"] = json!("2026-12-01T00:00:00Z");
    next
}

fn steps(history: &[(i64, Value)]) -> Vec<Step<'_>> {
    history
        .iter()
        .map(|(actor_id, snapshot)| Step {
            actor_id: *actor_id,
            snapshot,
            marked: false,
        })
        .collect()
}

#[test]
fn only_the_users_fields_go_back_and_a_later_edit_by_someone_else_is_a_conflict() {
    let then = record(&[("phone", "1"), ("title", "boss")]);
    let v1 = with(&then, "phone", "999");
    let v2 = with(&v1, "title", "CEO");
    let history = [(A, v1), (B, v2)];
    let plan = plan(Some(&then), &steps(&history), Whose::User(A)).unwrap();
    assert_eq!(
        plan.fields,
        [FieldRevert {
            field: "phone".into(),
            from: json!("999"),
            to: json!("1")
        }]
    );
    assert!(plan.conflicts.is_empty());

    // B changes the phone A changed: that is a conflict, kept unless chosen otherwise.
    let v3 = with(&history[1].1, "phone", "555");
    let history = [history[0].clone(), history[1].clone(), (B, v3)];
    let mut plan = super::plan(Some(&then), &steps(&history), Whose::User(A)).unwrap();
    assert!(plan.fields.is_empty());
    assert_eq!(
        plan.conflicts,
        [Conflict {
            kind: ConflictKind::Field,
            field: "phone".into(),
            value_then: json!("1"),
            user_value: json!("999"),
            later_value: json!("555"),
            later_by: B,
        }]
    );
    assert_eq!(plan.unchanged(true, true), Some(Unchanged::OnlyConflicts));
    plan.resolve_by_reverting(0, true, true);
    assert_eq!(plan.fields[0].to, json!("1"));
    assert_eq!(plan.unchanged(true, true), None);
}

#[test]
fn a_field_someone_else_changed_before_the_user_goes_back_to_their_value() {
    let then = record(&[("title", "a")]);
    let v1 = with(&then, "title", "b");
    let v2 = with(&v1, "title", "rogue");
    let history = [(B, v1), (A, v2)];
    let plan = plan(Some(&then), &steps(&history), Whose::User(A)).unwrap();
    assert_eq!(plan.fields[0].to, json!("b"));
}

#[test]
fn records_the_user_created_go_to_the_bin_and_deleted_ones_come_back() {
    let created = record(&[("name", "new")]);
    let history = [(A, created.clone())];
    let plan = plan(None, &steps(&history), Whose::User(A)).unwrap();
    assert_eq!(plan.presence, Some(PresenceChange::Delete));

    // Created and deleted by the user: already where it belongs, and said so.
    let history = [(A, created.clone()), (A, deleted(&created))];
    let plan = super::plan(None, &steps(&history), Whose::User(A)).unwrap();
    assert_eq!(plan.presence, None);
    assert_eq!(
        plan.unchanged(false, false),
        Some(Unchanged::AlreadyInRecycleBin)
    );

    // Created by someone else after T, deleted by the user: it comes back.
    let history = [(B, created.clone()), (A, deleted(&created))];
    let plan = super::plan(None, &steps(&history), Whose::User(A)).unwrap();
    assert_eq!(plan.presence, Some(PresenceChange::Restore));

    // Created by the user, then changed by someone else: binning it would hide their work.
    let history = [(A, created.clone()), (B, with(&created, "name", "B's"))];
    let plan = super::plan(None, &steps(&history), Whose::User(A)).unwrap();
    assert_eq!(plan.presence, None);
    assert_eq!(plan.conflicts[0].kind, ConflictKind::ChangedByOthers);
}

#[test]
fn a_record_someone_else_deleted_later_is_named_not_changed() {
    let then = record(&[("title", "a")]);
    let v1 = with(&then, "title", "rogue");
    let history = [(A, v1.clone()), (B, deleted(&v1))];
    let plan = plan(Some(&then), &steps(&history), Whose::User(A)).unwrap();
    assert_eq!(plan.presence, None);
    assert_eq!(plan.unchanged(false, true), Some(Unchanged::InRecycleBin));
}

#[test]
fn nothing_by_the_user_is_no_plan() {
    let then = record(&[("title", "a")]);
    let history = [(B, with(&then, "title", "b"))];
    assert_eq!(plan(Some(&then), &steps(&history), Whose::User(A)), None);
}

/// Applies a plan the way the app does: restore, then fields, or delete.
fn apply(current: &Value, plan: &RecordPlan) -> Value {
    let mut next = current.clone();
    match plan.presence {
        Some(PresenceChange::Delete) => return deleted(current),
        Some(PresenceChange::Restore) => next["deleted_at"] = Value::Null,
        None if !is_live(Some(current)) => return next,
        None => {}
    }
    for revert in &plan.fields {
        next[revert.field.as_str()] = revert.to.clone();
    }
    next
}

/// A small deterministic generator, so failures reproduce from the printed seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Random edits by three users, then a revert of one of them to a random time: others' later
/// work stands, the user's own fields are as they were then, and the revert reverts.
#[test]
fn property_reverting_one_user_keeps_everyone_elses_later_work() {
    const FIELDS: [&str; 4] = ["name", "phone", "title", "city"];
    for seed in 1..=2000u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut current = record(&FIELDS.map(|f| (f, "v0")));
        let mut history: Vec<(i64, Value)> = Vec::new();
        for n in 0..(3 + rng.next(10)) {
            let actor = [A, B, C][rng.next(3) as usize];
            let field = FIELDS[rng.next(4) as usize];
            current = with(&current, field, &format!("{actor}:{n}"));
            history.push((actor, current.clone()));
        }
        let cut = rng.next(history.len() as u64) as usize;
        let then = if cut == 0 {
            record(&FIELDS.map(|f| (f, "v0")))
        } else {
            history[cut - 1].1.clone()
        };
        let user = [A, B, C][rng.next(3) as usize];
        let after = &history[cut..];
        let Some(plan) = plan(Some(&then), &steps(after), Whose::User(user)) else {
            assert!(after.iter().all(|(a, _)| *a != user), "seed {seed}");
            continue;
        };
        let reverted = apply(&current, &plan);
        for field in FIELDS {
            // Each change of this field after T: who, and the value they left.
            let writes: Vec<(i64, Value)> = after
                .iter()
                .scan(then.clone(), |previous, (actor, snapshot)| {
                    let changed = previous[field] != snapshot[field];
                    *previous = snapshot.clone();
                    Some(changed.then(|| (*actor, snapshot[field].clone())))
                })
                .flatten()
                .collect();
            let last_other = writes.iter().rposition(|(a, _)| *a != user);
            match (writes.last(), last_other) {
                (None, _) => assert_eq!(reverted[field], current[field], "seed {seed} {field}"),
                // Only the user touched it: as it was then.
                (Some(_), None) => assert_eq!(reverted[field], then[field], "seed {seed} {field}"),
                // Someone else wrote last: unchanged (a conflict, kept).
                (Some((last, _)), Some(_)) if *last != user => {
                    assert_eq!(reverted[field], current[field], "seed {seed} {field}")
                }
                // The user wrote after others: back to what the last other writer left.
                (Some(_), Some(other)) => {
                    assert_eq!(reverted[field], writes[other].1, "seed {seed} {field}")
                }
            }
        }
        // The revert is itself a change by the administrator, and reverts like any other.
        let mut full = after.to_vec();
        full.push((ADMIN, reverted.clone()));
        let undo = super::plan(
            Some(&current),
            &steps(&full[after.len()..]),
            Whose::User(ADMIN),
        );
        let restored = undo.map_or(reverted.clone(), |undo| apply(&reverted, &undo));
        assert_eq!(restored, current, "seed {seed}: reverting the revert");
    }
}

#[test]
fn reverting_marked_steps_leaves_the_same_users_other_changes() {
    // A changed the phone through a stolen token (marked), then the title in their browser.
    let then = record(&[("phone", "1"), ("title", "boss")]);
    let v1 = with(&then, "phone", "999");
    let v2 = with(&v1, "title", "CEO");
    let marked = [true, false];
    let history = [(A, v1), (A, v2)];
    let steps: Vec<Step<'_>> = history
        .iter()
        .zip(marked)
        .map(|((actor_id, snapshot), marked)| Step {
            actor_id: *actor_id,
            snapshot,
            marked,
        })
        .collect();
    let plan = plan(Some(&then), &steps, Whose::Marked).unwrap();
    assert_eq!(
        plan.fields,
        [FieldRevert {
            field: "phone".into(),
            from: json!("999"),
            to: json!("1")
        }]
    );
    assert!(plan.conflicts.is_empty());
    // Nothing marked: nothing to revert.
    let unmarked = super::tests::steps(&history);
    assert_eq!(super::plan(Some(&then), &unmarked, Whose::Marked), None);
}
