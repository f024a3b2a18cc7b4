//! bkrepo's RDS chart repositories (ChartMuseum-like): upload, `index.yaml`, the charts
//! API, downloads, deletes, and the `/rds/ext/...` routes.
//!
//! Each uploaded version becomes an ordinary package version (`rds://{code}`) in the
//! domain. Errors are `{"error":"..."}` with a fitting status on every route; the
//! `/rds/ext/...` routes answer success in the bkrepo envelope.
mod archive;
mod error;
mod handlers;
mod index;

use axum::Router;
use depot_core::http::{surface_router, AppState, RouteTable};

pub use error::{not_found, RdsError};

/// The routes of this surface. The route-consistency test compares them with
/// `template.yaml`.
pub fn routes() -> RouteTable<AppState> {
    RouteTable::new()
        .post("/rds/api/{projectId}/{repoName}/charts", handlers::upload)
        .post("/api/{projectId}/{repoName}/charts", handlers::upload)
        .get("/rds/{projectId}/{repoName}/index.yaml", handlers::index_yaml)
        .get("/rds/{projectId}/{repoName}/api/charts", handlers::all_charts)
        .head("/rds/{projectId}/{repoName}/api/charts", handlers::all_charts)
        .get("/rds/{projectId}/{repoName}/api/charts/{name}", handlers::chart_versions)
        .head("/rds/{projectId}/{repoName}/api/charts/{name}", handlers::chart_versions)
        .get("/rds/{projectId}/{repoName}/api/charts/{name}/{version}", handlers::chart_version)
        .head("/rds/{projectId}/{repoName}/api/charts/{name}/{version}", handlers::chart_version)
        .delete("/rds/{projectId}/{repoName}/api/charts/{name}/{version}", handlers::delete_chart_version)
        .get("/rds/{projectId}/{repoName}/charts/{filename}", handlers::download)
        // The spec writes the ext routes with a slash before the query; both forms work.
        .get("/rds/ext/version/detail/{projectId}/{repoName}", handlers::ext_version_detail)
        .get("/rds/ext/version/detail/{projectId}/{repoName}/", handlers::ext_version_detail)
        .delete("/rds/ext/package/delete/{projectId}/{repoName}", handlers::ext_delete_package)
        .delete("/rds/ext/package/delete/{projectId}/{repoName}/", handlers::ext_delete_package)
        .delete("/rds/ext/version/delete/{projectId}/{repoName}", handlers::ext_delete_version)
        .delete("/rds/ext/version/delete/{projectId}/{repoName}/", handlers::ext_delete_version)
}

/// This surface's router, with its state. No fallback: `depot serve` merges it with the
/// other surfaces, and the Lambda entry point adds [`not_found`].
pub fn router(state: AppState) -> Router {
    surface_router(routes(), state, error::render)
}
