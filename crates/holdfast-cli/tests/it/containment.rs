//! Containment during an incident: freezing a user or one API token, and locking the whole CRM
//! down — from the API and pages after step-up, or from the server's console.

use crate::signin::Browser;
use holdfast_test_support::{TestApp, on_both_backends};
use serde_json::json;

/// The API token through which `user_id` made a user (the stolen token of these tests).
async fn token_that_made_a_user(app: &TestApp, user_id: i64) -> i64 {
    app.app
        .db
        .query_i64_for_tests(&format!(
            "SELECT MAX(token_id) FROM audit_log WHERE action = 'user.create' AND actor_id = {user_id}"
        ))
        .await
        .unwrap()
}

/// A second API token of the user behind `browser`, made from their session.
async fn second_token(app: &TestApp, browser: &Browser) -> (i64, String) {
    let made = browser
        .client(app)
        .post(
            "/api/v1/me/tokens",
            json!({"name": "second", "password": "correct horse battery"}),
        )
        .await
        .expect(201);
    (
        made["id"].as_i64().unwrap(),
        made["secret"].as_str().unwrap().to_owned(),
    )
}

on_both_backends!(
    a_frozen_user_and_a_suspended_token_are_refused_with_the_reason,
    |app| {
        let admin = app.admin().await;
        let rep = app.user("dong", "rep").await;
        let mut browser = Browser::new(&app, "Desk");
        assert_eq!(
            browser.login("dong", "correct horse battery").await.status,
            200
        );
        let (token_id, secret) = second_token(&app, &browser).await;
        let second = app.client_with_token(rep.user_id, &secret);
        let user = rep.user_id;

        // One token suspended: only that one stops, and says why; resumed, it works again.
        admin
            .post(
                &format!("/api/v1/users/{user}/tokens/{token_id}/freeze"),
                json!({}),
            )
            .await
            .expect(200);
        let refused = second.get("/api/v1/contacts").await;
        assert_eq!(refused.status, 401);
        assert_eq!(refused.error_code(), "token_frozen");
        rep.get("/api/v1/contacts").await.expect(200);
        admin
            .post(
                &format!("/api/v1/users/{user}/tokens/{token_id}/unfreeze"),
                json!({}),
            )
            .await
            .expect(200);
        second.get("/api/v1/contacts").await.expect(200);

        // The whole user frozen: every session and token, and signing in, until it is lifted.
        let reply = admin
            .post(
                &format!("/api/v1/users/{user}/freeze"),
                json!({"reason": "laptop stolen"}),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        for client in [&rep, &second, &browser.client(&app)] {
            let refused = client.get("/api/v1/contacts").await;
            assert_eq!(refused.status, 401);
            assert_eq!(refused.error_code(), "account_frozen");
            assert!(
                refused.body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("laptop stolen"),
                "{}",
                refused.body
            );
        }
        let mut elsewhere = Browser::new(&app, "Thief");
        assert_eq!(
            elsewhere
                .login("dong", "correct horse battery")
                .await
                .status,
            401
        );
        // Nothing was deleted: the freeze lifted, the same session and tokens work again.
        admin
            .post(&format!("/api/v1/users/{user}/unfreeze"), json!({}))
            .await
            .expect(200);
        rep.get("/api/v1/contacts").await.expect(200);
        browser
            .client(&app)
            .get("/api/v1/contacts")
            .await
            .expect(200);
        let log = admin.get("/api/v1/audit?action=user.").await.expect(200);
        let actions: Vec<&str> = log["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        assert!(
            actions.contains(&"user.freeze") && actions.contains(&"user.unfreeze"),
            "{actions:?}"
        );
        // An administrator cannot freeze themselves out.
        let me = admin
            .post(
                &format!("/api/v1/users/{}/freeze", admin.user_id),
                json!({"reason": "oops"}),
            )
            .await;
        assert_eq!(me.status, 422);
    }
);

on_both_backends!(
    a_lockdown_leaves_reading_and_administrators_who_confirm,
    |app| {
        let admin_token = app.admin().await;
        let rep = app.user("ning", "rep").await;
        app.user("chief", "admin").await;
        let mut rep_browser = Browser::new(&app, "Rep desk");
        assert_eq!(
            rep_browser
                .login("ning", "correct horse battery")
                .await
                .status,
            200
        );
        let mut chief_browser = Browser::new(&app, "Chief desk");
        assert_eq!(
            chief_browser
                .login("chief", "correct horse battery")
                .await
                .status,
            200
        );
        let chief = chief_browser.client(&app);
        let ning = rep_browser.client(&app);
        let before = ning
            .create("contacts", json!({"name": "封锁前的客户"}))
            .await;

        // A reason is required; then the lockdown is on for everyone.
        let no_reason = chief
            .put("/api/v1/admin/lockdown", json!({"on": true}))
            .await;
        assert_eq!(no_reason.status, 422);
        let on = chief
            .put(
                "/api/v1/admin/lockdown",
                json!({"on": true, "reason": "stolen admin token"}),
            )
            .await
            .expect(200);
        assert_eq!(on["by"], "chief");

        // Reading still works; changes and exports are refused, saying why.
        ning.get(&format!("/api/v1/contacts/{before}"))
            .await
            .expect(200);
        let refused = ning
            .post("/api/v1/contacts", json!({"name": "新客户"}))
            .await;
        assert_eq!(refused.status, 403);
        assert_eq!(refused.error_code(), "lockdown");
        assert!(
            refused.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("stolen admin token")
        );
        assert_eq!(
            ning.get("/api/v1/contacts/export").await.error_code(),
            "lockdown"
        );
        // Every API token is suspended, an administrator's too.
        for token in [&rep, &admin_token] {
            let refused = token.get("/api/v1/contacts").await;
            assert_eq!(refused.status, 401);
            assert_eq!(refused.error_code(), "lockdown");
        }
        // An administrator who confirmed recently changes things; later they must confirm again.
        chief
            .create("contacts", json!({"name": "管理员录入"}))
            .await;
        app.clock.advance_seconds(11 * 60);
        let stale = chief
            .post("/api/v1/contacts", json!({"name": "再录入"}))
            .await;
        assert_eq!(stale.error_code(), "step_up_required");
        chief
            .post(
                "/api/v1/auth/confirm",
                json!({"password": "correct horse battery"}),
            )
            .await
            .expect(200);
        chief.create("contacts", json!({"name": "再录入"})).await;
        // Every page says so.
        let home = reqwest::Client::new()
            .get(format!("{}/contacts", app.base_url))
            .header(
                "cookie",
                format!(
                    "holdfast_session={}",
                    rep_browser.session.as_deref().unwrap()
                ),
            )
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            home.contains(r#"id="lockdown""#) && home.contains("stolen admin token"),
            "{home}"
        );

        // Lifted: back to normal.
        chief
            .put("/api/v1/admin/lockdown", json!({"on": false}))
            .await
            .expect(200);
        ning.create("contacts", json!({"name": "解除后的客户"}))
            .await;
        rep.get("/api/v1/contacts").await.expect(200);
        let log = chief
            .get("/api/v1/audit?action=lockdown.")
            .await
            .expect(200);
        assert_eq!(log["items"].as_array().unwrap().len(), 2, "{log}");
    }
);

// The server's console locks down even when every administrator account is compromised.
#[test]
fn holdfast_lockdown_on_and_off_from_the_console() {
    use crate::cli::{admin_create, run_ok};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let db = runtime
        .block_on(holdfast_test_support::TestDb::fresh(
            holdfast_test_support::Backend::Sqlite,
        ))
        .unwrap();
    admin_create(&db, "boss");
    let dir = db.dir.path();
    let (out, _) = run_ok(
        &[
            "lockdown",
            "on",
            "--database-url",
            &db.url,
            "--reason",
            "all admins phished",
        ],
        dir,
    );
    assert!(out.contains("locked down"), "{out}");
    runtime.block_on(async {
        let app =
            holdfast_test_support::open_with_system_clock(&db.url, &db.audit_key_file()).await;
        let lockdown = holdfast_app::containment::lockdown(&app)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(lockdown.reason, "all admins phished");
        assert!(lockdown.by.contains("console"), "{}", lockdown.by);
        app.db.close().await;
    });
    let (out, _) = run_ok(&["lockdown", "off", "--database-url", &db.url], dir);
    assert!(out.contains("lifted"), "{out}");
    runtime.block_on(async {
        let app =
            holdfast_test_support::open_with_system_clock(&db.url, &db.audit_key_file()).await;
        assert!(
            holdfast_app::containment::lockdown(&app)
                .await
                .unwrap()
                .is_none()
        );
        let entries = app
            .db
            .query_i64_for_tests("SELECT COUNT(*) FROM audit_log WHERE action LIKE 'lockdown.%'")
            .await
            .unwrap();
        assert_eq!(entries, 2);
        app.db.close().await;
    });
}

// What a stolen administrator token did, for the report: its changes, deletes, export and the
// backdoor user it made — and nothing anyone else did.
on_both_backends!(the_timeline_of_a_stolen_token_lists_what_it_did, |app| {
    let stolen = app.admin().await;
    let auditor = app.user("shen", "auditor").await;
    let rep = app.user("gu", "rep").await;
    let mut rep_browser = Browser::new(&app, "Rep desk");
    assert_eq!(
        rep_browser
            .login("gu", "correct horse battery")
            .await
            .status,
        200
    );
    rep.create("contacts", json!({"name": "别人的客户"})).await;
    app.clock.advance_seconds(60);
    let from = app.app.now();
    let victims: Vec<i64> = [
        stolen.create("contacts", json!({"name": "甲"})).await,
        stolen.create("contacts", json!({"name": "乙"})).await,
    ]
    .to_vec();
    for id in &victims {
        stolen
            .delete(&format!("/api/v1/contacts/{id}?expected_version=1"))
            .await
            .expect(200);
    }
    let export = stolen.get("/api/v1/contacts/export").await;
    assert_eq!(export.status, 200);
    stolen
        .post(
            "/api/v1/users",
            json!({"username": "backdoor", "password": "quiet river under stone", "role": "admin"}),
        )
        .await
        .expect(201);
    let token = token_that_made_a_user(&app, stolen.user_id).await;
    let url = format!(
        "/api/v1/audit/timeline?token_id={token}&from={}",
        from.to_rfc3339()
    );
    let timeline = auditor.get(&url).await.expect(200);
    let actions: Vec<&str> = timeline["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "contact.create",
            "contact.create",
            "contact.delete",
            "contact.delete",
            "contact.export",
            "user.create"
        ],
        "{timeline}"
    );
    assert!(
        timeline["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["token_id"] == token)
    );
    // For the report, as CSV.
    let csv = auditor.get(&format!("{url}&format=csv")).await;
    assert_eq!(csv.status, 200);
    let text = csv.body.as_str().unwrap_or_default().to_owned();
    let text = if text.is_empty() {
        csv.body.to_string()
    } else {
        text
    };
    assert!(
        text.contains("contact.export") && text.contains("user.create"),
        "{text}"
    );
    // A user's timeline has their sign-ins too; a rep cannot see anyone's.
    let by_user = auditor
        .get(&format!("/api/v1/audit/timeline?user_id={}", rep.user_id))
        .await
        .expect(200);
    let theirs: Vec<&str> = by_user["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    let signed_in = theirs.iter().position(|a| *a == "sign_in.success");
    let created = theirs.iter().position(|a| *a == "contact.create");
    assert!(signed_in.is_some() && signed_in < created, "{theirs:?}");
    assert_eq!(rep.get(&url).await.status, 403);
    // The refusal itself is in the audit log: who, through which token, from where, what for,
    // and the check that failed.
    let refused = auditor
        .get(&format!(
            "/api/v1/audit?action=access.refused&actor_id={}",
            rep.user_id
        ))
        .await
        .expect(200);
    let entry = &refused["items"][0];
    assert_eq!(entry["detail"]["check"], "no_right", "{refused}");
    assert_eq!(
        entry["detail"]["path"], "/api/v1/audit/timeline",
        "{refused}"
    );
    assert!(
        entry["token_id"].is_number() && entry["client"] == "127.0.0.1",
        "{refused}"
    );
    assert_eq!(
        auditor.get("/api/v1/audit/timeline").await.status,
        422,
        "whose timeline must be named"
    );
});

on_both_backends!(
    revert_by_token_undoes_only_that_tokens_changes_and_what_it_made,
    |app| {
        // The boss works in a browser; their API token was stolen.
        let stolen = app.admin().await;
        let mut boss = Browser::new(&app, "Boss desk");
        assert_eq!(
            boss.login("admin", "correct horse battery").await.status,
            200
        );
        let desk = boss.client(&app);
        let rep = app.user("gu", "rep").await;
        let customer = rep.create("contacts", json!({"name": "老客户"})).await;
        let kept = desk.create("contacts", json!({"name": "合作伙伴"})).await;
        let helper = json!({"name": "Helper", "rights": ["contacts.view"], "scope": "own"});
        desk.put("/api/v1/access/roles/helper", helper.clone())
            .await
            .expect(200);
        let asked = rep
            .post(
                "/api/v1/access/requests",
                json!({"permission": "exports.export", "reason": "quarterly list"}),
            )
            .await
            .expect(201)["id"]
            .as_i64()
            .unwrap();
        let clerk = app.user("clerk", "rep").await;
        app.clock.advance_seconds(60);
        let from = app.app.now();

        // Through the token: a rename, a delete, a new record, a backdoor administrator (who signs
        // in and makes a token of their own). A token cannot make tokens itself.
        stolen
            .patch(
                &format!("/api/v1/contacts/{customer}"),
                json!({"expected_version": 1, "name": "被改"}),
            )
            .await
            .expect(200);
        stolen
            .delete(&format!("/api/v1/contacts/{kept}?expected_version=1"))
            .await
            .expect(200);
        let planted = stolen.create("contacts", json!({"name": "假客户"})).await;
        let backdoor = stolen
        .post(
            "/api/v1/users",
            json!({"username": "backdoor", "password": "quiet river under stone", "role": "admin"}),
        )
        .await
        .expect(201)["id"]
        .as_i64()
        .unwrap();
        assert_eq!(
            stolen
                .post(
                    "/api/v1/me/tokens",
                    json!({"name": "spare", "password": "correct horse battery"}),
                )
                .await
                .error_code(),
            "token_cannot_make_tokens"
        );
        // And in the settings: a role of its own given to the rep, a role widened, a request
        // approved; one more role of its own, which the boss then gives to the clerk.
        let wide = json!({"name": "Insider", "rights": ["contacts.view", "contacts.edit", "exports.export"], "scope": "all"});
        stolen
            .put("/api/v1/access/roles/insider", wide)
            .await
            .expect(200);
        stolen
            .patch(
                &format!("/api/v1/users/{}", rep.user_id),
                json!({"role": "insider"}),
            )
            .await
            .expect(200);
        stolen
            .put(
                "/api/v1/access/roles/helper",
                json!({"name": "Helper", "rights": ["contacts.view", "contacts.delete"], "scope": "all"}),
            )
            .await
            .expect(200);
        stolen
            .post(
                &format!("/api/v1/access/requests/{asked}/approve"),
                json!({}),
            )
            .await
            .expect(200);
        stolen
            .put(
                "/api/v1/access/roles/lookout",
                json!({"name": "Lookout", "rights": ["contacts.view"], "scope": "own"}),
            )
            .await
            .expect(200);
        let mut intruder = Browser::new(&app, "Intruder");
        assert_eq!(
            intruder
                .login("backdoor", "quiet river under stone")
                .await
                .status,
            200
        );
        let minted = intruder
            .client(&app)
            .post(
                "/api/v1/me/tokens",
                json!({"name": "spare", "password": "quiet river under stone"}),
            )
            .await
            .expect(201);
        // Meanwhile the boss, in the browser: a phone number on the same customer, a new contact.
        desk.patch(
            &format!("/api/v1/contacts/{customer}"),
            json!({"expected_version": 2, "phone": "13800000000"}),
        )
        .await
        .expect(200);
        let theirs = desk.create("contacts", json!({"name": "新朋友"})).await;
        desk.patch(
            &format!("/api/v1/users/{}", clerk.user_id),
            json!({"role": "lookout"}),
        )
        .await
        .expect(200);

        let token = token_that_made_a_user(&app, stolen.user_id).await;
        let other_admin = app.user("an", "admin").await;
        let body = |dry_run: bool| json!({"to": from.to_rfc3339(), "by_token_id": token, "dry_run": dry_run});
        let preview = other_admin
            .post("/api/v1/revert", body(true))
            .await
            .expect(200);
        let actions: Vec<(i64, &str)> = preview["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["id"].as_i64().unwrap(), r["action"].as_str().unwrap()))
            .collect();
        assert_eq!(
            actions,
            [
                (customer, "revert_fields"),
                (kept, "restore"),
                (planted, "delete")
            ],
            "{preview}"
        );
        let made: Vec<(&str, &str)> = preview["made"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["kind"].as_str().unwrap(), m["name"].as_str().unwrap()))
            .collect();
        assert_eq!(
            made,
            [
                ("user", "backdoor"),
                ("access", "gu"),
                ("role_edit", "helper"),
                ("role", "insider"),
                ("role_kept", "lookout"),
                ("grant", "gu"),
            ],
            "{preview}"
        );
        assert_eq!(preview["made"][4]["detail"], "clerk", "{preview}");
        // The preview changed nothing.
        assert_eq!(
            stolen
                .get(&format!("/api/v1/contacts/{customer}"))
                .await
                .expect(200)["name"],
            "被改"
        );

        other_admin
            .post("/api/v1/revert", body(false))
            .await
            .expect(200);
        let after = other_admin
            .get(&format!("/api/v1/contacts/{customer}"))
            .await
            .expect(200);
        assert_eq!(after["name"], "老客户", "the token's rename is undone");
        assert_eq!(after["phone"], "13800000000", "the boss's own change stays");
        other_admin
            .get(&format!("/api/v1/contacts/{kept}"))
            .await
            .expect(200);
        assert_eq!(
            other_admin
                .get(&format!("/api/v1/contacts/{planted}"))
                .await
                .error_code(),
            "in_recycle_bin",
            "the planted record is in the recycle bin"
        );
        other_admin
            .get(&format!("/api/v1/contacts/{theirs}"))
            .await
            .expect(200);
        let backdoor_user = other_admin
            .get(&format!("/api/v1/users/{backdoor}"))
            .await
            .expect(200);
        assert_eq!(backdoor_user["active"], false, "{backdoor_user}");
        let spare = app.client_with_token(backdoor, minted["secret"].as_str().unwrap());
        assert_eq!(
            spare.get("/api/v1/contacts").await.status,
            401,
            "the backdoor's token is revoked"
        );
        assert_eq!(
            intruder.client(&app).get("/api/v1/contacts").await.status,
            401,
            "and its session ended"
        );
        // The settings it changed are as they were; what the boss built on is left.
        let roles = other_admin.get("/api/v1/access/roles").await.expect(200);
        let role = |key: &str| {
            roles["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["key"] == key)
                .cloned()
        };
        assert!(role("insider").is_none(), "{roles}");
        assert!(role("lookout").is_some(), "{roles}");
        assert_eq!(
            role("helper").unwrap()["rights"],
            json!(["contacts.view"]),
            "{roles}"
        );
        let gu = other_admin
            .get(&format!("/api/v1/users/{}", rep.user_id))
            .await
            .expect(200);
        assert_eq!(gu["role"], "rep", "{gu}");
        let grant = other_admin
            .get(&format!("/api/v1/access/requests/{asked}"))
            .await
            .expect(200);
        assert_eq!(grant["status"], "revoked", "{grant}");
        // The revert is itself a change by the administrator who ran it, undoable in turn.
        let versions = app.versions_of("contact", customer).await;
        assert_eq!(versions.last().unwrap().actor_id, other_admin.user_id);
    }
);
