//! Configuration from environment variables, the same on Lambda and locally. Plain
//! data: the adapters it names are opened where the application state is built
//! (`http::AppState::open`).
use std::path::PathBuf;

use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A database file and a blob directory under `DEPOT_DATA_DIR`.
    Embedded,
    /// DynamoDB and S3, at `AWS_ENDPOINT_URL` when set.
    Aws,
}

impl Backend {
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "embedded" => Ok(Backend::Embedded),
            "aws" => Ok(Backend::Aws),
            other => Err(Error::Invalid(format!("DEPOT_BACKEND must be 'embedded' or 'aws', not '{other}'"))),
        }
    }
}

/// How downloads reach the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownloadMode {
    /// 302 to a presigned URL that expires within 15 minutes (S3, or a signed local route).
    Redirect,
    /// The bytes stream through depot.
    Proxy,
}

impl DownloadMode {
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "redirect" => Ok(DownloadMode::Redirect),
            "proxy" => Ok(DownloadMode::Proxy),
            other => Err(Error::Invalid(format!("DEPOT_DOWNLOAD_MODE must be 'redirect' or 'proxy', not '{other}'"))),
        }
    }
}

/// The Lambda synchronous request limit; the default body cap.
pub const DEFAULT_MAX_BODY_BYTES: usize = 6 * 1024 * 1024;

/// Every setting, with the variable that sets it:
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `DEPOT_BACKEND` | `embedded` | `embedded` or `aws` |
/// | `DEPOT_DATA_DIR` | `./depot-data` | embedded database and blobs |
/// | `DEPOT_TABLE` | `depot` | DynamoDB table (aws) |
/// | `DEPOT_BUCKET` | `depot-artifacts` | S3 bucket (aws) |
/// | `AWS_ENDPOINT_URL` | unset | LocalStack or moto endpoint (read by the AWS SDK) |
/// | `DEPOT_ADMIN_PASSWORD` | unset | creates the system administrator `admin` on first start |
/// | `DEPOT_ADMIN_SECRET` | unset | on AWS, a Secrets Manager secret (ARN or name) holding that password instead |
/// | `DEPOT_MAX_BODY_BYTES` | 6291456 | largest request body accepted |
/// | `DEPOT_PUBLIC_URL` | unset | base URL for download and Location URLs |
/// | `DEPOT_DOWNLOAD_MODE` | `redirect` | `redirect` (302 to a presigned URL) or `proxy` (stream) |
/// | `DEPOT_MAX_UNPACKED_BYTES` | 1073741824 | largest decompressed size of an uploaded archive |
/// | `DEPOT_MAX_SESSION_BYTES` | 5368709120 | largest upload session (at most 5 GiB) |
/// | `DEPOT_VERIFY_INLINE_BYTES` | 268435456 | larger sessions are verified off the request path (202, then poll) |
/// | `DEPOT_INLINE_BLOB_BYTES` | 65536 | embedded: blobs up to this size are rows of the table's file, not files of their own (0: none) |
/// | `DEPOT_OCP_REPO` | `ocp/software-packages` | the repository OCP software packages live in (created on first use) |
/// | `DEPOT_STRUX_REPO` | `strux/packages` | the repository strux packages live in (created on first use) |
/// | `DEPOT_APS_REPO` | `aps/catalog` | the repository of the APS catalog (created on first use) |
/// | `DEPOT_STRUX_MAX_FILES` | 1000 | the most files one strux version holds |
/// | `DEPOT_SLOW_BODY_SECS` | 30 | seconds after which a request body must have averaged 4 KiB/s |
/// | `DEPOT_LOGIN_SLOTS` | the number of cores | password checks that run at once |
/// | `DEPOT_LOGIN_USER_FAILURES` | 10 | failed logins per user id per minute before 429 |
/// | `DEPOT_LOGIN_ADDRESS_FAILURES` | 30 | failed logins per client address per minute before 429 |
/// | `DEPOT_SIGN_UPS_PER_ADDRESS` | 10 | open sign-ups (strux) per client address per minute before 429 |
///
/// `depot serve` defaults to the embedded backend, the Lambda functions to `aws`.
#[derive(Debug, Clone)]
pub struct Config {
    pub backend: Backend,
    pub data_dir: PathBuf,
    pub table: String,
    pub bucket: String,
    pub admin_password: Option<String>,
    /// The Secrets Manager secret (ARN or name) holding the bootstrap password, read when
    /// `admin_password` is unset and the table has no administrator yet (AWS only).
    pub admin_secret: Option<String>,
    pub max_body_bytes: usize,
    pub public_url: Option<String>,
    pub download_mode: DownloadMode,
    pub max_unpacked_bytes: u64,
    /// The largest upload session this deployment opens.
    pub max_session_bytes: u64,
    /// Sessions larger than this are hashed off the request path: completion answers 202
    /// and the client polls the session (`DEPOT_VERIFY_INLINE_BYTES`).
    pub verify_inline_bytes: u64,
    /// Whether this process runs the verifications it starts (`depot serve`), or leaves
    /// them to the worker function that the bucket's events start (Lambda, whose process
    /// is frozen between requests).
    pub verify_in_process: bool,
    /// Bounds on password checks: slots, and failures before a 429.
    pub login: crate::auth::LoginLimits,
    /// The repository of the OCP surface: (project, repository).
    pub ocp_repo: (String, String),
    /// The repository of the strux surface: (project, repository).
    pub strux_repo: (String, String),
    /// The repository of the APS catalog: (project, repository).
    pub aps_repo: (String, String),
    /// The most files one strux version holds.
    pub strux_max_files: usize,
    /// How long a request body may take before it must have averaged 4 KiB/s
    /// (`DEPOT_SLOW_BODY_SECS`).
    pub slow_body_grace: std::time::Duration,
    /// The most packages one search reads when no rule narrows it to an index
    /// (`DEPOT_SEARCH_MAX_SCAN`): past that it answers 400, saying how to narrow it.
    pub search_max_scan: i64,
    /// The largest response body the entry point can carry (`DEPOT_MAX_RESPONSE_BYTES`;
    /// unset, the Lambda entry point takes what API Gateway carries, and `depot serve`
    /// has none). A larger download or `index.yaml` is a redirect to a presigned URL;
    /// answers that cannot be a redirect (a strux download) check it before they start.
    pub max_response_bytes: Option<u64>,
    /// Embedded storage: blobs up to this size are kept as rows of the embedded table's
    /// file, not as files of their own (`DEPOT_INLINE_BLOB_BYTES`).
    pub inline_blob_bytes: usize,
}

/// The default of [`Config::inline_blob_bytes`]: most charts and small packages are a
/// few KiB, and a row of this size costs less than a file of its own.
pub const INLINE_BLOB_BYTES: usize = 64 * 1024;

/// The most [`Config::inline_blob_bytes`] may be: what a put holds before it streams.
pub const MAX_INLINE_BLOB_BYTES: usize = 1 << 20;

/// The default of [`Config::search_max_scan`].
pub const SEARCH_MAX_SCAN: i64 = 10_000;

/// Reads `project/repo` from a variable.
fn repo_var(name: &str, default: (&str, &str)) -> Result<(String, String)> {
    match var(name) {
        None => Ok((default.0.to_string(), default.1.to_string())),
        Some(v) => match v.split_once('/') {
            Some((p, r)) if crate::model::validate_name("project name", p).is_ok()
                && crate::model::validate_name("repository name", r).is_ok() =>
            {
                Ok((p.to_string(), r.to_string()))
            }
            _ => Err(Error::Invalid(format!("{name} must be PROJECT/REPOSITORY, not '{v}'"))),
        },
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            backend: Backend::Embedded,
            data_dir: PathBuf::from("./depot-data"),
            table: "depot".into(),
            bucket: "depot-artifacts".into(),
            admin_password: None,
            admin_secret: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            public_url: None,
            download_mode: DownloadMode::Redirect,
            max_unpacked_bytes: 1 << 30,
            search_max_scan: SEARCH_MAX_SCAN,
            inline_blob_bytes: INLINE_BLOB_BYTES,
            max_session_bytes: crate::registry::MAX_UPLOAD_SIZE,
            verify_inline_bytes: crate::registry::VERIFY_INLINE_BYTES,
            verify_in_process: true,
            login: crate::auth::LoginLimits::default(),
            ocp_repo: ("ocp".into(), "software-packages".into()),
            strux_repo: ("strux".into(), "packages".into()),
            aps_repo: ("aps".into(), "catalog".into()),
            strux_max_files: 1000,
            slow_body_grace: std::time::Duration::from_secs(30),
            max_response_bytes: None,
        }
    }
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A positive whole number from `name`, or `default` when it is unset.
fn count<T: std::str::FromStr + PartialOrd + From<u8>>(name: &str, default: T) -> Result<T> {
    match var(name) {
        None => Ok(default),
        Some(v) => match v.parse::<T>() {
            Ok(n) if n >= T::from(1) => Ok(n),
            _ => Err(Error::Invalid(format!("{name} must be a positive whole number, not '{v}'"))),
        },
    }
}

impl Config {
    /// Reads the `DEPOT_*` variables, with the defaults above.
    pub fn from_env() -> Result<Self> {
        Self::from_env_or(Backend::Embedded)
    }

    /// Reads the `DEPOT_*` variables; `backend` when `DEPOT_BACKEND` is unset.
    pub fn from_env_or(backend: Backend) -> Result<Self> {
        let d = Config::default();
        Ok(Config {
            backend: var("DEPOT_BACKEND").map(|b| Backend::parse(&b)).transpose()?.unwrap_or(backend),
            data_dir: var("DEPOT_DATA_DIR").map(PathBuf::from).unwrap_or(d.data_dir),
            table: var("DEPOT_TABLE").unwrap_or(d.table),
            bucket: var("DEPOT_BUCKET").unwrap_or(d.bucket),
            admin_password: var("DEPOT_ADMIN_PASSWORD"),
            admin_secret: var("DEPOT_ADMIN_SECRET"),
            max_body_bytes: match var("DEPOT_MAX_BODY_BYTES") {
                Some(v) => v
                    .parse()
                    .map_err(|_| Error::Invalid(format!("DEPOT_MAX_BODY_BYTES must be a number, not '{v}'")))?,
                None => d.max_body_bytes,
            },
            public_url: var("DEPOT_PUBLIC_URL").map(|u| u.trim_end_matches('/').to_string()),
            download_mode: var("DEPOT_DOWNLOAD_MODE")
                .map(|m| DownloadMode::parse(&m))
                .transpose()?
                .unwrap_or(d.download_mode),
            max_unpacked_bytes: match var("DEPOT_MAX_UNPACKED_BYTES") {
                Some(v) => v
                    .parse()
                    .map_err(|_| Error::Invalid(format!("DEPOT_MAX_UNPACKED_BYTES must be a number, not '{v}'")))?,
                None => d.max_unpacked_bytes,
            },
            max_session_bytes: match var("DEPOT_MAX_SESSION_BYTES") {
                Some(v) => match v.parse::<u64>() {
                    Ok(n) if (1..=crate::registry::MAX_UPLOAD_SIZE).contains(&n) => n,
                    _ => {
                        return Err(Error::Invalid(format!(
                            "DEPOT_MAX_SESSION_BYTES must be a number from 1 to {}, not '{v}'",
                            crate::registry::MAX_UPLOAD_SIZE
                        )))
                    }
                },
                None => d.max_session_bytes,
            },
            search_max_scan: match var("DEPOT_SEARCH_MAX_SCAN") {
                Some(v) => match v.parse::<i64>() {
                    Ok(n) if n >= 1 => n,
                    _ => return Err(Error::Invalid(format!("DEPOT_SEARCH_MAX_SCAN must be a number from 1, not '{v}'"))),
                },
                None => d.search_max_scan,
            },
            inline_blob_bytes: match var("DEPOT_INLINE_BLOB_BYTES") {
                Some(v) => match v.parse::<usize>() {
                    Ok(n) if n <= MAX_INLINE_BLOB_BYTES => n,
                    _ => {
                        return Err(Error::Invalid(format!(
                            "DEPOT_INLINE_BLOB_BYTES must be a number from 0 to {MAX_INLINE_BLOB_BYTES}, not '{v}'"
                        )))
                    }
                },
                None => d.inline_blob_bytes,
            },
            verify_inline_bytes: match var("DEPOT_VERIFY_INLINE_BYTES") {
                Some(v) => v.parse().map_err(|_| {
                    Error::Invalid(format!("DEPOT_VERIFY_INLINE_BYTES must be a number of bytes, not '{v}'"))
                })?,
                None => d.verify_inline_bytes,
            },
            verify_in_process: d.verify_in_process,
            login: crate::auth::LoginLimits {
                slots: count("DEPOT_LOGIN_SLOTS", d.login.slots as u32)? as usize,
                user_failures: count("DEPOT_LOGIN_USER_FAILURES", d.login.user_failures)?,
                addr_failures: count("DEPOT_LOGIN_ADDRESS_FAILURES", d.login.addr_failures)?,
                addr_sign_ups: count("DEPOT_SIGN_UPS_PER_ADDRESS", d.login.addr_sign_ups)?,
                ..d.login
            },
            ocp_repo: repo_var("DEPOT_OCP_REPO", ("ocp", "software-packages"))?,
            strux_repo: repo_var("DEPOT_STRUX_REPO", ("strux", "packages"))?,
            aps_repo: repo_var("DEPOT_APS_REPO", ("aps", "catalog"))?,
            strux_max_files: count("DEPOT_STRUX_MAX_FILES", d.strux_max_files as u32)? as usize,
            slow_body_grace: std::time::Duration::from_secs(count("DEPOT_SLOW_BODY_SECS", 30u64)?),
            max_response_bytes: match var("DEPOT_MAX_RESPONSE_BYTES") {
                Some(_) => Some(count("DEPOT_MAX_RESPONSE_BYTES", 1u64)?),
                None => None,
            },
        })
    }
}
