//! The APS application catalog, for packagers and APS controllers unchanged: packages
//! (`.app.zip`) uploaded by the packager tool or the catalog's form, looked up by vendor,
//! application and version with 300/302/303/404, browsed through XHTML index pages and
//! Atom feeds, all under `/aps`.
//!
//! Every package is a version of `aps://{vendor}/{app}` in one repository
//! (`DEPOT_APS_REPO`, default `aps/catalog`, type APS, public for READ, created on first
//! use), named `{version}-{release}` ([`catalog`]). Only published packages (bkrepo's
//! `@release` stage) are in the catalog; approval is the `@prerelease` stage. Errors are
//! plain text with the reason; the packager upload answers a refused package with a 500,
//! as its tool expects.
mod catalog;
mod lookup;
mod package;
mod pages;
mod upload;
mod xml;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use depot_core::http::surface::Home;
use depot_core::http::{public_message, trace_id, Access, Routes, Surface};
use depot_core::model::Action::{Read, Write};
use depot_core::model::RepoType;
use depot_core::Error;

pub use catalog::{Attrs, KEY_PREFIX};
pub use package::{parse_meta, read_package, AppMeta, Package};

/// This surface, for `depot serve`, the `aps` Lambda function and the tests.
pub const SURFACE: Surface = Surface {
    name: "aps",
    prefixes: &["/aps/"],
    routes,
    render,
    home: Some(Home { repo: |c| &c.aps_repo, repo_type: RepoType::Aps, public: true }),
};

/// The routes: reads need READ on the catalog (public), the form's upload WRITE; the
/// packager upload checks the credentials of its form.
pub fn routes() -> Routes {
    use Access::{Anyone, Home};
    Routes::new()
        .get("/aps", Anyone, pages::to_root)
        .get("/aps/", Home(Read), pages::root)
        .post("/aps/", Home(Write), upload::form_upload)
        .post("/aps/packager/upload/", Anyone, upload::packager_upload)
        .get("/aps/feed.atom", Home(Read), pages::catalog_feed)
        .get("/aps/updates.atom", Home(Read), pages::updates_feed)
        .get("/aps/{file}", Home(Read), pages::aps_feed)
        .get("/aps/{apsVersion}/", Home(Read), pages::vendors)
        .get("/aps/{apsVersion}/{file}", Home(Read), pages::vendor_feed)
        .get("/aps/{apsVersion}/{vendor}/", Home(Read), pages::apps)
        .get("/aps/{apsVersion}/{vendor}/{file}", Home(Read), pages::app_feed)
        .get("/aps/{apsVersion}/{vendor}/{app}/", Home(Read), pages::versions)
        .get("/aps/{apsVersion}/{vendor}/{app}/{file}", Home(Read), lookup::resource)
        .get("/aps/{apsVersion}/{vendor}/{app}/{appVersion}/", Home(Read), pages::version)
        .get("/aps/{apsVersion}/{vendor}/{app}/{appVersion}/resources", Home(Read), pages::resources)
}

/// Every error of this surface: its reason as plain text, with the trace id.
fn render(e: &Error, status: StatusCode) -> Response {
    let body = format!("{}\ntrace id: {}\n", public_message(e), trace_id());
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}
