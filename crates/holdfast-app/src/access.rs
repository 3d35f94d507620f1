//! Permission administration and answers: roles, teams, module switches, "why can't I see
//! this?", per-user access summaries, access requests and the preview of a change.
//!
//! Every change here is previewed by the same pure comparison ([`preview`]) that the caller can
//! ask for first, and applied in one write transaction with an audit entry holding the before
//! and after.

use crate::{App, AppError};
use holdfast_domain::access::{
    ADMIN, FieldRule, Target, Team, UserAccess, authorize, explain, parse_permission,
    permission_key,
};
use holdfast_domain::{
    AccessConfig, Action, Actor, Denial, Entity, Explanation, Module, RecordRef, Right, RoleDef,
    Scope, Timestamp,
};
use holdfast_store::{AccessRequestRow, AuditDraft, NotificationRow, RoleRow};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// What a question to the explainer is about.
#[derive(Debug, Clone)]
pub struct Question {
    pub user_id: i64,
    pub permission: (Module, Right),
    pub record: Option<(Entity, i64)>,
    pub field: Option<String>,
}

/// Answers "why can (or can't) this user do this?". Users may ask about themselves; asking
/// about someone else takes the right to read the administration module.
/// The id of the user an explanation is about, given as an id or a username (as the CLI takes
/// it). Naming someone else needs the right to explain others, so a refusal never reveals
/// whether a username exists.
pub async fn user_named(app: &App, actor: &Actor, text: &str) -> Result<i64, AppError> {
    let text = text.trim();
    if let Ok(id) = text.parse::<i64>() {
        return Ok(id);
    }
    if !text.eq_ignore_ascii_case(&actor.username) {
        authorize(actor, Action::Audit)?;
    }
    app.db
        .user_by_username(&text.to_lowercase())
        .await?
        .map(|user| user.id)
        .ok_or_else(|| AppError::not_found(format!("user {text:?}")))
}

pub async fn explain_for(
    app: &App,
    actor: &Actor,
    question: Question,
) -> Result<Explanation, AppError> {
    if question.user_id != actor.user_id {
        authorize(actor, Action::Audit)?;
    }
    let config = app.access_config().await?;
    if config.user(question.user_id).is_none() {
        return Err(AppError::not_found(format!("user {}", question.user_id)));
    }
    let mut status = None;
    let record = match question.record {
        None => None,
        Some((entity, id)) => {
            let owner_id = match app.db.record(entity, id).await? {
                Some(found) => {
                    // A deal's status decides `read_only_when_won`.
                    status = found.field_str("status").map(str::to_owned);
                    found.owner_id
                }
                // Purged: its last version names the owner.
                None => record_owner(app, entity, id).await?,
            };
            Some(RecordRef {
                entity,
                id,
                owner_id,
            })
        }
    };
    if let Some(asked) = record
        && !may_know_of(app, actor, asked).await?
    {
        // The same answer as for an id that does not exist: whether a record outside your
        // reach exists, who owns it and where it stands is not yours to learn.
        return Err(AppError::not_found(format!(
            "{} {}",
            asked.entity, asked.id
        )));
    }
    if let Some(field) = &question.field {
        let entity = record.map(|r| r.entity).ok_or_else(|| {
            AppError::invalid(
                "field",
                "required",
                "Name a record to ask about one of its fields",
            )
        })?;
        if entity.field(field).is_none() {
            return Err(AppError::invalid(
                "field",
                "unknown_field",
                format!("A {entity} has no field '{field}'"),
            ));
        }
    }
    let permission = match record {
        Some(r) => (Module::of(r.entity), question.permission.1),
        None => question.permission,
    };
    let target = Target {
        permission,
        record,
        field: question.field,
        status,
    };
    Ok(explain(&config, question.user_id, &target, app.now()))
}

/// Whether the actor may learn that a record exists (and so have it explained): it is in their
/// reach or shared with them, they asked for access to it, or they may explain anyone's access.
async fn may_know_of(app: &App, actor: &Actor, record: RecordRef) -> Result<bool, AppError> {
    // Scope only: a switched-off module or a missing right is explained as such, since it is
    // about the user and not about the record.
    let in_reach = actor
        .scope_owners()
        .is_none_or(|owners| owners.contains(&record.owner_id))
        || actor.shared(record.entity).contains(&record.id);
    if in_reach || authorize(actor, Action::Audit).is_ok() {
        return Ok(true);
    }
    Ok(app
        .db
        .access_requests_of(actor.user_id, 500)
        .await?
        .iter()
        .any(|request| request.record == Some((record.entity, record.id))))
}

/// The owner of a record, live, in the recycle bin, or (purged) as its last version said.
pub async fn record_owner(app: &App, entity: Entity, id: i64) -> Result<i64, AppError> {
    if let Some(record) = app.db.record(entity, id).await? {
        return Ok(record.owner_id);
    }
    app.db
        .versions(entity, id)
        .await?
        .last()
        .and_then(|v| v.snapshot.get("owner_id").and_then(Value::as_i64))
        .ok_or_else(|| AppError::not_found(format!("{entity} {id}")))
}

/// One right of a user, and what gives it.
#[derive(Debug, Clone, Serialize)]
pub struct RightSource {
    pub permission: String,
    /// `role`, `grant`, or `none`; `module_off` when the module is switched off.
    pub source: &'static str,
    pub detail: String,
}

/// What a user can do, and why: the answer to "why can she see the deals but not export them?".
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub user_id: i64,
    pub display_name: String,
    pub role: String,
    pub role_name: String,
    /// `active`, `pending` or `deactivated`.
    pub status: &'static str,
    pub scope: String,
    pub team: Option<String>,
    /// Users whose records the scope reaches; `None` for everyone's.
    pub reaches_owners: Option<Vec<String>>,
    pub rights: Vec<RightSource>,
    pub hidden_fields: Vec<String>,
    pub read_only_fields: Vec<String>,
    pub shared_records: Vec<String>,
}

pub async fn summary(app: &App, actor: &Actor, user_id: i64) -> Result<Summary, AppError> {
    if user_id != actor.user_id {
        authorize(actor, Action::Audit)?;
    }
    let config = app.access_config().await?;
    summary_of(&config, user_id, app.now())
        .ok_or_else(|| AppError::not_found(format!("user {user_id}")))
}

fn summary_of(config: &AccessConfig, user_id: i64, now: Timestamp) -> Option<Summary> {
    let user = config.user(user_id)?;
    let role = config.role(&user.role);
    let scope = if role.is_some_and(RoleDef::is_admin) {
        Scope::All
    } else {
        role.map_or(Scope::Own, |r| r.scope)
    };
    let mut rights = Vec::new();
    for module in Module::ALL {
        for right in module.rights() {
            let target = Target::permission((module, *right));
            let chain = explain(config, user_id, &target, now);
            let key = permission_key((module, *right));
            let (source, detail) = match chain.failed() {
                None => match chain.steps.iter().find(|s| s.check == "right") {
                    Some(step) if step.code == "by_grant" => ("grant", step.message.clone()),
                    Some(step) => ("role", step.message.clone()),
                    None => ("role", String::new()),
                },
                Some(step) if step.code == "module_off" => ("module_off", step.message.clone()),
                Some(step) => ("none", step.message.clone()),
            };
            rights.push(RightSource {
                permission: key,
                source,
                detail,
            });
        }
    }
    // `contact.phone`, or `contact.phone (hidden_outside_team)` for a conditional rule.
    let fields_with = |wanted: &[FieldRule]| -> Vec<String> {
        role.map(|r| {
            r.fields
                .iter()
                .filter(|(_, rule)| wanted.contains(rule))
                .map(|((entity, field), rule)| match rule {
                    FieldRule::Hidden | FieldRule::ReadOnly => format!("{}.{field}", entity.name()),
                    other => format!("{}.{field} ({})", entity.name(), other.key()),
                })
                .collect()
        })
        .unwrap_or_default()
    };
    let shared_records = Entity::ALL
        .iter()
        .flat_map(|e| {
            config
                .shared(user_id, *e, now)
                .into_iter()
                .map(move |id| format!("{} {id}", e.name()))
        })
        .collect();
    Some(Summary {
        user_id,
        display_name: user.display_name.clone(),
        role: user.role.clone(),
        role_name: role.map_or_else(|| user.role.clone(), |r| r.name.clone()),
        status: status_of(user),
        scope: scope.key().to_owned(),
        team: user
            .team_id
            .and_then(|t| config.team(t))
            .map(|t| t.name.clone()),
        reaches_owners: config.scope_owners(user, scope).map(|owners| {
            owners
                .iter()
                .filter_map(|id| config.user(*id).map(|u| u.display_name.clone()))
                .collect()
        }),
        rights,
        hidden_fields: fields_with(&[FieldRule::Hidden, FieldRule::HiddenOutsideTeam]),
        read_only_fields: fields_with(&[FieldRule::ReadOnly, FieldRule::ReadOnlyWhenWon]),
        shared_records,
    })
}

pub fn status_of(user: &UserAccess) -> &'static str {
    if !user.active {
        "deactivated"
    } else if user.pending {
        "pending"
    } else {
        "active"
    }
}

// ---------------------------------------------------------------------------------------------
// Preview of a change

/// What a permission change would do, user by user.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Preview {
    pub users: Vec<UserEffect>,
    /// Users who would gain or lose at least one right or record.
    pub users_affected: usize,
    /// Records that at least one user would no longer reach.
    pub records_hidden_from_someone: i64,
    /// Records that at least one user would newly reach.
    pub records_shown_to_someone: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct UserEffect {
    pub user_id: i64,
    pub display_name: String,
    pub gains: Vec<String>,
    pub loses: Vec<String>,
    /// Records this user reaches now and would not after.
    pub records_lost: i64,
    pub records_gained: i64,
}

/// Compares what every active user can do and reach under `before` and `after`.
pub async fn preview(
    app: &App,
    before: &AccessConfig,
    after: &AccessConfig,
) -> Result<Preview, AppError> {
    let mut per_owner = BTreeMap::new();
    for entity in Entity::ALL {
        per_owner.insert(entity, app.db.records_per_owner(entity).await?);
    }
    let (before, after) = (without_sign_in_gates(before), without_sign_in_gates(after));
    Ok(compare(&before, &after, &per_owner, app.now()))
}

/// Replacing a password an administrator chose and enrolling a second factor are steps of
/// signing in, not of access: a preview shows what a change gives the user once they have
/// done them.
fn without_sign_in_gates(config: &AccessConfig) -> AccessConfig {
    let mut config = config.clone();
    for user in config.users.values_mut() {
        user.must_change_password = false;
        user.must_enrol_second_factor = false;
    }
    config
}

/// Owners whose records of `entity` the user reaches (`None`: all), or the empty set without
/// the right to view them.
fn reach(
    config: &AccessConfig,
    user_id: i64,
    entity: Entity,
    now: Timestamp,
) -> Option<BTreeSet<i64>> {
    let target = Target::permission((Module::of(entity), Right::View));
    if !explain(config, user_id, &target, now).allowed() {
        return Some(BTreeSet::new());
    }
    let user = config.user(user_id)?;
    let role = config.role(&user.role);
    let scope = if role.is_some_and(RoleDef::is_admin) {
        Scope::All
    } else {
        role.map_or(Scope::Own, |r| r.scope)
    };
    config.scope_owners(user, scope)
}

fn count(owners: &BTreeMap<i64, i64>, set: impl Iterator<Item = i64>) -> i64 {
    set.map(|o| owners.get(&o).copied().unwrap_or(0)).sum()
}

/// Owners in `a` but not in `b` (where `None` is everyone).
fn owners_minus(
    a: &Option<BTreeSet<i64>>,
    b: &Option<BTreeSet<i64>>,
    all: &BTreeSet<i64>,
) -> BTreeSet<i64> {
    let a = a.clone().unwrap_or_else(|| all.clone());
    match b {
        None => BTreeSet::new(),
        Some(b) => a.difference(b).copied().collect(),
    }
}

fn compare(
    before: &AccessConfig,
    after: &AccessConfig,
    per_owner: &BTreeMap<Entity, BTreeMap<i64, i64>>,
    now: Timestamp,
) -> Preview {
    let mut preview = Preview::default();
    let mut hidden: BTreeMap<Entity, BTreeSet<i64>> = BTreeMap::new();
    let mut shown: BTreeMap<Entity, BTreeSet<i64>> = BTreeMap::new();
    let ids: BTreeSet<i64> = before
        .users
        .keys()
        .chain(after.users.keys())
        .copied()
        .collect();
    for id in ids {
        let active = |c: &AccessConfig| c.user(id).is_some_and(|u| u.active);
        if !active(before) && !active(after) {
            continue;
        }
        let rights = |config: &AccessConfig| -> BTreeSet<String> {
            Module::ALL
                .iter()
                .flat_map(|m| m.rights().iter().map(move |r| (*m, *r)))
                .filter(|p| explain(config, id, &Target::permission(*p), now).allowed())
                .map(permission_key)
                .collect()
        };
        let (was, will) = (rights(before), rights(after));
        let mut effect = UserEffect {
            user_id: id,
            display_name: after
                .user(id)
                .or(before.user(id))
                .map(|u| u.display_name.clone())
                .unwrap_or_default(),
            gains: will.difference(&was).cloned().collect(),
            loses: was.difference(&will).cloned().collect(),
            records_lost: 0,
            records_gained: 0,
        };
        for entity in Entity::ALL {
            let owners = &per_owner[&entity];
            let all: BTreeSet<i64> = owners.keys().copied().collect();
            let (a, b) = (
                reach(before, id, entity, now),
                reach(after, id, entity, now),
            );
            let lost = owners_minus(&a, &b, &all);
            let gained = owners_minus(&b, &a, &all);
            effect.records_lost += count(owners, lost.iter().copied());
            effect.records_gained += count(owners, gained.iter().copied());
            hidden.entry(entity).or_default().extend(lost);
            shown.entry(entity).or_default().extend(gained);
        }
        if !effect.gains.is_empty()
            || !effect.loses.is_empty()
            || effect.records_lost > 0
            || effect.records_gained > 0
        {
            preview.users.push(effect);
        }
    }
    preview.users_affected = preview.users.len();
    preview.records_hidden_from_someone = hidden
        .iter()
        .map(|(e, set)| count(&per_owner[e], set.iter().copied()))
        .sum();
    preview.records_shown_to_someone = shown
        .iter()
        .map(|(e, set)| count(&per_owner[e], set.iter().copied()))
        .sum();
    preview
}

/// A change to the permission settings, previewed or applied by [`change`].
#[derive(Debug, Clone)]
pub enum AccessChange {
    /// Create or replace a custom role.
    PutRole(RoleRow),
    DeleteRole(String),
    /// Create (`id` 0) or change a team.
    PutTeam(Team),
    DeleteTeam(i64),
    /// Switch a module on (`true`) or off for the whole organisation.
    SwitchModule(Module, bool),
    /// A user's role, team, or approval (`pending` `Some(false)` approves).
    SetUser {
        user_id: i64,
        role: Option<String>,
        team_id: Option<Option<i64>>,
        pending: Option<bool>,
    },
}

/// The settings as they would be after `change`, checked; the error says what is wrong.
fn apply_to(config: &AccessConfig, change: &AccessChange) -> Result<AccessConfig, AppError> {
    let mut after = config.clone();
    match change {
        AccessChange::PutRole(row) => {
            check_role_row(row)?;
            if let Some(existing) = after.roles.iter_mut().find(|r| r.key == row.key) {
                if existing.built_in {
                    return Err(AppError::conflict(
                        "built_in_role",
                        format!(
                            "{} is a built-in role and cannot be changed; create a custom role instead",
                            existing.name
                        ),
                    ));
                }
                *existing = row.to_def();
            } else {
                after.roles.push(row.to_def());
            }
        }
        AccessChange::DeleteRole(key) => {
            let role = after
                .role(key)
                .ok_or_else(|| AppError::not_found(format!("role {key}")))?;
            if role.built_in {
                return Err(AppError::conflict(
                    "built_in_role",
                    format!("{} is a built-in role and cannot be deleted", role.name),
                ));
            }
            let users: Vec<&str> = after
                .users
                .values()
                .filter(|u| u.role == *key)
                .map(|u| u.display_name.as_str())
                .collect();
            if !users.is_empty() {
                return Err(AppError::conflict(
                    "role_in_use",
                    format!(
                        "The role is given to {}; give them another role first",
                        users.join(", ")
                    ),
                ));
            }
            after.roles.retain(|r| r.key != *key);
        }
        AccessChange::PutTeam(team) => {
            check_team(&after, team)?;
            match after
                .teams
                .iter_mut()
                .find(|t| t.id == team.id && team.id != 0)
            {
                Some(existing) => *existing = team.clone(),
                None if team.id == 0 => after.teams.push(Team {
                    // A placeholder id no team has, for the preview.
                    id: -1,
                    ..team.clone()
                }),
                None => return Err(AppError::not_found(format!("team {}", team.id))),
            }
        }
        AccessChange::DeleteTeam(id) => {
            if after.team(*id).is_none() {
                return Err(AppError::not_found(format!("team {id}")));
            }
            after.teams.retain(|t| t.id != *id);
            for team in &mut after.teams {
                if team.parent_id == Some(*id) {
                    team.parent_id = None;
                }
            }
            for user in after.users.values_mut() {
                if user.team_id == Some(*id) {
                    user.team_id = None;
                }
            }
        }
        AccessChange::SwitchModule(module, on) => {
            if !on && !module.can_switch_off() {
                return Err(AppError::invalid(
                    "module",
                    "not_allowed",
                    "Administration cannot be switched off: it is where modules are switched back on",
                ));
            }
            if *on {
                after.modules_off.remove(module);
            } else {
                after.modules_off.insert(*module);
            }
        }
        AccessChange::SetUser {
            user_id,
            role,
            team_id,
            pending,
        } => {
            let known_roles: Vec<String> = after.roles.iter().map(|r| r.key.clone()).collect();
            let teams: Vec<i64> = after.teams.iter().map(|t| t.id).collect();
            let user = after
                .users
                .get_mut(user_id)
                .ok_or_else(|| AppError::not_found(format!("user {user_id}")))?;
            if let Some(role) = role {
                if !known_roles.contains(role) {
                    return Err(AppError::invalid(
                        "role",
                        "invalid_choice",
                        format!("No role '{role}'. Roles: {}", known_roles.join(", ")),
                    ));
                }
                user.role = role.clone();
            }
            if let Some(team) = team_id {
                if team.is_some_and(|t| !teams.contains(&t)) {
                    return Err(AppError::invalid(
                        "team_id",
                        "not_found",
                        "There is no such team",
                    ));
                }
                user.team_id = *team;
            }
            if let Some(pending) = pending {
                user.pending = *pending;
            }
        }
    }
    // Nothing may become invisible to every administrator: one active one must remain.
    if after.admin_names().is_empty() {
        return Err(AppError::conflict(
            "last_admin",
            "This would leave no active administrator; make someone else an administrator first",
        ));
    }
    Ok(after)
}

fn check_role_row(row: &RoleRow) -> Result<(), AppError> {
    let mut errors = holdfast_domain::FieldErrors::default();
    let key_ok = (2..=40).contains(&row.key.len())
        && row
            .key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !key_ok {
        errors.push(
            "key",
            "invalid_key",
            "Use 2 to 40 lowercase letters, digits or _ (for example field_sales)",
        );
    }
    if row.key == ADMIN {
        errors.push("key", "taken", "admin is the built-in administrator role");
    }
    let name = row.name.trim();
    if name.is_empty() || name.chars().count() > 60 {
        errors.push("name", "invalid_name", "1 to 60 characters");
    }
    for right in &row.rights {
        if parse_permission(right).is_none() {
            errors.push(
                "rights",
                "invalid_choice",
                format!("'{right}' is not a right; write module.right, such as deals.edit"),
            );
        }
    }
    if Scope::parse(&row.scope).is_none() {
        errors.push(
            "scope",
            "invalid_choice",
            "Choose own, team, subteams or all",
        );
    }
    for (key, rule) in &row.fields {
        let known = key
            .split_once('.')
            .and_then(|(e, f)| Entity::from_name(e)?.field(f))
            .is_some();
        if !known {
            errors.push(
                "fields",
                "unknown_field",
                format!("'{key}' is not a field; write entity.field, such as contact.phone"),
            );
        }
        if FieldRule::parse(rule).is_none() {
            errors.push(
                "fields",
                "invalid_choice",
                format!(
                    "'{rule}' for {key}: choose {}",
                    FieldRule::ALL.map(FieldRule::key).join(", ")
                ),
            );
        }
    }
    errors.into_result()?;
    Ok(())
}

fn check_team(config: &AccessConfig, team: &Team) -> Result<(), AppError> {
    let name = team.name.trim();
    if name.is_empty() || name.chars().count() > 60 {
        return Err(AppError::invalid(
            "name",
            "invalid_name",
            "1 to 60 characters",
        ));
    }
    if let Some(manager) = team.manager_id
        && config.user(manager).is_none()
    {
        return Err(AppError::invalid(
            "manager_id",
            "not_found",
            format!("There is no user with id {manager}"),
        ));
    }
    if let Some(parent) = team.parent_id {
        if config.team(parent).is_none() {
            return Err(AppError::invalid(
                "parent_id",
                "not_found",
                format!("There is no team with id {parent}"),
            ));
        }
        // Walking up from the parent must never reach this team.
        let mut at = Some(parent);
        let mut steps = 0;
        while let Some(id) = at {
            if id == team.id || steps > config.teams.len() {
                return Err(AppError::invalid(
                    "parent_id",
                    "cycle",
                    "A team cannot sit below itself or one of its own sub-teams",
                ));
            }
            at = config.team(id).and_then(|t| t.parent_id);
            steps += 1;
        }
    }
    Ok(())
}

/// What [`change`] did or would do.
#[derive(Debug, Clone, Serialize)]
pub struct ChangeOutcome {
    pub applied: bool,
    pub preview: Preview,
    /// The id of a team it created.
    pub team_id: Option<i64>,
}

/// Previews (`dry_run`) or applies a change to the permission settings. Applying writes the
/// change and an audit entry with the before, the after and the preview's figures.
/// Only administrators hand out what they do not hold: someone who administers through a custom
/// role may not make anyone an administrator, nor give (or define) a role with rights they lack
/// or a wider record scope than their own. Otherwise `administration.edit` would be a way to
/// everything.
pub fn check_grantable(actor: &Actor, role: &RoleDef) -> Result<(), AppError> {
    if actor.is_admin() {
        return Ok(());
    }
    let refuse = |message: String| {
        AppError::Forbidden(Denial {
            code: "not_grantable",
            message,
            grantable_by: actor.access.admin_names(),
            explanation: None,
        })
    };
    if role.is_admin() {
        return Err(refuse(
            "Only administrators can make someone an administrator".into(),
        ));
    }
    let missing: Vec<String> = role
        .rights
        .iter()
        .filter(|permission| !actor.can(**permission))
        .map(|permission| holdfast_domain::access::permission_key(*permission))
        .collect();
    if !missing.is_empty() {
        return Err(refuse(format!(
            "You cannot give rights you do not have yourself: {}. An administrator can",
            missing.join(", ")
        )));
    }
    let own_scope = actor.role().map_or(Scope::Own, |r| r.scope);
    if role.scope > own_scope {
        return Err(refuse(format!(
            "You cannot give a wider reach over records ({:?}) than your own ({own_scope:?}). An administrator can",
            role.scope
        )));
    }
    Ok(())
}

pub async fn change(
    app: &App,
    actor: &Actor,
    op_id: &str,
    change: AccessChange,
    dry_run: bool,
) -> Result<ChangeOutcome, AppError> {
    authorize(actor, Action::Administer)?;
    let before = app.access_config().await?;
    match &change {
        AccessChange::PutRole(row) => check_grantable(actor, &row.to_def())?,
        AccessChange::SetUser {
            role: Some(key), ..
        } => {
            if let Some(role) = before.role(key) {
                check_grantable(actor, role)?;
            }
        }
        _ => {}
    }
    let after = apply_to(&before, &change)?;
    let preview = preview(app, &before, &after).await?;
    if !dry_run {
        crate::step_up::require(app, actor).await?;
    }
    if dry_run {
        return Ok(ChangeOutcome {
            applied: false,
            preview,
            team_id: None,
        });
    }
    let figures = json!({
        "users_affected": preview.users_affected,
        "records_hidden_from_someone": preview.records_hidden_from_someone,
        "records_shown_to_someone": preview.records_shown_to_someone,
    });
    let mut tx = app.db.begin_write(app.now()).await?;
    let mut team_id = None;
    match &change {
        AccessChange::PutRole(row) => {
            let old = before.role(&row.key).map(RoleRow::from_def);
            let detail = json!({"role": row.key, "before": old.as_ref().map(role_json), "after": role_json(row), "preview": figures});
            tx.put_role(
                row,
                old.is_none(),
                AuditDraft::new(actor, op_id, "access.role", detail),
            )
            .await?;
        }
        AccessChange::DeleteRole(key) => {
            let old = before.role(key).map(RoleRow::from_def);
            let detail = json!({"role": key, "before": old.as_ref().map(role_json), "after": null, "preview": figures});
            tx.delete_role(
                key,
                AuditDraft::new(actor, op_id, "access.role_delete", detail),
            )
            .await?;
        }
        AccessChange::PutTeam(team) => {
            let old = before.team(team.id);
            let detail =
                json!({"before": old.map(team_json), "after": team_json(team), "preview": figures});
            let id = (team.id != 0).then_some(team.id);
            team_id = Some(
                tx.put_team(
                    id,
                    team,
                    AuditDraft::new(actor, op_id, "access.team", detail),
                )
                .await?,
            );
        }
        AccessChange::DeleteTeam(id) => {
            let detail = json!({"team_id": id, "before": before.team(*id).map(team_json), "after": null, "preview": figures});
            tx.delete_team(
                *id,
                AuditDraft::new(actor, op_id, "access.team_delete", detail),
            )
            .await?;
        }
        AccessChange::SwitchModule(module, on) => {
            let keys = |c: &AccessConfig| c.modules_off.iter().map(|m| m.key()).collect::<Vec<_>>();
            let detail = json!({"module": module.key(), "on": on, "before": {"modules_off": keys(&before)}, "after": {"modules_off": keys(&after)}, "preview": figures});
            tx.set_modules_off(
                &after.modules_off,
                AuditDraft::new(actor, op_id, "access.module", detail),
            )
            .await?;
        }
        AccessChange::SetUser {
            user_id,
            role,
            team_id,
            pending,
        } => {
            let old = before.user(*user_id);
            let new = after.user(*user_id);
            let user_json = |u: Option<&UserAccess>| {
                u.map(|u| json!({"role": u.role, "team_id": u.team_id, "pending": u.pending}))
            };
            let detail = json!({"user_id": user_id, "before": user_json(old), "after": user_json(new), "preview": figures});
            let update = holdfast_store::UserUpdate {
                role: role.clone(),
                team_id: *team_id,
                pending: *pending,
                ..Default::default()
            };
            let action = if *pending == Some(false) && old.is_some_and(|u| u.pending) {
                "user.approve"
            } else {
                "access.user"
            };
            tx.update_user(
                *user_id,
                update,
                AuditDraft::new(actor, op_id, action, detail),
            )
            .await?;
            if action == "user.approve" {
                tx.notify(*user_id, "account_approved", json!({"by": actor.username}))
                    .await?;
            }
        }
    }
    tx.commit().await?;
    // Someone made an administrator here (a role change, an approval): that is told outside.
    if let AccessChange::SetUser { user_id, .. } = &change {
        let was = before
            .user(*user_id)
            .is_some_and(|u| u.role == ADMIN && !u.pending);
        let now = after
            .user(*user_id)
            .is_some_and(|u| u.role == ADMIN && !u.pending);
        if now && !was {
            let username = after
                .user(*user_id)
                .map(|u| u.username.clone())
                .unwrap_or_default();
            let event = crate::alerts::Event::NewAdmin {
                username,
                by: actor.username.clone(),
            };
            crate::alerts::raise(app, event).await;
        }
    }
    Ok(ChangeOutcome {
        applied: true,
        preview,
        team_id,
    })
}

fn role_json(row: &RoleRow) -> Value {
    json!({"name": row.name, "rights": row.rights, "scope": row.scope, "fields": row.fields})
}

fn team_json(team: &Team) -> Value {
    json!({"name": team.name, "parent_id": team.parent_id, "manager_id": team.manager_id})
}

/// Roles, built in and custom. Anyone who can read the administration module may list them.
pub async fn roles(app: &App, actor: &Actor) -> Result<Vec<RoleDef>, AppError> {
    authorize(actor, Action::Audit)?;
    Ok(app.access_config().await?.roles.clone())
}

pub async fn teams(app: &App, actor: &Actor) -> Result<Vec<Team>, AppError> {
    authorize(actor, Action::Audit)?;
    Ok(app.access_config().await?.teams.clone())
}

/// Modules switched off for the organisation. Everyone may know this (the pages hide them).
pub async fn modules_off(app: &App) -> Result<BTreeSet<Module>, AppError> {
    Ok(app.access_config().await?.modules_off.clone())
}

// ---------------------------------------------------------------------------------------------
// Access requests

/// Asks for access from a denial: a right on a module, or one record shared. Anyone logged in
/// may ask (a pending or deactivated account cannot: its answer is the approval itself).
pub async fn request(
    app: &App,
    actor: &Actor,
    op_id: &str,
    permission: (Module, Right),
    record: Option<(Entity, i64)>,
    reason: &str,
) -> Result<AccessRequestRow, AppError> {
    let user = actor
        .user()
        .ok_or_else(|| AppError::not_found(format!("user {}", actor.user_id)))?;
    if user.pending || !user.active {
        return Err(holdfast_domain::Denial::simple(
            "account_pending",
            "Your account is waiting for approval; an administrator approves it as a whole",
        )
        .into());
    }
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(AppError::invalid(
            "reason",
            "required",
            "Say in a sentence why you need this (at most 500 characters); the approver reads it",
        ));
    }
    let permission = match record {
        Some((entity, id)) => {
            record_owner(app, entity, id).await?;
            let right = if permission.1 == Right::Edit {
                Right::Edit
            } else {
                Right::View
            };
            (Module::of(entity), right)
        }
        None => permission,
    };
    let mut tx = app.db.begin_write(app.now()).await?;
    let detail = json!({"permission": permission_key(permission), "record": record.map(|(e, id)| format!("{} {id}", e.name())), "reason": reason});
    let id = tx
        .create_access_request(
            actor.user_id,
            permission,
            record,
            reason,
            AuditDraft::new(actor, op_id, "access.request", detail),
        )
        .await?;
    tx.commit().await?;
    app.db
        .access_request(id)
        .await?
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("request {id} vanished")))
}

/// Whether `actor` may decide `request`: administrators always; the record's owner for a share
/// of their own record.
async fn may_decide(app: &App, actor: &Actor, request: &AccessRequestRow) -> Result<(), AppError> {
    if authorize(actor, Action::Administer).is_ok() {
        return Ok(());
    }
    if let Some((entity, id)) = request.record
        && record_owner(app, entity, id).await? == actor.user_id
        && actor.user().is_some_and(|u| u.active && !u.pending)
    {
        return Ok(());
    }
    authorize(actor, Action::Administer).map_err(Into::into)
}

/// Requests the actor can decide: all pending ones for administrators, those for their own
/// records for everyone else.
pub async fn pending_requests(app: &App, actor: &Actor) -> Result<Vec<AccessRequestRow>, AppError> {
    let pending = app.db.access_requests_with_status("pending", 500).await?;
    if authorize(actor, Action::Administer).is_ok() {
        return Ok(pending);
    }
    if !actor.user().is_some_and(|u| u.active && !u.pending) {
        return Ok(Vec::new());
    }
    // The owners of the requested records, one query per kind (the home page asks this on
    // every visit).
    let mut owners = std::collections::HashMap::new();
    for entity in Entity::ALL {
        let ids: Vec<i64> = pending
            .iter()
            .filter_map(|r| r.record.filter(|(e, _)| *e == entity).map(|(_, id)| id))
            .collect();
        for (id, _, _, owner_id) in app.db.titles(entity, &ids).await? {
            owners.insert((entity, id), owner_id);
        }
    }
    Ok(pending
        .into_iter()
        .filter(|r| r.record.and_then(|key| owners.get(&key)) == Some(&actor.user_id))
        .collect())
}

/// How many of the actor's notifications are unread.
pub async fn unread_notifications(app: &App, actor: &Actor) -> Result<i64, AppError> {
    Ok(app.db.unread_notifications(actor.user_id).await?)
}

pub async fn my_requests(app: &App, actor: &Actor) -> Result<Vec<AccessRequestRow>, AppError> {
    Ok(app.db.access_requests_of(actor.user_id, 100).await?)
}

pub async fn request_by_id(
    app: &App,
    actor: &Actor,
    id: i64,
) -> Result<AccessRequestRow, AppError> {
    let request = app
        .db
        .access_request(id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("access request {id}")))?;
    if request.user_id != actor.user_id {
        may_decide(app, actor, &request).await?;
    }
    Ok(request)
}

/// How an access request is answered.
#[derive(Debug, Clone)]
pub enum Decision {
    Approve {
        expires_at: Option<Timestamp>,
    },
    Decline {
        note: String,
    },
    /// Ends an approved grant early.
    Revoke {
        note: String,
    },
}

pub async fn decide(
    app: &App,
    actor: &Actor,
    op_id: &str,
    id: i64,
    decision: Decision,
) -> Result<AccessRequestRow, AppError> {
    let request = app
        .db
        .access_request(id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("access request {id}")))?;
    if matches!(decision, Decision::Approve { .. }) && request.user_id == actor.user_id {
        // Nobody approves their own request: an owner could otherwise grant themselves more
        // than they have through a request about their own record.
        return Err(AppError::Forbidden(Denial {
            code: "own_request",
            message: "You cannot approve your own access request; an administrator (or, for a record, its owner) decides it".into(),
            grantable_by: actor.access.admin_names(),
            explanation: None,
        }));
    }
    may_decide(app, actor, &request).await?;
    let (from, status, note, expires_at) = match &decision {
        Decision::Approve { expires_at } => {
            if expires_at.is_some_and(|t| t <= app.now()) {
                return Err(AppError::invalid(
                    "expires_at",
                    "in_the_past",
                    "The end of the access must lie in the future; leave it empty for no end",
                ));
            }
            ("pending", "approved", None, *expires_at)
        }
        Decision::Decline { note } | Decision::Revoke { note } => {
            let note = note.trim();
            if note.is_empty() {
                return Err(AppError::invalid(
                    "note",
                    "required",
                    "Say why, in a sentence; the requester reads it",
                ));
            }
            let from = if matches!(decision, Decision::Revoke { .. }) {
                "approved"
            } else {
                "pending"
            };
            let status = if from == "approved" {
                "revoked"
            } else {
                "declined"
            };
            (from, status, Some(note.to_owned()), None)
        }
    };
    let mut tx = app.db.begin_write(app.now()).await?;
    let detail = json!({"request_id": id, "user_id": request.user_id, "permission": request.permission,
        "record": request.record.map(|(e, r)| format!("{} {r}", e.name())), "status": status,
        "expires_at": expires_at.map(Timestamp::to_rfc3339), "note": note});
    let done = tx
        .decide_access_request(
            id,
            from,
            status,
            actor.user_id,
            note.as_deref(),
            expires_at,
            AuditDraft::new(actor, op_id, "access.decide", detail.clone()),
        )
        .await?;
    if !done {
        return Err(AppError::conflict(
            "already_decided",
            format!("Access request {id} is {} already", request.status),
        ));
    }
    let mut notice = detail;
    notice["by"] = actor.username.clone().into();
    tx.notify(request.user_id, &format!("request_{status}"), notice)
        .await?;
    tx.commit().await?;
    request_by_id(app, &Actor::system(), id).await
}

pub async fn notifications(app: &App, actor: &Actor) -> Result<Vec<NotificationRow>, AppError> {
    Ok(app.db.notifications(actor.user_id, 50).await?)
}

pub async fn mark_notifications_read(app: &App, actor: &Actor) -> Result<(), AppError> {
    Ok(app
        .db
        .mark_notifications_read(actor.user_id, app.now())
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdfast_domain::access::{MANAGER, REP};

    fn user(id: i64, role: &str, team: Option<i64>) -> UserAccess {
        UserAccess {
            id,
            username: format!("u{id}"),
            display_name: format!("U{id}"),
            role: role.into(),
            team_id: team,
            active: true,
            pending: false,
            must_change_password: false,
            must_enrol_second_factor: false,
        }
    }

    #[test]
    fn the_preview_counts_users_and_records_that_change() {
        let config = AccessConfig {
            roles: RoleDef::built_in(),
            users: [
                user(1, ADMIN, None),
                user(2, MANAGER, Some(1)),
                user(3, REP, Some(1)),
                user(4, REP, Some(1)),
            ]
            .into_iter()
            .map(|u| (u.id, u))
            .collect(),
            teams: vec![Team {
                id: 1,
                name: "East".into(),
                parent_id: None,
                manager_id: Some(2),
            }],
            ..Default::default()
        };
        // Contacts: 10 owned by 3, 5 by 4; companies: 2 by 3.
        let per_owner = BTreeMap::from([
            (Entity::Contact, BTreeMap::from([(3, 10), (4, 5)])),
            (Entity::Company, BTreeMap::from([(3, 2)])),
            (Entity::Deal, BTreeMap::new()),
            (Entity::Activity, BTreeMap::new()),
        ]);
        // User 3 leaves the team: the manager stops reaching their 12 records.
        let after = apply_to(
            &config,
            &AccessChange::SetUser {
                user_id: 3,
                role: None,
                team_id: Some(None),
                pending: None,
            },
        )
        .unwrap();
        let preview = compare(&config, &after, &per_owner, Timestamp(0));
        assert_eq!(preview.users_affected, 1);
        assert_eq!(preview.users[0].user_id, 2);
        assert_eq!(preview.users[0].records_lost, 12);
        assert_eq!(preview.records_hidden_from_someone, 12);
        // Switching contacts off: both reps and the manager lose contacts.view and what they saw.
        let after = apply_to(
            &config,
            &AccessChange::SwitchModule(Module::Contacts, false),
        )
        .unwrap();
        let preview = compare(&config, &after, &per_owner, Timestamp(0));
        assert_eq!(preview.users_affected, 3);
        let manager = preview.users.iter().find(|u| u.user_id == 2).unwrap();
        assert!(manager.loses.contains(&"contacts.view".to_owned()));
        assert_eq!(manager.records_lost, 15);
        assert_eq!(preview.records_hidden_from_someone, 15);
        // Making user 4 an auditor: gains everyone's records (12 more), loses the right to edit.
        let after = apply_to(
            &config,
            &AccessChange::SetUser {
                user_id: 4,
                role: Some("auditor".into()),
                team_id: None,
                pending: None,
            },
        )
        .unwrap();
        let preview = compare(&config, &after, &per_owner, Timestamp(0));
        assert_eq!(preview.users[0].records_gained, 12);
        assert!(preview.users[0].loses.contains(&"contacts.edit".to_owned()));
        // The last administrator cannot be demoted.
        let refused = apply_to(
            &config,
            &AccessChange::SetUser {
                user_id: 1,
                role: Some(REP.into()),
                team_id: None,
                pending: None,
            },
        );
        assert!(matches!(
            refused,
            Err(AppError::Conflict {
                code: "last_admin",
                ..
            })
        ));
    }

    #[test]
    fn teams_cannot_loop() {
        let config = AccessConfig {
            roles: RoleDef::built_in(),
            users: [user(1, ADMIN, None)]
                .into_iter()
                .map(|u| (u.id, u))
                .collect(),
            teams: vec![
                Team {
                    id: 1,
                    name: "A".into(),
                    parent_id: None,
                    manager_id: None,
                },
                Team {
                    id: 2,
                    name: "B".into(),
                    parent_id: Some(1),
                    manager_id: None,
                },
            ],
            ..Default::default()
        };
        let looped = Team {
            id: 1,
            name: "A".into(),
            parent_id: Some(2),
            manager_id: None,
        };
        assert!(matches!(
            apply_to(&config, &AccessChange::PutTeam(looped)),
            Err(AppError::Invalid(_))
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// Access reviews and the permission report

/// Where one user's periodic access review stands.
#[derive(Debug, Clone, Serialize)]
pub struct ReviewStatus {
    pub user_id: i64,
    pub display_name: String,
    pub role: String,
    pub last_reviewed_at: Option<Timestamp>,
    pub last_reviewed_by: Option<String>,
    pub last_outcome: Option<String>,
    /// When the next review is due: the last one (or the account's creation) plus the period.
    pub due_at: Timestamp,
    pub overdue: bool,
}

/// Every active, approved user's review state, overdue first.
pub async fn reviews(app: &App, actor: &Actor) -> Result<Vec<ReviewStatus>, AppError> {
    authorize(actor, Action::Audit)?;
    review_states(app).await
}

async fn review_states(app: &App) -> Result<Vec<ReviewStatus>, AppError> {
    let config = app.access_config().await?;
    let latest = app.db.latest_reviews().await?;
    let users = app.db.users().await?;
    let now = app.now();
    let mut out: Vec<ReviewStatus> = users
        .iter()
        .filter(|u| u.active && !u.pending)
        .map(|u| {
            let last = latest.get(&u.id);
            let since = last.map_or(u.created_at, |r| r.at);
            let due_at = since.plus_days(app.config.access_review_days);
            ReviewStatus {
                user_id: u.id,
                display_name: u.display_name.clone(),
                role: u.role.clone(),
                last_reviewed_at: last.map(|r| r.at),
                last_reviewed_by: last
                    .and_then(|r| config.user(r.reviewed_by))
                    .map(|r| r.display_name.clone()),
                last_outcome: last.map(|r| r.outcome.clone()),
                due_at,
                overdue: due_at <= now,
            }
        })
        .collect();
    out.sort_by_key(|r| (!r.overdue, r.due_at, r.user_id));
    Ok(out)
}

/// How many access reviews are overdue, for administrators' home page; `None` for anyone else.
pub async fn overdue_reviews(app: &App, actor: &Actor) -> Result<Option<usize>, AppError> {
    if authorize(actor, Action::Administer).is_err() {
        return Ok(None);
    }
    Ok(Some(
        review_states(app)
            .await?
            .iter()
            .filter(|r| r.overdue)
            .count(),
    ))
}

/// Records an administrator's review of one user's access: `confirmed` as it is, or `trimmed`
/// (after taking rights away, which is a change of its own).
pub async fn review(
    app: &App,
    actor: &Actor,
    op_id: &str,
    user_id: i64,
    outcome: &str,
    note: Option<&str>,
) -> Result<ReviewStatus, AppError> {
    authorize(actor, Action::Administer)?;
    if !matches!(outcome, "confirmed" | "trimmed") {
        return Err(AppError::invalid(
            "outcome",
            "invalid_choice",
            "Say confirmed (the access stays as it is) or trimmed (you took rights away)",
        ));
    }
    let config = app.access_config().await?;
    let user = config
        .user(user_id)
        .ok_or_else(|| AppError::not_found(format!("user {user_id}")))?;
    let summary = summary_of(&config, user_id, app.now());
    let rights: Vec<String> = summary
        .map(|s| {
            s.rights
                .into_iter()
                .filter(|r| r.source != "none" && r.source != "module_off")
                .map(|r| r.permission)
                .collect()
        })
        .unwrap_or_default();
    let note = note.map(str::trim).filter(|n| !n.is_empty());
    let detail = json!({"user_id": user_id, "outcome": outcome, "note": note, "role": user.role, "rights": rights});
    let mut tx = app.db.begin_write(app.now()).await?;
    tx.record_review(
        user_id,
        actor.user_id,
        outcome,
        note,
        AuditDraft::new(actor, op_id, "access.review", detail),
    )
    .await?;
    tx.commit().await?;
    review_states(app)
        .await?
        .into_iter()
        .find(|r| r.user_id == user_id)
        .ok_or_else(|| {
            AppError::conflict("not_reviewable", "Only active, approved users are reviewed")
        })
}

/// Who holds one powerful right, and through what.
#[derive(Debug, Clone, Serialize)]
pub struct Holders {
    pub permission: String,
    pub users: Vec<(String, &'static str)>,
}

/// A right a user holds but has not used lately.
#[derive(Debug, Clone, Serialize)]
pub struct UnusedRight {
    pub user_id: i64,
    pub display_name: String,
    pub permission: String,
}

#[derive(Debug, Clone)]
pub struct Report {
    /// Who can delete, restore, export or administer, right by right.
    pub powerful: Vec<Holders>,
    /// Two-factor authentication does not exist in this version: there is nothing to report
    /// yet, and the report says so rather than listing every administrator as compliant.
    pub two_factor_available: bool,
    /// Active accounts without a login in `dormant_after_days` (or never).
    pub dormant: Vec<(i64, String, Option<Timestamp>)>,
    pub dormant_after_days: i64,
    /// Rights that change data or settings, held but not used in `unused_after_days`. Viewing
    /// is not recorded (reads are not audited), so view rights are not judged.
    pub unused: Vec<UnusedRight>,
    pub unused_after_days: i64,
    /// Every permission change, newest first: role, team, module, request and review changes.
    pub changes: Vec<holdfast_store::AuditRow>,
}

/// The audit actions that use a right.
fn used_permission(action: &str) -> Option<(Module, Right)> {
    let (kind, verb) = action.split_once('.')?;
    if let Some(entity) = Entity::from_name(kind) {
        let right = match verb {
            "create" => Right::Create,
            "update" | "restore_version" => Right::Edit,
            "delete" => Right::Delete,
            "restore" | "restore_backup" | "restore_to_time" => Right::Restore,
            "export" => Right::Export,
            "purge" => return Some((Module::RecycleBin, Right::Delete)),
            _ => return None,
        };
        return Some((Module::of(entity), right));
    }
    match kind {
        "user" | "access" | "custom_field" | "pipeline" | "backup" => {
            Some((Module::Administration, Right::Edit))
        }
        "export" => Some((Module::Exports, Right::Export)),
        _ => None,
    }
}

pub async fn report(app: &App, actor: &Actor) -> Result<Report, AppError> {
    authorize(actor, Action::Audit)?;
    let config = app.access_config().await?;
    let now = app.now();
    let users = app.db.users().await?;
    let active: Vec<&holdfast_store::UserRow> =
        users.iter().filter(|u| u.active && !u.pending).collect();
    let powerful_rights: Vec<(Module, Right)> = Module::ALL
        .iter()
        .flat_map(|m| m.rights().iter().map(move |r| (*m, *r)))
        .filter(|(m, r)| {
            matches!(r, Right::Delete | Right::Restore | Right::Export)
                || (*m, *r) == (Module::Administration, Right::Edit)
        })
        .collect();
    let source_of = |user_id: i64, permission: (Module, Right)| -> Option<&'static str> {
        let chain = explain(&config, user_id, &Target::permission(permission), now);
        if !chain.allowed() {
            return None;
        }
        Some(match chain.steps.iter().find(|s| s.check == "right") {
            Some(step) if step.code == "by_grant" => "grant",
            _ => "role",
        })
    };
    let powerful = powerful_rights
        .iter()
        .map(|p| Holders {
            permission: permission_key(*p),
            users: active
                .iter()
                .filter_map(|u| source_of(u.id, *p).map(|s| (u.display_name.clone(), s)))
                .collect(),
        })
        .collect();
    let dormant_since = now.plus_days(-app.config.dormant_after_days);
    let dormant = active
        .iter()
        .filter(|u| u.last_login_at.is_none_or(|t| t < dormant_since))
        .map(|u| (u.id, u.display_name.clone(), u.last_login_at))
        .collect();
    let unused_since = now.plus_days(-app.config.unused_after_days);
    let mut last_use: BTreeMap<(i64, (Module, Right)), Timestamp> = BTreeMap::new();
    for (user_id, action, at) in app.db.actions_since(unused_since).await? {
        if let Some(permission) = used_permission(&action) {
            let entry = last_use.entry((user_id, permission)).or_insert(at);
            *entry = (*entry).max(at);
        }
    }
    let mut unused = Vec::new();
    for user in &active {
        for module in Module::ALL {
            for right in module.rights().iter().filter(|r| **r != Right::View) {
                let permission = (module, *right);
                // Only rights something records a use of.
                if source_of(user.id, permission).is_none()
                    || !matches!(
                        module,
                        Module::Companies
                            | Module::Contacts
                            | Module::Deals
                            | Module::Activities
                            | Module::Administration
                    ) && permission != (Module::RecycleBin, Right::Delete)
                {
                    continue;
                }
                if !last_use.contains_key(&(user.id, permission)) {
                    unused.push(UnusedRight {
                        user_id: user.id,
                        display_name: user.display_name.clone(),
                        permission: permission_key(permission),
                    });
                }
            }
        }
    }
    let changes = app
        .db
        .audit_with_prefixes(&["access.", "user."], 200)
        .await?;
    Ok(Report {
        powerful,
        two_factor_available: false,
        dormant,
        dormant_after_days: app.config.dormant_after_days,
        unused,
        unused_after_days: app.config.unused_after_days,
        changes,
    })
}
