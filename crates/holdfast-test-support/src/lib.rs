//! Test harness: a fresh database per test on either backend, the real server on a random
//! port in-process (with a clock the test controls), and a small JSON API client.
//!
//! PostgreSQL tests use `HOLDFAST_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`) to create a database per test. Without a reachable
//! server they skip with a printed reason, except under `CI=true`, where they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use holdfast_app::backup::Key;
use holdfast_app::backup::schedule::{BackupConfig, Retention};
use holdfast_app::{App, AppConfig, ManualClock};
use holdfast_domain::{Actor, ActorKind, Timestamp};
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::Connection as _;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub fn pg_admin_url() -> String {
    std::env::var("HOLDFAST_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned())
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A database that exists for one test and is removed afterwards.
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    pub dir: tempfile::TempDir,
    pg_name: Option<String>,
}

impl TestDb {
    /// Where `holdfast … --database-url URL` run in this database's folder keeps the audit
    /// key: `audit.key` in its default data folder.
    pub fn audit_key_file(&self) -> std::path::PathBuf {
        self.dir.path().join("holdfast-data").join("audit.key")
    }

    /// A new, empty database; `None` (after printing why) when PostgreSQL is unavailable
    /// outside CI.
    pub async fn fresh(backend: Backend) -> Option<TestDb> {
        let dir = tempfile::tempdir().expect("temp dir");
        match backend {
            Backend::Sqlite => {
                let url = format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("holdfast.db").display()
                );
                Some(TestDb {
                    url,
                    backend,
                    dir,
                    pg_name: None,
                })
            }
            Backend::Postgres => {
                sqlx::any::install_default_drivers();
                let admin_url = pg_admin_url();
                let mut conn = match sqlx::AnyConnection::connect(&admin_url).await {
                    Ok(conn) => conn,
                    Err(error) if !in_ci() => {
                        eprintln!(
                            "SKIPPED: PostgreSQL not reachable at {admin_url} ({error}); set HOLDFAST_TEST_DATABASE_URL or run under CI=true to require it"
                        );
                        return None;
                    }
                    Err(error) => panic!("CI=true requires PostgreSQL at {admin_url}: {error}"),
                };
                let name = format!("holdfast_t_{}", holdfast_app::random_hex(8).unwrap());
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .expect("create test database");
                let _ = conn.close().await;
                let base = admin_url
                    .rsplit_once('/')
                    .map(|(base, _)| base.to_owned())
                    .unwrap_or(admin_url);
                Some(TestDb {
                    url: format!("{base}/{name}"),
                    backend,
                    dir,
                    pg_name: Some(name),
                })
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        // Drop runs inside the test's runtime, so the cleanup gets a thread and runtime of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(mut conn) = sqlx::AnyConnection::connect(&pg_admin_url()).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

/// The real server on 127.0.0.1 with a random port, on a fresh database.
pub struct TestApp {
    pub base_url: String,
    pub app: App,
    pub clock: Arc<ManualClock>,
    pub db: TestDb,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

/// 2026-12-01T00:00:00Z: tests start at a fixed instant and move the clock themselves.
pub const TEST_EPOCH: Timestamp = Timestamp(1_796_083_200_000_000);

pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, AppConfig::default()).await
}

pub async fn spawn_app_with(backend: Backend, config: AppConfig) -> Option<TestApp> {
    spawn(backend, config, false).await
}

/// The server taking backups: every 6 hours into `<test dir>/backups`, encrypted with a new
/// key, copied to `<test dir>/offsite`, drilled after each backup.
pub async fn spawn_app_with_backups(backend: Backend) -> Option<TestApp> {
    spawn(backend, AppConfig::default(), true).await
}

/// The backup settings [`spawn_app_with_backups`] uses, for a test folder.
pub fn backup_config(dir: &std::path::Path) -> BackupConfig {
    let (key_text, _) = Key::generate();
    BackupConfig {
        dir: dir.join("backups"),
        every_minutes: 360,
        on_shutdown: true,
        key: Some(Key::identity_from_text(&key_text).unwrap()),
        copy_to: Some(dir.join("offsite")),
        retention: Retention::default(),
        drill: true,
        scratch_dir: Some(dir.to_path_buf()),
    }
}

async fn spawn(backend: Backend, mut config: AppConfig, backups: bool) -> Option<TestApp> {
    let db = TestDb::fresh(backend).await?;
    // Sealed like an installed server's, with the key where the binary run in the test's
    // folder looks for it.
    if config.audit_key_file.is_none() {
        config.audit_key_file = Some(db.audit_key_file());
    }
    let clock = Arc::new(ManualClock::new(TEST_EPOCH));
    let mut app = App::open(&db.url, config, clock.clone())
        .await
        .expect("app opens");
    // A fresh install requires administrators to enrol a second factor at their first sign-in;
    // most tests sign administrators in to test something else, so they start without that
    // rule. The tests of two-step sign-in put it back (`require_second_factor`).
    app.db
        .set_meta("second_factor_roles", "[]")
        .await
        .expect("second factor policy");
    if backups {
        app = app.with_backups(backup_config(db.dir.path()));
    }
    let (base_url, sender) = serve_in_background(app.clone()).await;
    Some(TestApp {
        base_url,
        app,
        clock,
        db,
        shutdown: Some(sender),
    })
}

/// Serves `app` on 127.0.0.1 with a random port until the returned sender is dropped or sent.
pub async fn serve_in_background(app: App) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let base_url = format!("http://{}", listener.local_addr().expect("address"));
    let (sender, receiver) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        holdfast_web::serve(listener, app, None, async {
            let _ = receiver.await;
        })
        .await
        .expect("server runs");
    });
    (base_url, sender)
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(sender) = self.shutdown.take() {
            let _ = sender.send(());
        }
    }
}

/// The application on an existing database with the real clock, as a CLI command opens it:
/// for tests that prepare data before or check it after running the binary. `audit_key_file`
/// is the one the binary uses ([`TestDb::audit_key_file`] when it runs in the test's folder).
pub async fn open_with_system_clock(url: &str, audit_key_file: &std::path::Path) -> App {
    let config = AppConfig {
        audit_key_file: Some(audit_key_file.to_path_buf()),
        ..AppConfig::default()
    };
    App::open(url, config, Arc::new(holdfast_app::SystemClock))
        .await
        .expect("app opens")
}

/// The actor for an existing user, with the permission settings in force.
/// A user as the server's own code acts for them (as `holdfast revert --as` does): the steps of
/// signing in do not apply.
pub async fn actor(app: &App, user_id: i64) -> Actor {
    let user = app.db.user(user_id).await.unwrap().expect("user exists");
    holdfast_app::auth::operator_actor(app, &user)
        .await
        .expect("actor")
}

/// The administrator `boss` (made by the system on the first call), acting as the server's
/// own code acts for them.
pub async fn boss(app: &App) -> Actor {
    let user = match app.db.user_by_username("boss").await.unwrap() {
        Some(user) => user,
        None => holdfast_app::users::create_user_unchecked(
            app,
            &Actor::system(),
            "test",
            "boss",
            "Boss",
            "correct horse battery",
            holdfast_domain::access::ADMIN,
        )
        .await
        .expect("create boss"),
    };
    actor(app, user.id).await
}

/// Lifts the fresh install's rule that administrators enrol a second factor, for tests that
/// prepare a database themselves and sign an administrator in to test something else.
pub async fn without_second_factor_rule(url: &str, audit_key_file: &std::path::Path) {
    let app = open_with_system_clock(url, audit_key_file).await;
    holdfast_app::two_factor::set_roles_as_system(&app, &[])
        .await
        .expect("second factor policy");
    app.db.close().await;
}

impl TestApp {
    /// The settings of another instance on this database: the defaults, with a copy of the
    /// same audit key.
    pub fn instance_config(&self) -> AppConfig {
        AppConfig {
            audit_key_file: Some(self.db.audit_key_file()),
            ..AppConfig::default()
        }
    }

    /// An approved user with the role `role` (`admin`, `manager`, `rep`, `auditor` or a custom
    /// role's key) and an API token; usernames must be unique per test.
    pub async fn user(&self, username: &str, role: &str) -> Client {
        let system = Actor::system();
        let user = holdfast_app::users::create_user_unchecked(
            &self.app,
            &system,
            "test",
            username,
            "",
            "correct horse battery",
            role,
        )
        .await
        .expect("create user");
        let actor = holdfast_app::auth::actor_of(&self.app, &user, ActorKind::System)
            .await
            .expect("actor");
        let token = holdfast_app::auth::issue_token(&self.app, &actor, "test", "tests", None)
            .await
            .expect("token");
        Client {
            base_url: self.base_url.clone(),
            http: reqwest::Client::new(),
            auth: Some(format!("Bearer {}", token.secret)),
            user_id: user.id,
        }
    }

    pub async fn admin(&self) -> Client {
        self.user("admin", holdfast_domain::access::ADMIN).await
    }

    /// A client that authenticates with an API token.
    pub fn client_with_token(&self, user_id: i64, secret: &str) -> Client {
        Client {
            base_url: self.base_url.clone(),
            http: reqwest::Client::new(),
            auth: Some(format!("Bearer {secret}")),
            user_id,
        }
    }

    /// A client without credentials.
    pub fn anonymous(&self) -> Client {
        Client {
            base_url: self.base_url.clone(),
            http: reqwest::Client::new(),
            auth: None,
            user_id: 0,
        }
    }

    /// Requires a second factor for these roles (audited as the system), as an administrator
    /// would under Administration → Sign-in.
    pub async fn require_second_factor(&self, roles: &[&str]) {
        holdfast_app::two_factor::set_roles_as_system(&self.app, roles)
            .await
            .expect("second factor policy");
    }

    /// Signs `username` in with the test password and returns the `Cookie` header value of the
    /// new session (`holdfast_session=…`).
    pub async fn session_cookie(&self, username: &str) -> String {
        let login = reqwest::Client::new()
            .post(format!("{}/api/v1/auth/login", self.base_url))
            .json(&serde_json::json!({"username": username, "password": "correct horse battery"}))
            .send()
            .await
            .expect("login sent");
        assert_eq!(login.status(), 200, "{username} signs in");
        let cookie = login.headers()["set-cookie"].to_str().expect("cookie");
        cookie.split(';').next().unwrap_or_default().to_owned()
    }

    /// Audit entries of one record, oldest first, read straight from the database.
    pub async fn audit_of(&self, entity: &str, id: i64) -> Vec<holdfast_app::AuditRow> {
        let entity = holdfast_domain::Entity::from_name(entity).unwrap();
        self.app
            .db
            .audit_entries(Some(entity), Some(id), None, 1000)
            .await
            .unwrap()
    }

    /// Every row of every table a backup holds, plus every session: two equal fingerprints
    /// mean nothing in the database changed in between (rows, audit log, sessions, tokens).
    /// Refusals, which the audit log records, are left out: they change nothing.
    pub async fn fingerprint(&self) -> Vec<(String, Vec<Vec<Value>>)> {
        let mut out = Vec::new();
        let tables = self.app.db.backup_tables().await.unwrap();
        let mut snapshot = self.app.db.snapshot().await.unwrap();
        for table in &tables {
            // Refusals are written to the audit log (with the chain's head) but change nothing.
            if table.name == "audit_head" {
                continue;
            }
            let mut rows = snapshot.rows(table, None, 1_000_000).await.unwrap();
            if table.name == "audit_log" {
                let action = table.columns.iter().position(|c| c.name == "action");
                rows.retain(|row| action.is_none_or(|i| row[i] != "access.refused"));
            }
            out.push((table.name.clone(), rows));
        }
        drop(snapshot);
        let mut sessions = Vec::new();
        for user in self.app.db.users().await.unwrap() {
            for session in self.app.db.sessions_of(user.id).await.unwrap() {
                sessions.push(vec![
                    session.id.into(),
                    session.expires_at.micros().into(),
                    session.revoked_at.map(|t| t.micros()).into(),
                ]);
            }
        }
        out.push(("sessions".into(), sessions));
        out
    }

    pub async fn versions_of(&self, entity: &str, id: i64) -> Vec<holdfast_app::VersionRow> {
        let entity = holdfast_domain::Entity::from_name(entity).unwrap();
        self.app.db.versions(entity, id).await.unwrap()
    }
}

/// A JSON API client. Every call returns the status and the parsed body (`Null` if none).
#[derive(Clone)]
pub struct Client {
    pub base_url: String,
    pub http: reqwest::Client,
    /// The `Authorization` or `Cookie` header value.
    pub auth: Option<String>,
    pub user_id: i64,
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    /// Panics with the body when the status is not the expected one.
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.body
        );
        self.body
    }

    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl Client {
    pub fn with_cookie(&self, cookie: &str) -> Client {
        Client {
            auth: Some(format!("cookie:{cookie}")),
            ..self.clone()
        }
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Reply {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base_url));
        match self.auth.as_deref() {
            Some(cookie) if cookie.starts_with("cookie:") => {
                request = request.header("Cookie", &cookie["cookie:".len()..])
            }
            Some(header) => request = request.header("Authorization", header),
            None => {}
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body read");
        let body = serde_json::from_str(&text).unwrap_or(if text.is_empty() {
            Value::Null
        } else {
            Value::String(text)
        });
        Reply {
            status,
            body,
            headers,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.send(reqwest::Method::PATCH, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.send(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(reqwest::Method::DELETE, path, None).await
    }

    /// Creates a record and returns its id.
    pub async fn create(&self, collection: &str, body: Value) -> i64 {
        let created = self
            .post(&format!("/api/v1/{collection}"), body)
            .await
            .expect(201);
        created["id"].as_i64().unwrap()
    }
}

/// Runs one test body on SQLite and on PostgreSQL: `<name>::sqlite`, `<name>::postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident, |$app:ident| $body:block) => {
        $crate::on_both_backends!($name, $crate::spawn_app, |$app| $body);
    };
    ($name:ident, $spawn:path, |$app:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let $app = $spawn($crate::Backend::Sqlite)
                    .await
                    .expect("sqlite is always available");
                $body
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some($app) = $spawn($crate::Backend::Postgres).await else {
                    return;
                };
                $body
            }
        }
    };
}
