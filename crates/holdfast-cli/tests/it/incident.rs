//! The incident plan: `holdfast incident drill` on both backends (a rogue staged on a scratch
//! copy is stopped, frozen and undone; the live data is only read), and the incident page in
//! both languages.

use crate::cli::{admin_create, run_ok};
use crate::pages::{CSRF, post_form};
use holdfast_test_support::{Backend, TestApp, TestDb, on_both_backends};

async fn drill_on(backend: Backend) {
    let Some(db) = TestDb::fresh(backend).await else {
        return;
    };
    admin_create(&db, "boss");
    let scratch = db.dir.path().to_str().unwrap().to_owned();
    let (out, _) = run_ok(
        &[
            "incident",
            "drill",
            "--database-url",
            &db.url,
            "--scratch-dir",
            &scratch,
        ],
        db.dir.path(),
    );
    assert!(
        out.contains("✓ detected: the mass-delete guard stopped the rogue after 100 deletes"),
        "{out}"
    );
    assert!(out.contains("✓ contained: the account was frozen"), "{out}");
    assert!(
        out.contains("✓ recovered: 100 of 100 records came back"),
        "{out}"
    );
    let app = holdfast_test_support::open_with_system_clock(&db.url).await;
    assert_eq!(
        app.db.count_rows("contacts").await.unwrap(),
        0,
        "the live data is only read"
    );
    let staged = app
        .db
        .query_i64_for_tests("SELECT COUNT(*) FROM users WHERE username LIKE 'drill-%'")
        .await
        .unwrap();
    assert_eq!(staged, 0, "the rogue lived on the copy only");
    let drills = app.db.incident_drills(5).await.unwrap();
    assert!(drills.len() == 1 && drills[0].ok, "{drills:?}");
    assert_eq!(drills[0].restored, Some(100));
    let audited = app
        .db
        .query_i64_for_tests("SELECT COUNT(*) FROM audit_log WHERE action = 'incident.drill'")
        .await
        .unwrap();
    assert_eq!(audited, 1);
    app.db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_drill_stops_freezes_and_undoes_a_rogue_on_a_copy_sqlite() {
    drill_on(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_drill_stops_freezes_and_undoes_a_rogue_on_a_copy_postgres() {
    drill_on(Backend::Postgres).await;
}

async fn page(app: &TestApp, cookie: &str) -> (u16, String) {
    crate::security::page(app, cookie, "/admin/incident").await
}

on_both_backends!(
    the_incident_page_walks_through_the_plan_and_names_who_leads,
    |app| {
        app.admin().await;
        app.user("audrey", "auditor").await;
        app.user("lu", "rep").await;
        let cookie = app.session_cookie("admin").await;
        let (status, before) = page(&app, &cookie).await;
        assert_eq!(status, 200);
        assert!(before.contains("Nobody is named yet"), "{before}");
        for step in [
            "1. Contain",
            "2. See what happened",
            "3. Recover",
            "4. Report",
        ] {
            assert!(before.contains(step), "{step}: {before}");
        }
        assert!(before.contains("No drill has been run yet"), "{before}");
        let saved = post_form(
            &app,
            "/admin/incident/responsible",
            &cookie,
            &[("csrf", CSRF), ("responsible", "王经理 138-0000-0000")],
        )
        .await;
        assert_eq!(saved.status(), 303);
        app.app
            .db
            .record_incident_drill(&holdfast_app::incident::DrillRow {
                id: 0,
                at: app.app.now(),
                ok: true,
                deleted: 100,
                detect_ms: Some(900),
                contain_ms: Some(3),
                recover_ms: Some(210),
                restored: Some(100),
                error: None,
            })
            .await
            .unwrap();
        let zh = format!("{cookie}; holdfast_lang=zh-CN");
        let (_, after) = page(&app, &zh).await;
        assert!(after.contains("王经理 138-0000-0000"), "{after}");
        assert!(
            after.contains("出现问题时") && after.contains("1. 控制"),
            "{after}"
        );
        assert!(
            after.contains("通过：删除 100 条，全部撤销") && after.contains("0.9 s"),
            "{after}"
        );
        // Auditors read the plan; they cannot name who leads. Reps see none of it.
        let auditor = app.session_cookie("audrey").await;
        let (status, theirs) = page(&app, &auditor).await;
        assert_eq!(status, 200);
        assert!(!theirs.contains("name=\"responsible\""), "{theirs}");
        let refused = post_form(
            &app,
            "/admin/incident/responsible",
            &auditor,
            &[("csrf", CSRF), ("responsible", "me")],
        )
        .await;
        assert_eq!(refused.status(), 403);
        let rep = app.session_cookie("lu").await;
        assert_eq!(page(&app, &rep).await.0, 403);
    }
);
