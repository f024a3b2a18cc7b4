//! bkrepo's envelope `{code, message, data, traceId}`, for every route that answers in it
//! (the package API, and the RDS surface's `/rds/ext/...` successes), and the one place
//! where core errors become bkrepo's codes.
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use super::{public_message, trace_id};
use crate::error::Kind;
use crate::Error;

pub const SYSTEM_ERROR: i64 = 250101;
pub const PARAMETER_MISSING: i64 = 250103;
pub const PARAMETER_INVALID: i64 = 250105;
pub const RESOURCE_EXISTED: i64 = 250107;
pub const RESOURCE_NOT_FOUND: i64 = 250108;
pub const PERMISSION_DENIED: i64 = 250113;
pub const AUTH_FAILED: i64 = 250114;
pub const USER_NOT_FOUND: i64 = 250202;
pub const PERMISSION_EXISTED: i64 = 250207;
pub const TOKEN_EXISTED: i64 = 250219;
pub const PROJECT_NOT_FOUND: i64 = 251004;
pub const PROJECT_EXISTED: i64 = 251005;
pub const REPOSITORY_NOT_FOUND: i64 = 251006;
pub const REPOSITORY_EXISTED: i64 = 251007;
pub const REPOSITORY_NOT_EMPTY: i64 = 251008;
pub const PACKAGE_NOT_FOUND: i64 = 251017;
pub const VERSION_NOT_FOUND: i64 = 251019;
pub const VERSION_EXISTED: i64 = 251020;

/// A successful answer: `{"code":0,"message":null,"data":...,"traceId":"..."}`.
pub fn ok<T: Serialize>(data: T) -> Response {
    axum::Json(json!({ "code": 0, "message": null, "data": data, "traceId": trace_id() })).into_response()
}

/// bkrepo's code for an error.
pub fn code_of(e: &Error) -> i64 {
    match e {
        Error::NotFound { what: Kind::Project, .. } => PROJECT_NOT_FOUND,
        Error::NotFound { what: Kind::Repository, .. } => REPOSITORY_NOT_FOUND,
        Error::NotFound { what: Kind::Package, .. } => PACKAGE_NOT_FOUND,
        Error::NotFound { what: Kind::Version, .. } => VERSION_NOT_FOUND,
        Error::NotFound { what: Kind::User, .. } => USER_NOT_FOUND,
        Error::NotFound { .. } => RESOURCE_NOT_FOUND,
        Error::Exists { what: Kind::Project, .. } => PROJECT_EXISTED,
        Error::Exists { what: Kind::Repository, .. } => REPOSITORY_EXISTED,
        // A repository that still holds packages (a delete without `forced`).
        Error::Exists { what: Kind::Package, .. } => REPOSITORY_NOT_EMPTY,
        Error::Exists { what: Kind::Version, .. } => VERSION_EXISTED,
        Error::Exists { what: Kind::Token, .. } => TOKEN_EXISTED,
        Error::Exists { what: Kind::Permission, .. } => PERMISSION_EXISTED,
        Error::Exists { .. } | Error::Conflict { .. } => RESOURCE_EXISTED,
        Error::Missing { .. } => PARAMETER_MISSING,
        Error::Invalid(_) | Error::TooLarge(_) | Error::NotAllowed { .. } | Error::RangeNotSatisfiable { .. } => {
            PARAMETER_INVALID
        }
        Error::Unauthenticated(_) => AUTH_FAILED,
        Error::Forbidden(_) => PERMISSION_DENIED,
        Error::Unavailable { .. } | Error::Throttled { .. } | Error::Internal(_) => SYSTEM_ERROR,
    }
}

/// A failure with a code of the caller's choosing (one that no `Error` maps to).
pub fn failure(status: StatusCode, code: i64, message: &str) -> Response {
    let body = json!({ "code": code, "message": message, "data": null, "traceId": trace_id() });
    (status, axum::Json(body)).into_response()
}

/// A failure in the envelope: a non-zero `code` and a readable `message`.
pub fn render(e: &Error, status: StatusCode) -> Response {
    let body = json!({ "code": code_of(e), "message": public_message(e), "data": null, "traceId": trace_id() });
    (status, axum::Json(body)).into_response()
}
