//! Holdfast's storage: the only crate that speaks SQL.
//!
//! One [`Db`] serves both backends through sqlx's `Any` driver, with SQL written once in the
//! subset SQLite and PostgreSQL share (`$1` placeholders, `RETURNING`, row-value comparisons,
//! integer times). Reads go through [`Db`]'s methods; every write goes through a [`WriteTx`],
//! whose record writes always land together with their version and audit entry.
//!
//! Layout: [`schema`] holds the migration history, [`read`] the queries, [`limits`] the bare
//! engine's speed for the benchmark, [`write`] the write
//! transaction (the one write path), [`rows`] the mapping between rows and domain types.

pub mod access;
pub mod alerts;
pub mod audit_key;
pub mod backup_runs;
pub mod cipher;
pub mod files;
pub mod guards;
pub mod health;
pub mod incidents;
pub mod instances;
pub mod invariants;
pub mod limits;
pub mod migrate;
pub mod read;
mod rows;
pub use rows::record_from_backup_row;
pub mod schema;
pub mod signin;
pub mod snapshot;
pub mod write;

pub use access::{AccessRequestRow, NotificationRow, ReviewRow, RoleRow};
pub use audit_key::{AuditKey, AuditSeal};
pub use backup_runs::{BackupLock, BackupRunResult, BackupRunRow};
pub use cipher::DbKey;
pub use guards::TripRow;
pub use read::{
    AuditFilter, AuditRow, BinEntry, Dependent, ListQuery, Reach, RecordHistory, SessionRow, Sort,
    SortValue, StageTotal, TokenRow, UserRow, VersionRow,
};
pub use signin::{ChallengeRow, LoginEventRow, SecondFactorRow};
pub use snapshot::{ColumnSpec, Snapshot, TableSpec};
pub use write::{
    AuditDraft, NewSessionRow, NewTokenRow, NewUser, RecordWrite, Sealing, SessionScope,
    UserUpdate, Via, WriteTx,
};

use anyhow::Context as _;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Connection as _, Executor as _, Row as _};
use std::str::FromStr as _;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    pub fn of_url(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }
}

/// Errors a caller can act on; everything else is `Internal`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row is no longer at the version the change was based on.
    #[error("the record was changed meanwhile (now at version {current})")]
    VersionConflict { current: i64 },
    /// A unique constraint refused the write; names the constraint's column.
    #[error("{0} is already taken")]
    Duplicate(&'static str),
    /// The database was found corrupt: it takes no writes until it is restored.
    #[error("the database is read-only because it was found damaged: {}", .0.detail)]
    ReadOnly(health::Fault),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        StoreError::Internal(anyhow::Error::new(error))
    }
}

/// What state a database's schema is in, compared with this build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaState {
    /// No Holdfast tables yet: `serve` may initialise it.
    Empty,
    Current,
    /// Older than this build: `holdfast upgrade` must run first.
    Behind {
        found: i64,
        wanted: i64,
    },
    /// Newer than this build: this binary must not touch it.
    Ahead {
        found: i64,
        wanted: i64,
    },
}

/// Connection pools for one database.
#[derive(Clone, Debug)]
pub struct Db {
    read: AnyPool,
    /// Writers. On SQLite this pool has a single connection, so writes queue in-process instead
    /// of failing with `SQLITE_BUSY`; on PostgreSQL it is the same pool as `read`.
    pub(crate) write: AnyPool,
    backend: Backend,
    /// Faults seen in this database (corruption, a full disk), shared by every clone.
    health: std::sync::Arc<health::Health>,
    /// The SQLCipher key an encrypted SQLite database was opened with.
    key: Option<DbKey>,
    /// The key that seals the audit log (see [`audit_key`]), shared by every clone.
    audit_key: std::sync::Arc<std::sync::RwLock<Option<AuditKey>>>,
    /// Whether the audit head has the seal's columns: 0 not yet asked, 1 no, 2 yes. Asked once
    /// (every write transaction reads the head), asked again after this process migrates.
    sealable: std::sync::Arc<std::sync::atomic::AtomicU8>,
}

impl Db {
    /// Opens a database; an SQLite file is created if missing. Does not migrate.
    pub async fn connect(url: &str) -> anyhow::Result<Db> {
        Db::connect_with_key(url, None).await
    }

    /// Opens a database, an SQLite one encrypted with `key` (a new file is created encrypted).
    pub async fn connect_with_key(url: &str, key: Option<DbKey>) -> anyhow::Result<Db> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url).with_context(|| {
            format!(
                "unsupported database URL {}: use sqlite://PATH or postgres://…",
                redact(url)
            )
        })?;
        let options = AnyConnectOptions::from_str(url)
            .with_context(|| format!("invalid database URL {}", redact(url)))?;
        anyhow::ensure!(
            key.is_none() || backend == Backend::Sqlite,
            "a database key is for the embedded SQLite database; encrypt a PostgreSQL server's disk instead"
        );
        // SQLCipher must have the key before the file is first read; sqlx's own pragmas on
        // connect (foreign_keys) do not read it, so the key is the first thing said here.
        let key_pragma: Option<std::sync::Arc<str>> = key
            .as_ref()
            .map(|k| format!("PRAGMA key = {}", k.sql_literal()).into());
        let pool = |max: u32| {
            let key_pragma = key_pragma.clone();
            AnyPoolOptions::new()
                .max_connections(max)
                .acquire_timeout(Duration::from_secs(30))
                .after_connect(move |conn, _meta| {
                    let key_pragma = key_pragma.clone();
                    Box::pin(async move {
                        if let Some(pragma) = key_pragma.as_deref() {
                            conn.execute(pragma).await?;
                        }
                        if backend == Backend::Postgres {
                            // Every query is a prepared statement; after five runs PostgreSQL
                            // would switch to one generic plan that cannot see how rare a search
                            // term is (the bench measured 1.1 s for an e-mail search). Planning
                            // each execution costs a fraction of a millisecond.
                            conn.execute("SET plan_cache_mode = force_custom_plan")
                                .await?;
                        }
                        if backend == Backend::Sqlite {
                            // WAL lets readers run beside the writer; FULL makes an acknowledged
                            // commit survive power loss; SQLite leaves foreign keys off by default.
                            for pragma in [
                                "PRAGMA journal_mode = WAL",
                                "PRAGMA synchronous = FULL",
                                "PRAGMA foreign_keys = ON",
                                "PRAGMA busy_timeout = 10000",
                            ] {
                                conn.execute(pragma).await?;
                            }
                        }
                        Ok(())
                    })
                })
        };
        let db = match backend {
            Backend::Sqlite => {
                // One connection by hand first: a pool would retry a failing open for its whole
                // acquire timeout and then report only that it timed out.
                sqlite_preflight(url)?;
                let keyed = key.is_some();
                let mut first = sqlx::AnyConnection::connect_with(&options)
                    .await
                    .map_err(|error| sqlite_open_error(url, error.into(), keyed))?;
                if let Some(pragma) = key_pragma.as_deref()
                    && let Err(error) = first.execute(pragma).await
                {
                    return Err(sqlite_open_error(url, error.into(), keyed));
                }
                if let Err(error) = first.execute("PRAGMA journal_mode = WAL").await {
                    return Err(sqlite_open_error(url, error.into(), keyed));
                }
                first.close().await.ok();
                let write = pool(1)
                    .connect_with(options.clone())
                    .await
                    .with_context(|| format!("opening {}", redact(url)))?;
                let read = pool(4)
                    .connect_with(options)
                    .await
                    .with_context(|| format!("opening {}", redact(url)))?;
                Db {
                    read,
                    write,
                    backend,
                    health: Default::default(),
                    key,
                    audit_key: Default::default(),
                    sealable: Default::default(),
                }
            }
            Backend::Postgres => {
                let pool = pool(16)
                    .connect_with(options)
                    .await
                    .with_context(|| format!("connecting to {}", redact(url)))?;
                Db {
                    read: pool.clone(),
                    write: pool,
                    backend,
                    health: Default::default(),
                    key: None,
                    audit_key: Default::default(),
                    sealable: Default::default(),
                }
            }
        };
        Ok(db)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The key this SQLite database is encrypted with; `None` when it is not encrypted.
    pub fn key(&self) -> Option<&DbKey> {
        self.key.as_ref()
    }

    /// The audit key this Holdfast seals the audit log with, once it was given one.
    pub fn audit_key(&self) -> Option<AuditKey> {
        self.audit_key.read().ok().and_then(|key| key.clone())
    }

    /// Whether the audit head has the seal's columns (schema 16 on), asked of the catalog once.
    pub(crate) async fn head_sealable(
        &self,
        conn: &mut sqlx::AnyConnection,
    ) -> anyhow::Result<bool> {
        use std::sync::atomic::Ordering;
        match self.sealable.load(Ordering::Acquire) {
            1 => Ok(false),
            2 => Ok(true),
            _ => {
                let sealable = write::head_is_sealable(conn, self.backend).await?;
                self.sealable
                    .store(if sealable { 2 } else { 1 }, Ordering::Release);
                Ok(sealable)
            }
        }
    }

    /// Forgets what [`Db::head_sealable`] found: the schema just changed.
    pub(crate) fn schema_changed(&self) {
        self.sealable.store(0, std::sync::atomic::Ordering::Release);
    }

    /// Gives this database (and every clone of it) the key that seals its audit log.
    pub fn set_audit_key(&self, key: Option<AuditKey>) {
        if let Ok(mut slot) = self.audit_key.write() {
            *slot = key;
        }
    }

    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }

    /// Whether this PostgreSQL connection is encrypted (TLS), from `pg_stat_ssl`.
    pub async fn postgres_connection_encrypted(&self) -> anyhow::Result<bool> {
        anyhow::ensure!(self.backend == Backend::Postgres, "not PostgreSQL");
        let row = sqlx::query(
            "SELECT CASE WHEN ssl THEN 1 ELSE 0 END FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        )
        .fetch_optional(&self.read)
        .await
        .context("reading pg_stat_ssl")?;
        Ok(match row {
            Some(row) => row.try_get::<i32, _>(0)? == 1,
            None => false,
        })
    }

    /// Cheap round trip for `/readyz`.
    pub async fn ping(&self) -> anyhow::Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.read)
            .await
            .context("database ping")?;
        Ok(())
    }

    /// The highest applied migration, or `None` for a database without Holdfast tables.
    pub async fn schema_version(&self) -> anyhow::Result<Option<i64>> {
        let exists = match self.backend {
            Backend::Sqlite => {
                sqlx::query("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'")
                    .fetch_one(&self.read)
                    .await?
                    .try_get::<i64, _>(0)?
            }
            Backend::Postgres => {
                sqlx::query("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'schema_migrations'")
                    .fetch_one(&self.read)
                    .await?
                    .try_get::<i64, _>(0)?
            }
        };
        if exists == 0 {
            return Ok(None);
        }
        let version = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            .fetch_one(&self.read)
            .await
            .context("reading schema_migrations")?
            .try_get::<i64, _>(0)?;
        Ok(Some(version))
    }

    pub async fn schema_state(&self) -> anyhow::Result<SchemaState> {
        let wanted = schema::current_version();
        Ok(match self.schema_version().await? {
            None => SchemaState::Empty,
            Some(found) if found == wanted => SchemaState::Current,
            Some(found) if found < wanted => SchemaState::Behind { found, wanted },
            Some(found) => SchemaState::Ahead { found, wanted },
        })
    }

    /// A consistent copy of an SQLite database in one file (`VACUUM INTO`), taken while
    /// others keep reading and writing. Fails if `path` exists.
    ///
    /// Written as `.NAME.partial` beside `path`, checked (it opens, passes `quick_check` and has
    /// the source's schema version), synced and only then renamed: a full disk or a crash never
    /// leaves a file named like a good copy. A failed copy's partial file is removed, and so are
    /// partial files earlier runs left behind.
    pub async fn sqlite_copy_to(&self, path: &std::path::Path) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.backend == Backend::Sqlite,
            "file copies are for SQLite databases"
        );
        anyhow::ensure!(!path.exists(), "{} already exists", path.display());
        let folder = path.parent().unwrap_or(std::path::Path::new("."));
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .context("copy path has no file name")?;
        remove_partials(folder);
        let partial = folder.join(format!(".{name}.partial"));
        let result = self.sqlite_copy_checked(&partial).await;
        let result = result.and_then(|()| {
            files::make_private(&partial)?;
            std::fs::File::open(&partial)?.sync_all()?;
            std::fs::rename(&partial, path)
                .with_context(|| format!("moving the copy into place as {}", path.display()))?;
            if let Ok(dir) = std::fs::File::open(folder) {
                let _ = dir.sync_all();
            }
            Ok(())
        });
        if let Err(error) = result {
            let _ = std::fs::remove_file(&partial);
            return Err(error.context(format!(
                "copying the database to {} failed; nothing was left behind",
                path.display()
            )));
        }
        Ok(())
    }

    async fn sqlite_copy_checked(&self, partial: &std::path::Path) -> anyhow::Result<()> {
        let target = partial.to_str().context("copy path is not valid UTF-8")?;
        sqlx::query("VACUUM INTO $1")
            .bind(target)
            .execute(&self.read)
            .await
            .with_context(|| format!("writing {target}"))?;
        let mut copy = self.open_copy(partial).await?;
        let check: String = sqlx::query("PRAGMA quick_check")
            .fetch_one(&mut copy)
            .await?
            .try_get(0)?;
        let copied: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            .fetch_one(&mut copy)
            .await?
            .try_get(0)?;
        copy.close().await.ok();
        anyhow::ensure!(
            check == "ok",
            "the copy does not pass a quick check: {check}"
        );
        let source = self.schema_version().await?.unwrap_or(0);
        anyhow::ensure!(
            copied == source,
            "the copy is at schema version {copied}, the database at {source}"
        );
        Ok(())
    }

    /// Opens a copy of this SQLite database read-only, with this database's key.
    async fn open_copy(&self, path: &std::path::Path) -> anyhow::Result<sqlx::AnyConnection> {
        open_sqlite_file(path, self.key.as_ref()).await
    }

    /// Writes an encrypted copy of this SQLite database to `target` (which must not exist)
    /// under `key`, and checks it: it opens with the key, passes the integrity check and holds
    /// as many rows as the database in every table. Taken on the one writer connection, so no
    /// change can slip in between. `holdfast db encrypt` and `db rekey` swap it into place.
    pub async fn sqlite_encrypted_copy(
        &self,
        target: &std::path::Path,
        key: &DbKey,
    ) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.backend == Backend::Sqlite,
            "encryption at rest is for the embedded SQLite database"
        );
        anyhow::ensure!(!target.exists(), "{} already exists", target.display());
        let name = target.to_str().context("the path is not valid UTF-8")?;
        let mut conn = self.write.acquire().await?;
        sqlx::query("ATTACH DATABASE $1 AS holdfast_export KEY $2")
            .bind(name)
            .bind(format!("x'{}'", key.to_text()))
            .execute(&mut *conn)
            .await
            .with_context(|| format!("creating {name}"))?;
        let exported = sqlx::query("SELECT sqlcipher_export('holdfast_export')")
            .fetch_optional(&mut *conn)
            .await;
        conn.execute("DETACH DATABASE holdfast_export").await?;
        exported.with_context(|| format!("copying the database into {name}"))?;
        let tables: Vec<String> = sqlx::query(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| row.try_get::<String, _>(0))
        .collect::<Result<_, _>>()?;
        let mut counts = Vec::new();
        for table in &tables {
            counts.push(count_in(&mut conn, table).await?);
        }
        drop(conn);
        files::make_private(target)?;
        let mut copy = open_sqlite_file(target, Some(key)).await?;
        let check: String = sqlx::query("PRAGMA quick_check")
            .fetch_one(&mut copy)
            .await?
            .try_get(0)?;
        anyhow::ensure!(check == "ok", "the encrypted copy fails its check: {check}");
        for (table, expected) in tables.iter().zip(counts) {
            let copied = count_in(&mut copy, table).await?;
            anyhow::ensure!(
                copied == expected,
                "the encrypted copy has {copied} rows in {table}, the database {expected}"
            );
        }
        copy.close().await.ok();
        Ok(())
    }

    /// Runs raw SQL; for tests that break the schema on purpose.
    #[doc(hidden)]
    pub async fn execute_raw_for_tests(&self, sql: &str) -> anyhow::Result<u64> {
        Ok(self.write.execute(sql).await?.rows_affected())
    }

    /// One integer from raw SQL; for tests that look at the file's layout.
    #[doc(hidden)]
    pub async fn query_i64_for_tests(&self, sql: &str) -> anyhow::Result<i64> {
        Ok(sqlx::query(sql)
            .fetch_one(&self.read)
            .await?
            .try_get::<i64, _>(0)?)
    }

    /// The first column of every row of raw SQL, as text; for tests that compare a schema.
    #[doc(hidden)]
    pub async fn query_texts_for_tests(&self, sql: &str) -> anyhow::Result<Vec<String>> {
        sqlx::query(sql)
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(|row| Ok(row.try_get::<String, _>(0)?))
            .collect()
    }

    /// Every row of raw SQL, each column as optional text (cast it in the SQL); for tests
    /// that dump a database.
    #[doc(hidden)]
    pub async fn query_rows_for_tests(
        &self,
        sql: &str,
    ) -> anyhow::Result<Vec<Vec<Option<String>>>> {
        sqlx::query(sql)
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| Ok(row.try_get::<Option<String>, _>(i)?))
                    .collect()
            })
            .collect()
    }

    /// How many bytes the database takes: the SQLite file's pages, or PostgreSQL's database.
    pub async fn size_bytes(&self) -> anyhow::Result<i64> {
        let sql = match self.backend {
            Backend::Sqlite => {
                "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()"
            }
            Backend::Postgres => "SELECT pg_database_size(current_database())",
        };
        Ok(sqlx::query(sql)
            .fetch_one(&self.read)
            .await?
            .try_get::<i64, _>(0)?)
    }

    /// Counts rows of a table; for tests and `doctor`.
    pub async fn count_rows(&self, table: &str) -> anyhow::Result<i64> {
        anyhow::ensure!(
            table.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
            "bad table name"
        );
        Ok(sqlx::query(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&self.read)
            .await?
            .try_get::<i64, _>(0)?)
    }

    pub(crate) fn read_pool(&self) -> &AnyPool {
        &self.read
    }
}

/// Opens an SQLite file read-only, with its key when it is encrypted.
async fn open_sqlite_file(
    path: &std::path::Path,
    key: Option<&DbKey>,
) -> anyhow::Result<sqlx::AnyConnection> {
    let name = path.to_str().context("the path is not valid UTF-8")?;
    let mut conn = sqlx::AnyConnection::connect(&format!("sqlite://{name}?mode=ro")).await?;
    if let Some(key) = key {
        conn.execute(format!("PRAGMA key = {}", key.sql_literal()).as_str())
            .await?;
    }
    Ok(conn)
}

async fn count_in(conn: &mut sqlx::AnyConnection, table: &str) -> anyhow::Result<i64> {
    anyhow::ensure!(
        table
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_'),
        "unexpected table name {table}"
    );
    Ok(sqlx::query(&format!("SELECT COUNT(*) FROM \"{table}\""))
        .fetch_one(&mut *conn)
        .await?
        .try_get::<i64, _>(0)?)
}

/// The file an SQLite URL names, if it names one.
pub fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| std::path::PathBuf::from(path))
}

/// Opens the file and probes its folder the way SQLite will, so that a read-only or missing
/// folder, or a file Holdfast may not write, is reported at once with the path and the
/// operating system's reason.
fn sqlite_preflight(url: &str) -> anyhow::Result<()> {
    let Some(path) = sqlite_path(url) else {
        return Ok(());
    };
    if url.contains("mode=ro") {
        // Opened for reading only: nothing here needs to be writable.
        return Ok(());
    }
    let create = url.contains("mode=rwc");
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    if !folder.is_dir() {
        anyhow::bail!(
            "cannot open the database {}: its folder {} does not exist",
            path.display(),
            folder.display()
        );
    }
    let mut options = std::fs::OpenOptions::new();
    options
        .read(true)
        .write(true)
        .create(create)
        .truncate(false);
    // A new database file is private from the start; SQLite gives its journal files the
    // database file's permissions.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(&path).with_context(|| {
        format!(
            "cannot open the database file {} for reading and writing",
            path.display()
        )
    })?;
    files::make_private(&path).with_context(|| {
        format!(
            "cannot make {} readable by this account only",
            path.display()
        )
    })?;
    // SQLite keeps its write-ahead log and shared-memory index beside the file.
    let probe = folder.join(format!(".holdfast-write-probe-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .with_context(|| format!("the data folder {} is not writable (SQLite keeps its journal files beside the database)", folder.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// An SQLite open error with the file it was about and, for a damaged file, how to recover.
/// `keyed`: a database key was given.
fn sqlite_open_error(url: &str, error: anyhow::Error, keyed: bool) -> anyhow::Error {
    let file = sqlite_path(url).map_or_else(|| redact(url), |p| p.display().to_string());
    let kind = sqlite_path(url).map_or(cipher::FileKind::Missing, |p| cipher::file_kind(&p));
    let unreadable = matches!(
        health::classify(&error),
        Some((health::FaultKind::Corrupt, _))
    );
    match (kind, keyed) {
        (cipher::FileKind::Plain, true) => {
            return anyhow::anyhow!(
                "the database file {file} is not encrypted, but a database key is configured: encrypt it with `holdfast db encrypt` (Holdfast stopped), or remove database_key_file / HOLDFAST_DATABASE_KEY"
            );
        }
        (cipher::FileKind::Opaque, false) if unreadable => {
            return anyhow::anyhow!(
                "the database file {file} does not start like an SQLite database: it is encrypted, or it is damaged. \
                 If it is encrypted, give its key with database_key_file = \"PATH\" in holdfast.toml or the HOLDFAST_DATABASE_KEY environment variable. \
                 If it is damaged, restore the newest verified backup into a new data folder: `holdfast backup restore BACKUP_FILE --data-dir NEW_FOLDER`, then serve from NEW_FOLDER; keep the damaged file for inspection"
            );
        }
        (cipher::FileKind::Opaque, true) if unreadable => {
            return anyhow::anyhow!(
                "the database key does not open {file}: it is the wrong key, or the file is damaged. Use the key file the database was encrypted with (its fingerprint is printed by `holdfast db encrypt` and shown on the security page)"
            );
        }
        _ => {}
    }
    match health::classify(&error) {
        Some((health::FaultKind::Corrupt, detail)) => anyhow::anyhow!(
            "the database file {file} is damaged ({detail}). Restore the newest verified backup into a new data folder: \
             `holdfast backup restore BACKUP_FILE --data-dir NEW_FOLDER` (backups are in the backup folder, by default DATA_DIR/backups), then serve from NEW_FOLDER; keep the damaged file for inspection"
        ),
        Some((health::FaultKind::DiskFull, detail)) => anyhow::anyhow!(
            "cannot open the database file {file}: the disk is full ({detail}); free space and start again"
        ),
        None => error.context(format!("cannot open the database file {file}")),
    }
}

/// Removes `.NAME.partial` files an interrupted copy left in `folder`.
fn remove_partials(folder: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.ends_with(".db.partial") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

pub(crate) fn unix_micros_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A database URL without its password, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            super::redact("postgres://app:s3cret@db:5432/crm"),
            "postgres://app:***@db:5432/crm"
        );
        assert_eq!(
            super::redact("sqlite:///data/holdfast.db"),
            "sqlite:///data/holdfast.db"
        );
    }
}
