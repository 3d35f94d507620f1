//! `holdfast upgrade`: the plan, the copy taken first, and the migrations.

use crate::config::Config;
use anyhow::Context as _;
use holdfast_app::upgrade::{self, Plan, human_bytes};
use holdfast_app::{Backend, Db, SchemaState};

/// `holdfast upgrade [--plan] [--yes]`: the plan first (always printed), then, unless only
/// the plan was asked for, a copy of the database and the migrations in one transaction.
pub async fn upgrade(config: &Config, plan_only: bool, yes: bool) -> anyhow::Result<()> {
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
