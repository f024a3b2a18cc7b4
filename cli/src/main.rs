//! The `depot` binary: serves every surface from one process, plus admin commands, and
//! the client that logs in, pushes, pulls and lists over HTTP.
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use depot_cli::app;
use depot_cli::client;
use depot_core::config::{Backend, Config};
use depot_core::http::{init_tracing, open_stores, AppState};

#[derive(Parser)]
#[command(
    name = "depot",
    version,
    about = "depot: a package registry for bkrepo, RDS, OCP, APS and strux clients",
    after_help = "\
Server:  depot serve, gc, verify, admin, create-resources
Client:  depot login, logout, push, pull, ls (against any depot: depot serve or the
         Lambda functions behind API Gateway)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum BackendArg {
    Embedded,
    Aws,
}

#[derive(Subcommand)]
enum Command {
    /// Serve every API surface from one process.
    #[command(after_help = "\
Environment:
  DEPOT_BACKEND          embedded (default) or aws; --backend overrides it (the Lambda
                         functions default to aws)
  DEPOT_DATA_DIR         embedded database and blobs (default ./depot-data); --data-dir overrides it
  DEPOT_TABLE            DynamoDB table for --backend aws (default depot)
  DEPOT_BUCKET           S3 bucket for --backend aws (default depot-artifacts)
  AWS_ENDPOINT_URL       LocalStack or moto endpoint; unset means AWS itself
  AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
                         read by the AWS SDK as usual
  DEPOT_ADMIN_PASSWORD   password of the system administrator 'admin', created on first
                         start; when unset, a password is generated and printed once
  DEPOT_ADMIN_SECRET     with --backend aws and no DEPOT_ADMIN_PASSWORD: a Secrets Manager
                         secret (ARN or name) that holds that password
  DEPOT_MAX_BODY_BYTES   largest request body accepted (default 6291456, the Lambda limit)
  DEPOT_PUBLIC_URL       base URL for download, upload and Location URLs (default: the
                         scheme and Host of each request)
  DEPOT_MAX_UNPACKED_BYTES
                         largest decompressed size of an uploaded archive (default
                         1073741824)
  DEPOT_MAX_SESSION_BYTES
                         largest upload session, at most and by default 5368709120
                         (5 GiB); larger ones are refused with 413 when opened
  DEPOT_INLINE_BLOB_BYTES
                         embedded backend: blobs up to this size (default 65536, at most
                         1048576) are rows of depot.redb, committed with their version,
                         not files of their own; 0 makes every blob a file
  DEPOT_VERIFY_INLINE_BYTES
                         sessions up to this size are verified within their completion
                         request (default 268435456); larger ones answer 202 and are
                         verified in the background while the client polls the session
  DEPOT_DOWNLOAD_MODE    redirect (default: 302 to a presigned URL valid 15 minutes; a
                         signed /blobs/local/ URL on embedded storage) or proxy (stream
                         the bytes through depot)
  DEPOT_MAX_RESPONSE_BYTES
                         largest response body (default: none; 4400000 on Lambda): a
                         larger index.yaml or proxied download is a redirect to a
                         presigned URL of the stored object
  DEPOT_OCP_REPO         the OCP surface's repository, PROJECT/REPOSITORY (default
                         ocp/software-packages; created on first use)
  DEPOT_STRUX_REPO       the strux surface's repository, PROJECT/REPOSITORY (default
                         strux/packages; created on first use)
  DEPOT_APS_REPO         the APS catalog's repository, PROJECT/REPOSITORY (default
                         aps/catalog; created on first use)
  DEPOT_STRUX_MAX_FILES  the most files one strux version holds (default 1000)
  DEPOT_SEARCH_MAX_SCAN  the most packages a package search reads when no key or name
                         rule narrows it (default 10000); past that it answers 400
  DEPOT_SLOW_BODY_SECS   seconds after which a request body must have averaged 4 KiB/s,
                         else it is refused (default 30)
  DEPOT_LOGIN_SLOTS      password checks that run at once (default: the number of cores);
                         one that waits over 5 s is a 503 with Retry-After
  DEPOT_LOGIN_USER_FAILURES
                         failed logins per user id per minute before 429 (default 10)
  DEPOT_LOGIN_ADDRESS_FAILURES
                         failed logins per client address per minute before 429
                         (default 30)
  DEPOT_SIGN_UPS_PER_ADDRESS
                         strux sign-ups per client address per minute before 429
                         (default 10)
  RUST_LOG               log filter (default info); one line per request with its status,
                         duration, caller and, for an error, the reason
  DEPOT_LOG_FORMAT       json: log JSON lines, as on Lambda (default: readable lines)")]
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Directory of the embedded backend's database and blobs [default: ./depot-data].
        #[arg(long, env = "DEPOT_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Storage backend [default: embedded].
        #[arg(long, value_enum)]
        backend: Option<BackendArg>,
        /// With --backend aws: create the DynamoDB table (with its indexes) and the S3
        /// bucket when they are missing. For LocalStack and moto.
        #[arg(long)]
        create_resources: bool,
        /// Seconds a client has to send a request's headers; a connection that idles or
        /// trickles longer is closed.
        #[arg(long, env = "DEPOT_HEADER_TIMEOUT_SECS", default_value_t = 10)]
        header_timeout: u64,
        /// Connections served at once; more wait to be accepted.
        #[arg(long, env = "DEPOT_MAX_CONNECTIONS", default_value_t = 4096)]
        max_connections: usize,
    },
    /// Remove content blobs that no version and no staged upload refers to.
    ///
    /// Blobs younger than the grace period are kept (an upload may be about to name them),
    /// and so is a blob whose bytes another version still uses. Uploads that bring the
    /// same bytes while it runs are safe: it marks each blob before its last reference
    /// check, and an upload's commit waits for the mark. Upload spares under `tmp/` left
    /// for a day are removed too. It may run while depot serves on AWS; on embedded
    /// storage, stop `depot serve` first: the database file takes one process at a time.
    Gc {
        /// List what would be removed, and remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Keep blobs written less than this many seconds ago.
        #[arg(long, default_value_t = 3600)]
        grace_secs: i64,
        /// Directory of the embedded backend's database and blobs [default: ./depot-data].
        #[arg(long, env = "DEPOT_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Storage backend [default: embedded].
        #[arg(long, value_enum)]
        backend: Option<BackendArg>,
    },
    /// Re-hash stored blobs and report any whose bytes do not match.
    ///
    /// Each blob is read back and hashed: its bytes must hash to the sha256 its key names
    /// (blobs/sha256/../<sha256>), and match the sha256, sha1, md5 and size that every
    /// version naming it recorded. Without --repo it checks every stored content blob and
    /// every version's blob. Exits with status 1 when it finds one that does not match,
    /// naming it and why. Shows a progress bar on a terminal. On embedded storage, stop
    /// `depot serve` first: the database file takes one process at a time.
    #[command(after_help = "Examples:\n  depot verify\n  depot verify --repo team/charts --sample 100")]
    Verify {
        /// Check only the versions of this repository (PROJECT/REPO).
        #[arg(long, value_name = "PROJECT/REPO")]
        repo: Option<String>,
        /// Check a random sample of this many blobs instead of all of them.
        #[arg(long, value_name = "N")]
        sample: Option<usize>,
        /// Directory of the embedded backend's database and blobs [default: ./depot-data].
        #[arg(long, env = "DEPOT_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Storage backend [default: embedded].
        #[arg(long, value_enum)]
        backend: Option<BackendArg>,
    },
    /// Operator commands on the storage itself, for whoever holds the data directory or
    /// the table. On embedded storage, stop `depot serve` first.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Create the DynamoDB table and the S3 bucket when missing (LocalStack, moto).
    ///
    /// The table (with its indexes and TTL) and the bucket are named by DEPOT_TABLE and
    /// DEPOT_BUCKET, at AWS_ENDPOINT_URL.
    CreateResources,

    /// Log in to a depot: create an API token with your password, and store the URL and
    /// the token (never the password).
    ///
    /// The password is read from a prompt, or from the first line of standard input with
    /// --password-stdin. The token is created through /auth/api/user/token and stored in
    /// $XDG_CONFIG_HOME/depot/config.toml (else ~/.config/depot/config.toml), readable by
    /// you alone. DEPOT_URL and DEPOT_TOKEN override that file, for CI.
    #[command(after_help = "\
Examples:
  depot login https://depot.example.com --user alice
  printf '%s\\n' \"$DEPOT_PASSWORD\" | depot login http://127.0.0.1:8080 --user ci --password-stdin")]
    Login {
        /// The depot's base URL.
        url: String,
        /// Your user id [default: $USER].
        #[arg(long)]
        user: Option<String>,
        /// Read the password from standard input instead of a prompt.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Log out: delete the stored token on the server, then the configuration file.
    #[command(after_help = "Example:\n  depot logout")]
    Logout,
    /// Publish files into a repository, through the route of its type.
    ///
    /// RDS takes charts (.tgz, .tar.gz, .tar, .zip), RPM takes .rpm files (OCP's route),
    /// APS takes .app.zip packages (the catalog's form), STRUX takes one directory with
    /// --name and --version. Every file goes through an upload session: it is hashed
    /// first, its sha256 declared when the session opens (the server verifies what
    /// arrived), and sent in parts, several at once, above 32 MiB. A failed part is
    /// retried with backoff; a 4xx answer is not.
    #[command(after_help = "\
Examples:
  depot push demo/charts mysql-0.1.0.tgz redis-1.2.0.tgz
  depot push demo/charts mysql-0.1.0.tgz --force
  depot push ocp/software-packages obproxy-4.2.1-1.el7.x86_64.rpm
  depot push strux/packages ./tee --name tee --version 1.0.0

Environment:
  DEPOT_URL, DEPOT_TOKEN   override the stored login")]
    Push {
        /// The repository, PROJECT/REPO.
        repo: client::RepoRef,
        /// The files (or, for STRUX, the directory).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Overwrite an existing version where the surface allows it (RDS).
        #[arg(long)]
        force: bool,
        /// Parts (or, for STRUX, files) sent at once.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
        parallel: u16,
        /// STRUX: the package's name.
        #[arg(long)]
        name: Option<String>,
        /// STRUX: the version.
        #[arg(long)]
        version: Option<String>,
        /// APS: the package type, APS or PVT.
        #[arg(long, default_value = "APS")]
        aps_type: String,
        /// No progress output.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Download a version, check its sha256 against the registry's, and save it.
    ///
    /// Without @VERSION it takes the package's latest. PACKAGE is a package key
    /// (rds://mysql) or a name under the repository type's scheme (mysql in an RDS
    /// repository). The bytes go to PATH.depot-partial, then are renamed into place once
    /// their sha256 matches; a mismatch deletes them and exits 1. A pull that was
    /// interrupted resumes where it stopped, with a Range request.
    #[command(after_help = "\
Examples:
  depot pull demo/charts mysql
  depot pull demo/charts mysql@0.1.0 -o /tmp/mysql.tgz")]
    Pull {
        /// The repository, PROJECT/REPO.
        repo: client::RepoRef,
        /// PACKAGE or PACKAGE@VERSION.
        package: String,
        /// Where to save it: a file, or a directory [default: the file's own name, here].
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// No progress output.
        #[arg(long, short)]
        quiet: bool,
    },
    /// List a repository's packages (name, latest, versions, downloads), or one package's
    /// versions (version, stage, size, created).
    #[command(after_help = "\
Examples:
  depot ls demo/charts
  depot ls demo/charts mysql
  depot ls demo/charts --json | jq -r '.[].name'")]
    Ls {
        /// The repository, PROJECT/REPO.
        repo: client::RepoRef,
        /// A package (key or name): list its versions.
        package: Option<String>,
        /// Print JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Set a user's password; create the user as a system administrator if it is missing.
    ///
    /// Reads the new password (at least 8 characters) from the first line of standard
    /// input. This is the way back from a lost administrator password, or from a deleted
    /// `admin`: depot creates `admin` from DEPOT_ADMIN_PASSWORD only once in the life of
    /// its storage. The user's cached credentials in a running process expire within 60
    /// seconds.
    #[command(after_help = "Example:\n  printf '%s\\n' 'a-new-password' | depot admin set-password admin")]
    SetPassword {
        /// The user id.
        user: String,
        /// Directory of the embedded backend's database and blobs [default: ./depot-data].
        #[arg(long, env = "DEPOT_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Storage backend [default: embedded].
        #[arg(long, value_enum)]
        backend: Option<BackendArg>,
    },
}

/// See cli/Cargo.toml: malloc and free were a fifth of a small upload's CPU under glibc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let client = matches!(
        cli.command,
        Command::Login { .. } | Command::Logout | Command::Push { .. } | Command::Pull { .. } | Command::Ls { .. }
    );
    if !client {
        init_tracing(false);
    }
    match cli.command {
        Command::Login { url, user, password_stdin } => {
            let user = match user.or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty())) {
                Some(u) => u,
                None => anyhow::bail!("name the user with --user"),
            };
            let password = if password_stdin {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).context("reading the password from standard input")?;
                line.trim_end_matches(['\r', '\n']).to_string()
            } else {
                rpassword::prompt_password(format!("password of {user} at {url}: "))
                    .context("reading the password from the terminal (without one, use --password-stdin)")?
            };
            client::login(&url, &user, password).await
        }
        Command::Logout => client::logout().await,
        Command::Push { repo, files, force, parallel, name, version, aps_type, quiet } => {
            let (api, user) = client::logged_in()?;
            let args = client::push::PushArgs {
                repo,
                files,
                force,
                parallel: parallel as usize,
                quiet,
                name,
                version,
                aps_type,
                user,
            };
            client::push::push(&api, args).await
        }
        Command::Pull { repo, package, output, quiet } => {
            let (api, _) = client::logged_in()?;
            let (package, version) = match package.rsplit_once('@') {
                Some((p, v)) if !v.is_empty() && !v.contains('/') => (p.to_string(), Some(v.to_string())),
                _ => (package, None),
            };
            client::pull::pull(&api, client::pull::PullArgs { repo, package, version, output, quiet }).await.map(drop)
        }
        Command::Ls { repo, package, json } => {
            let (api, _) = client::logged_in()?;
            client::ls::ls(&api, &repo, package.as_deref(), json).await
        }
        Command::Serve { listen, data_dir, backend, create_resources, header_timeout, max_connections } => {
            let config = config_from(data_dir, backend)?;
            let limits = ConnLimits { header_timeout: std::time::Duration::from_secs(header_timeout), max_connections };
            serve(config, listen, create_resources, limits).await
        }
        Command::Gc { dry_run, grace_secs, data_dir, backend } => {
            let config = config_from(data_dir, backend)?;
            let state = AppState::open(config, false).await.context("opening storage")?;
            let report = state.registry.collect_garbage(dry_run, grace_secs).await?;
            let verb = if dry_run { "would remove" } else { "unreferenced" };
            for b in &report.unreferenced {
                println!("{verb} {} ({} bytes)", b.key, b.size);
            }
            let bytes: u64 = report.unreferenced.iter().map(|b| b.size).sum();
            println!(
                "{} blobs scanned, {} referenced, {} unreferenced ({bytes} bytes), {} removed, {} left to a later run",
                report.scanned,
                report.referenced,
                report.unreferenced.len(),
                report.removed,
                report.skipped
            );
            let rendered: u64 = report.old_renderings.iter().map(|b| b.size).sum();
            let verb = if dry_run { "would remove" } else { "removed" };
            println!("{verb} {} stored renderings of earlier states ({rendered} bytes)", report.old_renderings.len());
            Ok(())
        }
        Command::Verify { repo, sample, data_dir, backend } => {
            let config = config_from(data_dir, backend)?;
            let repo = match repo {
                Some(r) => match r.split_once('/') {
                    Some((p, r)) if !p.is_empty() && !r.is_empty() => Some((p.to_string(), r.to_string())),
                    _ => anyhow::bail!("--repo takes PROJECT/REPO, not '{r}'"),
                },
                None => None,
            };
            let state = AppState::open(config, false).await.context("opening storage")?;
            let bad = verify(&state, depot_core::registry::VerifyScope { repo, sample }).await?;
            if bad > 0 {
                anyhow::bail!("{bad} blobs do not match");
            }
            Ok(())
        }
        Command::Admin { command: AdminCommand::SetPassword { user, data_dir, backend } } => {
            let config = config_from(data_dir, backend)?;
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).context("reading the password from standard input")?;
            let password = line.trim_end_matches(['\r', '\n']).to_string();
            let state = AppState::open(config, false).await.context("opening storage")?;
            let created = state.accounts.operator_set_password(&user, password).await?;
            if created {
                eprintln!("created system administrator [{user}] with the new password");
            } else {
                eprintln!("password of [{user}] changed");
            }
            Ok(())
        }
        Command::CreateResources => {
            let config = Config { backend: Backend::Aws, ..Config::from_env()? };
            open_stores(&config, true).await?;
            eprintln!("table {} and bucket {} are ready", config.table, config.bucket);
            Ok(())
        }
    }
}

/// `depot verify`: hashes the blobs of `scope`, with a progress bar on a terminal, and
/// prints every one that does not match. Returns how many did not.
async fn verify(state: &AppState, scope: depot_core::registry::VerifyScope) -> anyhow::Result<usize> {
    use std::io::IsTerminal;
    let (targets, total) = state.registry.blobs_to_verify(&scope).await?;
    // A bar on a terminal; nothing otherwise (the report is on standard output).
    let bar = client::progress::Progress::new("verifying", total, !std::io::stderr().is_terminal());
    let report = state.registry.verify_blobs(&targets, |done| bar.set(done)).await?;
    bar.finish();
    for b in &report.bad {
        println!("BAD {}: {}", b.key, b.why);
    }
    let bad_keys: std::collections::BTreeSet<_> = report.bad.iter().map(|b| &b.key).collect();
    println!("{} blobs checked ({} bytes), {} do not match", report.checked, report.bytes, bad_keys.len());
    Ok(bad_keys.len())
}

/// The configuration from the environment, with the command line's overrides.
fn config_from(data_dir: Option<PathBuf>, backend: Option<BackendArg>) -> anyhow::Result<Config> {
    let mut config = Config::from_env()?;
    if let Some(d) = data_dir {
        config.data_dir = d;
    }
    match backend {
        Some(BackendArg::Embedded) => config.backend = Backend::Embedded,
        Some(BackendArg::Aws) => config.backend = Backend::Aws,
        None => {}
    }
    Ok(config)
}

/// What one client's connections may hold of the server.
struct ConnLimits {
    header_timeout: std::time::Duration,
    max_connections: usize,
}

async fn serve(config: Config, listen: SocketAddr, create_resources: bool, limits: ConnLimits) -> anyhow::Result<()> {
    let backend = config.backend;
    let where_ = match backend {
        Backend::Embedded => format!("embedded storage in {}", config.data_dir.display()),
        Backend::Aws => format!("DynamoDB table {} and S3 bucket {}", config.table, config.bucket),
    };
    // The port first: a busy one must fail before anything is created (a generated admin
    // password printed above a bind error would be lost).
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    let state = AppState::open(config, create_resources).await.context("opening storage")?;
    if let Some(password) = state.authenticator.bootstrap_admin(true).await.context("creating the admin user")? {
        eprintln!("created system administrator 'admin' with generated password: {password}");
        eprintln!("(shown once; set DEPOT_ADMIN_PASSWORD to choose it)");
    }
    // Abandoned upload sessions and page starts of earlier repository states expire, and
    // interrupted verifications finish; on AWS, DynamoDB TTL, the bucket's lifecycle rules
    // and the worker function's schedule do this instead.
    let registry = state.registry.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(600));
        loop {
            every.tick().await;
            match registry.expire_uploads().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(sessions = n, "expired upload sessions removed"),
                Err(e) => tracing::warn!(error = %e, "expiring upload sessions failed"),
            }
            match registry.expire_page_starts().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(items = n, "stale page starts removed"),
                Err(e) => tracing::warn!(error = %e, "expiring page starts failed"),
            }
            // Verifications a stopped process left (the first tick comes at once).
            match registry.resume_verifications().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(sessions = n, "interrupted upload verifications finished"),
                Err(e) => tracing::warn!(error = %e, "resuming upload verifications failed"),
            }
        }
    });
    eprintln!("depot {} listening on http://{} ({where_})", env!("CARGO_PKG_VERSION"), listener.local_addr()?);
    accept_loop(listener, app(state), limits).await
}

/// Serves connections until a shutdown signal, then lets open requests finish (up to 30
/// s). Each connection has `header_timeout` to send a request's headers, so that idle
/// or trickling clients cannot hold connections (and file descriptors) open; at most
/// `max_connections` are served at once. The peer address goes with each request, for
/// the login throttle (`depot_core::auth::LoginLimits`).
async fn accept_loop(listener: tokio::net::TcpListener, app: axum::Router, limits: ConnLimits) -> anyhow::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let stop = shutdown();
    tokio::pin!(stop);
    loop {
        let slot = slots.clone().acquire_owned().await?;
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, say: back off rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let svc =
            tower::ServiceExt::map_request(app.clone(), move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                req
            });
        let conn = builder.serve_connection(TokioIo::new(stream), hyper_util::service::TowerToHyperService::new(svc));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "connection ended");
            }
            drop(slot);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(std::time::Duration::from_secs(30)) => {}
    }
    Ok(())
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
