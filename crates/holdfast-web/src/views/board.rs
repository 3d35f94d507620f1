//! The deal pipeline as a board: one column per stage, a card per open deal. Cards move by
//! drag and drop (the script submits the card's own form) or, without a mouse or script, by
//! choosing the stage in the card's form — both reach the same handler.

use super::layout::{csrf_field, frame};
use super::{Form, OrPage, Page, PageResult, error_page, html, redirect};
use crate::WebState;
use crate::error::current_op_id;
use axum::extract::{Path, Query, State};
use holdfast_app::records::{self, Change};
use holdfast_app::{AppError, settings};
use holdfast_domain::Entity;
use maud::html;
use std::collections::HashMap;

/// Cards shown per column; the deal list, filtered by stage, has the rest.
const CARDS_PER_STAGE: &str = "50";

pub async fn board(
    State(state): State<WebState>,
    page: Page,
    Query(query): Query<HashMap<String, String>>,
) -> PageResult {
    let tr = &page.tr;
    let pipelines = settings::pipelines(&state.app, &page.actor)
        .await
        .or_page(tr)?;
    let wanted = query
        .get("pipeline")
        .cloned()
        .unwrap_or_else(|| "default".into());
    let Some((key, _name, stages)) = pipelines
        .iter()
        .find(|(key, _, _)| *key == wanted)
        .or(pipelines.first())
        .cloned()
    else {
        return Err(error_page(tr, AppError::not_found("pipeline")));
    };
    let mut columns = Vec::new();
    for stage in &stages {
        let params = vec![
            ("pipeline".to_owned(), key.clone()),
            ("stage".to_owned(), stage.clone()),
            ("status".to_owned(), "open".to_owned()),
            ("limit".to_owned(), CARDS_PER_STAGE.to_owned()),
        ];
        let found = records::list(&state.app, &page.actor, Entity::Deal, &params)
            .await
            .or_page(tr)?;
        columns.push((stage.clone(), found));
    }
    let stage_label = |stage: &str| tr.or(&format!("stage.{stage}"), stage).to_owned();
    let body = html! {
        @if pipelines.len() > 1 {
            form.filters method="get" action="/board" {
                label { (tr.t("board.pipeline"))
                    select name="pipeline" {
                        @for (k, name, _) in &pipelines { option value=(k) selected[*k == key] { (super::pipeline_name(tr, k, name)) } }
                    }
                }
                button type="submit" { (tr.t("list.apply")) }
            }
        }
        p.hint { (tr.t("board.hint")) }
        div.board {
            @for (stage, deals) in &columns {
                section.column data-stage=(stage) aria-label=(stage_label(stage)) {
                    h2 { (stage_label(stage)) " " span.count { (deals.items.len()) @if deals.next_cursor.is_some() { "+" } } }
                    ul {
                        @for deal in &deals.items {
                            li.card-deal draggable="true" data-deal=(deal.id) {
                                a href=(format!("/deals/{}", deal.id)) { (deal.title()) }
                                div.amount { (tr.money(deal.field_i64("amount_minor").unwrap_or(0), deal.field_str("currency").unwrap_or("CNY"))) }
                                form.move method="post" action=(format!("/board/{}/move", deal.id)) {
                                    (csrf_field(&page.csrf))
                                    input type="hidden" name="expected_version" value=(deal.version);
                                    input type="hidden" name="pipeline" value=(key);
                                    label {
                                        span.sr { (tr.f("board.move_label", &[("deal", &deal.title())])) }
                                        select name="stage" {
                                            @for s in &stages { option value=(s) selected[s == stage] { (stage_label(s)) } }
                                        }
                                    }
                                    button type="submit" { (tr.t("board.move")) }
                                }
                            }
                        }
                    }
                    @if deals.next_cursor.is_some() {
                        a href=(format!("/deals?stage={stage}&status=open")) { (tr.t("board.more")) }
                    }
                }
            }
        }
    };
    Ok(html(
        frame(&page, tr.t("board.title"), "board", body),
        &page.csrf,
        page.new_csrf,
    ))
}

pub async fn move_post(
    State(state): State<WebState>,
    page: Page,
    Path(id): Path<String>,
    form: Form,
) -> PageResult {
    let tr = &page.tr;
    let Ok(id) = id.parse::<i64>() else {
        return Err(error_page(tr, AppError::not_found(format!("deal {id}"))));
    };
    let input = serde_json::json!({
        "stage": form.get("stage"),
        "expected_version": form.get("expected_version").parse::<i64>().unwrap_or(0),
    });
    let change = Change::Update {
        entity: Entity::Deal,
        id,
        input,
    };
    let pipeline: String =
        form_urlencoded::byte_serialize(form.get("pipeline").as_bytes()).collect();
    let back = format!("/board?pipeline={pipeline}");
    match records::apply_change(&state.app, &page.actor, &current_op_id(), change).await {
        Ok(_) => Ok(redirect(&back, "moved")),
        Err(AppError::Conflict { .. }) => Ok(redirect(&back, "move_conflict")),
        Err(error) => Err(error_page(tr, error)),
    }
}
