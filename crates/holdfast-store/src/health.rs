//! What is wrong with the database file or disk right now, as Holdfast has seen it.
//!
//! Two faults matter because they destroy data quietly if nobody stops: a **corrupt** database
//! (found by `PRAGMA quick_check`/`integrity_check`, `amcheck` on PostgreSQL, or a "malformed"
//! error from the engine while serving) and a **full disk**. A corrupt database turns the
//! instance read-only until it is restored: [`crate::Db::begin_write`] refuses, and a backup of
//! it is refused so it cannot push good backups out of retention. A full disk refuses writes
//! for as long as writes fail (nothing is half-written: the transaction rolls back) and clears
//! itself at the next write that succeeds.
//!
//! [`classify`] reads an engine error; [`Health`] remembers what was found, for `/readyz`, the
//! admin pages and the write path.

use serde::Serialize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// A kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    Corrupt,
    DiskFull,
}

impl FaultKind {
    /// The error code clients see.
    pub fn code(self) -> &'static str {
        match self {
            FaultKind::Corrupt => "database_corrupt",
            FaultKind::DiskFull => "disk_full",
        }
    }
}

/// A fault and what showed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fault {
    pub kind: FaultKind,
    /// The engine's words, or the failing check's first lines.
    pub detail: String,
    /// `start_check`, `backup_check`, `daily_check`, `doctor` or `serving`.
    pub found_by: String,
    /// Unix microseconds.
    pub at: i64,
}

/// What an engine error says about the database, if anything.
pub fn classify(error: &anyhow::Error) -> Option<(FaultKind, String)> {
    for cause in error.chain() {
        if let Some(sqlx::Error::Database(database)) = cause.downcast_ref::<sqlx::Error>() {
            let code = database.code().map(|c| c.into_owned()).unwrap_or_default();
            let message = database.message().to_owned();
            // SQLite reports (extended) result codes as numbers; PostgreSQL SQLSTATEs.
            let primary = code.parse::<i64>().map(|c| c & 0xff).ok();
            let kind = match (primary, code.as_str()) {
                // SQLITE_CORRUPT, SQLITE_NOTADB; data_corrupted, index_corrupted.
                (Some(11 | 26), _) | (_, "XX001" | "XX002") => Some(FaultKind::Corrupt),
                // SQLITE_FULL; disk_full.
                (Some(13), _) | (_, "53100") => Some(FaultKind::DiskFull),
                _ => None,
            };
            if let Some(kind) = kind {
                return Some((kind, message));
            }
        }
        let text = cause.to_string();
        if text.contains("malformed") || text.contains("file is not a database") {
            return Some((FaultKind::Corrupt, text));
        }
        if text.contains("database or disk is full") || text.contains("No space left on device") {
            return Some((FaultKind::DiskFull, text));
        }
    }
    None
}

/// Faults seen by this process, shared by every clone of a `Db`.
#[derive(Debug, Default)]
pub struct Health {
    corrupt: Mutex<Option<Fault>>,
    disk_full: Mutex<Option<Fault>>,
    /// Corruption errors the engine returned while serving, since start.
    corruption_errors: AtomicU64,
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Health {
    /// Remembers a fault. A corruption stays until the process restarts on a healthy database;
    /// a full disk until a write succeeds again.
    pub fn record(&self, kind: FaultKind, detail: &str, found_by: &str) {
        let fault = Fault {
            kind,
            detail: detail.chars().take(500).collect(),
            found_by: found_by.to_owned(),
            at: now_micros(),
        };
        let slot = match kind {
            FaultKind::Corrupt => {
                if found_by == "serving" {
                    self.corruption_errors.fetch_add(1, Ordering::Relaxed);
                }
                &self.corrupt
            }
            FaultKind::DiskFull => &self.disk_full,
        };
        if let Ok(mut slot) = slot.lock()
            && (slot.is_none() || kind == FaultKind::DiskFull)
        {
            *slot = Some(fault);
        }
    }

    /// Records what `error` says about the database, if it says anything; returns the kind.
    pub fn observe(&self, error: &anyhow::Error, found_by: &str) -> Option<FaultKind> {
        let (kind, detail) = classify(error)?;
        self.record(kind, &detail, found_by);
        Some(kind)
    }

    /// A write went through: the disk has room again.
    pub fn write_succeeded(&self) {
        if let Ok(mut slot) = self.disk_full.lock() {
            *slot = None;
        }
    }

    pub fn corrupt(&self) -> Option<Fault> {
        self.corrupt.lock().ok().and_then(|slot| slot.clone())
    }

    pub fn disk_full(&self) -> Option<Fault> {
        self.disk_full.lock().ok().and_then(|slot| slot.clone())
    }

    pub fn corruption_errors(&self) -> u64 {
        self.corruption_errors.load(Ordering::Relaxed)
    }

    /// Every fault in force, worst first.
    pub fn faults(&self) -> Vec<Fault> {
        self.corrupt().into_iter().chain(self.disk_full()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_words_are_read_as_faults() {
        let malformed =
            anyhow::anyhow!("error returned from database: database disk image is malformed");
        assert_eq!(classify(&malformed).map(|f| f.0), Some(FaultKind::Corrupt));
        let full =
            anyhow::anyhow!("error returned from database: (code: 13) database or disk is full");
        assert_eq!(classify(&full).map(|f| f.0), Some(FaultKind::DiskFull));
        assert_eq!(classify(&anyhow::anyhow!("UNIQUE constraint failed")), None);
    }

    #[test]
    fn a_full_disk_clears_at_the_next_write_and_corruption_stays() {
        let health = Health::default();
        health.record(FaultKind::DiskFull, "full", "serving");
        health.record(FaultKind::Corrupt, "malformed", "serving");
        assert_eq!(health.faults().len(), 2);
        health.write_succeeded();
        assert_eq!(health.faults().len(), 1);
        assert_eq!(health.corruption_errors(), 1);
        health.record(FaultKind::Corrupt, "second", "serving");
        assert_eq!(
            health.corrupt().unwrap().detail,
            "malformed",
            "the first cause is kept"
        );
    }
}

/// How thorough an integrity check is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Thoroughness {
    /// SQLite `quick_check`: every page and b-tree structure, without comparing indexes with
    /// their tables. Seconds at a million contacts. On PostgreSQL nothing: its own page
    /// checksums and the daily check cover it.
    Quick,
    /// SQLite `integrity_check`; PostgreSQL `amcheck` over every index, where the extension can
    /// be had.
    Full,
}

impl crate::Db {
    /// The faults this process has seen in this database.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Checks the database's structure. `Ok(None)` when sound; `Ok(Some(problem))` (also
    /// recorded in [`Self::health`] as `found_by`) when damaged; `Err` when the check itself
    /// could not run for another reason.
    pub async fn check_integrity(
        &self,
        thoroughness: Thoroughness,
        found_by: &str,
    ) -> anyhow::Result<Option<String>> {
        let result = match self.backend() {
            crate::Backend::Sqlite => self.sqlite_check(thoroughness).await,
            crate::Backend::Postgres => self.postgres_check(thoroughness).await,
        };
        let problem = match result {
            Ok(problem) => problem,
            // The engine may refuse to even run the check on a damaged file.
            Err(error) => match classify(&error) {
                Some((FaultKind::Corrupt, detail)) => Some(detail),
                _ => return Err(error),
            },
        };
        if let Some(problem) = &problem {
            self.health.record(FaultKind::Corrupt, problem, found_by);
        }
        Ok(problem)
    }

    async fn sqlite_check(&self, thoroughness: Thoroughness) -> anyhow::Result<Option<String>> {
        use sqlx::Row as _;
        let pragma = match thoroughness {
            Thoroughness::Quick => "PRAGMA quick_check(20)",
            Thoroughness::Full => "PRAGMA integrity_check(20)",
        };
        let rows = sqlx::query(pragma).fetch_all(self.read_pool()).await?;
        let lines: Vec<String> = rows
            .iter()
            .filter_map(|row| row.try_get::<String, _>(0).ok())
            .collect();
        Ok((lines != ["ok"]).then(|| lines.join("; ")))
    }

    async fn postgres_check(&self, thoroughness: Thoroughness) -> anyhow::Result<Option<String>> {
        use sqlx::Row as _;
        if thoroughness == Thoroughness::Quick {
            return Ok(None);
        }
        if let Err(error) = sqlx::query("CREATE EXTENSION IF NOT EXISTS amcheck")
            .execute(self.read_pool())
            .await
        {
            anyhow::bail!(
                "amcheck is not available to this database user ({error}); ask the PostgreSQL administrator to run CREATE EXTENSION amcheck"
            );
        }
        let indexes = sqlx::query(
            "SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_am a ON a.oid = c.relam
             WHERE n.nspname = current_schema() AND a.amname = 'btree' ORDER BY c.relname",
        )
        .fetch_all(self.read_pool())
        .await?;
        let mut problems = Vec::new();
        for row in &indexes {
            let name: String = row.try_get(0)?;
            let check = sqlx::query("SELECT bt_index_check(c.oid, true)::text FROM pg_class c WHERE c.relname = $1 AND c.relnamespace = current_schema()::regnamespace")
                .bind(&name)
                .fetch_all(self.read_pool())
                .await;
            if let Err(error) = check {
                problems.push(format!("index {name}: {error}"));
            }
        }
        Ok((!problems.is_empty()).then(|| problems.join("; ")))
    }
}
