//! The Lambda entry point every function shares (feature `lambda`).
use axum::extract::Request;
use axum::Router;
use lambda_http::RequestExt;

use super::trace::{trace_layer, TRACE_HEADER};

/// Runs a surface's router on Lambda: JSON logs, and the Lambda request id as trace id.
pub async fn run(router: Router) -> Result<(), lambda_http::Error> {
    let app = router.layer(axum::middleware::from_fn(trace_layer)).layer(axum::middleware::map_request(
        |mut req: Request| async move {
            if let Some(id) = req.lambda_context_ref().map(|c| c.request_id.clone()) {
                if let Ok(v) = id.parse() {
                    req.headers_mut().insert(TRACE_HEADER, v);
                }
            }
            req
        },
    ));
    lambda_http::run(app).await
}
