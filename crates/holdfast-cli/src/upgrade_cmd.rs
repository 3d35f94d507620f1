//! `holdfast upgrade`: the plan, the copy taken first, and the migrations.

use crate::backup_cmd::human_bytes;
use crate::config::Config;
use anyhow::Context as _;
use holdfast_app::upgrade::{self, Plan};
use holdfast_app::{Backend, Clock as _, Db, SchemaState};

/// `holdfast upgrade [--plan] [--yes]`: the plan first (always printed), then, unless only
/// the plan was asked for, a copy of the database and the migrations in one transaction.
pub async fn upgrade(config: &Config, plan_only: bool, rehearse_only: bool) -> anyhow::Result<()> {
    crate::prepare_data_dir(config)?;
    let url = config.database_url()?;
    let db = Db::connect_with_key(&url, config.database_key()?).await?;
    let Some(plan) = upgrade::plan(&db).await? else {
        match db.schema_state().await? {
            SchemaState::Empty => println!(
                "The database is empty; `holdfast serve` initialises it. Nothing to upgrade."
            ),
            _ => println!(
                "The database schema is current (version {}). Nothing to do.",
                holdfast_app::records_schema_version()
            ),
        }
        return Ok(());
    };
    print_plan(&plan);
    if plan_only {
        println!("(--plan: nothing was changed)");
        return Ok(());
    }
    if rehearse_only {
        let done = rehearse(config, db).await?;
        let access = match done.access_compared {
            Some(users) => format!("every user's access ({users} users) is the same as before"),
            None => format!(
                "access could be compared only after the upgrade (this Holdfast does not read access at schema {})",
                plan.found
            ),
        };
        println!(
            "Rehearsed on a copy: migrations {} applied in one transaction, every table kept its rows; \
             {} records and {} versions read back as an administrator; the audit log's {} entries verify; {access}. \
             {:.1} s. The copy was deleted; nothing was changed.",
            done.applied
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            done.records,
            done.versions,
            done.audit_entries,
            done.millis as f64 / 1000.0
        );
        return Ok(());
    }
    let (found, wanted) = (plan.found, plan.wanted);
    let archive = pre_upgrade_backup(config, &db).await?;
    let applied = db.migrate_to(wanted).await.context(
        "the upgrade failed and was rolled back: the database is as it was before. Fix the cause, then run `holdfast upgrade` again",
    )?;
    for migration in applied {
        println!("Applied {}: {}", migration.version, migration.name);
    }
    let record = serde_json::json!({
        "file": archive.display().to_string(),
        "from": found,
        "to": wanted,
        "at": holdfast_app::compact_utc_now(),
    });
    db.set_meta(PRE_UPGRADE, &record.to_string()).await?;
    println!("Upgrade complete: schema version {wanted}.");
    println!(
        "To undo it later: `holdfast upgrade --rollback` puts the data back as it was before (a safety backup of the data then is taken first); \
         to run the previous Holdfast instead, restore {} with it into a new data folder.",
        archive.display()
    );
    db.close().await;
    Ok(())
}

/// Where the last upgrade's backup is recorded (in `meta`), for `--rollback`.
const PRE_UPGRADE: &str = "pre_upgrade_backup";

/// The backup an upgrade starts from, on either backend: a whole Holdfast backup of the
/// database at its current (older) schema, encrypted with the backup key, and verified by
/// restoring it into a scratch database before anything is migrated. A damaged database is
/// not upgraded at all.
async fn pre_upgrade_backup(config: &Config, db: &Db) -> anyhow::Result<std::path::PathBuf> {
    use holdfast_app::backup;
    if let Some(problem) = db
        .check_integrity(holdfast_app::health::Thoroughness::Quick, "upgrade_check")
        .await?
    {
        anyhow::bail!(
            "refusing to upgrade a damaged database ({problem}): restore the newest verified backup with this database's Holdfast first"
        );
    }
    if let Some(path) = config.ensure_backup_key()? {
        println!("Generated the backup key {}", path.display());
    }
    let key = config
        .backup_key(None, None)?
        .context("no backup key to encrypt the pre-upgrade backup with")?;
    // A sealed audit log travels with its key (read only: nothing is sealed before upgrading).
    if let Ok(Some(audit_key)) = holdfast_app::audit_key::read(&config.audit_key_file()?) {
        db.set_audit_key(Some(audit_key));
    }
    let dir = config.backup_dir()?;
    let progress = backup::Progress::default();
    let now = holdfast_app::SystemClock.now();
    let created = backup::create_as_is(db, &dir, Some(&key), now, &progress)
        .await
        .context("taking the backup the upgrade starts from; nothing was changed")?;
    backup::verify(&created.path, Some(&key), Some(&dir), &progress)
        .await
        .with_context(|| {
            format!(
                "the pre-upgrade backup {} does not verify; nothing was changed",
                created.path.display()
            )
        })?;
    println!(
        "Backed up the database to {} (encrypted with the backup key) and verified it by restoring it into a scratch database.",
        created.path.display()
    );
    Ok(created.path)
}

/// `holdfast upgrade --rollback`: the last upgrade's backup restored over the database, through
/// the normal restore (a safety backup of what is there now first).
pub async fn rollback(config: &Config, yes: bool) -> anyhow::Result<()> {
    use holdfast_app::backup;
    crate::prepare_data_dir(config)?;
    let db = Db::connect_with_key(&config.database_url()?, config.database_key()?).await?;
    let Some(record) = db.meta(PRE_UPGRADE).await? else {
        anyhow::bail!("this database records no upgrade to roll back");
    };
    let record: serde_json::Value = serde_json::from_str(&record)?;
    let file = std::path::PathBuf::from(record["file"].as_str().unwrap_or_default());
    println!(
        "The upgrade from schema {} to {} on {} started from the backup {}. Rolling back restores it: every change since the upgrade is replaced (a safety backup of the data now is taken first).",
        record["from"],
        record["to"],
        record["at"].as_str().unwrap_or("?"),
        file.display()
    );
    if !yes && !crate::backup_cmd::confirm("Roll back?")? {
        anyhow::bail!("not rolled back: run again with --yes to roll back");
    }
    holdfast_app::audit_key::open(
        &db,
        &config.audit_key_file()?,
        holdfast_app::SystemClock.now(),
    )
    .await?;
    let key = config.backup_key(None, None)?;
    let dir = config.backup_dir()?;
    let op_id = holdfast_app::random_hex(8)?;
    let restored = backup::restore(
        &db,
        &backup::Restore {
            path: &file,
            key: key.as_ref(),
            safety_dir: &dir,
            by: &holdfast_domain::Actor::system(),
            op_id: &op_id,
            now: holdfast_app::SystemClock.now(),
            audit_key_file: Some(&config.audit_key_file()?),
        },
        &backup::Progress::default(),
    )
    .await
    .context("rolling back")?;
    if let Some(safety) = &restored.safety_backup {
        println!(
            "The data as it was before the rollback is in {}",
            safety.display()
        );
    }
    println!(
        "Rolled back: the data is as it was before the upgrade ({} rows), at this Holdfast's schema.",
        restored.manifest.rows_total()
    );
    db.close().await;
    Ok(())
}

/// Makes a copy of the database (SQLite: a checked copy in a private folder of the data
/// folder; PostgreSQL: a database copied on the same server), rehearses the upgrade on it and
/// deletes it, whatever the outcome.
async fn rehearse(config: &Config, db: Db) -> anyhow::Result<upgrade::Rehearsal> {
    let audit_key = holdfast_app::audit_key::read(&config.audit_key_file()?).unwrap_or(None);
    let url = config.database_url()?;
    let stamp = holdfast_app::random_hex(4)?;
    match db.backend() {
        Backend::Sqlite => {
            let folder = config
                .absolute_data_dir()?
                .join(format!(".rehearsal-{stamp}"));
            holdfast_app::files::private_dir(&folder)
                .with_context(|| format!("creating {}", folder.display()))?;
            let copy = folder.join("holdfast.db");
            let copied = db.sqlite_copy_to(&copy).await;
            db.close().await;
            let result = match copied {
                Ok(()) => {
                    let copy_url = format!("sqlite://{}?mode=rw", copy.display());
                    upgrade::rehearse(&copy_url, config.database_key()?, audit_key).await
                }
                Err(error) => Err(error.context("copying the database to rehearse on")),
            };
            for file in std::fs::read_dir(&folder)?.flatten() {
                let _ = holdfast_app::files::shred(&file.path());
            }
            let _ = std::fs::remove_dir_all(&folder);
            result
        }
        Backend::Postgres => {
            db.close().await;
            let name = format!("holdfast_rehearsal_{stamp}");
            let copy_url = holdfast_app::create_postgres_copy(&url, &name).await?;
            let result = upgrade::rehearse(&copy_url, None, audit_key).await;
            holdfast_app::drop_postgres_database(&url, &name)
                .await
                .with_context(|| format!("dropping the rehearsal copy {name}; drop it by hand"))?;
            result
        }
    }
}

fn print_plan(plan: &Plan) {
    println!(
        "The database ({}, {}) is at schema version {}; this Holdfast needs version {}.",
        plan.backend,
        human_bytes(plan.database_bytes.max(0) as u64),
        plan.found,
        plan.wanted
    );
    println!("Migrations:");
    for step in &plan.steps {
        println!("  {}: {}", step.version, step.name);
        for change in &step.changes {
            println!("      - {change}");
        }
    }
    println!(
        "Needs: about {} free for the copy taken first; takes about {} s (an estimate from this database's size and the rows to index).",
        human_bytes(plan.database_bytes.max(0) as u64),
        plan.estimated_seconds
    );
    println!("What happens:");
    for line in upgrade::steps_for_operator() {
        println!("  {line}");
    }
}
