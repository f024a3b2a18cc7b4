//! Where the client's URL and token live: `depot/config.toml` under the XDG config home
//! (`$XDG_CONFIG_HOME`, else `~/.config`), readable by the user alone. `DEPOT_URL` and
//! `DEPOT_TOKEN` override it, for CI. The password is never stored.
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// What `depot login` stores.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Stored {
    pub url: String,
    /// The user the token belongs to.
    pub user: String,
    pub token: String,
    /// The token's name on the server, which `depot logout` deletes.
    pub token_name: String,
}

/// How requests authenticate.
#[derive(Clone)]
pub enum Credentials {
    /// An API token, sent as `Bearer`.
    Token(String),
    /// A user and password (only `depot login` sends these).
    Password {
        user: String,
        password: String,
    },
    None,
}

impl Credentials {
    /// The `Authorization` header's value.
    pub fn header(&self) -> Option<String> {
        use base64::Engine;
        match self {
            Credentials::Token(t) => Some(format!("Bearer {t}")),
            Credentials::Password { user, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            )),
            Credentials::None => None,
        }
    }
}

/// The configuration file's path.
pub fn path() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => {
            let home = std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .context("neither XDG_CONFIG_HOME nor HOME is set: set one, or use DEPOT_URL and DEPOT_TOKEN")?;
            PathBuf::from(home).join(".config")
        }
    };
    Ok(base.join("depot").join("config.toml"))
}

pub fn load() -> anyhow::Result<Option<Stored>> {
    let path = path()?;
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(toml::from_str(&text).with_context(|| format!("reading {}", path.display()))?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes the file with mode 0600 (its directory 0700), replacing any earlier one whole.
pub fn save(stored: &Stored) -> anyhow::Result<PathBuf> {
    let path = path()?;
    let dir = path.parent().expect("the path has a directory");
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).with_context(|| format!("creating {}", dir.display()))?;
    let text = toml::to_string(stored)?;
    // Written beside it and renamed: a crash leaves the old file or the new one.
    let tmp = dir.join(format!(".config.toml.{}", std::process::id()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    #[cfg(unix)]
    {
        // A file that existed with wider bits keeps them through open: narrow them.
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

pub fn remove() -> anyhow::Result<Option<PathBuf>> {
    let path = path()?;
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(Some(path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

/// The URL and credentials a command uses: `DEPOT_URL` and `DEPOT_TOKEN` over the file.
pub struct Target {
    pub url: String,
    pub token: String,
    /// The token's user, when the file names it (a `DEPOT_TOKEN` token's is asked for).
    pub user: Option<String>,
}

pub fn target() -> anyhow::Result<Target> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let stored = load()?;
    let url = env("DEPOT_URL").or_else(|| stored.as_ref().map(|s| s.url.clone()));
    let env_token = env("DEPOT_TOKEN");
    let user = match &env_token {
        Some(_) => None,
        None => stored.as_ref().map(|s| s.user.clone()),
    };
    let token = env_token.or_else(|| stored.as_ref().map(|s| s.token.clone()));
    match (url, token) {
        (Some(url), Some(token)) => Ok(Target { url, token, user }),
        (None, _) => anyhow::bail!("not logged in: run `depot login URL`, or set DEPOT_URL and DEPOT_TOKEN"),
        (Some(_), None) => anyhow::bail!("no token: run `depot login URL`, or set DEPOT_TOKEN"),
    }
}
