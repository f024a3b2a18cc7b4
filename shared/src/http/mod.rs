//! What every surface shares: the application state, the surface kit (routes with their
//! access, authorization before the handler, one error rendering), extractors whose
//! rejections are core errors, the bkrepo envelope, downloads, trace ids and the health
//! route.
pub mod bkrepo;
pub mod blobs;
pub mod extract;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod spool;
mod state;
pub mod surface;
mod trace;

use axum::http::StatusCode;

pub use state::{aws_stores, lambda_sdk_config, open_stores, sdk_config, AppState, Stores};
pub use surface::{app, Access, Client, ClientAddr, Routes, Scope, Surface};
pub use trace::{elapsed_ms, init_tracing, note_caller, note_reason, trace_id, trace_layer, TRACE_HEADER};

use crate::Error;

/// The one mapping from a core error to an HTTP status, for every surface.
pub fn status_of(e: &Error) -> StatusCode {
    match e {
        Error::NotFound { .. } => StatusCode::NOT_FOUND,
        Error::Exists { .. } | Error::Conflict { .. } => StatusCode::CONFLICT,
        Error::Missing { .. } | Error::Invalid(_) => StatusCode::BAD_REQUEST,
        Error::NotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
        Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        Error::Forbidden(_) => StatusCode::FORBIDDEN,
        Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        Error::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
        Error::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        Error::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
        Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The message a client sees for an error: the error's own, except for an internal one,
/// whose details stay in the log under the trace id.
pub fn public_message(e: &Error) -> String {
    match e {
        Error::Internal(_) => format!("internal error; see the server log for trace id {}", trace_id()),
        e => e.to_string(),
    }
}

/// The headers an error owes the client, in every surface: `WWW-Authenticate` with a
/// 401, and `Retry-After` with a 503 (busy: a garbage collection holding the bytes an
/// upload names, or too many password checks at once) or a 429 (throttled logins).
pub fn error_headers(res: &mut axum::response::Response, e: &Error) {
    use axum::http::{header, HeaderValue};
    // Every error answer passes here: its reason goes into the request's log line.
    trace::note_reason(&e.to_string());
    if matches!(e, Error::Unauthenticated(_)) {
        res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"depot\""));
    }
    if let Error::RangeNotSatisfiable { size, .. } = e {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
            res.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    if let Some(secs) = e.retry_after() {
        res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    }
}

/// The error for a body over `DEPOT_MAX_BODY_BYTES`, naming the way around the limit.
pub fn too_large(limit: Option<usize>) -> Error {
    let of = limit.map(|l| format!(" of {l} bytes")).unwrap_or_default();
    Error::TooLarge(format!(
        "request body is larger than the limit{of} (DEPOT_MAX_BODY_BYTES); send large files through an upload session: \
         POST /blobs/uploads, PUT the bytes to the URLs it returns, POST /blobs/uploads/{{id}}/complete, \
         then name the blob with the header X-Depot-Blob: sha256:<hex>"
    ))
}

/// `GET /health`: `{"status":"ok","version":"..."}`. Touches no storage.
pub async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse;

    #[test]
    fn statuses_carry_the_headers_clients_act_on() {
        for (e, status, header) in [
            (Error::unavailable("retry", 30), 503, Some(("retry-after", "30"))),
            (Error::Throttled { message: "slow down".into(), retry_after: 7 }, 429, Some(("retry-after", "7"))),
            (Error::Unauthenticated("who?".into()), 401, Some(("www-authenticate", "Basic realm=\"depot\""))),
            (Error::Invalid("no".into()), 400, None),
        ] {
            let mut res = e.clone().into_response();
            error_headers(&mut res, &e);
            assert_eq!(res.status().as_u16(), status);
            match header {
                Some((h, v)) => assert_eq!(res.headers()[h], v),
                None => assert!(
                    res.headers().get("retry-after").is_none() && res.headers().get("www-authenticate").is_none()
                ),
            }
        }
    }
}
