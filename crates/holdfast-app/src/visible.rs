//! Records as one actor may see them: the only form in which a record leaves the app layer.
//!
//! Field rules hide some fields from some users. Taking them out used to be a call each handler
//! had to remember, and write answers forgot it. Now every use case that hands a record to a
//! client hands a [`VisibleRecord`], which can only be built by [`VisibleRecord::of`] — the
//! redaction — and whose JSON leaves hidden fields out entirely (not even as `null`). The web
//! layer gets no other kind of record from the use cases.

use crate::records::redact;
use holdfast_domain::{Actor, Record};
use serde_json::Value;

/// A record with the fields its actor may not see taken out.
#[derive(Debug, Clone)]
pub struct VisibleRecord {
    record: Record,
    /// Fields the actor may not see: absent from `record` and from [`Self::to_json`].
    hidden: Vec<&'static str>,
}

impl VisibleRecord {
    /// The record as `actor` may see it.
    pub fn of(actor: &Actor, mut record: Record) -> VisibleRecord {
        let present: Vec<&'static str> = record
            .entity
            .fields()
            .iter()
            .map(|def| def.name)
            .filter(|name| record.fields.contains_key(*name))
            .collect();
        redact(actor, &mut record);
        let hidden = present
            .into_iter()
            .filter(|name| !record.fields.contains_key(*name))
            .collect();
        VisibleRecord { record, hidden }
    }

    /// The record as the API shows it, without the hidden fields.
    pub fn to_json(&self) -> Value {
        let mut json = self.record.to_json();
        if let Some(object) = json.as_object_mut() {
            for name in &self.hidden {
                object.remove(*name);
            }
        }
        json
    }

    /// The redacted record itself, for code that renders it field by field (the pages).
    pub fn into_record(self) -> Record {
        self.record
    }
}

impl std::ops::Deref for VisibleRecord {
    type Target = Record;

    /// The redacted record: hidden fields are not in it.
    fn deref(&self) -> &Record {
        &self.record
    }
}
