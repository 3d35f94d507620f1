//! `holdfast db encrypt|rekey`: encryption at rest for the embedded database.
//!
//! Both make an encrypted copy of the database under the new key on the one writer
//! connection, check it (it opens with the key, passes the integrity check, and every table
//! holds as many rows as the original), and only then swap it into place and overwrite the old
//! file. They hold the data folder's lock, so they refuse to run while Holdfast serves from it.

use crate::DbArgs;
use crate::backup_cmd::load;
use anyhow::Context as _;
use clap::Subcommand;
use holdfast_app::{Db, DbKey, files};
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum DbCommand {
    /// Encrypt the embedded database at rest (stop Holdfast first). Writes a new key file,
    /// makes an encrypted and verified copy, swaps it in and overwrites the plain file.
    Encrypt {
        #[command(flatten)]
        db: DbArgs,
        /// Where to write the new key (default: database_key_file from the configuration).
        /// Keep it outside the data folder, and a copy off this machine.
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
    /// Re-encrypt the embedded database under a new key (stop Holdfast first). The current key
    /// comes from the configuration as for `serve`.
    Rekey {
        #[command(flatten)]
        db: DbArgs,
        /// Where to write the new key (must not exist yet).
        #[arg(long)]
        new_key_file: PathBuf,
    },
}

pub async fn run(command: DbCommand) -> anyhow::Result<()> {
    match command {
        DbCommand::Encrypt { db, key_file } => encrypt(&db, key_file).await,
        DbCommand::Rekey { db, new_key_file } => rekey(&db, &new_key_file).await,
    }
}

async fn encrypt(args: &DbArgs, key_file: Option<PathBuf>) -> anyhow::Result<()> {
    let config = load(args)?;
    let (url, path) = sqlite_file(&config)?;
    let key_file = key_file
        .or_else(|| (!config.database_key_file.as_os_str().is_empty()).then(|| config.database_key_file.clone()))
        .context("say where the new key goes: --key-file PATH (outside the data folder, e.g. /etc/holdfast/database.key), then set database_key_file to it")?;
    match holdfast_app::cipher::file_kind(&path) {
        holdfast_app::cipher::FileKind::Plain => {}
        holdfast_app::cipher::FileKind::Opaque => anyhow::bail!(
            "{} is already encrypted (or is not a database); `holdfast db rekey` changes its key",
            path.display()
        ),
        _ => anyhow::bail!(
            "there is no Holdfast database at {} to encrypt",
            path.display()
        ),
    }
    let _lock = lock(&config)?;
    // A key file left by an earlier, interrupted run is used again rather than refused.
    let key = if key_file.exists() {
        DbKey::read_file(&key_file)?
    } else {
        let key = DbKey::generate()?;
        key.write_new_file(&key_file)?;
        key
    };
    let db = Db::connect(&url).await?;
    swap_in_copy(db, &path, &key).await?;
    println!(
        "Encrypted {} (key fingerprint {}).\nThe key is in {} (readable by this account only).\n\
         Before starting Holdfast, set database_key_file = \"{}\" in holdfast.toml (or pass the key in HOLDFAST_DATABASE_KEY).\n\
         Keep a copy of the key away from this machine: without it the database cannot be opened. Backups are encrypted separately, with the backup key.",
        path.display(),
        key.fingerprint(),
        key_file.display(),
        key_file.display()
    );
    Ok(())
}

async fn rekey(args: &DbArgs, new_key_file: &Path) -> anyhow::Result<()> {
    let config = load(args)?;
    let (url, path) = sqlite_file(&config)?;
    let old = config.database_key()?.context(
        "the configuration gives no database key (database_key_file or HOLDFAST_DATABASE_KEY): \
         a plain database is encrypted with `holdfast db encrypt`",
    )?;
    let _lock = lock(&config)?;
    let key = DbKey::generate()?;
    key.write_new_file(new_key_file)?;
    let db = Db::connect_with_key(&url, Some(old)).await?;
    swap_in_copy(db, &path, &key).await?;
    println!(
        "Re-encrypted {} under the new key {} (fingerprint {}).\n\
         Set database_key_file = \"{}\" before starting Holdfast; the old key no longer opens the database. Keep a copy of the new key away from this machine.",
        path.display(),
        new_key_file.display(),
        key.fingerprint(),
        new_key_file.display()
    );
    Ok(())
}

/// The embedded database's URL and file; other databases are refused.
fn sqlite_file(config: &crate::config::Config) -> anyhow::Result<(String, PathBuf)> {
    let url = config.database_url()?;
    let path = holdfast_app::sqlite_path(&url).context(
        "encryption at rest is for the embedded SQLite database; for PostgreSQL, encrypt the server's disk (see README, Running it safely)",
    )?;
    Ok((url, path))
}

fn lock(config: &crate::config::Config) -> anyhow::Result<files::FolderLock> {
    let dir = config.absolute_data_dir()?;
    files::lock_folder(&dir)
        .with_context(|| format!("locking the data folder {}", dir.display()))?
        .with_context(|| {
            format!(
                "Holdfast is running on the data folder {} (or another command is): stop it first",
                dir.display()
            )
        })
}

/// Copies the open database under `key`, checks the copy, closes the database, moves the copy
/// into place and overwrites the old file. Until the rename the old file is untouched, so a
/// failure anywhere before leaves the database as it was.
async fn swap_in_copy(db: Db, path: &Path, key: &DbKey) -> anyhow::Result<()> {
    let folder = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .context("the database path has no file name")?
        .to_string_lossy();
    let copy = folder.join(format!(".{name}.encrypting"));
    let old = folder.join(format!(".{name}.old"));
    let _ = std::fs::remove_file(&copy);
    let made = db.sqlite_encrypted_copy(&copy, key).await;
    db.close().await;
    if let Err(error) = made {
        let _ = std::fs::remove_file(&copy);
        return Err(error.context("the database was left as it was"));
    }
    std::fs::File::open(&copy)?.sync_all()?;
    // The old file's journal must not be applied to the new one.
    for suffix in ["-wal", "-shm"] {
        let journal = folder.join(format!("{name}{suffix}"));
        if journal.exists() {
            files::shred(&journal).with_context(|| format!("removing {}", journal.display()))?;
        }
    }
    std::fs::rename(path, &old).with_context(|| format!("moving {} aside", path.display()))?;
    std::fs::rename(&copy, path).with_context(|| {
        format!(
            "moving the encrypted copy into place; the old database is at {}: move it back to {} to undo",
            old.display(),
            path.display()
        )
    })?;
    if let Ok(dir) = std::fs::File::open(folder) {
        let _ = dir.sync_all();
    }
    files::shred(&old).with_context(|| format!("overwriting the old file {}", old.display()))?;
    Ok(())
}
