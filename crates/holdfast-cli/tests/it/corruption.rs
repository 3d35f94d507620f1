//! A damaged database is found before it spreads: bytes flipped in a copy of a real SQLite file
//! (a table page, an index page, the header) are detected at start, the instance turns
//! read-only and red with the cause and the way back, a backup of it is refused without
//! touching the good ones, and the last good backup restores.

use holdfast_app::backup::{self, Progress, schedule};
use holdfast_app::records::{Change, apply_changes};
use holdfast_domain::{Actor, Entity};
use holdfast_test_support::{
    Backend, Client, backup_config, serve_in_background, spawn_app_with_backups,
};
use serde_json::json;
use std::path::Path;

/// The home page of the administrator `admin`, signed in with a password, in `language`.
async fn home_page(base_url: &str, language: &str) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = http
        .post(format!("{base_url}/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        login.status(),
        200,
        "signing in works on a read-only database"
    );
    let cookie = login.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    http.get(format!("{base_url}/"))
        .header("Cookie", cookie)
        .header("Accept-Language", language)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// What `holdfast doctor` prints about a database.
/// `holdfast doctor` run in `dir`, where it finds the audit key (see `TestDb::audit_key_file`).
fn doctor(url: &str, dir: &Path) -> String {
    let output = crate::cli::holdfast(&["doctor", "--database-url", url], dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

/// A copy of `source` with 64 bytes flipped from `offset`, in a folder of its own.
fn damaged_copy(source: &Path, offset: u64, dir: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let target = dir.join("holdfast.db");
    let mut bytes = std::fs::read(source).unwrap();
    for byte in &mut bytes[offset as usize..offset as usize + 64] {
        *byte ^= 0xA5;
    }
    std::fs::write(&target, bytes).unwrap();
    target
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_sqlite_file_is_found_refused_for_backup_and_restored_from_the_last_good_one() {
    let app = spawn_app_with_backups(Backend::Sqlite).await.unwrap();
    let admin = app.admin().await;
    let boss = holdfast_test_support::actor(&app.app, admin.user_id).await;
    // Enough customers for tables and indexes several pages deep.
    for batch in 0..3 {
        let changes = (0..400)
            .map(|n| Change::Create {
                entity: Entity::Contact,
                input: json!({"name": format!("客户{batch}-{n} 张伟明"), "phone": format!("138{batch}{n:07}")}),
            })
            .collect();
        apply_changes(&app.app, &boss, "seed", changes)
            .await
            .unwrap();
    }
    let good = schedule::run(&app.app, "manual").await.unwrap();
    assert!(good.drill_error.is_none());
    let good_file = good.file.clone().unwrap();
    // A settled file: everything in the main database file, nothing in the write-ahead log.
    app.app
        .db
        .execute_raw_for_tests("PRAGMA wal_checkpoint(TRUNCATE)")
        .await
        .unwrap();
    let source = app.db.dir.path().join("holdfast.db");
    // Page size and the root pages of the contacts table and of a search index.
    let get = |sql: &'static str| {
        let db = app.app.db.clone();
        async move { db.query_i64_for_tests(sql).await.unwrap() as u64 }
    };
    let page_size = get("PRAGMA page_size").await;
    let table_root = get("SELECT rootpage FROM sqlite_master WHERE name = 'contacts'").await;
    let index_root = get(
        "SELECT rootpage FROM sqlite_master WHERE type = 'index' AND tbl_name = 'search_terms' ORDER BY name LIMIT 1",
    )
    .await;

    for (what, page) in [("a table page", table_root), ("an index page", index_root)] {
        let dir = app.db.dir.path().join(format!("damaged-{page}"));
        // The page's header and cell pointers: the b-tree cannot be walked past them.
        let file = damaged_copy(&source, (page - 1) * page_size, &dir);
        let url = format!("sqlite://{}", file.display());
        let damaged = holdfast_app::App::open(&url, app.instance_config(), app.clock.clone())
            .await
            .unwrap_or_else(|e| panic!("{what}: opens read-only rather than refusing: {e:#}"))
            .with_backups(backup_config(&dir));
        let doctor = doctor(&url, app.db.dir.path());
        assert!(doctor.contains("✗ integrity: DAMAGED"), "{what}: {doctor}");
        assert!(doctor.contains("holdfast backup restore"), "{doctor}");
        let fault = damaged.db.health().corrupt();
        assert!(fault.is_some(), "{what}: the start check finds it");
        assert_eq!(fault.unwrap().found_by, "start_check");

        let (base_url, _stop) = serve_in_background(damaged.clone()).await;
        let client = Client {
            base_url,
            ..admin.clone()
        };
        // Red, with the cause and the way back.
        let ready = client.get("/readyz").await;
        assert_eq!(ready.status, 503, "{what}: {}", ready.body);
        let health = &ready.body["database_health"];
        assert_eq!(health["state"], "read_only");
        assert_eq!(health["recovery"]["backup"], good_file.as_str(), "{what}");
        assert!(
            health["recovery"]["command"]
                .as_str()
                .unwrap()
                .contains("holdfast backup restore")
        );
        // Writes stop with a clear answer and change nothing; reads never answer 500.
        let refused = client
            .post("/api/v1/contacts", json!({"name": "新客户"}))
            .await;
        assert_eq!(refused.status, 503, "{what}: {}", refused.body);
        assert_eq!(refused.error_code(), "database_corrupt");
        assert!(
            refused.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("Nothing was changed")
        );
        for path in [
            "/api/v1/contacts?q=张伟明",
            "/api/v1/contacts?q=138",
            "/api/v1/contacts",
        ] {
            let read = client.get(path).await;
            assert!(
                read.status == 200 || read.error_code() == "database_corrupt",
                "{what} {path}: {} {}",
                read.status,
                read.body
            );
        }
        // Signing in still works (to see what is wrong); the home page says so in both languages,
        // with the way back for administrators.
        let english = home_page(&client.base_url, "en").await;
        assert!(
            english.contains("The database is damaged: Holdfast is read-only"),
            "{english}"
        );
        assert!(english.contains("holdfast backup restore"), "{english}");
        assert!(english.contains(&good_file), "{english}");
        let chinese = home_page(&client.base_url, "zh-CN").await;
        assert!(chinese.contains("数据库已损坏"), "{chinese}");

        // No backup of the damaged file; the good ones stay; the run is recorded as failed.
        let backups_before = std::fs::read_dir(dir.join("backups"))
            .map(|d| d.count())
            .unwrap_or(0);
        let refused = schedule::run(&damaged, "manual").await.unwrap_err();
        assert!(
            format!("{refused:#}").contains("refusing to back up a damaged database"),
            "{refused:#}"
        );
        let after = std::fs::read_dir(dir.join("backups"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(after, backups_before, "{what}: nothing written");
        assert!(std::path::Path::new(&good_file).exists());
        let status = schedule::status(&damaged).await.unwrap();
        assert!(
            status.problems.contains(&"backup_failed"),
            "{what}: {:?}",
            status.problems
        );
        let refused = backup::create(
            &damaged.db,
            &dir.join("cli-backups"),
            None,
            app.app.now(),
            &Progress::default(),
        )
        .await
        .unwrap_err();
        assert!(format!("{refused:#}").contains("damaged"), "{refused:#}");
        damaged.db.close().await;
    }

    let healthy = doctor(&format!("sqlite://{}", source.display()), app.db.dir.path());
    assert!(
        healthy.contains("✓ integrity: sound (full check"),
        "{healthy}"
    );
    assert!(healthy.contains("✓ schema: current"), "{healthy}");
    assert!(healthy.contains("hash chain is unbroken"), "{healthy}");

    // Damage the start check did not see (here: no start check at all) is found by the first
    // request that meets it: a search through the damaged search index answers 503, not 500,
    // and the instance turns read-only.
    let terms_root = get("SELECT rootpage FROM sqlite_master WHERE name = 'search_terms'").await;
    let dir = app.db.dir.path().join("damaged-while-serving");
    let file = damaged_copy(&source, (terms_root - 1) * page_size, &dir);
    let db = holdfast_app::Db::connect(&format!("sqlite://{}", file.display()))
        .await
        .unwrap();
    let unchecked =
        holdfast_app::App::new(db, holdfast_app::AppConfig::default(), app.clock.clone());
    assert!(unchecked.db.health().corrupt().is_none());
    let (base_url, _stop) = serve_in_background(unchecked.clone()).await;
    let client = Client {
        base_url,
        ..admin.clone()
    };
    let search = client.get("/api/v1/contacts?q=张伟明").await;
    assert_eq!(search.status, 503, "{}", search.body);
    assert_eq!(search.error_code(), "database_corrupt");
    assert_eq!(unchecked.db.health().corruption_errors(), 1);
    let ready = client.get("/readyz").await;
    assert_eq!(ready.status, 503);
    assert_eq!(
        ready.body["database_health"]["faults"][0]["found_by"],
        "serving"
    );
    let refused = client
        .post("/api/v1/contacts", json!({"name": "新客户"}))
        .await;
    assert_eq!(refused.error_code(), "database_corrupt");
    assert_eq!(
        unchecked.db.health().corruption_errors(),
        1,
        "a refused write is not another engine error"
    );
    unchecked.db.close().await;

    // The header: the file is not recognisable as a database; the error names it and the way
    // back instead of waiting for a pool to time out.
    let dir = app.db.dir.path().join("damaged-header");
    let file = damaged_copy(&source, 0, &dir);
    let error = holdfast_app::App::open(
        &format!("sqlite://{}", file.display()),
        holdfast_app::AppConfig::default(),
        app.clock.clone(),
    )
    .await
    .err()
    .expect("a damaged header is refused");
    let message = format!("{error:#}");
    assert!(message.contains(&file.display().to_string()), "{message}");
    assert!(
        message.contains("is damaged") && message.contains("holdfast backup restore"),
        "{message}"
    );

    // The last good backup restores into a new folder, whole and sound.
    let restored_dir = app.db.dir.path().join("restored");
    std::fs::create_dir_all(&restored_dir).unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        restored_dir.join("holdfast.db").display()
    );
    let target = holdfast_app::Db::connect(&url).await.unwrap();
    let key = app.app.backups.as_ref().unwrap().key.clone();
    let request = backup::Restore {
        path: Path::new(&good_file),
        key: key.as_ref(),
        safety_dir: &restored_dir,
        by: &Actor::system(),
        op_id: "test",
        now: app.app.now(),
        audit_key_file: Some(&restored_dir.join("audit.key")),
    };
    backup::restore(&target, &request, &Progress::default())
        .await
        .unwrap();
    target.close().await;
    let restored_config = holdfast_app::AppConfig {
        audit_key_file: Some(restored_dir.join("audit.key")),
        ..Default::default()
    };
    let restored = holdfast_app::App::open(&url, restored_config, app.clock.clone())
        .await
        .unwrap();
    assert!(restored.db.health().corrupt().is_none());
    assert_eq!(restored.db.count_rows("contacts").await.unwrap(), 1200);
    restored.db.close().await;
}

/// PostgreSQL's equivalent: amcheck over every index, where the extension can be had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_indexes_are_checked_with_amcheck() {
    let Some(app) = holdfast_test_support::spawn_app(Backend::Postgres).await else {
        return;
    };
    let admin = app.admin().await;
    admin.create("contacts", json!({"name": "张伟"})).await;
    let problem = app
        .app
        .db
        .check_integrity(holdfast_app::health::Thoroughness::Full, "doctor")
        .await
        .unwrap();
    assert_eq!(problem, None);
    assert!(app.app.db.health().corrupt().is_none());
}
