//! Reading an APS package: a zip with `APP-META.xml` and `APP-LIST.xml` at its root.
//! The zip goes through core's capped reader (entries, sizes, compression ratio, names),
//! which also hashes every file, so that `APP-LIST.xml` is checked against what the zip
//! really holds.
use std::io::{Read, Seek};
use std::path::Path;

use depot_core::archive::{read_listing, ArchiveError, Format, Limits};

use crate::xml::{self, Element};

/// The APS 2.0 namespace and the APS 1.x one.
pub const NS_2: &str = "http://aps-standard.org/ns/2";
pub const NS_1: &str = "http://apstandard.com/ns/1";

/// The APS versions the catalog serves, with their URL segment.
pub const APS_VERSIONS: [(&str, &str); 4] = [("1.0", "1"), ("1.1", "1.1"), ("1.2", "1.2"), ("2.0", "2.0")];

/// The longest `APP-META.xml` or `APP-LIST.xml` read.
const MAX_META_BYTES: u64 = 1024 * 1024;

/// What `APP-META.xml` says of a package.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppMeta {
    /// `application/@version`: 1.0, 1.1, 1.2 or 2.0.
    pub aps_version: String,
    pub id: String,
    pub name: String,
    pub version: String,
    pub release: String,
    pub vendor: String,
    pub vendor_homepage: Option<String>,
    pub packager: String,
    pub packager_homepage: Option<String>,
    pub summary: Option<String>,
    pub arch: Option<String>,
    pub platform: Option<String>,
    pub os: Option<String>,
}

impl AppMeta {
    /// The application version as the catalog's URLs name it: `{version}-{release}`.
    pub fn app_version(&self) -> String {
        format!("{}-{}", self.version, self.release)
    }
}

/// A package read and checked.
#[derive(Debug, Clone)]
pub struct Package {
    pub meta: AppMeta,
    pub meta_xml: Vec<u8>,
    /// The X.509 certificate of `APP-LIST.xml`'s signature, as PEM, when it is signed.
    pub certificate: Option<String>,
    pub files: usize,
}

/// Unicode's invisible formatting characters (zero-width spaces and joiners, bidi
/// overrides, the BOM...): a name that holds one looks like another.
pub fn is_format_char(c: char) -> bool {
    matches!(c as u32,
        // format characters (Cf)
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x180E | 0x200B..=0x200F | 0x202A..=0x202E
        | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB | 0x110BD | 0x1D173..=0x1D17A
        | 0xE0001 | 0xE0020..=0xE007F
        // default-ignorable and blank-looking: grapheme joiner, Hangul fillers, variation
        // selectors, braille blank
        | 0x34F | 0x115F | 0x1160 | 0x3164 | 0xFFA0 | 0xFE00..=0xFE0F | 0xE0100..=0xE01EF | 0x2800
        // spaces other than U+0020
        | 0xA0 | 0x1680 | 0x2000..=0x200A | 0x2028 | 0x2029 | 0x202F | 0x205F | 0x3000
        // private use
        | 0xE000..=0xF8FF | 0xF0000..=0x10FFFF)
}

/// The most bytes of a vendor or application name: `aps://{vendor}/{app}` is a package
/// key, whose value holds at most 256 bytes.
pub const MAX_NAME_BYTES: usize = 120;

/// A name the catalog puts in a URL segment (a vendor, an application, a packager).
pub fn check_segment(what: &str, v: &str) -> Result<(), String> {
    let ok = !v.is_empty()
        && v.len() <= MAX_NAME_BYTES
        && v.trim() == v
        && v != "."
        && v != ".."
        && !v.chars().any(|c| c.is_control() || is_format_char(c) || matches!(c, '/' | '\\' | '?' | '#' | '%'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "APP-META.xml's {what} '{}' cannot name a catalog path: 1-{MAX_NAME_BYTES} bytes, without '/', '\\', '?', '#', '%', control or invisible formatting characters, or surrounding spaces",
            depot_core::model::printable(v)
        ))
    }
}

/// Reads `APP-META.xml`.
pub fn parse_meta(bytes: &[u8]) -> Result<AppMeta, String> {
    let root = xml::parse(bytes, "APP-META.xml")?;
    let ns = root.ns.as_deref().unwrap_or_default();
    if root.name != "application" || (ns != NS_2 && ns != NS_1) {
        return Err(format!(
            "APP-META.xml is not an APS application: its root must be <application> in the namespace {NS_2} (APS 2.0) or {NS_1} (APS 1.x)"
        ));
    }
    let aps_version = match root.attr("version").map(str::trim) {
        None | Some("") => "1.0".to_string(),
        Some(v) => {
            let v = if v.contains('.') { v.to_string() } else { format!("{v}.0") };
            if !APS_VERSIONS.iter().any(|(known, _)| *known == v) {
                return Err(format!("APP-META.xml's application/@version '{}' is not one the catalog serves: 1.0, 1.1, 1.2 or 2.0", v.escape_debug()));
            }
            v
        }
    };
    let required = |el: Option<&Element>, path: &str| -> Result<String, String> {
        el.map(|e| e.text.clone()).filter(|t| !t.is_empty()).ok_or_else(|| {
            let why = if path.contains('/') { " (the catalog's URLs name it)" } else { "" };
            format!("APP-META.xml has no <{path}>{why}")
        })
    };
    let vendor = root.child("vendor");
    let packager = root.child("packager");
    let meta = AppMeta {
        aps_version,
        id: required(root.child("id"), "id")?,
        name: required(root.child("name"), "name")?,
        version: required(root.child("version"), "version")?,
        release: required(root.child("release"), "release")?,
        vendor: required(vendor.and_then(|v| v.child("name")), "vendor/name")?,
        vendor_homepage: vendor.and_then(|v| v.child_text("homepage")).map(String::from),
        packager: required(packager.and_then(|v| v.child("name")), "packager/name")?,
        packager_homepage: packager.and_then(|v| v.child_text("homepage")).map(String::from),
        summary: root.child_text("summary").map(String::from),
        arch: requirement(&root, "arch"),
        platform: requirement(&root, "platform"),
        os: requirement(&root, "os"),
    };
    check_segment("vendor/name", &meta.vendor)?;
    check_segment("name", &meta.name)?;
    check_segment("packager/name", &meta.packager)?;
    // The release has no '-', so that `{version}-{release}` names one pair: `1-2` with
    // `x`, and `1` with `2-x`, would both be `1-2-x`.
    let version = meta.app_version();
    // Nor `_`, which the names of further packages of a version take (`1-2_2`).
    if meta.release.contains(['-', '_']) || depot_core::model::validate_version(&version).is_err() {
        return Err(format!(
            "APP-META.xml's version '{}' and release '{}' must be letters, digits, '.' and '+' ('-' and '_' in the version only), 1-128 characters together",
            depot_core::model::printable(&meta.version),
            depot_core::model::printable(&meta.release)
        ));
    }
    for (what, v) in [("arch", &meta.arch), ("platform", &meta.platform), ("os", &meta.os)] {
        if v.as_deref().is_some_and(|v| v.len() > 64 || v.chars().any(|c| c.is_control() || c.is_whitespace())) {
            return Err(format!("APP-META.xml's {what} requirement must be one word of at most 64 characters"));
        }
    }
    Ok(meta)
}

/// A platform, OS or architecture requirement, wherever the document states it: the
/// first element of that name, by its `name` (or `value`) attribute or its text.
fn requirement(root: &Element, name: &str) -> Option<String> {
    root.children
        .iter()
        .filter(|c| !["id", "name", "version", "release", "vendor", "packager"].contains(&c.name.as_str()))
        .flat_map(|c| std::iter::once(c).filter(|c| c.name == name).chain(c.descendants(name)))
        .find_map(|e| {
            let v = e.attr("name").or(e.attr("value")).unwrap_or(&e.text).trim();
            (!v.is_empty()).then(|| v.to_string())
        })
}

/// Reads and checks a package's zip.
pub fn read_package<R: Read + Seek>(r: R, limits: &Limits) -> Result<Package, String> {
    let at_root = |p: &Path, name: &str| p.components().count() == 1 && p == Path::new(name);
    let limits = Limits { max_file_bytes: MAX_META_BYTES, max_wanted_bytes: 2 * MAX_META_BYTES, ..*limits };
    let contents = read_listing(r, Format::Zip, &limits, &|p| at_root(p, "APP-META.xml") || at_root(p, "APP-LIST.xml"))
        .map_err(|e| match e {
            ArchiveError::Broken(m) | ArchiveError::TooLarge(m) => format!("the package is not a readable zip: {m}"),
        })?;
    let file = |name: &str| contents.wanted.iter().find(|(p, _)| at_root(p, name)).map(|(_, b)| b.as_slice());
    let meta_xml = file("APP-META.xml").ok_or("the package has no APP-META.xml at its root")?;
    let meta = parse_meta(meta_xml)?;
    let list = file("APP-LIST.xml").ok_or("the package has no APP-LIST.xml at its root: every APS package lists its files there")?;
    let list = xml::parse(list, "APP-LIST.xml")?;
    let mut listed = std::collections::BTreeMap::new();
    for f in list.descendants("file") {
        let (Some(name), Some(size), Some(sha256)) = (f.attr("name"), f.attr("size"), f.attr("sha256")) else {
            return Err("APP-LIST.xml has a <file> without its name, size and sha256".into());
        };
        let size: u64 = size.trim().parse().map_err(|_| format!("APP-LIST.xml gives '{}' a size that is not a number", name.escape_debug()))?;
        if listed.insert(name.to_string(), (size, sha256.trim().to_ascii_lowercase())).is_some() {
            return Err(format!("APP-LIST.xml lists '{}' twice", name.escape_debug()));
        }
    }
    let mut seen = 0;
    for f in &contents.files {
        let name = f.path.to_string_lossy().replace('\\', "/");
        if name == "APP-LIST.xml" {
            continue;
        }
        let Some((size, sha256)) = listed.get(&name) else {
            return Err(format!("APP-LIST.xml does not list '{}', which the package holds", name.escape_debug()));
        };
        if *size != f.size || *sha256 != f.sha256 {
            return Err(format!("'{}' is not what APP-LIST.xml lists: its size or sha256 differs", name.escape_debug()));
        }
        seen += 1;
    }
    if seen != listed.len() {
        let held: std::collections::BTreeSet<String> = contents.files.iter().map(|f| f.path.to_string_lossy().replace('\\', "/")).collect();
        let missing = listed.keys().find(|n| !held.contains(*n)).cloned().unwrap_or_default();
        return Err(format!("APP-LIST.xml lists '{}', which the package does not hold", missing.escape_debug()));
    }
    let certificate = match list.descendants("X509Certificate").next() {
        Some(c) if !c.text.trim().is_empty() => Some(pem_of(&c.text)?),
        _ => None,
    };
    Ok(Package { meta, meta_xml: meta_xml.to_vec(), certificate, files: contents.files.len() })
}

/// The whole length a DER value's header declares (tag, length and contents).
fn der_length(der: &[u8]) -> Option<usize> {
    let first = *der.get(1)?;
    if first < 0x80 {
        return Some(2 + first as usize);
    }
    let n = (first & 0x7f) as usize;
    if n == 0 || n > 4 {
        return None;
    }
    let len = der.get(2..2 + n)?.iter().fold(0usize, |acc, b| (acc << 8) | *b as usize);
    Some(2 + n + len)
}

/// A base64 certificate as PEM.
fn pem_of(b64: &str) -> Result<String, String> {
    use base64::Engine;
    let clean: String = b64.chars().filter(|c| !c.is_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(&clean)
        .map_err(|_| "APP-LIST.xml's X509Certificate is not base64".to_string())?;
    // A DER certificate is one ASN.1 SEQUENCE, long enough to hold one, and nothing after it.
    if der.len() < 64 || der[0] != 0x30 || der_length(&der) != Some(der.len()) {
        return Err("APP-LIST.xml's X509Certificate is not a DER-encoded certificate".into());
    }
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("base64 is ASCII")).collect();
    Ok(format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(ns: &str, version: Option<&str>, body: &str) -> String {
        let v = version.map(|v| format!(" version=\"{v}\"")).unwrap_or_default();
        format!(r#"<?xml version="1.0"?><application xmlns="{ns}"{v}>{body}</application>"#)
    }

    const FIELDS: &str = "<id>http://example.com/wp</id><name>WordPress</name><version>6.1</version><release>2</release>\
        <vendor><name>Example</name><homepage>http://example.com</homepage></vendor><packager><name>pack.example.com</name></packager>";

    #[test]
    fn reads_both_namespaces_and_the_aps_version() {
        let m = parse_meta(meta(NS_2, Some("2.0"), FIELDS).as_bytes()).unwrap();
        assert_eq!((m.aps_version.as_str(), m.app_version().as_str(), m.vendor.as_str()), ("2.0", "6.1-2", "Example"));
        assert_eq!(m.vendor_homepage.as_deref(), Some("http://example.com"));
        let m = parse_meta(meta(NS_1, None, FIELDS).as_bytes()).unwrap();
        assert_eq!(m.aps_version, "1.0");
        let with_reqs = format!("{FIELDS}<requirements><platform name=\"Linux\"><arch>x86_64</arch></platform><os name=\"CentOS\"/></requirements>");
        let m = parse_meta(meta(NS_1, Some("1.2"), &with_reqs).as_bytes()).unwrap();
        assert_eq!((m.arch.as_deref(), m.platform.as_deref(), m.os.as_deref()), (Some("x86_64"), Some("Linux"), Some("CentOS")));
    }

    #[test]
    fn refuses_what_the_catalog_cannot_serve() {
        assert!(parse_meta(meta("urn:other", None, FIELDS).as_bytes()).unwrap_err().contains("not an APS application"));
        assert!(parse_meta(meta(NS_2, Some("3.0"), FIELDS).as_bytes()).unwrap_err().contains("3.0"));
        let no_vendor = FIELDS.replace("<vendor><name>Example</name><homepage>http://example.com</homepage></vendor>", "");
        assert!(parse_meta(meta(NS_1, Some("1.2"), &no_vendor).as_bytes()).unwrap_err().contains("vendor/name"));
        let slash = FIELDS.replace("<name>WordPress</name>", "<name>a/b</name>");
        assert!(parse_meta(meta(NS_2, None, &slash).as_bytes()).unwrap_err().contains("'/'"));
        let spaced = FIELDS.replace("<release>2</release>", "<release>2 beta</release>");
        assert!(parse_meta(meta(NS_2, None, &spaced).as_bytes()).is_err());
    }
}
