//! The backup page: whether backups are healthy (and why not), the recent backups with their
//! restore drills, "back up now", and bringing deleted customers back from a backup.
//! Administrators only (the use cases check it); the database-health alert is for everyone.

use super::layout::{bar_chart, csrf_field, empty, frame};
use super::{Form, OrPage, Page, PageResult, error_page, html, redirect};
use crate::WebState;
use crate::error::current_op_id;
use crate::i18n::Tr;
use axum::extract::{Path, Query, State};
use holdfast_app::AppError;
use holdfast_app::backup::{self, Job, Selection};
use holdfast_app::health::FaultKind;
use holdfast_domain::{Entity, Timestamp};
use maud::{Markup, html};
use std::collections::HashMap;

fn size(tr: &Tr, bytes: Option<i64>) -> String {
    match bytes {
        None => "—".into(),
        Some(b) if b < 1 << 20 => format!("{} KB", tr.number((b + 1023) / 1024)),
        Some(b) => format!("{:.1} MB", b as f64 / f64::from(1 << 20)),
    }
}

/// `12-01 06:00`: short enough for a chart label in either language.
fn short_time(tr: &Tr, micros: i64) -> String {
    let full = tr.datetime_input(Timestamp(micros));
    full.get(5..).unwrap_or(&full).replace('T', " ")
}

fn seconds(ms: i64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

pub async fn backups_page(State(state): State<WebState>, page: Page) -> PageResult {
    let tr = &page.tr;
    let (status, runs) = backup::overview(&state.app, &page.actor)
        .await
        .or_page(tr)?;
    let at = |micros: i64| tr.datetime(Timestamp(micros));
    // Drill durations are the recovery time: how long bringing the whole CRM back takes.
    let drills: Vec<(String, i64, String)> = runs
        .iter()
        .filter_map(|run| Some((run, run.drill_ms?)))
        .take(10)
        .map(|(run, ms)| (short_time(tr, run.started_at), ms, seconds(ms)))
        .collect();
    let database = database_alert(&state, &page).await;
    let instances = holdfast_app::upgrade::instances(&state.app)
        .await
        .map_err(holdfast_app::AppError::Internal)
        .or_page(tr)?;
    let body = html! {
        (database)
        // An upgrade waiting is news: on top. Otherwise the instances are a footnote.
        @if instances.upgrade_waiting.is_some() { (instances_card(&page, &instances, state.app.now())) }
        @if status.state == "off" {
            section.card.alert role="alert" { p { (tr.t("backup.off")) } }
        } @else {
            section.card.status.(if status.state == "ok" { "good" } else { "bad" }) role=[(status.state != "ok").then_some("alert")] {
                h2 { @if status.state == "ok" { (tr.t("backup.state_ok")) } @else { (tr.t("backup.state_red")) } }
                @if !status.problems.is_empty() {
                    ul { @for problem in &status.problems { li { (tr.f(&format!("backup.problem.{problem}"), &[("hours", &(status.every_minutes * 2 / 60))])) } } }
                }
                dl.facts {
                    dt { (tr.t("backup.last_good")) }
                    dd { @if let Some(run) = &status.last_good { (at(run.started_at)) } @else { "—" } }
                    dt { (tr.t("backup.last_drill")) }
                    dd { @if let Some(run) = &status.last_drill {
                        (at(run.drill_at.unwrap_or(run.started_at)))
                        " · " @if run.drill_error.is_some() { strong { (tr.t("backup.failed")) } } @else { (tr.t("backup.passed")) }
                    } @else { "—" } }
                    dt { (tr.t("backup.schedule")) }
                    dd { @if status.every_minutes > 0 { (tr.f("backup.every", &[("hours", &(status.every_minutes as f64 / 60.0))])) } @else { (tr.t("backup.on_demand")) } }
                }
                @if !status.encrypted {
                    p.warning role="alert" { strong { (tr.t("backup.unencrypted")) } }
                }
                @if let Some(running) = &status.running {
                    div.progress {
                        p { (tr.f("backup.running", &[("phase", &tr.or(&format!("backup.phase.{}", running.phase), &running.phase)), ("done", &tr.number(running.rows_done as i64)), ("total", &tr.number(running.rows_total as i64))])) }
                        progress max=(running.rows_total.max(1)) value=(running.rows_done) {}
                        meta http-equiv="refresh" content="2";
                    }
                } @else {
                    form method="post" action="/admin/backups/run" {
                        (csrf_field(&page.csrf))
                        button.primary type="submit" { (tr.t("backup.run_now")) }
                    }
                }
            }
        }
        @if !drills.is_empty() {
            section.card {
                h2 { (tr.t("backup.recovery_time")) }
                (bar_chart(tr.t("backup.recovery_time"), &drills))
            }
        }
        section.card {
            h2 { (tr.t("backup.history")) }
            @if runs.is_empty() { (empty(tr, "backup.none")) } @else {
                div.table-wrap { table.list {
                    thead { tr {
                        th { (tr.t("backup.taken")) } th { (tr.t("backup.why")) } th.num { (tr.t("backup.rows")) }
                        th.num { (tr.t("backup.size")) } th { (tr.t("backup.drill")) } th { (tr.t("table.actions")) }
                    } }
                    tbody {
                        @for run in &runs {
                            tr.failed[run.error.is_some() || run.drill_error.is_some()] {
                                td { (at(run.started_at)) @if run.encrypted { " · " small { (tr.t("backup.encrypted")) } } }
                                td { (tr.or(&format!("backup.reason.{}", run.reason), &run.reason)) }
                                td.num { (run.rows_total.map(|n| tr.number(n)).unwrap_or_else(|| "—".into())) }
                                td.num { (size(tr, run.bytes)) }
                                td {
                                    @if let Some(error) = &run.error { strong { (tr.t("backup.failed")) } ": " (error) }
                                    @else if let Some(error) = &run.drill_error { strong { (tr.t("backup.drill_failed")) } ": " (error) }
                                    @else if let Some(ms) = run.drill_ms { (tr.t("backup.passed")) " · " (seconds(ms)) }
                                    @else if run.finished_at.is_none() { (tr.t("backup.unfinished")) }
                                    @else { (tr.t("backup.not_drilled")) }
                                }
                                td.actions {
                                    @if run.file.is_some() && run.error.is_none() {
                                        a href=(format!("/admin/backups/{}", run.id)) { (tr.t("backup.restore_from")) }
                                        form.inline method="post" action=(format!("/admin/backups/{}/drill", run.id)) {
                                            (csrf_field(&page.csrf))
                                            button type="submit" { (tr.t("backup.drill_again")) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                } }
            }
        }
        @if instances.upgrade_waiting.is_none() { (instances_card(&page, &instances, state.app.now())) }
    };
    Ok(html(
        frame(&page, tr.t("backup.title"), "backups", body),
        &page.csrf,
        page.new_csrf,
    ))
}

/// The Holdfast instances on this database, and an upgrade some of them wait for.
fn instances_card(
    page: &Page,
    instances: &holdfast_app::upgrade::Instances,
    now: Timestamp,
) -> Markup {
    let tr = &page.tr;
    let quiet = now.plus_seconds(-holdfast_app::upgrade::QUIET_AFTER_MINUTES * 60);
    html! {
        section.card id="instances" {
            h2 { (tr.t("backup.instances")) }
            @if let Some(waiting) = &instances.upgrade_waiting {
                p.warning role="alert" {
                    strong { (tr.f("backup.upgrade_waiting", &[("host", &waiting.host), ("version", &waiting.holdfast_version), ("wanted", &waiting.schema_wanted), ("schema", &instances.schema)])) }
                    " " (tr.t("backup.upgrade_how"))
                }
            }
            @if instances.instances.is_empty() { p { (tr.t("backup.instances_none")) } } @else {
                div.table-wrap { table.list {
                    thead { tr {
                        th { (tr.t("backup.instance_host")) } th { (tr.t("backup.instance_version")) }
                        th.num { (tr.t("backup.instance_schema")) } th { (tr.t("backup.instance_state")) }
                    } }
                    tbody {
                        @for instance in &instances.instances {
                            tr {
                                td { (instance.host) }
                                td { (instance.holdfast_version) }
                                td.num { (instance.schema_wanted) }
                                td {
                                    @if !instance.serving { strong { (tr.t("backup.instance_refused")) } }
                                    @else if instance.seen_at < quiet { (tr.f("backup.instance_quiet", &[("at", &tr.datetime(instance.seen_at))])) }
                                    @else { (tr.f("backup.instance_serving", &[("at", &tr.datetime(instance.started_at))])) }
                                }
                            }
                        }
                    }
                } }
            }
        }
    }
}

pub async fn run_post(State(state): State<WebState>, page: Page, _form: Form) -> PageResult {
    backup::start(&state.app, &page.actor, Job::Backup).or_page(&page.tr)?;
    Ok(redirect("/admin/backups", "backup_started"))
}

pub async fn drill_post(
    State(state): State<WebState>,
    page: Page,
    Path(id): Path<String>,
    _form: Form,
) -> PageResult {
    let id = run_id(&page.tr, &id)?;
    backup::start(&state.app, &page.actor, Job::Drill(id)).or_page(&page.tr)?;
    Ok(redirect("/admin/backups", "drill_started"))
}

fn run_id(tr: &Tr, text: &str) -> Result<i64, axum::response::Response> {
    text.parse()
        .map_err(|_| error_page(tr, AppError::not_found(format!("backup {text}"))))
}

/// One backup: the records in it that are in the recycle bin or gone now, to bring back.
pub async fn backup_page(
    State(state): State<WebState>,
    page: Page,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> PageResult {
    let tr = &page.tr;
    let id = run_id(tr, &id)?;
    let run = backup::recorded_run(&state.app, &page.actor, id)
        .await
        .or_page(tr)?;
    let taken = Timestamp(run.started_at);
    let since = query
        .get("deleted_since")
        .and_then(|text| tr.parse_datetime_input(text))
        .and_then(|text| Timestamp::parse_rfc3339(&text))
        .unwrap_or(taken);
    let found =
        backup::candidates_in_run(&state.app, &page.actor, id, &Selection::DeletedSince(since))
            .await
            .or_page(tr)?;
    let body = html! {
        p { a href="/admin/backups" { (tr.t("backup.back")) } }
        p { (tr.f("backup.explain_restore", &[("taken", &tr.datetime(taken))])) }
        form.inline method="get" action=(format!("/admin/backups/{id}")) {
            label { (tr.t("backup.deleted_since")) " "
                input type="datetime-local" name="deleted_since" value=(tr.datetime_input(since));
            }
            button type="submit" { (tr.t("action.show")) }
        }
        @if found.is_empty() { (empty(tr, "backup.nothing_to_restore")) } @else {
            form method="post" action=(format!("/admin/backups/{id}/restore")) {
                (csrf_field(&page.csrf))
                div.table-wrap { table.list {
                    thead { tr { th { (tr.t("backup.pick")) } th { (tr.t("bin.kind")) } th { (tr.t("bin.what")) } th { (tr.t("backup.state_now")) } } }
                    tbody {
                        @for candidate in &found {
                            @let key = format!("pick.{}.{}", candidate.entity.name(), candidate.id);
                            tr {
                                td { input type="checkbox" name=(key) id=(key) value="on" checked; }
                                td { (tr.t(&format!("entity.{}.one", candidate.entity.name()))) }
                                td { label for=(key) { (candidate.title) } }
                                td { (tr.t(&format!("backup.now.{}", candidate.now))) }
                            }
                        }
                    }
                } }
                button.primary type="submit" { (tr.t("backup.restore_selected")) }
            }
        }
    };
    Ok(html(
        frame(
            &page,
            &tr.f("backup.title_one", &[("taken", &tr.datetime(taken))]),
            "backups",
            body,
        ),
        &page.csrf,
        page.new_csrf,
    ))
}

pub async fn restore_post(
    State(state): State<WebState>,
    page: Page,
    Path(id): Path<String>,
    form: Form,
) -> PageResult {
    let tr = &page.tr;
    backup::require(&page.actor).or_page(tr)?;
    let id = run_id(tr, &id)?;
    let mut picked: Vec<(Entity, i64)> = form
        .0
        .keys()
        .filter_map(|key| {
            let rest = key.strip_prefix("pick.")?;
            let (entity, record) = rest.split_once('.')?;
            Some((Entity::from_name(entity)?, record.parse().ok()?))
        })
        .collect();
    picked.sort_unstable();
    if picked.is_empty() {
        return Ok(redirect(&format!("/admin/backups/{id}"), "nothing_picked"));
    }
    backup::restore_from_run(
        &state.app,
        &page.actor,
        &current_op_id(),
        id,
        &Selection::Ids(picked),
    )
    .await
    .or_page(tr)?;
    Ok(redirect(
        &format!("/admin/backups/{id}"),
        "records_restored",
    ))
}

/// The banner on an administrator's home page when backups are red.
pub async fn alert(state: &WebState, page: &Page) -> Markup {
    let tr = &page.tr;
    let Ok((status, _)) = backup::overview(&state.app, &page.actor).await else {
        return html! {};
    };
    if status.state != "red" {
        return html! {};
    }
    html! {
        section.card.alert role="alert" {
            h2 { (tr.t("backup.state_red")) }
            ul { @for problem in &status.problems { li { (tr.f(&format!("backup.problem.{problem}"), &[("hours", &(status.every_minutes * 2 / 60))])) } } }
            p { a href="/admin/backups" { (tr.t("backup.open_page")) } }
        }
    }
}

/// The database's own health, for everyone on the home page and on the Backups page: a damaged
/// database (read-only) or a full disk, with what found it; administrators also see how to
/// recover. Nothing when all is well.
pub async fn database_alert(state: &WebState, page: &Page) -> Markup {
    let tr = &page.tr;
    let health = holdfast_app::db_health::status(&state.app).await;
    let Some(fault) = health.faults.first() else {
        return html! {};
    };
    let found_by = tr
        .t(&format!("database.found_by.{}", fault.found_by))
        .to_owned();
    let at = tr.datetime(Timestamp(fault.at));
    let (title, detail) = match fault.kind {
        FaultKind::Corrupt => (
            tr.t("database.read_only"),
            tr.f(
                "database.read_only_detail",
                &[
                    ("found_by", &found_by),
                    ("at", &at),
                    ("detail", &fault.detail),
                ],
            ),
        ),
        FaultKind::DiskFull => (
            tr.t("database.disk_full"),
            tr.f(
                "database.disk_full_detail",
                &[("at", &at), ("detail", &fault.detail)],
            ),
        ),
    };
    let recovery = health.recovery.as_ref().filter(|_| page.actor.is_admin());
    html! {
        section.card.status.bad role="alert" id="database-health" {
            h2 { (title) }
            p { (detail) }
            @if let Some(recovery) = recovery {
                @if let (Some(file), Some(taken)) = (&recovery.backup, &recovery.taken_at) {
                    p { (tr.f("database.recover_from", &[("file", file), ("taken", taken)])) }
                } @else {
                    p { (tr.t("database.no_backup")) }
                }
                p { (tr.t("database.recover")) }
                pre { code { (recovery.command) } }
            }
        }
    }
}
