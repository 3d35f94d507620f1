//! The `holdfast` binary: `serve`, `admin create`, `backup …`, `revert`, `upgrade`, `bench`,
//! `config example`, `version`.
//!
//! Commands parse flags, load the layered configuration ([`config`]) and call use cases in
//! `holdfast-app`; they hold no rules of their own.

mod access_cmd;
mod alerts_config;
mod backup_cmd;
mod bench;
mod config;
mod db_cmd;
mod doctor_cmd;
mod revert_cmd;
mod tls_cmd;
mod upgrade_cmd;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use config::{Config, Overrides};
use holdfast_app::{App, SystemClock};
use holdfast_domain::Actor;
use std::io::BufRead as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "holdfast",
    version,
    about = "Self-hosted CRM that never silently loses a customer record"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server (initialises a new database; refuses an outdated one).
    Serve(ServeArgs),
    /// Administer users from the server's console.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Upgrade the database schema to this version of Holdfast, backing it up first.
    Upgrade(UpgradeArgs),
    /// Back up, verify and restore (the whole CRM, or chosen records).
    Backup {
        #[command(subcommand)]
        command: backup_cmd::BackupCommand,
    },
    /// Why can or can't a user do something: the checks, and who can change each.
    Access {
        #[command(subcommand)]
        command: access_cmd::AccessCommand,
    },
    /// Put records back as they were at a time (for example after a mistaken mass change).
    Revert(revert_cmd::RevertArgs),
    /// Check the audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Lock the whole CRM down during an incident (read-only for everyone but administrators,
    /// who confirm each change; every API token suspended), or lift it. Works from the server's
    /// console even when every administrator account is compromised.
    Lockdown {
        #[command(subcommand)]
        command: LockdownCommand,
    },
    /// Incident drills: stage a rogue user on a scratch copy of the data and time detection,
    /// containment and recovery.
    Incident {
        #[command(subcommand)]
        command: IncidentCommand,
    },
    /// The security checklist, scored: transport, encryption, backups and drills, file
    /// permissions, administrators, audit chain, integrity, schema, advisories, alerts. Exit
    /// code 0: nothing unsafe; 1: something unsafe; 2: the database could not be opened.
    Doctor(doctor_cmd::DoctorArgs),
    /// HTTPS certificates: a self-signed one for a LAN install, fingerprints.
    Tls {
        #[command(subcommand)]
        command: tls_cmd::TlsCommand,
    },
    /// The embedded database: encryption at rest.
    Db {
        #[command(subcommand)]
        command: db_cmd::DbCommand,
    },
    /// Measure Holdfast against this machine's own limits on a made-up data set.
    Bench(BenchCli),
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print the version and the database schema version it needs.
    Version,
}

#[derive(Args, Clone)]
struct DbArgs {
    /// Configuration file (default: ./holdfast.toml if present).
    #[arg(long, env = "HOLDFAST_CONFIG")]
    config: Option<PathBuf>,
    /// Folder for the embedded database.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// sqlite://PATH or postgres://USER@HOST/DB; overrides --data-dir.
    #[arg(long)]
    database_url: Option<String>,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    db: DbArgs,
    /// ADDRESS:PORT to listen on (port 0 picks a free one).
    #[arg(long)]
    listen: Option<String>,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create a user (an administrator unless --role manager, rep, auditor or a custom role).
    /// Reads the password from the first line of standard input, so it never appears in the
    /// shell history.
    Create {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long)]
        username: String,
        #[arg(long, default_value = "")]
        display_name: String,
        #[arg(long, default_value = "admin")]
        role: String,
    },
    /// Remove every second factor of a user who lost their phone and their recovery codes, and
    /// end their sessions (audited). For when no other administrator can do it under
    /// Administration → Sign-in; the user enrols again at their next sign-in if their role
    /// requires it.
    ResetSecondFactor {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long)]
        username: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute the audit log's hash chain and name the first entry that was edited, deleted,
    /// inserted, reordered or cut off. Exits 1 when the log was tampered with.
    Verify {
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Subcommand)]
enum IncidentCommand {
    /// Copy the data into a scratch database, let a rogue administrator's stolen token delete
    /// customers until the mass-delete guard stops it, freeze the account, revert what it did,
    /// and record how long each step took (the incident page shows it). The live data is only
    /// read. Exits 1 when a step failed.
    Drill {
        #[command(flatten)]
        db: DbArgs,
        /// Where the scratch copy goes (the system's temporary folder by default).
        #[arg(long)]
        scratch_dir: Option<std::path::PathBuf>,
    },
}

#[derive(Subcommand)]
enum LockdownCommand {
    /// Lock down now; the reason is shown to every user and kept in the audit log.
    On {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long)]
        reason: String,
    },
    /// Lift the lockdown.
    Off {
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Args)]
struct UpgradeArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Only say what would be done: each migration in words, the time and disk it needs, and
    /// how it is rolled back. Changes nothing.
    #[arg(long, alias = "check")]
    plan: bool,
    /// Run the whole upgrade on a copy (SQLite: a checked copy; PostgreSQL: a database copied
    /// on the same server, with every instance stopped), check it, read every record back, and
    /// delete the copy. Changes nothing.
    #[arg(long, conflicts_with = "plan")]
    rehearse: bool,
    /// Put back the data as it was before the last upgrade, from the backup it started from
    /// (through the normal restore, which first backs up what is there now).
    #[arg(long, conflicts_with_all = ["plan", "rehearse"])]
    rollback: bool,
    /// Roll back without asking.
    #[arg(long)]
    yes: bool,
}

#[derive(Args)]
struct BenchCli {
    /// Contacts in the data set (with a company per 10 contacts, a deal and an activity per 10).
    #[arg(long, default_value_t = 1_000_000)]
    contacts: u64,
    /// Write every figure to this JSON file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// An empty PostgreSQL database to fill (default: SQLite in a temporary folder).
    #[arg(long)]
    database_url: Option<String>,
    /// Keep the SQLite data set in this folder instead of a temporary one.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Seconds each measure runs.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print a commented example configuration file with every key and its default.
    Example,
}

/// An exit code other than 1 for scripts, from a command that printed its own report.
#[derive(Debug, Clone, Copy)]
struct Exit(u8);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit code {}", self.0)
    }
}

impl std::error::Error for Exit {}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The command said what was wrong already; only the code is left to give.
        Err(error) if error.downcast_ref::<Exit>().is_some() => {
            let Exit(code) = error.downcast_ref::<Exit>().copied().unwrap_or(Exit(1));
            std::process::ExitCode::from(code)
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let overrides = Overrides {
                listen: args.listen.clone(),
                ..overrides(&args.db)
            };
            let config = Config::load(args.db.config.as_deref(), std::env::vars(), &overrides)?;
            init_logging(&config)?;
            serve(config).await
        }
        Command::Admin {
            command:
                AdminCommand::Create {
                    db,
                    username,
                    display_name,
                    role,
                },
        } => {
            let config = Config::load(db.config.as_deref(), std::env::vars(), &overrides(&db))?;
            admin_create(&config, &username, &display_name, &role).await
        }
        Command::Audit {
            command: AuditCommand::Verify { db },
        } => {
            let config = Config::load(db.config.as_deref(), std::env::vars(), &overrides(&db))?;
            let app = open_app(&config).await?;
            let result = app.db.verify_audit_chain().await;
            let seal = app.db.audit_seal().await?;
            let heads = match (&result, &app.config.audit_head_file) {
                (Ok(_), Some(file)) => Some(holdfast_app::audit_heads::check(&app, file).await),
                _ => None,
            };
            app.db.close().await;
            match (result, heads) {
                (Ok(_), Some(Err(error))) => anyhow::bail!(
                    "the audit log was tampered with: {error:#}. Compare with the newest verified backup (holdfast backup verify) and treat this as an incident"
                ),
                (Ok(entries), heads) => {
                    println!(
                        "The audit log is intact: {entries} entries, each following the one before, ending at the recorded head."
                    );
                    if seal.sealed() {
                        println!(
                            "It is sealed with audit key {} from entry {} on ({}).",
                            seal.key_id,
                            seal.keyed_from,
                            config.audit_key_file()?.display()
                        );
                    }
                    if let (Some(Ok(lines)), Some(file)) = (heads, &app.config.audit_head_file) {
                        println!(
                            "It matches all {lines} heads written outside the database to {}.",
                            file.display()
                        );
                    }
                    Ok(())
                }
                (Err(error), _) => anyhow::bail!(
                    "the audit log was tampered with: {error:#}. Compare with the newest verified backup (holdfast backup verify) and treat this as an incident"
                ),
            }
        }
        Command::Incident {
            command: IncidentCommand::Drill { db, scratch_dir },
        } => {
            let config = Config::load(db.config.as_deref(), std::env::vars(), &overrides(&db))?;
            let app = open_app(&config).await?;
            println!("Incident drill on a scratch copy of the data (the live data is only read)…");
            let drill = holdfast_app::incident::drill(&app, scratch_dir.as_deref()).await;
            app.db.close().await;
            let drill = drill?;
            let seconds = |ms: Option<i64>| ms.unwrap_or(0) as f64 / 1000.0;
            if let Some(ms) = drill.detect_ms {
                println!(
                    "✓ detected: the mass-delete guard stopped the rogue after {} deletes, {:.1} s after its first",
                    drill.deleted,
                    seconds(Some(ms))
                );
            }
            if let Some(ms) = drill.contain_ms {
                println!(
                    "✓ contained: the account was frozen in {:.2} s",
                    seconds(Some(ms))
                );
            }
            if let (Some(ms), Some(restored)) = (drill.recover_ms, drill.restored) {
                let mark = if drill.ok { '✓' } else { '✗' };
                println!(
                    "{mark} recovered: {restored} of {} records came back in {:.1} s",
                    drill.deleted,
                    seconds(Some(ms))
                );
            }
            match &drill.error {
                None => {
                    println!("Recorded; Administration → Incident shows it.");
                    Ok(())
                }
                Some(error) => anyhow::bail!("the incident drill failed: {error}"),
            }
        }
        Command::Lockdown { command } => {
            let (db, reason) = match command {
                LockdownCommand::On { db, reason } => (db, Some(reason)),
                LockdownCommand::Off { db } => (db, None),
            };
            let config = Config::load(db.config.as_deref(), std::env::vars(), &overrides(&db))?;
            let app = open_app(&config).await?;
            let op_id = holdfast_app::random_hex(8)?;
            let lockdown = holdfast_app::containment::set_lockdown_by_operator(
                &app,
                &op_id,
                reason.as_deref(),
            )
            .await
            .map_err(describe)?;
            match lockdown {
                Some(_) => println!(
                    "Holdfast is locked down: read-only for everyone but administrators, who confirm each change; every API token is suspended. Lift it with `holdfast lockdown off`."
                ),
                None => println!("The lockdown is lifted."),
            }
            app.db.close().await;
            Ok(())
        }
        Command::Admin {
            command: AdminCommand::ResetSecondFactor { db, username },
        } => {
            let config = Config::load(db.config.as_deref(), std::env::vars(), &overrides(&db))?;
            let app = open_app(&config).await?;
            let op_id = holdfast_app::random_hex(8)?;
            let removed = holdfast_app::two_factor::reset_by_operator(&app, &op_id, &username)
                .await
                .map_err(describe)?;
            println!(
                "Removed {removed} second factor(s) of '{username}' and ended their sessions; they sign in with their password and enrol again if their role requires it."
            );
            app.db.close().await;
            Ok(())
        }
        Command::Upgrade(args) => {
            let config = Config::load(
                args.db.config.as_deref(),
                std::env::vars(),
                &overrides(&args.db),
            )?;
            if args.rollback {
                return upgrade_cmd::rollback(&config, args.yes).await;
            }
            upgrade_cmd::upgrade(&config, args.plan, args.rehearse).await
        }
        Command::Backup { command } => backup_cmd::run(command).await,
        Command::Revert(args) => revert_cmd::revert(args).await,
        Command::Access { command } => access_cmd::run(command).await,
        Command::Doctor(args) => match doctor_cmd::run(args).await? {
            0 => Ok(()),
            code => Err(Exit(code).into()),
        },
        Command::Tls { command } => tls_cmd::run(command),
        Command::Db { command } => db_cmd::run(command).await,
        Command::Bench(args) => {
            anyhow::ensure!(args.contacts >= 10, "--contacts must be at least 10");
            anyhow::ensure!(
                args.seconds > 0.0 && args.seconds <= 600.0,
                "--seconds must be between 0 and 600"
            );
            bench::run(bench::BenchArgs {
                contacts: args.contacts,
                out: args.out,
                database_url: args.database_url,
                data_dir: args.data_dir,
                seconds: args.seconds,
            })
            .await
        }
        Command::Config {
            command: ConfigCommand::Example,
        } => {
            print!("{}", config::EXAMPLE);
            Ok(())
        }
        Command::Version => {
            println!(
                "holdfast {} (database schema version {})",
                env!("CARGO_PKG_VERSION"),
                holdfast_app::records_schema_version()
            );
            Ok(())
        }
    }
}

fn overrides(db: &DbArgs) -> Overrides {
    Overrides {
        listen: None,
        data_dir: db.data_dir.clone(),
        database_url: db.database_url.clone(),
    }
}

fn init_logging(config: &Config) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level)
        .with_context(|| format!("log.level = {:?} is not a valid filter", config.log.level))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if config.log.format == "json" {
        builder.json().init()
    } else {
        builder.init()
    }
    Ok(())
}

/// Opens the configured database, creating the data folder for SQLite.
async fn open_app(config: &Config) -> anyhow::Result<App> {
    prepare_data_dir(config)?;
    App::open(
        &config.database_url()?,
        config.app_config()?,
        Arc::new(SystemClock),
    )
    .await
}

pub(crate) fn prepare_data_dir(config: &Config) -> anyhow::Result<()> {
    if config.database_url.is_empty() {
        // Only the account running Holdfast may look inside: the database and backups are here.
        let dir = config.absolute_data_dir()?;
        holdfast_app::files::private_dir(&dir)
            .with_context(|| format!("creating the data folder {}", dir.display()))?;
    }
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // Checked before anything is created or opened: plain HTTP on the network is refused.
    let tls = config.tls_files()?;
    let transport = config.transport(tls.as_ref())?;
    prepare_data_dir(&config)?;
    let _lock = if config.database_url.is_empty() {
        let dir = config.absolute_data_dir()?;
        Some(holdfast_app::files::lock_folder(&dir)?.with_context(|| {
            format!(
                "another Holdfast (or `holdfast db …`) is using the data folder {}",
                dir.display()
            )
        })?)
    } else {
        None
    };
    if let Some(path) = config.ensure_backup_key()? {
        println!(
            "Generated the backup key {} (readable by this account only): every backup is encrypted with it.\n\
             Sign in as an administrator and open Administration → Security to print its recovery sheet, and keep it away from this machine.",
            path.display()
        );
    }
    let backups = config.backup_config()?;
    let app = open_app(&config).await?.with_backups(backups.clone());
    let listener = std::net::TcpListener::bind(&config.listen)
        .with_context(|| format!("listening on {}", config.listen))?;
    let address = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let base = if config.public_url.is_empty() {
        format!("{scheme}://{address}")
    } else {
        config.public_url.trim_end_matches('/').to_owned()
    };
    println!(
        "Holdfast {} listening on {scheme}://{address} ({} database{})",
        env!("CARGO_PKG_VERSION"),
        app.db.backend().name(),
        if app.db.key().is_some() {
            ", encrypted"
        } else {
            ""
        }
    );
    match &transport {
        holdfast_app::security::Transport::InsecureHttp { listen } => tracing::warn!(
            listen,
            "serving PLAIN HTTP on the network (insecure_http = true): passwords, cookies and customers can be read by anyone on it"
        ),
        holdfast_app::security::Transport::Tls { cert_file, .. } => println!(
            "Certificate {} (SHA-256 {})",
            cert_file.display(),
            holdfast_web::transport::file_fingerprint(cert_file)?
        ),
        _ => {}
    }
    if let Some(token) = holdfast_app::auth::issue_setup_token(&app).await? {
        println!();
        println!("No users yet. Create the first administrator in the browser:");
        println!("    open {base}/setup and enter the setup code {token}");
        println!("or on this machine:");
        println!(
            "    holdfast admin create --username YOUR_NAME   (add the same --data-dir/--database-url; reads the password from stdin)"
        );
        println!("or over the API with the same one-time code:");
        println!(
            "    curl -X POST {base}/api/v1/setup -H 'Content-Type: application/json' \\\n         -d '{{\"token\":\"{token}\",\"username\":\"YOUR_NAME\",\"password\":\"AT LEAST 10 CHARACTERS\"}}'"
        );
        println!();
    }
    let redirect = match &config.tls.redirect_http_from {
        from if !from.is_empty() && tls.is_some() => {
            let plain = std::net::TcpListener::bind(from)
                .with_context(|| format!("listening on {from} (tls.redirect_http_from)"))?;
            println!(
                "Plain HTTP on http://{} only redirects to HTTPS",
                plain.local_addr()?
            );
            let public = (!config.public_url.is_empty()).then(|| config.public_url.clone());
            Some(tokio::spawn(holdfast_web::transport::serve_redirect(
                plain,
                public,
                address.port(),
                shutdown_signal(),
            )))
        }
        _ => None,
    };
    let purge_app = app.clone();
    let purge_job = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let op_id = holdfast_app::random_hex(8).unwrap_or_default();
            match holdfast_app::records::purge_expired(&purge_app, &op_id).await {
                Ok(0) => {}
                Ok(purged) => tracing::info!(
                    purged,
                    op_id,
                    "recycle bin: purged records past their retention period"
                ),
                Err(error) => tracing::error!(op_id, error = ?error, "recycle bin purge failed"),
            }
        }
    });
    let backup_app = app.clone();
    let backup_job = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            match holdfast_app::backup::schedule::tick(&backup_app).await {
                Ok(Some(run)) => tracing::info!(
                    file = run.file.as_deref().unwrap_or(""),
                    drill_ms = run.drill_ms,
                    drill_error = run.drill_error.as_deref().unwrap_or(""),
                    "scheduled backup taken"
                ),
                Ok(None) => {}
                Err(error) => {
                    tracing::error!(error = %format!("{error:#}"), "scheduled backup failed")
                }
            }
        }
    });
    // Alerts: retries that are due, and conditions nobody acted on (stale backups, damage).
    let alerts_app = app.clone();
    let alerts_job = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            if let Err(error) = holdfast_app::alerts::tick(&alerts_app).await {
                tracing::error!(error = %format!("{error:#}"), "the alerts check failed");
            }
        }
    });
    // The audit chain's head, appended outside the database whenever it moved.
    let heads_app = app.clone();
    let heads_job = tokio::spawn(async move {
        let Some(file) = heads_app.config.audit_head_file.clone() else {
            return;
        };
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            if let Err(error) = holdfast_app::audit_heads::append(&heads_app, &file).await {
                tracing::error!(error = %format!("{error:#}"), "the audit head could not be written out");
            }
        }
    });
    // This instance, as the others and the pages see it: said every minute, withdrawn at stop.
    let instance_id = holdfast_app::random_hex(8)?;
    let started = app.now();
    let instance_app = app.clone();
    let instance_key = instance_id.clone();
    let instance_job = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            let me = holdfast_app::upgrade::this_instance(
                &instance_key,
                started,
                instance_app.now(),
                true,
            );
            if let Err(error) = holdfast_app::upgrade::report_instance(&instance_app.db, &me).await
            {
                tracing::warn!(error = %format!("{error:#}"), "could not record this instance");
            }
        }
    });
    // The start did a quick check; a full one (indexes against their tables too) runs daily.
    let integrity_app = app.clone();
    let integrity_job = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(24 * 3600));
        tick.tick().await;
        loop {
            tick.tick().await;
            let db = &integrity_app.db;
            match db
                .check_integrity(holdfast_app::health::Thoroughness::Full, "daily_check")
                .await
            {
                Ok(None) => tracing::info!("daily integrity check passed"),
                Ok(Some(problem)) => tracing::error!(
                    %problem,
                    "THE DATABASE IS DAMAGED: serving read-only. Restore the newest verified backup (see /readyz)"
                ),
                Err(error) => {
                    tracing::warn!(error = %format!("{error:#}"), "daily integrity check could not run")
                }
            }
        }
    });
    holdfast_web::serve(listener, app.clone(), tls, shutdown_signal())
        .await
        .context("serving")?;
    if let Some(redirect) = redirect {
        redirect.abort();
    }
    purge_job.abort();
    backup_job.abort();
    alerts_job.abort();
    heads_job.abort();
    if let Some(file) = &app.config.audit_head_file
        && let Err(error) = holdfast_app::audit_heads::append(&app, file).await
    {
        tracing::error!(error = %format!("{error:#}"), "the audit head could not be written out");
    }
    integrity_job.abort();
    instance_job.abort();
    if let Err(error) = app.db.instance_gone(&instance_id).await {
        tracing::warn!(error = %format!("{error:#}"), "could not withdraw this instance");
    }
    if backups.on_shutdown {
        tracing::info!("taking the shutdown backup");
        match holdfast_app::backup::schedule::run(&app, "shutdown").await {
            Ok(run) => tracing::info!(
                file = run.file.as_deref().unwrap_or(""),
                "shutdown backup taken"
            ),
            Err(error) => tracing::error!(error = %format!("{error:#}"), "shutdown backup failed"),
        }
    }
    app.db.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

async fn admin_create(
    config: &Config,
    username: &str,
    display_name: &str,
    role: &str,
) -> anyhow::Result<()> {
    let mut password = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut password)
        .context("reading the password from standard input")?;
    let password = password.trim_end_matches(['\r', '\n']);
    let app = open_app(config).await?;
    let roles = app.access_config().await?;
    if roles.role(role).is_none() {
        let known: Vec<&str> = roles.roles.iter().map(|r| r.key.as_str()).collect();
        anyhow::bail!("--role must be one of: {}", known.join(", "));
    }
    let op_id = holdfast_app::random_hex(8)?;
    let user = holdfast_app::users::create_user_unchecked(
        &app,
        &Actor::system(),
        &op_id,
        username,
        display_name,
        password,
        role,
    )
    .await
    .map_err(describe)?;
    println!(
        "Created {} '{}' (id {}). Log in with POST /api/v1/auth/login.",
        role, user.username, user.id
    );
    app.db.close().await;
    Ok(())
}

/// Makes a use-case error readable on a console.
fn describe(error: holdfast_app::AppError) -> anyhow::Error {
    match error {
        holdfast_app::AppError::Invalid(fields) => anyhow::anyhow!("{fields}"),
        holdfast_app::AppError::Internal(error) => error,
        other => anyhow::anyhow!("{other}"),
    }
}
