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
                lockdown_step_up(&state.app, &actor, &parts.method, parts.uri.path()).await?;
                Ok(Auth(with_client(&state.app, actor, parts)))
            }
            None => Err(ApiError(AppError::Unauthenticated {
                code: "login_required",
                message: "Log in first (POST /api/v1/auth/login) or send an API token".into(),
            })),
        }
    }
}

/// Requests that stay possible during a lockdown without confirming again: confirming itself,
/// and signing out.
const LOCKDOWN_EXEMPT: &[&str] = &[
    "/api/v1/auth/confirm",
    "/api/v1/auth/confirm/options",
    "/api/v1/auth/confirm/passkey",
    "/api/v1/auth/logout",
    "/confirm",
    "/logout",
];

/// During a lockdown an administrator's every change needs a fresh confirmation (step-up):
/// a stolen administrator session alone changes nothing. (Everyone else is refused changes
/// by the permission checks; API tokens are suspended.)
pub async fn lockdown_step_up(
    app: &holdfast_app::App,
    actor: &Actor,
    method: &axum::http::Method,
    path: &str,
) -> Result<(), AppError> {
    let reads = matches!(
        *method,
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    );
    if reads
        || actor.access.lockdown.is_none()
        || !actor.is_admin()
        || LOCKDOWN_EXEMPT.contains(&path)
    {
        return Ok(());
    }
    holdfast_app::step_up::require(app, actor).await
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
    let _ = ACTING.try_with(|acting| {
        if let Ok(mut slot) = acting.lock() {
            *slot = Some(actor.clone());
        }
    });
    actor
}

tokio::task_local! {
    /// Who the request turned out to be (set by the extractors, read by the middleware that
    /// writes refusals into the audit log).
    pub static ACTING: std::sync::Arc<std::sync::Mutex<Option<holdfast_domain::Actor>>>;
}

/// Marks a response as a refusal by the chain of checks (or a guard), naming the check that
/// failed, for the audit log.
#[derive(Debug, Clone)]
pub struct Refused(pub &'static str);

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
pub fn session_set_cookie(
    app: &holdfast_app::App,
    session: Option<&holdfast_app::login::NewSession>,
) -> String {
    match session {
        Some(session) => {
            let max_age = (session.expires_at.micros() - app.now().micros())
                / holdfast_domain::Timestamp::MICROS_PER_SECOND;
            set_cookie(app, SESSION_COOKIE, &session.token, max_age)
        }
        None => set_cookie(app, SESSION_COOKIE, "", 0),
    }
}

/// Remembers the device a user signed in from (see `holdfast_app::login`).
pub const DEVICE_COOKIE: &str = "holdfast_device";
/// A sign-in half done: the password was right, a second factor is next.
pub const SIGN_IN_COOKIE: &str = "holdfast_signin";

/// A `Set-Cookie` value for one of Holdfast's cookies: HttpOnly, SameSite=Strict, `Secure`
/// under HTTPS; `max_age` 0 removes it.
pub fn set_cookie(app: &holdfast_app::App, name: &str, value: &str, max_age: i64) -> String {
    let secure = if app.config.https { "; Secure" } else { "" };
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}

/// The cookies a finished sign-in sets: the session and the remembered device.
pub fn sign_in_cookies(
    app: &holdfast_app::App,
    session: &holdfast_app::login::NewSession,
) -> Vec<String> {
    vec![
        session_set_cookie(app, Some(session)),
        set_cookie(
            app,
            DEVICE_COOKIE,
            &session.device_token,
            holdfast_app::login::KNOWN_DEVICE_DAYS * 86_400,
        ),
        set_cookie(app, SIGN_IN_COOKIE, "", 0),
    ]
}

/// A cookie's value from the request headers.
pub fn cookie_value(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// What the server knows about who is signing in: address, browser, remembered device.
pub struct SignInClient {
    pub address: String,
    pub user_agent: Option<String>,
    pub device: Option<String>,
}

impl SignInClient {
    pub fn of(
        app: &holdfast_app::App,
        peer: std::net::SocketAddr,
        headers: &axum::http::HeaderMap,
    ) -> SignInClient {
        SignInClient {
            address: client_address(app, peer, headers),
            user_agent: headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            device: cookie_value(headers, DEVICE_COOKIE),
        }
    }

    pub fn client(&self) -> holdfast_app::login::Client<'_> {
        holdfast_app::login::Client {
            address: Some(&self.address),
            user_agent: self.user_agent.as_deref(),
            device: self.device.as_deref(),
        }
    }
}

/// The origin passkeys are bound to: `public_url`, or the address this browser used.
pub fn passkey_origin(app: &holdfast_app::App, headers: &axum::http::HeaderMap) -> String {
    if let Some(url) = &app.config.public_url {
        return url.trim_end_matches('/').to_owned();
    }
    let scheme = if app.config.https { "https" } else { "http" };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    format!("{scheme}://{host}")
}

pub fn session_cookie(parts: &Parts) -> Option<String> {
    cookie_value(&parts.headers, SESSION_COOKIE)
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
