//! The two ways packages come in: the packager tool's `POST /aps/packager/upload/`, with
//! its credentials in the form, and the catalog's own form (`POST /aps/`), with HTTP
//! credentials. Both store the same thing; they differ in how they answer.
use std::io::Seek;

use axum::extract::multipart::{Field, Multipart, MultipartError, MultipartRejection};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use depot_core::http::blobs::{blob_reference, BaseUrl};
use depot_core::http::spool::{field_stream, file_stream, spool, Spooled};
use depot_core::http::{AppState, Client, Scope};
use depot_core::model::{printable, Action, Actor, Identity, RepoType, STAGE_PRERELEASE, STAGE_RELEASE};
use depot_core::registry::{BlobRef, NewVersion};
use depot_core::store::stream_from_bytes;
use depot_core::{Error, Result};

use crate::catalog::{key_of, package_index_path, Attrs, Entry};
use crate::package::{is_format_char, parse_meta, read_package, AppMeta};

/// How many bytes of text fields a form may carry (the packager's, before its
/// credentials are checked, too).
const MAX_TEXT_FORM: usize = 64 * 1024;
/// The largest `meta` file of a registration by URL.
const MAX_META_FILE: usize = 1024 * 1024;

/// Why a package was refused: the packager upload answers it with a 500 (its tool
/// expects that), the catalog form with a 400 (or a 409 for a package that exists).
enum Refusal {
    Invalid(String),
    Exists(String),
    Other(Error),
}

impl From<Error> for Refusal {
    fn from(e: Error) -> Self {
        Refusal::Other(e)
    }
}

fn multipart_error(e: MultipartError) -> Error {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        depot_core::http::too_large(None)
    } else {
        Error::Invalid(format!("unreadable multipart form: {}", e.body_text()))
    }
}

/// A text field, counted against the form's budget.
async fn text_field(mut field: Field<'_>, name: &str, budget: &mut usize) -> Result<String> {
    let mut buf = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        if chunk.len() > *budget {
            return Err(Error::Invalid(format!("the form's text fields are over {MAX_TEXT_FORM} bytes")));
        }
        *budget -= chunk.len();
        buf.extend_from_slice(&chunk);
    }
    String::from_utf8(buf).map_err(|_| Error::Invalid(format!("form field '{}' is not UTF-8", printable(name))))
}

/// The form's text fields, each at most once.
#[derive(Default)]
struct Texts(Vec<(String, String)>);

impl Texts {
    fn add(&mut self, name: String, value: String) -> Result<()> {
        if self.get(&name).is_some() {
            return Err(Error::Invalid(format!("form field '{}' is sent twice", printable(&name))));
        }
        self.0.push((name, value));
        Ok(())
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A boolean field: absent is `None`.
    fn flag(&self, name: &str) -> Result<Option<bool>> {
        let Some(v) = self.get(name) else { return Ok(None) };
        match v.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Some(true)),
            "false" | "0" | "no" | "off" | "" => Ok(Some(false)),
            _ => Err(Error::Invalid(format!("form field '{}' must be true or false, not '{}'", printable(name), printable(v)))),
        }
    }
}

/// What an upload registers.
enum Bits {
    /// A package's zip: spooled, or staged already.
    Zip(Spooled),
    Staged(depot_core::registry::StagedBlob, Spooled),
    /// A package's `APP-META.xml` with the URL of its bits.
    MetaAndUrl(Vec<u8>, String),
}

struct Upload {
    bits: Bits,
    commercial_name: Option<String>,
    package_type: String,
    approve: bool,
    publish: bool,
}

/// Reads and checks the package, stores it, and commits its version.
async fn register(st: &AppState, actor: &Actor, p: &str, r: &str, up: Upload) -> std::result::Result<Attrs, Refusal> {
    let limits = depot_core::archive::Limits { max_unpacked_bytes: st.config.max_unpacked_bytes, ..Default::default() };
    let rest = Rest { commercial_name: up.commercial_name, package_type: up.package_type, approve: up.approve, publish: up.publish };
    let (meta, blob, files, url) = match up.bits {
        Bits::MetaAndUrl(meta_xml, url) => {
            let meta = parse_meta(&meta_xml).map_err(Refusal::Invalid)?;
            check_url(&url).map_err(Refusal::Invalid)?;
            // The metadata is the version's blob.
            (meta, st.registry.store_bytes(meta_xml.into()).await?, vec![], Some(url))
        }
        Bits::Zip(Spooled { file, .. }) => {
            let (pkg, file) = read_off_thread(file, limits).await?;
            let pkg = pkg.map_err(Refusal::Invalid)?;
            let blob = st.registry.store_content(file_stream(file)?).await?;
            with_files(st, pkg, blob).await?
        }
        Bits::Staged(staged, Spooled { file, .. }) => {
            let (pkg, _) = read_off_thread(file, limits).await?;
            let pkg = pkg.map_err(Refusal::Invalid)?;
            with_files(st, pkg, staged.into_blob_ref(p, r)).await?
        }
    };
    commit_as(st, actor, p, r, &rest, meta, blob, files, url).await
}

/// A zip's `APP-META.xml` and certificate, stored beside it; `blob` is released when
/// they cannot be.
async fn with_files(
    st: &AppState,
    pkg: crate::package::Package,
    blob: BlobRef,
) -> Result<(AppMeta, BlobRef, Vec<BlobRef>, Option<String>)> {
    let mut files: Vec<BlobRef> = vec![];
    for bytes in [Some(pkg.meta_xml), pkg.certificate.map(String::into_bytes)].into_iter().flatten() {
        match st.registry.store_content(stream_from_bytes(bytes)).await {
            Ok(b) => files.push(b),
            Err(e) => {
                release_all(st, &blob, &files).await;
                return Err(e);
            }
        }
    }
    Ok((pkg.meta, blob, files, None))
}

async fn release_all(st: &AppState, blob: &BlobRef, files: &[BlobRef]) {
    st.registry.release(&blob.hold).await;
    for f in files {
        st.registry.release(&f.hold).await;
    }
}

/// The upload's fields besides its bits.
struct Rest {
    commercial_name: Option<String>,
    package_type: String,
    approve: bool,
    publish: bool,
}

/// Commits a package's version; releases its blobs when it does not.
#[allow(clippy::too_many_arguments)]
async fn commit_as(
    st: &AppState,
    actor: &Actor,
    p: &str,
    r: &str,
    rest: &Rest,
    meta: AppMeta,
    blob: BlobRef,
    files: Vec<BlobRef>,
    url: Option<String>,
) -> std::result::Result<Attrs, Refusal> {
    // A package registered by its URL has its metadata as its blob.
    let meta_key = files.first().map_or_else(|| blob.key.clone(), |f| f.key.clone());
    let attrs = Attrs {
        aps_version: meta.aps_version.clone(),
        vendor: meta.vendor.clone(),
        application: meta.name.clone(),
        app_id: meta.id.clone(),
        version: meta.version.clone(),
        release: meta.release.clone(),
        packager: meta.packager.clone(),
        package_type: rest.package_type.clone(),
        arch: meta.arch.clone(),
        platform: meta.platform.clone(),
        os: meta.os.clone(),
        commercial_name: rest.commercial_name.clone(),
        summary: meta.summary.clone(),
        vendor_homepage: meta.vendor_homepage.clone(),
        packager_homepage: meta.packager_homepage.clone(),
        url,
        meta_blob: meta_key,
        certificate_blob: files.get(1).map(|f| f.key.clone()),
    };
    let key = key_of(&attrs.vendor, &attrs.application);
    let app_version = attrs.app_version();
    // Every package of this application version, and every name it may take, starts
    // with the version: one Query of those, whatever else the application holds.
    let existing = match st.registry.versions_with_prefix(p, r, &key, &app_version).await {
        Ok(v) => v,
        Err(e) => {
            release_all(st, &blob, &files).await;
            return Err(e.into());
        }
    };
    let same = existing.iter().filter_map(|v| Entry::of(v.clone())).find(|e| e.a.app_version() == app_version && e.a.identity() == attrs.identity());
    if let Some(e) = same {
        release_all(st, &blob, &files).await;
        return Err(Refusal::Exists(format!(
            "the package already exists in the catalog: {} {} {app_version} by {} ({}, APS {}, arch {}, platform {}, os {}), version [{}] of [{key}]",
            attrs.vendor, attrs.application, attrs.packager, attrs.package_type, attrs.aps_version, attrs.arch(), attrs.platform(), attrs.os(), e.v.name
        )));
    }
    // The first package of an application version is named by it; others of the same
    // version (another packager, type, APS version or platform) get `_2`, `_3`... (not
    // `+`, which a query string reads as a space).
    // Concurrent uploads of other packages of the version take the next free names.
    let taken = |n: &String| existing.iter().any(|v| &v.name == n);
    let mut names = std::iter::once(app_version.clone()).chain((2..).map(|n| format!("{app_version}_{n}"))).filter(|n| !taken(n));
    let name = names.next().expect("an unbounded sequence");
    let fallback_names: Vec<String> = names.take(32).collect();
    let mut stages = vec![];
    let manager = actor.may(Action::Manage);
    if rest.approve && manager {
        stages.push(STAGE_PRERELEASE);
    }
    if rest.publish && manager {
        stages.push(STAGE_RELEASE);
    }
    let mut req = NewVersion::new(p, r, &key, &attrs.application, RepoType::Aps, &name, blob);
    // The path names the package's identity (whether its bits are a zip or a URL), so
    // that two uploads of the same package at once claim the same path: the second is
    // refused as existing, whatever name it took.
    let [aps, packager, ty, arch, platform, os] = attrs.identity();
    req.content_path = format!(
        "/{}/{}/{app_version}/{}-{app_version}-{packager}-{ty}-{arch}-{platform}-{os}-aps{aps}.aps",
        attrs.vendor, attrs.application, attrs.application
    );
    req.fallback_names = fallback_names;
    req.description = attrs.summary.clone().unwrap_or_default();
    req.metadata = attrs.to_metadata();
    req.files = files;
    req.stages = stages;
    req.listing = Some(crate::catalog::listing_of(&attrs));
    match st.registry.create_version(req, actor).await {
        Ok(_) => Ok(attrs),
        // The same package, uploaded at the same moment by another request.
        Err(Error::Exists { what: depot_core::error::Kind::File, .. }) => Err(Refusal::Exists(format!(
            "the package already exists in the catalog: {} {} {app_version} by {} ({}, APS {}, arch {}, platform {}, os {})",
            attrs.vendor, attrs.application, attrs.packager, attrs.package_type, attrs.aps_version, attrs.arch(), attrs.platform(), attrs.os()
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Reads a spooled zip off the request task; hands the file back.
async fn read_off_thread(
    file: std::fs::File,
    limits: depot_core::archive::Limits,
) -> Result<(std::result::Result<crate::package::Package, String>, std::fs::File)> {
    tokio::task::spawn_blocking(move || {
        let mut f = file;
        f.rewind().map_err(Error::from)?;
        let pkg = read_package(std::io::BufReader::new(&mut f), &limits);
        Ok((pkg, f))
    })
    .await
    .map_err(Error::internal)?
}

/// The URL of a package registered by its metadata: absolute http or https (any case),
/// a host (a name, an IPv4 address or a bracketed IPv6 address) with an optional port, no
/// credentials, at most 2048 characters without spaces or control characters.
fn check_url(url: &str) -> std::result::Result<(), String> {
    let bad = || format!("url '{}' is not an absolute http or https URL (a host, no user:password@) of at most 2048 characters", printable(url));
    if url.len() > 2048 || url.chars().any(|c| c.is_control() || c.is_whitespace() || is_format_char(c)) {
        return Err(bad());
    }
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(bad());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // A host and an optional port, as depot checks its own: no `user:password@`.
    if depot_core::http::blobs::is_authority(authority) {
        Ok(())
    } else {
        Err(bad())
    }
}

fn check_commercial_name(v: Option<&str>) -> Result<Option<String>> {
    match v.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) if v.chars().count() <= 256 && !v.chars().any(char::is_control) => Ok(Some(v.to_string())),
        Some(_) => Err(Error::Invalid("commercialName must be at most 256 characters, without control characters".into())),
    }
}

/// A staged package named by `X-Depot-Blob` (one the uploader staged), spooled to read it.
async fn staged_bits(st: &AppState, p: &str, r: &str, reference: &str, who: &Identity) -> Result<Bits> {
    let staged = st.registry.resolve_own_staged(p, r, reference, who.name()).await?;
    let spooled = spool(st.registry.blobs.get(&staged.key, None).await?.body).await?;
    Ok(Bits::Staged(staged, spooled))
}

fn text(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// `POST /aps/packager/upload/`: the packager tool's upload. Its credentials come in
/// the form, before the file; `approve` and `publish` take effect for a user with MANAGE
/// on the catalog. A package that exists or fails validation is a 500, as the tool
/// expects.
pub async fn packager_upload(
    State(st): State<AppState>,
    client: Client,
    headers: HeaderMap,
    form: depot_core::http::spool::GatedForm,
) -> Result<Response> {
    // Until the credentials are checked, the form may hold only its text fields' worth.
    let gate = form.gate;
    let mut multipart = form.multipart.map_err(|_| {
        Error::Invalid("the packager upload is a multipart/form-data POST with the fields username, password and file".into())
    })?;
    let (p, r) = st.config.aps_repo.clone();
    let mut texts = Texts::default();
    let mut budget = MAX_TEXT_FORM;
    let mut signed: Option<Actor> = None;
    let mut bits: Option<Bits> = None;
    let prefix_of = |texts: &Texts| texts.get("aps_upload_param_prefix").unwrap_or_default().trim().to_string();
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_string();
        let prefix = prefix_of(&texts);
        if name == format!("{prefix}file") {
            if bits.is_some() {
                return Err(Error::Invalid(format!("form field '{}' is sent twice", printable(&name))));
            }
            // The credentials come before the file: nothing is stored for a caller
            // depot does not know.
            let actor = sign_in(&st, client, &texts, &prefix, &p, &r).await?;
            gate.open();
            bits = Some(Bits::Zip(spool(field_stream(field)).await?));
            signed = Some(actor);
        } else if field.file_name().is_some() {
            return Err(Error::Invalid(format!("unexpected file field '{}': the package goes in '{prefix}file'", printable(&name))));
        } else {
            let value = text_field(field, &name, &mut budget).await?;
            texts.add(name, value)?;
        }
    }
    let prefix = prefix_of(&texts);
    let (actor, bits) = match (signed, bits) {
        (Some(a), Some(b)) => (a, b),
        _ => {
            let actor = sign_in(&st, client, &texts, &prefix, &p, &r).await?;
            match blob_reference(&headers) {
                Some(reference) => {
                    let bits = staged_bits(&st, &p, &r, &reference?, &actor.who).await?;
                    (actor, bits)
                }
                None => {
                    return Err(Error::Missing {
                        param: format!("{prefix}file"),
                        message: format!("form field '{prefix}file' (the package's .app.zip) is missing"),
                    })
                }
            }
        }
    };
    let f = |n: &str| format!("{prefix}{n}");
    let (approve, publish) = (texts.flag(&f("approve"))?.unwrap_or(false), texts.flag(&f("publish"))?.unwrap_or(false));
    let up = Upload { bits, commercial_name: check_commercial_name(texts.get(&f("commercialName")))?, package_type: "APS".into(), approve, publish };
    let manager = actor.may(Action::Manage);
    match register(&st, &actor, &p, &r, up).await {
        Ok(a) => {
            let (approved, published) = (approve && manager, publish && manager);
            Ok(text(
                StatusCode::OK,
                format!(
                    "uploaded {} {} {} by {}: approved {approved}, published {published}\n",
                    a.vendor,
                    a.application,
                    a.app_version(),
                    a.packager
                ),
            ))
        }
        Err(Refusal::Invalid(m)) => Ok(text(StatusCode::INTERNAL_SERVER_ERROR, format!("the package did not pass validation: {m}\n"))),
        Err(Refusal::Exists(m)) => Ok(text(StatusCode::INTERNAL_SERVER_ERROR, format!("{m}\n"))),
        Err(Refusal::Other(e)) => Err(e),
    }
}

/// The packager's credentials from the form, as a depot user with WRITE on the catalog.
async fn sign_in(st: &AppState, client: Client, texts: &Texts, prefix: &str, p: &str, r: &str) -> Result<Actor> {
    let (Some(user), Some(password)) = (texts.get(&format!("{prefix}username")), texts.get(&format!("{prefix}password"))) else {
        return Err(Error::Unauthenticated(format!(
            "authorization required: the form's '{prefix}username' and '{prefix}password' must come before its '{prefix}file'"
        )));
    };
    use base64::Engine;
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")));
    let who = match st.authenticator.authenticate_from(Some(&basic), client.0).await? {
        Identity::Anonymous => return Err(Error::Unauthenticated("invalid username or password".into())),
        who => who,
    };
    depot_core::http::note_caller(who.name());
    let repo = st.registry.ensure_repository(p, r, RepoType::Aps, true).await?;
    st.authorizer.authorize(&who, p, Some((r, Some(&repo))), Action::Write).await
}

/// `POST /aps/`: the catalog form's upload, with HTTP credentials. `package`, or `meta`
/// with `url`; `packageType` APS or PVT. A user with MANAGE publishes (and approves)
/// unless the form says otherwise (`approve`, `publish`); others' packages wait for it.
pub async fn form_upload(
    State(st): State<AppState>,
    scope: Scope,
    base: BaseUrl,
    headers: HeaderMap,
    multipart: std::result::Result<Multipart, MultipartRejection>,
) -> Result<Response> {
    let (p, r) = (scope.project.clone(), scope.repo_name.clone());
    let mut texts = Texts::default();
    let mut budget = MAX_TEXT_FORM;
    let mut package: Option<Spooled> = None;
    let mut meta: Option<Vec<u8>> = None;
    if let Ok(mut multipart) = multipart {
        while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
            let name = field.name().unwrap_or_default().to_string();
            match name.as_str() {
                "package" if package.is_some() => return Err(Error::Invalid("form field 'package' is sent twice".into())),
                "package" => package = Some(spool(field_stream(field)).await?),
                "meta" if meta.is_some() => return Err(Error::Invalid("form field 'meta' is sent twice".into())),
                "meta" => {
                    let mut budget = MAX_META_FILE;
                    let bytes = read_file_field(field, &mut budget).await?;
                    meta = Some(bytes);
                }
                _ => {
                    let value = text_field(field, &name, &mut budget).await?;
                    texts.add(name, value)?;
                }
            }
        }
    } else if blob_reference(&headers).is_none() {
        return Err(Error::Invalid(
            "the catalog's upload is a multipart/form-data POST with the fields package (or meta and url) and packageType".into(),
        ));
    }
    let package_type = match texts.get("packageType").map(|t| t.trim().to_ascii_uppercase()) {
        Some(t) if t == "APS" || t == "PVT" => t,
        Some(t) => return Err(Error::Invalid(format!("packageType must be APS or PVT, not '{}'", printable(&t)))),
        None => return Err(Error::Missing { param: "packageType".into(), message: "form field 'packageType' (APS or PVT) is missing".into() }),
    };
    let url = texts.get("url").filter(|u| !u.is_empty()).map(String::from);
    let bits = match (package, meta, url, blob_reference(&headers)) {
        (Some(spooled), None, None, None) => Bits::Zip(spooled),
        (None, Some(m), Some(u), None) => Bits::MetaAndUrl(m, u),
        (None, None, None, Some(reference)) => staged_bits(&st, &p, &r, &reference?, scope.who()).await?,
        (None, Some(_), None, None) => return Err(Error::Missing { param: "url".into(), message: "a package registered by its meta needs the url of its bits".into() }),
        (None, None, Some(_), None) => return Err(Error::Missing { param: "meta".into(), message: "a package registered by its url needs its meta (APP-META.xml)".into() }),
        (None, None, None, None) => {
            return Err(Error::Missing { param: "package".into(), message: "form field 'package' (or 'meta' with 'url') is missing".into() })
        }
        _ => return Err(Error::Invalid("send either package, or meta with url (or name a staged package with X-Depot-Blob), not several".into())),
    };
    let manager = scope.actor.may(Action::Manage);
    let up = Upload {
        bits,
        commercial_name: check_commercial_name(texts.get("commercialName"))?,
        package_type,
        approve: texts.flag("approve")?.unwrap_or(manager),
        publish: texts.flag("publish")?.unwrap_or(manager),
    };
    match register(&st, &scope.actor, &p, &r, up).await {
        Ok(a) => {
            let location = base.resolve(package_index_path(a.aps_segment(), &a));
            let mut res = text(StatusCode::CREATED, format!("created {location}\n"));
            if let Ok(v) = header::HeaderValue::from_str(&location) {
                res.headers_mut().insert(header::LOCATION, v);
                res.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
            }
            Ok(res)
        }
        Err(Refusal::Invalid(m)) => Err(Error::Invalid(format!("the package did not pass validation: {m}"))),
        Err(Refusal::Exists(m)) => Err(Error::exists_as(depot_core::error::Kind::Version, "package", m)),
        Err(Refusal::Other(e)) => Err(e),
    }
}

/// A small file field, read whole up to `budget` bytes.
async fn read_file_field(mut field: Field<'_>, budget: &mut usize) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        if chunk.len() > *budget {
            return Err(Error::Invalid(format!("the meta file is over {MAX_META_FILE} bytes")));
        }
        *budget -= chunk.len();
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}
