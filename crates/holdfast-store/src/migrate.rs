//! Applying the migration history: every pending migration of an upgrade in one transaction,
//! each applied migration's checksum kept and compared.
//!
//! SQLite and PostgreSQL both roll back DDL, and Holdfast's migrations only create and alter
//! tables and indexes, so an upgrade that fails at any statement leaves the database exactly as
//! it was: no intermediate schema a later start would have to make sense of. Before committing,
//! the existing data is checked against what it was (see [`crate::invariants`]).

use crate::schema::{self, Migration};
use crate::{Backend, Db};
use anyhow::Context as _;
use sqlx::{Acquire as _, Connection as _, Executor as _, Row as _};

/// What the PostgreSQL advisory lock is taken on: one upgrade at a time across instances.
const UPGRADE_LOCK: i64 = 7355608;

impl Db {
    /// Applies Holdfast's migrations up to `target`. Refuses to go backwards, and refuses a
    /// database where an applied migration differs from this build's (see
    /// [`Db::verify_migrations`]).
    pub async fn migrate_to(&self, target: i64) -> anyhow::Result<Vec<&'static Migration>> {
        self.apply_migrations(schema::MIGRATIONS, target).await
    }

    /// Applies the migrations of `history` (consecutive versions from 1) that the database
    /// lacks, up to `target`, all in one transaction: on any failure nothing of them stays. On
    /// PostgreSQL an advisory lock keeps two instances from upgrading at once.
    pub async fn apply_migrations<'m>(
        &self,
        history: &'m [Migration],
        target: i64,
    ) -> anyhow::Result<Vec<&'m Migration>> {
        let mut conn = self.write.acquire().await?;
        if self.backend == Backend::Postgres {
            conn.execute(format!("SELECT pg_advisory_lock({UPGRADE_LOCK})").as_str())
                .await?;
        }
        let result = async {
            prepare_history_table(&mut conn, history).await?;
            let found = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
                .fetch_one(&mut *conn)
                .await?
                .try_get::<i64, _>(0)?;
            anyhow::ensure!(
                found <= target,
                "the database is at schema version {found}, newer than {target}; refusing to downgrade"
            );
            let pending: Vec<&Migration> = history
                .iter()
                .filter(|m| m.version > found && m.version <= target)
                .collect();
            if pending.is_empty() {
                return Ok(pending);
            }
            // What must survive the migrations, read before them.
            let gaining = crate::invariants::tables_gaining_rows(
                pending.iter().flat_map(|m| schema::statements(m.sql)),
            );
            let before = crate::invariants::before(&mut conn, self.backend, &gaining).await?;
            let abort_after = failpoint();
            let mut executed = 0;
            let mut tx = conn.begin().await?;
            for migration in &pending {
                for statement in
                    schema::statements(&schema::render(migration.sql, self.backend))
                {
                    tx.execute(statement).await.with_context(|| {
                        format!(
                            "migration {} ({}) failed at: {statement}",
                            migration.version, migration.name
                        )
                    })?;
                    if abort_after == Some(executed) {
                        // The process dies as under `kill -9`: nothing is rolled back or closed.
                        std::process::abort();
                    }
                    executed += 1;
                }
                sqlx::query(
                    "INSERT INTO schema_migrations (version, name, applied_at, checksum) VALUES ($1, $2, $3, $4)",
                )
                .bind(migration.version)
                .bind(migration.name)
                .bind(crate::unix_micros_now())
                .bind(migration.checksum())
                .execute(&mut *tx)
                .await?;
            }
            crate::invariants::check_after(&mut tx, self.backend, &before, &gaining)
                .await
                .context("the upgrade was rolled back: it would have changed existing data")?;
            crate::invariants::check_sound(&mut tx, self.backend)
                .await
                .context("the upgrade was rolled back")?;
            tx.commit().await.context("committing the upgrade")?;
            self.schema_changed();
            Ok(pending)
        }
        .await;
        if self.backend == Backend::Postgres {
            conn.execute(format!("SELECT pg_advisory_unlock({UPGRADE_LOCK})").as_str())
                .await?;
        }
        result
    }

    /// Compares each applied migration's stored checksum with this build's: a migration edited
    /// after it ran here is refused, naming it. Migrations applied before checksums were kept
    /// get this build's as their baseline.
    pub async fn verify_migrations(&self) -> anyhow::Result<()> {
        let mut conn = self.write.acquire().await?;
        prepare_history_table(&mut conn, schema::MIGRATIONS).await
    }
}

/// For the tests that kill an upgrade midway: `FAILPOINT_UPGRADE_ABORT_AFTER=N` makes
/// the process abort right after the upgrade's statement N (counted from 0 across its
/// migrations). Unset, as everywhere but in those tests, it does nothing.
fn failpoint() -> Option<usize> {
    std::env::var("FAILPOINT_UPGRADE_ABORT_AFTER")
        .ok()
        .and_then(|n| n.parse().ok())
}

/// Creates the history table if missing (with its checksum column, added to one made before
/// it), records this build's checksum for migrations applied without one, and refuses a
/// history whose stored checksum differs from `history`'s.
async fn prepare_history_table(
    conn: &mut sqlx::pool::PoolConnection<sqlx::Any>,
    history: &[Migration],
) -> anyhow::Result<()> {
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL, checksum TEXT)",
    )
    .await?;
    if sqlx::query("SELECT checksum FROM schema_migrations WHERE 1 = 0")
        .fetch_all(&mut **conn)
        .await
        .is_err()
    {
        conn.execute("ALTER TABLE schema_migrations ADD COLUMN checksum TEXT")
            .await
            .context("adding the checksum column to the migration history")?;
    }
    let applied =
        sqlx::query("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
            .fetch_all(&mut **conn)
            .await?;
    for row in applied {
        let version: i64 = row.try_get(0)?;
        let stored: Option<String> = row.try_get(2)?;
        let Some(migration) = history.iter().find(|m| m.version == version) else {
            continue;
        };
        match stored {
            None => {
                sqlx::query("UPDATE schema_migrations SET checksum = $1 WHERE version = $2")
                    .bind(migration.checksum())
                    .bind(version)
                    .execute(&mut **conn)
                    .await?;
            }
            Some(stored) if stored != migration.checksum() => anyhow::bail!(
                "migration {version} ({}) differs from the one applied to this database (its checksum was {}, this Holdfast's is {}): \
                 a migration was edited after it was released. Do not serve this database with this build; run the Holdfast release that applied it, and report this build",
                migration.name,
                &stored[..stored.len().min(12)],
                &migration.checksum()[..12]
            ),
            Some(_) => {}
        }
    }
    Ok(())
}

/// A PostgreSQL URL's database name and the URL with another name in its place.
fn with_database(url: &str, name: &str) -> anyhow::Result<(String, String)> {
    let scheme_end = url.find("://").context("not a database URL")? + 3;
    let path_start = url[scheme_end..]
        .find('/')
        .map(|i| scheme_end + i)
        .context("the PostgreSQL URL names no database")?;
    let path_end = url[path_start..]
        .find('?')
        .map_or(url.len(), |i| path_start + i);
    let current = url[path_start + 1..path_end].to_owned();
    anyhow::ensure!(!current.is_empty(), "the PostgreSQL URL names no database");
    let other = format!("{}/{name}{}", &url[..path_start], &url[path_end..]);
    Ok((current, other))
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Copies the PostgreSQL database of `url` into a new database `name` on the same server
/// (`CREATE DATABASE … TEMPLATE`), and answers the copy's URL. PostgreSQL copies a database
/// only while nobody else is connected to it.
pub async fn create_postgres_copy(url: &str, name: &str) -> anyhow::Result<String> {
    sqlx::any::install_default_drivers();
    let (source, copy_url) = with_database(url, name)?;
    let (_, maintenance) = with_database(url, "postgres")?;
    let mut conn = sqlx::AnyConnection::connect(&maintenance)
        .await
        .context("connecting to the server's postgres database to make a copy")?;
    let create = format!(
        "CREATE DATABASE {} TEMPLATE {}",
        quoted(name),
        quoted(&source)
    );
    // Connections just closed (this command's own, an instance just stopped) take a moment to
    // leave the server; up to 15 seconds are waited for them.
    let mut made = conn.execute(create.as_str()).await.map(|_| ());
    for _ in 0..60 {
        match &made {
            Err(error) if error.to_string().contains("being accessed by other users") => {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                made = conn.execute(create.as_str()).await.map(|_| ());
            }
            _ => break,
        }
    }
    // Who is still connected, for the message when they did not leave.
    let others = sqlx::query(
        "SELECT COALESCE(NULLIF(application_name, ''), 'a client') || ' from ' || COALESCE(CAST(client_addr AS TEXT), 'this machine') || ' (' || COALESCE(state, '?') || ')' FROM pg_stat_activity WHERE datname = $1",
    )
    .bind(source.clone())
    .fetch_all(&mut conn)
    .await
    .map(|rows| {
        rows.iter()
            .filter_map(|row| row.try_get::<String, _>(0).ok())
            .collect::<Vec<_>>()
            .join(", ")
    })
    .unwrap_or_default();
    let _ = sqlx::Connection::close(conn).await;
    made.with_context(|| {
        format!(
            "copying database {source} to {name}: stop every Holdfast instance first (PostgreSQL copies a database only while nobody is connected to it; connected now: {others}), and the account needs the CREATEDB right"
        )
    })?;
    Ok(copy_url)
}

/// Drops the database `name` on the server of `url` (a copy [`create_postgres_copy`] made).
pub async fn drop_postgres_database(url: &str, name: &str) -> anyhow::Result<()> {
    let (_, maintenance) = with_database(url, "postgres")?;
    let mut conn = sqlx::AnyConnection::connect(&maintenance).await?;
    let dropped = conn
        .execute(format!("DROP DATABASE IF EXISTS {}", quoted(name)).as_str())
        .await;
    let _ = sqlx::Connection::close(conn).await;
    dropped?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn a_database_name_is_swapped_keeping_credentials_and_options() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/crm?sslmode=require", "crm_copy").unwrap(),
            (
                "crm".to_owned(),
                "postgres://u:p@h:5432/crm_copy?sslmode=require".to_owned()
            )
        );
        assert!(with_database("postgres://h:5432", "x").is_err());
    }
}
