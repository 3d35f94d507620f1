//! An incident in real Chromium, in each language: a rep deletes customers one after another
//! until the mass-delete guard stops them; the alert goes out to the team's webhook (a local
//! receiver); the administrator finds the notice on the home page and the delivered alert on
//! the Security page, opens the rep's timeline from the guard card, previews undoing the rep's
//! changes, applies it, and releases the guard. Screenshots land in
//! `target/screenshots/<lang>-incident-*.png`.

use crate::browser::{Journey, login, open_browser};
use fantoccini::Locator;
use holdfast_test_support::{Backend, TestApp};
use serde_json::json;

async fn spawn_with_a_small_delete_guard(backend: Backend) -> Option<TestApp> {
    let (receiver, _inbox) = crate::alerts::webhook_receiver().await;
    let config = holdfast_app::AppConfig {
        guards: holdfast_app::guards::Limits {
            deletes: 3,
            ..Default::default()
        },
        alerts: holdfast_app::alerts::Config {
            allow_private_addresses: true,
            webhooks: vec![holdfast_app::alerts::Webhook {
                name: "ops-room".into(),
                kind: holdfast_app::alerts::WebhookKind::Generic,
                url: format!("{receiver}/hook"),
                secret: Some("a long enough shared secret".into()),
            }],
            ..Default::default()
        },
        ..Default::default()
    };
    holdfast_test_support::spawn_app_with(backend, config).await
}

async fn delete_in_page(j: &Journey<'_>, id: i64) {
    j.go(&format!("/contacts/{id}")).await;
    j.browser
        .find(Locator::Css("details.delete summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    j.click("details.delete button[type=submit]").await;
}

async fn journey(app: &TestApp, driver: &crate::browser::Driver, lang: &'static str) {
    let rep = app.user("li", "rep").await;
    let boss = app.user("boss", "admin").await;
    let mut customers = Vec::new();
    for n in 0..5 {
        customers.push(
            rep.create("contacts", json!({"name": format!("老客户{n}")}))
                .await,
        );
    }
    // The customers are old; the rep turns on them an hour later.
    app.clock.advance_seconds(3600);
    let shots =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let (paused, undo, sent) = match lang {
        "en" => ("Paused", "Undo these changes", "delivered"),
        _ => ("已暂停", "撤销这些更改", "送达"),
    };

    // The rep deletes one customer after another; the fourth is refused.
    let rep_profile = tempfile::tempdir().unwrap();
    let r = Journey {
        browser: open_browser(driver, lang, rep_profile.path()).await,
        base: &app.base_url,
        lang,
        shots: shots.clone(),
    };
    login(&r, "li").await;
    for id in &customers[..3] {
        delete_in_page(&r, *id).await;
        assert_eq!(r.path().await, "/contacts");
    }
    delete_in_page(&r, customers[3]).await;
    let page = r.body().await;
    assert!(page.contains(paused) && page.contains("boss"), "{page}");
    r.shot("incident-guard").await;
    r.browser.close().await.unwrap();

    // The administrator is told on the home page, and follows the guard to the timeline.
    let admin_profile = tempfile::tempdir().unwrap();
    let a = Journey {
        browser: open_browser(driver, lang, admin_profile.path()).await,
        base: &app.base_url,
        lang,
        shots,
    };
    login(&a, "boss").await;
    let notices = a.text("#security-notices").await;
    assert!(notices.contains("li"), "{notices}");
    a.shot("incident-notice").await;
    // The alert left the building: the receiver answered, and the delivery log says so.
    let mut delivered = String::new();
    for _ in 0..50 {
        a.go("/admin/security#alerts").await;
        let row = a
            .browser
            .find(Locator::Css("#alerts tr[data-event=guard_tripped]"))
            .await;
        if let Ok(row) = row {
            delivered = row.text().await.unwrap();
        }
        if delivered.contains(sent) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        delivered.contains(sent) && delivered.contains("ops-room"),
        "{delivered}"
    );
    a.shot("incident-alert-delivered").await;
    a.go("/admin/timeline").await;
    a.click("#guards td a").await;
    let timeline = a.text("#timeline").await;
    assert_eq!(timeline.matches("contact.delete").count(), 3, "{timeline}");
    a.shot("incident-rep-timeline").await;
    // Preview undoing the rep's changes, then apply.
    a.click("#timeline a.button").await;
    assert_eq!(a.path().await, "/admin/revert");
    let preview = a.text("#revert-preview").await;
    assert!(
        preview.contains("老客户0") && preview.contains("老客户2"),
        "{preview}"
    );
    a.shot("incident-revert-preview").await;
    let apply = a.text("#revert-preview button[type=submit]").await;
    assert_eq!(apply, undo);
    a.click("#revert-preview button[type=submit]").await;
    assert!(a.browser.find(Locator::Css("#revert-done")).await.is_ok());
    for id in &customers[..3] {
        boss.get(&format!("/api/v1/contacts/{id}"))
            .await
            .expect(200);
    }
    // Reviewed: the rep may delete again.
    a.go("/admin/timeline").await;
    a.click("#guards form button").await;
    rep.delete(&format!(
        "/api/v1/contacts/{}?expected_version=1",
        customers[4]
    ))
    .await
    .expect(200);
    a.browser.close().await.unwrap();
}

crate::browser::journey_in_both_languages!(
    a_mass_delete_is_stopped_seen_and_undone_in_the_browser_on_sqlite,
    a_mass_delete_is_stopped_seen_and_undone_in_the_browser_on_postgres,
    spawn_with_a_small_delete_guard,
    journey
);
