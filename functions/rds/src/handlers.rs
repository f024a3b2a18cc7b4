//! The RDS routes. The kit has authenticated and authorized the caller and read the
//! repository; each handler checks its input, then calls the domain.
use std::io::{Cursor, Seek};

use axum::body::Bytes;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use depot_core::error::Kind;
use depot_core::http::bkrepo::ok as envelope;
use depot_core::http::blobs::{blob_reference, parse_range, respond, BaseUrl};
use depot_core::http::extract::{Path, Query};
use depot_core::http::spool::{spool, Spooled};
use depot_core::http::{AppState, Scope};
use depot_core::model::{
    printable, validate_filename, validate_name, validate_version, PackageVersion, RepoType, Repository,
};
use depot_core::registry::{NewVersion, RENDERING_URL_TTL};
use depot_core::{Error, Result};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::archive::{self, ArchiveError, Format, Limits, RdsMeta};
use crate::index::{self, KEY_PREFIX};

const BROKEN: &str = "The Artifact that you uploaded is broken!";

#[derive(Deserialize)]
pub struct UploadQuery {
    force: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtQuery {
    package_key: Option<String>,
    version: Option<String>,
}

/// The RDS repository the path names.
fn rds_repo(scope: &Scope) -> Result<&Repository> {
    scope.repo()?.of_type(RepoType::Rds)
}

/// What a route was doing when something it names was missing: the one place where this
/// surface words not-found errors its own way.
enum Lookup<'a> {
    Chart(&'a str),
    ChartVersion(&'a str, &'a str),
    File(&'a str),
    Remove(&'a str, Option<&'a str>),
    Detail(&'a str, &'a str),
}

fn reworded(e: Error, lookup: Lookup) -> Error {
    if !matches!(&e, Error::NotFound { what: Kind::Package | Kind::Version, .. })
        && !matches!(lookup, Lookup::Chart(_) | Lookup::File(_))
    {
        return e;
    }
    let (what, name, message) = match lookup {
        Lookup::Chart(code) => (Kind::Package, code.to_string(), format!("chart {code} not found")),
        Lookup::ChartVersion(code, v) => (Kind::Version, v.to_string(), format!("chart {code} version {v} not found")),
        Lookup::File(f) => (Kind::File, f.to_string(), format!("file {} not found", printable(f))),
        Lookup::Remove(key, Some(v)) => (
            Kind::Version,
            v.to_string(),
            format!(
                "remove package {} for version [{}] failed: no such file or directory",
                printable(key),
                printable(v)
            ),
        ),
        Lookup::Remove(key, None) => (
            Kind::Package,
            key.to_string(),
            format!("remove package {} failed: no such file or directory", printable(key)),
        ),
        Lookup::Detail(key, v) => (
            Kind::Version,
            v.to_string(),
            format!("node of package {} version [{}] not found", printable(key), printable(v)),
        ),
    };
    Error::not_found_as(what, name, message)
}

fn archive_error(e: ArchiveError) -> Error {
    match e {
        ArchiveError::Broken(why) => Error::Invalid(format!("{BROKEN} {why}")),
        ArchiveError::TooLarge(why) => Error::TooLarge(format!("{BROKEN} {why}")),
    }
}

/// What an upload carries: the archive's bytes with its file name, or a staged blob.
enum Source {
    Bytes { filename: Option<String>, bytes: Bytes },
    Staged(String),
}

async fn read_source(
    headers: &HeaderMap,
    multipart: std::result::Result<Multipart, MultipartRejection>,
) -> Result<Source> {
    if let Some(reference) = blob_reference(headers) {
        return Ok(Source::Staged(reference?));
    }
    let mut multipart = multipart.map_err(|e| {
        Error::Invalid(format!("expected a multipart/form-data body with a 'chart' file: {}", e.body_text()))
    })?;
    let mut blob = None;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(depot_core::http::too_large(None)),
            Err(e) => return Err(Error::Invalid(format!("unreadable multipart body: {}", e.body_text()))),
        };
        match field.name() {
            Some("chart") => {
                let filename = field.file_name().map(str::to_string);
                let bytes = field.bytes().await.map_err(|e| {
                    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                        depot_core::http::too_large(None)
                    } else {
                        Error::Invalid(format!("unreadable multipart body: {}", e.body_text()))
                    }
                })?;
                return Ok(Source::Bytes { filename, bytes });
            }
            Some("blob") => blob = Some(field.text().await.map_err(|e| Error::Invalid(e.body_text()))?),
            _ => {}
        }
    }
    blob.map(Source::Staged).ok_or_else(|| {
        Error::Invalid(
            "the multipart field 'chart' is missing (or name a staged blob with the field 'blob' or the header X-Depot-Blob)"
                .into(),
        )
    })
}

/// An uploaded archive at most this long is read on the request's own task, within
/// [`INLINE_UNPACKED_BYTES`]: a chart of a few hundred bytes costs less to read than
/// the two thread switches of a trip to the blocking pool.
const INLINE_ARCHIVE_BYTES: usize = 64 * 1024;
/// What a read on the request's task may inflate, its `RDS.yaml` at most a quarter of it
/// (a fraction of a millisecond's work); an archive that needs more is read again, with
/// the whole limits, off the async threads.
const INLINE_UNPACKED_BYTES: u64 = 64 * 1024;

/// [`inspect`] of an archive held in memory: a small one on this task.
async fn inspect_bytes(bytes: &Bytes, format: Format, limits: Limits) -> Result<RdsMeta> {
    if bytes.len() <= INLINE_ARCHIVE_BYTES {
        let small = Limits {
            max_unpacked_bytes: limits.max_unpacked_bytes.min(INLINE_UNPACKED_BYTES),
            max_wanted_bytes: limits.max_wanted_bytes.min(INLINE_UNPACKED_BYTES / 4),
            ..limits
        };
        let read = archive::read_metadata_file(Cursor::new(bytes.clone()), format, &small);
        match read.and_then(|yaml| archive::parse_metadata(&yaml)) {
            // Over the small budget, maybe not over the whole one.
            Err(ArchiveError::TooLarge(_)) => {}
            done => return done.map_err(archive_error),
        }
    }
    inspect(Cursor::new(bytes.clone()), format, limits).await
}

/// Checks the archive and reads its `RDS.yaml`, off the async threads.
async fn inspect<R: std::io::Read + Seek + Send + 'static>(r: R, format: Format, limits: Limits) -> Result<RdsMeta> {
    let parsed = tokio::task::spawn_blocking(move || {
        archive::read_metadata_file(r, format, &limits).and_then(|bytes| archive::parse_metadata(&bytes))
    })
    .await
    .map_err(Error::internal)?;
    parsed.map_err(archive_error)
}

/// The longest `description` of an `RDS.yaml`.
pub const MAX_DESCRIPTION_BYTES: usize = 64 * 1024;

/// Checks `RDS.yaml`'s identity fields; returns (code, version).
fn identity_of(meta: &RdsMeta) -> Result<(String, String)> {
    let code = meta.code.clone().unwrap_or_default();
    let version = meta.version.clone().unwrap_or_default();
    validate_name("code", &code).map_err(|e| Error::Invalid(format!("{BROKEN} {e}")))?;
    validate_version(&version).map_err(|e| Error::Invalid(format!("{BROKEN} {e}")))?;
    if semver::Version::parse(&version).is_err() {
        return Err(Error::Invalid(format!(
            "{BROKEN} version '{}' is not a semantic version (such as 1.2.3)",
            printable(&version)
        )));
    }
    let name = meta.name.as_deref().unwrap_or_default();
    if name.chars().count() > 256 || name.chars().any(char::is_control) {
        return Err(Error::Invalid(format!("{BROKEN} invalid name '{}'", printable(name))));
    }
    // The description is kept with the package and with each version, in items of at
    // most 400 KB.
    if meta.description.as_deref().is_some_and(|d| d.len() > MAX_DESCRIPTION_BYTES) {
        return Err(Error::TooLarge(format!("{BROKEN} the description is over {MAX_DESCRIPTION_BYTES} bytes")));
    }
    Ok((code, version))
}

pub async fn upload(
    State(st): State<AppState>,
    scope: Scope,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    multipart: std::result::Result<Multipart, MultipartRejection>,
) -> Result<Response> {
    let repo = rds_repo(&scope)?;
    let (p, r) = (repo.project_id.as_str(), repo.name.as_str());
    let limits = Limits { max_unpacked_bytes: st.config.max_unpacked_bytes, ..Limits::default() };
    let not_archive = || Error::Invalid(format!("{BROKEN} not a tgz, tar or zip archive"));
    let (meta, (code, version), format, blob) = match read_source(&headers, multipart).await? {
        Source::Bytes { filename, bytes } => {
            let format = match &filename {
                Some(f) => {
                    validate_filename(f)?;
                    Format::from_name(f).map(|(fmt, _)| fmt).ok_or_else(|| {
                        Error::Invalid(format!(
                            "unsupported archive '{}': use .tgz, .tar.gz, .tar or .zip",
                            printable(f)
                        ))
                    })?
                }
                None => Format::sniff(&bytes).ok_or_else(not_archive)?,
            };
            let meta = inspect_bytes(&bytes, format, limits).await?;
            // Checked before the bytes are stored: a refused upload leaves nothing.
            let id = identity_of(&meta)?;
            let blob = st.registry.store_bytes(bytes).await?;
            (meta, id, format, blob)
        }
        Source::Staged(reference) => {
            let staged = st.registry.resolve_staged(p, r, &reference).await?;
            let Spooled { file, head, .. } = spool(st.registry.blobs.get(&staged.key, None).await?.body).await?;
            let format = Format::sniff(&head).ok_or_else(not_archive)?;
            let meta = inspect(file, format, limits).await?;
            let id = identity_of(&meta)?;
            (meta, id, format, staged.into_blob_ref(p, r))
        }
    };
    let filename = format!("{code}-{version}.{}", format.ext());
    let force = q.force.is_some_and(|f| !f.eq_ignore_ascii_case("false"));
    let mut metadata = Map::new();
    metadata.insert("name".into(), meta.name.clone().into());
    metadata.insert("code".into(), code.clone().into());
    metadata.insert("description".into(), meta.description.clone().into());
    metadata.insert("home".into(), meta.home.clone().into());
    metadata.insert("icon".into(), meta.icon.clone().into());
    metadata.insert("keywords".into(), json!(meta.keywords));
    metadata.insert("maintainers".into(), json!(meta.maintainers));
    metadata.insert("rdsVersion".into(), meta.rds_version.clone().into());
    metadata.insert("extension".into(), format.ext().into());
    let req = NewVersion {
        project_id: p.to_string(),
        repo_name: r.to_string(),
        package_key: format!("{KEY_PREFIX}{code}"),
        // The package's name is its code, as bkrepo's ObjectBuilderUtil sets it; RDS.yaml's
        // name stays in the version's metadata.
        package_name: code.clone(),
        package_type: RepoType::Rds,
        version,
        description: meta.description.clone().unwrap_or_default(),
        content_path: format!("/{filename}"),
        blob,
        metadata,
        package_metadata: vec![],
        extension: Map::new(),
        overwrite: force && repo.allow_overwrite,
        files: vec![],
        number: None,
        requires: vec![],
        stages: vec![],
        listing: None,
        fallback_names: vec![],
    };
    match st.registry.create_version(req, &scope.actor).await {
        Ok(_) => Ok((StatusCode::CREATED, Json(json!({ "saved": true }))).into_response()),
        Err(Error::Exists { .. }) => {
            let why = if force && !repo.allow_overwrite { " (this repository refuses overwrites)" } else { "" };
            Err(Error::exists_as(Kind::File, &filename, format!("{filename} already exists{why}")))
        }
        Err(e) => Err(e),
    }
}

pub async fn index_yaml(State(st): State<AppState>, scope: Scope, headers: HeaderMap) -> Result<Response> {
    // The repository (and its state) was read before the versions, so a rendering is
    // never older than the state it is cached under.
    let repo = rds_repo(&scope)?;
    // The repository's state is the index's version: a client that has it gets 304. The
    // gzipped representation has a tag of its own (a strong ETag names one encoding).
    let gzip = accepts_gzip(&headers);
    let plain_tag = format!("\"{}\"", repo.state_tag());
    let gzip_tag = format!("\"{}.gz\"", repo.state_tag());
    let etag = if gzip { &gzip_tag } else { &plain_tag };
    let vary = |res: &mut Response| {
        res.headers_mut().insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    };
    // If-None-Match compares weakly (RFC 9110 13.1.2): `W/` aside, against the tag of the
    // representation this request gets; `*` matches any.
    if headers.get_all(header::IF_NONE_MATCH).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|t| {
        let t = t.trim();
        t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag.as_str()
    }) {
        let mut res = StatusCode::NOT_MODIFIED.into_response();
        res.headers_mut().insert(header::ETAG, HeaderValue::from_str(etag).expect("ascii"));
        vary(&mut res);
        return Ok(res);
    }
    let (project, name) = (repo.project_id.as_str(), repo.name.as_str());
    let plain = st
        .registry
        .assembled(repo, index::INDEX_KIND, |key| index::part(&st.registry, project, name, key), index::assemble)
        .await?;
    let body = if gzip {
        // Compressed once per state, and stored like the index itself.
        st.registry.rendering(repo, "rds-index.gz", || async { gzipped(&plain.bytes) }).await?.bytes
    } else {
        plain.bytes.clone()
    };
    // Too large for a response (a Lambda's): the stored index, through a presigned URL.
    if let Some(limit) = st.config.max_response_bytes.filter(|l| body.len() as u64 > *l) {
        let url = st.registry.blobs.presign_get(&plain.key, RENDERING_URL_TTL, None).await?;
        let mut res = (StatusCode::FOUND, [(header::LOCATION, url)]).into_response();
        res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        tracing::debug!(size = body.len(), limit, "index.yaml redirected to its stored copy");
        return Ok(res);
    }
    let mut res = body.into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-yaml"));
    if gzip {
        res.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    res.headers_mut().insert(header::ETAG, HeaderValue::from_str(etag).expect("ascii"));
    vary(&mut res);
    Ok(res)
}

/// Whether the client takes gzip (`Accept-Encoding: gzip`, or `*`, with a non-zero q).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|item| {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok()))
            .next()
            .unwrap_or(1.0);
        matches!(coding.as_str(), "gzip" | "x-gzip" | "*") && q > 0.0
    })
}

fn gzipped(bytes: &[u8]) -> Result<Bytes> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::with_capacity(bytes.len() / 4), flate2::Compression::default());
    gz.write_all(bytes).map_err(Error::internal)?;
    Ok(Bytes::from(gz.finish().map_err(Error::internal)?))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChartsQuery {
    start_time: Option<String>,
}

/// Every chart, or with `?startTime=` only the versions created since (bkrepo's filter;
/// an ISO date-time, with or without a zone, UTC when without).
pub async fn all_charts(State(st): State<AppState>, scope: Scope, Query(q): Query<ChartsQuery>) -> Result<Response> {
    let repo = rds_repo(&scope)?;
    let since = match q.start_time.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(depot_core::model::parse_iso(s).ok_or_else(|| {
            Error::Invalid(format!("startTime must be a date-time such as 2024-01-31T12:00:00, not '{}'", printable(s)))
        })?),
    };
    let mut entries = index::entries(&st.registry, &repo.project_id, &repo.name).await?;
    if let Some(since) = since {
        for versions in entries.values_mut() {
            versions.retain(|e| {
                e["created"].as_str().and_then(depot_core::model::parse_iso).is_some_and(|created| created >= since)
            });
        }
        entries.retain(|_, versions| !versions.is_empty());
    }
    Ok(Json(entries).into_response())
}

fn chart_key(code: &str) -> Result<String> {
    validate_name("chart code", code)?;
    Ok(format!("{KEY_PREFIX}{code}"))
}

pub async fn chart_versions(
    State(st): State<AppState>,
    scope: Scope,
    Path((_, _, code)): Path<(String, String, String)>,
) -> Result<Response> {
    let repo = rds_repo(&scope)?;
    let versions = st.registry.list_versions(&repo.project_id, &repo.name, &chart_key(&code)?).await?;
    if versions.is_empty() {
        return Err(reworded(Error::not_found(Kind::Package, &code), Lookup::Chart(&code)));
    }
    Ok(Json(versions.iter().map(index::entry).collect::<Vec<_>>()).into_response())
}

type VersionPath = Path<(String, String, String, String)>;

pub async fn chart_version(
    State(st): State<AppState>,
    scope: Scope,
    Path((_, _, code, version)): VersionPath,
) -> Result<Response> {
    let repo = rds_repo(&scope)?;
    let v = st
        .registry
        .get_version(&repo.project_id, &repo.name, &chart_key(&code)?, &version)
        .await
        .map_err(|e| reworded(e, Lookup::ChartVersion(&code, &version)))?;
    Ok(Json(index::entry(&v)).into_response())
}

/// Deletes a version, answering the RDS not-found message when it is missing.
async fn remove_version(st: &AppState, scope: &Scope, key: &str, version: &str) -> Result<()> {
    let repo = rds_repo(scope)?;
    st.registry
        .delete_version(&scope.actor, &repo.project_id, &repo.name, key, version)
        .await
        .map_err(|e| reworded(e, Lookup::Remove(key, Some(version))))?;
    Ok(())
}

pub async fn delete_chart_version(
    State(st): State<AppState>,
    scope: Scope,
    Path((_, _, code, version)): VersionPath,
) -> Result<Response> {
    remove_version(&st, &scope, &chart_key(&code)?, &version).await?;
    Ok(Json(json!({ "deleted": true })).into_response())
}

/// Finds the version a file name `{code}-{version}.{ext}` names. Codes and versions may
/// both hold '-', so every split whose right side is a semantic version is tried.
async fn version_for_file(st: &AppState, repo: &Repository, filename: &str) -> Result<PackageVersion> {
    let missing = || reworded(Error::not_found(Kind::File, filename), Lookup::File(filename));
    validate_filename(filename)?;
    let (_, stem) = Format::from_name(filename).ok_or_else(missing)?;
    let splits: Vec<(&str, &str)> = stem
        .match_indices('-')
        .map(|(i, _)| (&stem[..i], &stem[i + 1..]))
        .filter(|(code, version)| validate_name("code", code).is_ok() && semver::Version::parse(version).is_ok())
        .collect();
    let holds = |v: &PackageVersion| v.content_path == format!("/{filename}");
    let try_split = |code: &str, version: &str| {
        let key = format!("{KEY_PREFIX}{code}");
        let (st, repo, version) = (st.clone(), repo.clone(), version.to_string());
        async move {
            match st.registry.get_version(&repo.project_id, &repo.name, &key, &version).await {
                Ok(v) => Ok(Some(v)),
                Err(Error::NotFound { .. }) | Err(Error::Invalid(_)) => Ok(None),
                Err(e) => Err(e),
            }
        }
    };
    // A name with one reading (the usual `mysql-0.1.0.tgz`) is that version, when it
    // holds the name: one read. Else the version holding the path (two reads), else,
    // for versions stored before paths were claimed, every reading of the name.
    if let [(code, version)] = splits.as_slice() {
        if let Some(v) = try_split(code, version).await?.filter(holds) {
            return Ok(v);
        }
    }
    if let Some(v) = st.registry.version_at_path(&repo.project_id, &repo.name, &format!("/{filename}")).await? {
        return Ok(v);
    }
    for (code, version) in splits {
        if let Some(v) = try_split(code, version).await?.filter(holds) {
            return Ok(v);
        }
    }
    Err(missing())
}

pub async fn download(
    State(st): State<AppState>,
    scope: Scope,
    base: BaseUrl,
    method: Method,
    headers: HeaderMap,
    Path((_, _, filename)): Path<(String, String, String)>,
) -> Result<Response> {
    let repo = rds_repo(&scope)?;
    let v = version_for_file(&st, repo, &filename).await?;
    // A HEAD downloads nothing, so it counts nothing.
    let counted = method != Method::HEAD;
    respond(st.registry.download_version(&v, Some(&filename), parse_range(&headers), counted).await?, &base)
}

/// A required query parameter of the ext routes.
fn required(v: Option<String>, name: &str) -> Result<String> {
    v.filter(|s| !s.is_empty()).ok_or_else(|| Error::missing(name))
}

pub async fn ext_version_detail(
    State(st): State<AppState>,
    scope: Scope,
    Query(q): Query<ExtQuery>,
) -> Result<Response> {
    let repo = rds_repo(&scope)?;
    let (key, version) = (required(q.package_key, "packageKey")?, required(q.version, "version")?);
    let mut v = st
        .registry
        .get_version(&repo.project_id, &repo.name, &key, &version)
        .await
        .map_err(|e| reworded(e, Lookup::Detail(&key, &version)))?;
    st.registry.pending_downloads(&repo.project_id, &repo.name, &key).await?.apply(std::slice::from_mut(&mut v));
    let description = v.metadata.get("description").cloned().unwrap_or(Value::Null);
    Ok(envelope(json!({
        "basic": {
            "projectId": v.project_id,
            "repoName": v.repo_name,
            "version": v.name,
            "fullPath": v.content_path,
            "size": v.size,
            "sha256": v.sha256,
            "md5": v.md5,
            "stageTag": v.stage_tag,
            "downloadCount": v.downloads,
            "createdBy": v.created_by,
            "createdDate": v.created_date,
            "lastModifiedBy": v.last_modified_by,
            "lastModifiedDate": v.last_modified_date,
            "description": description,
        },
        "metadata": v.metadata,
    })))
}

pub async fn ext_delete_package(
    State(st): State<AppState>,
    scope: Scope,
    Query(q): Query<ExtQuery>,
) -> Result<Response> {
    let repo = rds_repo(&scope)?;
    let key = required(q.package_key, "packageKey")?;
    st.registry
        .delete_package(&scope.actor, &repo.project_id, &repo.name, &key)
        .await
        .map_err(|e| reworded(e, Lookup::Remove(&key, None)))?;
    Ok(envelope(Value::Null))
}

pub async fn ext_delete_version(
    State(st): State<AppState>,
    scope: Scope,
    Query(q): Query<ExtQuery>,
) -> Result<Response> {
    rds_repo(&scope)?;
    let (key, version) = (required(q.package_key, "packageKey")?, required(q.version, "version")?);
    remove_version(&st, &scope, &key, &version).await?;
    Ok(envelope(Value::Null))
}
