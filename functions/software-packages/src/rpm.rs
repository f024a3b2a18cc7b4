//! A bounded reader of an RPM's lead, signature header and main header: what OCP's
//! metadata comes from. It reads nothing past the main header (the payload is only
//! stored) and keeps only the tags it wants.
//!
//! Layout (RPM v3/v4, the file format of every current rpm):
//! - the lead: 96 bytes, magic `ED AB EE DB`, signature type 5;
//! - the signature header, then zeros up to a multiple of 8 bytes;
//! - the main header.
//!
//! A header is magic `8E AD E8 01`, 4 reserved bytes, the index count and the store size
//! (big-endian u32), the index (16 bytes per entry: tag, type, offset, count), then the
//! store. Both counts come from the client, so both are capped before anything is
//! allocated ([`MAX_INDEX_ENTRIES`], [`MAX_STORE_BYTES`]); the index is read whole (at
//! most 1 MiB), the store is skipped through, and a wanted string is read up to
//! [`MAX_STRING_BYTES`]. A truncated or hostile file is an `Invalid` error, never a
//! panic.
use std::io::{self, Read};

use depot_core::{Error, Result};

const LEAD_MAGIC: [u8; 4] = [0xed, 0xab, 0xee, 0xdb];
const HEADER_MAGIC: [u8; 4] = [0x8e, 0xad, 0xe8, 0x01];
const LEAD_BYTES: usize = 96;
/// The lead's signature type for a signature in header form, the only one rpm has
/// written since version 3.
const SIGNATURE_HEADER: u16 = 5;
/// rpm's own cap on a header's tags.
pub const MAX_INDEX_ENTRIES: u32 = 0xffff;
/// The largest store read through: rpm allows more (256 MiB), but the largest real
/// headers (file lists of many thousands of files) are a few MiB.
pub const MAX_STORE_BYTES: u32 = 64 * 1024 * 1024;
/// The longest string kept (a name, a version, a release, an architecture).
pub const MAX_STRING_BYTES: usize = 1024;

const STRING: u32 = 6;
const I18NSTRING: u32 = 9;

const NAME: i32 = 1000;
const VERSION: i32 = 1001;
const RELEASE: i32 = 1002;
const SUMMARY: i32 = 1004;
const OS: i32 = 1021;
const ARCH: i32 = 1022;

/// What the main header says, where it says it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RpmHeader {
    pub name: Option<String>,
    pub version: Option<String>,
    pub release: Option<String>,
    pub arch: Option<String>,
    pub os: Option<String>,
    pub summary: Option<String>,
}

fn invalid(why: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("not a readable RPM: {why}"))
}

/// Reads `buf.len()` bytes, or says what was cut short.
fn fill(r: &mut impl Read, buf: &mut [u8], what: &str) -> Result<()> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => invalid(format!("the file ends inside its {what}")),
        _ => Error::Internal(format!("reading an upload: {e}")),
    })
}

fn skip(r: &mut impl Read, n: u64, what: &str) -> Result<()> {
    let copied = io::copy(&mut r.take(n), &mut io::sink()).map_err(|e| Error::Internal(format!("reading an upload: {e}")))?;
    if copied < n {
        return Err(invalid(format!("the file ends inside its {what}")));
    }
    Ok(())
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

struct Entry {
    tag: i32,
    kind: u32,
    offset: u32,
}

/// Reads one header's index and store; returns the wanted string tags, and the store
/// size (the signature header is padded after it).
fn header(r: &mut impl Read, what: &str, wanted: &[i32]) -> Result<(Vec<(i32, String)>, u64)> {
    let mut intro = [0u8; 16];
    fill(r, &mut intro, what)?;
    if intro[..4] != HEADER_MAGIC {
        return Err(invalid(format!("its {what} does not start with the header magic")));
    }
    let (count, store) = (be32(&intro[8..12]), be32(&intro[12..16]));
    if count == 0 || count > MAX_INDEX_ENTRIES {
        return Err(invalid(format!("its {what} declares {count} tags (1 to {MAX_INDEX_ENTRIES} allowed)")));
    }
    if store > MAX_STORE_BYTES {
        return Err(invalid(format!("its {what} declares {store} bytes of data (at most {MAX_STORE_BYTES})")));
    }
    let mut index = vec![0u8; count as usize * 16];
    fill(r, &mut index, what)?;
    let mut entries: Vec<Entry> = index
        .chunks_exact(16)
        .map(|e| Entry { tag: be32(&e[0..4]) as i32, kind: be32(&e[4..8]), offset: be32(&e[8..12]) })
        .filter(|e| wanted.contains(&e.tag))
        .collect();
    entries.sort_by_key(|e| e.offset);
    let mut found = Vec::new();
    let mut at: u64 = 0;
    for e in entries {
        if found.iter().any(|(t, _)| *t == e.tag) {
            return Err(invalid(format!("its {what} holds tag {} twice", e.tag)));
        }
        if e.kind != STRING && e.kind != I18NSTRING {
            return Err(invalid(format!("tag {} of its {what} is of type {}, not a string", e.tag, e.kind)));
        }
        let offset = u64::from(e.offset);
        if offset < at || offset >= u64::from(store) {
            return Err(invalid(format!("tag {} of its {what} points outside its data", e.tag)));
        }
        skip(r, offset - at, what)?;
        // A string ends with a NUL inside the store and within the cap.
        let room = (u64::from(store) - offset).min(MAX_STRING_BYTES as u64 + 1) as usize;
        let mut bytes = Vec::with_capacity(room.min(64));
        let mut end = None;
        for i in 0..room {
            let mut b = [0u8; 1];
            fill(r, &mut b, what)?;
            if b[0] == 0 {
                end = Some(i + 1);
                break;
            }
            bytes.push(b[0]);
        }
        let Some(read) = end else {
            return Err(invalid(format!("tag {} of its {what} is not a string of at most {MAX_STRING_BYTES} bytes", e.tag)));
        };
        at = offset + read as u64;
        let text = String::from_utf8(bytes).map_err(|_| invalid(format!("tag {} of its {what} is not UTF-8", e.tag)))?;
        found.push((e.tag, text));
    }
    skip(r, u64::from(store) - at, what)?;
    Ok((found, u64::from(store)))
}

/// Reads the lead, the signature header and the main header of an RPM, and nothing
/// after them. `r` should be buffered: strings are read a byte at a time.
pub fn read_header(mut r: impl Read) -> Result<RpmHeader> {
    let mut lead = [0u8; LEAD_BYTES];
    fill(&mut r, &mut lead, "lead")?;
    if lead[..4] != LEAD_MAGIC {
        return Err(Error::Invalid("not an RPM: the file does not start with the RPM lead's magic".into()));
    }
    let major = lead[4];
    if !(3..=4).contains(&major) {
        return Err(invalid(format!("RPM file format {major} (3 and 4 are read)")));
    }
    let signature = u16::from_be_bytes([lead[78], lead[79]]);
    if signature != SIGNATURE_HEADER {
        return Err(invalid(format!("signature type {signature} (only 5, a header, is read)")));
    }
    let (_, store) = header(&mut r, "signature header", &[])?;
    // The signature header is padded to a multiple of 8 bytes (its intro and index are
    // multiples of 16 already).
    let pad = (8 - store % 8) % 8;
    skip(&mut r, pad, "signature header")?;
    let (tags, _) = header(&mut r, "header", &[NAME, VERSION, RELEASE, SUMMARY, OS, ARCH])?;
    let mut h = RpmHeader::default();
    for (tag, value) in tags {
        let slot = match tag {
            NAME => &mut h.name,
            VERSION => &mut h.version,
            RELEASE => &mut h.release,
            SUMMARY => &mut h.summary,
            OS => &mut h.os,
            ARCH => &mut h.arch,
            _ => continue,
        };
        *slot = Some(value).filter(|v| !v.is_empty());
    }
    Ok(h)
}

#[cfg(test)]
mod tests;
