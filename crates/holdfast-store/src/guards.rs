//! Mass-action guards: how much each user did of each kind lately (deletes, rows read in bulk,
//! owner changes, records reverted), and the guards they tripped until an administrator
//! released them. Counts are bookkeeping; a trip and its release are audited.

use crate::write::AuditDraft;
use crate::{Db, StoreError, WriteTx};
use holdfast_domain::Timestamp;
use sqlx::Row as _;
use sqlx::any::AnyRow;

/// A guard a user tripped.
#[derive(Debug, Clone)]
pub struct TripRow {
    pub id: i64,
    pub user_id: i64,
    pub kind: String,
    pub at: Timestamp,
    /// How much they had done (in the window, with the action that tripped it).
    pub amount: i64,
    pub threshold: i64,
    pub released_at: Option<Timestamp>,
    pub released_by: Option<String>,
}

const TRIP_COLUMNS: &str = "id, user_id, kind, at, amount, threshold, released_at, released_by";

fn trip_from_row(row: &AnyRow) -> anyhow::Result<TripRow> {
    Ok(TripRow {
        id: row.try_get(0)?,
        user_id: row.try_get(1)?,
        kind: row.try_get(2)?,
        at: Timestamp(row.try_get(3)?),
        amount: row.try_get(4)?,
        threshold: row.try_get(5)?,
        released_at: row.try_get::<Option<i64>, _>(6)?.map(Timestamp),
        released_by: row.try_get(7)?,
    })
}

impl Db {
    /// How much `user_id` did of `kind` since `since`.
    pub async fn guard_sum(
        &self,
        user_id: i64,
        kind: &str,
        since: Timestamp,
    ) -> anyhow::Result<i64> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM guard_counts WHERE user_id = $1 AND kind = $2 AND at >= $3",
        )
        .bind(user_id)
        .bind(kind.to_owned())
        .bind(since.micros())
        .fetch_one(&self.write)
        .await?;
        Ok(row.try_get::<i64, _>(0)?)
    }

    /// Counts what a user did (and forgets counts older than `forget_before`).
    pub async fn guard_count(
        &self,
        user_id: i64,
        kind: &str,
        amount: i64,
        now: Timestamp,
        forget_before: Timestamp,
    ) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM guard_counts WHERE at < $1")
            .bind(forget_before.micros())
            .execute(&self.write)
            .await?;
        sqlx::query("INSERT INTO guard_counts (user_id, kind, at, amount) VALUES ($1, $2, $3, $4)")
            .bind(user_id)
            .bind(kind.to_owned())
            .bind(now.micros())
            .bind(amount)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// The guard of `kind` the user tripped and nobody released yet.
    pub async fn open_guard_trip(
        &self,
        user_id: i64,
        kind: &str,
    ) -> anyhow::Result<Option<TripRow>> {
        let sql = format!(
            "SELECT {TRIP_COLUMNS} FROM guard_trips WHERE user_id = $1 AND kind = $2 AND released_at IS NULL ORDER BY id DESC LIMIT 1"
        );
        let row = sqlx::query(&sql)
            .bind(user_id)
            .bind(kind.to_owned())
            .fetch_optional(&self.write)
            .await?;
        row.as_ref().map(trip_from_row).transpose()
    }

    /// Guards tripped, newest first: the open ones, then the last released ones.
    pub async fn guard_trips(&self, limit: i64) -> anyhow::Result<Vec<TripRow>> {
        let sql = format!(
            "SELECT {TRIP_COLUMNS} FROM guard_trips ORDER BY CASE WHEN released_at IS NULL THEN 0 ELSE 1 END, id DESC LIMIT $1"
        );
        let found = sqlx::query(&sql)
            .bind(limit)
            .fetch_all(self.read_pool())
            .await?;
        found.iter().map(trip_from_row).collect()
    }
}

impl WriteTx {
    /// Records a tripped guard with its audit entry.
    pub async fn trip_guard(
        &mut self,
        user_id: i64,
        kind: &str,
        amount: i64,
        threshold: i64,
        audit: AuditDraft,
    ) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO guard_trips (user_id, kind, at, amount, threshold) VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(user_id)
        .bind(kind.to_owned())
        .bind(self.now.micros())
        .bind(amount)
        .bind(threshold)
        .fetch_one(&mut *self.tx)
        .await?;
        let id = row.try_get::<i64, _>(0)?;
        let mut audit = audit;
        audit.detail["trip_id"] = id.into();
        self.append_audit(audit).await?;
        Ok(id)
    }

    /// Releases a tripped guard after review; the user's counts of that kind start afresh.
    /// `None` when there is no such open trip.
    pub async fn release_guard(
        &mut self,
        id: i64,
        by: &str,
        audit: AuditDraft,
    ) -> Result<Option<TripRow>, StoreError> {
        let sql =
            format!("SELECT {TRIP_COLUMNS} FROM guard_trips WHERE id = $1 AND released_at IS NULL");
        let Some(row) = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&mut *self.tx)
            .await?
        else {
            return Ok(None);
        };
        let trip = trip_from_row(&row)?;
        sqlx::query("UPDATE guard_trips SET released_at = $1, released_by = $2 WHERE id = $3")
            .bind(self.now.micros())
            .bind(by.to_owned())
            .bind(id)
            .execute(&mut *self.tx)
            .await?;
        sqlx::query("DELETE FROM guard_counts WHERE user_id = $1 AND kind = $2")
            .bind(trip.user_id)
            .bind(trip.kind.clone())
            .execute(&mut *self.tx)
            .await?;
        self.append_audit(audit).await?;
        Ok(Some(trip))
    }
}
