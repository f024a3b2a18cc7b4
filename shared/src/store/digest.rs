use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// The digests and size of a stored blob, computed while its bytes stream past.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Digests {
    pub sha256: String,
    pub sha1: String,
    pub md5: String,
    pub size: u64,
}

/// Computes sha256, sha1, md5 and size in one pass.
#[derive(Default, Clone)]
pub struct MultiHasher {
    sha256: Sha256,
    sha1: Sha1,
    md5: Md5,
    size: u64,
}

impl MultiHasher {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.sha256.update(bytes);
        self.sha1.update(bytes);
        self.md5.update(bytes);
        self.size += bytes.len() as u64;
    }

    pub fn finish(self) -> Digests {
        Digests {
            sha256: hex::encode(self.sha256.finalize()),
            sha1: hex::encode(self.sha1.finalize()),
            md5: hex::encode(self.md5.finalize()),
            size: self.size,
        }
    }
}

/// The content-addressed key of a blob: `blobs/sha256/ab/cd/<sha256>`.
pub fn content_key(sha256: &str) -> String {
    format!("blobs/sha256/{}/{}/{}", &sha256[0..2], &sha256[2..4], sha256)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        let mut h = MultiHasher::new();
        h.update(b"ab");
        h.update(b"c");
        let d = h.finish();
        assert_eq!(d.sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(d.sha1, "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(d.md5, "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(d.size, 3);
        assert_eq!(content_key(&d.sha256), format!("blobs/sha256/ba/78/{}", d.sha256));
    }
}
