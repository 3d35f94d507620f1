//! The web pages check who is asking: every page route from the page table, anonymous, as a
//! member and across sites. Logged-out visitors see only login and setup; forms without the
//! anti-forgery token change nothing.

use holdfast_test_support::{TestApp, on_both_backends};
use reqwest::redirect::Policy;
use serde_json::json;

pub(crate) const CSRF: &str = "0123456789abcdef0123456789abcdef";

pub(crate) fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// Every page path with its parameters filled in.
fn concrete(path: &str) -> String {
    path.replace("{collection}", "contacts")
        .replace("{id}", "1")
        .replace("{version}", "1")
}

/// A session cookie for a new user with `role`.
async fn session(app: &TestApp, username: &str, role: &str) -> String {
    app.user(username, role).await;
    let response = http()
        .post(format!("{}/api/v1/auth/login", app.base_url))
        .json(&json!({"username": username, "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let cookie = response.headers()["set-cookie"].to_str().unwrap();
    cookie.split(';').next().unwrap().to_owned()
}

/// The anti-forgery token a page shows a signed-in browser: derived from its session.
pub(crate) fn session_token(cookies: &str) -> Option<String> {
    cookies
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == holdfast_web::extract::SESSION_COOKIE)
        .map(|(_, token)| holdfast_web::views::session_csrf(token))
}

/// Posts a form as the browser would after loading its page: a `csrf` field given as [`CSRF`]
/// becomes the token the page would have shown (the session's, when signed in).
pub(crate) async fn post_form(
    app: &TestApp,
    path: &str,
    cookies: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let token = session_token(cookies).unwrap_or_else(|| CSRF.to_owned());
    let fields: Vec<(&str, &str)> = fields
        .iter()
        .map(|(name, value)| match (*name, *value) {
            ("csrf", CSRF) => (*name, token.as_str()),
            other => other,
        })
        .collect();
    http()
        .post(format!("{}{path}", app.base_url))
        .header("Cookie", cookies)
        .form(&fields)
        .send()
        .await
        .unwrap()
}

/// Audit entries other than refusals (which are written, but change nothing).
async fn audit_entries(app: &holdfast_test_support::TestApp) -> i64 {
    app.app
        .db
        .query_i64_for_tests("SELECT COUNT(*) FROM audit_log WHERE action <> 'access.refused'")
        .await
        .unwrap()
}

on_both_backends!(logged_out_visitors_reach_only_login_and_setup, |app| {
    let admin = app.admin().await;
    admin.create("contacts", json!({"name": "Hidden"})).await;
    let audit = audit_entries(&app).await;
    let (_, pages) = holdfast_web::views::pages();
    assert!(pages.len() > 20, "the page table lists every page");
    for page in &pages {
        let path = concrete(page.path);
        for method in page.methods {
            let response = match *method {
                "GET" => http()
                    .get(format!("{}{path}", app.base_url))
                    .send()
                    .await
                    .unwrap(),
                _ => {
                    post_form(
                        &app,
                        &path,
                        &format!("holdfast_csrf={CSRF}"),
                        &[
                            ("csrf", CSRF),
                            ("name", "x"),
                            ("username", "x"),
                            ("password", "x"),
                        ],
                    )
                    .await
                }
            };
            let status = response.status().as_u16();
            let location = response
                .headers()
                .get("location")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            let body = response.text().await.unwrap();
            if page.public {
                assert!(status < 500, "{method} {path}: {status}");
                assert!(!body.contains("Hidden"), "{method} {path} shows a record");
            } else {
                assert_eq!(
                    status, 303,
                    "{method} {path} answered a visitor with {status}: {body}"
                );
                assert!(
                    location.starts_with("/login"),
                    "{method} {path} → {location}"
                );
            }
        }
    }
    // Public posts that did something on their own (a failed login, a language) are not record changes.
    let after = audit_entries(&app).await;
    assert_eq!(after, audit, "a logged-out visitor changed something");
});

on_both_backends!(
    administration_pages_refuse_members_and_say_who_can_help,
    |app| {
        app.admin().await;
        let member = session(&app, "rep", "rep").await;
        let audit = audit_entries(&app).await;
        let cookies = format!("{member}; holdfast_csrf={CSRF}");
        let (_, pages) = holdfast_web::views::pages();
        for page in pages.iter().filter(|p| p.admin) {
            let path = concrete(page.path);
            for method in page.methods {
                let response = match *method {
                    "GET" => http()
                        .get(format!("{}{path}", app.base_url))
                        .header("Cookie", &cookies)
                        .send()
                        .await
                        .unwrap(),
                    _ => {
                        post_form(
                            &app,
                            &path,
                            &cookies,
                            &[
                                ("csrf", CSRF),
                                ("username", "sneaky"),
                                ("display_name", "S"),
                                ("password", "long enough password"),
                                ("role", "admin"),
                                ("active", "false"),
                            ],
                        )
                        .await
                    }
                };
                assert_eq!(response.status(), 403, "{method} {path}");
                let body = response.text().await.unwrap();
                assert!(
                    body.contains("Your role does not allow this")
                        && body.contains("Who can change this: admin"),
                    "{body}"
                );
            }
        }
        assert_eq!(audit_entries(&app).await, audit);
        assert!(
            app.app
                .db
                .user_by_username("sneaky")
                .await
                .unwrap()
                .is_none()
        );
    }
);

on_both_backends!(forms_without_the_anti_forgery_token_change_nothing, |app| {
    let member = session(&app, "rep", "rep").await;
    let right = session_token(&member).unwrap();
    let audit = audit_entries(&app).await;
    let attempts = [
        // No token at all.
        (
            format!("{member}; holdfast_csrf={CSRF}"),
            vec![("name", "Forged")],
            None,
        ),
        // A token that does not match the cookie.
        (
            format!("{member}; holdfast_csrf={CSRF}"),
            vec![
                ("name", "Forged"),
                ("csrf", "ffffffffffffffffffffffffffffffff"),
            ],
            None,
        ),
        // A cookie and token pair planted in the browser (say, by a sibling site): the token is
        // not this session's.
        (
            format!("{member}; holdfast_csrf={CSRF}"),
            vec![("name", "Forged"), ("csrf", CSRF)],
            None,
        ),
        // The right token, posted from another site, or from a sandboxed frame (Origin: null).
        (
            member.clone(),
            vec![("name", "Forged"), ("csrf", &right)],
            Some("http://evil.example"),
        ),
        (
            member.clone(),
            vec![("name", "Forged"), ("csrf", &right)],
            Some("null"),
        ),
    ];
    for (cookies, fields, origin) in attempts {
        let mut request = http()
            .post(format!("{}/contacts", app.base_url))
            .header("Cookie", &cookies)
            .form(&fields);
        if let Some(origin) = origin {
            request = request.header("Origin", origin);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 403, "{fields:?} {origin:?}");
        assert!(
            response
                .text()
                .await
                .unwrap()
                .contains("could not be accepted")
        );
    }
    assert_eq!(audit_entries(&app).await, audit);
    // The same form with its token goes through, in one audited change.
    let ok = post_form(
        &app,
        "/contacts",
        &format!("{member}; holdfast_csrf={CSRF}"),
        &[("csrf", CSRF), ("name", "Real")],
    )
    .await;
    assert_eq!(ok.status(), 303);
    assert_eq!(audit_entries(&app).await, audit + 1);
});

on_both_backends!(
    forms_show_errors_in_the_users_language_and_keep_what_was_typed,
    |app| {
        let member = session(&app, "rep", "rep").await;
        let cookies = format!("{member}; holdfast_csrf={CSRF}");
        let token = session_token(&member).unwrap();
        let form = [
            ("csrf", token.as_str()),
            ("name", ""),
            ("email", "nope"),
            ("mobile", "call me"),
        ];
        for (language, required, email) in [
            ("en-GB,en;q=0.9", "Required.", "Not an email address"),
            ("zh-CN,zh;q=0.9", "必填。", "不是有效的邮箱地址"),
        ] {
            let response = http()
                .post(format!("{}/contacts", app.base_url))
                .header("Cookie", &cookies)
                .header("Accept-Language", language)
                .form(&form)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 422);
            let body = response.text().await.unwrap();
            assert!(
                body.contains(required) && body.contains(email),
                "{language}: {body}"
            );
            assert!(body.contains("value=\"call me\""), "what was typed stays");
        }
        assert_eq!(app.app.db.count_rows("contacts").await.unwrap(), 0);
    }
);

on_both_backends!(an_edit_that_lost_a_race_shows_both_versions, |app| {
    let member = session(&app, "rep", "rep").await;
    let admin = app.admin().await;
    let rep_id = app.app.db.users().await.unwrap()[0].id;
    let id = admin
        .create(
            "contacts",
            json!({"name": "Zhang Wei", "title": "Buyer", "owner_id": rep_id}),
        )
        .await;
    // Someone else saves version 2 while the rep's form still says version 1.
    admin
        .patch(
            &format!("/api/v1/contacts/{id}"),
            json!({"title": "Head of purchasing", "expected_version": 1}),
        )
        .await
        .expect(200);
    let cookies = format!("{member}; holdfast_csrf={CSRF}");
    let stale = [
        ("csrf", CSRF),
        ("expected_version", "1"),
        ("name", "Zhang Wei"),
        ("title", "Chief buyer"),
    ];
    let response = post_form(&app, &format!("/contacts/{id}/edit"), &cookies, &stale).await;
    assert_eq!(response.status(), 409);
    let body = response.text().await.unwrap();
    assert!(
        body.contains("Head of purchasing") && body.contains("Chief buyer"),
        "{body}"
    );
    assert!(
        body.contains("name=\"expected_version\" value=\"2\""),
        "keeping mine is based on the saved version"
    );
    let current = admin
        .get(&format!("/api/v1/contacts/{id}"))
        .await
        .expect(200);
    assert_eq!(
        current["title"], "Head of purchasing",
        "nothing was overwritten"
    );
    // Choosing "save my version" is a deliberate second step.
    let mine = [
        ("csrf", CSRF),
        ("expected_version", "2"),
        ("name", "Zhang Wei"),
        ("title", "Chief buyer"),
    ];
    assert_eq!(
        post_form(&app, &format!("/contacts/{id}/edit"), &cookies, &mine)
            .await
            .status(),
        303
    );
    let current = admin
        .get(&format!("/api/v1/contacts/{id}"))
        .await
        .expect(200);
    assert_eq!(current["title"], "Chief buyer");
});
