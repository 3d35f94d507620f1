//! Malformed and hostile input at every endpoint: a clear 4xx, never a 500, nothing changed.

use holdfast_test_support::on_both_backends;
use serde_json::{Value, json};

fn hostile_bodies() -> Vec<Value> {
    let deep = (0..200).fold(json!(1), |inner, _| json!([inner]));
    vec![
        json!(null),
        json!([1, 2, 3]),
        json!("just a string"),
        json!({"name": 42, "amount_minor": "lots", "tags": "vip", "custom": [1]}),
        json!({"name": "x".repeat(20_000)}),
        json!({"name": "Robert'); DROP TABLE contacts;--", "email": "' OR 1=1 --"}),
        json!({"amount_minor": -5, "expected_version": -1, "owner_id": 999_999, "company_id": 1e300}),
        json!({"id": 1, "version": 99, "created_at": "now", "deleted_at": null}),
        json!({"name": "\u{0000}\u{0007}", "due_at": "2026-02-30T25:61:00Z", "stage": "\u{202e}"}),
        json!({"expected_version": 1, "unknown": {"nested": [1, {"x": null}]}}),
        deep,
    ]
}

on_both_backends!(no_input_makes_a_500_or_changes_anything, |app| {
    let admin = app.admin().await;
    let contact = admin.create("contacts", json!({"name": "Untouched"})).await;
    let audit_before = app.app.db.count_rows("audit_log").await.unwrap();
    let mut requests = 0;
    for route in holdfast_web::routes().docs() {
        let paths: Vec<String> = ["contacts", "no-such-thing"]
            .iter()
            .flat_map(|collection| {
                ["1", "0", "-1", "99999999999999999999", "abc", "%FF%FE"]
                    .iter()
                    .map(move |id| {
                        route
                            .path
                            .replace("{collection}", collection)
                            .replace("{id}", id)
                            .replace("{version}", id)
                            .replace("{key}", "Bad Key!")
                    })
            })
            .collect();
        for path in paths {
            for op in &route.operations {
                if op.method == "POST" && path.ends_with("/auth/logout") {
                    continue;
                }
                let method = reqwest::Method::from_bytes(op.method.as_bytes()).unwrap();
                // GET and DELETE take no body: they get the hostile query string alone.
                let bodies = if matches!(op.method, "GET" | "DELETE") {
                    vec![None]
                } else {
                    hostile_bodies().into_iter().map(Some).collect()
                };
                for body in bodies {
                    let query = "?q=%FF%FE&limit=-3&sort=%00&cursor=zz&owner_id=x&updated_since=yesterday&from=a&to=b&reason=%E2%80";
                    let reply = admin
                        .send(method.clone(), &format!("{path}{query}"), body)
                        .await;
                    requests += 1;
                    let status = reply.status.as_u16();
                    assert!(
                        status < 500,
                        "{} {path} answered {status}: {}",
                        op.method,
                        reply.body
                    );
                    if status >= 400 {
                        assert!(
                            reply.body["error"]["code"].is_string(),
                            "{} {path}: error body {}",
                            op.method,
                            reply.body
                        );
                    }
                }
            }
        }
    }
    assert!(requests > 500, "{requests}");
    let after = admin
        .get(&format!("/api/v1/contacts/{contact}"))
        .await
        .expect(200);
    assert_eq!(
        (after["name"].as_str(), after["version"].as_i64()),
        (Some("Untouched"), Some(1))
    );
    assert_eq!(
        app.app.db.count_rows("contacts").await.unwrap(),
        1,
        "no hostile request created a record"
    );
    assert_eq!(
        app.app.db.count_rows("audit_log").await.unwrap(),
        audit_before,
        "nothing was written"
    );
});

on_both_backends!(
    malformed_json_oversized_bodies_and_wrong_content_types_get_clear_errors,
    |app| {
        let admin = app.admin().await;
        let url = format!("{}/api/v1/contacts", app.base_url);
        let auth = admin.auth.clone().unwrap();
        let send = |body: Vec<u8>, content_type: &'static str| {
            let request = admin
                .http
                .post(&url)
                .header("Authorization", &auth)
                .header("Content-Type", content_type)
                .body(body);
            async move {
                let response = request.send().await.unwrap();
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap();
                (
                    status,
                    body["error"]["code"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            }
        };
        assert_eq!(
            send(b"{\"name\": ".to_vec(), "application/json").await,
            (400, "malformed_json".into())
        );
        assert_eq!(
            send(b"{\"name\": \"x\"}".to_vec(), "text/plain").await,
            (415, "json_required".into())
        );
        assert_eq!(
            // Just over the limit: the server answers before reading it all, and a much larger
            // body would still be in flight when it closes (a broken pipe instead of the 413).
            send(
                vec![b' '; holdfast_web::MAX_BODY_BYTES + 16],
                "application/json"
            )
            .await,
            (413, "body_too_large".into())
        );
        assert_eq!(
            send(vec![0xff, 0xfe, b'{'], "application/json").await.0,
            400
        );
        let missing = admin.get("/api/v1/nowhere").await;
        assert_eq!(
            (missing.status.as_u16(), missing.error_code()),
            (404, "not_found")
        );
        assert_eq!(app.app.db.count_rows("contacts").await.unwrap(), 0);
    }
);

on_both_backends!(every_response_carries_the_security_headers, |app| {
    let admin = app.admin().await;
    let id = admin.create("contacts", json!({"name": "安全"})).await;
    let http = reqwest::Client::new();
    let auth = admin.auth.clone().unwrap();
    for (path, kind) in [
        (format!("/api/v1/contacts/{id}"), "json"),
        ("/api/v1/contacts/999999".to_owned(), "json error"),
        ("/api/v1/contacts/export".to_owned(), "csv"),
        ("/api/v1/nowhere".to_owned(), "json 404"),
        ("/readyz".to_owned(), "health"),
        ("/login".to_owned(), "page"),
        ("/assets/app.css".to_owned(), "asset"),
    ] {
        let response = http
            .get(format!("{}{path}", app.base_url))
            .header("Authorization", &auth)
            .send()
            .await
            .unwrap();
        let headers = response.headers();
        for (name, value) in [
            ("x-content-type-options", Some("nosniff")),
            ("referrer-policy", Some("same-origin")),
            ("x-frame-options", Some("DENY")),
            ("permissions-policy", None),
            ("content-security-policy", None),
            ("cache-control", None),
        ] {
            let found = headers.get(name).map(|v| v.to_str().unwrap().to_owned());
            assert!(found.is_some(), "{kind} {path}: no {name}");
            if let Some(value) = value {
                assert_eq!(found.as_deref(), Some(value), "{kind} {path}: {name}");
            }
        }
        let cache = headers["cache-control"].to_str().unwrap();
        if kind != "asset" {
            assert_eq!(cache, "no-store", "{kind} {path}: data is never cached");
        }
    }
});

on_both_backends!(
    cookie_authenticated_api_changes_must_come_from_this_site,
    |app| {
        let admin = app.admin().await;
        let id = admin.create("contacts", json!({"name": "跨站"})).await;
        admin
            .patch(
                &format!("/api/v1/contacts/{id}"),
                json!({"expected_version": 1, "name": "跨站 2"}),
            )
            .await
            .expect(200);
        let cookie = app.session_cookie("admin").await;
        let url = format!("{}/api/v1/contacts/{id}/versions/1/restore", app.base_url);
        let body = r#"{"expected_version": 2}"#;
        let send = |content_type: Option<&'static str>, origin: Option<&'static str>| {
            let mut request = reqwest::Client::new()
                .post(&url)
                .header("Cookie", &cookie)
                .body(body);
            if let Some(content_type) = content_type {
                request = request.header("Content-Type", content_type);
            }
            if let Some(origin) = origin {
                request = request.header("Origin", origin);
            }
            request.send()
        };
        // What a cross-site form can send: text/plain or a form encoding, or no type at all.
        for (content_type, origin) in [
            (Some("text/plain"), None),
            (Some("application/x-www-form-urlencoded"), None),
            (None, None),
            (Some("application/json"), Some("null")),
            (Some("application/json"), Some("http://evil.example")),
        ] {
            let response = send(content_type, origin).await.unwrap();
            assert_eq!(response.status(), 403, "{content_type:?} {origin:?}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "cross_site");
        }
        assert_eq!(
            app.versions_of("contact", id).await.len(),
            2,
            "nothing changed"
        );
        // From this site's own script: JSON, or the X-Requested-With header.
        send(Some("application/json"), None)
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
        assert_eq!(app.versions_of("contact", id).await.len(), 3);
        // Tokens are not sent by browsers on their own: the same text/plain request with a token
        // is not a cross-site risk.
        let with_token = reqwest::Client::new()
            .post(&url)
            .header("Authorization", admin.auth.clone().unwrap())
            .header("Content-Type", "text/plain")
            .body(r#"{"expected_version": 3}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(with_token.status(), 200);
    }
);

async fn spawn_with_tight_limits(
    backend: holdfast_test_support::Backend,
) -> Option<holdfast_test_support::TestApp> {
    let config = holdfast_app::AppConfig {
        body_timeout_seconds: 1,
        max_concurrent_requests: 1,
        busy_wait_ms: 0,
        ..holdfast_app::AppConfig::default()
    };
    holdfast_test_support::spawn_app_with(backend, config).await
}

on_both_backends!(
    slow_or_too_many_clients_cannot_hold_the_server,
    spawn_with_tight_limits,
    |app| {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let admin = app.admin().await;
        // A client that sends headers and then only part of its body is answered 408 once the
        // body timeout passes, and nothing is created.
        let address = app.base_url.trim_start_matches("http://").to_owned();
        let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
        let head = format!(
            "POST /api/v1/contacts HTTP/1.1\r\nHost: {address}\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\": ",
            admin.auth.clone().unwrap()
        );
        slow.write_all(head.as_bytes()).await.unwrap();
        let mut answer = vec![0u8; 2048];
        let read = tokio::time::timeout(std::time::Duration::from_secs(10), slow.read(&mut answer))
            .await
            .expect("answered after the body timeout")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer[..read]);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("request_timeout"), "{answer}");
        assert_eq!(app.app.db.count_rows("contacts").await.unwrap(), 0);

        // More requests at once than the server takes: the rest are told to come back.
        let requests = (0..50).map(|_| {
            let admin = admin.clone();
            async move { admin.get("/api/v1/contacts?q=%E5%BC%A0").await }
        });
        let replies = futures_join_all(requests).await;
        let busy: Vec<_> = replies.iter().filter(|r| r.status == 503).collect();
        assert!(
            replies.iter().all(|r| r.status == 200 || r.status == 503),
            "{:?}",
            replies.iter().map(|r| r.status).collect::<Vec<_>>()
        );
        assert!(
            !busy.is_empty(),
            "fifty at once with room for one: some must wait"
        );
        assert_eq!(busy[0].error_code(), "busy");
        assert_eq!(busy[0].headers["retry-after"], "5");
        // And afterwards the server answers as usual.
        admin.get("/api/v1/contacts").await.expect(200);
    }
);

/// Runs the futures at once and returns their results in order (tokio has no join_all).
pub(crate) async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}
