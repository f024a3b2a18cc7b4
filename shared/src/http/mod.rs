//! What every surface shares: the application state, the caller extractor, trace ids,
//! the route table and the health route.
pub mod blobs;
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
use crate::store::UrlSigner;
use crate::{Error, Result};

/// Everything a handler needs. Built once per process and cloned into every request.
#[derive(Clone)]
pub struct AppState {
    pub registry: Registry,
    pub auth: Arc<Authenticator>,
    pub config: Arc<Config>,
    /// Signs and checks the local blob URLs of the embedded backend; `None` on AWS.
    pub signer: Option<Arc<UrlSigner>>,
    /// Renderings derived from a repository (an `index.yaml`), by repository generation.
    pub derived: Arc<DerivedCache>,
}

/// A small in-process cache of renderings (cheap to clone: `Bytes` shares the buffer), each stored with the repository generation it
/// was rendered at. A reader that finds the generation it just read gets the rendering
/// without touching the table again; any write bumps the generation, so a reader never
/// gets a stale one.
#[derive(Default)]
pub struct DerivedCache {
    entries: std::sync::Mutex<std::collections::HashMap<String, (i64, bytes::Bytes)>>,
}

/// How many renderings a process keeps.
const DERIVED_CAPACITY: usize = 256;

impl DerivedCache {
    /// The rendering of `key` at `generation`, if this process has it.
    pub fn get(&self, key: &str, generation: i64) -> Option<bytes::Bytes> {
        let entries = self.entries.lock().expect("derived cache");
        entries.get(key).filter(|(g, _)| *g == generation).map(|(_, b)| b.clone())
    }

    /// Keeps a rendering, unless a newer generation is already kept.
    pub fn put(&self, key: &str, generation: i64, rendering: bytes::Bytes) {
        let mut entries = self.entries.lock().expect("derived cache");
        if entries.len() >= DERIVED_CAPACITY && !entries.contains_key(key) {
            entries.clear();
        }
        match entries.get(key) {
            Some((g, _)) if *g > generation => {}
            _ => {
                entries.insert(key.to_string(), (generation, rendering));
            }
        }
    }
}

impl AppState {
    /// Opens the configured backend. No network I/O happens here beyond what the AWS SDK
    /// needs to load its configuration, unless `create_resources` is set.
    pub async fn open(config: Config, create_resources: bool) -> Result<Self> {
        let stores = config.open_stores(create_resources).await?;
        Ok(Self::from_stores(config, stores))
    }

    /// The state over ports opened elsewhere (tests wrap a port to count its calls).
    pub fn from_stores(config: Config, stores: crate::config::Stores) -> Self {
        let auth = Arc::new(Authenticator::new(stores.table.clone(), config.admin_password.clone()));
        AppState {
            registry: Registry::new(stores.table, stores.blobs),
            auth,
            config: Arc::new(config),
            signer: stores.signer,
            derived: Arc::default(),
        }
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

/// The headers an error status owes the client, in every surface: `WWW-Authenticate` with
/// a 401, and `Retry-After` with a 503 (a garbage collection holding the bytes an upload
/// names; see `registry::gc`).
pub fn error_headers(res: &mut axum::response::Response) {
    use axum::http::{header, HeaderValue, StatusCode};
    match res.status() {
        StatusCode::UNAUTHORIZED => {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"depot\""));
        }
        StatusCode::SERVICE_UNAVAILABLE => {
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
        }
        _ => {}
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

/// Finishes a surface's router: its routes, the configured body limit, the state. A
/// request whose `Content-Length` is over the limit is refused before any handler runs,
/// with `render(too_large(Some(limit)))` in the surface's own envelope; a chunked body over
/// the limit fails in the body extractor, which the surface maps the same way.
pub fn surface_router(
    routes: RouteTable<AppState>,
    state: AppState,
    render: fn(Error) -> axum::response::Response,
) -> axum::Router {
    let limit = state.config.max_body_bytes;
    let check = move |req: axum::extract::Request, next: axum::middleware::Next| async move {
        let declared = req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return render(too_large(Some(limit)));
        }
        next.run(req).await
    };
    routes
        .into_router()
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(check))
        .with_state(state)
}

/// `GET /health`: `{"status":"ok","version":"..."}`. Touches no storage.
pub async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}
