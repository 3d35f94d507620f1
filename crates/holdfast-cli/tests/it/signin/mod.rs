//! Two-step sign-in (TOTP and recovery codes), the per-role policy and its enrolment gate,
//! step-up before sensitive actions, sign-in history and security notices, back-off that a
//! stranger cannot turn into a lockout, "remember this device", and what administrators can
//! do about other users' sign-in. TOTP codes are computed from the secret at the test clock's
//! time, as a phone would.

pub(crate) use holdfast_app::two_factor::code_at;
use holdfast_test_support::{Client, TestApp};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A browser of its own: its user agent, the address a trusted proxy says it has, and the
/// cookies Holdfast gave it (session, remembered device).
pub(crate) struct Browser {
    http: reqwest::Client,
    base: String,
    agent: &'static str,
    address: Option<&'static str>,
    pub(crate) session: Option<String>,
    pub(crate) device: Option<String>,
}

pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
    pub(crate) retry_after: Option<i64>,
}

impl Browser {
    pub(crate) fn new(app: &TestApp, agent: &'static str) -> Browser {
        Browser {
            http: reqwest::Client::new(),
            base: app.base_url.clone(),
            agent,
            address: None,
            session: None,
            device: None,
        }
    }

    pub(crate) fn at(mut self, address: &'static str) -> Browser {
        self.address = Some(address);
        self
    }

    pub(crate) async fn post(&mut self, path: &str, body: Value) -> Answer {
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

    pub(crate) async fn login(&mut self, username: &str, password: &str) -> Answer {
        self.post(
            "/api/v1/auth/login",
            json!({"username": username, "password": password}),
        )
        .await
    }

    /// Password, then the code: a whole two-step sign-in.
    pub(crate) async fn login_with_code(&mut self, username: &str, code: &str) -> Answer {
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
    pub(crate) fn client(&self, app: &TestApp) -> Client {
        app.anonymous().with_cookie(&format!(
            "holdfast_session={}",
            self.session.as_deref().unwrap()
        ))
    }
}

pub(crate) fn now_seconds(app: &TestApp) -> u64 {
    (app.app.now().micros() / 1_000_000) as u64
}

/// Enrols an authenticator app for the browser's user; returns the secret and the recovery codes.
pub(crate) async fn enrol(app: &TestApp, browser: &Browser) -> (String, Vec<String>) {
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

mod guards;
mod two_step;
