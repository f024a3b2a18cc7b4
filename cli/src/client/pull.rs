//! `depot pull`: a version's file, through the download route's presigned redirect,
//! written to a temporary file beside the target, hashed as it arrives, checked against
//! the sha256 the registry recorded, and renamed into place. An interrupted pull leaves
//! the temporary file, and the next pull resumes it with a `Range` request.
use std::path::{Path, PathBuf};

use anyhow::Context;
use futures::StreamExt;
use reqwest::header::{CONTENT_RANGE, LOCATION, RANGE};
use reqwest::{Method, StatusCode};
use sha2::Digest;
use tokio::io::AsyncWriteExt;

use super::api::{failure_of, Api, Failure};
use super::progress::Progress;
use super::{package_key, repo_type, RepoRef};

pub struct PullArgs {
    pub repo: RepoRef,
    pub package: String,
    pub version: Option<String>,
    pub output: Option<PathBuf>,
    pub quiet: bool,
}

/// The temporary file of a pull into `target`.
pub fn partial_path(target: &Path) -> PathBuf {
    let mut name = target.file_name().unwrap_or_default().to_os_string();
    name.push(".depot-partial");
    target.with_file_name(name)
}

pub async fn pull(api: &Api, args: PullArgs) -> anyhow::Result<PathBuf> {
    let RepoRef { project, repo } = &args.repo;
    let ty = repo_type(api, project, repo).await?;
    let key = package_key(&ty, &args.package);
    let version = match &args.version {
        Some(v) => v.clone(),
        None => {
            let rb = api.request(Method::GET, &format!("/repository/api/package/info/{project}/{repo}"));
            let info = api.data(rb.query(&[("packageKey", &key)]), "reading the package").await?;
            if info.is_null() {
                anyhow::bail!("package {key} not found in {project}/{repo}");
            }
            info["latest"].as_str().context("the package names no latest version")?.to_string()
        }
    };
    let rb = api.request(Method::GET, &format!("/repository/api/version/page/{project}/{repo}"));
    let rb = rb.query(&[("packageKey", key.as_str()), ("version", version.as_str()), ("pageSize", "1000")]);
    let page = api.data(rb, "reading the version").await?;
    // The page's version filter is a prefix: the exact one is among its records.
    let records = page["records"].as_array().cloned().unwrap_or_default();
    let record = records
        .iter()
        .find(|r| r["name"] == version.as_str())
        .with_context(|| format!("version {version} of {key} not found in {project}/{repo}"))?;
    let sha256 = record["sha256"].as_str().context("the version records no sha256")?.to_ascii_lowercase();
    let size = record["size"].as_u64().context("the version records no size")?;
    let file_name = record["contentPath"]
        .as_str()
        .and_then(|p| p.rsplit('/').next())
        .filter(|n| !n.is_empty() && *n != "." && *n != "..")
        .unwrap_or(&version)
        .to_string();
    let target = match &args.output {
        Some(p) if p.is_dir() => p.join(&file_name),
        Some(p) => p.clone(),
        None => PathBuf::from(&file_name),
    };
    let partial = partial_path(&target);

    // What an earlier, interrupted pull left: hashed again, then resumed after.
    let mut hasher = sha2::Sha256::new();
    let mut have = match tokio::fs::metadata(&partial).await {
        Ok(m) if m.len() <= size => m.len(),
        Ok(_) => {
            tokio::fs::remove_file(&partial).await?;
            0
        }
        Err(_) => 0,
    };
    if have > 0 {
        let (h, n) = super::session::sha256_state(&partial, &Progress::new("", 0, true)).await?;
        hasher = h;
        have = n;
    }
    if have == size && size > 0 {
        // All there already (a pull interrupted just before its rename): checked, and
        // either kept or started over.
        if hex::encode(hasher.clone().finalize()) == sha256 {
            tokio::fs::rename(&partial, &target).await.with_context(|| format!("writing {}", target.display()))?;
            if !args.quiet {
                println!("pulled {key} {version} to {} (sha256 {sha256})", target.display());
            }
            return Ok(target);
        }
        tokio::fs::remove_file(&partial).await?;
        hasher = sha2::Sha256::new();
        have = 0;
    }

    let rb = api.request(Method::GET, &format!("/repository/api/version/download/{project}/{repo}"));
    let res = api.send(rb.query(&[("packageKey", &key), ("version", &version)]), "downloading").await?;
    let res = if res.status().is_redirection() {
        let location =
            res.headers().get(LOCATION).and_then(|v| v.to_str().ok()).context("a redirect without Location")?;
        let url = api.url(location);
        // The presigned URL is the credential: depot's token goes to depot only.
        let mut rb = if api.is_own(&url) { api.request(Method::GET, &url) } else { api.http.get(&url) };
        if have > 0 {
            rb = rb.header(RANGE, format!("bytes={have}-"));
        }
        let res = rb.send().await.map_err(|e| Failure::transport(e, "downloading"))?;
        if !res.status().is_success() && res.status() != StatusCode::RANGE_NOT_SATISFIABLE {
            return Err(failure_of(res, "downloading", None).await.into());
        }
        res
    } else {
        res
    };
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&partial)
        .await
        .with_context(|| format!("writing {}", partial.display()))?;
    let resumed = res.status() == StatusCode::PARTIAL_CONTENT
        && res
            .headers()
            .get(CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|r| r.starts_with(&format!("bytes {have}-")));
    if have > 0 && resumed {
        if !args.quiet {
            eprintln!("resuming {file_name} at byte {have} of {size}");
        }
    } else if have > 0 && res.status() == StatusCode::RANGE_NOT_SATISFIABLE && have == size {
        // All there already: only the check is left.
    } else {
        // A whole answer: start over.
        file.set_len(0).await?;
        hasher = sha2::Sha256::new();
        have = 0;
    }
    let progress = Progress::new(&format!("downloading {file_name}"), size, args.quiet);
    progress.add(have);
    if res.status() != StatusCode::RANGE_NOT_SATISFIABLE {
        let mut body = res.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| Failure::transport(e, "downloading"))?;
            hasher.update(&chunk);
            file.write_all(&chunk).await?;
            have += chunk.len() as u64;
            progress.add(chunk.len() as u64);
            if have > size {
                break;
            }
        }
    }
    file.sync_all().await?;
    drop(file);
    progress.finish();
    let got = hex::encode(hasher.finalize());
    if have != size || got != sha256 {
        let _ = tokio::fs::remove_file(&partial).await;
        anyhow::bail!(
            "the download of {key} {version} is corrupt: got {have} bytes with sha256 {got}, the registry recorded {size} bytes with sha256 {sha256}; nothing was kept"
        );
    }
    tokio::fs::rename(&partial, &target).await.with_context(|| format!("writing {}", target.display()))?;
    if !args.quiet {
        println!("pulled {key} {version} to {} (sha256 {sha256})", target.display());
    }
    Ok(target)
}
