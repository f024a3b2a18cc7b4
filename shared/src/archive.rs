//! Reading uploaded archives (`.tgz`, `.tar.gz`, `.tar`, `.zip`) with every allocation a
//! client's bytes size capped before it is made. Every surface that looks inside an
//! archive goes through [`read_files`]: it checks the whole archive and hands back the
//! few files the caller wants.
//!
//! What a client controls, and its cap ([`Limits`]):
//! - entry names, GNU long names and long links: `max_name_bytes` each;
//! - PAX extended headers (local and global): `max_pax_bytes` each;
//! - the number of entries: `max_entries`;
//! - a wanted file: `max_file_bytes`; all wanted files together: `max_wanted_bytes`;
//! - everything read, headers, names and data alike: `max_unpacked_bytes`, and at most
//!   `max_ratio` times the archive's own size (with a floor of [`RATIO_FLOOR`]), so that
//!   a small upload cannot make depot inflate gigabytes.
//!
//! [`read_listing`] also hashes every regular file, for formats that list their files
//! with digests (APS's `APP-LIST.xml`); a name that appears twice is refused there.
//!
//! The tar crate is used in raw mode, so that it never reads a long name or an extension
//! header by itself (it reads them whole, whatever their size); this module reads them,
//! after checking their size. Zip names come from the central directory, whose fields
//! are 16-bit lengths inside the uploaded bytes; they are capped like tar names and
//! counted against the unpacked size.
//!
//! Nothing is written to disk by entry names. Absolute or `..` paths, links, sparse
//! files and device entries are refused: a hostile archive is a 400, never a crash.
use std::io::{Read, Seek};
use std::path::{Component, Path, PathBuf};

/// Limits for one archive.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_entries: usize,
    pub max_name_bytes: u64,
    pub max_pax_bytes: u64,
    pub max_file_bytes: u64,
    pub max_wanted_bytes: u64,
    pub max_unpacked_bytes: u64,
    /// How many times its own size an archive may inflate to (see [`RATIO_FLOOR`]).
    pub max_ratio: u64,
}

/// What any archive may inflate to, whatever its ratio: small archives of small files
/// compress far better than large ones.
pub const RATIO_FLOOR: u64 = 4 * 1024 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: 10_000,
            max_name_bytes: 4096,
            max_pax_bytes: 64 * 1024,
            max_file_bytes: 1024 * 1024,
            max_wanted_bytes: 4 * 1024 * 1024,
            max_unpacked_bytes: 1024 * 1024 * 1024,
            max_ratio: 200,
        }
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

/// Why an archive was refused, in words for the client.
#[derive(Debug, PartialEq)]
pub enum ArchiveError {
    Broken(String),
    TooLarge(String),
}

pub type Res<T> = std::result::Result<T, ArchiveError>;

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

fn unpacked_too_large() -> ArchiveError {
    ArchiveError::TooLarge("the archive's decompressed size is over the limit (or too many times its own size)".into())
}

fn io_err(e: std::io::Error) -> ArchiveError {
    if e.to_string().contains(CAP_EXCEEDED) {
        unpacked_too_large()
    } else {
        broken(format!("unreadable archive: {e}"))
    }
}

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

fn name_of(bytes: &[u8], limits: &Limits) -> Res<PathBuf> {
    let bytes = bytes.split(|b| *b == 0).next().unwrap_or_default();
    if bytes.len() as u64 > limits.max_name_bytes {
        return Err(too_long_name(limits));
    }
    let s = std::str::from_utf8(bytes).map_err(|_| broken("an entry name is not UTF-8"))?;
    if s.is_empty() {
        return Err(broken("an entry has an empty name"));
    }
    let path = PathBuf::from(s);
    check_path(&path)?;
    Ok(path)
}

fn too_long_name(limits: &Limits) -> ArchiveError {
    ArchiveError::TooLarge(format!("an entry name is over {} bytes", limits.max_name_bytes))
}

/// Reads at most `cap` bytes of `r`, which declares `size`; more is `TooLarge(what)`.
fn read_capped(r: impl Read, size: u64, cap: u64, what: impl Fn() -> String) -> Res<Vec<u8>> {
    if size > cap {
        return Err(ArchiveError::TooLarge(what()));
    }
    let mut buf = Vec::with_capacity(size as usize);
    r.take(cap + 1).read_to_end(&mut buf).map_err(io_err)?;
    if buf.len() as u64 > cap {
        return Err(ArchiveError::TooLarge(what()));
    }
    Ok(buf)
}

/// A regular file of an archive, as [`read_listing`] read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub path: PathBuf,
    pub size: u64,
    /// Lower-case hex.
    pub sha256: String,
}

/// What [`read_listing`] found: the wanted files with their bytes, and every regular
/// file with its size and sha256, in archive order.
#[derive(Debug, Default)]
pub struct Contents {
    pub wanted: Vec<(PathBuf, Vec<u8>)>,
    pub files: Vec<Listed>,
}

/// The wanted files read so far, against their caps; with `listing`, every file's digest.
struct Wanted {
    files: Vec<(PathBuf, Vec<u8>)>,
    bytes: u64,
    listing: Option<Vec<Listed>>,
}

impl Wanted {
    fn new(list: bool) -> Self {
        Wanted { files: vec![], bytes: 0, listing: list.then(Vec::new) }
    }

    /// A regular file: kept when wanted, hashed when listing. `size` is what the
    /// archive declares; more bytes than that is refused.
    fn file(&mut self, path: PathBuf, mut r: impl Read, size: u64, wanted: bool, limits: &Limits) -> Res<()> {
        if self.listing.is_none() {
            return if wanted { self.take(path, r, size, limits) } else { Ok(()) };
        }
        if self.listing.as_ref().is_some_and(|l| l.iter().any(|f| f.path == path)) {
            return Err(broken(format!("entry '{}' appears twice", path.display())));
        }
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        let read = if wanted {
            self.take(path.clone(), r, size, limits)?;
            let bytes = &self.files.last().expect("just taken").1;
            hasher.update(bytes);
            bytes.len() as u64
        } else {
            let mut buf = [0u8; 16 * 1024];
            let mut limited = (&mut r).take(size + 1);
            let mut n = 0u64;
            loop {
                let k = limited.read(&mut buf).map_err(io_err)?;
                if k == 0 {
                    break;
                }
                hasher.update(&buf[..k]);
                n += k as u64;
            }
            n
        };
        if read != size {
            return Err(broken(format!("entry '{}' holds {read} bytes, not the {size} it declares", path.display())));
        }
        let sha256 = hex::encode(hasher.finalize());
        self.listing.as_mut().expect("listing").push(Listed { path, size, sha256 });
        Ok(())
    }

    fn take(&mut self, path: PathBuf, r: impl Read, size: u64, limits: &Limits) -> Res<()> {
        let left = limits.max_wanted_bytes.saturating_sub(self.bytes);
        let cap = limits.max_file_bytes.min(left);
        let bytes = read_capped(r, size, cap, || {
            if cap < limits.max_file_bytes {
                format!("the archive's metadata files are over {} bytes together", limits.max_wanted_bytes)
            } else {
                format!("{} is over {} bytes", path.display(), limits.max_file_bytes)
            }
        })?;
        self.bytes += bytes.len() as u64;
        self.files.push((path, bytes));
        Ok(())
    }
}

fn read_tar(r: impl Read, limits: &Limits, want: &dyn Fn(&Path) -> bool, list: bool) -> Res<Wanted> {
    let mut archive = tar::Archive::new(r);
    let mut wanted = Wanted::new(list);
    let mut count = 0usize;
    // What extension headers said of the next entry.
    let mut long_name: Option<PathBuf> = None;
    let mut pax_name: Option<PathBuf> = None;
    let mut pax_size: Option<u64> = None;
    let mut pending = false;
    for entry in archive.entries().map_err(io_err)?.raw(true) {
        let mut entry = entry.map_err(io_err)?;
        count += 1;
        if count > limits.max_entries {
            return Err(ArchiveError::TooLarge(format!("the archive has more than {} entries", limits.max_entries)));
        }
        let kind = entry.header().entry_type();
        let size = entry.size();
        if kind.is_gnu_longname() || kind.is_gnu_longlink() {
            let bytes = read_capped(&mut entry, size, limits.max_name_bytes, || {
                format!("an entry name is over {} bytes", limits.max_name_bytes)
            })?;
            if kind.is_gnu_longname() {
                if long_name.is_some() {
                    return Err(broken("two long names describe the same entry"));
                }
                long_name = Some(name_of(&bytes, limits)?);
            }
            pending = true;
            continue;
        }
        if kind.is_pax_local_extensions() || kind.is_pax_global_extensions() {
            let bytes = read_capped(&mut entry, size, limits.max_pax_bytes, || {
                format!("a PAX extended header is over {} bytes", limits.max_pax_bytes)
            })?;
            if kind.is_pax_local_extensions() {
                if pending && (pax_name.is_some() || pax_size.is_some()) {
                    return Err(broken("two PAX headers describe the same entry"));
                }
                for ext in tar::PaxExtensions::new(&bytes) {
                    let ext = ext.map_err(|_| broken("a malformed PAX extended header"))?;
                    if ext.key_bytes().starts_with(b"GNU.sparse") {
                        return Err(broken("the archive holds a sparse file"));
                    }
                    match ext.key() {
                        Ok("path") => pax_name = Some(name_of(ext.value_bytes(), limits)?),
                        Ok("size") => {
                            let v = ext.value().ok().and_then(|v| v.parse::<u64>().ok());
                            pax_size = Some(v.ok_or_else(|| broken("a PAX size that is not a number"))?);
                        }
                        _ => {}
                    }
                }
                pending = true;
            }
            continue;
        }
        let path = match (pax_name.take(), long_name.take()) {
            (Some(p), _) | (None, Some(p)) => p,
            (None, None) => name_of(&entry.path_bytes(), limits)?,
        };
        pending = false;
        if pax_size.take().is_some_and(|s| s != size) {
            // The tar crate and other readers would disagree on where the next entry is.
            return Err(broken(format!("entry '{}' has a PAX size other than its header's", path.display())));
        }
        if kind.is_symlink() || kind.is_hard_link() {
            return Err(broken(format!("entry '{}' is a link", path.display())));
        }
        if kind.is_dir() {
            continue;
        }
        if !kind.is_file() && kind.as_byte() != b'7' {
            return Err(broken(format!(
                "entry '{}' is neither a file nor a directory (type '{}')",
                path.display(),
                kind.as_byte().escape_ascii()
            )));
        }
        let is_wanted = want(&path);
        wanted.file(path, &mut entry, size, is_wanted, limits)?;
        // The rest of the entry is read when the iterator moves on; the cap counts it.
    }
    if pending {
        return Err(broken("the archive ends with a header that describes no entry"));
    }
    // Read to the end, so that a truncated or corrupt stream (the gzip trailer's CRC
    // and length) is refused rather than half-read; and past the end-of-archive blocks
    // only zeros (tar's padding), so that no entry hides where depot did not look.
    let mut rest = archive.into_inner();
    let mut buf = [0u8; 8192];
    loop {
        let n = rest.read(&mut buf).map_err(io_err)?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|b| *b != 0) {
            return Err(broken("the archive has data after its end-of-archive blocks"));
        }
    }
    Ok(wanted)
}

/// How many entries a zip's end-of-central-directory record declares (its zip64 record's
/// count when the record says 0xFFFF), or `None` when it cannot be found.
fn declared_entries<R: Read + Seek>(r: &mut R) -> Option<u64> {
    use std::io::SeekFrom;
    let len = r.seek(SeekFrom::End(0)).ok()?;
    // The record is 22 bytes, followed by a comment of at most 65,535.
    let tail_len = len.min(22 + 65_535);
    r.seek(SeekFrom::Start(len - tail_len)).ok()?;
    let mut tail = vec![0u8; tail_len as usize];
    r.read_exact(&mut tail).ok()?;
    let at = (0..tail.len().saturating_sub(21)).rev().find(|&i| tail[i..].starts_with(b"PK\x05\x06"))?;
    let count = u16::from_le_bytes([tail[at + 10], tail[at + 11]]);
    if count != 0xFFFF {
        return Some(count as u64);
    }
    // The zip64 locator sits just before the record and names the zip64 record.
    let loc = at.checked_sub(20)?;
    if !tail[loc..].starts_with(b"PK\x06\x07") {
        return None;
    }
    let offset = u64::from_le_bytes(tail[loc + 8..loc + 16].try_into().ok()?);
    r.seek(SeekFrom::Start(offset)).ok()?;
    let mut rec = [0u8; 40];
    r.read_exact(&mut rec).ok()?;
    rec.starts_with(b"PK\x06\x06").then(|| u64::from_le_bytes(rec[32..40].try_into().expect("8 bytes")))
}

fn read_zip<R: Read + Seek>(mut r: R, limits: &Limits, want: &dyn Fn(&Path) -> bool, list: bool) -> Res<Wanted> {
    let declared = declared_entries(&mut r);
    r.rewind().map_err(io_err)?;
    let mut zip = zip::ZipArchive::new(r).map_err(|e| broken(format!("unreadable zip: {e}")))?;
    // The zip reader keeps one entry per name: a name listed twice would hide an entry
    // that other tools extract (over the first).
    if declared.is_some_and(|n| n != zip.len() as u64) {
        return Err(broken("the zip's central directory lists a name twice, or miscounts its entries"));
    }
    if zip.len() > limits.max_entries {
        return Err(ArchiveError::TooLarge(format!("the archive has more than {} entries", limits.max_entries)));
    }
    let too_large = unpacked_too_large;
    let mut total = 0u64;
    let mut chosen = vec![];
    for i in 0..zip.len() {
        let f = zip.by_index_raw(i).map_err(|e| broken(format!("unreadable zip entry: {e}")))?;
        total = total.saturating_add(f.name_raw().len() as u64).saturating_add(f.size());
        if total > limits.max_unpacked_bytes {
            return Err(too_large());
        }
        let name = f.name().map_err(|e| broken(format!("unreadable zip entry name: {e}")))?;
        let path = name_of(name.as_bytes(), limits)?;
        if f.enclosed_name().is_none() {
            return Err(broken(format!("entry '{name}' has an absolute or '..' path")));
        }
        if f.is_symlink() {
            return Err(broken(format!("entry '{}' is a link", path.display())));
        }
        // Unix modes of devices, FIFOs and sockets, as tar's entry types are refused.
        if let Some(kind) = f.unix_mode().map(|m| m & 0o170000).filter(|k| ![0, 0o100000, 0o040000].contains(k)) {
            return Err(broken(format!("entry '{}' is neither a file nor a directory (mode {kind:o})", path.display())));
        }
        if f.is_file() && (list || want(&path)) {
            chosen.push((i, path));
        }
    }
    let mut wanted = Wanted::new(list);
    for (i, path) in chosen {
        let f = zip.by_index(i).map_err(|e| broken(format!("unreadable entry '{}': {e}", path.display())))?;
        let size = f.size();
        // The declared size may lie: what is read is capped by it (and, for wanted
        // files, by their caps).
        let is_wanted = want(&path);
        wanted.file(path, f, size, is_wanted, limits)?;
    }
    Ok(wanted)
}

/// Checks the whole archive and returns the regular files that `want` picks, in archive
/// order, each with its bytes.
pub fn read_files<R: Read + Seek>(
    r: R,
    format: Format,
    limits: &Limits,
    want: &dyn Fn(&Path) -> bool,
) -> Res<Vec<(PathBuf, Vec<u8>)>> {
    Ok(read(r, format, limits, want, false)?.files)
}

/// Checks the whole archive like [`read_files`], and also hashes every regular file.
pub fn read_listing<R: Read + Seek>(
    r: R,
    format: Format,
    limits: &Limits,
    want: &dyn Fn(&Path) -> bool,
) -> Res<Contents> {
    let w = read(r, format, limits, want, true)?;
    Ok(Contents { wanted: w.files, files: w.listing.unwrap_or_default() })
}

fn read<R: Read + Seek>(mut r: R, format: Format, limits: &Limits, want: &dyn Fn(&Path) -> bool, list: bool) -> Res<Wanted> {
    // The archive's own size bounds what it may inflate to.
    let start = r.stream_position().map_err(io_err)?;
    let len = r.seek(std::io::SeekFrom::End(0)).map_err(io_err)?.saturating_sub(start);
    r.seek(std::io::SeekFrom::Start(start)).map_err(io_err)?;
    let cap = limits.max_unpacked_bytes.min(len.saturating_mul(limits.max_ratio).max(RATIO_FLOOR));
    let limits = &Limits { max_unpacked_bytes: cap, ..*limits };
    match format {
        Format::Tgz | Format::TarGz => {
            // Every gzip member, as tar and gzip tools read them: entries in a second
            // member are checked like the first's.
            let gz = flate2::read::MultiGzDecoder::new(r);
            read_tar(Capped { inner: gz, read: 0, cap }, limits, want, list)
        }
        Format::Tar => read_tar(Capped { inner: r, read: 0, cap }, limits, want, list),
        Format::Zip => read_zip(r, limits, want, list),
    }
}

#[cfg(test)]
mod tests;
