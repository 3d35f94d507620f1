//! Holdfast's use cases. Each public function takes the acting user, checks what that user may
//! do, and then reads or writes through `holdfast-store`. The web layer and the CLI call these
//! and nothing below them.
//!
//! Layout: [`records`] is the one write path for customer records and the permission-filtered
//! reads beside it; [`auth`] handles passwords, sessions, API tokens and login throttling;
//! [`users`] is user administration; [`settings`] holds custom fields and pipelines; [`home`] gathers a user's day; [`clock`]
//! is the injectable time source that lets tests move through a 90-day retention in one step.

pub mod access;
pub mod alerts;
pub mod audit_heads;
pub mod audit_key;
pub mod auth;
pub mod backup;
pub mod checklist;
pub mod clock;
pub mod containment;
pub mod db_health;
pub mod error;
pub mod guards;
pub mod home;
pub mod incident;
pub mod login;
pub mod notices;
pub mod passkeys;
pub mod passwords;
pub mod records;
pub mod revert;
pub mod security;
pub mod settings;
pub mod step_up;
pub mod timeline;
pub mod two_factor;
pub mod upgrade;
pub mod users;
pub mod visible;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::AppError;
pub use holdfast_store::alerts::DeliveryRow;
pub use holdfast_store::{
    AccessRequestRow, AuditDraft, AuditFilter, AuditKey, AuditRow, AuditSeal, Backend, BinEntry,
    Db, DbKey, LoginEventRow, NotificationRow, RoleRow, SchemaState, SecondFactorRow, SessionRow,
    StageTotal, TokenRow, TripRow, UserRow, VersionRow,
};

use holdfast_domain::{AccessConfig, Timestamp};
use std::sync::Arc;

/// Settings the use cases need, already validated by whoever built them (the CLI's config).
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// Days a deleted record stays restorable before the scheduled purge; at least 30.
    pub recycle_bin_days: i64,
    /// A session unused this long ends.
    pub session_idle_minutes: i64,
    /// A session ends this long after login, used or not.
    pub session_absolute_hours: i64,
    /// Failed sign-ins per account within the window before each further one waits (doubling
    /// from a second, at most a minute; not from a device the user signed in from before, nor
    /// for an account with a second factor).
    pub login_max_failures_per_account: i64,
    /// Failed sign-ins per client address within the window before its back-off starts.
    pub login_max_failures_per_address: i64,
    /// Failed sign-ins for one account from one client before their back-off starts.
    pub login_max_failures_per_client_and_account: i64,
    /// A session signed in with "remember this device" lasts this long, without idle limit.
    pub session_remember_days: i64,
    /// The address users reach Holdfast at (`public_url`): passkeys are bound to its host.
    /// `None`: the address each browser used.
    pub public_url: Option<String>,
    pub login_window_minutes: i64,
    /// Users may make API tokens without an expiry (the administrators' policy; off by
    /// default: every token expires within a year).
    pub tokens_may_never_expire: bool,
    /// Mass-action guards: what a user may do in bulk within a window.
    pub guards: guards::Limits,
    /// Users reach Holdfast over HTTPS (served by Holdfast itself, or by a proxy in front):
    /// cookies are `Secure` and `__Host-` named, and responses tell browsers to stay on HTTPS.
    pub https: bool,
    /// How this server meets the network, for the security page and `doctor`.
    pub transport: security::Transport,
    /// The key of an encrypted embedded database (SQLCipher).
    pub database_key: Option<holdfast_store::DbKey>,
    /// Reverse proxies whose `X-Forwarded-For`/`Forwarded` name the real client.
    pub trusted_proxies: Vec<security::IpNet>,
    /// The team's time zone as an offset from UTC, in minutes: what "today" means on the home
    /// page and how times are shown in the web pages.
    pub utc_offset_minutes: i64,
    /// Every user's access is reviewed this often (days).
    pub access_review_days: i64,
    /// An account without a login this long is dormant (days).
    pub dormant_after_days: i64,
    /// A right not used this long is unused (days).
    pub unused_after_days: i64,
    /// A client gets this long to send its request body; a slower one is answered 408 and
    /// holds nothing afterwards.
    pub body_timeout_seconds: u64,
    /// A client gets this long to send a request's headers once it has connected (and for each
    /// further request on the connection); a slower one is disconnected.
    pub header_timeout_seconds: u64,
    /// Requests handled at once; more wait up to `busy_wait_ms`, then get 503 `busy`.
    pub max_concurrent_requests: usize,
    pub busy_wait_ms: u64,
    /// Password hashes (19 MiB each) computed at once; a login that cannot get a turn within
    /// `busy_wait_ms` is answered 503 with `Retry-After`.
    pub max_concurrent_hashes: usize,
    /// Where alerts go (e-mail, webhooks).
    pub alerts: alerts::Config,
    /// Files and folders holding customers or keys (the data folder, the database, key
    /// files): the checklist turns red when other accounts on the machine can read them.
    pub private_files: Vec<std::path::PathBuf>,
    /// More administrators than this is amber on the checklist: every one is a way in.
    pub max_admins: usize,
    /// Where the server appends the audit chain's head (`[audit] head_file`), outside the
    /// database; `None`: nowhere.
    pub audit_head_file: Option<std::path::PathBuf>,
    /// The file holding the key that seals the audit log (created, and the log sealed, at
    /// the first start). `None`: the log is not sealed here, and a sealed one is refused.
    pub audit_key_file: Option<std::path::PathBuf>,
}

/// Two password checks per core: enough to keep every core busy, bounded in memory.
pub fn default_concurrent_hashes() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() * 2)
        .unwrap_or(4)
        .clamp(2, 64)
}

impl Default for AppConfig {
    fn default() -> Self {
        AppConfig {
            recycle_bin_days: 90,
            // A shared office: a desk left for an hour is signed out, and nobody stays signed
            // in past a working day.
            session_idle_minutes: 60,
            session_absolute_hours: 12,
            login_max_failures_per_account: 10,
            login_max_failures_per_address: 20,
            login_max_failures_per_client_and_account: 5,
            session_remember_days: 30,
            public_url: None,
            login_window_minutes: 15,
            tokens_may_never_expire: false,
            guards: guards::Limits::default(),
            https: false,
            transport: security::Transport::Loopback,
            database_key: None,
            trusted_proxies: Vec::new(),
            utc_offset_minutes: 0,
            access_review_days: 90,
            dormant_after_days: 60,
            unused_after_days: 90,
            body_timeout_seconds: 30,
            header_timeout_seconds: 10,
            max_concurrent_requests: 128,
            busy_wait_ms: 5_000,
            max_concurrent_hashes: default_concurrent_hashes(),
            alerts: alerts::Config::default(),
            private_files: Vec::new(),
            max_admins: 3,
            audit_head_file: None,
            audit_key_file: None,
        }
    }
}

/// Everything a use case needs: the database, the settings and the clock. Cheap to clone.
#[derive(Clone)]
pub struct App {
    pub db: Db,
    pub config: Arc<AppConfig>,
    clock: Arc<dyn Clock>,
    /// How this server takes backups; `None` when it takes none (tests, one-off commands).
    pub backups: Option<Arc<backup::schedule::BackupConfig>>,
    pub backup_jobs: Arc<backup::schedule::Jobs>,
    /// The permission settings last loaded, with their generation mark.
    access: Arc<std::sync::Mutex<Option<CachedAccess>>>,
    /// Permits for password hashes computed at once (`AppConfig::max_concurrent_hashes`).
    pub(crate) hashing: Arc<tokio::sync::Semaphore>,
}

/// Permission settings with the generation mark they were loaded at.
type CachedAccess = (String, Arc<AccessConfig>);

impl App {
    pub fn new(db: Db, config: AppConfig, clock: Arc<dyn Clock>) -> App {
        let hashes = config.max_concurrent_hashes;
        App {
            db,
            config: Arc::new(config),
            clock,
            backups: None,
            backup_jobs: Arc::default(),
            access: Arc::default(),
            hashing: Arc::new(tokio::sync::Semaphore::new(hashes.max(1))),
        }
    }

    /// Takes every password-hashing permit, as a flood of logins would; for tests.
    #[doc(hidden)]
    pub async fn occupy_hashing_for_tests(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let all = u32::try_from(self.config.max_concurrent_hashes.max(1)).unwrap_or(u32::MAX);
        self.hashing.clone().acquire_many_owned(all).await.ok()
    }

    /// The permission settings in force: reused while the database's generation mark is the
    /// one they were loaded at (one small read), reloaded when any instance changed them.
    pub async fn access_config(&self) -> Result<Arc<AccessConfig>, AppError> {
        let generation = self.db.access_generation().await?;
        if let Ok(cached) = self.access.lock()
            && let Some((mark, config)) = cached.as_ref()
            && *mark == generation
        {
            return Ok(config.clone());
        }
        let (mark, config) = self.db.load_access(self.now()).await?;
        let config = Arc::new(config);
        if let Ok(mut cached) = self.access.lock() {
            *cached = Some((mark, config.clone()));
        }
        Ok(config)
    }

    /// The same app, taking backups as `config` says.
    pub fn with_backups(mut self, config: backup::schedule::BackupConfig) -> App {
        self.backups = Some(Arc::new(config));
        self
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Opens a database and checks its schema: an empty database is initialised, one at this
    /// build's version is used as is, and anything else is refused with the command to run.
    pub async fn open(url: &str, config: AppConfig, clock: Arc<dyn Clock>) -> anyhow::Result<App> {
        let db = Db::connect_with_key(url, config.database_key.clone()).await?;
        match db.schema_state().await? {
            SchemaState::Empty => {
                db.migrate_to(holdfast_store::schema::current_version())
                    .await?;
                tracing::info!(backend = db.backend().name(), "initialised a new database");
            }
            SchemaState::Current => db.verify_migrations().await?,
            SchemaState::Behind { found, wanted } => {
                // Told to the instances still serving: their pages then say that an upgrade
                // is waiting. (A schema before 17 has no table for it.)
                let now = clock.now();
                let me = upgrade::this_instance(&random_hex(8)?, now, now, false);
                if let Err(error) = upgrade::report_instance(&db, &me).await {
                    tracing::debug!(error = %format!("{error:#}"), "could not record this instance");
                }
                anyhow::bail!(
                    "the database schema is at version {found} and this Holdfast needs version {wanted}. \
                 Run `holdfast upgrade` with the same --data-dir/--database-url: it backs the database up first, then upgrades it"
                )
            }
            SchemaState::Ahead { found, wanted } => anyhow::bail!(
                "the database schema is at version {found}, newer than this Holdfast (version {wanted}). \
                 It was upgraded by a newer Holdfast; run that version (or newer) instead"
            ),
        }
        // A damaged file is found before anyone writes to it: the instance then serves
        // read-only, red on /readyz and the admin pages, until it is restored.
        let started = std::time::Instant::now();
        match db
            .check_integrity(holdfast_store::health::Thoroughness::Quick, "start_check")
            .await
        {
            Ok(None) => tracing::debug!(
                ms = started.elapsed().as_millis(),
                "integrity quick check passed"
            ),
            Ok(Some(problem)) => tracing::error!(
                %problem,
                "THE DATABASE IS DAMAGED: serving read-only. Restore the newest verified backup into a new data folder (see /readyz)"
            ),
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "the integrity check could not run")
            }
        }
        if let Some(path) = &config.audit_key_file {
            audit_key::open(&db, path, clock.now()).await?;
        }
        Ok(App::new(db, config, clock))
    }
}

/// Random bytes as lowercase hex: session cookies, API tokens, setup tokens, op ids.
pub fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer)
        .map_err(|error| anyhow::anyhow!("no randomness from the OS: {error}"))?;
    Ok(buffer.iter().map(|b| format!("{b:02x}")).collect())
}

/// SHA-256 as hex: how secrets (cookies, tokens) are stored, so a database leak does not leak
/// working credentials.
pub fn sha256_hex(text: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The schema version this build needs.
pub fn records_schema_version() -> i64 {
    holdfast_store::schema::current_version()
}

/// Migrations that `holdfast upgrade` would apply to a database at `from`.
pub fn pending_migrations(from: i64) -> Vec<(i64, &'static str)> {
    holdfast_store::schema::MIGRATIONS
        .iter()
        .filter(|m| m.version > from)
        .map(|m| (m.version, m.name))
        .collect()
}

pub use holdfast_store::cipher;
pub use holdfast_store::files;
pub use holdfast_store::health;
pub use holdfast_store::limits::{RawLimits, measure_bare_sqlite};
pub use holdfast_store::migrate::{create_postgres_copy, drop_postgres_database};
pub use holdfast_store::redact;
pub use holdfast_store::schema;
pub use holdfast_store::snapshot::BACKUP_TABLES;
pub use holdfast_store::sqlite_path;

/// The current UTC time as `YYYYMMDDTHHMMSSZ`, for file names.
pub fn compact_utc_now() -> String {
    compact_utc(SystemClock.now())
}

/// `at` as `YYYYMMDDTHHMMSSZ`, for file names.
pub fn compact_utc(at: Timestamp) -> String {
    let digits: String = at
        .to_rfc3339()
        .chars()
        .take(19)
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .collect();
    format!("{digits}Z")
}
