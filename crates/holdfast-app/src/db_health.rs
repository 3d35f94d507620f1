//! The database's health as people see it: what fault is in force (damaged, disk full), since
//! when and found by what, and — for a damaged database — how to recover: the newest verified
//! backup and the command that restores it. `/readyz`, the admin pages and `holdfast doctor`
//! show this; the faults themselves are recorded by `holdfast_store::health`.

use crate::App;
use crate::backup::schedule;
use holdfast_store::health::{Fault, FaultKind};
use serde::Serialize;

/// How to get back to a sound database.
#[derive(Debug, Clone, Serialize)]
pub struct Recovery {
    /// The newest backup whose restore drill passed, if there is one.
    pub backup: Option<String>,
    pub taken_at: Option<String>,
    /// What to run on the server.
    pub command: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DatabaseHealth {
    /// `ok`, `read_only` (damaged) or `disk_full`.
    pub state: &'static str,
    pub faults: Vec<Fault>,
    /// Corruption errors the engine returned while serving, since start.
    pub corruption_errors: u64,
    pub recovery: Option<Recovery>,
}

impl DatabaseHealth {
    pub fn is_ok(&self) -> bool {
        self.state == "ok"
    }
}

/// The database's health now.
pub async fn status(app: &App) -> DatabaseHealth {
    let health = app.db.health();
    let faults = health.faults();
    let state = match faults.first().map(|f| f.kind) {
        None => "ok",
        Some(FaultKind::Corrupt) => "read_only",
        Some(FaultKind::DiskFull) => "disk_full",
    };
    let recovery = if health.corrupt().is_some() {
        // The run list lives in the damaged database too; it usually still reads.
        let newest = schedule::status(app)
            .await
            .ok()
            .and_then(|status| status.last_good);
        let file = newest.as_ref().and_then(|run| run.file.clone());
        let key = app
            .backups
            .as_ref()
            .and_then(|config| config.key.as_ref())
            .map(|_| " --key-file YOUR_BACKUP_KEY")
            .unwrap_or_default();
        Some(Recovery {
            taken_at: newest
                .as_ref()
                .map(|run| holdfast_domain::Timestamp(run.started_at).to_rfc3339()),
            command: format!(
                "holdfast backup restore {}{key} --data-dir NEW_FOLDER, then serve with --data-dir NEW_FOLDER (keep the damaged folder for inspection)",
                file.as_deref().unwrap_or("NEWEST_VERIFIED_BACKUP")
            ),
            backup: file,
        })
    } else {
        None
    };
    DatabaseHealth {
        state,
        faults,
        corruption_errors: health.corruption_errors(),
        recovery,
    }
}
