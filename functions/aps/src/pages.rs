//! Browsing the catalog: XHTML index pages (`/aps/`, `/aps/{APSver}/`, `.../{Vendor}/`,
//! `.../{App}/`, `.../{AppVer}/`, its `?packager=` package index and its `resources`)
//! and Atom feeds, all derived from the published packages and cached under the
//! repository's state (`Registry::rendering`), so that none is stale after a write.
//!
//! They read the listings the commits keep (`catalog::listing_of`), so that what each one
//! costs on a miss follows what it shows: the root nothing; a list of vendors,
//! applications, versions or packagers one Query of those names; a package index, a
//! resources index and a lookup one Query of one application version's packages; a feed
//! page one count and about one page of entries.
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use depot_core::http::blobs::BaseUrl;
use depot_core::http::extract::Path;
use depot_core::http::{AppState, Scope};
use depot_core::{Error, Result};

use crate::catalog::{self, aps_version_of, check_name, package_index_path, resource_path, seg, Entry};
use depot_core::registry::PageRequest;

pub const XHTML: &str = "application/xhtml+xml; charset=utf-8";
const ATOM: &str = "application/atom+xml; charset=utf-8";
/// Entries in one page of a feed.
pub const FEED_PAGE: usize = 20;

/// Text for XML: escaped, without the characters XML 1.0 cannot hold.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

fn not_found(what: &str) -> Error {
    Error::not_found_as(depot_core::error::Kind::Package, what, format!("{what} is not in the catalog"))
}

/// An XHTML page: `body` goes straight under `<body>`, after the title.
pub fn page(title: &str, feed: Option<&str>, body: &str) -> String {
    let t = esc(title);
    let (head_link, feed_link) = match feed {
        Some(f) => (
            format!(r#"<link rel="alternate" type="application/atom+xml" href="{}"/>"#, esc(f)),
            format!(r#"<p><a id="feedLink" href="{}">Atom feed</a></p>"#, esc(f)),
        ),
        None => (String::new(), String::new()),
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" xml:lang=\"en\"><head><title>{t}</title>{head_link}</head>\n<body><h1>{t}</h1>\n{body}{feed_link}\n</body></html>\n"
    )
}

fn links(class: &str, items: &[(String, String)]) -> String {
    if items.is_empty() {
        return "<p>Nothing is published here yet.</p>".into();
    }
    let lis: String =
        items.iter().map(|(href, text)| format!(r#"<li><a class="{class}" href="{}">{}</a></li>"#, esc(href), esc(text))).collect();
    format!("<ul>{lis}</ul>")
}

/// A page or feed: its links name depot's base URL, which the request's host headers
/// give, so a shared cache keys it by them.
fn answer(content_type: &'static str, body: Bytes) -> Response {
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (header::VARY, HeaderValue::from_static("Host, X-Forwarded-Host, X-Forwarded-Proto")),
    ];
    (StatusCode::OK, headers, body).into_response()
}

/// A rendering for this state of the repository (`kind` names it), cached.
async fn cached<F, Fut>(st: &AppState, scope: &Scope, base: &BaseUrl, kind: String, render: F) -> Result<Bytes>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<String>>,
{
    let render = || async move { render().await.map(Bytes::from) };
    match &scope.repo {
        Some(repo) => Ok(st.registry.rendering(repo, &format!("aps\0{}\0{kind}", base.0), render).await?.bytes),
        None => render().await,
    }
}

#[derive(Debug, Default)]
pub struct PageQuery {
    pub page: Option<String>,
    pub packager: Option<String>,
}

/// The query's `page` and `packager`, each at most once.
fn query_of(q: Option<&str>) -> Result<PageQuery> {
    let pairs = serde_urlencoded::from_str::<Vec<(String, String)>>(q.unwrap_or_default())
        .map_err(|e| Error::Invalid(format!("unreadable query string: {e}")))?;
    let get = |k: &str| -> Result<Option<String>> {
        let mut values = pairs.iter().filter(|(n, _)| n == k).map(|(_, v)| v.clone());
        let first = values.next();
        if values.next().is_some() {
            return Err(Error::Invalid(format!("the argument {k} is given twice")));
        }
        Ok(first)
    };
    Ok(PageQuery { page: get("page")?, packager: get("packager")? })
}

/// `/aps`: the repository index is `/aps/`.
pub async fn to_root(base: BaseUrl) -> Result<Response> {
    crate::lookup::redirect(StatusCode::PERMANENT_REDIRECT, &format!("{}/aps/", base.0))
}

/// `/aps/`: the repository index, with the upload form.
pub async fn root(base: BaseUrl) -> Result<Response> {
    let repos: Vec<(String, String)> = crate::package::APS_VERSIONS
        .iter()
        .map(|(v, s)| (format!("{}/aps/{s}/", base.0), format!("APS {v}")))
        .chain([(format!("{}/aps/all/", base.0), "All APS versions".to_string())])
        .collect();
    let form = format!(
        r#"<form id="packageSubmitForm" name="packageSubmitForm" action="{}/aps/" method="post" enctype="multipart/form-data">
<p><label>Package (.app.zip) <input type="file" name="package"/></label></p>
<p><label>or its APP-META.xml <input type="file" name="meta"/></label> <label>with the URL of its bits <input type="text" name="url"/></label></p>
<p><label>Commercial name <input type="text" name="commercialName"/></label></p>
<p><label>Package type <select name="packageType"><option value="APS" selected="selected">APS</option><option value="PVT">PVT</option></select></label></p>
<p><input type="submit" value="Upload"/></p>
</form>
"#,
        esc(&base.0)
    );
    let body = format!("{form}{}", links("repository", &repos));
    Ok(answer(XHTML, Bytes::from(page("APS catalog", Some(&format!("{}/aps/feed.atom", base.0)), &body))))
}

/// Sorted and without repeats, ignoring case.
fn distinct(mut v: Vec<String>) -> Vec<String> {
    v.sort_by_key(|s| (s.to_lowercase(), s.clone()));
    v.dedup();
    v
}

/// An index page of names (vendors, applications, versions, packagers): one Query of a
/// name listing. `href` makes a name's link; an empty list is a 404 when `missing`
/// names what is not there.
#[allow(clippy::too_many_arguments)]
async fn names_page(
    st: &AppState,
    scope: &Scope,
    base: &BaseUrl,
    listing: String,
    class: &str,
    title: String,
    feed: String,
    missing: Option<String>,
    href: impl Fn(&str) -> String,
) -> Result<Response> {
    let body = cached(st, scope, base, format!("names\0{listing}"), || async {
        let mut names = catalog::names(st, scope.repo.as_ref(), &listing).await?;
        if let (true, Some(what)) = (names.is_empty(), &missing) {
            return Err(not_found(what));
        }
        if class == "version" {
            names.sort_by(|a, b| catalog::version_order(b, a));
        } else {
            names = distinct(names);
        }
        let items: Vec<_> = names.into_iter().map(|n| (href(&n), n)).collect();
        Ok(page(&title, Some(&feed), &links(class, &items)))
    })
    .await?;
    Ok(answer(XHTML, body))
}

/// `/aps/{APSver}/`: the vendors.
pub async fn vendors(State(st): State<AppState>, scope: Scope, base: BaseUrl, Path(aps): Path<String>) -> Result<Response> {
    aps_version_of(&aps)?;
    let (listing, feed) = (format!("vendors/{aps}"), format!("{}/aps/{aps}.atom", base.0));
    let href = |n: &str| format!("{}/aps/{aps}/{}/", base.0, seg(n));
    names_page(&st, &scope, &base, listing, "vendor", format!("APS {aps}: vendors"), feed, None, href).await
}

/// `/aps/{APSver}/{Vendor}/`: the vendor's applications.
pub async fn apps(
    State(st): State<AppState>,
    scope: Scope,
    base: BaseUrl,
    Path((aps, vendor)): Path<(String, String)>,
) -> Result<Response> {
    aps_version_of(&aps)?;
    check_name("vendor", &vendor)?;
    let here = format!("{}/aps/{aps}/{}", base.0, seg(&vendor));
    let (listing, feed) = (format!("apps/{aps}/{vendor}"), format!("{here}.atom"));
    let href = |n: &str| format!("{here}/{}/", seg(n));
    let missing = Some(format!("vendor {vendor}"));
    names_page(&st, &scope, &base, listing, "application", format!("{vendor}: applications"), feed, missing, href).await
}

/// `/aps/{APSver}/{Vendor}/{App}/`: the application's versions, newest first.
pub async fn versions(
    State(st): State<AppState>,
    scope: Scope,
    base: BaseUrl,
    Path((aps, vendor, app)): Path<(String, String, String)>,
) -> Result<Response> {
    aps_version_of(&aps)?;
    check_name("vendor", &vendor)?;
    check_name("application", &app)?;
    let here = format!("{}/aps/{aps}/{}/{}", base.0, seg(&vendor), seg(&app));
    let (listing, feed) = (format!("versions/{aps}/{vendor}/{app}"), format!("{here}.atom"));
    let href = |n: &str| format!("{here}/{}/", seg(n));
    let missing = Some(format!("application {vendor}/{app}"));
    names_page(&st, &scope, &base, listing, "version", format!("{vendor} {app}: versions"), feed, missing, href).await
}

/// What a package index shows of one package.
fn details(base: &BaseUrl, aps: &str, e: &Entry) -> String {
    let a = &e.a;
    let row = |k: &str, v: &str| format!("<dt>{}</dt><dd class=\"{}\">{}</dd>", esc(k), esc(k), esc(v));
    let mut dl = String::new();
    let size = e.v.size.to_string();
    for (k, v) in a.fields().into_iter().chain([
        ("commercialName", a.commercial_name.as_deref().unwrap_or("")),
        ("summary", a.summary.as_deref().unwrap_or("")),
        ("size", &size),
        ("sha256", &e.v.sha256),
        ("uploaded", &e.v.created_date),
    ]) {
        dl.push_str(&row(k, v));
    }
    let resources = format!("{}/aps/{aps}/{}/{}/{}/resources?packager={}", base.0, seg(&a.vendor), seg(&a.application), seg(&a.app_version()), seg(&a.packager));
    format!(
        "<div class=\"package\"><dl>{dl}</dl><p><a class=\"resources\" href=\"{}\">resources</a> <a class=\"bits\" href=\"{}\">{}</a></p></div>\n",
        esc(&resources),
        esc(&format!("{}{}", base.0, resource_path(aps, a, "aps"))),
        esc(&format!("{}-{}.app.zip", a.application, a.app_version()))
    )
}

/// Checks the path's `{APSver}` segment and names; the `packager` argument, when it has
/// one.
fn packager_arg(aps: &str, names: [&str; 3], q: Option<&str>) -> Result<Option<String>> {
    aps_version_of(aps)?;
    for (what, n) in ["vendor", "application", "version"].into_iter().zip(names) {
        check_name(what, n)?;
    }
    let packager = query_of(q)?.packager.filter(|p| !p.trim().is_empty());
    if let Some(p) = &packager {
        check_name("packager", p)?;
    }
    Ok(packager)
}

/// `/aps/{APSver}/{Vendor}/{App}/{AppVer}/`: the version's packagers; with `?packager=`,
/// the package index of that packager's packages.
pub async fn version(
    State(st): State<AppState>,
    scope: Scope,
    base: BaseUrl,
    Path((aps, vendor, app, appver)): Path<(String, String, String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let packager = packager_arg(&aps, [&vendor, &app, &appver], q.as_deref())?;
    let here = format!("{}/aps/{aps}/{}/{}/{}/", base.0, seg(&vendor), seg(&app), seg(&appver));
    let feed = format!("{}/aps/{aps}/{}/{}/{}.atom", base.0, seg(&vendor), seg(&app), seg(&appver));
    let Some(packager) = packager else {
        let listing = format!("packagers/{aps}/{vendor}/{app}/{appver}");
        let title = format!("{vendor} {app} {appver}: packagers");
        let href = |n: &str| format!("{here}?packager={}", seg(n));
        let missing = Some(format!("{vendor} {app} {appver}"));
        return names_page(&st, &scope, &base, listing, "packager", title, feed, missing, href).await;
    };
    let kind = format!("version\0{aps}\0{vendor}\0{app}\0{appver}\0{packager}");
    let body = cached(&st, &scope, &base, kind, || async {
        let entries = catalog::of_version(&st, scope.repo.as_ref(), &aps, &vendor, &app, &appver).await?;
        let mine: Vec<&Entry> = entries.iter().filter(|e| e.a.packager.eq_ignore_ascii_case(&packager)).collect();
        if mine.is_empty() {
            return Err(not_found(&format!("{vendor} {app} {appver} by {packager}")));
        }
        let body: String = mine.iter().map(|e| details(&base, e.a.aps_segment(), e)).collect();
        Ok(page(&format!("{vendor} {app} {appver} by {packager}"), Some(&feed), &body))
    })
    .await?;
    Ok(answer(XHTML, body))
}

/// `.../{AppVer}/resources`: each package's resources, fully specified (`?packager=`
/// narrows them to one packager's).
pub async fn resources(
    State(st): State<AppState>,
    scope: Scope,
    base: BaseUrl,
    Path((aps, vendor, app, appver)): Path<(String, String, String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let packager = packager_arg(&aps, [&vendor, &app, &appver], q.as_deref())?;
    let kind = format!("resources\0{aps}\0{vendor}\0{app}\0{appver}\0{}", packager.as_deref().unwrap_or("\0"));
    let body = cached(&st, &scope, &base, kind, || async {
        let entries: Vec<Entry> = catalog::of_version(&st, scope.repo.as_ref(), &aps, &vendor, &app, &appver)
            .await?
            .into_iter()
            .filter(|e| packager.as_ref().is_none_or(|p| e.a.packager.eq_ignore_ascii_case(p)))
            .collect();
        if entries.is_empty() {
            return Err(not_found(&format!("{vendor} {app} {appver}")));
        }
        let mut items = String::from("<ul>");
        for e in &entries {
            let a = &e.a;
            let s = a.aps_segment();
            let mut kinds = vec![("aps", "package bits"), ("meta", "package metadata")];
            if a.certificate_blob.is_some() {
                kinds.push(("certificate", "package certificate"));
            }
            for (kind, what) in kinds {
                let href = format!("{}{}", base.0, resource_path(s, a, kind));
                let label = format!("{what}: {} ({}, {}, {}, {})", a.packager, a.package_type, a.arch(), a.platform(), a.os());
                items.push_str(&format!(r#"<li><a class="{kind}" href="{}">{}</a></li>"#, esc(&href), esc(&label)));
            }
        }
        items.push_str("</ul>");
        let feed = format!("{}/aps/{aps}/{}/{}/{}.atom", base.0, seg(&vendor), seg(&app), seg(&appver));
        Ok(page(&format!("{vendor} {app} {appver}: resources"), Some(&feed), &items))
    })
    .await?;
    Ok(answer(XHTML, body))
}

/// Which packages a feed lists.
pub enum FeedScope {
    All { updates: bool },
    Aps(String),
    Vendor(String, String),
    App(String, String, String),
    Version(String, String, String, String),
}

/// The page a feed request asks for: 1 unless `?page=N`.
fn page_number(q: &PageQuery) -> Result<usize> {
    match q.page.as_deref() {
        None => Ok(1),
        Some(p) => match p.parse::<usize>() {
            Ok(n) if (1..=100_000).contains(&n) => Ok(n),
            _ => Err(Error::Invalid(format!("page must be a whole number from 1 to 100000, not '{}'", depot_core::model::printable(p)))),
        },
    }
}

/// A feed: its packages newest first (by upload; by publication for `updates.atom`),
/// a page of [`FEED_PAGE`] at a time.
pub async fn feed(st: &AppState, scope: &Scope, base: &BaseUrl, which: FeedScope, q: Option<&str>) -> Result<Response> {
    let n = page_number(&query_of(q)?)?;
    let (listing, title, self_path) = match &which {
        FeedScope::All { updates: false } => ("feed/all".to_string(), "APS catalog".to_string(), "/aps/feed.atom".to_string()),
        FeedScope::All { updates: true } => ("updates".into(), "APS catalog: updates".into(), "/aps/updates.atom".into()),
        FeedScope::Aps(a) => (format!("feed/{a}"), format!("APS {a}"), format!("/aps/{a}.atom")),
        FeedScope::Vendor(a, v) => (format!("vendor/{a}/{v}"), v.clone(), format!("/aps/{a}/{}.atom", seg(v))),
        FeedScope::App(a, v, p) => (format!("app/{a}/{v}/{p}"), format!("{v} {p}"), format!("/aps/{a}/{}/{}.atom", seg(v), seg(p))),
        FeedScope::Version(a, v, p, x) => {
            (format!("version/{a}/{v}/{p}/{x}"), format!("{v} {p} {x}"), format!("/aps/{a}/{}/{}/{}.atom", seg(v), seg(p), seg(x)))
        }
    };
    match &which {
        FeedScope::All { .. } => {}
        FeedScope::Aps(a) => {
            aps_version_of(a)?;
        }
        FeedScope::Vendor(a, v) => {
            aps_version_of(a)?;
            check_name("vendor", v)?;
        }
        FeedScope::App(a, v, p) => {
            aps_version_of(a)?;
            check_name("vendor", v)?;
            check_name("application", p)?;
        }
        FeedScope::Version(a, v, p, x) => {
            aps_version_of(a)?;
            check_name("vendor", v)?;
            check_name("application", p)?;
            check_name("version", x)?;
        }
    }
    // A vendor's, an application's or a version's feed is there while its page is.
    let narrow = !matches!(which, FeedScope::All { .. } | FeedScope::Aps(_));
    let updates = matches!(which, FeedScope::All { updates: true });
    let body = cached(st, scope, base, format!("feed\0{listing}\0{n}"), || async {
        let req = PageRequest { number: n as u32, size: FEED_PAGE as u32 };
        let (entries, total) = catalog::page_of(st, scope.repo.as_ref(), &listing, req).await?;
        if narrow && total == 0 {
            return Err(not_found(&title));
        }
        let when = |e: &Entry| {
            if updates {
                e.v.released_date.clone().unwrap_or_else(|| e.v.created_date.clone())
            } else {
                e.v.created_date.clone()
            }
        };
        Ok(atom(base, &self_path, &title, &entries, total.max(0) as usize, n, &when))
    })
    .await?;
    Ok(answer(ATOM, body))
}

/// An Atom 1.0 feed of one page of `entries`, with OpenSearch counts and RFC 5005 links.
fn atom(base: &BaseUrl, self_path: &str, title: &str, shown: &[Entry], total: usize, n: usize, when: &dyn Fn(&Entry) -> String) -> String {
    let pages = total.div_ceil(FEED_PAGE).max(1);
    let url = format!("{}{self_path}", base.0);
    let link = |rel: &str, page: usize| format!(r#"<link rel="{rel}" type="application/atom+xml" href="{}?page={page}"/>"#, esc(&url));
    let mut links = vec![format!(r#"<link rel="self" type="application/atom+xml" href="{}?page={n}"/>"#, esc(&url)), link("first", 1), link("last", pages)];
    if n < pages {
        links.push(link("next", n + 1));
    }
    if n > 1 {
        links.push(link("previous", (n - 1).min(pages)));
    }
    let updated = shown.first().map(when).unwrap_or_else(|| "1970-01-01T00:00:00.000Z".into());
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\" xmlns:opensearch=\"http://a9.com/-/spec/opensearch/1.1/\" xmlns:aps=\"http://apstandard.com/ns/repo/1\">\n<id>{}</id><title>{}</title><updated>{}</updated><author><name>depot</name></author>\n{}\n<opensearch:totalResults>{total}</opensearch:totalResults><opensearch:startIndex>{}</opensearch:startIndex><opensearch:itemsPerPage>{FEED_PAGE}</opensearch:itemsPerPage>\n",
        esc(&url),
        esc(title),
        esc(&updated),
        links.join(""),
        (n - 1) * FEED_PAGE + 1,
    );
    for e in shown {
        let a = &e.a;
        let s = a.aps_segment();
        let bits = format!("{}{}", base.0, resource_path(s, a, "aps"));
        let index = format!("{}{}", base.0, package_index_path(s, a));
        let mut aps_el = String::new();
        for (k, v) in a.fields() {
            aps_el.push_str(&format!("<aps:{k}>{}</aps:{k}>", esc(v)));
        }
        if let Some(c) = &a.commercial_name {
            aps_el.push_str(&format!("<aps:commercialName>{}</aps:commercialName>", esc(c)));
        }
        aps_el.push_str(&format!("<aps:approved>{}</aps:approved>", e.approved()));
        let summary = a.summary.clone().unwrap_or_else(|| format!("{} {} {}", a.vendor, a.application, a.app_version()));
        out.push_str(&format!(
            "<entry><id>{}</id><title>{}</title><updated>{}</updated><published>{}</published><author><name>{}</name></author><link rel=\"alternate\" type=\"application/xhtml+xml\" href=\"{}\"/><link rel=\"enclosure\" type=\"application/zip\" length=\"{}\" href=\"{}\"/><summary>{}</summary>{aps_el}</entry>\n",
            esc(&bits),
            esc(&format!("{} {}", a.application, a.app_version())),
            esc(&when(e)),
            esc(&e.v.created_date),
            esc(&a.packager),
            esc(&index),
            e.v.size,
            esc(&bits),
            esc(&summary),
        ));
    }
    out.push_str("</feed>\n");
    out
}

pub async fn catalog_feed(State(st): State<AppState>, scope: Scope, base: BaseUrl, RawQuery(q): RawQuery) -> Result<Response> {
    feed(&st, &scope, &base, FeedScope::All { updates: false }, q.as_deref()).await
}

pub async fn updates_feed(State(st): State<AppState>, scope: Scope, base: BaseUrl, RawQuery(q): RawQuery) -> Result<Response> {
    feed(&st, &scope, &base, FeedScope::All { updates: true }, q.as_deref()).await
}

fn atom_name(file: &str) -> Result<&str> {
    file.strip_suffix(".atom")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| Error::not_found_as(depot_core::error::Kind::Route, file, "no such route: feeds end in .atom, index pages in /"))
}

/// `/aps/{APSver}.atom`.
pub async fn aps_feed(State(st): State<AppState>, scope: Scope, base: BaseUrl, Path(file): Path<String>, RawQuery(q): RawQuery) -> Result<Response> {
    let aps = atom_name(&file)?.to_string();
    feed(&st, &scope, &base, FeedScope::Aps(aps), q.as_deref()).await
}

/// `/aps/{APSver}/{Vendor}.atom`.
pub async fn vendor_feed(
    State(st): State<AppState>,
    scope: Scope,
    base: BaseUrl,
    Path((aps, file)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let vendor = atom_name(&file)?.to_string();
    feed(&st, &scope, &base, FeedScope::Vendor(aps, vendor), q.as_deref()).await
}

/// `/aps/{APSver}/{Vendor}/{App}.atom`.
pub async fn app_feed(
    State(st): State<AppState>,
    scope: Scope,
    base: BaseUrl,
    Path((aps, vendor, file)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let app = atom_name(&file)?.to_string();
    feed(&st, &scope, &base, FeedScope::App(aps, vendor, app), q.as_deref()).await
}
