//! `dry_run` means nothing changes: every operation the OpenAPI document gives a `dry_run` is
//! sent one, and the whole database (rows, audit log, sessions, tokens) must be as it was.

use holdfast_test_support::on_both_backends;
use serde_json::{Value, json};

/// Operations that take `dry_run`, from the document: (method, path, in the query).
fn documented_dry_runs() -> Vec<(String, String, bool)> {
    let document = holdfast_web::openapi::document(holdfast_web::routes().docs());
    let schemas = &document["components"]["schemas"];
    let mut out = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let in_query = operation["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "dry_run");
            let in_body = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                .as_str()
                .and_then(|r| r.rsplit('/').next())
                .is_some_and(|name| schemas[name]["properties"].get("dry_run").is_some());
            if in_query || in_body {
                out.push((method.to_uppercase(), path.clone(), in_query));
            }
        }
    }
    out.sort();
    out
}

on_both_backends!(every_dry_run_changes_nothing, |app| {
    let admin = app.admin().await;
    // Someone to deactivate, with a session and a token; a role, a team, a record to revert.
    let rep = app.user("xiaowang", "rep").await;
    let login = app
        .anonymous()
        .post(
            "/api/v1/auth/login",
            json!({"username": "xiaowang", "password": "correct horse battery"}),
        )
        .await
        .expect(200);
    assert!(login.is_object());
    let role = json!({"name": "助理", "rights": ["contacts.view"], "scope": "own"});
    admin
        .put("/api/v1/access/roles/assistant", role)
        .await
        .expect(200);
    let team = admin
        .post("/api/v1/access/teams", json!({"name": "华南"}))
        .await
        .expect(201)["team_id"]
        .as_i64()
        .unwrap();
    let start = app.app.now();
    app.clock.advance_seconds(60);
    rep.create("contacts", json!({"name": "新客户"})).await;
    admin.get("/api/v1/me").await.expect(200);
    let rep_id = rep.user_id;

    let requests: Vec<(&str, String, Value)> = vec![
        (
            "PATCH",
            format!("/api/v1/users/{rep_id}"),
            json!({"active": false, "dry_run": true}),
        ),
        (
            "PATCH",
            format!("/api/v1/users/{rep_id}"),
            json!({"display_name": "小王", "role": "manager", "team_id": team, "dry_run": true}),
        ),
        (
            "PUT",
            "/api/v1/access/roles/assistant".into(),
            json!({"name": "助理", "rights": [], "scope": "all", "dry_run": true}),
        ),
        (
            "PUT",
            "/api/v1/access/roles/newrole".into(),
            json!({"name": "新", "rights": [], "scope": "own", "dry_run": true}),
        ),
        (
            "DELETE",
            "/api/v1/access/roles/assistant?dry_run=true".into(),
            Value::Null,
        ),
        (
            "POST",
            "/api/v1/access/teams".into(),
            json!({"name": "华北", "dry_run": true}),
        ),
        (
            "PUT",
            format!("/api/v1/access/teams/{team}"),
            json!({"name": "华南二部", "manager_id": rep_id, "dry_run": true}),
        ),
        (
            "DELETE",
            format!("/api/v1/access/teams/{team}?dry_run=true"),
            Value::Null,
        ),
        (
            "PUT",
            "/api/v1/access/modules/deals".into(),
            json!({"on": false, "dry_run": true}),
        ),
        (
            "POST",
            "/api/v1/revert".into(),
            json!({"to": start.to_rfc3339(), "dry_run": true}),
        ),
    ];
    // Every documented dry run is sent here.
    let mut sent: Vec<(String, String, bool)> = requests
        .iter()
        .map(|(method, path, _)| {
            let (path, query) = path.split_once('?').unwrap_or((path, ""));
            let path = path
                .replace(&format!("/{rep_id}"), "/{id}")
                .replace(&format!("/{team}"), "/{id}")
                .replace("/assistant", "/{key}")
                .replace("/newrole", "/{key}")
                .replace("/deals", "/{module}");
            (method.to_string(), path, query.contains("dry_run"))
        })
        .collect();
    sent.sort();
    sent.dedup();
    assert_eq!(
        sent,
        documented_dry_runs(),
        "every documented dry_run is tried"
    );

    let before = app.fingerprint().await;
    for (method, path, body) in requests {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let body = (!body.is_null()).then_some(body);
        let reply = admin.send(method.clone(), &path, body).await;
        assert_eq!(reply.status, 200, "{method} {path}: {}", reply.body);
        let applied = &reply.body["applied"];
        assert!(
            *applied == json!(false) || reply.body["dry_run"] == json!(true),
            "{method} {path} says it was a dry run: {}",
            reply.body
        );
        assert_eq!(
            app.fingerprint().await,
            before,
            "{method} {path} changed something"
        );
    }
    // The deactivation preview says what the real one would end.
    let preview = admin
        .patch(
            &format!("/api/v1/users/{rep_id}"),
            json!({"active": false, "dry_run": true}),
        )
        .await
        .expect(200);
    assert_eq!(preview["account"]["sessions_ended"], 1, "{preview}");
    assert_eq!(preview["account"]["tokens_revoked"], 1);
    // And the rep can still work.
    rep.get("/api/v1/me").await.expect(200);
});
