//! The one write path: a failed audit insert rolls the whole change back, and no code outside
//! the write transaction writes customer records, versions or the audit log.

use holdfast_test_support::on_both_backends;
use serde_json::json;

on_both_backends!(a_failing_audit_insert_leaves_the_record_unchanged, |app| {
    let rep = app.user("careful", "rep").await;
    let id = rep
        .create("contacts", json!({"name": "Before", "tags": ["x"]}))
        .await;
    let versions_before = app.app.db.count_rows("record_versions").await.unwrap();
    app.app
        .db
        .execute_raw_for_tests("ALTER TABLE audit_log RENAME TO audit_log_broken")
        .await
        .unwrap();
    let failed = rep
        .patch(
            &format!("/api/v1/contacts/{id}"),
            json!({"expected_version": 1, "name": "After", "tags": []}),
        )
        .await;
    assert_eq!(failed.status, 500);
    assert_eq!(failed.error_code(), "internal_error");
    assert!(
        failed.body["error"]["op_id"]
            .as_str()
            .is_some_and(|op| op.len() >= 8),
        "the user gets an op id to quote"
    );
    let created = rep.post("/api/v1/contacts", json!({"name": "Never"})).await;
    assert_eq!(created.status, 500);
    app.app
        .db
        .execute_raw_for_tests("ALTER TABLE audit_log_broken RENAME TO audit_log")
        .await
        .unwrap();
    let row = app
        .app
        .db
        .record(holdfast_domain::Entity::Contact, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (row.title(), row.version, row.tags.clone()),
        ("Before".to_owned(), 1, vec!["x".to_owned()])
    );
    assert_eq!(
        app.app.db.count_rows("record_versions").await.unwrap(),
        versions_before,
        "no version without its audit entry"
    );
    assert_eq!(
        app.app.db.count_rows("contacts").await.unwrap(),
        1,
        "no row without its audit entry"
    );
    let found = rep.get("/api/v1/contacts?q=after").await.expect(200);
    assert_eq!(
        found["items"],
        json!([]),
        "the search index rolled back too"
    );
});

/// Tables that only `holdfast-store`'s write transaction may write.
const GUARDED_TABLES: &[&str] = &[
    "companies",
    "contacts",
    "deals",
    "activities",
    "record_versions",
    "record_tags",
    "search_terms",
    "audit_log",
    "audit_head",
];

#[test]
fn only_the_write_transaction_writes_customer_tables() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut offenders = Vec::new();
    let mut files = Vec::new();
    collect_rust_files(&root.join("crates"), &mut files);
    assert!(files.len() > 20, "scanned the workspace");
    for file in files {
        let relative = file
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if relative == "crates/holdfast-store/src/write.rs"
            || relative.contains("/tests/")
            || relative.ends_with("schema.rs")
        {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap().to_lowercase();
        for table in GUARDED_TABLES {
            for verb in [
                format!("insert into {table}"),
                format!("update {table}"),
                format!("delete from {table}"),
            ] {
                if text.contains(&verb) {
                    offenders.push(format!("{relative}: {verb}"));
                }
            }
        }
        // Table names are also built from `entity.plural()`: only write.rs may do that in a write.
        for verb in ["insert into {}", "update {} set", "delete from {}"] {
            if text.contains(verb) {
                offenders.push(format!("{relative}: {verb}"));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "writes outside the write path:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_web_layer_does_not_depend_on_the_store() {
    let manifest = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../holdfast-web/Cargo.toml"),
    )
    .unwrap();
    assert!(
        !manifest.contains("holdfast-store"),
        "holdfast-web must reach data only through holdfast-app"
    );
}

fn collect_rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

on_both_backends!(
    a_batch_is_all_or_nothing_with_a_version_and_audit_entry_each,
    |app| {
        use holdfast_app::records::{Change, apply_changes};
        use holdfast_domain::Entity;
        let importer = app.user("importer", "admin").await;
        let actor = holdfast_test_support::actor(&app.app, importer.user_id).await;
        let create = |input| Change::Create {
            entity: Entity::Contact,
            input,
        };
        let audit_before = app.app.db.count_rows("audit_log").await.unwrap();
        let refused = apply_changes(
            &app.app,
            &actor,
            "batch-test",
            vec![
                create(json!({"name": "One"})),
                create(json!({"name": "Two"})),
                create(json!({"name": "", "email": "nope"})),
            ],
        )
        .await;
        let Err(holdfast_app::AppError::Invalid(errors)) = refused else {
            panic!("the batch should be refused: {refused:?}");
        };
        let fields: Vec<&str> = errors.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["batch.2.email", "batch.2.name"]);
        assert_eq!(
            app.app.db.count_rows("contacts").await.unwrap(),
            0,
            "none of it"
        );
        assert_eq!(
            app.app.db.count_rows("audit_log").await.unwrap(),
            audit_before
        );

        let company = Change::Create {
            entity: Entity::Company,
            input: json!({"name": "Batch Ltd"}),
        };
        let done = apply_changes(&app.app, &actor, "batch-test", vec![company])
            .await
            .unwrap();
        let company_id = done[0].record.id;
        let rows: Vec<Change> = (0..50)
            .map(|i| create(json!({"name": format!("联系人{i}"), "company_id": company_id})))
            .collect();
        let outcomes = apply_changes(&app.app, &actor, "batch-test", rows)
            .await
            .unwrap();
        assert_eq!(outcomes.len(), 50);
        assert_eq!(app.app.db.count_rows("contacts").await.unwrap(), 50);
        assert_eq!(app.app.db.count_rows("record_versions").await.unwrap(), 51);
        assert_eq!(
            app.app.db.count_rows("audit_log").await.unwrap(),
            audit_before + 51,
            "one audit entry per record"
        );
        assert_eq!(
            app.app.db.verify_audit_chain().await.unwrap(),
            audit_before + 51
        );
        let too_many: Vec<Change> = (0..=holdfast_app::records::MAX_BATCH)
            .map(|i| create(json!({"name": format!("x{i}")})))
            .collect();
        assert!(
            apply_changes(&app.app, &actor, "batch-test", too_many)
                .await
                .is_err()
        );
    }
);
