//! The bkrepo envelope `{code, message, data, traceId}` and the one place where core
//! errors become bkrepo codes and HTTP statuses.
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use depot_core::http::trace_id;
use depot_core::Error;
use serde::Serialize;
use serde_json::json;

pub const PARAMETER_MISSING: i64 = 250103;
pub const PARAMETER_INVALID: i64 = 250105;
pub const RESOURCE_EXISTED: i64 = 250107;
pub const RESOURCE_NOT_FOUND: i64 = 250108;
pub const PERMISSION_DENIED: i64 = 250113;
pub const AUTH_FAILED: i64 = 250114;
pub const REPOSITORY_NOT_FOUND: i64 = 251006;
pub const SYSTEM_ERROR: i64 = 250101;

/// A successful answer: `{"code":0,"message":null,"data":...,"traceId":"..."}`.
pub fn ok<T: Serialize>(data: T) -> Response {
    Json(json!({ "code": 0, "message": null, "data": data, "traceId": trace_id() })).into_response()
}

/// A failed answer in the envelope. Build it from a core error, then refine the code
/// where the handler knows what was missing.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: i64,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: i64, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
    }

    pub fn missing(param: &str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, PARAMETER_MISSING, format!("Parameter [{param}] is missing"))
    }

    /// Uses `code` instead of the generic not-found code.
    pub fn not_found_code(mut self, code: i64) -> Self {
        if self.status == StatusCode::NOT_FOUND {
            self.code = code;
        }
        self
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let (status, code) = match &e {
            Error::NotFound(_) => (StatusCode::NOT_FOUND, RESOURCE_NOT_FOUND),
            Error::Exists(_) => (StatusCode::CONFLICT, RESOURCE_EXISTED),
            Error::Conflict { .. } => (StatusCode::CONFLICT, RESOURCE_EXISTED),
            Error::Invalid(_) => (StatusCode::BAD_REQUEST, PARAMETER_INVALID),
            Error::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, AUTH_FAILED),
            Error::Forbidden(_) => (StatusCode::FORBIDDEN, PERMISSION_DENIED),
            Error::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, PARAMETER_INVALID),
            Error::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, SYSTEM_ERROR),
            Error::Internal(m) => {
                tracing::error!(trace_id = %trace_id(), error = %m, "internal error");
                return ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    SYSTEM_ERROR,
                    "internal error; see the server log for this trace id",
                );
            }
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return depot_core::http::too_large(None).into();
        }
        ApiError::new(StatusCode::BAD_REQUEST, PARAMETER_INVALID, format!("invalid JSON body: {}", r.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, PARAMETER_INVALID, format!("invalid query string: {}", r.body_text()))
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, PARAMETER_INVALID, format!("invalid path: {}", r.body_text()))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "code": self.code, "message": self.message, "data": null, "traceId": trace_id() });
        let mut res = (self.status, Json(body)).into_response();
        depot_core::http::error_headers(&mut res);
        res
    }
}

pub type ApiResult = Result<Response, ApiError>;

/// Renders a core error in this surface's envelope (for layers outside the handlers).
pub fn render(e: Error) -> Response {
    ApiError::from(e).into_response()
}

/// The answer for a route that does not exist, in the envelope.
pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, RESOURCE_NOT_FOUND, "no such route")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_carry_the_headers_clients_act_on() {
        let busy = ApiError::from(Error::Unavailable("retry".into())).into_response();
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(busy.headers()["retry-after"], "30");
        let anonymous = ApiError::from(Error::Unauthenticated("who?".into())).into_response();
        assert_eq!(anonymous.headers()["www-authenticate"], "Basic realm=\"depot\"");
        let bad = ApiError::from(Error::Invalid("no".into())).into_response();
        assert!(bad.headers().get("retry-after").is_none() && bad.headers().get("www-authenticate").is_none());
    }
}
