//! The RDS routes. Each checks the caller first, then its input, then calls the domain.
use std::io::{Cursor, Seek};

use axum::body::Bytes;
use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use depot_core::auth::{Action, Identity};
use depot_core::http::blobs::{self, blob_reference, BaseUrl};
use depot_core::http::{trace_id, AppState, Caller};
use depot_core::model::{
    printable, staged_key, validate_filename, validate_name, validate_version, PackageVersion, RepoType, Repository,
};
use depot_core::registry::{BlobRef, Hold, NewVersion};
use depot_core::store::Digests;
use depot_core::Error;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::archive::{self, ArchiveError, Format, Limits, RdsMeta};
use crate::error::RdsError;
use crate::index::{self, KEY_PREFIX};

type RdsResult = Result<Response, RdsError>;
type RepoPath = Result<Path<(String, String)>, PathRejection>;

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

/// The bkrepo envelope, for the `/rds/ext/...` routes' successes.
fn envelope(data: Value) -> Response {
    Json(json!({ "code": 0, "message": null, "data": data, "traceId": trace_id() })).into_response()
}

/// Authenticates, checks the names, and authorizes `action` on the repository, which must
/// be an RDS repository.
async fn repo_access(
    st: &AppState,
    caller: Caller,
    path: RepoPath,
    action: Action,
) -> Result<(Identity, String, String, Repository), RdsError> {
    let who = caller.identity()?;
    let Path((p, r)) = path?;
    let repo = access(st, &who, &p, &r, action).await?;
    Ok((who, p, r, repo))
}

/// Authorizes an authenticated caller for `action` on an RDS repository; returns it.
async fn access(st: &AppState, who: &Identity, p: &str, r: &str, action: Action) -> Result<Repository, RdsError> {
    st.auth.authorize(who, p, Some(r), action).await?;
    Ok(st.registry.repository_of_type(p, r, RepoType::Rds).await?)
}

/// Whether the caller also holds MANAGE (to change `@release` versions).
async fn holds_manage(st: &AppState, who: &Identity, p: &str, r: &str) -> bool {
    st.auth.authorize(who, p, Some(r), Action::Manage).await.is_ok()
}

fn archive_error(e: ArchiveError) -> RdsError {
    match e {
        ArchiveError::Broken(why) => RdsError::bad(format!("{BROKEN} {why}")),
        ArchiveError::TooLarge(why) => RdsError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("{BROKEN} {why}")),
    }
}

/// What an upload carries: the archive's bytes with its file name, or a staged blob.
enum Source {
    Bytes { filename: Option<String>, bytes: Bytes },
    Staged(String),
}

async fn read_source(
    headers: &HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Source, RdsError> {
    if let Some(reference) = blob_reference(headers) {
        return Ok(Source::Staged(reference?));
    }
    let mut multipart = multipart.map_err(|e| {
        RdsError::bad(format!("expected a multipart/form-data body with a 'chart' file: {}", e.body_text()))
    })?;
    let mut blob = None;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(depot_core::http::too_large(None).into())
            }
            Err(e) => return Err(RdsError::bad(format!("unreadable multipart body: {}", e.body_text()))),
        };
        match field.name() {
            Some("chart") => {
                let filename = field.file_name().map(str::to_string);
                let bytes = field.bytes().await.map_err(|e| {
                    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                        RdsError::from(depot_core::http::too_large(None))
                    } else {
                        RdsError::bad(format!("unreadable multipart body: {}", e.body_text()))
                    }
                })?;
                return Ok(Source::Bytes { filename, bytes });
            }
            Some("blob") => blob = Some(field.text().await.map_err(|e| RdsError::bad(e.body_text()))?),
            _ => {}
        }
    }
    blob.map(Source::Staged)
        .ok_or_else(|| RdsError::bad("the multipart field 'chart' is missing (or name a staged blob with the field 'blob' or the header X-Depot-Blob)"))
}

/// Checks the archive and reads its `RDS.yaml`, off the async threads.
async fn inspect<R: std::io::Read + Seek + Send + 'static>(
    r: R,
    format: Format,
    limits: Limits,
) -> Result<RdsMeta, RdsError> {
    let parsed = tokio::task::spawn_blocking(move || {
        archive::read_metadata_file(r, format, &limits).and_then(|bytes| archive::parse_metadata(&bytes))
    })
    .await
    .map_err(Error::internal)?;
    parsed.map_err(archive_error)
}

/// Copies a stored blob into an anonymous temporary file, to read it as an archive;
/// returns the file (rewound) and its first bytes, to tell the format by.
async fn spool(st: &AppState, key: &str) -> Result<(std::fs::File, Vec<u8>), RdsError> {
    use tokio::io::AsyncWriteExt;
    let mut body = st.registry.blobs.get(key, None).await?.body;
    let mut file = tokio::fs::File::from_std(tempfile::tempfile().map_err(Error::from)?);
    let mut head = Vec::with_capacity(512);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(Error::from)?;
        if head.len() < 512 {
            head.extend_from_slice(&chunk[..chunk.len().min(512 - head.len())]);
        }
        file.write_all(&chunk).await.map_err(Error::from)?;
    }
    let mut file = file.into_std().await;
    file.rewind().map_err(Error::from)?;
    Ok((file, head))
}

/// Checks `RDS.yaml`'s identity fields; returns (code, version).
fn identity_of(meta: &RdsMeta) -> Result<(String, String), RdsError> {
    let code = meta.code.clone().unwrap_or_default();
    let version = meta.version.clone().unwrap_or_default();
    validate_name("code", &code).map_err(|e| RdsError::bad(format!("{BROKEN} {e}")))?;
    validate_version(&version).map_err(|e| RdsError::bad(format!("{BROKEN} {e}")))?;
    if semver::Version::parse(&version).is_err() {
        return Err(RdsError::bad(format!(
            "{BROKEN} version '{}' is not a semantic version (such as 1.2.3)",
            printable(&version)
        )));
    }
    let name = meta.name.as_deref().unwrap_or_default();
    if name.chars().count() > 256 || name.chars().any(char::is_control) {
        return Err(RdsError::bad(format!("{BROKEN} invalid name '{}'", printable(name))));
    }
    Ok((code, version))
}

pub async fn upload(
    State(st): State<AppState>,
    caller: Caller,
    path: RepoPath,
    query: Result<Query<UploadQuery>, QueryRejection>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> RdsResult {
    let (who, p, r, repo) = repo_access(&st, caller, path, Action::Write).await?;
    let Query(q) = query?;
    let limits = Limits { max_unpacked_bytes: st.config.max_unpacked_bytes, ..Limits::default() };
    let not_archive = || RdsError::bad(format!("{BROKEN} not a tgz, tar or zip archive"));
    let (meta, (code, version), format, blob) = match read_source(&headers, multipart).await? {
        Source::Bytes { filename, bytes } => {
            let format = match &filename {
                Some(f) => {
                    validate_filename(f)?;
                    Format::from_name(f).map(|(fmt, _)| fmt).ok_or_else(|| {
                        RdsError::bad(format!(
                            "unsupported archive '{}': use .tgz, .tar.gz, .tar or .zip",
                            printable(f)
                        ))
                    })?
                }
                None => Format::sniff(&bytes).ok_or_else(not_archive)?,
            };
            let meta = inspect(Cursor::new(bytes.clone()), format, limits).await?;
            // Checked before the bytes are stored: a refused upload leaves nothing.
            let id = identity_of(&meta)?;
            let blob = st.registry.store_content(depot_core::store::stream_from_bytes(bytes)).await?;
            (meta, id, format, blob)
        }
        Source::Staged(reference) => {
            let staged = st.registry.resolve_staged(&p, &r, &reference).await?;
            let (file, head) = spool(&st, &staged.key).await?;
            let format = Format::sniff(&head).ok_or_else(not_archive)?;
            let meta = inspect(file, format, limits).await?;
            let id = identity_of(&meta)?;
            let digests = Digests { sha256: staged.sha256, sha1: staged.sha1, md5: staged.md5, size: staged.size };
            // The version's commit requires the staged record to still exist, which keeps
            // garbage collection off the bytes.
            let hold = Hold::Staged(staged_key(&p, &r, &staged.digest));
            (meta, id, format, BlobRef { key: staged.key, digests, hold })
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
        project_id: p.clone(),
        repo_name: r.clone(),
        package_key: format!("{KEY_PREFIX}{code}"),
        package_name: meta.name.clone().unwrap_or_default(),
        package_type: RepoType::Rds,
        version,
        description: meta.description.clone().unwrap_or_default(),
        content_path: format!("/{filename}"),
        blob,
        metadata,
        package_metadata: vec![],
        extension: Map::new(),
        overwrite: force && repo.allow_overwrite,
        may_change_released: holds_manage(&st, &who, &p, &r).await,
    };
    match st.registry.create_version(req, who.name()).await {
        Ok(_) => Ok((StatusCode::CREATED, Json(json!({ "saved": true }))).into_response()),
        Err(Error::Exists(_)) => {
            let why = if force && !repo.allow_overwrite { " (this repository refuses overwrites)" } else { "" };
            Err(RdsError::new(StatusCode::CONFLICT, format!("{filename} already exists{why}")))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn index_yaml(State(st): State<AppState>, caller: Caller, path: RepoPath, headers: HeaderMap) -> RdsResult {
    // The repository (and its generation) is read before the versions, so a rendering
    // is never older than the generation it is cached under.
    let (_, p, r, repo) = repo_access(&st, caller, path, Action::Read).await?;
    let generation = repo.generation;
    // The repository's state is the index's version: a client that has it gets 304.
    let etag = format!("\"{}\"", repo.state_tag());
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        let mut res = StatusCode::NOT_MODIFIED.into_response();
        res.headers_mut().insert(header::ETAG, HeaderValue::from_str(&etag).expect("ascii"));
        return Ok(res);
    }
    let key = format!("rds-index\0{p}\0{r}\0{}", repo.uid);
    let body = match st.derived.get(&key, generation) {
        Some(b) => b,
        None => {
            let rendered = Bytes::from(index::render(index::entries(&st.registry, &p, &r).await?)?);
            st.derived.put(&key, generation, rendered.clone());
            rendered
        }
    };
    let mut res = body.into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-yaml"));
    res.headers_mut().insert(header::ETAG, HeaderValue::from_str(&etag).expect("ascii"));
    Ok(res)
}

pub async fn all_charts(State(st): State<AppState>, caller: Caller, path: RepoPath) -> RdsResult {
    let (_, p, r, _) = repo_access(&st, caller, path, Action::Read).await?;
    Ok(Json(index::entries(&st.registry, &p, &r).await?).into_response())
}

fn chart_key(code: &str) -> Result<String, RdsError> {
    validate_name("chart code", code)?;
    Ok(format!("{KEY_PREFIX}{code}"))
}

async fn versions_of(st: &AppState, p: &str, r: &str, code: &str) -> Result<Vec<PackageVersion>, RdsError> {
    let versions = st.registry.list_versions(p, r, &chart_key(code)?).await?;
    if versions.is_empty() {
        return Err(RdsError::new(StatusCode::NOT_FOUND, format!("chart {code} not found")));
    }
    Ok(versions)
}

pub async fn chart_versions(
    State(st): State<AppState>,
    caller: Caller,
    path: Result<Path<(String, String, String)>, PathRejection>,
) -> RdsResult {
    let who = caller.identity()?;
    let Path((p, r, code)) = path?;
    access(&st, &who, &p, &r, Action::Read).await?;
    let versions = versions_of(&st, &p, &r, &code).await?;
    Ok(Json(versions.iter().map(index::entry).collect::<Vec<_>>()).into_response())
}

type VersionPath = Result<Path<(String, String, String, String)>, PathRejection>;

/// [`repo_access`] for the routes that name a chart version: (caller, project, repo,
/// code, version).
async fn version_access(
    st: &AppState,
    caller: Caller,
    path: VersionPath,
    action: Action,
) -> Result<(Identity, String, String, String, String), RdsError> {
    let who = caller.identity()?;
    let Path((p, r, code, version)) = path?;
    access(st, &who, &p, &r, action).await?;
    Ok((who, p, r, code, version))
}

pub async fn chart_version(State(st): State<AppState>, caller: Caller, path: VersionPath) -> RdsResult {
    let (_, p, r, code, version) = version_access(&st, caller, path, Action::Read).await?;
    let v = st.registry.get_version(&p, &r, &chart_key(&code)?, &version).await.map_err(|e| match e {
        Error::NotFound(_) => RdsError::new(StatusCode::NOT_FOUND, format!("chart {code} version {version} not found")),
        e => e.into(),
    })?;
    Ok(Json(index::entry(&v)).into_response())
}

/// Deletes a version, answering the RDS not-found message when it is missing.
async fn remove_version(
    st: &AppState,
    who: &Identity,
    p: &str,
    r: &str,
    key: &str,
    version: &str,
) -> Result<(), RdsError> {
    let manage = holds_manage(st, who, p, r).await;
    match st.registry.delete_version(p, r, key, version, manage).await {
        Ok(_) => Ok(()),
        Err(Error::NotFound(_)) => Err(RdsError::new(
            StatusCode::NOT_FOUND,
            format!(
                "remove package {} for version [{}] failed: no such file or directory",
                printable(key),
                printable(version)
            ),
        )),
        Err(e) => Err(e.into()),
    }
}

pub async fn delete_chart_version(State(st): State<AppState>, caller: Caller, path: VersionPath) -> RdsResult {
    let (who, p, r, code, version) = version_access(&st, caller, path, Action::Delete).await?;
    remove_version(&st, &who, &p, &r, &chart_key(&code)?, &version).await?;
    Ok(Json(json!({ "deleted": true })).into_response())
}

/// Finds the version a file name `{code}-{version}.{ext}` names. Codes and versions may
/// both hold '-', so every split whose right side is a semantic version is tried.
async fn version_for_file(st: &AppState, p: &str, r: &str, filename: &str) -> Result<PackageVersion, RdsError> {
    let missing = || RdsError::new(StatusCode::NOT_FOUND, format!("file {} not found", printable(filename)));
    validate_filename(filename)?;
    let (_, stem) = Format::from_name(filename).ok_or_else(missing)?;
    for (i, _) in stem.match_indices('-') {
        let (code, version) = (&stem[..i], &stem[i + 1..]);
        if validate_name("code", code).is_err() || semver::Version::parse(version).is_err() {
            continue;
        }
        match st.registry.get_version(p, r, &format!("{KEY_PREFIX}{code}"), version).await {
            Ok(v) if v.content_path == format!("/{filename}") => return Ok(v),
            Ok(_) | Err(Error::NotFound(_)) | Err(Error::Invalid(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(missing())
}

pub async fn download(
    State(st): State<AppState>,
    caller: Caller,
    base: BaseUrl,
    headers: HeaderMap,
    path: Result<Path<(String, String, String)>, PathRejection>,
) -> RdsResult {
    let who = caller.identity()?;
    let Path((p, r, filename)) = path?;
    access(&st, &who, &p, &r, Action::Read).await?;
    let v = version_for_file(&st, &p, &r, &filename).await?;
    st.registry.record_download(&p, &r, &v.package_key, &v.name).await?;
    Ok(blobs::download(&st, &base, &headers, &v.blob_key, &filename).await?)
}

fn required(v: Option<String>, name: &str) -> Result<String, RdsError> {
    v.filter(|s| !s.is_empty()).ok_or_else(|| RdsError::bad(format!("Parameter [{name}] is missing")))
}

/// What an ext route names: the caller, the repository, `packageKey` and (when
/// `with_version`) `version`.
struct ExtTarget {
    who: Identity,
    p: String,
    r: String,
    key: String,
    version: String,
}

async fn ext_target(
    st: &AppState,
    caller: Caller,
    path: RepoPath,
    query: Result<Query<ExtQuery>, QueryRejection>,
    action: Action,
    with_version: bool,
) -> Result<ExtTarget, RdsError> {
    let (who, p, r, _) = repo_access(st, caller, path, action).await?;
    let Query(q) = query?;
    let key = required(q.package_key, "packageKey")?;
    let version = if with_version { required(q.version, "version")? } else { String::new() };
    Ok(ExtTarget { who, p, r, key, version })
}

pub async fn ext_version_detail(
    State(st): State<AppState>,
    caller: Caller,
    path: RepoPath,
    query: Result<Query<ExtQuery>, QueryRejection>,
) -> RdsResult {
    let ExtTarget { p, r, key, version, .. } = ext_target(&st, caller, path, query, Action::Read, true).await?;
    let v = st.registry.get_version(&p, &r, &key, &version).await.map_err(|e| match e {
        Error::NotFound(_) => RdsError::new(
            StatusCode::NOT_FOUND,
            format!("node of package {} version [{}] not found", printable(&key), printable(&version)),
        ),
        e => e.into(),
    })?;
    let description = v.metadata.get("description").cloned().unwrap_or(Value::Null);
    Ok(envelope(json!({
        "basic": {
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
    caller: Caller,
    path: RepoPath,
    query: Result<Query<ExtQuery>, QueryRejection>,
) -> RdsResult {
    let ExtTarget { who, p, r, key, .. } = ext_target(&st, caller, path, query, Action::Delete, false).await?;
    let manage = holds_manage(&st, &who, &p, &r).await;
    match st.registry.delete_package(&p, &r, &key, manage).await {
        Ok(_) => Ok(envelope(Value::Null)),
        Err(Error::NotFound(_)) => Err(RdsError::new(
            StatusCode::NOT_FOUND,
            format!("remove package {} failed: no such file or directory", printable(&key)),
        )),
        Err(e) => Err(e.into()),
    }
}

pub async fn ext_delete_version(
    State(st): State<AppState>,
    caller: Caller,
    path: RepoPath,
    query: Result<Query<ExtQuery>, QueryRejection>,
) -> RdsResult {
    let ExtTarget { who, p, r, key, version } = ext_target(&st, caller, path, query, Action::Delete, true).await?;
    remove_version(&st, &who, &p, &r, &key, &version).await?;
    Ok(envelope(Value::Null))
}
