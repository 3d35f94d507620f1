//! Permission settings: roles, teams, module switches, access requests and the grants they
//! become, and in-app notifications. [`Db::load_access`] reads them whole into the domain's
//! `AccessConfig`; every change to them goes through a [`WriteTx`] with an audit entry and moves
//! the `access_generation` mark, which tells every instance to reload.

use crate::rows::{Param, Params};
use crate::write::AuditDraft;
use crate::{Db, StoreError, WriteTx};
use anyhow::Context as _;
use holdfast_domain::access::{
    FieldRule, Grant, GrantKind, Team, UserAccess, parse_permission, permission_key,
};
use holdfast_domain::{AccessConfig, Entity, Module, Right, RoleDef, Scope, Timestamp};
use serde_json::Value;
use sqlx::Row as _;
use sqlx::any::AnyRow;
use std::collections::{BTreeMap, BTreeSet};

/// An access request and, once approved, the grant it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRequestRow {
    pub id: i64,
    pub user_id: i64,
    /// `module.right` (`deals.view`).
    pub permission: String,
    /// For a request to share one record.
    pub record: Option<(Entity, i64)>,
    pub reason: String,
    /// `pending`, `approved`, `declined` or `revoked`. An approved request past its expiry
    /// reads as `expired` (see [`AccessRequestRow::state`]).
    pub status: String,
    pub created_at: Timestamp,
    pub decided_by: Option<i64>,
    pub decided_at: Option<Timestamp>,
    pub decision_note: Option<String>,
    pub expires_at: Option<Timestamp>,
}

impl AccessRequestRow {
    /// The status as of `now`: an approved grant whose time ran out is `expired`.
    pub fn state(&self, now: Timestamp) -> &str {
        match (self.status.as_str(), self.expires_at) {
            ("approved", Some(until)) if until <= now => "expired",
            (status, _) => status,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NotificationRow {
    pub id: i64,
    pub user_id: i64,
    pub at: Timestamp,
    pub kind: String,
    pub detail: Value,
    pub read_at: Option<Timestamp>,
}

/// A custom role as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRow {
    pub key: String,
    pub name: String,
    pub rights: Vec<String>,
    pub scope: String,
    /// `entity.field` → `hidden` or `read_only`.
    pub fields: BTreeMap<String, String>,
}

impl RoleRow {
    pub fn from_def(role: &RoleDef) -> RoleRow {
        RoleRow {
            key: role.key.clone(),
            name: role.name.clone(),
            rights: role.rights.iter().map(|p| permission_key(*p)).collect(),
            scope: role.scope.key().to_owned(),
            fields: role
                .fields
                .iter()
                .map(|((entity, field), rule)| {
                    (format!("{}.{field}", entity.name()), rule.key().to_owned())
                })
                .collect(),
        }
    }

    /// The role as the checks see it. Entries this version does not know (written by a newer
    /// Holdfast) give nothing: deny by default.
    pub fn to_def(&self) -> RoleDef {
        RoleDef {
            key: self.key.clone(),
            name: self.name.clone(),
            built_in: false,
            rights: self
                .rights
                .iter()
                .filter_map(|r| parse_permission(r))
                .collect(),
            scope: Scope::parse(&self.scope).unwrap_or(Scope::Own),
            fields: self
                .fields
                .iter()
                .filter_map(|(key, rule)| {
                    let (entity, field) = key.split_once('.')?;
                    let entity = Entity::from_name(entity)?;
                    entity.field(field)?;
                    // An unknown rule hides the field: the stricter reading.
                    let rule = FieldRule::parse(rule).unwrap_or(FieldRule::Hidden);
                    Some(((entity, field.to_owned()), rule))
                })
                .collect(),
        }
    }
}

const REQUEST_COLUMNS: &str = "id, user_id, permission, entity, record_id, reason, status, created_at, decided_by, decided_at, decision_note, expires_at";

fn request_from_row(row: &AnyRow) -> anyhow::Result<AccessRequestRow> {
    let entity: Option<String> = row.try_get(3)?;
    let record_id: Option<i64> = row.try_get(4)?;
    let record = match (entity, record_id) {
        (Some(entity), Some(id)) => Some((
            Entity::from_name(&entity).context("access request for an unknown entity")?,
            id,
        )),
        _ => None,
    };
    Ok(AccessRequestRow {
        id: row.try_get(0)?,
        user_id: row.try_get(1)?,
        permission: row.try_get(2)?,
        record,
        reason: row.try_get(5)?,
        status: row.try_get(6)?,
        created_at: Timestamp(row.try_get(7)?),
        decided_by: row.try_get(8)?,
        decided_at: row.try_get::<Option<i64>, _>(9)?.map(Timestamp),
        decision_note: row.try_get(10)?,
        expires_at: row.try_get::<Option<i64>, _>(11)?.map(Timestamp),
    })
}

impl Db {
    /// The mark that changes whenever a permission setting does.
    pub async fn access_generation(&self) -> anyhow::Result<String> {
        Ok(self.meta("access_generation").await?.unwrap_or_default())
    }

    /// Every permission setting, with the generation mark read first (so a change landing
    /// meanwhile makes the next request reload).
    /// Grants that ended before `now` are left out (checks still compare each grant's end with
    /// the time of the request, since the settings stay cached after they are loaded).
    pub async fn load_access(&self, now: Timestamp) -> anyhow::Result<(String, AccessConfig)> {
        let generation = self.access_generation().await?;
        let mut roles = RoleDef::built_in();
        roles.extend(self.custom_roles().await?.iter().map(RoleRow::to_def));
        let rows = self.users().await?;
        let enrolled = self.users_with_second_factor().await?;
        let second_factor_roles = self.second_factor_roles().await?;
        let names: BTreeMap<i64, String> = rows
            .iter()
            .map(|u| (u.id, u.display_name.clone()))
            .collect();
        let users = rows
            .into_iter()
            .map(|u| {
                let must_enrol_second_factor =
                    second_factor_roles.contains(&u.role) && !enrolled.contains(&u.id);
                let access = UserAccess {
                    id: u.id,
                    username: u.username,
                    display_name: u.display_name,
                    role: u.role,
                    team_id: u.team_id,
                    active: u.active,
                    pending: u.pending,
                    must_change_password: u.must_change_password,
                    must_enrol_second_factor,
                };
                (u.id, access)
            })
            .collect();
        let sql = format!(
            "SELECT {REQUEST_COLUMNS} FROM access_requests WHERE status = 'approved' AND (expires_at IS NULL OR expires_at > $1)"
        );
        let approved = sqlx::query(&sql)
            .bind(now.micros())
            .fetch_all(self.read_pool())
            .await?
            .iter()
            .map(request_from_row)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let grants = approved
            .into_iter()
            .filter_map(|r| {
                let permission = parse_permission(&r.permission)?;
                let kind = match r.record {
                    Some((entity, id)) => GrantKind::Record {
                        entity,
                        id,
                        right: permission.1,
                    },
                    None => GrantKind::Permission(permission),
                };
                Some(Grant {
                    request_id: r.id,
                    user_id: r.user_id,
                    kind,
                    expires_at: r.expires_at,
                    approved_by: r
                        .decided_by
                        .and_then(|id| names.get(&id).cloned())
                        .unwrap_or_default(),
                })
            })
            .collect();
        let config = AccessConfig {
            roles,
            users,
            teams: self.teams().await?,
            modules_off: self.modules_off().await?,
            grants,
            lockdown: self
                .meta(LOCKDOWN)
                .await?
                .and_then(|json| serde_json::from_str(&json).ok()),
        };
        Ok((generation, config))
    }

    pub async fn custom_roles(&self) -> anyhow::Result<Vec<RoleRow>> {
        let found = sqlx::query("SELECT key, name, rights, scope, fields FROM roles ORDER BY name")
            .fetch_all(self.read_pool())
            .await?;
        found
            .iter()
            .map(|row| {
                Ok(RoleRow {
                    key: row.try_get(0)?,
                    name: row.try_get(1)?,
                    rights: serde_json::from_str(&row.try_get::<String, _>(2)?)
                        .context("role rights")?,
                    scope: row.try_get(3)?,
                    fields: serde_json::from_str(&row.try_get::<String, _>(4)?)
                        .context("role fields")?,
                })
            })
            .collect()
    }

    pub async fn teams(&self) -> anyhow::Result<Vec<Team>> {
        let found = sqlx::query("SELECT id, name, parent_id, manager_id FROM teams ORDER BY name")
            .fetch_all(self.read_pool())
            .await?;
        found
            .iter()
            .map(|row| {
                Ok(Team {
                    id: row.try_get(0)?,
                    name: row.try_get(1)?,
                    parent_id: row.try_get(2)?,
                    manager_id: row.try_get(3)?,
                })
            })
            .collect()
    }

    pub async fn modules_off(&self) -> anyhow::Result<BTreeSet<Module>> {
        let text = self.meta("modules_off").await?.unwrap_or_default();
        let keys: Vec<String> = serde_json::from_str(&text).unwrap_or_default();
        Ok(keys.iter().filter_map(|k| Module::parse(k)).collect())
    }

    pub async fn access_request(&self, id: i64) -> anyhow::Result<Option<AccessRequestRow>> {
        let sql = format!("SELECT {REQUEST_COLUMNS} FROM access_requests WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(self.read_pool())
            .await?;
        row.as_ref().map(request_from_row).transpose()
    }

    /// Requests with one status, newest first.
    pub async fn access_requests_with_status(
        &self,
        status: &str,
        limit: i64,
    ) -> anyhow::Result<Vec<AccessRequestRow>> {
        let sql = format!(
            "SELECT {REQUEST_COLUMNS} FROM access_requests WHERE status = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
        );
        let found = sqlx::query(&sql)
            .bind(status.to_owned())
            .bind(limit)
            .fetch_all(self.read_pool())
            .await?;
        found.iter().map(request_from_row).collect()
    }

    /// One user's requests, newest first.
    pub async fn access_requests_of(
        &self,
        user_id: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<AccessRequestRow>> {
        let sql = format!(
            "SELECT {REQUEST_COLUMNS} FROM access_requests WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
        );
        let found = sqlx::query(&sql)
            .bind(user_id)
            .bind(limit)
            .fetch_all(self.read_pool())
            .await?;
        found.iter().map(request_from_row).collect()
    }

    /// A user's notifications, newest first.
    pub async fn notifications(
        &self,
        user_id: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<NotificationRow>> {
        let found = sqlx::query(
            "SELECT id, user_id, at, kind, detail, read_at FROM notifications WHERE user_id = $1 AND kind NOT LIKE 'security.%' ORDER BY at DESC, id DESC LIMIT $2",
        )
        .bind(user_id)
        .bind(limit)
        .fetch_all(self.read_pool())
        .await?;
        notifications_from(&found)
    }

    /// A user's security notices (sign-ins from new devices, changed credentials) not yet
    /// answered, newest first.
    pub async fn security_notices(&self, user_id: i64) -> anyhow::Result<Vec<NotificationRow>> {
        let found = sqlx::query(
            "SELECT id, user_id, at, kind, detail, read_at FROM notifications WHERE user_id = $1 AND kind LIKE 'security.%' AND read_at IS NULL ORDER BY at DESC, id DESC LIMIT 50",
        )
        .bind(user_id)
        .fetch_all(self.read_pool())
        .await?;
        notifications_from(&found)
    }
}

fn notifications_from(found: &[AnyRow]) -> anyhow::Result<Vec<NotificationRow>> {
    found
        .iter()
        .map(|row| {
            Ok(NotificationRow {
                id: row.try_get(0)?,
                user_id: row.try_get(1)?,
                at: Timestamp(row.try_get(2)?),
                kind: row.try_get(3)?,
                detail: serde_json::from_str(&row.try_get::<String, _>(4)?).unwrap_or(Value::Null),
                read_at: row.try_get::<Option<i64>, _>(5)?.map(Timestamp),
            })
        })
        .collect()
}

impl Db {
    pub async fn unread_notifications(&self, user_id: i64) -> anyhow::Result<i64> {
        Ok(
            sqlx::query(
                "SELECT COUNT(*) FROM notifications WHERE user_id = $1 AND read_at IS NULL AND kind NOT LIKE 'security.%'",
            )
            .bind(user_id)
            .fetch_one(self.read_pool())
            .await?
            .try_get::<i64, _>(0)?,
        )
    }

    /// Live records of `entity` per owner: how many each user's records number, for the
    /// preview of a permission change.
    pub async fn records_per_owner(&self, entity: Entity) -> anyhow::Result<BTreeMap<i64, i64>> {
        let sql = format!(
            "SELECT owner_id, COUNT(*) FROM {} WHERE deleted_at IS NULL GROUP BY owner_id",
            entity.plural()
        );
        let found = sqlx::query(&sql).fetch_all(self.read_pool()).await?;
        found
            .iter()
            .map(|row| Ok((row.try_get::<i64, _>(0)?, row.try_get::<i64, _>(1)?)))
            .collect()
    }
}

/// The meta key holding the lockdown in force (JSON of `holdfast_domain::access::Lockdown`).
pub const LOCKDOWN: &str = "lockdown";

impl WriteTx {
    /// Locks the whole CRM down (`Some`) or lifts the lockdown (`None`); every instance sees it
    /// at its next request.
    pub async fn set_lockdown(
        &mut self,
        lockdown: Option<&holdfast_domain::access::Lockdown>,
        audit: AuditDraft,
    ) -> Result<(), StoreError> {
        match lockdown {
            Some(lockdown) => {
                let json = serde_json::to_string(lockdown).context("encoding the lockdown")?;
                self.set_meta(LOCKDOWN, &json).await?;
            }
            None => {
                sqlx::query("DELETE FROM meta WHERE key = $1")
                    .bind(LOCKDOWN)
                    .execute(&mut *self.tx)
                    .await?;
            }
        }
        self.access_changed().await?;
        self.append_audit(audit).await
    }

    /// Freezes a user (`Some(reason)`) or lifts the freeze (`None`); `false` if no such user.
    pub async fn freeze_user(
        &mut self,
        user_id: i64,
        reason: Option<&str>,
        audit: AuditDraft,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE users SET frozen_at = $1, frozen_reason = $2 WHERE id = $3")
            .bind(reason.map(|_| self.now.micros()))
            .bind(reason.map(str::to_owned))
            .bind(user_id)
            .execute(&mut *self.tx)
            .await?
            .rows_affected()
            == 1;
        if done {
            self.append_audit(audit).await?;
        }
        Ok(done)
    }

    /// Suspends (`true`) or resumes one API token of a user; `false` if there is no such token.
    pub async fn freeze_token(
        &mut self,
        user_id: i64,
        token_id: i64,
        frozen: bool,
        audit: AuditDraft,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE api_tokens SET frozen_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL",
        )
        .bind(frozen.then_some(self.now.micros()))
        .bind(token_id)
        .bind(user_id)
        .execute(&mut *self.tx)
        .await?
        .rows_affected()
            == 1;
        if done {
            self.append_audit(audit).await?;
        }
        Ok(done)
    }

    /// Sets a setting in `meta` inside this transaction (beside its audit entry).
    pub async fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
            .bind(key.to_owned())
            .bind(value.to_owned())
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Moves the generation mark: every instance reloads the permission settings on its next
    /// request. Called by every write that changes them, inside its transaction.
    pub(crate) async fn access_changed(&mut self) -> Result<(), StoreError> {
        let mark = format!("{}-{}", self.now.micros(), self.head_seq + 1);
        sqlx::query("UPDATE meta SET value = $1 WHERE key = 'access_generation'")
            .bind(mark)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Creates (`create`) or replaces a custom role.
    pub async fn put_role(
        &mut self,
        role: &RoleRow,
        create: bool,
        audit: AuditDraft,
    ) -> Result<(), StoreError> {
        let rights = serde_json::to_string(&role.rights).context("encoding rights")?;
        let fields = serde_json::to_string(&role.fields).context("encoding field rules")?;
        let now = self.now.micros();
        let query = if create {
            sqlx::query(
                "INSERT INTO roles (key, name, rights, scope, fields, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6)",
            )
        } else {
            sqlx::query(
                "UPDATE roles SET name = $2, rights = $3, scope = $4, fields = $5, updated_at = $6 WHERE key = $1",
            )
        };
        query
            .bind(role.key.clone())
            .bind(role.name.clone())
            .bind(rights)
            .bind(role.scope.clone())
            .bind(fields)
            .bind(now)
            .execute(&mut *self.tx)
            .await
            .map_err(|error| crate::write::unique_violation(error, "key"))?;
        self.access_changed().await?;
        self.append_audit(audit).await
    }

    pub async fn delete_role(&mut self, key: &str, audit: AuditDraft) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM roles WHERE key = $1")
            .bind(key.to_owned())
            .execute(&mut *self.tx)
            .await?;
        self.access_changed().await?;
        self.append_audit(audit).await
    }

    /// Creates a team (`id` `None`) or changes one; returns its id.
    pub async fn put_team(
        &mut self,
        id: Option<i64>,
        team: &Team,
        audit: AuditDraft,
    ) -> Result<i64, StoreError> {
        let now = self.now.micros();
        let id = match id {
            None => sqlx::query(
                "INSERT INTO teams (name, parent_id, manager_id, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) RETURNING id",
            )
            .bind(team.name.clone())
            .bind(team.parent_id)
            .bind(team.manager_id)
            .bind(now)
            .fetch_one(&mut *self.tx)
            .await
            .map_err(|error| crate::write::unique_violation(error, "name"))?
            .try_get::<i64, _>(0)?,
            Some(id) => {
                sqlx::query(
                    "UPDATE teams SET name = $2, parent_id = $3, manager_id = $4, updated_at = $5 WHERE id = $1",
                )
                .bind(id)
                .bind(team.name.clone())
                .bind(team.parent_id)
                .bind(team.manager_id)
                .bind(now)
                .execute(&mut *self.tx)
                .await
                .map_err(|error| crate::write::unique_violation(error, "name"))?;
                id
            }
        };
        let mut audit = audit;
        audit.detail["team_id"] = id.into();
        self.access_changed().await?;
        self.append_audit(audit).await?;
        Ok(id)
    }

    /// Removes a team; its members and sub-teams are left without one.
    pub async fn delete_team(&mut self, id: i64, audit: AuditDraft) -> Result<(), StoreError> {
        for sql in [
            "UPDATE users SET team_id = NULL WHERE team_id = $1",
            "UPDATE teams SET parent_id = NULL WHERE parent_id = $1",
            "DELETE FROM teams WHERE id = $1",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *self.tx).await?;
        }
        self.access_changed().await?;
        self.append_audit(audit).await
    }

    pub async fn set_modules_off(
        &mut self,
        modules: &BTreeSet<Module>,
        audit: AuditDraft,
    ) -> Result<(), StoreError> {
        let keys: Vec<&str> = modules.iter().map(|m| m.key()).collect();
        let value = serde_json::to_string(&keys).context("encoding module switches")?;
        sqlx::query("UPDATE meta SET value = $1 WHERE key = 'modules_off'")
            .bind(value)
            .execute(&mut *self.tx)
            .await?;
        self.access_changed().await?;
        self.append_audit(audit).await
    }

    pub async fn create_access_request(
        &mut self,
        user_id: i64,
        permission: (Module, Right),
        record: Option<(Entity, i64)>,
        reason: &str,
        audit: AuditDraft,
    ) -> Result<i64, StoreError> {
        let id = sqlx::query(
            "INSERT INTO access_requests (user_id, permission, entity, record_id, reason, status, created_at) VALUES ($1, $2, $3, $4, $5, 'pending', $6) RETURNING id",
        )
        .bind(user_id)
        .bind(permission_key(permission))
        .bind(record.map(|(e, _)| e.name().to_owned()))
        .bind(record.map(|(_, id)| id))
        .bind(reason.to_owned())
        .bind(self.now.micros())
        .fetch_one(&mut *self.tx)
        .await?
        .try_get::<i64, _>(0)?;
        let mut audit = audit;
        audit.detail["request_id"] = id.into();
        self.append_audit(audit).await?;
        Ok(id)
    }

    /// Approves, declines or revokes a request (`status`), if it is still in `from`.
    /// Returns whether it was.
    #[allow(clippy::too_many_arguments)]
    pub async fn decide_access_request(
        &mut self,
        id: i64,
        from: &str,
        status: &str,
        decided_by: i64,
        note: Option<&str>,
        expires_at: Option<Timestamp>,
        audit: AuditDraft,
    ) -> Result<bool, StoreError> {
        let mut params = Params::default();
        let sql = format!(
            "UPDATE access_requests SET status = {}, decided_by = {}, decided_at = {}, decision_note = {}, expires_at = {} WHERE id = {} AND status = {}",
            params.text(status),
            params.int(decided_by),
            params.int(self.now.micros()),
            params.push(Param::Text(note.map(str::to_owned))),
            params.push(Param::Int(expires_at.map(Timestamp::micros))),
            params.int(id),
            params.text(from),
        );
        let done = params
            .bind(sqlx::query(&sql))
            .execute(&mut *self.tx)
            .await?
            .rows_affected()
            == 1;
        if done {
            self.access_changed().await?;
            self.append_audit(audit).await?;
        }
        Ok(done)
    }

    pub async fn notify(
        &mut self,
        user_id: i64,
        kind: &str,
        detail: Value,
    ) -> Result<(), StoreError> {
        let detail = serde_json::to_string(&detail).context("encoding notification")?;
        sqlx::query(
            "INSERT INTO notifications (user_id, at, kind, detail) VALUES ($1, $2, $3, $4)",
        )
        .bind(user_id)
        .bind(self.now.micros())
        .bind(kind.to_owned())
        .bind(detail)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }
}

/// The latest access review of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewRow {
    pub user_id: i64,
    pub reviewed_by: i64,
    pub at: Timestamp,
    /// `confirmed` or `trimmed`.
    pub outcome: String,
    pub note: Option<String>,
}

impl Db {
    /// Each user's latest access review.
    pub async fn latest_reviews(&self) -> anyhow::Result<BTreeMap<i64, ReviewRow>> {
        let found = sqlx::query(
            "SELECT r.user_id, r.reviewed_by, r.at, r.outcome, r.note FROM access_reviews r
             WHERE r.id = (SELECT MAX(id) FROM access_reviews x WHERE x.user_id = r.user_id)",
        )
        .fetch_all(self.read_pool())
        .await?;
        found
            .iter()
            .map(|row| {
                let review = ReviewRow {
                    user_id: row.try_get(0)?,
                    reviewed_by: row.try_get(1)?,
                    at: Timestamp(row.try_get(2)?),
                    outcome: row.try_get(3)?,
                    note: row.try_get(4)?,
                };
                Ok((review.user_id, review))
            })
            .collect()
    }

    /// Per user and audited action, the last time since `since`: which rights were used.
    pub async fn actions_since(
        &self,
        since: Timestamp,
    ) -> anyhow::Result<Vec<(i64, String, Timestamp)>> {
        let found = sqlx::query(
            "SELECT actor_id, action, MAX(at) FROM audit_log WHERE at >= $1 GROUP BY actor_id, action",
        )
        .bind(since.micros())
        .fetch_all(self.read_pool())
        .await?;
        found
            .iter()
            .map(|row| {
                Ok((
                    row.try_get::<i64, _>(0)?,
                    row.try_get::<String, _>(1)?,
                    Timestamp(row.try_get::<i64, _>(2)?),
                ))
            })
            .collect()
    }
}

impl WriteTx {
    pub async fn record_review(
        &mut self,
        user_id: i64,
        reviewed_by: i64,
        outcome: &str,
        note: Option<&str>,
        audit: AuditDraft,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO access_reviews (user_id, reviewed_by, at, outcome, note) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(user_id)
        .bind(reviewed_by)
        .bind(self.now.micros())
        .bind(outcome.to_owned())
        .bind(note.map(str::to_owned))
        .execute(&mut *self.tx)
        .await?;
        self.append_audit(audit).await
    }
}

impl Db {
    /// Marks a user's notifications read (they are a user's own; no audit entry).
    pub async fn mark_notifications_read(
        &self,
        user_id: i64,
        now: Timestamp,
    ) -> anyhow::Result<()> {
        sqlx::query("UPDATE notifications SET read_at = $1 WHERE user_id = $2 AND read_at IS NULL AND kind NOT LIKE 'security.%'")
            .bind(now.micros())
            .bind(user_id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Marks one notification read; `false` when it is not the user's or was read already.
    pub async fn mark_notification_read(
        &self,
        user_id: i64,
        id: i64,
        now: Timestamp,
    ) -> anyhow::Result<bool> {
        Ok(sqlx::query(
            "UPDATE notifications SET read_at = $1 WHERE user_id = $2 AND id = $3 AND read_at IS NULL",
        )
        .bind(now.micros())
        .bind(user_id)
        .bind(id)
        .execute(&self.write)
        .await?
        .rows_affected()
            == 1)
    }
}
