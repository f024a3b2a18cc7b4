//! The bkrepo management surface: projects, repositories, packages, versions, search
//! (`/repository/api/...`), users, tokens and grants (`/auth/api/...`), and the upload
//! sessions every surface's large uploads go through (`/blobs/uploads`). Every answer
//! uses bkrepo's envelope (`depot_core::http::bkrepo`).
mod auth;
mod blobs;
mod packages;
mod projects;
mod search;

use depot_core::http::bkrepo;
use depot_core::http::{health, Access, Routes, Surface};
use depot_core::model::Action::{Delete, Manage, Read, Write};

/// This surface, for `depot serve`, the `packages` Lambda function and the tests.
pub const SURFACE: Surface =
    Surface { name: "packages", prefixes: &["/repository/", "/auth/", "/blobs/"], routes, render: bkrepo::render, home: None };

/// The routes of this surface, each with the access it needs.
pub fn routes() -> Routes {
    use Access::{Admin, Anyone, Project, Repo, User};
    Routes::new()
        .get("/health", Anyone, health)
        // Any user may create a project (and manages it); the list shows what it may see.
        .post("/repository/api/project/create", User, projects::create_project)
        .get("/repository/api/project/list", User, projects::list_projects)
        .get("/repository/api/project/info/{projectId}", Project(Read), projects::project_info)
        .get("/repository/api/project/exist/{projectId}", Project(Read), projects::project_exist)
        .get("/repository/api/project/exist", User, projects::project_exist_by)
        .put("/repository/api/project/{projectId}", Project(Manage), projects::update_project)
        .delete("/repository/api/project/delete/{projectId}", Admin, projects::delete_project)
        // The project is in the body: the handler authorizes MANAGE on it.
        .post("/repository/api/repo/create", User, projects::create_repo)
        // Only the repositories the caller may read, `[]` when none.
        .get("/repository/api/repo/list/{projectId}", User, projects::list_repos)
        .get("/repository/api/repo/page/{projectId}/{pageNumber}/{pageSize}", User, projects::repo_page)
        .get("/repository/api/repo/info/{projectId}/{repoName}", Repo(Read), projects::repo_info)
        .get("/repository/api/repo/info/{projectId}/{repoName}/{type}", Repo(Read), projects::repo_info_of_type)
        .post("/repository/api/repo/update/{projectId}/{repoName}", Repo(Manage), projects::update_repo)
        .get("/repository/api/repo/exist/{projectId}/{repoName}", Repo(Read), projects::repo_exist)
        .delete("/repository/api/repo/delete/{projectId}/{repoName}", Repo(Delete), projects::delete_repo)
        .get("/repository/api/package/page/{projectId}/{repoName}", Repo(Read), packages::package_page)
        .get("/repository/api/package/info/{projectId}/{repoName}", Repo(Read), packages::package_info)
        // The project is in the rule: the handler reads only the repositories the caller may read.
        .post("/repository/api/package/search", User, search::search)
        .get("/repository/api/version/page/{projectId}/{repoName}", Repo(Read), packages::version_page)
        .delete("/repository/api/package/delete/{projectId}/{repoName}", Repo(Delete), packages::delete_package)
        .post("/repository/api/version/list/{projectId}/{repoName}", Repo(Read), packages::list_versions)
        .delete("/repository/api/version/delete/{projectId}/{repoName}", Repo(Delete), packages::delete_version)
        .get("/repository/api/version/download/{projectId}/{repoName}", Repo(Read), packages::download_version)
        .post("/repository/api/stage/upgrade/{projectId}/{repoName}", Repo(Write), packages::upgrade_stage_by_query)
        .post(
            "/repository/api/stage/upgrade/{projectId}/{repoName}/{*packageKeyAndVersion}",
            Repo(Write),
            packages::upgrade_stage,
        )
        .get("/repository/api/stage/{projectId}/{repoName}", Repo(Read), packages::stage_tags)
        .post("/auth/api/user/create", Admin, auth::create_user)
        .get("/auth/api/user/list", Admin, auth::list_users)
        // Users act on themselves; an administrator on anyone (the use case decides).
        .get("/auth/api/user/detail/{userId}", User, auth::user_detail)
        .get("/auth/api/user/info", User, auth::user_info)
        .get("/auth/api/user/page/{pageNumber}/{pageSize}", Admin, auth::user_page)
        .put("/auth/api/user/update/info/{userId}", User, auth::update_user)
        .delete("/auth/api/user/delete/{userId}", Admin, auth::delete_user)
        // depot's older paths of the two above.
        .put("/auth/api/user/{userId}", User, auth::update_user)
        .delete("/auth/api/user/{userId}", Admin, auth::delete_user)
        .post("/auth/api/user/token/{userId}/{name}", User, auth::create_token)
        .get("/auth/api/user/list/token/{userId}", User, auth::list_tokens)
        .delete("/auth/api/user/token/{userId}/{name}", User, auth::delete_token)
        // Grants need MANAGE on the project they name, which the body or the grant holds.
        .post("/auth/api/permission/create", User, auth::create_permission)
        .get("/auth/api/permission/list", User, auth::list_permissions)
        .delete("/auth/api/permission/delete/{id}", User, auth::delete_permission)
        .put("/auth/api/permission/user", User, auth::update_permission_users)
        .put("/auth/api/permission/action", User, auth::update_permission_actions)
        .put("/auth/api/permission/repo", User, auth::update_permission_repos)
        .put("/auth/api/permission/update/user", User, auth::update_permission_users)
        .put("/auth/api/permission/update/action", User, auth::update_permission_actions)
        .put("/auth/api/permission/update/repo", User, auth::update_permission_repos)
        // A session's repository is in the body or the session: the handler authorizes it.
        .post("/blobs/uploads", User, blobs::open_upload)
        .get("/blobs/uploads/{id}", User, blobs::upload_info)
        .delete("/blobs/uploads/{id}", User, blobs::abort_upload)
        .post("/blobs/uploads/{id}/complete", User, blobs::complete_upload)
        .get("/blobs/uploads/{id}/content", User, blobs::upload_content)
}
