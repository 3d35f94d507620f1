//! The four kinds of customer record and the fields each one has.
//!
//! The field tables below are the single description of the customer schema: the store builds
//! its SQL from them, the API validates input with them, and the OpenAPI document is generated
//! from them. Adding a field means adding a row here and a migration that adds its column.

use serde::{Deserialize, Serialize};

/// A kind of customer record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    Company,
    Contact,
    Deal,
    Activity,
}

impl Entity {
    pub const ALL: [Entity; 4] = [
        Entity::Company,
        Entity::Contact,
        Entity::Deal,
        Entity::Activity,
    ];

    /// Singular name used in audit actions (`contact.update`) and error bodies.
    pub fn name(self) -> &'static str {
        match self {
            Entity::Company => "company",
            Entity::Contact => "contact",
            Entity::Deal => "deal",
            Entity::Activity => "activity",
        }
    }

    /// Plural name used in URLs and as the table name.
    pub fn plural(self) -> &'static str {
        match self {
            Entity::Company => "companies",
            Entity::Contact => "contacts",
            Entity::Deal => "deals",
            Entity::Activity => "activities",
        }
    }

    /// Small integer used in the index tables, where the entity repeats on millions of rows.
    pub fn code(self) -> i64 {
        match self {
            Entity::Company => 1,
            Entity::Contact => 2,
            Entity::Deal => 3,
            Entity::Activity => 4,
        }
    }

    pub fn from_name(name: &str) -> Option<Entity> {
        Entity::ALL.into_iter().find(|e| e.name() == name)
    }

    /// A record named as `KIND:ID` (`contact:12` or `contacts:12`), as people type it in
    /// forms, API bodies and on the command line.
    pub fn parse_ref(text: &str) -> Option<(Entity, i64)> {
        let (kind, id) = text.trim().split_once(':')?;
        let entity = Entity::from_name(kind).or_else(|| Entity::from_plural(kind))?;
        let id = id.parse::<i64>().ok().filter(|id| *id > 0)?;
        Some((entity, id))
    }

    pub fn from_plural(plural: &str) -> Option<Entity> {
        Entity::ALL.into_iter().find(|e| e.plural() == plural)
    }

    pub fn from_code(code: i64) -> Option<Entity> {
        Entity::ALL.into_iter().find(|e| e.code() == code)
    }

    pub fn fields(self) -> &'static [FieldDef] {
        match self {
            Entity::Company => COMPANY_FIELDS,
            Entity::Contact => CONTACT_FIELDS,
            Entity::Deal => DEAL_FIELDS,
            Entity::Activity => ACTIVITY_FIELDS,
        }
    }

    pub fn field(self, name: &str) -> Option<&'static FieldDef> {
        self.fields().iter().find(|f| f.name == name)
    }

    /// The field shown as the record's title in lists, the recycle bin and audit entries.
    pub fn title_field(self) -> &'static str {
        match self {
            Entity::Activity => "subject",
            _ => "name",
        }
    }

    /// Columns a list may be sorted by, besides `updated_at` and `created_at`. All are NOT NULL so
    /// keyset pagination never meets a NULL.
    pub fn sortable(self) -> &'static [&'static str] {
        match self {
            Entity::Company | Entity::Contact => &["name"],
            Entity::Deal => &["name", "amount_minor"],
            Entity::Activity => &["subject"],
        }
    }

    /// Records of other kinds that are moved to the recycle bin together with a record of this
    /// kind, as (kind, referencing field). Activities hang off whatever they were logged on; a
    /// company takes its contacts and deals along, so nothing is left pointing at a binned company.
    pub fn dependents(self) -> &'static [(Entity, &'static str)] {
        match self {
            Entity::Company => &[
                (Entity::Contact, "company_id"),
                (Entity::Deal, "company_id"),
                (Entity::Activity, "company_id"),
            ],
            Entity::Contact => &[(Entity::Activity, "contact_id")],
            Entity::Deal => &[(Entity::Activity, "deal_id")],
            Entity::Activity => &[],
        }
    }
}

impl std::fmt::Display for Entity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a field's value is checked, stored and searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// One line of text, trimmed, at most `max` characters.
    Text {
        max: usize,
    },
    /// Free text that keeps its line breaks.
    LongText {
        max: usize,
    },
    Email,
    /// A phone number as people write it (`+86 138-0013-8000`); searchable by any 4+ digits.
    Phone,
    /// A whole number with a lower bound; money is stored in integer minor units (分 for CNY).
    Integer {
        min: i64,
    },
    /// Three capital letters, ISO 4217 style.
    Currency,
    /// `YYYY-MM-DD`.
    Date,
    /// RFC 3339 on input and output, UTC microseconds in storage.
    Timestamp,
    /// The id of another live record of that kind.
    Ref(Entity),
    /// One of a fixed list of values.
    Choice(&'static [&'static str]),
}

impl FieldKind {
    /// Whether the store keeps it as an integer column (otherwise as text).
    pub fn is_integer(self) -> bool {
        matches!(
            self,
            FieldKind::Integer { .. } | FieldKind::Timestamp | FieldKind::Ref(_)
        )
    }
}

/// How a field feeds the search index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Searchable {
    No,
    /// Words, and for Chinese text single characters and character pairs.
    Text,
    /// Digit groups: any run of 4 or more digits finds the number.
    Phone,
}

/// One field of an entity.
#[derive(Debug, Clone, Copy)]
pub struct FieldDef {
    pub name: &'static str,
    pub kind: FieldKind,
    pub required: bool,
    /// Filled in on create when the client sends nothing.
    pub default: Option<Default>,
    pub search: Searchable,
    /// One line for the API document.
    pub doc: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Default {
    Text(&'static str),
    Integer(i64),
}

const fn field(name: &'static str, kind: FieldKind, doc: &'static str) -> FieldDef {
    FieldDef {
        name,
        kind,
        required: false,
        default: None,
        search: Searchable::No,
        doc,
    }
}

const fn required(mut def: FieldDef) -> FieldDef {
    def.required = true;
    def
}

const fn searchable(mut def: FieldDef, search: Searchable) -> FieldDef {
    def.search = search;
    def
}

const fn with_default(mut def: FieldDef, default: Default) -> FieldDef {
    def.default = Some(default);
    def
}

const NAME_MAX: usize = 200;
const NOTES_MAX: usize = 20_000;

pub const DEAL_STATUSES: &[&str] = &["open", "won", "lost"];
pub const ACTIVITY_KINDS: &[&str] = &["note", "task", "call", "meeting"];

static COMPANY_FIELDS: &[FieldDef] = &[
    required(searchable(
        field("name", FieldKind::Text { max: NAME_MAX }, "Company name"),
        Searchable::Text,
    )),
    field("industry", FieldKind::Text { max: 100 }, "Industry"),
    field("website", FieldKind::Text { max: 500 }, "Web address"),
    searchable(
        field("email", FieldKind::Email, "General e-mail address"),
        Searchable::Text,
    ),
    searchable(
        field("phone", FieldKind::Phone, "Main phone number"),
        Searchable::Phone,
    ),
    field("address", FieldKind::Text { max: 500 }, "Postal address"),
    field(
        "notes",
        FieldKind::LongText { max: NOTES_MAX },
        "Free notes",
    ),
];

static CONTACT_FIELDS: &[FieldDef] = &[
    required(searchable(
        field("name", FieldKind::Text { max: NAME_MAX }, "Full name"),
        Searchable::Text,
    )),
    field(
        "company_id",
        FieldKind::Ref(Entity::Company),
        "The company this person works for",
    ),
    field("title", FieldKind::Text { max: 100 }, "Job title"),
    searchable(
        field("email", FieldKind::Email, "E-mail address"),
        Searchable::Text,
    ),
    searchable(
        field("phone", FieldKind::Phone, "Office phone"),
        Searchable::Phone,
    ),
    searchable(
        field("mobile", FieldKind::Phone, "Mobile phone"),
        Searchable::Phone,
    ),
    searchable(
        field("wechat", FieldKind::Text { max: 100 }, "WeChat ID"),
        Searchable::Text,
    ),
    field("address", FieldKind::Text { max: 500 }, "Postal address"),
    field(
        "notes",
        FieldKind::LongText { max: NOTES_MAX },
        "Free notes",
    ),
];

static DEAL_FIELDS: &[FieldDef] = &[
    required(searchable(
        field("name", FieldKind::Text { max: NAME_MAX }, "Deal title"),
        Searchable::Text,
    )),
    field(
        "company_id",
        FieldKind::Ref(Entity::Company),
        "The customer company",
    ),
    field(
        "contact_id",
        FieldKind::Ref(Entity::Contact),
        "The main contact person",
    ),
    required(with_default(
        field(
            "amount_minor",
            FieldKind::Integer { min: 0 },
            "Amount in minor units (fen for CNY): 12345 is 123.45",
        ),
        Default::Integer(0),
    )),
    required(with_default(
        field("currency", FieldKind::Currency, "ISO 4217 currency code"),
        Default::Text("CNY"),
    )),
    required(with_default(
        field(
            "pipeline",
            FieldKind::Text { max: 50 },
            "Pipeline key; see /api/v1/pipelines",
        ),
        Default::Text("default"),
    )),
    required(field(
        "stage",
        FieldKind::Text { max: 50 },
        "Stage within the pipeline; defaults to the pipeline's first stage",
    )),
    required(with_default(
        field(
            "status",
            FieldKind::Choice(DEAL_STATUSES),
            "open, won or lost",
        ),
        Default::Text("open"),
    )),
    field(
        "closed_reason",
        FieldKind::Text { max: 500 },
        "Why the deal was won or lost; required when lost",
    ),
    field(
        "expected_close_date",
        FieldKind::Date,
        "Expected close date, YYYY-MM-DD",
    ),
    field(
        "notes",
        FieldKind::LongText { max: NOTES_MAX },
        "Free notes",
    ),
];

static ACTIVITY_FIELDS: &[FieldDef] = &[
    required(field(
        "kind",
        FieldKind::Choice(ACTIVITY_KINDS),
        "note, task, call or meeting",
    )),
    required(searchable(
        field("subject", FieldKind::Text { max: 300 }, "Short summary"),
        Searchable::Text,
    )),
    field("body", FieldKind::LongText { max: NOTES_MAX }, "Details"),
    field("due_at", FieldKind::Timestamp, "When it is due (RFC 3339)"),
    field(
        "done_at",
        FieldKind::Timestamp,
        "When it was done (RFC 3339); empty while open",
    ),
    field(
        "company_id",
        FieldKind::Ref(Entity::Company),
        "Linked company",
    ),
    field(
        "contact_id",
        FieldKind::Ref(Entity::Contact),
        "Linked contact",
    ),
    field("deal_id", FieldKind::Ref(Entity::Deal), "Linked deal"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_named_kind_colon_id() {
        assert_eq!(Entity::parse_ref("contact:12"), Some((Entity::Contact, 12)));
        assert_eq!(Entity::parse_ref(" deals:7 "), Some((Entity::Deal, 7)));
        for wrong in [
            "contact",
            "contact:",
            "contact:0",
            "contact:-3",
            "ship:1",
            "12",
            "contact:x",
        ] {
            assert_eq!(Entity::parse_ref(wrong), None, "{wrong}");
        }
    }

    #[test]
    fn names_codes_and_plurals_round_trip() {
        for entity in Entity::ALL {
            assert_eq!(Entity::from_name(entity.name()), Some(entity));
            assert_eq!(Entity::from_plural(entity.plural()), Some(entity));
            assert_eq!(Entity::from_code(entity.code()), Some(entity));
            assert!(
                entity.field(entity.title_field()).is_some(),
                "{entity} has a title field"
            );
            for sort in entity.sortable() {
                assert!(
                    entity.field(sort).is_some_and(|f| f.required),
                    "{entity}.{sort} is NOT NULL"
                );
            }
            for (dependent, via) in entity.dependents() {
                assert_eq!(
                    dependent.field(via).map(|f| f.kind),
                    Some(FieldKind::Ref(entity))
                );
            }
        }
    }

    #[test]
    fn field_names_are_unique_and_never_shadow_record_metadata() {
        let reserved = crate::record::RESERVED_KEYS;
        for entity in Entity::ALL {
            let mut seen = std::collections::BTreeSet::new();
            for def in entity.fields() {
                assert!(seen.insert(def.name), "{entity}.{} twice", def.name);
                assert!(
                    !reserved.contains(&def.name),
                    "{entity}.{} is reserved",
                    def.name
                );
            }
        }
    }
}
