//! Mass-action guards: a limit crossed stops the action, pauses that kind of action for the
//! account until an administrator releases it, and tells the administrators; administrators
//! are guarded too.

use crate::signin::Browser;
use holdfast_test_support::{TestApp, on_both_backends};
use serde_json::json;

async fn spawn_with_small_guards(backend: holdfast_test_support::Backend) -> Option<TestApp> {
    let config = holdfast_app::AppConfig {
        guards: holdfast_app::guards::Limits {
            window_minutes: 10,
            deletes: 3,
            bulk_reads: 5,
            owner_changes: 2,
            reverts: 500,
            roles: [(
                "auditor".to_owned(),
                holdfast_app::guards::RoleLimits {
                    bulk_reads: Some(2),
                    ..Default::default()
                },
            )]
            .into(),
        },
        ..Default::default()
    };
    holdfast_test_support::spawn_app_with(backend, config).await
}

on_both_backends!(
    deletes_trip_the_guard_above_the_limit_and_wait_for_review,
    spawn_with_small_guards,
    |app| {
        let admin = app.admin().await;
        let rep = app.user("lu", "rep").await;
        let mut ids = Vec::new();
        for n in 0..5 {
            ids.push(
                rep.create("contacts", json!({"name": format!("客户{n}")}))
                    .await,
            );
        }
        // Up to the limit: fine.
        for id in &ids[..3] {
            rep.delete(&format!("/api/v1/contacts/{id}?expected_version=1"))
                .await
                .expect(200);
        }
        // One more: refused, saying why and who can help; nothing deleted.
        let refused = rep
            .delete(&format!("/api/v1/contacts/{}?expected_version=1", ids[3]))
            .await;
        assert_eq!(refused.status, 403, "{}", refused.body);
        assert_eq!(refused.error_code(), "guard_tripped");
        assert_eq!(refused.body["error"]["grantable_by"], json!(["admin"]));
        rep.get(&format!("/api/v1/contacts/{}", ids[3]))
            .await
            .expect(200);
        // Paused until reviewed, even after the window has passed; other work goes on.
        app.clock.advance_seconds(11 * 60);
        let still = rep
            .delete(&format!("/api/v1/contacts/{}?expected_version=1", ids[3]))
            .await;
        assert_eq!(still.error_code(), "guard_tripped");
        rep.create("contacts", json!({"name": "照常录入"})).await;
        // The administrators were told, and it is in the audit log.
        let admin_session = app.session_cookie("admin").await;
        let notices = app
            .anonymous()
            .with_cookie(&admin_session)
            .get("/api/v1/me/security-notices")
            .await
            .expect(200);
        let notice = notices["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["kind"] == "guard_tripped")
            .cloned()
            .unwrap_or_else(|| panic!("{notices}"));
        assert_eq!(notice["detail"]["username"], "lu");
        assert_eq!(notice["detail"]["amount"], 4);
        let trips = admin.get("/api/v1/admin/guards").await.expect(200);
        let trip = trips["items"][0].clone();
        assert_eq!(trip["kind"], "deletes");
        assert_eq!(trip["threshold"], 3);
        assert!(trip["released_at"].is_null());
        // Reviewed and released: the rep continues.
        admin
            .post(
                &format!("/api/v1/admin/guards/{}/release", trip["id"]),
                json!({}),
            )
            .await
            .expect(200);
        rep.delete(&format!("/api/v1/contacts/{}?expected_version=1", ids[3]))
            .await
            .expect(200);
        let log = admin.get("/api/v1/audit?action=guard.").await.expect(200);
        let actions: Vec<&str> = log["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        assert_eq!(actions, ["guard.tripped", "guard.released"]);
    }
);

on_both_backends!(
    reading_in_bulk_by_api_and_exports_count_and_administrators_are_guarded,
    spawn_with_small_guards,
    |app| {
        let admin = app.admin().await;
        let rep = app.user("bai", "manager").await;
        for n in 0..4 {
            rep.create("contacts", json!({"name": format!("客户{n}")}))
                .await;
        }
        // Four rows read by API, then an export of four more rows: over five, refused.
        rep.get("/api/v1/contacts?limit=4").await.expect(200);
        let export = rep.get("/api/v1/contacts/export").await;
        assert_eq!(export.status, 403, "{}", export.body);
        assert_eq!(export.error_code(), "guard_tripped");

        // A stolen administrator token is stopped like anyone's …
        let contacts = admin.get("/api/v1/contacts?limit=4").await.expect(200);
        let refused = admin.get("/api/v1/contacts?limit=4").await;
        assert_eq!(refused.error_code(), "guard_tripped", "{}", refused.body);
        assert_eq!(contacts["items"].as_array().unwrap().len(), 4);
        // … while an administrator in a browser continues after confirming it is them.
        app.user("boss", "admin").await;
        let mut desk = Browser::new(&app, "Office");
        assert_eq!(
            desk.login("boss", "correct horse battery").await.status,
            200
        );
        let boss = desk.client(&app);
        boss.get("/api/v1/contacts/export").await.expect(200);
        let second = boss.get("/api/v1/contacts/export").await;
        assert_eq!(
            second.status, 200,
            "a fresh confirmation lets the administrator go on"
        );
        app.clock.advance_seconds(11 * 60);
        for _ in 0..2 {
            let _ = boss.get("/api/v1/contacts/export").await;
        }
        let stale = boss.get("/api/v1/contacts/export").await;
        assert_eq!(stale.error_code(), "step_up_required", "{}", stale.body);
        // Owner changes count too.
        let owner = admin.user_id;
        let id = boss.create("contacts", json!({"name": "甲"})).await;
        for _ in 0..2 {
            rep.patch(
                &format!("/api/v1/contacts/{id}"),
                json!({"owner_id": owner}),
            )
            .await;
        }
        let third = rep
            .patch(
                &format!("/api/v1/contacts/{id}"),
                json!({"owner_id": owner}),
            )
            .await;
        assert_eq!(third.error_code(), "guard_tripped", "{}", third.body);
    }
);

// A role can have limits of its own: here auditors may read 2 rows in bulk, everyone else 5.
on_both_backends!(
    a_role_can_have_limits_of_its_own,
    spawn_with_small_guards,
    |app| {
        let admin = app.admin().await;
        for n in 0..3 {
            admin
                .create("contacts", json!({"name": format!("客户{n}")}))
                .await;
        }
        let auditor = app.user("cao", "auditor").await;
        auditor.get("/api/v1/contacts?limit=2").await.expect(200);
        let refused = auditor.get("/api/v1/contacts?limit=1").await;
        assert_eq!(refused.error_code(), "guard_tripped", "{}", refused.body);
        assert!(
            refused.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("limit of 2"),
            "{}",
            refused.body
        );
        // The general limit (5) for an administrator's token.
        admin.get("/api/v1/contacts?limit=3").await.expect(200);
        admin.get("/api/v1/contacts?limit=2").await.expect(200);
        assert_eq!(
            admin.get("/api/v1/contacts?limit=1").await.error_code(),
            "guard_tripped"
        );
    }
);
