//! Reverting one user's changes since a time: only their fields, conflicts listed and kept,
//! records they created binned and ones they deleted restored, every record accounted for, and
//! the revert itself revertible — through the API and the real `holdfast revert` binary.

use holdfast_test_support::{Client, TestApp, on_both_backends};
use serde_json::{Value, json};

async fn field(client: &Client, collection: &str, id: i64, name: &str) -> Value {
    client
        .get(&format!("/api/v1/{collection}/{id}?include_deleted=true"))
        .await
        .expect(200)[name]
        .clone()
}

async fn patch(client: &Client, id: i64, body: Value) {
    let version = client
        .get(&format!("/api/v1/contacts/{id}"))
        .await
        .expect(200)["version"]
        .clone();
    let mut body = body;
    body["expected_version"] = version;
    client
        .patch(&format!("/api/v1/contacts/{id}"), body)
        .await
        .expect(200);
}

fn record_of(preview: &Value, id: i64) -> &Value {
    preview["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["entity"] == "contact" && r["id"] == id)
        .unwrap_or_else(|| panic!("contact {id} not in {preview}"))
}

on_both_backends!(
    reverting_a_user_undoes_only_their_fields_and_lists_conflicts,
    |app| {
        let admin = app.admin().await;
        let a = app.user("user.a", "admin").await;
        let b = app.user("user.b", "admin").await;
        let mut ids = Vec::new();
        for n in 0..40 {
            ids.push(
                admin
                    .create(
                        "contacts",
                        json!({"name": format!("客户{n}"), "phone": format!("010-{n:04}"), "title": "经理"}),
                    )
                    .await,
            );
        }
        app.clock.advance_seconds(60);
        let t0 = app.app.now();
        app.clock.advance_seconds(60);
        // A changes every phone; then B changes the title of 20 and the phone of 5 of them.
        for id in &ids {
            patch(&a, *id, json!({"phone": "13800000000"})).await;
        }
        app.clock.advance_seconds(60);
        for id in &ids[..20] {
            patch(&b, *id, json!({"title": "总监"})).await;
        }
        for id in &ids[20..25] {
            patch(&b, *id, json!({"phone": "13900000000"})).await;
        }
        let body = json!({"to": t0.to_rfc3339(), "by_user_id": a.user_id, "dry_run": true});
        let preview = admin.post("/api/v1/revert", body).await.expect(200);
        assert_eq!(preview["summary"]["records"], 40, "{preview}");
        assert_eq!(preview["summary"]["changing"], 35);
        assert_eq!(preview["summary"]["fields"], 35);
        assert_eq!(preview["summary"]["conflicts"], 5);
        assert_eq!(preview["summary"]["unchanged"], 5);
        let changing = record_of(&preview, ids[0]);
        assert_eq!(changing["action"], "revert_fields");
        assert_eq!(
            changing["fields"],
            json!([{"field": "phone", "from": "13800000000", "to": "010-0000"}])
        );
        let conflicted = record_of(&preview, ids[20]);
        assert_eq!(conflicted["action"], "none");
        assert_eq!(conflicted["reason"], "only_conflicts");
        assert_eq!(
            conflicted["conflicts"],
            json!([{
                "kind": "field", "field": "phone", "value_then": "010-0020",
                "user_value": "13800000000", "later_value": "13900000000", "later_by": b.user_id,
            }])
        );
        // The dry run changed nothing.
        assert_eq!(
            field(&admin, "contacts", ids[0], "phone").await,
            "13800000000"
        );

        // Carried out with one conflict reverted on purpose: exactly what the preview said, plus it.
        let body = json!({
            "to": t0.to_rfc3339(), "by_user_id": a.user_id,
            "choices": [{"entity": "contact", "id": ids[21], "field": "phone", "choice": "revert"}],
        });
        let done = admin.post("/api/v1/revert", body).await.expect(200);
        assert_eq!(done["changed"], 36, "{done}");
        assert_eq!(done["summary"]["conflicts"], 4);
        for (n, id) in ids.iter().enumerate() {
            let title = field(&admin, "contacts", *id, "title").await;
            let phone = field(&admin, "contacts", *id, "phone").await;
            assert_eq!(
                title,
                if n < 20 { "总监" } else { "经理" },
                "B's title of {n} stays"
            );
            let expected = match n {
                21 => format!("010-{n:04}"),
                20..25 => "13900000000".to_owned(),
                _ => format!("010-{n:04}"),
            };
            assert_eq!(phone, expected.as_str(), "phone of {n}");
        }
        let versions = app.versions_of("contact", ids[0]).await;
        let last = versions.last().unwrap();
        assert_eq!(last.action, "revert");
        assert_eq!(last.actor_id, admin.user_id);
        assert!(
            last.reason
                .as_deref()
                .unwrap()
                .contains("reverted the changes of user")
        );

        // Nothing left to do: a second preview changes nothing and says why for each record.
        let again = json!({"to": t0.to_rfc3339(), "by_user_id": a.user_id, "dry_run": true});
        let again = admin.post("/api/v1/revert", again).await.expect(200);
        assert_eq!(again["summary"]["changing"], 0, "{again}");
        assert!(
            again["records"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["reason"] == "already_as_then" || r["reason"] == "only_conflicts")
        );
        let bad = admin
            .post(
                "/api/v1/revert",
                json!({"to": t0.to_rfc3339(), "conflicts": "maybe"}),
            )
            .await;
        assert_eq!(bad.status, 422);
        assert_eq!(bad.body["error"]["fields"][0]["field"], "conflicts");
    }
);

on_both_backends!(
    reverting_to_before_records_existed_bins_and_restores_and_names_the_rest,
    |app| {
        let admin = app.admin().await;
        let a = app.user("user.a", "admin").await;
        let b = app.user("user.b", "admin").await;
        let older = admin.create("contacts", json!({"name": "老客户"})).await;
        app.clock.advance_seconds(60);
        let t0 = app.app.now();
        app.clock.advance_seconds(60);
        // A creates two and deletes one of them; B creates one that A deletes; A deletes an older
        // one; A creates a company and B adds a contact to it.
        let kept_new = a.create("contacts", json!({"name": "新客户"})).await;
        let gone_new = a.create("contacts", json!({"name": "临时"})).await;
        a.delete(&format!("/api/v1/contacts/{gone_new}"))
            .await
            .expect(200);
        let bs = b.create("contacts", json!({"name": "B的客户"})).await;
        a.delete(&format!("/api/v1/contacts/{bs}"))
            .await
            .expect(200);
        a.delete(&format!("/api/v1/contacts/{older}"))
            .await
            .expect(200);
        let company = a.create("companies", json!({"name": "新公司"})).await;
        let hanging = b
            .create("contacts", json!({"name": "挂靠", "company_id": company}))
            .await;

        let body = json!({"to": t0.to_rfc3339(), "by_user_id": a.user_id, "dry_run": true});
        let preview = admin.post("/api/v1/revert", body).await.expect(200);
        assert_eq!(record_of(&preview, kept_new)["action"], "delete");
        assert_eq!(record_of(&preview, gone_new)["action"], "none");
        assert_eq!(
            record_of(&preview, gone_new)["reason"],
            "already_in_recycle_bin"
        );
        assert_eq!(record_of(&preview, bs)["action"], "restore");
        assert_eq!(record_of(&preview, older)["action"], "restore");
        let held = preview["records"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["entity"] == "company")
            .unwrap();
        assert_eq!(held["action"], "none", "{preview}");
        assert_eq!(held["conflicts"][0]["kind"], "has_dependents");
        assert_eq!(preview["summary"]["changing"], 3);
        assert!(
            preview["records"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["action"] != "none" || r["reason"].is_string()),
            "every record is changed or says why: {preview}"
        );

        let done = json!({"to": t0.to_rfc3339(), "by_user_id": a.user_id});
        let done = admin.post("/api/v1/revert", done).await.expect(200);
        assert_eq!(done["changed"], 3);
        let in_bin = |id: i64| {
            let admin = admin.clone();
            async move { !field(&admin, "contacts", id, "deleted_at").await.is_null() }
        };
        assert!(in_bin(kept_new).await);
        assert!(in_bin(gone_new).await);
        assert!(!in_bin(bs).await);
        assert!(!in_bin(older).await);
        assert!(!in_bin(hanging).await);
        assert!(
            field(&admin, "companies", company, "deleted_at")
                .await
                .is_null()
        );

        // Choosing to revert the held company anyway takes B's contact along, as it says.
        let all = json!({"to": t0.to_rfc3339(), "by_user_id": a.user_id, "conflicts": "revert"});
        admin.post("/api/v1/revert", all).await.expect(200);
        assert!(
            !field(&admin, "companies", company, "deleted_at")
                .await
                .is_null()
        );
        assert!(in_bin(hanging).await);
    }
);

/// A small deterministic generator, so a failure reproduces from the printed seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

const FIELDS: [&str; 3] = ["phone", "title", "email"];

/// The value a random edit writes: distinct per edit, valid for its field.
fn value_of(field: &str, n: usize) -> String {
    match field {
        "email" => format!("u{n}@example.cn"),
        "phone" => format!("138{n:08}"),
        _ => format!("职位{n}"),
    }
}

async fn state(admin: &Client, ids: &[i64]) -> Vec<Vec<Value>> {
    let mut out = Vec::new();
    for id in ids {
        let record = admin
            .get(&format!("/api/v1/contacts/{id}"))
            .await
            .expect(200);
        out.push(FIELDS.iter().map(|f| record[*f].clone()).collect());
    }
    out
}

async fn property_run(app: &TestApp, seed: u64) {
    let admin = app.admin().await;
    let users = [
        app.user("u1", "admin").await,
        app.user("u2", "admin").await,
        app.user("u3", "admin").await,
    ];
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(
            admin
                .create("contacts", json!({"name": format!("人{n}")}))
                .await,
        );
    }
    // Random edits, a minute apart; each remembered as (time, user, contact, field, value).
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut edits = Vec::new();
    for n in 0..14 {
        app.clock.advance_seconds(60);
        let user = rng.next(3) as usize;
        let contact = rng.next(3) as usize;
        let name = FIELDS[rng.next(3) as usize];
        let value = value_of(name, n);
        patch(&users[user], ids[contact], json!({ name: value })).await;
        edits.push((app.app.now(), user, contact, name, value));
    }
    let cut = rng.next(edits.len() as u64) as usize;
    let to = holdfast_domain::Timestamp(edits[cut].0.micros() - 1);
    let reverted = rng.next(3) as usize;
    let before = state(&admin, &ids).await;
    let mut at_cut = before.clone();
    for (_, _, contact, name, _) in edits[cut..].iter().rev() {
        let position = FIELDS.iter().position(|f| f == name).unwrap();
        // The value before this edit: the newest earlier edit of the field, or none.
        at_cut[*contact][position] = edits[..cut]
            .iter()
            .rev()
            .find(|(_, _, c, f, _)| c == contact && f == name)
            .map_or(Value::Null, |(_, _, _, _, v)| json!(v));
    }
    app.clock.advance_seconds(60);
    let body = json!({"to": to.to_rfc3339(), "by_user_id": users[reverted].user_id});
    admin.post("/api/v1/revert", body).await.expect(200);
    let after = state(&admin, &ids).await;
    for (contact, _) in ids.iter().enumerate() {
        for (position, name) in FIELDS.iter().enumerate() {
            let writers: Vec<usize> = edits[cut..]
                .iter()
                .filter(|(_, _, c, f, _)| *c == contact && f == name)
                .map(|(_, u, _, _, _)| *u)
                .collect();
            let now = &after[contact][position];
            let context = format!(
                "seed {seed}, contact {contact}, {name}, writers {writers:?}, reverted {reverted}"
            );
            match writers.last() {
                None => assert_eq!(now, &before[contact][position], "{context}"),
                Some(last) if *last != reverted => {
                    assert_eq!(
                        now, &before[contact][position],
                        "others' later work stands: {context}"
                    )
                }
                Some(_) if writers.iter().all(|u| *u == reverted) => {
                    assert_eq!(now, &at_cut[contact][position], "as it was then: {context}")
                }
                Some(_) => {}
            }
        }
    }
    // The revert is the administrator's change, and reverts like any other.
    let revert_at = holdfast_domain::Timestamp(app.app.now().micros() - 1);
    app.clock.advance_seconds(60);
    let body = json!({"to": revert_at.to_rfc3339(), "by_user_id": admin.user_id});
    admin.post("/api/v1/revert", body).await.expect(200);
    assert_eq!(
        state(&admin, &ids).await,
        before,
        "seed {seed}: the revert reverted"
    );
}

// The domain's property test runs thousands of random histories in memory; these run a few
// through the real server and database.
on_both_backends!(
    property_reverting_one_of_three_users_keeps_the_others_work,
    |app| {
        property_run(&app, 7).await;
    }
);

on_both_backends!(
    property_reverting_one_of_three_users_another_history,
    |app| {
        property_run(&app, 1_234_567).await;
    }
);

/// `holdfast revert` on the server's console: on an administrator's authority (`--as`), recorded
/// as theirs with the operating-system user, showing conflicts before it changes anything.
#[test]
fn holdfast_revert_runs_as_a_named_administrator_and_shows_conflicts() {
    use crate::cli::{admin_create, run_err, run_ok};
    use holdfast_app::records::{Change, apply_change};
    use holdfast_domain::Entity;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let db = runtime
        .block_on(holdfast_test_support::TestDb::fresh(
            holdfast_test_support::Backend::Sqlite,
        ))
        .unwrap();
    admin_create(&db, "boss");
    let (ids, to) = runtime.block_on(async {
        let app =
            holdfast_test_support::open_with_system_clock(&db.url, &db.audit_key_file()).await;
        let system = holdfast_domain::Actor::system();
        for name in ["rogue", "colleague"] {
            holdfast_app::users::create_user_unchecked(
                &app,
                &system,
                "t",
                name,
                "",
                "a long enough password",
                "admin",
            )
            .await
            .unwrap();
        }
        holdfast_app::users::create_user_unchecked(
            &app,
            &system,
            "t",
            "clerk",
            "",
            "a long enough password",
            "rep",
        )
        .await
        .unwrap();
        let boss = holdfast_test_support::actor(&app, 1).await;
        let rogue = holdfast_test_support::actor(&app, 2).await;
        let colleague = holdfast_test_support::actor(&app, 3).await;
        let mut ids = Vec::new();
        for name in ["甲", "乙"] {
            let change = Change::Create {
                entity: Entity::Contact,
                input: json!({"name": name, "phone": "010-1234"}),
            };
            ids.push(
                apply_change(&app, &boss, "t", change)
                    .await
                    .unwrap()
                    .record
                    .id,
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let to = app.now();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        for (actor, id, phone) in [
            (&rogue, ids[0], "666"),
            (&rogue, ids[1], "666"),
            (&colleague, ids[1], "777"),
        ] {
            let version = app
                .db
                .record(Entity::Contact, id)
                .await
                .unwrap()
                .unwrap()
                .version;
            let change = Change::Update {
                entity: Entity::Contact,
                id,
                input: json!({"phone": phone, "expected_version": version}),
            };
            apply_change(&app, actor, "t", change).await.unwrap();
        }
        app.db.close().await;
        (ids, to.to_rfc3339())
    });
    let dir = db.dir.path();
    let base = [
        "revert",
        "--database-url",
        &db.url,
        "--to",
        &to,
        "--by",
        "rogue",
    ];
    let without_as = run_err(&base, dir);
    assert!(without_as.contains("--as"), "{without_as}");
    let not_admin = run_err(&[&base[..], &["--as", "clerk", "--yes"]].concat(), dir);
    assert!(
        not_admin.contains("clerk is not an active administrator"),
        "{not_admin}"
    );
    let (preview, _) = run_ok(&[&base[..], &["--as", "boss", "--dry-run"]].concat(), dir);
    assert!(
        preview.contains("phone: \"666\" -> \"010-1234\""),
        "{preview}"
    );
    assert!(
        preview.contains("conflict, kept: phone was \"010-1234\" then, this user set \"666\", user 3 set \"777\" later"),
        "{preview}"
    );
    assert!(preview.contains("2 records changed since"), "{preview}");
    assert!(preview.contains("1 will change (1 fields"), "{preview}");
    let (done, _) = run_ok(&[&base[..], &["--as", "boss", "--yes"]].concat(), dir);
    assert!(
        done.contains("Reverted 1 records as new versions by boss"),
        "{done}"
    );
    runtime.block_on(async {
        let app =
            holdfast_test_support::open_with_system_clock(&db.url, &db.audit_key_file()).await;
        let first = app
            .db
            .record(Entity::Contact, ids[0])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.field_str("phone"), Some("010-1234"));
        let second = app
            .db
            .record(Entity::Contact, ids[1])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            second.field_str("phone"),
            Some("777"),
            "the colleague's later change stands"
        );
        let versions = app.db.versions(Entity::Contact, ids[0]).await.unwrap();
        let last = versions.last().unwrap();
        assert_eq!(last.actor_id, 1, "recorded as the administrator's");
        let reason = last.reason.as_deref().unwrap();
        assert!(reason.contains("by operating-system user"), "{reason}");
        app.db.close().await;
    });
}
