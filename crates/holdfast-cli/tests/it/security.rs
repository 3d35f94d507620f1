//! The security page and its API: the backup key reminder until an administrator confirms the
//! recovery sheet is stored away, the sheet itself (administrators only, audited, both
//! languages), slow clients cut off while sending headers, and PostgreSQL over TLS.

use crate::pages::{CSRF, http, post_form};
use holdfast_test_support::{TestApp, on_both_backends, spawn_app_with_backups};
use std::io::{Read as _, Write as _};
use std::time::Duration;

/// A page as the holder of `cookie` gets it: status and HTML.
pub(crate) async fn page(app: &TestApp, cookie: &str, path: &str) -> (u16, String) {
    let response = http()
        .get(format!("{}{path}", app.base_url))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

on_both_backends!(
    the_backup_key_is_shown_to_administrators_and_reminded_until_stored,
    spawn_app_with_backups,
    |app| {
        let admin = app.admin().await;
        let auditor = app.user("audrey", "auditor").await;
        let manager = app.user("mona", "manager").await;
        let status = admin.get("/api/v1/security").await.expect(200);
        let key = &status["backup_key"];
        let fingerprint = key["fingerprint"].as_str().unwrap().to_owned();
        assert!(key["confirmed_at"].is_null(), "{status}");
        let codes: Vec<&str> = status["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["code"].as_str().unwrap())
            .collect();
        assert!(codes.contains(&"transport_loopback"), "{codes:?}");
        assert!(codes.contains(&"backup_key_unconfirmed"), "{codes:?}");
        assert_eq!(auditor.get("/api/v1/security").await.status, 200);
        assert_eq!(
            manager.get("/api/v1/security").await.error_code(),
            "no_right"
        );

        // The reminder on the administrator's home page, in both languages.
        let cookie = app.session_cookie("admin").await;
        let (_, home) = page(&app, &cookie, "/").await;
        assert!(
            home.contains("security-alert") && home.contains("recovery sheet"),
            "{home}"
        );
        let zh = format!("{cookie}; holdfast_lang=zh-CN");
        let (_, home_zh) = page(&app, &zh, "/").await;
        assert!(home_zh.contains("还没有人确认备份密钥"), "{home_zh}");

        // The sheet: the key itself, for administrators only, and every showing audited.
        let secret = app
            .app
            .backups
            .as_ref()
            .and_then(|b| b.key.as_ref())
            .unwrap()
            .secret_text();
        let (code, sheet) = page(&app, &cookie, "/admin/security/recovery-sheet").await;
        assert_eq!(code, 200);
        assert!(sheet.contains(&secret) && sheet.contains(&fingerprint));
        assert!(sheet.contains("holdfast backup restore"), "{sheet}");
        let auditor_cookie = app.session_cookie("audrey").await;
        let (code, refused) = page(&app, &auditor_cookie, "/admin/security/recovery-sheet").await;
        assert_eq!(code, 403);
        assert!(!refused.contains(&secret));
        let (code, status_page) = page(&app, &auditor_cookie, "/admin/security").await;
        assert_eq!(code, 200);
        assert!(status_page.contains(&fingerprint) && !status_page.contains(&secret));
        let shown = admin
            .get("/api/v1/audit?action=security.backup_key_shown")
            .await
            .expect(200);
        assert_eq!(shown["items"].as_array().unwrap().len(), 1, "{shown}");

        // Confirming needs the box ticked; then the reminder stops.
        let unticked = post_form(
            &app,
            "/admin/security/backup-key-stored",
            &cookie,
            &[("csrf", CSRF)],
        )
        .await;
        assert!(
            unticked.headers()["location"]
                .to_str()
                .unwrap()
                .contains("security_not_confirmed")
        );
        assert!(
            admin.get("/api/v1/security").await.expect(200)["backup_key"]["confirmed_at"].is_null()
        );
        let confirmed = post_form(
            &app,
            "/admin/security/backup-key-stored",
            &cookie,
            &[("csrf", CSRF), ("stored", "yes")],
        )
        .await;
        assert_eq!(confirmed.status(), 303);
        let status = admin.get("/api/v1/security").await.expect(200);
        assert_eq!(status["backup_key"]["confirmed_by"], "admin");
        // On SQLite the plain database file stays amber; PostgreSQL here is reached over TLS.
        let expected = match app.app.db.backend() {
            holdfast_app::Backend::Sqlite => "warn",
            holdfast_app::Backend::Postgres => "good",
        };
        let item = |area| crate::alerts::check_item(&status, area);
        assert_eq!(item("database")["level"], expected, "{status}");
        assert_eq!(item("backup_key")["code"], "backups_encrypted", "{status}");
        assert_eq!(item("backup_key")["level"], "good", "{status}");
        let (_, home) = page(&app, &cookie, "/").await;
        assert!(!home.contains("security-alert"));
        let (_, sheet_zh) = page(&app, &zh, "/admin/security").await;
        assert!(
            sheet_zh.contains("备份密钥") && sheet_zh.contains("确认此密钥已保存在本机以外"),
            "{sheet_zh}"
        );
        // The checklist with its score drawn, each item's fix, and the alerts card.
        let score = status["score"].as_i64().unwrap();
        assert!(
            sheet_zh.contains(&format!("得分：{score}/100")),
            "{sheet_zh}"
        );
        assert!(sheet_zh.contains(&format!("<meter min=\"0\" max=\"100\" low=\"60\" high=\"90\" optimum=\"100\" value=\"{score}\"")), "{sheet_zh}");
        assert!(sheet_zh.contains("以下管理员仅凭密码登录"), "{sheet_zh}");
        assert!(sheet_zh.contains("还没有设置告警渠道"), "{sheet_zh}");
        let (_, sheet_en) = page(&app, &cookie, "/admin/security").await;
        assert!(
            sheet_en.contains(&format!("Score: {score}/100")),
            "{sheet_en}"
        );
        assert!(sheet_en.contains("no verified backup yet"), "{sheet_en}");
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_its_headers_slowly_is_cut_off() {
    let config = holdfast_app::AppConfig {
        header_timeout_seconds: 1,
        ..Default::default()
    };
    let app = holdfast_test_support::spawn_app_with(holdfast_test_support::Backend::Sqlite, config)
        .await
        .unwrap();
    let address = app.base_url.trim_start_matches("http://").to_owned();
    let outcome = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let started = std::time::Instant::now();
        let mut buffer = Vec::new();
        let read = stream.read_to_end(&mut buffer);
        (read.is_ok(), started.elapsed())
    })
    .await
    .unwrap();
    assert!(outcome.0, "the server closed the connection");
    assert!(
        outcome.1 < Duration::from_secs(5),
        "closed after {:?}",
        outcome.1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_can_require_tls_and_the_page_says_which() {
    let Some(db) =
        holdfast_test_support::TestDb::fresh(holdfast_test_support::Backend::Postgres).await
    else {
        return;
    };
    let separator = if db.url.contains('?') { '&' } else { '?' };
    let encrypted = holdfast_app::Db::connect(&format!("{}{separator}sslmode=require", db.url))
        .await
        .unwrap();
    assert!(encrypted.postgres_connection_encrypted().await.unwrap());
    encrypted.close().await;
    let plain = holdfast_app::Db::connect(&format!("{}{separator}sslmode=disable", db.url))
        .await
        .unwrap();
    assert!(!plain.postgres_connection_encrypted().await.unwrap());
    plain.close().await;
}
