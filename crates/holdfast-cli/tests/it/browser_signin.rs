//! Two-step sign-in in real Chromium, in each language: enrol an authenticator app from the
//! page (the test reads the key shown beside the QR code and computes codes as a phone would),
//! sign out, sign in with a code, then with a recovery code, answer the security notice, add
//! a passkey with Chromium's virtual authenticator and sign in with it alone. Screenshots land
//! in `target/screenshots/<lang>-signin-*.png`.
//!
//! The browser reaches the server as `localhost`: browsers refuse passkeys on a bare IP
//! address.

use crate::browser::{Journey, open_browser};
use fantoccini::Locator;
use holdfast_app::two_factor::code_at;
use holdfast_test_support::{TestApp, spawn_app};
use serde_json::json;
use std::time::Duration;

/// WebDriver's "add virtual authenticator": a platform authenticator that verifies its user
/// and keeps passkeys, as a laptop's fingerprint reader does.
#[derive(Debug)]
struct AddVirtualAuthenticator;

impl fantoccini::wd::WebDriverCompatibleCommand for AddVirtualAuthenticator {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/webauthn/authenticator",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({
            "protocol": "ctap2",
            "transport": "internal",
            "hasResidentKey": true,
            "hasUserVerification": true,
            "isUserVerified": true,
            "automaticPresenceSimulation": true,
        });
        (http::Method::POST, Some(body.to_string()))
    }
}

fn now_seconds(app: &TestApp) -> u64 {
    (app.app.now().micros() / 1_000_000) as u64
}

impl Journey<'_> {
    /// Clicks a button whose script navigates when it is done (passkeys) and waits for the
    /// new page at `path`; a problem the script shows instead fails the test with its words.
    async fn click_and_wait_for(&self, css: &str, path: &str) {
        self.browser
            .execute("window.__old_page = true;", vec![])
            .await
            .unwrap();
        self.browser
            .find(Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        for _ in 0..400 {
            let state = self
                .browser
                .execute(
                    "if (window.__old_page === undefined) { return document.readyState === 'complete' ? 'loaded' : 'loading'; }
                     const problem = document.querySelector('.passkey-only .problems');
                     return problem ? 'problem: ' + problem.textContent : 'waiting';",
                    vec![],
                )
                .await;
            match state {
                Ok(serde_json::Value::String(state)) if state == "loaded" => {
                    assert_eq!(self.path().await, path);
                    return;
                }
                Ok(serde_json::Value::String(state)) if state.starts_with("problem") => {
                    panic!("{css}: {state}")
                }
                _ => tokio::time::sleep(Duration::from_millis(25)).await,
            }
        }
        panic!("{css} did not lead to {path}: {}", self.body().await);
    }

    async fn sign_out(&self) {
        self.click("form[action='/logout'] button").await;
        assert_eq!(self.path().await, "/login");
    }

    async fn password(&self, username: &str) {
        self.go("/login").await;
        self.fill("input[name=username]", username).await;
        self.fill("input[name=password]", "correct horse battery")
            .await;
        self.click("form.stack button[type=submit]").await;
    }
}

async fn journey(app: &TestApp, driver: &crate::browser::Driver, lang: &'static str) {
    let mei = app.user("mei", "rep").await.user_id;
    let shots =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let profile = tempfile::tempdir().unwrap();
    let browser = open_browser(driver, lang, profile.path()).await;
    browser.issue_cmd(AddVirtualAuthenticator).await.unwrap();
    let base = app.base_url.replace("127.0.0.1", "localhost");
    let j = Journey {
        browser,
        base: &base,
        lang,
        shots,
    };
    let (add_app, turn_on, recovery_title, notices) = match lang {
        "en" => (
            "Add an authenticator app",
            "Turn on",
            "recovery codes",
            "Security notices",
        ),
        _ => ("添加身份验证器应用", "开启", "恢复码", "安全提醒"),
    };

    // Enrol: the QR code and the key as text, then a code from the "phone".
    j.password("mei").await;
    assert_eq!(j.path().await, "/");
    j.go("/settings").await;
    let start = j
        .browser
        .find(Locator::Css(
            "form[action='/settings/two-factor/totp'] button",
        ))
        .await
        .unwrap();
    assert_eq!(start.text().await.unwrap(), add_app);
    j.click("form[action='/settings/two-factor/totp'] button")
        .await;
    assert!(
        j.browser
            .find(Locator::Css("#enrol .qr svg path"))
            .await
            .is_ok(),
        "a QR code is drawn"
    );
    j.shot("signin-enrol").await;
    let secret = j.text("#totp-secret").await.replace(' ', "");
    j.fill(
        "#enrol input[name=code]",
        &code_at(&secret, now_seconds(app)).unwrap(),
    )
    .await;
    let button = j.text("#enrol button[type=submit]").await;
    assert_eq!(button, turn_on);
    j.click("#enrol button[type=submit]").await;
    assert!(j.text("#recovery-codes").await.contains(recovery_title));
    let codes: Vec<String> = {
        let mut codes = Vec::new();
        for element in j
            .browser
            .find_all(Locator::Css("#recovery-codes code"))
            .await
            .unwrap()
        {
            codes.push(element.text().await.unwrap());
        }
        codes
    };
    assert_eq!(codes.len(), 10);
    j.shot("signin-recovery-codes").await;

    // Sign out; the password now leads to the second step.
    j.sign_out().await;
    j.password("mei").await;
    assert_eq!(j.path().await, "/login/second-factor");
    j.shot("signin-second-step").await;
    app.clock.advance_seconds(30);
    j.fill(
        "input[name=code]",
        &code_at(&secret, now_seconds(app)).unwrap(),
    )
    .await;
    j.click("form[action='/login/second-factor'] button[type=submit]")
        .await;
    assert_eq!(j.path().await, "/");

    // A recovery code instead of the phone.
    j.sign_out().await;
    j.password("mei").await;
    j.fill("input[name=code]", &codes[0]).await;
    j.click("form[action='/login/second-factor'] button[type=submit]")
        .await;
    assert_eq!(j.path().await, "/");
    let card = j.text("#security-notices").await;
    assert!(card.contains(notices), "{card}");
    j.shot("signin-notices").await;
    let before = j
        .browser
        .find_all(Locator::Css("#security-notices li"))
        .await
        .unwrap()
        .len();
    j.click("#security-notices li form[action$='/ack'] button")
        .await;
    let after = j
        .browser
        .find_all(Locator::Css("#security-notices li"))
        .await
        .map(|items| items.len())
        .unwrap_or(0);
    assert_eq!(after, before - 1, "the notice was put away");

    // A passkey, made by the virtual authenticator, then signing in with it alone.
    j.go("/settings").await;
    j.fill("#passkey-name", "Office laptop").await;
    j.click_and_wait_for("button[data-passkey=register]", "/settings")
        .await;
    let section = j.text("#two-factor").await;
    assert!(section.contains("Office laptop"), "{section}");
    j.shot("signin-passkey-added").await;
    j.sign_out().await;
    j.fill("input[name=username]", "mei").await;
    j.click_and_wait_for("button[data-passkey=login]", "/")
        .await;
    let history = app.app.db.login_events(None, 1).await.unwrap().remove(0);
    assert_eq!(history.method, "passkey");
    assert_eq!(history.outcome, "success");
    // The passkey as the second step after the password, and to confirm it's you.
    j.sign_out().await;
    j.password("mei").await;
    assert_eq!(j.path().await, "/login/second-factor");
    j.click_and_wait_for("button[data-passkey=second-factor]", "/")
        .await;
    app.clock.advance_seconds(11 * 60);
    j.go("/confirm?next=/settings").await;
    j.shot("signin-confirm").await;
    j.click_and_wait_for("button[data-passkey=confirm]", "/settings")
        .await;
    let last = app.app.db.login_events(None, 1).await.unwrap().remove(0);
    assert_eq!(last.method, "password+passkey");
    j.shot("signin-history").await;
    let confirmed = app
        .app
        .db
        .query_i64_for_tests("SELECT COUNT(*) FROM audit_log WHERE action = 'auth.step_up'")
        .await
        .unwrap();
    assert_eq!(confirmed, 1, "the passkey confirmed the session");

    // An administrator sees who has enrolled, and the sign-ins.
    j.sign_out().await;
    app.user("boss", "admin").await;
    j.password("boss").await;
    j.go("/admin/sign-in").await;
    let enrolment = j.text("#enrolment").await;
    assert!(enrolment.contains("mei"), "{enrolment}");
    j.shot("signin-admin").await;
    // And everything mei did, for an incident report.
    j.go(&format!("/admin/timeline?user_id={mei}")).await;
    let timeline = j.text("#timeline").await;
    assert!(timeline.contains("sign_in.success"), "{timeline}");
    j.shot("incident-timeline").await;
    j.browser.close().await.unwrap();
}

crate::browser::journey_in_both_languages!(
    two_step_sign_in_and_passkeys_in_the_browser_on_sqlite,
    two_step_sign_in_and_passkeys_in_the_browser_on_postgres,
    spawn_app,
    journey
);
