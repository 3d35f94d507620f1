//! What guards a signed-in account: step-up before sensitive actions, notices and "this
//! wasn't me", back-off that cannot lock the user out, "remember this device", and what
//! administrators can end.

use super::{Browser, code_at, enrol, now_seconds};
use holdfast_test_support::{TestApp, on_both_backends};
use serde_json::json;

on_both_backends!(sensitive_actions_ask_again_after_ten_minutes, |app| {
    let admin = app.admin().await;
    app.user("chief", "admin").await;
    let mut browser = Browser::new(&app, "Office PC");
    assert_eq!(
        browser.login("chief", "correct horse battery").await.status,
        200
    );
    let chief = browser.client(&app);
    chief.get("/api/v1/contacts/export").await.expect(200);
    app.clock.advance_seconds(11 * 60);
    for (method, path, body) in [
        ("GET", "/api/v1/contacts/export", None),
        (
            "PUT",
            "/api/v1/admin/two-factor/roles/rep",
            Some(json!({"required": true})),
        ),
        (
            "POST",
            "/api/v1/revert",
            Some(json!({"to": "2026-11-30T00:00:00Z"})),
        ),
    ] {
        let reply = chief
            .send(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                path,
                body,
            )
            .await;
        assert_eq!(reply.status, 403, "{method} {path}: {}", reply.body);
        assert_eq!(reply.error_code(), "step_up_required");
    }
    // A wrong answer is refused and counted; the password confirms for ten minutes.
    let wrong = chief
        .post(
            "/api/v1/auth/confirm",
            json!({"password": "not my password"}),
        )
        .await;
    assert_eq!(wrong.status, 422);
    chief
        .post(
            "/api/v1/auth/confirm",
            json!({"password": "correct horse battery"}),
        )
        .await
        .expect(200);
    chief.get("/api/v1/contacts/export").await.expect(200);
    app.clock.advance_seconds(9 * 60);
    chief.get("/api/v1/contacts/export").await.expect(200);
    app.clock.advance_seconds(2 * 60);
    assert_eq!(chief.get("/api/v1/contacts/export").await.status, 403);
    // A code from the authenticator app confirms as well.
    let (secret, _) = enrol(&app, &browser).await;
    app.clock.advance_seconds(11 * 60);
    assert_eq!(chief.get("/api/v1/contacts/export").await.status, 403);
    let code = code_at(&secret, now_seconds(&app)).unwrap();
    chief
        .post("/api/v1/auth/confirm", json!({"password": code}))
        .await
        .expect(200);
    chief.get("/api/v1/contacts/export").await.expect(200);
    // The page shows the confirmation form and comes back to the export.
    app.clock.advance_seconds(11 * 60);
    let page = reqwest::Client::new()
        .get(format!("{}/contacts/export", app.base_url))
        .header(
            "cookie",
            format!("holdfast_session={}", browser.session.as_deref().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 403);
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"action="/confirm""#), "{html}");
    assert!(html.contains(r#"value="/contacts/export""#), "{html}");
    let log = admin
        .get("/api/v1/audit?action=auth.step_up")
        .await
        .expect(200);
    assert_eq!(log["items"].as_array().unwrap().len(), 2, "{log}");
});

on_both_backends!(
    a_sign_in_from_a_new_device_is_told_and_this_was_not_me_ends_everything,
    |app| {
        let admin = app.admin().await;
        let rep = app.user("zhou", "rep").await;
        let mut desk = Browser::new(&app, "Desk Chrome");
        assert_eq!(
            desk.login("zhou", "correct horse battery").await.status,
            200
        );
        // The very first sign-in and a return on the same device are not news.
        assert_eq!(
            desk.login("zhou", "correct horse battery").await.status,
            200
        );
        let me = desk.client(&app);
        let none = me.get("/api/v1/me/security-notices").await.expect(200);
        assert_eq!(none["items"], json!([]), "{none}");
        // Someone else, elsewhere.
        let mut stranger = Browser::new(&app, "Strange Browser");
        assert_eq!(
            stranger.login("zhou", "correct horse battery").await.status,
            200
        );
        let notices = me.get("/api/v1/me/security-notices").await.expect(200);
        assert_eq!(notices["items"][0]["kind"], "new_sign_in", "{notices}");
        assert_eq!(
            notices["items"][0]["detail"]["user_agent"],
            "Strange Browser"
        );
        let notice = notices["items"][0]["id"].as_i64().unwrap();
        let history = me.get("/api/v1/me/sign-ins").await.expect(200);
        assert_eq!(history["items"][0]["new_device"], true, "{history}");
        // "This wasn't me": the stranger's session and the user's token end; admins are told.
        let done = me
            .post("/api/v1/me/not-me", json!({"notice_id": notice}))
            .await
            .expect(200);
        assert_eq!(done["sessions_ended"], 2, "{done}");
        assert!(done["tokens_revoked"].as_i64().unwrap() >= 1, "{done}");
        assert_eq!(stranger.client(&app).get("/api/v1/me").await.status, 401);
        assert_eq!(rep.get("/api/v1/me").await.status, 401);
        me.get("/api/v1/me").await.expect(200);
        let admin_session = app.session_cookie("admin").await;
        let reported = app
            .anonymous()
            .with_cookie(&admin_session)
            .get("/api/v1/me/security-notices")
            .await
            .expect(200);
        assert!(
            reported["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["kind"] == "reported" && n["detail"]["username"] == "zhou"),
            "{reported}"
        );
        let log = admin
            .get("/api/v1/audit?action=security.not_me")
            .await
            .expect(200);
        assert_eq!(log["items"].as_array().unwrap().len(), 1, "{log}");
        // A password change and a new token are notices too; "this was me" puts one away.
        me.put(
            "/api/v1/me/password",
            json!({"current_password": "correct horse battery", "new_password": "a different long passphrase"}),
        )
        .await
        .expect(200);
        me.post(
            "/api/v1/me/tokens",
            json!({"name": "script", "password": "a different long passphrase"}),
        )
        .await
        .expect(201);
        let notices = me.get("/api/v1/me/security-notices").await.expect(200);
        let kinds: Vec<&str> = notices["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["token_created", "password_changed"], "{notices}");
        let first = notices["items"][0]["id"].as_i64().unwrap();
        me.post(
            &format!("/api/v1/me/security-notices/{first}/ack"),
            json!({}),
        )
        .await
        .expect(200);
        let left = me.get("/api/v1/me/security-notices").await.expect(200);
        assert_eq!(left["items"].as_array().unwrap().len(), 1);
    }
);

async fn spawn_behind_a_proxy(backend: holdfast_test_support::Backend) -> Option<TestApp> {
    let config = holdfast_app::AppConfig {
        trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
        ..Default::default()
    };
    holdfast_test_support::spawn_app_with(backend, config).await
}

on_both_backends!(
    guesses_from_strangers_slow_an_account_but_never_lock_its_user_out,
    spawn_behind_a_proxy,
    |app| {
        app.user("boss", "rep").await;
        let config = app.app.config.clone();
        // The boss signed in from the office PC before: it is a known device.
        let mut office = Browser::new(&app, "Office PC").at("192.0.2.10");
        assert_eq!(
            office.login("boss", "correct horse battery").await.status,
            200
        );
        assert!(office.device.is_some(), "a device cookie was set");
        office.session = None;

        // One client guessing: free failures, then a wait that doubles from one second.
        let mut guesser = Browser::new(&app, "curl/8").at("198.51.100.1");
        for _ in 0..config.login_max_failures_per_client_and_account {
            assert_eq!(guesser.login("boss", "guess").await.status, 401);
        }
        for expected in [1, 2, 4] {
            let waiting = guesser.login("boss", "guess").await;
            assert_eq!(waiting.status, 429);
            assert_eq!(waiting.retry_after, Some(expected));
            app.clock.advance_seconds(expected);
            assert_eq!(guesser.login("boss", "guess").await.status, 401);
        }

        // Many clients guessing: the account slows down (at most a minute) …
        let addresses = [
            "203.0.113.1",
            "203.0.113.2",
            "203.0.113.3",
            "203.0.113.4",
            "203.0.113.5",
            "203.0.113.6",
            "203.0.113.7",
            "203.0.113.8",
            "203.0.113.9",
            "203.0.113.10",
        ];
        for address in addresses {
            let answer = Browser::new(&app, "bot")
                .at(address)
                .login("boss", "guess")
                .await;
            assert!(answer.status == 401 || answer.status == 429);
        }
        let slowed = Browser::new(&app, "Hotel PC")
            .at("192.0.2.99")
            .login("boss", "correct horse battery")
            .await;
        assert_eq!(slowed.status, 429, "{}", slowed.body);
        assert!(
            slowed.retry_after.unwrap() <= 60,
            "{:?}",
            slowed.retry_after
        );
        // … but the boss on the office PC signs in at once.
        let office_again = office.login("boss", "correct horse battery").await;
        assert_eq!(office_again.status, 200, "{}", office_again.body);

        // With a second factor the account limit does not apply: the password leads to the
        // second step, which the guessers cannot pass.
        let (secret, _) = enrol(&app, &office).await;
        for address in addresses {
            let answer = Browser::new(&app, "bot")
                .at(address)
                .login("boss", "guess")
                .await;
            assert!(answer.status == 401 || answer.status == 429);
        }
        app.clock.advance_seconds(30);
        let code = code_at(&secret, now_seconds(&app)).unwrap();
        let travelling = Browser::new(&app, "Hotel PC")
            .at("192.0.2.99")
            .login_with_code("boss", &code)
            .await;
        assert_eq!(travelling.status, 200, "{}", travelling.body);
    }
);

on_both_backends!(
    remember_this_device_is_explicit_and_outlives_the_idle_limit,
    |app| {
        app.user("wu", "rep").await;
        let mut shared = Browser::new(&app, "Shared PC");
        let plain = shared.login("wu", "correct horse battery").await;
        assert_eq!(plain.status, 200);
        let mut own = Browser::new(&app, "Own laptop");
        let remembered = own
            .post(
                "/api/v1/auth/login",
                json!({"username": "wu", "password": "correct horse battery", "remember": true}),
            )
            .await;
        assert_eq!(remembered.status, 200);
        let expires = holdfast_domain::Timestamp::parse_rfc3339(
            remembered.body["expires_at"].as_str().unwrap(),
        )
        .unwrap();
        let days = (expires.micros() - app.app.now().micros()) as f64 / 86_400_000_000.0;
        assert_eq!(days.round() as i64, app.app.config.session_remember_days);
        app.clock.advance_seconds(2 * 3600);
        assert_eq!(shared.client(&app).get("/api/v1/me").await.status, 401);
        own.client(&app).get("/api/v1/me").await.expect(200);
        let sessions = own
            .client(&app)
            .get("/api/v1/me/sessions")
            .await
            .expect(200);
        assert_eq!(sessions["items"][0]["remembered"], true, "{sessions}");
    }
);

on_both_backends!(
    administrators_reset_second_factors_and_end_single_sessions_and_tokens,
    |app| {
        let admin = app.admin().await;
        let rep = app.user("he", "rep").await;
        let mut lost = Browser::new(&app, "Lost phone");
        assert_eq!(lost.login("he", "correct horse battery").await.status, 200);
        enrol(&app, &lost).await;
        let user = rep.user_id;
        let seen = admin
            .get(&format!("/api/v1/users/{user}/sign-in"))
            .await
            .expect(200);
        assert_eq!(seen["sessions"].as_array().unwrap().len(), 1, "{seen}");
        assert_eq!(seen["tokens"].as_array().unwrap().len(), 1, "{seen}");
        assert!(!seen["sign_ins"].as_array().unwrap().is_empty());
        // A stale administrator session is asked to confirm first.
        let mut desk = Browser::new(&app, "Admin desk");
        app.user("root2", "admin").await;
        assert_eq!(
            desk.login("root2", "correct horse battery").await.status,
            200
        );
        app.clock.advance_seconds(11 * 60);
        let stale = desk
            .client(&app)
            .post(&format!("/api/v1/users/{user}/two-factor/reset"), json!({}))
            .await;
        assert_eq!(stale.error_code(), "step_up_required");
        let reset = admin
            .post(&format!("/api/v1/users/{user}/two-factor/reset"), json!({}))
            .await
            .expect(200);
        assert_eq!(reset["factors_removed"], 1);
        // Signed out, told, and signing in with the password alone again.
        assert_eq!(lost.client(&app).get("/api/v1/me").await.status, 401);
        let mut back = Browser::new(&app, "New phone");
        let again = back.login("he", "correct horse battery").await;
        assert_eq!(again.status, 200);
        assert!(again.body["second_factor_required"].is_null());
        let notices = back
            .client(&app)
            .get("/api/v1/me/security-notices")
            .await
            .expect(200);
        assert!(
            notices["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["kind"] == "second_factor_reset"),
            "{notices}"
        );
        // One session, one token, each ended on its own.
        let seen = admin
            .get(&format!("/api/v1/users/{user}/sign-in"))
            .await
            .expect(200);
        let session = seen["sessions"][0]["id"].as_i64().unwrap();
        let token = seen["tokens"][0]["id"].as_i64().unwrap();
        admin
            .delete(&format!("/api/v1/users/{user}/sessions/{session}"))
            .await
            .expect(200);
        assert_eq!(back.client(&app).get("/api/v1/me").await.status, 401);
        admin
            .delete(&format!("/api/v1/users/{user}/tokens/{token}"))
            .await
            .expect(200);
        assert_eq!(rep.get("/api/v1/me").await.status, 401);
        let log = admin
            .get("/api/v1/audit?action=two_factor.reset")
            .await
            .expect(200);
        assert_eq!(log["items"][0]["detail"]["username"], "he", "{log}");
    }
);

// The sign-in history keeps a little over a year; older lines go as new sign-ins come (the
// audit log keeps every successful sign-in).
on_both_backends!(the_sign_in_history_keeps_a_year, |app| {
    app.user("old", "rep").await;
    let mut browser = Browser::new(&app, "Desk");
    assert_eq!(
        browser.login("old", "correct horse battery").await.status,
        200
    );
    app.clock
        .advance_days(holdfast_app::login::LOGIN_HISTORY_DAYS + 1);
    assert_eq!(
        browser.login("old", "correct horse battery").await.status,
        200
    );
    let history = browser
        .client(&app)
        .get("/api/v1/me/sign-ins")
        .await
        .expect(200);
    assert_eq!(history["items"].as_array().unwrap().len(), 1, "{history}");
});
