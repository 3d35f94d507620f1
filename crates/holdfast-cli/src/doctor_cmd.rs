//! `holdfast doctor`: the security checklist from the server's console — the one the security
//! page shows ([`holdfast_app::checklist`]), with SQLite's full `integrity_check` (PostgreSQL
//! `amcheck`). One line per item (✓ fine, ! to look at, ✗ unsafe), each with what to do, and a
//! score out of 100; `--json` for scripts. Exits 0 when nothing is unsafe, 1 when something is,
//! 2 when the database could not be opened.

use crate::DbArgs;
use crate::backup_cmd::load;
use clap::Args;
use holdfast_app::checklist::{self, Depth};
use holdfast_app::security::Level;
use holdfast_app::{App, SystemClock};
use holdfast_web::i18n::{Locale, Tr};
use serde_json::{Value, json};
use std::sync::Arc;

#[derive(Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    target: DbArgs,
    /// Print the checklist as JSON (score, level, and each item's area, code, level, weight,
    /// text and detail) instead of lines.
    #[arg(long)]
    json: bool,
}

/// Exit codes for scripts: nothing red; something red; the doctor could not look at all.
pub const EXIT_RED: u8 = 1;
pub const EXIT_CANNOT_CHECK: u8 = 2;

/// Runs the checklist; `Ok(exit code)`.
pub async fn run(args: DoctorArgs) -> anyhow::Result<u8> {
    let config = load(&args.target)?;
    let url = config.database_url()?;
    // Opened without the start check and without migrating: the doctor looks, it does not act.
    let db = match holdfast_app::Db::connect_with_key(&url, config.database_key()?).await {
        Ok(db) => db,
        Err(error) => {
            let problem = format!("{error:#}");
            match args.json {
                true => println!(
                    "{}",
                    json!({"level": "bad", "score": 0, "database": problem, "items": []})
                ),
                false => println!("✗ database: {problem}"),
            }
            eprintln!("error: the database could not be opened");
            return Ok(EXIT_CANNOT_CHECK);
        }
    };
    // The audit key only read, never used to seal: the doctor changes nothing.
    match holdfast_app::audit_key::read(&config.audit_key_file()?) {
        Ok(key) => db.set_audit_key(key),
        Err(error) => eprintln!("warning: {error:#}"),
    }
    let app = App::new(db, config.app_config()?, Arc::new(SystemClock))
        .with_backups(config.backup_config()?);
    let checklist = checklist::run(&app, Depth::Full).await;
    app.db.close().await;
    let tr = Tr::new(Locale::En, 0);
    let text_of = |item: &checklist::Item| {
        let (text, detail) = holdfast_web::views::security::item_text(&tr, item);
        match detail.is_empty() {
            true => text,
            false if text.ends_with(':') => format!("{text} {detail}"),
            false => format!("{text} ({detail})"),
        }
    };
    if args.json {
        let items: Vec<Value> = checklist
            .items
            .iter()
            .map(|item| {
                json!({
                    "area": item.area,
                    "code": item.code,
                    "level": item.level,
                    "weight": item.weight,
                    "text": text_of(item),
                    "detail": item.detail,
                })
            })
            .collect();
        let database = format!(
            "{} at {}",
            app.db.backend().name(),
            holdfast_app::redact(&url)
        );
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "score": checklist.score,
                "level": checklist.level,
                "database": database,
                "items": items,
            }))?
        );
    } else {
        println!(
            "✓ database: {} at {}",
            app.db.backend().name(),
            holdfast_app::redact(&url)
        );
        for item in &checklist.items {
            let mark = match item.level {
                Level::Good => '✓',
                Level::Warn => '!',
                Level::Bad => '✗',
            };
            println!("{mark} {}: {}", item.area, text_of(item));
        }
        let (red, amber) = (checklist.count(Level::Bad), checklist.count(Level::Warn));
        println!(
            "Score: {}/100 — {red} unsafe (✗), {amber} to look at (!), {} fine (✓)",
            checklist.score,
            checklist.items.len() - red - amber
        );
        if red == 0 {
            println!("Nothing unsafe found");
        }
    }
    Ok(match checklist.level {
        Level::Bad => EXIT_RED,
        _ => 0,
    })
}
