//! Holdfast's customer data model, as pure functions and plain data.
//!
//! What lives here: the entities and their field rules ([`entity`]), turning client input into a
//! validated change ([`change`]), the differences between two versions of a record ([`record`]),
//! the search terms a record is found by ([`search`]), and who may do what ([`access`]).
//!
//! What never lives here: IO of any kind. No SQL, no HTTP, no clock: callers pass times in. That
//! keeps every rule testable as a table and lets the store and the web layer share one truth.

pub mod access;
pub mod change;
pub mod entity;
pub mod error;
pub mod record;
pub mod revert;
pub mod search;
pub mod time;

pub use access::{
    AccessConfig, Action, Actor, ActorKind, Denial, Explanation, Module, RecordRef, Right, RoleDef,
    Scope, Target,
};
pub use change::{CustomFieldDef, CustomFieldKind, Patch, PatchMode};
pub use entity::{Entity, FieldDef, FieldKind};
pub use error::{FieldError, FieldErrors};
pub use record::{Deletion, FieldChange, Record};
pub use time::Timestamp;
