//! Two-step sign-in (TOTP and recovery codes), the per-role policy and its enrolment gate,
//! step-up before sensitive actions, sign-in history and security notices, back-off that a
//! stranger cannot turn into a lockout, "remember this device", and what administrators can
//! do about other users' sign-in. TOTP codes are computed from the secret at the test clock's
//! time, as a phone would.

use holdfast_app::two_factor::code_at;
use holdfast_test_support::{Client, TestApp, on_both_backends};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A browser of its own: its user agent, the address a trusted proxy says it has, and the
/// cookies Holdfast gave it (session, remembered device).
struct Browser {
    http: reqwest::Client,
    base: String,
    agent: &'static str,
    address: Option<&'static str>,
    session: Option<String>,
    device: Option<String>,
}

struct Answer {
    status: StatusCode,
    body: Value,
    retry_after: Option<i64>,
}

impl Browser {
    fn new(app: &TestApp, agent: &'static str) -> Browser {
        Browser {
            http: reqwest::Client::new(),
            base: app.base_url.clone(),
            agent,
            address: None,
            session: None,
            device: None,
        }
    }

    fn at(mut self, address: &'static str) -> Browser {
        self.address = Some(address);
        self
    }

    async fn post(&mut self, path: &str, body: Value) -> Answer {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("user-agent", self.agent)
            .json(&body);
        if let Some(address) = self.address {
            request = request.header("x-forwarded-for", address);
        }
        let cookies: Vec<String> = [
            self.session
                .as_ref()
                .map(|s| format!("holdfast_session={s}")),
            self.device.as_ref().map(|d| format!("holdfast_device={d}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !cookies.is_empty() {
            request = request.header("cookie", cookies.join("; "));
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()?.parse().ok());
        for cookie in response.headers().get_all("set-cookie") {
            let pair = cookie
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_owned();
            if let Some(value) = pair.strip_prefix("holdfast_session=") {
                self.session = Some(value.to_owned()).filter(|v| !v.is_empty());
            }
            if let Some(value) = pair.strip_prefix("holdfast_device=") {
                self.device = Some(value.to_owned()).filter(|v| !v.is_empty());
            }
        }
        let body = response.json().await.unwrap_or(Value::Null);
        Answer {
            status,
            body,
            retry_after,
        }
    }

    async fn login(&mut self, username: &str, password: &str) -> Answer {
        self.post(
            "/api/v1/auth/login",
            json!({"username": username, "password": password}),
        )
        .await
    }

    /// Password, then the code: a whole two-step sign-in.
    async fn login_with_code(&mut self, username: &str, code: &str) -> Answer {
        let first = self.login(username, "correct horse battery").await;
        assert_eq!(first.status, 200, "{}", first.body);
        assert_eq!(first.body["second_factor_required"], true, "{}", first.body);
        let token = first.body["sign_in_token"].as_str().unwrap().to_owned();
        self.post(
            "/api/v1/auth/second-factor",
            json!({"sign_in_token": token, "code": code}),
        )
        .await
    }

    /// The API as this browser's session.
    fn client(&self, app: &TestApp) -> Client {
        app.anonymous().with_cookie(&format!(
            "holdfast_session={}",
            self.session.as_deref().unwrap()
        ))
    }
}

fn now_seconds(app: &TestApp) -> u64 {
    (app.app.now().micros() / 1_000_000) as u64
}

/// Enrols an authenticator app for the browser's user; returns the secret and the recovery codes.
async fn enrol(app: &TestApp, browser: &Browser) -> (String, Vec<String>) {
    let me = browser.client(app);
    let started = me
        .post("/api/v1/me/two-factor/totp", json!({}))
        .await
        .expect(201);
    let secret = started["secret"].as_str().unwrap().to_owned();
    assert!(
        started["otpauth_url"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/Holdfast:"),
        "{started}"
    );
    let wrong = me
        .post(
            "/api/v1/me/two-factor/totp/confirm",
            json!({"factor_id": started["factor_id"], "code": "000000"}),
        )
        .await;
    assert_eq!(wrong.status, 422);
    assert_eq!(wrong.body["error"]["fields"][0]["code"], "wrong_code");
    let code = code_at(&secret, now_seconds(app)).unwrap();
    let done = me
        .post(
            "/api/v1/me/two-factor/totp/confirm",
            json!({"factor_id": started["factor_id"], "code": code}),
        )
        .await
        .expect(200);
    let codes: Vec<String> = done["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 10);
    (secret, codes)
}

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
        let app = holdfast_test_support::open_with_system_clock(&db.url).await;
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
        let app = holdfast_test_support::open_with_system_clock(&db.url).await;
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
