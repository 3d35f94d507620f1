//! Backups: taking them while the server serves, checking them, restoring them whole or a
//! record at a time, and the server's schedule with its restore drills.
//!
//! - [`create`] reads one consistent snapshot of the database and writes an [`archive`] to a
//!   temporary name, renaming it only once it is complete and on disk.
//! - [`verify`] checks every checksum, then restores the archive into a scratch SQLite database
//!   and compares row counts and content hashes with the manifest.
//! - [`restore`] replaces a whole database in one write transaction (after a safety backup when
//!   it holds data); [`restore_records`] brings chosen records back through the one write path.
//! - [`schedule`] runs backups on a timer, keeps them by a retention policy, copies them to a
//!   second folder and drills each one.
//!
//! Non-goals: incremental backups (the archive is a full logical dump); point-in-time recovery
//! between backups comes from the per-record history instead (`records::as_of`).

pub mod archive;
pub mod schedule;
pub mod sealed;

pub use archive::{ArchiveError, Header, Key, Manifest};
/// Which tables a backup holds, rebuilds or leaves alone.
pub use holdfast_store::snapshot as tables;

use crate::records::{self, Change, Outcome};
use crate::{App, AppError};
use anyhow::Context as _;
use archive::{ArchiveReader, ArchiveWriter, HashingWriter, PartSummary, TableSummary};
use holdfast_domain::access::authorize;
use holdfast_domain::{Action, Actor, Entity, Timestamp};
use holdfast_store::health::Thoroughness;
use holdfast_store::{Db, SchemaState, TableSpec, schema, snapshot};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Rows read per query while dumping or checking a table.
const PAGE: usize = 5000;
/// A part is cut when its rows reach this size before compression.
const PART_BYTES: usize = 8 << 20;

/// How far a long backup job is, shared with whoever shows it (a CLI bar, the admin page).
#[derive(Debug, Default)]
pub struct Progress {
    phase: Mutex<String>,
    rows_done: AtomicU64,
    rows_total: AtomicU64,
    bytes: AtomicU64,
}

/// A reading of [`Progress`].
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ProgressView {
    pub phase: String,
    pub rows_done: u64,
    pub rows_total: u64,
    pub bytes: u64,
}

impl Progress {
    pub fn start(&self, phase: &str, rows_total: u64) {
        if let Ok(mut current) = self.phase.lock() {
            *current = phase.to_owned();
        }
        self.rows_done.store(0, Ordering::Relaxed);
        self.rows_total.store(rows_total, Ordering::Relaxed);
    }

    fn add_rows(&self, rows: u64) {
        self.rows_done.fetch_add(rows, Ordering::Relaxed);
    }

    fn set_rows(&self, rows: u64) {
        self.rows_done.store(rows, Ordering::Relaxed);
    }

    fn set_bytes(&self, bytes: u64) {
        self.bytes.store(bytes, Ordering::Relaxed);
    }

    pub fn view(&self) -> ProgressView {
        ProgressView {
            phase: self.phase.lock().map(|p| p.clone()).unwrap_or_default(),
            rows_done: self.rows_done.load(Ordering::Relaxed),
            rows_total: self.rows_total.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }
}

/// A finished backup file.
#[derive(Debug, Clone)]
pub struct Created {
    pub path: PathBuf,
    pub bytes: u64,
    /// SHA-256 of the file as stored (after encryption).
    pub sha256: String,
    pub manifest: Manifest,
}

/// File names: `holdfast-20261201T000000Z-<id>.hfb`, `.hfb.age` when encrypted.
pub fn is_backup_file(name: &str) -> bool {
    // The checksum files (`….hfb.sha256`) are not backups themselves.
    name.starts_with("holdfast-") && (name.ends_with(".hfb") || name.ends_with(".hfb.age"))
}

/// Takes a backup of `db` into `dir` while others keep reading and writing.
///
/// The archive is written as `.NAME.partial` and renamed once complete and synced, so a crash
/// or a full disk never leaves a file that looks like a backup; on failure the partial file
/// is removed and the error names the file.
pub async fn create(
    db: &Db,
    dir: &Path,
    key: Option<&Key>,
    now: Timestamp,
    progress: &Progress,
) -> anyhow::Result<Created> {
    fit_to_back_up(db).await?;
    create_as_is(db, dir, key, now, progress).await
}

/// [`create`] without its checks: an archive of whatever schema the database is at, as the
/// Holdfast of that schema would have written it. For tests of restoring older archives.
#[doc(hidden)]
pub async fn create_as_is(
    db: &Db,
    dir: &Path,
    key: Option<&Key>,
    now: Timestamp,
    progress: &Progress,
) -> anyhow::Result<Created> {
    crate::files::private_dir(dir)
        .with_context(|| format!("cannot create the backup folder {}", dir.display()))?;
    let backup_id = crate::random_hex(8)?;
    let name = format!(
        "holdfast-{}-{backup_id}.hfb{}",
        compact_time(now),
        if key.is_some() { ".age" } else { "" }
    );
    let path = dir.join(&name);
    let temp = dir.join(format!(".{name}.partial"));
    let result = write_archive(db, &temp, &backup_id, key, now, progress).await;
    let (bytes, sha256, manifest) = match result {
        Ok(done) => done,
        Err(error) => {
            let _ = std::fs::remove_file(&temp);
            return Err(error.context(format!(
                "backup to {} failed; the partial file was removed and no backup was written",
                path.display()
            )));
        }
    };
    if let Err(error) = std::fs::rename(&temp, &path) {
        let _ = std::fs::remove_file(&temp);
        return Err(anyhow::Error::new(error).context(format!(
            "cannot move the backup into place as {}",
            path.display()
        )));
    }
    // A checksum file in `sha256sum` format beside the archive: standard tools can check it,
    // and it tells a damaged encrypted file apart from a wrong key.
    let sidecar = sidecar_of(&path);
    let sidecar_temp = dir.join(format!(".{name}.sha256.partial"));
    let written = std::fs::write(&sidecar_temp, format!("{sha256}  {name}\n"))
        .and_then(|()| std::fs::File::open(&sidecar_temp)?.sync_all())
        .and_then(|()| std::fs::rename(&sidecar_temp, &sidecar));
    if let Err(error) = written {
        let _ = std::fs::remove_file(&sidecar_temp);
        tracing::warn!(error = %error, file = %sidecar.display(), "could not write the checksum file");
    }
    sync_dir(dir);
    Ok(Created {
        path,
        bytes,
        sha256,
        manifest,
    })
}

/// A backup must be restorable by this Holdfast and must not copy damage: a database at another
/// schema, or one found damaged (now or by a quick check), is refused, so that a bad copy never
/// pushes good backups out of retention.
async fn fit_to_back_up(db: &Db) -> anyhow::Result<()> {
    match db.schema_state().await? {
        SchemaState::Current | SchemaState::Empty => {}
        SchemaState::Behind { found, wanted } => anyhow::bail!(
            "refusing to back up: the database is at schema version {found} and this Holdfast serves version {wanted}. \
             Run `holdfast upgrade` first (it copies the database before migrating), or back it up with the Holdfast that serves schema {found}"
        ),
        SchemaState::Ahead { found, wanted } => anyhow::bail!(
            "refusing to back up: the database is at schema version {found}, newer than this Holdfast (version {wanted}); \
             back it up with the Holdfast that serves schema {found}"
        ),
    }
    let damage = match db.health().corrupt() {
        Some(fault) => Some(fault.detail),
        None => {
            db.check_integrity(Thoroughness::Quick, "backup_check")
                .await?
        }
    };
    if let Some(damage) = damage {
        anyhow::bail!(
            "refusing to back up a damaged database ({damage}): the backups taken before it stay as they are. \
             Restore the newest verified backup into a new data folder (`holdfast backup restore FILE --data-dir NEW_FOLDER`) and serve from there"
        );
    }
    Ok(())
}

async fn write_archive(
    db: &Db,
    temp: &Path,
    backup_id: &str,
    key: Option<&Key>,
    now: Timestamp,
    progress: &Progress,
) -> anyhow::Result<(u64, String, Manifest)> {
    let file = crate::files::create_private_new(temp)
        .with_context(|| format!("cannot create {}", temp.display()))?;
    let io_context = || format!("writing {}", temp.display());
    let out = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
    let mut writer = ArchiveWriter::new(out, key).with_context(io_context)?;
    let tables = db.backup_tables().await?;
    let mut snap = db.snapshot().await?;
    let schema_version = snap.schema_version().await?;
    let (audit_seq, audit_hash, seal) = snap.audit_head().await?;
    // A sealed log travels with its key, or it could neither be verified nor go on where the
    // backup is restored.
    let audit_key = match db.audit_key().filter(|key| key.id() == seal.key_id) {
        Some(key) => Some(key.to_text()),
        None if seal.sealed() => {
            anyhow::bail!("{}", holdfast_store::audit_key::missing(&seal.key_id))
        }
        None => None,
    };
    let mut counts = Vec::with_capacity(tables.len());
    for table in &tables {
        counts.push(snap.count(table).await?);
    }
    progress.start("backup", counts.iter().sum::<i64>().max(0) as u64);
    let header = Header {
        format: archive::FORMAT_VERSION,
        backup_id: backup_id.to_owned(),
        created_at: now.micros(),
        holdfast_version: env!("CARGO_PKG_VERSION").to_owned(),
        schema_version,
        source_backend: db.backend().name().to_owned(),
        tables: tables.clone(),
        audit_key,
    };
    let header_json = serde_json::to_vec(&header)?;
    let header_sha256 = writer
        .frame(b"HEAD", "header.json", &header_json)
        .with_context(io_context)?;
    let mut parts = Vec::new();
    let mut summaries = Vec::new();
    for table in &tables {
        let mut content = Sha256::new();
        let mut rows_in_table = 0i64;
        let mut after = None;
        let mut buffer = Vec::new();
        let mut buffered_rows = 0i64;
        loop {
            let rows = snap.rows(table, after.as_ref(), PAGE).await?;
            let Some(last) = rows.last() else { break };
            after = snapshot::row_key(table, last);
            let count = rows.len() as u64;
            for row in rows {
                let line = serde_json::to_vec(&row)?;
                content.update(&line);
                content.update(b"\n");
                buffer.extend_from_slice(&line);
                buffer.push(b'\n');
                buffered_rows += 1;
                rows_in_table += 1;
            }
            progress.add_rows(count);
            if buffer.len() >= PART_BYTES {
                parts.push(
                    write_part(&mut writer, parts.len(), table, &buffer, buffered_rows)
                        .with_context(io_context)?,
                );
                progress.set_bytes(writer.bytes_written());
                buffer.clear();
                buffered_rows = 0;
            }
        }
        if buffered_rows > 0 {
            parts.push(
                write_part(&mut writer, parts.len(), table, &buffer, buffered_rows)
                    .with_context(io_context)?,
            );
            progress.set_bytes(writer.bytes_written());
        }
        summaries.push(TableSummary {
            name: table.name.clone(),
            rows: rows_in_table,
            content_sha256: archive::hex(&content.finalize()),
        });
    }
    drop(snap);
    let manifest = Manifest {
        format: archive::FORMAT_VERSION,
        backup_id: backup_id.to_owned(),
        created_at: now.micros(),
        holdfast_version: header.holdfast_version.clone(),
        schema_version,
        source_backend: header.source_backend.clone(),
        header_sha256,
        audit_seq,
        audit_hash,
        tables: summaries,
        parts,
    };
    writer
        .frame(b"MANI", "manifest.json", &serde_json::to_vec(&manifest)?)
        .with_context(io_context)?;
    let out = writer.finish().with_context(io_context)?;
    let (buffered, digest, bytes) = out.finish();
    let sha256 = archive::hex(&digest);
    let file = buffered
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(io_context)?;
    file.sync_all().with_context(io_context)?;
    progress.set_bytes(bytes);
    Ok((bytes, sha256, manifest))
}

fn write_part<W: std::io::Write>(
    writer: &mut ArchiveWriter<W>,
    index: usize,
    table: &TableSpec,
    lines: &[u8],
    rows: i64,
) -> std::io::Result<PartSummary> {
    let name = format!("{:04}-{}", index + 1, table.name);
    let data = archive::encode_rows(lines)?;
    let sha256 = writer.frame(b"PART", &name, &data)?;
    Ok(PartSummary {
        name,
        table: table.name.clone(),
        rows,
        bytes: data.len() as u64,
        sha256,
    })
}

fn sync_dir(dir: &Path) {
    // Makes the rename itself durable; not every platform can open a folder for this.
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ = dir.sync_all();
    }
}

fn compact_time(at: Timestamp) -> String {
    at.to_rfc3339()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(15)
        .collect::<String>()
        + "Z"
}

fn open_archive(path: &Path, key: Option<&Key>) -> anyhow::Result<ArchiveReader> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open the backup {}", path.display()))?;
    Ok(ArchiveReader::open(
        BufReader::with_capacity(1 << 20, file),
        key,
    )?)
}

/// Whether the file is age-encrypted (by its first bytes).
pub fn is_encrypted(path: &Path) -> bool {
    let mut start = [0u8; 21];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut start))
        .is_ok()
        && &start == b"age-encryption.org/v1"
}

/// Reads the archive's header only: what it holds and which schema it needs.
pub fn read_header(path: &Path, key: Option<&Key>) -> anyhow::Result<Header> {
    Ok(open_archive(path, key)?.header()?)
}

/// The `NAME.sha256` file written beside each archive.
pub fn sidecar_of(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".sha256");
    path.with_file_name(name)
}

/// Checks every checksum of an archive without restoring it; returns its manifest.
pub fn check(path: &Path, key: Option<&Key>, progress: &Progress) -> anyhow::Result<Manifest> {
    match check_inner(path, key, progress) {
        Err(error)
            if matches!(
                error.downcast_ref::<ArchiveError>(),
                Some(ArchiveError::WrongKey | ArchiveError::EncryptedDamaged { .. })
            ) =>
        {
            // age cannot tell a damaged encryption header from a wrong key; the checksum file
            // written with the archive can.
            match file_matches_sidecar(path) {
                Some(false) => Err(ArchiveError::EncryptedDamaged {
                    offset: 0,
                    detail: format!(
                        "the file differs from {} written with it, so it was damaged or changed",
                        sidecar_of(path).display()
                    ),
                }
                .into()),
                _ => Err(error),
            }
        }
        other => other,
    }
}

/// `Some(true)` when the file's SHA-256 matches its checksum file, `None` without one.
fn file_matches_sidecar(path: &Path) -> Option<bool> {
    let text = std::fs::read_to_string(sidecar_of(path)).ok()?;
    let expected = text.split_whitespace().next()?.to_owned();
    let mut file = std::fs::File::open(path).ok()?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).ok()?;
    Some(archive::hex(&hasher.finalize()) == expected)
}

fn check_inner(path: &Path, key: Option<&Key>, progress: &Progress) -> anyhow::Result<Manifest> {
    let mut reader = open_archive(path, key)?;
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    progress.start("check", size);
    reader.header()?;
    while let Some(part) = reader.next_part()? {
        progress.add_rows(part.data.len() as u64);
    }
    Ok(reader.finish()?)
}

/// What [`verify`] found.
#[derive(Debug, Clone)]
pub struct Verified {
    pub manifest: Manifest,
    pub encrypted: bool,
    pub millis: u64,
}

/// Checks every checksum, then restores the archive into a scratch SQLite database in a
/// temporary folder under `scratch_parent` (the system's by default) and compares row counts
/// and content hashes with the manifest.
pub async fn verify(
    path: &Path,
    key: Option<&Key>,
    scratch_parent: Option<&Path>,
    progress: &Progress,
) -> anyhow::Result<Verified> {
    let started = std::time::Instant::now();
    let manifest = check(path, key, progress)?;
    // The manifest just checked says all the rest needs; the archive is not opened (and, with
    // a passphrase, its key not derived) again for it.
    refuse_newer(manifest.schema_version, &manifest.holdfast_version)?;
    let scratch = match scratch_parent {
        Some(parent) => tempfile::Builder::new()
            .prefix("holdfast-verify-")
            .tempdir_in(parent),
        None => tempfile::Builder::new()
            .prefix("holdfast-verify-")
            .tempdir(),
    }
    .context("cannot create a scratch folder for the restore check")?;
    let db = scratch_db(scratch.path()).await?;
    let result = async {
        db.migrate_to(manifest.schema_version).await?;
        let restored = load(
            &db,
            path,
            key,
            Timestamp(manifest.created_at),
            progress,
            None,
        )
        .await?;
        // The restored audit log is whole, and ends at the head the backup recorded. (An
        // older schema's log is read at today's: the columns added since are empty, as they
        // were when it was written.)
        db.migrate_to(schema::current_version()).await?;
        db.verify_audit_chain()
            .await
            .context("the audit log in this backup does not verify")?;
        if manifest.audit_seq > 0 {
            anyhow::ensure!(
                db.audit_hash_at(manifest.audit_seq).await?.as_deref()
                    == Some(manifest.audit_hash.as_str()),
                "the audit log in this backup does not end at the head its manifest recorded (entry {})",
                manifest.audit_seq
            );
        }
        Ok(restored)
    }
    .await;
    db.close().await;
    let restored = result.context("restoring into a scratch database")?;
    anyhow::ensure!(
        restored == manifest,
        "the manifest read twice differs: the file changed while it was being verified"
    );
    Ok(Verified {
        encrypted: is_encrypted(path),
        manifest,
        millis: started.elapsed().as_millis() as u64,
    })
}

/// A copy of `db` in a scratch database under a new temporary folder (in `parent`, or the
/// system's), made the way a backup and its restore are, both encrypted with keys nobody keeps.
/// The incident drill stages its rogue user there; the folder goes when the guard is dropped.
pub async fn scratch_copy(
    db: &Db,
    parent: Option<&Path>,
    now: Timestamp,
) -> anyhow::Result<(tempfile::TempDir, Db)> {
    let scratch = match parent {
        Some(parent) => tempfile::Builder::new()
            .prefix("holdfast-drill-")
            .tempdir_in(parent),
        None => tempfile::Builder::new().prefix("holdfast-drill-").tempdir(),
    }
    .context("cannot create a scratch folder")?;
    let (text, _) = Key::generate();
    let key = Key::identity_from_text(&text).map_err(|e| anyhow::anyhow!("{e}"))?;
    let progress = Progress::default();
    let created = create(db, scratch.path(), Some(&key), now, &progress).await?;
    let copy = scratch_db(scratch.path()).await?;
    let loaded = async {
        copy.migrate_to(created.manifest.schema_version).await?;
        load(&copy, &created.path, Some(&key), now, &progress, None).await
    }
    .await;
    let _ = std::fs::remove_file(&created.path);
    if let Err(error) = loaded {
        copy.close().await;
        return Err(error.context("copying the data into a scratch database"));
    }
    Ok((scratch, copy))
}

/// The scratch database verifies and drills restore into, encrypted with a key nobody keeps:
/// the customers in a backup never lie on the disk in clear, even for the minutes a drill takes.
async fn scratch_db(dir: &Path) -> anyhow::Result<Db> {
    Db::connect_with_key(
        &format!("sqlite://{}?mode=rwc", dir.join("scratch.db").display()),
        Some(holdfast_store::DbKey::generate()?),
    )
    .await
}

/// Refuses a backup from a newer schema, naming the Holdfast that made it.
fn refuse_newer(schema_version: i64, made_by: &str) -> anyhow::Result<()> {
    let supported = schema::current_version();
    anyhow::ensure!(
        schema_version <= supported,
        "this backup was made by Holdfast {made_by} at database schema version {schema_version}; this Holdfast ({}) knows schema versions up to {supported}: restore it with Holdfast {made_by} or newer",
        env!("CARGO_PKG_VERSION"),
    );
    Ok(())
}

/// Who a restore is recorded as in the audit log.
pub struct RestoredBy<'a> {
    pub actor: &'a Actor,
    pub op_id: &'a str,
    pub file: String,
}

/// Replaces everything a backup holds in `db` (at the archive's schema version) with the
/// archive's content, in one write transaction: it checks the whole archive and compares the
/// restored rows with the manifest before committing, so a bad archive changes nothing.
async fn load(
    db: &Db,
    path: &Path,
    key: Option<&Key>,
    now: Timestamp,
    progress: &Progress,
    restored_by: Option<RestoredBy<'_>>,
) -> anyhow::Result<Manifest> {
    let mut reader = open_archive(path, key)?;
    let header = reader.header()?;
    let found = db.schema_version().await?.unwrap_or(0);
    anyhow::ensure!(
        found == header.schema_version,
        "the target database is at schema version {found}, the backup at {}",
        header.schema_version
    );
    let specs: HashMap<String, TableSpec> = header
        .tables
        .iter()
        .map(|t| (t.name.clone(), t.clone()))
        .collect();
    let expected: Vec<TableSpec> = db.backup_tables().await?;
    for table in &expected {
        anyhow::ensure!(
            specs.get(&table.name) == Some(table),
            "the backup's layout of table {} differs from this database's at the same schema version",
            table.name
        );
    }
    progress.start("restore", 0);
    // A restore is how a damaged database is mended, so it runs in read-only mode too.
    let mut tx = db.begin_write_in_read_only_mode(now).await?;
    tx.restore_clear(&expected).await?;
    while let Some(part) = reader.next_part()? {
        let spec = specs
            .get(&part.table)
            .ok_or_else(|| ArchiveError::UnexpectedPart {
                name: part.name.clone(),
            })?;
        let rows = archive::decode_rows(&part, spec.columns.len())?;
        progress.add_rows(rows.len() as u64);
        tx.restore_rows(spec, rows).await?;
    }
    let manifest = reader.finish()?;
    let records: i64 = manifest
        .tables
        .iter()
        .filter(|t| Entity::ALL.iter().any(|e| e.plural() == t.name))
        .map(|t| t.rows)
        .sum();
    progress.start("index", records.max(0) as u64);
    let archive_key = header.audit_key()?;
    tx.restore_finish(archive_key.as_ref(), |indexed| progress.set_rows(indexed))
        .await?;
    progress.start("compare", manifest.rows_total().max(0) as u64);
    for summary in &manifest.tables {
        let spec = specs
            .get(&summary.name)
            .ok_or_else(|| ArchiveError::ContentMismatch {
                table: summary.name.clone(),
                detail: "the header does not describe it".into(),
            })?;
        let mut content = Sha256::new();
        let mut rows = 0i64;
        let mut after = None;
        loop {
            let page = tx.restore_read(spec, after.as_ref(), PAGE).await?;
            let Some(last) = page.last() else { break };
            after = snapshot::row_key(spec, last);
            for row in &page {
                content.update(serde_json::to_vec(row)?);
                content.update(b"\n");
            }
            rows += page.len() as i64;
            progress.add_rows(page.len() as u64);
        }
        if rows != summary.rows {
            return Err(ArchiveError::ContentMismatch {
                table: summary.name.clone(),
                detail: format!("{rows} rows restored, the manifest lists {}", summary.rows),
            }
            .into());
        }
        if archive::hex(&content.finalize()) != summary.content_sha256 {
            return Err(ArchiveError::ContentMismatch {
                table: summary.name.clone(),
                detail: "the restored rows' content hash differs from the manifest's".into(),
            }
            .into());
        }
    }
    if let Some(by) = restored_by {
        let tokens_revoked = tx.restore_revoke_tokens().await?;
        let draft = holdfast_store::AuditDraft::new(
            by.actor,
            by.op_id,
            "backup.restored",
            serde_json::json!({
                "backup_id": manifest.backup_id,
                "backup_created_at": Timestamp(manifest.created_at).to_rfc3339(),
                "file": by.file,
                "rows": manifest.rows_total(),
                "sessions_ended": "all",
                "tokens_revoked": tokens_revoked,
            }),
        );
        tx.audit_event(draft).await?;
    }
    tx.commit().await?;
    // From here on the database's log is the backup's: sealed with the backup's key, or not
    // sealed (a backup from before the seal), which `restore` then seals anew.
    let seal = db.audit_seal().await?;
    if !seal.sealed() {
        db.set_audit_key(None);
    } else if let Some(key) = archive_key.filter(|key| key.id() == seal.key_id) {
        db.set_audit_key(Some(key));
    }
    Ok(manifest)
}

/// Whether a database holds anything a restore would overwrite.
pub async fn holds_data(db: &Db) -> anyhow::Result<bool> {
    Ok(match db.schema_state().await? {
        SchemaState::Empty => false,
        _ => db.user_count().await? > 0 || db.count_rows("companies").await? > 0,
    })
}

/// What a whole restore did.
#[derive(Debug, Clone)]
pub struct Restored {
    pub manifest: Manifest,
    /// The backup of what was there before, when the target held data.
    pub safety_backup: Option<PathBuf>,
}

/// A whole restore: which archive, with which key, where the safety backup of the current
/// data goes, and who it is recorded as.
pub struct Restore<'a> {
    pub path: &'a Path,
    pub key: Option<&'a Key>,
    pub safety_dir: &'a Path,
    pub by: &'a Actor,
    pub op_id: &'a str,
    pub now: Timestamp,
    /// Where the restored audit log's key goes (see [`crate::audit_key::after_restore`]).
    pub audit_key_file: Option<&'a Path>,
}

/// Restores a whole CRM into `db`: a new, empty database, or one that holds data, whose
/// current state is first backed up into `safety_dir`. A backup from an older schema is
/// restored into a scratch database, upgraded, and then copied in; one from a newer schema is
/// refused. The caller asks for confirmation before replacing data.
pub async fn restore(
    db: &Db,
    request: &Restore<'_>,
    progress: &Progress,
) -> anyhow::Result<Restored> {
    let Restore {
        path,
        key,
        safety_dir,
        by,
        op_id,
        now,
        audit_key_file,
    } = *request;
    let header = read_header(path, key)?;
    refuse_newer(header.schema_version, &header.holdfast_version)?;
    let current = schema::current_version();
    let restored_by = || RestoredBy {
        actor: by,
        op_id,
        file: path.display().to_string(),
    };
    let state = db.schema_state().await?;
    if state == SchemaState::Empty {
        db.migrate_to(header.schema_version).await?;
        let manifest = load(db, path, key, now, progress, Some(restored_by())).await?;
        db.migrate_to(current).await?;
        if let Some(file) = audit_key_file {
            crate::audit_key::after_restore(db, file, now).await?;
        }
        return Ok(Restored {
            manifest,
            safety_backup: None,
        });
    }
    anyhow::ensure!(
        state == SchemaState::Current,
        "the target database is not at this Holdfast's schema version ({state:?}): run `holdfast upgrade` on it first"
    );
    let safety_backup = if holds_data(db).await? {
        progress.start("safety backup", 0);
        let safety = create(db, safety_dir, key, now, progress)
            .await
            .context("taking the safety backup of the current data before restoring")?;
        Some(safety.path)
    } else {
        None
    };
    let manifest = if header.schema_version == current {
        load(db, path, key, now, progress, Some(restored_by())).await?
    } else {
        // An older backup: bring it up to this schema in a scratch database, then copy that in.
        let scratch = tempfile::Builder::new()
            .prefix("holdfast-upgrade-")
            .tempdir_in(safety_dir)
            .context("cannot create a scratch folder to upgrade the backup")?;
        let scratch_db = scratch_db(scratch.path()).await?;
        let upgraded = async {
            scratch_db.migrate_to(header.schema_version).await?;
            let original = load(&scratch_db, path, key, now, progress, None).await?;
            scratch_db.migrate_to(current).await?;
            let copy = create(&scratch_db, scratch.path(), None, now, progress).await?;
            Ok::<_, anyhow::Error>((original, copy))
        }
        .await;
        scratch_db.close().await;
        let (original, copy) = upgraded.context("upgrading the backup to this schema version")?;
        load(db, &copy.path, None, now, progress, Some(restored_by())).await?;
        original
    };
    if let Some(file) = audit_key_file {
        crate::audit_key::after_restore(db, file, now).await?;
    }
    Ok(Restored {
        manifest,
        safety_backup,
    })
}

/// Which records a selective restore brings back.
#[derive(Debug, Clone)]
pub enum Selection {
    /// These records, as the backup holds them.
    Ids(Vec<(Entity, i64)>),
    /// Every record that is in the recycle bin now after being deleted at or after this time,
    /// or was purged since then, and was not deleted in the backup.
    DeletedSince(Timestamp),
    /// Records of one kind whose title contains this text (at most 1,000).
    Matching(Entity, String),
}

/// A record as a backup holds it, beside what the live CRM has now.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Candidate {
    pub entity: Entity,
    pub id: i64,
    pub title: String,
    /// The record as the backup holds it.
    pub snapshot: Value,
    /// `live`, `in_recycle_bin` or `missing` (purged, or never existed here).
    pub now: &'static str,
}

/// Reads the customer records of a backup that `selection` picks, after checking the whole
/// archive, and says where each stands in the live CRM.
pub async fn candidates(
    app: &App,
    actor: &Actor,
    path: &Path,
    key: Option<&Key>,
    selection: &Selection,
) -> Result<Vec<Candidate>, AppError> {
    authorize(actor, Action::Backups)?;
    let mut found = read_candidates(app, path, key, selection)
        .await
        .map_err(backup_problem)?;
    // Someone who reaches backups through a custom role sees in them only what they may see
    // in the CRM: records in their reach, without the fields their role hides.
    found.retain(|c| {
        records::check_snapshot(actor, Action::Read(c.entity), c.entity, c.id, &c.snapshot).is_ok()
    });
    for candidate in &mut found {
        let hidden = records::redact_snapshot(actor, candidate.entity, &mut candidate.snapshot);
        if hidden.iter().any(|f| f == candidate.entity.title_field()) {
            candidate.title.clear();
        }
    }
    if let Selection::Ids(ids) = selection
        && let Some((entity, id)) = ids
            .iter()
            .find(|key| !found.iter().any(|c| (c.entity, c.id) == **key))
    {
        return Err(AppError::not_found(format!("{entity} {id} in this backup")));
    }
    Ok(found)
}

/// An archive problem is the caller's to act on (a 409 with the archive's code and message);
/// anything else is internal.
pub fn backup_problem(error: anyhow::Error) -> AppError {
    match error.chain().find_map(|e| e.downcast_ref::<ArchiveError>()) {
        Some(problem) => AppError::conflict(problem.code(), format!("{error:#}")),
        None => AppError::Internal(error),
    }
}

async fn read_candidates(
    app: &App,
    path: &Path,
    key: Option<&Key>,
    selection: &Selection,
) -> anyhow::Result<Vec<Candidate>> {
    let wanted = match selection {
        Selection::Ids(ids) => Some(ids.iter().copied().collect::<BTreeSet<_>>()),
        Selection::DeletedSince(since) => Some(deleted_since(app, *since).await?),
        Selection::Matching(..) => None,
    };
    let mut reader = open_archive(path, key)?;
    let header = reader.header()?;
    let specs: HashMap<String, TableSpec> = header
        .tables
        .iter()
        .map(|t| (t.name.clone(), t.clone()))
        .collect();
    let mut found = BTreeMap::new();
    while let Some(part) = reader.next_part()? {
        let Some(entity) = Entity::ALL.into_iter().find(|e| e.plural() == part.table) else {
            continue;
        };
        let spec = &specs[&part.table];
        for row in archive::decode_rows(&part, spec.columns.len())? {
            let record = holdfast_store::record_from_backup_row(entity, spec, &row)?;
            let keep = match (selection, &wanted) {
                (Selection::DeletedSince(_), Some(ids)) => {
                    !record.is_deleted() && ids.contains(&(entity, record.id))
                }
                (_, Some(ids)) => ids.contains(&(entity, record.id)),
                (Selection::Matching(want, text), None) => {
                    *want == entity
                        && record.title().to_lowercase().contains(&text.to_lowercase())
                        && found.len() < 1000
                }
                _ => false,
            };
            if keep {
                found.insert((entity, record.id), record);
            }
        }
    }
    reader.finish()?;
    let mut out = Vec::with_capacity(found.len());
    for ((entity, id), record) in found {
        let now = match app.db.record(entity, id).await? {
            None => "missing",
            Some(live) if live.is_deleted() => "in_recycle_bin",
            Some(_) => "live",
        };
        out.push(Candidate {
            entity,
            id,
            title: record.title(),
            snapshot: record.to_json(),
            now,
        });
    }
    Ok(out)
}

async fn deleted_since(app: &App, since: Timestamp) -> anyhow::Result<BTreeSet<(Entity, i64)>> {
    let mut ids = BTreeSet::new();
    for entity in Entity::ALL {
        for id in app.db.deleted_or_purged_since(entity, since).await? {
            ids.insert((entity, id));
        }
    }
    Ok(ids)
}

/// Brings the chosen records back from a backup through the one write path: each becomes a
/// new version with the backup's values (out of the recycle bin if it is there; with its old
/// id if it was purged), recorded as `restore_backup` with the backup named in the reason.
/// Companies go first, then contacts, deals and activities, so links resolve.
pub async fn restore_records(
    app: &App,
    actor: &Actor,
    op_id: &str,
    path: &Path,
    key: Option<&Key>,
    selection: &Selection,
) -> Result<Vec<Outcome>, AppError> {
    authorize(actor, Action::Backups)?;
    crate::step_up::require(app, actor).await?;
    let header = read_header(path, key).map_err(backup_problem)?;
    let found = candidates(app, actor, path, key, selection).await?;
    let reason = format!(
        "restored from backup {} taken {}",
        header.backup_id,
        Timestamp(header.created_at).to_rfc3339()
    );
    let mut changes: Vec<Change> = found
        .into_iter()
        .map(|candidate| Change::Revert {
            entity: candidate.entity,
            id: candidate.id,
            snapshot: candidate.snapshot,
            action: "restore_backup",
            reason: reason.clone(),
        })
        .collect();
    changes.sort_by_key(|change| match change {
        Change::Revert { entity, id, .. } => (Entity::ALL.iter().position(|e| e == entity), *id),
        _ => (None, 0),
    });
    let mut outcomes = Vec::with_capacity(changes.len());
    let mut changes = changes.into_iter().peekable();
    while changes.peek().is_some() {
        let batch: Vec<Change> = changes.by_ref().take(records::MAX_BATCH).collect();
        outcomes.extend(records::apply_changes(app, actor, op_id, batch).await?);
    }
    Ok(outcomes)
}

/// Refuses anyone who may not work with backups; for handlers that must check before they
/// look at their input.
pub fn require(actor: &Actor) -> Result<(), AppError> {
    Ok(authorize(actor, Action::Backups)?)
}

/// The server's backups as the admin page and API show them: the status and recent runs.
pub async fn overview(
    app: &App,
    actor: &Actor,
) -> Result<(schedule::BackupStatus, Vec<holdfast_store::BackupRunRow>), AppError> {
    authorize(actor, Action::Backups)?;
    let mut runs = app.db.backup_runs(schedule::STATUS_RUNS).await?;
    let status = schedule::status_of(app, &runs);
    runs.truncate(50);
    Ok((status, runs))
}

/// One recorded backup run.
pub async fn recorded_run(
    app: &App,
    actor: &Actor,
    run_id: i64,
) -> Result<holdfast_store::BackupRunRow, AppError> {
    authorize(actor, Action::Backups)?;
    app.db
        .backup_run(run_id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("backup {run_id}")))
}

/// What [`start`] starts in the background.
#[derive(Debug, Clone, Copy)]
pub enum Job {
    Backup,
    Drill(i64),
}

/// Starts a backup or a drill in the background (the admin page's buttons); its progress shows
/// in [`schedule::BackupStatus::running`] and its result in the run's record.
pub fn start(app: &App, actor: &Actor, job: Job) -> Result<(), AppError> {
    authorize(actor, Action::Backups)?;
    if app.backups.is_none() {
        return Err(AppError::conflict(
            "backups_off",
            "This server takes no backups (see the [backup] settings)",
        ));
    }
    if app.backup_jobs.running().is_some() {
        return Err(AppError::conflict(
            "backup_running",
            "A backup or drill is already running; wait for it to finish",
        ));
    }
    let app = app.clone();
    tokio::spawn(async move {
        let result = match job {
            Job::Backup => schedule::run(&app, "manual").await.map(|_| ()),
            Job::Drill(id) => schedule::drill(&app, id).await.map(|_| ()),
        };
        if let Err(error) = result {
            tracing::error!(error = %format!("{error:#}"), ?job, "backup job failed");
        }
    });
    Ok(())
}

/// The file of a recorded backup run, if it is still there.
async fn run_file(app: &App, run_id: i64) -> Result<PathBuf, AppError> {
    let run = app
        .db
        .backup_run(run_id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("backup {run_id}")))?;
    let file = run
        .file
        .map(PathBuf::from)
        .ok_or_else(|| AppError::not_found(format!("the file of backup {run_id}")))?;
    if !file.exists() {
        return Err(AppError::conflict(
            "backup_file_gone",
            format!(
                "{} is no longer there (removed by the retention policy or by hand)",
                file.display()
            ),
        ));
    }
    Ok(file)
}

fn server_key(app: &App) -> Option<&Key> {
    app.backups.as_ref().and_then(|config| config.key.as_ref())
}

/// [`candidates`] in one of the server's recorded backups.
pub async fn candidates_in_run(
    app: &App,
    actor: &Actor,
    run_id: i64,
    selection: &Selection,
) -> Result<Vec<Candidate>, AppError> {
    authorize(actor, Action::Backups)?;
    let file = run_file(app, run_id).await?;
    candidates(app, actor, &file, server_key(app), selection).await
}

/// [`restore_records`] from one of the server's recorded backups.
pub async fn restore_from_run(
    app: &App,
    actor: &Actor,
    op_id: &str,
    run_id: i64,
    selection: &Selection,
) -> Result<Vec<Outcome>, AppError> {
    authorize(actor, Action::Backups)?;
    let file = run_file(app, run_id).await?;
    restore_records(app, actor, op_id, &file, server_key(app), selection).await
}
