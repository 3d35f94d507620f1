//! The errors use cases return. Each variant is something a caller can act on; the web layer
//! maps each to one HTTP status in one place.

use holdfast_domain::{Denial, Entity, FieldErrors, Timestamp};
use holdfast_store::StoreError;
use holdfast_store::health::{FaultKind, classify};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{what} not found")]
    NotFound { what: String },
    /// The record exists but is in the recycle bin.
    #[error("{entity} {id} is in the recycle bin")]
    InRecycleBin {
        entity: Entity,
        id: i64,
        deleted_at: Timestamp,
        restorable_until: Timestamp,
    },
    #[error("{}", .0.message)]
    Forbidden(Denial),
    /// No valid session or token; `code` says which (`login_required`, `session_expired`, …).
    #[error("{message}")]
    Unauthenticated { code: &'static str, message: String },
    /// The change was based on an older version, or the record is in a state that forbids it.
    #[error("{message}")]
    Conflict {
        code: &'static str,
        message: String,
        current: Option<Value>,
    },
    #[error("invalid input: {0}")]
    Invalid(FieldErrors),
    #[error("too many failed logins; try again in {retry_after_seconds} s")]
    Throttled { retry_after_seconds: i64 },
    /// The server is checking as many passwords as it takes at once (each check costs memory
    /// on purpose); nothing was done.
    #[error("the server is busy checking passwords; try again in {retry_after_seconds} s")]
    Busy { retry_after_seconds: i64 },
    /// A sensitive action, and the session last proved who its user is too long ago: confirm
    /// with the password or a second factor ([`crate::step_up`]) and do it again.
    #[error("confirm it is you (password or a code) before this action")]
    StepUpRequired,
    /// The database cannot do this now: it was found damaged (read-only until it is restored)
    /// or its disk is full. Nothing was changed.
    #[error("{message}")]
    Unavailable {
        kind: FaultKind,
        /// The engine's words.
        detail: String,
        message: String,
        /// The engine just reported it (as opposed to a write refused because the fault was
        /// already known): the web layer records fresh faults in the database's health.
        fresh: bool,
    },
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// An engine error that says the database is damaged or its disk full becomes
/// [`AppError::Unavailable`]; any other stays internal.
fn internal_or_fault(error: anyhow::Error) -> AppError {
    match classify(&error) {
        Some((kind, detail)) => AppError::Unavailable {
            kind,
            message: fault_message(kind, &detail),
            detail,
            fresh: true,
        },
        None => AppError::Internal(error),
    }
}

/// What a client is told about a fault: what happened, that nothing changed, what to do.
pub fn fault_message(kind: FaultKind, detail: &str) -> String {
    match kind {
        FaultKind::Corrupt => format!(
            "The database was found damaged ({detail}), so Holdfast takes no changes until an administrator restores it from the newest verified backup \
             (shown on /readyz and the Backups page, with the command). Nothing was changed; what you can see is still readable"
        ),
        FaultKind::DiskFull => format!(
            "The disk holding the database is full ({detail}). Nothing was changed. An administrator must free space (old backups, logs) or move the data folder; writes work again as soon as there is room"
        ),
    }
}

impl AppError {
    pub fn not_found(what: impl Into<String>) -> AppError {
        AppError::NotFound { what: what.into() }
    }

    pub fn invalid(field: &str, code: &'static str, message: impl Into<String>) -> AppError {
        AppError::Invalid(FieldErrors::single(field, code, message))
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> AppError {
        AppError::Conflict {
            code,
            message: message.into(),
            current: None,
        }
    }
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::VersionConflict { current } => AppError::Conflict {
                code: "version_conflict",
                message: format!(
                    "Someone else changed this record meanwhile; it is now at version {current}"
                ),
                current: None,
            },
            StoreError::Duplicate(field) => {
                AppError::invalid(field, "taken", "Already in use; choose another")
            }
            StoreError::ReadOnly(fault) => AppError::Unavailable {
                kind: fault.kind,
                message: fault_message(fault.kind, &fault.detail),
                detail: fault.detail,
                fresh: false,
            },
            StoreError::Internal(error) => internal_or_fault(error),
        }
    }
}

impl From<anyhow::Error> for AppError {
    fn from(error: anyhow::Error) -> Self {
        internal_or_fault(error)
    }
}

impl From<FieldErrors> for AppError {
    fn from(errors: FieldErrors) -> Self {
        AppError::Invalid(errors)
    }
}

impl From<Denial> for AppError {
    fn from(denial: Denial) -> Self {
        AppError::Forbidden(denial)
    }
}
