//! The audit log sealed with a key kept outside the database: sealed at the first start,
//! refused to an instance without the key, and a rewrite by someone who can write the database
//! but lacks the key is caught, even one that marks the log "not sealed".

use holdfast_app::records::{Change, apply_change};
use holdfast_app::{App, AppConfig, AuditDraft, AuditKey, AuditRow};
use holdfast_domain::{Actor, Entity};
use holdfast_test_support::{Backend, TestDb, on_both_backends};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use std::path::Path;
use std::sync::Arc;

fn clock() -> Arc<holdfast_app::SystemClock> {
    Arc::new(holdfast_app::SystemClock)
}

async fn open_keyed(url: &str, key_file: Option<&Path>) -> anyhow::Result<App> {
    let config = AppConfig {
        audit_key_file: key_file.map(Path::to_path_buf),
        ..AppConfig::default()
    };
    App::open(url, config, clock()).await
}

/// A contact made by the administrator `boss`.
/// Why an instance with the audit key file `key_file` does not start.
async fn refused_start(url: &str, key_file: &Path) -> String {
    let refused = open_keyed(url, Some(key_file)).await.err();
    format!("{:#}", refused.expect("the instance is refused"))
}

async fn add_contact(app: &App, name: &str) {
    let boss = holdfast_test_support::boss(app).await;
    let change = Change::Create {
        entity: Entity::Contact,
        input: json!({"name": name}),
    };
    apply_change(app, &boss, "t", change).await.unwrap();
}

async fn all_entries(app: &App) -> Vec<AuditRow> {
    app.db
        .audit_entries(None, None, None, 10_000)
        .await
        .unwrap()
}

/// What a forger without the key computes: the chain's hash as it was before the seal,
/// SHA-256 over the previous hash and the entry's fields.
fn plain_hash(prev: &str, entry: &AuditRow) -> String {
    let detail = serde_json::to_string(&entry.detail).unwrap();
    let mut parts = vec![
        json!(prev),
        json!(entry.seq),
        json!(entry.at.micros()),
        json!(entry.actor_id),
        json!(entry.actor_name),
        json!(entry.op_id),
        json!(entry.action),
        json!(entry.entity),
        json!(entry.record_id),
        json!(entry.version),
        json!(detail),
    ];
    let via = &entry.via;
    if via.session_id.is_some() || via.token_id.is_some() || via.client.is_some() {
        parts.push(json!([via.session_id, via.token_id, via.client]));
    }
    let digest = Sha256::digest(serde_json::Value::Array(parts).to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

on_both_backends!(
    sealed_from_the_first_start_and_refused_to_an_instance_without_its_key,
    |app| {
        let seal = app.app.db.audit_seal().await.unwrap();
        assert!(seal.sealed() && seal.keyed_from == 1, "{seal:?}");
        let key_file = app.db.audit_key_file();
        assert!(holdfast_app::files::is_private(&key_file).unwrap());
        let key = holdfast_app::audit_key::read(&key_file).unwrap().unwrap();
        assert_eq!((key.id(), key.from()), (seal.key_id.clone(), 1));
        let first = &all_entries(&app.app).await[0];
        assert_eq!(first.action, "audit.sealed");
        assert_eq!(first.detail["key_id"], json!(seal.key_id));
        // Sealed entries are not the plain chain's hashes.
        assert_ne!(first.hash, plain_hash("", first));
        add_contact(&app.app, "王芳").await;
        app.app.db.verify_audit_chain().await.unwrap();

        // Another instance on the same database with no key, or another key, does not start.
        let other = tempfile::tempdir().unwrap();
        let other_key = other.path().join("audit.key");
        let error = refused_start(&app.db.url, &other_key).await;
        assert!(
            error.contains(&format!("sealed with audit key {}", seal.key_id))
                && error.contains("does not exist"),
            "{error}"
        );
        std::fs::write(&other_key, AuditKey::generate().unwrap().to_text()).unwrap();
        let error = refused_start(&app.db.url, &other_key).await;
        assert!(error.contains("holds audit key ak-"), "{error}");
        // Nor does one that was given no key file at all: its writes would break the seal.
        let bare = open_keyed(&app.db.url, None).await.unwrap();
        let mut tx = bare.db.begin_write(bare.now()).await.unwrap();
        let refused = tx
            .audit_event(AuditDraft::new(
                &Actor::system(),
                "t",
                "test.event",
                json!({}),
            ))
            .await
            .err()
            .unwrap();
        assert!(refused.to_string().contains("was not given"), "{refused}");
        drop(tx);
        bare.db.close().await;

        // With a copy of the key it serves, and its writes go on in the same sealed chain.
        std::fs::copy(&key_file, &other_key).unwrap();
        let second = open_keyed(&app.db.url, Some(&other_key)).await.unwrap();
        add_contact(&second, "李雷").await;
        second.db.verify_audit_chain().await.unwrap();
        second.db.close().await;
        app.app.db.verify_audit_chain().await.unwrap();
    }
);

/// A log written before the seal (an upgraded install) is sealed from its next entry on; its
/// older entries still verify. A forger who rewrites the sealed entries with the plain hash and
/// marks the log "not sealed" is named at the first sealed entry, and the next start does not
/// seal over the rewrite.
async fn sealed_later_then_rewritten_without_the_key(backend: Backend) {
    let Some(db) = TestDb::fresh(backend).await else {
        return;
    };
    let unsealed = open_keyed(&db.url, None).await.unwrap();
    for name in ["王芳", "李雷", "韩梅梅"] {
        add_contact(&unsealed, name).await;
    }
    let before = all_entries(&unsealed).await;
    // The forger's hash is the real plain hash: it reproduces every entry made before the seal.
    let mut prev = String::new();
    for entry in &before {
        assert_eq!(plain_hash(&prev, entry), entry.hash, "entry {}", entry.seq);
        prev = entry.hash.clone();
    }
    unsealed.db.close().await;

    let key_file = db.dir.path().join("audit.key");
    let app = open_keyed(&db.url, Some(&key_file)).await.unwrap();
    let from = before.len() as i64 + 1;
    let seal = app.db.audit_seal().await.unwrap();
    assert_eq!(seal.keyed_from, from);
    let key = holdfast_app::audit_key::read(&key_file).unwrap().unwrap();
    assert_eq!(key.from(), from);
    add_contact(&app, "Ada").await;
    let entries = app.db.verify_audit_chain().await.unwrap();

    // The rewrite: every sealed entry's actor changed and its hash recomputed the old way.
    let mut prev = before.last().unwrap().hash.clone();
    for entry in all_entries(&app).await.into_iter().skip(before.len()) {
        let mut forged = entry.clone();
        forged.actor_name = "nobody".into();
        forged.prev_hash = prev.clone();
        forged.hash = plain_hash(&prev, &forged);
        app.db
            .execute_raw_for_tests(&format!(
                "UPDATE audit_log SET actor_name = 'nobody', prev_hash = '{}', hash = '{}' WHERE seq = {}",
                forged.prev_hash, forged.hash, forged.seq
            ))
            .await
            .unwrap();
        prev = forged.hash;
    }
    app.db
        .execute_raw_for_tests(&format!(
            "UPDATE audit_head SET key_id = '', keyed_from = 0, hash = '{prev}' WHERE id = 1"
        ))
        .await
        .unwrap();
    let error = format!("{:#}", app.db.verify_audit_chain().await.unwrap_err());
    assert!(
        error.contains(&format!("audit entry {from} was altered"))
            && error.contains("the audit key seals it from this entry on"),
        "{error}"
    );
    app.db.close().await;

    let reopened = open_keyed(&db.url, Some(&key_file)).await.unwrap();
    assert!(!reopened.db.audit_seal().await.unwrap().sealed());
    assert_eq!(
        holdfast_app::audit_key::read(&key_file)
            .unwrap()
            .unwrap()
            .from(),
        from,
        "the key file still says where the seal starts"
    );
    let error = format!("{:#}", reopened.db.verify_audit_chain().await.unwrap_err());
    assert!(
        error.contains(&format!("audit entry {from} was altered")),
        "{error}"
    );
    assert_eq!(
        reopened
            .db
            .query_i64_for_tests("SELECT MAX(seq) FROM audit_log")
            .await
            .unwrap(),
        entries,
        "nothing was sealed over the rewrite"
    );
    reopened.db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_later_then_rewritten_without_the_key_sqlite() {
    sealed_later_then_rewritten_without_the_key(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_later_then_rewritten_without_the_key_postgres() {
    sealed_later_then_rewritten_without_the_key(Backend::Postgres).await;
}
