//! The one place where core errors become this surface's `{"error":"..."}` answers.
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use depot_core::http::trace_id;
use depot_core::Error;
use serde_json::json;

#[derive(Debug)]
pub struct RdsError {
    pub status: StatusCode,
    pub message: String,
}

impl RdsError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        RdsError { status, message: message.into() }
    }

    pub fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<Error> for RdsError {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Exists(_) | Error::Conflict { .. } => StatusCode::CONFLICT,
            Error::Invalid(_) => StatusCode::BAD_REQUEST,
            Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal(m) => {
                tracing::error!(trace_id = %trace_id(), error = %m, "internal error");
                return RdsError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("internal error; see the server log for trace id {}", trace_id()),
                );
            }
        };
        RdsError::new(status, e.to_string())
    }
}

impl From<PathRejection> for RdsError {
    fn from(r: PathRejection) -> Self {
        RdsError::bad(format!("invalid path: {}", r.body_text()))
    }
}

impl From<QueryRejection> for RdsError {
    fn from(r: QueryRejection) -> Self {
        RdsError::bad(format!("invalid query string: {}", r.body_text()))
    }
}

impl IntoResponse for RdsError {
    fn into_response(self) -> Response {
        let mut res = (self.status, Json(json!({ "error": self.message }))).into_response();
        depot_core::http::error_headers(&mut res);
        res
    }
}

/// Renders a core error (for layers outside the handlers).
pub fn render(e: Error) -> Response {
    RdsError::from(e).into_response()
}

/// The answer for a route that does not exist.
pub async fn not_found() -> RdsError {
    RdsError::new(StatusCode::NOT_FOUND, "no such route")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_carry_the_headers_clients_act_on() {
        let busy = RdsError::from(Error::Unavailable("retry".into())).into_response();
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(busy.headers()["retry-after"], "30");
        let anonymous = RdsError::from(Error::Unauthenticated("who?".into())).into_response();
        assert_eq!(anonymous.headers()["www-authenticate"], "Basic realm=\"depot\"");
    }
}
