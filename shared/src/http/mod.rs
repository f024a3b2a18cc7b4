//! What every surface shares: the application state, the caller extractor, trace ids,
//! the route table and the health route.
#[cfg(feature = "lambda")]
pub mod lambda;
mod routes;
mod trace;

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

pub use routes::RouteTable;
pub use trace::{init_tracing, trace_id, trace_layer, TRACE_HEADER};

use crate::auth::{Authenticator, Identity};
use crate::config::Config;
use crate::registry::Registry;
use crate::Result;

/// Everything a handler needs. Built once per process and cloned into every request.
#[derive(Clone)]
pub struct AppState {
    pub registry: Registry,
    pub auth: Arc<Authenticator>,
    pub config: Arc<Config>,
}

impl AppState {
    /// Opens the configured backend. No network I/O happens here beyond what the AWS SDK
    /// needs to load its configuration, unless `create_resources` is set.
    pub async fn open(config: Config, create_resources: bool) -> Result<Self> {
        let (table, blobs) = config.open_stores(create_resources).await?;
        let auth = Arc::new(Authenticator::new(table.clone(), config.admin_password.clone()));
        Ok(AppState { registry: Registry::new(table, blobs), auth, config: Arc::new(config) })
    }
}

/// The caller of a request: the identity its `Authorization` header proves, or the
/// error that explains why it proves none. Handlers call [`Caller::identity`] first, so
/// every route authenticates before it touches storage, and each surface renders the
/// error in its own envelope.
pub struct Caller(pub Result<Identity>);

impl Caller {
    pub fn identity(self) -> Result<Identity> {
        self.0
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = match parts.headers.get(axum::http::header::AUTHORIZATION).map(|h| h.to_str()) {
            None => None,
            Some(Ok(h)) => Some(h),
            Some(Err(_)) => return Ok(Caller(Err(crate::Error::Unauthenticated("invalid credentials".into())))),
        };
        Ok(Caller(state.auth.authenticate(header).await))
    }
}

/// Finishes a surface's router: its routes, the configured body limit, the state.
pub fn surface_router(routes: RouteTable<AppState>, state: AppState) -> axum::Router {
    let limit = state.config.max_body_bytes;
    routes.into_router().layer(axum::extract::DefaultBodyLimit::max(limit)).with_state(state)
}

/// `GET /health`: `{"status":"ok","version":"..."}`. Touches no storage.
pub async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}
