//! `holdfast audit verify`: each way of tampering with the audit log is caught and named.

use crate::cli::{admin_create, run_err, run_ok};
use holdfast_test_support::{Backend, TestDb};
use serde_json::json;

const COLUMNS: &str = "at, actor_id, actor_name, op_id, action, entity, record_id, version, detail, prev_hash, hash, session_id, token_id, client";

/// A database with a few audit entries, checked intact; then `tamper` runs against it and
/// `holdfast audit verify` must fail naming `expected`.
fn caught(tamper: &[String], expected: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let db = runtime.block_on(TestDb::fresh(Backend::Sqlite)).unwrap();
    admin_create(&db, "boss");
    let entries = runtime.block_on(async {
        let app =
            holdfast_test_support::open_with_system_clock(&db.url, &db.audit_key_file()).await;
        let boss = holdfast_test_support::actor(&app, 1).await;
        for name in ["王芳", "李雷", "韩梅梅", "Ada"] {
            let change = holdfast_app::records::Change::Create {
                entity: holdfast_domain::Entity::Contact,
                input: json!({"name": name}),
            };
            holdfast_app::records::apply_change(&app, &boss, "t", change)
                .await
                .unwrap();
        }
        let entries = app
            .db
            .query_i64_for_tests("SELECT MAX(seq) FROM audit_log")
            .await
            .unwrap();
        app.db.close().await;
        entries
    });
    let dir = db.dir.path();
    let (out, _) = run_ok(&["audit", "verify", "--database-url", &db.url], dir);
    assert!(out.contains(&format!("intact: {entries} entries")), "{out}");
    runtime.block_on(async {
        let app =
            holdfast_test_support::open_with_system_clock(&db.url, &db.audit_key_file()).await;
        for sql in tamper {
            let sql = sql.replace("{last}", &entries.to_string());
            app.db.execute_raw_for_tests(&sql).await.unwrap();
        }
        app.db.close().await;
    });
    let err = run_err(&["audit", "verify", "--database-url", &db.url], dir);
    assert!(
        err.contains("tampered") && err.contains(expected),
        "{expected}: {err}"
    );
}

#[test]
fn an_edited_entry_is_named() {
    caught(
        &["UPDATE audit_log SET detail = '{\"name\":\"forged\"}' WHERE seq = 3".into()],
        "audit entry 3 was altered",
    );
}

#[test]
fn a_deleted_entry_is_named() {
    caught(
        &["DELETE FROM audit_log WHERE seq = 3".into()],
        "audit entry 3 is missing",
    );
}

#[test]
fn an_entry_inserted_in_the_middle_is_named() {
    caught(
        &[
            "UPDATE audit_log SET seq = seq + 1000 WHERE seq >= 3".into(),
            "UPDATE audit_log SET seq = seq - 999 WHERE seq >= 1000".into(),
            format!(
                "INSERT INTO audit_log (seq, {COLUMNS}) SELECT 3, {COLUMNS} FROM audit_log WHERE seq = 2"
            ),
        ],
        "audit entry 3 does not follow entry 2",
    );
}

#[test]
fn reordered_entries_are_named() {
    caught(
        &[
            "UPDATE audit_log SET seq = 1003 WHERE seq = 3".into(),
            "UPDATE audit_log SET seq = 3 WHERE seq = 4".into(),
            "UPDATE audit_log SET seq = 4 WHERE seq = 1003".into(),
        ],
        "audit entry 3 does not follow entry 2",
    );
}

#[test]
fn a_log_cut_off_at_the_end_is_named() {
    caught(
        &["DELETE FROM audit_log WHERE seq = {last}".into()],
        "before its recorded head",
    );
}

// A copied entry added at the end does not chain to the one before it. (One whose hash a forger
// recomputed chains, but goes past the recorded head: "goes on after its recorded head".)
#[test]
fn entries_added_after_the_head_are_named() {
    caught(
        &[format!(
            "INSERT INTO audit_log (seq, {COLUMNS}) SELECT seq + 1, {COLUMNS} FROM audit_log WHERE seq = {{last}}"
        )],
        "does not follow entry",
    );
}

#[test]
fn a_rewritten_log_is_caught_by_the_heads_written_outside_the_database() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let heads = dir.path().join("heads.log");
    let config = dir.path().join("holdfast.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[audit]\nhead_file = \"{}\"\n",
            data.display(),
            heads.display()
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    crate::cli::admin_create_at(&["--config", cfg], "boss", dir.path());
    let url = format!("sqlite://{}?mode=rw", data.join("holdfast.db").display());
    // The server's minute writes the head out; an unchanged head is not written twice.
    runtime.block_on(async {
        let app =
            holdfast_test_support::open_with_system_clock(&url, &data.join("audit.key")).await;
        assert!(
            holdfast_app::audit_heads::append(&app, &heads)
                .await
                .unwrap()
        );
        assert!(
            !holdfast_app::audit_heads::append(&app, &heads)
                .await
                .unwrap()
        );
        app.db.close().await;
    });
    let (out, _) = run_ok(&["audit", "verify", "--config", cfg], dir.path());
    assert!(out.contains("matches all 1 heads"), "{out}");

    // The whole log wiped and its head reset: a chain that verifies on its own (an empty one),
    // caught by the head kept outside.
    runtime.block_on(async {
        let app =
            holdfast_test_support::open_with_system_clock(&url, &data.join("audit.key")).await;
        app.db
            .execute_raw_for_tests("DELETE FROM audit_log")
            .await
            .unwrap();
        app.db
            .execute_raw_for_tests("UPDATE audit_head SET seq = 0, hash = ''")
            .await
            .unwrap();
        app.db.close().await;
    });
    let err = run_err(&["audit", "verify", "--config", cfg], dir.path());
    assert!(
        err.contains("tampered")
            && err.contains("is gone: the log was cut or replaced")
            && err.contains("line 1"),
        "{err}"
    );
    let output = crate::cli::holdfast(&["doctor", "--json", "--config", cfg], dir.path())
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let heads_item = crate::alerts::check_item(
        &serde_json::json!({"checks": report["items"]}),
        "audit_heads",
    );
    assert_eq!(heads_item["code"], "audit_heads_broken", "{report}");
    assert_eq!(output.status.code(), Some(1));
}
