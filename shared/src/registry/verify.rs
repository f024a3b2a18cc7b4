//! An integrity check an operator can run (`depot verify`): stored blobs are read back
//! and hashed, and each must hash to the sha256 its key names and match the digests and
//! size that the versions naming it recorded.
use std::collections::BTreeMap;

use futures::StreamExt;

use super::Registry;
use crate::model::PackageVersion;
use crate::store::schema::{from_item, package_partition, repo_partition, PKG_SK_PREFIX, VER_SK_PREFIX};
use crate::store::{query_all, Digests, MultiHasher, Query};
use crate::{Error, Result};

/// A blob whose bytes are not what its key or a version says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadBlob {
    pub key: String,
    pub why: String,
}

/// What a check found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// Blobs read back and hashed.
    pub checked: usize,
    /// Their bytes, in total.
    pub bytes: u64,
    pub bad: Vec<BadBlob>,
}

/// What to check: every version's blob of one repository, or every stored content blob
/// and every version's blob; optionally a random sample of them.
#[derive(Debug, Clone, Default)]
pub struct VerifyScope {
    pub repo: Option<(String, String)>,
    pub sample: Option<usize>,
}

/// One blob to check: its size as stored (or recorded), and the versions that name it.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub size: u64,
    pub versions: Vec<PackageVersion>,
}

/// The sha256 a content key names (`blobs/sha256/ab/cd/<sha256>`), if it is one.
fn named_sha256(key: &str) -> Option<&str> {
    let hex = key.strip_prefix("blobs/sha256/")?.rsplit('/').next()?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

impl Registry {
    /// Every version of `project/repo`.
    async fn versions_of_repo(&self, project: &str, repo: &str) -> Result<Vec<PackageVersion>> {
        let mut out = Vec::new();
        for pkg in query_all(&*self.table, Query::prefix(repo_partition(project, repo), PKG_SK_PREFIX)).await? {
            let key = pkg.get("key").and_then(|v| v.as_str()).unwrap_or_default().to_string();
            for item in
                query_all(&*self.table, Query::prefix(package_partition(project, repo, &key), VER_SK_PREFIX)).await?
            {
                out.push(from_item(item)?);
            }
        }
        Ok(out)
    }

    /// The blobs `scope` names, each with the versions that record digests for it, and
    /// their total size (for a progress bar).
    pub async fn blobs_to_verify(&self, scope: &VerifyScope) -> Result<(BTreeMap<String, Target>, u64)> {
        let mut targets: BTreeMap<String, Target> = BTreeMap::new();
        let mut add = |v: PackageVersion| {
            // A tree's files: checked against their content keys.
            for b in &v.blobs {
                targets.entry(b.clone()).or_default();
            }
            let t = targets.entry(v.blob_key.clone()).or_default();
            t.size = t.size.max(v.size);
            t.versions.push(v);
        };
        let versions = match &scope.repo {
            Some((p, r)) => {
                self.get_repository(p, r).await?;
                self.versions_of_repo(p, r).await?
            }
            None => {
                let mut all = Vec::new();
                for project in self.list_projects().await? {
                    for repo in self.list_repositories(&project.name).await? {
                        all.extend(self.versions_of_repo(&project.name, &repo.name).await?);
                    }
                }
                all
            }
        };
        versions.into_iter().for_each(&mut add);
        if scope.repo.is_none() {
            for b in self.blobs.list("blobs").await? {
                targets.entry(b.key).or_default().size = b.size;
            }
        }
        if let Some(n) = scope.sample.filter(|n| *n < targets.len()) {
            use rand::seq::IteratorRandom;
            let keep: std::collections::HashSet<String> =
                targets.keys().cloned().choose_multiple(&mut rand::rng(), n).into_iter().collect();
            targets.retain(|k, _| keep.contains(k));
        }
        let total = targets.values().map(|t| t.size).sum();
        Ok((targets, total))
    }

    /// Reads back and hashes every blob of `targets`, calling `progress` with the bytes
    /// read so far.
    pub async fn verify_blobs(
        &self,
        targets: &BTreeMap<String, Target>,
        progress: impl Fn(u64),
    ) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        for (key, target) in targets {
            let done = report.bytes;
            let digests = match self.hash_blob(key, |n| progress(done + n)).await {
                Ok(d) => d,
                Err(e) if e.is_not_found() => {
                    report
                        .bad
                        .push(BadBlob { key: key.clone(), why: "missing: no bytes are stored under this key".into() });
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut why = Vec::new();
            if let Some(named) = named_sha256(key) {
                if digests.sha256 != named {
                    why.push(format!("its bytes hash to sha256 {}, not the {named} its key names", digests.sha256));
                }
            }
            for v in &target.versions {
                let recorded =
                    Digests { sha256: v.sha256.clone(), sha1: v.sha1.clone(), md5: v.md5.clone(), size: v.size };
                if recorded != digests {
                    why.push(format!(
                        "version [{}] of package [{}] in [{}/{}] records sha256 {} ({} bytes), the bytes are sha256 {} ({} bytes)",
                        v.name, v.package_key, v.project_id, v.repo_name, recorded.sha256, recorded.size, digests.sha256,
                        digests.size
                    ));
                }
            }
            report.bad.extend(why.into_iter().map(|why| BadBlob { key: key.clone(), why }));
            report.checked += 1;
            report.bytes += digests.size;
            progress(report.bytes);
        }
        Ok(report)
    }

    /// Streams a blob through the hashers, calling `progress` with the bytes of this blob
    /// read so far.
    async fn hash_blob(&self, key: &str, progress: impl Fn(u64)) -> Result<Digests> {
        let mut body = self.blobs.get(key, None).await?.body;
        let mut hasher = MultiHasher::new();
        let mut read = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| Error::Internal(format!("reading blob {key}: {e}")))?;
            read += chunk.len() as u64;
            hasher.update(&chunk);
            progress(read);
        }
        Ok(hasher.finish())
    }
}
