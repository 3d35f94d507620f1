//! Who may do what, and why not. Deny by default: an action is allowed only when every check
//! of [`Access::check`] passes, and a refusal carries the whole chain of checks so the user (and
//! an administrator explaining it for them) can see which one failed and who can change it.
//!
//! The checks, in order:
//! 1. **account** — the user exists, is active, and is not waiting for approval;
//! 2. **module** — the module is not switched off for the organisation (administrators still
//!    see switched-off modules, so no record is ever hidden from every administrator);
//! 3. **right** — the user's role, or an approved and unexpired access grant, gives the right;
//! 4. **scope** — for one record: its owner is within the role's record scope (own, team, team
//!    and sub-teams, all), or the record was shared with the user by a grant;
//! 5. **field** — for one field: the role does not hide it (or, for a change, make it read-only).
//!
//! Everything here is plain data evaluated by pure functions: the store loads an
//! [`AccessConfig`], the app wraps it with the acting user into an [`Actor`].

use crate::entity::Entity;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Parts of Holdfast that rights are given for, and that can be switched off as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Module {
    Companies,
    Contacts,
    Deals,
    Activities,
    Reports,
    RecycleBin,
    Exports,
    Administration,
}

impl Module {
    pub const ALL: [Module; 8] = [
        Module::Companies,
        Module::Contacts,
        Module::Deals,
        Module::Activities,
        Module::Reports,
        Module::RecycleBin,
        Module::Exports,
        Module::Administration,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Module::Companies => "companies",
            Module::Contacts => "contacts",
            Module::Deals => "deals",
            Module::Activities => "activities",
            Module::Reports => "reports",
            Module::RecycleBin => "recycle_bin",
            Module::Exports => "exports",
            Module::Administration => "administration",
        }
    }

    pub fn parse(key: &str) -> Option<Module> {
        Module::ALL.into_iter().find(|m| m.key() == key)
    }

    pub fn of(entity: Entity) -> Module {
        match entity {
            Entity::Company => Module::Companies,
            Entity::Contact => Module::Contacts,
            Entity::Deal => Module::Deals,
            Entity::Activity => Module::Activities,
        }
    }

    /// Administration cannot be switched off: it is where it would be switched back on.
    pub fn can_switch_off(self) -> bool {
        self != Module::Administration
    }

    /// The rights that mean something for this module.
    pub fn rights(self) -> &'static [Right] {
        match self {
            Module::Companies | Module::Contacts | Module::Deals | Module::Activities => &[
                Right::View,
                Right::Create,
                Right::Edit,
                Right::Delete,
                Right::Restore,
                Right::Export,
            ],
            Module::Reports => &[Right::View, Right::Export],
            Module::RecycleBin => &[Right::View, Right::Restore, Right::Delete],
            Module::Exports => &[Right::View, Right::Export],
            Module::Administration => &[Right::View, Right::Edit],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Right {
    View,
    Create,
    Edit,
    Delete,
    Restore,
    Export,
}

impl Right {
    pub const ALL: [Right; 6] = [
        Right::View,
        Right::Create,
        Right::Edit,
        Right::Delete,
        Right::Restore,
        Right::Export,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Right::View => "view",
            Right::Create => "create",
            Right::Edit => "edit",
            Right::Delete => "delete",
            Right::Restore => "restore",
            Right::Export => "export",
        }
    }

    pub fn parse(key: &str) -> Option<Right> {
        Right::ALL.into_iter().find(|r| r.key() == key)
    }
}

/// A module and a right on it, written `module.right` (`deals.edit`).
pub type Permission = (Module, Right);

pub fn permission_key((module, right): Permission) -> String {
    format!("{}.{}", module.key(), right.key())
}

pub fn parse_permission(key: &str) -> Option<Permission> {
    let (module, right) = key.split_once('.')?;
    let module = Module::parse(module)?;
    let right = Right::parse(right)?;
    module.rights().contains(&right).then_some((module, right))
}

/// Which records of a module a role reaches: by who owns them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Records the user owns.
    Own,
    /// Records owned by anyone in the user's team, or in a team the user manages.
    Team,
    /// As `Team`, and every team below those.
    Subteams,
    All,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Own, Scope::Team, Scope::Subteams, Scope::All];

    pub fn key(self) -> &'static str {
        match self {
            Scope::Own => "own",
            Scope::Team => "team",
            Scope::Subteams => "subteams",
            Scope::All => "all",
        }
    }

    pub fn parse(key: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.key() == key)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldRule {
    /// Not shown, not searchable by, not changeable.
    Hidden,
    /// Shown, but only someone without this rule can change it.
    ReadOnly,
    /// Hidden on records owned outside the user's own team (their team, and teams they
    /// manage): a rep does not see another team's phone numbers.
    HiddenOutsideTeam,
    /// Read-only once the deal is won: nobody with this rule edits a won deal's amount.
    ReadOnlyWhenWon,
}

/// What a [`FieldRule`] does to one field of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldEffect {
    Hidden,
    ReadOnly,
}

impl FieldRule {
    pub const ALL: [FieldRule; 4] = [
        FieldRule::Hidden,
        FieldRule::ReadOnly,
        FieldRule::HiddenOutsideTeam,
        FieldRule::ReadOnlyWhenWon,
    ];

    pub fn key(self) -> &'static str {
        match self {
            FieldRule::Hidden => "hidden",
            FieldRule::ReadOnly => "read_only",
            FieldRule::HiddenOutsideTeam => "hidden_outside_team",
            FieldRule::ReadOnlyWhenWon => "read_only_when_won",
        }
    }

    pub fn parse(key: &str) -> Option<FieldRule> {
        FieldRule::ALL.into_iter().find(|r| r.key() == key)
    }

    /// Whether the rule hides the field outright, on every record.
    pub fn hides_always(self) -> bool {
        self == FieldRule::Hidden
    }
}

/// What the field rules need to know about a record: who owns it and, for deals, its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldContext<'a> {
    pub owner_id: i64,
    pub status: Option<&'a str>,
}

/// A role: a set of rights, a record scope and field rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleDef {
    pub key: String,
    pub name: String,
    /// Built-in roles are defined by Holdfast and cannot be changed or deleted.
    pub built_in: bool,
    pub rights: BTreeSet<Permission>,
    pub scope: Scope,
    pub fields: BTreeMap<(Entity, String), FieldRule>,
}

pub const ADMIN: &str = "admin";
pub const MANAGER: &str = "manager";
pub const REP: &str = "rep";
pub const AUDITOR: &str = "auditor";

const RECORD_MODULES: [Module; 4] = [
    Module::Companies,
    Module::Contacts,
    Module::Deals,
    Module::Activities,
];

impl RoleDef {
    /// The four roles every installation has.
    pub fn built_in() -> Vec<RoleDef> {
        let all: BTreeSet<Permission> = Module::ALL
            .iter()
            .flat_map(|m| m.rights().iter().map(move |r| (*m, *r)))
            .collect();
        let records = |rights: &[Right]| -> BTreeSet<Permission> {
            RECORD_MODULES
                .iter()
                .flat_map(|m| rights.iter().map(move |r| (*m, *r)))
                .collect()
        };
        let work = [
            Right::View,
            Right::Create,
            Right::Edit,
            Right::Delete,
            Right::Restore,
        ];
        let mut manager = records(&[
            Right::View,
            Right::Create,
            Right::Edit,
            Right::Delete,
            Right::Restore,
            Right::Export,
        ]);
        manager.extend([
            (Module::Reports, Right::View),
            (Module::Reports, Right::Export),
            (Module::RecycleBin, Right::View),
            (Module::RecycleBin, Right::Restore),
            (Module::Exports, Right::View),
            (Module::Exports, Right::Export),
        ]);
        let mut rep = records(&work);
        rep.extend([
            (Module::Reports, Right::View),
            (Module::RecycleBin, Right::View),
            (Module::RecycleBin, Right::Restore),
        ]);
        let mut auditor = records(&[Right::View]);
        auditor.extend([
            (Module::Reports, Right::View),
            (Module::RecycleBin, Right::View),
            (Module::Exports, Right::View),
            (Module::Administration, Right::View),
        ]);
        let role = |key: &str, name: &str, rights, scope| RoleDef {
            key: key.into(),
            name: name.into(),
            built_in: true,
            rights,
            scope,
            fields: BTreeMap::new(),
        };
        vec![
            role(ADMIN, "Administrator", all, Scope::All),
            role(MANAGER, "Sales manager", manager, Scope::Subteams),
            role(REP, "Sales rep", rep, Scope::Own),
            role(AUDITOR, "Read-only auditor", auditor, Scope::All),
        ]
    }

    pub fn is_admin(&self) -> bool {
        self.key == ADMIN
    }

    pub fn field_rule(&self, entity: Entity, field: &str) -> Option<FieldRule> {
        self.fields.get(&(entity, field.to_owned())).copied()
    }
}

/// What the permission checks need to know about a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAccess {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub role: String,
    pub team_id: Option<i64>,
    pub active: bool,
    /// Created, but no administrator has approved their access yet.
    pub pending: bool,
    /// An administrator set the password; nothing is allowed until the user changes it.
    pub must_change_password: bool,
    /// The user's role must use a second factor and the user has none yet: nothing is
    /// allowed until they enrol one.
    pub must_enrol_second_factor: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Team {
    pub id: i64,
    pub name: String,
    pub parent_id: Option<i64>,
    pub manager_id: Option<i64>,
}

/// What an approved access request gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantKind {
    /// A right on a module, beyond the user's role.
    Permission(Permission),
    /// One record shared with the user: they may view it (and with `Right::Edit`, change it).
    Record {
        entity: Entity,
        id: i64,
        right: Right,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The access request this grant came from.
    pub request_id: i64,
    pub user_id: i64,
    pub kind: GrantKind,
    pub expires_at: Option<Timestamp>,
    pub approved_by: String,
}

/// Everything the checks read: roles, users, teams, module switches and grants. Loaded whole
/// (an installation has tens to hundreds of users) and shared by every request until it changes.
#[derive(Debug, Clone, Default)]
pub struct AccessConfig {
    pub roles: Vec<RoleDef>,
    pub users: BTreeMap<i64, UserAccess>,
    pub teams: Vec<Team>,
    pub modules_off: BTreeSet<Module>,
    pub grants: Vec<Grant>,
    /// The whole CRM is locked down (an incident): read-only for everyone but administrators.
    pub lockdown: Option<Lockdown>,
}

/// Who locked the CRM down, when and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lockdown {
    pub since: Timestamp,
    pub by: String,
    pub reason: String,
}

impl AccessConfig {
    /// The settings as an API token limited to `modules` sees them: the user's role keeps only
    /// its rights on those modules (as a role of its own, so an administrator's token is not
    /// an administrator's), and only grants on those modules count.
    pub fn limited_to(&self, user_id: i64, modules: &BTreeSet<Module>) -> AccessConfig {
        let mut config = self.clone();
        let Some(user) = config.users.get(&user_id).cloned() else {
            return config;
        };
        if let Some(role) = config.role(&user.role).cloned() {
            let names: Vec<&str> = modules.iter().map(|m| m.key()).collect();
            let limited = RoleDef {
                key: format!("{}+token", role.key),
                name: format!("{} ({})", role.name, names.join(", ")),
                built_in: false,
                rights: role
                    .rights
                    .iter()
                    .filter(|(module, _)| modules.contains(module))
                    .copied()
                    .collect(),
                scope: role.scope,
                fields: role.fields.clone(),
            };
            if let Some(access) = config.users.get_mut(&user_id) {
                access.role = limited.key.clone();
            }
            config.roles.push(limited);
        }
        config.grants.retain(|grant| {
            grant.user_id != user_id
                || match grant.kind {
                    GrantKind::Permission((module, _)) => modules.contains(&module),
                    GrantKind::Record { entity, .. } => modules.contains(&Module::of(entity)),
                }
        });
        config
    }

    pub fn role(&self, key: &str) -> Option<&RoleDef> {
        self.roles.iter().find(|r| r.key == key)
    }

    pub fn user(&self, id: i64) -> Option<&UserAccess> {
        self.users.get(&id)
    }

    /// Display names of the active, approved administrators: who can change any setting.
    /// Ids of active users whose role administers: who is told of security events.
    pub fn admin_ids(&self) -> Vec<i64> {
        self.users
            .values()
            .filter(|u| u.active && self.role(&u.role).is_some_and(RoleDef::is_admin))
            .map(|u| u.id)
            .collect()
    }

    pub fn admin_names(&self) -> Vec<String> {
        self.users
            .values()
            .filter(|u| u.active && !u.pending && u.role == ADMIN)
            .map(|u| u.display_name.clone())
            .collect()
    }

    pub fn team(&self, id: i64) -> Option<&Team> {
        self.teams.iter().find(|t| t.id == id)
    }

    /// Teams whose members' records `user` reaches under `scope` (`None`: everyone's).
    pub fn scope_teams(&self, user: &UserAccess, scope: Scope) -> Option<BTreeSet<i64>> {
        let mut teams = BTreeSet::new();
        match scope {
            Scope::All => return None,
            Scope::Own => return Some(teams),
            Scope::Team | Scope::Subteams => {
                teams.extend(user.team_id);
                teams.extend(
                    self.teams
                        .iter()
                        .filter(|t| t.manager_id == Some(user.id))
                        .map(|t| t.id),
                );
            }
        }
        if scope == Scope::Subteams {
            // Walk down; a parent loop (refused when saved) cannot make this run forever.
            let mut frontier: Vec<i64> = teams.iter().copied().collect();
            while let Some(parent) = frontier.pop() {
                for child in self.teams.iter().filter(|t| t.parent_id == Some(parent)) {
                    if teams.insert(child.id) {
                        frontier.push(child.id);
                    }
                }
            }
        }
        Some(teams)
    }

    /// Owners whose records `user` reaches under `scope`; `None` means every owner. Deactivated
    /// users stay in their team, so their records stay visible to their team and managers.
    pub fn scope_owners(&self, user: &UserAccess, scope: Scope) -> Option<BTreeSet<i64>> {
        let teams = self.scope_teams(user, scope)?;
        let mut owners = BTreeSet::from([user.id]);
        owners.extend(
            self.users
                .values()
                .filter(|u| u.team_id.is_some_and(|t| teams.contains(&t)))
                .map(|u| u.id),
        );
        Some(owners)
    }

    fn live_grants(&self, user_id: i64, now: Timestamp) -> impl Iterator<Item = &Grant> {
        self.grants
            .iter()
            .filter(move |g| g.user_id == user_id && g.expires_at.is_none_or(|e| e > now))
    }

    /// Records of `entity` shared with `user_id` by a grant live at `now`.
    pub fn shared(&self, user_id: i64, entity: Entity, now: Timestamp) -> BTreeSet<i64> {
        self.live_grants(user_id, now)
            .filter_map(|g| match g.kind {
                GrantKind::Record { entity: e, id, .. } if e == entity => Some(id),
                _ => None,
            })
            .collect()
    }
}

/// How the acting user reached us; recorded in the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    Session {
        session_id: i64,
    },
    ApiToken {
        token_id: i64,
    },
    /// Holdfast itself: scheduled jobs such as the recycle-bin purge, and the admin CLI.
    System,
}

/// The user on whose behalf a use case runs, with the permission settings in force. Every use
/// case takes one.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user_id: i64,
    pub username: String,
    pub kind: ActorKind,
    /// The settings as of this request, and the request's time (grants expire).
    pub access: Arc<AccessConfig>,
    pub now: Timestamp,
    /// The client's network address, when the actor is a request's; kept in audit entries.
    pub client: Option<String>,
}

impl PartialEq for Actor {
    fn eq(&self, other: &Self) -> bool {
        self.user_id == other.user_id && self.kind == other.kind
    }
}

impl Actor {
    /// The actor for Holdfast's own jobs and the server-side CLI. User id 0 is never a real
    /// user; it passes every check.
    pub fn system() -> Actor {
        Actor {
            user_id: 0,
            username: "holdfast".into(),
            kind: ActorKind::System,
            access: Arc::default(),
            now: Timestamp(0),
            client: None,
        }
    }

    pub fn is_system(&self) -> bool {
        self.user_id == 0 && self.kind == ActorKind::System
    }

    pub fn user(&self) -> Option<&UserAccess> {
        self.access.user(self.user_id)
    }

    pub fn role(&self) -> Option<&RoleDef> {
        self.access.role(&self.user()?.role)
    }

    pub fn is_admin(&self) -> bool {
        self.is_system() || self.role().is_some_and(RoleDef::is_admin)
    }

    /// Whether the module is switched on (or the actor is an administrator, who sees it anyway).
    pub fn module_on(&self, module: Module) -> bool {
        self.is_admin() || !self.access.modules_off.contains(&module)
    }

    /// Whether the actor has `permission` (account, module and right checks).
    pub fn can(&self, permission: Permission) -> bool {
        self.check(&Target::permission(permission)).is_ok()
    }

    /// `Some(owners)` when the actor's records of `module` are limited to those owners;
    /// `None` when the actor reaches every record.
    pub fn scope_owners(&self) -> Option<BTreeSet<i64>> {
        if self.is_system() {
            return None;
        }
        let Some(user) = self.user() else {
            return Some(BTreeSet::new());
        };
        let scope = self.role().map_or(Scope::Own, |r| r.scope);
        self.access.scope_owners(user, scope)
    }

    /// Records of `entity` shared with the actor by a live grant.
    pub fn shared(&self, entity: Entity) -> BTreeSet<i64> {
        self.access.shared(self.user_id, entity, self.now)
    }

    /// The rule the actor's role has for a field, if any.
    pub fn field_rule(&self, entity: Entity, field: &str) -> Option<FieldRule> {
        if self.is_system() {
            return None;
        }
        self.role().and_then(|r| r.field_rule(entity, field))
    }

    /// What the actor's field rules do to `field` of a record in `context` (`None` when the
    /// record is not known: conditional rules then apply in their stricter reading).
    pub fn field_effect(
        &self,
        entity: Entity,
        field: &str,
        context: Option<FieldContext<'_>>,
    ) -> Option<FieldEffect> {
        let rule = self.field_rule(entity, field)?;
        let user = self.user()?;
        effect_of(&self.access, user, rule, context)
    }

    /// Runs every check for `target` and returns the chain; see the module documentation.
    pub fn explain(&self, target: &Target) -> Explanation {
        if self.is_system() {
            return Explanation {
                steps: vec![Step::ok("account", "system", Vec::new(), "Holdfast itself")],
            };
        }
        explain(&self.access, self.user_id, target, self.now)
    }

    pub fn check(&self, target: &Target) -> Result<(), Denial> {
        self.explain(target).into_result()
    }
}

/// What a check is about: a right on a module, optionally one record, optionally one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub permission: Permission,
    pub record: Option<RecordRef>,
    pub field: Option<String>,
    /// For a field of a deal: its status, which `read_only_when_won` depends on (`None`: not
    /// known, and the rule is explained in its stricter reading).
    pub status: Option<String>,
}

impl Target {
    pub fn permission(permission: Permission) -> Target {
        Target {
            permission,
            record: None,
            field: None,
            status: None,
        }
    }

    pub fn record(right: Right, record: RecordRef) -> Target {
        Target {
            permission: (Module::of(record.entity), right),
            record: Some(record),
            field: None,
            status: None,
        }
    }
}

/// A record as far as the scope check is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef {
    pub entity: Entity,
    pub id: i64,
    pub owner_id: i64,
}

/// One check of the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// `account`, `module`, `right`, `scope` or `field`.
    pub check: &'static str,
    pub ok: bool,
    /// Stable reason code: `active`, `account_pending`, `module_off`, `no_right`, `by_role`,
    /// `by_grant`, `out_of_scope`, `field_hidden`, … (the pages translate `why.<code>`).
    pub code: &'static str,
    /// Values the message names, for translations: `role`, `module`, `owner`, `scope`, ….
    #[serde(serialize_with = "params_as_object")]
    pub params: Vec<(&'static str, String)>,
    pub message: String,
    /// Who can change the outcome of this check (display names).
    pub can_change: Vec<String>,
}

/// `[("owner", "chen")]` as `{"owner": "chen"}` in JSON.
fn params_as_object<S: serde::Serializer>(
    params: &[(&'static str, String)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap as _;
    let mut map = serializer.serialize_map(Some(params.len()))?;
    for (name, value) in params {
        map.serialize_entry(name, value)?;
    }
    map.end()
}

impl Step {
    fn ok(
        check: &'static str,
        code: &'static str,
        params: Vec<(&'static str, String)>,
        message: impl Into<String>,
    ) -> Step {
        Step {
            check,
            ok: true,
            code,
            params,
            message: message.into(),
            can_change: Vec::new(),
        }
    }

    fn denied(
        check: &'static str,
        code: &'static str,
        params: Vec<(&'static str, String)>,
        message: impl Into<String>,
        can_change: Vec<String>,
    ) -> Step {
        Step {
            check,
            ok: false,
            code,
            params,
            message: message.into(),
            can_change,
        }
    }
}

/// The chain of checks for one question; allowed when every step passed. Checks after the
/// first failing one are not run (they would answer a question nobody can reach).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub steps: Vec<Step>,
}

impl Explanation {
    pub fn allowed(&self) -> bool {
        self.steps.iter().all(|s| s.ok)
    }

    pub fn failed(&self) -> Option<&Step> {
        self.steps.iter().find(|s| !s.ok)
    }

    pub fn into_result(self) -> Result<(), Denial> {
        match self.failed() {
            None => Ok(()),
            Some(step) => Err(Denial {
                code: step.code,
                message: step.message.clone(),
                grantable_by: step.can_change.clone(),
                explanation: Some(self),
            }),
        }
    }
}

/// Why an action was refused, who can change that, and the whole chain of checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// Stable code of the failing check, e.g. `no_right`, `out_of_scope`.
    pub code: &'static str,
    pub message: String,
    /// Display names of the people who can change it.
    pub grantable_by: Vec<String>,
    pub explanation: Option<Explanation>,
}

impl Denial {
    /// A refusal that is not about roles (a closed setup page, say).
    pub fn simple(code: &'static str, message: impl Into<String>) -> Denial {
        Denial {
            code,
            message: message.into(),
            grantable_by: Vec::new(),
            explanation: None,
        }
    }
}

/// What `rule` does for `user` on a record in `context`.
pub fn effect_of(
    config: &AccessConfig,
    user: &UserAccess,
    rule: FieldRule,
    context: Option<FieldContext<'_>>,
) -> Option<FieldEffect> {
    match rule {
        FieldRule::Hidden => Some(FieldEffect::Hidden),
        FieldRule::ReadOnly => Some(FieldEffect::ReadOnly),
        FieldRule::HiddenOutsideTeam => {
            let team = config.scope_owners(user, Scope::Team).unwrap_or_default();
            match context {
                Some(c) if team.contains(&c.owner_id) => None,
                _ => Some(FieldEffect::Hidden),
            }
        }
        FieldRule::ReadOnlyWhenWon => match context {
            Some(c) if c.status != Some("won") => None,
            _ => Some(FieldEffect::ReadOnly),
        },
    }
}

fn scope_words(scope: Scope) -> &'static str {
    match scope {
        Scope::Own => "records you own",
        Scope::Team => "records of your team",
        Scope::Subteams => "records of your team and the teams below it",
        Scope::All => "all records",
    }
}

/// The chain of checks for `user_id` and `target`; see the module documentation.
pub fn explain(
    config: &AccessConfig,
    user_id: i64,
    target: &Target,
    now: Timestamp,
) -> Explanation {
    let admins = config.admin_names();
    let mut steps = Vec::new();
    let (module, right) = target.permission;
    let module_p = ("module", module.key().to_owned());
    let Some(user) = config.user(user_id) else {
        steps.push(Step::denied(
            "account",
            "no_account",
            Vec::new(),
            format!("There is no user with id {user_id}"),
            admins,
        ));
        return Explanation { steps };
    };
    let user_p = ("user", user.display_name.clone());
    if !user.active {
        steps.push(Step::denied(
            "account",
            "account_deactivated",
            vec![user_p],
            format!(
                "The account of {} is deactivated; an administrator can reactivate it",
                user.display_name
            ),
            admins,
        ));
        return Explanation { steps };
    }
    if user.pending {
        steps.push(Step::denied(
            "account",
            "account_pending",
            vec![user_p],
            format!(
                "The account of {} is waiting for an administrator to approve its access",
                user.display_name
            ),
            admins,
        ));
        return Explanation { steps };
    }
    if user.must_change_password {
        steps.push(Step::denied(
            "account",
            "password_change_required",
            vec![user_p],
            format!(
                "{} must first replace the password an administrator set (Settings → Password)",
                user.display_name
            ),
            vec![user.display_name.clone()],
        ));
        return Explanation { steps };
    }
    if user.must_enrol_second_factor {
        steps.push(Step::denied(
            "account",
            "second_factor_required",
            vec![user_p],
            format!(
                "{} must first set up two-step sign-in, which their role requires (Settings → Two-step sign-in)",
                user.display_name
            ),
            vec![user.display_name.clone()],
        ));
        return Explanation { steps };
    }
    steps.push(Step::ok(
        "account",
        "active",
        vec![user_p],
        format!("{} has an active account", user.display_name),
    ));
    let role = config.role(&user.role);
    let role_name = role.map_or_else(|| user.role.clone(), |r| r.name.clone());
    let role_p = ("role", role_name.clone());
    let role_key_p = ("role_key", user.role.clone());
    let is_admin = role.is_some_and(RoleDef::is_admin);
    if let Some(lockdown) = &config.lockdown
        && right != Right::View
        && !is_admin
    {
        steps.push(Step::denied(
            "lockdown",
            "lockdown",
            vec![("by", lockdown.by.clone()), ("reason", lockdown.reason.clone())],
            format!(
                "Holdfast is locked down by {} ({}): nothing can be changed or exported until an administrator lifts the lockdown",
                lockdown.by, lockdown.reason
            ),
            admins,
        ));
        return Explanation { steps };
    }
    if config.modules_off.contains(&module) {
        if is_admin {
            steps.push(Step::ok(
                "module",
                "module_off_admin",
                vec![module_p.clone()],
                format!(
                    "The {} module is switched off for everyone else; administrators still see it",
                    module.key()
                ),
            ));
        } else {
            steps.push(Step::denied(
                "module",
                "module_off",
                vec![module_p],
                format!(
                    "The {} module is switched off for the whole organisation by an administrator",
                    module.key()
                ),
                admins,
            ));
            return Explanation { steps };
        }
    } else {
        steps.push(Step::ok(
            "module",
            "module_on",
            vec![module_p.clone()],
            format!("The {} module is switched on", module.key()),
        ));
    }
    let grants: Vec<&Grant> = config.live_grants(user.id, now).collect();
    let by_role = role.is_some_and(|r| r.rights.contains(&target.permission));
    let by_grant = grants
        .iter()
        .find(|g| g.kind == GrantKind::Permission(target.permission));
    // A record shared with the user gives its right on that record only.
    let by_share = target.record.and_then(|record| {
        grants.iter().find(|g| match g.kind {
            GrantKind::Record {
                entity,
                id,
                right: shared,
            } => {
                entity == record.entity
                    && id == record.id
                    && (right == Right::View || right == shared)
            }
            GrantKind::Permission(_) => false,
        })
    });
    let permission = permission_key(target.permission);
    if by_role {
        steps.push(Step::ok(
            "right",
            "by_role",
            vec![
                role_p.clone(),
                role_key_p.clone(),
                ("permission", permission.clone()),
            ],
            format!("The role {role_name} gives {permission}"),
        ));
    } else if let Some(grant) = by_grant {
        steps.push(grant_step(grant, &permission));
    } else if let Some(grant) = by_share {
        steps.push(grant_step(grant, &permission));
        // A share is the scope answer as well.
        return Explanation { steps };
    } else {
        steps.push(Step::denied(
            "right",
            "no_right",
            vec![role_p, role_key_p, ("permission", permission.clone())],
            format!(
                "The role {role_name} does not give {permission}; an administrator can change the role or approve an access request"
            ),
            admins,
        ));
        return Explanation { steps };
    }
    if let Some(record) = target.record {
        let scope = if is_admin {
            Scope::All
        } else {
            role.map_or(Scope::Own, |r| r.scope)
        };
        let scope_p = ("scope", scope.key().to_owned());
        let owner = config.user(record.owner_id);
        let owner_name = owner.map_or_else(
            || format!("user {}", record.owner_id),
            |o| o.display_name.clone(),
        );
        let owner_p = ("owner", owner_name.clone());
        let within = config
            .scope_owners(user, scope)
            .is_none_or(|owners| owners.contains(&record.owner_id));
        if within {
            steps.push(Step::ok(
                "scope",
                "in_scope",
                vec![scope_p, owner_p],
                format!(
                    "{} {} is owned by {owner_name}, within {}",
                    record.entity,
                    record.id,
                    scope_words(scope)
                ),
            ));
        } else if let Some(grant) = by_share {
            steps.push(grant_step(
                grant,
                &format!("{} {}", record.entity, record.id),
            ));
        } else {
            let mut can_change = Vec::new();
            if owner.is_some_and(|o| o.active && !o.pending) {
                can_change.push(owner_name.clone());
            }
            for admin in admins {
                if !can_change.contains(&admin) {
                    can_change.push(admin);
                }
            }
            let record_p = ("record", format!("{}:{}", record.entity.name(), record.id));
            steps.push(Step::denied(
                "scope",
                "out_of_scope",
                vec![scope_p, owner_p, record_p],
                format!(
                    "{} {} is owned by {owner_name}, outside your reach ({}); its owner or an administrator can share it with you",
                    record.entity,
                    record.id,
                    scope_words(scope)
                ),
                can_change,
            ));
            return Explanation { steps };
        }
    }
    if let (Some(field), Some(record)) = (&target.field, target.record) {
        let rule = role.and_then(|r| r.field_rule(record.entity, field));
        let field_p = ("field", field.clone());
        let context = FieldContext {
            owner_id: record.owner_id,
            status: target.status.as_deref(),
        };
        let effect = rule.and_then(|rule| effect_of(config, user, rule, Some(context)));
        let rule_p = ("rule", rule.map_or("", FieldRule::key).to_owned());
        match effect {
            Some(FieldEffect::Hidden) => {
                steps.push(Step::denied(
                    "field",
                    "field_hidden",
                    vec![field_p, role_p, role_key_p, rule_p],
                    format!("The field {field} is hidden for the role {role_name}"),
                    config.admin_names(),
                ));
            }
            Some(FieldEffect::ReadOnly) if right != Right::View => {
                steps.push(Step::denied(
                    "field",
                    "field_read_only",
                    vec![field_p, role_p, role_key_p, rule_p],
                    format!("The field {field} is read-only for the role {role_name}"),
                    config.admin_names(),
                ));
            }
            _ => steps.push(Step::ok(
                "field",
                "field_visible",
                vec![field_p],
                format!("The field {field} is not restricted for the role {role_name}"),
            )),
        }
    }
    Explanation { steps }
}

fn grant_step(grant: &Grant, what: &str) -> Step {
    let until = grant
        .expires_at
        .map_or_else(|| "no end date".to_owned(), |t| t.to_rfc3339());
    Step::ok(
        "right",
        "by_grant",
        vec![
            ("permission", what.to_owned()),
            ("approved_by", grant.approved_by.clone()),
            ("until", until.clone()),
        ],
        format!(
            "Access request {} approved by {} gives {what} (until: {until})",
            grant.request_id, grant.approved_by
        ),
    )
}

/// An action a use case wants to take, before it knows which record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read(Entity),
    Create(Entity),
    Update(Entity),
    Delete(Entity),
    Restore(Entity),
    /// Download records of one kind as a file (also needs [`Action::ExportFiles`]).
    Export(Entity),
    /// Use the exports module at all.
    ExportFiles,
    /// See the recycle bin.
    SeeBin,
    /// Remove from the recycle bin for good, before the retention period ends.
    Purge,
    /// Pipeline totals and other figures over many records.
    Reports,
    /// Users, roles, teams, custom fields, pipelines, module switches.
    Administer,
    /// Read the audit log and the permission reports; explain another user's access.
    Audit,
    /// Take, check and restore backups; bring records back from one.
    Backups,
}

impl Action {
    pub fn permission(self) -> Permission {
        match self {
            Action::Read(e) => (Module::of(e), Right::View),
            Action::Create(e) => (Module::of(e), Right::Create),
            Action::Update(e) => (Module::of(e), Right::Edit),
            Action::Delete(e) => (Module::of(e), Right::Delete),
            Action::Restore(e) => (Module::of(e), Right::Restore),
            Action::Export(e) => (Module::of(e), Right::Export),
            Action::ExportFiles => (Module::Exports, Right::Export),
            Action::SeeBin => (Module::RecycleBin, Right::View),
            Action::Purge => (Module::RecycleBin, Right::Delete),
            Action::Reports => (Module::Reports, Right::View),
            Action::Administer | Action::Backups => (Module::Administration, Right::Edit),
            Action::Audit => (Module::Administration, Right::View),
        }
    }
}

/// Deny by default: the account, module and right checks for `action`.
pub fn authorize(actor: &Actor, action: Action) -> Result<(), Denial> {
    actor.check(&Target::permission(action.permission()))
}

/// [`authorize`], then the scope check for one record.
pub fn authorize_record(actor: &Actor, action: Action, record: RecordRef) -> Result<(), Denial> {
    let (_, right) = action.permission();
    actor.check(&Target::record(right, record))
}

#[cfg(test)]
mod tests;
