//! What a user or API token did besides changing records — API tokens and users made, users'
//! roles and teams changed, custom roles made or changed, access requests approved — found in
//! the audit log of the revert's time, and taken back with the records.
//!
//! Each is taken back only while it is as they left it: a role or a user's access someone else
//! changed afterwards is named and left alone, like a conflicting record change.

use super::Request;
use crate::access::{self, AccessChange, Decision};
use crate::{App, AppError};
use holdfast_domain::access::REP;
use holdfast_domain::{AccessConfig, Actor, Timestamp};
use holdfast_store::{AuditRow, RoleRow};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// Something a user or token made or changed that a revert of their changes takes back.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Made {
    /// `token` (revoked), `user` (deactivated, which also ends their sessions and tokens),
    /// `access` (a user's role and team: put back), `grant` (an approved access request:
    /// revoked), `role` (a custom role they made: deleted), `role_edit` (a role they changed:
    /// put back), `role_changed` (one of those changed again since by someone else) and
    /// `role_kept` (a role they made that others hold, named in `detail`): left as they are.
    pub kind: &'static str,
    /// The token, user, access request; 0 for a role.
    pub id: i64,
    /// The token's name, the username, or the role's key.
    pub name: String,
    /// For a token: whose it is; for a grant: who holds it; otherwise the id.
    pub user_id: i64,
    /// What is put back or why something is left, as the pages show it: role keys, a
    /// permission, the users still holding a role.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
    #[serde(skip)]
    undo: Undo,
}

impl Made {
    /// Whether the revert takes it back (not one of the `…_kept` left as it is).
    pub fn undoes(&self) -> bool {
        !matches!(self.undo, Undo::Nothing)
    }
}

#[derive(Debug, Clone)]
enum Undo {
    Revoke,
    Deactivate,
    Access {
        role: String,
        team_id: Option<i64>,
    },
    RevokeGrant,
    /// Deletes the role, first giving the users in the list (made in the same time, and
    /// deactivated by the same revert) the built-in rep role.
    DeleteRole {
        reassign: Vec<i64>,
    },
    PutRole(RoleRow),
    Nothing,
}

/// Everything the user or token of `request` made or changed since its time that is still in
/// force. (A revert of everyone's changes takes back no accounts or settings: that is a restore.)
pub(super) async fn made_by(app: &App, request: &Request) -> Result<Vec<Made>, AppError> {
    if request.token.is_none() && request.by.is_none() {
        return Ok(Vec::new());
    }
    let config = app.access_config().await?;
    let mut made = tokens_and_users(app, request).await?;
    let made_users: BTreeSet<i64> = made
        .iter()
        .filter(|m| m.kind == "user")
        .map(|m| m.id)
        .collect();
    let access = access_changes(
        &config,
        &entries(app, request, "access.user").await?,
        &made_users,
    );
    let roles = roles(
        &config,
        &entries(app, request, "access.role").await?,
        &access,
        &made_users,
    );
    made.extend(access);
    made.extend(roles);
    made.extend(grants(app, &entries(app, request, "access.decide").await?).await?);
    Ok(made)
}

/// The audit entries of one action by the request's user or token since its time, oldest first.
async fn entries(app: &App, request: &Request, action: &str) -> Result<Vec<AuditRow>, AppError> {
    let filter = holdfast_store::AuditFilter {
        token_id: request.token,
        actor_id: if request.token.is_some() {
            None
        } else {
            request.by
        },
        action: Some(action.to_owned()),
        from: Some(request.to),
        ..Default::default()
    };
    Ok(app.db.audit_filtered(&filter, 1000).await?)
}

/// API tokens still working and users still active that they made.
async fn tokens_and_users(app: &App, request: &Request) -> Result<Vec<Made>, AppError> {
    let mut made = Vec::new();
    let now = app.now();
    for entry in entries(app, request, "token.create").await? {
        let Some(id) = entry.detail["token_id"].as_i64() else {
            continue;
        };
        if let Some(token) = app.db.token_by_id(id).await?
            && token.revoked_at.is_none()
            && token.expires_at.is_none_or(|at| at > now)
        {
            made.push(Made {
                kind: "token",
                id,
                name: token.name,
                user_id: token.user_id,
                detail: String::new(),
                undo: Undo::Revoke,
            });
        }
    }
    for entry in entries(app, request, "user.create").await? {
        let Some(id) = entry.detail["user_id"].as_i64() else {
            continue;
        };
        if let Some(user) = app.db.user(id).await?
            && user.active
        {
            made.push(Made {
                kind: "user",
                id,
                name: user.username,
                user_id: id,
                detail: String::new(),
                undo: Undo::Deactivate,
            });
        }
    }
    Ok(made)
}

/// Users whose role or team they changed (other than users they made, who are deactivated):
/// put back as before their first change, if still as after their last.
fn access_changes(config: &AccessConfig, entries: &[AuditRow], skip: &BTreeSet<i64>) -> Vec<Made> {
    let mut spans: BTreeMap<i64, (&Value, &Value)> = BTreeMap::new();
    for entry in entries {
        let Some(user_id) = entry.detail["user_id"].as_i64() else {
            continue;
        };
        let (before, after) = (&entry.detail["before"], &entry.detail["after"]);
        spans
            .entry(user_id)
            .and_modify(|span| span.1 = after)
            .or_insert((before, after));
    }
    let mut made = Vec::new();
    for (user_id, (before, after)) in spans {
        let (Some(user), Some(role)) = (config.user(user_id), before["role"].as_str()) else {
            continue;
        };
        if skip.contains(&user_id) {
            continue;
        }
        let team_id = before["team_id"].as_i64();
        if user.role == role && user.team_id == team_id {
            continue;
        }
        let still = after["role"].as_str() == Some(user.role.as_str())
            && after["team_id"].as_i64() == user.team_id;
        made.push(Made {
            kind: if still { "access" } else { "access_kept" },
            id: user_id,
            name: user.username.clone(),
            user_id,
            detail: format!("{} → {role}", user.role),
            undo: if still {
                Undo::Access {
                    role: role.to_owned(),
                    team_id,
                }
            } else {
                Undo::Nothing
            },
        });
    }
    made
}

/// Custom roles they made (deleted, unless given to someone else meanwhile) or changed (put
/// back, unless changed again since).
fn roles(
    config: &AccessConfig,
    entries: &[AuditRow],
    access: &[Made],
    made_users: &BTreeSet<i64>,
) -> Vec<Made> {
    let mut spans: BTreeMap<String, (&Value, &Value)> = BTreeMap::new();
    for entry in entries {
        let Some(key) = entry.detail["role"].as_str() else {
            continue;
        };
        let (before, after) = (&entry.detail["before"], &entry.detail["after"]);
        spans
            .entry(key.to_owned())
            .and_modify(|span| span.1 = after)
            .or_insert((before, after));
    }
    let mut made = Vec::new();
    for (key, (before, after)) in spans {
        let Some(current) = config.role(&key).map(RoleRow::from_def) else {
            continue;
        };
        let kept = |kind: &'static str, detail: String| Made {
            kind,
            id: 0,
            name: key.clone(),
            user_id: 0,
            detail,
            undo: Undo::Nothing,
        };
        // As the checks see it (rights in their own order), compared with what they left.
        let left = role_row(&key, after).map(|row| RoleRow::from_def(&row.to_def()));
        if left.as_ref() != Some(&current) {
            made.push(kept("role_changed", String::new()));
            continue;
        }
        if !before.is_null() {
            if let Some(row) = role_row(&key, before) {
                made.push(Made {
                    kind: "role_edit",
                    id: 0,
                    name: key.clone(),
                    user_id: 0,
                    detail: String::new(),
                    undo: Undo::PutRole(row),
                });
            }
            continue;
        }
        // Who holds the role once the users' access they changed is put back.
        let put_back: BTreeMap<i64, &str> = access
            .iter()
            .filter_map(|m| match &m.undo {
                Undo::Access { role, .. } => Some((m.id, role.as_str())),
                _ => None,
            })
            .collect();
        let holders: Vec<_> = config
            .users
            .values()
            .filter(|u| u.role == key && put_back.get(&u.id).is_none_or(|r| *r == key))
            .collect();
        let others: Vec<&str> = holders
            .iter()
            .filter(|u| !made_users.contains(&u.id))
            .map(|u| u.username.as_str())
            .collect();
        if others.is_empty() {
            made.push(Made {
                kind: "role",
                id: 0,
                name: key.clone(),
                user_id: 0,
                detail: String::new(),
                undo: Undo::DeleteRole {
                    reassign: holders.iter().map(|u| u.id).collect(),
                },
            });
        } else {
            made.push(kept("role_kept", others.join(", ")));
        }
    }
    made
}

fn role_row(key: &str, def: &Value) -> Option<RoleRow> {
    Some(RoleRow {
        key: key.to_owned(),
        name: def["name"].as_str()?.to_owned(),
        rights: serde_json::from_value(def["rights"].clone()).ok()?,
        scope: def["scope"].as_str()?.to_owned(),
        fields: serde_json::from_value(def["fields"].clone()).ok()?,
    })
}

/// Access requests they approved that are still in force.
async fn grants(app: &App, entries: &[AuditRow]) -> Result<Vec<Made>, AppError> {
    let mut made = Vec::new();
    for entry in entries {
        let Some(id) = entry.detail["request_id"].as_i64() else {
            continue;
        };
        if entry.detail["status"] != json!("approved") {
            continue;
        }
        let Some(request) = app.db.access_request(id).await? else {
            continue;
        };
        if request.state(app.now()) != "approved" {
            continue;
        }
        let holder = app.db.user(request.user_id).await?;
        made.push(Made {
            kind: "grant",
            id,
            name: holder.map_or_else(|| request.user_id.to_string(), |u| u.username),
            user_id: request.user_id,
            detail: match request.record {
                Some((entity, record)) => {
                    format!("{} · {} {record}", request.permission, entity.name())
                }
                None => request.permission.clone(),
            },
            undo: Undo::RevokeGrant,
        });
    }
    Ok(made)
}

/// Takes back what [`made_by`] found, each through its own audited use case: users' access
/// first (so a role they made is no longer held), then roles, grants, tokens and users.
pub(super) async fn undo(
    app: &App,
    actor: &Actor,
    op_id: &str,
    made: &[Made],
    to: Timestamp,
) -> Result<(), AppError> {
    let rank = |m: &Made| match m.undo {
        Undo::Access { .. } => 0,
        Undo::DeleteRole { .. } | Undo::PutRole(_) => 1,
        Undo::RevokeGrant => 2,
        Undo::Revoke => 3,
        Undo::Deactivate => 4,
        Undo::Nothing => 5,
    };
    let mut ordered: Vec<&Made> = made.iter().collect();
    ordered.sort_by_key(|m| rank(m));
    for item in ordered {
        match &item.undo {
            Undo::Access { role, team_id } => {
                let change = AccessChange::SetUser {
                    user_id: item.id,
                    role: Some(role.clone()),
                    team_id: Some(*team_id),
                    pending: None,
                };
                access::change(app, actor, op_id, change, false).await?;
            }
            Undo::DeleteRole { reassign } => {
                for user_id in reassign {
                    let change = AccessChange::SetUser {
                        user_id: *user_id,
                        role: Some(REP.to_owned()),
                        team_id: None,
                        pending: None,
                    };
                    access::change(app, actor, op_id, change, false).await?;
                }
                let change = AccessChange::DeleteRole(item.name.clone());
                access::change(app, actor, op_id, change, false).await?;
            }
            Undo::PutRole(row) => {
                access::change(app, actor, op_id, AccessChange::PutRole(row.clone()), false)
                    .await?;
            }
            Undo::RevokeGrant => {
                let note = format!(
                    "Taken back by the revert of changes since {}",
                    to.to_rfc3339()
                );
                let revoked =
                    access::decide(app, actor, op_id, item.id, Decision::Revoke { note }).await;
                // Revoked or expired meanwhile: nothing left to do.
                if let Err(error) = revoked
                    && !matches!(error, AppError::Conflict { .. })
                {
                    return Err(error);
                }
            }
            Undo::Revoke => {
                let revoked = crate::users::revoke_one(
                    app,
                    actor,
                    op_id,
                    item.user_id,
                    crate::users::Credentials::Tokens,
                    item.id,
                )
                .await;
                // Revoked meanwhile (or by deactivating its user above): nothing left to do.
                if let Err(error) = revoked
                    && !matches!(error, AppError::NotFound { .. })
                {
                    return Err(error);
                }
            }
            Undo::Deactivate => {
                let change = crate::users::UserChange {
                    active: Some(false),
                    ..Default::default()
                };
                crate::users::update(app, actor, op_id, item.id, change).await?;
            }
            Undo::Nothing => {}
        }
    }
    Ok(())
}
