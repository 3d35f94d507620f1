//! `holdfast access explain|summary`: "why can't this user see this?" on the server, for
//! administrators who have a shell but not a browser session (or whose own account is the one
//! locked out).

use crate::{Config, DbArgs, describe, open_app, overrides};
use anyhow::Context as _;
use clap::Subcommand;
use holdfast_app::access::{self, Question};
use holdfast_domain::access::parse_permission;
use holdfast_domain::{Actor, Entity, Module, Right};

#[derive(Subcommand)]
pub enum AccessCommand {
    /// Explain why a user can or cannot do something: each check, and who can change it.
    Explain {
        #[command(flatten)]
        db: DbArgs,
        /// The user's username (or id).
        #[arg(long)]
        user: String,
        /// One record, as KIND:ID (contact:12).
        #[arg(long)]
        record: Option<String>,
        /// A right as module.right (deals.edit); default: view the record.
        #[arg(long)]
        permission: Option<String>,
        /// One field of the record (phone).
        #[arg(long)]
        field: Option<String>,
    },
    /// Everything a user can do, and which role or grant gives it.
    Summary {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long)]
        user: String,
    },
}

pub async fn run(command: AccessCommand) -> anyhow::Result<()> {
    let (db, user) = match &command {
        AccessCommand::Explain { db, user, .. } | AccessCommand::Summary { db, user } => (db, user),
    };
    let config = Config::load(db.config.as_deref(), std::env::vars(), &overrides(db))?;
    let app = open_app(&config).await?;
    let users = app.db.users().await?;
    let found = users
        .iter()
        .find(|u| u.username == user.to_lowercase() || u.id.to_string() == *user)
        .with_context(|| {
            format!(
                "no user '{user}'; usernames: {}",
                users
                    .iter()
                    .map(|u| u.username.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
    let system = Actor::system();
    match command {
        AccessCommand::Explain {
            record,
            permission,
            field,
            ..
        } => {
            let record = record.as_deref().map(parse_record).transpose()?;
            let permission = match (permission.as_deref(), record) {
                (Some(text), _) => parse_permission(text).with_context(|| {
                    format!("--permission '{text}' is not a right; write module.right, such as deals.edit")
                })?,
                (None, Some((entity, _))) => (Module::of(entity), Right::View),
                (None, None) => anyhow::bail!("say what to explain: --record KIND:ID and/or --permission module.right"),
            };
            let question = Question {
                user_id: found.id,
                permission,
                record,
                field,
            };
            let chain = access::explain_for(&app, &system, question)
                .await
                .map_err(describe)?;
            println!(
                "{} ({}): {}",
                found.display_name,
                found.username,
                if chain.allowed() {
                    "ALLOWED"
                } else {
                    "REFUSED"
                }
            );
            for step in &chain.steps {
                println!(
                    "  {} {:<8} {}",
                    if step.ok { "✓" } else { "✗" },
                    step.check,
                    step.message
                );
                if !step.ok && !step.can_change.is_empty() {
                    println!(
                        "             who can change it: {}",
                        step.can_change.join(", ")
                    );
                }
            }
        }
        AccessCommand::Summary { .. } => {
            let summary = access::summary(&app, &system, found.id)
                .await
                .map_err(describe)?;
            println!(
                "{} ({}): {}, role {}, scope {}{}",
                summary.display_name,
                found.username,
                summary.status,
                summary.role_name,
                summary.scope,
                summary
                    .team
                    .as_deref()
                    .map(|t| format!(", team {t}"))
                    .unwrap_or_default()
            );
            for right in summary.rights.iter().filter(|r| r.source != "none") {
                println!("  {:<24} {}", right.permission, right.detail);
            }
            for field in &summary.hidden_fields {
                println!("  hidden field: {field}");
            }
            for field in &summary.read_only_fields {
                println!("  read-only field: {field}");
            }
            for shared in &summary.shared_records {
                println!("  shared with them: {shared}");
            }
        }
    }
    app.db.close().await;
    Ok(())
}

fn parse_record(text: &str) -> anyhow::Result<(Entity, i64)> {
    Entity::parse_ref(text).with_context(|| {
        format!("--record '{text}': name a record as KIND:ID, for example contact:12")
    })
}
