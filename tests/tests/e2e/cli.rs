//! The `depot` client (`login`, `push`, `pull`, `ls`, `logout`) as a user runs it: the
//! built binary, against `depot serve` on both backends, with its configuration in a
//! directory of its own.
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::harness::{aws_server_with_table, binary, data, embedded, Api, ADMIN_PASSWORD};
use crate::uploads::{payload, sha256_hex};

/// One user's side: a configuration home and a working directory.
pub struct User {
    pub home: tempfile::TempDir,
    pub env: Vec<(String, String)>,
}

/// What a command did: exit success, standard output and standard error.
pub struct Ran {
    pub ok: bool,
    pub out: String,
    pub err: String,
}

impl User {
    pub fn new() -> User {
        User { home: tempfile::tempdir().unwrap(), env: vec![] }
    }

    pub fn dir(&self) -> &Path {
        self.home.path()
    }

    pub fn config(&self) -> PathBuf {
        self.dir().join("config/depot/config.toml")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(binary("depot"));
        cmd.args(args)
            .current_dir(self.dir())
            .env("XDG_CONFIG_HOME", self.dir().join("config"))
            .env_remove("DEPOT_URL")
            .env_remove("DEPOT_TOKEN")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Ran {
        self.run_with(args, None)
    }

    pub fn run_with(&self, args: &[&str], stdin: Option<&str>) -> Ran {
        use std::io::Write;
        let mut cmd = self.command(args);
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut pipe = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            pipe.write_all(s.as_bytes()).unwrap();
        }
        drop(pipe);
        let out = child.wait_with_output().unwrap();
        let ran = Ran {
            ok: out.status.success(),
            out: String::from_utf8_lossy(&out.stdout).into_owned(),
            err: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        assert!(!ran.err.contains('\u{1b}'), "no ANSI codes off a terminal: {}", ran.err);
        ran
    }

    /// Runs a command that must succeed.
    pub fn ok(&self, args: &[&str]) -> Ran {
        let ran = self.run(args);
        assert!(ran.ok, "depot {args:?} failed:\n{}\n{}", ran.out, ran.err);
        ran
    }

    /// Runs a command that must fail, and answers its standard error.
    pub fn fails(&self, args: &[&str]) -> String {
        let ran = self.run(args);
        assert!(!ran.ok, "depot {args:?} should have failed:\n{}", ran.out);
        assert!(ran.err.lines().last().is_some_and(|l| l.starts_with("error: ")), "{}", ran.err);
        ran.err
    }

    pub fn login(&self, base: &str, user: &str, password: &str) {
        let ran = self.run_with(&["login", base, "--user", user, "--password-stdin"], Some(&format!("{password}\n")));
        assert!(ran.ok, "login failed: {}", ran.err);
    }

    pub fn write(&self, name: &str, bytes: &[u8]) -> String {
        std::fs::write(self.dir().join(name), bytes).unwrap();
        name.to_string()
    }

    pub fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir().join(name)).unwrap()
    }
}

/// A chart as a `.tar` (so its size stays what `pad` makes it): RDS.yaml and noise.
pub fn big_chart(code: &str, version: &str, pad: usize) -> (String, Vec<u8>) {
    let files = [
        (format!("{code}/RDS.yaml"), crate::rds::rds_yaml(code, version).into_bytes()),
        (format!("{code}/pad.bin"), payload(pad, 11)),
    ];
    let files: Vec<(&str, Vec<u8>)> = files.iter().map(|(p, b)| (p.as_str(), b.clone())).collect();
    (format!("{code}-{version}.tar"), crate::rds::tar_of(&files))
}

async fn setup(api: &Api) {
    let (s, b) = api.post("/repository/api/project/create", json!({"name": "demo"})).await;
    data(s, &b);
    let (s, b) =
        api.post("/repository/api/repo/create", json!({"projectId": "demo", "name": "charts", "type": "RDS"})).await;
    data(s, &b);
}

fn json_of(ran: &Ran) -> Value {
    serde_json::from_str(&ran.out).unwrap_or_else(|e| panic!("{e}: {}", ran.out))
}

/// What every backend must show: login, push (one PUT and parts), the 409 and --force,
/// ls as a table and as JSON, pull of the latest and of a version, downloads counted, a
/// resumed pull, a corrupt partial file refused, wrong token and missing repository
/// messages, logout.
async fn round_trip(base: &str, api: &Api, user: &User) {
    setup(api).await;
    user.login(base, "admin", ADMIN_PASSWORD);
    let config = std::fs::read_to_string(user.config()).unwrap();
    assert!(config.contains("token = \"") && config.contains(base), "{config}");
    assert!(!config.contains(ADMIN_PASSWORD), "the password is never stored");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(user.config()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the configuration is the user's alone");
    }

    // A small chart: one PUT.
    let (small, bytes) = crate::rds::chart("mysql", "0.1.0", "tgz");
    user.write(&small, &bytes);
    let ran = user.ok(&["push", "demo/charts", &small]);
    assert!(ran.out.contains(&format!("pushed {small} to demo/charts (sha256:{})", sha256_hex(&bytes))), "{}", ran.out);
    // Over 32 MiB: three parts, sent at once; over DEPOT_VERIFY_INLINE_BYTES too, so the
    // client polls while the server verifies.
    let (big, big_bytes) = big_chart("mysql", "0.2.0", 34 << 20);
    user.write(&big, &big_bytes);
    let ran = user.ok(&["push", "demo/charts", &big, "--parallel", "3"]);
    assert!(ran.err.contains("verifying mysql-0.2.0.tar on the server (session "), "{}", ran.err);
    assert!(ran.err.contains("uploading mysql-0.2.0.tar: 100%"), "plain progress lines: {}", ran.err);
    let (s, b) = api.get("/repository/api/version/page/demo/charts?packageKey=rds://mysql&version=0.2.0").await;
    let v = &data(s, &b)["records"][0];
    assert_eq!(
        (v["sha256"].as_str(), v["size"].as_u64()),
        (Some(sha256_hex(&big_bytes).as_str()), Some(big_bytes.len() as u64))
    );

    // The same version again: the server's message, its trace id, and the way out.
    let err = user.fails(&["push", "demo/charts", &small]);
    assert!(err.contains("already exists") && err.contains("HTTP 409, trace id ") && err.contains("--force"), "{err}");
    user.ok(&["push", "demo/charts", &small, "--force", "-q"]);
    let err = user.fails(&["push", "demo/charts", "nothing-here.tgz"]);
    assert!(err.contains("nothing-here.tgz"), "{err}");

    // ls: packages, then versions, as tables and as JSON.
    let ran = user.ok(&["ls", "demo/charts"]);
    let lines: Vec<&str> = ran.out.lines().collect();
    assert_eq!(lines[0].split_whitespace().collect::<Vec<_>>(), ["NAME", "KEY", "LATEST", "VERSIONS", "DOWNLOADS"]);
    assert_eq!(lines[1].split_whitespace().collect::<Vec<_>>(), ["mysql", "rds://mysql", "0.2.0", "2", "0"]);
    let ran = user.ok(&["ls", "demo/charts", "mysql", "--json"]);
    let versions = json_of(&ran);
    let sizes: Vec<(String, u64)> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_str().unwrap().into(), v["size"].as_u64().unwrap()))
        .collect();
    assert!(
        sizes.contains(&("0.1.0".into(), bytes.len() as u64))
            && sizes.contains(&("0.2.0".into(), big_bytes.len() as u64)),
        "{sizes:?}"
    );
    let ran = user.ok(&["ls", "demo/charts", "rds://mysql"]);
    assert!(ran.out.starts_with("VERSION  STAGE  SIZE") && ran.out.contains("0.2.0"), "{}", ran.out);

    // pull: the latest, then a version into a directory; both counted.
    let ran = user.ok(&["pull", "demo/charts", "mysql"]);
    assert!(ran.out.contains("pulled rds://mysql 0.2.0 to mysql-0.2.0.tar"), "{}", ran.out);
    assert!(user.read("mysql-0.2.0.tar") == big_bytes);
    std::fs::create_dir(user.dir().join("into")).unwrap();
    user.ok(&["pull", "demo/charts", "mysql@0.1.0", "-o", "into"]);
    assert!(user.read("into/mysql-0.1.0.tgz") == bytes);
    let ran = user.ok(&["ls", "demo/charts", "--json"]);
    assert_eq!(json_of(&ran)[0]["downloads"], 2);

    // An interrupted pull (its partial file) resumes with a Range request.
    user.write("resumed.tar.depot-partial", &big_bytes[..10 << 20]);
    let ran = user.ok(&["pull", "demo/charts", "mysql@0.2.0", "-o", "resumed.tar"]);
    assert!(
        ran.err.contains(&format!("resuming mysql-0.2.0.tar at byte {} of {}", 10 << 20, big_bytes.len())),
        "{}",
        ran.err
    );
    assert!(user.read("resumed.tar") == big_bytes);
    assert!(!user.dir().join("resumed.tar.depot-partial").exists());
    // A whole partial file (a pull stopped before its rename) is checked and kept, with
    // no download; a whole one that is wrong is started over.
    user.write("whole.tar.depot-partial", &big_bytes);
    let ran = user.ok(&["pull", "demo/charts", "mysql@0.2.0", "-o", "whole.tar"]);
    assert!(!ran.err.contains("downloading"), "nothing downloaded: {}", ran.err);
    assert!(user.read("whole.tar") == big_bytes);
    let mut wrong = big_bytes.clone();
    wrong[7] ^= 1;
    user.write("again.tar.depot-partial", &wrong);
    user.ok(&["pull", "demo/charts", "mysql@0.2.0", "-o", "again.tar", "-q"]);
    assert!(user.read("again.tar") == big_bytes);
    // A partial file that is not what the registry holds: the digest check refuses the
    // whole, and nothing is kept.
    user.write("bad.tar.depot-partial", &vec![0u8; 1 << 20]);
    let err = user.fails(&["pull", "demo/charts", "mysql@0.2.0", "-o", "bad.tar"]);
    assert!(err.contains("is corrupt") && err.contains(&sha256_hex(&big_bytes)), "{err}");
    assert!(!user.dir().join("bad.tar").exists() && !user.dir().join("bad.tar.depot-partial").exists());

    // Clear messages for a missing repository, package or version, and a wrong token.
    let err = user.fails(&["ls", "demo/nope"]);
    assert!(err.contains("repository demo/nope not found") && err.contains("HTTP 404"), "{err}");
    let err = user.fails(&["pull", "demo/charts", "nope"]);
    assert!(err.contains("package rds://nope not found in demo/charts"), "{err}");
    let err = user.fails(&["pull", "demo/charts", "mysql@9.9.9"]);
    assert!(err.contains("version 9.9.9 of rds://mysql not found"), "{err}");
    let mut other = User::new();
    other.env = vec![("DEPOT_URL".into(), base.into()), ("DEPOT_TOKEN".into(), "dpt_not-a-token".into())];
    let err = other.fails(&["ls", "demo/charts"]);
    assert!(err.contains("HTTP 401") && err.contains("check the token"), "{err}");
    let err = User::new().fails(&["ls", "demo/charts"]);
    assert!(err.contains("not logged in: run `depot login URL`"), "{err}");
    let err =
        User::new().run_with(&["login", base, "--user", "admin", "--password-stdin"], Some("wrong-password\n")).err;
    assert!(err.contains("HTTP 401") && err.contains("check the user and password"), "{err}");

    // DEPOT_URL and DEPOT_TOKEN instead of a login, as CI uses them.
    let (s, b) = api.post("/auth/api/user/token/admin/ci", json!({})).await;
    let token = data(s, &b)["id"].as_str().unwrap().to_string();
    let mut ci = User::new();
    ci.env = vec![("DEPOT_URL".into(), base.into()), ("DEPOT_TOKEN".into(), token)];
    assert!(ci.ok(&["ls", "demo/charts"]).out.contains("rds://mysql"));

    // logout: the token is gone on the server, then the file.
    let stored: toml::Value = toml::from_str(&config).unwrap();
    let token = stored["token"].as_str().unwrap().to_string();
    let ran = user.ok(&["logout"]);
    assert!(ran.out.contains("logged out of"), "{}", ran.out);
    assert!(!user.config().exists());
    let res =
        api.http.get(format!("{base}/repository/api/repo/info/demo/charts")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 401, "the logged-out token no longer works");
    assert!(user.ok(&["logout"]).out.contains("not logged in"));
}

#[test]
fn every_client_command_has_help_with_an_example() {
    let user = User::new();
    for cmd in ["login", "logout", "push", "pull", "ls"] {
        let ran = user.ok(&[cmd, "--help"]);
        assert!(ran.out.contains("Example") && ran.out.contains(&format!("depot {cmd}")), "{cmd}: {}", ran.out);
    }
    let ran = user.ok(&["--help"]);
    assert!(ran.out.contains("depot login, logout, push, pull, ls"), "{}", ran.out);
}

#[tokio::test]
async fn client_on_embedded_storage() {
    // Every blob a file of its own (DEPOT_INLINE_BLOB_BYTES=0), so that one can be spoiled
    // on disk while the server runs.
    let (dir, server, api) = embedded(&[("DEPOT_VERIFY_INLINE_BYTES", "1048576"), ("DEPOT_INLINE_BLOB_BYTES", "0")]);
    let user = User::new();
    round_trip(&server.base, &api, &user).await;

    // A download whose stored bytes went bad is refused by the client's digest check.
    let (bytes, bad) = push_one_to_spoil(&server.base, &user);
    let stored = find_file(dir.path(), &sha256_hex(&bytes)).expect("the stored blob");
    std::fs::write(&stored, &bad).unwrap();
    let err = user.fails(&["pull", "demo/charts", "redis", "-o", "redis.tgz"]);
    assert!(err.contains("is corrupt"), "{err}");
    assert!(!user.dir().join("redis.tgz").exists());

    other_surfaces(&server.base, &api, &user).await;
}

#[tokio::test]
async fn client_on_aws_storage() {
    let (server, _table, bucket) = aws_server_with_table("cli", &[("DEPOT_VERIFY_INLINE_BYTES", "1048576")]);
    let api = Api::new(&server.base);
    let user = User::new();
    round_trip(&server.base, &api, &user).await;

    // The object in S3 replaced behind depot's back: the client's check refuses it.
    let (bytes, bad) = push_one_to_spoil(&server.base, &user);
    let sdk = depot_core::http::sdk_config().await;
    let key = depot_core::store::content_key(&sha256_hex(&bytes));
    aws_sdk_s3::Client::new(&sdk).put_object().bucket(&bucket).key(&key).body(bad.into()).send().await.unwrap();
    let err = user.fails(&["pull", "demo/charts", "redis", "-o", "redis.tgz"]);
    assert!(err.contains("is corrupt"), "{err}");
}

/// Logs in again and pushes a chart: its bytes, and the same with one byte changed.
fn push_one_to_spoil(base: &str, user: &User) -> (Vec<u8>, Vec<u8>) {
    user.login(base, "admin", ADMIN_PASSWORD);
    let (file, bytes) = crate::rds::chart("redis", "1.0.0", "tgz");
    user.write(&file, &bytes);
    user.ok(&["push", "demo/charts", &file, "-q"]);
    let mut bad = bytes.clone();
    bad[100] ^= 0xff;
    (bytes, bad)
}

fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()? {
        let e = e.ok()?;
        let p = e.path();
        if p.is_dir() {
            if let Some(f) = find_file(&p, name) {
                return Some(f);
            }
        } else if e.file_name() == name {
            return Some(p);
        }
    }
    None
}

/// Pushes into the OCP, APS and strux repositories, each through its own route.
async fn other_surfaces(base: &str, api: &Api, user: &User) {
    // Each of these repositories is created by its surface's first signed-in request.
    let admin = api.http.clone();
    admin
        .get(format!("{base}/api/v2/software-packages"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap();
    admin.get(format!("{base}/aps/")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().await.unwrap();
    let form = reqwest::multipart::Form::new().text("username", "admin").text("pkgName", "x").text("version", "1");
    admin.get(format!("{base}/exists-package")).multipart(form).send().await.unwrap();

    // RPM, through OCP's upload route; the same file again is OCP's 200.
    let (rpm, _, ty, ..) = crate::ocp::FIXTURES[2];
    user.write(rpm, &crate::ocp::fixture(rpm));
    user.ok(&["push", "ocp/software-packages", rpm, "-q"]);
    user.ok(&["push", "ocp/software-packages", rpm, "-q"]);
    let res = admin
        .get(format!("{base}/api/v2/software-packages"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap();
    let list: Value = res.json().await.unwrap();
    assert_eq!(list["data"]["contents"][0]["type"], ty, "{list}");
    assert_eq!(list["data"]["page"]["totalElements"], 1);
    let err = user.fails(&["push", "ocp/software-packages", &user.write("x.tgz", b"x")]);
    assert!(err.contains("an RPM repository takes .rpm files"), "{err}");

    // APS, through the catalog's form.
    let pkg = crate::aps::Pkg::v2("Blog", "1.0", "Packager");
    user.write("blog.app.zip", &pkg.zip());
    user.ok(&["push", "aps/catalog", "blog.app.zip", "-q"]);
    let ran = user.ok(&["ls", "aps/catalog", "--json"]);
    assert_eq!(json_of(&ran)[0]["key"], "aps://Example/Blog");

    // STRUX: a directory tree, every file staged, then one upload form.
    let tree = user.dir().join("tee");
    std::fs::create_dir_all(tree.join("dir1/deeper")).unwrap();
    std::fs::write(tree.join("file0.txt"), b"zero\n").unwrap();
    std::fs::write(tree.join("dir1/file1.txt"), b"one\n").unwrap();
    std::fs::write(tree.join("dir1/deeper/blob.bin"), payload(100_000, 4)).unwrap();
    let ran = user.ok(&["push", "strux/packages", "tee", "--name", "tee", "--version", "1.0.0", "-q"]);
    assert!(ran.out.contains("as strux://admin/tee"), "{}", ran.out);
    let form = crate::strux::GoForm::new().text("username", "admin").text("pkgName", "tee").text("version", "1.0.0");
    let got = crate::strux::send(base, "GET", "/download-package", form).await;
    assert_eq!(got.status, 200);
    let body = String::from_utf8_lossy(&got.body).into_owned();
    assert!(
        body.contains("zero\n") && body.contains("one\n") && body.contains("tee/dir1/deeper"),
        "the whole tree came back"
    );
    let err = user.fails(&["push", "strux/packages", "tee", "--name", "tee", "--version", "1.0.0"]);
    assert!(err.contains("HTTP 409"), "{err}");
    let err = user.fails(&["push", "strux/packages", "tee"]);
    assert!(err.contains("--name"), "{err}");
}
