//! `holdfast doctor` with the real binary: the scored checklist on a fresh install and on a
//! hardened one (encrypted database, HTTPS, verified and drilled backups copied to a second
//! folder with the key confirmed as stored away, the administrator on two-step sign-in, alerts
//! set up), compared with committed snapshots — `tests/it/snapshots/doctor_*.txt`, rewritten
//! with `UPDATE_SNAPSHOTS=1` — and the exit codes scripts rely on.

use crate::cli::{admin_create_at, holdfast};
use serde_json::Value;
use std::path::Path;

/// `holdfast doctor --json`: the report and the exit code.
fn doctor_json(target: &[&str], dir: &Path) -> (Value, i32) {
    let args = [&["doctor", "--json"], target].concat();
    let output = holdfast(&args, dir).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("doctor --json printed no JSON ({e}): {text}"));
    (report, output.status.code().unwrap_or(-1))
}

/// What the snapshot holds: the score, then each item's level, area and outcome (the details
/// — paths, fingerprints, timings — differ from run to run).
fn snapshot_of(report: &Value) -> String {
    let mut lines = vec![format!("score {}", report["score"])];
    for item in report["items"].as_array().unwrap() {
        lines.push(format!(
            "{:<5} {:<16} {}",
            item["level"].as_str().unwrap(),
            item["area"].as_str().unwrap(),
            item["code"].as_str().unwrap()
        ));
    }
    lines.join("\n") + "\n"
}

fn assert_snapshot(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/snapshots")
        .join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        actual,
        expected,
        "doctor's checklist changed; if that is meant, run with UPDATE_SNAPSHOTS=1 and commit {}",
        path.display()
    );
}

#[test]
fn a_fresh_install_scores_low_says_how_to_fix_each_item_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    admin_create_at(&["--data-dir", data_arg], "boss", dir.path());
    let (report, code) = doctor_json(&["--data-dir", data_arg], dir.path());
    assert_eq!(code, 1, "something is unsafe: {report}");
    assert_snapshot("doctor_fresh", &snapshot_of(&report));
    // Every item that is not fine says what to do, in words.
    for item in report["items"].as_array().unwrap() {
        let text = item["text"].as_str().unwrap();
        assert!(!text.starts_with("security."), "untranslated: {item}");
    }

    // The lines a person reads: a mark per item, the fix, the score.
    let output = holdfast(&["doctor", "--data-dir", data_arg], dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text.contains("✗ admins_two_step: these administrators sign in with a password alone"),
        "{text}"
    );
    assert!(
        text.contains("Require two-step sign-in for administrators: boss"),
        "{text}"
    );
    assert!(
        text.contains("✗ backups: need attention (open Backups): no verified backup yet"),
        "{text}"
    );
    assert!(
        text.contains(&format!("Score: {}/100", report["score"])),
        "{text}"
    );

    // Files other accounts can read turn the checklist red, naming them.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        // (The database file itself is made private again whenever Holdfast opens it.)
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (report, _) = doctor_json(&["--data-dir", data_arg], dir.path());
        let files = report["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["area"] == "files")
            .cloned()
            .unwrap();
        assert_eq!(files["code"], "files_exposed", "{files}");
        assert_eq!(
            files["detail"],
            format!("{} (755)", data.display()),
            "{files}"
        );
    }

    // A database that cannot be opened: exit code 2.
    let missing = format!("sqlite://{}/none/x.db?mode=rw", dir.path().display());
    let (report, code) = doctor_json(&["--database-url", &missing], dir.path());
    assert_eq!(code, 2, "{report}");
    assert_eq!(report["level"], "bad");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hardened_install_scores_full_marks_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let data = root.join("data");
    let key = holdfast_app::DbKey::generate().unwrap();
    let key_file = root.join("db.key");
    holdfast_app::files::write_secret_new(&key_file, key.to_text().as_bytes()).unwrap();
    // Making the administrator raises an alert, which `admin create` may or may not get to
    // send before it exits (the server sends what is left): the receiver takes it either way.
    let (receiver, _inbox) = crate::alerts::webhook_receiver().await;
    let config = root.join("holdfast.toml");
    std::fs::write(
        &config,
        format!(
            r#"data_dir = "{data}"
database_key_file = "{key_file}"

[backup]
copy_to = "{root}/offsite"
scratch_dir = "{root}"

[audit]
head_file = "{root}/heads.log"

[alerts]
allow_private_addresses = true

[[alerts.webhooks]]
name = "ops"
kind = "wecom"
url = "{receiver}/ops?key=k"
"#,
            data = data.display(),
            key_file = key_file.display(),
            root = root.display(),
        ),
    )
    .unwrap();
    let config_arg = config.to_str().unwrap();
    admin_create_at(&["--config", config_arg], "boss", root);
    crate::cli::run_ok(
        &[
            "tls",
            "self-signed",
            "--hosts",
            "localhost",
            "--config",
            config_arg,
        ],
        root,
    );
    // Makes the backup key (the backup itself is the server's job, below).
    crate::cli::run_ok(&["backup", "create", "--config", config_arg], root);

    // What an administrator does on a running server: a scheduled backup (copied and drilled),
    // the backup key confirmed as stored away, an authenticator app.
    let url = format!("sqlite://{}?mode=rw", data.join("holdfast.db").display());
    let app_config = holdfast_app::AppConfig {
        database_key: Some(key),
        audit_key_file: Some(data.join("audit.key")),
        ..Default::default()
    };
    let backup_key = std::fs::read_to_string(data.join("backup.key")).unwrap();
    let app = holdfast_app::App::open(
        &url,
        app_config,
        std::sync::Arc::new(holdfast_app::SystemClock),
    )
    .await
    .unwrap()
    .with_backups(holdfast_app::backup::schedule::BackupConfig {
        dir: data.join("backups"),
        every_minutes: 60,
        on_shutdown: false,
        key: Some(holdfast_app::backup::Key::identity_from_text(&backup_key).unwrap()),
        copy_to: Some(root.join("offsite")),
        retention: Default::default(),
        drill: true,
        scratch_dir: Some(root.to_path_buf()),
    });
    let run = holdfast_app::backup::schedule::run(&app, "manual")
        .await
        .unwrap();
    assert!(
        run.drill_error.is_none() && run.copied_to.is_some(),
        "{run:?}"
    );
    let boss = app.db.user_by_username("boss").await.unwrap().unwrap();
    let actor = holdfast_test_support::actor(&app, boss.id).await;
    holdfast_app::security::confirm_backup_key(&app, &actor, "test")
        .await
        .unwrap();
    let started = holdfast_app::two_factor::start_totp(&app, &actor, "test")
        .await
        .unwrap();
    let now = (app.now().micros() / 1_000_000) as u64;
    let code = holdfast_app::two_factor::code_at(&started.secret, now).unwrap();
    holdfast_app::two_factor::confirm_totp(&app, &actor, "test", started.factor_id, &code)
        .await
        .unwrap();
    app.db.close().await;

    let (report, code) = doctor_json(&["--config", config_arg], root);
    assert_eq!(code, 0, "{report:#}");
    assert_snapshot("doctor_hardened", &snapshot_of(&report));
    assert_eq!(report["score"], 100, "{report:#}");
}
