//! Encryption at rest, with the real binary: a database created encrypted, the key required and
//! a wrong one refused with a clear error, `holdfast db encrypt` of a plain database with data,
//! `db rekey`, both refused while Holdfast runs, and backups — encrypted by default with a key
//! generated at first use — restored on a "new machine" with only the backup key.

use crate::cli::{admin_create_at, holdfast, run_err, run_ok};
use holdfast_app::cipher::{FileKind, file_kind};
use holdfast_app::records::{Change, apply_change};
use holdfast_domain::Entity;
use serde_json::json;
use std::path::Path;

/// Runs `holdfast` with the database key in the environment (as a service manager would).
fn run_keyed(args: &[&str], dir: &Path, key: &str) -> std::process::Output {
    holdfast(args, dir)
        .env("HOLDFAST_DATABASE_KEY", key)
        .output()
        .unwrap()
}

/// Runs `holdfast` with the database key file named in the environment, as `serve` would get it.
fn run_with_key_file(args: &[&str], dir: &Path, key_file: &str) -> std::process::Output {
    holdfast(args, dir)
        .env("HOLDFAST_DATABASE_KEY_FILE", key_file)
        .output()
        .unwrap()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Contacts in the database at `data` (opened with `key` when given).
async fn contacts(data: &Path, key: Option<holdfast_app::DbKey>) -> i64 {
    let url = format!("sqlite://{}?mode=rw", data.join("holdfast.db").display());
    let config = holdfast_app::AppConfig {
        database_key: key,
        ..Default::default()
    };
    let app = holdfast_app::App::open(&url, config, std::sync::Arc::new(holdfast_app::SystemClock))
        .await
        .unwrap();
    let count = app.db.count_rows("contacts").await.unwrap();
    app.db.close().await;
    count
}

#[test]
fn a_database_created_encrypted_needs_its_key_and_refuses_a_wrong_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    let key = holdfast_app::DbKey::generate().unwrap().to_text();
    let mut create = holdfast(
        &[
            "admin",
            "create",
            "--data-dir",
            data_arg,
            "--username",
            "boss",
        ],
        dir.path(),
    );
    create.env("HOLDFAST_DATABASE_KEY", &key);
    let output = crate::cli::with_password(create);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        file_kind(&data.join("holdfast.db")),
        FileKind::Opaque,
        "no SQLite header: encrypted"
    );
    let file = std::fs::read(data.join("holdfast.db")).unwrap();
    assert!(
        !file.windows(4).any(|w| w == b"boss"),
        "the username is not readable in the file"
    );

    // (The doctor still fails here: no backup has been taken yet.)
    let doctor = run_keyed(&["doctor", "--data-dir", data_arg], dir.path(), &key);
    let report = String::from_utf8_lossy(&doctor.stdout);
    assert!(report.contains("✓ integrity: sound"), "{report}");
    assert!(report.contains("encrypted at rest"), "{report}");

    let output = holdfast(&["doctor", "--data-dir", data_arg], dir.path())
        .output()
        .unwrap();
    let without = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success());
    assert!(
        without.contains("is encrypted") && without.contains("HOLDFAST_DATABASE_KEY"),
        "{without}"
    );
    let wrong = holdfast_app::DbKey::generate().unwrap().to_text();
    let output = run_keyed(&["doctor", "--data-dir", data_arg], dir.path(), &wrong);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success());
    assert!(text.contains("does not open"), "{text}");
    let output = run_keyed(&["doctor", "--data-dir", data_arg], dir.path(), "not a key");
    assert!(
        stderr(&output).contains("64 hexadecimal digits"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_encrypt_rekey_and_an_encrypted_backup_restored_on_a_new_machine() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    admin_create_at(&["--data-dir", data_arg], "boss", dir.path());
    {
        let url = format!("sqlite://{}?mode=rw", data.join("holdfast.db").display());
        let app =
            holdfast_test_support::open_with_system_clock(&url, &data.join("audit.key")).await;
        let boss = holdfast_test_support::actor(&app, 1).await;
        for name in ["王芳", "李雷", "Ada"] {
            let change = Change::Create {
                entity: Entity::Contact,
                input: json!({"name": name, "mobile": "13800138000"}),
            };
            apply_change(&app, &boss, "t", change).await.unwrap();
        }
        app.db.close().await;
    }
    assert_eq!(file_kind(&data.join("holdfast.db")), FileKind::Plain);
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let key_file = keys.join("database.key");
    let key_arg = key_file.to_str().unwrap();

    let encrypt = [
        "db",
        "encrypt",
        "--data-dir",
        data_arg,
        "--key-file",
        key_arg,
    ];
    // Refused while Holdfast holds the data folder.
    {
        let _serving = holdfast_app::files::lock_folder(&data).unwrap().unwrap();
        let error = run_err(&encrypt, dir.path());
        assert!(error.contains("stop it first"), "{error}");
        assert_eq!(file_kind(&data.join("holdfast.db")), FileKind::Plain);
    }
    let (out, _) = run_ok(&encrypt, dir.path());
    assert!(out.contains("database_key_file"), "{out}");
    assert_eq!(file_kind(&data.join("holdfast.db")), FileKind::Opaque);
    let leftovers: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".old") || n.contains("encrypting") || n.ends_with("-wal"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "the plain file is gone: {leftovers:?}"
    );
    assert!(holdfast_app::files::is_private(&key_file).unwrap());
    let key = holdfast_app::DbKey::read_file(&key_file).unwrap();
    assert_eq!(
        contacts(&data, Some(key.clone())).await,
        3,
        "every contact came along"
    );
    assert!(run_err(&encrypt, dir.path()).contains("already encrypted"));

    // A backup of the encrypted database, encrypted by default with a key made at first use.
    let backups = dir.path().join("archives");
    let output = run_with_key_file(
        &[
            "backup",
            "create",
            "--data-dir",
            data_arg,
            "--output",
            backups.to_str().unwrap(),
        ],
        dir.path(),
        key_arg,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let archive = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".hfb.age"))
        .expect("the backup is encrypted without being asked");
    let backup_key = data.join("backup.key");
    assert!(holdfast_app::files::is_private(&backup_key).unwrap());

    // The new machine has the archive and the backup key, nothing else.
    let new_machine = tempfile::tempdir().unwrap();
    let fresh = new_machine.path().join("data");
    let archive_arg = archive.to_str().unwrap();
    let error = run_err(
        &[
            "backup",
            "restore",
            archive_arg,
            "--data-dir",
            fresh.to_str().unwrap(),
            "--yes",
        ],
        new_machine.path(),
    );
    assert!(error.contains("--key-file"), "{error}");
    run_ok(
        &[
            "backup",
            "restore",
            archive_arg,
            "--data-dir",
            fresh.to_str().unwrap(),
            "--yes",
            "--key-file",
            backup_key.to_str().unwrap(),
        ],
        new_machine.path(),
    );
    assert_eq!(
        contacts(&fresh, None).await,
        3,
        "restored on the new machine"
    );
    // The audit log came sealed, with its key: the new machine checks it and goes on sealing.
    let key_id = |dir: &std::path::Path| {
        holdfast_app::audit_key::read(&dir.join("audit.key"))
            .unwrap()
            .expect("an audit key")
            .id()
    };
    assert_eq!(key_id(&fresh), key_id(&data));
    assert!(holdfast_app::files::is_private(&fresh.join("audit.key")).unwrap());
    let fresh_arg = fresh.to_str().unwrap();
    admin_create_at(&["--data-dir", fresh_arg], "second", new_machine.path());
    let (out, _) = run_ok(
        &["audit", "verify", "--data-dir", fresh_arg],
        new_machine.path(),
    );
    assert!(
        out.contains("intact")
            && out.contains(&format!(
                "sealed with audit key {} from entry 1 on",
                key_id(&data)
            )),
        "{out}"
    );

    // Rekey: the new key opens the database, the old one no longer does.
    let new_key_file = keys.join("database-2.key");
    let output = run_with_key_file(
        &[
            "db",
            "rekey",
            "--data-dir",
            data_arg,
            "--new-key-file",
            new_key_file.to_str().unwrap(),
        ],
        dir.path(),
        key_arg,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let new_key = holdfast_app::DbKey::read_file(&new_key_file).unwrap();
    assert_eq!(contacts(&data, Some(new_key.clone())).await, 3);
    // The copy `holdfast upgrade` takes first is encrypted under the same key.
    let url = format!("sqlite://{}?mode=rw", data.join("holdfast.db").display());
    let db = holdfast_app::Db::connect_with_key(&url, Some(new_key))
        .await
        .unwrap();
    let copy = dir.path().join("copy.db");
    db.sqlite_copy_to(&copy).await.unwrap();
    db.close().await;
    assert_eq!(file_kind(&copy), FileKind::Opaque, "the copy is not plain");
    let url = format!("sqlite://{}?mode=rw", data.join("holdfast.db").display());
    let old = holdfast_app::Db::connect_with_key(&url, Some(key)).await;
    assert!(format!("{:#}", old.unwrap_err()).contains("does not open"));
}
