//! Backups: the corruption matrix, round trips on and across both backends under write load,
//! restores over current data, older archives, selective restores and point in time.

use holdfast_app::backup::archive::{ArchiveReader, ArchiveWriter, MAGIC};
use holdfast_app::backup::{self, ArchiveError, Key, Manifest, Progress, Selection};
use holdfast_domain::{Actor, Entity};
use holdfast_test_support::{Backend, Client, TestApp, TestDb, on_both_backends, spawn_app};
use serde_json::json;
use sha2::Digest as _;
use std::io::Cursor;

/// Some customers, in both languages, with history and a deletion; the company's id and the
/// administrator who wrote them.
async fn seed(app: &TestApp) -> (i64, Client) {
    let admin = app.admin().await;
    let company = admin
        .create(
            "companies",
            json!({"name": "北京远航科技有限公司", "tags": ["重点"]}),
        )
        .await;
    for (name, email) in [
        ("王小明", "wang@example.cn"),
        ("Anna Berger", "anna@example.com"),
    ] {
        admin
            .create(
                "contacts",
                json!({"name": name, "email": email, "company_id": company}),
            )
            .await;
    }
    admin
        .create(
            "deals",
            json!({"name": "年度合同", "amount_minor": 12_000_000, "currency": "CNY", "company_id": company}),
        )
        .await;
    let gone = admin.create("companies", json!({"name": "Old Ltd"})).await;
    admin
        .delete(&format!("/api/v1/companies/{gone}"))
        .await
        .expect(200);
    (company, admin)
}

/// A whole restore of a plain archive, recorded as the system.
async fn restore_as_system(
    db: &holdfast_app::Db,
    path: &std::path::Path,
    safety_dir: &std::path::Path,
    now: holdfast_domain::Timestamp,
) -> anyhow::Result<backup::Restored> {
    let request = backup::Restore {
        path,
        key: None,
        safety_dir,
        by: &Actor::system(),
        op_id: "test",
        now,
        audit_key_file: None,
    };
    backup::restore(db, &request, &Progress::default()).await
}

fn archive_error(error: &anyhow::Error) -> &ArchiveError {
    error
        .chain()
        .find_map(|e| e.downcast_ref::<ArchiveError>())
        .unwrap_or_else(|| panic!("not an archive error: {error:#}"))
}

/// Reads an archive from memory the way `check` does; the error's code on failure.
fn check_bytes(bytes: Vec<u8>, key: Option<&Key>) -> Result<Manifest, &'static str> {
    let run = || -> Result<Manifest, ArchiveError> {
        let mut reader = ArchiveReader::open(Cursor::new(bytes), key)?;
        reader.header()?;
        while reader.next_part()?.is_some() {}
        reader.finish()
    };
    run().map_err(|e| e.code())
}

struct Frame {
    tag: [u8; 4],
    name: String,
    data: Vec<u8>,
}

/// Splits a plain archive into its frames and its trailer (seal and end marker).
fn frames(bytes: &[u8]) -> (Vec<Frame>, Vec<u8>) {
    let mut pos = MAGIC.len() + 4;
    let mut out = Vec::new();
    while &bytes[pos..pos + 4] != b"SEAL" {
        let tag: [u8; 4] = bytes[pos..pos + 4].try_into().unwrap();
        let name_len = u16::from_le_bytes([bytes[pos + 4], bytes[pos + 5]]) as usize;
        let name = String::from_utf8(bytes[pos + 6..pos + 6 + name_len].to_vec()).unwrap();
        let at = pos + 6 + name_len;
        let len = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
        let data = bytes[at + 8..at + 8 + len].to_vec();
        out.push(Frame { tag, name, data });
        pos = at + 8 + len + 32;
    }
    (out, bytes[pos..].to_vec())
}

fn frame_bytes(frame: &Frame) -> Vec<u8> {
    let mut out = frame.tag.to_vec();
    out.extend((frame.name.len() as u16).to_le_bytes());
    out.extend(frame.name.as_bytes());
    out.extend((frame.data.len() as u64).to_le_bytes());
    out.extend(&frame.data);
    out.extend(sha2::Sha256::digest(&frame.data));
    out
}

/// The frames joined again with the original trailer: every frame checks, the seal does not.
fn join(frames: &[Frame], trailer: &[u8]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend(1u32.to_le_bytes());
    for frame in frames {
        out.extend(frame_bytes(frame));
    }
    out.extend(trailer);
    out
}

/// The frames written as a new, properly sealed archive: a deliberate forgery.
fn reseal(frames: &[Frame]) -> Vec<u8> {
    let mut writer = ArchiveWriter::new(Vec::new(), None).unwrap();
    for frame in frames {
        writer.frame(&frame.tag, &frame.name, &frame.data).unwrap();
    }
    writer.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mutilation_of_an_archive_is_detected_with_its_own_error() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let (company, admin) = seed(&app).await;
    let dir = app.db.dir.path().join("backups");
    let progress = Progress::default();
    let older = backup::create(&app.app.db, &dir, None, app.app.now(), &progress)
        .await
        .unwrap();
    admin
        .patch(
            &format!("/api/v1/companies/{company}"),
            json!({"expected_version": 1, "name": "北京远航科技"}),
        )
        .await
        .expect(200);
    admin.create("companies", json!({"name": "Neu GmbH"})).await;
    let newer = backup::create(&app.app.db, &dir, None, app.app.now(), &progress)
        .await
        .unwrap();
    let bytes = std::fs::read(&newer.path).unwrap();
    let old_bytes = std::fs::read(&older.path).unwrap();

    // Intact archives pass, both from memory and through `check` and `verify` on disk.
    let manifest = check_bytes(bytes.clone(), None).expect("intact archive passes");
    assert_eq!(manifest, newer.manifest);
    backup::check(&newer.path, None, &progress).unwrap();
    let verified = backup::verify(&newer.path, None, None, &progress)
        .await
        .unwrap();
    assert_eq!(verified.manifest.rows_total(), newer.manifest.rows_total());
    let sidecar = std::fs::read_to_string(backup::sidecar_of(&newer.path)).unwrap();
    assert!(sidecar.starts_with(&newer.sha256), "sha256sum-style file");

    // A flipped bit anywhere: every position, one bit each.
    let (parts, trailer) = frames(&bytes);
    let mut part_ranges = Vec::new();
    let mut pos = MAGIC.len() + 4;
    for frame in &parts {
        let data_start = pos + 6 + frame.name.len() + 8;
        if &frame.tag == b"PART" {
            part_ranges.push(data_start..data_start + frame.data.len());
        }
        pos = data_start + frame.data.len() + 32;
    }
    let mut codes = std::collections::BTreeMap::new();
    for index in 0..bytes.len() {
        let mut flipped = bytes.clone();
        flipped[index] ^= 1 << (index % 8);
        match check_bytes(flipped, None) {
            Ok(_) => panic!(
                "a flipped bit at byte {index} of {} went unseen",
                bytes.len()
            ),
            Err(code) => {
                if part_ranges.iter().any(|r| r.contains(&index)) {
                    assert_eq!(code, "part_damaged", "flip inside a part at {index}");
                }
                *codes.entry(code).or_insert(0) += 1;
            }
        }
    }
    for code in [
        "part_damaged",
        "header_damaged",
        "manifest_damaged",
        "seal_mismatch",
    ] {
        assert!(codes.contains_key(code), "{code} among {codes:?}");
    }

    // Truncation at any length.
    for len in (0..bytes.len()).step_by(37).chain([bytes.len() - 1]) {
        assert_eq!(
            check_bytes(bytes[..len].to_vec(), None).err(),
            Some("truncated"),
            "truncated to {len} bytes"
        );
    }

    let part_positions: Vec<usize> = (0..parts.len())
        .filter(|&i| &parts[i].tag == b"PART")
        .collect();
    let clone = |frames: &[Frame]| -> Vec<Frame> {
        frames
            .iter()
            .map(|f| Frame {
                tag: f.tag,
                name: f.name.clone(),
                data: f.data.clone(),
            })
            .collect()
    };
    // An appended part.
    let mut mutated = clone(&parts);
    let manifest_at = mutated.len() - 1;
    mutated.insert(
        manifest_at,
        Frame {
            tag: *b"PART",
            name: "0099-contacts".into(),
            data: parts[part_positions[0]].data.clone(),
        },
    );
    assert_eq!(
        check_bytes(join(&mutated, &trailer), None).err(),
        Some("unexpected_part")
    );
    // A deleted part.
    let mut mutated = clone(&parts);
    mutated.remove(part_positions[2]);
    assert_eq!(
        check_bytes(join(&mutated, &trailer), None).err(),
        Some("part_missing")
    );
    // Two parts swapped.
    let mut mutated = clone(&parts);
    mutated.swap(part_positions[1], part_positions[2]);
    assert_eq!(
        check_bytes(join(&mutated, &trailer), None).err(),
        Some("part_out_of_place")
    );
    // A part replaced by the same part of another backup (whose content differs).
    let (old_parts, _) = frames(&old_bytes);
    let companies = parts
        .iter()
        .position(|f| f.name.ends_with("-companies"))
        .unwrap();
    let old_companies = old_parts
        .iter()
        .find(|f| f.name == parts[companies].name)
        .unwrap();
    assert_ne!(old_companies.data, parts[companies].data);
    let mut mutated = clone(&parts);
    mutated[companies].data = old_companies.data.clone();
    assert_eq!(
        check_bytes(join(&mutated, &trailer), None).err(),
        Some("part_foreign")
    );
    // An edited manifest, with and without its frame checksum recomputed.
    let manifest_frame = parts.len() - 1;
    let edited = String::from_utf8(parts[manifest_frame].data.clone())
        .unwrap()
        .replacen("\"rows\":", "\"rows\":1", 1)
        .into_bytes();
    let mut raw = join(&parts, &trailer);
    let needle = &parts[manifest_frame].data[..];
    let at = raw.windows(needle.len()).position(|w| w == needle).unwrap();
    raw[at + 3] ^= 0x20;
    assert_eq!(check_bytes(raw, None).err(), Some("manifest_damaged"));
    let mut mutated = clone(&parts);
    mutated[manifest_frame].data = edited.clone();
    assert_eq!(
        check_bytes(join(&mutated, &trailer), None).err(),
        Some("seal_mismatch")
    );
    // A rolled-back manifest: the older backup's, complete and intact.
    let mut mutated = clone(&parts);
    mutated[manifest_frame].data = old_parts.last().unwrap().data.clone();
    assert_eq!(
        check_bytes(join(&mutated, &trailer), None).err(),
        Some("manifest_replaced")
    );
    // Bytes appended after the end.
    let mut appended = bytes.clone();
    appended.extend(b"extra");
    assert_eq!(check_bytes(appended, None).err(), Some("trailing_data"));
    // Not a backup at all.
    assert_eq!(
        check_bytes(b"PK\x03\x04 a zip file, not a backup".to_vec(), None).err(),
        Some("not_a_backup")
    );
    // A forgery sealed again with an edited row count: the checksums agree, the restore into a
    // scratch database does not.
    let mut mutated = clone(&parts);
    let mut manifest: Manifest = serde_json::from_slice(&mutated[manifest_frame].data).unwrap();
    let contacts = manifest
        .tables
        .iter_mut()
        .find(|t| t.name == "contacts")
        .unwrap();
    contacts.rows += 1;
    mutated[manifest_frame].data = serde_json::to_vec(&manifest).unwrap();
    let forged = app.db.dir.path().join("forged.hfb");
    std::fs::write(&forged, reseal(&mutated)).unwrap();
    backup::check(&forged, None, &progress).expect("a forgery passes the checksums");
    let error = backup::verify(&forged, None, None, &progress)
        .await
        .unwrap_err();
    assert_eq!(
        archive_error(&error).code(),
        "content_mismatch",
        "{error:#}"
    );

    // Encrypted archives: no key, a wrong key, damage, truncation; the intact one passes.
    let (key_text, _) = Key::generate();
    let key = Key::identity_from_text(&key_text).unwrap();
    let (other_text, _) = Key::generate();
    let other = Key::identity_from_text(&other_text).unwrap();
    let sealed = backup::create(&app.app.db, &dir, Some(&key), app.app.now(), &progress)
        .await
        .unwrap();
    assert!(sealed.path.to_string_lossy().ends_with(".hfb.age"));
    let encrypted = std::fs::read(&sealed.path).unwrap();
    assert!(check_bytes(encrypted.clone(), Some(&key)).is_ok());
    assert_eq!(
        check_bytes(encrypted.clone(), None).err(),
        Some("needs_key")
    );
    assert_eq!(
        check_bytes(encrypted.clone(), Some(&other)).err(),
        Some("wrong_key")
    );
    let error = backup::check(&sealed.path, Some(&other), &progress).unwrap_err();
    assert_eq!(archive_error(&error).code(), "wrong_key");
    for index in (200..encrypted.len()).step_by(101) {
        let mut flipped = encrypted.clone();
        flipped[index] ^= 0x04;
        assert_eq!(
            check_bytes(flipped, Some(&key)).err(),
            Some("encrypted_damaged"),
            "flip at {index}"
        );
    }
    for len in [encrypted.len() - 1, encrypted.len() / 2, 300] {
        let code = check_bytes(encrypted[..len].to_vec(), Some(&key)).err();
        assert!(
            matches!(code, Some("truncated" | "encrypted_damaged")),
            "truncated to {len}: {code:?}"
        );
    }
    // A passphrase instead of a key file: the right one opens it, a wrong one is told so.
    let passphrase = Key::passphrase("correct horse battery staple").unwrap();
    let by_passphrase = backup::create(
        &app.app.db,
        &dir,
        Some(&passphrase),
        app.app.now(),
        &progress,
    )
    .await
    .unwrap();
    backup::check(&by_passphrase.path, Some(&passphrase), &progress).unwrap();
    let wrong = Key::passphrase("incorrect horse battery staple").unwrap();
    let error = backup::check(&by_passphrase.path, Some(&wrong), &progress).unwrap_err();
    assert_eq!(archive_error(&error).code(), "wrong_key", "{error:#}");
    assert!(
        Key::passphrase("short").is_err(),
        "passphrases need 12 characters"
    );

    // Damage in the encryption header reads like a wrong key to age; the checksum file written
    // beside the archive tells them apart.
    let mut damaged = encrypted.clone();
    damaged[60] ^= 0x01;
    std::fs::write(&sealed.path, &damaged).unwrap();
    let error = backup::check(&sealed.path, Some(&key), &progress).unwrap_err();
    assert_eq!(
        archive_error(&error).code(),
        "encrypted_damaged",
        "{error:#}"
    );
}

/// A company, contact and deal written in a loop until told to stop; returns how many.
fn write_load(
    admin: Client,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<usize>,
) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let handle = tokio::spawn(async move {
        let mut written = 0;
        while !*stopped.borrow() {
            let company = admin
                .create("companies", json!({"name": format!("负载公司 {written}")}))
                .await;
            admin
                .create(
                    "contacts",
                    json!({"name": format!("联系人 {written}"), "company_id": company}),
                )
                .await;
            written += 1;
        }
        written
    });
    (stop, handle)
}

async fn round_trip(from: Backend, to: Backend) {
    let Some(source) = spawn_app(from).await else {
        return;
    };
    let Some(target) = TestDb::fresh(to).await else {
        return;
    };
    let (_, admin) = seed(&source).await;
    let (stop, writer) = write_load(admin);
    // Let the writer get going, then back up while it keeps writing.
    while source.app.db.count_rows("companies").await.unwrap() < 5 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let dir = source.db.dir.path().join("backups");
    let progress = Progress::default();
    let created = backup::create(&source.app.db, &dir, None, source.app.now(), &progress)
        .await
        .unwrap();
    stop.send(true).unwrap();
    let written = writer.await.unwrap();
    assert!(
        written >= 3,
        "writes continued during the backup ({written})"
    );

    // The snapshot is consistent: every company in it has its creation in its audit log.
    let companies = created
        .manifest
        .tables
        .iter()
        .find(|t| t.name == "companies")
        .unwrap()
        .rows;
    let db = holdfast_app::Db::connect(&target.url).await.unwrap();
    let restored = restore_as_system(&db, &created.path, target.dir.path(), source.app.now())
        .await
        .unwrap();
    assert!(
        restored.safety_backup.is_none(),
        "an empty target needs none"
    );
    assert_eq!(db.count_rows("companies").await.unwrap(), companies);
    let created_in_audit = db
        .audit_entries(Some(Entity::Company), None, None, 100_000)
        .await
        .unwrap()
        .iter()
        .filter(|a| a.action == "company.create")
        .count() as i64;
    assert_eq!(
        created_in_audit, companies,
        "rows and their audit entries agree"
    );
    assert!(db.verify_audit_chain().await.unwrap() > companies);

    // Identical content: a backup of the restored database holds the same rows, apart from
    // the audit entry that records the restore and the API tokens it revoked.
    let again = backup::create(
        &db,
        &target.dir.path().join("again"),
        None,
        source.app.now(),
        &progress,
    )
    .await
    .unwrap();
    for (before, after) in created.manifest.tables.iter().zip(&again.manifest.tables) {
        if before.name == "audit_log" {
            assert_eq!(after.rows, before.rows + 1, "one entry for the restore");
        } else if before.name == "api_tokens" {
            assert_eq!(after.rows, before.rows, "the same tokens, now revoked");
        } else if before.name != "audit_head" {
            assert_eq!(before, after, "table {}", before.name);
        }
    }
    assert_eq!(again.manifest.source_backend, db.backend().name());

    // The restored CRM works: search finds restored records, new ids do not collide.
    let app = holdfast_app::App::new(
        db.clone(),
        holdfast_app::AppConfig::default(),
        source.clock.clone(),
    );
    let owner = holdfast_test_support::actor(&app, 1).await;
    let found = holdfast_app::records::list(
        &app,
        &owner,
        Entity::Contact,
        &[("q".to_owned(), "王小明".to_owned())],
    )
    .await
    .unwrap();
    assert_eq!(found.items.len(), 1, "the search index was rebuilt");
    let new = holdfast_app::records::apply_change(
        &app,
        &owner,
        "test",
        holdfast_app::records::Change::Create {
            entity: Entity::Company,
            input: json!({"name": "After restore"}),
        },
    )
    .await
    .unwrap();
    assert!(
        new.record.id > companies,
        "ids continue after the restored ones"
    );
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_to_sqlite_under_write_load() {
    round_trip(Backend::Sqlite, Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_to_postgres_under_write_load() {
    round_trip(Backend::Postgres, Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_to_postgres_under_write_load() {
    round_trip(Backend::Sqlite, Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_to_sqlite_under_write_load() {
    round_trip(Backend::Postgres, Backend::Sqlite).await;
}

on_both_backends!(
    restoring_over_current_data_takes_a_safety_backup_first,
    |app| {
        let (company, admin) = seed(&app).await;
        let leaver = app.user("leaver", "rep").await;
        let dir = app.db.dir.path().join("backups");
        let progress = Progress::default();
        let taken = backup::create(&app.app.db, &dir, None, app.app.now(), &progress)
            .await
            .unwrap();
        // After the backup, someone leaves and their script's token is revoked.
        admin
            .post(
                &format!("/api/v1/users/{}/revoke-tokens", leaver.user_id),
                json!(null),
            )
            .await
            .expect(200);
        admin
            .patch(
                &format!("/api/v1/companies/{company}"),
                json!({"expected_version": 1, "name": "Renamed after the backup"}),
            )
            .await
            .expect(200);
        let later = admin
            .create("companies", json!({"name": "Created later"}))
            .await;

        let restored = restore_as_system(&app.app.db, &taken.path, &dir, app.app.now())
            .await
            .unwrap();
        let safety = restored
            .safety_backup
            .expect("a safety backup of the current data");
        // Nothing that signs in comes back from the past: sessions are gone and every API token is
        // revoked — the leaver's, revoked after the backup, stays revoked; everyone signs in again.
        assert_eq!(app.app.db.count_rows("sessions").await.unwrap(), 0);
        assert_eq!(leaver.get("/api/v1/me").await.status, 401);
        assert_eq!(admin.get("/api/v1/me").await.status, 401);
        let admin_id = admin.user_id;
        let sign_in_again = || async {
            let actor = holdfast_test_support::actor(&app.app, admin_id).await;
            let token = holdfast_app::auth::issue_token(&app.app, &actor, "t", "again", None)
                .await
                .unwrap();
            app.client_with_token(admin_id, &token.secret)
        };
        let admin = sign_in_again().await;
        let restored_company = admin
            .get(&format!("/api/v1/companies/{company}"))
            .await
            .expect(200);
        assert_eq!(restored_company["name"], "北京远航科技有限公司");
        assert_eq!(
            admin
                .get(&format!("/api/v1/companies/{later}"))
                .await
                .status,
            404
        );
        let restores: Vec<_> = app
            .app
            .db
            .audit_entries(None, None, None, 10_000)
            .await
            .unwrap()
            .into_iter()
            .filter(|a| a.action == "backup.restored")
            .collect();
        assert_eq!(restores.len(), 1);
        assert_eq!(
            restores[0].detail["tokens_revoked"], 2,
            "{}",
            restores[0].detail
        );

        // The safety backup holds what was there before the restore.
        let header = backup::read_header(&safety, None).unwrap();
        let back = restore_as_system(&app.app.db, &safety, &dir, app.app.now())
            .await
            .unwrap();
        assert_eq!(back.manifest.backup_id, header.backup_id);
        let admin = sign_in_again().await;
        assert_eq!(
            admin
                .get(&format!("/api/v1/companies/{company}"))
                .await
                .expect(200)["name"],
            "Renamed after the backup"
        );

        // A damaged archive changes nothing: the restore fails before it commits.
        let mut bytes = std::fs::read(&taken.path).unwrap();
        let len = bytes.len();
        bytes[len - 40] ^= 0xff;
        let damaged = dir.join("damaged.hfb");
        std::fs::write(&damaged, bytes).unwrap();
        let before = app.app.db.count_rows("companies").await.unwrap();
        let error = restore_as_system(&app.app.db, &damaged, &dir, app.app.now())
            .await
            .unwrap_err();
        assert_eq!(archive_error(&error).code(), "seal_mismatch", "{error:#}");
        assert_eq!(app.app.db.count_rows("companies").await.unwrap(), before);
        assert_eq!(
            admin
                .get(&format!("/api/v1/companies/{company}"))
                .await
                .expect(200)["name"],
            "Renamed after the backup"
        );
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_schema_is_upgraded_and_a_newer_one_refused() {
    // A database at schema version 3 (before users had a language), backed up.
    let old = TestDb::fresh(Backend::Sqlite).await.unwrap();
    let db = holdfast_app::Db::connect(&old.url).await.unwrap();
    db.migrate_to(3).await.unwrap();
    db.execute_raw_for_tests(
        "INSERT INTO users (id, username, display_name, password_hash, role, active, created_at, updated_at) VALUES (1, 'old', 'Old', 'x', 'admin', 1, 0, 0)",
    )
    .await
    .unwrap();
    let progress = Progress::default();
    let dir = old.dir.path().join("backups");
    // This Holdfast refuses to back up a schema it does not serve, naming both versions.
    let refused = backup::create(
        &db,
        &dir,
        None,
        holdfast_test_support::TEST_EPOCH,
        &progress,
    )
    .await
    .unwrap_err();
    let message = format!("{refused:#}");
    assert!(
        message.contains("schema version 3") && message.contains("holdfast upgrade"),
        "{message}"
    );
    // The archive an older Holdfast would have written.
    let taken = backup::create_as_is(
        &db,
        &dir,
        None,
        holdfast_test_support::TEST_EPOCH,
        &progress,
    )
    .await
    .unwrap();
    assert_eq!(taken.manifest.schema_version, 3);

    // Restored over a current database: upgraded on the way in.
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let _ = seed(&app).await;
    restore_as_system(&app.app.db, &taken.path, &dir, app.app.now())
        .await
        .unwrap();
    let users = app.app.db.users().await.unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].username, "old");
    assert_eq!(app.app.db.count_rows("companies").await.unwrap(), 0);

    // A backup claiming a newer schema is refused with the version it needs.
    let (parts, _) = frames(&std::fs::read(&taken.path).unwrap());
    let mut header: serde_json::Value = serde_json::from_slice(&parts[0].data).unwrap();
    header["schema_version"] = json!(99);
    header["holdfast_version"] = json!("9.0.0");
    let mut rebuilt: Vec<Frame> = parts;
    rebuilt[0].data = serde_json::to_vec(&header).unwrap();
    let newer = dir.join("newer.hfb");
    std::fs::write(&newer, reseal(&rebuilt)).unwrap();
    let error = restore_as_system(&app.app.db, &newer, &dir, app.app.now())
        .await
        .unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains("schema version 99"), "{message}");
    assert!(message.contains("Holdfast 9.0.0 or newer"), "{message}");
    db.close().await;
}

on_both_backends!(selected_records_come_back_through_the_write_path, |app| {
    let (company, admin) = seed(&app).await;
    let dir = app.db.dir.path().join("backups");
    let progress = Progress::default();
    let taken = backup::create(&app.app.db, &dir, None, app.app.now(), &progress)
        .await
        .unwrap();
    let contacts = admin
        .get(&format!("/api/v1/contacts?company_id={company}"))
        .await
        .expect(200);
    let contact = contacts["items"][0]["id"].as_i64().unwrap();
    admin
        .patch(
            &format!("/api/v1/contacts/{contact}"),
            json!({"expected_version": 1, "email": "overwritten@example.com"}),
        )
        .await
        .expect(200);
    app.clock.advance_seconds(60);
    let deleted_at = app.app.now();
    // The company goes to the bin with its contacts and deal, and is purged for good.
    admin
        .delete(&format!("/api/v1/companies/{company}"))
        .await
        .expect(200);
    admin
        .delete(&format!(
            "/api/v1/recycle-bin/companies/{company}?reason=gone"
        ))
        .await
        .expect(200);
    assert_eq!(
        admin
            .get(&format!("/api/v1/companies/{company}"))
            .await
            .status,
        404
    );

    // By id: one contact's overwritten field comes back as a new version.
    let actor = Actor::system();
    let path = taken.path.clone();
    // "Everything deleted since" brings back the purged company with its contacts and deal.
    let found = backup::candidates(
        &app.app,
        &actor,
        &path,
        None,
        &Selection::DeletedSince(deleted_at),
    )
    .await
    .unwrap();
    let mut kinds: Vec<&str> = found.iter().map(|c| c.entity.name()).collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["company", "contact", "contact", "deal"]);
    assert!(found.iter().all(|c| c.now == "missing"));
    let outcomes = backup::restore_records(
        &app.app,
        &actor,
        "test",
        &path,
        None,
        &Selection::DeletedSince(deleted_at),
    )
    .await
    .unwrap();
    assert_eq!(outcomes.len(), 4);
    let back = admin
        .get(&format!("/api/v1/companies/{company}"))
        .await
        .expect(200);
    assert_eq!(back["name"], "北京远航科技有限公司");
    assert_eq!(back["tags"], json!(["重点"]));
    let versions = app.versions_of("company", company).await;
    assert_eq!(versions.last().unwrap().action, "restore_backup");
    assert!(
        versions
            .last()
            .unwrap()
            .reason
            .as_deref()
            .unwrap()
            .contains(&taken.manifest.backup_id),
        "the reason names the backup"
    );
    let audit = app.audit_of("company", company).await;
    assert_eq!(audit.last().unwrap().action, "company.restore_backup");
    // The restored contact is back, linked to its company, with the backup's e-mail.
    let restored_contact = admin
        .get(&format!("/api/v1/contacts/{contact}"))
        .await
        .expect(200);
    assert_eq!(restored_contact["company_id"], company);
    assert_ne!(restored_contact["email"], "overwritten@example.com");

    // By id, for a record that is live: it gets the backup's values as a new version.
    admin
        .patch(
            &format!("/api/v1/contacts/{contact}"),
            json!({"expected_version": restored_contact["version"], "email": "again@example.com"}),
        )
        .await
        .expect(200);
    backup::restore_records(
        &app.app,
        &actor,
        "test",
        &path,
        None,
        &Selection::Ids(vec![(Entity::Contact, contact)]),
    )
    .await
    .unwrap();
    let again = admin
        .get(&format!("/api/v1/contacts/{contact}"))
        .await
        .expect(200);
    assert_eq!(again["email"], restored_contact["email"]);
    // An id the backup does not hold is refused, naming it; nothing changes.
    let error = backup::restore_records(
        &app.app,
        &actor,
        "test",
        &path,
        None,
        &Selection::Ids(vec![(Entity::Contact, 999_999)]),
    )
    .await
    .unwrap_err();
    assert!(format!("{error}").contains("999999"), "{error}");
    // Members may not restore from backups.
    let member = app.user("li.na", "rep").await;
    let member_actor = holdfast_test_support::actor(&app.app, member.user_id).await;
    let refused = backup::restore_records(
        &app.app,
        &member_actor,
        "test",
        &path,
        None,
        &Selection::Ids(vec![(Entity::Contact, contact)]),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(refused, holdfast_app::AppError::Forbidden(_)),
        "{refused:?}"
    );
});

/// Backup needs the database's own layout to hold every table: a new table must be added to
/// the backup, to the rebuilt indexes, or to the tables a restore leaves alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_table_is_backed_up_rebuilt_or_deliberately_left_out() {
    use holdfast_app::backup::tables;
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let names = app.app.db.table_names().await.unwrap();
    for name in &names {
        assert!(
            tables::BACKUP_TABLES.iter().any(|(t, _)| t == name)
                || tables::REBUILT_TABLES.contains(&name.as_str())
                || tables::EPHEMERAL_TABLES.contains(&name.as_str())
                || tables::LOCAL_TABLES.contains(&name.as_str()),
            "table {name} is not covered by backups"
        );
    }
}
