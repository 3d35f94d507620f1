//! `holdfast backup …`: create, verify, restore (whole or chosen records), keygen.
//!
//! Each command loads the configuration like `serve`, calls `holdfast_app::backup`, and draws
//! a progress bar on a terminal while it runs.

use crate::DbArgs;
use crate::config::{Config, Overrides};
use anyhow::Context as _;
use clap::{Args, Subcommand};
use holdfast_app::backup::{self, Progress, Selection};
use holdfast_app::{App, Clock as _, Db, SystemClock};
use holdfast_domain::{Actor, Entity, Timestamp};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{BufRead as _, IsTerminal as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Subcommand)]
pub enum BackupCommand {
    /// Take a backup now, while the server keeps running.
    Create(CreateArgs),
    /// Check every checksum, then restore into a scratch database and compare.
    Verify(VerifyArgs),
    /// Restore a whole CRM into a new data folder or database, or over the current one.
    Restore(RestoreArgs),
    /// Bring chosen records back from a backup into the live CRM, as new versions.
    RestoreRecords(RestoreRecordsArgs),
    /// Decrypt a pre-upgrade copy (`pre-upgrade-….db.age`) into a database file, for a rollback.
    Unseal {
        sealed: PathBuf,
        #[command(flatten)]
        target: DbArgs,
        #[command(flatten)]
        key: KeyArgs,
        /// Where to write the database file (must not exist).
        #[arg(long)]
        output: PathBuf,
    },
    /// Write a new encryption key file for backups.
    Keygen {
        /// Where to write the key (refuses to overwrite).
        #[arg(long)]
        output: PathBuf,
    },
}

#[derive(Args, Clone)]
pub struct KeyArgs {
    /// Key file from `holdfast backup keygen` (default: backup.key_file).
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// File holding a passphrase (default: backup.passphrase_file).
    #[arg(long)]
    passphrase_file: Option<PathBuf>,
}

#[derive(Args)]
pub struct CreateArgs {
    #[command(flatten)]
    target: DbArgs,
    #[command(flatten)]
    key: KeyArgs,
    /// Folder for the archive (default: backup.dir, or `backups` in the data folder).
    #[arg(long)]
    output: Option<PathBuf>,
}

#[derive(Args)]
pub struct VerifyArgs {
    archive: PathBuf,
    #[command(flatten)]
    key: KeyArgs,
    /// Where the scratch database goes (default: the system's temporary folder).
    #[arg(long)]
    scratch_dir: Option<PathBuf>,
    /// Only check the checksums; do not restore into a scratch database.
    #[arg(long)]
    checksums_only: bool,
}

#[derive(Args)]
pub struct RestoreArgs {
    archive: PathBuf,
    #[command(flatten)]
    target: DbArgs,
    #[command(flatten)]
    key: KeyArgs,
    /// Replace the data without asking (a safety backup is still taken first).
    #[arg(long)]
    yes: bool,
    /// Where the safety backup of the current data goes (default: the backup folder).
    #[arg(long)]
    safety_dir: Option<PathBuf>,
}

#[derive(Args)]
pub struct RestoreRecordsArgs {
    archive: PathBuf,
    #[command(flatten)]
    target: DbArgs,
    #[command(flatten)]
    key: KeyArgs,
    /// A record as KIND:ID, e.g. contacts:12 (repeatable).
    #[arg(long = "id")]
    ids: Vec<String>,
    /// Every record deleted (or purged) at or after this time, e.g. 2026-12-01T09:00:00+08:00.
    #[arg(long)]
    deleted_since: Option<String>,
    /// Records of this kind (companies, contacts, deals, activities) whose name contains --matching.
    #[arg(long)]
    entity: Option<String>,
    #[arg(long)]
    matching: Option<String>,
    /// Only list what would be restored.
    #[arg(long)]
    dry_run: bool,
}

pub(crate) fn load(target: &DbArgs) -> anyhow::Result<Config> {
    Config::load(
        target.config.as_deref(),
        std::env::vars(),
        &crate::overrides(target),
    )
}

fn key_of(config: &Config, key: &KeyArgs) -> anyhow::Result<Option<backup::Key>> {
    config.backup_key(key.key_file.as_deref(), key.passphrase_file.as_deref())
}

pub async fn run(command: BackupCommand) -> anyhow::Result<()> {
    match command {
        BackupCommand::Create(args) => create(args).await,
        BackupCommand::Verify(args) => verify(args).await,
        BackupCommand::Restore(args) => restore(args).await,
        BackupCommand::RestoreRecords(args) => restore_records(args).await,
        BackupCommand::Keygen { output } => keygen(&output),
        BackupCommand::Unseal {
            sealed,
            target,
            key,
            output,
        } => {
            let config = load(&target)?;
            let key = key_of(&config, &key)?.context(
                "no backup key: give --key-file (the backup.key from the data folder or the recovery sheet)",
            )?;
            holdfast_app::backup::sealed::unseal(&key, &sealed, &output)?;
            println!("Wrote {}", output.display());
            Ok(())
        }
    }
}

/// Draws `progress` on a terminal until the returned guard is dropped.
struct Bar {
    task: tokio::task::JoinHandle<()>,
    bar: ProgressBar,
}

impl Bar {
    fn show(progress: Arc<Progress>) -> Bar {
        let bar = if std::io::stderr().is_terminal() {
            ProgressBar::new(0)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:<32} [{bar:30}] {human_pos}/{human_len} {per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let shown = bar.clone();
        let task = tokio::spawn(async move {
            loop {
                let view = progress.view();
                shown.set_length(view.rows_total.max(view.rows_done));
                shown.set_position(view.rows_done);
                // The checksum pass counts bytes; every other phase counts rows.
                let unit = if view.phase == "check" {
                    "bytes"
                } else {
                    "rows"
                };
                shown.set_message(format!(
                    "{} ({unit}) {}",
                    view.phase,
                    human_bytes(view.bytes)
                ));
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        });
        Bar { task, bar }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.task.abort();
        self.bar.finish_and_clear();
    }
}

/// A size as it reads on a console (empty for nothing, as progress lines show it).
pub(crate) fn human_bytes(bytes: u64) -> String {
    match bytes {
        0 => String::new(),
        b if b < 1 << 20 => format!("{:.0} KB", b as f64 / 1024.0),
        b if b < 1 << 30 => format!("{:.1} MB", b as f64 / (1 << 20) as f64),
        b => format!("{:.1} GB", b as f64 / (1 << 30) as f64),
    }
}

async fn open_db(config: &Config) -> anyhow::Result<Db> {
    // The same private data folder `serve` makes: a restore into a new folder holds customers.
    crate::prepare_data_dir(config)?;
    let db = Db::connect_with_key(&config.database_url()?, config.database_key()?).await?;
    // A backup carries the audit log's key, and a restore writes after the restored log: both
    // need it. A database not yet made, or waiting for `holdfast upgrade`, has no seal yet.
    if db.schema_state().await? == holdfast_app::SchemaState::Current {
        holdfast_app::audit_key::open(&db, &config.audit_key_file()?, SystemClock.now()).await?;
    }
    Ok(db)
}

async fn create(args: CreateArgs) -> anyhow::Result<()> {
    let config = load(&args.target)?;
    if args.key.key_file.is_none()
        && args.key.passphrase_file.is_none()
        && let Some(path) = config.ensure_backup_key()?
    {
        eprintln!(
            "Generated the backup key {} (readable by this account only). Keep a copy away from this machine: without it this backup cannot be restored.",
            path.display()
        );
    }
    let key = key_of(&config, &args.key)?;
    let dir = match args.output {
        Some(dir) => dir,
        None => config.backup_dir()?,
    };
    if config.database_url.is_empty() {
        let file = config.absolute_data_dir()?.join("holdfast.db");
        anyhow::ensure!(
            file.exists(),
            "there is no Holdfast database at {}: nothing to back up (give --data-dir or --database-url)",
            file.display()
        );
    }
    let db = open_db(&config).await?;
    anyhow::ensure!(
        db.schema_state().await? != holdfast_app::SchemaState::Empty,
        "{} holds no Holdfast database: nothing to back up",
        holdfast_app::redact(&config.database_url()?)
    );
    let progress = Arc::new(Progress::default());
    let bar = Bar::show(progress.clone());
    let created = backup::create(&db, &dir, key.as_ref(), SystemClock.now(), &progress).await;
    drop(bar);
    db.close().await;
    let created = created?;
    println!(
        "Backed up {} rows ({}) to {}\nSHA-256 {}",
        created.manifest.rows_total(),
        human_bytes(created.bytes),
        created.path.display(),
        created.sha256
    );
    Ok(())
}

async fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let config = Config::load(None, std::env::vars(), &Overrides::default())?;
    let key = key_of(&config, &args.key)?;
    let progress = Arc::new(Progress::default());
    let bar = Bar::show(progress.clone());
    let result = if args.checksums_only {
        backup::check(&args.archive, key.as_ref(), &progress).map(|manifest| (manifest, None))
    } else {
        backup::verify(
            &args.archive,
            key.as_ref(),
            args.scratch_dir.as_deref(),
            &progress,
        )
        .await
        .map(|v| (v.manifest, Some(v.millis)))
    };
    drop(bar);
    let (manifest, millis) =
        result.with_context(|| format!("{} failed verification", args.archive.display()))?;
    let encrypted = backup::is_encrypted(&args.archive);
    println!(
        "OK: {} — backup {} taken {} by Holdfast {} on {} (schema version {})",
        args.archive.display(),
        manifest.backup_id,
        Timestamp(manifest.created_at).to_rfc3339(),
        manifest.holdfast_version,
        manifest.source_backend,
        manifest.schema_version
    );
    println!(
        "  {} parts, {} rows in {} tables; every checksum matches",
        manifest.parts.len(),
        manifest.rows_total(),
        manifest.tables.len()
    );
    match millis {
        Some(ms) => println!(
            "  restored into a scratch database in {:.1} s: row counts and content hashes match the manifest",
            ms as f64 / 1000.0
        ),
        None => println!("  (--checksums-only: not restored)"),
    }
    if !encrypted {
        println!("  WARNING: this backup is not encrypted");
    }
    Ok(())
}

pub(crate) fn confirm(question: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Ok(false);
    }
    eprint!("{question} Type yes to continue: ");
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer.trim() == "yes")
}

async fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.target.data_dir.is_some() || args.target.database_url.is_some(),
        "say where to restore: --data-dir DIR (a new or existing data folder) or --database-url URL"
    );
    let config = load(&args.target)?;
    let key = key_of(&config, &args.key)?;
    // Everything is checked before anything is touched.
    let header = backup::read_header(&args.archive, key.as_ref())
        .with_context(|| format!("cannot restore {}", args.archive.display()))?;
    let db = open_db(&config).await?;
    if backup::holds_data(&db).await? && !args.yes {
        let question = format!(
            "{} holds data. Restoring replaces all of it with the backup taken {} (a safety backup of the current data is taken first). \
             Every session ends and every API token is revoked: everyone, administrators too, signs in again, and scripts need new tokens.",
            holdfast_app::redact(&config.database_url()?),
            Timestamp(header.created_at).to_rfc3339()
        );
        if !confirm(&question)? {
            db.close().await;
            anyhow::bail!(
                "not restored: the target holds data. Run again with --yes to replace it (a safety backup is taken first)"
            );
        }
    }
    let safety_dir = match args.safety_dir {
        Some(dir) => dir,
        None => config.backup_dir()?,
    };
    std::fs::create_dir_all(&safety_dir)
        .with_context(|| format!("creating {}", safety_dir.display()))?;
    let progress = Arc::new(Progress::default());
    let bar = Bar::show(progress.clone());
    let op_id = holdfast_app::random_hex(8)?;
    let result = backup::restore(
        &db,
        &backup::Restore {
            path: &args.archive,
            key: key.as_ref(),
            safety_dir: &safety_dir,
            by: &Actor::system(),
            op_id: &op_id,
            now: SystemClock.now(),
            audit_key_file: Some(&config.audit_key_file()?),
        },
        &progress,
    )
    .await;
    drop(bar);
    db.close().await;
    let restored = result.with_context(|| {
        format!(
            "restoring {} failed; the target was left as it was",
            args.archive.display()
        )
    })?;
    if let Some(safety) = &restored.safety_backup {
        println!(
            "Safety backup of the data before the restore: {}",
            safety.display()
        );
    }
    println!(
        "Restored {} rows from the backup taken {} into {}. Every session ended and every API token was revoked: everyone signs in again, scripts need new tokens.",
        restored.manifest.rows_total(),
        Timestamp(restored.manifest.created_at).to_rfc3339(),
        holdfast_app::redact(&config.database_url()?)
    );
    Ok(())
}

pub(crate) fn parse_time(text: &str, flag: &str) -> anyhow::Result<Timestamp> {
    Timestamp::parse_rfc3339(text)
        .with_context(|| format!("{flag} {text:?} is not a time such as 2026-12-01T09:00:00+08:00"))
}

fn parse_entity(text: &str) -> anyhow::Result<Entity> {
    Entity::ALL
        .into_iter()
        .find(|e| e.plural() == text || e.name() == text)
        .with_context(|| format!("{text:?} is not companies, contacts, deals or activities"))
}

pub(crate) async fn open_app(config: &Config) -> anyhow::Result<App> {
    App::open(
        &config.database_url()?,
        config.app_config()?,
        Arc::new(SystemClock),
    )
    .await
}

pub(crate) fn describe(error: holdfast_app::AppError) -> anyhow::Error {
    match error {
        holdfast_app::AppError::Invalid(fields) => anyhow::anyhow!("{fields}"),
        holdfast_app::AppError::Internal(error) => error,
        other => anyhow::anyhow!("{other}"),
    }
}

async fn restore_records(args: RestoreRecordsArgs) -> anyhow::Result<()> {
    let config = load(&args.target)?;
    let key = key_of(&config, &args.key)?;
    let selection = match (&args.deleted_since, &args.entity, &args.matching) {
        (Some(since), None, None) if args.ids.is_empty() => {
            Selection::DeletedSince(parse_time(since, "--deleted-since")?)
        }
        (None, Some(entity), Some(text)) if args.ids.is_empty() => {
            Selection::Matching(parse_entity(entity)?, text.clone())
        }
        (None, None, None) if !args.ids.is_empty() => Selection::Ids(
            args.ids
                .iter()
                .map(|id| {
                    Entity::parse_ref(id)
                        .with_context(|| format!("--id {id:?} is not KIND:ID, e.g. contacts:12"))
                })
                .collect::<anyhow::Result<_>>()?,
        ),
        _ => anyhow::bail!(
            "choose records one way: --id KIND:ID (repeatable), --deleted-since TIME, or --entity KIND --matching TEXT"
        ),
    };
    let app = open_app(&config).await?;
    let actor = Actor::system();
    let found = backup::candidates(&app, &actor, &args.archive, key.as_ref(), &selection)
        .await
        .map_err(describe)?;
    for candidate in &found {
        println!(
            "  {} {} {:?} (now: {})",
            candidate.entity, candidate.id, candidate.title, candidate.now
        );
    }
    if args.dry_run || found.is_empty() {
        println!("{} records would be restored", found.len());
        app.db.close().await;
        return Ok(());
    }
    let op_id = holdfast_app::random_hex(8)?;
    let outcomes = backup::restore_records(
        &app,
        &actor,
        &op_id,
        &args.archive,
        key.as_ref(),
        &selection,
    )
    .await
    .map_err(describe);
    app.db.close().await;
    println!(
        "Restored {} records as new versions (op {op_id})",
        outcomes?.len()
    );
    Ok(())
}

fn keygen(output: &Path) -> anyhow::Result<()> {
    let (text, public) = backup::Key::generate();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(output)
        .with_context(|| format!("cannot create {} (it must not exist yet)", output.display()))?;
    std::io::Write::write_all(&mut file, text.as_bytes())?;
    file.sync_all()?;
    println!(
        "Wrote a backup key to {} (public key {public}).\nSet backup.key_file to it, and keep a copy somewhere other than this machine: without it, encrypted backups cannot be restored.",
        output.display()
    );
    Ok(())
}
