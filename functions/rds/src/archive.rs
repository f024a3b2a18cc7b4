//! Reading an RDS package: a `.tgz`, `.tar.gz`, `.tar` or `.zip` archive that holds
//! `<dir>/RDS.yaml`. Nothing is written to disk by entry names. The readers cap the
//! entry count, the size of `RDS.yaml` and the total decompressed size, and refuse
//! absolute or `..` paths and links, so a hostile archive is a 400, never a crash.
use std::io::{Read, Seek};
use std::path::{Component, Path};

use serde::{Deserialize, Serialize};

/// Limits for one archive.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_entries: usize,
    pub max_meta_bytes: u64,
    pub max_unpacked_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_entries: 10_000, max_meta_bytes: 1024 * 1024, max_unpacked_bytes: 1024 * 1024 * 1024 }
    }
}

/// The archive formats, by the extension they are stored under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Tgz,
    TarGz,
    Tar,
    Zip,
}

impl Format {
    pub fn ext(self) -> &'static str {
        match self {
            Format::Tgz => "tgz",
            Format::TarGz => "tar.gz",
            Format::Tar => "tar",
            Format::Zip => "zip",
        }
    }

    /// The format named by a file name's extension; the longest match wins.
    pub fn from_name(name: &str) -> Option<(Format, &str)> {
        let lower = name.to_ascii_lowercase();
        for (suffix, f) in
            [(".tar.gz", Format::TarGz), (".tgz", Format::Tgz), (".tar", Format::Tar), (".zip", Format::Zip)]
        {
            if lower.ends_with(suffix) && lower.len() > suffix.len() {
                return Some((f, &name[..name.len() - suffix.len()]));
            }
        }
        None
    }

    /// The format the first bytes show, for uploads that carry no file name.
    pub fn sniff(head: &[u8]) -> Option<Format> {
        if head.starts_with(&[0x1f, 0x8b]) {
            Some(Format::Tgz)
        } else if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
            Some(Format::Zip)
        } else if head.len() >= 262 && &head[257..262] == b"ustar" {
            Some(Format::Tar)
        } else {
            None
        }
    }
}

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

/// Why an archive was refused; the message goes to the client after
/// "The Artifact that you uploaded is broken!".
#[derive(Debug)]
pub enum ArchiveError {
    Broken(String),
    TooLarge(String),
}

type Res<T> = Result<T, ArchiveError>;

fn broken(m: impl Into<String>) -> ArchiveError {
    ArchiveError::Broken(m.into())
}

/// Counts the bytes read through it and fails past `cap`: the total decompressed size.
struct Capped<R> {
    inner: R,
    read: u64,
    cap: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.cap {
            return Err(std::io::Error::other(CAP_EXCEEDED));
        }
        Ok(n)
    }
}

const CAP_EXCEEDED: &str = "decompressed size over the limit";

/// Checks an entry path: relative, without `..`, root or prefix components.
fn check_path(path: &Path) -> Res<()> {
    for c in path.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            _ => return Err(broken(format!("entry '{}' has an absolute or '..' path", path.display()))),
        }
    }
    Ok(())
}

/// Whether a path is `<dir>/RDS.yaml`: exactly one directory deep.
fn is_meta_path(path: &Path) -> bool {
    let parts: Vec<_> = path.components().filter(|c| !matches!(c, Component::CurDir)).collect();
    parts.len() == 2 && matches!(parts[1], Component::Normal(n) if n == "RDS.yaml")
}

fn read_meta(r: impl Read, size: u64, limits: &Limits) -> Res<Vec<u8>> {
    if size > limits.max_meta_bytes {
        return Err(ArchiveError::TooLarge(format!("RDS.yaml is over {} bytes", limits.max_meta_bytes)));
    }
    let mut buf = Vec::with_capacity(size as usize);
    r.take(limits.max_meta_bytes + 1).read_to_end(&mut buf).map_err(io_err)?;
    if buf.len() as u64 > limits.max_meta_bytes {
        return Err(ArchiveError::TooLarge(format!("RDS.yaml is over {} bytes", limits.max_meta_bytes)));
    }
    Ok(buf)
}

fn io_err(e: std::io::Error) -> ArchiveError {
    if e.to_string().contains(CAP_EXCEEDED) {
        ArchiveError::TooLarge("the archive's decompressed size is over the limit".into())
    } else {
        broken(format!("unreadable archive: {e}"))
    }
}

fn read_tar(r: impl Read, limits: &Limits) -> Res<Vec<u8>> {
    let mut archive = tar::Archive::new(r);
    let mut meta = None;
    let mut count = 0usize;
    for entry in archive.entries().map_err(io_err)? {
        let mut entry = entry.map_err(io_err)?;
        count += 1;
        if count > limits.max_entries {
            return Err(ArchiveError::TooLarge(format!("the archive has more than {} entries", limits.max_entries)));
        }
        let path = entry.path().map_err(io_err)?.into_owned();
        check_path(&path)?;
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            return Err(broken(format!("entry '{}' is a link", path.display())));
        }
        if kind.is_file() && is_meta_path(&path) {
            if meta.is_some() {
                return Err(broken("the archive holds more than one RDS.yaml one directory deep"));
            }
            let size = entry.size();
            meta = Some(read_meta(&mut entry, size, limits)?);
        }
        // Reading the rest of the entry happens when the iterator moves on; the cap
        // counts it.
    }
    // Read to the end, so that a truncated or corrupt stream (the gzip trailer's CRC
    // and length) is refused rather than half-read.
    std::io::copy(&mut archive.into_inner(), &mut std::io::sink()).map_err(io_err)?;
    meta.ok_or_else(|| broken("no RDS.yaml one directory deep (<dir>/RDS.yaml)"))
}

fn read_zip<R: Read + Seek>(r: R, limits: &Limits) -> Res<Vec<u8>> {
    let mut zip = zip::ZipArchive::new(r).map_err(|e| broken(format!("unreadable zip: {e}")))?;
    if zip.len() > limits.max_entries {
        return Err(ArchiveError::TooLarge(format!("the archive has more than {} entries", limits.max_entries)));
    }
    let mut total = 0u64;
    let mut meta_index = None;
    for i in 0..zip.len() {
        let f = zip.by_index_raw(i).map_err(|e| broken(format!("unreadable zip entry: {e}")))?;
        let name = f.name().map_err(|e| broken(format!("unreadable zip entry name: {e}")))?.to_string();
        let path = f.enclosed_name().ok_or_else(|| broken(format!("entry '{name}' has an absolute or '..' path")))?;
        check_path(Path::new(&name))?;
        if f.is_symlink() {
            return Err(broken(format!("entry '{name}' is a link")));
        }
        total = total.saturating_add(f.size());
        if total > limits.max_unpacked_bytes {
            return Err(ArchiveError::TooLarge("the archive's decompressed size is over the limit".into()));
        }
        if f.is_file() && is_meta_path(&path) {
            if meta_index.is_some() {
                return Err(broken("the archive holds more than one RDS.yaml one directory deep"));
            }
            meta_index = Some(i);
        }
    }
    let i = meta_index.ok_or_else(|| broken("no RDS.yaml one directory deep (<dir>/RDS.yaml)"))?;
    let f = zip.by_index(i).map_err(|e| broken(format!("unreadable RDS.yaml: {e}")))?;
    let size = f.size();
    // The declared size may lie: read_meta caps what it reads.
    read_meta(f, size, limits)
}

/// Finds and returns the bytes of `<dir>/RDS.yaml`, checking the whole archive.
pub fn read_metadata_file<R: Read + Seek>(r: R, format: Format, limits: &Limits) -> Res<Vec<u8>> {
    match format {
        Format::Tgz | Format::TarGz => {
            let gz = flate2::read::GzDecoder::new(r);
            read_tar(Capped { inner: gz, read: 0, cap: limits.max_unpacked_bytes }, limits)
        }
        Format::Tar => read_tar(Capped { inner: r, read: 0, cap: limits.max_unpacked_bytes }, limits),
        Format::Zip => read_zip(r, limits),
    }
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
    fn formats() {
        assert_eq!(Format::from_name("a-1.0.0.tar.gz"), Some((Format::TarGz, "a-1.0.0")));
        assert_eq!(Format::from_name("a-1.0.0.TGZ"), Some((Format::Tgz, "a-1.0.0")));
        assert_eq!(Format::from_name("a.zip"), Some((Format::Zip, "a")));
        assert_eq!(Format::from_name("a.rar"), None);
        assert_eq!(Format::from_name(".tgz"), None);
    }

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
