//! Reading an RDS package: a `.tgz`, `.tar.gz`, `.tar` or `.zip` archive that holds
//! `<dir>/RDS.yaml`. The archive is read by core's capped reader
//! ([`depot_core::archive`]); this module picks `RDS.yaml` and parses it.
use std::io::{Read, Seek};
use std::path::{Component, Path};

use serde::{Deserialize, Serialize};

pub use depot_core::archive::{ArchiveError, Format, Limits};
use depot_core::archive::Res;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Maintainer {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// The fields of `RDS.yaml`. Unknown keys are ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RdsMeta {
    #[serde(default, alias = "RDSVersion", alias = "rdsversion")]
    pub rds_version: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub home: Option<String>,
    #[serde(default)]
    pub icon: Option<String>,
    #[serde(default)]
    pub keywords: Vec<String>,
    #[serde(default)]
    pub maintainers: Vec<Maintainer>,
}

/// Whether a path is `<dir>/RDS.yaml`: exactly one directory deep.
fn is_meta_path(path: &Path) -> bool {
    let parts: Vec<_> = path.components().filter(|c| !matches!(c, Component::CurDir)).collect();
    parts.len() == 2 && matches!(parts[1], Component::Normal(n) if n == "RDS.yaml")
}

/// Finds and returns the bytes of `<dir>/RDS.yaml`, checking the whole archive through
/// core's capped reader.
pub fn read_metadata_file<R: Read + Seek>(r: R, format: Format, limits: &Limits) -> Res<Vec<u8>> {
    let mut files = depot_core::archive::read_files(r, format, limits, &is_meta_path)?;
    if files.len() > 1 {
        return Err(ArchiveError::Broken("the archive holds more than one RDS.yaml one directory deep".into()));
    }
    files.pop().map(|(_, bytes)| bytes).ok_or_else(|| broken("no RDS.yaml one directory deep (<dir>/RDS.yaml)"))
}

fn broken(m: impl Into<String>) -> ArchiveError {
    ArchiveError::Broken(m.into())
}

/// How deep `RDS.yaml` may nest flow collections (`[...]`, `{...}`). The YAML parser's
/// time grows with the square of the depth (a 277-byte upload nesting 100,000 levels
/// took 36 s), and no chart needs more than a few.
const MAX_FLOW_DEPTH: usize = 64;

/// The deepest nesting of flow collections in a YAML text, outside quoted scalars and
/// comments.
fn flow_depth(text: &[u8]) -> usize {
    let (mut depth, mut deepest, mut i) = (0usize, 0usize, 0usize);
    let mut line_start = true;
    while i < text.len() {
        let c = text[i];
        match c {
            b'"' => {
                i += 1;
                while i < text.len() && text[i] != b'"' {
                    i += if text[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'\'' if i == 0 || !text[i - 1].is_ascii_alphanumeric() => {
                i += 1;
                while i < text.len() && text[i] != b'\'' {
                    i += 1;
                }
            }
            b'#' if line_start || text[i - 1].is_ascii_whitespace() => {
                while i < text.len() && text[i] != b'\n' {
                    i += 1;
                }
            }
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        line_start = c == b'\n';
        i += 1;
    }
    deepest
}

/// Parses `RDS.yaml` and checks its required fields.
pub fn parse_metadata(bytes: &[u8]) -> Res<RdsMeta> {
    if flow_depth(bytes) > MAX_FLOW_DEPTH {
        return Err(broken(format!("RDS.yaml nests more than {MAX_FLOW_DEPTH} levels deep")));
    }
    let meta: RdsMeta = serde_yaml::from_slice(bytes).map_err(|e| broken(format!("invalid RDS.yaml: {e}")))?;
    for (field, v) in [("name", &meta.name), ("code", &meta.code), ("version", &meta.version)] {
        if v.as_deref().is_none_or(|s| s.trim().is_empty()) {
            return Err(broken(format!("RDS.yaml lacks the required field '{field}'")));
        }
    }
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_nesting_is_refused_at_once() {
        let deep =
            format!("name: x\ncode: x\nversion: 1.0.0\nkeywords: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
        let started = std::time::Instant::now();
        assert!(matches!(parse_metadata(deep.as_bytes()), Err(ArchiveError::Broken(m)) if m.contains("levels deep")));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        let maps = format!("name: x\ncode: x\nversion: 1.0.0\nhome: {}{}\n", "{a: ".repeat(1000), "}".repeat(1000));
        assert!(matches!(parse_metadata(maps.as_bytes()), Err(ArchiveError::Broken(m)) if m.contains("levels deep")));
        // Brackets inside quotes and comments do not count.
        let quoted =
            format!("name: \"{}\"\ncode: x\nversion: 1.0.0 # {}\nkeywords: [a, b]\n", "[".repeat(500), "{".repeat(500));
        assert_eq!(parse_metadata(quoted.as_bytes()).unwrap().keywords.len(), 2);
    }

    #[test]
    fn metadata_aliases_and_required_fields() {
        let m = parse_metadata(b"RDSVersion: v1\nname: N\ncode: c\nversion: 1.0.0\nextra: 1\n").unwrap();
        assert_eq!(m.rds_version.as_deref(), Some("v1"));
        assert!(matches!(parse_metadata(b"name: N\ncode: c\n"), Err(ArchiveError::Broken(m)) if m.contains("version")));
        assert!(matches!(parse_metadata(b": : :\n- ["), Err(ArchiveError::Broken(m)) if m.contains("invalid")));
    }
}
