//! The real `holdfast` binary: serve, admin create, upgrade, config example, and a kill -9 test.

use holdfast_test_support::{Backend, Client, TestDb};
use serde_json::{Value, json};
use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_holdfast");

pub(crate) fn holdfast(args: &[&str], dir: &std::path::Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .current_dir(dir)
        .env_remove("HOLDFAST_CONFIG")
        .env("HOLDFAST_LOG__LEVEL", "warn");
    command
}

pub(crate) fn admin_create(db: &TestDb, username: &str) {
    admin_create_at(&["--database-url", &db.url], username, db.dir.path());
}

/// `holdfast admin create` with the password on standard input; `target` names the database
/// (`--database-url URL` or `--data-dir DIR`).
pub(crate) fn admin_create_at(target: &[&str], username: &str, dir: &std::path::Path) {
    let args = [&["admin", "create"], target, &["--username", username]].concat();
    let output = with_password(holdfast(&args, dir));
    assert!(
        output.status.success(),
        "admin create failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs `command` with the test password on its standard input.
pub(crate) fn with_password(mut command: Command) -> std::process::Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a long enough password\n")
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Starts `holdfast serve` on a free port and returns it with its base URL.
fn start_server(db: &TestDb) -> (Child, String) {
    let mut child = holdfast(
        &[
            "serve",
            "--database-url",
            &db.url,
            "--listen",
            "127.0.0.1:0",
        ],
        db.dir.path(),
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let address = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|line| {
            line.split("listening on ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_owned)
        })
        .expect("the server printed its address");
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, address)
}

async fn login(http: &reqwest::Client, base: &str) -> String {
    for _ in 0..100 {
        if let Ok(response) = http
            .post(format!("{base}/api/v1/auth/login"))
            .json(&json!({"username": "boss", "password": "a long enough password"}))
            .send()
            .await
        {
            let cookie = response
                .headers()
                .get("set-cookie")
                .unwrap()
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_owned();
            return cookie;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server at {base} never answered");
}

async fn kill_test(backend: Backend) {
    let Some(db) = TestDb::fresh(backend).await else {
        return;
    };
    admin_create(&db, "boss");
    holdfast_test_support::without_second_factor_rule(&db.url, &db.audit_key_file()).await;
    let http = reqwest::Client::new();
    let mut acknowledged: Vec<i64> = Vec::new();
    for _ in 0..4 {
        let (mut server, base) = start_server(&db);
        let cookie = login(&http, &base).await;
        acknowledged.extend(create_until_killed(&http, &base, &cookie, &mut server).await);
    }
    assert!(
        acknowledged.len() > 20,
        "enough creates were acknowledged to mean something: {}",
        acknowledged.len()
    );
    let (mut server, base) = start_server(&db);
    let cookie = login(&http, &base).await;
    let client = Client {
        base_url: base,
        http,
        auth: Some(format!("cookie:{cookie}")),
        user_id: 0,
    };
    for id in &acknowledged {
        let record = client
            .get(&format!("/api/v1/contacts/{id}"))
            .await
            .expect(200);
        assert_eq!(
            record["version"], 1,
            "acknowledged contact {id} survived kill -9: {record}"
        );
        let audit = client
            .get(&format!("/api/v1/audit?entity=contact&record_id={id}"))
            .await
            .expect(200);
        assert_eq!(
            audit["items"][0]["action"], "contact.create",
            "contact {id} has its audit entry"
        );
        let versions = client
            .get(&format!("/api/v1/contacts/{id}/versions"))
            .await
            .expect(200);
        assert_eq!(
            versions["items"].as_array().unwrap().len(),
            1,
            "contact {id} has its version"
        );
    }
    server.kill().unwrap();
    let _ = server.wait();
}

/// Creates contacts from 8 concurrent clients and kills the server with SIGKILL mid-stream.
/// Returns the ids of creates that were answered 201.
async fn create_until_killed(
    http: &reqwest::Client,
    base: &str,
    cookie: &str,
    server: &mut Child,
) -> Vec<i64> {
    let workers: Vec<_> = (0..8)
        .map(|worker| {
            let http = http.clone();
            let base = base.to_owned();
            let cookie = cookie.to_owned();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for n in 0..10_000 {
                    let sent = http
                        .post(format!("{base}/api/v1/contacts"))
                        .header("Cookie", &cookie)
                        .json(&json!({"name": format!("kill test {worker}-{n}"), "mobile": "13800138000"}))
                        .send()
                        .await;
                    let Ok(response) = sent else { break };
                    if response.status() != 201 {
                        break;
                    }
                    let Ok(body) = response.json::<Value>().await else { break };
                    ids.push(body["id"].as_i64().unwrap());
                }
                ids
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    server.kill().unwrap(); // SIGKILL: no graceful shutdown, no flush.
    let _ = server.wait();
    let mut ids = Vec::new();
    for worker in workers {
        ids.extend(worker.await.unwrap());
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_creates_survive_kill_9_on_sqlite() {
    kill_test(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_creates_survive_kill_9_on_postgres() {
    kill_test(Backend::Postgres).await;
}

#[tokio::test]
async fn serve_refuses_an_old_schema_and_upgrade_backs_up_then_migrates() {
    let db = TestDb::fresh(Backend::Sqlite).await.unwrap();
    let store = holdfast_app::Db::connect(&db.url).await.unwrap();
    store.migrate_to(2).await.unwrap();
    store
        .execute_raw_for_tests(
            "INSERT INTO users (username, display_name, password_hash, role, active, created_at, updated_at) \
             VALUES ('boss', 'Boss', 'not a hash', 'admin', 1, 0, 0)",
        )
        .await
        .unwrap();
    store.close().await;
    let data_dir = db.dir.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    std::fs::copy(
        db.dir.path().join("holdfast.db"),
        data_dir.join("holdfast.db"),
    )
    .unwrap();
    let data = data_dir.to_str().unwrap();

    let refused = holdfast(
        &["serve", "--data-dir", data, "--listen", "127.0.0.1:0"],
        db.dir.path(),
    )
    .output()
    .unwrap();
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("holdfast upgrade") && message.contains("version 2"),
        "{message}"
    );

    let file = std::fs::read(data_dir.join("holdfast.db")).unwrap();
    let (plan, _) = run_ok(&["upgrade", "--data-dir", data, "--plan"], db.dir.path());
    for says in [
        "is at schema version 2; this Holdfast needs version",
        "3: search index",
        "- new table search_terms",
        "- index on audit_log (0 rows to index)",
        "free for the copy taken first",
        "runs in ONE transaction",
        "Rollback: automatic on failure",
        "(--plan: nothing was changed)",
    ] {
        assert!(plan.contains(says), "{says}: {plan}");
    }
    assert!(!data_dir.join("backups").exists(), "--plan changes nothing");
    assert_eq!(std::fs::read(data_dir.join("holdfast.db")).unwrap(), file);

    let upgraded = holdfast(&["upgrade", "--data-dir", data], db.dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&upgraded.stdout);
    assert!(
        upgraded.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&upgraded.stderr)
    );
    assert!(
        stdout.contains("Backed up the database to")
            && stdout.contains("verified it by restoring it into a scratch database")
            && stdout.contains(&format!(
                "schema version {}",
                holdfast_app::records_schema_version()
            )),
        "{stdout}"
    );
    let backups: Vec<_> = std::fs::read_dir(data_dir.join("backups"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.to_string_lossy().ends_with(".sha256"))
        .collect();
    assert_eq!(backups.len(), 1, "one encrypted archive: {backups:?}");
    let archive = backups[0].to_str().unwrap();
    assert!(archive.ends_with(".hfb.age"), "{archive}");
    let backup_key = data_dir.join("backup.key");
    let (out, _) = run_ok(
        &[
            "backup",
            "verify",
            archive,
            "--key-file",
            backup_key.to_str().unwrap(),
        ],
        db.dir.path(),
    );
    assert!(
        out.contains("(schema version 2)"),
        "the database as it was: {out}"
    );

    // Rolling back restores the data as it was before the upgrade, after a safety backup.
    let (out, _) = run_ok(
        &["upgrade", "--rollback", "--yes", "--data-dir", data],
        db.dir.path(),
    );
    assert!(
        out.contains("from schema 2 to")
            && out.contains("Rolled back")
            && out.contains("The data as it was before the rollback is in"),
        "{out}"
    );

    let again = holdfast(&["upgrade", "--data-dir", data], db.dir.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).contains("Nothing to do"));
}

#[tokio::test]
async fn serve_refuses_a_newer_schema() {
    let db = TestDb::fresh(Backend::Sqlite).await.unwrap();
    let store = holdfast_app::Db::connect(&db.url).await.unwrap();
    store
        .migrate_to(holdfast_app::records_schema_version())
        .await
        .unwrap();
    store.execute_raw_for_tests("INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'from the future', 0)").await.unwrap();
    store.close().await;
    let refused = holdfast(
        &[
            "serve",
            "--database-url",
            &db.url,
            "--listen",
            "127.0.0.1:0",
        ],
        db.dir.path(),
    )
    .output()
    .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("newer than this Holdfast"));
}

#[test]
fn config_example_prints_the_commented_defaults_and_bad_config_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let example = holdfast(&["config", "example"], dir.path())
        .output()
        .unwrap();
    assert!(example.status.success());
    let text = String::from_utf8(example.stdout).unwrap();
    assert!(text.contains("retention_days = 90"));
    std::fs::write(
        dir.path().join("holdfast.toml"),
        "listen = \"127.0.0.1:0\"\ncolour = \"blue\"\n",
    )
    .unwrap();
    let refused = holdfast(&["serve"], dir.path()).output().unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("colour"));
}

#[tokio::test]
async fn the_openapi_document_matches_the_committed_copy_and_every_route() {
    let document = holdfast_web::openapi::document(holdfast_web::routes().docs());
    let committed_path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    let rendered = serde_json::to_string_pretty(&document).unwrap() + "\n";
    if std::env::var("UPDATE_OPENAPI").is_ok() {
        std::fs::write(&committed_path, &rendered).unwrap();
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    assert!(
        committed == rendered,
        "docs/openapi.json is out of date: run UPDATE_OPENAPI=1 cargo test openapi and commit it"
    );
    let paths = document["paths"].as_object().unwrap();
    for route in holdfast_web::routes().docs() {
        let path = route.path.replace("{collection}", "contacts");
        assert!(paths.contains_key(&path), "{path} is documented");
        for op in &route.operations {
            assert!(
                paths[&path].get(op.method.to_lowercase()).is_some(),
                "{} {path} is documented",
                op.method
            );
        }
    }
    // The server serves the same document.
    let app = holdfast_test_support::spawn_app(Backend::Sqlite)
        .await
        .unwrap();
    let served = app
        .admin()
        .await
        .get("/api/v1/openapi.json")
        .await
        .expect(200);
    assert_eq!(served, document);
}

#[tokio::test]
async fn both_backends_build_the_same_tables_columns_and_indexes() {
    let Some(pg) = TestDb::fresh(Backend::Postgres).await else {
        return;
    };
    let sqlite = TestDb::fresh(Backend::Sqlite).await.unwrap();
    let mut shapes = Vec::new();
    for db in [&sqlite, &pg] {
        let store = holdfast_app::Db::connect(&db.url).await.unwrap();
        store
            .migrate_to(holdfast_app::records_schema_version())
            .await
            .unwrap();
        let objects = store.schema_objects().await.unwrap();
        let mut columns = Vec::new();
        for object in objects.iter().filter_map(|o| o.strip_prefix("table ")) {
            columns.push((
                object.to_owned(),
                store.table_columns(object).await.unwrap(),
            ));
        }
        shapes.push((objects, columns));
        store.close().await;
    }
    assert_eq!(shapes[0].0, shapes[1].0, "tables and indexes");
    assert_eq!(shapes[0].1, shapes[1].1, "columns and their types");
    // Every entity field has its column.
    for entity in holdfast_domain::Entity::ALL {
        let (_, columns) = shapes[0]
            .1
            .iter()
            .find(|(table, _)| table == entity.plural())
            .unwrap();
        for def in entity.fields() {
            let column = columns
                .iter()
                .find(|(name, _)| name == def.name)
                .unwrap_or_else(|| panic!("{entity}.{} has a column", def.name));
            let wanted = if def.kind.is_integer() {
                "integer"
            } else {
                "text"
            };
            assert_eq!(column.1, wanted, "{entity}.{}", def.name);
        }
    }
}

pub(crate) fn run_ok(args: &[&str], dir: &std::path::Path) -> (String, String) {
    let output = holdfast(args, dir).stdin(Stdio::null()).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{args:?}: {stdout}{stderr}");
    (stdout, stderr)
}

pub(crate) fn run_err(args: &[&str], dir: &std::path::Path) -> String {
    let output = holdfast(args, dir).stdin(Stdio::null()).output().unwrap();
    assert!(!output.status.success(), "{args:?} should fail");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn backup_create_verify_and_restore_from_the_command_line() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let db = runtime.block_on(TestDb::fresh(Backend::Sqlite)).unwrap();
    admin_create(&db, "boss");
    let dir = db.dir.path();
    let key = dir.join("backup.key");
    let key_arg = key.to_str().unwrap();
    let (out, _) = run_ok(&["backup", "keygen", "--output", key_arg], dir);
    assert!(out.contains("public key age1"), "{out}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the key is readable by its owner only");
    }
    assert!(run_err(&["backup", "keygen", "--output", key_arg], dir).contains("must not exist"));

    let out_dir = dir.join("archives");
    let (out, _) = run_ok(
        &[
            "backup",
            "create",
            "--database-url",
            &db.url,
            "--output",
            out_dir.to_str().unwrap(),
            "--key-file",
            key_arg,
        ],
        dir,
    );
    assert!(out.contains("Backed up"), "{out}");
    let archive = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".hfb.age"))
        .expect("an encrypted archive");
    let archive_arg = archive.to_str().unwrap();

    let (out, _) = run_ok(
        &["backup", "verify", archive_arg, "--key-file", key_arg],
        dir,
    );
    assert!(out.starts_with("OK:"), "{out}");
    assert!(out.contains("content hashes match"), "{out}");
    let message = run_err(&["backup", "verify", archive_arg], dir);
    assert!(message.contains("this backup is encrypted"), "{message}");

    // Into a new data folder; then over it, which needs --yes and takes a safety backup.
    let restored = dir.join("restored");
    let restored_arg = restored.to_str().unwrap();
    let (out, _) = run_ok(
        &[
            "backup",
            "restore",
            archive_arg,
            "--data-dir",
            restored_arg,
            "--key-file",
            key_arg,
        ],
        dir,
    );
    assert!(out.contains("Restored"), "{out}");
    assert!(!out.contains("Safety backup"), "{out}");
    let message = run_err(
        &[
            "backup",
            "restore",
            archive_arg,
            "--data-dir",
            restored_arg,
            "--key-file",
            key_arg,
        ],
        dir,
    );
    assert!(message.contains("--yes"), "{message}");
    let (out, _) = run_ok(
        &[
            "backup",
            "restore",
            archive_arg,
            "--data-dir",
            restored_arg,
            "--key-file",
            key_arg,
            "--yes",
        ],
        dir,
    );
    assert!(
        out.contains("Safety backup of the data before the restore"),
        "{out}"
    );

    // Without a key the archive is written in the clear, with a loud warning.
    let (_, err) = run_ok(
        &[
            "backup",
            "create",
            "--database-url",
            &db.url,
            "--output",
            out_dir.to_str().unwrap(),
        ],
        dir,
    );
    assert!(
        err.contains("Generated the backup key"),
        "encrypted without being asked: {err}"
    );
    let message = run_err(
        &[
            "backup",
            "restore-records",
            archive_arg,
            "--database-url",
            &db.url,
            "--key-file",
            key_arg,
        ],
        dir,
    );
    assert!(message.contains("choose records one way"), "{message}");
    let (out, _) = run_ok(
        &[
            "backup",
            "restore-records",
            archive_arg,
            "--database-url",
            &db.url,
            "--key-file",
            key_arg,
            "--deleted-since",
            "2020-01-01T00:00:00Z",
            "--dry-run",
        ],
        dir,
    );
    assert!(out.contains("0 records would be restored"), "{out}");
}

#[test]
fn access_explain_and_summary_from_the_command_line() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let db = runtime.block_on(TestDb::fresh(Backend::Sqlite)).unwrap();
    admin_create(&db, "boss");
    // A rep and a contact of the administrator's, written through the use cases.
    let contact = runtime.block_on(async {
        let app =
            holdfast_test_support::open_with_system_clock(&db.url, &db.audit_key_file()).await;
        // The administrator has not enrolled a second factor, which a fresh install requires
        // of administrators; this test is about explaining access, so it lifts that rule.
        holdfast_app::two_factor::set_roles_as_system(&app, &[])
            .await
            .unwrap();
        let system = holdfast_domain::Actor::system();
        holdfast_app::users::create_user_unchecked(
            &app,
            &system,
            "t",
            "xiaoli",
            "小李",
            "a long enough password",
            "rep",
        )
        .await
        .unwrap();
        let boss = holdfast_test_support::actor(&app, 1).await;
        let change = holdfast_app::records::Change::Create {
            entity: holdfast_domain::Entity::Contact,
            input: json!({"name": "Boss's customer"}),
        };
        let id = holdfast_app::records::apply_change(&app, &boss, "t", change)
            .await
            .unwrap()
            .record
            .id;
        app.db.close().await;
        id
    });
    let dir = db.dir.path();
    let record = format!("contact:{contact}");
    let (out, _) = run_ok(
        &[
            "access",
            "explain",
            "--database-url",
            &db.url,
            "--user",
            "xiaoli",
            "--record",
            &record,
        ],
        dir,
    );
    assert!(out.contains("小李 (xiaoli): REFUSED"), "{out}");
    assert!(
        out.contains("✗ scope") && out.contains("outside your reach"),
        "{out}"
    );
    assert!(out.contains("who can change it: boss"), "{out}");
    let (out, _) = run_ok(
        &[
            "access",
            "explain",
            "--database-url",
            &db.url,
            "--user",
            "boss",
            "--record",
            &record,
            "--permission",
            "contacts.edit",
        ],
        dir,
    );
    assert!(out.contains("ALLOWED"), "{out}");
    let (out, _) = run_ok(
        &[
            "access",
            "summary",
            "--database-url",
            &db.url,
            "--user",
            "xiaoli",
        ],
        dir,
    );
    assert!(
        out.contains("role Sales rep, scope own") && out.contains("contacts.delete"),
        "{out}"
    );
    assert!(!out.contains("administration.edit"), "{out}");
    let refused = run_err(
        &[
            "access",
            "explain",
            "--database-url",
            &db.url,
            "--user",
            "nobody",
            "--record",
            &record,
        ],
        dir,
    );
    assert!(
        refused.contains("no user 'nobody'") && refused.contains("xiaoli"),
        "{refused}"
    );
    let refused = run_err(
        &[
            "access",
            "explain",
            "--database-url",
            &db.url,
            "--user",
            "xiaoli",
            "--record",
            "ship:1",
        ],
        dir,
    );
    assert!(refused.contains("KIND:ID"), "{refused}");
}
