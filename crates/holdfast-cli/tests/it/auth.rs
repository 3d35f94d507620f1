//! Login, sessions, API tokens, throttling, first-run setup, and deny-by-default.

use holdfast_test_support::{Client, TestApp, on_both_backends};
use serde_json::json;

async fn login(
    app: &TestApp,
    username: &str,
    password: &str,
) -> (holdfast_test_support::Reply, Option<String>) {
    let reply = app
        .anonymous()
        .post(
            "/api/v1/auth/login",
            json!({"username": username, "password": password}),
        )
        .await;
    let cookie = reply
        .headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().to_owned());
    (reply, cookie)
}

on_both_backends!(
    login_sets_a_strict_http_only_cookie_and_logout_revokes_it,
    |app| {
        app.user("meimei", "rep").await;
        let (reply, cookie) = login(&app, "MeiMei", "correct horse battery").await;
        assert_eq!(reply.status, 200);
        let set_cookie = reply
            .headers
            .get("set-cookie")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"),
            "{set_cookie}"
        );
        let session = app.anonymous().with_cookie(&cookie.unwrap());
        assert_eq!(
            session.get("/api/v1/me").await.expect(200)["username"],
            "meimei"
        );
        session
            .post("/api/v1/auth/logout", json!({}))
            .await
            .expect(200);
        assert_eq!(
            session.get("/api/v1/me").await.error_code(),
            "session_expired"
        );
    }
);

// Defaults for a shared office: an hour away signs you out, and a working day is the longest.
on_both_backends!(sessions_end_after_idle_and_absolute_timeouts, |app| {
    app.user("sleepy", "rep").await;
    let (_, cookie) = login(&app, "sleepy", "correct horse battery").await;
    let session = app.anonymous().with_cookie(&cookie.unwrap());
    app.clock.advance_seconds(59 * 60);
    session.get("/api/v1/me").await.expect(200);
    app.clock.advance_seconds(60 * 60 + 1);
    assert_eq!(
        session.get("/api/v1/me").await.error_code(),
        "session_expired",
        "idle for more than an hour"
    );

    let (_, cookie) = login(&app, "sleepy", "correct horse battery").await;
    let busy = app.anonymous().with_cookie(&cookie.unwrap());
    let mut used_for = 0;
    for _ in 0..20 {
        app.clock.advance_seconds(50 * 60);
        if busy.get("/api/v1/me").await.status != 200 {
            break;
        }
        used_for += 50;
    }
    assert_eq!(
        busy.get("/api/v1/me").await.error_code(),
        "session_expired",
        "12 hours after login, even if busy"
    );
    assert_eq!(used_for, 11 * 60 + 40, "it lasted until the 12th hour");
});

on_both_backends!(
    failed_logins_are_throttled_per_account_and_per_address,
    |app| {
        app.user("target", "rep").await;
        for _ in 0..5 {
            assert_eq!(login(&app, "target", "wrong password!").await.0.status, 401);
        }
        let (throttled, _) = login(&app, "target", "correct horse battery").await;
        assert_eq!(
            throttled.status, 429,
            "even the right password waits once the account is throttled"
        );
        assert!(throttled.headers.get("retry-after").is_some());
        app.clock.advance_seconds(16 * 60);
        assert_eq!(
            login(&app, "target", "correct horse battery")
                .await
                .0
                .status,
            200
        );
        // Per address: spraying many accounts from one address is throttled too.
        for n in 0..20 {
            login(&app, &format!("nobody{n}"), "whatever password").await;
        }
        let (sprayed, _) = login(&app, "target", "correct horse battery").await;
        assert_eq!(sprayed.status, 429);
    }
);

on_both_backends!(revoked_api_tokens_stop_working_at_once, |app| {
    let rep = app.user("scripter", "rep").await;
    let (_, cookie) = login(&app, "scripter", "correct horse battery").await;
    let created = app
        .anonymous()
        .with_cookie(&cookie.unwrap())
        .post(
            "/api/v1/me/tokens",
            json!({"name": "import script", "password": "correct horse battery"}),
        )
        .await
        .expect(201);
    let token = Client {
        auth: Some(format!("Bearer {}", created["secret"].as_str().unwrap())),
        ..rep.clone()
    };
    token.get("/api/v1/contacts").await.expect(200);
    let listed = rep.get("/api/v1/me/tokens").await.expect(200);
    assert!(
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t.get("secret").is_none()),
        "secrets are never listed"
    );
    rep.delete(&format!("/api/v1/me/tokens/{}", created["id"]))
        .await
        .expect(200);
    assert_eq!(
        token.get("/api/v1/contacts").await.error_code(),
        "invalid_token"
    );
    let garbage = Client {
        auth: Some("Bearer hf_nope".into()),
        ..rep.clone()
    };
    assert_eq!(garbage.get("/api/v1/contacts").await.status, 401);
});

on_both_backends!(
    deactivating_a_user_logs_them_out_and_keeps_their_records,
    |app| {
        let admin = app.admin().await;
        let rep = app.user("leaver", "rep").await;
        let id = rep
            .create("companies", json!({"name": "Their customer"}))
            .await;
        admin
            .patch(
                &format!("/api/v1/users/{}", rep.user_id),
                json!({"active": false}),
            )
            .await
            .expect(200);
        assert_eq!(rep.get("/api/v1/companies").await.status, 401);
        // The right password of a deactivated account gets the answer of a wrong one: it is not
        // confirmed to whoever holds it.
        let (right, _) = login(&app, "leaver", "correct horse battery").await;
        let (wrong, _) = login(&app, "leaver", "not the password at all").await;
        assert_eq!(right.status, 401);
        assert_eq!(right.body["error"]["code"], wrong.body["error"]["code"]);
        assert_eq!(
            right.body["error"]["message"],
            wrong.body["error"]["message"]
        );
        let kept = admin
            .get(&format!("/api/v1/companies/{id}"))
            .await
            .expect(200);
        assert_eq!(
            kept["owner_id"], rep.user_id,
            "records stay owned and visible"
        );
        let last_admin = admin
            .patch(
                &format!("/api/v1/users/{}", admin.user_id),
                json!({"role": "rep"}),
            )
            .await;
        assert_eq!(last_admin.error_code(), "last_admin");
    }
);

on_both_backends!(
    first_run_setup_needs_the_console_token_and_works_once,
    |app| {
        let token = holdfast_app::auth::issue_setup_token(&app.app)
            .await
            .unwrap()
            .unwrap();
        let anonymous = app.anonymous();
        let body = |token: &str| json!({"token": token, "username": "founder", "password": "a long enough password"});
        assert_eq!(
            anonymous
                .post("/api/v1/setup", body("guess"))
                .await
                .error_code(),
            "setup_closed"
        );
        let created = anonymous
            .post("/api/v1/setup", body(&token))
            .await
            .expect(201);
        assert_eq!(created["role"], "admin");
        assert_eq!(
            anonymous
                .post("/api/v1/setup", body(&token))
                .await
                .error_code(),
            "setup_closed"
        );
        assert_eq!(
            holdfast_app::auth::issue_setup_token(&app.app)
                .await
                .unwrap(),
            None
        );
    }
);

on_both_backends!(
    logged_out_users_reach_nothing_but_login_setup_and_health,
    |app| {
        let anonymous = app.anonymous();
        let public = [
            "/healthz",
            "/readyz",
            "/api/v1/setup",
            "/api/v1/auth/login",
            "/api/v1/auth/second-factor",
            "/api/v1/auth/second-factor/passkey-options",
            "/api/v1/auth/second-factor/passkey",
            "/api/v1/auth/passkey/options",
            "/api/v1/auth/passkey",
        ];
        for route in holdfast_web::routes().docs() {
            let path = route
                .path
                .replace("{collection}", "contacts")
                .replace("{id}", "1")
                .replace("{version}", "1")
                .replace("{key}", "default");
            for op in &route.operations {
                let method = reqwest::Method::from_bytes(op.method.as_bytes()).unwrap();
                let reply = anonymous.send(method, &path, Some(json!({}))).await;
                if public.contains(&route.path.as_str()) {
                    assert!(route.public, "{path} is public but not documented so");
                    assert_ne!(reply.status, 401, "{} {path}", op.method);
                } else {
                    assert!(!route.public, "{path} is documented public");
                    assert_eq!(
                        reply.status, 401,
                        "{} {path} must require login; got {}",
                        op.method, reply.body
                    );
                }
            }
        }
    }
);

on_both_backends!(members_are_refused_administration_with_a_reason, |app| {
    app.admin().await;
    let rep = app.user("member", "rep").await;
    for (method, path) in [
        ("GET", "/api/v1/users"),
        ("GET", "/api/v1/audit"),
        ("PUT", "/api/v1/pipelines/default"),
    ] {
        let reply = rep
            .send(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                path,
                Some(json!({"name": "x", "stages": ["a"]})),
            )
            .await;
        assert_eq!(
            (reply.status.as_u16(), reply.error_code()),
            (403, "no_right"),
            "{method} {path}"
        );
        assert!(
            reply.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("The role Sales rep does not give administration.")
        );
        // Who can change it, and the whole chain of checks.
        assert_eq!(reply.body["error"]["grantable_by"], json!(["admin"]));
        let reasons = reply.body["error"]["reasons"].as_array().unwrap();
        let checks: Vec<(&str, bool)> = reasons
            .iter()
            .map(|r| (r["check"].as_str().unwrap(), r["ok"].as_bool().unwrap()))
            .collect();
        assert_eq!(
            checks,
            [("account", true), ("module", true), ("right", false)]
        );
    }
});

on_both_backends!(
    administrators_end_sessions_and_revoke_tokens_separately_and_say_which,
    |app| {
        let admin = app.admin().await;
        let rep = app.user("xiaozhao", "rep").await;
        let (_, cookie) = login(&app, "xiaozhao", "correct horse battery").await;
        let browser = rep.with_cookie(&cookie.unwrap());
        browser.get("/api/v1/me").await.expect(200);

        let path = format!("/api/v1/users/{}/revoke-sessions", rep.user_id);
        let ended = admin.post(&path, json!(null)).await.expect(200);
        assert_eq!(ended["sessions_revoked"], 1);
        assert_eq!(ended["api_tokens_still_working"], 1, "{ended}");
        assert_eq!(browser.get("/api/v1/me").await.status, 401);
        rep.get("/api/v1/me").await.expect(200);

        let path = format!("/api/v1/users/{}/revoke-tokens", rep.user_id);
        let revoked = admin.post(&path, json!(null)).await.expect(200);
        assert_eq!(revoked["tokens_revoked"], 1);
        assert_eq!(rep.get("/api/v1/me").await.status, 401);
        let audit = app
            .app
            .db
            .audit_entries(None, None, None, 1000)
            .await
            .unwrap();
        let entry = audit
            .iter()
            .rev()
            .find(|e| e.action == "token.revoke_all")
            .expect("audited");
        assert_eq!(entry.actor_id, admin.user_id);
        assert_eq!(entry.detail["user_id"], rep.user_id);
        // Members cannot revoke someone else's tokens.
        let other = app.user("xiaoqian", "rep").await;
        let path = format!("/api/v1/users/{}/revoke-tokens", other.user_id);
        assert_eq!(rep.post(&path, json!(null)).await.status, 401);
        let manager = app.user("jingli", "manager").await;
        assert_eq!(manager.post(&path, json!(null)).await.status, 403);
        other.get("/api/v1/me").await.expect(200);
    }
);

on_both_backends!(
    the_audit_log_names_the_token_or_session_and_address_and_filters_by_them,
    |app| {
        let admin = app.admin().await;
        let rep = app.user("xiaosun", "rep").await;
        let token_id = rep.get("/api/v1/me/tokens").await.expect(200)["items"][0]["id"]
            .as_i64()
            .unwrap();
        let (_, cookie) = login(&app, "xiaosun", "correct horse battery").await;
        let browser = rep.with_cookie(&cookie.unwrap());
        app.clock.advance_seconds(60);
        let start = app.app.now();
        let id = rep.create("contacts", json!({"name": "钱先生"})).await;
        app.clock.advance_seconds(60);
        browser
            .patch(
                &format!("/api/v1/contacts/{id}"),
                json!({"expected_version": 1, "title": "总经理"}),
            )
            .await
            .expect(200);
        admin.create("companies", json!({"name": "钱氏集团"})).await;

        let list = |query: String| {
            let admin = admin.clone();
            async move {
                admin
                    .get(&format!("/api/v1/audit?{query}"))
                    .await
                    .expect(200)["items"]
                    .as_array()
                    .unwrap()
                    .clone()
            }
        };
        let by_token = list(format!("token_id={token_id}")).await;
        assert_eq!(by_token.len(), 1, "{by_token:?}");
        assert_eq!(by_token[0]["action"], "contact.create");
        assert_eq!(by_token[0]["client"], "127.0.0.1");
        assert!(by_token[0]["session_id"].is_null());
        let by_rep = list(format!("actor_id={}&action=contact.", rep.user_id)).await;
        let actions: Vec<&str> = by_rep
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        assert_eq!(actions, ["contact.create", "contact.update"]);
        assert!(by_rep[1]["session_id"].is_i64());
        assert!(by_rep[1]["token_id"].is_null());
        let within = holdfast_domain::Timestamp(start.micros() + 30_000_000);
        let window = list(format!(
            "from={}&to={}",
            start.to_rfc3339().replace('+', "%2B"),
            within.to_rfc3339().replace('+', "%2B")
        ))
        .await;
        assert_eq!(window.len(), 1, "{window:?}");
        assert_eq!(window[0]["action"], "contact.create");
        let exact = list("action=company.create".into()).await;
        assert_eq!(exact.len(), 1);
        assert_eq!(exact[0]["actor_id"], admin.user_id);
        let bad = admin.get("/api/v1/audit?from=yesterday").await;
        assert_eq!(bad.status, 422);
        assert_eq!(bad.body["error"]["fields"][0]["field"], "from");

        // The session, token and address are part of what the hash chain protects.
        assert!(app.app.db.verify_audit_chain().await.is_ok());
        let seq = by_token[0]["seq"].as_i64().unwrap();
        app.app
            .db
            .execute_raw_for_tests(&format!(
                "UPDATE audit_log SET client = '10.0.0.9' WHERE seq = {seq}"
            ))
            .await
            .unwrap();
        let broken = app.app.db.verify_audit_chain().await.unwrap_err();
        assert!(
            format!("{broken:#}").contains(&format!("audit entry {seq}")),
            "{broken:#}"
        );
    }
);

on_both_backends!(signing_in_never_sends_the_user_to_another_site, |app| {
    use crate::pages::{CSRF, http};
    app.user("xiaoqin", "rep").await;
    let sign_in = |next: &'static str| {
        http()
            .post(format!("{}/login", app.base_url))
            .header("Cookie", format!("holdfast_csrf={CSRF}"))
            .form(&[
                ("csrf", CSRF),
                ("username", "xiaoqin"),
                ("password", "correct horse battery"),
                ("next", next),
            ])
            .send()
    };
    for (next, lands) in [
        ("/\t/evil.cn", "/"),
        ("//evil.cn", "/"),
        ("/\\evil.cn", "/"),
        ("/%2F/evil.cn", "/"),
        ("https:evil.cn", "/"),
        // A same-site path is followed.
        ("/contacts", "/contacts"),
    ] {
        let response = sign_in(next).await.unwrap();
        assert_eq!(response.status(), 303, "{next:?}");
        assert_eq!(response.headers()["location"], lands, "{next:?}");
    }
});

async fn spawn_with_two_password_checks(
    backend: holdfast_test_support::Backend,
) -> Option<TestApp> {
    let config = holdfast_app::AppConfig {
        max_concurrent_hashes: 2,
        busy_wait_ms: 200,
        ..Default::default()
    };
    holdfast_test_support::spawn_app_with(backend, config).await
}

// Each password check takes 19 MiB on purpose: a flood of logins waits for a turn briefly and is
// then answered 503 with Retry-After, instead of queueing without bound.
on_both_backends!(
    a_flood_of_logins_is_answered_busy_not_queued_without_bound,
    spawn_with_two_password_checks,
    |app| {
        app.user("pat", "rep").await;
        let login = json!({"username": "pat", "password": "correct horse battery"});
        let anonymous = app.anonymous();
        let held = app.app.occupy_hashing_for_tests().await.unwrap();
        let refused = anonymous.post("/api/v1/auth/login", login.clone()).await;
        assert_eq!(refused.status, 503, "{}", refused.body);
        assert_eq!(refused.error_code(), "busy");
        assert_eq!(refused.body["error"]["retry_after_seconds"], 5);
        drop(held);
        assert_eq!(
            anonymous.post("/api/v1/auth/login", login).await.status,
            200
        );
    }
);

// Passwords attackers try first are refused with the reason, field by field; long passphrases
// of ordinary words are welcome.
on_both_backends!(
    passwords_attackers_try_first_are_refused_with_the_reason,
    |app| {
        let admin = app.admin().await;
        for (password, code) in [
            ("1234567890", "digits_only"),
            ("13800138000", "digits_only"),
            ("woaini1314520", "common_password"),
            ("password2026", "common_password"),
            ("qwertyuiop", "common_password"),
            ("lilei-is-my-name", "contains_name"),
            ("我是李雷，这是新密码不好猜", "contains_name"),
        ] {
            let refused = admin
            .post(
                "/api/v1/users",
                json!({"username": "lilei", "display_name": "李雷", "password": password, "role": "rep"}),
            )
            .await;
            assert_eq!(refused.status, 422, "{password}: {}", refused.body);
            let field = &refused.body["error"]["fields"][0];
            assert_eq!(
                (field["field"].as_str(), field["code"].as_str()),
                (Some("password"), Some(code)),
                "{password}"
            );
        }
        let passphrase = "the tea kettle on the windowsill sings every morning at seven, loudly";
        assert!(passphrase.chars().count() >= 64);
        admin
        .post(
            "/api/v1/users",
            json!({"username": "lilei", "display_name": "李雷", "password": passphrase, "role": "rep"}),
        )
        .await
        .expect(201);
        let pat = app.user("pat", "rep").await;
        let change = pat
        .put(
            "/api/v1/me/password",
            json!({"current_password": "correct horse battery", "new_password": "pat pat pat pat pat"}),
        )
        .await;
        assert_eq!(
            change.body["error"]["fields"][0]["code"], "contains_name",
            "{}",
            change.body
        );
    }
);

// A password an administrator chose (for a new user, or in a reset) is known to them: the user
// replaces it at their first login and can do nothing else until then.
on_both_backends!(
    a_password_an_administrator_set_is_replaced_at_first_login,
    |app| {
        let admin = app.admin().await;
        let created = admin
        .post(
            "/api/v1/users",
            json!({"username": "newbie", "password": "temporary kettle whistle", "role": "rep"}),
        )
        .await
        .expect(201);
        let id = created["id"].as_i64().unwrap();
        admin
            .patch(&format!("/api/v1/users/{id}"), json!({"approve": true}))
            .await
            .expect(200);
        let (reply, cookie) = login(&app, "newbie", "temporary kettle whistle").await;
        assert_eq!(reply.status, 200);
        let newbie = app.anonymous().with_cookie(&cookie.unwrap());
        newbie.get("/api/v1/me").await.expect(200);
        let refused = newbie.get("/api/v1/contacts").await;
        assert_eq!(refused.status, 403, "{}", refused.body);
        assert_eq!(
            refused.body["error"]["reasons"][0]["code"], "password_change_required",
            "{}",
            refused.body
        );
        newbie
        .put(
            "/api/v1/me/password",
            json!({"current_password": "temporary kettle whistle", "new_password": "my own quiet lighthouse"}),
        )
        .await
        .expect(200);
        let (_, cookie) = login(&app, "newbie", "my own quiet lighthouse").await;
        let newbie = app.anonymous().with_cookie(&cookie.unwrap());
        newbie.get("/api/v1/contacts").await.expect(200);

        // An administrator's reset sets the flag again; the user's own change clears it.
        admin
            .post(
                &format!("/api/v1/users/{id}/password"),
                json!({"password": "reset by the boss today"}),
            )
            .await
            .expect(200);
        let (_, cookie) = login(&app, "newbie", "reset by the boss today").await;
        let cookie = cookie.unwrap();
        let newbie = app.anonymous().with_cookie(&cookie);
        assert_eq!(newbie.get("/api/v1/contacts").await.status, 403);
        let home = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .get(format!("{}/", app.base_url))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(home.status(), 303);
        assert!(
            home.headers()["location"]
                .to_str()
                .unwrap()
                .starts_with("/settings")
        );
    }
);

// API tokens: made only from a signed-in session with the password again, never by a token,
// always with an expiry (90 days unless chosen, at most a year), optionally read-only; and a
// password change or reset revokes them.
on_both_backends!(
    api_tokens_need_the_password_expire_can_be_read_only_and_die_with_it,
    |app| {
        let token_client = app.user("dev", "manager").await;
        let (_, cookie) = login(&app, "dev", "correct horse battery").await;
        let browser = app.anonymous().with_cookie(&cookie.unwrap());
        let by_token = token_client
            .post(
                "/api/v1/me/tokens",
                json!({"name": "more", "password": "correct horse battery"}),
            )
            .await;
        assert_eq!(by_token.status, 403);
        assert_eq!(by_token.error_code(), "token_cannot_make_tokens");
        let wrong = browser
            .post(
                "/api/v1/me/tokens",
                json!({"name": "import", "password": "not my password"}),
            )
            .await;
        assert_eq!(
            wrong.body["error"]["fields"][0]["field"], "password",
            "{}",
            wrong.body
        );
        let too_long = browser
        .post(
            "/api/v1/me/tokens",
            json!({"name": "import", "password": "correct horse battery", "expires_in_days": 3650}),
        )
        .await;
        assert_eq!(too_long.body["error"]["fields"][0]["code"], "out_of_range");
        let made = browser
        .post(
            "/api/v1/me/tokens",
            json!({"name": "report script", "password": "correct horse battery", "read_only": true}),
        )
        .await
        .expect(201);
        let expires =
            holdfast_domain::Timestamp::parse_rfc3339(made["expires_at"].as_str().unwrap())
                .unwrap();
        let ninety = app.app.now().plus_days(90).micros();
        assert!(
            (expires.micros() - ninety).abs() < 1_000_000,
            "90 days unless chosen"
        );
        let reader = app.client_with_token(token_client.user_id, made["secret"].as_str().unwrap());
        reader.get("/api/v1/contacts").await.expect(200);
        let write = reader
            .post("/api/v1/contacts", json!({"name": "不该创建"}))
            .await;
        assert_eq!(write.status, 403);
        assert_eq!(write.error_code(), "token_read_only");
        assert_eq!(
            token_client
                .get("/api/v1/contacts?q=不该创建")
                .await
                .expect(200)["items"],
            json!([])
        );

        // Changing the password revokes every token, and says how many.
        let changed = browser
        .put(
            "/api/v1/me/password",
            json!({"current_password": "correct horse battery", "new_password": "a brand new lighthouse"}),
        )
        .await
        .expect(200);
        assert_eq!(changed["tokens_revoked"], 2);
        assert_eq!(reader.get("/api/v1/contacts").await.status, 401);
        assert_eq!(token_client.get("/api/v1/contacts").await.status, 401);
        app.clock.advance_seconds(91 * 24 * 3600);
        let (_, cookie) = login(&app, "dev", "a brand new lighthouse").await;
        let browser = app.anonymous().with_cookie(&cookie.unwrap());
        let made = browser
        .post(
            "/api/v1/me/tokens",
            json!({"name": "short", "password": "a brand new lighthouse", "expires_in_days": 1}),
        )
        .await
        .expect(201);
        let short = app.client_with_token(token_client.user_id, made["secret"].as_str().unwrap());
        short.get("/api/v1/me").await.expect(200);
        app.clock.advance_seconds(24 * 3600 + 1);
        assert_eq!(short.get("/api/v1/me").await.error_code(), "invalid_token");

        // An administrator's reset revokes them too.
        let admin = app.admin().await;
        let (_, cookie) = login(&app, "dev", "a brand new lighthouse").await;
        let browser = app.anonymous().with_cookie(&cookie.unwrap());
        let made = browser
            .post(
                "/api/v1/me/tokens",
                json!({"name": "again", "password": "a brand new lighthouse"}),
            )
            .await
            .expect(201);
        let again = app.client_with_token(token_client.user_id, made["secret"].as_str().unwrap());
        admin
            .post(
                &format!("/api/v1/users/{}/password", token_client.user_id),
                json!({"password": "the boss chose this one"}),
            )
            .await
            .expect(200);
        assert_eq!(again.get("/api/v1/me").await.status, 401);
    }
);

// Guesses sent all at once cannot all pass the throttle before any failure is recorded: each
// attempt counts before its password is checked, so at most the limit reach the check.
on_both_backends!(parallel_guesses_cannot_outrun_the_throttle, |app| {
    app.user("target", "rep").await;
    let limit = app.app.config.login_max_failures_per_account as usize;
    let guesses = (0..20).map(|i| {
        let client = app.anonymous();
        async move {
            client
                .post(
                    "/api/v1/auth/login",
                    json!({"username": "target", "password": format!("guess number {i} here")}),
                )
                .await
        }
    });
    let replies = crate::hostile::futures_join_all(guesses).await;
    let checked = replies.iter().filter(|r| r.status == 401).count();
    let throttled = replies.iter().filter(|r| r.status == 429).count();
    assert_eq!(checked + throttled, 20);
    assert!(
        checked <= limit,
        "{checked} guesses reached the password check (limit {limit})"
    );
    assert!(
        throttled >= 20 - limit,
        "the rest were throttled: {throttled}"
    );
});

async fn spawn_behind_a_proxy(backend: holdfast_test_support::Backend) -> Option<TestApp> {
    let config = holdfast_app::AppConfig {
        trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
        login_max_failures_per_address: 3,
        login_max_failures_per_account: 100,
        ..Default::default()
    };
    holdfast_test_support::spawn_app_with(backend, config).await
}

// Behind a trusted reverse proxy every client arrives from the proxy's address; throttling must
// count the client the proxy names, or one guesser locks out the whole office. IPv6 clients
// count per /64, so rotating addresses within one does not help a guesser.
on_both_backends!(
    throttling_counts_the_client_a_trusted_proxy_names_and_ipv6_per_64,
    spawn_behind_a_proxy,
    |app| {
        app.user("clerk", "rep").await;
        let http = reqwest::Client::new();
        let attempt = |client: &'static str, password: &'static str| {
            http.post(format!("{}/api/v1/auth/login", app.base_url))
                .header("x-forwarded-for", client)
                .json(&json!({"username": "clerk", "password": password}))
                .send()
        };
        for _ in 0..3 {
            assert_eq!(
                attempt("198.51.100.7", "wrong guess here")
                    .await
                    .unwrap()
                    .status(),
                401
            );
        }
        assert_eq!(
            attempt("198.51.100.7", "wrong guess here")
                .await
                .unwrap()
                .status(),
            429
        );
        // Another client through the same proxy is not affected.
        assert_eq!(
            attempt("203.0.113.20", "correct horse battery")
                .await
                .unwrap()
                .status(),
            200
        );
        // The audit log names the client, not the proxy.
        let log = app
            .admin()
            .await
            .get("/api/v1/audit?action=auth.login")
            .await
            .expect(200);
        assert_eq!(log["items"][0]["client"], "203.0.113.20", "{log}");

        // One /64 is one client.
        for address in ["2001:db8:0:5::1", "2001:db8:0:5::2", "2001:db8:0:5::3"] {
            assert_eq!(
                attempt(address, "wrong guess here").await.unwrap().status(),
                401
            );
        }
        assert_eq!(
            attempt("2001:db8:0:5::99", "wrong guess here")
                .await
                .unwrap()
                .status(),
            429
        );
        assert_eq!(
            attempt("2001:db8:0:6::1", "correct horse battery")
                .await
                .unwrap()
                .status(),
            200
        );
    }
);

// An administrator sees who is throttled and can let a locked-out user back in; audited.
on_both_backends!(administrators_see_and_lift_login_throttles, |app| {
    app.user("locked", "rep").await;
    let admin = app.admin().await;
    // Someone at this client guesses: past the free failures for this account from this
    // client, attempts wait (the manual clock stands still, so the wait does not run out).
    let free = app.app.config.login_max_failures_per_client_and_account;
    for _ in 0..free {
        assert_eq!(
            login(&app, "locked", "someone else's guess").await.0.status,
            401
        );
    }
    let (refused, _) = login(&app, "locked", "correct horse battery").await;
    assert_eq!(refused.status, 429);
    let listed = admin.get("/api/v1/auth/throttles").await.expect(200);
    let entry = |key: &str| {
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["key"] == key)
            .cloned()
            .unwrap_or_else(|| panic!("{key}: {listed}"))
    };
    let pair = entry("pair:locked|127.0.0.1");
    assert_eq!(pair["failures"], free);
    assert!(pair["blocked_until"].is_string(), "{pair}");
    // The account itself is below its own (softer) limit: from another client it is not slowed.
    let account = entry("user:locked");
    assert_eq!(account["failures"], free);
    assert!(account["blocked_until"].is_null(), "{account}");
    let rep = app.user("nosy", "rep").await;
    assert_eq!(rep.get("/api/v1/auth/throttles").await.status, 403);
    let cleared = admin
        .delete("/api/v1/auth/throttles?key=pair:locked%7C127.0.0.1")
        .await
        .expect(200);
    assert_eq!(cleared["cleared"], free);
    let (signed_in, _) = login(&app, "locked", "correct horse battery").await;
    assert_eq!(signed_in.status, 200);
    let log = admin
        .get("/api/v1/audit?action=auth.throttle_cleared")
        .await
        .expect(200);
    assert_eq!(
        log["items"][0]["detail"]["key"], "pair:locked|127.0.0.1",
        "{log}"
    );
});
