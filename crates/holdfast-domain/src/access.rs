//! Who may do what. Deny by default: an action is allowed only by a rule below that names it.
//!
//! For now there are two roles: administrators may do everything, members may work with
//! customer records but not purge them or administer the installation. The full permission
//! model (roles, scopes, field rules) replaces [`authorize`]'s body, not its callers: every use
//! case already passes the acting user and the action it wants.

use crate::entity::Entity;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Member,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            _ => None,
        }
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

/// The user on whose behalf a use case runs. Every use case takes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub user_id: i64,
    pub username: String,
    pub role: Role,
    pub kind: ActorKind,
}

impl Actor {
    /// The actor for Holdfast's own jobs. User id 0 is never a real user.
    pub fn system() -> Actor {
        Actor {
            user_id: 0,
            username: "holdfast".into(),
            role: Role::Admin,
            kind: ActorKind::System,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read(Entity),
    Create(Entity),
    Update(Entity),
    Delete(Entity),
    Restore(Entity),
    /// Remove from the recycle bin for good, before the retention period ends.
    Purge,
    /// Users, custom fields, pipelines, the audit log.
    Administer,
    /// Take, check and restore backups; bring records back from one.
    Backups,
}

/// Why an action was refused, and which role could allow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// Stable code, e.g. `admin_only`.
    pub code: &'static str,
    pub message: String,
    pub grantable_by: Role,
}

pub fn authorize(actor: &Actor, action: Action) -> Result<(), Denial> {
    match (actor.role, action) {
        (Role::Admin, _) => Ok(()),
        (
            Role::Member,
            Action::Read(_) | Action::Create(_) | Action::Update(_) | Action::Delete(_) | Action::Restore(_),
        ) => Ok(()),
        (Role::Member, Action::Purge) => Err(Denial {
            code: "admin_only",
            message: "Only administrators can purge records from the recycle bin before the retention period ends".into(),
            grantable_by: Role::Admin,
        }),
        (Role::Member, Action::Backups) => Err(Denial {
            code: "admin_only",
            message: "Only administrators can take, check or restore backups".into(),
            grantable_by: Role::Admin,
        }),
        (Role::Member, Action::Administer) => Err(Denial {
            code: "admin_only",
            message: "Only administrators can do this".into(),
            grantable_by: Role::Admin,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_work_with_records_but_cannot_purge_or_administer() {
        let member = Actor {
            user_id: 2,
            username: "li".into(),
            role: Role::Member,
            kind: ActorKind::System,
        };
        let admin = Actor {
            role: Role::Admin,
            ..member.clone()
        };
        for entity in Entity::ALL {
            for action in [
                Action::Read(entity),
                Action::Create(entity),
                Action::Delete(entity),
                Action::Restore(entity),
            ] {
                assert!(authorize(&member, action).is_ok());
            }
        }
        for action in [Action::Purge, Action::Administer] {
            assert_eq!(
                authorize(&member, action).unwrap_err().grantable_by,
                Role::Admin
            );
            assert!(authorize(&admin, action).is_ok());
        }
    }
}
