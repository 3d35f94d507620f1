//! The home page: my overdue and today's follow-ups, my open deals, and the pipeline chart.

use super::layout::{bar_chart, csrf_field, empty};
use super::{Page, error_page, html};
use crate::WebState;
use crate::i18n::Tr;
use axum::extract::State;
use axum::response::Response;
use holdfast_app::{AppError, home, settings};
use holdfast_domain::{Record, Timestamp};
use maud::{Markup, html};

pub async fn home(State(state): State<WebState>, page: Page) -> Response {
    // A pending account first learns that it waits; once approved, it replaces the password an
    // administrator chose before anything else.
    if page.user.must_change_password && !page.user.pending {
        return super::redirect("/settings", "password_change_required");
    }
    if !page.user.pending
        && page
            .actor
            .access
            .users
            .get(&page.user.id)
            .is_some_and(|u| u.must_enrol_second_factor)
    {
        return super::redirect("/settings#two-factor", "second_factor_required");
    }
    if page.user.pending {
        // A pending account sees only that it waits, and for whom.
        let tr = &page.tr;
        let names = page.actor.access.admin_names().join(", ");
        let body = html! {
            section.card.alert id="pending" {
                h2 { (tr.t("access.pending_title")) }
                p { (tr.f("access.pending_detail", &[("names", &names)])) }
            }
        };
        return html(
            super::layout::frame(&page, tr.t("home.title"), "home", body),
            &page.csrf,
            page.new_csrf,
        );
    }
    match body(&state, &page).await {
        Ok(body) => html(
            super::layout::frame(&page, page.tr.t("home.title"), "home", body),
            &page.csrf,
            page.new_csrf,
        ),
        Err(error) => error_page(&page.tr, error),
    }
}

fn due_row(tr: &Tr, csrf: &str, activity: &Record, today: Timestamp) -> Markup {
    let due = activity
        .field_str("due_at")
        .and_then(Timestamp::parse_rfc3339);
    let overdue = due.is_some_and(|d| d < today);
    html! {
        li.due.overdue[overdue] {
            span.kind { (tr.t(&format!("choice.kind.{}", activity.field_str("kind").unwrap_or("task")))) }
            a href=(format!("/activities/{}", activity.id)) { (activity.title()) }
            @if let Some(due) = due {
                span.when {
                    @if overdue { strong { (tr.t("home.overdue")) } " · " }
                    (tr.datetime(due))
                }
            }
            form.inline method="post" action=(format!("/activities/{}/done", activity.id)) {
                (csrf_field(csrf))
                input type="hidden" name="expected_version" value=(activity.version);
                input type="hidden" name="return_to" value="/";
                button type="submit" { (tr.t("action.mark_done")) }
            }
        }
    }
}

async fn body(state: &WebState, page: &Page) -> Result<Markup, AppError> {
    let tr = &page.tr;
    let day = home::my_day(&state.app, &page.actor).await?;
    let pipelines = settings::pipelines(&state.app, &page.actor).await?;
    let mut charts = Vec::new();
    for (key, name, stages) in &pipelines {
        let rows: Vec<(String, i64, String)> = stages
            .iter()
            .map(|stage| {
                let totals: Vec<_> = day
                    .stages
                    .iter()
                    .filter(|t| &t.pipeline == key && &t.stage == stage)
                    .collect();
                let count: i64 = totals.iter().map(|t| t.count).sum();
                let money: Vec<String> = totals
                    .iter()
                    .map(|t| tr.money(t.amount_minor, &t.currency))
                    .collect();
                let caption = if money.is_empty() {
                    tr.f("home.deals_count", &[("count", &0)])
                } else {
                    format!(
                        "{} · {}",
                        tr.f("home.deals_count", &[("count", &count)]),
                        money.join(" + ")
                    )
                };
                (
                    tr.or(&format!("stage.{stage}"), stage).to_owned(),
                    count,
                    caption,
                )
            })
            .collect();
        charts.push((super::pipeline_name(tr, key, name).to_owned(), rows));
    }
    let alert = super::backups::alert(state, page).await;
    let database = super::backups::database_alert(state, page).await;
    let security = super::security::alert(state, page).await;
    let overdue = holdfast_app::access::overdue_reviews(&state.app, &page.actor)
        .await?
        .filter(|count| *count > 0);
    let to_decide = holdfast_app::access::pending_requests(&state.app, &page.actor)
        .await?
        .len();
    let unread = holdfast_app::access::unread_notifications(&state.app, &page.actor).await?;
    let notices = super::signin::notices_card(state, page).await?;
    Ok(html! {
        (notices)
        (database)
        (alert)
        (security)
        @if to_decide > 0 || unread > 0 {
            section.card.alert id="access-inbox" {
                @if to_decide > 0 { p { (tr.f("access.home_requests", &[("count", &to_decide)])) " " a href="/access" { (tr.t("access.open")) } } }
                @if unread > 0 { p { (tr.f("access.home_notifications", &[("count", &unread)])) " " a href="/access" { (tr.t("access.open")) } } }
            }
        }
        @if let Some(count) = overdue {
            section.card.alert role="alert" id="reviews-overdue" {
                p { (tr.f("admin_access.review_overdue", &[("count", &count)])) " " a href="/admin/access#reviews" { (tr.t("admin_access.open_reviews")) } }
            }
        }
        div.grid {
            section.card {
                h2 { (tr.t("home.follow_ups")) }
                @if day.due.is_empty() { (empty(tr, "home.no_follow_ups")) } @else {
                    ul.due-list {
                        @for activity in &day.due { (due_row(tr, &page.csrf, activity, day.today_starts)) }
                    }
                }
                p { a href="/activities/new?kind=task" { (tr.t("home.schedule")) } }
            }
            section.card {
                h2 { (tr.t("home.my_deals")) }
                @if day.open_deals.items.is_empty() { (empty(tr, "home.no_deals")) } @else {
                    table {
                        thead { tr { th { (tr.t("field.deal.name")) } th { (tr.t("field.deal.stage")) } th.num { (tr.t("field.deal.amount_minor")) } } }
                        tbody {
                            @for deal in &day.open_deals.items {
                                tr {
                                    td { a href=(format!("/deals/{}", deal.id)) { (deal.title()) } }
                                    td { @let stage = deal.field_str("stage").unwrap_or(""); (tr.or(&format!("stage.{stage}"), stage)) }
                                    td.num { (tr.money(deal.field_i64("amount_minor").unwrap_or(0), deal.field_str("currency").unwrap_or("CNY"))) }
                                }
                            }
                        }
                    }
                }
            }
        }
        section.card {
            h2 { (tr.t("home.pipeline")) }
            @for (name, rows) in &charts {
                h3 { (name) }
                (bar_chart(&format!("{} – {}", tr.t("home.pipeline"), name), rows))
            }
            p { a href="/board" { (tr.t("home.open_board")) } }
        }
    })
}
