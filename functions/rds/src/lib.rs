//! bkrepo's RDS chart repositories (ChartMuseum-like): upload, `index.yaml`, the charts
//! API, downloads, deletes, and the `/rds/ext/...` routes.
//!
//! Each uploaded version becomes an ordinary package version (`rds://{code}`) in the
//! domain. Errors are `{"error":"..."}` with a fitting status on every route; the
//! `/rds/ext/...` routes answer success in the bkrepo envelope.
mod archive;
mod handlers;
mod index;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use depot_core::http::{public_message, Access, Routes, Surface};
use depot_core::model::Action::{Delete, Read, Write};
use depot_core::Error;

/// This surface, for `depot serve`, the `rds` Lambda function and the tests.
pub const SURFACE: Surface = Surface { name: "rds", prefixes: &["/rds/", "/api/"], routes, render, home: None };

/// The routes of this surface, each with the access it needs.
pub fn routes() -> Routes {
    use handlers::*;
    use Access::Repo;
    Routes::new()
        .post("/rds/api/{projectId}/{repoName}/charts", Repo(Write), upload)
        .post("/api/{projectId}/{repoName}/charts", Repo(Write), upload)
        // bkrepo's helm-push plugin URL.
        .post("/rds/{projectId}/{repoName}/charts", Repo(Write), upload)
        .get("/rds/{projectId}/{repoName}/index.yaml", Repo(Read), index_yaml)
        .get("/rds/{projectId}/{repoName}/api/charts", Repo(Read), all_charts)
        .head("/rds/{projectId}/{repoName}/api/charts", Repo(Read), all_charts)
        .get("/rds/{projectId}/{repoName}/api/charts/{name}", Repo(Read), chart_versions)
        .head("/rds/{projectId}/{repoName}/api/charts/{name}", Repo(Read), chart_versions)
        .get("/rds/{projectId}/{repoName}/api/charts/{name}/{version}", Repo(Read), chart_version)
        .head("/rds/{projectId}/{repoName}/api/charts/{name}/{version}", Repo(Read), chart_version)
        .delete("/rds/{projectId}/{repoName}/api/charts/{name}/{version}", Repo(Delete), delete_chart_version)
        .get("/rds/{projectId}/{repoName}/charts/{filename}", Repo(Read), download)
        // The spec writes the ext routes with a slash before the query; both forms work.
        .get("/rds/ext/version/detail/{projectId}/{repoName}", Repo(Read), ext_version_detail)
        .get("/rds/ext/version/detail/{projectId}/{repoName}/", Repo(Read), ext_version_detail)
        .delete("/rds/ext/package/delete/{projectId}/{repoName}", Repo(Delete), ext_delete_package)
        .delete("/rds/ext/package/delete/{projectId}/{repoName}/", Repo(Delete), ext_delete_package)
        .delete("/rds/ext/version/delete/{projectId}/{repoName}", Repo(Delete), ext_delete_version)
        .delete("/rds/ext/version/delete/{projectId}/{repoName}/", Repo(Delete), ext_delete_version)
}

/// Every error of this surface, `/rds/ext/` included: ChartMuseum's `{"error":"..."}`,
/// with the trace id that the server's log line carries.
fn render(e: &Error, status: StatusCode) -> Response {
    let body = serde_json::json!({ "error": public_message(e), "traceId": depot_core::http::trace_id() });
    (status, axum::Json(body)).into_response()
}
