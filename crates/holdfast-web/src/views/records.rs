//! Lists, detail pages with their timeline, create and edit forms, delete, history with
//! field-by-field differences and "restore this version" — for all four kinds of record.
//!
//! Forms post field values as people type them (amounts as `1,234.50`, times in the team's
//! time zone); [`input_from_form`] turns them into the JSON input the use cases take, so the
//! pages and the API share every rule after that point.

use super::layout::{csrf_field, empty, frame, multiline};
use super::{
    Form, OrPage, Page, PageResult, error_message, error_page, html, html_status, redirect,
};
use crate::WebState;
use crate::error::current_op_id;
use crate::i18n::{Tr, parse_money_input};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use holdfast_app::records::{self, Change};
use holdfast_app::{AppError, settings};
use holdfast_domain::Right;
use holdfast_domain::entity::{FieldDef, FieldKind};
use holdfast_domain::record::diff;
use holdfast_domain::{Entity, FieldErrors, Record, Timestamp};
use maud::{Markup, html};
use serde_json::{Map, Value};
use std::collections::HashMap;

type Pipelines = Vec<(String, String, Vec<String>)>;

/// The entity a page path names, or the page to show instead.
fn entity_of(tr: &Tr, collection: &str) -> Result<Entity, Response> {
    if collection == "api" {
        return Err(crate::error::ApiError::bad_request(
            StatusCode::NOT_FOUND,
            "not_found",
            "No such endpoint; see /api/v1/openapi.json",
        ));
    }
    Entity::from_plural(collection).ok_or_else(|| {
        error_page(
            tr,
            AppError::not_found(collection.chars().take(40).collect::<String>()),
        )
    })
}

fn target(tr: &Tr, collection: &str, id: &str) -> Result<(Entity, i64), Response> {
    let entity = entity_of(tr, collection)?;
    match id.parse::<i64>() {
        Ok(id) if id > 0 => Ok((entity, id)),
        _ => Err(error_page(
            tr,
            AppError::not_found(format!(
                "{} {}",
                entity.name(),
                id.chars().take(40).collect::<String>()
            )),
        )),
    }
}

fn label<'a>(tr: &Tr, entity: Entity, field: &'a str) -> &'a str {
    tr.or(&format!("field.{}.{field}", entity.name()), field)
}

fn entity_label(tr: &Tr, entity: Entity, many: bool) -> &'static str {
    let key = format!(
        "entity.{}.{}",
        entity.name(),
        if many { "many" } else { "one" }
    );
    tr.get(&key).unwrap_or(entity.plural())
}

fn stage_label<'a>(tr: &Tr, stage: &'a str) -> &'a str {
    tr.or(&format!("stage.{stage}"), stage)
}

/// Columns shown in each list, after the title.
fn list_columns(entity: Entity) -> &'static [&'static str] {
    match entity {
        Entity::Company => &["industry", "phone", "email"],
        Entity::Contact => &["company_id", "title", "mobile", "email"],
        Entity::Deal => &["company_id", "stage", "status", "amount_minor"],
        Entity::Activity => &["kind", "due_at", "done_at", "contact_id", "company_id"],
    }
}

/// Linked titles for every reference field shown in `items`, one query per linked kind.
async fn link_titles(
    state: &WebState,
    page: &Page,
    items: &[&Record],
) -> Result<HashMap<(Entity, i64), String>, AppError> {
    let mut wanted: HashMap<Entity, Vec<i64>> = HashMap::new();
    for record in items {
        for def in record.entity.fields() {
            if let (FieldKind::Ref(target), Some(id)) = (def.kind, record.field_i64(def.name)) {
                wanted.entry(target).or_default().push(id);
            }
        }
    }
    let mut out = HashMap::new();
    for (target, ids) in wanted {
        for (id, title) in records::titles(&state.app, &page.actor, target, &ids).await? {
            out.insert((target, id), title);
        }
    }
    Ok(out)
}

/// A field value as a person reads it.
fn show_value(
    tr: &Tr,
    record: &Record,
    def: &FieldDef,
    titles: &HashMap<(Entity, i64), String>,
) -> Markup {
    let value = record.fields.get(def.name).unwrap_or(&Value::Null);
    if value.is_null() {
        return html! { span.none { "—" } };
    }
    match def.kind {
        FieldKind::Ref(target) => {
            let id = value.as_i64().unwrap_or(0);
            let title = titles
                .get(&(target, id))
                .cloned()
                .unwrap_or_else(|| format!("#{id}"));
            html! { a href=(format!("/{}/{id}", target.plural())) { (title) } }
        }
        FieldKind::Integer { .. } if def.name == "amount_minor" => {
            let currency = record.field_str("currency").unwrap_or("CNY");
            html! { (tr.money(value.as_i64().unwrap_or(0), currency)) }
        }
        _ => plain_value(tr, def, value),
    }
}

/// A value without links (history, conflicts): references show as `#id`.
fn plain_value(tr: &Tr, def: &FieldDef, value: &Value) -> Markup {
    let text = match value {
        Value::Null => return html! { span.none { "—" } },
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    match def.kind {
        FieldKind::Timestamp => match Timestamp::parse_rfc3339(&text) {
            Some(at) => html! { (tr.datetime(at)) },
            None => html! { (text) },
        },
        FieldKind::Date => html! { (tr.date(&text)) },
        FieldKind::Choice(_) => html! { (tr.or(&format!("choice.{}.{text}", def.name), &text)) },
        FieldKind::Integer { .. } if def.name == "amount_minor" => {
            html! { (tr.money(value.as_i64().unwrap_or(0), "")) }
        }
        FieldKind::Integer { .. } => html! { (tr.number(value.as_i64().unwrap_or(0))) },
        FieldKind::Ref(target) => html! { (entity_label(tr, target, false)) " #" (text) },
        FieldKind::LongText { .. } => multiline(&text),
        FieldKind::Email => html! { a href=(format!("mailto:{text}")) { (text) } },
        FieldKind::Phone => html! { a href=(format!("tel:{}", text.replace(' ', ""))) { (text) } },
        _ if def.name == "stage" => html! { (stage_label(tr, &text)) },
        _ => html! { (text) },
    }
}

/// A `datetime-local` value in the team's time zone, or the field error a page shows.
pub fn parse_local_time(tr: &Tr, text: &str, field: &str) -> Result<Timestamp, AppError> {
    tr.parse_datetime_input(text)
        .and_then(|rfc| Timestamp::parse_rfc3339(&rfc))
        .ok_or_else(|| AppError::invalid(field, "invalid_time", "Not a date and time"))
}

// ---- lists ------------------------------------------------------------------------------------

/// Query parameters a list page passes on to the use case.
fn list_params(
    entity: Entity,
    page: &Page,
    query: &HashMap<String, String>,
) -> Vec<(String, String)> {
    let mut params = Vec::new();
    for key in ["q", "sort", "cursor"] {
        if let Some(value) = query.get(key).filter(|v| !v.trim().is_empty()) {
            params.push((key.to_owned(), value.clone()));
        }
    }
    if query.get("owner").map(String::as_str) == Some("mine") {
        params.push(("owner_id".into(), page.actor.user_id.to_string()));
    }
    for filter in records::list_filters(entity) {
        if let Some(value) = query.get(filter).filter(|v| !v.trim().is_empty()) {
            params.push((filter.to_owned(), value.trim().to_owned()));
        }
    }
    params
}

pub async fn list_page(
    State(state): State<WebState>,
    page: Page,
    Path(collection): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> PageResult {
    let entity = entity_of(&page.tr, &collection)?;
    let body = match query.get("as_of").filter(|t| !t.is_empty()) {
        Some(at) => as_of_body(&state, &page, entity, at, &query).await,
        None => list_body(&state, &page, entity, &query).await,
    };
    Ok(match body {
        Ok(body) => html(
            frame(
                &page,
                entity_label(&page.tr, entity, true),
                entity.plural(),
                body,
            ),
            &page.csrf,
            page.new_csrf,
        ),
        Err(error) => error_page(&page.tr, error),
    })
}

async fn list_body(
    state: &WebState,
    page: &Page,
    entity: Entity,
    query: &HashMap<String, String>,
) -> Result<Markup, AppError> {
    let tr = &page.tr;
    let params = list_params(entity, page, query);
    let (items, next_cursor, problems) =
        match records::list(&state.app, &page.actor, entity, &params).await {
            Ok(found) => (found.items, found.next_cursor, FieldErrors::default()),
            Err(AppError::Invalid(errors)) => (Vec::new(), None, errors),
            Err(error) => return Err(error),
        };
    let refs: Vec<&Record> = items.iter().map(|item| &**item).collect();
    let titles = link_titles(state, page, &refs).await?;
    let columns = list_columns(entity);
    let q = query.get("q").cloned().unwrap_or_default();
    let sort = query.get("sort").cloned().unwrap_or_default();
    let mut sorts = vec![
        ("", "sort.updated_desc"),
        ("-created_at", "sort.created_desc"),
    ];
    if entity.sortable().contains(&"name") {
        sorts.push(("name", "sort.name"));
    }
    if entity == Entity::Activity {
        sorts.push(("subject", "sort.subject"));
    }
    if entity == Entity::Deal {
        sorts.push(("-amount_minor", "sort.amount_desc"));
    }
    let choice_filters: Vec<&FieldDef> = entity
        .fields()
        .iter()
        .filter(|def| matches!(def.kind, FieldKind::Choice(_)))
        .collect();
    let pipelines = if entity == Entity::Deal {
        settings::pipelines(&state.app, &page.actor).await?
    } else {
        Vec::new()
    };
    // Keep filters when paging; only the cursor changes.
    let mut next_query: Vec<(String, String)> = query
        .iter()
        .filter(|(k, v)| k.as_str() != "cursor" && k.as_str() != "notice" && !v.is_empty())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    next_query.sort();
    let can_export = page
        .actor
        .can((holdfast_domain::Module::Exports, Right::Export))
        && page
            .actor
            .can((holdfast_domain::Module::of(entity), Right::Export));
    let export_href = {
        let encoded: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(next_query.iter())
            .finish();
        format!("/{}/export?{encoded}", entity.plural())
    };
    let next_href = next_cursor.as_ref().map(|cursor| {
        let mut pairs = next_query.clone();
        pairs.push(("cursor".into(), cursor.clone()));
        let encoded: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        format!("/{}?{encoded}", entity.plural())
    });
    Ok(html! {
        div.toolbar {
            form.filters role="search" method="get" action=(format!("/{}", entity.plural())) {
                label { span.sr { (tr.t("list.search")) }
                    input type="search" name="q" value=(q) placeholder=(tr.t("list.search_placeholder"));
                }
                @for def in &choice_filters {
                    @if let FieldKind::Choice(values) = def.kind {
                        label { span.sr { (label(tr, entity, def.name)) }
                            select name=(def.name) {
                                option value="" { (label(tr, entity, def.name)) ": " (tr.t("list.any")) }
                                @for value in values {
                                    option value=(value) selected[query.get(def.name).map(String::as_str) == Some(*value)] {
                                        (tr.or(&format!("choice.{}.{value}", def.name), value))
                                    }
                                }
                            }
                        }
                    }
                }
                @if entity == Entity::Deal {
                    label { span.sr { (tr.t("field.deal.stage")) }
                        select name="stage" {
                            option value="" { (tr.t("field.deal.stage")) ": " (tr.t("list.any")) }
                            @for (_, _, stages) in &pipelines {
                                @for stage in stages {
                                    option value=(stage) selected[query.get("stage") == Some(stage)] { (stage_label(tr, stage)) }
                                }
                            }
                        }
                    }
                }
                label { span.sr { (tr.t("list.owner")) }
                    select name="owner" {
                        option value="" { (tr.t("list.everyone")) }
                        option value="mine" selected[query.get("owner").map(String::as_str) == Some("mine")] { (tr.t("list.mine")) }
                    }
                }
                label { span.sr { (tr.t("list.sort")) }
                    select name="sort" {
                        @for (value, key) in &sorts {
                            option value=(value) selected[sort == *value] { (tr.t(key)) }
                        }
                    }
                }
                button type="submit" { (tr.t("list.apply")) }
            }
            @if can_export {
                a.button href=(export_href) download { (tr.t("list.export")) }
            }
            a.button.primary href=(format!("/{}/new", entity.plural())) { (tr.t(&format!("list.new.{}", entity.name()))) }
        }
        @if can_export { p.hint id="export-note" { (tr.t("awareness.export")) } }
        @if !problems.is_empty() {
            div.problems role="alert" {
                ul { @for e in &problems.0 { li { (error_message(tr, e.code, &e.message)) } } }
            }
        }
        @if items.is_empty() {
            @if q.is_empty() { (empty(tr, "list.empty")) } @else { p.empty { (tr.f("list.no_match", &[("q", &q)])) } }
        } @else {
            div.table-wrap {
                table.list {
                    thead {
                        tr {
                            th { (label(tr, entity, entity.title_field())) }
                            @for column in columns { th.num[*column == "amount_minor"] { (label(tr, entity, column)) } }
                            th { (tr.t("table.updated")) }
                        }
                    }
                    tbody {
                        @for record in &items {
                            tr {
                                td { a href=(format!("/{}/{}", entity.plural(), record.id)) { (record.title()) } }
                                @for column in columns {
                                    @if let Some(def) = entity.field(column) {
                                        td.num[*column == "amount_minor"] { (show_value(tr, record, def, &titles)) }
                                    }
                                }
                                td { (tr.datetime(record.updated_at)) }
                            }
                        }
                    }
                }
            }
        }
        nav.pager aria-label=(tr.t("list.pages")) {
            @if query.contains_key("cursor") {
                @let first: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(next_query.iter()).finish();
                a href=(format!("/{}?{first}", entity.plural())) { (tr.t("list.first_page")) }
            }
            @if let Some(href) = &next_href {
                a rel="next" href=(href) { (tr.t("list.next_page")) }
            }
        }
        details.as-of {
            summary { (tr.t("list.as_of")) }
            form.inline method="get" action=(format!("/{}", entity.plural())) {
                label { span.sr { (tr.t("list.as_of")) } input type="datetime-local" name="as_of" required; }
                button type="submit" { (tr.t("action.show")) }
            }
        }
    })
}

/// The list as it was at a time: each record as its newest version then, from the history.
async fn as_of_body(
    state: &WebState,
    page: &Page,
    entity: Entity,
    at_text: &str,
    query: &HashMap<String, String>,
) -> Result<Markup, AppError> {
    let tr = &page.tr;
    let at = parse_local_time(tr, at_text, "as_of")?;
    let after = query.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
    let records::AsOfPage { items, next_after } = records::list_as_of(
        &state.app,
        &page.actor,
        entity,
        at,
        after,
        records::DEFAULT_PAGE_SIZE,
    )
    .await?;
    let at_input = tr.datetime_input(at);
    Ok(html! {
        p.notice { (tr.f("list.as_of_title", &[("at", &tr.datetime(at))])) " " a href=(format!("/{}", entity.plural())) { (tr.t("list.back_to_now")) } }
        @if items.is_empty() { (empty(tr, "list.none_then")) } @else {
            div.table-wrap { table.list {
                thead { tr {
                    th { (label(tr, entity, entity.title_field())) }
                    th.num { (tr.t("list.version")) }
                    th { (tr.t("table.updated")) }
                } }
                tbody {
                    @for version in &items {
                        tr {
                            td { a href=(format!("/{}/{}/history?at={}", entity.plural(), version.record_id, at_input)) {
                                (version.snapshot.get(entity.title_field()).and_then(Value::as_str).unwrap_or_default())
                            } }
                            td.num { (version.version) }
                            td { (tr.datetime(version.at)) }
                        }
                    }
                }
            } }
        }
        @if let Some(next) = next_after {
            nav.pager { a rel="next" href=(format!("/{}?as_of={at_input}&after={next}", entity.plural())) { (tr.t("list.next_page")) } }
        }
    })
}

// ---- detail -----------------------------------------------------------------------------------

pub async fn detail_page(
    State(state): State<WebState>,
    page: Page,
    Path((collection, id)): Path<(String, String)>,
) -> PageResult {
    let (entity, id) = target(&page.tr, &collection, &id)?;
    Ok(match detail_body(&state, &page, entity, id).await {
        Ok((title, body)) => html(
            frame(&page, &title, entity.plural(), body),
            &page.csrf,
            page.new_csrf,
        ),
        Err(error) => error_page(&page.tr, error),
    })
}

/// One entry of a record's timeline: an activity logged on it, or a change to it.
enum Moment {
    Activity(Record),
    Change(holdfast_app::VersionRow),
}

impl Moment {
    fn at(&self) -> Timestamp {
        match self {
            Moment::Activity(activity) => activity
                .field_str("done_at")
                .or(activity.field_str("due_at"))
                .and_then(Timestamp::parse_rfc3339)
                .unwrap_or(activity.created_at),
            Moment::Change(version) => version.at,
        }
    }
}

async fn detail_body(
    state: &WebState,
    page: &Page,
    entity: Entity,
    id: i64,
) -> Result<(String, Markup), AppError> {
    let tr = &page.tr;
    let record = records::get(&state.app, &page.actor, entity, id, false).await?;
    let mut related_lists: Vec<(Entity, Vec<Record>)> = Vec::new();
    let mut activities = Vec::new();
    // Related lists the user's role cannot read are left out, not an error for the whole page.
    let readable = |e: Entity| {
        page.actor
            .can((holdfast_domain::Module::of(e), Right::View))
    };
    for (dependent, via) in entity
        .dependents()
        .iter()
        .filter(|(dependent, _)| readable(*dependent))
    {
        let params = vec![
            (via.to_string(), id.to_string()),
            ("limit".to_owned(), "50".to_owned()),
        ];
        let found = records::list(&state.app, &page.actor, *dependent, &params).await?;
        let items: Vec<Record> = found.items.into_iter().map(|r| r.into_record()).collect();
        if *dependent == Entity::Activity {
            activities = items;
        } else {
            related_lists.push((*dependent, items));
        }
    }
    if entity == Entity::Contact && readable(Entity::Deal) {
        let params = vec![("contact_id".to_owned(), id.to_string())];
        let deals = records::list(&state.app, &page.actor, Entity::Deal, &params).await?;
        let deals = deals.items.into_iter().map(|r| r.into_record()).collect();
        related_lists.push((Entity::Deal, deals));
    }
    let versions = records::history(&state.app, &page.actor, entity, id).await?;
    let mut shown: Vec<&Record> = vec![&record];
    for (_, items) in &related_lists {
        shown.extend(items.iter());
    }
    let titles = link_titles(state, page, &shown).await?;
    let mut timeline: Vec<Moment> = activities.into_iter().map(Moment::Activity).collect();
    timeline.extend(versions.into_iter().map(Moment::Change));
    timeline.sort_by_key(|m| std::cmp::Reverse(m.at()));
    let days = state.app.config.recycle_bin_days;
    let dependents: Vec<&str> = entity
        .dependents()
        .iter()
        .map(|(e, _)| entity_label(tr, *e, true))
        .collect();
    let title = record.title();
    let link_key = format!("{}_id", entity.name());
    let body = html! {
        div.toolbar {
            a.button href=(format!("/{}/{id}/edit", entity.plural())) { (tr.t("action.edit")) }
            a.button href=(format!("/{}/{id}/history", entity.plural())) { (tr.t("action.history")) }
            @if entity == Entity::Activity && record.field_str("done_at").is_none() {
                form.inline method="post" action=(format!("/activities/{id}/done")) {
                    (csrf_field(&page.csrf))
                    input type="hidden" name="expected_version" value=(record.version);
                    input type="hidden" name="return_to" value=(format!("/activities/{id}"));
                    button type="submit" { (tr.t("action.mark_done")) }
                }
            }
            details.delete {
                summary.button.danger { (tr.t("action.delete")) }
                div.confirm {
                    p {
                        (tr.f("delete.explain", &[("days", &days)]))
                        @if !dependents.is_empty() { " " (tr.f("delete.with_related", &[("related", &dependents.join(", "))])) }
                    }
                    form method="post" action=(format!("/{}/{id}/delete", entity.plural())) {
                        (csrf_field(&page.csrf))
                        input type="hidden" name="expected_version" value=(record.version);
                        label { (tr.t("form.reason_optional")) input name="reason" maxlength="500"; }
                        button.danger type="submit" { (tr.t("delete.confirm")) }
                    }
                }
            }
        }
        div.grid {
            section.card {
                h2 { (tr.t("detail.fields")) }
                dl.fields {
                    @for def in entity.fields() {
                        @if def.name != entity.title_field() && def.name != "currency" {
                            dt { (label(tr, entity, def.name)) }
                            dd { (show_value(tr, &record, def, &titles)) }
                        }
                    }
                    dt { (tr.t("table.updated")) }
                    dd { (tr.datetime(record.updated_at)) " · " (tr.f("detail.version", &[("version", &record.version)])) }
                }
            }
            @if entity != Entity::Activity {
                section.card {
                    h2 { (tr.t("detail.log")) }
                    form.stack method="post" action="/activities" data-guard {
                        (csrf_field(&page.csrf))
                        input type="hidden" name=(link_key) value=(id);
                        (inherited_links(&record))
                        input type="hidden" name="return_to" value=(format!("/{}/{id}", entity.plural()));
                        input type="hidden" name="mark_done" value="1";
                        label { (tr.t("field.activity.kind"))
                            select name="kind" {
                                @for kind in ["call", "meeting", "note"] {
                                    option value=(kind) { (tr.t(&format!("choice.kind.{kind}"))) }
                                }
                            }
                        }
                        label { (tr.t("field.activity.subject")) input name="subject" required maxlength="300"; }
                        label { (tr.t("field.activity.body")) textarea name="body" rows="3" {} }
                        button.primary type="submit" { (tr.t("detail.log_submit")) }
                    }
                    h2 { (tr.t("detail.follow_up")) }
                    form.stack method="post" action="/activities" data-guard {
                        (csrf_field(&page.csrf))
                        input type="hidden" name=(link_key) value=(id);
                        (inherited_links(&record))
                        input type="hidden" name="return_to" value=(format!("/{}/{id}", entity.plural()));
                        input type="hidden" name="kind" value="task";
                        label { (tr.t("field.activity.subject")) input name="subject" required maxlength="300"; }
                        label { (tr.t("field.activity.due_at")) input type="datetime-local" name="due_at" required; }
                        button type="submit" { (tr.t("detail.follow_up_submit")) }
                    }
                }
            }
        }
        @for (other, items) in &related_lists {
            section.card {
                h2 { (entity_label(tr, *other, true)) }
                @if items.is_empty() { (empty(tr, "list.empty")) } @else {
                    ul.related {
                        @for item in items {
                            li {
                                a href=(format!("/{}/{}", other.plural(), item.id)) { (item.title()) }
                                @if *other == Entity::Deal {
                                    " · " (stage_label(tr, item.field_str("stage").unwrap_or(""))) " · "
                                    (tr.money(item.field_i64("amount_minor").unwrap_or(0), item.field_str("currency").unwrap_or("CNY")))
                                }
                                @if *other == Entity::Contact {
                                    @if let Some(t) = item.field_str("title") { " · " (t) }
                                }
                            }
                        }
                    }
                }
                p { a href=(format!("/{}/new?{link_key}={id}{}", other.plural(), inherited_query(&record))) { (tr.t(&format!("list.new.{}", other.name()))) } }
            }
        }
        section.card {
            h2 { (tr.t("detail.timeline")) }
            ol.timeline {
                @for moment in &timeline {
                    @match moment {
                        Moment::Activity(activity) => {
                            li.activity {
                                span.when { (tr.datetime(moment.at())) }
                                span.kind { (tr.or(&format!("choice.kind.{}", activity.field_str("kind").unwrap_or("")), "")) }
                                a href=(format!("/activities/{}", activity.id)) { (activity.title()) }
                                @if activity.field_str("done_at").is_none() && activity.field_str("due_at").is_some() {
                                    " · " em { (tr.t("detail.open_task")) }
                                }
                                @if let Some(body) = activity.field_str("body") { div.body { (multiline(body)) } }
                            }
                        }
                        Moment::Change(version) => {
                            li.change {
                                span.when { (tr.datetime(version.at)) }
                                span.kind { (tr.or(&format!("version_action.{}", version.action), &version.action)) }
                                (version.actor_name.as_deref().unwrap_or("Holdfast"))
                                @if !version.changed.is_empty() && version.action == "update" {
                                    ": " (version.changed.iter().map(|f| label(tr, entity, f).to_owned()).collect::<Vec<_>>().join(", "))
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok((title, body))
}

/// Hidden fields that carry a record's own links on to an activity or deal made from its page
/// (a call logged on a contact is also filed under the contact's company).
fn inherited_links(record: &Record) -> Markup {
    html! {
        @if record.entity != Entity::Company {
            @if let Some(company) = record.field_i64("company_id") {
                input type="hidden" name="company_id" value=(company);
            }
        }
        @if record.entity == Entity::Deal {
            @if let Some(contact) = record.field_i64("contact_id") {
                input type="hidden" name="contact_id" value=(contact);
            }
        }
    }
}

fn inherited_query(record: &Record) -> String {
    match (record.entity, record.field_i64("company_id")) {
        (Entity::Contact | Entity::Deal, Some(company)) => format!("&company_id={company}"),
        _ => String::new(),
    }
}

// ---- forms ------------------------------------------------------------------------------------

/// What a form shows: the values as typed (strings), problems per field, and titles of linked
/// records for the reference pickers.
struct FormState {
    values: HashMap<String, String>,
    errors: FieldErrors,
    titles: HashMap<String, String>,
}

impl FormState {
    fn from_record(tr: &Tr, record: &Record) -> FormState {
        let mut values = HashMap::new();
        for def in record.entity.fields() {
            let value = record.fields.get(def.name).unwrap_or(&Value::Null);
            let text = match (def.kind, value) {
                (_, Value::Null) => String::new(),
                (FieldKind::Integer { .. }, v) if def.name == "amount_minor" => {
                    tr.money_input(v.as_i64().unwrap_or(0))
                }
                (FieldKind::Timestamp, Value::String(t)) => Timestamp::parse_rfc3339(t)
                    .map(|at| tr.datetime_input(at))
                    .unwrap_or_default(),
                (_, Value::String(t)) => t.clone(),
                (_, v) => v.to_string(),
            };
            values.insert(def.name.to_owned(), text);
        }
        FormState {
            values,
            errors: FieldErrors::default(),
            titles: HashMap::new(),
        }
    }

    fn error_for(&self, field: &str) -> Vec<&holdfast_domain::error::FieldError> {
        self.errors.0.iter().filter(|e| e.field == field).collect()
    }
}

async fn fill_titles(state: &WebState, page: &Page, entity: Entity, form: &mut FormState) {
    for def in entity.fields() {
        if let FieldKind::Ref(target) = def.kind
            && let Some(id) = form
                .values
                .get(def.name)
                .and_then(|v| v.parse::<i64>().ok())
            && let Ok(found) = records::titles(&state.app, &page.actor, target, &[id]).await
            && let Some(title) = found.get(&id)
        {
            form.titles.insert(def.name.to_owned(), title.clone());
        }
    }
}

fn field_input(
    tr: &Tr,
    entity: Entity,
    def: &FieldDef,
    form: &FormState,
    pipelines: &Pipelines,
) -> Markup {
    let value = form.values.get(def.name).cloned().unwrap_or_default();
    let errors = form.error_for(def.name);
    let id = format!("f-{}", def.name);
    let error_id = format!("e-{}", def.name);
    let invalid = !errors.is_empty();
    html! {
        div.field.invalid[invalid] {
            label for=(id) { (label(tr, entity, def.name)) @if def.required && def.default.is_none() { span.req aria-hidden="true" { " *" } } }
            @match def.kind {
                FieldKind::LongText { max } => {
                    textarea id=(id) name=(def.name) rows="4" maxlength=(max) aria-invalid=[invalid.then_some("true")] aria-describedby=[invalid.then_some(&error_id)] { (value) }
                }
                FieldKind::Choice(values) => {
                    select id=(id) name=(def.name) aria-invalid=[invalid.then_some("true")] {
                        @if !def.required { option value="" { "—" } }
                        @for choice in values {
                            option value=(choice) selected[value == *choice] { (tr.or(&format!("choice.{}.{choice}", def.name), choice)) }
                        }
                    }
                }
                FieldKind::Ref(target) => {
                    input type="hidden" name=(def.name) value=(value);
                    input id=(id) type="search" autocomplete="off" data-ref=(target.plural()) data-ref-field=(def.name)
                        value=(form.titles.get(def.name).cloned().unwrap_or_else(|| if value.is_empty() { String::new() } else { format!("#{value}") }))
                        placeholder=(tr.t("form.ref_placeholder")) aria-invalid=[invalid.then_some("true")];
                }
                FieldKind::Timestamp => {
                    input id=(id) type="datetime-local" name=(def.name) value=(value) aria-invalid=[invalid.then_some("true")] aria-describedby=[invalid.then_some(&error_id)];
                }
                FieldKind::Date => {
                    input id=(id) type="date" name=(def.name) value=(value) aria-invalid=[invalid.then_some("true")] aria-describedby=[invalid.then_some(&error_id)];
                }
                _ if def.name == "pipeline" => {
                    select id=(id) name="pipeline" {
                        @for (key, name, _) in pipelines { option value=(key) selected[value == *key] { (super::pipeline_name(tr, key, name)) } }
                    }
                }
                _ if def.name == "stage" => {
                    select id=(id) name="stage" aria-invalid=[invalid.then_some("true")] {
                        @for (key, name, stages) in pipelines {
                            optgroup label=(super::pipeline_name(tr, key, name)) {
                                @for stage in stages { option value=(stage) selected[value == *stage] { (stage_label(tr, stage)) } }
                            }
                        }
                        @if !value.is_empty() && !pipelines.iter().any(|(_, _, s)| s.contains(&value)) {
                            option value=(value) selected { (value) }
                        }
                    }
                }
                _ => {
                    input id=(id) type="text" name=(def.name) value=(value)
                        inputmode=[match def.kind { FieldKind::Email => Some("email"), FieldKind::Phone => Some("tel"), FieldKind::Integer { .. } => Some("decimal"), _ => None }]
                        aria-invalid=[invalid.then_some("true")] aria-describedby=[invalid.then_some(&error_id)];
                }
            }
            @if def.name == "amount_minor" { small { (tr.t("form.amount_help")) } }
            @for error in &errors {
                p.field-error id=(error_id) { (field_error_text(tr, def, error)) }
            }
        }
    }
}

fn field_error_text(tr: &Tr, def: &FieldDef, error: &holdfast_domain::error::FieldError) -> String {
    match (error.code, def.kind) {
        ("too_long", FieldKind::Text { max } | FieldKind::LongText { max }) => {
            tr.f("error.too_long_max", &[("max", &max)])
        }
        _ => error_message(tr, error.code, &error.message),
    }
}

struct FormView<'a> {
    entity: Entity,
    action: String,
    /// The version an edit is based on; `None` for a new record.
    expected_version: Option<i64>,
    return_to: Option<&'a str>,
    cancel: String,
    submit: &'a str,
}

fn form_markup(
    tr: &Tr,
    csrf: &str,
    view: &FormView,
    form: &FormState,
    pipelines: &Pipelines,
) -> Markup {
    let general: Vec<_> = form
        .errors
        .0
        .iter()
        .filter(|e| view.entity.field(&e.field).is_none())
        .collect();
    html! {
        @if !form.errors.is_empty() {
            div.problems role="alert" {
                p { (tr.t("form.fix_problems")) }
                @if !general.is_empty() {
                    ul { @for e in &general { li { (e.field) ": " (error_message(tr, e.code, &e.message)) } } }
                }
            }
        }
        form.record method="post" action=(view.action) novalidate data-guard {
            (csrf_field(csrf))
            @if let Some(version) = view.expected_version {
                input type="hidden" name="expected_version" value=(version);
            }
            @if let Some(back) = view.return_to {
                input type="hidden" name="return_to" value=(back);
            }
            div.form-grid {
                @for def in view.entity.fields() {
                    (field_input(tr, view.entity, def, form, pipelines))
                }
            }
            div.actions {
                button.primary type="submit" { (view.submit) }
                a.button href=(view.cancel) { (tr.t("action.cancel")) }
            }
        }
    }
}

pub async fn new_page(
    State(state): State<WebState>,
    page: Page,
    Path(collection): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> PageResult {
    let entity = entity_of(&page.tr, &collection)?;
    super::require(&page, holdfast_domain::Action::Create(entity))?;
    let mut form = FormState {
        values: HashMap::new(),
        errors: FieldErrors::default(),
        titles: HashMap::new(),
    };
    for def in entity.fields() {
        if let Some(value) = query.get(def.name) {
            form.values
                .insert(def.name.to_owned(), value.chars().take(500).collect());
        } else if let Some(default) = def.default {
            let text = match default {
                holdfast_domain::entity::Default::Text(t) => t.to_owned(),
                holdfast_domain::entity::Default::Integer(n) if def.name == "amount_minor" => {
                    page.tr.money_input(n)
                }
                holdfast_domain::entity::Default::Integer(n) => n.to_string(),
            };
            form.values.insert(def.name.to_owned(), text);
        }
    }
    if entity == Entity::Activity && !form.values.contains_key("kind") {
        form.values.insert("kind".into(), "task".into());
    }
    fill_titles(&state, &page, entity, &mut form).await;
    render_form(&state, &page, entity, None, &form, StatusCode::OK).await
}

async fn render_form(
    state: &WebState,
    page: &Page,
    entity: Entity,
    editing: Option<&Record>,
    form: &FormState,
    status: StatusCode,
) -> PageResult {
    let tr = &page.tr;
    let pipelines = settings::pipelines(&state.app, &page.actor)
        .await
        .or_page(tr)?;
    let (title, view) = match editing {
        Some(record) => (
            tr.f("form.edit_title", &[("title", &record.title())]),
            FormView {
                entity,
                action: format!("/{}/{}/edit", entity.plural(), record.id),
                expected_version: Some(record.version),
                return_to: None,
                cancel: format!("/{}/{}", entity.plural(), record.id),
                submit: tr.t("action.save"),
            },
        ),
        None => (
            tr.t(&format!("list.new.{}", entity.name())).to_owned(),
            FormView {
                entity,
                action: format!("/{}", entity.plural()),
                expected_version: None,
                return_to: None,
                cancel: format!("/{}", entity.plural()),
                submit: tr.t("action.create"),
            },
        ),
    };
    let body = form_markup(tr, &page.csrf, &view, form, &pipelines);
    Ok(html_status(
        status,
        frame(page, &title, entity.plural(), body),
        &page.csrf,
        page.new_csrf,
    ))
}

/// Turns posted form fields into the JSON input of a create or update. Problems a person can
/// make before the use case sees the values (an amount that is not a number, a time that is
/// not a time) come back as field errors, with the same shape as the use case's.
fn input_from_form(
    tr: &Tr,
    entity: Entity,
    form: &Form,
    update: bool,
) -> Result<Value, FieldErrors> {
    let mut input = Map::new();
    let mut errors = FieldErrors::default();
    for def in entity.fields() {
        if !form.0.contains_key(def.name) {
            continue;
        }
        let text = form.get(def.name).trim();
        if text.is_empty() {
            if update {
                input.insert(def.name.to_owned(), Value::Null);
            }
            continue;
        }
        let value = match def.kind {
            FieldKind::Integer { .. } if def.name == "amount_minor" => {
                match parse_money_input(text) {
                    Some(minor) => Value::from(minor),
                    None => {
                        errors.push(
                            def.name,
                            "invalid_number",
                            "Enter an amount such as 1234.50",
                        );
                        continue;
                    }
                }
            }
            FieldKind::Integer { .. } | FieldKind::Ref(_) => match text.parse::<i64>() {
                Ok(number) => Value::from(number),
                Err(_) => {
                    let code = if matches!(def.kind, FieldKind::Ref(_)) {
                        "invalid_id"
                    } else {
                        "invalid_number"
                    };
                    errors.push(def.name, code, "Not a number");
                    continue;
                }
            },
            FieldKind::Timestamp => match tr.parse_datetime_input(text) {
                Some(rfc) => Value::from(rfc),
                None => {
                    errors.push(def.name, "invalid_time", "Enter a date and time");
                    continue;
                }
            },
            _ => Value::from(text),
        };
        input.insert(def.name.to_owned(), value);
    }
    if update {
        match form.get("expected_version").parse::<i64>() {
            Ok(version) => {
                input.insert("expected_version".into(), version.into());
            }
            Err(_) => errors.push(
                "expected_version",
                "invalid_version",
                "Reload the page and try again",
            ),
        }
    }
    errors.into_result()?;
    Ok(Value::Object(input))
}

fn form_state_from_post(entity: Entity, form: &Form, errors: FieldErrors) -> FormState {
    let values = entity
        .fields()
        .iter()
        .map(|def| (def.name.to_owned(), form.get(def.name).to_owned()))
        .collect();
    FormState {
        values,
        errors,
        titles: HashMap::new(),
    }
}

/// Where to go after a post: a same-site path the form named, or `fallback`.
fn return_to(form: &Form, fallback: String) -> String {
    match form.value("return_to") {
        Some(path) if path.starts_with('/') && !path.starts_with("//") => path.to_owned(),
        _ => fallback,
    }
}

pub async fn create_post(
    State(state): State<WebState>,
    page: Page,
    Path(collection): Path<String>,
    form: Form,
) -> PageResult {
    let tr = &page.tr;
    let entity = entity_of(tr, &collection)?;
    let mut input = match input_from_form(tr, entity, &form, false) {
        Ok(input) => input,
        Err(errors) => return refused_form(&state, &page, entity, None, &form, errors).await,
    };
    // "Log a call" from a record page: it happened now.
    if entity == Entity::Activity && form.value("mark_done").is_some() {
        input["done_at"] = Value::from(state.app.now().to_rfc3339());
    }
    let change = Change::Create { entity, input };
    match records::apply_change(&state.app, &page.actor, &current_op_id(), change).await {
        Ok(outcome) => {
            let fallback = format!("/{}/{}", entity.plural(), outcome.record.id);
            Ok(redirect(
                &return_to(&form, fallback),
                &format!("{}_created", entity.name()),
            ))
        }
        Err(AppError::Invalid(errors)) => {
            refused_form(&state, &page, entity, None, &form, errors).await
        }
        Err(error) => Err(error_page(tr, error)),
    }
}

async fn refused_form(
    state: &WebState,
    page: &Page,
    entity: Entity,
    editing: Option<&Record>,
    form: &Form,
    errors: FieldErrors,
) -> PageResult {
    let mut view = form_state_from_post(entity, form, errors);
    fill_titles(state, page, entity, &mut view).await;
    render_form(
        state,
        page,
        entity,
        editing,
        &view,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await
}

pub async fn edit_page(
    State(state): State<WebState>,
    page: Page,
    Path((collection, id)): Path<(String, String)>,
) -> PageResult {
    let (entity, id) = target(&page.tr, &collection, &id)?;
    super::require(&page, holdfast_domain::Action::Update(entity))?;
    let record = records::get(&state.app, &page.actor, entity, id, false)
        .await
        .or_page(&page.tr)?;
    let mut form = FormState::from_record(&page.tr, &record);
    fill_titles(&state, &page, entity, &mut form).await;
    render_form(&state, &page, entity, Some(&record), &form, StatusCode::OK).await
}

pub async fn edit_post(
    State(state): State<WebState>,
    page: Page,
    Path((collection, id)): Path<(String, String)>,
    form: Form,
) -> PageResult {
    let tr = &page.tr;
    let (entity, id) = target(tr, &collection, &id)?;
    let current = records::get(&state.app, &page.actor, entity, id, false)
        .await
        .or_page(tr)?;
    let input = match input_from_form(tr, entity, &form, true) {
        Ok(input) => input,
        Err(errors) => {
            return refused_form(&state, &page, entity, Some(&current), &form, errors).await;
        }
    };
    let change = Change::Update { entity, id, input };
    match records::apply_change(&state.app, &page.actor, &current_op_id(), change).await {
        Ok(_) => Ok(redirect(&format!("/{}/{id}", entity.plural()), "saved")),
        Err(AppError::Invalid(errors)) => {
            // Keep the version the user started from, so a second attempt is still checked.
            let mut based_on = current.clone().into_record();
            based_on.version = form
                .get("expected_version")
                .parse()
                .unwrap_or(current.version);
            refused_form(&state, &page, entity, Some(&based_on), &form, errors).await
        }
        Err(AppError::Conflict {
            code: "version_conflict",
            ..
        }) => conflict_page(&state, &page, entity, &current, &form).await,
        Err(error) => Err(error_page(tr, error)),
    }
}

/// Someone saved the record after this user opened the form. Shows both versions of each field
/// that differs and lets the user choose: keep theirs (submit again, now based on the saved
/// version) or take the saved one (leave without saving).
async fn conflict_page(
    state: &WebState,
    page: &Page,
    entity: Entity,
    current: &Record,
    form: &Form,
) -> PageResult {
    let tr = &page.tr;
    let saved = FormState::from_record(tr, current);
    let mut mine = form_state_from_post(entity, form, FieldErrors::default());
    fill_titles(state, page, entity, &mut mine).await;
    let differing: Vec<&FieldDef> = entity
        .fields()
        .iter()
        .filter(|def| {
            form.0.contains_key(def.name)
                && saved.values.get(def.name).map(|v| v.trim()) != Some(form.get(def.name).trim())
        })
        .collect();
    let pipelines = settings::pipelines(&state.app, &page.actor)
        .await
        .unwrap_or_default();
    let view = FormView {
        entity,
        action: format!("/{}/{}/edit", entity.plural(), current.id),
        expected_version: Some(current.version),
        return_to: None,
        cancel: format!("/{}/{}", entity.plural(), current.id),
        submit: tr.t("conflict.keep_mine"),
    };
    // Who saved it, by name: the newest version says.
    let who = records::history(&state.app, &page.actor, entity, current.id)
        .await
        .ok()
        .and_then(|versions| versions.last().and_then(|v| v.actor_name.clone()))
        .unwrap_or_else(|| format!("#{}", current.updated_by));
    let body = html! {
        div.problems role="alert" {
            p { strong { (tr.t("conflict.title")) } }
            p { (tr.f("conflict.explain", &[("when", &tr.datetime(current.updated_at)), ("user", &who)])) }
        }
        @if !differing.is_empty() {
            table.conflict {
                thead { tr { th { (tr.t("conflict.field")) } th { (tr.t("conflict.saved")) } th { (tr.t("conflict.yours")) } } }
                tbody {
                    @for def in &differing {
                        tr {
                            th { (label(tr, entity, def.name)) }
                            td { (plain_value(tr, def, current.fields.get(def.name).unwrap_or(&Value::Null))) }
                            td { (form.get(def.name)) }
                        }
                    }
                }
            }
        }
        p {
            a.button href=(format!("/{}/{}", entity.plural(), current.id)) { (tr.t("conflict.take_saved")) }
        }
        (form_markup(tr, &page.csrf, &view, &mine, &pipelines))
    };
    Ok(html_status(
        StatusCode::CONFLICT,
        frame(page, tr.t("conflict.title"), entity.plural(), body),
        &page.csrf,
        page.new_csrf,
    ))
}

pub async fn delete_post(
    State(state): State<WebState>,
    page: Page,
    Path((collection, id)): Path<(String, String)>,
    form: Form,
) -> PageResult {
    let tr = &page.tr;
    let (entity, id) = target(tr, &collection, &id)?;
    let change = Change::Delete {
        entity,
        id,
        expected_version: form.get("expected_version").parse().ok(),
        reason: form.value("reason").map(|r| r.chars().take(500).collect()),
    };
    records::apply_change(&state.app, &page.actor, &current_op_id(), change)
        .await
        .or_page(tr)?;
    Ok(redirect(&format!("/{}", entity.plural()), "deleted"))
}

/// Marks an activity done now.
pub async fn done_post(
    State(state): State<WebState>,
    page: Page,
    Path((collection, id)): Path<(String, String)>,
    form: Form,
) -> PageResult {
    let tr = &page.tr;
    let (entity, id) = target(tr, &collection, &id)?;
    super::require(&page, holdfast_domain::Action::Update(entity))?;
    if entity != Entity::Activity {
        return Err(error_page(
            tr,
            AppError::not_found(format!("/{collection}/{id}/done")),
        ));
    }
    let input = serde_json::json!({
        "done_at": state.app.now().to_rfc3339(),
        "expected_version": form.get("expected_version").parse::<i64>().unwrap_or(0),
    });
    let change = Change::Update { entity, id, input };
    records::apply_change(&state.app, &page.actor, &current_op_id(), change)
        .await
        .or_page(tr)?;
    Ok(redirect(
        &return_to(&form, format!("/activities/{id}")),
        "done",
    ))
}

// ---- history ----------------------------------------------------------------------------------

pub async fn history_page(
    State(state): State<WebState>,
    page: Page,
    Path((collection, id)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> PageResult {
    let tr = &page.tr;
    let (entity, id) = target(tr, &collection, &id)?;
    let versions = records::history(&state.app, &page.actor, entity, id)
        .await
        .or_page(tr)?;
    // "As it was at": the version current at the chosen time, and putting it back.
    let at = query
        .get("at")
        .filter(|text| !text.is_empty())
        .map(|text| parse_local_time(tr, text, "at"))
        .transpose()
        .or_page(tr)?;
    let then = match at {
        Some(at) => Some((
            at,
            records::as_of(&state.app, &page.actor, entity, id, at)
                .await
                .or_page(tr)?,
        )),
        None => None,
    };
    let Some(latest) = versions.last() else {
        return Err(error_page(
            tr,
            AppError::not_found(format!("{entity} {id}")),
        ));
    };
    let title_now = latest
        .snapshot
        .get(entity.title_field())
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let deleted = latest
        .snapshot
        .get("deleted_at")
        .is_some_and(|v| !v.is_null());
    let current_version = latest.version;
    let empty_snapshot = Value::Object(Map::new());
    let body = html! {
        p {
            a href=(format!("/{}/{id}", entity.plural())) { (tr.t("history.back")) }
            @if deleted { " · " (tr.t("history.deleted_note")) " " a href="/recycle-bin" { (tr.t("nav.bin")) } }
        }
        section.card {
            form.inline method="get" action=(format!("/{}/{id}/history", entity.plural())) {
                label { (tr.t("history.as_of")) " "
                    input type="datetime-local" name="at" required value=(at.map(|t| tr.datetime_input(t)).unwrap_or_default());
                }
                button type="submit" { (tr.t("action.show")) }
            }
            @if let Some((at, version)) = &then {
                @match version {
                    None => p { (tr.f("history.not_yet", &[("at", &tr.datetime(*at))])) },
                    Some(version) => {
                        h2 { (tr.f("history.as_of_title", &[("at", &tr.datetime(*at)), ("version", &version.version)])) }
                        table.fields { tbody {
                            @for def in entity.fields() {
                                tr {
                                    th { (label(tr, entity, def.name)) }
                                    td { (plain_value(tr, def, version.snapshot.get(def.name).unwrap_or(&Value::Null))) }
                                }
                            }
                            @if version.snapshot.get("deleted_at").is_some_and(|v| !v.is_null()) {
                                tr { th { (tr.t("meta.deleted_at")) } td { (meta_value(tr, "deleted_at", &version.snapshot["deleted_at"])) } }
                            }
                        } }
                        form method="post" action=(format!("/{}/{id}/restore-to-time", entity.plural())) {
                            (csrf_field(&page.csrf))
                            input type="hidden" name="at" value=(tr.datetime_input(*at));
                            button type="submit" { (tr.t("history.restore_to_time")) }
                        }
                    }
                }
            }
        }
        ol.history reversed {
            @for (index, version) in versions.iter().enumerate().rev() {
                @let before = if index == 0 { &empty_snapshot } else { &versions[index - 1].snapshot };
                @let changes = diff(before, &version.snapshot);
                li.version id=(format!("v{}", version.version)) {
                    div.version-head {
                        strong { (tr.f("detail.version", &[("version", &version.version)])) }
                        " · " (tr.or(&format!("version_action.{}", version.action), &version.action))
                        " · " (version.actor_name.as_deref().unwrap_or("Holdfast"))
                        " · " (tr.datetime(version.at))
                        @if let Some(reason) = &version.reason { " · " em { (reason) } }
                    }
                    @if !changes.is_empty() {
                        table.diff {
                            thead { tr { th { (tr.t("conflict.field")) } th { (tr.t("history.before")) } th { (tr.t("history.after")) } } }
                            tbody {
                                @for change in &changes {
                                    @let def = entity.field(&change.field);
                                    tr {
                                        th { (tr.or(&format!("meta.{}", change.field), label(tr, entity, &change.field))) }
                                        td.before { @if let Some(def) = def { (plain_value(tr, def, &change.before)) } @else { (meta_value(tr, &change.field, &change.before)) } }
                                        td.after { @if let Some(def) = def { (plain_value(tr, def, &change.after)) } @else { (meta_value(tr, &change.field, &change.after)) } }
                                    }
                                }
                            }
                        }
                    }
                    @if version.version != current_version && !deleted {
                        form method="post" action=(format!("/{}/{id}/history/{}/restore", entity.plural(), version.version)) {
                            (csrf_field(&page.csrf))
                            input type="hidden" name="expected_version" value=(current_version);
                            button type="submit" { (tr.f("history.restore", &[("version", &version.version)])) }
                        }
                    }
                }
            }
        }
    };
    Ok(html(
        frame(
            &page,
            &tr.f("history.title", &[("title", &title_now)]),
            entity.plural(),
            body,
        ),
        &page.csrf,
        page.new_csrf,
    ))
}

/// Record bookkeeping that appears in a difference: when it went to the recycle bin, who owns
/// it, its tags, custom fields.
fn meta_value(tr: &Tr, field: &str, value: &Value) -> String {
    match (field, value) {
        (_, Value::Null) => "—".into(),
        ("deleted_at", Value::String(text)) => Timestamp::parse_rfc3339(text)
            .map(|at| tr.datetime(at))
            .unwrap_or_else(|| text.clone()),
        ("owner_id", Value::Number(id)) => tr.f("meta.user_id", &[("id", id)]),
        ("tags", Value::Array(tags)) => tags
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(", "),
        (_, Value::String(text)) => text.clone(),
        (_, other) => other.to_string(),
    }
}

pub async fn version_restore_post(
    State(state): State<WebState>,
    page: Page,
    Path((collection, id, version)): Path<(String, String, String)>,
    form: Form,
) -> PageResult {
    let tr = &page.tr;
    let (entity, id) = target(tr, &collection, &id)?;
    let Ok(version) = version.parse::<i64>() else {
        return Err(error_page(
            tr,
            AppError::not_found(format!("version {version}")),
        ));
    };
    let change = Change::RestoreVersion {
        entity,
        id,
        version,
        expected_version: form.get("expected_version").parse().unwrap_or(0),
        reason: None,
    };
    records::apply_change(&state.app, &page.actor, &current_op_id(), change)
        .await
        .or_page(tr)?;
    Ok(redirect(
        &format!("/{}/{id}", entity.plural()),
        "version_restored",
    ))
}

pub async fn restore_to_time_post(
    State(state): State<WebState>,
    page: Page,
    Path((collection, id)): Path<(String, String)>,
    form: Form,
) -> PageResult {
    let tr = &page.tr;
    let (entity, id) = target(tr, &collection, &id)?;
    super::require(&page, holdfast_domain::Action::Restore(entity))?;
    let at = parse_local_time(tr, form.get("at"), "at").or_page(tr)?;
    records::restore_to_time(&state.app, &page.actor, &current_op_id(), entity, id, at)
        .await
        .or_page(tr)?;
    Ok(redirect(
        &format!("/{}/{id}", entity.plural()),
        "restored_to_time",
    ))
}

/// The list as a CSV download, with the list's search and filters.
pub async fn export_page(
    State(state): State<WebState>,
    page: Page,
    Path(collection): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> PageResult {
    let entity = entity_of(&page.tr, &collection)?;
    super::require(&page, holdfast_domain::Action::ExportFiles)?;
    super::require(&page, holdfast_domain::Action::Export(entity))?;
    let params: Vec<(String, String)> = list_params(entity, &page, &query)
        .into_iter()
        .filter(|(key, _)| key != "cursor")
        .collect();
    let export = records::export(&state.app, &page.actor, &current_op_id(), entity, &params)
        .await
        .or_page(&page.tr)?;
    Ok(crate::api::csv_response(export))
}
