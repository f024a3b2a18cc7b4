//! Signed local blob URLs: what the embedded backend hands out where S3 would hand out a
//! presigned URL. A URL names the method, the blob key, an expiry and (for downloads) a
//! filename, and carries an HMAC-SHA256 of them under a secret kept in the data
//! directory. A tampered or expired URL is refused with `Forbidden`.
use std::path::Path;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::{Error, Result};

/// Where the local blob routes live.
pub const LOCAL_BLOB_PREFIX: &str = "/blobs/local/";

pub struct UrlSigner {
    secret: Vec<u8>,
}

/// A `Content-Disposition` that saves a download as `filename`, in both forms, as
/// bkrepo's `ArtifactConstants` writes it: `filename=` for clients that read only that
/// (curl's `-OJ`), with anything but printable ASCII, quotes and backslashes as `_`, and
/// `filename*=` (RFC 5987) with the exact name.
pub fn attachment(filename: &str) -> String {
    let plain: String =
        filename.chars().map(|c| if (c.is_ascii_graphic() && c != '"' && c != '\\') || c == ' ' { c } else { '_' }).collect();
    format!("attachment; filename=\"{plain}\"; filename*=UTF-8''{}", pct_encode(filename, false))
}

/// Percent-encodes everything but unreserved characters, and `/` when `keep_slash`.
pub fn pct_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl UrlSigner {
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        UrlSigner { secret: secret.into() }
    }

    /// Loads the secret from `path`, creating it (32 random bytes, owner-only) when absent.
    pub fn load_or_create(path: &Path) -> Result<Self> {
        match std::fs::read(path) {
            Ok(s) if s.len() >= 32 => return Ok(Self::new(s)),
            Ok(_) => return Err(Error::Internal(format!("signing key {} is too short", path.display()))),
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            Err(_) => {}
        }
        let secret: [u8; 32] = rand::random();
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        match opts.open(path) {
            Ok(mut f) => {
                std::io::Write::write_all(&mut f, &secret)?;
                f.sync_all()?;
                Ok(Self::new(secret.to_vec()))
            }
            // Another process created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::load_or_create(path),
            Err(e) => Err(e.into()),
        }
    }

    fn mac(&self, method: &str, key: &str, expires: u64, filename: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(format!("{method}\n{key}\n{expires}\n{filename}").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// A relative URL (`/blobs/local/<key>?...`) that allows `method` on `key` until
    /// `expires_in` from now.
    pub fn url(&self, method: &str, key: &str, expires_in: Duration, filename: Option<&str>) -> String {
        let expires = now_secs() + expires_in.as_secs();
        let filename = filename.unwrap_or("");
        let sig = self.mac(method, key, expires, filename);
        let mut url = format!("{LOCAL_BLOB_PREFIX}{}?expires={expires}&signature={sig}", pct_encode(key, true));
        if !filename.is_empty() {
            url.push_str(&format!("&filename={}", pct_encode(filename, false)));
        }
        url
    }

    /// Checks a request against its signature: `Forbidden` when the signature does not
    /// match what this process would sign, or the URL has expired.
    pub fn verify(
        &self,
        method: &str,
        key: &str,
        expires: Option<&str>,
        signature: Option<&str>,
        filename: Option<&str>,
    ) -> Result<()> {
        let forbidden = |why: &str| Error::Forbidden(format!("signed URL refused: {why}"));
        let expires: u64 = expires.and_then(|e| e.parse().ok()).ok_or_else(|| forbidden("missing or bad expires"))?;
        let given = signature.and_then(|s| hex::decode(s).ok()).ok_or_else(|| forbidden("missing or bad signature"))?;
        let expected = hex::decode(self.mac(method, key, expires, filename.unwrap_or(""))).expect("hex we made");
        if !bool::from(subtle::ConstantTimeEq::ct_eq(given.as_slice(), expected.as_slice())) {
            return Err(forbidden("signature does not match"));
        }
        if now_secs() > expires {
            return Err(forbidden("expired"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(url: &str) -> (String, std::collections::HashMap<String, String>) {
        let (path, q) = url.split_once('?').unwrap();
        let q =
            q.split('&').map(|kv| kv.split_once('=').unwrap()).map(|(k, v)| (k.to_string(), v.to_string())).collect();
        (path.trim_start_matches(LOCAL_BLOB_PREFIX).to_string(), q)
    }

    #[test]
    fn sign_verify_tamper_expire() {
        let s = UrlSigner::new(vec![7u8; 32]);
        let url = s.url("GET", "blobs/sha256/ab/cd/x", Duration::from_secs(60), Some("a.tgz"));
        let (key, q) = parts(&url);
        let check = |m: &str, k: &str, e: &str, sig: &str, f: &str| s.verify(m, k, Some(e), Some(sig), Some(f));
        check("GET", &key, &q["expires"], &q["signature"], "a.tgz").unwrap();
        assert!(check("PUT", &key, &q["expires"], &q["signature"], "a.tgz").is_err(), "method is signed");
        assert!(check("GET", "blobs/other", &q["expires"], &q["signature"], "a.tgz").is_err(), "key is signed");
        assert!(check("GET", &key, "99999999999", &q["signature"], "a.tgz").is_err(), "expiry is signed");
        assert!(check("GET", &key, &q["expires"], &q["signature"], "b.tgz").is_err(), "filename is signed");
        let old = s.mac("GET", &key, 1, "");
        assert!(
            matches!(s.verify("GET", &key, Some("1"), Some(&old), None), Err(Error::Forbidden(m)) if m.contains("expired"))
        );
        assert!(UrlSigner::new(vec![8u8; 32])
            .verify("GET", &key, Some(&q["expires"]), Some(&q["signature"]), Some("a.tgz"))
            .is_err());
    }
}
