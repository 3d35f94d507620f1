//! Each reason of the chain, from a small organisation: two teams under a head office.

use super::*;

fn user(id: i64, name: &str, role: &str, team: Option<i64>) -> UserAccess {
    UserAccess {
        id,
        username: name.to_lowercase(),
        display_name: name.into(),
        role: role.into(),
        team_id: team,
        active: true,
        pending: false,
        must_change_password: false,
        must_enrol_second_factor: false,
    }
}

/// Teams: 1 head office (managed by Wang), 2 east (under 1, managed by Zhao), 3 west (under 1).
fn org() -> AccessConfig {
    let users = [
        user(1, "Admin", ADMIN, None),
        user(2, "Wang", MANAGER, Some(1)),
        user(3, "Zhao", MANAGER, Some(2)),
        user(4, "Li", REP, Some(2)),
        user(5, "Chen", REP, Some(2)),
        user(6, "Sun", REP, Some(3)),
        user(7, "Audit", AUDITOR, None),
    ];
    AccessConfig {
        roles: RoleDef::built_in(),
        users: users.into_iter().map(|u| (u.id, u)).collect(),
        teams: vec![
            Team {
                id: 1,
                name: "Head office".into(),
                parent_id: None,
                manager_id: Some(2),
            },
            Team {
                id: 2,
                name: "East".into(),
                parent_id: Some(1),
                manager_id: Some(3),
            },
            Team {
                id: 3,
                name: "West".into(),
                parent_id: Some(1),
                manager_id: None,
            },
        ],
        modules_off: BTreeSet::new(),
        grants: Vec::new(),
        lockdown: None,
    }
}

fn actor(config: &AccessConfig, id: i64) -> Actor {
    Actor {
        user_id: id,
        username: config.users[&id].username.clone(),
        kind: ActorKind::System,
        access: Arc::new(config.clone()),
        now: Timestamp(1_000),
        client: None,
    }
}

fn contact(id: i64, owner_id: i64) -> RecordRef {
    RecordRef {
        entity: Entity::Contact,
        id,
        owner_id,
    }
}

fn failing_code(actor: &Actor, target: &Target) -> Option<&'static str> {
    actor.explain(target).failed().map(|s| s.code)
}

#[test]
fn scopes_follow_teams_and_managers() {
    let config = org();
    let owners = |id: i64| actor(&config, id).scope_owners();
    // A rep reaches their own records only.
    assert_eq!(owners(4), Some(BTreeSet::from([4])));
    // Zhao manages East (sub-teams scope): everyone in East.
    assert_eq!(owners(3), Some(BTreeSet::from([3, 4, 5])));
    // Wang manages the head office: every team below it too.
    assert_eq!(owners(2), Some(BTreeSet::from([2, 3, 4, 5, 6])));
    assert_eq!(owners(1), None);
    assert_eq!(owners(7), None);
}

#[test]
fn every_reason_of_the_chain() {
    let mut config = org();
    let read = |id| Target::record(Right::View, contact(id, 5));
    // Allowed: the owner's own record.
    assert!(actor(&config, 5).explain(&read(9)).allowed());
    // out_of_scope names the owner first, then the administrators.
    let denial = actor(&config, 4).check(&read(9)).unwrap_err();
    assert_eq!(denial.code, "out_of_scope");
    assert_eq!(
        denial.grantable_by,
        vec!["Chen".to_owned(), "Admin".to_owned()]
    );
    // no_right: the auditor cannot edit.
    let edit = Target::record(Right::Edit, contact(9, 5));
    assert_eq!(failing_code(&actor(&config, 7), &edit), Some("no_right"));
    // A rep cannot purge or administer.
    assert_eq!(
        authorize(&actor(&config, 4), Action::Purge)
            .unwrap_err()
            .code,
        "no_right"
    );
    assert!(authorize(&actor(&config, 4), Action::Administer).is_err());
    // module_off stops everyone but administrators.
    config.modules_off.insert(Module::Contacts);
    assert_eq!(
        failing_code(&actor(&config, 5), &read(9)),
        Some("module_off")
    );
    assert!(actor(&config, 1).explain(&read(9)).allowed());
    config.modules_off.clear();
    // field_hidden and field_read_only.
    let mut rep = config.role(REP).cloned().unwrap();
    rep.key = "rep_limited".into();
    rep.built_in = false;
    rep.fields
        .insert((Entity::Contact, "phone".into()), FieldRule::Hidden);
    rep.fields
        .insert((Entity::Contact, "email".into()), FieldRule::ReadOnly);
    config.roles.push(rep);
    config.users.get_mut(&5).unwrap().role = "rep_limited".into();
    let field = |right, name: &str| Target {
        field: Some(name.into()),
        status: None,
        ..Target::record(right, contact(9, 5))
    };
    let chen = actor(&config, 5);
    assert_eq!(
        failing_code(&chen, &field(Right::View, "phone")),
        Some("field_hidden")
    );
    assert!(chen.explain(&field(Right::View, "email")).allowed());
    assert_eq!(
        failing_code(&chen, &field(Right::Edit, "email")),
        Some("field_read_only")
    );
    // account_pending and account_deactivated come first, before anything else.
    config.users.get_mut(&5).unwrap().pending = true;
    assert_eq!(
        failing_code(&actor(&config, 5), &read(9)),
        Some("account_pending")
    );
    config.users.get_mut(&5).unwrap().pending = false;
    config.users.get_mut(&5).unwrap().active = false;
    let chain = actor(&config, 5).explain(&read(9));
    assert_eq!(chain.steps.len(), 1);
    assert_eq!(chain.failed().unwrap().code, "account_deactivated");
    assert_eq!(chain.failed().unwrap().can_change, vec!["Admin".to_owned()]);
}

#[test]
fn grants_give_rights_and_shares_until_they_expire() {
    let mut config = org();
    config.grants.push(Grant {
        request_id: 1,
        user_id: 4,
        kind: GrantKind::Record {
            entity: Entity::Contact,
            id: 9,
            right: Right::View,
        },
        expires_at: Some(Timestamp(2_000)),
        approved_by: "Chen".into(),
    });
    config.grants.push(Grant {
        request_id: 2,
        user_id: 4,
        kind: GrantKind::Permission((Module::Exports, Right::Export)),
        expires_at: None,
        approved_by: "Admin".into(),
    });
    let li = actor(&config, 4);
    let read = Target::record(Right::View, contact(9, 5));
    let chain = li.explain(&read);
    assert!(chain.allowed());
    assert_eq!(chain.steps.last().unwrap().code, "by_grant");
    // The share gives view only, and only on that record.
    assert!(
        li.check(&Target::record(Right::Edit, contact(9, 5)))
            .is_err()
    );
    assert!(
        li.check(&Target::record(Right::View, contact(10, 5)))
            .is_err()
    );
    assert_eq!(li.shared(Entity::Contact), BTreeSet::from([9]));
    assert!(li.can((Module::Exports, Right::Export)));
    // At its expiry the share ends.
    let later = Actor {
        now: Timestamp(2_000),
        ..li
    };
    assert_eq!(later.check(&read).unwrap_err().code, "out_of_scope");
    assert!(later.shared(Entity::Contact).is_empty());
}

#[test]
fn deactivated_owners_records_stay_reachable_by_their_team_and_administrators() {
    let mut config = org();
    config.users.get_mut(&4).unwrap().active = false;
    let record = Target::record(Right::View, contact(9, 4));
    assert!(actor(&config, 3).explain(&record).allowed());
    assert!(actor(&config, 1).explain(&record).allowed());
    assert!(actor(&config, 2).explain(&record).allowed());
    assert!(actor(&config, 6).check(&record).is_err());
}

#[test]
fn permission_keys_round_trip_and_refuse_nonsense() {
    for module in Module::ALL {
        for right in module.rights() {
            let key = permission_key((module, *right));
            assert_eq!(parse_permission(&key), Some((module, *right)), "{key}");
        }
    }
    assert_eq!(parse_permission("administration.export"), None);
    assert_eq!(parse_permission("deals"), None);
    assert_eq!(parse_permission("ships.view"), None);
}

#[test]
fn a_token_limited_to_modules_keeps_only_those_rights() {
    let contacts_only: BTreeSet<Module> = [Module::Contacts].into();
    let limited = org().limited_to(1, &contacts_only);
    let admin = actor(&limited, 1);
    assert!(authorize(&admin, Action::Read(Entity::Contact)).is_ok());
    assert!(authorize(&admin, Action::Update(Entity::Contact)).is_ok());
    assert_eq!(
        authorize(&admin, Action::Read(Entity::Deal)).map_err(|d| d.code),
        Err("no_right")
    );
    // An administrator's token limited to contacts is not an administrator's.
    assert!(!admin.is_admin());
    assert!(authorize(&admin, Action::Administer).is_err());
    // Everyone else is as before.
    assert!(authorize(&actor(&limited, 2), Action::Read(Entity::Deal)).is_ok());
}

#[test]
fn a_lockdown_leaves_reading_to_everyone_and_changes_to_administrators() {
    let mut config = org();
    config.lockdown = Some(Lockdown {
        since: Timestamp(1_000),
        by: "Admin".into(),
        reason: "stolen token".into(),
    });
    let rep = actor(&config, 4);
    assert!(authorize(&rep, Action::Read(Entity::Contact)).is_ok());
    for action in [
        Action::Create(Entity::Contact),
        Action::Export(Entity::Contact),
    ] {
        let denial = authorize(&rep, action).unwrap_err();
        assert_eq!(denial.code, "lockdown");
        assert!(
            denial.message.contains("stolen token"),
            "{}",
            denial.message
        );
        assert_eq!(denial.grantable_by, vec!["Admin".to_owned()]);
    }
    assert!(authorize(&actor(&config, 1), Action::Create(Entity::Contact)).is_ok());
}
