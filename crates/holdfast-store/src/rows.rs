//! Mapping between table rows and domain types, and a small parameter list for built SQL.
//!
//! Record tables are described by the entity field tables in `holdfast-domain`, so the same
//! code reads and writes all four of them; the migration test checks the columns exist.

use crate::snapshot::TableSpec;
use anyhow::Context as _;
use holdfast_domain::entity::FieldKind;
use holdfast_domain::{Deletion, Entity, Record, Timestamp};
use serde_json::{Map, Value};
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, Row as _};

/// Columns every record table has, before the entity's own fields.
pub(crate) const META_COLUMNS: &[&str] = &[
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
    "deleted_root_entity",
    "deleted_root_id",
];

/// A bound value, kept so built SQL can collect its parameters before binding them in order.
#[derive(Debug, Clone)]
pub(crate) enum Param {
    Int(Option<i64>),
    Text(Option<String>),
}

/// Parameters of one statement; `push` returns the placeholder to splice into the SQL.
#[derive(Debug, Default)]
pub(crate) struct Params(pub Vec<Param>);

impl Params {
    pub fn push(&mut self, param: Param) -> String {
        self.0.push(param);
        format!("${}", self.0.len())
    }

    pub fn int(&mut self, value: i64) -> String {
        self.push(Param::Int(Some(value)))
    }

    pub fn text(&mut self, value: impl Into<String>) -> String {
        self.push(Param::Text(Some(value.into())))
    }

    pub fn bind<'q>(
        &self,
        mut query: Query<'q, Any, AnyArguments<'q>>,
    ) -> Query<'q, Any, AnyArguments<'q>> {
        for param in &self.0 {
            query = match param {
                Param::Int(value) => query.bind(*value),
                Param::Text(value) => query.bind(value.clone()),
            };
        }
        query
    }
}

/// All columns of an entity's table, `id` first.
pub(crate) fn columns(entity: Entity) -> Vec<&'static str> {
    let mut columns = vec!["id"];
    columns.extend_from_slice(META_COLUMNS);
    columns.extend(entity.fields().iter().map(|def| def.name));
    columns
}

pub(crate) fn select_list(entity: Entity) -> String {
    columns(entity).join(", ")
}

/// The values of every column but `id`, in [`META_COLUMNS`]-then-fields order.
pub(crate) fn record_params(record: &Record) -> anyhow::Result<Vec<Param>> {
    let mut params = vec![
        Param::Int(Some(record.version)),
        Param::Int(Some(record.owner_id)),
        Param::Text(Some(serde_json::to_string(&record.tags)?)),
        Param::Text(Some(serde_json::to_string(&record.custom)?)),
        Param::Int(Some(record.created_at.micros())),
        Param::Int(Some(record.created_by)),
        Param::Int(Some(record.updated_at.micros())),
        Param::Int(Some(record.updated_by)),
        Param::Int(record.deleted.map(|d| d.at.micros())),
        Param::Int(record.deleted.map(|d| d.by)),
        Param::Text(record.deleted.map(|d| d.root_entity.name().to_owned())),
        Param::Int(record.deleted.map(|d| d.root_id)),
    ];
    for def in record.entity.fields() {
        let value = record.fields.get(def.name).unwrap_or(&Value::Null);
        params.push(match def.kind {
            FieldKind::Timestamp => Param::Int(match value {
                Value::String(text) => Some(
                    Timestamp::parse_rfc3339(text)
                        .with_context(|| {
                            format!("{}.{} holds an unparsable time", record.entity, def.name)
                        })?
                        .micros(),
                ),
                _ => None,
            }),
            kind if kind.is_integer() => Param::Int(value.as_i64()),
            _ => Param::Text(value.as_str().map(str::to_owned)),
        });
    }
    Ok(params)
}

/// Column values by name, from a database row or from a backup's row.
trait Cells {
    fn int(&self, column: &str) -> anyhow::Result<Option<i64>>;
    fn text(&self, column: &str) -> anyhow::Result<Option<String>>;
}

impl Cells for AnyRow {
    fn int(&self, column: &str) -> anyhow::Result<Option<i64>> {
        Ok(self.try_get::<Option<i64>, _>(column)?)
    }

    fn text(&self, column: &str) -> anyhow::Result<Option<String>> {
        Ok(self.try_get::<Option<String>, _>(column)?)
    }
}

/// A backup's row: values in the order of its table layout's columns.
struct BackupCells<'a> {
    table: &'a TableSpec,
    row: &'a [Value],
}

impl BackupCells<'_> {
    fn get(&self, column: &str) -> anyhow::Result<&Value> {
        self.table
            .columns
            .iter()
            .position(|c| c.name == column)
            .and_then(|index| self.row.get(index))
            .with_context(|| format!("the backup's {} rows have no {column}", self.table.name))
    }
}

impl Cells for BackupCells<'_> {
    fn int(&self, column: &str) -> anyhow::Result<Option<i64>> {
        match self.get(column)? {
            Value::Null => Ok(None),
            value => Ok(Some(value.as_i64().with_context(|| {
                format!("{}.{column} is not an integer", self.table.name)
            })?)),
        }
    }

    fn text(&self, column: &str) -> anyhow::Result<Option<String>> {
        match self.get(column)? {
            Value::Null => Ok(None),
            value => Ok(Some(
                value
                    .as_str()
                    .with_context(|| format!("{}.{column} is not text", self.table.name))?
                    .to_owned(),
            )),
        }
    }
}

pub(crate) fn record_from_row(entity: Entity, row: &AnyRow) -> anyhow::Result<Record> {
    record_from_cells(entity, row)
}

/// A customer record from a row of a backup's record table.
pub fn record_from_backup_row(
    entity: Entity,
    table: &TableSpec,
    row: &[Value],
) -> anyhow::Result<Record> {
    record_from_cells(entity, &BackupCells { table, row })
}

fn record_from_cells(entity: Entity, row: &impl Cells) -> anyhow::Result<Record> {
    let mut fields = Map::new();
    for def in entity.fields() {
        let value = match def.kind {
            FieldKind::Timestamp => row
                .int(def.name)?
                .map(|micros| Value::String(Timestamp(micros).to_rfc3339()))
                .unwrap_or(Value::Null),
            kind if kind.is_integer() => row.int(def.name)?.map(Value::from).unwrap_or(Value::Null),
            _ => row
                .text(def.name)?
                .map(Value::String)
                .unwrap_or(Value::Null),
        };
        fields.insert(def.name.to_owned(), value);
    }
    let deleted = match (
        row.int("deleted_at")?,
        row.int("deleted_by")?,
        row.text("deleted_root_entity")?,
        row.int("deleted_root_id")?,
    ) {
        (Some(at), Some(by), Some(root_entity), Some(root_id)) => Some(Deletion {
            at: Timestamp(at),
            by,
            root_entity: Entity::from_name(&root_entity)
                .context("unknown entity in deleted_root_entity")?,
            root_id,
        }),
        _ => None,
    };
    let required = |column: &str| -> anyhow::Result<i64> {
        row.int(column)?
            .with_context(|| format!("{column} is empty"))
    };
    Ok(Record {
        entity,
        id: required("id")?,
        version: required("version")?,
        owner_id: required("owner_id")?,
        fields,
        tags: serde_json::from_str(&row.text("tags")?.unwrap_or_default())
            .context("tags column")?,
        custom: serde_json::from_str(&row.text("custom")?.unwrap_or_default())
            .context("custom column")?,
        created_at: Timestamp(required("created_at")?),
        created_by: required("created_by")?,
        updated_at: Timestamp(required("updated_at")?),
        updated_by: required("updated_by")?,
        deleted,
    })
}
