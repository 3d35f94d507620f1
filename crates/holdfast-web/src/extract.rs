//! Extractors: who is asking ([`Auth`]), and request parts parsed with errors in our format.

use crate::WebState;
use crate::error::ApiError;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use holdfast_app::{AppError, auth};
use holdfast_domain::Actor;
use serde::de::DeserializeOwned;

pub const SESSION_COOKIE: &str = "holdfast_session";

/// The authenticated user. Routes that take it refuse anonymous requests with 401; routes
/// without it are the few public ones listed in `lib.rs`.
pub struct Auth(pub Actor);

impl FromRequestParts<WebState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &WebState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            let value = value.to_str().unwrap_or_default();
            let token = value
                .strip_prefix("Bearer ")
                .map(str::trim)
                .unwrap_or_default();
            if token.is_empty() {
                return Err(ApiError(AppError::Unauthenticated {
                    code: "invalid_token",
                    message: "Send the API token as: Authorization: Bearer hf_…".into(),
                }));
            }
            let (actor, read_only) = auth::authenticate_token(&state.app, token).await?;
            let reads = matches!(
                parts.method,
                axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
            );
            if read_only && !reads {
                return Err(ApiError(AppError::Forbidden(
                    holdfast_domain::Denial::simple(
                        "token_read_only",
                        "This API token may only read; nothing was changed. Changes need a read-write token (Settings → API tokens)",
                    ),
                )));
            }
            return Ok(Auth(with_client(&state.app, actor, parts)));
        }
        match session_cookie(parts) {
            Some(token) => {
                refuse_cross_site(parts)?;
                let actor = auth::authenticate_session(&state.app, &token).await?;
                Ok(Auth(with_client(&state.app, actor, parts)))
            }
            None => Err(ApiError(AppError::Unauthenticated {
                code: "login_required",
                message: "Log in first (POST /api/v1/auth/login) or send an API token".into(),
            })),
        }
    }
}

/// A browser's cookie goes along with requests other sites make it send. A change made with the
/// session cookie must therefore come from a script of this site: one that sends JSON (which
/// a plain cross-site form cannot) or the `X-Requested-With` header, from this origin. Tokens
/// (`Authorization`) are not sent by browsers on their own and need neither.
fn refuse_cross_site(parts: &Parts) -> Result<(), ApiError> {
    let safe = matches!(
        parts.method,
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    );
    if safe {
        return Ok(());
    }
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let refuse = |message: &str| {
        Err(ApiError(AppError::Forbidden(
            holdfast_domain::Denial::simple("cross_site", message),
        )))
    };
    if let Some(origin) = header(header::ORIGIN.as_str()) {
        let origin_host = origin.split("://").nth(1).unwrap_or(origin);
        if origin == "null" || header(header::HOST.as_str()).is_none_or(|host| host != origin_host)
        {
            return refuse("This request came from another site; it was not carried out");
        }
    }
    let json = header(header::CONTENT_TYPE.as_str()).is_some_and(|t| {
        t.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    });
    if !json && header("x-requested-with").is_none() {
        return refuse(
            "With the session cookie, send changes as JSON (Content-Type: application/json) or with an X-Requested-With header; scripts can use an API token instead",
        );
    }
    Ok(())
}

/// The actor with the address the request came from, for the audit log.
pub fn with_client(
    app: &holdfast_app::App,
    mut actor: holdfast_domain::Actor,
    parts: &Parts,
) -> holdfast_domain::Actor {
    actor.client = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| client_address(app, info.0, &parts.headers));
    actor
}

/// The client's address: the connection's, or what a trusted proxy says it forwarded.
pub fn client_address(
    app: &holdfast_app::App,
    peer: std::net::SocketAddr,
    headers: &axum::http::HeaderMap,
) -> String {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    holdfast_app::security::client_address(
        peer.ip(),
        header("x-forwarded-for"),
        header("forwarded"),
        &app.config.trusted_proxies,
    )
    .to_string()
}

/// The `Set-Cookie` value that starts a browser session (`token`) or ends it (`None`).
pub fn session_set_cookie(app: &holdfast_app::App, session: Option<&auth::NewSession>) -> String {
    let secure = if app.config.https { "; Secure" } else { "" };
    match session {
        Some(session) => {
            let max_age = (session.expires_at.micros() - app.now().micros())
                / holdfast_domain::Timestamp::MICROS_PER_SECOND;
            format!(
                "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}",
                session.token
            )
        }
        None => format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    }
}

pub fn session_cookie(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// JSON body whose rejections (malformed, wrong type, too large, wrong content type) come back
/// as our error bodies with the status axum chose.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> Response {
    let status = rejection.status();
    let code = match &rejection {
        JsonRejection::JsonDataError(_) => "invalid_json_shape",
        JsonRejection::JsonSyntaxError(_) => "malformed_json",
        JsonRejection::MissingJsonContentType(_) => "json_required",
        _ if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        _ => "unreadable_body",
    };
    let message = match code {
        "json_required" => "Send the body as JSON with Content-Type: application/json".to_owned(),
        "body_too_large" => "The request body is larger than this server accepts".to_owned(),
        _ => format!(
            "The body is not valid JSON of the expected shape: {}",
            rejection.body_text()
        ),
    };
    ApiError::bad_request(status, code, message).into_response()
}

/// The query string as ordered pairs, percent-decoded. Invalid UTF-8 becomes U+FFFD and is
/// then refused by whichever parameter it landed in, never by a panic.
pub struct QueryPairs(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        Ok(QueryPairs(
            form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        ))
    }
}

impl QueryPairs {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Refuses parameters outside `allowed`, naming them.
    pub fn only(&self, allowed: &[&str]) -> Result<(), ApiError> {
        let mut errors = holdfast_domain::FieldErrors::default();
        for (key, _) in &self.0 {
            if !allowed.contains(&key.as_str()) {
                let accepted = if allowed.is_empty() {
                    "none".to_owned()
                } else {
                    allowed.join(", ")
                };
                errors.push(
                    key.chars().take(60).collect::<String>(),
                    "unknown_parameter",
                    format!("Accepted parameters: {accepted}"),
                );
            }
        }
        errors
            .into_result()
            .map_err(|e| ApiError(AppError::Invalid(e)))
    }

    pub fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(text) => text.parse::<i64>().map(Some).map_err(|_| {
                ApiError(AppError::invalid(
                    key,
                    "not_a_number",
                    "Must be a whole number",
                ))
            }),
        }
    }
}
