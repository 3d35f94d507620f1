//! Customer records: versions and audit on every change, conflicts, the recycle bin, history,
//! retention, search.

use holdfast_test_support::on_both_backends;
use serde_json::json;

on_both_backends!(every_change_writes_a_version_and_an_audit_entry, |app| {
    let rep = app.user("li.na", "rep").await;
    let id = rep
        .create(
            "companies",
            json!({"name": "Acme", "tags": ["key-account"]}),
        )
        .await;
    rep.patch(
        &format!("/api/v1/companies/{id}"),
        json!({"expected_version": 1, "name": "Acme GmbH", "reason": "renamed"}),
    )
    .await
    .expect(200);
    rep.delete(&format!("/api/v1/companies/{id}?expected_version=2"))
        .await
        .expect(200);
    rep.post(&format!("/api/v1/companies/{id}/restore"), json!({}))
        .await
        .expect(200);

    let versions = app.versions_of("company", id).await;
    let actions: Vec<&str> = versions.iter().map(|v| v.action.as_str()).collect();
    assert_eq!(actions, ["create", "update", "delete", "restore"]);
    assert_eq!(versions[1].changed, ["name"]);
    assert_eq!(versions[1].reason.as_deref(), Some("renamed"));
    assert_eq!(versions[1].snapshot["name"], "Acme GmbH");
    assert!(versions.iter().all(|v| v.actor_id == rep.user_id));

    let audit = app.audit_of("company", id).await;
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "company.create",
            "company.update",
            "company.delete",
            "company.restore"
        ]
    );
    // The version and the audit entry of one change share the operation id and the version number.
    for (version, entry) in versions.iter().zip(&audit) {
        assert_eq!(
            (version.version, version.op_id.as_str()),
            (entry.version.unwrap(), entry.op_id.as_str())
        );
    }
    assert!(app.app.db.verify_audit_chain().await.unwrap() >= 4);
});

on_both_backends!(a_stale_update_gets_409_and_overwrites_nothing, |app| {
    let rep = app.user("wang", "rep").await;
    let id = rep.create("contacts", json!({"name": "张伟"})).await;
    rep.patch(
        &format!("/api/v1/contacts/{id}"),
        json!({"expected_version": 1, "title": "CTO"}),
    )
    .await
    .expect(200);
    let stale = rep
        .patch(
            &format!("/api/v1/contacts/{id}"),
            json!({"expected_version": 1, "title": "Intern"}),
        )
        .await;
    assert_eq!(stale.status, 409);
    assert_eq!(stale.error_code(), "version_conflict");
    assert_eq!(
        stale.body["error"]["current"]["title"], "CTO",
        "the 409 shows the current version"
    );
    let current = rep.get(&format!("/api/v1/contacts/{id}")).await.expect(200);
    assert_eq!(
        (current["title"].as_str(), current["version"].as_i64()),
        (Some("CTO"), Some(2))
    );
    let missing = rep
        .patch(
            &format!("/api/v1/contacts/{id}"),
            json!({"title": "No version"}),
        )
        .await;
    assert_eq!(missing.status, 422);
});

on_both_backends!(exactly_one_of_many_racing_updates_wins_each_round, |app| {
    let rep = app.user("racer", "rep").await;
    let id = rep
        .create("deals", json!({"name": "Race", "amount_minor": 100}))
        .await;
    for round in 1..=5i64 {
        let attempts = (0..8).map(|n| {
            let rep = rep.clone();
            tokio::spawn(async move {
                rep.patch(
                    &format!("/api/v1/deals/{id}"),
                    json!({"expected_version": round, "amount_minor": round * 1000 + n}),
                )
                .await
                .status
                .as_u16()
            })
        });
        let mut statuses = Vec::new();
        for attempt in attempts {
            statuses.push(attempt.await.unwrap());
        }
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            1,
            "round {round}: {statuses:?}"
        );
        assert_eq!(
            statuses.iter().filter(|s| **s == 409).count(),
            7,
            "round {round}: {statuses:?}"
        );
    }
    assert_eq!(app.versions_of("deal", id).await.len(), 6);
});

on_both_backends!(
    delete_moves_what_hangs_off_a_record_and_restore_brings_it_all_back,
    |app| {
        let rep = app.user("zhao", "rep").await;
        let company = rep.create("companies", json!({"name": "华为"})).await;
        let contact = rep
            .create("contacts", json!({"name": "李雷", "company_id": company}))
            .await;
        let deal = rep
            .create(
                "deals",
                json!({"name": "Phones", "company_id": company, "contact_id": contact}),
            )
            .await;
        let call = rep
            .create(
                "activities",
                json!({"kind": "call", "subject": "Intro", "contact_id": contact}),
            )
            .await;
        let other = rep.create("contacts", json!({"name": "Unrelated"})).await;

        let deleted = rep
            .delete(&format!("/api/v1/companies/{company}"))
            .await
            .expect(200);
        assert_eq!(deleted["related"].as_array().unwrap().len(), 3);
        for path in [
            format!("/api/v1/contacts/{contact}"),
            format!("/api/v1/deals/{deal}"),
            format!("/api/v1/activities/{call}"),
        ] {
            assert_eq!(
                rep.get(&path).await.error_code(),
                "in_recycle_bin",
                "{path}"
            );
        }
        let listed = rep.get("/api/v1/contacts").await.expect(200);
        assert_eq!(
            listed["items"].as_array().unwrap().len(),
            1,
            "only the unrelated contact is listed"
        );
        assert_eq!(listed["items"][0]["id"], other);
        let bin = rep.get("/api/v1/recycle-bin").await.expect(200);
        assert_eq!(bin["items"].as_array().unwrap().len(), 1);
        assert_eq!(
            bin["items"][0]["related"],
            json!({"contacts": 1, "deals": 1, "activities": 1})
        );

        let refused = rep
            .post(&format!("/api/v1/contacts/{contact}/restore"), json!({}))
            .await;
        assert_eq!(
            (refused.status.as_u16(), refused.error_code()),
            (409, "restore_with_root")
        );

        rep.post(
            &format!("/api/v1/companies/{company}/restore"),
            json!({"reason": "deleted by mistake"}),
        )
        .await
        .expect(200);
        let restored_deal = rep.get(&format!("/api/v1/deals/{deal}")).await.expect(200);
        assert_eq!(
            (
                restored_deal["company_id"].as_i64(),
                restored_deal["contact_id"].as_i64()
            ),
            (Some(company), Some(contact))
        );
        assert_eq!(restored_deal["links"]["company_id"]["title"], "华为");
        let restored_call = rep
            .get(&format!("/api/v1/activities/{call}"))
            .await
            .expect(200);
        assert_eq!(restored_call["contact_id"], contact);
        assert_eq!(
            rep.get("/api/v1/contacts").await.expect(200)["items"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            rep.get("/api/v1/recycle-bin").await.expect(200)["items"],
            json!([])
        );
    }
);

on_both_backends!(an_old_version_can_be_restored_as_a_new_version, |app| {
    let rep = app.user("chen", "rep").await;
    let id = rep
        .create(
            "contacts",
            json!({"name": "Chen Jie", "email": "chen@example.com", "tags": ["a"]}),
        )
        .await;
    rep.patch(
        &format!("/api/v1/contacts/{id}"),
        json!({"expected_version": 1, "email": "typo@exampel.com"}),
    )
    .await
    .expect(200);
    rep.patch(
        &format!("/api/v1/contacts/{id}"),
        json!({"expected_version": 2, "tags": [], "title": "Buyer"}),
    )
    .await
    .expect(200);
    let diff = rep
        .get(&format!("/api/v1/contacts/{id}/diff?from=1&to=3"))
        .await
        .expect(200);
    let fields: Vec<&str> = diff["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["email", "tags", "title"]);
    let restored = rep
        .post(
            &format!("/api/v1/contacts/{id}/versions/1/restore"),
            json!({"expected_version": 3}),
        )
        .await
        .expect(200);
    assert_eq!(
        (
            restored["email"].as_str(),
            restored["title"].as_str(),
            restored["version"].as_i64()
        ),
        (Some("chen@example.com"), None, Some(4))
    );
    assert_eq!(restored["tags"], json!(["a"]));
    let history = rep
        .get(&format!("/api/v1/contacts/{id}/versions"))
        .await
        .expect(200);
    let items = history["items"].as_array().unwrap();
    assert_eq!(items.len(), 4, "history is append-only");
    assert_eq!(items[3]["action"], "restore_version");
    assert_eq!(items[3]["reason"], "restored version 1");
    let stale = rep
        .post(
            &format!("/api/v1/contacts/{id}/versions/2/restore"),
            json!({"expected_version": 3}),
        )
        .await;
    assert_eq!(stale.status, 409);
});

on_both_backends!(
    the_recycle_bin_is_purged_only_after_the_retention_period,
    |app| {
        let admin = app.admin().await;
        let id = admin.create("companies", json!({"name": "Old Co"})).await;
        let contact = admin
            .create("contacts", json!({"name": "Old Contact", "company_id": id}))
            .await;
        admin
            .delete(&format!("/api/v1/companies/{id}"))
            .await
            .expect(200);
        app.clock.advance_days(89);
        assert_eq!(
            holdfast_app::records::purge_expired(&app.app, "test")
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            admin
                .get(&format!("/api/v1/companies/{id}"))
                .await
                .error_code(),
            "in_recycle_bin"
        );
        app.clock.advance_days(2);
        assert_eq!(
            holdfast_app::records::purge_expired(&app.app, "test")
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            admin
                .get(&format!("/api/v1/companies/{id}?include_deleted=true"))
                .await
                .status,
            404
        );
        assert_eq!(
            admin
                .get(&format!("/api/v1/contacts/{contact}/versions"))
                .await
                .status,
            404,
            "history goes with a purge"
        );
        let audit = app.audit_of("company", id).await;
        assert_eq!(
            audit.last().unwrap().action,
            "company.purge",
            "the purge itself is audited"
        );
        assert_eq!(audit.last().unwrap().actor_name, "holdfast");
    }
);

on_both_backends!(
    only_administrators_purge_early_and_they_must_say_why,
    |app| {
        let admin = app.admin().await;
        let rep = app.user("rep", "rep").await;
        let id = rep.create("contacts", json!({"name": "To purge"})).await;
        rep.delete(&format!("/api/v1/contacts/{id}"))
            .await
            .expect(200);
        let denied = rep
            .delete(&format!("/api/v1/recycle-bin/contacts/{id}?reason=gdpr"))
            .await;
        assert_eq!(
            (denied.status.as_u16(), denied.error_code()),
            (403, "no_right")
        );
        assert_eq!(denied.body["error"]["grantable_by"], json!(["admin"]));
        assert_eq!(
            admin
                .delete(&format!("/api/v1/recycle-bin/contacts/{id}"))
                .await
                .status,
            422
        );
        admin
            .delete(&format!(
                "/api/v1/recycle-bin/contacts/{id}?reason=customer%20asked"
            ))
            .await
            .expect(200);
        let entry = app.audit_of("contact", id).await.pop().unwrap();
        assert_eq!(
            (entry.action.as_str(), entry.detail["reason"].as_str()),
            ("contact.purge", Some("customer asked"))
        );
    }
);

on_both_backends!(
    search_finds_chinese_names_partial_phones_emails_and_companies,
    |app| {
        let rep = app.user("searcher", "rep").await;
        let acme = rep
            .create("companies", json!({"name": "Acme Trading"}))
            .await;
        let zhang_wei = rep
            .create(
                "contacts",
                json!({"name": "张伟", "mobile": "+86 138-0013-8000"}),
            )
            .await;
        let zhang_wei_ming = rep
            .create(
                "contacts",
                json!({"name": "张伟明", "email": "weiming@example.cn", "company_id": acme}),
            )
            .await;
        let _wang_wei = rep
            .create(
                "contacts",
                json!({"name": "王伟", "phone": "010-6552 1234"}),
            )
            .await;
        let ids = |reply: serde_json::Value| -> Vec<i64> {
            let mut ids: Vec<i64> = reply["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_i64().unwrap())
                .collect();
            ids.sort();
            ids
        };
        let found = ids(rep
            .get("/api/v1/contacts?q=%E5%BC%A0%E4%BC%9F")
            .await
            .expect(200)); // 张伟
        assert_eq!(found, [zhang_wei, zhang_wei_ming]);
        assert_eq!(
            ids(rep.get("/api/v1/contacts?q=8000").await.expect(200)),
            [zhang_wei]
        );
        assert_eq!(
            ids(rep.get("/api/v1/contacts?q=0013-8000").await.expect(200)),
            [zhang_wei]
        );
        assert_eq!(
            ids(rep.get("/api/v1/contacts?q=weim").await.expect(200)),
            [zhang_wei_ming]
        );
        assert_eq!(
            ids(rep.get("/api/v1/contacts?q=acme").await.expect(200)),
            [zhang_wei_ming],
            "found by company name"
        );
        assert_eq!(
            ids(rep.get("/api/v1/contacts?q=9999").await.expect(200)),
            Vec::<i64>::new()
        );
        // A renamed record is found by its new name only, and a deleted one not at all.
        rep.patch(
            &format!("/api/v1/contacts/{zhang_wei}"),
            json!({"expected_version": 1, "name": "Zhang Wei"}),
        )
        .await
        .expect(200);
        assert_eq!(
            ids(rep
                .get("/api/v1/contacts?q=%E5%BC%A0%E4%BC%9F")
                .await
                .expect(200)),
            [zhang_wei_ming]
        );
        rep.delete(&format!("/api/v1/contacts/{zhang_wei_ming}"))
            .await
            .expect(200);
        assert_eq!(
            ids(rep
                .get("/api/v1/contacts?q=%E5%BC%A0%E4%BC%9F")
                .await
                .expect(200)),
            Vec::<i64>::new()
        );
    }
);

on_both_backends!(lists_filter_sort_and_page_with_cursors, |app| {
    let rep = app.user("lister", "rep").await;
    let other = app.user("other", "rep").await;
    for n in 0..7 {
        rep.create("deals", json!({"name": format!("deal {n}"), "amount_minor": n * 100, "tags": if n % 2 == 0 { json!(["even"]) } else { json!([]) }})).await;
    }
    other
        .create("deals", json!({"name": "theirs", "stage": "proposal"}))
        .await;
    let mut seen = Vec::new();
    let mut path = "/api/v1/deals?sort=-amount_minor&limit=3".to_owned();
    loop {
        let page = rep.get(&path).await.expect(200);
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["amount_minor"].as_i64().unwrap()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => {
                path = format!("/api/v1/deals?sort=-amount_minor&limit=3&cursor={cursor}")
            }
            None => break,
        }
    }
    // A rep's list holds their own deals only, not their colleague's.
    assert_eq!(seen, [600, 500, 400, 300, 200, 100, 0]);
    let mine = rep
        .get(&format!("/api/v1/deals?owner_id={}", rep.user_id))
        .await
        .expect(200);
    assert_eq!(mine["items"].as_array().unwrap().len(), 7);
    assert_eq!(
        rep.get("/api/v1/deals?tag=even").await.expect(200)["items"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    assert_eq!(
        other.get("/api/v1/deals?stage=proposal").await.expect(200)["items"][0]["name"],
        "theirs"
    );
    assert_eq!(
        rep.get("/api/v1/deals?stage=proposal").await.expect(200)["items"],
        json!([])
    );
    let bad = rep
        .get("/api/v1/deals?stagee=proposal&sort=colour&limit=0")
        .await;
    assert_eq!(bad.status, 422);
    let fields: Vec<&str> = bad.body["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["stagee", "sort", "limit"]);
    let cursor_for_other_sort = rep.get("/api/v1/deals?limit=1").await.expect(200)["next_cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        rep.get(&format!(
            "/api/v1/deals?sort=name&cursor={cursor_for_other_sort}"
        ))
        .await
        .status,
        422
    );
});

on_both_backends!(
    deals_follow_their_pipeline_and_custom_fields_their_definition,
    |app| {
        let admin = app.admin().await;
        let deal = admin
            .post("/api/v1/deals", json!({"name": "Default stage"}))
            .await
            .expect(201);
        assert_eq!(
            (
                deal["stage"].as_str(),
                deal["currency"].as_str(),
                deal["status"].as_str()
            ),
            (Some("lead"), Some("CNY"), Some("open"))
        );
        let wrong = admin
            .post("/api/v1/deals", json!({"name": "x", "stage": "won-ish"}))
            .await;
        assert_eq!(wrong.body["error"]["fields"][0]["field"], "stage");
        let lost = admin
            .patch(
                &format!("/api/v1/deals/{}", deal["id"]),
                json!({"expected_version": 1, "status": "lost"}),
            )
            .await;
        assert_eq!(lost.body["error"]["fields"][0]["field"], "closed_reason");
        admin
        .post("/api/v1/custom-fields", json!({"entity": "company", "key": "tier", "label": "客户等级", "kind": "select", "options": ["A", "B"]}))
        .await
        .expect(201);
        let id = admin
            .create(
                "companies",
                json!({"name": "Tiered", "custom": {"tier": "A"}}),
            )
            .await;
        let bad = admin
            .patch(
                &format!("/api/v1/companies/{id}"),
                json!({"expected_version": 1, "custom": {"tier": "Z"}}),
            )
            .await;
        assert_eq!(bad.body["error"]["fields"][0]["field"], "custom.tier");
        let defs = admin.get("/api/v1/custom-fields").await.expect(200);
        let field_id = defs["items"][0]["id"].as_i64().unwrap();
        admin
            .delete(&format!("/api/v1/custom-fields/{field_id}"))
            .await
            .expect(200);
        let kept = admin
            .get(&format!("/api/v1/companies/{id}"))
            .await
            .expect(200);
        assert_eq!(
            kept["custom"]["tier"], "A",
            "archiving a custom field keeps its values"
        );
    }
);

// A term shared by thousands of records is answered by walking the list's order and checking
// each row's terms; a rare one by collecting its matches. Both must give the same answers.
/// This test pages through many records by API token, which the bulk-read guard would stop.
async fn spawn_without_bulk_read_guard(
    backend: holdfast_test_support::Backend,
) -> Option<holdfast_test_support::TestApp> {
    let config = holdfast_app::AppConfig {
        guards: holdfast_app::guards::Limits {
            bulk_reads: i64::MAX / 2,
            ..Default::default()
        },
        ..Default::default()
    };
    holdfast_test_support::spawn_app_with(backend, config).await
}

on_both_backends!(
    searching_a_common_word_walks_the_list_and_finds_the_same_records,
    spawn_without_bulk_read_guard,
    |app| {
        use holdfast_app::records::{Change, apply_changes};
        use holdfast_domain::Entity;
        let admin = app.admin().await;
        let actor = holdfast_test_support::actor(&app.app, admin.user_id).await;
        let company = admin
            .create("companies", json!({"name": "Smithfield Foods"}))
            .await;
        let found_via_company = admin
            .create("contacts", json!({"name": "张伟", "company_id": company}))
            .await;
        for batch in 0..3 {
            let people: Vec<Change> = (0..1000)
            .map(|i| Change::Create {
                entity: Entity::Contact,
                input: json!({"name": if i % 2 == 0 { format!("Anna Smith {batch}-{i}") } else { format!("王芳 {batch}-{i}") }}),
            })
            .collect();
            apply_changes(&app.app, &actor, "test", people)
                .await
                .unwrap();
        }
        // 1,500 Smiths are below the 2,000 matches where walking starts; 600 Smithers cross it.
        let more: Vec<Change> = (0..600)
            .map(|i| Change::Create {
                entity: Entity::Contact,
                input: json!({"name": format!("Smithers {i}")}),
            })
            .collect();
        apply_changes(&app.app, &actor, "test", more).await.unwrap();
        // Page through every match of "smi" and check each one.
        let mut seen = std::collections::BTreeSet::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/v1/contacts?q=smi&limit=200&cursor={c}"),
                None => "/api/v1/contacts?q=smi&limit=200".to_owned(),
            };
            let page = admin.get(&path).await.expect(200);
            for item in page["items"].as_array().unwrap() {
                let name = item["name"].as_str().unwrap();
                let id = item["id"].as_i64().unwrap();
                assert!(
                    name.contains("Smith") || id == found_via_company,
                    "{name} does not match"
                );
                assert!(seen.insert(id), "{id} on two pages");
            }
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        assert_eq!(
            seen.len(),
            1500 + 600 + 1,
            "every Smith, every Smithers, and 张伟 via Smithfield"
        );
        // A rare word still works through the other plan.
        let rare = admin
            .get("/api/v1/contacts?q=smithers%20599")
            .await
            .expect(200);
        assert_eq!(rare["items"].as_array().unwrap().len(), 1);
    }
);

on_both_backends!(
    the_recycle_bin_filter_takes_the_singular_and_the_plural,
    |app| {
        let admin = app.admin().await;
        let id = admin.create("contacts", json!({"name": "孙女士"})).await;
        admin.create("companies", json!({"name": "孙氏"})).await;
        admin
            .delete(&format!("/api/v1/contacts/{id}"))
            .await
            .expect(200);
        for spelling in ["contact", "contacts"] {
            let bin = admin
                .get(&format!("/api/v1/recycle-bin?entity={spelling}"))
                .await
                .expect(200);
            assert_eq!(bin["items"].as_array().unwrap().len(), 1, "{spelling}");
            assert_eq!(bin["items"][0]["id"], id);
        }
        let wrong = admin.get("/api/v1/recycle-bin?entity=people").await;
        assert_eq!(wrong.status, 422);
        assert_eq!(wrong.body["error"]["fields"][0]["field"], "entity");
    }
);

on_both_backends!(
    lists_as_they_were_read_only_what_is_in_reach_and_stop_early,
    |app| {
        use holdfast_app::records::{AS_OF_SCAN_PAGES, Change, MAX_PAGE_SIZE, apply_changes};
        use holdfast_domain::Entity;
        let admin = app.admin().await;
        let rep = app.user("xiaotang", "rep").await;
        let boss = holdfast_test_support::actor(&app.app, admin.user_id).await;
        // Many records of someone else, all in the recycle bin at the time asked about, and three
        // of the rep's own after them.
        let scanned = AS_OF_SCAN_PAGES * MAX_PAGE_SIZE as usize;
        let mut ids = Vec::new();
        for chunk in 0..(scanned + 100).div_ceil(1000) {
            let count = (scanned + 100 - chunk * 1000).min(1000);
            let changes = (0..count)
                .map(|n| Change::Create {
                    entity: Entity::Contact,
                    input: json!({"name": format!("旧客户{chunk}-{n}")}),
                })
                .collect();
            for outcome in apply_changes(&app.app, &boss, "t", changes).await.unwrap() {
                ids.push(outcome.record.id);
            }
        }
        for chunk in ids.chunks(1000) {
            let changes = chunk
                .iter()
                .map(|id| Change::Delete {
                    entity: Entity::Contact,
                    id: *id,
                    expected_version: None,
                    reason: None,
                })
                .collect();
            apply_changes(&app.app, &boss, "t", changes).await.unwrap();
        }
        let mine: Vec<i64> = {
            let mut mine = Vec::new();
            for name in ["甲", "乙", "丙"] {
                mine.push(rep.create("contacts", json!({"name": name})).await);
            }
            mine
        };
        app.clock.advance_seconds(60);
        let at = app.app.now().to_rfc3339().replace('+', "%2B");

        // The rep's reach is in the query: their three records, nothing else read for them.
        let page = rep
            .get(&format!("/api/v1/contacts?as_of={at}&limit=2"))
            .await
            .expect(200);
        let ids_of = |page: &serde_json::Value| -> Vec<i64> {
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["id"].as_i64().unwrap())
                .collect()
        };
        assert_eq!(ids_of(&page), mine[..2]);
        let next = page["next_after"].as_i64().unwrap();
        let rest = rep
            .get(&format!("/api/v1/contacts?as_of={at}&limit=2&after={next}"))
            .await
            .expect(200);
        assert_eq!(ids_of(&rest), mine[2..]);
        assert!(rest["next_after"].is_null());

        // Someone who reaches everything pages through history in bounded steps: a request that
        // meets only deleted records stops after a few pages and says where to go on.
        let first = admin
            .get(&format!(
                "/api/v1/contacts?as_of={at}&limit={MAX_PAGE_SIZE}"
            ))
            .await
            .expect(200);
        assert!(ids_of(&first).is_empty(), "all in the recycle bin then");
        assert_eq!(first["next_after"], ids[scanned - 1]);
        let second = admin
            .get(&format!(
                "/api/v1/contacts?as_of={at}&limit={MAX_PAGE_SIZE}&after={}",
                ids[scanned - 1]
            ))
            .await
            .expect(200);
        assert_eq!(ids_of(&second), mine);
    }
);
