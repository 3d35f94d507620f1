//! Incident drills as they are recorded (when, whether the staged rogue was detected,
//! contained and undone, and how long each took), and who acknowledged which version of the
//! security policy.

use crate::write::AuditDraft;
use crate::{Db, StoreError, WriteTx};
use holdfast_domain::Timestamp;
use sqlx::Row as _;

/// One incident drill's outcome.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DrillRow {
    pub id: i64,
    pub at: Timestamp,
    pub ok: bool,
    /// Records the staged rogue deleted before the guard stopped them.
    pub deleted: i64,
    pub detect_ms: Option<i64>,
    pub contain_ms: Option<i64>,
    pub recover_ms: Option<i64>,
    /// Records back after the revert.
    pub restored: Option<i64>,
    pub error: Option<String>,
}

impl Db {
    pub async fn record_incident_drill(&self, drill: &DrillRow) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO incident_drills (at, ok, deleted, detect_ms, contain_ms, recover_ms, restored, error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(drill.at.micros())
        .bind(i64::from(drill.ok))
        .bind(drill.deleted)
        .bind(drill.detect_ms)
        .bind(drill.contain_ms)
        .bind(drill.recover_ms)
        .bind(drill.restored)
        .bind(drill.error.clone())
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// The newest incident drills, newest first.
    pub async fn incident_drills(&self, limit: i64) -> anyhow::Result<Vec<DrillRow>> {
        let found = sqlx::query(
            "SELECT id, at, ok, deleted, detect_ms, contain_ms, recover_ms, restored, error FROM incident_drills ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.read_pool())
        .await?;
        found
            .iter()
            .map(|row| {
                Ok(DrillRow {
                    id: row.try_get(0)?,
                    at: Timestamp(row.try_get(1)?),
                    ok: row.try_get::<i64, _>(2)? != 0,
                    deleted: row.try_get(3)?,
                    detect_ms: row.try_get(4)?,
                    contain_ms: row.try_get(5)?,
                    recover_ms: row.try_get(6)?,
                    restored: row.try_get(7)?,
                    error: row.try_get(8)?,
                })
            })
            .collect()
    }
}

impl Db {
    /// Whether `user_id` acknowledged this version of the security policy.
    pub async fn policy_acked(&self, user_id: i64, version: i64) -> anyhow::Result<bool> {
        let found =
            sqlx::query("SELECT id FROM policy_acks WHERE user_id = $1 AND version = $2 LIMIT 1")
                .bind(user_id)
                .bind(version)
                .fetch_optional(self.read_pool())
                .await?;
        Ok(found.is_some())
    }

    /// Who acknowledged this version, and when.
    pub async fn policy_acks(&self, version: i64) -> anyhow::Result<Vec<(i64, Timestamp)>> {
        let found = sqlx::query(
            "SELECT user_id, MIN(at) FROM policy_acks WHERE version = $1 GROUP BY user_id",
        )
        .bind(version)
        .fetch_all(self.read_pool())
        .await?;
        found
            .iter()
            .map(|row| Ok((row.try_get(0)?, Timestamp(row.try_get(1)?))))
            .collect()
    }
}

impl WriteTx {
    /// Records that a user acknowledged a version of the security policy, with its audit entry.
    pub async fn ack_policy(
        &mut self,
        user_id: i64,
        version: i64,
        audit: AuditDraft,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO policy_acks (user_id, version, at) VALUES ($1, $2, $3)")
            .bind(user_id)
            .bind(version)
            .bind(self.now.micros())
            .execute(&mut *self.tx)
            .await?;
        self.append_audit(audit).await?;
        Ok(())
    }
}
