//! `holdfast doctor`: checks an installation from the server's console — the database opens,
//! its schema is the one this Holdfast serves, its structure is sound (SQLite
//! `integrity_check`, PostgreSQL `amcheck`), the audit log's hash chain is unbroken, and the
//! newest backups are healthy, and how the customers are protected in transit and at rest
//! (the security page's checks). One line per check, each failure with what to do; exits 1 when
//! anything failed, for scripts.

use crate::DbArgs;
use crate::backup_cmd::load;
use clap::Args;
use holdfast_app::health::Thoroughness;
use holdfast_app::{App, SchemaState, SystemClock};
use std::sync::Arc;

#[derive(Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    target: DbArgs,
}

/// One check's outcome: `Ok(what was found)` or `Err(what is wrong and what to do)`.
type Check = Result<String, String>;

fn report(name: &str, check: &Check) {
    match check {
        Ok(found) => println!("✓ {name}: {found}"),
        Err(problem) => println!("✗ {name}: {problem}"),
    }
}

pub async fn run(args: DoctorArgs) -> anyhow::Result<()> {
    let config = load(&args.target)?;
    let url = config.database_url()?;
    // Opened without the start check and without migrating: the doctor looks, it does not act.
    let db = match holdfast_app::Db::connect_with_key(&url, config.database_key()?).await {
        Ok(db) => db,
        Err(error) => {
            report("database", &Err(format!("{error:#}")));
            anyhow::bail!("the database could not be opened");
        }
    };
    let app = App::new(db, config.app_config()?, Arc::new(SystemClock))
        .with_backups(config.backup_config()?);
    let mut failed = 0;
    let mut check = |name: &str, outcome: Check| {
        report(name, &outcome);
        failed += usize::from(outcome.is_err());
    };
    check(
        "database",
        Ok(format!(
            "{} at {}",
            app.db.backend().name(),
            holdfast_app::redact(&url)
        )),
    );
    let schema = match app.db.schema_state().await {
        Ok(SchemaState::Current) => Ok("current".to_owned()),
        Ok(SchemaState::Empty) => {
            Err("empty: no Holdfast tables yet; `holdfast serve` creates them".to_owned())
        }
        Ok(SchemaState::Behind { found, wanted }) => Err(format!(
            "at version {found}, this Holdfast needs {wanted}: run `holdfast upgrade`"
        )),
        Ok(SchemaState::Ahead { found, wanted }) => Err(format!(
            "at version {found}, newer than this Holdfast ({wanted}): run the newer Holdfast"
        )),
        Err(error) => Err(format!("{error:#}")),
    };
    let schema_ok = schema.is_ok();
    check("schema", schema);
    let started = std::time::Instant::now();
    let integrity = match app.db.check_integrity(Thoroughness::Full, "doctor").await {
        Ok(None) => Ok(format!(
            "sound (full check, {:.1} s)",
            started.elapsed().as_secs_f64()
        )),
        Ok(Some(problem)) => Err(format!(
            "DAMAGED: {problem}. Restore the newest verified backup into a new data folder: `holdfast backup restore FILE --data-dir NEW_FOLDER`"
        )),
        Err(error) => Err(format!("the check could not run: {error:#}")),
    };
    check("integrity", integrity);
    if schema_ok {
        let chain = match app.db.verify_audit_chain().await {
            Ok(entries) => Ok(format!("{entries} entries, hash chain unbroken")),
            Err(error) => Err(format!("{error:#}")),
        };
        check("audit log", chain);
        let backups = match holdfast_app::backup::schedule::status(&app).await {
            Ok(status) if status.state == "off" => Err(
                "this configuration takes no backups: set up the [backup] section (holdfast config example)".to_owned(),
            ),
            Ok(status) if status.state == "ok" => Ok(format!(
                "healthy; newest verified {}",
                status
                    .last_good
                    .and_then(|run| run.file)
                    .unwrap_or_default()
            )),
            Ok(status) => Err(format!("need attention: {}", status.problems.join(", "))),
            Err(error) => Err(format!("{error:#}")),
        };
        check("backups", backups);
    }
    // Transport, encryption at rest, the backup key: red fails the doctor, amber is printed.
    match holdfast_app::security::status_unchecked(&app).await {
        Ok(status) => {
            let tr = holdfast_web::i18n::Tr::new(holdfast_web::i18n::Locale::En, 0);
            for item in &status.checks {
                let text = tr.t(&format!("security.{}", item.code)).to_owned();
                let text = if item.detail.is_empty() {
                    text
                } else {
                    format!("{text} ({})", item.detail)
                };
                match item.level {
                    holdfast_app::security::Level::Good => println!("✓ security: {text}"),
                    holdfast_app::security::Level::Warn => println!("! security: {text}"),
                    holdfast_app::security::Level::Bad => check("security", Err(text)),
                }
            }
        }
        Err(error) => check("security", Err(format!("{error:#}"))),
    }
    app.db.close().await;
    if failed > 0 {
        anyhow::bail!("{failed} checks failed");
    }
    println!("All checks passed");
    Ok(())
}
