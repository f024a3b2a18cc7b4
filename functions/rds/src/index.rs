//! `index.yaml` and the charts API: entries derived from the domain's versions, never
//! edited in place.
use std::collections::BTreeMap;

use depot_core::model::{PackageVersion, RepoType};
use depot_core::registry::Registry;
use depot_core::Result;
use serde_json::{json, Value};

pub const KEY_PREFIX: &str = "rds://";

/// One chart version as `index.yaml` and the charts API show it.
pub fn entry(v: &PackageVersion) -> Value {
    let m = &v.metadata;
    let get = |k: &str| m.get(k).cloned().unwrap_or(Value::Null);
    let code = v.package_key.trim_start_matches(KEY_PREFIX);
    let ext = m.get("extension").and_then(Value::as_str).unwrap_or("tgz");
    json!({
        "name": get("name"),
        "code": code,
        "version": v.name,
        "description": get("description"),
        "home": get("home"),
        "icon": get("icon"),
        "digest": v.sha256,
        "created": v.last_modified_date,
        "extension": ext,
        "keywords": m.get("keywords").cloned().unwrap_or_else(|| json!([])),
        "maintainers": m.get("maintainers").cloned().unwrap_or_else(|| json!([])),
        "rdsVersion": get("rdsVersion"),
        "urls": [format!("charts/{code}-{}.{ext}", v.name)],
    })
}

/// Every chart of a repository: code → versions, newest first. One query for the
/// packages and one per package for its versions.
pub async fn entries(reg: &Registry, project: &str, repo: &str) -> Result<BTreeMap<String, Vec<Value>>> {
    let mut out = BTreeMap::new();
    for pkg in reg.list_packages(project, repo).await? {
        if pkg.package_type != RepoType::Rds.as_str() || !pkg.key.starts_with(KEY_PREFIX) {
            continue;
        }
        let versions = reg.list_versions(project, repo, &pkg.key).await?;
        if !versions.is_empty() {
            out.insert(pkg.key.trim_start_matches(KEY_PREFIX).to_string(), versions.iter().map(entry).collect());
        }
    }
    Ok(out)
}

/// Renders `index.yaml`.
pub fn render(entries: BTreeMap<String, Vec<Value>>) -> Result<Vec<u8>> {
    let doc = json!({
        "apiVersion": "v1",
        "entries": entries,
        "generated": depot_core::model::now_iso(),
        "serverInfo": {},
    });
    serde_yaml::to_string(&doc).map(String::into_bytes).map_err(depot_core::Error::internal)
}
