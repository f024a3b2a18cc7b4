//! `index.yaml` and the charts API: entries derived from the domain's versions, never
//! edited in place.
use std::collections::BTreeMap;

use depot_core::model::{PackageVersion, RepoType};
use bytes::Bytes;
use depot_core::registry::{Parts, Registry};
use depot_core::Result;
use serde_json::{json, Value};

pub const KEY_PREFIX: &str = "rds://";

/// One chart version as `index.yaml` and the charts API show it. Fields the chart does
/// not have (`home`, `icon`, `rdsVersion`, ...) are left out, as bkrepo's writer does.
pub fn entry(v: &PackageVersion) -> Value {
    let m = &v.metadata;
    let get = |k: &str| m.get(k).cloned().unwrap_or(Value::Null);
    let code = v.package_key.trim_start_matches(KEY_PREFIX);
    let ext = m.get("extension").and_then(Value::as_str).unwrap_or("tgz");
    let mut e = json!({
        "name": get("name"),
        "code": code,
        "version": v.name,
        "description": get("description"),
        "home": get("home"),
        "icon": get("icon"),
        "digest": v.sha256,
        "created": v.created_date,
        "extension": ext,
        "keywords": m.get("keywords").cloned().unwrap_or_else(|| json!([])),
        "maintainers": m.get("maintainers").cloned().unwrap_or_else(|| json!([])),
        "rdsVersion": get("rdsVersion"),
        "urls": [format!("charts/{code}-{}.{ext}", v.name)],
    });
    if let Value::Object(fields) = &mut e {
        fields.retain(|_, v| !v.is_null());
    }
    e
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

/// The kind under which `index.yaml` is assembled and stored (`Registry::assembled`).
pub const INDEX_KIND: &str = "rds-index";

/// One chart's part of `index.yaml`: its code and versions, newest first, as a mapping
/// entry under `entries`. `None` when the package is gone, is not a chart or has no
/// versions. Two reads, at once: the package and its versions.
pub async fn part(reg: &Registry, project: &str, repo: &str, key: String) -> Result<Option<String>> {
    if !key.starts_with(KEY_PREFIX) {
        return Ok(None);
    }
    let (pkg, versions) = futures::try_join!(reg.find_package(project, repo, &key), reg.list_versions(project, repo, &key))?;
    if pkg.is_none_or(|p| p.package_type != RepoType::Rds.as_str()) || versions.is_empty() {
        return Ok(None);
    }
    let mut doc = serde_json::Map::new();
    doc.insert(key.trim_start_matches(KEY_PREFIX).to_string(), Value::Array(versions.iter().map(entry).collect()));
    let mut out = String::new();
    yaml_block(&Value::Object(doc), 2, &mut out);
    Ok(Some(out))
}

/// `index.yaml` from its parts, as bkrepo's YAML writer renders it: every string quoted,
/// so that a YAML 1.1 reader (PyYAML's `safe_load`, Helm's) keeps `created`, `generated`,
/// versions like `1.10` and codes like `yes` as strings. `generated` is the time of the
/// repository's last write, so that one state always renders the same bytes.
pub fn assemble(parts: &Parts, generated: Option<&str>) -> Result<Bytes> {
    let mut out = String::with_capacity(parts.values().map(String::len).sum::<usize>() + 128);
    out.push_str("apiVersion: \"v1\"\n");
    if parts.is_empty() {
        out.push_str("entries: {}\n");
    } else {
        out.push_str("entries:\n");
        parts.values().for_each(|p| out.push_str(p));
    }
    let now;
    let generated = match generated {
        Some(g) => g,
        None => {
            now = depot_core::model::now_iso();
            &now
        }
    };
    out.push_str(&format!("generated: {}\nserverInfo: {{}}\n", quoted(generated)));
    Ok(Bytes::from(out))
}

/// A scalar string in double quotes, escaping what a YAML 1.1 reader would refuse or
/// change: control characters, DEL and the C1 range (NEL would read as a line break),
/// the line and paragraph separators, the byte-order mark and the noncharacters.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20
                || (0x7f..=0x9f).contains(&(c as u32))
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}') =>
            {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A mapping key: plain when no YAML reader could read it as anything but a string.
fn key(k: &str) -> String {
    let plain = k.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !matches!(k.to_ascii_lowercase().as_str(), "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null");
    if plain {
        k.to_string()
    } else {
        quoted(k)
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(quoted(s)),
        Value::Null => Some("null".into()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Array(a) if a.is_empty() => Some("[]".into()),
        Value::Object(o) if o.is_empty() => Some("{}".into()),
        _ => None,
    }
}

/// Block-style YAML of a mapping or sequence at `indent` spaces.
fn yaml_block(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(o) => {
            for (k, v) in o {
                match scalar(v) {
                    Some(s) => out.push_str(&format!("{pad}{}: {s}\n", key(k))),
                    None => {
                        out.push_str(&format!("{pad}{}:\n", key(k)));
                        // A sequence under a key sits at the key's indent, as Helm writes it.
                        let inner = if v.is_array() { indent } else { indent + 2 };
                        yaml_block(v, inner, out);
                    }
                }
            }
        }
        Value::Array(a) => {
            for item in a {
                match scalar(item) {
                    Some(s) => out.push_str(&format!("{pad}- {s}\n")),
                    None => {
                        // The item's first line follows the dash; the rest align with it.
                        let mut inner = String::new();
                        yaml_block(item, indent + 2, &mut inner);
                        out.push_str(&format!("{pad}- {}", &inner[indent + 2..]));
                    }
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other).unwrap_or_default())),
    }
}
