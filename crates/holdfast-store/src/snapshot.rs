//! Whole-database snapshots for backups: which tables a backup holds, and reading them as
//! backend-neutral rows from one consistent point in time.
//!
//! A [`Snapshot`] is one read transaction (PostgreSQL `REPEATABLE READ READ ONLY`; SQLite's WAL
//! read snapshot), so every table is read as of the same moment while the server keeps
//! writing. Rows come out as JSON arrays of integers, strings and nulls in column-name order,
//! which reads the same on both backends; that is what makes a backup taken on SQLite
//! restorable into PostgreSQL and back. Writing a snapshot back is `WriteTx::restore_*` in
//! `write.rs`, because only the write transaction writes customer tables.

use crate::{Backend, Db};
use anyhow::Context as _;
use serde_json::Value;
use sqlx::{Any, AnyConnection, Row as _, Transaction};

/// The tables a backup holds, parents before children, each with its primary key.
pub const BACKUP_TABLES: &[(&str, &str)] = &[
    ("meta", "key"),
    ("roles", "key"),
    ("teams", "id"),
    ("users", "id"),
    ("api_tokens", "id"),
    ("custom_field_defs", "id"),
    ("pipelines", "key"),
    ("companies", "id"),
    ("contacts", "id"),
    ("deals", "id"),
    ("activities", "id"),
    ("record_versions", "id"),
    ("audit_log", "seq"),
    ("audit_head", "id"),
    ("access_requests", "id"),
    ("notifications", "id"),
    ("access_reviews", "id"),
    ("second_factors", "id"),
    ("recovery_codes", "id"),
    ("login_events", "id"),
    ("guard_trips", "id"),
    ("policy_acks", "id"),
];

/// Tables a restore rebuilds from the records (the search and tag indexes) or empties because
/// they must not come back from the past (sessions, login throttling, sign-ins half done,
/// remembered devices).
pub const REBUILT_TABLES: &[&str] = &["search_terms", "record_tags"];
pub const EPHEMERAL_TABLES: &[&str] = &[
    "sessions",
    "login_failures",
    "login_challenges",
    "known_devices",
    "guard_counts",
];
/// Tables that describe this installation rather than its data (its migrations, backups and the
/// alerts it sent); a restore leaves them alone.
pub const LOCAL_TABLES: &[&str] = &[
    "schema_migrations",
    "backup_runs",
    "alert_deliveries",
    "incident_drills",
    "instances",
];

/// A table as a backup stores it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TableSpec {
    pub name: String,
    pub key: String,
    /// In name order, which both backends report the same way.
    pub columns: Vec<ColumnSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ColumnSpec {
    pub name: String,
    /// `int` or `text`: the only two column types Holdfast uses.
    pub kind: String,
}

impl TableSpec {
    fn key_is_int(&self) -> bool {
        self.columns
            .iter()
            .any(|c| c.name == self.key && c.kind == "int")
    }

    fn select_list(&self) -> String {
        self.columns
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One consistent read of the whole database.
pub struct Snapshot {
    tx: Transaction<'static, Any>,
    backend: Backend,
}

impl Db {
    /// Opens a read snapshot: every read through it sees the database as of this moment.
    pub async fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let mut tx = self
            .read_pool()
            .begin()
            .await
            .context("starting the backup's read transaction")?;
        if self.backend() == Backend::Postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await
                .context("making the backup's read transaction a snapshot")?;
        }
        // The first read fixes SQLite's snapshot (and PostgreSQL's); read something cheap.
        sqlx::query("SELECT seq FROM audit_head WHERE id = 1")
            .fetch_optional(&mut *tx)
            .await
            .context("reading the audit head")?;
        Ok(Snapshot {
            tx,
            backend: self.backend(),
        })
    }

    /// The backed-up tables of this database as a backup describes them.
    /// A database at an older schema lacks the tables later migrations add; those are left out
    /// (a restore migrates the archive's rows up, creating them). At the current schema every
    /// table must be there.
    pub async fn backup_tables(&self) -> anyhow::Result<Vec<TableSpec>> {
        let older = self
            .schema_version()
            .await?
            .is_some_and(|v| v < crate::schema::current_version());
        let mut specs = Vec::new();
        for (name, key) in BACKUP_TABLES {
            let columns = self
                .table_columns(name)
                .await?
                .into_iter()
                .map(|(name, kind)| {
                    let kind = match kind.as_str() {
                        "integer" => "int",
                        "text" => "text",
                        other => anyhow::bail!("column {name} has unexpected type {other}"),
                    };
                    Ok(ColumnSpec {
                        name,
                        kind: kind.to_owned(),
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            if columns.is_empty() && older {
                continue;
            }
            anyhow::ensure!(!columns.is_empty(), "table {name} is missing");
            specs.push(TableSpec {
                name: (*name).to_owned(),
                key: (*key).to_owned(),
                columns,
            });
        }
        Ok(specs)
    }

    /// Every table in the database, for the test that no table is forgotten by backups.
    pub async fn table_names(&self) -> anyhow::Result<Vec<String>> {
        Ok(self
            .schema_objects()
            .await?
            .into_iter()
            .filter_map(|o| o.strip_prefix("table ").map(str::to_owned))
            .collect())
    }
}

impl Snapshot {
    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn schema_version(&mut self) -> anyhow::Result<i64> {
        Ok(
            sqlx::query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
                .fetch_one(&mut *self.tx)
                .await
                .context("reading the schema version")?
                .try_get::<i64, _>(0)?,
        )
    }

    /// The audit log's newest entry: sequence number and hash, and the seal it is under.
    pub async fn audit_head(&mut self) -> anyhow::Result<(i64, String, crate::AuditSeal)> {
        let sealable = crate::write::head_is_sealable(&mut self.tx, self.backend).await?;
        let (seal, hash) = crate::write::read_head(&mut self.tx, sealable)
            .await?
            .context("the audit head row is missing")?;
        Ok((seal.seq, hash, seal))
    }

    pub async fn count(&mut self, table: &TableSpec) -> anyhow::Result<i64> {
        count_rows(&mut self.tx, table).await
    }

    /// The next rows after `after` (a key value from the last row), in key order.
    pub async fn rows(
        &mut self,
        table: &TableSpec,
        after: Option<&Value>,
        limit: usize,
    ) -> anyhow::Result<Vec<Vec<Value>>> {
        read_rows(&mut self.tx, table, after, limit).await
    }
}

pub(crate) async fn count_rows(conn: &mut AnyConnection, table: &TableSpec) -> anyhow::Result<i64> {
    Ok(sqlx::query(&format!("SELECT COUNT(*) FROM {}", table.name))
        .fetch_one(conn)
        .await
        .with_context(|| format!("counting {}", table.name))?
        .try_get::<i64, _>(0)?)
}

/// Reads rows in key order. Integer keys page by key on the database; the few tables with
/// text keys (settings) are read whole and sorted here, because the backends collate text
/// differently and a backup must read the same on both.
pub(crate) async fn read_rows(
    conn: &mut AnyConnection,
    table: &TableSpec,
    after: Option<&Value>,
    limit: usize,
) -> anyhow::Result<Vec<Vec<Value>>> {
    let key_index = table
        .columns
        .iter()
        .position(|c| c.name == table.key)
        .with_context(|| format!("table {} has no column {}", table.name, table.key))?;
    let rows = if table.key_is_int() {
        let after = after.and_then(Value::as_i64).unwrap_or(i64::MIN);
        sqlx::query(&format!(
            "SELECT {} FROM {} WHERE {key} > $1 ORDER BY {key} LIMIT {limit}",
            table.select_list(),
            table.name,
            key = table.key,
        ))
        .bind(after)
        .fetch_all(&mut *conn)
        .await
    } else {
        sqlx::query(&format!(
            "SELECT {} FROM {}",
            table.select_list(),
            table.name
        ))
        .fetch_all(&mut *conn)
        .await
    }
    .with_context(|| format!("reading {}", table.name))?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let mut cells = Vec::with_capacity(table.columns.len());
        for (index, column) in table.columns.iter().enumerate() {
            let cell = if column.kind == "int" {
                row.try_get::<Option<i64>, _>(index)?.map(Value::from)
            } else {
                row.try_get::<Option<String>, _>(index)?.map(Value::from)
            };
            cells.push(cell.unwrap_or(Value::Null));
        }
        out.push(cells);
    }
    if !table.key_is_int() {
        let key = |row: &Vec<Value>| row[key_index].as_str().unwrap_or_default().to_owned();
        out.sort_by_key(key);
        if let Some(after) = after.and_then(Value::as_str) {
            out.retain(|row| row[key_index].as_str().unwrap_or_default() > after);
        }
        out.truncate(limit);
    }
    Ok(out)
}

/// The key of a row read by [`read_rows`], to ask for the rows after it.
pub fn row_key(table: &TableSpec, row: &[Value]) -> Option<Value> {
    let index = table.columns.iter().position(|c| c.name == table.key)?;
    row.get(index).cloned()
}
