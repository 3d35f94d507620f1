//! The Holdfast instances that use this database: each serving one says so every minute, and
//! one that refused to start because the database is behind it says which schema it needs, so
//! the instances still serving can show that an upgrade is waiting.

use crate::Db;
use holdfast_domain::Timestamp;
use sqlx::Row as _;

#[derive(Debug, Clone, serde::Serialize)]
pub struct InstanceRow {
    pub id: String,
    pub host: String,
    pub holdfast_version: String,
    /// The schema version this instance's Holdfast works with.
    pub schema_wanted: i64,
    /// Serving now (`false`: it refused to start, the database being behind it).
    pub serving: bool,
    pub started_at: Timestamp,
    pub seen_at: Timestamp,
}

impl Db {
    /// Records that an instance is serving (or refused to), as of its `seen_at`, and forgets
    /// instances not seen since `forget_before` (stopped without saying so).
    pub async fn instance_seen(
        &self,
        instance: &InstanceRow,
        forget_before: Timestamp,
    ) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM instances WHERE seen_at < $1")
            .bind(forget_before.micros())
            .execute(&self.write)
            .await?;
        sqlx::query(
            "INSERT INTO instances (id, host, holdfast_version, schema_wanted, serving, started_at, seen_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (id) DO UPDATE SET serving = excluded.serving, seen_at = excluded.seen_at",
        )
        .bind(instance.id.clone())
        .bind(instance.host.clone())
        .bind(instance.holdfast_version.clone())
        .bind(instance.schema_wanted)
        .bind(i64::from(instance.serving))
        .bind(instance.started_at.micros())
        .bind(instance.seen_at.micros())
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// An instance stopped.
    pub async fn instance_gone(&self, id: &str) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM instances WHERE id = $1")
            .bind(id.to_owned())
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Instances seen since `since`, newest first.
    pub async fn instances(&self, since: Timestamp) -> anyhow::Result<Vec<InstanceRow>> {
        let rows = sqlx::query(
            "SELECT id, host, holdfast_version, schema_wanted, serving, started_at, seen_at FROM instances WHERE seen_at >= $1 ORDER BY seen_at DESC, id",
        )
        .bind(since.micros())
        .fetch_all(self.read_pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(InstanceRow {
                    id: row.try_get(0)?,
                    host: row.try_get(1)?,
                    holdfast_version: row.try_get(2)?,
                    schema_wanted: row.try_get(3)?,
                    serving: row.try_get::<i64, _>(4)? != 0,
                    started_at: Timestamp(row.try_get(5)?),
                    seen_at: Timestamp(row.try_get(6)?),
                })
            })
            .collect()
    }
}
