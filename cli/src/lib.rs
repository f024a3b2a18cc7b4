//! The list of surfaces: `depot serve` runs every one of them, each Lambda function runs
//! its own, and the tests check every one against `template.yaml`, the README and hostile
//! input. Adding a surface adds its crate's `SURFACE` here.
pub mod client;

use axum::Router;
use depot_core::http::blobs::local_blob_router;
use depot_core::http::{trace_layer, AppState, Surface};

/// Every surface depot serves. The first answers paths that no surface's prefix claims.
pub const SURFACES: &[&Surface] =
    &[&depot_packages::SURFACE, &depot_rds::SURFACE, &depot_strux::SURFACE, &depot_ocp::SURFACE, &depot_aps::SURFACE];

/// Every surface on one router, with the embedded backend's signed blob routes and one
/// trace layer: what `depot serve` listens with.
pub fn app(state: AppState) -> Router {
    depot_core::http::app(SURFACES, state.clone())
        .merge(local_blob_router(state))
        .layer(axum::middleware::from_fn(trace_layer))
}
