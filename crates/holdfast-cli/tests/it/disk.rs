//! Failures of the disk say what happened: a read-only data folder is named at once (not after
//! a pool's 30-second timeout), a full disk answers 507 with a clear code, shows on `/readyz`
//! and changes nothing, and a copy that runs out of room leaves nothing named like a good copy.
//! These mount small tmpfs file systems, which needs root: run by hand without it they print
//! SKIPPED; under CI=true they fail instead.

use holdfast_test_support::{Client, TEST_EPOCH, serve_in_background};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs of `size` mounted at `path` for as long as it lives.
pub(crate) struct Mount(pub(crate) PathBuf);

impl Mount {
    pub(crate) fn tmpfs(path: &Path, size: &str) -> Option<Mount> {
        std::fs::create_dir_all(path).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(!ci, "CI=true requires mounting a small tmpfs (run as root)");
            eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
            return None;
        }
        Some(Mount(path.to_owned()))
    }

    fn remount(&self, options: &str) {
        let done = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(done.success());
    }

    /// Fills the file system up with one file.
    pub(crate) fn fill(&self) -> PathBuf {
        let filler = self.0.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![7u8; 4096];
        while std::io::Write::write_all(&mut file, &chunk).is_ok() {}
        filler
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn clock() -> std::sync::Arc<holdfast_app::ManualClock> {
    std::sync::Arc::new(holdfast_app::ManualClock::new(TEST_EPOCH))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_data_folder_is_named_at_once_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mount) = Mount::tmpfs(&dir.path().join("data"), "8m") else {
        return;
    };
    // An existing database file (an empty file is an empty SQLite database) on a file system
    // that has since become read-only. Nothing holds it open, so the remount cannot be busy.
    let file = mount.0.join("holdfast.db");
    std::fs::write(&file, b"").unwrap();
    let url = format!("sqlite://{}?mode=rwc", file.display());
    mount.remount("ro");
    let error = holdfast_app::App::open(&url, holdfast_app::AppConfig::default(), clock())
        .await
        .err()
        .expect("a read-only folder is refused");
    let message = format!("{error:#}");
    assert!(message.contains(&file.display().to_string()), "{message}");
    assert!(message.contains("Read-only file system"), "{message}");
    assert!(!message.contains("timed out"), "{message}");
    // A folder that does not exist is named too.
    let missing = dir.path().join("nowhere/holdfast.db");
    let error = holdfast_app::Db::connect(&format!("sqlite://{}?mode=rwc", missing.display()))
        .await
        .expect_err("a missing folder is refused");
    let message = format!("{error:#}");
    assert!(
        message.contains("does not exist") && message.contains("nowhere"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_507_shows_on_readyz_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mount) = Mount::tmpfs(&dir.path().join("data"), "3m") else {
        return;
    };
    let url = format!(
        "sqlite://{}?mode=rwc",
        mount.0.join("holdfast.db").display()
    );
    let app = holdfast_app::App::open(&url, holdfast_app::AppConfig::default(), clock())
        .await
        .unwrap();
    holdfast_app::two_factor::set_roles_as_system(&app, &[])
        .await
        .unwrap();
    let admin_user = holdfast_app::users::create_user_unchecked(
        &app,
        &holdfast_domain::Actor::system(),
        "t",
        "admin",
        "",
        "correct horse battery",
        "admin",
    )
    .await
    .unwrap();
    let actor = holdfast_test_support::actor(&app, admin_user.id).await;
    let token = holdfast_app::auth::issue_token(&app, &actor, "t", "tests", None)
        .await
        .unwrap();
    let (base_url, _stop) = serve_in_background(app.clone()).await;
    let admin = Client {
        base_url,
        http: reqwest::Client::new(),
        auth: Some(format!("Bearer {}", token.secret)),
        user_id: admin_user.id,
    };
    admin.create("contacts", json!({"name": "老客户"})).await;
    let before = app.db.count_rows("contacts").await.unwrap();
    let audit_before = app.db.count_rows("audit_log").await.unwrap();

    let filler = mount.fill();
    let mut refused = None;
    // A write that needs new pages cannot be saved; each is answered 507 and nothing lands.
    for n in 0..50 {
        let notes = "备注".repeat(2000);
        let reply = admin
            .post(
                "/api/v1/contacts",
                json!({"name": format!("客户{n}"), "notes": notes}),
            )
            .await;
        if reply.status != 201 {
            refused = Some(reply);
            break;
        }
    }
    let refused = refused.expect("a write on a full disk is refused");
    assert_eq!(refused.status, 507, "{}", refused.body);
    assert_eq!(refused.error_code(), "disk_full");
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Nothing was changed")
    );
    let ready = admin.get("/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_eq!(ready.body["database_health"]["state"], "disk_full");
    // What was written before the disk filled is all there, and nothing half-written is.
    let contacts = app.db.count_rows("contacts").await.unwrap();
    let audit = app.db.count_rows("audit_log").await.unwrap();
    assert_eq!(
        contacts - before,
        audit - audit_before,
        "every saved contact has its audit entry"
    );
    assert!(app.db.verify_audit_chain().await.is_ok());

    // Room again: writes work and the instance is ready.
    std::fs::remove_file(filler).unwrap();
    admin.create("contacts", json!({"name": "新客户"})).await;
    assert_eq!(admin.get("/readyz").await.status, 200);
    app.db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_that_runs_out_of_room_leaves_nothing_named_like_a_good_copy() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("holdfast.db").display()
    );
    let app = holdfast_app::App::open(&url, holdfast_app::AppConfig::default(), clock())
        .await
        .unwrap();
    let Some(mount) = Mount::tmpfs(&dir.path().join("backups"), "64k") else {
        return;
    };
    // A partial file an interrupted run left behind is cleared up.
    std::fs::write(mount.0.join(".pre-upgrade-v1-old.db.partial"), b"half").unwrap();
    let target = mount.0.join("pre-upgrade-v8-now.db");
    let error = app.db.sqlite_copy_to(&target).await.unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains("nothing was left behind"), "{message}");
    let left: Vec<_> = std::fs::read_dir(&mount.0)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // With room, the copy is checked and put in place.
    mount.remount("size=64m");
    app.db.sqlite_copy_to(&target).await.unwrap();
    let left: Vec<_> = std::fs::read_dir(&mount.0)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("pre-upgrade-v8-now.db")]
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the copy is as private as the database");
    }
    app.db.close().await;
}

#[cfg(unix)]
#[test]
fn the_data_folder_the_database_and_backups_are_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    crate::cli::admin_create_at(&["--data-dir", data_arg], "boss", dir.path());
    assert_eq!(mode(&data), 0o700, "the data folder");
    assert_eq!(mode(&data.join("holdfast.db")), 0o600, "the database");
    let (out, _) = crate::cli::run_ok(&["backup", "create", "--data-dir", data_arg], dir.path());
    let backups = data.join("backups");
    assert_eq!(mode(&backups), 0o700, "the backup folder");
    let archive = std::fs::read_dir(&backups)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".hfb.age"))
        .unwrap_or_else(|| panic!("a backup in {}: {out}", backups.display()));
    assert_eq!(mode(&archive), 0o600, "the backup");
    assert_eq!(
        mode(&data.join("backup.key")),
        0o600,
        "the backup key made at first use"
    );
    // Restoring into a new folder (the way back from a damaged database) makes it private too.
    let restored = dir.path().join("restored");
    crate::cli::run_ok(
        &[
            "backup",
            "restore",
            archive.to_str().unwrap(),
            "--data-dir",
            restored.to_str().unwrap(),
            "--key-file",
            data.join("backup.key").to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(mode(&restored), 0o700, "the restored data folder");
    assert_eq!(
        mode(&restored.join("holdfast.db")),
        0o600,
        "the restored database"
    );
    // A database left readable by others is tightened when Holdfast opens it.
    std::fs::set_permissions(
        data.join("holdfast.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let _ = crate::cli::holdfast(&["doctor", "--data-dir", data_arg], dir.path())
        .output()
        .unwrap();
    assert_eq!(mode(&data.join("holdfast.db")), 0o600);
}
