//! The Lambda entry point every function shares (feature `lambda`): a function's
//! `main.rs` is `depot_core::http::lambda::main(&SURFACE)`.
use axum::extract::Request;
use lambda_http::request::RequestContext;
use lambda_http::RequestExt;

use super::surface::{app, ClientAddr, Surface};
use super::trace::{init_tracing, trace_layer, TRACE_HEADER};
use super::AppState;
use crate::config::{Backend, Config};

/// The largest response a synchronous Lambda invocation behind API Gateway returns.
pub const LAMBDA_RESPONSE_BYTES: u64 = 6 * 1024 * 1024;

/// Runs one surface on Lambda: JSON logs, configuration from the environment (always the
/// AWS backend, with the SDK configured from the function's environment only), and the
/// Lambda request id as trace id.
pub fn main(surface: &'static Surface) -> Result<(), lambda_http::Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(surface))
}

async fn run(surface: &'static Surface) -> Result<(), lambda_http::Error> {
    init_tracing(true);
    // API Gateway carries at most 6 MB of response.
    let config = Config { max_response_bytes: Some(LAMBDA_RESPONSE_BYTES), ..Config::from_env_or(Backend::Aws)? };
    if config.backend != Backend::Aws {
        return Err("a Lambda function runs on the AWS backend: unset DEPOT_BACKEND or set it to aws".into());
    }
    let stores = super::aws_stores(&config, &super::lambda_sdk_config());
    let state = AppState::from_stores(config, stores);
    let router = app(&[surface], state).layer(axum::middleware::from_fn(trace_layer)).layer(
        axum::middleware::map_request(|mut req: Request| async move {
            if let Some(id) = req.lambda_context_ref().map(|c| c.request_id.clone()) {
                if let Ok(v) = id.parse() {
                    req.headers_mut().insert(TRACE_HEADER, v);
                }
            }
            let source = match req.request_context_ref() {
                Some(RequestContext::ApiGatewayV2(c)) => c.http.source_ip.as_deref().and_then(|ip| ip.parse().ok()),
                _ => None,
            };
            if let Some(ip) = source {
                req.extensions_mut().insert(ClientAddr(ip));
            }
            req
        }),
    );
    lambda_http::run(router).await
}
