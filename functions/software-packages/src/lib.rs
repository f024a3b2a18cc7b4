//! OceanBase OCP's software-package API, for OceanBase's deployer and OCP's agents
//! unchanged: RPM uploads whose metadata comes from the RPM header, typed and paged
//! queries, deletes by integer id, downloads.
//!
//! Every package is a version of `rpm://{name}` in one repository (`DEPOT_OCP_REPO`,
//! default `ocp/software-packages`, type RPM, created on first use), named
//! `{version}-{release}.{arch}` and stored at `/{fileName}`. Its id is a version number
//! (`Registry::next_number`). Answers are OCP's envelope
//! `{data, successful, timestamp, duration, status, traceId, server}`; errors drop
//! `data` and carry `error: {code, message}`.
mod handlers;
mod meta;
mod rpm;

use axum::http::StatusCode;
use axum::response::Response;
use depot_core::http::surface::Home;
use depot_core::http::{public_message, Access, Routes, Surface};
use depot_core::model::Action::{Delete, Read, Write};
use depot_core::model::RepoType;
use depot_core::Error;

pub use rpm::{read_header, RpmHeader};

/// This surface, for `depot serve`, the `software-packages` Lambda function and the tests.
pub const SURFACE: Surface = Surface {
    name: "software-packages",
    prefixes: &["/api/v2/"],
    routes,
    render,
    home: Some(Home { repo: |c| &c.ocp_repo, repo_type: RepoType::Rpm, public: false }),
};

/// The routes, each with the access it needs on the OCP repository: WRITE and DELETE are
/// OCP's PACKAGE_MANAGER, READ its PACKAGE_VIEWER.
pub fn routes() -> Routes {
    use handlers::*;
    use Access::Home;
    Routes::new()
        .post("/api/v2/software-packages", Home(Write), upload)
        .get("/api/v2/software-packages", Home(Read), list)
        .delete("/api/v2/software-packages/{id}", Home(Delete), delete)
        .get("/api/v2/files/sys-package/{fileName}", Home(Read), download)
}

/// OCP's error codes: 10001 illegal argument and 10002 not found are OCP's; the others
/// are depot's, one per HTTP status class it answers.
pub fn code_of(e: &Error) -> i64 {
    match e {
        Error::Invalid(_)
        | Error::Missing { .. }
        | Error::TooLarge(_)
        | Error::NotAllowed { .. }
        | Error::RangeNotSatisfiable { .. } => 10001,
        Error::NotFound { .. } => 10002,
        Error::Unauthenticated(_) => 10003,
        Error::Forbidden(_) => 10004,
        Error::Exists { .. } | Error::Conflict { .. } => 10009,
        Error::Throttled { .. } => 10029,
        Error::Unavailable { .. } | Error::Internal(_) => 10050,
    }
}

/// Every error of this surface, in OCP's envelope.
fn render(e: &Error, status: StatusCode) -> Response {
    handlers::envelope(status, None, Some(serde_json::json!({ "code": code_of(e), "message": public_message(e) })))
}
