//! Page render time: the contact list (first page, a search, a deep page) and a contact's
//! detail page, served by the real server on 127.0.0.1 to a logged-in browser session.
//! Prints figures; asserts nothing. `cargo bench -p holdfast-cli --bench pages [-- CONTACTS]`
//! (default 5,000 contacts, SQLite; set HOLDFAST_BENCH_BACKEND=postgres for PostgreSQL).
//!
//! The full benchmark at a million contacts, with the machine's own limits beside each figure,
//! is `holdfast bench` (see BENCHMARKS.md once it exists); this one keeps page rendering honest
//! until then and compiles with every `cargo clippy --all-targets`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use holdfast_app::records::{self, Change};
use holdfast_domain::Actor;
use holdfast_test_support::{Backend, spawn_app};
use serde_json::json;
use std::time::{Duration, Instant};

const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "Smith", "Garcia", "Müller",
];
const GIVEN: &[&str] = &["伟", "芳", "娜", "敏", "静", "强", "Anna", "James", "Lena"];

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let contacts: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5_000);
    let backend = match std::env::var("HOLDFAST_BENCH_BACKEND").as_deref() {
        Ok("postgres") => Backend::Postgres,
        _ => Backend::Sqlite,
    };
    let app = spawn_app(backend).await.expect("database available");
    let user = holdfast_app::users::create_user_unchecked(
        &app.app,
        &Actor::system(),
        "bench",
        "rep",
        "Rep",
        "correct horse battery",
        holdfast_domain::access::REP,
    )
    .await
    .unwrap();
    let actor = holdfast_app::auth::actor_of(&app.app, &user, holdfast_domain::ActorKind::System)
        .await
        .unwrap();
    let started = Instant::now();
    let mut last = 0;
    for i in 0..contacts {
        let name = format!(
            "{}{}{}",
            SURNAMES[i % SURNAMES.len()],
            GIVEN[(i / 7) % GIVEN.len()],
            i
        );
        let input = json!({"name": name, "mobile": format!("138{:08}", i), "email": format!("c{i}@example.cn")});
        let change = Change::Create {
            entity: holdfast_domain::Entity::Contact,
            input,
        };
        last = records::apply_change(&app.app, &actor, "bench", change)
            .await
            .unwrap()
            .record
            .id;
    }
    println!(
        "{contacts} contacts on {} through the write path in {:.1} s",
        app.app.db.backend().name(),
        started.elapsed().as_secs_f64()
    );

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = http
        .post(format!("{}/api/v1/auth/login", app.base_url))
        .json(&json!({"username": "rep", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let first = http
        .get(format!("{}/contacts?sort=name", app.base_url))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let cursor = first
        .split("cursor=")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_owned();
    let pages = [
        ("contact list, first page", "/contacts".to_owned()),
        (
            "contact list, second page by name",
            format!("/contacts?sort=name&cursor={cursor}"),
        ),
        (
            "contact list, search 王伟",
            "/contacts?q=%E7%8E%8B%E4%BC%9F".to_owned(),
        ),
        (
            "contact list, search phone digits",
            "/contacts?q=0001".to_owned(),
        ),
        ("contact detail page", format!("/contacts/{last}")),
        ("home page", "/".to_owned()),
    ];
    println!(
        "{:<36} {:>8} {:>8} {:>8} {:>9}",
        "page", "p50 ms", "p99 ms", "max ms", "bytes"
    );
    for (name, path) in pages {
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..300 {
            let started = Instant::now();
            let response = http
                .get(format!("{}{path}", app.base_url))
                .header("Cookie", &cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{path}");
            bytes = response.bytes().await.unwrap().len();
            times.push(started.elapsed());
        }
        times.sort();
        println!(
            "{name:<36} {:>8.2} {:>8.2} {:>8.2} {bytes:>9}",
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            percentile(&times, 1.0)
        );
    }
}
