//! The strux package microservice (uwine4850/strux_api), for its command-line client
//! unchanged: users, directory-tree uploads, multipart downloads and versions.
//!
//! Every route reads a `multipart/form-data` body, GET requests included, and ignores
//! query strings. The routes carry their credentials in the form, so the kit admits
//! anyone and the handlers authenticate (`handlers::signed_in`). Answers other than a
//! download or a version list are strux's `BaseResponse`, `{"message","success","status"}`
//! as `text/plain`, with depot's honest HTTP statuses.
//!
//! A strux user is a depot user. Its packages are `strux://{user}/{package}` in one
//! repository (`DEPOT_STRUX_REPO`, default `strux/packages`, type STRUX, public for
//! READ, created on first use); only the user uploads into its namespace. A version is a
//! tree: each file a content-addressed blob, and a manifest blob (the version's own)
//! holding the tree with the files' digests.
mod form;
mod handlers;
mod tree;

use axum::http::StatusCode;
use axum::response::Response;
use depot_core::http::{public_message, Access, Routes, Surface};
use depot_core::Error;

/// This surface, for `depot serve`, the `strux` Lambda function and the tests.
pub const SURFACE: Surface = Surface {
    name: "strux",
    prefixes: &[
        "/create-user",
        "/user-exist",
        "/user-log-in",
        "/user-password-update",
        "/user-delete",
        "/upload-pkg",
        "/exists-package",
        "/package-versions",
        "/download-package",
    ],
    routes,
    render,
    home: None,
};

/// The routes, each with and without its trailing slash. The kit admits anyone: each
/// handler authenticates the form's `username` and `password` where strux asks for them.
pub fn routes() -> Routes {
    use handlers::*;
    use Access::Anyone;
    Routes::new()
        .post("/create-user/", Anyone, create_user)
        .post("/create-user", Anyone, create_user)
        .get("/user-exist/", Anyone, user_exist)
        .get("/user-exist", Anyone, user_exist)
        .get("/user-log-in/", Anyone, user_log_in)
        .get("/user-log-in", Anyone, user_log_in)
        .put("/user-password-update/", Anyone, user_password_update)
        .put("/user-password-update", Anyone, user_password_update)
        .delete("/user-delete/", Anyone, user_delete)
        .delete("/user-delete", Anyone, user_delete)
        .post("/upload-pkg/", Anyone, upload_pkg)
        .post("/upload-pkg", Anyone, upload_pkg)
        .get("/exists-package/", Anyone, exists_package)
        .get("/exists-package", Anyone, exists_package)
        .get("/package-versions/", Anyone, package_versions)
        .get("/package-versions", Anyone, package_versions)
        .get("/download-package/", Anyone, download_package)
        .get("/download-package", Anyone, download_package)
}

/// Every error of this surface: a `BaseResponse` with status 0 (error).
fn render(e: &Error, status: StatusCode) -> Response {
    handlers::base(status, 0, false, public_message(e))
}
