//! Upgrades: every pending migration in one transaction, so a failure at any statement leaves
//! the database exactly as it was; applied migrations' checksums compared at every start;
//! `holdfast upgrade --plan` changes nothing.

use crate::cli::{holdfast, run_ok};
use holdfast_app::schema::{MIGRATIONS, Migration, statements};
use holdfast_app::{App, AppConfig, Db};
use holdfast_test_support::{Backend, TestDb};
use sha2::Digest as _;
use std::sync::Arc;

/// The version the fault-injection upgrades start from: several multi-statement migrations lie
/// between it and today's schema.
const FROM: i64 = 10;

/// Today's history with statement `index` of the upgrade from [`FROM`] (counted across its
/// migrations) replaced by one that fails; `None` once `index` is past the last statement.
fn history_failing_at(index: usize) -> Option<(Vec<Migration>, i64)> {
    let mut seen = 0;
    let mut history = MIGRATIONS.to_vec();
    for migration in history.iter_mut().filter(|m| m.version > FROM) {
        let parts: Vec<&str> = statements(migration.sql).collect();
        if index < seen + parts.len() {
            let mut parts: Vec<String> = parts.iter().map(|s| s.to_string()).collect();
            parts[index - seen] = "SELECT no_such_column FROM no_such_table".into();
            migration.sql = Box::leak((parts.join(";\n") + ";\n").into_boxed_str());
            let version = migration.version;
            return Some((history, version));
        }
        seen += parts.len();
    }
    None
}

/// What must not change: on SQLite the file's bytes; on PostgreSQL every column, index and
/// migration-history row, and the data.
async fn state_of(db: &TestDb) -> Vec<String> {
    state_at(&db.url, db.backend).await
}

async fn state_at(url: &str, backend: Backend) -> Vec<String> {
    match backend {
        Backend::Sqlite => {
            let path = holdfast_app::sqlite_path(url).unwrap();
            let bytes = std::fs::read(path).unwrap();
            let digest = sha2::Sha256::digest(&bytes);
            vec![format!("{digest:x}"), bytes.len().to_string()]
        }
        Backend::Postgres => {
            let store = Db::connect(url).await.unwrap();
            let mut state = Vec::new();
            for sql in [
                "SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable FROM information_schema.columns WHERE table_schema = current_schema() ORDER BY 1",
                "SELECT indexname || ' ' || indexdef FROM pg_indexes WHERE schemaname = current_schema() ORDER BY 1",
                "SELECT version || ' ' || name || ' ' || COALESCE(checksum, '') FROM schema_migrations ORDER BY version",
                "SELECT key || '=' || value FROM meta ORDER BY key",
            ] {
                state.extend(store.query_texts_for_tests(sql).await.unwrap());
            }
            store.close().await;
            state
        }
    }
}

async fn failing_statements_change_nothing(backend: Backend) {
    let Some(db) = TestDb::fresh(backend).await else {
        return;
    };
    let before = at_from(&db.url, backend).await;
    let mut index = 0;
    while let Some((history, version)) = history_failing_at(index) {
        let store = Db::connect(&db.url).await.unwrap();
        let error = store
            .apply_migrations(&history, MIGRATIONS.len() as i64)
            .await
            .expect_err("the broken upgrade fails");
        store.close().await;
        let message = format!("{error:#}");
        assert!(
            message.contains(&format!("migration {version} ")) && message.contains("no_such_table"),
            "statement {index}: {message}"
        );
        assert_eq!(
            state_of(&db).await,
            before,
            "statement {index} (migration {version}) left a trace"
        );
        index += 1;
    }
    assert!(index > 10, "the upgrade has {index} statements");

    // A migration that would change existing data is rolled back too, naming the table.
    for (sql, says) in [
        (
            "UPDATE meta SET value = 'lost' WHERE key = 'customers'",
            "rows of meta changed or went missing",
        ),
        ("DELETE FROM audit_head", "the rows of audit_head differ"),
        (
            "ALTER TABLE meta DROP COLUMN value",
            "column meta.value is gone",
        ),
    ] {
        let mut history = MIGRATIONS.to_vec();
        let last = history.last_mut().unwrap();
        last.sql = Box::leak(format!("{}{sql};\n", last.sql).into_boxed_str());
        let store = Db::connect(&db.url).await.unwrap();
        let error = store
            .apply_migrations(&history, MIGRATIONS.len() as i64)
            .await
            .expect_err("a migration changing data is refused");
        store.close().await;
        let message = format!("{error:#}");
        assert!(
            message.contains("rolled back") && message.contains(says),
            "{sql}: {message}"
        );
        assert_eq!(state_of(&db).await, before, "{sql} left a trace");
    }

    // Serve refuses the old schema and names the command to run; the real upgrade then works.
    let clock = Arc::new(holdfast_app::SystemClock);
    let refused = App::open(&db.url, AppConfig::default(), clock.clone())
        .await
        .err()
        .expect("an old schema is refused");
    assert!(
        format!("{refused:#}").contains(&format!("schema is at version {FROM}"))
            && format!("{refused:#}").contains("Run `holdfast upgrade`"),
        "{refused:#}"
    );
    let store = Db::connect(&db.url).await.unwrap();
    let applied = store.migrate_to(MIGRATIONS.len() as i64).await.unwrap();
    assert_eq!(applied.len(), MIGRATIONS.len() - FROM as usize);
    store.close().await;
    App::open(&db.url, AppConfig::default(), clock)
        .await
        .unwrap()
        .db
        .close()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_statement_anywhere_in_an_upgrade_leaves_sqlite_byte_identical() {
    failing_statements_change_nothing(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_statement_anywhere_in_an_upgrade_leaves_postgres_as_it_was() {
    failing_statements_change_nothing(Backend::Postgres).await;
}

async fn edited_migrations_are_refused(backend: Backend) {
    let Some(db) = TestDb::fresh(backend).await else {
        return;
    };
    let clock = Arc::new(holdfast_app::SystemClock);
    let open = || App::open(&db.url, AppConfig::default(), clock.clone());
    let app = open().await.unwrap();
    // A history from before checksums were kept gets this build's as its baseline.
    app.db
        .execute_raw_for_tests("ALTER TABLE schema_migrations DROP COLUMN checksum")
        .await
        .unwrap();
    app.db.close().await;
    let app = open().await.unwrap();
    let missing = app
        .db
        .query_i64_for_tests("SELECT COUNT(*) FROM schema_migrations WHERE checksum IS NULL")
        .await
        .unwrap();
    assert_eq!(missing, 0);
    // A migration that differs from the one applied here: refused, named.
    app.db
        .execute_raw_for_tests(
            "UPDATE schema_migrations SET checksum = 'a1b2c3d4e5f60718293a4b5c6d7e8f90' WHERE version = 3",
        )
        .await
        .unwrap();
    app.db.close().await;
    let refused = format!("{:#}", open().await.err().expect("refused"));
    assert!(
        refused.contains("migration 3 (")
            && refused.contains("edited after it was released")
            && refused.contains("a1b2c3d4e5f6"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_migration_is_refused_at_start_sqlite() {
    edited_migrations_are_refused(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_migration_is_refused_at_start_postgres() {
    edited_migrations_are_refused(Backend::Postgres).await;
}

/// A database one schema behind, with customers, history, a deletion and an administrator,
/// written by today's write path (whose statements that schema already takes).
async fn one_behind(db: &TestDb) -> i64 {
    let previous = MIGRATIONS.len() as i64 - 1;
    let store = Db::connect(&db.url).await.unwrap();
    store.migrate_to(previous).await.unwrap();
    let app = App::new(
        store,
        AppConfig::default(),
        Arc::new(holdfast_app::SystemClock),
    );
    let boss = holdfast_test_support::boss(&app).await;
    let mut ids = Vec::new();
    for name in ["王芳", "李雷", "Ada"] {
        let change = holdfast_app::records::Change::Create {
            entity: holdfast_domain::Entity::Contact,
            input: serde_json::json!({"name": name}),
        };
        let done = holdfast_app::records::apply_change(&app, &boss, "t", change)
            .await
            .unwrap();
        ids.push(done.record.into_record().id);
    }
    let delete = holdfast_app::records::Change::Delete {
        entity: holdfast_domain::Entity::Contact,
        id: ids[2],
        expected_version: Some(1),
        reason: Some("duplicate".into()),
    };
    holdfast_app::records::apply_change(&app, &boss, "t", delete)
        .await
        .unwrap();
    settle(&app.db, db.backend).await;
    app.db.close().await;
    previous
}

async fn rehearse_then_upgrade(backend: Backend) {
    let Some(db) = TestDb::fresh(backend).await else {
        return;
    };
    let previous = one_behind(&db).await;
    let dir = db.dir.path();
    let target = ["--database-url", db.url.as_str()];
    let before = state_of(&db).await;
    if backend == Backend::Postgres {
        nobody_connected(&db.url).await;
    }
    let (out, _) = run_ok(&[&["upgrade", "--rehearse"], &target[..]].concat(), dir);
    assert!(
        out.contains("Rehearsed on a copy")
            && out.contains("3 records and 4 versions read back as an administrator")
            && out.contains("every user's access (1 users) is the same as before")
            && out.contains("nothing was changed"),
        "{out}"
    );
    assert_eq!(state_of(&db).await, before, "the rehearsal changed nothing");
    if backend == Backend::Postgres {
        let store = Db::connect(&db.url).await.unwrap();
        let left = store
            .query_i64_for_tests(
                "SELECT COUNT(*) FROM pg_database WHERE datname LIKE 'holdfast_rehearsal_%'",
            )
            .await
            .unwrap();
        store.close().await;
        assert_eq!(left, 0, "the copy was dropped");
    } else {
        let leftovers: Vec<_> = std::fs::read_dir(dir.join("holdfast-data"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".rehearsal"))
            .collect();
        assert!(leftovers.is_empty(), "the copy was deleted: {leftovers:?}");
    }
    let mut upgrade = vec!["upgrade"];
    upgrade.extend(target);
    if backend == Backend::Postgres {
        upgrade.push("--yes");
    }
    let (out, _) = run_ok(&upgrade, dir);
    assert!(out.contains("Upgrade complete"), "{out}");
    let store = Db::connect(&db.url).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), Some(previous + 1));
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rehearse_on_a_copy_then_upgrade_sqlite() {
    rehearse_then_upgrade(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rehearse_on_a_copy_then_upgrade_postgres() {
    rehearse_then_upgrade(Backend::Postgres).await;
}

/// A database at [`FROM`] with a row of data, and its state.
async fn at_from(url: &str, backend: Backend) -> Vec<String> {
    let store = Db::connect(url).await.unwrap();
    store.migrate_to(FROM).await.unwrap();
    store
        .execute_raw_for_tests("INSERT INTO meta (key, value) VALUES ('customers', '王芳, Ada')")
        .await
        .unwrap();
    settle(&store, backend).await;
    store.close().await;
    state_at(url, backend).await
}

/// Everything committed is in the SQLite file itself, not waiting in its write-ahead log for
/// the next connection to copy it over (which would change the file's bytes later).
async fn settle(store: &Db, backend: Backend) {
    if backend == Backend::Sqlite {
        store
            .execute_raw_for_tests("PRAGMA wal_checkpoint(TRUNCATE)")
            .await
            .unwrap();
    }
}

/// `holdfast serve` on a database left behind names the command to run.
fn serve_names_the_upgrade(url: &str, dir: &std::path::Path) {
    let refused = holdfast(
        &["serve", "--database-url", url, "--listen", "127.0.0.1:0"],
        dir,
    )
    .output()
    .unwrap();
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && message.contains("Run `holdfast upgrade`"),
        "{message}"
    );
}

/// `holdfast upgrade` killed (as by `kill -9`) right after each statement of the upgrade in
/// turn: the database is as it was every time.
async fn killed_midway_changes_nothing(backend: Backend) {
    let Some(db) = TestDb::fresh(backend).await else {
        return;
    };
    let before = at_from(&db.url, backend).await;
    let statements: usize = MIGRATIONS
        .iter()
        .filter(|m| m.version > FROM)
        .map(|m| statements(m.sql).count())
        .sum();
    for n in 0..statements {
        let killed = holdfast(&["upgrade", "--database-url", &db.url], db.dir.path())
            .env("FAILPOINT_UPGRADE_ABORT_AFTER", n.to_string())
            .output()
            .unwrap();
        assert_eq!(
            killed.status.code(),
            None,
            "killed by a signal after statement {n}: {}",
            String::from_utf8_lossy(&killed.stderr)
        );
        assert_eq!(state_of(&db).await, before, "killed after statement {n}");
    }
    serve_names_the_upgrade(&db.url, db.dir.path());
    run_ok(&["upgrade", "--database-url", &db.url], db.dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_killed_at_any_statement_leaves_sqlite_byte_identical() {
    killed_midway_changes_nothing(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_killed_at_any_statement_leaves_postgres_as_it_was() {
    killed_midway_changes_nothing(Backend::Postgres).await;
}

/// The disk fills up while the migrations run (the backup goes to another disk): the upgrade
/// is rolled back, the file is as it was, and with room again it goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_on_a_full_disk_leaves_sqlite_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mount) = crate::disk::Mount::tmpfs(&dir.path().join("data"), "2m") else {
        return;
    };
    let data = dir.path().join("data");
    let url = format!("sqlite://{}?mode=rwc", data.join("holdfast.db").display());
    let before = at_from(&url, Backend::Sqlite).await;
    let config = dir.path().join("holdfast.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[backup]\ndir = \"{}\"\n",
            data.display(),
            dir.path().join("backups").display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    // Room to open the database (its shared-memory file) but not for the migrations' pages.
    let filler = mount.fill();
    let size = std::fs::metadata(&filler).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&filler)
        .unwrap()
        .set_len(size - 48 * 1024)
        .unwrap();
    let full = holdfast(&["upgrade", "--config", config], dir.path())
        .output()
        .unwrap();
    let message = String::from_utf8_lossy(&full.stderr);
    assert!(
        !full.status.success() && message.contains("rolled back"),
        "{message}"
    );
    assert_eq!(
        state_at(&url, Backend::Sqlite).await,
        before,
        "the full disk left a trace"
    );
    serve_names_the_upgrade(&url, dir.path());
    std::fs::remove_file(filler).unwrap();
    let (out, _) = run_ok(&["upgrade", "--config", config], dir.path());
    assert!(out.contains("Upgrade complete"), "{out}");
}

holdfast_test_support::on_both_backends!(
    a_newer_holdfast_refused_by_the_database_shows_as_an_upgrade_waiting,
    |app| {
        let admin = app.admin().await;
        let cookie = app.session_cookie("admin").await;
        let now = app.app.now();
        let me = holdfast_app::upgrade::this_instance("serving", now, now, true);
        holdfast_app::upgrade::report_instance(&app.app.db, &me)
            .await
            .unwrap();
        let (_, page) = crate::security::page(&app, &cookie, "/admin/backups").await;
        assert!(
            page.contains("Holdfast instances on this database")
                && page.contains("serving since")
                && !page.contains("An upgrade is waiting"),
            "{page}"
        );
        let security = admin.get("/api/v1/security").await.expect(200);
        let item = crate::alerts::check_item(&security, "upgrade");
        assert_eq!(item["code"], "upgrade_none", "{item}");

        // A Holdfast started on a database behind it refuses, and says so in the database.
        let today = MIGRATIONS.len() as i64;
        let history_row = format!("DELETE FROM schema_migrations WHERE version = {today}");
        app.app
            .db
            .execute_raw_for_tests(&history_row)
            .await
            .unwrap();
        let refused = App::open(&app.db.url, app.instance_config(), app.clock.clone())
            .await
            .err()
            .expect("the database is behind");
        assert!(
            format!("{refused:#}").contains("holdfast upgrade"),
            "{refused:#}"
        );
        let latest = &MIGRATIONS[today as usize - 1];
        app.app
            .db
            .execute_raw_for_tests(&format!(
                "INSERT INTO schema_migrations (version, name, applied_at, checksum) VALUES ({today}, 'put back', 0, '{}')",
                latest.checksum()
            ))
            .await
            .unwrap();
        let found = holdfast_app::upgrade::instances(&app.app).await.unwrap();
        let waiting: Vec<_> = found.instances.iter().filter(|i| !i.serving).collect();
        assert_eq!(waiting.len(), 1, "{found:?}");
        assert_eq!(waiting[0].schema_wanted, today);
        // That refused Holdfast stands here for a newer one: it needs the next schema.
        app.app
            .db
            .execute_raw_for_tests(&format!(
                "UPDATE instances SET schema_wanted = {}, holdfast_version = '9.9.9' WHERE serving = 0",
                today + 1
            ))
            .await
            .unwrap();
        let (_, page) = crate::security::page(&app, &cookie, "/admin/backups").await;
        assert!(
            page.contains("An upgrade is waiting")
                && page.contains(&format!(
                    "Holdfast 9.9.9 on {} needs schema {}; this database is at {today}",
                    me.host,
                    today + 1
                ))
                && page.contains("refused to start"),
            "{page}"
        );
        let security = admin.get("/api/v1/security").await.expect(200);
        let item = crate::alerts::check_item(&security, "upgrade");
        assert_eq!(
            (item["code"].as_str(), item["level"].as_str()),
            (Some("upgrade_waiting"), Some("warn")),
            "{item}"
        );
    }
);

/// Makes sure no connection to the PostgreSQL database of `url` is left on the server, as
/// after stopping every instance: this test's own closed pools leave it a moment after they
/// are closed (later on a machine busy with other tests); one still there after 10 seconds is
/// ended, as stopping an instance would.
async fn nobody_connected(url: &str) {
    let name = url.rsplit('/').next().unwrap().to_owned();
    let admin = Db::connect(&holdfast_test_support::pg_admin_url())
        .await
        .unwrap();
    let sql = format!("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = '{name}'");
    for _ in 0..100 {
        if admin.query_i64_for_tests(&sql).await.unwrap() == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    admin
        .query_texts_for_tests(&format!(
            "SELECT CAST(pg_terminate_backend(pid) AS TEXT) FROM pg_stat_activity WHERE datname = '{name}'"
        ))
        .await
        .unwrap();
    admin.close().await;
}
