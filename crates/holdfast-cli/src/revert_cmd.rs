//! `holdfast revert`: puts records back as they were at a time — everyone's changes since then,
//! or one user's — on an administrator's authority, after showing what will change.

use crate::DbArgs;
use crate::backup_cmd::{confirm, describe, load, open_app, parse_time};
use anyhow::Context as _;
use clap::Args;
use holdfast_app::App;
use holdfast_domain::Timestamp;

#[derive(Args)]
pub struct RevertArgs {
    #[command(flatten)]
    target: DbArgs,
    /// Put records back as they were at this time, e.g. 2026-12-01T09:00:00+08:00.
    #[arg(long)]
    to: String,
    /// Only changes made by this user (a rogue or mistaken mass change).
    #[arg(long)]
    by: Option<String>,
    /// Only changes made through this API token (its number, as the timeline shows it); the
    /// tokens and users it made are revoked and deactivated too.
    #[arg(long, conflicts_with = "by")]
    token: Option<i64>,
    /// The administrator on whose authority this runs; the revert is recorded as theirs, with
    /// the operating-system user who ran the command.
    #[arg(long = "as", value_name = "USERNAME")]
    as_user: String,
    /// What to do where someone else changed the same thing later: keep their change, or
    /// revert it too.
    #[arg(long, default_value = "keep", value_parser = ["keep", "revert"])]
    conflicts: String,
    /// Only list what would be reverted.
    #[arg(long)]
    dry_run: bool,
    /// Revert without asking.
    #[arg(long)]
    yes: bool,
}

pub async fn revert(args: RevertArgs) -> anyhow::Result<()> {
    let config = load(&args.target)?;
    let to = parse_time(&args.to, "--to")?;
    let app = open_app(&config).await?;
    let result = revert_with(&app, &args, to).await;
    app.db.close().await;
    result
}

/// The operating-system user running this command, for the record.
fn os_user() -> String {
    ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "unknown".into())
}

async fn revert_with(app: &App, args: &RevertArgs, to: Timestamp) -> anyhow::Result<()> {
    let user_id = |name: &str| {
        let name = name.to_owned();
        async move {
            app.db
                .user_by_username(&name)
                .await?
                .with_context(|| format!("there is no user {name:?}"))
        }
    };
    let operator = user_id(&args.as_user).await?;
    let actor = holdfast_app::auth::operator_actor(app, &operator)
        .await
        .map_err(describe)?;
    if !actor.is_admin() || !operator.active {
        anyhow::bail!(
            "{} is not an active administrator: a revert runs on an administrator's authority (--as)",
            args.as_user
        );
    }
    let by = match &args.by {
        Some(name) => Some(user_id(name).await?.id),
        None => None,
    };
    let request = holdfast_app::revert::Request {
        to,
        by,
        token: args.token,
        conflicts: holdfast_app::revert::Choice::parse(&args.conflicts)
            .context("--conflicts takes keep or revert")?,
        choices: Default::default(),
        note: Some(format!(
            "run on the server console by operating-system user {}",
            os_user()
        )),
    };
    let preview = holdfast_app::revert::preview(app, &actor, &request)
        .await
        .map_err(describe)?;
    print_revert(&preview);
    let counts = preview.counts();
    let undoes = preview.made.iter().any(holdfast_app::revert::Made::undoes);
    if args.dry_run || (counts.changing == 0 && !undoes) {
        return Ok(());
    }
    if !args.yes && !confirm("Carry out this revert?")? {
        anyhow::bail!("not reverted: run again with --yes to revert");
    }
    let op_id = holdfast_app::random_hex(8)?;
    let done = holdfast_app::revert::apply(app, &actor, &op_id, &request)
        .await
        .map_err(describe)?;
    let counts = done.counts();
    let taken_back = done.made.iter().filter(|m| m.undoes()).count();
    if taken_back > 0 {
        println!("Took back {taken_back} tokens, users, roles, access changes and grants.");
    }
    println!(
        "Reverted {} records as new versions by {} (op {op_id}): {} fields put back, {} restored from the recycle bin, {} moved to it; {} conflicts kept, {} records unchanged",
        counts.changing,
        args.as_user,
        counts.fields,
        counts.restored,
        counts.deleted,
        counts.conflicts,
        counts.unchanged
    );
    Ok(())
}

/// The preview, one line per record and one per field or conflict.
fn print_revert(preview: &holdfast_app::revert::Preview) {
    for item in &preview.items {
        let what = match item.unchanged {
            Some(reason) => format!(
                "unchanged ({})",
                serde_json::json!(reason).as_str().unwrap_or("")
            ),
            None => item.action().replace('_', " "),
        };
        println!("  {} {} {}: {what}", item.entity, item.id, item.title);
        for field in &item.plan.fields {
            println!("      {}: {} -> {}", field.field, field.from, field.to);
        }
        for conflict in &item.plan.conflicts {
            println!(
                "      conflict, kept: {} was {} then, this user set {}, user {} set {} later",
                conflict.field,
                conflict.value_then,
                conflict.user_value,
                conflict.later_by,
                conflict.later_value
            );
        }
    }
    for made in &preview.made {
        println!("  also: {}", made_text(made));
    }
    let counts = preview.counts();
    println!(
        "{} records changed since {}: {} will change ({} fields, {} restored, {} to the recycle bin), {} conflicts kept, {} unchanged",
        counts.records,
        preview.to.to_rfc3339(),
        counts.changing,
        counts.fields,
        counts.restored,
        counts.deleted,
        counts.conflicts,
        counts.unchanged
    );
}

/// One thing a revert takes back besides records (or leaves, and why), in words.
fn made_text(made: &holdfast_app::revert::Made) -> String {
    let (name, id, detail) = (&made.name, made.id, &made.detail);
    match made.kind {
        "token" => format!("API token \"{name}\" (#{id}) made in this time: revoked"),
        "user" => format!("user {name} (#{id}) made in this time: deactivated"),
        "access" => format!("user {name} (#{id}): role and team put back ({detail})"),
        "access_kept" => {
            format!("user {name} (#{id}): access changed again since, left as it is ({detail})")
        }
        "grant" => format!("access granted to {name} (request #{id}, {detail}): revoked"),
        "role" => format!("role {name} made in this time: deleted"),
        "role_edit" => format!("role {name} changed in this time: put back as it was"),
        "role_changed" => {
            format!("role {name}: changed again since by someone else, left as it is")
        }
        _ => format!("role {name} made in this time: still given to {detail}, left as it is"),
    }
}
