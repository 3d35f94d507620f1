//! A customer record as the rest of Holdfast sees it, and the differences between two versions.
//!
//! Versions are stored as the JSON snapshot produced by [`Record::to_json`], so a version can be
//! shown, compared and restored without the live row (which may have been purged since).

use crate::entity::Entity;
use crate::time::Timestamp;
use serde::Serialize;
use serde_json::{Map, Value};

/// Keys of a record's JSON that are metadata, not fields; no entity field may use them.
pub const RESERVED_KEYS: &[&str] = &[
    "id",
    "entity",
    "version",
    "owner_id",
    "tags",
    "custom",
    "created_at",
    "created_by",
    "updated_at",
    "updated_by",
    "deleted_at",
    "deleted_by",
    "deleted_with",
    "expected_version",
    "reason",
];

/// Metadata that changes with every write and so never counts as a "changed field".
const BOOKKEEPING_KEYS: &[&str] = &[
    "id",
    "entity",
    "version",
    "created_at",
    "created_by",
    "updated_at",
    "updated_by",
    "deleted_by",
    "deleted_with",
];

#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub entity: Entity,
    pub id: i64,
    /// Starts at 1 and grows by one with every change; the write path uses it for optimistic
    /// concurrency, so it always equals the number of the newest version in history.
    pub version: i64,
    pub owner_id: i64,
    /// Every field of the entity, `Null` when empty, in the canonical form validation produced.
    pub fields: Map<String, Value>,
    /// Sorted and without duplicates.
    pub tags: Vec<String>,
    /// Values of administrator-defined custom fields, by key. Kept as JSON so that adding or
    /// retiring a custom field never needs a schema change and never loses a value.
    pub custom: Map<String, Value>,
    pub created_at: Timestamp,
    pub created_by: i64,
    pub updated_at: Timestamp,
    pub updated_by: i64,
    pub deleted: Option<Deletion>,
}

/// Where a record in the recycle bin came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Deletion {
    pub at: Timestamp,
    pub by: i64,
    /// The record whose deletion took this one along (itself when deleted directly). Restoring
    /// happens per root, so a company comes back with exactly the contacts it took away.
    pub root_entity: Entity,
    pub root_id: i64,
}

impl Record {
    pub fn title(&self) -> String {
        match self.fields.get(self.entity.title_field()) {
            Some(Value::String(text)) => text.clone(),
            _ => String::new(),
        }
    }

    pub fn field_i64(&self, name: &str) -> Option<i64> {
        self.fields.get(name).and_then(Value::as_i64)
    }

    pub fn field_str(&self, name: &str) -> Option<&str> {
        self.fields.get(name).and_then(Value::as_str)
    }

    /// A copy stamped as the next version by `actor_id` at `now`, for the caller to change.
    pub fn next_version(&self, actor_id: i64, now: Timestamp) -> Record {
        Record {
            version: self.version + 1,
            updated_at: now,
            updated_by: actor_id,
            ..self.clone()
        }
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.is_some()
    }

    /// The record as the API shows it and as versions store it.
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert("id".into(), self.id.into());
        out.insert("entity".into(), self.entity.name().into());
        out.insert("version".into(), self.version.into());
        out.insert("owner_id".into(), self.owner_id.into());
        for def in self.entity.fields() {
            out.insert(
                def.name.into(),
                self.fields.get(def.name).cloned().unwrap_or(Value::Null),
            );
        }
        out.insert("tags".into(), self.tags.clone().into());
        out.insert("custom".into(), Value::Object(self.custom.clone()));
        out.insert("created_at".into(), self.created_at.to_rfc3339().into());
        out.insert("created_by".into(), self.created_by.into());
        out.insert("updated_at".into(), self.updated_at.to_rfc3339().into());
        out.insert("updated_by".into(), self.updated_by.into());
        match &self.deleted {
            Some(deletion) => {
                out.insert("deleted_at".into(), deletion.at.to_rfc3339().into());
                out.insert("deleted_by".into(), deletion.by.into());
                out.insert(
                    "deleted_with".into(),
                    serde_json::json!({"entity": deletion.root_entity.name(), "id": deletion.root_id}),
                );
            }
            None => {
                out.insert("deleted_at".into(), Value::Null);
                out.insert("deleted_by".into(), Value::Null);
                out.insert("deleted_with".into(), Value::Null);
            }
        }
        Value::Object(out)
    }

    /// The fields, owner, tags and custom values that differ from `before` (all of them on create).
    pub fn changed_fields(&self, before: Option<&Record>) -> Vec<String> {
        let empty = Value::Object(Map::new());
        let before_json = before.map(Record::to_json).unwrap_or(empty);
        diff(&before_json, &self.to_json())
            .into_iter()
            .map(|change| change.field)
            .collect()
    }
}

/// One field that differs between two versions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    /// A field name, `owner_id`, `tags`, `deleted_at`, or `custom.<key>` for a custom field.
    pub field: String,
    pub before: Value,
    pub after: Value,
}

/// Field-by-field difference between two snapshots, in a stable order, ignoring bookkeeping
/// (version numbers and update stamps change on every write and would drown the real changes).
pub fn diff(before: &Value, after: &Value) -> Vec<FieldChange> {
    let empty = Map::new();
    let before = before.as_object().unwrap_or(&empty);
    let after = after.as_object().unwrap_or(&empty);
    let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut changes = Vec::new();
    for key in keys {
        if BOOKKEEPING_KEYS.contains(&key.as_str()) {
            continue;
        }
        let old = before.get(key).unwrap_or(&Value::Null);
        let new = after.get(key).unwrap_or(&Value::Null);
        if key == "custom" {
            let old_custom = old.as_object().unwrap_or(&empty);
            let new_custom = new.as_object().unwrap_or(&empty);
            let mut custom_keys: Vec<&String> =
                old_custom.keys().chain(new_custom.keys()).collect();
            custom_keys.sort();
            custom_keys.dedup();
            for custom_key in custom_keys {
                let old_value = old_custom.get(custom_key).unwrap_or(&Value::Null);
                let new_value = new_custom.get(custom_key).unwrap_or(&Value::Null);
                if old_value != new_value {
                    changes.push(FieldChange {
                        field: format!("custom.{custom_key}"),
                        before: old_value.clone(),
                        after: new_value.clone(),
                    });
                }
            }
        } else if old != new && !(is_empty_value(old) && is_empty_value(new)) {
            changes.push(FieldChange {
                field: key.clone(),
                before: old.clone(),
                after: new.clone(),
            });
        }
    }
    changes
}

/// A missing tag list and an empty one mean the same thing to a person reading the history.
fn is_empty_value(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn contact(id: i64, name: &str) -> Record {
        let mut fields = Map::new();
        for def in Entity::Contact.fields() {
            fields.insert(def.name.into(), Value::Null);
        }
        fields.insert("name".into(), name.into());
        Record {
            entity: Entity::Contact,
            id,
            version: 1,
            owner_id: 1,
            fields,
            tags: vec![],
            custom: Map::new(),
            created_at: Timestamp(1),
            created_by: 1,
            updated_at: Timestamp(1),
            updated_by: 1,
            deleted: None,
        }
    }

    #[test]
    fn diff_names_each_changed_field_and_ignores_bookkeeping() {
        let before = contact(7, "张伟");
        let mut after = before.clone();
        after.version = 2;
        after.updated_at = Timestamp(99);
        after.fields.insert("email".into(), "zw@example.com".into());
        after.tags = vec!["vip".into()];
        after.custom.insert("region".into(), "华东".into());
        let changes = diff(&before.to_json(), &after.to_json());
        let fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["custom.region", "email", "tags"]);
        assert_eq!(changes[1].before, Value::Null);
        assert_eq!(changes[1].after, json!("zw@example.com"));
    }

    #[test]
    fn deleting_shows_as_a_change_of_deleted_at_only() {
        let before = contact(7, "Li Na");
        let mut after = before.clone();
        after.deleted = Some(Deletion {
            at: Timestamp(5),
            by: 1,
            root_entity: Entity::Contact,
            root_id: 7,
        });
        assert_eq!(after.changed_fields(Some(&before)), ["deleted_at"]);
    }

    #[test]
    fn a_new_record_reports_its_filled_fields() {
        let record = contact(1, "Wang");
        assert_eq!(record.changed_fields(None), ["name", "owner_id"]);
    }
}
