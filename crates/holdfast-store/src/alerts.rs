//! Alerts on their way out of the building: one row per alert and channel, attempted until it
//! is delivered or given up, so that the delivery log shows what reached whom. Claiming a row
//! before sending it keeps two instances behind one PostgreSQL from sending it twice.

use crate::Db;
use holdfast_domain::Timestamp;
use sqlx::Row as _;
use sqlx::any::AnyRow;

#[derive(Debug, Clone, serde::Serialize)]
pub struct DeliveryRow {
    pub id: i64,
    pub event: String,
    /// The channel's name from the configuration (`email`, or a webhook's name).
    pub channel: String,
    /// The alert as JSON (event, severity, title, text, at, link).
    pub alert: String,
    pub created_at: Timestamp,
    pub attempts: i64,
    /// When the next attempt is due; `None` once delivered or given up.
    pub next_at: Option<Timestamp>,
    pub delivered_at: Option<Timestamp>,
    pub last_error: Option<String>,
}

const COLUMNS: &str =
    "id, event, channel, alert, created_at, attempts, next_at, delivered_at, last_error";

fn from_row(row: &AnyRow) -> anyhow::Result<DeliveryRow> {
    Ok(DeliveryRow {
        id: row.try_get(0)?,
        event: row.try_get(1)?,
        channel: row.try_get(2)?,
        alert: row.try_get(3)?,
        created_at: Timestamp(row.try_get(4)?),
        attempts: row.try_get(5)?,
        next_at: row.try_get::<Option<i64>, _>(6)?.map(Timestamp),
        delivered_at: row.try_get::<Option<i64>, _>(7)?.map(Timestamp),
        last_error: row.try_get(8)?,
    })
}

impl Db {
    /// Queues an alert for each channel, unless one with the same `dedupe` key was queued since
    /// `dedupe_since` (a backup that stays stale is reported once a day, not every minute).
    /// Returns how many deliveries were queued.
    pub async fn queue_alert(
        &self,
        event: &str,
        channels: &[String],
        alert: &str,
        dedupe: Option<(&str, Timestamp)>,
        now: Timestamp,
    ) -> anyhow::Result<usize> {
        let mut tx = self.write.begin().await?;
        if let Some((key, since)) = dedupe {
            let seen = sqlx::query(
                "SELECT id FROM alert_deliveries WHERE dedupe = $1 AND created_at >= $2 LIMIT 1",
            )
            .bind(key.to_owned())
            .bind(since.micros())
            .fetch_optional(&mut *tx)
            .await?;
            if seen.is_some() {
                return Ok(0);
            }
        }
        for channel in channels {
            sqlx::query(
                "INSERT INTO alert_deliveries (event, channel, alert, dedupe, created_at, next_at) VALUES ($1, $2, $3, $4, $5, $5)",
            )
            .bind(event.to_owned())
            .bind(channel.clone())
            .bind(alert.to_owned())
            .bind(dedupe.map(|(key, _)| key.to_owned()))
            .bind(now.micros())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(channels.len())
    }

    /// Claims up to `limit` deliveries that are due, for `hold_micros` (another instance skips
    /// them meanwhile; a crashed sender's claim runs out).
    pub async fn claim_due_alerts(
        &self,
        now: Timestamp,
        hold_micros: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<DeliveryRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM alert_deliveries WHERE next_at <= $1 AND (claimed_until IS NULL OR claimed_until < $1) ORDER BY id LIMIT $2"
        );
        let candidates = sqlx::query(&sql)
            .bind(now.micros())
            .bind(limit)
            .fetch_all(&self.write)
            .await?;
        let mut claimed = Vec::new();
        for row in &candidates {
            let delivery = from_row(row)?;
            let done = sqlx::query(
                "UPDATE alert_deliveries SET claimed_until = $1 WHERE id = $2 AND next_at <= $3 AND (claimed_until IS NULL OR claimed_until < $3)",
            )
            .bind(now.micros() + hold_micros)
            .bind(delivery.id)
            .bind(now.micros())
            .execute(&self.write)
            .await?;
            if done.rows_affected() == 1 {
                claimed.push(delivery);
            }
        }
        Ok(claimed)
    }

    /// Records one attempt: delivered (`error` is `None`), or failed with the next attempt at
    /// `retry_at` (`None`: given up).
    pub async fn alert_attempted(
        &self,
        id: i64,
        now: Timestamp,
        error: Option<&str>,
        retry_at: Option<Timestamp>,
    ) -> anyhow::Result<()> {
        let (delivered, next) = match error {
            None => (Some(now.micros()), None),
            Some(_) => (None, retry_at.map(Timestamp::micros)),
        };
        sqlx::query(
            "UPDATE alert_deliveries SET attempts = attempts + 1, delivered_at = $1, next_at = $2, last_error = $3, claimed_until = NULL WHERE id = $4",
        )
        .bind(delivered)
        .bind(next)
        .bind(error.map(str::to_owned))
        .bind(id)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// The delivery log, newest first.
    pub async fn alert_deliveries(&self, limit: i64) -> anyhow::Result<Vec<DeliveryRow>> {
        let sql = format!("SELECT {COLUMNS} FROM alert_deliveries ORDER BY id DESC LIMIT $1");
        let found = sqlx::query(&sql)
            .bind(limit)
            .fetch_all(self.read_pool())
            .await?;
        found.iter().map(from_row).collect()
    }
}
