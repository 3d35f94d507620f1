//! The security checklist `holdfast doctor` prints and the admin security page shows: every
//! way this installation could lose or leak its customers that Holdfast can see from inside —
//! transport, encryption at rest, backups and their drills and second copy, file permissions,
//! administrators (two-step sign-in, dormant, too many), the sign-in policy, the audit chain,
//! the database's integrity and schema, known advisories in the dependencies, and alerts.
//!
//! Each item has a translatable outcome `code` (`security.<code>` in the pages; the text says
//! how to fix what is amber or red), a level and a weight; the score is the weighted share of
//! what is green (amber counts half).

use crate::security::{self, Level};
use crate::{App, SchemaState};
use holdfast_store::health::Thoroughness;
use serde::Serialize;
use std::path::PathBuf;

/// One line of the checklist.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// What is checked (`transport`, `backups`, `admins_two_step`, …).
    pub area: &'static str,
    /// The outcome, translatable as `security.<code>`.
    pub code: &'static str,
    pub level: Level,
    /// How much this item counts towards the score.
    pub weight: u32,
    /// Facts that go with it, untranslated: file names, user names, counts.
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Checklist {
    pub items: Vec<Item>,
    /// 0–100: the weighted share of green items, amber counting half.
    pub score: u32,
    pub level: Level,
}

/// How hard to look: the page runs quick checks; `doctor` runs SQLite's full
/// `integrity_check` (PostgreSQL `amcheck`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    Page,
    Full,
}

impl Checklist {
    fn new(items: Vec<Item>) -> Checklist {
        let total: u32 = items.iter().map(|i| i.weight).sum();
        let earned: u32 = items
            .iter()
            .map(|i| match i.level {
                Level::Good => i.weight * 2,
                Level::Warn => i.weight,
                Level::Bad => 0,
            })
            .sum();
        let score = match total {
            0 => 100,
            total => (earned * 100 + total) / (2 * total),
        };
        let level = worst(items.iter().map(|i| i.level));
        Checklist {
            items,
            score,
            level,
        }
    }

    pub fn count(&self, level: Level) -> usize {
        self.items.iter().filter(|i| i.level == level).count()
    }
}

fn worst(levels: impl Iterator<Item = Level>) -> Level {
    levels.fold(Level::Good, |worst, level| match (worst, level) {
        (Level::Bad, _) | (_, Level::Bad) => Level::Bad,
        (Level::Warn, _) | (_, Level::Warn) => Level::Warn,
        _ => Level::Good,
    })
}

fn item(area: &'static str, weight: u32, code: &'static str, level: Level, detail: String) -> Item {
    Item {
        area,
        code,
        level,
        weight,
        detail,
    }
}

/// Whether the audit log is sealed with a key kept outside the database, and whether this
/// Holdfast has that key (without it the chain cannot be checked).
async fn seal_item(app: &App) -> (Item, bool) {
    let seal = match app.db.audit_seal().await {
        Ok(seal) => seal,
        Err(error) => {
            let detail = format!("{error:#}");
            return (
                item("audit_seal", 5, "audit_seal_unknown", Level::Warn, detail),
                false,
            );
        }
    };
    let key = app.db.audit_key();
    match key.filter(|key| key.id() == seal.key_id) {
        Some(key) => (
            item(
                "audit_seal",
                5,
                "audit_sealed",
                Level::Good,
                format!("{} · {}", key.id(), seal.keyed_from),
            ),
            true,
        ),
        None if seal.sealed() => (
            item(
                "audit_seal",
                5,
                "audit_key_missing",
                Level::Bad,
                seal.key_id,
            ),
            false,
        ),
        None => (
            item("audit_seal", 5, "audit_unsealed", Level::Bad, String::new()),
            true,
        ),
    }
}

/// The checklist for the security page (administrators and auditors).
pub async fn for_actor(
    app: &App,
    actor: &holdfast_domain::Actor,
) -> Result<Checklist, crate::AppError> {
    holdfast_domain::access::authorize(actor, holdfast_domain::Action::Audit)?;
    Ok(run(app, Depth::Page).await)
}

/// Runs every check. Checks that could not run are amber with the reason, never skipped: a
/// checklist that hides what it could not see would look greener than it is.
pub async fn run(app: &App, depth: Depth) -> Checklist {
    let mut items = Vec::new();
    let schema = app.db.schema_state().await;
    items.push(schema_item(&schema));
    let schema_ok = matches!(schema, Ok(SchemaState::Current));
    items.push(integrity_item(app, depth).await);
    if schema_ok {
        items.push(match crate::upgrade::instances(app).await {
            Ok(found) => match found.upgrade_waiting {
                Some(waiting) => item(
                    "upgrade",
                    3,
                    "upgrade_waiting",
                    Level::Warn,
                    format!(
                        "{} · Holdfast {} · {} > {}",
                        waiting.host, waiting.holdfast_version, waiting.schema_wanted, found.schema
                    ),
                ),
                None => item("upgrade", 3, "upgrade_none", Level::Good, String::new()),
            },
            Err(error) => item(
                "upgrade",
                3,
                "check_failed",
                Level::Warn,
                format!("{error:#}"),
            ),
        });
        let (seal, key_given) = seal_item(app).await;
        items.push(seal);
        items.push(match key_given {
            // Without the key a sealed chain cannot be checked: that is not a broken chain.
            false => item(
                "audit_chain",
                10,
                "audit_chain_unchecked",
                Level::Warn,
                String::new(),
            ),
            true => match app.db.verify_audit_chain().await {
                Ok(entries) => item(
                    "audit_chain",
                    10,
                    "audit_chain_ok",
                    Level::Good,
                    entries.to_string(),
                ),
                Err(error) => item(
                    "audit_chain",
                    10,
                    "audit_chain_broken",
                    Level::Bad,
                    format!("{error:#}"),
                ),
            },
        });
        items.push(heads_item(app).await);
    }
    match security::status_unchecked(app).await {
        Ok(status) => items.extend(status.checks.into_iter().map(|check| Item {
            area: check.area,
            code: check.code,
            level: check.level,
            weight: check.weight,
            detail: check.detail,
        })),
        Err(error) => items.push(item(
            "encryption",
            10,
            "check_failed",
            Level::Warn,
            format!("{error:#}"),
        )),
    }
    if schema_ok {
        items.push(backups_item(app).await);
    }
    // Without backups at all the backups item is red already; a second copy of nothing is moot.
    if let Some(config) = &app.backups {
        items.push(match &config.copy_to {
            Some(dir) => item(
                "backup_copy",
                5,
                "backup_copy",
                Level::Good,
                dir.display().to_string(),
            ),
            None => item(
                "backup_copy",
                5,
                "backup_no_copy",
                Level::Warn,
                String::new(),
            ),
        });
    }
    items.push(files_item(&app.config.private_files));
    if schema_ok {
        match admin_items(app).await {
            Ok(admin) => items.extend(admin),
            Err(error) => items.push(item(
                "admins",
                10,
                "check_failed",
                Level::Warn,
                format!("{error:#}"),
            )),
        }
    }
    items.push(signin_policy_item(&app.config));
    items.push(advisories_item());
    if schema_ok {
        items.push(crate::alerts::checklist_item(app).await);
    }
    Checklist::new(items)
}

/// The chain's heads kept outside the database, checked against the log.
async fn heads_item(app: &App) -> Item {
    let Some(file) = &app.config.audit_head_file else {
        return item(
            "audit_heads",
            3,
            "audit_heads_off",
            Level::Warn,
            String::new(),
        );
    };
    if !file.exists() {
        // Written within a minute of the first change once the server runs.
        return item(
            "audit_heads",
            3,
            "audit_heads_pending",
            Level::Good,
            file.display().to_string(),
        );
    }
    match crate::audit_heads::check(app, file).await {
        Ok(lines) => item(
            "audit_heads",
            3,
            "audit_heads_ok",
            Level::Good,
            format!("{lines} · {}", file.display()),
        ),
        Err(error) => item(
            "audit_heads",
            3,
            "audit_heads_broken",
            Level::Bad,
            format!("{error:#}"),
        ),
    }
}

fn schema_item(schema: &anyhow::Result<SchemaState>) -> Item {
    let (code, level, detail) = match schema {
        Ok(SchemaState::Current) => ("schema_current", Level::Good, String::new()),
        Ok(SchemaState::Empty) => ("schema_empty", Level::Bad, String::new()),
        Ok(SchemaState::Behind { found, wanted }) => {
            ("schema_behind", Level::Bad, format!("{found} < {wanted}"))
        }
        Ok(SchemaState::Ahead { found, wanted }) => {
            ("schema_ahead", Level::Bad, format!("{found} > {wanted}"))
        }
        Err(error) => ("check_failed", Level::Bad, format!("{error:#}")),
    };
    item("schema", 5, code, level, detail)
}

async fn integrity_item(app: &App, depth: Depth) -> Item {
    let (thoroughness, found_by) = match depth {
        Depth::Page => (Thoroughness::Quick, "security_page"),
        Depth::Full => (Thoroughness::Full, "doctor"),
    };
    let started = std::time::Instant::now();
    match app.db.check_integrity(thoroughness, found_by).await {
        Ok(None) => item(
            "integrity",
            10,
            match depth {
                Depth::Page => "integrity_ok_quick",
                Depth::Full => "integrity_ok",
            },
            Level::Good,
            format!("{:.1} s", started.elapsed().as_secs_f64()),
        ),
        Ok(Some(problem)) => item("integrity", 10, "integrity_damaged", Level::Bad, problem),
        Err(error) => item(
            "integrity",
            10,
            "check_failed",
            Level::Warn,
            format!("{error:#}"),
        ),
    }
}

async fn backups_item(app: &App) -> Item {
    match crate::backup::schedule::status(app).await {
        Ok(status) if status.state == "off" => {
            item("backups", 15, "backups_off", Level::Bad, String::new())
        }
        Ok(status) if status.state == "ok" => item(
            "backups",
            15,
            "backups_verified",
            Level::Good,
            status
                .last_good
                .and_then(|run| run.file)
                .unwrap_or_default(),
        ),
        Ok(status) => item(
            "backups",
            15,
            "backups_unhealthy",
            Level::Bad,
            status.problems.join(", "),
        ),
        Err(error) => item(
            "backups",
            15,
            "check_failed",
            Level::Warn,
            format!("{error:#}"),
        ),
    }
}

/// Secret files and folders that other accounts on the machine can read.
fn files_item(paths: &[PathBuf]) -> Item {
    let exposed: Vec<String> = paths
        .iter()
        .filter_map(|path| exposed_mode(path).map(|mode| format!("{} ({mode:o})", path.display())))
        .collect();
    match exposed.is_empty() {
        true => item("files", 10, "files_private", Level::Good, String::new()),
        false => item("files", 10, "files_exposed", Level::Bad, exposed.join(", ")),
    }
}

/// The permission bits of a file or folder that other accounts can use, if any.
fn exposed_mode(path: &std::path::Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
        (mode & 0o077 != 0).then_some(mode)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Administrators without two-step sign-in, dormant ones, and how many there are.
async fn admin_items(app: &App) -> anyhow::Result<Vec<Item>> {
    let now = app.now();
    let admins: Vec<_> = app
        .db
        .users()
        .await?
        .into_iter()
        .filter(|u| u.active && !u.pending && u.role == holdfast_domain::access::ADMIN)
        .collect();
    let enrolled = app.db.users_with_second_factor().await?;
    let required = app
        .db
        .second_factor_roles()
        .await?
        .contains(holdfast_domain::access::ADMIN);
    let without: Vec<&str> = admins
        .iter()
        .filter(|u| !enrolled.contains(&u.id))
        .map(|u| u.username.as_str())
        .collect();
    let two_step = match (without.is_empty(), required) {
        (true, true) => item(
            "admins_two_step",
            10,
            "admins_two_step",
            Level::Good,
            String::new(),
        ),
        (true, false) => item(
            "admins_two_step",
            10,
            "admins_two_step_not_required",
            Level::Warn,
            String::new(),
        ),
        (false, _) => item(
            "admins_two_step",
            10,
            "admins_without_two_step",
            Level::Bad,
            without.join(", "),
        ),
    };
    let dormant_after = app.config.dormant_after_days * 86_400_000_000;
    let dormant: Vec<&str> = admins
        .iter()
        .filter(|u| now.0 - u.last_login_at.unwrap_or(u.created_at).0 > dormant_after)
        .map(|u| u.username.as_str())
        .collect();
    let dormant = match dormant.is_empty() {
        true => item(
            "admins_dormant",
            3,
            "admins_active",
            Level::Good,
            String::new(),
        ),
        false => item(
            "admins_dormant",
            3,
            "admins_dormant",
            Level::Warn,
            dormant.join(", "),
        ),
    };
    let count = admins.len();
    let most = app.config.max_admins;
    let many = match count {
        0 => item("admins_count", 3, "admins_none", Level::Bad, String::new()),
        n if n > most => item(
            "admins_count",
            3,
            "admins_many",
            Level::Warn,
            format!("{n} > {most}"),
        ),
        n => item("admins_count", 3, "admins_few", Level::Good, n.to_string()),
    };
    Ok(vec![two_step, dormant, many])
}

/// Settings an operator may loosen that make guessing or keeping a stolen session easier.
fn signin_policy_item(config: &crate::AppConfig) -> Item {
    let defaults = crate::AppConfig::default();
    let mut loose = Vec::new();
    if config.login_max_failures_per_account > 3 * defaults.login_max_failures_per_account {
        loose.push(format!(
            "login.max_failures_per_account = {}",
            config.login_max_failures_per_account
        ));
    }
    if config.login_max_failures_per_address > 3 * defaults.login_max_failures_per_address {
        loose.push(format!(
            "login.max_failures_per_address = {}",
            config.login_max_failures_per_address
        ));
    }
    if config.session_idle_minutes > 8 * 60 {
        loose.push(format!(
            "sessions.idle_minutes = {}",
            config.session_idle_minutes
        ));
    }
    if config.session_absolute_hours > 24 {
        loose.push(format!(
            "sessions.absolute_hours = {}",
            config.session_absolute_hours
        ));
    }
    if config.tokens_may_never_expire {
        loose.push("login.tokens_may_never_expire = true".to_owned());
    }
    match loose.is_empty() {
        true => item(
            "signin_policy",
            4,
            "signin_policy_strict",
            Level::Good,
            format!("{} +", crate::auth::MIN_PASSWORD_CHARS),
        ),
        false => item(
            "signin_policy",
            4,
            "signin_policy_loose",
            Level::Warn,
            loose.join(", "),
        ),
    }
}

/// What `cargo audit` found in this build's dependencies, against the RustSec snapshot the
/// release was checked with (`advisories.json`, refreshed by `.ci/advisories`).
#[derive(Debug, serde::Deserialize)]
pub struct Advisories {
    pub database: String,
    pub lockfile_sha256: String,
    pub dependencies: u64,
    pub found: Vec<Advisory>,
    pub ignored: Vec<Advisory>,
}

#[derive(Debug, serde::Deserialize)]
pub struct Advisory {
    pub id: String,
    #[serde(default)]
    pub package: String,
    #[serde(default)]
    pub title: String,
}

pub const ADVISORIES_JSON: &str = include_str!("advisories.json");

pub fn advisories() -> anyhow::Result<Advisories> {
    Ok(serde_json::from_str(ADVISORIES_JSON)?)
}

fn advisories_item() -> Item {
    match advisories() {
        Ok(found) if found.found.is_empty() => {
            let ignored: Vec<&str> = found.ignored.iter().map(|a| a.id.as_str()).collect();
            let mut detail = format!("{}; {} crates", found.database, found.dependencies);
            if !ignored.is_empty() {
                detail.push_str(&format!(
                    "; reviewed and not affected: {}",
                    ignored.join(", ")
                ));
            }
            item("advisories", 5, "advisories_none", Level::Good, detail)
        }
        Ok(found) => {
            let list: Vec<String> = found
                .found
                .iter()
                .map(|a| format!("{} {} ({})", a.id, a.package, a.title))
                .collect();
            item(
                "advisories",
                5,
                "advisories_known",
                Level::Bad,
                list.join("; "),
            )
        }
        Err(error) => item(
            "advisories",
            5,
            "check_failed",
            Level::Warn,
            format!("{error:#}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(level: Level, weight: u32) -> Item {
        item("x", weight, "x", level, String::new())
    }

    #[test]
    fn the_score_counts_green_whole_and_amber_half() {
        assert_eq!(Checklist::new(vec![at(Level::Good, 10)]).score, 100);
        assert_eq!(Checklist::new(vec![at(Level::Bad, 10)]).score, 0);
        let mixed = Checklist::new(vec![at(Level::Good, 10), at(Level::Warn, 10)]);
        assert_eq!((mixed.score, mixed.level), (75, Level::Warn));
        let red = Checklist::new(vec![at(Level::Good, 30), at(Level::Bad, 10)]);
        assert_eq!((red.score, red.level), (75, Level::Bad));
    }

    #[test]
    fn the_advisories_were_checked_against_this_very_lockfile() {
        use sha2::Digest as _;
        let lock = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock"))
            .unwrap_or_default();
        let sha = format!("{:x}", sha2::Sha256::digest(&lock));
        let advisories = advisories().unwrap_or_else(|e| panic!("advisories.json: {e}"));
        assert_eq!(
            advisories.lockfile_sha256, sha,
            "Cargo.lock changed since crates/holdfast-app/src/advisories.json was made: run .ci/advisories"
        );
    }
}
