//! The incident timeline: everything one user, API token, session or client address did
//! between two times — sign-ins and failed attempts, changes, exports, permission changes,
//! tokens and users made — from the sign-in history and the audit log, oldest first, as a page,
//! JSON, or CSV for a report.

use crate::records::{Export, spreadsheet_safe};
use crate::{App, AppError};
use holdfast_domain::access::authorize;
use holdfast_domain::{Action, Actor, Timestamp};
use holdfast_store::AuditFilter;
use serde_json::{Value, json};

/// At most this many events per timeline; narrow the times for more.
pub const MAX_EVENTS: usize = 10_000;

/// Whose timeline, over which times. At least one of user, token, session or client.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub user_id: Option<i64>,
    pub token_id: Option<i64>,
    pub session_id: Option<i64>,
    pub client: Option<String>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
}

/// One thing that happened.
#[derive(Debug, Clone)]
pub struct Event {
    pub at: Timestamp,
    /// `sign_in` (from the sign-in history) or `audit` (from the audit log).
    pub source: &'static str,
    pub actor: String,
    /// `sign_in.success`, `sign_in.wrong_password`, `contact.delete`, `user.create`, …
    pub action: String,
    /// The record it was about (`contact 12`), if any.
    pub subject: Option<String>,
    pub session_id: Option<i64>,
    pub token_id: Option<i64>,
    pub client: Option<String>,
    pub detail: Value,
}

/// The timeline the query asks for (auditors and administrators).
pub async fn timeline(app: &App, actor: &Actor, query: &Query) -> Result<Vec<Event>, AppError> {
    authorize(actor, Action::Audit)?;
    if query.user_id.is_none()
        && query.token_id.is_none()
        && query.session_id.is_none()
        && query.client.is_none()
    {
        return Err(AppError::invalid(
            "user_id",
            "required",
            "Name whose timeline: a user (user_id), an API token (token_id), a session (session_id) or a client address (client)",
        ));
    }
    let to = query.to.unwrap_or_else(|| app.now());
    let from = query.from.unwrap_or_else(|| to.plus_days(-7));
    if from > to {
        return Err(AppError::invalid(
            "from",
            "out_of_range",
            "from must come before to",
        ));
    }
    let users = app.access_config().await?;
    let name_of = |id: Option<i64>| {
        id.and_then(|id| users.users.get(&id).map(|u| u.display_name.clone()))
            .unwrap_or_else(|| "—".into())
    };
    let mut events = Vec::new();
    // Sign-ins belong to a user or a client address; a token or a session has none of its own.
    let sign_ins = (query.user_id.is_some() || query.client.is_some())
        && query.token_id.is_none()
        && query.session_id.is_none();
    if sign_ins {
        let limit = i64::try_from(MAX_EVENTS).unwrap_or(i64::MAX);
        for event in app
            .db
            .login_events_between(query.user_id, query.client.as_deref(), from, to, limit)
            .await?
        {
            events.push(Event {
                at: event.at,
                source: "sign_in",
                actor: name_of(event.user_id),
                action: format!("sign_in.{}", event.outcome),
                subject: None,
                session_id: None,
                token_id: None,
                client: event.address,
                detail: json!({"method": event.method, "user_agent": event.user_agent, "new_device": event.new_device}),
            });
        }
    }
    let mut filter = AuditFilter {
        actor_id: query.user_id,
        token_id: query.token_id,
        session_id: query.session_id,
        client: query.client.clone(),
        from: Some(from),
        to: Some(to),
        ..AuditFilter::default()
    };
    while events.len() < MAX_EVENTS {
        let page = app.db.audit_filtered(&filter, 1000).await?;
        let Some(last) = page.last() else { break };
        filter.after_seq = Some(last.seq);
        for entry in page {
            // The sign-in history says more about sign-ins than their audit entries.
            if sign_ins && entry.action == "auth.login" {
                continue;
            }
            events.push(Event {
                at: entry.at,
                source: "audit",
                actor: entry.actor_name,
                action: entry.action,
                subject: entry
                    .entity
                    .as_ref()
                    .zip(entry.record_id)
                    .map(|(entity, id)| format!("{entity} {id}")),
                session_id: entry.via.session_id,
                token_id: entry.via.token_id,
                client: entry.via.client,
                detail: entry.detail,
            });
        }
    }
    events.sort_by_key(|e| e.at);
    events.truncate(MAX_EVENTS);
    Ok(events)
}

/// The timeline as CSV for an incident report (cells made safe for spreadsheets).
pub async fn export(app: &App, actor: &Actor, query: &Query) -> Result<Export, AppError> {
    let events = timeline(app, actor, query).await?;
    let mut writer = csv::Writer::from_writer(Vec::new());
    let csv_error = |e: csv::Error| AppError::Internal(anyhow::anyhow!("writing CSV: {e}"));
    writer
        .write_record([
            "at",
            "source",
            "actor",
            "action",
            "subject",
            "session_id",
            "token_id",
            "client",
            "detail",
        ])
        .map_err(csv_error)?;
    for e in &events {
        let number = |n: Option<i64>| n.map(|n| n.to_string()).unwrap_or_default();
        writer
            .write_record([
                e.at.to_rfc3339(),
                e.source.to_owned(),
                spreadsheet_safe(&e.actor),
                e.action.clone(),
                e.subject.clone().unwrap_or_default(),
                number(e.session_id),
                number(e.token_id),
                e.client.clone().unwrap_or_default(),
                spreadsheet_safe(&e.detail.to_string()),
            ])
            .map_err(csv_error)?;
    }
    let csv = writer
        .into_inner()
        .map_err(|e| AppError::Internal(anyhow::anyhow!("writing CSV: {e}")))?;
    Ok(Export {
        file_name: format!("timeline-{}.csv", crate::compact_utc(app.now())),
        csv,
        rows: events.len(),
    })
}
