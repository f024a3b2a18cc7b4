//! The OCP routes: upload, query, delete by id, download.
use std::io::{BufReader, Seek};

use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use depot_core::http::blobs::{blob_reference, parse_range, respond, BaseUrl};
use depot_core::http::spool::{field_stream, file_stream, spool, Spooled};
use depot_core::http::extract::Path;
use depot_core::http::{elapsed_ms, trace_id, AppState, Scope};
use depot_core::model::{now_iso, printable, validate_filename, validate_package_key, validate_version, PackageVersion, RepoType};
use depot_core::registry::{NewVersion, PageRequest};
use depot_core::store::{ByteStream, Digests};
use depot_core::{Error, Result};
use serde_json::{json, Map, Value};

use crate::meta::{parse_file_name, type_of, TYPES};
use crate::rpm::{read_header, RpmHeader};

const KEY_PREFIX: &str = "rpm://";
/// OCP's page size: 10 unless asked, at most 2000.
const DEFAULT_SIZE: u32 = 10;
const MAX_SIZE: u32 = 2000;

/// The address OCP's `server` field names: the host's name, as OCP's own servers give it.
fn server() -> &'static str {
    static SERVER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SERVER.get_or_init(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "depot".into()))
}

/// OCP's envelope: `data` on success (absent when there is none), `error` on failure.
pub fn envelope(status: StatusCode, data: Option<Value>, error: Option<Value>) -> Response {
    let mut body = Map::new();
    if let Some(d) = data {
        body.insert("data".into(), d);
    }
    body.insert("successful".into(), error.is_none().into());
    body.insert("timestamp".into(), now_iso().into());
    body.insert("duration".into(), elapsed_ms().into());
    body.insert("status".into(), status.as_u16().into());
    body.insert("traceId".into(), trace_id().into());
    body.insert("server".into(), server().into());
    if let Some(e) = error {
        body.insert("error".into(), e);
    }
    (status, axum::Json(Value::Object(body))).into_response()
}

fn ok(data: Option<Value>) -> Response {
    envelope(StatusCode::OK, data, None)
}

fn text(v: &PackageVersion, field: &str) -> Value {
    v.metadata.get(field).cloned().unwrap_or(Value::Null)
}

/// A stored version as OCP's SoftwarePackageMeta.
fn meta_of(v: &PackageVersion, base: &BaseUrl) -> Value {
    let file = v.content_path.trim_start_matches('/');
    json!({
        "id": v.number,
        "name": text(v, "name"),
        "fileName": file,
        "extension": "rpm",
        "size": v.size,
        "sha1": v.sha1,
        "downloadUrl": base.resolve(format!("/api/v2/files/sys-package/{}", depot_core::store::pct_encode(file, false))),
        "type": text(v, "type"),
        "version": text(v, "version"),
        "buildNumber": text(v, "buildNumber"),
        "operatingSystem": text(v, "operatingSystem"),
        "architecture": text(v, "architecture"),
        // A @release version needs MANAGE to go, which OCP's roles do not name.
        "deletable": !v.is_released(),
        "createTime": v.created_date,
    })
}

/// What the upload carries: the file, or a staged blob's reference with the file name.
enum Source {
    File(String, Spooled),
    Staged(String, String),
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> Error {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        depot_core::http::too_large(None)
    } else {
        Error::Invalid(format!("unreadable multipart form: {}", e.body_text()))
    }
}

async fn source_of(headers: &HeaderMap, query: Option<&str>, multipart: std::result::Result<Multipart, MultipartRejection>) -> Result<Source> {
    let query_name = || -> Result<Option<String>> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or_default())
            .map_err(|e| Error::Invalid(format!("unreadable query string: {e}")))?;
        Ok(pairs.into_iter().find(|(k, _)| k == "fileName").map(|(_, v)| v))
    };
    if let Some(reference) = blob_reference(headers) {
        let name = query_name()?.ok_or_else(|| {
            missing_as("fileName", "an upload that names a staged blob (X-Depot-Blob) needs ?fileName=<name>.rpm")
        })?;
        return Ok(Source::Staged(reference?, name));
    }
    let mut multipart = match multipart {
        Ok(m) => m,
        Err(_) => return Err(missing_file()),
    };
    let (mut blob, mut name) = (None, None);
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        let field_name = field.name().unwrap_or_default().to_string();
        match (field_name.as_str(), field.file_name().map(str::to_string)) {
            ("file", Some(file_name)) => {
                // The field streams straight to the spool file; the rest of the form is
                // not read.
                return Ok(Source::File(file_name, spool(field_stream(field)).await?));
            }
            ("blob", None) => blob = Some(small_text(field, "blob").await?),
            ("fileName", None) => name = Some(small_text(field, "fileName").await?),
            _ => {}
        }
    }
    match (blob, name.or(query_name()?)) {
        (Some(b), Some(n)) => Ok(Source::Staged(b, n)),
        (Some(_), None) => Err(missing_as("fileName", "an upload that names a staged blob (field blob) needs a field fileName")),
        _ => Err(missing_file()),
    }
}

/// A short text field (a reference, a file name), read up to 4 KiB.
async fn small_text(mut field: axum::extract::multipart::Field<'_>, name: &str) -> Result<String> {
    const MAX: usize = 4096;
    let mut buf = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        if buf.len() + chunk.len() > MAX {
            return Err(Error::Invalid(format!("form field '{name}' is over {MAX} bytes")));
        }
        buf.extend_from_slice(&chunk);
    }
    let text = String::from_utf8(buf).map_err(|_| Error::Invalid(format!("form field '{name}' is not UTF-8")))?;
    Ok(text.trim().to_string())
}

fn missing_as(param: &str, message: &str) -> Error {
    Error::Missing { param: param.into(), message: message.into() }
}

fn missing_file() -> Error {
    missing_as(
        "file",
        "the multipart field 'file' is missing (or name a staged blob with the header X-Depot-Blob or the form field blob, with fileName)",
    )
}

/// The header, read from the spooled file off the request task.
async fn header_of(file: &std::fs::File) -> Result<RpmHeader> {
    let mut f = file.try_clone().map_err(Error::from)?;
    tokio::task::spawn_blocking(move || {
        f.rewind().map_err(Error::from)?;
        read_header(BufReader::new(&mut f))
    })
    .await
    .map_err(Error::internal)?
}

/// The header of a stream of bytes (a staged blob), read off the request task as far as
/// the header goes, and no further.
async fn header_of_stream(body: ByteStream) -> Result<RpmHeader> {
    let reader = tokio_util::io::StreamReader::new(body);
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let sync = tokio_util::io::SyncIoBridge::new_with_handle(reader, handle);
        read_header(BufReader::new(sync))
    })
    .await
    .map_err(Error::internal)?
}

/// Where the bytes of an upload are: spooled, or staged already.
enum Stored {
    File(std::fs::File),
    Staged(depot_core::registry::StagedBlob),
}

/// The package an RPM is: its header's fields, the file name's where the header lacks
/// them.
struct Identity {
    name: String,
    version: String,
    build: String,
    os: String,
    arch: String,
}

impl Identity {
    fn of(file_name: &str, h: RpmHeader) -> Result<Identity> {
        let from_name = parse_file_name(file_name);
        let (build, os) = match h.release.as_deref().map(|r| r.split_once('.').unwrap_or((r, ""))) {
            Some((b, o)) => (Some(b.to_string()), Some(o.to_string()).filter(|o| !o.is_empty())),
            None => (None, None),
        };
        let pick = |header: Option<String>, name: Option<String>, what: &str| {
            header.or(name).ok_or_else(|| {
                Error::Invalid(format!(
                    "the RPM's header has no {what}, and the file name '{}' does not follow \
                     {{name}}-{{version}}-{{buildNumber}}.{{os}}.{{arch}}.rpm",
                    printable(file_name)
                ))
            })
        };
        let id = Identity {
            name: pick(h.name, from_name.name, "name")?,
            version: pick(h.version, from_name.version, "version")?,
            build: pick(build, from_name.build, "release")?,
            os: pick(os, from_name.os, "operating system")?,
            arch: pick(h.arch, from_name.arch, "architecture")?,
        };
        // rpm's own rules for these fields: a name of letters, digits and `._+-`; a
        // version and release without `-`; an architecture of letters, digits and `_`.
        let field = |what: &str, v: &str, extra: &str| {
            let ok = (1..=256).contains(&v.len())
                && !v.starts_with('.')
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || extra.as_bytes().contains(&b));
            if ok {
                Ok(())
            } else {
                Err(Error::Invalid(format!("the RPM's {what} '{}' is not one rpm accepts", printable(v))))
            }
        };
        field("name", &id.name, "._+-")?;
        field("version", &id.version, "._+~^")?;
        field("build number", &id.build, "._+~^")?;
        field("operating system", &id.os, "._+~^")?;
        field("architecture", &id.arch, "_")?;
        Ok(id)
    }

    /// The version's name in the domain (DESIGN: `{version}-{buildNumber}.{os}.{arch}`).
    fn version_name(&self) -> String {
        format!("{}-{}.{}.{}", self.version, self.build, self.os, self.arch)
    }
}

/// Uploads an RPM: the multipart field `file`, or a staged blob (`X-Depot-Blob` with
/// `?fileName=`, or the form fields `blob` and `fileName`). The identical file again is
/// answered 200 with the stored package; a different one under a stored name is a 409.
pub async fn upload(
    State(st): State<AppState>,
    scope: Scope,
    base: BaseUrl,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    multipart: std::result::Result<Multipart, MultipartRejection>,
) -> Result<Response> {
    let (p, r) = (scope.project.clone(), scope.repo_name.clone());
    let source = source_of(&headers, query.as_deref(), multipart).await?;
    let file_name = match &source {
        Source::File(name, _) | Source::Staged(_, name) => name.clone(),
    };
    validate_filename(&file_name)?;
    if !file_name.to_ascii_lowercase().ends_with(".rpm") || file_name.len() <= 4 {
        return Err(Error::Invalid(format!("only RPM files are accepted: '{}' does not end in .rpm", printable(&file_name))));
    }
    // The header, and the bytes to store: the spooled upload, or a staged blob, of which
    // only the header is read.
    let (header, digests, stored) = match source {
        Source::File(_, spooled) => (header_of(&spooled.file).await?, spooled.digests.clone(), Stored::File(spooled.file)),
        Source::Staged(reference, _) => {
            let staged = st.registry.resolve_staged(&p, &r, &reference).await?;
            let header = header_of_stream(st.registry.blobs.get(&staged.key, None).await?.body).await?;
            (header, staged.digests(), Stored::Staged(staged))
        }
    };
    let id = Identity::of(&file_name, header)?;
    let key = format!("{KEY_PREFIX}{}", id.name);
    validate_package_key(&key).map_err(|e| Error::Invalid(format!("the RPM's name cannot name a package: {e}")))?;
    let version = id.version_name();
    validate_version(&version).map_err(|e| Error::Invalid(format!("the RPM's version cannot name a version: {e}")))?;
    let path = format!("/{file_name}");
    // The deployer uploads its RPMs again on every start: the same file is the stored one.
    if let Some(answer) = stored_answer(&st, &p, &r, &path, &key, &version, &digests, &base).await? {
        return answer;
    }
    let blob = match stored {
        Stored::Staged(s) => s.into_blob_ref(&p, &r),
        Stored::File(file) => st.registry.store_content(file_stream(file)?).await?,
    };
    let number = st.registry.next_number(&p, &r).await?;
    let ty = type_of(&id.name);
    let mut metadata = Map::new();
    metadata.insert("name".into(), id.name.clone().into());
    metadata.insert("type".into(), ty.into());
    metadata.insert("version".into(), id.version.clone().into());
    metadata.insert("buildNumber".into(), id.build.clone().into());
    metadata.insert("operatingSystem".into(), id.os.clone().into());
    metadata.insert("architecture".into(), id.arch.clone().into());
    let req = NewVersion {
        metadata,
        description: format!("{ty} {file_name}"),
        content_path: path.clone(),
        number: Some(number),
        ..NewVersion::new(&p, &r, &key, &id.name, RepoType::Rpm, &version, blob)
    };
    match st.registry.create_version(req, &scope.actor).await {
        Ok((v, _)) => Ok(ok(Some(meta_of(&v, &base)))),
        // A concurrent upload got there first: the same file is still a success.
        Err(Error::Exists { .. }) => match stored_answer(&st, &p, &r, &path, &key, &version, &digests, &base).await? {
            Some(answer) => answer,
            None => Err(Error::conflict(format!("{} was taken and released meanwhile: upload it again", printable(&file_name)))),
        },
        Err(e) => Err(e),
    }
}

/// The 409 of an upload whose name or package version is taken by another file.
fn conflict(file_name: &str, stored: &PackageVersion) -> Error {
    let stored_file = stored.content_path.trim_start_matches('/');
    let message = if stored_file == file_name {
        format!("another file is stored as {} (id {}): delete it first", printable(file_name), stored.number.unwrap_or(0))
    } else {
        format!(
            "{} is version {} of {}, stored already as {stored_file} (id {}): delete it first",
            printable(file_name),
            stored.name,
            stored.package_key,
            stored.number.unwrap_or(0)
        )
    };
    Error::exists_as(depot_core::error::Kind::File, file_name, message)
}

/// The answer when the file name or the package version is taken already: the stored
/// package when it holds the same bytes, else a 409. `None` when neither is taken.
#[allow(clippy::too_many_arguments)]
async fn stored_answer(
    st: &AppState,
    p: &str,
    r: &str,
    path: &str,
    key: &str,
    version: &str,
    digests: &Digests,
    base: &BaseUrl,
) -> Result<Option<Result<Response>>> {
    let stored = match st.registry.version_at_path(p, r, path).await? {
        Some(v) => Some(v),
        None => match st.registry.get_version(p, r, key, version).await {
            Ok(v) => Some(v),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        },
    };
    Ok(stored.map(|v| {
        if v.sha256 == digests.sha256 && v.content_path == path {
            Ok(ok(Some(meta_of(&v, base))))
        } else {
            Err(conflict(path.trim_start_matches('/'), &v))
        }
    }))
}

/// A query's parameters; the filters may repeat and may be comma-separated.
#[derive(Default)]
struct ListQuery {
    keyword: Option<String>,
    types: Vec<String>,
    versions: Vec<String>,
    systems: Vec<String>,
    architectures: Vec<String>,
    page: u32,
    size: u32,
    sort: Option<(String, bool)>,
}

const SORTABLE: [&str; 11] =
    ["id", "name", "fileName", "type", "version", "buildNumber", "operatingSystem", "architecture", "size", "createTime", "sha1"];

fn number_param(name: &str, v: &str, min: u32, max: u32) -> Result<u32> {
    match v.trim().parse::<u64>() {
        Ok(n) if (min as u64..=max as u64).contains(&n) => Ok(n as u32),
        _ => Err(Error::Invalid(format!("{name} must be a number from {min} to {max}, not '{}'", printable(v)))),
    }
}

fn parse_list_query(raw: Option<&str>) -> Result<ListQuery> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or_default())
        .map_err(|e| Error::Invalid(format!("unreadable query string: {e}")))?;
    let mut q = ListQuery { page: 1, size: DEFAULT_SIZE, ..Default::default() };
    let many = |v: &str| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect::<Vec<_>>();
    for (k, v) in pairs {
        match k.as_str() {
            "keyword" => q.keyword = Some(v.trim().to_string()).filter(|k| !k.is_empty()),
            "type" => {
                for t in many(&v) {
                    if !TYPES.contains(&t.as_str()) {
                        return Err(Error::Invalid(format!("unknown type '{}': one of {}", printable(&t), TYPES.join(", "))));
                    }
                    q.types.push(t);
                }
            }
            "version" => q.versions.extend(many(&v)),
            "operatingSystem" => q.systems.extend(many(&v)),
            "architecture" => q.architectures.extend(many(&v)),
            "page" => q.page = number_param("page", &v, 1, 1_000_000)?,
            "size" => q.size = number_param("size", &v, 1, MAX_SIZE)?,
            "sort" => {
                let (field, dir) = v.split_once(',').unwrap_or((v.as_str(), "asc"));
                let field = field.trim();
                if !SORTABLE.contains(&field) {
                    return Err(Error::Invalid(format!("cannot sort by '{}': one of {}", printable(field), SORTABLE.join(", "))));
                }
                let asc = match dir.trim().to_ascii_lowercase().as_str() {
                    "asc" => true,
                    "desc" => false,
                    d => return Err(Error::Invalid(format!("sort direction '{}' is neither asc nor desc", printable(d)))),
                };
                q.sort = Some((field.to_string(), asc));
            }
            _ => {}
        }
    }
    Ok(q)
}

impl ListQuery {
    fn filtered(&self) -> bool {
        self.keyword.is_some()
            || !self.types.is_empty()
            || !self.versions.is_empty()
            || !self.systems.is_empty()
            || !self.architectures.is_empty()
    }

    fn keeps(&self, v: &PackageVersion) -> bool {
        let field = |f: &str| v.metadata.get(f).and_then(Value::as_str).unwrap_or_default().to_string();
        let any = |values: &[String], f: &str| values.is_empty() || values.contains(&field(f));
        self.keyword.as_ref().is_none_or(|k| field("name").to_lowercase().contains(&k.to_lowercase()))
            && any(&self.types, "type")
            && any(&self.versions, "version")
            && any(&self.systems, "operatingSystem")
            && any(&self.architectures, "architecture")
    }
}

/// The sort key of a field: numbers as numbers, the rest as text.
fn compare(a: &PackageVersion, b: &PackageVersion, field: &str) -> std::cmp::Ordering {
    match field {
        "id" => a.number.cmp(&b.number),
        "size" => a.size.cmp(&b.size),
        "createTime" => a.created_date.cmp(&b.created_date),
        "fileName" => a.content_path.cmp(&b.content_path),
        "sha1" => a.sha1.cmp(&b.sha1),
        f => {
            let t = |v: &PackageVersion| v.metadata.get(f).and_then(Value::as_str).unwrap_or_default().to_string();
            t(a).cmp(&t(b))
        }
    }
    .then_with(|| a.number.cmp(&b.number))
}

/// Queries packages. Unfiltered and in upload order (the default, newest first, or
/// `sort=createTime,...`) it reads one page of the upload-order index; filters and other
/// sorts read the repository's versions once and page in memory.
pub async fn list(State(st): State<AppState>, scope: Scope, base: BaseUrl, RawQuery(raw): RawQuery) -> Result<Response> {
    let q = parse_list_query(raw.as_deref())?;
    let repo = scope.repo.clone().ok_or_else(|| Error::Internal("the OCP route has no repository".into()))?;
    let req = PageRequest { number: q.page, size: q.size };
    let by_upload = match &q.sort {
        None => Some(false),
        Some((f, asc)) if f == "createTime" => Some(*asc),
        _ => None,
    };
    let (items, total) = match by_upload.filter(|_| !q.filtered()) {
        Some(asc) => {
            let page = st.registry.upload_page(&repo, asc, req).await?;
            (page.items, page.total as u64)
        }
        None => {
            // The repository is read whole: a few such reads at a time, each holding only
            // the versions it keeps.
            let _slot = depot_core::registry::whole_read_slot().await?;
            let mut all = st.registry.uploads_where(&repo.project_id, &repo.name, |v| q.keeps(v)).await?;
            let (field, asc) = q.sort.clone().unwrap_or(("createTime".into(), false));
            all.sort_by(|a, b| if asc { compare(a, b, &field) } else { compare(b, a, &field) });
            let total = all.len() as u64;
            let start = (u64::from(q.page - 1) * u64::from(q.size)).min(total) as usize;
            (all.into_iter().skip(start).take(q.size as usize).collect(), total)
        }
    };
    let contents: Vec<Value> = items.iter().map(|v| meta_of(v, &base)).collect();
    let pages = total.div_ceil(u64::from(q.size));
    Ok(ok(Some(json!({
        "contents": contents,
        "page": { "totalElements": total, "totalPages": pages, "number": q.page, "size": q.size },
    }))))
}

/// Deletes a package by its integer id; the answer has no `data`.
pub async fn delete(State(st): State<AppState>, scope: Scope, Path(id): Path<String>) -> Result<Response> {
    let n: u64 = id
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| Error::Invalid(format!("id must be a positive integer, not '{}'", printable(&id))))?;
    let v = st.registry.version_by_number(&scope.project, &scope.repo_name, n).await.map_err(|e| {
        if e.is_not_found() {
            Error::not_found_as(depot_core::error::Kind::Version, &id, format!("no software package has id {n}"))
        } else {
            e
        }
    })?;
    st.registry.delete_version(&scope.actor, &scope.project, &scope.repo_name, &v.package_key, &v.name).await?;
    Ok(ok(None))
}

/// Downloads a package by file name, as every depot download (302 to a presigned URL,
/// or streamed), and counts it.
pub async fn download(
    State(st): State<AppState>,
    scope: Scope,
    base: BaseUrl,
    method: axum::http::Method,
    headers: HeaderMap,
    Path(file_name): Path<String>,
) -> Result<Response> {
    validate_filename(&file_name)?;
    let v = st
        .registry
        .version_at_path(&scope.project, &scope.repo_name, &format!("/{file_name}"))
        .await?
        .ok_or_else(|| {
            Error::not_found_as(depot_core::error::Kind::File, &file_name, format!("no software package is named {}", printable(&file_name)))
        })?;
    let range = parse_range(&headers);
    // A HEAD, or a range of the file, is not a download.
    let counted = method == axum::http::Method::GET && range.is_none();
    respond(st.registry.download_version(&v, None, range, counted).await?, &base)
}
