//! The record of backups taken and restore drills run: what the admin page and `/readyz`
//! report. It describes this installation, not its data, so backups do not hold it.

use crate::Db;
use anyhow::Context as _;
use sqlx::Row as _;

#[derive(Debug, Clone, serde::Serialize)]
pub struct BackupRunRow {
    pub id: i64,
    /// `scheduled`, `manual`, `shutdown`, `safety` (before a restore) or `cli`.
    pub reason: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub file: Option<String>,
    pub bytes: Option<i64>,
    pub sha256: Option<String>,
    pub rows_total: Option<i64>,
    pub encrypted: bool,
    pub error: Option<String>,
    pub copied_to: Option<String>,
    pub drill_at: Option<i64>,
    pub drill_ms: Option<i64>,
    pub drill_error: Option<String>,
}

/// What a finished backup run recorded.
#[derive(Debug, Clone, Default)]
pub struct BackupRunResult {
    pub file: Option<String>,
    pub bytes: Option<i64>,
    pub sha256: Option<String>,
    pub rows_total: Option<i64>,
    pub error: Option<String>,
    pub copied_to: Option<String>,
}

const COLUMNS: &str = "id, reason, started_at, finished_at, file, bytes, sha256, rows_total, encrypted, error, copied_to, drill_at, drill_ms, drill_error";

impl Db {
    pub async fn backup_run_start(
        &self,
        reason: &str,
        started_at: i64,
        encrypted: bool,
    ) -> anyhow::Result<i64> {
        let row = sqlx::query(
            "INSERT INTO backup_runs (reason, started_at, encrypted) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(reason.to_owned())
        .bind(started_at)
        .bind(i64::from(encrypted))
        .fetch_one(&self.write)
        .await
        .context("recording the backup run")?;
        Ok(row.try_get(0)?)
    }

    pub async fn backup_run_finish(
        &self,
        id: i64,
        finished_at: i64,
        result: &BackupRunResult,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE backup_runs SET finished_at = $1, file = $2, bytes = $3, sha256 = $4, rows_total = $5, error = $6, copied_to = $7 WHERE id = $8",
        )
        .bind(finished_at)
        .bind(result.file.clone())
        .bind(result.bytes)
        .bind(result.sha256.clone())
        .bind(result.rows_total)
        .bind(result.error.clone())
        .bind(result.copied_to.clone())
        .bind(id)
        .execute(&self.write)
        .await
        .context("recording the end of the backup run")?;
        Ok(())
    }

    pub async fn backup_run_drilled(
        &self,
        id: i64,
        at: i64,
        millis: i64,
        error: Option<&str>,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE backup_runs SET drill_at = $1, drill_ms = $2, drill_error = $3 WHERE id = $4",
        )
        .bind(at)
        .bind(millis)
        .bind(error.map(str::to_owned))
        .bind(id)
        .execute(&self.write)
        .await
        .context("recording the restore drill")?;
        Ok(())
    }

    /// Newest first.
    pub async fn backup_runs(&self, limit: i64) -> anyhow::Result<Vec<BackupRunRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM backup_runs ORDER BY started_at DESC, id DESC LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(self.read_pool())
        .await
        .context("reading backup runs")?;
        rows.iter().map(run_from_row).collect()
    }

    pub async fn backup_run(&self, id: i64) -> anyhow::Result<Option<BackupRunRow>> {
        sqlx::query(&format!("SELECT {COLUMNS} FROM backup_runs WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.read_pool())
            .await
            .context("reading a backup run")?
            .as_ref()
            .map(run_from_row)
            .transpose()
    }
}

fn run_from_row(row: &sqlx::any::AnyRow) -> anyhow::Result<BackupRunRow> {
    Ok(BackupRunRow {
        id: row.try_get(0)?,
        reason: row.try_get(1)?,
        started_at: row.try_get(2)?,
        finished_at: row.try_get(3)?,
        file: row.try_get(4)?,
        bytes: row.try_get(5)?,
        sha256: row.try_get(6)?,
        rows_total: row.try_get(7)?,
        encrypted: row.try_get::<i64, _>(8)? != 0,
        error: row.try_get(9)?,
        copied_to: row.try_get(10)?,
        drill_at: row.try_get(11)?,
        drill_ms: row.try_get(12)?,
        drill_error: row.try_get(13)?,
    })
}

/// Held while one instance takes a scheduled backup; dropped (or [`BackupLock::release`]d)
/// when it is done. On PostgreSQL it is an advisory lock on a connection of its own, so
/// instances sharing the database take turns; an SQLite file has one server, whose in-process
/// job lock is enough.
pub struct BackupLock {
    conn: Option<sqlx::pool::PoolConnection<sqlx::Any>>,
}

/// The advisory lock key for scheduled backups (migrations use another).
const BACKUP_LOCK: i64 = 7_355_609;

impl Db {
    /// Takes the backup lock if no other instance holds it; `None` when one does.
    pub async fn try_backup_lock(&self) -> anyhow::Result<Option<BackupLock>> {
        if self.backend() != crate::Backend::Postgres {
            return Ok(Some(BackupLock { conn: None }));
        }
        let mut conn = self
            .read_pool()
            .acquire()
            .await
            .context("a connection for the backup lock")?;
        let got: bool = sqlx::query("SELECT pg_try_advisory_lock($1)")
            .bind(BACKUP_LOCK)
            .fetch_one(&mut *conn)
            .await
            .context("taking the backup lock")?
            .try_get(0)?;
        Ok(got.then_some(BackupLock { conn: Some(conn) }))
    }
}

impl BackupLock {
    pub async fn release(mut self) -> anyhow::Result<()> {
        if let Some(mut conn) = self.conn.take() {
            sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(BACKUP_LOCK)
                .execute(&mut *conn)
                .await
                .context("releasing the backup lock")?;
        }
        Ok(())
    }
}

impl Drop for BackupLock {
    fn drop(&mut self) {
        // A lock not released explicitly must not go back to the pool still held.
        if let Some(conn) = self.conn.take() {
            let _ = conn.detach();
        }
    }
}
