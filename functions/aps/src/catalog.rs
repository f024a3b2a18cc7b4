//! The catalog in the domain: every APS package is a version of `aps://{vendor}/{app}` in
//! the catalog repository, named `{version}-{release}` (`_2`, `_3`... for further
//! packages of the same application version by other packagers, types, APS versions or
//! platforms). What the catalog matches on is in the version's metadata ([`Attrs`]).
//!
//! Approval is bkrepo's `@prerelease` stage and publishing its `@release` stage: only
//! published packages are in the catalog (lookups, pages, feeds), for everyone.
use depot_core::http::AppState;
use depot_core::model::{Listing, PackageVersion, Repository, STAGE_PRERELEASE};
use depot_core::registry::PageRequest;
use depot_core::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::package::APS_VERSIONS;

pub const KEY_PREFIX: &str = "aps://";

pub fn key_of(vendor: &str, app: &str) -> String {
    format!("{KEY_PREFIX}{vendor}/{app}")
}

/// A value of an argument a package does not state: the catalog's "undefined".
pub const UNDEFINED: &str = "undefined";

/// What the catalog knows of one package, kept as its version's metadata.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Attrs {
    pub aps_version: String,
    pub vendor: String,
    pub application: String,
    pub app_id: String,
    pub version: String,
    pub release: String,
    pub packager: String,
    /// APS or PVT.
    #[serde(rename = "packageType")]
    pub package_type: String,
    #[serde(default)]
    pub arch: Option<String>,
    #[serde(default)]
    pub platform: Option<String>,
    #[serde(default)]
    pub os: Option<String>,
    #[serde(default)]
    pub commercial_name: Option<String>,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub vendor_homepage: Option<String>,
    #[serde(default)]
    pub packager_homepage: Option<String>,
    /// Where the package's bits are, for a package registered by its metadata and URL.
    #[serde(default)]
    pub url: Option<String>,
    /// The blob of `APP-META.xml`.
    pub meta_blob: String,
    /// The blob of the certificate (PEM), when the package is signed.
    #[serde(default)]
    pub certificate_blob: Option<String>,
}

impl Attrs {
    pub fn app_version(&self) -> String {
        format!("{}-{}", self.version, self.release)
    }

    /// The URL segment of its APS version.
    pub fn aps_segment(&self) -> &'static str {
        APS_VERSIONS.iter().find(|(v, _)| *v == self.aps_version).map_or("all", |(_, s)| s)
    }

    pub fn arch(&self) -> &str {
        self.arch.as_deref().unwrap_or(UNDEFINED)
    }

    pub fn platform(&self) -> &str {
        self.platform.as_deref().unwrap_or(UNDEFINED)
    }

    pub fn os(&self) -> &str {
        self.os.as_deref().unwrap_or(UNDEFINED)
    }

    /// What the catalog shows of it, by name (a package index's rows, a feed entry's
    /// APS elements).
    pub fn fields(&self) -> [(&'static str, &str); 10] {
        [
            ("vendor", &self.vendor),
            ("application", &self.application),
            ("version", &self.version),
            ("release", &self.release),
            ("packager", &self.packager),
            ("type", &self.package_type),
            ("apsVersion", &self.aps_version),
            ("arch", self.arch()),
            ("platform", self.platform()),
            ("os", self.os()),
        ]
    }

    /// What tells two packages of one application version apart.
    pub fn identity(&self) -> [String; 6] {
        [
            self.aps_version.clone(),
            self.packager.to_lowercase(),
            self.package_type.to_uppercase(),
            self.arch().to_lowercase(),
            self.platform().to_lowercase(),
            self.os().to_lowercase(),
        ]
    }

    pub fn to_metadata(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        }
    }
}

/// A published package: its version and what the catalog knows of it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub v: PackageVersion,
    pub a: Attrs,
}

impl Entry {
    /// A version of the catalog repository as a catalog package (`None` for one that no
    /// APS upload made).
    pub fn of(v: PackageVersion) -> Option<Entry> {
        let a = serde_json::from_value(Value::Object(v.metadata.clone())).ok()?;
        Some(Entry { v, a })
    }

    pub fn approved(&self) -> bool {
        self.v.stage_tag.iter().any(|t| t == STAGE_PRERELEASE)
    }
}

/// Orders application versions as people read them: runs of digits by their value,
/// everything else by its characters (`1.21-1` after `1.3-1`).
pub fn version_order(a: &str, b: &str) -> std::cmp::Ordering {
    fn runs(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        for (i, c) in s.char_indices().skip(1) {
            let prev = s[..i].chars().next_back().is_some_and(|p| p.is_ascii_digit());
            if c.is_ascii_digit() != prev {
                out.push((prev, &s[start..i]));
                start = i;
            }
        }
        if !s.is_empty() {
            out.push((s[start..].starts_with(|c: char| c.is_ascii_digit()), &s[start..]));
        }
        out
    }
    let (x, y) = (runs(a), runs(b));
    for ((dx, rx), (dy, ry)) in x.iter().zip(&y) {
        let o = match (dx, dy) {
            (true, true) => {
                let (tx, ty) = (rx.trim_start_matches('0'), ry.trim_start_matches('0'));
                tx.len().cmp(&ty.len()).then_with(|| tx.cmp(ty))
            }
            _ => rx.cmp(ry),
        };
        if o.is_ne() {
            return o;
        }
    }
    x.len().cmp(&y.len()).then_with(|| a.cmp(b))
}

/// A vendor, application, version or packager a request names: one a package could
/// have (checked before it reaches a key, and never echoed at length).
pub fn check_name(what: &str, v: &str) -> Result<()> {
    let ok = !v.is_empty() && v.len() <= 256 && !v.chars().any(|c| c.is_control() || crate::package::is_format_char(c));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "invalid {what} '{}': 1-256 bytes without control or invisible formatting characters",
            depot_core::model::printable(v)
        )))
    }
}

/// The APS version an `{APSver}` path segment selects: `None` for `all`.
pub fn aps_version_of(segment: &str) -> Result<Option<&'static str>> {
    if segment == "all" {
        return Ok(None);
    }
    APS_VERSIONS.iter().find(|(_, s)| *s == segment).map(|(v, _)| Some(*v)).ok_or_else(|| {
        Error::not_found_as(
            depot_core::error::Kind::Route,
            segment,
            format!("no APS version '{}' in the catalog: use 1, 1.1, 1.2, 2.0 or all", depot_core::model::printable(segment)),
        )
    })
}

/// The listings a package belongs to once published (`Registry::listing_*`), under
/// its own APS version's segment and under `all`. Names cannot hold `/`, which parts
/// them.
///
/// - version listings, newest upload first: `feed/{APSver}` (the catalog's feeds),
///   `vendor/...`, `app/...` and `version/{APSver}/{Vendor}/{App}/{AppVer}` (also what a
///   lookup reads); and `updates`, newest publication first;
/// - name listings: the vendors of an APS version, the applications of a vendor, the
///   versions of an application, the packagers of a version.
pub fn listing_of(a: &Attrs) -> Listing {
    let (v, app, ver, p) = (&a.vendor, &a.application, a.app_version(), &a.packager);
    let mut l = Listing { by_release: vec!["updates".into()], ..Listing::default() };
    for x in [a.aps_segment(), "all"] {
        l.by_upload.extend([format!("feed/{x}"), format!("vendor/{x}/{v}"), format!("app/{x}/{v}/{app}"), format!("version/{x}/{v}/{app}/{ver}")]);
        l.members.extend([
            (format!("vendors/{x}"), v.clone()),
            (format!("apps/{x}/{v}"), app.clone()),
            (format!("versions/{x}/{v}/{app}"), ver.clone()),
            (format!("packagers/{x}/{v}/{app}/{ver}"), p.clone()),
        ]);
    }
    l
}

/// The names of a name listing (none before the catalog exists).
pub async fn names(st: &AppState, repo: Option<&Repository>, listing: &str) -> Result<Vec<String>> {
    match repo {
        Some(r) => st.registry.listing_members(r, listing).await,
        None => Ok(vec![]),
    }
}

/// The published packages of one application version: one Query of its listing.
pub async fn of_version(st: &AppState, repo: Option<&Repository>, aps: &str, vendor: &str, app: &str, ver: &str) -> Result<Vec<Entry>> {
    let Some(r) = repo else { return Ok(vec![]) };
    let listing = format!("version/{aps}/{vendor}/{app}/{ver}");
    Ok(st.registry.listing_all(r, &listing).await?.into_iter().filter_map(Entry::of).collect())
}

/// A page of a version listing, newest first, and how many it holds.
pub async fn page_of(st: &AppState, repo: Option<&Repository>, listing: &str, req: PageRequest) -> Result<(Vec<Entry>, i64)> {
    let Some(r) = repo else { return Ok((vec![], 0)) };
    let page = st.registry.listing_page(r, listing, req).await?;
    Ok((page.items.into_iter().filter_map(Entry::of).collect(), page.total))
}

/// A lookup's arguments, as the query string gives them.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Args {
    pub packager: Option<String>,
    pub arch: Option<String>,
    #[serde(rename = "type")]
    pub package_type: Option<String>,
    pub platform: Option<String>,
    pub os: Option<String>,
}

impl Args {
    fn given(v: &Option<String>) -> Option<&str> {
        v.as_deref().map(str::trim).filter(|v| !v.is_empty())
    }

    /// Whether a package matches: every argument given, compared ignoring case; `type`
    /// is APS when not given.
    pub fn matches(&self, a: &Attrs) -> bool {
        let eq = |arg: &Option<String>, value: &str| Self::given(arg).is_none_or(|g| g.eq_ignore_ascii_case(value));
        eq(&self.packager, &a.packager)
            && eq(&self.arch, a.arch())
            && eq(&self.platform, a.platform())
            && eq(&self.os, a.os())
            && Self::given(&self.package_type).unwrap_or("APS").eq_ignore_ascii_case(&a.package_type)
    }

    /// Whether every argument is given.
    pub fn complete(&self) -> bool {
        [&self.packager, &self.arch, &self.package_type, &self.platform, &self.os].iter().all(|v| Self::given(v).is_some())
    }
}

/// The query that names every argument of a package with its concrete value.
pub fn full_query(a: &Attrs) -> String {
    serde_urlencoded::to_string([
        ("packager", a.packager.as_str()),
        ("arch", a.arch()),
        ("type", a.package_type.as_str()),
        ("platform", a.platform()),
        ("os", a.os()),
    ])
    .unwrap_or_default()
}

/// A path segment, percent-encoded.
pub fn seg(s: &str) -> String {
    depot_core::store::pct_encode(s, false)
}

/// The path of an application version under `aps` (an `{APSver}` segment).
pub fn version_path(aps: &str, a: &Attrs) -> String {
    format!("/aps/{aps}/{}/{}/{}", seg(&a.vendor), seg(&a.application), seg(&a.app_version()))
}

/// The fully specified URL path of a package's resource (`aps`, `meta`, `certificate`).
pub fn resource_path(aps: &str, a: &Attrs, kind: &str) -> String {
    format!("{}.{kind}?{}", version_path(aps, a), full_query(a))
}

/// The path of a package's index page.
pub fn package_index_path(aps: &str, a: &Attrs) -> String {
    let q = serde_urlencoded::to_string([("packager", a.packager.as_str())]).unwrap_or_default();
    format!("{}/?{q}", version_path(aps, a))
}

#[cfg(test)]
mod tests {
    use super::version_order;

    #[test]
    fn application_versions_order_by_their_numbers() {
        let mut v = vec!["1.21-1", "1.3-1", "1.3-10", "1.3-2", "1.0-1", "10.0-1", "1.3a-1", "2.0-1_2", "2.0-1"];
        v.sort_by(|a, b| version_order(a, b));
        assert_eq!(v, ["1.0-1", "1.3-1", "1.3-2", "1.3-10", "1.3a-1", "1.21-1", "2.0-1", "2.0-1_2", "10.0-1"]);
    }
}
