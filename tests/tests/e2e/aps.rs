//! The APS catalog as packagers and controllers use it: real APS 2.0 and 1.2 packages
//! built here (a zip with `APP-META.xml`, `APP-LIST.xml`, `htdocs/` and `scripts/`),
//! the packager tool's and the catalog form's uploads with every status of the spec's
//! tables, lookups with 300/302/303/404, approval and publishing, index pages and
//! Atom feeds, and hostile packages.
use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::harness::{data, embedded, Api, ADMIN_PASSWORD};

pub const NS_2: &str = "http://aps-standard.org/ns/2";
pub const NS_1: &str = "http://apstandard.com/ns/1";

/// A package to build: APS 2.0 by default.
#[derive(Clone)]
pub struct Pkg {
    pub ns: &'static str,
    pub aps_version: Option<&'static str>,
    pub app: String,
    pub version: String,
    pub release: String,
    pub vendor: String,
    pub packager: String,
    /// Extra elements of `APP-META.xml` (requirements).
    pub extra: String,
    pub files: Vec<(String, Vec<u8>)>,
    /// A signature with this (base64) certificate in `APP-LIST.xml`.
    pub certificate: Option<String>,
}

impl Pkg {
    pub fn v2(app: &str, version: &str, packager: &str) -> Pkg {
        Pkg {
            ns: NS_2,
            aps_version: Some("2.0"),
            app: app.into(),
            version: version.into(),
            release: "1".into(),
            vendor: "Example".into(),
            packager: packager.into(),
            extra: String::new(),
            files: vec![
                ("htdocs/index.php".into(), b"<?php echo 'hello';".to_vec()),
                ("htdocs/img/logo.txt".into(), vec![b'x'; 3000]),
                ("scripts/configure".into(), b"#!/bin/sh\necho configured\n".to_vec()),
            ],
            certificate: None,
        }
    }

    pub fn v12(app: &str, version: &str, packager: &str) -> Pkg {
        Pkg { ns: NS_1, aps_version: Some("1.2"), ..Pkg::v2(app, version, packager) }
    }

    pub fn meta(&self) -> Vec<u8> {
        let v = self.aps_version.map(|v| format!(" version=\"{v}\"")).unwrap_or_default();
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<application xmlns=\"{}\"{v}><id>http://example.com/{}</id><name>{}</name><version>{}</version><release>{}</release><vendor><name>{}</name><homepage>http://example.com</homepage></vendor><packager><name>{}</name></packager><summary>{} for tests</summary>{}</application>\n",
            self.ns, self.app, self.app, self.version, self.release, self.vendor, self.packager, self.app, self.extra
        )
        .into_bytes()
    }

    /// `APP-LIST.xml` for these files.
    pub fn list(&self, files: &[(String, Vec<u8>)]) -> Vec<u8> {
        let mut out = String::from("<?xml version=\"1.0\"?>\n<files xmlns=\"http://apstandard.com/ns/1\">");
        for (name, bytes) in files {
            out.push_str(&format!(r#"<file name="{name}" size="{}" sha256="{}"/>"#, bytes.len(), hex::encode(Sha256::digest(bytes))));
        }
        if let Some(c) = &self.certificate {
            out.push_str(&format!(
                r#"<Signature xmlns="http://www.w3.org/2000/09/xmldsig#"><KeyInfo><X509Data><X509Certificate>{c}</X509Certificate></X509Data></KeyInfo></Signature>"#
            ));
        }
        out.push_str("</files>\n");
        out.into_bytes()
    }

    /// Every file of the package but `APP-LIST.xml`.
    pub fn contents(&self) -> Vec<(String, Vec<u8>)> {
        let mut all = vec![("APP-META.xml".to_string(), self.meta())];
        all.extend(self.files.iter().cloned());
        all
    }

    pub fn zip(&self) -> Vec<u8> {
        let contents = self.contents();
        let list = self.list(&contents);
        zip_of(contents.into_iter().chain([("APP-LIST.xml".to_string(), list)]))
    }

    pub fn app_version(&self) -> String {
        format!("{}-{}", self.version, self.release)
    }
}

pub fn zip_of(files: impl IntoIterator<Item = (String, Vec<u8>)>) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(vec![]));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in files {
        z.start_file(name, opts).unwrap();
        z.write_all(&bytes).unwrap();
    }
    z.finish().unwrap().into_inner()
}

/// A client of the catalog that does not follow redirects.
#[derive(Clone)]
pub struct Catalog {
    pub http: reqwest::Client,
    pub base: String,
}

pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn location(&self) -> String {
        self.headers.get("location").map(|l| l.to_str().unwrap().to_string()).unwrap_or_default()
    }
}

impl Catalog {
    pub fn new(base: &str) -> Catalog {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).timeout(Duration::from_secs(120)).build().unwrap();
        Catalog { http, base: base.to_string() }
    }

    pub async fn answer(req: reqwest::RequestBuilder) -> Answer {
        let res = req.send().await.unwrap();
        Answer { status: res.status().as_u16(), headers: res.headers().clone(), body: res.bytes().await.unwrap().to_vec() }
    }

    pub async fn get(&self, path: &str) -> Answer {
        Self::answer(self.http.get(format!("{}{path}", self.base))).await
    }

    /// A URL depot answered with, relative to this client's base (cargo lambda watch
    /// serves the function under a prefix that depot's URLs do not name).
    pub async fn follow(&self, url: &str) -> Answer {
        let path = url.split_once("://").map(|(_, rest)| &rest[rest.find('/').unwrap_or(rest.len())..]).unwrap_or(url);
        self.get(path).await
    }

    /// The packager tool's upload: text fields with `prefix`, then the file.
    pub async fn packager_upload(&self, prefix: &str, user: &str, password: &str, fields: &[(&str, &str)], file: Vec<u8>) -> Answer {
        let mut form = reqwest::multipart::Form::new();
        if !prefix.is_empty() {
            form = form.text("aps_upload_param_prefix", prefix.to_string());
        }
        form = form.text(format!("{prefix}username"), user.to_string()).text(format!("{prefix}password"), password.to_string());
        for (k, v) in fields {
            form = form.text(format!("{prefix}{k}"), v.to_string());
        }
        form = form.part(format!("{prefix}file"), reqwest::multipart::Part::bytes(file).file_name("package.app.zip"));
        Self::answer(self.http.post(format!("{}/aps/packager/upload/", self.base)).multipart(form)).await
    }

    /// The catalog form's upload, with HTTP Basic credentials (none for `None`).
    pub async fn form_upload(&self, auth: Option<(&str, &str)>, form: reqwest::multipart::Form) -> Answer {
        let mut req = self.http.post(format!("{}/aps/", self.base)).multipart(form);
        if let Some((u, p)) = auth {
            req = req.basic_auth(u, Some(p));
        }
        Self::answer(req).await
    }
}

pub fn package_form(zip: Vec<u8>, package_type: &str) -> reqwest::multipart::Form {
    reqwest::multipart::Form::new()
        .text("packageType", package_type.to_string())
        .part("package", reqwest::multipart::Part::bytes(zip).file_name("p.app.zip"))
}

const ADMIN: (&str, &str) = ("admin", ADMIN_PASSWORD);

/// The path of a lookup of `pkg` under `aps` with `query`.
fn lookup(aps: &str, pkg: &Pkg, kind: &str, query: &str) -> String {
    format!("/aps/{aps}/{}/{}/{}.{kind}?{query}", pkg.vendor, pkg.app, pkg.app_version())
}

fn full(pkg: &Pkg, arch: &str) -> String {
    format!("packager={}&arch={arch}&type=APS&platform=undefined&os=undefined", pkg.packager)
}

/// Checks that a document is well-formed XML and returns it.
fn well_formed(a: &Answer) -> String {
    let text = a.text();
    let mut reader = quick_xml::Reader::from_str(&text);
    let mut depth = 0i32;
    loop {
        match reader.read_event().unwrap_or_else(|e| panic!("not well-formed ({e}): {text}")) {
            quick_xml::events::Event::Start(_) => depth += 1,
            quick_xml::events::Event::End(_) => depth -= 1,
            quick_xml::events::Event::Eof => break,
            _ => {}
        }
    }
    assert_eq!(depth, 0, "{text}");
    text
}

fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

async fn create_user(api: &Api, id: &str, pwd: &str) {
    let (s, b) = api.post("/auth/api/user/create", json!({"userId": id, "name": id, "pwd": pwd})).await;
    data(s, &b);
}

async fn grant(api: &Api, user: &str, actions: &[&str]) {
    let body = json!({"permName": format!("aps-{user}"), "projectId": "aps", "resourceType": "REPO", "repos": ["catalog"], "users": [{"id": user, "action": actions}]});
    let (s, b) = api.post("/auth/api/permission/create", body).await;
    data(s, &b);
}

/// The version page of a package in the management API.
async fn versions(api: &Api, pkg: &Pkg) -> Vec<Value> {
    let (s, b) = api.get(&format!("/repository/api/version/page/aps/catalog?packageKey=aps://{}/{}", pkg.vendor, pkg.app)).await;
    data(s, &b)["records"].as_array().cloned().unwrap_or_default()
}

/// Uploads through the packager tool, published, and checks the 200.
async fn publish(cat: &Catalog, pkg: &Pkg) {
    let a = cat.packager_upload("", ADMIN.0, ADMIN.1, &[("approve", "true"), ("publish", "true")], pkg.zip()).await;
    assert_eq!(a.status, 200, "{}", a.text());
}

/// The round trip on either backend: both uploads, the lookups, a download, the
/// management API, a delete.
async fn round_trip(base: &str) {
    let cat = Catalog::new(base);
    let api = Api::new(base);
    let wp = Pkg::v2("WordPress", "6.1", "pack.example.com");
    let wp_x86 = Pkg { extra: "<requirements><platform><arch>x86_64</arch></platform></requirements>".into(), ..wp.clone() };
    let wp12 = Pkg::v12("WordPress", "6.1", "other.example.com");

    // The packager tool, with a prefix.
    let a = cat.packager_upload("aps_", ADMIN.0, ADMIN.1, &[("approve", "true"), ("publish", "true"), ("commercialName", "WP")], wp.zip()).await;
    assert_eq!(a.status, 200, "{}", a.text());
    // The same package again: the tool expects a 500 with the reason.
    let a = cat.packager_upload("aps_", ADMIN.0, ADMIN.1, &[("publish", "true")], wp.zip()).await;
    assert_eq!(a.status, 500, "{}", a.text());
    assert!(a.text().contains("already exists"), "{}", a.text());
    // The catalog form: 201 with the package index in Location.
    let a = cat.form_upload(Some(ADMIN), package_form(wp12.zip(), "APS")).await;
    assert_eq!(a.status, 201, "{}", a.text());
    assert!(a.location().ends_with("/aps/1.2/Example/WordPress/6.1-1/?packager=other.example.com"), "{}", a.location());
    let index = cat.follow(&a.location()).await;
    assert_eq!(index.status, 200, "{}", index.text());
    assert!(well_formed(&index).contains("<dd class=\"packager\">other.example.com</dd>"), "{}", index.text());
    let a = cat.form_upload(Some(ADMIN), package_form(wp_x86.zip(), "aps")).await;
    assert_eq!(a.status, 201, "{}", a.text());

    // Two 2.0 packages by pack.example.com: 300, each with its fully specified URL.
    let a = cat.get(&lookup("2.0", &wp, "aps", "packager=pack.example.com")).await;
    assert_eq!(a.status, 300, "{}", a.text());
    let list = well_formed(&a);
    assert_eq!(count(&list, "class=\"package\""), 2, "{list}");
    assert!(list.contains(&lookup("2.0", &wp, "aps", &full(&wp, "x86_64")).replace('&', "&amp;")), "{list}");
    // Narrowed by arch, any case: one, but not fully specified: 303 naming every argument.
    let a = cat.get(&lookup("all", &wp, "aps", "packager=PACK.example.com&arch=X86_64")).await;
    assert_eq!(a.status, 303, "{}", a.text());
    assert!(a.location().ends_with(&lookup("2.0", &wp, "aps", &full(&wp, "x86_64"))), "{}", a.location());
    // Fully specified: 302 to the stored bits, which are the package's, byte for byte.
    let a = cat.follow(&a.location()).await;
    assert_eq!(a.status, 302, "{}", a.text());
    let bits = reqwest::get(if a.location().starts_with('/') { format!("{base}{}", a.location()) } else { a.location() }).await.unwrap();
    assert_eq!(bits.status().as_u16(), 200);
    assert!(bits.bytes().await.unwrap().to_vec() == wp_x86.zip(), "the stored bits are the uploaded package");
    // Case variations of every argument, on the 1.2 package.
    let q = "packager=OTHER.example.com&arch=UNDEFINED&type=aps&platform=Undefined&os=undefined";
    assert_eq!(cat.get(&lookup("1.2", &wp12, "aps", q)).await.status, 302);
    assert_eq!(cat.get(&lookup("all", &wp12, "aps", q)).await.status, 302);
    // 404: another APS version, another type, an unknown version or packager.
    for path in [
        lookup("2.0", &wp12, "aps", q),
        lookup("1", &wp12, "aps", q),
        lookup("1.2", &wp12, "aps", &q.replace("type=aps", "type=PVT")),
        lookup("1.2", &wp12, "aps", "packager=nobody"),
        format!("/aps/1.2/Example/WordPress/6.1-9.aps?{q}"),
        format!("/aps/3.0/Example/WordPress/6.1-1.aps?{q}"),
        format!("/aps/1.2/Example/Nothing/6.1-1.aps?{q}"),
    ] {
        let a = cat.get(&path).await;
        assert_eq!(a.status, 404, "{path}: {}", a.text());
        assert!(a.text().contains("trace id"), "{}", a.text());
    }
    // packager is required.
    let a = cat.get(&lookup("2.0", &wp, "aps", "arch=x86_64")).await;
    assert_eq!(a.status, 400, "{}", a.text());
    assert!(a.text().contains("packager"), "{}", a.text());
    // .meta is APP-META.xml; .certificate is a 404 for an unsigned package.
    let a = cat.get(&lookup("1.2", &wp12, "meta", q)).await;
    assert_eq!((a.status, a.body.clone()), (200, wp12.meta()));
    let a = cat.get(&lookup("1.2", &wp12, "certificate", q)).await;
    assert_eq!(a.status, 404, "{}", a.text());
    assert!(a.text().contains("not signed"), "{}", a.text());

    // The one domain: the versions are in the management API, with the download counted.
    let vs = versions(&api, &wp).await;
    let names: Vec<&str> = vs.iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 3, "{vs:?}");
    for n in ["6.1-1", "6.1-1_2", "6.1-1_3"] {
        assert!(names.contains(&n), "{names:?}");
    }
    let x86 = vs.iter().find(|v| v["metadata"]["arch"] == "x86_64").unwrap();
    assert_eq!(x86["downloads"], 1, "{x86}");
    assert_eq!(x86["stageTag"], json!(["@prerelease", "@release"]), "{x86}");
    // A delete there takes it out of the lookups at once.
    let name = x86["name"].as_str().unwrap();
    let (s, b) = api.delete(&format!("/repository/api/version/delete/aps/catalog?packageKey=aps://Example/WordPress&version={name}")).await;
    data(s, &b);
    let a = cat.get(&lookup("2.0", &wp, "aps", "packager=pack.example.com")).await;
    assert_eq!(a.status, 303, "one package is left: {}", a.text());
    assert_eq!(cat.get(&lookup("2.0", &wp, "aps", &full(&wp, "x86_64"))).await.status, 404);
    // And out of the pages and feeds.
    let feed = well_formed(&cat.get("/aps/2.0/Example/WordPress.atom").await);
    assert!(feed.contains("<opensearch:totalResults>1</opensearch:totalResults>") && !feed.contains("x86_64"), "{feed}");
    let index = well_formed(&cat.get("/aps/2.0/Example/WordPress/6.1-1/?packager=pack.example.com").await);
    assert_eq!(count(&index, "class=\"package\""), 1, "{index}");
}

#[tokio::test]
async fn aps_round_trip_embedded() {
    let (_dir, server, _) = embedded(&[]);
    round_trip(&server.base).await;
}

#[tokio::test]
async fn aps_round_trip_aws() {
    crate::harness::aws_endpoint();
    let (server, _) = crate::harness::aws_server("aps", &[]);
    round_trip(&server.base).await;
}

/// Every status of the spec's two upload tables, and the methods the routes refuse.
#[tokio::test]
async fn uploads_answer_every_status_of_the_spec() {
    let (_dir, server, api) = embedded(&[]);
    let cat = Catalog::new(&server.base);
    let pkg = Pkg::v2("Blog", "1.0", "pack.example.com");
    // The first signed-in request creates the catalog; grants need it.
    assert_eq!(Catalog::answer(cat.http.get(format!("{}/aps/", cat.base)).basic_auth(ADMIN.0, Some(ADMIN.1))).await.status, 200);
    create_user(&api, "writer", "writer-password").await;
    create_user(&api, "reader", "reader-password").await;
    grant(&api, "writer", &["WRITE"]).await;
    grant(&api, "reader", &["READ"]).await;

    // Packager upload: 401 with WWW-Authenticate for wrong or missing credentials.
    let a = cat.packager_upload("", "writer", "wrong-password", &[], pkg.zip()).await;
    assert_eq!(a.status, 401, "{}", a.text());
    assert!(a.headers.contains_key("www-authenticate"));
    let form = reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(pkg.zip()).file_name("p.app.zip"));
    let a = Catalog::answer(cat.http.post(format!("{}/aps/packager/upload/", cat.base)).multipart(form)).await;
    assert_eq!(a.status, 401, "{}", a.text());
    // Credentials after the file are refused before anything is stored.
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(pkg.zip()).file_name("p.app.zip"))
        .text("username", "writer")
        .text("password", "writer-password");
    let a = Catalog::answer(cat.http.post(format!("{}/aps/packager/upload/", cat.base)).multipart(form)).await;
    assert_eq!(a.status, 401, "{}", a.text());
    assert!(a.text().contains("before"), "{}", a.text());
    // 403 without WRITE.
    let a = cat.packager_upload("", "reader", "reader-password", &[], pkg.zip()).await;
    assert_eq!(a.status, 403, "{}", a.text());
    // 400 for a bad form.
    let a = cat.packager_upload("", "writer", "writer-password", &[("approve", "maybe")], pkg.zip()).await;
    assert_eq!(a.status, 400, "{}", a.text());
    let form = reqwest::multipart::Form::new().text("username", "writer").text("password", "writer-password");
    let a = Catalog::answer(cat.http.post(format!("{}/aps/packager/upload/", cat.base)).multipart(form)).await;
    assert_eq!(a.status, 400, "{}", a.text());
    assert!(a.text().contains("'file'"), "{}", a.text());
    // 500 with the reason for a package that fails validation.
    let no_list = zip_of(pkg.contents());
    let a = cat.packager_upload("", "writer", "writer-password", &[], no_list).await;
    assert_eq!(a.status, 500, "{}", a.text());
    assert!(a.text().contains("APP-LIST.xml"), "{}", a.text());
    // 200: stored, but approve and publish need MANAGE: unapproved and unpublished.
    let a = cat.packager_upload("", "writer", "writer-password", &[("approve", "true"), ("publish", "true")], pkg.zip()).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(a.text().contains("approved false, published false"), "{}", a.text());
    let vs = versions(&api.as_user("reader", "reader-password"), &pkg).await;
    assert_eq!(vs.len(), 1, "READ sees it in the management API");
    assert_eq!(vs[0]["stageTag"], json!([]), "{}", vs[0]);
    // 405 for any method but POST, with Allow.
    for method in ["GET", "PUT", "DELETE"] {
        let a = Catalog::answer(cat.http.request(method.parse().unwrap(), format!("{}/aps/packager/upload/", cat.base))).await;
        assert_eq!(a.status, 405, "{method}");
        assert_eq!(a.headers["allow"], "POST", "{method}");
        assert!(a.text().contains("POST"), "{}", a.text());
    }

    // The form: 401 with WWW-Authenticate, 403 without WRITE.
    let a = cat.form_upload(None, package_form(pkg.zip(), "APS")).await;
    assert_eq!(a.status, 401, "{}", a.text());
    assert!(a.headers.contains_key("www-authenticate"));
    let a = cat.form_upload(Some(("reader", "reader-password")), package_form(pkg.zip(), "APS")).await;
    assert_eq!(a.status, 403, "{}", a.text());
    // 400: no packageType, a bad one, both package and meta, meta without url.
    let other = Pkg::v2("Shop", "2.0", "pack.example.com");
    let no_type = reqwest::multipart::Form::new().part("package", reqwest::multipart::Part::bytes(other.zip()).file_name("p.app.zip"));
    let bad_type = package_form(other.zip(), "DEB");
    let both = package_form(other.zip(), "APS").part("meta", reqwest::multipart::Part::bytes(other.meta()).file_name("APP-META.xml")).text("url", "https://example.com/x.app.zip");
    let no_url = reqwest::multipart::Form::new().text("packageType", "APS").part("meta", reqwest::multipart::Part::bytes(other.meta()).file_name("APP-META.xml"));
    let bad_url = no_url_form(&other).text("url", "javascript:alert(1)");
    for (what, form) in [("no type", no_type), ("bad type", bad_type), ("both", both), ("no url", no_url), ("bad url", bad_url)] {
        let a = cat.form_upload(Some(ADMIN), form).await;
        assert_eq!(a.status, 400, "{what}: {}", a.text());
    }
    // 409 for a package that exists.
    let a = cat.form_upload(Some(ADMIN), package_form(pkg.zip(), "APS")).await;
    assert_eq!(a.status, 409, "{}", a.text());
    // 405 for any method but GET and POST.
    for method in ["PUT", "DELETE"] {
        let a = Catalog::answer(cat.http.request(method.parse().unwrap(), format!("{}/aps/", cat.base))).await;
        assert_eq!(a.status, 405, "{method}");
        assert_eq!(a.headers["allow"], "GET, HEAD, POST", "{method}");
    }
    // A GET of the form's route is the repository index holding the form.
    let a = cat.get("/aps/").await;
    assert_eq!(a.status, 200);
    let page = well_formed(&a);
    assert!(page.contains("<body><h1>APS catalog</h1>\n<form id=\"packageSubmitForm\" name=\"packageSubmitForm\""), "{page}");

    // A package registered by its meta and URL: the bits are at the URL.
    let form = no_url_form(&other).text("url", "https://downloads.example.com/shop-2.0-1.app.zip");
    let a = cat.form_upload(Some(ADMIN), form).await;
    assert_eq!(a.status, 201, "{}", a.text());
    let a = cat.get(&lookup("2.0", &other, "aps", &full(&other, "undefined"))).await;
    assert_eq!((a.status, a.location().as_str()), (302, "https://downloads.example.com/shop-2.0-1.app.zip"));
    let a = cat.get(&lookup("2.0", &other, "meta", &full(&other, "undefined"))).await;
    assert_eq!((a.status, a.body.clone()), (200, other.meta()));
}

fn no_url_form(pkg: &Pkg) -> reqwest::multipart::Form {
    reqwest::multipart::Form::new().text("packageType", "APS").part("meta", reqwest::multipart::Part::bytes(pkg.meta()).file_name("APP-META.xml"))
}

/// Hostile packages: each a clear refusal, quickly, with nothing stored.
#[tokio::test]
async fn hostile_packages_are_refused_with_the_reason() {
    let (_dir, server, api) = embedded(&[]);
    let cat = Catalog::new(&server.base);
    let pkg = Pkg::v2("Evil", "1.0", "pack.example.com");
    let with_meta = |meta: Vec<u8>| {
        let mut contents = pkg.contents();
        contents[0].1 = meta;
        let list = pkg.list(&contents);
        zip_of(contents.into_iter().chain([("APP-LIST.xml".to_string(), list)]))
    };
    let bomb = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE application [<!ENTITY a \"aaaaaaaaaa\">{}]><application xmlns=\"{NS_2}\"><name>&e9;</name></application>",
        (1..10).map(|i| format!("<!ENTITY e{i} \"{}\">", format!("&e{};", i - 1).repeat(10).replace("&e0;", "&a;"))).collect::<String>()
    );
    let external = format!("<?xml version=\"1.0\"?><!DOCTYPE a SYSTEM \"file:///etc/passwd\"><application xmlns=\"{NS_2}\"/>");
    let undefined_entity = String::from_utf8(pkg.meta()).unwrap().replace("for tests", "&xxe;");
    let zeros = vec![0u8; 64 << 20];
    let mut tampered = pkg.contents();
    let list = pkg.list(&tampered);
    tampered[1].1.push(b'!');
    let unlisted = {
        let contents = pkg.contents();
        let list = pkg.list(&contents[..2]);
        zip_of(contents.into_iter().chain([("APP-LIST.xml".to_string(), list)]))
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("an entity bomb", with_meta(bomb.into_bytes()), "DTD"),
        ("an external DTD", with_meta(external.into_bytes()), "DTD"),
        ("an undefined entity", with_meta(undefined_entity.into_bytes()), "entity"),
        ("a zip bomb", zip_of(pkg.contents().into_iter().chain([("htdocs/zeros".to_string(), zeros)])), "size"),
        ("a '..' name", zip_of(pkg.contents().into_iter().chain([("../../etc/cron.d/x".to_string(), b"x".to_vec())])), "'..'"),
        ("an absolute name", zip_of(pkg.contents().into_iter().chain([("/etc/passwd".to_string(), b"x".to_vec())])), "absolute"),
        ("a file the list does not name", unlisted, "does not list"),
        ("a file that is not what the list says", zip_of(tampered.into_iter().chain([("APP-LIST.xml".to_string(), list)])), "differs"),
        ("no APP-META.xml", zip_of([("APP-LIST.xml".to_string(), b"<files/>".to_vec())]), "APP-META.xml"),
        ("not a zip", b"not a zip at all".to_vec(), "zip"),
        ("another namespace", with_meta(String::from_utf8(pkg.meta()).unwrap().replace(NS_2, "urn:x").into_bytes()), "namespace"),
    ];
    for (what, zip, why) in cases {
        let started = Instant::now();
        let a = cat.form_upload(Some(ADMIN), package_form(zip.clone(), "APS")).await;
        assert_eq!(a.status, 400, "{what}: {}", a.text());
        assert!(a.text().contains(why), "{what}: {}", a.text());
        assert!(started.elapsed() < Duration::from_secs(1), "{what} took {:?}", started.elapsed());
        // The packager tool gets the same reason with its 500.
        let a = cat.packager_upload("", ADMIN.0, ADMIN.1, &[], zip).await;
        assert_eq!(a.status, 500, "{what}: {}", a.text());
        assert!(a.text().contains(why), "{what}: {}", a.text());
    }
    assert!(versions(&api, &pkg).await.is_empty(), "nothing was stored");
}

/// Approval and publishing: an unpublished package is absent from lookups, pages and
/// feeds for everyone, and appears once published; pages and feeds follow every write.
#[tokio::test]
async fn only_published_packages_are_in_the_catalog() {
    let (_dir, server, api) = embedded(&[]);
    let cat = Catalog::new(&server.base);
    let shown = Pkg::v2("Forum", "3.0", "pack.example.com");
    let hidden = Pkg::v2("Forum", "3.1", "pack.example.com");
    publish(&cat, &shown).await;
    let a = cat.packager_upload("", ADMIN.0, ADMIN.1, &[("approve", "true")], hidden.zip()).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let hidden_path = format!("/aps/2.0/Example/Forum/{}/", hidden.app_version());
    let hidden_lookup = lookup("2.0", &hidden, "aps", &full(&hidden, "undefined"));
    let check = |published: bool| {
        let cat = cat.clone();
        let (hidden_path, hidden_lookup) = (hidden_path.clone(), hidden_lookup.clone());
        async move {
            let versions = well_formed(&cat.get("/aps/2.0/Example/Forum/").await);
            assert_eq!(versions.contains("3.1-1"), published, "{versions}");
            assert_eq!(cat.get(&hidden_path).await.status, if published { 200 } else { 404 });
            assert_eq!(cat.get(&hidden_lookup).await.status, if published { 302 } else { 404 });
            for feed in ["/aps/feed.atom", "/aps/updates.atom", "/aps/2.0.atom", "/aps/2.0/Example.atom", "/aps/2.0/Example/Forum.atom"] {
                let a = cat.get(feed).await;
                assert_eq!(a.status, 200, "{feed}");
                let text = well_formed(&a);
                assert_eq!(text.contains("<aps:version>3.1</aps:version>"), published, "{feed}: {text}");
                let total = if published { 2 } else { 1 };
                assert!(text.contains(&format!("<opensearch:totalResults>{total}</opensearch:totalResults>")), "{feed}: {text}");
            }
        }
    };
    check(false).await;
    // Hidden for the administrator too, in the catalog.
    let a = Catalog::answer(cat.http.get(format!("{}{hidden_path}", cat.base)).basic_auth(ADMIN.0, Some(ADMIN.1))).await;
    assert_eq!(a.status, 404);
    let (s, b) = api.post(&format!("/repository/api/stage/upgrade/aps/catalog?packageKey=aps://Example/Forum&version={}&tag=@release", hidden.app_version()), json!({})).await;
    data(s, &b);
    check(true).await;
    // The newest change first in updates.atom: the package published last.
    let updates = well_formed(&cat.get("/aps/updates.atom").await);
    assert!(updates.find("<aps:version>3.1</aps:version>") < updates.find("<aps:version>3.0</aps:version>"), "{updates}");
}

/// Index pages carry their classes and feed links; feeds page with OpenSearch and RFC
/// 5005 links and validate as Atom 1.0's required elements.
#[tokio::test]
async fn pages_and_feeds_browse_the_catalog() {
    let (_dir, server, _) = embedded(&[]);
    let cat = Catalog::new(&server.base);
    for i in 0..22 {
        publish(&cat, &Pkg::v2("Wiki", &format!("1.{i}"), "pack.example.com")).await;
    }
    publish(&cat, &Pkg::v12("Mail", "5.0", "other.example.com")).await;
    publish(&cat, &Pkg { vendor: "Acme Corp".into(), ..Pkg::v2("Tool", "1.0", "acme.example.com") }).await;

    let root = well_formed(&cat.get("/aps/").await);
    assert_eq!(count(&root, "class=\"repository\""), 5, "{root}");
    assert!(root.contains("id=\"feedLink\""), "{root}");
    let vendors = well_formed(&cat.get("/aps/2.0/").await);
    assert_eq!(count(&vendors, "class=\"vendor\""), 2, "Example and Acme Corp have 2.0 packages: {vendors}");
    assert!(vendors.contains("/aps/2.0/Acme%20Corp/"), "{vendors}");
    let all = well_formed(&cat.get("/aps/all/").await);
    assert_eq!(count(&all, "class=\"vendor\""), 2, "{all}");
    let apps = well_formed(&cat.get("/aps/all/Example/").await);
    assert_eq!(count(&apps, "class=\"application\""), 2, "Wiki and Mail: {apps}");
    let apps = well_formed(&cat.get("/aps/2.0/Example/").await);
    assert_eq!(count(&apps, "class=\"application\""), 1, "Mail is APS 1.2: {apps}");
    let versions = well_formed(&cat.get("/aps/2.0/Example/Wiki/").await);
    assert_eq!(count(&versions, "class=\"version\""), 22, "{versions}");
    assert!(versions.find("1.21-1") < versions.find("1.3-1"), "newest first: {versions}");
    let packagers = well_formed(&cat.get("/aps/2.0/Example/Wiki/1.3-1/").await);
    assert_eq!(count(&packagers, "class=\"packager\""), 1, "{packagers}");
    assert!(packagers.contains("?packager=pack.example.com"), "{packagers}");
    let index = well_formed(&cat.get("/aps/2.0/Example/Wiki/1.3-1/?packager=pack.example.com").await);
    assert!(index.contains("class=\"resources\"") && index.contains("id=\"feedLink\""), "{index}");
    let resources = well_formed(&cat.get("/aps/2.0/Example/Wiki/1.3-1/resources").await);
    assert_eq!((count(&resources, "class=\"aps\""), count(&resources, "class=\"meta\""), count(&resources, "class=\"certificate\"")), (1, 1, 0), "{resources}");
    for missing in ["/aps/2.0/Nobody/", "/aps/2.0/Example/Nothing/", "/aps/2.0/Example/Wiki/9.9-1/", "/aps/9/", "/aps/2.0/Example/Wiki/1.3-1/?packager=nobody"] {
        let a = cat.get(missing).await;
        assert_eq!(a.status, 404, "{missing}: {}", a.text());
    }

    // 24 packages: two pages of 20.
    let one = well_formed(&cat.get("/aps/feed.atom").await);
    for needle in [
        "<feed xmlns=\"http://www.w3.org/2005/Atom\"",
        "xmlns:aps=\"http://apstandard.com/ns/repo/1\"",
        "<opensearch:totalResults>24</opensearch:totalResults>",
        "<opensearch:startIndex>1</opensearch:startIndex>",
        "<opensearch:itemsPerPage>20</opensearch:itemsPerPage>",
        "rel=\"first\"",
        "rel=\"last\" type=\"application/atom+xml\" href=\"",
        "feed.atom?page=2\"/>",
        "rel=\"next\"",
    ] {
        assert!(one.contains(needle), "{needle}: {one}");
    }
    assert_eq!(count(&one, "<entry>"), 20);
    // Atom 1.0: every entry has its id, title, updated and author; the feed too.
    assert_eq!(count(&one, "<id>"), 21);
    assert_eq!(count(&one, "<updated>"), 21);
    assert_eq!(count(&one, "<title>"), 21);
    assert!(count(&one, "<author>") >= 1);
    assert!(one.find("Acme") < one.find("<aps:version>1.0</aps:version>"), "newest first: {one}");
    let two = well_formed(&cat.get("/aps/feed.atom?page=2").await);
    assert_eq!(count(&two, "<entry>"), 4, "{two}");
    assert!(two.contains("<opensearch:startIndex>21</opensearch:startIndex>") && !two.contains("rel=\"next\"") && two.contains("rel=\"previous\""), "{two}");
    assert_eq!(count(&well_formed(&cat.get("/aps/1.2.atom").await), "<entry>"), 1);
    assert_eq!(count(&well_formed(&cat.get("/aps/2.0/Acme%20Corp.atom").await), "<entry>"), 1);
    assert_eq!(count(&well_formed(&cat.get("/aps/2.0/Example/Wiki/1.3-1.atom").await), "<entry>"), 1);
    for bad in ["/aps/feed.atom?page=0", "/aps/feed.atom?page=x"] {
        assert_eq!(cat.get(bad).await.status, 400, "{bad}");
    }
}

/// A signed package's certificate is its `.certificate` resource, as PEM.
#[tokio::test]
async fn a_signed_package_serves_its_certificate() {
    use base64::Engine;
    let (_dir, server, _) = embedded(&[]);
    let cat = Catalog::new(&server.base);
    // A DER SEQUENCE's first bytes, then filler: depot checks the shape, not the signature.
    let der: Vec<u8> = [0x30u8, 0x82, 0x01, 0x28].into_iter().chain((0..296u32).map(|i| (i * 7 % 251) as u8)).collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
    let pkg = Pkg { certificate: Some(b64.clone()), ..Pkg::v2("Signed", "1.0", "pack.example.com") };
    publish(&cat, &pkg).await;
    let a = cat.get(&lookup("2.0", &pkg, "certificate", &full(&pkg, "undefined"))).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let pem = a.text();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n") && pem.ends_with("-----END CERTIFICATE-----\n"), "{pem}");
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    assert_eq!(base64::engine::general_purpose::STANDARD.decode(body).unwrap(), der);
}

/// A multipart body of text fields and one file.
fn multipart(texts: &[(&str, &str)], file: (&str, Vec<u8>)) -> (String, Vec<u8>) {
    let boundary = "apsboundary7d1f";
    let mut body = Vec::new();
    for (k, v) in texts {
        body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").as_bytes());
    }
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"; filename=\"p.app.zip\"\r\nContent-Type: application/zip\r\n\r\n", file.0)
            .as_bytes(),
    );
    body.extend_from_slice(&file.1);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// What a page or feed costs at the table follows what it shows, not the catalog: the
/// same reads, cold, cost the same calls and read the same items with 25 packages in
/// the catalog and with 65.
#[tokio::test]
async fn catalog_reads_cost_what_they_show() {
    use axum::body::Body;
    use axum::http::Request;
    use std::sync::atomic::Ordering;
    let (_dir, app, counting) = crate::harness::counted_embedded().await;
    let upload = |pkg: Pkg| {
        let app = app.clone();
        async move {
            let fields = [("username", ADMIN.0), ("password", ADMIN.1), ("approve", "true"), ("publish", "true")];
            let (ct, body) = multipart(&fields, ("file", pkg.zip()));
            let req = Request::post("/aps/packager/upload/").header("content-type", ct).body(Body::from(body)).unwrap();
            let (s, b) = crate::harness::oneshot(&app, req).await;
            assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
        }
    };
    for v in ["1.0", "1.1", "1.2"] {
        upload(Pkg::v2("Wiki", v, "pack.example.com")).await;
    }
    let mut others = 0;
    let reads = [
        "/aps/2.0/",
        "/aps/2.0/Example/",
        "/aps/all/Example/Wiki/",
        "/aps/2.0/Example/Wiki/1.1-1/",
        "/aps/2.0/Example/Wiki/1.1-1/?packager=pack.example.com",
        "/aps/2.0/Example/Wiki/1.1-1/resources",
        "/aps/2.0/Example/Wiki/1.1-1.aps?packager=pack.example.com",
        "/aps/2.0/Example/Wiki.atom",
        "/aps/feed.atom",
        "/aps/updates.atom",
        "/aps/2.0.atom?page=1",
    ];
    let mut costs: Vec<Vec<(usize, usize)>> = vec![];
    for size in [25, 65] {
        while 3 + others < size {
            upload(Pkg { vendor: "Other".into(), ..Pkg::v2(&format!("App{others}"), "1.0", "pack.example.com") }).await;
            others += 1;
        }
        // Each read once after the writes: the renderings of the state before are no use.
        let mut row = vec![];
        for path in reads {
            let (c0, i0) = (counting.calls.load(Ordering::SeqCst), counting.items_read.load(Ordering::SeqCst));
            let (s, b) = crate::harness::oneshot(&app, Request::get(path).body(Body::empty()).unwrap()).await;
            assert!(s == 200 || s == 303, "{path}: {s} {}", String::from_utf8_lossy(&b));
            row.push((counting.calls.load(Ordering::SeqCst) - c0, counting.items_read.load(Ordering::SeqCst) - i0));
        }
        costs.push(row);
    }
    for (i, path) in reads.iter().enumerate() {
        eprintln!("{path}: 25 packages {:?}, 65 packages {:?} (table calls, items read)", costs[0][i], costs[1][i]);
        assert_eq!(costs[0][i], costs[1][i], "{path} costs what the catalog holds");
        assert!(costs[1][i].0 <= 4 && costs[1][i].1 <= 2 * FEED + 4, "{path}: {:?}", costs[1][i]);
    }
}

const FEED: usize = 20;

/// A catalog deleted with its packages leaves no listing behind, and one created again
/// under its name starts empty.
#[tokio::test]
async fn a_deleted_catalog_takes_its_listings() {
    use axum::body::Body;
    use axum::http::Request;
    use depot_core::store::{query_all, schema, Query};
    let dir = tempfile::tempdir().unwrap();
    let config = depot_core::config::Config { data_dir: dir.path().to_path_buf(), admin_password: Some(ADMIN_PASSWORD.into()), ..Default::default() };
    let state = depot_core::http::AppState::open(config, false).await.unwrap();
    state.authenticator.bootstrap_admin(false).await.unwrap();
    let app = crate::harness::surfaces(state.clone());
    let fields = [("username", ADMIN.0), ("password", ADMIN.1), ("publish", "true")];
    let pkg = Pkg::v2("Gone", "1.0", "pack.example.com");
    let send = |req: Request<Body>| {
        let app = app.clone();
        async move { crate::harness::oneshot(&app, req).await }
    };
    let (ct, body) = multipart(&fields, ("file", pkg.zip()));
    let (s, _) = send(Request::post("/aps/packager/upload/").header("content-type", &ct).body(Body::from(body.clone())).unwrap()).await;
    assert_eq!(s, 200);
    let uid = state.registry.get_repository("aps", "catalog").await.unwrap().uid;
    let held = |listing: &str| {
        let table = state.registry.table.clone();
        let q = Query::partition(schema::listed_partition(&uid, listing));
        async move { query_all(&*table, q).await.unwrap().len() }
    };
    assert_eq!(held("feed/all").await, 1);
    let auth = format!("Basic {}", crate::harness::basic(ADMIN.0, ADMIN.1));
    let del = Request::delete("/repository/api/repo/delete/aps/catalog?forced=true").header("authorization", &auth).body(Body::empty()).unwrap();
    let (s, b) = send(del).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    for listing in ["feed/all", "feed/2.0", "updates", "version/2.0/Example/Gone/1.0-1"] {
        assert_eq!(held(listing).await, 0, "{listing}");
    }
    let members = query_all(&*state.registry.table, Query::partition(schema::members_partition(&uid, "vendors/all"))).await.unwrap();
    assert!(members.is_empty(), "{members:?}");
    let (s, b) = send(Request::get("/aps/feed.atom").body(Body::empty()).unwrap()).await;
    assert_eq!(s, 200);
    assert!(String::from_utf8_lossy(&b).contains("<opensearch:totalResults>0</opensearch:totalResults>"));
    // Uploaded again into a catalog created again: there once.
    let (s, _) = send(Request::post("/aps/packager/upload/").header("content-type", &ct).body(Body::from(body)).unwrap()).await;
    assert_eq!(s, 200);
    let (_, b) = send(Request::get("/aps/feed.atom").body(Body::empty()).unwrap()).await;
    assert!(String::from_utf8_lossy(&b).contains("<opensearch:totalResults>1</opensearch:totalResults>"));
}

/// What the attack on the release binary found, each case held.
#[tokio::test]
async fn attack_cases_hold() {
    let (_dir, server, api) = embedded(&[]);
    let cat = Catalog::new(&server.base);
    assert_eq!(Catalog::answer(cat.http.get(format!("{}/aps/", cat.base)).basic_auth(ADMIN.0, Some(ADMIN.1))).await.status, 200);
    create_user(&api, "bob", "bob-password-1").await;
    grant(&api, "bob", &["WRITE"]).await;
    let pkg = Pkg::v2("Mine", "1.0", "pack.example.com");
    let a = cat.packager_upload("", "bob", "bob-password-1", &[("approve", "true"), ("publish", "true")], pkg.zip()).await;
    assert_eq!(a.status, 200, "{}", a.text());

    // A WRITE user cannot approve or publish through the stage API either.
    let bob = api.as_user("bob", "bob-password-1");
    for tag in ["@prerelease", "@release"] {
        let path = format!("/repository/api/stage/upgrade/aps/catalog?packageKey=aps://Example/Mine&version=1.0-1&tag={tag}");
        let (s, b) = bob.post(&path, json!({})).await;
        assert_eq!(s, 403, "{tag}: {b}");
    }
    assert_eq!(cat.get(&lookup("2.0", &pkg, "aps", &full(&pkg, "undefined"))).await.status, 404, "still unpublished");

    // The uploader's APP-META.xml never runs as a page.
    publish(&cat, &Pkg::v2("Shown", "1.0", "pack.example.com")).await;
    let shown = Pkg::v2("Shown", "1.0", "pack.example.com");
    let a = cat.get(&lookup("2.0", &shown, "meta", &full(&shown, "undefined"))).await;
    assert_eq!(a.status, 200);
    assert!(a.headers["content-security-policy"].to_str().unwrap().contains("sandbox"));
    assert_eq!(a.headers["x-content-type-options"], "nosniff");

    // Forwarded headers reach links only as a scheme and a host.
    let page = Catalog::answer(
        cat.http
            .get(format!("{}/aps/", cat.base))
            .header("x-forwarded-host", "evil.example/path?x=")
            .header("x-forwarded-proto", "javascript"),
    )
    .await;
    let text = page.text();
    assert!(!text.contains("evil.example") && !text.contains("javascript:") && text.contains(&format!("action=\"{}/aps/\"", server.base)), "{text}");
    assert!(page.headers["vary"].to_str().unwrap().contains("X-Forwarded-Host"));

    // Refused names and versions, with the reason.
    let bad_meta = [
        (Pkg { release: "2-x".into(), ..Pkg::v2("Dash", "1", "pack.example.com") }, "release"),
        (Pkg { vendor: "Exa\u{200b}mple".into(), ..Pkg::v2("Zw", "1.0", "pack.example.com") }, "invisible"),
        (Pkg { vendor: "\u{202e}elpmaxE".into(), ..Pkg::v2("Bidi", "1.0", "pack.example.com") }, "invisible"),
        (Pkg { vendor: "é".repeat(128), ..Pkg::v2("Long", "1.0", "pack.example.com") }, "bytes"),
    ];
    for (p, why) in bad_meta {
        let a = cat.form_upload(Some(ADMIN), package_form(p.zip(), "APS")).await;
        assert_eq!(a.status, 400, "{why}: {}", a.text());
        assert!(a.text().contains(why), "{why}: {}", a.text());
    }
    // An empty certificate is no certificate; one that is not DER is refused.
    let empty = Pkg { certificate: Some(String::new()), ..Pkg::v2("NoCert", "1.0", "pack.example.com") };
    publish(&cat, &empty).await;
    assert_eq!(cat.get(&lookup("2.0", &empty, "certificate", &full(&empty, "undefined"))).await.status, 404);
    use base64::Engine;
    let junk = Pkg { certificate: Some(base64::engine::general_purpose::STANDARD.encode("garbage-der")), ..Pkg::v2("Junk", "1.0", "pack.example.com") };
    let a = cat.form_upload(Some(ADMIN), package_form(junk.zip(), "APS")).await;
    assert!(a.status == 400 && a.text().contains("DER"), "{}", a.text());
    // URLs: http or https in any case, a host, no credentials.
    for (url, ok) in [
        ("HTTP://downloads.example.com/x.app.zip", true),
        ("https://[::1]:8443/x.app.zip", true),
        ("http://[::1", false),
        ("https://user:pw@evil.example/", false),
        (" http://lead.space/", false),
        ("https:///x", false),
    ] {
        let release = format!("{}", url.len());
        let p = Pkg { release, ..Pkg::v2("ByUrl", "1.0", "pack.example.com") };
        let a = cat.form_upload(Some(ADMIN), no_url_form(&p).text("url", url.to_string())).await;
        assert_eq!(a.status, if ok { 201 } else { 400 }, "{url}: {}", a.text());
    }
    // Paths with control characters: a 400 that shows no storage detail.
    for path in ["/aps/2.0/Exa%00mple/", "/aps/2.0/Example/Word%00Press/", "/aps/2.0/Exa%01mple.atom", "/aps/2.0/Example/Wiki/1.0-1.aps?packager=a%00b"] {
        let a = cat.get(path).await;
        assert_eq!(a.status, 400, "{path}: {}", a.text());
        assert!(!a.text().contains("MEMBERS#") && !a.text().contains("LISTED#"), "{path}: {}", a.text());
    }
    // Feeds of what is not in the catalog are 404, like their pages; arguments once.
    for path in ["/aps/2.0/Nope.atom", "/aps/2.0/Nope/Nope.atom", "/aps/2.0/Nope/Nope/1-1.atom"] {
        assert_eq!(cat.get(path).await.status, 404, "{path}");
    }
    for path in ["/aps/feed.atom?page=1&page=2", "/aps/feed.atom?page=%201", "/aps/2.0/Example/Shown/1.0-1/?packager=a&packager=b"] {
        assert_eq!(cat.get(path).await.status, 400, "{path}");
    }
    let a = cat.get("/aps").await;
    assert_eq!((a.status, a.location()), (308, format!("{}/aps/", server.base)));

    // A staged package is its stager's: another user's upload of it is a 404.
    let staged = Pkg::v2("Staged", "1.0", "pack.example.com").zip();
    let digest = crate::uploads::upload(&api, "aps", "catalog", &staged).await["done"]["digest"].as_str().unwrap().to_string();
    let form = reqwest::multipart::Form::new().text("packageType", "APS");
    let a = Catalog::answer(cat.http.post(format!("{}/aps/", cat.base)).basic_auth("bob", Some("bob-password-1")).header("x-depot-blob", &digest).multipart(form)).await;
    assert_eq!(a.status, 404, "{}", a.text());
    let form = reqwest::multipart::Form::new().text("packageType", "APS");
    let a = Catalog::answer(cat.http.post(format!("{}/aps/", cat.base)).basic_auth(ADMIN.0, Some(ADMIN.1)).header("x-depot-blob", &digest).multipart(form)).await;
    assert_eq!(a.status, 201, "{}", a.text());
}

/// Concurrent uploads: other packages of one application version all land, under
/// their own names; the same package twice at once lands once.
#[tokio::test]
async fn concurrent_uploads_of_one_version() {
    let (_dir, server, api) = embedded(&[]);
    let cat = Catalog::new(&server.base);
    let variants: Vec<Pkg> = (0..10).map(|i| Pkg::v2("Busy", "1.0", &format!("p{i}.example.com"))).collect();
    let sent = variants.iter().map(|p| {
        let (cat, zip) = (cat.clone(), p.zip());
        async move { cat.packager_upload("", ADMIN.0, ADMIN.1, &[("publish", "true")], zip).await }
    });
    for a in futures::future::join_all(sent).await {
        assert_eq!(a.status, 200, "{}", a.text());
    }
    let same = Pkg::v2("Busy", "1.0", "same.example.com");
    let sent = (0..8).map(|_| {
        let (cat, zip) = (cat.clone(), same.zip());
        async move { cat.packager_upload("", ADMIN.0, ADMIN.1, &[("publish", "true")], zip).await }
    });
    let statuses: Vec<u16> = futures::future::join_all(sent).await.into_iter().map(|a| a.status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 500), "{statuses:?}");
    assert_eq!(versions(&api, &variants[0]).await.len(), 11);
    let feed = well_formed(&cat.get("/aps/2.0/Example/Busy.atom").await);
    assert!(feed.contains("<opensearch:totalResults>11</opensearch:totalResults>"), "{feed}");
}

/// A body trickled a byte at a time is refused once its grace is over, instead of
/// holding a connection.
#[tokio::test]
async fn a_trickled_body_is_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_dir, server, _) = embedded(&[("DEPOT_SLOW_BODY_SECS", "2")]);
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = "POST /aps/packager/upload/ HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n";
    conn.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        assert!(started.elapsed() < Duration::from_secs(15), "still open after {:?}", started.elapsed());
        if conn.write_all(b"-").await.is_err() {
            break;
        }
        match tokio::time::timeout(Duration::from_millis(500), conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    assert!(started.elapsed() >= Duration::from_secs(2), "refused before its grace: {:?}", started.elapsed());
    let text = String::from_utf8_lossy(&answer);
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 4"), "{text}");
}

/// What the second attack found, each case held.
#[tokio::test]
async fn second_attack_cases_hold() {
    let (_dir, server, api) = embedded(&[]);
    let cat = Catalog::new(&server.base);
    create_user(&api, "bob", "bob-password-1").await;
    // A user cannot take the catalog's project before depot creates it.
    let (s, b) = api.as_user("bob", "bob-password-1").post("/repository/api/project/create", json!({"name": "aps"})).await;
    assert_eq!(s, 403, "{b}");
    assert_eq!(Catalog::answer(cat.http.get(format!("{}/aps/", cat.base)).basic_auth(ADMIN.0, Some(ADMIN.1))).await.status, 200);
    grant(&api, "bob", &["WRITE"]).await;

    // A body with no boundary is refused once it passes what a form's text fields may
    // hold, before any credentials: it is not buffered whole.
    // strux's forms carry their credentials the same way.
    // The refusal comes before the body is read: the client may see the 400, or the
    // connection end under the rest of its body.
    for path in ["/aps/packager/upload/", "/upload-pkg/", "/create-user/"] {
        let junk = vec![b'x'; 1 << 20];
        let sent = cat.http.post(format!("{}{path}", cat.base)).header("content-type", "multipart/form-data; boundary=zz").body(junk).send().await;
        if let Ok(res) = sent {
            assert_eq!(res.status().as_u16(), 400, "{path}");
        }
    }
    // And the server holds none of them: 20 bodies of 5 MiB at once leave its memory
    // about where it was (without the gate it held each whole).
    let rss = |pid: u32| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok()).unwrap() * 1024
    };
    server.reset_peak_rss();
    let before = rss(server.pid());
    let sent = (0..20).map(|_| {
        let (http, url) = (cat.http.clone(), format!("{}/aps/packager/upload/", cat.base));
        async move {
            let _ = http.post(url).header("content-type", "multipart/form-data; boundary=zz").body(vec![b'x'; 5 << 20]).send().await;
        }
    });
    futures::future::join_all(sent).await;
    let grew = server.peak_rss().saturating_sub(before);
    eprintln!("20 refused 5 MiB bodies: the server's peak grew {} KiB", grew >> 10);
    assert!(grew < 40 << 20, "the server's peak grew {} MiB", grew >> 20);

    // Nobody swaps another's unpublished package: deleting it needs MANAGE.
    let admins = Pkg::v2("Swap", "1.0", "pack.example.com");
    let a = cat.packager_upload("", ADMIN.0, ADMIN.1, &[], admins.zip()).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let bob = api.as_user("bob", "bob-password-1");
    let (s, b) = bob.delete("/repository/api/version/delete/aps/catalog?packageKey=aps://Example/Swap&version=1.0-1").await;
    assert_eq!(s, 403, "{b}");
    let bobs = Pkg::v2("Bobs", "1.0", "pack.example.com");
    let a = cat.packager_upload("", "bob", "bob-password-1", &[], bobs.zip()).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let (s, b) = bob.delete("/repository/api/version/delete/aps/catalog?packageKey=aps://Example/Bobs&version=1.0-1").await;
    data(s, &b);

    // A zip and a registration by URL of the same package, at once: one lands.
    let same = Pkg::v2("Twice", "1.0", "pack.example.com");
    let sent = (0..4).map(|i| {
        let (cat, same) = (cat.clone(), same.clone());
        async move {
            let form = if i % 2 == 0 {
                package_form(same.zip(), "APS")
            } else {
                no_url_form(&same).text("url", "https://downloads.example.com/twice.app.zip")
            };
            cat.form_upload(Some(ADMIN), form).await.status
        }
    });
    let statuses = futures::future::join_all(sent).await;
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 201 || *s == 409), "{statuses:?}");

    // Redirects and a 201 name the request's host: no shared cache keeps them.
    publish(&cat, &Pkg::v2("Cached", "1.0", "pack.example.com")).await;
    let cached = Pkg::v2("Cached", "1.0", "pack.example.com");
    for path in ["/aps".to_string(), lookup("2.0", &cached, "aps", "packager=pack.example.com"), lookup("2.0", &cached, "aps", &full(&cached, "undefined"))] {
        let a = cat.get(&path).await;
        assert!(a.status == 308 || a.status == 303 || a.status == 302, "{path}: {}", a.status);
        assert_eq!(a.headers["cache-control"], "no-store", "{path}");
    }
    let a = cat.form_upload(Some(ADMIN), package_form(Pkg::v2("Made", "1.0", "pack.example.com").zip(), "APS")).await;
    assert_eq!((a.status, a.headers["cache-control"].to_str().unwrap()), (201, "no-store"));

    // More refusals: '_' in a release, a certificate with bytes after it, URLs with a
    // stray bracket or an impossible port, more invisible characters.
    use base64::Engine;
    let mut der = vec![0x30u8, 0x81, 0x80];
    der.extend((0..128u32).map(|i| i as u8));
    der.extend_from_slice(b"TRAILING<script>");
    for (p, why) in [
        (Pkg { release: "2_2".into(), ..Pkg::v2("Under", "1", "pack.example.com") }, "release"),
        (Pkg { certificate: Some(base64::engine::general_purpose::STANDARD.encode(&der)), ..Pkg::v2("Tail", "1.0", "pack.example.com") }, "DER"),
        (Pkg { vendor: "Ex\u{e0041}".into(), ..Pkg::v2("Tag", "1.0", "pack.example.com") }, "invisible"),
        (Pkg { vendor: "Ex\u{3164}".into(), ..Pkg::v2("Filler", "1.0", "pack.example.com") }, "invisible"),
        (Pkg { vendor: "Ex\u{a0}ample".into(), ..Pkg::v2("Nbsp", "1.0", "pack.example.com") }, "invisible"),
    ] {
        let a = cat.form_upload(Some(ADMIN), package_form(p.zip(), "APS")).await;
        assert!(a.status == 400 && a.text().contains(why), "{why}: {} {}", a.status, a.text());
    }
    for url in ["http://[::1]]/", "http://downloads.example.com:99999/x", "http://a..b/x"] {
        let p = Pkg { release: format!("{}", url.len()), ..Pkg::v2("BadUrl", "1.0", "pack.example.com") };
        let a = cat.form_upload(Some(ADMIN), no_url_form(&p).text("url", url.to_string())).await;
        assert_eq!(a.status, 400, "{url}: {}", a.text());
    }
    assert_eq!(cat.get("/aps/2.0/Ex%F3%A0%81%81/").await.status, 400);
}
