//! The storage engine's own speed on this machine, without Holdfast on top: `holdfast bench`
//! prints every Holdfast figure as a ratio to these. Measured on a scratch table `bench_raw`
//! in a database opened exactly like Holdfast's (same pragmas, same durability), so the ratio
//! shows what Holdfast's own work costs.

use crate::Db;
use sqlx::Row as _;
use std::time::{Duration, Instant};

/// Rates of the bare database. Per second unless named otherwise.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawLimits {
    /// One `INSERT` per transaction, each committed durably, one after another.
    pub one_row_commits: f64,
    /// Rows per second inserted 1,000 to a transaction into a table with a secondary index.
    pub batched_rows: f64,
    /// Primary-key reads per second on one connection.
    pub pk_reads: f64,
    /// Median time of one lookup through the secondary index, in microseconds.
    pub index_lookup_us: f64,
}

/// [`RawLimits`] of SQLite itself, through its C library with no async driver in between: a
/// file `path` opened with Holdfast's pragmas (WAL, `synchronous = FULL`). The honest ceiling
/// for an SQLite install; [`Db::measure_raw_limits`] on the same file shows what the driver
/// layer costs on top.
pub fn measure_bare_sqlite(
    path: &std::path::Path,
    rows: i64,
    seconds: f64,
) -> anyhow::Result<RawLimits> {
    let _ = std::fs::remove_file(path);
    let conn = rusqlite::Connection::open(path)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000;",
    )?;
    conn.execute_batch(&format!("{CREATE}; {INDEX};"))?;
    let budget = Duration::from_secs_f64(seconds.max(0.05));
    let insert = "INSERT INTO bench_raw (id, name, email) VALUES (?1, ?2, ?3)";
    let mut next_id: i64 = 1;

    let started = Instant::now();
    let mut commits = 0u64;
    while started.elapsed() < budget {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        conn.prepare_cached(insert)?.execute(rusqlite::params![
            next_id,
            format!("Raw name {next_id}"),
            format!("raw{next_id}@example.cn")
        ])?;
        conn.execute_batch("COMMIT")?;
        next_id += 1;
        commits += 1;
    }
    let one_row_commits = commits as f64 / started.elapsed().as_secs_f64();

    let started = Instant::now();
    let first_batched = next_id;
    while next_id <= rows && (started.elapsed() < budget * 4 || next_id < 10_000) {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        {
            let mut statement = conn.prepare_cached(insert)?;
            let end = (next_id + 1000).min(rows + 1);
            while next_id < end {
                statement.execute(rusqlite::params![
                    next_id,
                    format!("Raw name {next_id}"),
                    format!("raw{next_id}@example.cn")
                ])?;
                next_id += 1;
            }
        }
        conn.execute_batch("COMMIT")?;
    }
    let batched_rows = (next_id - first_batched) as f64 / started.elapsed().as_secs_f64();

    let count = (next_id - 1).max(1);
    let started = Instant::now();
    let mut reads = 0u64;
    {
        let mut statement = conn.prepare_cached("SELECT name FROM bench_raw WHERE id = ?1")?;
        while started.elapsed() < budget {
            let id = 1 + (reads as i64 * 7919) % count;
            let _: Option<String> = statement
                .query_row([id], |row| row.get(0))
                .map(Some)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    other => Err(other),
                })?;
            reads += 1;
        }
    }
    let pk_reads = reads as f64 / started.elapsed().as_secs_f64();

    let mut lookups = Vec::new();
    {
        let mut statement = conn.prepare_cached("SELECT id FROM bench_raw WHERE email = ?1")?;
        for i in 0..200i64 {
            let email = format!("raw{}@example.cn", 1 + (i * 7919) % count);
            let one = Instant::now();
            let mut found = statement.query([email])?;
            let _ = found.next()?;
            lookups.push(one.elapsed());
        }
    }
    Ok(RawLimits {
        one_row_commits,
        batched_rows,
        pk_reads,
        index_lookup_us: median_micros(lookups),
    })
}

fn median_micros(mut times: Vec<Duration>) -> f64 {
    times.sort();
    times
        .get(times.len() / 2)
        .map_or(0.0, |t| t.as_secs_f64() * 1e6)
}

const CREATE: &str = "CREATE TABLE IF NOT EXISTS bench_raw (id BIGINT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL)";
const INDEX: &str = "CREATE INDEX IF NOT EXISTS bench_raw_email ON bench_raw (email)";
const INSERT: &str = "INSERT INTO bench_raw (id, name, email) VALUES ($1, $2, $3)";

impl Db {
    /// Measures [`RawLimits`], filling `bench_raw` with up to `rows` rows; each timed part runs
    /// for about `seconds`. The table stays for [`Db::raw_read`] until [`Db::drop_raw_table`].
    pub async fn measure_raw_limits(&self, rows: i64, seconds: f64) -> anyhow::Result<RawLimits> {
        self.drop_raw_table().await?;
        sqlx::query(CREATE).execute(&self.write).await?;
        sqlx::query(INDEX).execute(&self.write).await?;
        let budget = Duration::from_secs_f64(seconds.max(0.05));
        let mut next_id: i64 = 1;

        let started = Instant::now();
        let mut commits = 0u64;
        while started.elapsed() < budget {
            let mut tx = self.write.begin().await?;
            bind_row(next_id).execute(&mut *tx).await?;
            tx.commit().await?;
            next_id += 1;
            commits += 1;
        }
        let one_row_commits = commits as f64 / started.elapsed().as_secs_f64();

        let started = Instant::now();
        let first_batched = next_id;
        while next_id <= rows && (started.elapsed() < budget * 4 || next_id < 10_000) {
            let mut tx = self.write.begin().await?;
            let end = (next_id + 1000).min(rows + 1);
            while next_id < end {
                bind_row(next_id).execute(&mut *tx).await?;
                next_id += 1;
            }
            tx.commit().await?;
        }
        let batched_rows = (next_id - first_batched) as f64 / started.elapsed().as_secs_f64();

        let count = next_id - 1;
        let started = Instant::now();
        let mut reads = 0u64;
        let mut conn = self.read.acquire().await?;
        while started.elapsed() < budget {
            let id = 1 + (reads as i64 * 7919) % count.max(1);
            sqlx::query("SELECT name FROM bench_raw WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
            reads += 1;
        }
        let pk_reads = reads as f64 / started.elapsed().as_secs_f64();

        let mut lookups = Vec::new();
        for i in 0..200i64 {
            let email = format!("raw{}@example.cn", 1 + (i * 7919) % count.max(1));
            let one = Instant::now();
            sqlx::query("SELECT id FROM bench_raw WHERE email = $1")
                .bind(email)
                .fetch_optional(&mut *conn)
                .await?;
            lookups.push(one.elapsed());
        }
        Ok(RawLimits {
            one_row_commits,
            batched_rows,
            pk_reads,
            index_lookup_us: median_micros(lookups),
        })
    }

    /// One primary-key read from `bench_raw`: the whole work of the minimal HTTP handler.
    pub async fn raw_read(&self, id: i64) -> anyhow::Result<Option<String>> {
        let row = sqlx::query("SELECT name FROM bench_raw WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.map(|r| r.try_get::<String, _>(0)).transpose()?)
    }

    /// Brings the planner's statistics up to date after a bulk load. PostgreSQL plans by them
    /// (autovacuum refreshes them within minutes of a large change; the benchmark cannot
    /// wait); SQLite's plans here do not depend on them, so it does nothing there.
    pub async fn refresh_statistics(&self) -> anyhow::Result<()> {
        if self.backend == crate::Backend::Postgres {
            sqlx::query("ANALYZE").execute(&self.write).await?;
        }
        Ok(())
    }

    pub async fn drop_raw_table(&self) -> anyhow::Result<()> {
        sqlx::query("DROP TABLE IF EXISTS bench_raw")
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Bytes the database takes: the SQLite file with its write-ahead log, or what PostgreSQL
    /// reports for the database.
    pub async fn size_on_disk(&self, sqlite_file: Option<&std::path::Path>) -> anyhow::Result<u64> {
        match (self.backend, sqlite_file) {
            (crate::Backend::Sqlite, Some(path)) => {
                let mut total = std::fs::metadata(path)?.len();
                let wal = path.with_extension("db-wal");
                if let Ok(meta) = std::fs::metadata(&wal) {
                    total += meta.len();
                }
                Ok(total)
            }
            (crate::Backend::Sqlite, None) => {
                anyhow::bail!("the SQLite file's path is needed to measure its size")
            }
            (crate::Backend::Postgres, _) => {
                let row =
                    sqlx::query("SELECT CAST(pg_database_size(current_database()) AS BIGINT)")
                        .fetch_one(&self.read)
                        .await?;
                Ok(u64::try_from(row.try_get::<i64, _>(0)?).unwrap_or(0))
            }
        }
    }
}

fn bind_row(id: i64) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments<'static>> {
    sqlx::query(INSERT)
        .bind(id)
        .bind(format!("Raw name {id}"))
        .bind(format!("raw{id}@example.cn"))
}
