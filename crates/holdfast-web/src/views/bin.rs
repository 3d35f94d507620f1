//! The recycle bin: every deletion, what it took along, until when it can be restored, and a
//! button that brings it back with everything deleted with it.

use super::layout::{csrf_field, empty, frame};
use super::{Form, Page, error_page, html, redirect};
use crate::WebState;
use crate::error::current_op_id;
use axum::extract::{Path, State};
use axum::response::Response;
use holdfast_app::AppError;
use holdfast_app::records::{self, Change};
use holdfast_domain::Entity;
use maud::html;

pub async fn bin_page(State(state): State<WebState>, page: Page) -> Response {
    let tr = &page.tr;
    let entries =
        match records::recycle_bin(&state.app, &page.actor, None, records::MAX_PAGE_SIZE).await {
            Ok(found) => found,
            Err(error) => return error_page(tr, error),
        };
    let days = state.app.config.recycle_bin_days;
    let body = html! {
        p { (tr.f("bin.explain", &[("days", &days)])) }
        @if entries.is_empty() { (empty(tr, "bin.empty")) } @else {
            div.table-wrap {
                table.list {
                    thead { tr {
                        th { (tr.t("bin.what")) } th { (tr.t("bin.kind")) } th { (tr.t("bin.deleted")) }
                        th { (tr.t("bin.with")) } th { (tr.t("bin.until")) } th {}
                    } }
                    tbody {
                        @for entry in &entries {
                            @let root = &entry.root;
                            @if let Some(deletion) = root.deleted {
                                tr {
                                    td { a href=(format!("/{}/{}/history", root.entity.plural(), root.id)) { (root.title()) } }
                                    td { (tr.t(&format!("entity.{}.one", root.entity.name()))) }
                                    td { (tr.datetime(deletion.at)) }
                                    td {
                                        @if entry.related.is_empty() { "—" } @else {
                                            @for (i, entity) in Entity::ALL.iter().enumerate() {
                                                @let n = entry.related.iter().filter(|(e, _)| e == entity).count();
                                                @if n > 0 {
                                                    @if i > 0 { " " }
                                                    (n) " " (tr.t(&format!("entity.{}.many", entity.name())))
                                                }
                                            }
                                        }
                                    }
                                    td { (tr.datetime(deletion.at.plus_days(days))) }
                                    td {
                                        form method="post" action=(format!("/recycle-bin/{}/{}/restore", root.entity.plural(), root.id)) {
                                            (csrf_field(&page.csrf))
                                            button.primary type="submit" aria-label=(tr.f("bin.restore_label", &[("title", &root.title())])) { (tr.t("bin.restore")) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    html(
        frame(&page, tr.t("bin.title"), "bin", body),
        &page.csrf,
        page.new_csrf,
    )
}

pub async fn restore_post(
    State(state): State<WebState>,
    page: Page,
    Path((collection, id)): Path<(String, String)>,
    _form: Form,
) -> Response {
    let tr = &page.tr;
    let (Some(entity), Ok(id)) = (Entity::from_plural(&collection), id.parse::<i64>()) else {
        return error_page(tr, AppError::not_found(format!("{collection} {id}")));
    };
    let change = Change::Restore {
        entity,
        id,
        reason: None,
    };
    match records::apply_change(&state.app, &page.actor, &current_op_id(), change).await {
        Ok(_) => redirect(&format!("/{}/{id}", entity.plural()), "restored"),
        Err(error) => error_page(tr, error),
    }
}
