//! The Lambda entry point every function shares (feature `lambda`): a function's
//! `main.rs` is `depot_core::http::lambda::main(&SURFACE)`.
use axum::extract::Request;
use lambda_http::request::RequestContext;
use lambda_http::RequestExt;

use super::surface::{app, ClientAddr, Surface};
use super::trace::{init_tracing, trace_layer, TRACE_HEADER};
use super::AppState;
use crate::config::{Backend, Config};

/// The largest body a synchronous Lambda invocation behind API Gateway carries either
/// way: the 6 MB limit is of the whole event, and binary bodies travel base64-encoded
/// (4/3 of their size), with the headers around them. A request body over it gets
/// depot's 413 (unless `DEPOT_MAX_BODY_BYTES` says otherwise), and a proxied download
/// over it a redirect, rather than a gateway error.
pub const LAMBDA_BODY_BYTES: u64 = 4_400_000;

/// Runs one surface on Lambda: JSON logs, configuration from the environment (always the
/// AWS backend, with the SDK configured from the function's environment only), and the
/// Lambda request id as trace id.
pub fn main(surface: &'static Surface) -> Result<(), lambda_http::Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(surface))
}

/// The state of a function: configuration from the environment (always the AWS backend,
/// with the SDK configured from the function's environment only), with the limits of a
/// Lambda invocation. The worker function shares it.
pub fn lambda_state() -> Result<AppState, lambda_http::Error> {
    // The process is frozen between requests: verifications run in the worker function.
    let config = Config::from_env_or(Backend::Aws)?;
    let mut config = Config {
        max_response_bytes: Some(config.max_response_bytes.unwrap_or(LAMBDA_BODY_BYTES)),
        verify_in_process: false,
        ..config
    };
    if std::env::var("DEPOT_MAX_BODY_BYTES").ok().filter(|v| !v.is_empty()).is_none() {
        config.max_body_bytes = LAMBDA_BODY_BYTES as usize;
    }
    if config.backend != Backend::Aws {
        return Err("a Lambda function runs on the AWS backend: unset DEPOT_BACKEND or set it to aws".into());
    }
    let stores = super::aws_stores(&config, &super::lambda_sdk_config());
    Ok(AppState::from_stores(config, stores))
}

async fn run(surface: &'static Surface) -> Result<(), lambda_http::Error> {
    init_tracing(true);
    let state = lambda_state()?;
    let router = app(&[surface], state)
        .layer(axum::middleware::map_response(for_lambda))
        .layer(axum::middleware::from_fn(trace_layer))
        .layer(axum::middleware::from_fn(within_deadline))
        .layer(
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

/// Runs a request within its invocation's deadline (`crate::deadline`): its waits end
/// early enough for their answer to reach the client.
async fn within_deadline(req: Request, next: axum::middleware::Next) -> axum::response::Response {
    match req.lambda_context_ref().map(|c| c.deadline) {
        Some(ms) if ms > 0 => crate::deadline::scope(crate::deadline::from_epoch_millis(ms), next.run(req)).await,
        _ => next.run(req).await,
    }
}

/// A response as lambda_http can carry it. Its body is read here, where a failure is a
/// 502 (lambda_http reads it too, and a failure there ends the process); and text that
/// lambda_http's list does not know as text (`application/x-yaml`, PEM) is marked as
/// such, so that it is not base64-encoded.
async fn for_lambda(res: axum::response::Response) -> axum::response::Response {
    use axum::http::{header, HeaderValue, StatusCode};
    use axum::response::IntoResponse;
    let (mut parts, body) = res.into_parts();
    let textual = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-yaml") || t.starts_with("application/x-pem-file"));
    if textual && !parts.headers.contains_key(header::CONTENT_ENCODING) {
        parts.headers.insert("x-lambda-http-content-encoding", HeaderValue::from_static("text"));
    }
    match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => axum::response::Response::from_parts(parts, axum::body::Body::from(bytes)),
        Err(e) => {
            let id = super::trace_id();
            tracing::error!(trace_id = %id, error = %e, "a response body failed while it was read");
            let body = serde_json::json!({ "error": format!("the response failed midway; see the server log for trace id {id}") });
            (StatusCode::BAD_GATEWAY, axum::Json(body)).into_response()
        }
    }
}
