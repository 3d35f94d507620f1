//! What an upgrade of the database schema will do, read from the migrations themselves and
//! this database's row counts, before anything is changed (`holdfast upgrade --plan`).

use anyhow::Context as _;
use holdfast_store::instances::InstanceRow;
use holdfast_store::schema::{self, Migration};
use holdfast_store::{Db, SchemaState};

/// Rows an index build is assumed to cover per second on the slowest machine Holdfast is
/// measured on (2 cores); the estimate is rounded up and says it is one.
const INDEXED_ROWS_PER_SECOND: i64 = 200_000;
/// Bytes per second a pre-upgrade copy is assumed to be written at.
const COPY_BYTES_PER_SECOND: i64 = 100 << 20;

/// One migration of the plan and what each of its statements does, in words.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Step {
    pub version: i64,
    pub name: &'static str,
    pub changes: Vec<String>,
    /// Rows existing tables hold that the step builds indexes over or rewrites.
    pub rows_touched: i64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    pub found: i64,
    pub wanted: i64,
    pub steps: Vec<Step>,
    /// The database's size in bytes: what the copy taken first needs free.
    pub database_bytes: i64,
    /// A rough duration of copy and migrations, in seconds (at least 1).
    pub estimated_seconds: i64,
    pub backend: &'static str,
}

/// The plan for bringing `db` to this build's schema; `None` when there is nothing to do.
pub async fn plan(db: &Db) -> anyhow::Result<Option<Plan>> {
    let (found, wanted) = match db.schema_state().await? {
        SchemaState::Behind { found, wanted } => (found, wanted),
        SchemaState::Ahead { found, wanted } => anyhow::bail!(
            "the database is at schema version {found}, newer than this Holdfast (version {wanted}); use a newer Holdfast"
        ),
        SchemaState::Empty | SchemaState::Current => return Ok(None),
    };
    let mut steps = Vec::new();
    let mut touched_total = 0;
    for migration in schema::MIGRATIONS.iter().filter(|m| m.version > found) {
        let step = describe(db, migration).await?;
        touched_total += step.rows_touched;
        steps.push(step);
    }
    let database_bytes = db.size_bytes().await?;
    let estimated_seconds =
        1 + touched_total / INDEXED_ROWS_PER_SECOND + database_bytes / COPY_BYTES_PER_SECOND;
    Ok(Some(Plan {
        found,
        wanted,
        steps,
        database_bytes,
        estimated_seconds,
        backend: db.backend().name(),
    }))
}

async fn describe(db: &Db, migration: &Migration) -> anyhow::Result<Step> {
    let mut changes = Vec::new();
    let mut rows_touched = 0;
    for statement in schema::statements(migration.sql) {
        let words: Vec<&str> = statement.split_whitespace().collect();
        let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
        let word = |i: usize| words.get(i).copied().unwrap_or("").trim_end_matches('(');
        let existing_rows = |table: &str| {
            let table = table.to_owned();
            async move { db.count_rows(&table).await.ok() }
        };
        let change = match upper.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            ["CREATE", "TABLE", ..] => format!("new table {}", word(2)),
            ["CREATE", "INDEX", _, "ON", ..] | ["CREATE", "UNIQUE", "INDEX", _, "ON", ..] => {
                let at = upper.iter().position(|w| w == "ON").unwrap_or(0);
                let table = word(at + 1);
                match existing_rows(table).await {
                    Some(rows) => {
                        rows_touched += rows;
                        format!("index on {table} ({rows} rows to index)")
                    }
                    None => format!("index on the new table {table}"),
                }
            }
            ["ALTER", "TABLE", _, "ADD", "COLUMN", ..] => {
                format!("new column {}.{}", word(2), word(5))
            }
            ["INSERT", "INTO", ..] => format!("new settings in {}", word(2)),
            ["UPDATE", ..] => {
                let table = word(1);
                let rows = existing_rows(table).await.unwrap_or(0);
                rows_touched += rows;
                format!("rewrites rows of {table} ({rows} rows)")
            }
            _ => statement.chars().take(60).collect(),
        };
        changes.push(change);
    }
    Ok(Step {
        version: migration.version,
        name: migration.name,
        changes,
        rows_touched,
    })
}

/// What the operator will see, in order, and how the upgrade is undone.
pub fn steps_for_operator() -> Vec<&'static str> {
    vec![
        "1. A whole backup of the database, encrypted with the backup key, is written to the backup folder and verified by restoring it into a scratch database (a damaged database is not upgraded).",
        "2. Every migration above runs in ONE transaction, and before it commits every table is checked against what it held before: if any statement fails or any data would change, nothing of the upgrade stays and the database is exactly as before (the error names the step).",
        "3. `Upgrade complete` names the new schema version; start the new Holdfast with `holdfast serve`.",
        "Rollback: automatic on failure (step 2). After a completed upgrade, `holdfast upgrade --rollback` restores the backup of step 1 (after a safety backup of the data then); to run the previous Holdfast, restore that backup with it into a new data folder.",
    ]
}

/// What a rehearsal found on its copy.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Rehearsal {
    pub applied: Vec<i64>,
    /// Records read back through the app as an administrator, with their histories.
    pub records: i64,
    pub versions: i64,
    /// Audit entries whose chain verified after the upgrade.
    pub audit_entries: i64,
    /// Users whose access summary was compared before and after (`None`: the copy's schema
    /// is older than this Holdfast reads access from, so only the after could be read).
    pub access_compared: Option<usize>,
    pub millis: u64,
}

/// Upgrades the copy at `copy_url` (made by the caller: a checked SQLite copy, or a
/// PostgreSQL database copied from the live one) as `holdfast upgrade` would — in one
/// transaction, its invariants checked before committing — and then reads it back through the
/// app: every record and its history as an administrator, and the audit chain (with the audit
/// key, only read). The caller deletes the copy.
pub async fn rehearse(
    copy_url: &str,
    database_key: Option<holdfast_store::DbKey>,
    audit_key: Option<holdfast_store::AuditKey>,
) -> anyhow::Result<Rehearsal> {
    let started = std::time::Instant::now();
    let db = Db::connect_with_key(copy_url, database_key.clone()).await?;
    let clock: std::sync::Arc<dyn crate::Clock> = std::sync::Arc::new(crate::SystemClock);
    // Each user's access as this Holdfast reads it before the migrations, when it can read
    // the schema the copy is at (`None` when that schema is older than it reads).
    let before = {
        let config = crate::AppConfig {
            database_key: database_key.clone(),
            ..Default::default()
        };
        access_summaries(&crate::App::new(db.clone(), config, clock.clone()))
            .await
            .ok()
    };
    let applied = db
        .migrate_to(schema::current_version())
        .await
        .map(|applied| applied.iter().map(|m| m.version).collect::<Vec<_>>());
    db.close().await;
    let applied = applied.context("the upgrade failed on the copy")?;
    let config = crate::AppConfig {
        database_key,
        ..Default::default()
    };
    let app = crate::App::open(copy_url, config, std::sync::Arc::new(crate::SystemClock))
        .await
        .context("the upgraded copy does not open")?;
    app.db.set_audit_key(audit_key);
    let checked = async {
        let counts = read_back(&app).await?;
        let after = access_summaries(&app).await?;
        if let Some(before) = &before {
            for (user, was) in before {
                let is = after.get(user);
                anyhow::ensure!(
                    is == Some(was),
                    "the access of user {user} changed in the upgrade: before {was}, after {}",
                    is.map_or("nothing".into(), ToString::to_string)
                );
            }
        }
        Ok::<_, anyhow::Error>(counts)
    }
    .await;
    app.db.close().await;
    let (records, versions, audit_entries) = checked?;
    Ok(Rehearsal {
        applied,
        records,
        versions,
        audit_entries,
        access_compared: before.map(|b| b.len()),
        millis: started.elapsed().as_millis() as u64,
    })
}

/// Every user's access summary (role, rights and what gives them, scope, hidden fields, shared
/// records), by user.
async fn access_summaries(
    app: &crate::App,
) -> anyhow::Result<std::collections::BTreeMap<i64, serde_json::Value>> {
    let system = holdfast_domain::Actor::system();
    let mut summaries = std::collections::BTreeMap::new();
    for user in app.db.users().await? {
        let summary = crate::access::summary(app, &system, user.id)
            .await
            .map_err(|e| anyhow::anyhow!("the access of user {}: {e}", user.username))?;
        summaries.insert(user.id, serde_json::to_value(summary)?);
    }
    Ok(summaries)
}

/// Every record and its history read through the app as the first active administrator (the
/// system when there is none), and the audit chain verified.
async fn read_back(app: &crate::App) -> anyhow::Result<(i64, i64, i64)> {
    let admin = app
        .db
        .users()
        .await?
        .into_iter()
        .find(|u| u.active && u.role == holdfast_domain::access::ADMIN);
    let actor = match admin {
        Some(user) => crate::auth::operator_actor(app, &user).await?,
        None => holdfast_domain::Actor::system(),
    };
    let (mut records, mut versions) = (0, 0);
    for entity in holdfast_domain::Entity::ALL {
        let mut after = 0;
        loop {
            let ids = app.db.record_ids_after(entity, after, 1000).await?;
            let Some(last) = ids.last() else { break };
            after = *last;
            for id in ids {
                crate::records::get(app, &actor, entity, id, true)
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!("{entity} {id} cannot be read after the upgrade: {e}")
                    })?;
                versions += crate::records::history(app, &actor, entity, id)
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "the history of {entity} {id} cannot be read after the upgrade: {e}"
                        )
                    })?
                    .len() as i64;
                records += 1;
            }
        }
    }
    let audit_entries = app
        .db
        .verify_audit_chain()
        .await
        .context("the audit log does not verify after the upgrade")?;
    Ok((records, versions, audit_entries))
}

/// How instances are named on the pages: the machine's name.
fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "this machine".into())
}

/// This instance as the instances table records it.
pub fn this_instance(
    id: &str,
    started_at: holdfast_domain::Timestamp,
    now: holdfast_domain::Timestamp,
    serving: bool,
) -> InstanceRow {
    InstanceRow {
        id: id.to_owned(),
        host: host_name(),
        holdfast_version: env!("CARGO_PKG_VERSION").to_owned(),
        schema_wanted: schema::current_version(),
        serving,
        started_at,
        seen_at: now,
    }
}

/// Records `instance` in the database (and forgets instances long gone).
pub async fn report_instance(db: &Db, instance: &InstanceRow) -> anyhow::Result<()> {
    let forget_before = instance.seen_at.plus_seconds(-FORGOTTEN_AFTER_HOURS * 3600);
    db.instance_seen(instance, forget_before).await
}

/// Instances not seen for this long are dropped from the list.
const FORGOTTEN_AFTER_HOURS: i64 = 24;
/// A serving instance says so every minute; one not heard from for this long is shown as gone
/// quiet.
pub const QUIET_AFTER_MINUTES: i64 = 5;

/// The instances using the database, and the newest Holdfast among them that needs an upgrade
/// of it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Instances {
    pub schema: i64,
    pub instances: Vec<InstanceRow>,
    /// An instance (stopped, having refused to start) whose Holdfast needs a newer schema.
    pub upgrade_waiting: Option<InstanceRow>,
}

pub async fn instances(app: &crate::App) -> anyhow::Result<Instances> {
    let now = app.now();
    let instances = app
        .db
        .instances(now.plus_seconds(-FORGOTTEN_AFTER_HOURS * 3600))
        .await?;
    let schema = app.db.schema_version().await?.unwrap_or(0);
    let upgrade_waiting = instances
        .iter()
        .filter(|i| i.schema_wanted > schema)
        .max_by_key(|i| i.schema_wanted)
        .cloned();
    Ok(Instances {
        schema,
        instances,
        upgrade_waiting,
    })
}
