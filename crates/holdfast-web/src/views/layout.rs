//! The page frame (header, navigation, notices), shared widgets, and the stylesheet and script,
//! which Holdfast serves itself: installs are often offline, so nothing comes from elsewhere.

use super::Page;
use crate::i18n::{Locale, Tr};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

const CSS: &str = include_str!("../../assets/app.css");
const JS: &str = include_str!("../../assets/app.js");

pub async fn stylesheet() -> Response {
    asset(CSS, "text/css; charset=utf-8")
}

pub async fn script() -> Response {
    asset(JS, "text/javascript; charset=utf-8")
}

fn asset(body: &'static str, kind: &'static str) -> Response {
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

pub fn head(tr: &Tr, title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Holdfast" }
            link rel="stylesheet" href="/assets/app.css";
            script src="/assets/app.js" defer {}
            meta name="holdfast-unsaved" content=(tr.t("form.unsaved_warning"));
        }
    }
}

/// A page for a logged-in user: navigation, the notice from the last step, then `body`.
pub fn frame(page: &Page, title: &str, active: &str, body: Markup) -> Markup {
    let tr = &page.tr;
    use holdfast_domain::{Module, Right};
    // A module the user cannot view (switched off, or not in their role) is not offered.
    let nav = [
        ("home", "/", "nav.home", None),
        (
            "companies",
            "/companies",
            "nav.companies",
            Some(Module::Companies),
        ),
        (
            "contacts",
            "/contacts",
            "nav.contacts",
            Some(Module::Contacts),
        ),
        ("deals", "/deals", "nav.deals", Some(Module::Deals)),
        ("board", "/board", "nav.board", Some(Module::Deals)),
        (
            "activities",
            "/activities",
            "nav.activities",
            Some(Module::Activities),
        ),
        ("bin", "/recycle-bin", "nav.bin", Some(Module::RecycleBin)),
        ("access", "/access", "nav.access", None),
    ];
    let nav = nav
        .into_iter()
        .filter(|(.., module)| module.is_none_or(|m| page.actor.can((m, Right::View))))
        .map(|(key, href, label, _)| (key, href, label));
    html! {
        (DOCTYPE)
        html lang=(tr.locale.tag()) {
            (head(tr, title))
            body {
                a.skip href="#main" { (tr.t("nav.skip")) }
                header.top {
                    a.brand href="/" { "Holdfast" }
                    nav aria-label=(tr.t("nav.label")) {
                        ul {
                            @for (key, href, label) in nav {
                                li { a href=(href) aria-current=[(key == active).then_some("page")] { (tr.t(label)) } }
                            }
                            @if page.actor.can((Module::Administration, Right::View)) {
                                li { a href="/admin/users" aria-current=[("admin" == active).then_some("page")] { (tr.t("nav.users")) } }
                                li { a href="/admin/access" aria-current=[("admin_access" == active).then_some("page")] { (tr.t("nav.permissions")) } }
                            }
                            @if page.actor.is_admin() {
                                li { a href="/admin/backups" aria-current=[("backups" == active).then_some("page")] { (tr.t("nav.backups")) } }
                                li { a href="/admin/sign-in" aria-current=[("admin_signin" == active).then_some("page")] { (tr.t("nav.sign_in")) } }
                            }
                            @if holdfast_domain::access::authorize(&page.actor, holdfast_domain::Action::Audit).is_ok() {
                                li { a href="/admin/incident" aria-current=[("incident" == active).then_some("page")] { (tr.t("nav.incident")) } }
                                li { a href="/admin/timeline" aria-current=[("timeline" == active).then_some("page")] { (tr.t("nav.timeline")) } }
                                li { a href="/admin/security" aria-current=[("security" == active).then_some("page")] { (tr.t("nav.security")) } }
                            }
                        }
                    }
                    div.me {
                        a href="/settings" aria-current=[("settings" == active).then_some("page")] { (page.user.display_name) }
                        form method="post" action="/logout" {
                            (csrf_field(&page.csrf))
                            button.link type="submit" { (tr.t("nav.logout")) }
                        }
                    }
                }
                main id="main" {
                    @if let Some(lockdown) = &page.actor.access.lockdown {
                        div.lockdown role="alert" id="lockdown" {
                            strong { (tr.t("incident.lockdown_banner")) } " "
                            (tr.f("incident.lockdown_detail", &[("by", &lockdown.by), ("since", &tr.datetime(lockdown.since)), ("reason", &lockdown.reason)]))
                        }
                    }
                    @if let Some(notice) = &page.notice {
                        p.notice role="status" { (notice) }
                    }
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A page for someone not logged in (login, setup), with the language switch.
pub fn public_page(tr: &Tr, csrf: &str, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(tr.locale.tag()) {
            (head(tr, title))
            body.public {
                main id="main" class="narrow" {
                    p.brand-big { "Holdfast" }
                    h1 { (title) }
                    (body)
                    form.lang method="post" action="/language" {
                        (csrf_field(csrf))
                        @for locale in Locale::ALL {
                            button.link type="submit" name="locale" value=(locale.tag()) disabled[locale == tr.locale] {
                                (language_name(locale))
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Each language named in itself, so anyone can find theirs.
pub fn language_name(locale: Locale) -> &'static str {
    match locale {
        Locale::En => "English",
        Locale::ZhCn => "简体中文",
    }
}

pub fn error_body(tr: &Tr, title: &str, detail: &str, back: Option<(&str, &str)>) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(tr.locale.tag()) {
            (head(tr, title))
            body.public {
                main id="main" class="narrow" {
                    p.brand-big { a href="/" { "Holdfast" } }
                    h1 { (title) }
                    @if !detail.is_empty() { p.error-detail { (detail) } }
                    @if let Some((href, label)) = back {
                        p { a.button href=(href) { (label) } }
                    }
                }
            }
        }
    }
}

pub fn csrf_field(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(token); }
}

/// A horizontal bar chart as inline SVG: one bar per row, labelled, scaled to the largest.
pub fn bar_chart(title: &str, rows: &[(String, i64, String)]) -> Markup {
    let max = rows.iter().map(|r| r.1).max().unwrap_or(0).max(1);
    let row_height = 34;
    let label_width = 140;
    let bar_width = 300;
    let height = rows.len() as i64 * row_height + 8;
    let width = label_width + bar_width + 160;
    html! {
        svg.chart role="img" aria-label=(title) viewBox=(format!("0 0 {width} {height}")) width="100%" preserveAspectRatio="xMinYMin meet" {
            title { (title) }
            @for (i, (label, value, caption)) in rows.iter().enumerate() {
                @let y = i as i64 * row_height + 4;
                @let w = (*value * bar_width / max).max(if *value > 0 { 3 } else { 0 });
                text x=(label_width - 8) y=(y + 20) text-anchor="end" class="chart-label" { (label) }
                rect x=(label_width) y=(y + 4) width=(w) height="22" rx="3" class="chart-bar" {}
                text x=(label_width + w + 8) y=(y + 20) class="chart-value" { (caption) }
            }
        }
    }
}

pub fn empty(tr: &Tr, key: &str) -> Markup {
    html! { p.empty { (tr.t(key)) } }
}

/// Renders escaped text with its line breaks kept.
pub fn multiline(text: &str) -> Markup {
    html! {
        @for (i, line) in text.lines().enumerate() {
            @if i > 0 { br; }
            (line)
        }
    }
}
