//! Second factors: the authenticator app, recovery codes, passkeys, the per-role policy,
//! what the server operator can reset, and API tokens made with a code and limited to modules.

use super::{Browser, code_at, enrol, now_seconds};
use holdfast_test_support::{TestApp, on_both_backends};
use serde_json::json;

on_both_backends!(
    an_authenticator_app_and_recovery_codes_guard_the_sign_in,
    |app| {
        app.user("ana", "rep").await;
        let mut phone = Browser::new(&app, "Phone Safari");
        assert_eq!(
            phone.login("ana", "correct horse battery").await.status,
            200
        );
        let (secret, codes) = enrol(&app, &phone).await;

        // The password alone now gives no session: the answer asks for the second step.
        let mut laptop = Browser::new(&app, "Laptop Chrome");
        let first = laptop.login("ana", "correct horse battery").await;
        assert_eq!(first.body["second_factor_required"], true, "{}", first.body);
        assert_eq!(first.body["methods"], json!(["totp"]));
        assert!(
            laptop.session.is_none(),
            "no session before the second step"
        );

        // The code used to enrol belongs to a time step that was used already: no replay.
        let same_step = code_at(&secret, now_seconds(&app)).unwrap();
        let replayed = laptop.login_with_code("ana", &same_step).await;
        assert_eq!(replayed.status, 422, "{}", replayed.body);
        // A code from two steps ago is outside the window.
        app.clock.advance_seconds(30);
        let stale = code_at(&secret, now_seconds(&app) - 60).unwrap();
        assert_eq!(laptop.login_with_code("ana", &stale).await.status, 422);
        let fresh = code_at(&secret, now_seconds(&app)).unwrap();
        let signed_in = laptop.login_with_code("ana", &fresh).await;
        assert_eq!(signed_in.status, 200, "{}", signed_in.body);
        assert!(laptop.session.is_some());

        // A recovery code works once.
        let mut borrowed = Browser::new(&app, "Borrowed Firefox");
        let recovered = borrowed
            .login_with_code("ana", &codes[3].to_uppercase())
            .await;
        assert_eq!(recovered.status, 200, "{}", recovered.body);
        let again = Browser::new(&app, "Borrowed Firefox")
            .login_with_code("ana", &codes[3])
            .await;
        assert_eq!(again.status, 422);
        let status = laptop
            .client(&app)
            .get("/api/v1/me/two-factor")
            .await
            .expect(200);
        assert_eq!(status["recovery_codes_left"], 9);

        // A half-done sign-in takes five wrong codes, then the password must come again.
        let first = Browser::new(&app, "Guesser")
            .login("ana", "correct horse battery")
            .await;
        let token = first.body["sign_in_token"].as_str().unwrap().to_owned();
        let mut guesser = Browser::new(&app, "Guesser");
        for _ in 0..5 {
            let wrong = guesser
                .post(
                    "/api/v1/auth/second-factor",
                    json!({"sign_in_token": token, "code": "123456"}),
                )
                .await;
            assert!(wrong.status == 422 || wrong.status == 429, "{}", wrong.body);
        }
        let over = guesser
            .post(
                "/api/v1/auth/second-factor",
                json!({"sign_in_token": token, "code": code_at(&secret, now_seconds(&app) + 30).unwrap()}),
            )
            .await;
        assert!(over.status == 401 || over.status == 429, "{}", over.body);

        // The history says how each sign-in went; the notices say what changed.
        let history = laptop
            .client(&app)
            .get("/api/v1/me/sign-ins")
            .await
            .expect(200);
        let outcomes: Vec<(String, String)> = history["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["method"].as_str().unwrap().to_owned(),
                    e["outcome"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        for expected in [
            ("password+totp", "success"),
            ("password+recovery_code", "success"),
            ("password+totp", "wrong_code"),
        ] {
            assert!(
                outcomes.contains(&(expected.0.into(), expected.1.into())),
                "{expected:?} in {outcomes:?}"
            );
        }
        let notices = laptop
            .client(&app)
            .get("/api/v1/me/security-notices")
            .await
            .expect(200);
        let kinds: Vec<&str> = notices["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["kind"].as_str().unwrap())
            .collect();
        assert!(kinds.contains(&"second_factor_added"), "{kinds:?}");
        assert!(kinds.contains(&"recovery_code_used"), "{kinds:?}");
        assert!(kinds.contains(&"new_sign_in"), "{kinds:?}");

        // Turning the app off takes the password and a current code.
        let me = laptop.client(&app);
        let factor = status["factors"][0]["id"].as_i64().unwrap();
        let path = format!("/api/v1/me/two-factor/{factor}/remove");
        let without_code = me
            .post(&path, json!({"password": "correct horse battery"}))
            .await;
        assert_eq!(without_code.status, 422, "{}", without_code.body);
        app.clock.advance_seconds(30);
        let code = code_at(&secret, now_seconds(&app)).unwrap();
        me.post(
            &path,
            json!({"password": "correct horse battery", "code": code}),
        )
        .await
        .expect(200);
        let plain = Browser::new(&app, "Laptop Chrome")
            .login("ana", "correct horse battery")
            .await;
        assert!(
            plain.body["second_factor_required"].is_null(),
            "{}",
            plain.body
        );
    }
);

on_both_backends!(
    a_role_that_requires_a_second_factor_gets_nothing_else_until_enrolled,
    |app| {
        let admin = app.admin().await;
        app.user("lee", "rep").await;
        admin
            .put(
                "/api/v1/admin/two-factor/roles/rep",
                json!({"required": true}),
            )
            .await
            .expect(200);
        let mut browser = Browser::new(&app, "Office PC");
        assert_eq!(
            browser.login("lee", "correct horse battery").await.status,
            200
        );
        let lee = browser.client(&app);
        let refused = lee.get("/api/v1/contacts").await;
        assert_eq!(refused.status, 403);
        assert_eq!(refused.error_code(), "second_factor_required");
        assert_eq!(
            refused.body["error"]["reasons"][0]["code"],
            "second_factor_required"
        );
        // Administrators see who has not enrolled.
        let listed = admin.get("/api/v1/admin/two-factor").await.expect(200);
        let lee_row = listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["user"]["username"] == "lee")
            .cloned()
            .unwrap();
        assert_eq!(lee_row["required"], true);
        assert_eq!(lee_row["enrolled"], false);
        // The home page sends them to enrol.
        let home = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .get(format!("{}/", app.base_url))
            .header(
                "cookie",
                format!("holdfast_session={}", browser.session.as_deref().unwrap()),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            home.headers()["location"],
            "/settings?notice=second_factor_required#two-factor"
        );
        let (secret, _) = enrol(&app, &browser).await;
        lee.get("/api/v1/contacts").await.expect(200);
        // The last second factor of a role that requires one cannot be removed.
        let status = lee.get("/api/v1/me/two-factor").await.expect(200);
        let factor = status["factors"][0]["id"].as_i64().unwrap();
        app.clock.advance_seconds(30);
        let refused = lee
            .post(
                &format!("/api/v1/me/two-factor/{factor}/remove"),
                json!({"password": "correct horse battery", "code": code_at(&secret, now_seconds(&app)).unwrap()}),
            )
            .await;
        assert_eq!(refused.status, 409, "{}", refused.body);
        assert_eq!(refused.error_code(), "second_factor_required");
        // The policy change is audited.
        let log = admin
            .get("/api/v1/audit?action=two_factor.policy")
            .await
            .expect(200);
        assert_eq!(log["items"][0]["detail"]["role"], "rep", "{log}");
    }
);

on_both_backends!(passkeys_need_a_host_name_and_say_so, |app| {
    app.user("ma", "rep").await;
    let mut browser = Browser::new(&app, "Office PC");
    assert_eq!(
        browser.login("ma", "correct horse battery").await.status,
        200
    );
    // The test server is reached at 127.0.0.1, where browsers refuse passkeys.
    let refused = browser
        .client(&app)
        .post("/api/v1/me/passkeys/options", json!({}))
        .await;
    assert_eq!(refused.status, 422);
    assert_eq!(
        refused.body["error"]["fields"][0]["code"],
        "passkeys_unavailable"
    );
    let none = Browser::new(&app, "x")
        .post("/api/v1/auth/passkey/options", json!({"username": "ma"}))
        .await;
    assert_eq!(none.status, 422);
    assert_eq!(none.body["error"]["fields"][0]["code"], "no_passkey");
});

// The only administrator lost phone and recovery codes: whoever runs the server lets them back
// in with `holdfast admin reset-second-factor`, audited.

#[test]
fn the_server_operator_resets_a_lost_second_factor() {
    use crate::cli::{admin_create, run_err, run_ok};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let db = runtime
        .block_on(holdfast_test_support::TestDb::fresh(
            holdfast_test_support::Backend::Sqlite,
        ))
        .unwrap();
    admin_create(&db, "boss");
    runtime.block_on(async {
        let app =
            holdfast_test_support::open_with_system_clock(&db.url, &db.audit_key_file()).await;
        let boss = holdfast_test_support::actor(&app, 1).await;
        let started = holdfast_app::two_factor::start_totp(&app, &boss, "t")
            .await
            .unwrap();
        let code = code_at(&started.secret, (app.now().micros() / 1_000_000) as u64).unwrap();
        holdfast_app::two_factor::confirm_totp(&app, &boss, "t", started.factor_id, &code)
            .await
            .unwrap();
        assert_eq!(
            holdfast_app::two_factor::factors_of(&app, 1)
                .await
                .unwrap()
                .len(),
            1
        );
        app.db.close().await;
    });
    let dir = db.dir.path();
    let err = run_err(
        &[
            "admin",
            "reset-second-factor",
            "--database-url",
            &db.url,
            "--username",
            "nobody",
        ],
        dir,
    );
    assert!(err.contains("nobody"), "{err}");
    let (out, _) = run_ok(
        &[
            "admin",
            "reset-second-factor",
            "--database-url",
            &db.url,
            "--username",
            "Boss",
        ],
        dir,
    );
    assert!(out.contains("Removed 1 second factor"), "{out}");
    runtime.block_on(async {
        let app =
            holdfast_test_support::open_with_system_clock(&db.url, &db.audit_key_file()).await;
        assert!(
            holdfast_app::two_factor::factors_of(&app, 1)
                .await
                .unwrap()
                .is_empty()
        );
        let audit = app
            .db
            .query_i64_for_tests("SELECT COUNT(*) FROM audit_log WHERE action = 'two_factor.reset'")
            .await
            .unwrap();
        assert_eq!(audit, 1);
        app.db.close().await;
    });
}

on_both_backends!(
    a_token_can_be_limited_to_modules_and_made_with_a_code,
    |app| {
        app.user("qin", "admin").await;
        let mut browser = Browser::new(&app, "Office PC");
        assert_eq!(
            browser.login("qin", "correct horse battery").await.status,
            200
        );
        let (secret, _) = enrol(&app, &browser).await;
        let me = browser.client(&app);
        let unknown = me
            .post(
                "/api/v1/me/tokens",
                json!({"name": "sync", "password": "correct horse battery", "modules": ["contacts", "crm"]}),
            )
            .await;
        assert_eq!(unknown.status, 422);
        assert_eq!(unknown.body["error"]["fields"][0]["field"], "modules");
        // A current code from the app stands in for the password.
        app.clock.advance_seconds(30);
        let code = code_at(&secret, now_seconds(&app)).unwrap();
        let made = me
            .post(
                "/api/v1/me/tokens",
                json!({"name": "contacts sync", "password": code, "modules": ["contacts"]}),
            )
            .await
            .expect(201);
        assert_eq!(made["modules"], json!(["contacts"]));
        let token = app.client_with_token(0, made["secret"].as_str().unwrap());
        token
            .create("contacts", json!({"name": "同步的客户"}))
            .await;
        let deals = token.get("/api/v1/deals").await;
        assert_eq!(deals.status, 403, "{}", deals.body);
        // An administrator's token limited to contacts administers nothing.
        assert_eq!(token.get("/api/v1/users").await.status, 403);
        assert_eq!(token.get("/api/v1/auth/throttles").await.status, 403);
        // The same code again is refused: each is used once.
        let replay = me
            .post(
                "/api/v1/me/tokens",
                json!({"name": "again", "password": code}),
            )
            .await;
        assert_eq!(replay.status, 422);
    }
);

async fn spawn_allowing_tokens_without_expiry(
    backend: holdfast_test_support::Backend,
) -> Option<TestApp> {
    let config = holdfast_app::AppConfig {
        tokens_may_never_expire: true,
        ..Default::default()
    };
    holdfast_test_support::spawn_app_with(backend, config).await
}

// Tokens without an expiry exist only where the administrators' policy allows them.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_expiry_needs_the_administrators_policy() {
    for allowed in [false, true] {
        let app = if allowed {
            spawn_allowing_tokens_without_expiry(holdfast_test_support::Backend::Sqlite).await
        } else {
            holdfast_test_support::spawn_app(holdfast_test_support::Backend::Sqlite).await
        }
        .unwrap();
        app.user("yu", "rep").await;
        let mut browser = Browser::new(&app, "Office PC");
        assert_eq!(
            browser.login("yu", "correct horse battery").await.status,
            200
        );
        let reply = browser
            .client(&app)
            .post(
                "/api/v1/me/tokens",
                json!({"name": "forever", "password": "correct horse battery", "never_expires": true}),
            )
            .await;
        if allowed {
            assert_eq!(reply.status, 201, "{}", reply.body);
            assert!(reply.body["expires_at"].is_null(), "{}", reply.body);
        } else {
            assert_eq!(reply.status, 422, "{}", reply.body);
            assert_eq!(reply.body["error"]["fields"][0]["code"], "not_allowed");
        }
    }
}
