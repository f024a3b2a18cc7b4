//! The bkrepo package and version management surface (`/repository/api/...`).
//!
//! This slice: projects and repositories. Every route authenticates before it
//! touches storage, and every answer uses the bkrepo envelope.
mod auth;
mod blobs;
pub mod envelope;
mod extract;
mod packages;
mod projects;
mod search;

use axum::Router;
use depot_core::http::{health, surface_router, AppState, RouteTable};

/// The routes of this surface. The route-consistency test compares them with
/// `template.yaml`.
pub fn routes() -> RouteTable<AppState> {
    RouteTable::new()
        .get("/health", health)
        .post("/repository/api/project/create", projects::create_project)
        .get("/repository/api/project/list", projects::list_projects)
        .get("/repository/api/project/info/{projectId}", projects::project_info)
        .get("/repository/api/project/exist/{projectId}", projects::project_exist)
        .delete("/repository/api/project/delete/{projectId}", projects::delete_project)
        .post("/repository/api/repo/create", projects::create_repo)
        .get("/repository/api/repo/list/{projectId}", projects::list_repos)
        .get("/repository/api/repo/info/{projectId}/{repoName}", projects::repo_info)
        .get("/repository/api/repo/exist/{projectId}/{repoName}", projects::repo_exist)
        .delete("/repository/api/repo/delete/{projectId}/{repoName}", projects::delete_repo)
        .get("/repository/api/package/page/{projectId}/{repoName}", packages::package_page)
        .get("/repository/api/package/info/{projectId}/{repoName}", packages::package_info)
        .post("/repository/api/package/search", search::search)
        .get("/repository/api/version/page/{projectId}/{repoName}", packages::version_page)
        .delete("/repository/api/package/delete/{projectId}/{repoName}", packages::delete_package)
        .post("/repository/api/version/list/{projectId}/{repoName}", packages::list_versions)
        .delete("/repository/api/version/delete/{projectId}/{repoName}", packages::delete_version)
        .get("/repository/api/version/download/{projectId}/{repoName}", packages::download_version)
        .post("/repository/api/stage/upgrade/{projectId}/{repoName}/{*packageKeyAndVersion}", packages::upgrade_stage)
        .post("/auth/api/user/create", auth::create_user)
        .get("/auth/api/user/list", auth::list_users)
        .get("/auth/api/user/detail/{userId}", auth::user_detail)
        .put("/auth/api/user/{userId}", auth::update_user)
        .delete("/auth/api/user/{userId}", auth::delete_user)
        .post("/auth/api/user/token/{userId}/{name}", auth::create_token)
        .get("/auth/api/user/list/token/{userId}", auth::list_tokens)
        .delete("/auth/api/user/token/{userId}/{name}", auth::delete_token)
        .post("/auth/api/permission/create", auth::create_permission)
        .get("/auth/api/permission/list", auth::list_permissions)
        .delete("/auth/api/permission/delete/{id}", auth::delete_permission)
        .post("/blobs/uploads", blobs::open_upload)
        .get("/blobs/uploads/{id}", blobs::upload_info)
        .delete("/blobs/uploads/{id}", blobs::abort_upload)
        .post("/blobs/uploads/{id}/complete", blobs::complete_upload)
        .get("/blobs/uploads/{id}/content", blobs::upload_content)
}

/// This surface's router, with its state. No fallback: `depot serve` merges it with the
/// other surfaces, and the Lambda entry point adds [`envelope::not_found`].
pub fn router(state: AppState) -> Router {
    surface_router(routes(), state, envelope::render)
}
