//! What an upgrade must not change: every table's rows, over the columns it had before.
//!
//! Before the migrations, each table is read in key order and hashed over its columns (every
//! value as text, `NULL` told apart); afterwards the same columns are hashed again in the same
//! transaction. Holdfast's migrations add tables, columns, indexes and settings rows; a table a
//! migration inserts settings into must keep every row it had, and no other table may differ
//! at all. (No migration rewrites existing values; a unit test in `schema` keeps it so until
//! one that must also brings the check of its transformation.)

use crate::Backend;
use anyhow::Context as _;
use futures_util::TryStreamExt as _;
use sha2::{Digest as _, Sha256};
use sqlx::{AnyConnection, Row as _};
use std::collections::BTreeSet;

/// One table's content over some of its columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDigest {
    pub table: String,
    pub columns: Vec<String>,
    pub rows: i64,
    pub sha256: String,
    /// Each row's own hash, kept for the small tables migrations add settings rows to.
    row_hashes: Option<BTreeSet<String>>,
}

/// Tables Holdfast keeps for itself, outside what an upgrade must preserve: the migration
/// history the upgrade itself extends.
const OWN: &[&str] = &["schema_migrations"];

/// The tables of the database and their columns, in name order.
async fn shapes(
    conn: &mut AnyConnection,
    backend: Backend,
) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let sql = match backend {
        Backend::Sqlite => {
            "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' ORDER BY m.name, p.name"
        }
        Backend::Postgres => {
            "SELECT CAST(table_name AS TEXT), CAST(column_name AS TEXT) FROM information_schema.columns \
             WHERE table_schema = current_schema() ORDER BY 1, 2"
        }
    };
    let mut tables: Vec<(String, Vec<String>)> = Vec::new();
    for row in sqlx::query(sql).fetch_all(&mut *conn).await? {
        let (table, column): (String, String) = (row.try_get(0)?, row.try_get(1)?);
        if OWN.contains(&table.as_str()) {
            continue;
        }
        match tables.last_mut() {
            Some((name, columns)) if *name == table => columns.push(column),
            _ => tables.push((table, vec![column])),
        }
    }
    Ok(tables)
}

/// The table's primary key columns, to read it in a stable order; all its columns when it
/// has none.
async fn key_of(
    conn: &mut AnyConnection,
    backend: Backend,
    table: &str,
    columns: &[String],
) -> anyhow::Result<Vec<String>> {
    let sql = match backend {
        Backend::Sqlite => {
            format!("SELECT name FROM pragma_table_info('{table}') WHERE pk > 0 ORDER BY pk")
        }
        Backend::Postgres => format!(
            "SELECT CAST(a.attname AS TEXT) FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE i.indrelid = CAST('{table}' AS regclass) AND i.indisprimary ORDER BY array_position(CAST(i.indkey AS int2[]), a.attnum)"
        ),
    };
    let key: Vec<String> = sqlx::query(&sql)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| row.try_get::<String, _>(0))
        .collect::<Result<_, _>>()?;
    Ok(if key.is_empty() {
        columns.to_vec()
    } else {
        key
    })
}

async fn digest(
    conn: &mut AnyConnection,
    backend: Backend,
    table: &str,
    columns: &[String],
    keep_rows: bool,
) -> anyhow::Result<TableDigest> {
    anyhow::ensure!(
        std::iter::once(table)
            .chain(columns.iter().map(String::as_str))
            .all(|n| n
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')),
        "unexpected name in table {table}"
    );
    let key = key_of(conn, backend, table, columns).await?;
    let sql = format!(
        "SELECT {} FROM {table} ORDER BY {}",
        columns
            .iter()
            .map(|c| format!("CAST({c} AS TEXT)"))
            .collect::<Vec<_>>()
            .join(", "),
        key.join(", ")
    );
    let mut whole = Sha256::new();
    let mut rows = 0i64;
    let mut row_hashes = keep_rows.then(BTreeSet::new);
    let mut stream = sqlx::query(&sql).fetch(&mut *conn);
    while let Some(row) = stream
        .try_next()
        .await
        .with_context(|| format!("reading {table}"))?
    {
        let mut one = Sha256::new();
        for i in 0..columns.len() {
            match row.try_get::<Option<String>, _>(i)? {
                None => one.update([0u8]),
                Some(text) => {
                    one.update([1u8]);
                    one.update((text.len() as u64).to_le_bytes());
                    one.update(text.as_bytes());
                }
            }
        }
        let one = one.finalize();
        whole.update(one);
        if let Some(set) = row_hashes.as_mut() {
            set.insert(hex(&one));
        }
        rows += 1;
    }
    Ok(TableDigest {
        table: table.to_owned(),
        columns: columns.to_vec(),
        rows,
        sha256: hex(&whole.finalize()),
        row_hashes,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every table's digest; the rows of `gaining` tables are kept one by one.
pub(crate) async fn before(
    conn: &mut AnyConnection,
    backend: Backend,
    gaining: &BTreeSet<String>,
) -> anyhow::Result<Vec<TableDigest>> {
    let mut digests = Vec::new();
    for (table, columns) in shapes(conn, backend).await? {
        let keep = gaining.contains(&table);
        digests.push(digest(conn, backend, &table, &columns, keep).await?);
    }
    Ok(digests)
}

/// Checks the tables after the migrations against `before`: the same columns still there,
/// the same rows, or (for `gaining` tables) every row still there. The error names the table.
pub(crate) async fn check_after(
    conn: &mut AnyConnection,
    backend: Backend,
    before: &[TableDigest],
    gaining: &BTreeSet<String>,
) -> anyhow::Result<()> {
    let now = shapes(conn, backend).await?;
    for old in before {
        let Some((_, columns)) = now.iter().find(|(t, _)| *t == old.table) else {
            anyhow::bail!("table {} is gone after the migrations", old.table);
        };
        if let Some(missing) = old.columns.iter().find(|c| !columns.contains(c)) {
            anyhow::bail!(
                "column {}.{missing} is gone after the migrations",
                old.table
            );
        }
        let keep = gaining.contains(&old.table);
        let new = digest(conn, backend, &old.table, &old.columns, keep).await?;
        match (&old.row_hashes, &new.row_hashes) {
            (Some(was), Some(is)) => {
                let lost = was.difference(is).count();
                anyhow::ensure!(
                    lost == 0,
                    "{lost} of the {} rows of {} changed or went missing in the migrations",
                    old.rows,
                    old.table
                );
            }
            _ => anyhow::ensure!(
                new.rows == old.rows && new.sha256 == old.sha256,
                "the rows of {} differ after the migrations ({} rows before, {} after)",
                old.table,
                old.rows,
                new.rows
            ),
        }
    }
    Ok(())
}

/// What the database says about itself once migrated: SQLite's integrity and foreign-key
/// checks; on PostgreSQL (which checks each constraint as its statement runs) that no
/// constraint was left unvalidated.
pub(crate) async fn check_sound(conn: &mut AnyConnection, backend: Backend) -> anyhow::Result<()> {
    if backend == Backend::Postgres {
        let unvalidated = sqlx::query(
            "SELECT CAST(c.conname AS TEXT) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace \
             WHERE n.nspname = current_schema() AND NOT c.convalidated",
        )
        .fetch_all(&mut *conn)
        .await?;
        anyhow::ensure!(
            unvalidated.is_empty(),
            "{} constraints are not validated after the migrations",
            unvalidated.len()
        );
        return Ok(());
    }
    let integrity: String = sqlx::query("PRAGMA integrity_check")
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?;
    anyhow::ensure!(
        integrity == "ok",
        "integrity check after the migrations: {integrity}"
    );
    let broken = sqlx::query("PRAGMA foreign_key_check")
        .fetch_all(&mut *conn)
        .await?;
    anyhow::ensure!(
        broken.is_empty(),
        "{} rows break a foreign key after the migrations",
        broken.len()
    );
    Ok(())
}

/// The tables `statements` insert rows into.
pub(crate) fn tables_gaining_rows<'a>(
    statements: impl Iterator<Item = &'a str>,
) -> BTreeSet<String> {
    statements
        .filter_map(|statement| {
            let mut words = statement.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some(insert), Some(into), Some(table))
                    if insert.eq_ignore_ascii_case("INSERT")
                        && into.eq_ignore_ascii_case("INTO") =>
                {
                    Some(table.trim_end_matches('(').to_owned())
                }
                _ => None,
            }
        })
        .collect()
}
