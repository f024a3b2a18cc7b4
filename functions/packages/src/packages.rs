//! Packages and versions on bkrepo's `/repository/api/...` routes, whatever surface
//! uploaded them.
use axum::extract::State;
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use depot_core::http::bkrepo::ok;
use depot_core::http::blobs::{parse_range, respond, BaseUrl};
use depot_core::http::extract::{Json, Path, Query};
use depot_core::http::{AppState, Scope};
use depot_core::model::{compare_versions, parse_stage, printable, PackageSummary, PackageVersion, Repository};
use depot_core::registry::{PageOf, PageParam, PageRequest};
use depot_core::{Error, Result};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::projects::required;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyQuery {
    package_key: Option<String>,
    version: Option<String>,
    tag: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PackagePageQuery {
    package_name: Option<String>,
    page_number: Option<PageParam>,
    page_size: Option<PageParam>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionPageQuery {
    package_key: Option<String>,
    version: Option<String>,
    stage_tag: Option<String>,
    page_number: Option<PageParam>,
    page_size: Option<PageParam>,
    sort_property: Option<String>,
    direction: Option<String>,
}

/// Page `number` of `size` of a whole list, as bkrepo's page (for lists that are read
/// whole: users, a project's repositories).
pub(crate) fn page_of_list<T: serde::Serialize>(items: Vec<T>, number: PageParam, size: PageParam) -> Result<Value> {
    let req = PageRequest::from_query(Some(number), Some(size))?;
    let total = items.len() as i64;
    let records: Vec<T> = items.into_iter().skip(((req.number - 1) * req.size) as usize).take(req.size as usize).collect();
    let size = req.size as i64;
    Ok(json!({
        "pageNumber": req.number,
        "pageSize": size,
        "totalRecords": total,
        "totalPages": (total + size - 1) / size,
        "records": records,
    }))
}

/// bkrepo's page: `{pageNumber, pageSize, totalRecords, totalPages, records}`.
fn page_view<T>(page: &PageOf<T>, view: fn(&T) -> Value) -> Value {
    let size = page.request.size as i64;
    json!({
        "pageNumber": page.request.number,
        "pageSize": size,
        "totalRecords": page.total,
        "totalPages": (page.total + size - 1) / size,
        "records": page.items.iter().map(view).collect::<Vec<_>>(),
    })
}

pub async fn package_page(
    State(st): State<AppState>,
    scope: Scope,
    Query(q): Query<PackagePageQuery>,
) -> Result<Response> {
    let repo = scope.repo()?;
    let req = PageRequest::from_query(q.page_number, q.page_size)?;
    let prefix = q.package_name.filter(|n| !n.is_empty());
    let mut page = st.registry.package_page(repo, prefix.as_deref(), req).await?;
    let mut items = Vec::with_capacity(page.items.len());
    for p in std::mem::take(&mut page.items) {
        items.push(st.registry.with_history(p).await?);
    }
    page.items = items;
    Ok(ok(page_view(&page, package_view)))
}

pub async fn version_page(
    State(st): State<AppState>,
    scope: Scope,
    Query(q): Query<VersionPageQuery>,
) -> Result<Response> {
    let repo = scope.repo()?;
    let key = required(q.package_key, "packageKey")?;
    depot_core::model::validate_package_key(&key)?;
    let req = PageRequest::from_query(q.page_number, q.page_size)?;
    let filter = VersionFilter {
        version: q.version.filter(|v| !v.is_empty()),
        stage_tag: q.stage_tag,
        sort_property: q.sort_property,
        direction: q.direction,
        ..Default::default()
    };
    let by_version = matches!(filter.sort_property.as_deref(), None | Some("version") | Some("name"));
    let unfiltered = filter.version.is_none() && filter.stage_tag.as_deref().is_none_or(|t| t.trim().is_empty());
    // A package that does not exist has no versions: an empty page, as bkrepo answers.
    let Some((pkg, pending)) = st.registry.find_package_counted(&repo.project_id, &repo.name, &key).await? else {
        let empty: PageOf<PackageVersion> = PageOf { request: req, total: 0, items: vec![] };
        return Ok(ok(page_view(&empty, version_view)));
    };
    if by_version && unfiltered {
        // The indexed path: cost follows the page size.
        let ascending = is_ascending(filter.direction.as_deref(), false)?;
        let mut page = st.registry.version_page(repo, &pkg, ascending, req).await?;
        pending.apply(&mut page.items);
        return Ok(ok(page_view(&page, version_view)));
    }
    let mut versions = filter_versions(st.registry.list_versions(&repo.project_id, &repo.name, &key).await?, &filter)?;
    pending.apply(&mut versions);
    sort_versions(&mut versions, filter.sort_property.as_deref(), filter.direction.as_deref())?;
    let total = versions.len() as i64;
    let items = versions.into_iter().skip(((req.number - 1) * req.size) as usize).take(req.size as usize).collect();
    Ok(ok(page_view(&PageOf { request: req, total, items }, version_view)))
}

/// The body of `version/list`. Unknown properties (a `projectId`, ...) are ignored, as
/// bkrepo's request mapper does; known ones are type-checked.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct VersionFilter {
    version: Option<String>,
    stage_tag: Option<String>,
    #[serde(default)]
    metadata: Vec<MetadataFilter>,
    sort_property: Option<String>,
    direction: Option<String>,
    // Accepted for compatibility; the POST list answers every match.
    #[allow(dead_code)]
    page_number: Option<PageParam>,
    #[allow(dead_code)]
    page_size: Option<PageParam>,
}

/// A metadata entry to match; bkrepo's own `MetadataModel` also sends `system`,
/// `description`, `link` and `color`, which are ignored.
#[derive(Deserialize)]
pub struct MetadataFilter {
    key: String,
    value: Value,
}

/// A package as bkrepo shows it.
pub fn package_view(p: &PackageSummary) -> Value {
    // bkrepo's id is its store's; depot's is a stable digest of where the package is.
    let id: String = {
        use sha2::Digest;
        let d = sha2::Sha256::digest(format!("{}/{}/{}", p.project_id, p.repo_name, p.key).as_bytes());
        d.iter().take(12).map(|b| format!("{b:02x}")).collect()
    };
    json!({
        "id": id,
        "projectId": p.project_id,
        "repoName": p.repo_name,
        "name": p.name,
        "key": p.key,
        "type": p.package_type,
        "latest": p.latest,
        "downloads": p.downloads,
        "versions": p.versions,
        "description": p.description,
        "createdBy": p.created_by,
        "createdDate": p.created_date,
        "lastModifiedBy": p.last_modified_by,
        "lastModifiedDate": p.last_modified_date,
        "extension": p.extension,
        "historyVersion": p.history_version,
        // bkrepo's version → tag map; depot keeps tags on the versions (their stageTag).
        "versionTag": {},
    })
}

/// A version's metadata as bkrepo's `PackageVersion` carries it: one set of entries,
/// shown both as the `metadata` map and as the `packageMetadata`/`nodeMetadata` lists. It
/// holds the stored map, the stored list, and the `version` itself.
fn metadata_entries(v: &PackageVersion) -> Vec<depot_core::model::MetadataEntry> {
    use depot_core::model::MetadataEntry;
    let mut out: Vec<MetadataEntry> = v.package_metadata.clone();
    for (k, value) in &v.metadata {
        if !out.iter().any(|e| &e.key == k) {
            out.push(MetadataEntry { key: k.clone(), value: value.clone(), system: false, description: None });
        }
    }
    if !out.iter().any(|e| e.key == "version") {
        out.push(MetadataEntry { key: "version".into(), value: v.name.clone().into(), system: true, description: None });
    }
    out
}

/// A version as bkrepo shows it; `packageMetadata` is also written `nodeMetadata`.
pub fn version_view(v: &PackageVersion) -> Value {
    let entries = metadata_entries(v);
    let map: serde_json::Map<String, Value> = entries.iter().map(|e| (e.key.clone(), e.value.clone())).collect();
    json!({
        "name": v.name,
        "size": v.size,
        "downloads": v.downloads,
        "stageTag": v.stage_tag,
        "metadata": map,
        "packageMetadata": entries,
        "nodeMetadata": entries,
        "tags": [],
        "extension": {},
        "contentPath": v.content_path,
        "contentPaths": [v.content_path],
        "manifestPath": null,
        "sha256": v.sha256,
        "md5": v.md5,
        "createdBy": v.created_by,
        "createdDate": v.created_date,
        "lastModifiedBy": v.last_modified_by,
        "lastModifiedDate": v.last_modified_date,
    })
}

/// The repository the path names, and the `packageKey` of the query.
fn target<'a>(scope: &'a Scope, q: &KeyQuery) -> Result<(&'a Repository, String)> {
    let repo = scope.repo()?;
    let key = required(q.package_key.clone(), "packageKey")?;
    depot_core::model::validate_package_key(&key)?;
    Ok((repo, key))
}

/// A package's summary; `data: null` for a package that does not exist, as bkrepo's
/// `findPackageByKey` answers.
pub async fn package_info(State(st): State<AppState>, scope: Scope, Query(q): Query<KeyQuery>) -> Result<Response> {
    let (repo, key) = target(&scope, &q)?;
    match st.registry.find_package(&repo.project_id, &repo.name, &key).await? {
        Some(pkg) => Ok(ok(package_view(&st.registry.with_history(pkg).await?))),
        None => Ok(ok(Value::Null)),
    }
}

/// Deleting what is not there succeeds, as in bkrepo (clean-up scripts rely on it).
fn gone_already(r: Result<()>) -> Result<Response> {
    match r {
        Ok(()) => Ok(ok(())),
        Err(e) if e.is_not_found() => Ok(ok(())),
        Err(e) => Err(e),
    }
}

pub async fn delete_package(State(st): State<AppState>, scope: Scope, Query(q): Query<KeyQuery>) -> Result<Response> {
    let (repo, key) = target(&scope, &q)?;
    gone_already(st.registry.delete_package(&scope.actor, &repo.project_id, &repo.name, &key).await.map(drop))
}

pub async fn delete_version(State(st): State<AppState>, scope: Scope, Query(q): Query<KeyQuery>) -> Result<Response> {
    let (repo, key) = target(&scope, &q)?;
    let version = required(q.version, "version")?;
    gone_already(st.registry.delete_version(&scope.actor, &repo.project_id, &repo.name, &key, &version).await.map(drop))
}

/// Reads a bkrepo sort direction, `ASC` or `DESC` in any case; `default_ascending` when
/// absent.
pub(crate) fn is_ascending(direction: Option<&str>, default_ascending: bool) -> Result<bool> {
    match direction.map(str::to_ascii_uppercase).as_deref() {
        None => Ok(default_ascending),
        Some("ASC") => Ok(true),
        Some("DESC") => Ok(false),
        Some(_) => Err(Error::Invalid(format!(
            "direction must be ASC or DESC, not '{}'",
            printable(direction.unwrap_or_default())
        ))),
    }
}

/// Sorts versions by a bkrepo sort property; semver order, newest first, by default.
fn sort_versions(versions: &mut [PackageVersion], property: Option<&str>, direction: Option<&str>) -> Result<()> {
    let ascending = is_ascending(direction, false)?;
    let key: fn(&PackageVersion, &PackageVersion) -> std::cmp::Ordering = match property {
        // bkrepo's PackageQueryHelper sorts `name` by semantic version too.
        None | Some("version") | Some("name") => |a, b| compare_versions(&a.name, &b.name),
        Some("createdDate") => |a, b| a.created_date.cmp(&b.created_date),
        Some("lastModifiedDate") => |a, b| a.last_modified_date.cmp(&b.last_modified_date),
        Some("downloads") => |a, b| a.downloads.cmp(&b.downloads),
        Some("size") => |a, b| a.size.cmp(&b.size),
        Some(other) => {
            return Err(Error::Invalid(format!(
                "unknown sortProperty '{}': use version, name, createdDate, lastModifiedDate, downloads or size",
                printable(other)
            )))
        }
    };
    versions.sort_by(|a, b| if ascending { key(a, b) } else { key(b, a) });
    Ok(())
}

/// Keeps the versions that match a filter: version prefix, every listed stage tag, and
/// every metadata key/value.
fn filter_versions(versions: Vec<PackageVersion>, f: &VersionFilter) -> Result<Vec<PackageVersion>> {
    let tags = match f.stage_tag.as_deref().filter(|t| !t.trim().is_empty()) {
        Some(t) => t.split(',').map(parse_stage).collect::<Result<Vec<_>, _>>()?,
        None => vec![],
    };
    Ok(versions
        .into_iter()
        .filter(|v| f.version.as_deref().is_none_or(|pre| v.name.starts_with(pre)))
        .filter(|v| tags.iter().all(|t| v.stage_tag.iter().any(|s| s == t)))
        .filter(|v| {
            let entries = metadata_entries(v);
            f.metadata.iter().all(|m| entries.iter().any(|e| e.key == m.key && e.value == m.value))
        })
        .collect())
}

pub async fn list_versions(
    State(st): State<AppState>,
    scope: Scope,
    Query(q): Query<KeyQuery>,
    Json(filter): Json<VersionFilter>,
) -> Result<Response> {
    let (repo, key) = target(&scope, &q)?;
    let (p, r) = (repo.project_id.as_str(), repo.name.as_str());
    // A package that does not exist lists no versions (bkrepo answers `[]`).
    let Some((_, pending)) = st.registry.find_package_counted(p, r, &key).await? else {
        return Ok(ok(Vec::<Value>::new()));
    };
    let mut versions = filter_versions(st.registry.list_versions(p, r, &key).await?, &filter)?;
    pending.apply(&mut versions);
    sort_versions(&mut versions, filter.sort_property.as_deref(), filter.direction.as_deref())?;
    Ok(ok(versions.iter().map(version_view).collect::<Vec<_>>()))
}

pub async fn download_version(
    State(st): State<AppState>,
    scope: Scope,
    base: BaseUrl,
    method: Method,
    headers: HeaderMap,
    Query(q): Query<KeyQuery>,
) -> Result<Response> {
    let (repo, key) = target(&scope, &q)?;
    let version = required(q.version, "version")?;
    let v = st.registry.get_version(&repo.project_id, &repo.name, &key, &version).await?;
    // A HEAD downloads nothing, so it counts nothing.
    let counted = method != Method::HEAD;
    respond(st.registry.download_version(&v, None, parse_range(&headers), counted).await?, &base)
}

/// bkrepo's code for a stage that cannot be reached (`STAGE_UPGRADE_ERROR`).
const STAGE_ERROR: i64 = 251015;

/// Upgrades a version's stage; `data: null`, as bkrepo's `Response<Void>`. A refused
/// stage (unknown, backwards, already `@release`) is a 400 with bkrepo's stage code.
async fn upgrade(st: &AppState, scope: &Scope, key: &str, version: &str, tag: Option<&str>) -> Result<Response> {
    let repo = scope.repo()?;
    // A malformed key or version is a bad argument (250105), not a stage refusal.
    depot_core::model::validate_package_key(key)?;
    depot_core::model::validate_version(version)?;
    match st.registry.upgrade_stage(&repo.project_id, &repo.name, key, version, tag, &scope.actor).await {
        Ok(_) => Ok(ok(Value::Null)),
        Err(Error::Invalid(message)) => {
            Ok(depot_core::http::bkrepo::failure(axum::http::StatusCode::BAD_REQUEST, STAGE_ERROR, &message))
        }
        Err(e) => Err(e),
    }
}

/// `POST /repository/api/stage/upgrade/{projectId}/{repoName}?packageKey=&version=&tag=`,
/// as bkrepo's `UserStageController` and its web UI have it.
pub async fn upgrade_stage_by_query(State(st): State<AppState>, scope: Scope, Query(q): Query<KeyQuery>) -> Result<Response> {
    let (_, key) = target(&scope, &q)?;
    let version = required(q.version.clone(), "version")?;
    upgrade(&st, &scope, &key, &version, q.tag.as_deref()).await
}

/// `POST /repository/api/stage/upgrade/{projectId}/{repoName}/{packageKey}/{version}`, the
/// old docs' form: the package key arrives percent-encoded (`rds%3A%2F%2Fx`) or raw
/// (`rds://x`, which puts `//` in the path); both end up in the wildcard, and the version
/// is its last segment.
pub async fn upgrade_stage(
    State(st): State<AppState>,
    scope: Scope,
    Path((_, _, rest)): Path<(String, String, String)>,
    Query(q): Query<KeyQuery>,
) -> Result<Response> {
    let (key, version) = rest.rsplit_once('/').filter(|(k, v)| !k.is_empty() && !v.is_empty()).ok_or_else(|| {
        Error::Invalid(format!("expected {{packageKey}}/{{version}} after the repository, not '{}'", printable(&rest)))
    })?;
    upgrade(&st, &scope, key, version, q.tag.as_deref()).await
}

/// `GET /repository/api/stage/{projectId}/{repoName}?packageKey=&version=`: the version's
/// stage tags.
pub async fn stage_tags(State(st): State<AppState>, scope: Scope, Query(q): Query<KeyQuery>) -> Result<Response> {
    let (repo, key) = target(&scope, &q)?;
    let version = required(q.version.clone(), "version")?;
    let v = st.registry.get_version(&repo.project_id, &repo.name, &key, &version).await?;
    Ok(ok(v.stage_tag))
}
