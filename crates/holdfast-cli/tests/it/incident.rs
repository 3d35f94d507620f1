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
    let app = holdfast_test_support::open_with_system_clock(&db.url, &db.audit_key_file()).await;
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

on_both_backends!(
    everyone_reads_the_security_basics_and_is_warned_before_an_export,
    |app| {
        app.admin().await;
        app.user("lu", "rep").await;
        let rep = app.session_cookie("lu").await;
        let (status, basics) = crate::security::page(&app, &rep, "/security-basics").await;
        assert_eq!(status, 200);
        assert!(
            basics.contains("Holdfast never asks for your password"),
            "{basics}"
        );
        assert!(basics.contains("Never share an account"), "{basics}");
        assert!(
            basics.contains("keep the file off personal phones"),
            "{basics}"
        );
        // Without a named incident lead, whom to tell is the administrators.
        assert!(basics.contains("tell admin at once"), "{basics}");
        let zh = format!("{rep}; holdfast_lang=zh-CN");
        let (_, basics_zh) = crate::security::page(&app, &zh, "/security-basics").await;
        assert!(
            basics_zh.contains("Holdfast 从不通过电子邮件"),
            "{basics_zh}"
        );
        let (_, settings) = crate::security::page(&app, &rep, "/settings").await;
        assert!(settings.contains("href=\"/security-basics\""), "{settings}");
        // Before exporting, one sentence says what an export does and that it cannot be called back.
        let admin = app.session_cookie("admin").await;
        let (_, list) = crate::security::page(&app, &admin, "/contacts").await;
        assert!(list.contains("id=\"export-note\""), "{list}");
        assert!(list.contains("cannot be called back"), "{list}");
    }
);

/// Where a page sends the holder of `cookie`: the status and the `location` header.
async fn goes_to(app: &TestApp, cookie: &str, path: &str) -> (u16, String) {
    let response = crate::pages::http()
        .get(format!("{}{path}", app.base_url))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let location = response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (response.status().as_u16(), location)
}

on_both_backends!(a_security_policy_is_confirmed_before_anything_else, |app| {
    app.admin().await;
    let rep_api = app.user("lu", "rep").await;
    app.user("audrey", "auditor").await;
    let admin = app.session_cookie("admin").await;
    let rep = app.session_cookie("lu").await;
    let saved = post_form(
        &app,
        "/admin/incident/policy",
        &admin,
        &[("csrf", CSRF), ("policy", "不要把客户资料导出到个人设备。")],
    )
    .await;
    assert_eq!(saved.status(), 303);
    // Every page leads to the policy first; the basics and the API stay open.
    assert_eq!(
        goes_to(&app, &rep, "/contacts").await,
        (303, "/policy?next=%2Fcontacts".to_owned())
    );
    assert_eq!(goes_to(&app, &rep, "/security-basics").await.0, 200);
    rep_api.get("/api/v1/contacts").await.expect(200);
    let (status, policy) = crate::security::page(&app, &rep, "/policy?next=/contacts").await;
    assert_eq!(status, 200);
    assert!(
        policy.contains("不要把客户资料导出到个人设备。") && policy.contains("Version 1"),
        "{policy}"
    );
    let confirmed = post_form(
        &app,
        "/policy",
        &rep,
        &[("csrf", CSRF), ("version", "1"), ("next", "/contacts")],
    )
    .await;
    assert_eq!(confirmed.status(), 303);
    assert!(
        confirmed.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/contacts")
    );
    assert_eq!(goes_to(&app, &rep, "/contacts").await.0, 200);
    // Who has and has not confirmed.
    post_form(
        &app,
        "/policy",
        &admin,
        &[("csrf", CSRF), ("version", "1"), ("next", "//evil.example")],
    )
    .await
    .headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/?")
        .then_some(())
        .expect("a next address outside Holdfast goes home");
    let (_, incident) = page(&app, &admin).await;
    assert!(
        incident.contains("2 of 3 active users confirmed version 1"),
        "{incident}"
    );
    assert!(incident.contains("Not yet: audrey"), "{incident}");
    // A new version is confirmed again by everyone.
    post_form(
        &app,
        "/admin/incident/policy",
        &admin,
        &[("csrf", CSRF), ("policy", "新版：离开座位请锁屏。")],
    )
    .await;
    assert_eq!(goes_to(&app, &rep, "/").await.0, 303);
    let stale = post_form(
        &app,
        "/policy",
        &rep,
        &[("csrf", CSRF), ("version", "1"), ("next", "/")],
    )
    .await;
    assert_eq!(stale.status(), 409, "confirming an old version is refused");
    let audited = app
        .app
        .db
        .query_i64_for_tests("SELECT COUNT(*) FROM audit_log WHERE action = 'security.policy_ack'")
        .await
        .unwrap();
    assert_eq!(audited, 2);
});
