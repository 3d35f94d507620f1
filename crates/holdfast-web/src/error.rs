//! The one place that turns an [`AppError`] into an HTTP response.
//!
//! Every error body has the same shape: `{"error": {"code", "message", "op_id", …}}`. Internal
//! errors are logged with their operation id and shown as the operation id only, so a user can
//! quote it and an operator can find the cause without the response leaking internals.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use holdfast_app::AppError;
use holdfast_app::health::FaultKind;
use serde_json::{Value, json};

tokio::task_local! {
    /// The operation id of the request being handled; set by the middleware in `lib.rs`.
    pub static OP_ID: String;
}

pub fn current_op_id() -> String {
    OP_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| "-".to_owned())
}

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError(pub AppError);

impl<E: Into<AppError>> From<E> for ApiError {
    fn from(error: E) -> Self {
        ApiError(error.into())
    }
}

impl ApiError {
    /// A request the client got wrong before it reached a use case (bad JSON, bad path).
    pub fn bad_request(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> Response {
        body_response(status, code, &message.into(), json!({}))
    }
}

fn body_response(status: StatusCode, code: &str, message: &str, extra: Value) -> Response {
    let mut error = json!({"code": code, "message": message, "op_id": current_op_id()});
    if let (Some(error), Value::Object(extra)) = (error.as_object_mut(), extra) {
        error.extend(extra);
    }
    (status, axum::Json(json!({ "error": error }))).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self.0 {
            AppError::NotFound { what } => body_response(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("{what} does not exist"),
                json!({}),
            ),
            AppError::InRecycleBin {
                entity,
                id,
                deleted_at,
                restorable_until,
            } => body_response(
                StatusCode::NOT_FOUND,
                "in_recycle_bin",
                &format!(
                    "{entity} {id} is in the recycle bin since {deleted_at}; restore it with POST /api/v1/{}/{id}/restore before {restorable_until}",
                    entity.plural()
                ),
                json!({"entity": entity.name(), "id": id, "deleted_at": deleted_at.to_rfc3339(), "restorable_until": restorable_until.to_rfc3339()}),
            ),
            AppError::Forbidden(denial) => {
                let mut response = body_response(
                    StatusCode::FORBIDDEN,
                    denial.code,
                    &denial.message,
                    denial_json(&denial),
                );
                response
                    .extensions_mut()
                    .insert(crate::extract::Refused(denial.code));
                response
            }
            AppError::StepUpRequired => body_response(
                StatusCode::FORBIDDEN,
                "step_up_required",
                &format!(
                    "This is a sensitive action and you last confirmed who you are more than {} minutes ago: \
                     POST your password or a code from your authenticator app to /api/v1/auth/confirm, then do it again",
                    holdfast_app::step_up::STEP_UP_MINUTES
                ),
                json!({"confirm_at": "/api/v1/auth/confirm"}),
            ),
            AppError::Unauthenticated { code, message } => {
                body_response(StatusCode::UNAUTHORIZED, code, &message, json!({}))
            }
            AppError::Conflict {
                code,
                message,
                current,
            } => body_response(
                StatusCode::CONFLICT,
                code,
                &message,
                json!({"current": current}),
            ),
            AppError::Invalid(fields) => body_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
                "Some fields are not valid; nothing was changed",
                json!({"fields": fields}),
            ),
            AppError::Throttled {
                retry_after_seconds,
            } => {
                let mut response = body_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_attempts",
                    &format!("Too many failed logins; try again in {retry_after_seconds} seconds"),
                    json!({"retry_after_seconds": retry_after_seconds}),
                );
                if let Ok(value) = HeaderValue::from_str(&retry_after_seconds.to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
                response
            }
            AppError::Busy {
                retry_after_seconds,
            } => {
                let mut response = body_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    &format!(
                        "The server is checking as many passwords as it takes at once; nothing was done. Try again in {retry_after_seconds} seconds"
                    ),
                    json!({"retry_after_seconds": retry_after_seconds}),
                );
                if let Ok(value) = HeaderValue::from_str(&retry_after_seconds.to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
                response
            }
            AppError::Unavailable {
                kind,
                detail,
                message,
                fresh,
            } => {
                tracing::error!(op_id = %current_op_id(), %detail, code = kind.code(), "database fault");
                let mut response =
                    body_response(fault_status(kind), kind.code(), &message, json!({}));
                if fresh {
                    response
                        .extensions_mut()
                        .insert(ObservedFault { kind, detail });
                }
                response
            }
            AppError::Internal(error) => {
                tracing::error!(op_id = %current_op_id(), error = ?error, "internal error");
                body_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "Something went wrong on the server and nothing was changed. Quote the op_id to your administrator",
                    json!({}),
                )
            }
        }
    }
}

/// A database fault an answer ran into, for the middleware that records it in the database's
/// health (the error mapping has no access to the application).
#[derive(Debug, Clone)]
pub struct ObservedFault {
    pub kind: FaultKind,
    pub detail: String,
}

/// 503 while the database is damaged (read-only), 507 while its disk is full.
pub fn fault_status(kind: FaultKind) -> StatusCode {
    match kind {
        FaultKind::Corrupt => StatusCode::SERVICE_UNAVAILABLE,
        FaultKind::DiskFull => StatusCode::INSUFFICIENT_STORAGE,
    }
}

/// What a refusal carries besides its message: who can change it, the whole chain of checks
/// ("why can't I see this?"), and how to ask for access.
pub fn denial_json(denial: &holdfast_domain::Denial) -> Value {
    let reasons = denial
        .explanation
        .as_ref()
        .map(|e| serde_json::to_value(&e.steps).unwrap_or(Value::Null));
    json!({
        "grantable_by": denial.grantable_by,
        "reasons": reasons,
        // Asking helps when a right or a record's scope is missing, not for a switched-off
        // module or an account that waits for approval.
        "request_access": matches!(denial.code, "no_right" | "out_of_scope")
            .then_some("POST /api/v1/access/requests"),
    })
}
