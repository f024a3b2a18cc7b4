//! Packages and versions: what every surface's uploads become in the domain.
use std::cmp::Ordering;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::printable;
use crate::{Error, Result};

/// The stage tags, in the order a version moves through them.
pub const STAGE_PRERELEASE: &str = "@prerelease";
pub const STAGE_RELEASE: &str = "@release";

/// One entry of a version's `packageMetadata`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetadataEntry {
    pub key: String,
    pub value: Value,
    #[serde(default)]
    pub system: bool,
    #[serde(default)]
    pub description: Option<String>,
}

/// A package: the summary of its versions. Item `REPO#{p}/{r}` + `PKG#{key}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PackageSummary {
    pub project_id: String,
    pub repo_name: String,
    pub name: String,
    pub key: String,
    #[serde(rename = "type")]
    pub package_type: String,
    pub latest: String,
    pub downloads: i64,
    pub versions: i64,
    pub description: String,
    pub created_by: String,
    pub created_date: String,
    pub last_modified_by: String,
    pub last_modified_date: String,
    #[serde(default)]
    pub extension: Map<String, Value>,
    /// The first [`INLINE_HISTORY`] versions ever uploaded, in upload order. The whole
    /// history is `Registry::package_history`: past these, versions are kept in items
    /// of their own, so that the package item stays small however many versions come.
    #[serde(default)]
    pub history_version: Vec<String>,
    /// Bumped by every change but download counts: writers condition on it.
    #[serde(default)]
    pub revision: i64,
    /// How many versions the whole history holds; 0 for packages from before it was
    /// counted, whose history is all inline.
    #[serde(default)]
    pub history_count: i64,
    /// Names this package's incarnation in its history items: a package deleted and
    /// uploaded again starts a new history.
    #[serde(default)]
    pub history_id: String,
}

/// How many versions a package item lists inline in `historyVersion` (at most about
/// 33 KB of the 400 KB an item may hold).
pub const INLINE_HISTORY: usize = 256;

impl PackageSummary {
    /// How many versions the whole history holds.
    pub fn history_len(&self) -> usize {
        (self.history_count.max(0) as usize).max(self.history_version.len())
    }

    /// Whether some of the history is in history items rather than inline.
    pub fn history_spilled(&self) -> bool {
        self.history_len() > self.history_version.len()
    }
}

/// The listings a version belongs to while it is released.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Listing {
    /// Version listings ordered by the version's upload time.
    #[serde(default)]
    pub by_upload: Vec<String>,
    /// Version listings ordered by the time it was released.
    #[serde(default)]
    pub by_release: Vec<String>,
    /// (name listing, name) pairs.
    #[serde(default)]
    pub members: Vec<(String, String)>,
}

impl Listing {
    pub fn is_empty(&self) -> bool {
        self.by_upload.is_empty() && self.by_release.is_empty() && self.members.is_empty()
    }
}

/// One version of a package. Item `PKG#{p}/{r}/{key}` + `VER#{version}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PackageVersion {
    pub project_id: String,
    pub repo_name: String,
    pub package_key: String,
    pub name: String,
    pub size: u64,
    pub downloads: i64,
    #[serde(default)]
    pub stage_tag: Vec<String>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    #[serde(default)]
    pub package_metadata: Vec<MetadataEntry>,
    pub created_by: String,
    pub created_date: String,
    pub last_modified_by: String,
    pub last_modified_date: String,
    /// The artifact's path in the repository, such as `/chart-1.0.0.tgz`.
    pub content_path: String,
    pub sha256: String,
    pub sha1: String,
    pub md5: String,
    /// The blob store key of the bytes.
    pub blob_key: String,
    #[serde(default)]
    pub revision: i64,
    /// Further blobs the version names beyond `blob_key`: the files of a strux tree,
    /// whose `blob_key` is the tree's manifest. Garbage collection keeps them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blobs: Vec<String>,
    /// The version's number in its repository, for surfaces that name versions by an
    /// integer (OCP's ids): allocated once, never reused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<u64>,
    /// The listings it belongs to while it is released (`registry::listings`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listing: Option<Listing>,
    /// When it was released (reached `@release`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_date: Option<String>,
}

impl PackageVersion {
    pub fn is_released(&self) -> bool {
        self.stage_tag.iter().any(|t| t == STAGE_RELEASE)
    }

    /// The stage the version has reached: 0 none, 1 `@prerelease`, 2 `@release`.
    pub fn stage(&self) -> usize {
        STAGES.iter().rposition(|s| self.stage_tag.iter().any(|t| t == s)).map_or(0, |i| i + 1)
    }
}

/// The stages in order.
pub const STAGES: [&str; 2] = [STAGE_PRERELEASE, STAGE_RELEASE];

/// Reads a stage tag as clients send it: with or without the `@`, any case.
pub fn parse_stage(tag: &str) -> Result<&'static str> {
    let t = tag.trim().trim_start_matches('@').to_ascii_lowercase();
    STAGES
        .iter()
        .copied()
        .find(|s| s[1..] == t)
        .ok_or_else(|| Error::Invalid(format!("unknown stage tag '{}': use @prerelease or @release", printable(tag))))
}

/// Checks a package key `{type}://{value}`: a lowercase type, then 1-256 printable
/// characters without backslashes, control characters or `.`/`..` path segments.
pub fn validate_package_key(key: &str) -> Result<()> {
    let bad = || {
        Error::Invalid(format!(
            "invalid package key '{}': expected {{type}}://{{value}}, such as rds://mychart",
            printable(key)
        ))
    };
    let (ty, value) = key.split_once("://").ok_or_else(bad)?;
    let ty_ok = !ty.is_empty() && ty.len() <= 16 && ty.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let value_ok = !value.is_empty()
        && value.len() <= 256
        && !value.chars().any(|c| c == '\\' || c.is_control())
        && !value.split('/').any(|s| s.is_empty() || s == "." || s == "..");
    if ty_ok && value_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

/// Checks a version name: 1-128 characters from letters, digits, `.`, `-`, `_` and `+`,
/// starting with a letter or digit.
pub fn validate_version(version: &str) -> Result<()> {
    let ok = (1..=128).contains(&version.len())
        && version.as_bytes()[0].is_ascii_alphanumeric()
        && version.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'+'));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "invalid version '{}': 1-128 characters from letters, digits, '.', '-', '_' and '+', starting with a letter or digit",
            printable(version)
        )))
    }
}

/// Orders versions: semantic versions by semver precedence (build metadata breaking
/// ties), above every version that is not semver; those compare by name.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    match (semver::Version::parse(a), semver::Version::parse(b)) {
        (Ok(x), Ok(y)) => x.cmp_precedence(&y).then_with(|| x.build.cmp(&y.build)),
        (Ok(_), Err(_)) => Ordering::Greater,
        (Err(_), Ok(_)) => Ordering::Less,
        (Err(_), Err(_)) => a.cmp(b),
    }
}

/// A string whose byte order is [`compare_versions`]' order: semantic versions by
/// precedence (major, minor, patch zero-padded; a pre-release below its release; numeric
/// pre-release identifiers below alphanumeric ones), above every other version, which
/// sort by name. The version itself ends it, so equal precedence breaks by name.
pub fn version_sort_key(v: &str) -> String {
    match semver::Version::parse(v) {
        Ok(s) => {
            // '~' (release) sorts after any pre-release; identifiers are joined by '!'
            // and ended by ' ', both below every identifier character, so a shorter list
            // sorts first.
            let pre = if s.pre.is_empty() {
                "~".to_string()
            } else {
                s.pre
                    .as_str()
                    .split('.')
                    .map(|id| match id.parse::<u64>() {
                        Ok(n) => format!("0{n:020}"),
                        Err(_) => format!("1{id}"),
                    })
                    .collect::<Vec<_>>()
                    .join("!")
            };
            format!("1#{:020}.{:020}.{:020}#{pre} #{v}", s.major, s.minor, s.patch)
        }
        Err(_) => format!("0#{v}"),
    }
}

/// Whether a version is a semantic version.
pub fn is_semver(v: &str) -> bool {
    semver::Version::parse(v).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_versions() {
        for good in ["rds://chart", "rpm://a/b/c", "gav://g:a"] {
            assert!(validate_package_key(good).is_ok(), "{good}");
        }
        for bad in ["chart", "RDS://x", "rds://", "rds://../x", "rds://a//b", "rds://a\\b", "rds://a\0"] {
            assert!(validate_package_key(bad).is_err(), "{bad}");
        }
        for good in ["1.0.0", "1.0.0-rc.1+b5", "v2", "2024_01"] {
            assert!(validate_version(good).is_ok(), "{good}");
        }
        for bad in ["", "../1", "1/2", "-1", "1 0", "1\n"] {
            assert!(validate_version(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sort_keys_follow_version_order() {
        let mut v = vec![
            "1.0.0",
            "1.10.0",
            "1.2.0",
            "1.0.0-rc.1",
            "1.0.0-rc.2",
            "1.0.0-rc.10",
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-beta",
            "1.0.0-1",
            "banana",
            "apple",
            "2.0.0+build.5",
            "10.0.0",
        ];
        let mut by_key = v.clone();
        v.sort_by(|a, b| compare_versions(a, b));
        by_key.sort_by_key(|x| version_sort_key(x));
        assert_eq!(v, by_key);
    }

    #[test]
    fn ordering() {
        let mut v = vec!["1.0.0", "1.10.0", "1.2.0", "1.0.0-rc.1", "banana", "2.0.0"];
        v.sort_by(|a, b| compare_versions(b, a));
        assert_eq!(v, ["2.0.0", "1.10.0", "1.2.0", "1.0.0", "1.0.0-rc.1", "banana"]);
    }
}
