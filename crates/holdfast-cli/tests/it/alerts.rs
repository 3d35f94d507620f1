//! Alerts that leave the building, against a local SMTP sink and a local webhook receiver on
//! loopback (which the configuration has to allow): every channel gets the test alert, a
//! tripped guard and a new administrator, in its documented format and signature; a private
//! address is refused without the allowance; a failing channel is retried with back-off, shows
//! in the delivery log and turns the checklist red.

use holdfast_app::alerts::{Config, Email, SmtpSecurity, Webhook, WebhookKind};
use holdfast_test_support::{TestApp, on_both_backends};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

/// One request the webhook receiver got.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    path_and_query: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

pub(crate) type Inbox<T> = Arc<Mutex<Vec<T>>>;

/// A webhook receiver on 127.0.0.1 that records what it gets and answers as the robots do.
pub(crate) async fn webhook_receiver() -> (String, Inbox<Received>) {
    let inbox: Inbox<Received> = Arc::default();
    let store = inbox.clone();
    let handler = move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: String| {
        let store = store.clone();
        async move {
            store.lock().unwrap().push(Received {
                path_and_query: uri
                    .path_and_query()
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
                headers: headers
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_owned()))
                    .collect(),
                body,
            });
            if uri.path() == "/feishu" {
                axum::Json(json!({"code": 0, "msg": "success"}))
            } else {
                axum::Json(json!({"errcode": 0, "errmsg": "ok"}))
            }
        }
    };
    let router = axum::Router::new().fallback(axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{address}"), inbox)
}

/// A minimal SMTP server on 127.0.0.1 that accepts every message and keeps its DATA.
async fn smtp_sink() -> (u16, Inbox<String>) {
    let inbox: Inbox<String> = Arc::default();
    let store = inbox.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                let _ = write.write_all(b"220 sink ESMTP\r\n").await;
                let mut data: Option<String> = None;
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(message) = data.as_mut() {
                        if line == "." {
                            store.lock().unwrap().push(data.take().unwrap_or_default());
                            let _ = write.write_all(b"250 queued\r\n").await;
                        } else {
                            message.push_str(&line);
                            message.push('\n');
                        }
                        continue;
                    }
                    let verb = line.split_whitespace().next().unwrap_or("").to_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" => b"250-sink\r\n250 8BITMIME\r\n",
                        "DATA" => {
                            data = Some(String::new());
                            b"354 go on\r\n"
                        }
                        "QUIT" => {
                            let _ = write.write_all(b"221 bye\r\n").await;
                            break;
                        }
                        _ => b"250 ok\r\n",
                    };
                    let _ = write.write_all(reply).await;
                }
            });
        }
    });
    (port, inbox)
}

const GENERIC_SECRET: &str = "a generic secret of some length";
const DINGTALK_SECRET: &str = "SECdingtalk";
const FEISHU_SECRET: &str = "feishu-secret";

fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn alerts_to(receiver: &str, smtp_port: u16) -> Config {
    let hook = |name: &str, kind, secret: Option<&str>| Webhook {
        name: name.to_owned(),
        kind,
        url: format!("{receiver}/{name}?key=robot-key"),
        secret: secret.map(str::to_owned),
    };
    Config {
        allow_private_addresses: true,
        language: "zh-CN".into(),
        email: Some(Email {
            host: "127.0.0.1".into(),
            port: smtp_port,
            security: SmtpSecurity::None,
            username: None,
            password: None,
            from: "holdfast@example.com".into(),
            to: vec!["boss@example.com".into()],
        }),
        webhooks: vec![
            hook("generic", WebhookKind::Generic, Some(GENERIC_SECRET)),
            hook("wecom", WebhookKind::WeCom, None),
            hook("dingtalk", WebhookKind::DingTalk, Some(DINGTALK_SECRET)),
            hook("feishu", WebhookKind::Feishu, Some(FEISHU_SECRET)),
        ],
    }
}

/// Waits (a few seconds at most) until `inbox` holds `count` items.
async fn wait_for<T: Clone>(inbox: &Inbox<T>, count: usize) -> Vec<T> {
    for _ in 0..200 {
        let got = inbox.lock().unwrap().clone();
        if got.len() >= count {
            return got;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    inbox.lock().unwrap().clone()
}

/// The alerts the generic webhook received with this event.
fn generic_events(received: &[Received], event: &str) -> Vec<Value> {
    received
        .iter()
        .filter(|r| r.path_and_query.starts_with("/generic?"))
        .map(Received::json)
        .filter(|alert| alert["event"] == event)
        .collect()
}

/// The request the webhook named `channel` received.
fn at<'a>(received: &[&'a Received], channel: &str) -> &'a Received {
    received
        .iter()
        .find(|r| r.path_and_query.starts_with(&format!("/{channel}?")))
        .unwrap_or_else(|| panic!("the {channel} webhook got the alert"))
}

/// The checklist item about `area` in `GET /api/v1/security`.
pub(crate) fn check_item(security: &Value, area: &str) -> Value {
    security["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["area"] == area)
        .cloned()
        .unwrap_or_else(|| panic!("no {area} item: {security}"))
}

async fn check_formats(received: &[Received]) {
    let received: Vec<&Received> = received
        .iter()
        .filter(|r| r.body.contains("测试告警"))
        .collect();
    assert_eq!(
        received.len(),
        4,
        "the test alert reached each webhook once"
    );
    // Generic: the alert as JSON, signed over "{timestamp}.{body}".
    let generic = at(&received, "generic");
    let timestamp = generic.header("x-holdfast-timestamp");
    let expected = hmac(
        GENERIC_SECRET.as_bytes(),
        format!("{timestamp}.{}", generic.body).as_bytes(),
    );
    let hex: String = expected.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        generic.header("x-holdfast-signature"),
        format!("sha256={hex}")
    );
    assert_eq!(generic.header("content-type"), "application/json");
    let body = generic.json();
    assert_eq!(body["event"], "test");
    assert_eq!(body["title"], "Holdfast 测试告警");
    assert!(body["at"].as_str().unwrap().starts_with("2026-12-01T"));

    // WeCom: {"msgtype": "text", "text": {"content": …}}.
    let wecom = at(&received, "wecom");
    assert!(wecom.path_and_query.starts_with("/wecom?key=robot-key"));
    let wecom = wecom.json();
    assert_eq!(wecom["msgtype"], "text");
    assert!(
        wecom["text"]["content"]
            .as_str()
            .unwrap()
            .starts_with("【Holdfast】Holdfast 测试告警")
    );

    // DingTalk: the same body; timestamp (ms) and sign in the address.
    let dingtalk = at(&received, "dingtalk");
    let query: Vec<(String, String)> = url::form_urlencoded::parse(
        dingtalk
            .path_and_query
            .split_once('?')
            .unwrap()
            .1
            .as_bytes(),
    )
    .into_owned()
    .collect();
    let get = |name: &str| {
        query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(get("key"), "robot-key");
    let ms = get("timestamp");
    assert_eq!(ms.len(), 13, "milliseconds: {ms}");
    let sign = base64(&hmac(
        DINGTALK_SECRET.as_bytes(),
        format!("{ms}\n{DINGTALK_SECRET}").as_bytes(),
    ));
    assert_eq!(get("sign"), sign);
    assert_eq!(dingtalk.json()["msgtype"], "text");

    // Feishu: msg_type/content, timestamp (s) and sign in the body.
    let feishu = at(&received, "feishu").json();
    assert_eq!(feishu["msg_type"], "text");
    assert!(
        feishu["content"]["text"]
            .as_str()
            .unwrap()
            .contains("测试告警")
    );
    let seconds = feishu["timestamp"].as_str().unwrap();
    let sign = base64(&hmac(format!("{seconds}\n{FEISHU_SECRET}").as_bytes(), b""));
    assert_eq!(feishu["sign"], sign.as_str());
}

async fn spawn_with_alerts(
    backend: holdfast_test_support::Backend,
) -> Option<(TestApp, Inbox<Received>, Inbox<String>)> {
    let (receiver, webhooks) = webhook_receiver().await;
    let (port, mail) = smtp_sink().await;
    let config = holdfast_app::AppConfig {
        alerts: alerts_to(&receiver, port),
        guards: holdfast_app::guards::Limits {
            deletes: 2,
            ..Default::default()
        },
        ..Default::default()
    };
    let app = holdfast_test_support::spawn_app_with(backend, config).await?;
    Some((app, webhooks, mail))
}

async fn alerts_reach_every_channel(app: TestApp, webhooks: Inbox<Received>, mail: Inbox<String>) {
    // Making the first administrator is itself an alert (one per channel).
    let admin = app.admin().await;
    // The test button: every channel, in its format.
    let sent = admin
        .post("/api/v1/admin/alerts/test", json!({}))
        .await
        .expect(200);
    assert_eq!(sent["queued"], 5);
    let received = wait_for(&webhooks, 8).await;
    assert_eq!(received.len(), 8, "{received:?}");
    check_formats(&received).await;
    let messages = wait_for(&mail, 2).await;
    assert_eq!(messages.len(), 2);
    assert!(
        messages.iter().all(|m| m.contains("To: boss@example.com")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .all(|m| m.contains("Subject: [Holdfast] ") && m.contains("=?utf-8?b?")),
        "a Chinese subject is encoded: {messages:?}"
    );

    // A rep's mass delete trips the guard: the administrators hear of it outside Holdfast.
    let rep = app.user("lu", "rep").await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(
            rep.create("contacts", json!({"name": format!("客户{n}")}))
                .await,
        );
    }
    for id in &ids[..2] {
        rep.delete(&format!("/api/v1/contacts/{id}?expected_version=1"))
            .await
            .expect(200);
    }
    let refused = rep
        .delete(&format!("/api/v1/contacts/{}?expected_version=1", ids[2]))
        .await;
    assert_eq!(refused.error_code(), "guard_tripped");
    let received = wait_for(&webhooks, 12).await;
    let tripped = generic_events(&received, "guard_tripped");
    assert_eq!(tripped.len(), 1, "{received:?}");
    let tripped = &tripped[0];
    assert!(
        tripped["text"].as_str().unwrap().contains("lu"),
        "{tripped}"
    );
    assert_eq!(tripped["severity"], "critical");

    // A new administrator is told too.
    admin
        .post(
            "/api/v1/users",
            json!({"username": "newboss", "password": "correct horse battery", "role": "admin"}),
        )
        .await
        .expect(201);
    let received = wait_for(&webhooks, 16).await;
    let new_admins = generic_events(&received, "new_admin");
    assert_eq!(new_admins.len(), 2, "{received:?}");
    assert!(
        new_admins
            .iter()
            .any(|a| a["title"].as_str().unwrap().contains("newboss")),
        "{new_admins:?}"
    );

    // The delivery log says what reached whom; the checklist is green for alerts.
    let log = admin.get("/api/v1/admin/alerts").await.expect(200);
    let deliveries = log["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 20, "{log}");
    assert!(
        deliveries.iter().all(|d| d["delivered_at"].is_number()),
        "{log}"
    );
    let channels: Vec<&str> = log["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        channels,
        ["email", "generic", "wecom", "dingtalk", "feishu"]
    );
    assert!(
        !log.to_string().contains("robot-key"),
        "no secret in the log: {log}"
    );
    let security = admin.get("/api/v1/security").await.expect(200);
    let item = check_item(&security, "alerts");
    assert_eq!(item["code"], "alerts_ok", "{item}");

    // Promoting someone to administrator is told too.
    admin
        .patch(
            &format!("/api/v1/users/{}", rep.user_id),
            json!({"role": "admin"}),
        )
        .await
        .expect(200);
    let received = wait_for(&webhooks, 20).await;
    let new_admins = generic_events(&received, "new_admin");
    assert!(
        new_admins.iter().any(|a| a["title"] == "新增管理员：lu"),
        "{new_admins:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_reach_a_local_smtp_sink_and_each_webhook_format_sqlite() {
    let (app, webhooks, mail) = spawn_with_alerts(holdfast_test_support::Backend::Sqlite)
        .await
        .unwrap();
    alerts_reach_every_channel(app, webhooks, mail).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_reach_a_local_smtp_sink_and_each_webhook_format_postgres() {
    let Some((app, webhooks, mail)) =
        spawn_with_alerts(holdfast_test_support::Backend::Postgres).await
    else {
        return;
    };
    alerts_reach_every_channel(app, webhooks, mail).await;
}

async fn spawn_refusing_private(backend: holdfast_test_support::Backend) -> Option<TestApp> {
    let config = holdfast_app::AppConfig {
        alerts: Config {
            allow_private_addresses: false,
            language: "en".into(),
            email: None,
            webhooks: vec![Webhook {
                name: "ops".into(),
                kind: WebhookKind::WeCom,
                // Loopback, by name: refused after resolving, not only as a literal address.
                url: "https://localhost:9/hook?key=k".into(),
                secret: None,
            }],
        },
        ..Default::default()
    };
    holdfast_test_support::spawn_app_with(backend, config).await
}

on_both_backends!(
    private_addresses_are_refused_retried_with_back_off_and_shown_red,
    spawn_refusing_private,
    |app| {
        let admin = app.admin().await;
        admin
            .post("/api/v1/admin/alerts/test", json!({}))
            .await
            .expect(200);
        // The first attempt runs at once and is refused before any connection is made.
        let mut delivery = Value::Null;
        for _ in 0..200 {
            let log = admin.get("/api/v1/admin/alerts").await.expect(200);
            delivery = log["deliveries"][0].clone();
            if delivery["attempts"] == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        assert_eq!(delivery["attempts"], 1, "{delivery}");
        let error = delivery["last_error"].as_str().unwrap();
        assert!(
            error.contains("private, loopback or link-local")
                && error.contains("allow_private_addresses"),
            "{error}"
        );
        assert!(
            !error.contains("key=k"),
            "the robot's key stays out of the log: {error}"
        );
        // Retried after a minute, then 5, 30, 120 and 360 minutes; then given up.
        let first_retry =
            delivery["next_at"].as_i64().unwrap() - delivery["created_at"].as_i64().unwrap();
        assert!(
            (60_000_000..61_000_000).contains(&first_retry),
            "{first_retry} µs"
        );
        assert_eq!(
            holdfast_app::alerts::deliver_due(&app.app).await.unwrap(),
            0,
            "nothing due yet"
        );
        for minutes in [1, 5, 30, 120, 360] {
            app.clock.advance_seconds(minutes * 60);
            holdfast_app::alerts::deliver_due(&app.app).await.unwrap();
        }
        let log = admin.get("/api/v1/admin/alerts").await.expect(200);
        let delivery = &log["deliveries"][0];
        assert_eq!(delivery["attempts"], 6, "{delivery}");
        assert!(
            delivery["next_at"].is_null() && delivery["delivered_at"].is_null(),
            "given up: {delivery}"
        );
        let security = admin.get("/api/v1/security").await.expect(200);
        let item = check_item(&security, "alerts");
        assert_eq!(
            (item["code"].as_str(), item["level"].as_str()),
            (Some("alerts_failing"), Some("bad")),
            "{item}"
        );
        assert_eq!(item["detail"], "ops");
        // A rep may neither read the channels nor send a test.
        let rep = app.user("lu", "rep").await;
        assert_eq!(rep.get("/api/v1/admin/alerts").await.status, 403);
        assert_eq!(
            rep.post("/api/v1/admin/alerts/test", json!({}))
                .await
                .status,
            403
        );
    }
);

on_both_backends!(
    a_server_without_alert_channels_says_how_to_set_one_up,
    |app| {
        let admin = app.admin().await;
        let refused = admin.post("/api/v1/admin/alerts/test", json!({})).await;
        assert_eq!(refused.status, 409, "{}", refused.body);
        assert_eq!(refused.error_code(), "alerts_off");
        let page = admin.get("/api/v1/security").await.expect(200);
        let item = check_item(&page, "alerts");
        assert_eq!(item["code"], "alerts_off");
    }
);
