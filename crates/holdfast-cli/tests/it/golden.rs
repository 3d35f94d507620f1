//! Golden fixtures: a small CRM at every past schema version, kept in
//! `tests/fixtures/schema-vNN.sql`, upgraded to today's schema on both backends and read back.
//!
//! A fixture is the data of every table as it stood at that version (the tables are made by
//! the migrations up to it): users of every role, companies, contacts, deals and activities
//! with their history, a record in the recycle bin, a restored one, a custom role, an access
//! grant, a backup run and its drill, the audit log. It is written once, when its version is
//! new, and never regenerated: `UPDATE_FIXTURES=1 cargo test -p holdfast-cli --test it golden`
//! writes the fixtures that are missing (the ones for versions 1 to 16 were made that way on
//! 2026-12-03, from a data set written through the write path of schema 16 and reduced to each
//! version's tables and columns, non-administrators being `member`s before roles existed).
//!
//! The test applies each fixture at its version, then upgrades and checks the copy as
//! `holdfast upgrade --rehearse` does: every migration in one transaction with every table's
//! rows checked, then every record and its history read back through the app as an
//! administrator and the audit chain verified.

use holdfast_app::records::{Change, apply_change};
use holdfast_app::schema::{current_version, statements};
use holdfast_app::{App, AppConfig, BACKUP_TABLES, Db};
use holdfast_domain::Entity;
use holdfast_test_support::{Backend, TestDb};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;

fn fixture(version: i64) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/fixtures/schema-v{version:02}.sql"))
}

#[test]
fn every_schema_version_has_a_fixture() {
    if std::env::var_os("UPDATE_FIXTURES").is_some() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(write_missing_fixtures());
    }
    for version in 1..=current_version() {
        assert!(
            fixture(version).exists(),
            "no golden fixture for schema version {version}: run UPDATE_FIXTURES=1 cargo test -p holdfast-cli --test it golden, and commit {}",
            fixture(version).display()
        );
    }
}

async fn golden_fixtures_upgrade(backend: Backend) {
    for version in 1..=current_version() {
        let Some(db) = TestDb::fresh(backend).await else {
            return;
        };
        let sql = std::fs::read_to_string(fixture(version)).unwrap();
        let store = Db::connect(&db.url).await.unwrap();
        store.migrate_to(version).await.unwrap();
        for statement in statements(&sql) {
            store
                .execute_raw_for_tests(statement)
                .await
                .unwrap_or_else(|e| panic!("fixture v{version}: {e:#}: {statement}"));
        }
        store.close().await;
        let done = holdfast_app::upgrade::rehearse(&db.url, None, None)
            .await
            .unwrap_or_else(|e| panic!("schema v{version} on {backend:?}: {e:#}"));
        assert_eq!(
            done.applied.len() as i64,
            current_version() - version,
            "v{version}"
        );
        // Schema 1 held accounts and the audit log only; customer records came with 2.
        let records_then = version >= 2;
        assert!(
            (!records_then || (done.records >= 10 && done.versions > done.records))
                && done.audit_entries > 10,
            "v{version}: {done:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_fixtures_of_every_past_schema_upgrade_on_sqlite() {
    golden_fixtures_upgrade(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_fixtures_of_every_past_schema_upgrade_on_postgres() {
    golden_fixtures_upgrade(Backend::Postgres).await;
}

/// Writes the fixture of every version that has none, from a data set made now.
async fn write_missing_fixtures() {
    let missing: Vec<i64> = (1..=current_version())
        .filter(|v| !fixture(*v).exists())
        .collect();
    if missing.is_empty() {
        return;
    }
    let data = TestDb::fresh(Backend::Sqlite).await.unwrap();
    let app = data_set(&data).await;
    let today = fresh_at(current_version()).await;
    for version in missing {
        let then = fresh_at(version).await;
        let sql = dump(&app.db, &then.1, &today.1, version).await;
        std::fs::create_dir_all(fixture(version).parent().unwrap()).unwrap();
        std::fs::write(fixture(version), sql).unwrap();
        then.1.close().await;
    }
    app.db.close().await;
}

/// An empty database at `version`, to see which tables, columns and settings rows it has.
async fn fresh_at(version: i64) -> (TestDb, Db) {
    let db = TestDb::fresh(Backend::Sqlite).await.unwrap();
    let store = Db::connect(&db.url).await.unwrap();
    store.migrate_to(version).await.unwrap();
    (db, store)
}

/// A small CRM written through today's write path by the system and an administrator acting
/// as the server does (no session or token: the audit entries hash the same at every schema).
async fn data_set(db: &TestDb) -> App {
    let app = App::open(
        &db.url,
        AppConfig::default(),
        Arc::new(holdfast_app::SystemClock),
    )
    .await
    .unwrap();
    let boss = holdfast_test_support::boss(&app).await;
    let system = holdfast_domain::Actor::system();
    for (name, role) in [("mgr", "manager"), ("li", "rep"), ("audit", "auditor")] {
        holdfast_app::users::create_user_unchecked(
            &app,
            &system,
            "t",
            name,
            name,
            "correct horse battery",
            role,
        )
        .await
        .unwrap();
    }
    let create = |entity, input| Change::Create { entity, input };
    let id = |outcome: holdfast_app::records::Outcome| outcome.record.into_record().id;
    let mut companies = Vec::new();
    for name in ["北京华信科技有限公司", "Acme GmbH"] {
        let done = apply_change(
            &app,
            &boss,
            "t",
            create(Entity::Company, json!({"name": name})),
        )
        .await
        .unwrap();
        companies.push(id(done));
    }
    let mut contacts = Vec::new();
    for (name, company, email) in [
        ("王芳", companies[0], "wang.fang@huaxin.cn"),
        ("李雷", companies[0], "li.lei@huaxin.cn"),
        ("Ada Lovelace", companies[1], "ada@acme.example"),
        ("韩梅梅", companies[0], "han@huaxin.cn"),
    ] {
        let input =
            json!({"name": name, "company_id": company, "email": email, "mobile": "13800138000"});
        let done = apply_change(&app, &boss, "t", create(Entity::Contact, input))
            .await
            .unwrap();
        contacts.push(id(done));
    }
    for (title, contact) in [("年度合同", contacts[0]), ("Pilot", contacts[2])] {
        let input = json!({"name": title, "company_id": companies[0], "contact_id": contact, "amount_minor": 12_000_000});
        apply_change(&app, &boss, "t", create(Entity::Deal, input))
            .await
            .unwrap();
    }
    for subject in ["电话回访", "Demo"] {
        let input = json!({"subject": subject, "contact_id": contacts[0], "kind": "call"});
        apply_change(&app, &boss, "t", create(Entity::Activity, input))
            .await
            .unwrap();
    }
    // History: an edit, a record in the recycle bin, one deleted and restored.
    let edit = Change::Update {
        entity: Entity::Contact,
        id: contacts[1],
        input: json!({"expected_version": 1, "title": "采购经理"}),
    };
    apply_change(&app, &boss, "t", edit).await.unwrap();
    for contact in [contacts[3], contacts[2]] {
        let delete = Change::Delete {
            entity: Entity::Contact,
            id: contact,
            expected_version: Some(1),
            reason: Some("duplicate".into()),
        };
        apply_change(&app, &boss, "t", delete).await.unwrap();
    }
    let restore = Change::Restore {
        entity: Entity::Contact,
        id: contacts[2],
        reason: Some("not a duplicate after all".into()),
    };
    apply_change(&app, &boss, "t", restore).await.unwrap();
    // Permissions: a custom role, an access grant.
    let role = holdfast_app::RoleRow {
        key: "field_sales".into(),
        name: "Field sales".into(),
        rights: vec!["contacts.view".into(), "contacts.edit".into()],
        scope: "own".into(),
        fields: Default::default(),
    };
    holdfast_app::access::change(
        &app,
        &boss,
        "t",
        holdfast_app::access::AccessChange::PutRole(role),
        false,
    )
    .await
    .unwrap();
    let li = app.db.user_by_username("li").await.unwrap().unwrap();
    let li_actor = holdfast_test_support::actor(&app, li.id).await;
    let request = holdfast_app::access::request(
        &app,
        &li_actor,
        "t",
        holdfast_domain::access::parse_permission("exports.export").unwrap(),
        None,
        "quarterly list",
    )
    .await
    .unwrap();
    holdfast_app::access::decide(
        &app,
        &boss,
        "t",
        request.id,
        holdfast_app::access::Decision::Approve { expires_at: None },
    )
    .await
    .unwrap();
    // A backup and its restore drill, as the server records them.
    let app = app.with_backups(holdfast_test_support::backup_config(db.dir.path()));
    holdfast_app::backup::schedule::run(&app, "manual")
        .await
        .unwrap();
    app
}

/// The data of `source` as the tables of `then` (a database at `version`) hold it: each of
/// its tables emptied of what its migrations put there and filled with `source`'s rows over
/// its columns — less the settings rows later migrations add (`today` has them, `then` not).
async fn dump(source: &Db, then: &Db, today: &Db, version: i64) -> String {
    let mut tables: Vec<String> = then
        .query_texts_for_tests(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name != 'schema_migrations' ORDER BY name",
        )
        .await
        .unwrap();
    // Parents before children, as a restore loads them.
    let rank = |t: &String| {
        BACKUP_TABLES
            .iter()
            .position(|(name, _)| name == t)
            .unwrap_or(usize::MAX)
    };
    tables.sort_by_key(|t| (rank(t), t.clone()));
    let mut out = format!(
        "-- Holdfast golden fixture: the data at schema version {version} (see tests/it/golden.rs).\n"
    );
    for table in tables {
        let columns = then.table_columns(&table).await.unwrap();
        let key = BACKUP_TABLES
            .iter()
            .find(|(name, _)| *name == table)
            .map(|(_, key)| *key);
        let added_later: Vec<String> = match key {
            Some(key) => {
                let sql = format!("SELECT CAST({key} AS TEXT) FROM {table}");
                let was = then.query_texts_for_tests(&sql).await.unwrap();
                today
                    .query_texts_for_tests(&sql)
                    .await
                    .unwrap()
                    .into_iter()
                    .filter(|k| !was.contains(k))
                    .collect()
            }
            None => Vec::new(),
        };
        let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
        let select = names
            .iter()
            .map(|c| format!("CAST({c} AS TEXT)"))
            .collect::<Vec<_>>()
            .join(", ");
        let order = key.unwrap_or(names[0]);
        let rows = source
            .query_rows_for_tests(&format!("SELECT {select} FROM {table} ORDER BY {order}"))
            .await
            .unwrap();
        out.push_str(&format!("DELETE FROM {table};\n"));
        let key_at = key.and_then(|k| names.iter().position(|n| *n == k));
        for row in rows {
            if let Some(at) = key_at
                && row[at].as_ref().is_some_and(|k| added_later.contains(k))
            {
                continue;
            }
            let values: Vec<String> = row
                .iter()
                .zip(&columns)
                .map(|(value, (name, kind))| match value {
                    None => "NULL".to_owned(),
                    Some(v) if table == "users" && name == "role" && version < 7 => {
                        if v == "admin" {
                            "'admin'".into()
                        } else {
                            "'member'".into()
                        }
                    }
                    Some(v) if kind == "integer" => v.clone(),
                    Some(v) => format!("'{}'", v.replace('\'', "''")),
                })
                .collect();
            out.push_str(&format!(
                "INSERT INTO {table} ({}) VALUES ({});\n",
                names.join(", "),
                values.join(", ")
            ));
        }
    }
    out
}
