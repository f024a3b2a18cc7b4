//! The client side of the `depot` binary: `login`, `logout`, `push`, `pull` and `ls`
//! against a depot over HTTP, through the same routes every other client uses. Files go
//! up through upload sessions, so the same commands work behind API Gateway (6 MB
//! request limit) and on `depot serve`.
pub mod api;
pub mod config;
pub mod ls;
pub mod progress;
pub mod pull;
pub mod push;
pub mod session;

use anyhow::Context;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use api::Api;
use config::{Credentials, Stored};

/// `PROJECT/REPO` on the command line.
#[derive(Clone, Debug)]
pub struct RepoRef {
    pub project: String,
    pub repo: String,
}

impl std::str::FromStr for RepoRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('/') {
            Some((p, r)) if !p.is_empty() && !r.is_empty() && !r.contains('/') => {
                Ok(RepoRef { project: p.to_string(), repo: r.to_string() })
            }
            _ => Err(format!("expected PROJECT/REPO, not '{s}'")),
        }
    }
}

/// The repository's type (`RDS`, `RPM`, `APS`, `STRUX`, `GENERIC`).
pub async fn repo_type(api: &Api, project: &str, repo: &str) -> anyhow::Result<String> {
    let info =
        match api.get_data(&format!("/repository/api/repo/info/{project}/{repo}"), "reading the repository").await {
            Ok(v) => v,
            Err(e) if e.status == Some(StatusCode::NOT_FOUND) => {
                anyhow::bail!("repository {project}/{repo} not found: {e}")
            }
            Err(e) => return Err(e.into()),
        };
    info["type"].as_str().map(str::to_ascii_uppercase).context("the repository has no type")
}

/// The package key of `package` in a repository of type `ty`: as given when it names a
/// scheme (`rds://mysql`), else under the type's (`mysql` in an RDS repository is
/// `rds://mysql`; `alice/tee` in a STRUX one is `strux://alice/tee`).
pub fn package_key(ty: &str, package: &str) -> String {
    if package.contains("://") {
        package.to_string()
    } else {
        format!("{}://{package}", ty.to_ascii_lowercase())
    }
}

/// The user a token belongs to.
pub async fn whoami(api: &Api) -> anyhow::Result<String> {
    let me = api.get_data("/auth/api/user/info", "reading the signed-in user").await?;
    me["userId"].as_str().map(str::to_string).context("the server named no user")
}

/// The client for commands that use the stored login (or `DEPOT_URL`/`DEPOT_TOKEN`), and
/// the token's user when known.
pub fn logged_in() -> anyhow::Result<(Api, Option<String>)> {
    let t = config::target()?;
    Ok((Api::new(&t.url, Credentials::Token(t.token))?, t.user))
}

/// `depot login`: creates an API token with the password, and stores it with the URL.
pub async fn login(url: &str, user: &str, password: String) -> anyhow::Result<()> {
    if password.is_empty() {
        anyhow::bail!("an empty password");
    }
    let api = Api::new(url, Credentials::Password { user: user.to_string(), password })?;
    let stamp = time_stamp();
    let name = format!("depot-cli-{stamp}-{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
    let data: Value = api
        .data(api.request(Method::POST, &format!("/auth/api/user/token/{user}/{name}")), "creating an API token")
        .await?;
    let token = data["id"].as_str().context("the server returned no token")?.to_string();
    let stored = Stored { url: api.base.clone(), user: user.to_string(), token, token_name: name.clone() };
    let path = config::save(&stored)?;
    println!("logged in to {} as {user}; token {name} stored in {}", api.base, path.display());
    Ok(())
}

/// `depot logout`: deletes the stored token on the server, then the file.
pub async fn logout() -> anyhow::Result<()> {
    let Some(stored) = config::load()? else {
        println!("not logged in ({} does not exist)", config::path()?.display());
        return Ok(());
    };
    let api = Api::new(&stored.url, Credentials::Token(stored.token.clone()))?;
    let path = format!("/auth/api/user/token/{}/{}", stored.user, stored.token_name);
    match api.data(api.request(Method::DELETE, &path), "deleting the token").await {
        Ok(_) => {}
        // Already gone (deleted, expired, or its user deleted): nothing left to revoke.
        Err(e) if matches!(e.status, Some(StatusCode::UNAUTHORIZED | StatusCode::NOT_FOUND)) => {
            eprintln!("note: the server no longer accepts the token ({e})");
        }
        Err(e) => {
            return Err(anyhow::Error::new(e).context("the token was not deleted, so the login is kept; try again"))
        }
    }
    let removed = config::remove()?;
    println!(
        "logged out of {}: token {} deleted{}",
        stored.url,
        stored.token_name,
        removed.map(|p| format!(", {} removed", p.display())).unwrap_or_default()
    );
    Ok(())
}

fn time_stamp() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    secs.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_urls() {
        let r: RepoRef = "demo/charts".parse().unwrap();
        assert_eq!((r.project.as_str(), r.repo.as_str()), ("demo", "charts"));
        for bad in ["demo", "/charts", "demo/", "a/b/c"] {
            assert!(bad.parse::<RepoRef>().is_err(), "{bad}");
        }
        assert_eq!(package_key("RDS", "mysql"), "rds://mysql");
        assert_eq!(package_key("STRUX", "alice/tee"), "strux://alice/tee");
        assert_eq!(package_key("RDS", "rds://mysql"), "rds://mysql");
        // depot's credentials go to depot's own URLs only, never to a presigned one.
        let api = Api::new("http://127.0.0.1:8080/", Credentials::Token("t".into())).unwrap();
        assert!(api.is_own("http://127.0.0.1:8080/blobs/local/x"));
        assert!(!api.is_own("http://127.0.0.1:80800/x"), "another port is another origin");
        assert!(!api.is_own("http://127.0.0.1:8080.evil.example/x"));
        assert!(!api.is_own("https://bucket.s3.amazonaws.com/x?X-Amz-Signature=1"));
        assert_eq!(api.url("/a"), "http://127.0.0.1:8080/a");
        assert!(Api::new("127.0.0.1:8080", Credentials::None).is_err(), "a URL names its scheme");
    }
}
