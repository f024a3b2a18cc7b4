//! The Lambda entry point every function shares (feature `lambda`): a function's
//! `main.rs` is `depot_core::http::lambda::main(&SURFACE)`.
use axum::extract::Request;
use lambda_http::RequestExt;

use super::surface::{app, Surface};
use super::trace::{init_tracing, trace_layer, TRACE_HEADER};
use super::AppState;
use crate::config::{Backend, Config};

/// Runs one surface on Lambda: JSON logs, configuration from the environment (the AWS
/// backend unless `DEPOT_BACKEND` says otherwise), and the Lambda request id as trace id.
pub fn main(surface: &'static Surface) -> Result<(), lambda_http::Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(surface))
}

async fn run(surface: &'static Surface) -> Result<(), lambda_http::Error> {
    init_tracing(true);
    let state = AppState::open(Config::from_env_or(Backend::Aws)?, false).await?;
    let router = app(&[surface], state).layer(axum::middleware::from_fn(trace_layer)).layer(
        axum::middleware::map_request(|mut req: Request| async move {
            if let Some(id) = req.lambda_context_ref().map(|c| c.request_id.clone()) {
                if let Ok(v) = id.parse() {
                    req.headers_mut().insert(TRACE_HEADER, v);
                }
            }
            req
        }),
    );
    lambda_http::run(router).await
}
