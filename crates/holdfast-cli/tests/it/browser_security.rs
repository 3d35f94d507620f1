//! The security pages in real Chromium, in each language: the incident plan, writing a
//! security policy (which its author is then asked to confirm, like everyone), the scored
//! checklist, the security basics, and the Holdfast instances on the Backups page with an
//! upgrade waiting. Screenshots land in
//! `target/screenshots/<lang>-security-*.png`.

use crate::browser::{Journey, login, open_browser};
use fantoccini::Locator;
use holdfast_test_support::{TestApp, spawn_app};

async fn journey(app: &TestApp, driver: &crate::browser::Driver, lang: &'static str) {
    app.user("boss", "admin").await;
    let shots =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let profile = tempfile::tempdir().unwrap();
    let a = Journey {
        browser: open_browser(driver, lang, profile.path()).await,
        base: &app.base_url,
        lang,
        shots,
    };
    login(&a, "boss").await;
    a.go("/admin/incident").await;
    let (contain, policy_text, confirm_page, score) = match lang {
        "en" => (
            "1. Contain",
            "Never export customers to a personal device.",
            "Our security policy",
            "Score:",
        ),
        _ => (
            "1. 控制",
            "不要把客户资料导出到个人设备。",
            "我们的安全制度",
            "得分：",
        ),
    };
    assert!(a.text("#plan").await.contains(contain));
    a.shot("security-incident-plan").await;
    a.browser
        .find(Locator::Css("#policy textarea"))
        .await
        .unwrap()
        .send_keys(policy_text)
        .await
        .unwrap();
    a.click("#policy button[type=submit]").await;
    // Its author confirms it like everyone else before going on.
    assert_eq!(a.path().await, "/policy");
    assert!(a.text("article#policy").await.contains(confirm_page));
    assert!(a.text(".policy-text").await.contains(policy_text));
    a.shot("security-policy").await;
    a.click("article#policy button[type=submit]").await;
    assert_eq!(a.path().await, "/admin/incident");
    a.go("/admin/security").await;
    assert!(a.text("#checklist").await.contains(score));
    a.shot("security-checklist").await;
    a.go("/security-basics").await;
    a.shot("security-basics").await;
    // This instance serving, and a newer Holdfast that the database is behind.
    let now = app.app.now();
    let serving = holdfast_app::upgrade::this_instance("serving", now, now, true);
    holdfast_app::upgrade::report_instance(&app.app.db, &serving)
        .await
        .unwrap();
    let mut newer = holdfast_app::upgrade::this_instance("newer", now, now, false);
    newer.schema_wanted += 1;
    newer.holdfast_version = "9.9.9".into();
    holdfast_app::upgrade::report_instance(&app.app.db, &newer)
        .await
        .unwrap();
    a.go("/admin/backups#instances").await;
    let waiting = match lang {
        "en" => "An upgrade is waiting",
        _ => "有升级在等待",
    };
    assert!(a.text("#instances").await.contains(waiting));
    a.shot("security-instances").await;
    a.browser.close().await.unwrap();
}

crate::browser::journey_in_both_languages!(
    the_security_pages_in_the_browser_on_sqlite,
    the_security_pages_in_the_browser_on_postgres,
    spawn_app,
    journey
);
