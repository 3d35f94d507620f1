//! The server's backups: a schedule, a retention policy, a second copy, a restore drill after
//! each backup, and the status the admin page and `/readyz` show.
//!
//! [`tick`] does one round (back up if due, drill, copy, prune) and is what the server's timer
//! calls every minute; tests call it with a manual clock. Several instances on one PostgreSQL
//! each run their own timer: the check "is a backup due" reads the shared `backup_runs` table,
//! so they rarely overlap, and two backups at once are harmless.

use super::{Key, Progress, ProgressView, create, is_backup_file, verify};
use crate::App;
use anyhow::Context as _;
use holdfast_domain::{Actor, Timestamp};
pub use holdfast_store::BackupRunRow;
use holdfast_store::{AuditDraft, BackupRunResult};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How the server takes backups; built from the `[backup]` configuration.
#[derive(Clone)]
pub struct BackupConfig {
    pub dir: PathBuf,
    /// Minutes between scheduled backups; 0 turns the schedule off (backups on demand only).
    pub every_minutes: i64,
    pub on_shutdown: bool,
    pub key: Option<Key>,
    /// A second folder (another disk, a network mount) that receives a copy of each backup.
    pub copy_to: Option<PathBuf>,
    pub retention: Retention,
    /// Restore each new backup into a scratch database and compare it with its manifest.
    pub drill: bool,
    /// Where drills put their scratch database (the system's temporary folder by default).
    pub scratch_dir: Option<PathBuf>,
}

/// Retention: every backup from the last `hourly` hours is kept (so a backup taken by hand, or
/// the safety backup before a restore, is never thinned away by the next scheduled one); older
/// ones are thinned grandfather-father-son style to the newest of each of the last `daily`
/// days, `weekly` weeks and `monthly` months. The newest backup is always kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub hourly: usize,
    pub daily: usize,
    pub weekly: usize,
    pub monthly: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            hourly: 24,
            daily: 14,
            weekly: 8,
            monthly: 12,
        }
    }
}

/// The server's running backup job, one at a time per instance.
#[derive(Default)]
pub struct Jobs {
    pub progress: Arc<Progress>,
    running: tokio::sync::Mutex<()>,
}

impl Jobs {
    pub fn running(&self) -> Option<ProgressView> {
        match self.running.try_lock() {
            Ok(_) => None,
            Err(_) => Some(self.progress.view()),
        }
    }
}

/// Which of `times` (backup times) to keep under `policy`, as indexes into `times`.
pub fn to_keep(times: &[Timestamp], policy: Retention) -> BTreeSet<usize> {
    let mut order: Vec<usize> = (0..times.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(times[i]));
    let mut keep = BTreeSet::new();
    if let Some(&newest) = order.first() {
        keep.insert(newest);
    }
    const HOUR: i64 = 3_600_000_000;
    if let Some(&newest) = order.first() {
        let recent = times[newest].micros() - policy.hourly as i64 * HOUR;
        keep.extend(
            order
                .iter()
                .copied()
                .filter(|&i| times[i].micros() > recent),
        );
    }
    let buckets: [(usize, &dyn Fn(Timestamp) -> i64); 3] = [
        (policy.daily, &|t: Timestamp| {
            t.micros().div_euclid(24 * HOUR)
        }),
        // Weeks start on Monday: 1970-01-01 was a Thursday.
        (policy.weekly, &|t: Timestamp| {
            (t.micros().div_euclid(24 * HOUR) + 3).div_euclid(7)
        }),
        (policy.monthly, &|t: Timestamp| {
            let date = t.to_rfc3339();
            let year: i64 = date[0..4].parse().unwrap_or(0);
            let month: i64 = date[5..7].parse().unwrap_or(0);
            year * 12 + month
        }),
    ];
    for (count, bucket) in buckets {
        let mut seen = BTreeSet::new();
        for &i in &order {
            if seen.len() >= count && !seen.contains(&bucket(times[i])) {
                break;
            }
            if seen.insert(bucket(times[i])) {
                keep.insert(i);
            }
        }
    }
    keep
}

/// The time in a backup file's name (`holdfast-20261201T060000Z-…`).
pub fn time_of(name: &str) -> Option<Timestamp> {
    stamp_time(name.strip_prefix("holdfast-")?)
}

/// When a pre-upgrade copy (`pre-upgrade-v8-20261203T102206Z.db.age`, or an unsealed `.db`
/// from older versions) was taken.
pub fn pre_upgrade_time_of(name: &str) -> Option<Timestamp> {
    let rest = name.strip_prefix(super::sealed::PRE_UPGRADE_PREFIX)?;
    let (_version, stamp) = rest.split_once('-')?;
    (name.ends_with(".db.age") || name.ends_with(".db")).then_some(())?;
    stamp_time(stamp)
}

/// `20261203T102206Z…` → that instant.
fn stamp_time(text: &str) -> Option<Timestamp> {
    let stamp = text.get(..16)?;
    let text = format!(
        "{}-{}-{}T{}:{}:{}Z",
        stamp.get(0..4)?,
        stamp.get(4..6)?,
        stamp.get(6..8)?,
        stamp.get(9..11)?,
        stamp.get(11..13)?,
        stamp.get(13..15)?
    );
    Timestamp::parse_rfc3339(&text)
}

/// Deletes backups in `dir` that the retention policy no longer keeps; returns what it deleted.
pub fn prune(dir: &Path, policy: Retention) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let (true, Some(at)) = (is_backup_file(&name), time_of(&name)) {
            files.push((at, entry.path()));
        }
    }
    remove_stale_partials(dir);
    let times: Vec<Timestamp> = files.iter().map(|(at, _)| *at).collect();
    let keep = to_keep(&times, policy);
    let oldest_kept = keep.iter().map(|&i| times[i]).min();
    let mut deleted = Vec::new();
    for (index, (_, path)) in files.into_iter().enumerate() {
        if !keep.contains(&index) {
            std::fs::remove_file(&path)
                .with_context(|| format!("deleting the old backup {}", path.display()))?;
            let _ = std::fs::remove_file(super::sidecar_of(&path));
            deleted.push(path);
        }
    }
    // A pre-upgrade copy goes once every backup kept is newer than it: retention has moved on.
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let (Some(at), Some(oldest)) = (pre_upgrade_time_of(&name), oldest_kept)
            && at < oldest
        {
            std::fs::remove_file(entry.path())
                .with_context(|| format!("deleting the old pre-upgrade copy {name}"))?;
            deleted.push(entry.path());
        }
    }
    Ok(deleted)
}

/// Removes `.….partial` files a crash left behind, once they are a day old (a backup being
/// written right now by another instance is younger than that).
fn remove_stale_partials(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_secs() > 24 * 3600);
        if name.starts_with(".holdfast-") && name.ends_with(".partial") && old {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Whether a scheduled backup is due at `now`, given the newest run.
pub fn due(now: Timestamp, newest: Option<&BackupRunRow>, every_minutes: i64) -> bool {
    if every_minutes <= 0 {
        return false;
    }
    match newest {
        None => true,
        Some(run) => now.micros() - run.started_at >= every_minutes * 60_000_000,
    }
}

/// One round of the schedule: backs up if due. Returns the run it made, if any.
pub async fn tick(app: &App) -> anyhow::Result<Option<BackupRunRow>> {
    let Some(config) = app.backups.clone() else {
        return Ok(None);
    };
    if !due_now(app, config.every_minutes).await? {
        return Ok(None);
    }
    // Instances sharing a PostgreSQL database take turns; the one that gets the lock checks
    // again, so a backup another instance just took is not taken twice.
    let Some(lock) = app.db.try_backup_lock().await? else {
        return Ok(None);
    };
    let result = if due_now(app, config.every_minutes).await? {
        run(app, "scheduled").await.map(Some)
    } else {
        Ok(None)
    };
    lock.release().await?;
    result
}

async fn due_now(app: &App, every_minutes: i64) -> anyhow::Result<bool> {
    let newest = app.db.backup_runs(1).await?.into_iter().next();
    Ok(due(app.now(), newest.as_ref(), every_minutes))
}

/// Takes a backup now (`reason`: scheduled, manual, shutdown), copies it, drills it and prunes
/// old ones. A failed backup is recorded as such and returned as the error.
pub async fn run(app: &App, reason: &str) -> anyhow::Result<BackupRunRow> {
    let config = app
        .backups
        .clone()
        .context("backups are not configured on this server")?;
    let _running = app
        .backup_jobs
        .running
        .try_lock()
        .map_err(|_| anyhow::anyhow!("a backup is already running on this server"))?;
    let started = app.now();
    let id = app
        .db
        .backup_run_start(reason, started.micros(), config.key.is_some())
        .await?;
    let progress = &app.backup_jobs.progress;
    let outcome = create(&app.db, &config.dir, config.key.as_ref(), started, progress).await;
    let created = match outcome {
        Ok(created) => created,
        Err(error) => {
            let message = format!("{error:#}");
            tracing::error!(error = %message, "backup failed");
            app.db
                .backup_run_finish(
                    id,
                    app.now().micros(),
                    &BackupRunResult {
                        error: Some(message.clone()),
                        ..BackupRunResult::default()
                    },
                )
                .await?;
            let event = crate::alerts::Event::BackupFailed { error: message };
            crate::alerts::raise(app, event).await;
            return Err(error);
        }
    };
    let mut result = BackupRunResult {
        file: Some(created.path.display().to_string()),
        bytes: Some(created.bytes as i64),
        sha256: Some(created.sha256.clone()),
        rows_total: Some(created.manifest.rows_total()),
        ..BackupRunResult::default()
    };
    if let Some(second) = &config.copy_to {
        match copy_file(&created.path, second) {
            Ok(copy) => result.copied_to = Some(copy.display().to_string()),
            Err(error) => {
                result.error = Some(format!("the copy to the second folder failed: {error:#}"))
            }
        }
    }
    app.db
        .backup_run_finish(id, app.now().micros(), &result)
        .await?;
    if let Some(error) = &result.error {
        let event = crate::alerts::Event::BackupFailed {
            error: error.clone(),
        };
        crate::alerts::raise(app, event).await;
    }
    audit(
        app,
        "backup.created",
        serde_json::json!({
            "file": result.file,
            "bytes": result.bytes,
            "sha256": result.sha256,
            "rows": result.rows_total,
            "reason": reason,
            "error": result.error,
        }),
    )
    .await?;
    // At shutdown the drill is left for later: a service manager gives a stopping server only
    // seconds, and the restore check takes about as long as the backup itself.
    if config.drill && reason != "shutdown" {
        drill_file(app, &config, id, &created.path).await?;
    }
    for dir in std::iter::once(&config.dir).chain(config.copy_to.as_ref()) {
        match prune(dir, config.retention) {
            Ok(deleted) if !deleted.is_empty() => {
                tracing::info!(count = deleted.len(), dir = %dir.display(), "pruned old backups")
            }
            Ok(_) => {}
            Err(error) => tracing::error!(error = %format!("{error:#}"), "pruning backups failed"),
        }
    }
    app.db
        .backup_run(id)
        .await?
        .context("the backup run vanished")
}

/// Runs a restore drill on a recorded backup again (the admin page's "Drill now").
pub async fn drill(app: &App, run_id: i64) -> anyhow::Result<BackupRunRow> {
    let config = app
        .backups
        .clone()
        .context("backups are not configured on this server")?;
    let run = app
        .db
        .backup_run(run_id)
        .await?
        .with_context(|| format!("there is no backup run {run_id}"))?;
    let file = run
        .file
        .with_context(|| format!("backup run {run_id} wrote no file"))?;
    let _running = app
        .backup_jobs
        .running
        .try_lock()
        .map_err(|_| anyhow::anyhow!("a backup is already running on this server"))?;
    drill_file(app, &config, run_id, Path::new(&file)).await?;
    app.db
        .backup_run(run_id)
        .await?
        .context("the backup run vanished")
}

async fn drill_file(
    app: &App,
    config: &BackupConfig,
    run_id: i64,
    path: &Path,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let result = verify(
        path,
        config.key.as_ref(),
        config.scratch_dir.as_deref(),
        &app.backup_jobs.progress,
    )
    .await;
    let millis = started.elapsed().as_millis() as i64;
    let error = result.as_ref().err().map(|e| format!("{e:#}"));
    if let Some(error) = &error {
        tracing::error!(error = %error, file = %path.display(), "restore drill failed");
        let event = crate::alerts::Event::DrillFailed {
            error: error.clone(),
        };
        crate::alerts::raise(app, event).await;
    }
    app.db
        .backup_run_drilled(run_id, app.now().micros(), millis, error.as_deref())
        .await?;
    audit(
        app,
        "backup.drilled",
        serde_json::json!({"file": path.display().to_string(), "millis": millis, "error": error}),
    )
    .await
}

async fn audit(app: &App, action: &str, detail: serde_json::Value) -> anyhow::Result<()> {
    let mut tx = app.db.begin_write(app.now()).await?;
    let op_id = crate::random_hex(8)?;
    tx.audit_event(AuditDraft::new(&Actor::system(), &op_id, action, detail))
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Copies a finished backup into `dir` under the same name, temp file then rename.
fn copy_file(file: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    // The copy keeps the archive's private permissions (`fs::copy` copies them).
    crate::files::private_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = file.file_name().context("a backup without a file name")?;
    let target = dir.join(name);
    let temp = dir.join(format!(".{}.partial", name.to_string_lossy()));
    let copied = std::fs::copy(file, &temp)
        .and_then(|_| std::fs::File::open(&temp)?.sync_all())
        .and_then(|()| std::fs::rename(&temp, &target))
        .and_then(|()| {
            let sidecar = super::sidecar_of(file);
            match sidecar.exists() {
                true => std::fs::copy(&sidecar, super::sidecar_of(&target)).map(|_| ()),
                false => Ok(()),
            }
        });
    if let Err(error) = copied {
        let _ = std::fs::remove_file(&temp);
        return Err(anyhow::Error::new(error).context(format!("copying to {}", target.display())));
    }
    Ok(target)
}

/// Whether backups are healthy, for the admin page, the home page alert and `/readyz`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BackupStatus {
    /// `ok`, or `red` when the newest verified backup is older than twice the schedule, the
    /// newest drill failed, or the newest backup failed; `off` when the server takes none.
    pub state: &'static str,
    /// Why it is red, as codes: `no_verified_backup`, `stale`, `drill_failed`, `backup_failed`.
    pub problems: Vec<&'static str>,
    pub encrypted: bool,
    pub last_good: Option<BackupRunRow>,
    pub last_drill: Option<BackupRunRow>,
    pub every_minutes: i64,
    pub running: Option<ProgressView>,
}

/// How many recent runs the status looks through for the last good backup and drill.
pub const STATUS_RUNS: i64 = 200;

pub async fn status(app: &App) -> anyhow::Result<BackupStatus> {
    let runs = app.db.backup_runs(STATUS_RUNS).await?;
    Ok(status_of(app, &runs))
}

/// The status from the newest runs (newest first), as [`status`] reads them.
pub fn status_of(app: &App, runs: &[BackupRunRow]) -> BackupStatus {
    let Some(config) = app.backups.clone() else {
        return BackupStatus {
            state: "off",
            problems: Vec::new(),
            encrypted: false,
            last_good: None,
            last_drill: None,
            every_minutes: 0,
            running: None,
        };
    };
    let good = |run: &&BackupRunRow| {
        run.error.is_none()
            && run.file.is_some()
            && (!config.drill || (run.drill_at.is_some() && run.drill_error.is_none()))
    };
    let last_good = runs.iter().find(good).cloned();
    let last_drill = runs.iter().find(|run| run.drill_at.is_some()).cloned();
    let mut problems = Vec::new();
    let now = app.now().micros();
    match &last_good {
        None => problems.push("no_verified_backup"),
        Some(run) if config.every_minutes > 0 => {
            if now - run.started_at > 2 * config.every_minutes * 60_000_000 {
                problems.push("stale");
            }
        }
        Some(_) => {}
    }
    if last_drill
        .as_ref()
        .is_some_and(|run| run.drill_error.is_some())
    {
        problems.push("drill_failed");
    }
    if runs
        .iter()
        .find(|run| run.finished_at.is_some())
        .is_some_and(|run| run.error.is_some())
    {
        problems.push("backup_failed");
    }
    BackupStatus {
        state: if problems.is_empty() { "ok" } else { "red" },
        problems,
        encrypted: config.key.is_some(),
        last_good,
        last_drill,
        every_minutes: config.every_minutes,
        running: app.backup_jobs.running(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        Timestamp::parse_rfc3339(text).unwrap()
    }

    #[test]
    fn retention_keeps_the_newest_of_each_hour_day_week_and_month() {
        // A backup every 6 hours for 400 days.
        let start = at("2025-10-01T00:00:00Z");
        let times: Vec<Timestamp> = (0..1600)
            .map(|i| Timestamp(start.micros() + i * 6 * 3_600_000_000))
            .collect();
        let policy = Retention::default();
        let keep = to_keep(&times, policy);
        let newest = *times.last().unwrap();
        assert!(keep.contains(&(times.len() - 1)), "the newest is kept");
        // Everything from the last 24 hours: at 6-hour spacing, the last four backups.
        for i in times.len() - 4..times.len() {
            assert!(keep.contains(&i), "recent backup {i} kept");
        }
        assert!(!keep.contains(&(times.len() - 6)), "older ones are thinned");
        // Several backups within one hour (by hand, a safety backup) are all kept.
        let burst: Vec<Timestamp> = (0..5)
            .map(|i| Timestamp(newest.micros() + i * 60_000_000))
            .collect();
        assert_eq!(to_keep(&burst, policy).len(), 5);
        let kept: Vec<Timestamp> = keep.iter().map(|&i| times[i]).collect();
        let oldest_kept = kept.iter().min().unwrap();
        let days = (newest.micros() - oldest_kept.micros()) / (24 * 3_600_000_000);
        assert!(
            (300..=370).contains(&days),
            "monthly backups reach back about 12 months, got {days} days"
        );
        assert!(
            kept.len() < 5 + 14 + 8 + 12 + 1,
            "at most one per older bucket: {}",
            kept.len()
        );
        let pruned = to_keep(&times[..1], policy);
        assert_eq!(
            pruned,
            BTreeSet::from([0]),
            "a single backup is always kept"
        );
    }

    #[test]
    fn file_names_carry_their_time() {
        assert_eq!(
            time_of("holdfast-20261201T063000Z-0a1b2c3d4e5f6a7b.hfb.age"),
            Some(at("2026-12-01T06:30:00Z"))
        );
        assert_eq!(time_of("notes.txt"), None);
        assert_eq!(
            pre_upgrade_time_of("pre-upgrade-v8-20261201T063000Z.db.age"),
            Some(at("2026-12-01T06:30:00Z"))
        );
        assert_eq!(pre_upgrade_time_of("pre-upgrade-v8-notes.txt"), None);
    }

    #[test]
    fn pre_upgrade_copies_go_once_every_kept_backup_is_newer() {
        let dir = tempfile::tempdir().unwrap();
        let touch = |name: &str| std::fs::write(dir.path().join(name), b"x").unwrap();
        touch("pre-upgrade-v7-20261101T000000Z.db.age");
        touch("pre-upgrade-v8-20261201T050000Z.db.age");
        touch("pre-upgrade-v9-20261201T070000Z.db.age");
        touch("holdfast-20261115T000000Z-0000000000000000.hfb.age");
        touch("holdfast-20261201T060000Z-0000000000000001.hfb.age");
        let policy = Retention {
            hourly: 1,
            daily: 1,
            weekly: 0,
            monthly: 0,
        };
        let deleted = prune(dir.path(), policy).unwrap();
        let names: Vec<String> = deleted
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        // Only the 06:00 backup is kept: the copies from before it go, the newer one stays.
        assert!(names.iter().any(|n| n.contains("-v7-")), "{names:?}");
        assert!(names.iter().any(|n| n.contains("-v8-")), "{names:?}");
        assert!(
            dir.path()
                .join("pre-upgrade-v9-20261201T070000Z.db.age")
                .exists()
        );
    }

    #[test]
    fn a_backup_is_due_after_the_interval() {
        let run = |started: &str| BackupRunRow {
            id: 1,
            reason: "scheduled".into(),
            started_at: at(started).micros(),
            finished_at: None,
            file: None,
            bytes: None,
            sha256: None,
            rows_total: None,
            encrypted: false,
            error: None,
            copied_to: None,
            drill_at: None,
            drill_ms: None,
            drill_error: None,
        };
        let now = at("2026-12-01T12:00:00Z");
        assert!(due(now, None, 360));
        assert!(!due(now, Some(&run("2026-12-01T07:00:00Z")), 360));
        assert!(due(now, Some(&run("2026-12-01T06:00:00Z")), 360));
        assert!(!due(now, None, 0), "0 turns the schedule off");
    }
}
