//! `holdfast bench`: builds a realistic data set through the real write path, then measures the
//! real server (this very binary, started as a child process on 127.0.0.1) and prints every
//! figure beside the machine's own limit, measured in the same run: the bare database with the
//! same durability settings, and a minimal HTTP handler doing one primary-key read.
//!
//! Absolute numbers move from run to run on a shared machine; the ratios within one run are
//! what to compare. Nothing here asserts a timing: it prints, and writes a JSON file.

use anyhow::{Context as _, bail};
use holdfast_app::records::{self, Change, MAX_BATCH};
use holdfast_app::{App, AppConfig, SystemClock};
use holdfast_domain::{Actor, ActorKind, Entity};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct BenchArgs {
    pub contacts: u64,
    pub out: Option<PathBuf>,
    pub database_url: Option<String>,
    pub data_dir: Option<PathBuf>,
    /// How long each measure runs.
    pub seconds: f64,
}

/// Made-up but plausible customers: Chinese and English names, e-mails, mobile numbers.
struct Names(u64);

const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭",
];
const GIVEN: &[&str] = &[
    "伟", "芳", "娜", "秀英", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟",
    "涛", "明", "超", "秀兰", "霞",
];
const LATIN_FIRST: &[&str] = &[
    "Anna", "James", "Lena", "Oliver", "Sofia", "Lucas", "Mia", "Noah", "Emma", "Liam",
];
const LATIN_LAST: &[&str] = &[
    "Smith", "Garcia", "Müller", "Rossi", "Kim", "Nguyen", "Tanaka", "Silva", "Brown", "Novak",
];
const INDUSTRIES: &[&str] = &["制造", "物流", "零售", "Software", "Healthcare", "教育"];

impl Names {
    fn next(&mut self) -> u64 {
        // A linear congruential generator: deterministic data sets, no dependency.
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn pick<'a>(&mut self, list: &[&'a str]) -> &'a str {
        list[(self.next() as usize) % list.len()]
    }

    fn person(&mut self, i: u64) -> Value {
        let (name, email) = if i % 4 == 3 {
            let (first, last) = (self.pick(LATIN_FIRST), self.pick(LATIN_LAST));
            (
                format!("{first} {last}"),
                format!(
                    "{}.{}{i}@example.com",
                    first.to_lowercase(),
                    last.to_lowercase()
                ),
            )
        } else {
            let (sur, given) = (self.pick(SURNAMES), self.pick(GIVEN));
            (format!("{sur}{given}"), format!("c{i}@example.cn"))
        };
        json!({
            "name": name,
            "email": email,
            "mobile": format!("+86 13{} {:04} {:04}", i % 10, self.next() % 10_000, self.next() % 10_000),
            "title": if i.is_multiple_of(3) { "采购经理" } else { "Buyer" },
        })
    }
}

/// Latencies of one measure and what they add up to.
struct Measured {
    name: String,
    concurrency: usize,
    requests: usize,
    errors: usize,
    throughput: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
}

impl Measured {
    fn json(&self) -> Value {
        json!({
            "name": self.name, "concurrency": self.concurrency, "requests": self.requests,
            "errors": self.errors, "throughput_per_s": self.throughput,
            "p50_ms": self.p50_ms, "p99_ms": self.p99_ms, "p999_ms": self.p999_ms,
        })
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[index]) / 1000.0
}

#[derive(Clone)]
enum Load {
    Get(Vec<String>),
    Post(String, Arc<dyn Fn(u64) -> Value + Send + Sync>),
    /// PATCH each worker's own record, tracking its version.
    Update(Vec<(String, i64)>),
}

/// Runs `load` with `concurrency` workers for `seconds` against `base`.
async fn measure(
    http: &reqwest::Client,
    base: &str,
    auth: &(&'static str, String),
    name: &str,
    load: Load,
    concurrency: usize,
    seconds: f64,
) -> Measured {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..concurrency {
        let (http, base, auth, load) = (http.clone(), base.to_owned(), auth.clone(), load.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            let mut n: u64 = worker as u64;
            let mut version: Option<i64> = None;
            while Instant::now() < deadline {
                let one = Instant::now();
                let request = match &load {
                    Load::Get(paths) => {
                        http.get(format!("{base}{}", paths[(n as usize) % paths.len()]))
                    }
                    Load::Post(path, body) => http.post(format!("{base}{path}")).json(&body(n)),
                    Load::Update(targets) => {
                        let (path, first) = &targets[worker % targets.len()];
                        let expected = *version.get_or_insert(*first);
                        http.patch(format!("{base}{path}")).json(
                            &json!({"title": format!("Title {n}"), "expected_version": expected}),
                        )
                    }
                };
                let ok = match request.header(auth.0, &auth.1).send().await {
                    Ok(response) => {
                        let success = response.status().is_success();
                        let _ = response.bytes().await;
                        success
                    }
                    Err(_) => false,
                };
                if ok {
                    if let Some(v) = version.as_mut() {
                        *v += 1;
                    }
                    latencies.push(u32::try_from(one.elapsed().as_micros()).unwrap_or(u32::MAX));
                } else {
                    errors += 1;
                }
                n += concurrency as u64;
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for worker in workers {
        if let Ok((latencies, failed)) = worker.await {
            all.extend(latencies);
            errors += failed;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    Measured {
        name: name.to_owned(),
        concurrency,
        requests: all.len(),
        errors,
        throughput: all.len() as f64 / elapsed,
        p50_ms: percentile(&all, 0.5),
        p99_ms: percentile(&all, 0.99),
        p999_ms: percentile(&all, 0.999),
    }
}

/// The server under test: this binary's `serve`, as its own process.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    async fn start(url: &str, dir: &Path) -> anyhow::Result<Server> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let config = dir.join("bench-holdfast.toml");
        // The bench measures backups itself; the server takes none of its own meanwhile.
        // Its data folder (where the backup key is made) is the bench's own temporary one.
        // Its clients read and write in bulk on purpose: the mass-action guards would stop
        // them, so their limits are out of reach here.
        std::fs::write(
            &config,
            format!(
                "data_dir = {}\n[log]\nlevel = \"warn\"\n[backup]\nevery_minutes = 0\non_shutdown = false\n[guards]\ndeletes = 1000000000\nbulk_reads = 1000000000\nowner_changes = 1000000000\nreverts = 1000000000\n",
                toml::Value::String(dir.join("server-data").display().to_string())
            ),
        )?;
        let child = Command::new(std::env::current_exe()?)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--database-url",
                url,
            ])
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the server")?;
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..600 {
            if let Ok(response) = http.get(format!("{base}/readyz")).send().await
                && response.status().is_success()
            {
                return Ok(Server { child, base });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the server did not become ready within 30 s")
    }

    /// Peak resident memory of the server process so far, in bytes (Linux).
    fn peak_rss(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg:<28} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

/// The minimal HTTP handler: one primary-key read from the bare table, nothing else.
async fn start_minimal_handler(db: holdfast_app::Db) -> anyhow::Result<String> {
    use axum::extract::{Path as UrlPath, State};
    async fn one(State(db): State<holdfast_app::Db>, UrlPath(id): UrlPath<i64>) -> String {
        db.raw_read(id).await.ok().flatten().unwrap_or_default()
    }
    let router = axum::Router::new()
        .route("/raw/{id}", axum::routing::get(one))
        .with_state(db);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(base)
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let scratch = tempfile_dir(args.data_dir.as_deref())?;
    let dir = scratch.path().to_owned();
    let (url, sqlite_file) = match &args.database_url {
        Some(url) => (url.clone(), None),
        None => {
            let file = dir.join("bench.db");
            (format!("sqlite://{}?mode=rwc", file.display()), Some(file))
        }
    };
    // The audit key where the bench's server (its data folder is `server-data`) keeps it: the
    // log both seal is one, and the bench's backups carry the key.
    let config = AppConfig {
        audit_key_file: Some(dir.join("server-data").join("audit.key")),
        ..AppConfig::default()
    };
    let app = App::open(&url, config, Arc::new(SystemClock)).await?;
    if app.db.user_count().await? > 0 || app.db.count_rows("contacts").await? > 0 {
        bail!(
            "{} already holds users or customers; the benchmark fills a database with made-up customers, so give it an empty one",
            holdfast_app::redact(&url)
        );
    }
    let backend = app.db.backend().name();
    println!(
        "Holdfast bench: {} contacts on {backend}, {:.1} s per measure",
        args.contacts, args.seconds
    );

    // The machine's limits, on the same disk (SQLite) or in the same database (PostgreSQL).
    let spinner = ProgressBar::new_spinner();
    spinner.set_message("measuring the bare database");
    spinner.enable_steady_tick(Duration::from_millis(120));
    let limits_db = match &sqlite_file {
        Some(_) => {
            holdfast_app::Db::connect(&format!(
                "sqlite://{}?mode=rwc",
                dir.join("limits.db").display()
            ))
            .await?
        }
        None => holdfast_app::Db::connect(&url).await?,
    };
    let raw_rows = (args.contacts as i64).clamp(20_000, 200_000);
    // Through the same driver Holdfast uses (sqlx) ...
    let driver_limits = limits_db.measure_raw_limits(raw_rows, args.seconds).await?;
    // ... and, for SQLite, the engine itself through its C library: the true ceiling.
    let limits = match &sqlite_file {
        Some(_) => {
            let path = dir.join("bare.db");
            let seconds = args.seconds;
            tokio::task::spawn_blocking(move || {
                holdfast_app::measure_bare_sqlite(&path, raw_rows, seconds)
            })
            .await??
        }
        None => driver_limits,
    };
    spinner.set_message("measuring a minimal HTTP handler");
    let minimal = start_minimal_handler(limits_db.clone()).await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let raw_paths: Vec<String> = (0..1000)
        .map(|i| format!("/raw/{}", 1 + (i * 7919) % raw_rows))
        .collect();
    let none = ("x-bench", String::new());
    let mut handler_limit = Vec::new();
    for concurrency in [1, 16] {
        handler_limit.push(
            measure(
                &http,
                &minimal,
                &none,
                "minimal handler",
                Load::Get(raw_paths.clone()),
                concurrency,
                args.seconds,
            )
            .await,
        );
    }
    spinner.finish_and_clear();
    let engine = if sqlite_file.is_some() {
        "bare SQLite"
    } else {
        "PostgreSQL via sqlx"
    };
    println!(
        "limits ({engine}): {:.0} one-row commits/s, {:.0} batched rows/s, {:.0} primary-key reads/s, index lookup {:.0} µs",
        limits.one_row_commits, limits.batched_rows, limits.pk_reads, limits.index_lookup_us
    );
    if sqlite_file.is_some() {
        println!(
            "through sqlx: {:.0} one-row commits/s, {:.0} batched rows/s, {:.0} primary-key reads/s, index lookup {:.0} µs",
            driver_limits.one_row_commits,
            driver_limits.batched_rows,
            driver_limits.pk_reads,
            driver_limits.index_lookup_us
        );
    }
    println!(
        "minimal handler (one primary-key read through sqlx): {:.0} req/s (c=1), {:.0} req/s (c=16)",
        handler_limit[0].throughput, handler_limit[1].throughput
    );

    // Who the load runs as: an administrator with an API token, and a browser session. The
    // bench's throwaway database does not require its administrator to enrol a second factor.
    holdfast_app::two_factor::set_roles_as_system(&app, &[]).await?;
    let admin = holdfast_app::users::create_user_unchecked(
        &app,
        &Actor::system(),
        "bench",
        "bench",
        "Bench",
        "stopwatch on the kitchen table",
        holdfast_domain::access::ADMIN,
    )
    .await?;
    let actor = holdfast_app::auth::actor_of(&app, &admin, ActorKind::System).await?;
    let token = holdfast_app::auth::issue_token(&app, &actor, "bench", "bench", None).await?;
    let bearer = ("authorization", format!("Bearer {}", token.secret));
    // A sales rep who owns every 20th contact: what a scoped list and search cost.
    let rep = holdfast_app::users::create_user_unchecked(
        &app,
        &Actor::system(),
        "bench",
        "bench_rep",
        "Bench rep",
        "stopwatch on the kitchen table",
        holdfast_domain::access::REP,
    )
    .await?;
    let rep_actor = holdfast_app::auth::actor_of(&app, &rep, ActorKind::System).await?;
    let rep_token =
        holdfast_app::auth::issue_token(&app, &rep_actor, "bench", "bench", None).await?;
    let rep_bearer = ("authorization", format!("Bearer {}", rep_token.secret));

    let mut checkpoints: Vec<u64> = [10_000u64, 100_000, 1_000_000]
        .into_iter()
        .filter(|c| *c < args.contacts)
        .collect();
    checkpoints.push(args.contacts);
    let mut names = Names(42);
    let mut built_contacts = 0u64;
    let mut company_ids: Vec<i64> = Vec::new();
    let mut contact_ids: Vec<i64> = Vec::new();
    let mut build_seconds = 0.0;
    let mut build_records = 0u64;
    let mut growth = Vec::new();
    let mut report = json!({
        "backend": backend, "contacts": args.contacts, "seconds_per_measure": args.seconds,
        "machine": machine(),
        "limits": {
            "engine": engine,
            "one_row_commits_per_s": limits.one_row_commits, "batched_rows_per_s": limits.batched_rows,
            "pk_reads_per_s": limits.pk_reads, "index_lookup_us": limits.index_lookup_us,
            "through_sqlx": {
                "one_row_commits_per_s": driver_limits.one_row_commits, "batched_rows_per_s": driver_limits.batched_rows,
                "pk_reads_per_s": driver_limits.pk_reads, "index_lookup_us": driver_limits.index_lookup_us,
            },
            "minimal_handler": handler_limit.iter().map(Measured::json).collect::<Vec<_>>(),
        },
    });
    let mut final_reads = Vec::new();
    let mut writes = Vec::new();
    let mut peak_rss = None;
    let mut sample = json!({});
    for (step, target) in checkpoints.iter().enumerate() {
        // Grow the data set to `target` contacts, with a company per 10 contacts and a deal
        // and an activity per 10, all through the write path in batches.
        let started = Instant::now();
        let progress = bar(
            *target - built_contacts,
            &format!("building to {target} contacts"),
        );
        while built_contacts < *target {
            let n = (*target - built_contacts).min(MAX_BATCH as u64 / 2);
            let mut companies = Vec::new();
            for k in 0..n.div_ceil(10) {
                let i = built_contacts + k * 10;
                companies.push(Change::Create { entity: Entity::Company, input: json!({
                    "name": format!("{}{}有限公司 {i}", names.pick(SURNAMES), names.pick(INDUSTRIES)),
                    "industry": names.pick(INDUSTRIES), "phone": format!("+86 21 {:04} {:04}", i % 10_000, (i / 7) % 10_000),
                }) });
            }
            let created = records::apply_changes(&app, &actor, "bench", companies).await?;
            company_ids.extend(created.iter().map(|o| o.record.id));
            let mut people = Vec::new();
            for k in 0..n {
                let i = built_contacts + k;
                let mut input = names.person(i);
                input["company_id"] =
                    json!(company_ids[(names.next() as usize) % company_ids.len()]);
                if i.is_multiple_of(20) {
                    input["owner_id"] = json!(rep.id);
                }
                people.push(Change::Create {
                    entity: Entity::Contact,
                    input,
                });
            }
            let created = records::apply_changes(&app, &actor, "bench", people).await?;
            let first_new = contact_ids.len();
            contact_ids.extend(created.iter().map(|o| o.record.id));
            let mut more = Vec::new();
            for (k, outcome) in created.iter().enumerate().step_by(10) {
                let contact = &outcome.record;
                let company = contact.field_i64("company_id");
                more.push(Change::Create {
                    entity: Entity::Deal,
                    input: json!({
                        "name": format!("{} 采购项目 {}", contact.title(), first_new + k),
                        "company_id": company, "contact_id": contact.id,
                        "amount_minor": (names.next() % 5_000_000) as i64, "currency": "CNY",
                    }),
                });
                more.push(Change::Create {
                    entity: Entity::Activity,
                    input: json!({
                        "kind": "call", "subject": format!("Call {}", contact.title()),
                        "contact_id": contact.id, "company_id": company,
                        "done_at": "2026-11-01T09:00:00Z",
                    }),
                });
            }
            let extra = more.len() as u64;
            records::apply_changes(&app, &actor, "bench", more).await?;
            build_records += n + n.div_ceil(10) + extra;
            built_contacts += n;
            progress.inc(n);
        }
        progress.finish_and_clear();
        build_seconds += started.elapsed().as_secs_f64();
        // What autovacuum would have done a minute later on PostgreSQL.
        app.db.refresh_statistics().await?;

        // Targets for the read measures, from the data as it is now.
        let probe = app
            .db
            .record(Entity::Contact, contact_ids[contact_ids.len() / 2])
            .await?
            .context("a contact")?;
        let phone_digits: String = probe
            .field_str("mobile")
            .unwrap_or("")
            .chars()
            .filter(char::is_ascii_digit)
            .skip(5)
            .take(4)
            .collect();
        let email = probe.field_str("email").unwrap_or("").to_owned();
        let deep = records::cursor_after_name(&probe.title(), probe.id);
        let ids: Vec<String> = (0..1000)
            .map(|_| {
                format!(
                    "/api/v1/contacts/{}",
                    contact_ids[(names.next() as usize) % contact_ids.len()]
                )
            })
            .collect();
        let enc = |q: &str| -> String { form_urlencoded::byte_serialize(q.as_bytes()).collect() };
        let as_admin: Vec<(&str, Vec<String>)> = vec![
            ("get one contact", ids.clone()),
            ("list, first page", vec!["/api/v1/contacts?limit=50".into()]),
            (
                "list, deep page by name",
                vec![format!("/api/v1/contacts?sort=name&limit=50&cursor={deep}")],
            ),
            (
                "list, filtered by company",
                (0..100)
                    .map(|_| {
                        format!(
                            "/api/v1/contacts?limit=50&company_id={}",
                            company_ids[(names.next() as usize) % company_ids.len()]
                        )
                    })
                    .collect(),
            ),
            (
                "search 2-char Chinese name",
                ["王伟", "李娜", "张敏", "刘洋", "陈静"]
                    .iter()
                    .map(|q| format!("/api/v1/contacts?limit=50&q={}", enc(q)))
                    .collect(),
            ),
            (
                "search English prefix",
                ["smi", "garc", "müll", "tana"]
                    .iter()
                    .map(|q| format!("/api/v1/contacts?limit=50&q={}", enc(q)))
                    .collect(),
            ),
            (
                "search partial phone",
                vec![format!("/api/v1/contacts?limit=50&q={phone_digits}")],
            ),
            (
                "search e-mail",
                vec![format!("/api/v1/contacts?limit=50&q={}", enc(&email))],
            ),
        ];
        sample = json!({"phone_digits": phone_digits, "email": email, "deep_after": probe.title()});
        let mut reads: Vec<(&str, Vec<String>, &(&str, String))> = as_admin
            .into_iter()
            .map(|(name, paths)| (name, paths, &bearer))
            .collect();
        reads.extend([
            (
                "list, first page (sales rep)",
                vec!["/api/v1/contacts?limit=50".to_owned()],
                &rep_bearer,
            ),
            (
                "search 2-char Chinese (sales rep)",
                ["王伟", "李娜", "张敏", "刘洋", "陈静"]
                    .iter()
                    .map(|q| format!("/api/v1/contacts?limit=50&q={}", enc(q)))
                    .collect(),
                &rep_bearer,
            ),
        ]);

        let server = Server::start(&url, &dir).await?;
        let last = step + 1 == checkpoints.len();
        let concurrencies: &[usize] = if last { &[1, 16] } else { &[16] };
        let mut step_reads = Vec::new();
        let spinner = ProgressBar::new_spinner();
        spinner.enable_steady_tick(Duration::from_millis(120));
        for (name, paths, auth) in &reads {
            for concurrency in concurrencies {
                spinner.set_message(format!("{target} contacts: {name}, c={concurrency}"));
                step_reads.push(
                    measure(
                        &http,
                        &server.base,
                        auth,
                        name,
                        Load::Get(paths.clone()),
                        *concurrency,
                        args.seconds,
                    )
                    .await,
                );
            }
        }
        if last {
            // The pages a person opens most, as a logged-in browser.
            let login = http
                .post(format!("{}/api/v1/auth/login", server.base))
                .json(&json!({"username": "bench", "password": "stopwatch on the kitchen table"}))
                .send()
                .await?;
            let cookie = login
                .headers()
                .get("set-cookie")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(';').next())
                .unwrap_or_default()
                .to_owned();
            let session = ("cookie", cookie);
            let detail: Vec<String> = ids.iter().map(|p| p.replace("/api/v1", "")).collect();
            for (name, paths) in [
                ("page: contact list", vec!["/contacts".to_owned()]),
                ("page: contact detail", detail),
            ] {
                for concurrency in [1, 16] {
                    spinner.set_message(format!("{name}, c={concurrency}"));
                    step_reads.push(
                        measure(
                            &http,
                            &server.base,
                            &session,
                            name,
                            Load::Get(paths.clone()),
                            concurrency,
                            args.seconds,
                        )
                        .await,
                    );
                }
            }
            peak_rss = server.peak_rss();
            let create = Load::Post(
                "/api/v1/contacts".into(),
                Arc::new(
                    |n| json!({"name": format!("新客户{n}"), "mobile": format!("139{:08}", n % 100_000_000)}),
                ),
            );
            for concurrency in [1, 16] {
                spinner.set_message(format!("create a contact, c={concurrency}"));
                writes.push(
                    measure(
                        &http,
                        &server.base,
                        &bearer,
                        "create a contact",
                        create.clone(),
                        concurrency,
                        args.seconds,
                    )
                    .await,
                );
            }
            for concurrency in [1usize, 16] {
                spinner.set_message(format!("update a contact, c={concurrency}"));
                let mut own = Vec::new();
                for k in 0..concurrency {
                    let id = contact_ids[k * 37 % contact_ids.len()];
                    let version = app
                        .db
                        .record(Entity::Contact, id)
                        .await?
                        .map(|r| r.version)
                        .unwrap_or(1);
                    own.push((format!("/api/v1/contacts/{id}"), version));
                }
                writes.push(
                    measure(
                        &http,
                        &server.base,
                        &bearer,
                        "update a contact",
                        Load::Update(own),
                        concurrency,
                        args.seconds,
                    )
                    .await,
                );
            }
        }
        spinner.finish_and_clear();
        drop(server);
        growth.push(json!({"contacts": target, "reads": step_reads.iter().filter(|m| m.concurrency == 16).map(Measured::json).collect::<Vec<_>>()}));
        if last {
            final_reads = step_reads;
        }
    }

    let size = app.db.size_on_disk(sqlite_file.as_deref()).await?;
    let build_rate = build_records as f64 / build_seconds.max(1e-9);
    print_table(&final_reads, &writes, &handler_limit, &limits);
    println!();
    println!(
        "{:<36} {:>12}",
        "growth (c=16, p99 ms)",
        checkpoints
            .iter()
            .map(|c| format!("{c:>10}"))
            .collect::<String>()
    );
    for name in final_reads
        .iter()
        .filter(|m| m.concurrency == 16 && !m.name.starts_with("page"))
        .map(|m| m.name.clone())
    {
        let cells: String = growth
            .iter()
            .map(|g| {
                g["reads"]
                    .as_array()
                    .and_then(|r| r.iter().find(|m| m["name"] == name.as_str()))
                    .and_then(|m| m["p99_ms"].as_f64())
                    .map(|v| format!("{v:>10.2}"))
                    .unwrap_or_else(|| format!("{:>10}", "-"))
            })
            .collect();
        println!("{name:<36} {cells}");
    }
    println!();
    println!(
        "bulk: built {build_records} records in {build_seconds:.1} s = {build_rate:.0} records/s ({:.0}% of the bare batched-insert rate)",
        100.0 * build_rate / limits.batched_rows
    );
    let per_thousand = size as f64 / (args.contacts as f64 / 1000.0);
    println!(
        "resources: database {:.1} MB ({:.2} MB per 1,000 contacts with their companies, deals, activities, history and audit); server peak memory {}",
        size as f64 / 1e6,
        per_thousand / 1e6,
        peak_rss
            .map(|b| format!("{:.1} MB", b as f64 / 1e6))
            .unwrap_or_else(|| "unknown".into())
    );
    let backups = measure_backups(&app.db, &dir, size).await?;
    report["backup"] = backups;
    report["reads"] = final_reads.iter().map(Measured::json).collect();
    report["writes"] = writes.iter().map(Measured::json).collect();
    report["growth"] = Value::Array(growth);
    report["bulk"] = json!({"records": build_records, "seconds": build_seconds, "records_per_s": build_rate, "ratio_to_batched_inserts": build_rate / limits.batched_rows});
    report["resources"] = json!({"database_bytes": size, "bytes_per_1000_contacts": per_thousand, "server_peak_rss_bytes": peak_rss});
    report["probes"] = sample;
    if let Some(out) = &args.out {
        let tmp = out.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(&report)?)?;
        std::fs::rename(&tmp, out).with_context(|| format!("writing {}", out.display()))?;
        println!("wrote {}", out.display());
    }
    limits_db.drop_raw_table().await?;
    if args.database_url.is_none() && args.data_dir.is_some() {
        println!("kept the data set in {}", dir.display());
    }
    Ok(())
}

/// Backup, verify and restore of the full data set: time and size, plain and encrypted.
async fn measure_backups(
    db: &holdfast_app::Db,
    dir: &Path,
    database_bytes: u64,
) -> anyhow::Result<Value> {
    use holdfast_app::backup::{self, Key, Progress};
    let out = dir.join("bench-backups");
    let progress = Progress::default();
    let now = holdfast_app::Clock::now(&SystemClock);
    let spinner = ProgressBar::new_spinner();
    spinner.enable_steady_tick(Duration::from_millis(120));
    spinner.set_message("backup: creating");
    let started = Instant::now();
    let plain = backup::create(db, &out, None, now, &progress).await?;
    let create_s = started.elapsed().as_secs_f64();
    let (key_text, _) = Key::generate();
    let key = Key::identity_from_text(&key_text).map_err(anyhow::Error::msg)?;
    let started = Instant::now();
    let sealed = backup::create(db, &out, Some(&key), now, &progress).await?;
    let create_encrypted_s = started.elapsed().as_secs_f64();
    spinner.set_message("backup: verifying (checksums, then a scratch restore)");
    let started = Instant::now();
    backup::check(&sealed.path, Some(&key), &progress)?;
    let check_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    backup::verify(&sealed.path, Some(&key), Some(dir), &progress).await?;
    let verify_s = started.elapsed().as_secs_f64();
    spinner.set_message("backup: restoring into a new SQLite database");
    let target_dir = dir.join("bench-restore");
    std::fs::create_dir_all(&target_dir)?;
    let target = holdfast_app::Db::connect(&format!(
        "sqlite://{}?mode=rwc",
        target_dir.join("holdfast.db").display()
    ))
    .await?;
    let started = Instant::now();
    backup::restore(
        &target,
        &backup::Restore {
            path: &sealed.path,
            key: Some(&key),
            safety_dir: &target_dir,
            by: &holdfast_domain::Actor::system(),
            op_id: "bench",
            now,
            audit_key_file: None,
        },
        &progress,
    )
    .await?;
    let restore_s = started.elapsed().as_secs_f64();
    target.close().await;
    spinner.finish_and_clear();
    let rows = plain.manifest.rows_total();
    println!(
        "backup: {rows} rows; create {create_s:.1} s ({:.1} MB, {:.0}% of the database), encrypted {create_encrypted_s:.1} s ({:.1} MB); checksums {check_s:.1} s; verify by scratch restore {verify_s:.1} s; restore into a new SQLite database {restore_s:.1} s",
        plain.bytes as f64 / 1e6,
        100.0 * plain.bytes as f64 / (database_bytes.max(1)) as f64,
        sealed.bytes as f64 / 1e6,
    );
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&target_dir);
    Ok(json!({
        "rows": rows,
        "bytes": plain.bytes,
        "bytes_encrypted": sealed.bytes,
        "create_s": create_s,
        "create_encrypted_s": create_encrypted_s,
        "check_s": check_s,
        "verify_s": verify_s,
        "restore_s": restore_s,
    }))
}

fn print_table(
    reads: &[Measured],
    writes: &[Measured],
    handler: &[Measured],
    limits: &holdfast_app::RawLimits,
) {
    println!();
    println!(
        "{:<30} {:>3} {:>9} {:>8} {:>8} {:>9} {:>7}  limit",
        "measure", "c", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "errors"
    );
    for m in reads.iter().chain(writes) {
        let limit = if m.name.starts_with("get one") {
            let h = &handler[usize::from(m.concurrency > 1)];
            format!(
                "{:.0}% of the minimal handler",
                100.0 * m.throughput / h.throughput
            )
        } else if m.name.starts_with("create") {
            format!(
                "{:.0}% of bare one-row commits",
                100.0 * m.throughput / limits.one_row_commits
            )
        } else {
            String::new()
        };
        println!(
            "{:<30} {:>3} {:>9.0} {:>8.2} {:>8.2} {:>9.2} {:>7}  {limit}",
            m.name, m.concurrency, m.throughput, m.p50_ms, m.p99_ms, m.p999_ms, m.errors
        );
    }
}

/// What machine this ran on, for the JSON and BENCHMARKS.md.
fn machine() -> Value {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|c| {
        c.lines()
            .find(|l| l.starts_with("model name"))
            .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
    });
    json!({"cpus": cpus, "cpu": model, "os": std::env::consts::OS, "holdfast": env!("CARGO_PKG_VERSION")})
}

/// The bench's working folder: `--data-dir` (kept) or a temporary one (removed at the end).
enum Scratch {
    Kept(PathBuf),
    Temporary(tempfile::TempDir),
}

impl Scratch {
    fn path(&self) -> &Path {
        match self {
            Scratch::Kept(path) => path,
            Scratch::Temporary(dir) => dir.path(),
        }
    }
}

fn tempfile_dir(dir: Option<&Path>) -> anyhow::Result<Scratch> {
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            Ok(Scratch::Kept(dir.to_owned()))
        }
        None => Ok(Scratch::Temporary(
            tempfile::tempdir().context("creating a temporary folder")?,
        )),
    }
}
