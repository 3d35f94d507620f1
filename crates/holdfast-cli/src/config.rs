//! Configuration, filled in layers: defaults in code, then `holdfast.toml`, then `HOLDFAST_…`
//! environment variables, then command-line flags. Unknown keys are errors at every layer, so a
//! typo never silently falls back to a default.

use anyhow::Context as _;
use holdfast_app::AppConfig;
use holdfast_app::DbKey;
use holdfast_app::backup::Key;
use holdfast_app::backup::schedule::{BackupConfig, Retention};
use holdfast_app::security::Transport;
use holdfast_web::transport::TlsFiles;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The commented example printed by `holdfast config example`; a test parses it.
pub const EXAMPLE: &str = include_str!("../holdfast.example.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub listen: String,
    pub data_dir: PathBuf,
    /// Empty means SQLite in `data_dir`.
    pub database_url: String,
    /// How users reach Holdfast, e.g. `https://crm.example.com`; https marks cookies Secure.
    pub public_url: String,
    /// Serve plain HTTP on a network address anyway (passwords and customers cross the
    /// network in clear; the security page and `doctor` show it red).
    pub insecure_http: bool,
    /// The key file of an encrypted embedded database (64 hex digits, readable only by
    /// Holdfast's account); `holdfast db encrypt` writes it.
    pub database_key_file: PathBuf,
    /// The key itself, for the `HOLDFAST_DATABASE_KEY` environment variable (prefer the file).
    pub database_key: SecretText,
    /// The team's time zone as `+08:00`: what "today" is and how the pages show times.
    pub utc_offset: String,
    pub log: LogConfig,
    pub recycle_bin: RecycleBinConfig,
    pub sessions: SessionConfig,
    pub login: LoginConfig,
    /// Mass-action guards.
    pub guards: holdfast_app::guards::Limits,
    pub backup: BackupSection,
    pub access: AccessSection,
    pub limits: LimitsSection,
    pub tls: TlsSection,
    pub server: ServerSection,
    pub alerts: crate::alerts_config::AlertsSection,
    pub security: SecuritySection,
    pub audit: AuditSection,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSection {
    /// A file outside the database (another disk, a log host's mount) that the server appends
    /// the audit chain's head to; empty: none.
    pub head_file: PathBuf,
    /// The key that seals the audit log; empty: `audit.key` in the data folder. Keep it where
    /// someone who can write to the database cannot read it, and a copy with the backup key.
    pub key_file: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecuritySection {
    /// More administrators than this is amber on the security checklist.
    pub max_admins: usize,
}

impl Default for SecuritySection {
    fn default() -> Self {
        SecuritySection {
            max_admins: AppConfig::default().max_admins,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Reverse proxies (addresses or networks such as 10.0.0.0/8) whose X-Forwarded-For or
    /// Forwarded header names the real client, for login throttling, sessions and the audit log.
    pub trusted_proxies: Vec<String>,
}

/// Text that never shows in `Debug` output (configuration is never logged, but a panic or an
/// error could print it).
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct SecretText(pub String);

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"…\"" })
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// Certificate chain (PEM). Empty: `tls/cert.pem` in the data folder if it exists
    /// (`holdfast tls self-signed` writes it). Reloaded when the file changes.
    pub cert_file: PathBuf,
    /// Private key (PEM). Empty: `tls/key.pem` in the data folder.
    pub key_file: PathBuf,
    /// ADDRESS:PORT of a plain-HTTP listener that only redirects to HTTPS (e.g. 0.0.0.0:80).
    pub redirect_http_from: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Seconds a client gets to send its request body (slow clients cannot hold the server).
    pub body_timeout_seconds: u64,
    /// Seconds a client gets to send a request's headers.
    pub header_timeout_seconds: u64,
    /// Requests handled at once; more wait up to `busy_wait_ms`, then get 503 busy.
    pub max_concurrent_requests: usize,
    pub busy_wait_ms: u64,
    /// Passwords checked at once (each check takes 19 MiB for a moment); 0: twice the cores.
    pub max_concurrent_password_checks: usize,
}

impl Default for LimitsSection {
    fn default() -> Self {
        let app = AppConfig::default();
        LimitsSection {
            body_timeout_seconds: app.body_timeout_seconds,
            header_timeout_seconds: app.header_timeout_seconds,
            max_concurrent_requests: app.max_concurrent_requests,
            busy_wait_ms: app.busy_wait_ms,
            max_concurrent_password_checks: 0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessSection {
    /// Every user's access is confirmed (or trimmed) by an administrator this often.
    pub review_every_days: i64,
    /// Accounts without a login for this long are listed as dormant.
    pub dormant_after_days: i64,
    /// Rights not used for this long are listed as unused.
    pub unused_after_days: i64,
}

impl Default for AccessSection {
    fn default() -> Self {
        let app = AppConfig::default();
        AccessSection {
            review_every_days: app.access_review_days,
            dormant_after_days: app.dormant_after_days,
            unused_after_days: app.unused_after_days,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupSection {
    /// Empty: `backups` in the data folder.
    pub dir: PathBuf,
    pub every_minutes: i64,
    pub on_shutdown: bool,
    pub key_file: PathBuf,
    pub passphrase_file: PathBuf,
    pub copy_to: PathBuf,
    pub drill: bool,
    pub scratch_dir: PathBuf,
    pub keep_hourly: usize,
    pub keep_daily: usize,
    pub keep_weekly: usize,
    pub keep_monthly: usize,
}

impl Default for BackupSection {
    fn default() -> Self {
        let keep = Retention::default();
        BackupSection {
            dir: PathBuf::new(),
            every_minutes: 360,
            on_shutdown: true,
            key_file: PathBuf::new(),
            passphrase_file: PathBuf::new(),
            copy_to: PathBuf::new(),
            drill: true,
            scratch_dir: PathBuf::new(),
            keep_hourly: keep.hourly,
            keep_daily: keep.daily,
            keep_weekly: keep.weekly,
            keep_monthly: keep.monthly,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub level: String,
    /// `text` or `json`.
    pub format: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecycleBinConfig {
    pub retention_days: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    pub idle_minutes: i64,
    pub absolute_hours: i64,
    pub remember_days: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoginConfig {
    pub max_failures_per_account: i64,
    pub max_failures_per_address: i64,
    pub max_failures_per_client_and_account: i64,
    pub window_minutes: i64,
    pub tokens_may_never_expire: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./holdfast-data"),
            database_url: String::new(),
            public_url: String::new(),
            insecure_http: false,
            database_key_file: PathBuf::new(),
            database_key: SecretText::default(),
            utc_offset: "+00:00".into(),
            log: LogConfig::default(),
            recycle_bin: RecycleBinConfig::default(),
            sessions: SessionConfig::default(),
            login: LoginConfig::default(),
            guards: holdfast_app::guards::Limits::default(),
            backup: BackupSection::default(),
            access: AccessSection::default(),
            limits: LimitsSection::default(),
            tls: TlsSection::default(),
            server: ServerSection::default(),
            alerts: Default::default(),
            security: SecuritySection::default(),
            audit: AuditSection::default(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: "text".into(),
        }
    }
}

impl Default for RecycleBinConfig {
    fn default() -> Self {
        RecycleBinConfig {
            retention_days: AppConfig::default().recycle_bin_days,
        }
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        let app = AppConfig::default();
        SessionConfig {
            idle_minutes: app.session_idle_minutes,
            absolute_hours: app.session_absolute_hours,
            remember_days: app.session_remember_days,
        }
    }
}

impl Default for LoginConfig {
    fn default() -> Self {
        let app = AppConfig::default();
        LoginConfig {
            max_failures_per_account: app.login_max_failures_per_account,
            max_failures_per_address: app.login_max_failures_per_address,
            max_failures_per_client_and_account: app.login_max_failures_per_client_and_account,
            window_minutes: app.login_window_minutes,
            tokens_may_never_expire: app.tokens_may_never_expire,
        }
    }
}

/// Flags that override the other layers.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
}

impl Config {
    /// Loads the layers. `file` is `--config`; without it `./holdfast.toml` is read if present.
    pub fn load(
        file: Option<&Path>,
        env: impl Iterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> anyhow::Result<Config> {
        let mut table = match file {
            Some(path) => read_table(path)?,
            None if Path::new("holdfast.toml").exists() => read_table(Path::new("holdfast.toml"))?,
            None => toml::Table::new(),
        };
        for (key, value) in env {
            let Some(rest) = key.strip_prefix("HOLDFAST_") else {
                continue;
            };
            if rest == "CONFIG" || rest.is_empty() {
                continue;
            }
            let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
            set_path(&mut table, &path, parse_env_value(&value))
                .with_context(|| format!("environment variable {key}"))?;
        }
        let mut config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|error: toml::de::Error| anyhow::anyhow!("{}", error.message()))
            .context("invalid configuration (from holdfast.toml or HOLDFAST_… variables); `holdfast config example` shows every key")?;
        if let Some(listen) = &overrides.listen {
            config.listen = listen.clone();
        }
        if let Some(dir) = &overrides.data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(url) = &overrides.database_url {
            config.database_url = url.clone();
        }
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=3650).contains(&self.access.review_every_days)
                && (1..=3650).contains(&self.access.dormant_after_days)
                && (1..=3650).contains(&self.access.unused_after_days),
            "access.review_every_days, access.dormant_after_days and access.unused_after_days must each be from 1 to 3650 days"
        );
        anyhow::ensure!(
            self.recycle_bin.retention_days >= 30,
            "recycle_bin.retention_days is {}, but must be at least 30: a deleted record must stay restorable for a month",
            self.recycle_bin.retention_days
        );
        anyhow::ensure!(
            self.sessions.idle_minutes >= 1,
            "sessions.idle_minutes must be at least 1"
        );
        anyhow::ensure!(
            self.sessions.absolute_hours >= 1,
            "sessions.absolute_hours must be at least 1"
        );
        anyhow::ensure!(
            self.login.max_failures_per_account >= 1,
            "login.max_failures_per_account must be at least 1"
        );
        anyhow::ensure!(
            self.login.max_failures_per_address >= 1
                && self.login.max_failures_per_client_and_account >= 1,
            "login.max_failures_per_address and login.max_failures_per_client_and_account must be at least 1"
        );
        let g = &self.guards;
        anyhow::ensure!(
            (1..=1440).contains(&g.window_minutes) && g.all_positive(),
            "guards.window_minutes must be from 1 to 1440 and every guard's limit at least 1"
        );
        anyhow::ensure!(
            (1..=365).contains(&self.sessions.remember_days),
            "sessions.remember_days must be from 1 to 365"
        );
        anyhow::ensure!(
            (1..=600).contains(&self.limits.header_timeout_seconds),
            "limits.header_timeout_seconds must be from 1 to 600"
        );
        anyhow::ensure!(
            self.login.window_minutes >= 1,
            "login.window_minutes must be at least 1"
        );
        anyhow::ensure!(
            matches!(self.log.format.as_str(), "text" | "json"),
            "log.format must be text or json"
        );
        self.listen
            .parse::<std::net::SocketAddr>()
            .with_context(|| {
                format!(
                    "listen = {:?} is not ADDRESS:PORT, e.g. 127.0.0.1:8080",
                    self.listen
                )
            })?;
        self.trusted_proxies()?;
        self.alerts.to_app()?;
        anyhow::ensure!(
            self.security.max_admins >= 1,
            "security.max_admins must be at least 1"
        );
        parse_utc_offset(&self.utc_offset).with_context(|| {
            format!(
                "utc_offset = {:?} is not an offset such as +08:00 or -05:00",
                self.utc_offset
            )
        })?;
        anyhow::ensure!(
            self.backup.every_minutes >= 0,
            "backup.every_minutes must be 0 (no schedule) or more"
        );
        anyhow::ensure!(
            self.backup.keep_hourly
                + self.backup.keep_daily
                + self.backup.keep_weekly
                + self.backup.keep_monthly
                >= 1,
            "backup.keep_* must keep at least one backup"
        );
        if !self.database_url.is_empty() {
            anyhow::ensure!(
                holdfast_app::Backend::of_url(&self.database_url).is_some(),
                "database_url must start with sqlite:// or postgres://"
            );
        }
        Ok(())
    }

    /// The backup folder: `backup.dir`, or `backups` in the data folder.
    pub fn backup_dir(&self) -> anyhow::Result<PathBuf> {
        if self.backup.dir.as_os_str().is_empty() {
            return Ok(self.absolute_data_dir()?.join("backups"));
        }
        Ok(self.backup.dir.clone())
    }

    /// The configured backup key: `--key-file`/`--passphrase-file` flags first, then
    /// `backup.key_file`/`backup.passphrase_file`. `None` when backups are not encrypted.
    pub fn backup_key(
        &self,
        key_file: Option<&Path>,
        passphrase_file: Option<&Path>,
    ) -> anyhow::Result<Option<Key>> {
        let non_empty = |p: &Path| (!p.as_os_str().is_empty()).then(|| p.to_path_buf());
        let key_file = key_file
            .map(Path::to_path_buf)
            .or_else(|| non_empty(&self.backup.key_file));
        let passphrase_file = passphrase_file
            .map(Path::to_path_buf)
            .or_else(|| non_empty(&self.backup.passphrase_file));
        match (key_file, passphrase_file) {
            (Some(_), Some(_)) => {
                anyhow::bail!("give a backup key file or a passphrase file, not both")
            }
            (Some(path), None) => read_backup_key(&path).map(Some),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(&path).with_context(|| {
                    format!("cannot read the backup passphrase file {}", path.display())
                })?;
                Key::passphrase(&text)
                    .map(Some)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
            }
            (None, None) => {
                // The key generated at first start, once there is one.
                let path = self.default_backup_key_file()?;
                if !path.exists() {
                    return Ok(None);
                }
                read_backup_key(&path).map(Some)
            }
        }
    }

    /// Where the backup key generated at first start lives: `backup.key` in the data folder.
    pub fn default_backup_key_file(&self) -> anyhow::Result<PathBuf> {
        Ok(self.absolute_data_dir()?.join("backup.key"))
    }

    /// Backups are encrypted by default: without a configured key or passphrase, a key is
    /// generated in the data folder the first time one is needed (readable by Holdfast's account
    /// only). Returns the new file when one was made, so the caller can say so.
    pub fn ensure_backup_key(&self) -> anyhow::Result<Option<PathBuf>> {
        if self.backup_key(None, None)?.is_some() {
            return Ok(None);
        }
        let path = self.default_backup_key_file()?;
        if let Some(folder) = path.parent() {
            holdfast_app::files::private_dir(folder)
                .with_context(|| format!("creating {}", folder.display()))?;
        }
        let (text, _public) = Key::generate();
        holdfast_app::files::write_secret_new(&path, text.as_bytes())
            .with_context(|| format!("writing the new backup key {}", path.display()))?;
        Ok(Some(path))
    }

    /// The key of an encrypted embedded database: `database_key` (from HOLDFAST_DATABASE_KEY)
    /// or `database_key_file`; `None` when the database is not encrypted.
    pub fn database_key(&self) -> anyhow::Result<Option<DbKey>> {
        match (
            self.database_key.0.is_empty(),
            self.database_key_file.as_os_str().is_empty(),
        ) {
            (true, true) => Ok(None),
            (false, false) => anyhow::bail!(
                "give the database key in database_key_file or in HOLDFAST_DATABASE_KEY, not both"
            ),
            (false, true) => DbKey::from_text(&self.database_key.0)
                .map(Some)
                .map_err(|e| anyhow::anyhow!("HOLDFAST_DATABASE_KEY: {e}")),
            (true, false) => DbKey::read_file(&self.database_key_file).map(Some),
        }
    }

    pub fn trusted_proxies(&self) -> anyhow::Result<Vec<holdfast_app::security::IpNet>> {
        self.server
            .trusted_proxies
            .iter()
            .map(|text| {
                text.parse()
                    .map_err(|e: String| anyhow::anyhow!("server.trusted_proxies: {e}"))
            })
            .collect()
    }

    /// The certificate and key HTTPS is served with: `[tls]`, else the self-signed pair in
    /// the data folder when `holdfast tls self-signed` made one.
    pub fn tls_files(&self) -> anyhow::Result<Option<TlsFiles>> {
        let (cert, key) = (&self.tls.cert_file, &self.tls.key_file);
        match (cert.as_os_str().is_empty(), key.as_os_str().is_empty()) {
            (false, false) => Ok(Some(TlsFiles {
                cert_file: cert.clone(),
                key_file: key.clone(),
            })),
            (true, true) => {
                let dir = self.absolute_data_dir()?.join("tls");
                let files = TlsFiles {
                    cert_file: dir.join("cert.pem"),
                    key_file: dir.join("key.pem"),
                };
                Ok((files.cert_file.exists() && files.key_file.exists()).then_some(files))
            }
            _ => anyhow::bail!("[tls] needs both cert_file and key_file"),
        }
    }

    /// How the server will meet the network. Plain HTTP on an address other machines can
    /// reach is refused unless users come through an HTTPS proxy (`public_url`) or the operator
    /// chose it knowingly (`insecure_http`).
    pub fn transport(&self, tls: Option<&TlsFiles>) -> anyhow::Result<Transport> {
        let address: std::net::SocketAddr = self.listen.parse()?;
        if let Some(files) = tls {
            return Ok(Transport::Tls {
                cert_file: files.cert_file.clone(),
                key_file: files.key_file.clone(),
                redirect_from: (!self.tls.redirect_http_from.is_empty())
                    .then(|| self.tls.redirect_http_from.clone()),
            });
        }
        if address.ip().is_loopback() {
            return Ok(Transport::Loopback);
        }
        if self.public_url.starts_with("https://") {
            return Ok(Transport::Proxy {
                public_url: self.public_url.clone(),
            });
        }
        if self.insecure_http {
            return Ok(Transport::InsecureHttp {
                listen: self.listen.clone(),
            });
        }
        anyhow::bail!(
            "refusing to serve plain HTTP on {}: anyone on the network could read passwords, session cookies and customers. Either\n  \
             - serve HTTPS: `holdfast tls self-signed --hosts NAME_OR_IP,…` makes a certificate for a LAN install (or set [tls] cert_file and key_file), or\n  \
             - put Holdfast behind an HTTPS proxy on this machine and set public_url = \"https://…\", or\n  \
             - if you really mean it, set insecure_http = true (shown red on the security page)",
            self.listen
        )
    }

    /// How `serve` takes backups.
    pub fn backup_config(&self) -> anyhow::Result<BackupConfig> {
        let optional = |p: &Path| (!p.as_os_str().is_empty()).then(|| p.to_path_buf());
        Ok(BackupConfig {
            dir: self.backup_dir()?,
            every_minutes: self.backup.every_minutes,
            on_shutdown: self.backup.on_shutdown,
            key: self.backup_key(None, None)?,
            copy_to: optional(&self.backup.copy_to),
            retention: Retention {
                hourly: self.backup.keep_hourly,
                daily: self.backup.keep_daily,
                weekly: self.backup.keep_weekly,
                monthly: self.backup.keep_monthly,
            },
            drill: self.backup.drill,
            scratch_dir: optional(&self.backup.scratch_dir),
        })
    }

    /// The database to use: the configured URL, or SQLite in the data folder.
    pub fn database_url(&self) -> anyhow::Result<String> {
        if !self.database_url.is_empty() {
            return Ok(self.database_url.clone());
        }
        let dir = self.absolute_data_dir()?;
        Ok(format!(
            "sqlite://{}?mode=rwc",
            dir.join("holdfast.db").display()
        ))
    }

    pub fn absolute_data_dir(&self) -> anyhow::Result<PathBuf> {
        if self.data_dir.is_absolute() {
            return Ok(self.data_dir.clone());
        }
        Ok(std::env::current_dir()
            .context("reading the current folder")?
            .join(&self.data_dir))
    }

    /// What the use cases need; reads the database key and decides the transport.
    pub fn app_config(&self) -> anyhow::Result<AppConfig> {
        let tls = self.tls_files()?;
        // `serve` refuses a refused transport before it gets here; other commands only show it.
        let transport = self
            .transport(tls.as_ref())
            .unwrap_or_else(|_| Transport::InsecureHttp {
                listen: self.listen.clone(),
            });
        Ok(AppConfig {
            https: tls.is_some() || self.public_url.starts_with("https://"),
            transport,
            database_key: self.database_key()?,
            trusted_proxies: self.trusted_proxies()?,
            header_timeout_seconds: self.limits.header_timeout_seconds,
            recycle_bin_days: self.recycle_bin.retention_days,
            session_idle_minutes: self.sessions.idle_minutes,
            session_absolute_hours: self.sessions.absolute_hours,
            login_max_failures_per_account: self.login.max_failures_per_account,
            login_max_failures_per_address: self.login.max_failures_per_address,
            login_max_failures_per_client_and_account: self
                .login
                .max_failures_per_client_and_account,
            login_window_minutes: self.login.window_minutes,
            tokens_may_never_expire: self.login.tokens_may_never_expire,
            guards: self.guards.clone(),
            session_remember_days: self.sessions.remember_days,
            public_url: Some(self.public_url.trim().to_owned()).filter(|url| !url.is_empty()),
            utc_offset_minutes: parse_utc_offset(&self.utc_offset).unwrap_or(0),
            access_review_days: self.access.review_every_days,
            dormant_after_days: self.access.dormant_after_days,
            unused_after_days: self.access.unused_after_days,
            body_timeout_seconds: self.limits.body_timeout_seconds,
            max_concurrent_requests: self.limits.max_concurrent_requests,
            busy_wait_ms: self.limits.busy_wait_ms,
            max_concurrent_hashes: match self.limits.max_concurrent_password_checks {
                0 => holdfast_app::default_concurrent_hashes(),
                n => n,
            },
            alerts: self.alerts.to_app()?,
            private_files: self.private_files()?,
            max_admins: self.security.max_admins,
            audit_head_file: Some(self.audit.head_file.clone())
                .filter(|path| !path.as_os_str().is_empty()),
            audit_key_file: Some(self.audit_key_file()?),
        })
    }

    /// Where the audit key lives: `[audit] key_file`, or `audit.key` in the data folder.
    pub fn audit_key_file(&self) -> anyhow::Result<PathBuf> {
        if self.audit.key_file.as_os_str().is_empty() {
            return Ok(self.absolute_data_dir()?.join("audit.key"));
        }
        Ok(self.audit.key_file.clone())
    }

    /// Files and folders only Holdfast's account should read: the data folder and the embedded
    /// database, the key files, the TLS key and the backup folders.
    fn private_files(&self) -> anyhow::Result<Vec<PathBuf>> {
        let data = self.absolute_data_dir()?;
        let mut files = vec![data.clone()];
        if self.database_url.is_empty() {
            files.push(data.join("holdfast.db"));
        }
        files.push(self.default_backup_key_file()?);
        files.push(self.audit_key_file()?);
        for path in [
            &self.database_key_file,
            &self.backup.key_file,
            &self.backup.passphrase_file,
            &self.tls.key_file,
            &self.backup.copy_to,
        ] {
            if !path.as_os_str().is_empty() {
                files.push(path.clone());
            }
        }
        files.push(data.join("tls").join("key.pem"));
        files.push(self.backup_dir()?);
        files.retain(|path| path.exists());
        files.dedup();
        Ok(files)
    }
}

fn read_backup_key(path: &Path) -> anyhow::Result<Key> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the backup key file {}", path.display()))?;
    Key::identity_from_text(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// `+08:00` → 480 minutes; `-05:30` → -330. At most 14 hours either way.
fn parse_utc_offset(text: &str) -> Option<i64> {
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let (hours, minutes) = rest.split_once(':')?;
    if hours.len() != 2 || minutes.len() != 2 {
        return None;
    }
    let (hours, minutes) = (hours.parse::<i64>().ok()?, minutes.parse::<i64>().ok()?);
    (hours <= 14 && minutes < 60).then_some(sign * (hours * 60 + minutes))
}

fn read_table(path: &Path) -> anyhow::Result<toml::Table> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    text.parse::<toml::Table>()
        .with_context(|| format!("config file {} is not valid TOML", path.display()))
}

fn parse_env_value(value: &str) -> toml::Value {
    if let Ok(number) = value.parse::<i64>() {
        return toml::Value::Integer(number);
    }
    match value {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(value.to_owned()),
    }
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> anyhow::Result<()> {
    match path {
        [] => Ok(()),
        [key] => {
            table.insert(key.clone(), value);
            Ok(())
        }
        [key, rest @ ..] => {
            let entry = table
                .entry(key.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let toml::Value::Table(inner) = entry else {
                anyhow::bail!("{key} is not a section")
            };
            set_path(inner, rest, value)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(
        file: Option<&Path>,
        env: &[(&str, &str)],
        overrides: &Overrides,
    ) -> anyhow::Result<Config> {
        Config::load(
            file,
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
            overrides,
        )
    }

    #[test]
    fn utc_offsets_parse_or_are_refused() {
        assert_eq!(parse_utc_offset("+08:00"), Some(480));
        assert_eq!(parse_utc_offset("-05:30"), Some(-330));
        assert_eq!(parse_utc_offset("+00:00"), Some(0));
        for bad in ["08:00", "+8:00", "+15:00", "+08:60", "", "+", "UTC"] {
            assert_eq!(parse_utc_offset(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_example_parses_and_matches_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("holdfast.toml");
        std::fs::write(&path, EXAMPLE).unwrap();
        let config = load(Some(&path), &[], &Overrides::default()).unwrap();
        let defaults = Config::default();
        assert_eq!(config.listen, defaults.listen);
        assert_eq!(config.recycle_bin.retention_days, 90);
        assert_eq!(
            config.login.max_failures_per_account,
            defaults.login.max_failures_per_account
        );
    }

    #[test]
    fn layers_apply_in_order_file_env_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("holdfast.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\n[recycle_bin]\nretention_days = 60\n",
        )
        .unwrap();
        let env = [
            ("HOLDFAST_RECYCLE_BIN__RETENTION_DAYS", "45"),
            ("HOLDFAST_LISTEN", "127.0.0.1:9001"),
            ("PATH", "/bin"),
        ];
        let config = load(Some(&path), &env, &Overrides::default()).unwrap();
        assert_eq!(
            (config.listen.as_str(), config.recycle_bin.retention_days),
            ("127.0.0.1:9001", 45)
        );
        let flags = Overrides {
            listen: Some("127.0.0.1:9002".into()),
            ..Overrides::default()
        };
        assert_eq!(
            load(Some(&path), &env, &flags).unwrap().listen,
            "127.0.0.1:9002"
        );
    }

    #[test]
    fn plain_http_is_served_on_the_network_only_when_chosen() {
        let with = |env: &[(&str, &str)]| load(None, env, &Overrides::default()).unwrap();
        let tls = TlsFiles {
            cert_file: "c.pem".into(),
            key_file: "k.pem".into(),
        };
        assert_eq!(with(&[]).transport(None).unwrap(), Transport::Loopback);
        let lan = [("HOLDFAST_LISTEN", "0.0.0.0:8443")];
        let error = with(&lan).transport(None).unwrap_err().to_string();
        assert!(
            error.contains("refusing to serve plain HTTP on 0.0.0.0:8443"),
            "{error}"
        );
        assert!(matches!(
            with(&lan).transport(Some(&tls)).unwrap(),
            Transport::Tls { .. }
        ));
        let proxied = [lan[0], ("HOLDFAST_PUBLIC_URL", "https://crm.example.com")];
        assert!(matches!(
            with(&proxied).transport(None).unwrap(),
            Transport::Proxy { .. }
        ));
        let knowingly = [lan[0], ("HOLDFAST_INSECURE_HTTP", "true")];
        assert!(matches!(
            with(&knowingly).transport(None).unwrap(),
            Transport::InsecureHttp { .. }
        ));
        let ipv6 = [("HOLDFAST_LISTEN", "[::]:8080")];
        assert!(with(&ipv6).transport(None).is_err());
        let config = with(&[("HOLDFAST_DATABASE_KEY", &"ab".repeat(32))]);
        assert!(
            !format!("{config:?}").contains(&"ab".repeat(32)),
            "the key never shows"
        );
    }

    #[test]
    fn unknown_keys_and_unsafe_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("holdfast.toml");
        std::fs::write(&path, "lisen = \"127.0.0.1:9000\"\n").unwrap();
        let error = format!(
            "{:#}",
            load(Some(&path), &[], &Overrides::default()).unwrap_err()
        );
        assert!(error.contains("lisen"), "{error}");
        let error = format!(
            "{:#}",
            load(
                None,
                &[("HOLDFAST_RECYCLE_BIN__RETENTION_DAYS", "7")],
                &Overrides::default()
            )
            .unwrap_err()
        );
        assert!(error.contains("at least 30"), "{error}");
        let error = format!(
            "{:#}",
            load(None, &[("HOLDFAST_NOPE", "1")], &Overrides::default()).unwrap_err()
        );
        assert!(error.contains("nope"), "{error}");
    }
}
