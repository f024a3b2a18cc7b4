//! `depot push`: every file is staged through an upload session, then published through
//! the route of the repository's type, naming the staged blob in `X-Depot-Blob`.
use std::path::{Path, PathBuf};

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use reqwest::Method;
use serde_json::{json, Value};

use super::api::Api;
use super::session::{display_name, stage, StageOptions};
use super::{repo_type, RepoRef};

pub struct PushArgs {
    pub repo: RepoRef,
    pub files: Vec<PathBuf>,
    pub force: bool,
    pub parallel: usize,
    pub quiet: bool,
    /// STRUX: the package's name and version.
    pub name: Option<String>,
    pub version: Option<String>,
    /// APS: the package type (APS or PVT).
    pub aps_type: String,
    /// The user the token belongs to, when known (strux signs in with it).
    pub user: Option<String>,
}

/// The archive types RDS takes, by file name.
const CHART_EXTENSIONS: [&str; 4] = [".tgz", ".tar.gz", ".tar", ".zip"];

pub async fn push(api: &Api, args: PushArgs) -> anyhow::Result<()> {
    let RepoRef { project, repo } = &args.repo;
    let ty = repo_type(api, project, repo).await?;
    let opts = StageOptions { parallel: args.parallel, quiet: args.quiet };
    if ty == "STRUX" {
        return push_strux(api, &args, opts).await;
    }
    if args.name.is_some() || args.version.is_some() {
        anyhow::bail!("--name and --version are for STRUX repositories; {project}/{repo} is {ty}");
    }
    for file in &args.files {
        let meta = std::fs::metadata(file).with_context(|| format!("reading {}", file.display()))?;
        if !meta.is_file() {
            anyhow::bail!("{} is not a file (a directory goes to a STRUX repository)", file.display());
        }
        let name = display_name(file);
        let (path, query): (String, Vec<(&str, String)>) = match ty.as_str() {
            "RDS" => {
                let lower = name.to_ascii_lowercase();
                if !CHART_EXTENSIONS.iter().any(|e| lower.ends_with(e)) {
                    anyhow::bail!("{name}: a chart is a .tgz, .tar.gz, .tar or .zip archive");
                }
                let q = if args.force { vec![("force", "true".to_string())] } else { vec![] };
                (format!("/rds/api/{project}/{repo}/charts"), q)
            }
            "RPM" => {
                if !name.ends_with(".rpm") {
                    anyhow::bail!("{name}: an RPM repository takes .rpm files");
                }
                ("/api/v2/software-packages".to_string(), vec![("fileName", name.clone())])
            }
            "APS" => ("/aps/".to_string(), vec![]),
            other => anyhow::bail!(
                "{project}/{repo} is a {other} repository, which has no upload route: push takes RDS, RPM, APS and STRUX repositories"
            ),
        };
        if args.force && ty != "RDS" {
            eprintln!("note: --force has no effect on {ty} repositories (the surface never overwrites)");
        }
        let digest = stage(api, project, repo, file, opts).await?;
        let mut rb = api.request(Method::POST, &path).query(&query).header("X-Depot-Blob", &digest);
        if ty == "APS" {
            rb = rb.multipart(reqwest::multipart::Form::new().text("packageType", args.aps_type.clone()));
        }
        let what = format!("publishing {name}");
        let res = match api.send(rb, &what).await {
            Ok(r) => r,
            Err(e) if e.status == Some(reqwest::StatusCode::CONFLICT) && ty == "RDS" && !args.force => {
                anyhow::bail!("{e}; --force overwrites it")
            }
            Err(e) if e.status == Some(reqwest::StatusCode::NOT_FOUND) && ty == "RPM" => anyhow::bail!(
                "{e}; the OCP route publishes into the server's DEPOT_OCP_REPO only: is that {project}/{repo}?"
            ),
            Err(e) if e.status == Some(reqwest::StatusCode::NOT_FOUND) && ty == "APS" => anyhow::bail!(
                "{e}; the APS catalog publishes into the server's DEPOT_APS_REPO only: is that {project}/{repo}?"
            ),
            Err(e) => return Err(e.into()),
        };
        // OCP answers its envelope with the stored package; it says 200 for a success.
        if ty == "RPM" {
            let body: Value = res.json().await.unwrap_or(Value::Null);
            if body["successful"] == Value::Bool(false) {
                anyhow::bail!("{what}: {}", body["error"]["message"].as_str().unwrap_or("refused"));
            }
        }
        println!("pushed {name} to {project}/{repo} ({digest})");
    }
    Ok(())
}

/// A STRUX package: a directory tree, each file staged, then one `upload-pkg` form that
/// lists the tree and names every file's staged blob.
async fn push_strux(api: &Api, args: &PushArgs, opts: StageOptions) -> anyhow::Result<()> {
    let RepoRef { project, repo } = &args.repo;
    let [dir] = args.files.as_slice() else {
        anyhow::bail!("a STRUX push takes one directory, with --name and --version");
    };
    let name = args.name.as_deref().context("a STRUX push needs --name PKG")?;
    let version = args.version.as_deref().context("a STRUX push needs --version V")?;
    if !dir.is_dir() {
        anyhow::bail!("{} is not a directory: a STRUX package is a directory tree", dir.display());
    }
    let user = match &args.user {
        Some(u) => u.clone(),
        None => super::whoami(api).await?,
    };
    let token = match &api.creds {
        super::config::Credentials::Token(t) => t.clone(),
        _ => anyhow::bail!("a STRUX push signs in with a token"),
    };
    let (tree, files) = strux_tree(dir, name)?;
    if files.is_empty() {
        anyhow::bail!("{} holds no files", dir.display());
    }
    // Files staged a few at once; each one's parts go one at a time then.
    let staged: Vec<(String, String, String)> = futures::stream::iter(files)
        .map(|(dir_name, file_name, path)| async move {
            let digest = stage(api, project, repo, &path, StageOptions { parallel: 1, ..opts }).await?;
            anyhow::Ok((dir_name, file_name, digest))
        })
        .buffer_unordered(opts.parallel.max(1))
        .try_collect()
        .await?;
    // Field names as the Go client writes them (`DIR$tee/dir1`), not percent-encoded.
    let mut form = reqwest::multipart::Form::new()
        .percent_encode_noop()
        .text("username", user.clone())
        .text("password", token)
        .text("version", version.to_string())
        .text("files_info", tree.to_string());
    for (dir_name, file_name, digest) in staged {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("X-Depot-Blob", digest.parse()?);
        let part = reqwest::multipart::Part::bytes(Vec::new())
            .file_name(file_name)
            .mime_str("application/octet-stream")?
            .headers(headers);
        form = form.part(format!("DIR${dir_name}"), part);
    }
    let what = format!("publishing {name} {version}");
    let res = api.send(api.http.post(api.url("/upload-pkg")).multipart(form), &what).await?;
    let body: Value = res.json().await.unwrap_or(Value::Null);
    if body["success"] == Value::Bool(false) {
        anyhow::bail!("{what}: {}", body["message"].as_str().unwrap_or("refused"));
    }
    if args.force {
        eprintln!("note: --force has no effect on STRUX repositories (a version is never overwritten)");
    }
    println!("pushed {name} {version} to {project}/{repo} as strux://{user}/{name}");
    Ok(())
}

/// The `files_info` tree of `dir` under the package name `name`, and every file with the
/// directory name its part is sent under. Directories are listed in name order.
#[allow(clippy::type_complexity)]
fn strux_tree(dir: &Path, name: &str) -> anyhow::Result<(Value, Vec<(String, String, PathBuf)>)> {
    fn walk(
        dir: &Path,
        tree_name: &str,
        files: &mut Vec<(String, String, PathBuf)>,
        depth: usize,
    ) -> anyhow::Result<Value> {
        if depth > 32 {
            anyhow::bail!("{} is nested deeper than 32 directories", dir.display());
        }
        let mut entries: Vec<_> =
            std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        let (mut names, mut inner) = (vec![], vec![]);
        for e in entries {
            let file_name = e.file_name().into_string().map_err(|n| anyhow::anyhow!("{n:?} is not a UTF-8 name"))?;
            let ty = e.file_type()?;
            if ty.is_dir() {
                inner.push(walk(&e.path(), &format!("{tree_name}/{file_name}"), files, depth + 1)?);
            } else if ty.is_file() {
                files.push((tree_name.to_string(), file_name.clone(), e.path()));
                names.push(file_name);
            } else {
                anyhow::bail!("{} is neither a file nor a directory (links are not sent)", e.path().display());
            }
        }
        Ok(json!({"Name": tree_name, "FileNames": names, "InnerDir": inner}))
    }
    let mut files = vec![];
    let tree = walk(dir, name, &mut files, 0)?;
    Ok((tree, files))
}
