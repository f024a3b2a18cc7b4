//! Resource lookups: `/aps/{APSver}/{Vendor}/{App}/{AppVer}.aps|.meta|.certificate`
//! (and the version's feed, `{AppVer}.atom`, which shares the path's shape).
//!
//! - no published package matches: 404;
//! - several match: 300, with each one's fully specified URL;
//! - one matches, but arguments were left out: 303 to the URL that names them all;
//! - one matches a fully specified request: the resource (`.aps` as every download is
//!   answered, and counted).
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use depot_core::http::blobs::{respond, BaseUrl};
use depot_core::http::extract::Path;
use depot_core::http::{AppState, Scope};
use depot_core::{Error, Result};

use crate::catalog::{self, aps_version_of, resource_path, Args, Entry};
use crate::pages::{esc, feed, page, FeedScope, XHTML};

/// A redirect whose `Location` names depot's base URL: never kept by a shared cache.
pub fn redirect(status: StatusCode, location: &str) -> Result<Response> {
    let mut res = status.into_response();
    let v = HeaderValue::from_str(location).map_err(|_| Error::Internal("a location that is not a header value".into()))?;
    let h = res.headers_mut();
    h.insert(header::LOCATION, v);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::VARY, HeaderValue::from_static("Host, X-Forwarded-Host, X-Forwarded-Proto"));
    Ok(res)
}

pub async fn resource(
    State(st): State<AppState>,
    scope: Scope,
    base: BaseUrl,
    method: Method,
    Path((aps, vendor, app, file)): Path<(String, String, String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    if let Some(appver) = file.strip_suffix(".atom").filter(|v| !v.is_empty()) {
        let which = FeedScope::Version(aps, vendor, app, appver.to_string());
        return feed(&st, &scope, &base, which, q.as_deref()).await;
    }
    let Some((appver, kind)) =
        ["aps", "meta", "certificate"].iter().find_map(|k| file.strip_suffix(&format!(".{k}")).filter(|v| !v.is_empty()).map(|v| (v, *k)))
    else {
        return Err(Error::not_found_as(
            depot_core::error::Kind::Route,
            &file,
            "no such resource: an application version's resources end in .aps, .meta or .certificate, its feed in .atom",
        ));
    };
    aps_version_of(&aps)?;
    for (what, n) in [("vendor", &vendor), ("application", &app), ("version", &appver.to_string())] {
        catalog::check_name(what, n)?;
    }
    let args: Args = serde_urlencoded::from_str(q.as_deref().unwrap_or_default())
        .map_err(|e| Error::Invalid(format!("unreadable query string: {e}")))?;
    for (what, v) in [("packager", &args.packager), ("arch", &args.arch), ("type", &args.package_type), ("platform", &args.platform), ("os", &args.os)] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            catalog::check_name(what, v)?;
        }
    }
    if args.packager.as_deref().is_none_or(|p| p.trim().is_empty()) {
        return Err(Error::Missing {
            param: "packager".into(),
            message: "the argument packager (the packager's name, such as www.example.com) is required".into(),
        });
    }
    let candidates: Vec<Entry> = catalog::of_version(&st, scope.repo.as_ref(), &aps, &vendor, &app, appver)
        .await?
        .into_iter()
        .filter(|e| args.matches(&e.a))
        .collect();
    let one = match candidates.as_slice() {
        [] => {
            return Err(Error::not_found_as(
                depot_core::error::Kind::Package,
                format!("{vendor}/{app}/{appver}"),
                format!("no published package of {vendor} {app} {appver} matches the arguments"),
            ))
        }
        [one] => one,
        several => {
            let mut items = String::from("<ul>");
            for e in several {
                let href = format!("{}{}", base.0, resource_path(e.a.aps_segment(), &e.a, kind));
                let label = format!(
                    "{} {} by {}: {}, APS {}, arch {}, platform {}, os {}",
                    e.a.application,
                    e.a.app_version(),
                    e.a.packager,
                    e.a.package_type,
                    e.a.aps_version,
                    e.a.arch(),
                    e.a.platform(),
                    e.a.os()
                );
                items.push_str(&format!(r#"<li><a class="package" href="{}">{}</a></li>"#, esc(&href), esc(&label)));
            }
            items.push_str("</ul>");
            let body = page(&format!("{vendor} {app} {appver}: {} packages match", several.len()), None, &items);
            return Ok((StatusCode::MULTIPLE_CHOICES, [(header::CONTENT_TYPE, XHTML)], body).into_response());
        }
    };
    let a = &one.a;
    if !args.complete() {
        return redirect(StatusCode::SEE_OTHER, &format!("{}{}", base.0, resource_path(a.aps_segment(), a, kind)));
    }
    let counted = method != Method::HEAD;
    match kind {
        "aps" => match &a.url {
            // Registered by its URL: the bits are there.
            Some(url) => {
                if counted {
                    st.registry.record_download(&one.v.project_id, &one.v.repo_name, &one.v.package_key, &one.v.name).await?;
                }
                redirect(StatusCode::FOUND, url)
            }
            None => {
                let filename = format!("{}-{}.app.zip", a.application, a.app_version());
                let download = st.registry.download_version(&one.v, Some(&filename), None, counted).await?;
                let mut res = respond(download, &base)?;
                if res.status() == StatusCode::FOUND {
                    res.headers_mut().insert(header::VARY, HeaderValue::from_static("Host, X-Forwarded-Host, X-Forwarded-Proto"));
                }
                Ok(res)
            }
        },
        "meta" => blob(&st, &a.meta_blob, "application/xml; charset=utf-8").await,
        _ => match &a.certificate_blob {
            Some(key) => blob(&st, key, "application/x-pem-file").await,
            None => Err(Error::not_found_as(
                depot_core::error::Kind::File,
                "certificate",
                format!("{} {} {} by {} is not signed: it has no certificate", a.vendor, a.application, a.app_version(), a.packager),
            )),
        },
    }
}

/// A small stored document (`APP-META.xml`, a certificate), answered with its bytes.
async fn blob(st: &AppState, key: &str, content_type: &'static str) -> Result<Response> {
    let obj = st.registry.blobs.get(key, None).await?;
    let mut res = depot_core::http::blobs::stream_response(obj, None, None);
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The uploader's document: never run as a page on depot's origin.
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; sandbox"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Ok(res)
}
