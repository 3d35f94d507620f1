//! `holdfast upgrade`: the plan, the copy taken first, and the migrations.

use crate::config::Config;
use anyhow::Context as _;
use holdfast_app::upgrade::{self, Plan, human_bytes};
use holdfast_app::{Backend, Db, SchemaState};

/// `holdfast upgrade [--plan] [--yes]`: the plan first (always printed), then, unless only
/// the plan was asked for, a copy of the database and the migrations in one transaction.
pub async fn upgrade(
    config: &Config,
    plan_only: bool,
    rehearse_only: bool,
    yes: bool,
) -> anyhow::Result<()> {
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
    print_plan(&plan, db.backend());
    if plan_only {
        println!("(--plan: nothing was changed)");
        return Ok(());
    }
    if rehearse_only {
        let done = rehearse(config, db).await?;
        println!(
            "Rehearsed on a copy: migrations {} applied in one transaction, every table kept its rows; \
             {} records and {} versions read back as an administrator; the audit log's {} entries verify. \
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
    match db.backend() {
        Backend::Sqlite => {
            // The copy holds every customer: it is sealed with the backup key like a backup,
            // lives beside the backups and is pruned with them.
            if let Some(path) = config.ensure_backup_key()? {
                println!("Generated the backup key {}", path.display());
            }
            let key = config
                .backup_key(None, None)?
                .context("no backup key to seal the pre-upgrade copy with")?;
            let dir = config.backup_dir()?;
            holdfast_app::files::private_dir(&dir)
                .with_context(|| format!("creating {}", dir.display()))?;
            let stamp = holdfast_app::compact_utc_now();
            let plain = dir.join(format!(".pre-upgrade-v{found}-{stamp}.db"));
            let sealed = dir.join(format!("pre-upgrade-v{found}-{stamp}.db.age"));
            let _ = std::fs::remove_file(&plain);
            db.sqlite_copy_to(&plain).await?;
            let result = holdfast_app::backup::sealed::seal(&key, &plain, &sealed);
            holdfast_app::files::shred(&plain)
                .with_context(|| format!("removing {}", plain.display()))?;
            result.context("sealing the pre-upgrade copy")?;
            println!(
                "Backed up the database to {} (encrypted with the backup key)",
                sealed.display()
            );
            println!(
                "To roll back: stop Holdfast, run `holdfast backup unseal {} --output holdfast.db` (with the same data folder), put that file in place of holdfast.db, and run the previous version.",
                sealed.display()
            );
        }
        Backend::Postgres => {
            if !yes {
                anyhow::bail!(
                    "back up the PostgreSQL database first, for example:\n    pg_dump --format=custom --file=holdfast-pre-upgrade-v{found}.dump '{}'\n\
                     then run `holdfast upgrade --yes` with the same options. To roll back, restore that dump with pg_restore",
                    holdfast_app::redact(&url)
                );
            }
        }
    }
    let applied = db.migrate_to(wanted).await.context(
        "the upgrade failed and was rolled back: the database is as it was before. Fix the cause, then run `holdfast upgrade` again",
    )?;
    for migration in applied {
        println!("Applied {}: {}", migration.version, migration.name);
    }
    println!("Upgrade complete: schema version {wanted}.");
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

fn print_plan(plan: &Plan, backend: Backend) {
    println!(
        "The database ({}, {}) is at schema version {}; this Holdfast needs version {}.",
        plan.backend,
        human_bytes(plan.database_bytes),
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
        human_bytes(plan.database_bytes),
        plan.estimated_seconds
    );
    println!("What happens:");
    for line in upgrade::steps_for_operator(backend) {
        println!("  {line}");
    }
}
