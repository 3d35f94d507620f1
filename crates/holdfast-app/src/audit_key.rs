//! Keeping the audit key in its file and the database sealed with it.
//!
//! The key lives in a file outside the database (`audit.key` in the data folder unless
//! `[audit] key_file` says otherwise): someone who can write to the database but not read that
//! file cannot rewrite the audit log so that it still verifies. At start a log not yet sealed
//! is sealed from its next entry on (an `audit.sealed` entry records it), the key file written
//! first; a log sealed with a key this install does not have is refused with what to copy
//! where. Backups carry the key, and a whole restore puts the restored log's key in the file.

use holdfast_domain::{Actor, Timestamp};
use holdfast_store::{AuditDraft, AuditKey, Db, Sealing, StoreError};
use serde_json::json;
use std::path::Path;

/// Reads the key file; `None` when there is none.
pub fn read(path: &Path) -> anyhow::Result<Option<AuditKey>> {
    match std::fs::read_to_string(path) {
        Ok(text) => AuditKey::from_text(&text)
            .map(Some)
            .map_err(|why| anyhow::anyhow!("{}: {why}", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => {
            Err(anyhow::Error::new(error).context(format!("cannot read {}", path.display())))
        }
    }
}

/// Writes `key` to its file, replacing it; a different key found there is kept beside it.
fn write(path: &Path, key: &AuditKey, now: Timestamp) -> anyhow::Result<()> {
    if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        crate::files::private_dir(folder)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", folder.display()))?;
    }
    if let Ok(Some(old)) = read(path)
        && old.id() != key.id()
    {
        let kept = path.with_extension(format!("key.replaced-{}", crate::compact_utc(now)));
        std::fs::rename(path, &kept)
            .map_err(|e| anyhow::anyhow!("cannot keep the old {}: {e}", path.display()))?;
    }
    let text = format!(
        "# Holdfast's audit key: it seals the audit log, so that a rewrite of the log by someone\n\
         # without this file is detected. Keep a copy with the backup key; every Holdfast instance\n\
         # sharing one database needs this same file. `from` is the first sealed entry.\n{}\n",
        key.to_text()
    );
    crate::files::replace_secret(path, text.as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot write the audit key {}: {e}", path.display()))
}

/// Gives `db` the audit key from `path`, sealing a log not sealed yet (with the key there, or
/// a new one written there). Refuses a log sealed with another key, or with a key that is
/// missing; a log that should be sealed by the key but says it is not is left for
/// `holdfast audit verify` and the security page to report.
pub async fn open(db: &Db, path: &Path, now: Timestamp) -> anyhow::Result<()> {
    let seal = db.audit_seal().await?;
    let file = read(path)?;
    match file {
        Some(key) if key.id() == seal.key_id => {
            if key.from() != seal.keyed_from {
                tracing::error!(
                    database = seal.keyed_from,
                    key_file = key.from(),
                    "the audit log's seal does not start where the audit key says: run `holdfast audit verify`"
                );
            }
            db.set_audit_key(Some(key));
            Ok(())
        }
        Some(key) if seal.sealed() => anyhow::bail!(
            "{} ({} holds audit key {})",
            holdfast_store::audit_key::missing(&seal.key_id),
            path.display(),
            key.id()
        ),
        None if seal.sealed() => anyhow::bail!(
            "{} ({} does not exist)",
            holdfast_store::audit_key::missing(&seal.key_id),
            path.display()
        ),
        Some(key) if key.from() > 0 && key.from() <= seal.seq => {
            tracing::error!(
                from = key.from(),
                "THE AUDIT LOG SAYS IT IS NOT SEALED, but the audit key seals it from this entry on: \
                 it may have been rewritten. Run `holdfast audit verify`"
            );
            db.set_audit_key(Some(key));
            Ok(())
        }
        file => {
            let key = match file {
                Some(key) => key,
                None => AuditKey::generate()?,
            };
            seal_with(db, path, &key, now).await
        }
    }
}

/// Seals `db`'s log with `key` from its next entry on, writing the key file before the seal
/// is committed: a seal never exists without its key on disk.
async fn seal_with(db: &Db, path: &Path, key: &AuditKey, now: Timestamp) -> anyhow::Result<()> {
    let mut tx = match db.begin_write(now).await {
        Ok(tx) => tx,
        Err(StoreError::ReadOnly(fault)) => {
            tracing::warn!(
                detail = %fault.detail,
                "the audit log is not sealed yet and the database is read-only (damaged): it is sealed after a restore"
            );
            return Ok(());
        }
        Err(error) => return Err(error.into()),
    };
    let sealed = match tx.seal_audit_log(key).await? {
        Sealing::Sealed(sealed) => sealed,
        // Another instance sealed it meanwhile: with this key (a copy of the same file), or not.
        Sealing::Already(sealed) => {
            db.set_audit_key(Some(sealed));
            return Ok(());
        }
        Sealing::Other(id) => anyhow::bail!(
            "another Holdfast sealed this database's audit log with its key {id} just now: copy its audit.key to {}",
            path.display()
        ),
    };
    tx.audit_event(AuditDraft::new(
        &Actor::system(),
        &crate::random_hex(8)?,
        "audit.sealed",
        json!({"key_id": sealed.id(), "from": sealed.from(), "key_file": path.display().to_string()}),
    ))
    .await?;
    write(path, &sealed, now)?;
    tx.commit().await?;
    tracing::info!(key_id = %sealed.id(), from = sealed.from(), file = %path.display(), "the audit log is sealed with the audit key");
    db.set_audit_key(Some(sealed));
    Ok(())
}

/// After a whole restore: the restored log's key goes into the key file, and a log restored
/// from a backup taken before the seal is sealed with a new key.
pub async fn after_restore(db: &Db, path: &Path, now: Timestamp) -> anyhow::Result<()> {
    let seal = db.audit_seal().await?;
    match db.audit_key().filter(|key| key.id() == seal.key_id) {
        Some(key) => write(path, &key, now),
        None if seal.sealed() => {
            anyhow::bail!("{}", holdfast_store::audit_key::missing(&seal.key_id))
        }
        None => seal_with(db, path, &AuditKey::generate()?, now).await,
    }
}
