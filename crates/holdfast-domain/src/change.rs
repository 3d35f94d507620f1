//! Turning a client's JSON into a validated change, and applying it to a record.
//!
//! Parsing collects every problem in the input (so a form can show them all at once) and changes
//! nothing; only a fully valid [`Patch`] can be applied. Checks that need the database (that a
//! referenced company exists, that a stage belongs to its pipeline) are the app's, after this.

use crate::entity::{Default, Entity, FieldDef, FieldKind};
use crate::error::FieldErrors;
use crate::record::{RESERVED_KEYS, Record};
use crate::time::{Timestamp, is_valid_date};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub const MAX_TAGS: usize = 50;
pub const MAX_TAG_CHARS: usize = 50;
pub const MAX_REASON_CHARS: usize = 500;
pub const MAX_CUSTOM_TEXT_CHARS: usize = 1000;

/// Whether the input creates a record or changes an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchMode {
    Create,
    Update,
}

/// A validated change to one record's content. Keys absent from the input are absent here and
/// keep their current value; `Null` clears an optional field.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Patch {
    pub fields: Map<String, Value>,
    pub owner_id: Option<i64>,
    pub tags: Option<Vec<String>>,
    /// Custom values to set; `Null` removes the value.
    pub custom: Map<String, Value>,
    pub reason: Option<String>,
    /// The version the client based its change on; required for updates.
    pub expected_version: Option<i64>,
}

/// An administrator-defined extra field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomFieldDef {
    pub id: i64,
    pub entity: Entity,
    /// Stable key under `custom` in records; never reused for another meaning.
    pub key: String,
    pub label: String,
    pub kind: CustomFieldKind,
    /// The allowed values of a `select` field.
    pub options: Vec<String>,
    /// Archived fields accept no new values but keep the values records already have.
    pub archived: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CustomFieldKind {
    Text,
    Number,
    Date,
    Select,
}

impl CustomFieldKind {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "text" => Some(Self::Text),
            "number" => Some(Self::Number),
            "date" => Some(Self::Date),
            "select" => Some(Self::Select),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Number => "number",
            Self::Date => "date",
            Self::Select => "select",
        }
    }
}

impl Patch {
    /// Parses and validates a JSON body. Every key must be a field of `entity`, `owner_id`,
    /// `tags`, `custom`, `reason` or (updates only) `expected_version`.
    pub fn parse(
        entity: Entity,
        input: &Value,
        mode: PatchMode,
        custom_defs: &[CustomFieldDef],
    ) -> Result<Patch, FieldErrors> {
        let mut errors = FieldErrors::default();
        let Some(object) = input.as_object() else {
            return Err(FieldErrors::single(
                "body",
                "not_an_object",
                "The body must be a JSON object",
            ));
        };
        let mut patch = Patch::default();
        for (key, value) in object {
            if let Some(def) = entity.field(key) {
                match canonical(def, value) {
                    Ok(value) => {
                        patch.fields.insert(key.clone(), value);
                    }
                    Err((code, message)) => errors.push(key.as_str(), code, message),
                }
                continue;
            }
            match key.as_str() {
                "owner_id" => match value.as_i64() {
                    Some(id) if id > 0 => patch.owner_id = Some(id),
                    _ => errors.push("owner_id", "invalid_id", "Must be the id of a user (a positive whole number)"),
                },
                "tags" => match parse_tags(value) {
                    Ok(tags) => patch.tags = Some(tags),
                    Err((code, message)) => errors.push("tags", code, message),
                },
                "custom" => parse_custom(entity, value, custom_defs, &mut patch.custom, &mut errors),
                "reason" => match value {
                    Value::Null => {}
                    Value::String(text) if text.chars().count() <= MAX_REASON_CHARS => {
                        let text = text.trim();
                        if !text.is_empty() {
                            patch.reason = Some(text.to_owned());
                        }
                    }
                    Value::String(_) => {
                        errors.push("reason", "too_long", format!("At most {MAX_REASON_CHARS} characters"))
                    }
                    _ => errors.push("reason", "wrong_type", "Must be text"),
                },
                "expected_version" if mode == PatchMode::Update => match value.as_i64() {
                    Some(version) if version > 0 => patch.expected_version = Some(version),
                    _ => errors.push(
                        "expected_version",
                        "invalid_version",
                        "Must be the record's version number you last read (a positive whole number)",
                    ),
                },
                "expected_version" => {
                    errors.push("expected_version", "not_allowed", "A new record has no version to expect")
                }
                other if RESERVED_KEYS.contains(&other) => errors.push(
                    other,
                    "read_only",
                    "Set by Holdfast; it cannot be changed directly. Leave it out of the request",
                ),
                other => errors.push(
                    other,
                    "unknown_field",
                    format!(
                        "A {} has no field '{}'. Its fields are: {}, plus owner_id, tags, custom and reason",
                        entity.name(),
                        truncate(other, 60),
                        entity.fields().iter().map(|f| f.name).collect::<Vec<_>>().join(", ")
                    ),
                ),
            }
        }
        if mode == PatchMode::Create {
            // Report missing required fields now, with the other mistakes, not one round later.
            for def in entity
                .fields()
                .iter()
                .filter(|d| d.required && d.default.is_none() && d.name != "stage")
            {
                if patch.fields.get(def.name).is_none_or(Value::is_null)
                    && !errors.0.iter().any(|e| e.field == def.name)
                {
                    errors.push(def.name, "required", "This field is required");
                }
            }
        }
        if mode == PatchMode::Update
            && patch.expected_version.is_none()
            && !object.contains_key("expected_version")
        {
            errors.push(
                "expected_version",
                "required",
                "Send the version you last read, so a change made meanwhile by someone else is not overwritten",
            );
        }
        errors.into_result()?;
        Ok(patch)
    }

    /// The content of a stored snapshot as a patch, for "restore this version". Custom values
    /// that the snapshot lacks are cleared so the result matches the snapshot exactly.
    pub fn from_snapshot(entity: Entity, snapshot: &Value, current: &Record) -> Patch {
        let mut patch = Patch::default();
        for def in entity.fields() {
            patch.fields.insert(
                def.name.into(),
                snapshot.get(def.name).cloned().unwrap_or(Value::Null),
            );
        }
        patch.owner_id = snapshot.get("owner_id").and_then(Value::as_i64);
        patch.tags = Some(
            snapshot
                .get("tags")
                .and_then(Value::as_array)
                .map(|tags| {
                    tags.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
        );
        let old_custom = snapshot
            .get("custom")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for key in current.custom.keys() {
            patch.custom.insert(key.clone(), Value::Null);
        }
        patch.custom.extend(old_custom);
        patch
    }

    /// Builds the record this patch produces. `before` is `None` on create, when defaults fill
    /// in whatever the client left out. The result still needs [`validate_record`].
    pub fn apply(
        &self,
        entity: Entity,
        before: Option<&Record>,
        actor_id: i64,
        now: Timestamp,
    ) -> Record {
        let mut record = match before {
            Some(before) => before.clone(),
            None => Record {
                entity,
                id: 0,
                version: 0,
                owner_id: actor_id,
                fields: entity
                    .fields()
                    .iter()
                    .map(|def| (def.name.to_owned(), default_value(def)))
                    .collect(),
                tags: Vec::new(),
                custom: Map::new(),
                created_at: now,
                created_by: actor_id,
                updated_at: now,
                updated_by: actor_id,
                deleted: None,
            },
        };
        for (key, value) in &self.fields {
            let value = match (value, entity.field(key).and_then(|def| def.default)) {
                // Clearing a field with a default puts the default back rather than leaving a hole.
                (Value::Null, Some(default)) if before.is_none() => default_to_value(default),
                _ => value.clone(),
            };
            record.fields.insert(key.clone(), value);
        }
        if let Some(owner_id) = self.owner_id {
            record.owner_id = owner_id;
        }
        if let Some(tags) = &self.tags {
            record.tags = tags.clone();
        }
        for (key, value) in &self.custom {
            if value.is_null() {
                record.custom.remove(key);
            } else {
                record.custom.insert(key.clone(), value.clone());
            }
        }
        record.next_version(actor_id, now)
    }
}

/// Rules about the record as a whole: required fields, and rules that involve two fields.
pub fn validate_record(record: &Record) -> Result<(), FieldErrors> {
    let mut errors = FieldErrors::default();
    for def in record.entity.fields() {
        if def.required && record.fields.get(def.name).is_none_or(Value::is_null) {
            errors.push(def.name, "required", "This field is required");
        }
    }
    if record.entity == Entity::Deal
        && record.field_str("status") == Some("lost")
        && record
            .fields
            .get("closed_reason")
            .is_none_or(Value::is_null)
    {
        errors.push(
            "closed_reason",
            "required",
            "Say why the deal was lost; it helps the next one",
        );
    }
    errors.into_result()
}

fn default_value(def: &FieldDef) -> Value {
    def.default.map(default_to_value).unwrap_or(Value::Null)
}

fn default_to_value(default: Default) -> Value {
    match default {
        Default::Text(text) => Value::String(text.to_owned()),
        Default::Integer(number) => Value::from(number),
    }
}

type Problem = (&'static str, String);

fn wrong_type(expected: &str) -> Problem {
    ("wrong_type", format!("Must be {expected}"))
}

/// Checks one field value and returns it in canonical form (trimmed text, UTC timestamps, …).
pub fn canonical(def: &FieldDef, value: &Value) -> Result<Value, Problem> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    match def.kind {
        FieldKind::Text { max } => single_line(value, max),
        FieldKind::LongText { max } => {
            let text = value.as_str().ok_or_else(|| wrong_type("text"))?;
            let text = text.trim();
            check_length(text, max)?;
            if text
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
            {
                return Err(("invalid_characters", "Contains control characters".into()));
            }
            Ok(non_empty(text))
        }
        FieldKind::Email => {
            let text = single_line(value, 254)?;
            if let Value::String(email) = &text
                && !is_plausible_email(email)
            {
                return Err((
                    "invalid_email",
                    "Not an e-mail address; expected something like name@example.com".into(),
                ));
            }
            Ok(text)
        }
        FieldKind::Phone => {
            let text = single_line(value, 50)?;
            if let Value::String(phone) = &text {
                let allowed = |c: char| c.is_ascii_digit() || " +-().#/x".contains(c) || c == 'X';
                let digits = phone.chars().filter(char::is_ascii_digit).count();
                if !phone.chars().all(allowed) || digits < 3 {
                    return Err((
                        "invalid_phone",
                        "Not a phone number; use digits with optional + - ( ) and spaces, e.g. +86 138 0013 8000".into(),
                    ));
                }
            }
            Ok(text)
        }
        FieldKind::Integer { min } => {
            let number = value.as_i64().ok_or_else(|| wrong_type("a whole number"))?;
            if number < min {
                return Err(("too_small", format!("Must be at least {min}")));
            }
            Ok(Value::from(number))
        }
        FieldKind::Currency => {
            let text = value
                .as_str()
                .ok_or_else(|| wrong_type("a currency code such as CNY"))?
                .trim();
            if text.len() != 3 || !text.chars().all(|c| c.is_ascii_alphabetic()) {
                return Err((
                    "invalid_currency",
                    "Must be a three-letter currency code such as CNY or USD".into(),
                ));
            }
            Ok(Value::String(text.to_ascii_uppercase()))
        }
        FieldKind::Date => {
            let text = value
                .as_str()
                .ok_or_else(|| wrong_type("a date (YYYY-MM-DD)"))?
                .trim();
            if !is_valid_date(text) {
                return Err((
                    "invalid_date",
                    "Must be a calendar date written YYYY-MM-DD".into(),
                ));
            }
            Ok(Value::String(text.to_owned()))
        }
        FieldKind::Timestamp => {
            let text = value
                .as_str()
                .ok_or_else(|| wrong_type("a time (RFC 3339)"))?;
            let instant = Timestamp::parse_rfc3339(text).ok_or((
                "invalid_time",
                "Must be a date and time with an offset, e.g. 2026-12-01T09:30:00+08:00".to_owned(),
            ))?;
            Ok(Value::String(instant.to_rfc3339()))
        }
        FieldKind::Ref(target) => match value.as_i64() {
            Some(id) if id > 0 => Ok(Value::from(id)),
            _ => Err((
                "invalid_id",
                format!(
                    "Must be the id of a {} (a positive whole number)",
                    target.name()
                ),
            )),
        },
        FieldKind::Choice(options) => {
            let text = value.as_str().ok_or_else(|| wrong_type("text"))?.trim();
            if !options.contains(&text) {
                return Err((
                    "invalid_choice",
                    format!("Must be one of: {}", options.join(", ")),
                ));
            }
            Ok(Value::String(text.to_owned()))
        }
    }
}

fn single_line(value: &Value, max: usize) -> Result<Value, Problem> {
    let text = value.as_str().ok_or_else(|| wrong_type("text"))?;
    let text = text.trim();
    check_length(text, max)?;
    if text.chars().any(char::is_control) {
        return Err((
            "invalid_characters",
            "Must be one line without control characters".into(),
        ));
    }
    Ok(non_empty(text))
}

fn check_length(text: &str, max: usize) -> Result<(), Problem> {
    if text.chars().count() > max {
        return Err(("too_long", format!("At most {max} characters")));
    }
    Ok(())
}

fn non_empty(text: &str) -> Value {
    if text.is_empty() {
        Value::Null
    } else {
        Value::String(text.to_owned())
    }
}

fn is_plausible_email(email: &str) -> bool {
    let Some((local, domain)) = email.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && domain.contains('.')
        && !email.contains(char::is_whitespace)
        && !domain.contains('@')
}

fn parse_tags(value: &Value) -> Result<Vec<String>, Problem> {
    let items = value
        .as_array()
        .ok_or_else(|| wrong_type("a list of tags"))?;
    if items.len() > MAX_TAGS {
        return Err(("too_many", format!("At most {MAX_TAGS} tags")));
    }
    let mut tags = Vec::with_capacity(items.len());
    for item in items {
        let tag = item
            .as_str()
            .ok_or_else(|| wrong_type("a list of text tags"))?
            .trim();
        if tag.is_empty()
            || tag.chars().count() > MAX_TAG_CHARS
            || tag.chars().any(char::is_control)
        {
            return Err((
                "invalid_tag",
                format!("Each tag is 1 to {MAX_TAG_CHARS} characters on one line"),
            ));
        }
        tags.push(tag.to_owned());
    }
    tags.sort();
    tags.dedup();
    Ok(tags)
}

fn parse_custom(
    entity: Entity,
    value: &Value,
    defs: &[CustomFieldDef],
    out: &mut Map<String, Value>,
    errors: &mut FieldErrors,
) {
    let Some(object) = value.as_object() else {
        errors.push(
            "custom",
            "wrong_type",
            "Must be an object of custom field values",
        );
        return;
    };
    for (key, value) in object {
        let field = format!("custom.{}", truncate(key, 60));
        let Some(def) = defs.iter().find(|d| d.entity == entity && &d.key == key) else {
            errors.push(
                field,
                "unknown_field",
                format!(
                    "No custom field '{}' is defined for {}; an administrator can add it",
                    truncate(key, 60),
                    entity.plural()
                ),
            );
            continue;
        };
        if value.is_null() {
            out.insert(key.clone(), Value::Null);
            continue;
        }
        if def.archived {
            errors.push(
                field,
                "archived",
                "This custom field is archived and takes no new values",
            );
            continue;
        }
        let checked = match def.kind {
            CustomFieldKind::Text => match value.as_str() {
                Some(text) if text.chars().count() <= MAX_CUSTOM_TEXT_CHARS => {
                    Ok(Value::String(text.trim().to_owned()))
                }
                Some(_) => Err((
                    "too_long",
                    format!("At most {MAX_CUSTOM_TEXT_CHARS} characters"),
                )),
                None => Err(wrong_type("text")),
            },
            CustomFieldKind::Number => match value.as_f64() {
                Some(number) if number.is_finite() && value.is_number() => Ok(value.clone()),
                _ => Err(wrong_type("a number")),
            },
            CustomFieldKind::Date => match value.as_str() {
                Some(text) if is_valid_date(text.trim()) => {
                    Ok(Value::String(text.trim().to_owned()))
                }
                _ => Err((
                    "invalid_date",
                    "Must be a calendar date written YYYY-MM-DD".to_owned(),
                )),
            },
            CustomFieldKind::Select => match value.as_str() {
                Some(text) if def.options.iter().any(|o| o == text) => {
                    Ok(Value::String(text.to_owned()))
                }
                _ => Err((
                    "invalid_choice",
                    format!("Must be one of: {}", def.options.join(", ")),
                )),
            },
        };
        match checked {
            Ok(value) => {
                out.insert(key.clone(), value);
            }
            Err((code, message)) => errors.push(field, code, message),
        }
    }
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn codes(result: Result<Patch, FieldErrors>) -> Vec<(String, &'static str)> {
        result
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| (e.field, e.code))
            .collect()
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let input = json!({
            "name": "x".repeat(201),
            "email": "not-an-email",
            "phone": "call me",
            "company_id": -3,
            "nmae": "typo",
            "version": 4,
        });
        let mut found = codes(Patch::parse(
            Entity::Contact,
            &input,
            PatchMode::Create,
            &[],
        ));
        found.sort();
        assert_eq!(
            found,
            [
                ("company_id".to_owned(), "invalid_id"),
                ("email".to_owned(), "invalid_email"),
                ("name".to_owned(), "too_long"),
                ("nmae".to_owned(), "unknown_field"),
                ("phone".to_owned(), "invalid_phone"),
                ("version".to_owned(), "read_only"),
            ]
        );
    }

    #[test]
    fn values_are_canonicalised() {
        let input = json!({"name": "  张伟 ", "currency": "usd", "amount_minor": 0, "tags": ["b", "a", "b"]});
        let patch = Patch::parse(Entity::Deal, &input, PatchMode::Create, &[]).unwrap();
        assert_eq!(patch.fields["name"], json!("张伟"));
        assert_eq!(patch.fields["currency"], json!("USD"));
        assert_eq!(patch.tags, Some(vec!["a".to_owned(), "b".to_owned()]));
        let time =
            json!({"kind": "task", "subject": "Call", "due_at": "2026-12-01T09:30:00+08:00"});
        let patch = Patch::parse(Entity::Activity, &time, PatchMode::Create, &[]).unwrap();
        assert_eq!(patch.fields["due_at"], json!("2026-12-01T01:30:00Z"));
    }

    #[test]
    fn updates_must_name_the_version_they_are_based_on() {
        let found = codes(Patch::parse(
            Entity::Company,
            &json!({"name": "Acme"}),
            PatchMode::Update,
            &[],
        ));
        assert_eq!(found, [("expected_version".to_owned(), "required")]);
        let found = codes(Patch::parse(
            Entity::Company,
            &json!({"name": "Acme", "expected_version": 1}),
            PatchMode::Create,
            &[],
        ));
        assert_eq!(found, [("expected_version".to_owned(), "not_allowed")]);
    }

    #[test]
    fn negative_amounts_and_wrong_types_are_refused() {
        let input = json!({"name": "Big deal", "amount_minor": -1, "status": "maybe", "expected_close_date": "2026-13-01"});
        let mut found = codes(Patch::parse(Entity::Deal, &input, PatchMode::Create, &[]));
        found.sort();
        assert_eq!(
            found,
            [
                ("amount_minor".to_owned(), "too_small"),
                ("expected_close_date".to_owned(), "invalid_date"),
                ("status".to_owned(), "invalid_choice"),
            ]
        );
        let found = codes(Patch::parse(
            Entity::Deal,
            &json!({"name": "x", "amount_minor": "100"}),
            PatchMode::Create,
            &[],
        ));
        assert_eq!(found, [("amount_minor".to_owned(), "wrong_type")]);
    }

    #[test]
    fn custom_values_follow_their_definition() {
        let defs = [CustomFieldDef {
            id: 1,
            entity: Entity::Company,
            key: "tier".into(),
            label: "Tier".into(),
            kind: CustomFieldKind::Select,
            options: vec!["A".into(), "B".into()],
            archived: false,
        }];
        let ok = Patch::parse(
            Entity::Company,
            &json!({"name": "T", "custom": {"tier": "A"}}),
            PatchMode::Create,
            &defs,
        )
        .unwrap();
        assert_eq!(ok.custom["tier"], json!("A"));
        let found = codes(Patch::parse(
            Entity::Company,
            &json!({"name": "T", "custom": {"tier": "Z", "x": 1}}),
            PatchMode::Create,
            &defs,
        ));
        assert_eq!(
            found,
            [
                ("custom.tier".to_owned(), "invalid_choice"),
                ("custom.x".to_owned(), "unknown_field")
            ]
        );
    }

    #[test]
    fn defaults_fill_a_new_record_and_rules_span_fields() {
        let patch = Patch::parse(
            Entity::Deal,
            &json!({"name": "Expansion", "stage": "lead"}),
            PatchMode::Create,
            &[],
        )
        .unwrap();
        let deal = patch.apply(Entity::Deal, None, 7, Timestamp(10));
        assert_eq!(deal.fields["currency"], json!("CNY"));
        assert_eq!(deal.fields["status"], json!("open"));
        assert_eq!((deal.version, deal.owner_id), (1, 7));
        validate_record(&deal).unwrap();
        let lost = Patch::parse(
            Entity::Deal,
            &json!({"status": "lost", "expected_version": 1}),
            PatchMode::Update,
            &[],
        )
        .unwrap();
        let lost = lost.apply(Entity::Deal, Some(&deal), 7, Timestamp(11));
        assert_eq!(lost.version, 2);
        let errors = validate_record(&lost).unwrap_err();
        assert_eq!(errors.0[0].field, "closed_reason");
    }
}
