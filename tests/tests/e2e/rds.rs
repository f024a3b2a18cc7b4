//! RDS chart repositories through `depot serve`: uploads in every archive format, the
//! index, the charts API, downloads, deletes, hostile and broken input, concurrency on
//! both backends, and the cost of an unchanged index.
use std::io::Write;
use std::sync::atomic::Ordering;

use depot_core::store::BlobStore as _;
use serde_json::{json, Value};

use crate::harness::{data, embedded, Api, Server, ADMIN_PASSWORD};
use crate::uploads::{no_redirects, setup_repo, sha256_hex};

// ---------------------------------------------------------------- fixtures

pub fn rds_yaml(code: &str, version: &str) -> String {
    format!(
        "rdsVersion: v1\nname: Chart {code}\ncode: {code}\nversion: {version}\ndescription: about {code}\n\
         home: https://example.invalid/{code}\nicon: icon.png\nkeywords: [db, demo]\n\
         maintainers:\n  - name: Ops\n    email: ops@example.invalid\n"
    )
}

fn tar_header(path: &[u8], size: u64, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    // Written raw, so that hostile names ('..', absolute) can be built too.
    h.as_old_mut().name[..path.len()].copy_from_slice(path);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_entry_type(kind);
    h.set_cksum();
    h
}

/// A tar of (path, bytes) files.
pub fn tar_of(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, bytes) in files {
        let h = tar_header(path.as_bytes(), bytes.len() as u64, tar::EntryType::Regular);
        b.append(&h, bytes.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

pub fn zip_of(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (path, bytes) in files {
        w.start_file(*path, opts).unwrap();
        w.write_all(bytes).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// A well-formed chart archive in `ext` (tgz, tar.gz, tar or zip).
pub fn chart(code: &str, version: &str, ext: &str) -> (String, Vec<u8>) {
    let files = [
        (format!("{code}/RDS.yaml"), rds_yaml(code, version).into_bytes()),
        (format!("{code}/templates/app.sql"), format!("-- {code} {version}\nselect 1;\n").into_bytes()),
    ];
    let files: Vec<(&str, Vec<u8>)> = files.iter().map(|(p, b)| (p.as_str(), b.clone())).collect();
    let bytes = match ext {
        "tgz" | "tar.gz" => gzip(&tar_of(&files)),
        "tar" => tar_of(&files),
        "zip" => zip_of(&files),
        _ => unreachable!(),
    };
    (format!("{code}-{version}.{ext}"), bytes)
}

/// A `multipart/form-data` body carrying a chart in the field `chart`, as raw bytes for
/// in-process requests: (content type, body).
pub fn chart_form(code: &str, version: &str) -> (String, Vec<u8>) {
    let (file, bytes) = chart(code, version, "tgz");
    form_of(&file, &bytes, "application/gzip")
}

/// A `multipart/form-data` body with the file in the field `chart`.
fn form_of(file: &str, bytes: &[u8], content_type: &str) -> (String, Vec<u8>) {
    let boundary = "depotchartboundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"chart\"; filename=\"{file}\"\r\nContent-Type: {content_type}\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// [`chart_form`] with `pad` more bytes of noise in the chart (a `.tar`, so that they
/// stay that size).
pub fn chart_form_padded(code: &str, version: &str, pad: usize) -> (String, Vec<u8>) {
    let files = [
        (format!("{code}/RDS.yaml"), rds_yaml(code, version).into_bytes()),
        (format!("{code}/pad.bin"), crate::uploads::payload(pad, 3)),
    ];
    let files: Vec<(&str, Vec<u8>)> = files.iter().map(|(p, b)| (p.as_str(), b.clone())).collect();
    form_of(&format!("{code}-{version}.tar"), &tar_of(&files), "application/x-tar")
}

/// POSTs a chart as the multipart field `chart`.
pub async fn upload(api: &Api, path: &str, filename: &str, bytes: Vec<u8>) -> (u16, Value) {
    let part = reqwest::multipart::Part::bytes(bytes).file_name(filename.to_string());
    post_form(api, path, reqwest::multipart::Form::new().part("chart", part)).await
}

/// POSTs a multipart form with the API's credentials; answers the status and JSON body.
pub async fn post_form(api: &Api, path: &str, form: reqwest::multipart::Form) -> (u16, Value) {
    let mut req = api.http.post(format!("{}{path}", api.base)).multipart(form);
    if let Some((u, p)) = &api.auth {
        req = req.basic_auth(u, Some(p));
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}")))
}

/// A GET as the admin that sends `If-None-Match: etag`.
pub async fn get_if_none_match(api: &Api, url: &str, etag: &str) -> reqwest::Response {
    api.http.get(url).basic_auth("admin", Some(ADMIN_PASSWORD)).header("if-none-match", etag).send().await.unwrap()
}

pub(crate) async fn get_text(api: &Api, path: &str) -> (u16, String) {
    let res =
        api.http.get(format!("{}{path}", api.base)).basic_auth("admin", Some(ADMIN_PASSWORD)).send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

pub async fn index(api: &Api, p: &str, r: &str) -> serde_yaml::Value {
    let (s, text) = get_text(api, &format!("/rds/{p}/{r}/index.yaml")).await;
    assert_eq!(s, 200, "{text}");
    serde_yaml::from_str(&text).unwrap()
}

fn error_of(status: u16, body: &Value, want: u16) -> String {
    assert_eq!(status, want, "{body}");
    let e = body["error"].as_str().unwrap_or_else(|| panic!("no error field: {body}")).to_string();
    assert!(!e.is_empty());
    e
}

pub async fn rds_repo(api: &Api, p: &str, r: &str) {
    let (s, b) = api.post("/repository/api/project/create", json!({"name": p})).await;
    data(s, &b);
    let (s, b) = api.post("/repository/api/repo/create", json!({"projectId": p, "name": r, "type": "RDS"})).await;
    data(s, &b);
}

// ---------------------------------------------------------------- the whole flow

/// Upload → index → charts API → download → delete, as a chart client does.
pub async fn chart_flow(api: &Api, p: &str, r: &str) {
    let up = format!("/rds/api/{p}/{r}/charts");
    let (file, bytes) = chart("mysql", "1.0.0", "tgz");
    let (s, b) = upload(api, &up, &file, bytes.clone()).await;
    assert_eq!((s, b.clone()), (201, json!({"saved": true})));
    let (s, b) = upload(api, &up, &file, bytes.clone()).await;
    assert_eq!(error_of(s, &b, 409), "mysql-1.0.0.tgz already exists");
    // The other formats, and the short route.
    for (v, ext) in [("1.1.0", "zip"), ("1.2.0", "tar"), ("2.0.0-rc.1", "tar.gz")] {
        let (f, b) = chart("mysql", v, ext);
        let (s, body) = upload(api, &format!("/api/{p}/{r}/charts"), &f, b).await;
        assert_eq!(s, 201, "{ext}: {body}");
    }
    let (f, b) = chart("redis", "0.1.0", "tgz");
    assert_eq!(upload(api, &up, &f, b).await.0, 201);

    let idx = index(api, p, r).await;
    assert_eq!(idx["apiVersion"], "v1");
    // The index carries an ETag; a client that sends it back gets 304 until a write.
    let url = format!("{}/rds/{p}/{r}/index.yaml", api.base);
    let res = api.http.get(&url).basic_auth("admin", Some(ADMIN_PASSWORD)).send().await.unwrap();
    let etag = res.headers()["etag"].to_str().unwrap().to_string();
    let res = get_if_none_match(api, &url, &etag).await;
    assert_eq!(res.status().as_u16(), 304);
    // With Accept-Encoding: gzip, the same index gzipped, under a tag of its own.
    let plain = api.http.get(&url).basic_auth("admin", Some(ADMIN_PASSWORD)).send().await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    assert_eq!(plain.headers()["vary"], "accept-encoding");
    let plain = plain.bytes().await.unwrap();
    let res = api
        .http
        .get(&url)
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("accept-encoding", "br;q=1, gzip;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-encoding"], "gzip");
    let gz_tag = res.headers()["etag"].to_str().unwrap().to_string();
    assert_ne!(gz_tag, etag, "each encoding has its own tag");
    let gz = res.bytes().await.unwrap();
    let mut unzipped = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut unzipped).unwrap();
    assert_eq!(unzipped, plain, "the gzipped index is the index");
    eprintln!("index.yaml: {} bytes, {} gzipped", plain.len(), gz.len());
    // A tag names one encoding: the gzipped one's does not match the plain index (found
    // by an attack), and does match the gzipped one.
    let res = get_if_none_match(api, &url, &gz_tag).await;
    assert_eq!(res.status().as_u16(), 200, "the gzipped index's tag, asked without gzip");
    let res = api
        .http
        .get(&url)
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("accept-encoding", "gzip")
        .header("if-none-match", &gz_tag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 304);
    // Weak comparison, and `*`.
    assert_eq!(get_if_none_match(api, &url, &format!("W/{etag}")).await.status().as_u16(), 304);
    assert_eq!(get_if_none_match(api, &url, "\"other\", *").await.status().as_u16(), 304);
    assert_eq!(get_if_none_match(api, &url, "\"other\"").await.status().as_u16(), 200);
    assert!(idx["generated"].as_str().is_some());
    let mysql = idx["entries"]["mysql"].as_sequence().unwrap();
    let versions: Vec<_> = mysql.iter().map(|e| e["version"].as_str().unwrap()).collect();
    assert_eq!(versions, ["2.0.0-rc.1", "1.2.0", "1.1.0", "1.0.0"], "newest semver first");
    let e = &mysql[3];
    assert_eq!(e["digest"].as_str().unwrap(), sha256_hex(&bytes));
    assert_eq!(
        (e["name"].as_str(), e["code"].as_str(), e["extension"].as_str()),
        (Some("Chart mysql"), Some("mysql"), Some("tgz"))
    );
    assert_eq!(e["urls"][0].as_str(), Some("charts/mysql-1.0.0.tgz"));
    assert_eq!(e["keywords"][1].as_str(), Some("demo"));
    assert_eq!(e["maintainers"][0]["email"].as_str(), Some("ops@example.invalid"));
    assert_eq!((e["rdsVersion"].as_str(), e["home"].as_str()), (Some("v1"), Some("https://example.invalid/mysql")));
    assert!(e["created"].as_str().unwrap().ends_with('Z'));
    assert_eq!(mysql[0]["extension"].as_str(), Some("tar.gz"));
    assert_eq!(idx["entries"]["redis"].as_sequence().unwrap().len(), 1);

    // The charts API.
    let (s, all) = api.get(&format!("/rds/{p}/{r}/api/charts")).await;
    assert_eq!(s, 200);
    assert_eq!(all["mysql"].as_array().unwrap().len(), 4);
    let (s, one) = api.get(&format!("/rds/{p}/{r}/api/charts/mysql")).await;
    assert_eq!((s, one.as_array().unwrap().len()), (200, 4));
    let (s, v) = api.get(&format!("/rds/{p}/{r}/api/charts/mysql/1.1.0")).await;
    assert_eq!((s, v["extension"].as_str()), (200, Some("zip")));
    let (s, b) = api.get(&format!("/rds/{p}/{r}/api/charts/nope")).await;
    error_of(s, &b, 404);
    let (s, b) = api.get(&format!("/rds/{p}/{r}/api/charts/mysql/9.9.9")).await;
    error_of(s, &b, 404);
    let head = |path: String| {
        let api = api.clone();
        async move {
            let res = api
                .http
                .head(format!("{}{path}", api.base))
                .basic_auth("admin", Some(ADMIN_PASSWORD))
                .send()
                .await
                .unwrap();
            res.status().as_u16()
        }
    };
    assert_eq!(head(format!("/rds/{p}/{r}/api/charts/mysql/1.1.0")).await, 200);
    assert_eq!(head(format!("/rds/{p}/{r}/api/charts/mysql")).await, 200);
    assert_eq!(head(format!("/rds/{p}/{r}/api/charts")).await, 200);
    assert_eq!(head(format!("/rds/{p}/{r}/api/charts/nope")).await, 404);

    // Download: a 302 whose bytes match the index digest, counted.
    let res = no_redirects()
        .get(format!("{}/rds/{p}/{r}/charts/mysql-1.0.0.tgz", api.base))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 302);
    let location = res.headers()["location"].to_str().unwrap().to_string();
    let got = reqwest::get(&location).await.unwrap().bytes().await.unwrap();
    assert_eq!(got.to_vec(), bytes, "byte for byte");
    assert_eq!(sha256_hex(&got), e["digest"].as_str().unwrap());
    let (s, b) = api.get(&format!("/rds/ext/version/detail/{p}/{r}/?packageKey=rds://mysql&version=1.0.0")).await;
    let detail = data(s, &b);
    assert_eq!(detail["basic"]["downloadCount"], 1);
    assert_eq!(detail["basic"]["fullPath"], "/mysql-1.0.0.tgz");
    assert_eq!(detail["basic"]["sha256"], sha256_hex(&bytes));
    // Every extension is found, not only .tgz.
    let (s, b) = api.get(&format!("/rds/ext/version/detail/{p}/{r}?packageKey=rds://mysql&version=1.1.0")).await;
    assert_eq!(data(s, &b)["basic"]["fullPath"], "/mysql-1.1.0.zip");
    let (s, b) = api.get(&format!("/rds/{p}/{r}/charts/mysql-1.0.0.zip")).await;
    error_of(s, &b, 404);

    // Overwrite with ?force.
    let (s, b) = upload(
        api,
        &format!("{up}?force=true"),
        &file,
        gzip(&tar_of(&[("mysql/RDS.yaml", rds_yaml("mysql", "1.0.0").into_bytes())])),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let idx2 = index(api, p, r).await;
    assert_ne!(idx2["entries"]["mysql"][3]["digest"], e["digest"], "the overwrite shows in the index");

    // Deletes.
    let (s, b) = api.delete(&format!("/rds/{p}/{r}/api/charts/mysql/1.2.0")).await;
    assert_eq!((s, b), (200, json!({"deleted": true})));
    let res = get_if_none_match(api, &url, &etag).await;
    assert_eq!(res.status().as_u16(), 200, "a write changes the ETag");
    assert_ne!(res.headers()["etag"].to_str().unwrap(), etag);
    let (s, b) = api.delete(&format!("/rds/{p}/{r}/api/charts/mysql/1.2.0")).await;
    assert_eq!(
        error_of(s, &b, 404),
        "remove package rds://mysql for version [1.2.0] failed: no such file or directory"
    );
    let (s, b) = api.delete(&format!("/rds/ext/version/delete/{p}/{r}/?packageKey=rds://mysql&version=1.1.0")).await;
    assert_eq!(data(s, &b), Value::Null);
    let idx = index(api, p, r).await;
    assert_eq!(idx["entries"]["mysql"].as_sequence().unwrap().len(), 2, "the index follows deletes at once");
    let (s, b) = api.delete(&format!("/rds/ext/package/delete/{p}/{r}?packageKey=rds://mysql")).await;
    data(s, &b);
    let (s, b) = api.delete(&format!("/rds/ext/package/delete/{p}/{r}/?packageKey=rds://mysql")).await;
    assert_eq!(error_of(s, &b, 404), "remove package rds://mysql failed: no such file or directory");
    let idx = index(api, p, r).await;
    assert!(idx["entries"].get("mysql").is_none());
    assert_eq!(idx["entries"]["redis"].as_sequence().unwrap().len(), 1);
}

#[tokio::test]
async fn charts_on_the_embedded_backend() {
    let (_dir, _server, api) = embedded(&[]);
    rds_repo(&api, "rp", "charts").await;
    chart_flow(&api, "rp", "charts").await;
}

#[tokio::test]
async fn charts_on_the_aws_backend() {
    crate::harness::aws_endpoint();
    let (server, _) = crate::harness::aws_server("rds", &[]);
    let api = Api::new(&server.base);
    rds_repo(&api, "rp", "charts").await;
    chart_flow(&api, "rp", "charts").await;
    concurrent_uploads(&api, "rp", "charts").await;
}

// ---------------------------------------------------------------- bad input

#[tokio::test]
async fn bad_uploads_are_clear_4xx() {
    let (_dir, _server, api) = embedded(&[("DEPOT_MAX_UNPACKED_BYTES", "10000000")]);
    rds_repo(&api, "bp", "charts").await;
    setup_repo(&api, "gp", "generic").await;
    let up = "/rds/api/bp/charts/charts";
    let meta = |code: &str, version: &str| rds_yaml(code, version).into_bytes();
    let ok_files = |yaml: Vec<u8>| vec![("c/RDS.yaml", yaml), ("c/a.txt", b"a".to_vec())];

    let mut cases: Vec<(&str, String, Vec<u8>, u16, &str)> = vec![];
    for (code, why) in [("../x", "code"), ("a/b", "code"), ("a\\\\b", "code"), ("a\\u0000b", "code"), ("a\\tb", "code")]
    {
        let yaml = format!("name: n\ncode: \"{code}\"\nversion: 1.0.0\n").into_bytes();
        cases.push(("bad code", "c-1.tgz".into(), gzip(&tar_of(&ok_files(yaml))), 400, why));
    }
    for version in ["1.0", "../1.0.0", "1.0.0/x", "latest"] {
        let yaml = format!("name: n\ncode: c\nversion: \"{version}\"\n").into_bytes();
        cases.push(("bad version", "c.tgz".into(), gzip(&tar_of(&ok_files(yaml))), 400, "version"));
    }
    cases.extend([
        ("no RDS.yaml", "c.tgz".into(), gzip(&tar_of(&[("c/other.yaml", meta("c", "1.0.0"))])), 400, "no RDS.yaml"),
        (
            "RDS.yaml at the root",
            "c.tgz".into(),
            gzip(&tar_of(&[("RDS.yaml", meta("c", "1.0.0"))])),
            400,
            "no RDS.yaml",
        ),
        (
            "RDS.yaml too deep",
            "c.tgz".into(),
            gzip(&tar_of(&[("c/d/RDS.yaml", meta("c", "1.0.0"))])),
            400,
            "no RDS.yaml",
        ),
        (
            "invalid YAML",
            "c.tgz".into(),
            gzip(&tar_of(&ok_files(b"name: [unclosed\n".to_vec()))),
            400,
            "invalid RDS.yaml",
        ),
        ("no code", "c.tgz".into(), gzip(&tar_of(&ok_files(b"name: n\nversion: 1.0.0\n".to_vec()))), 400, "'code'"),
        ("no name", "c.zip".into(), zip_of(&ok_files(b"code: c\nversion: 1.0.0\n".to_vec())), 400, "'name'"),
        (
            "dotdot entry",
            "c.tgz".into(),
            gzip(&tar_of(&[("c/RDS.yaml", meta("c", "1.0.0")), ("../evil", b"x".to_vec())])),
            400,
            "'..'",
        ),
        (
            "absolute entry",
            "c.tar".into(),
            tar_of(&[("c/RDS.yaml", meta("c", "1.0.0")), ("/etc/evil", b"x".to_vec())]),
            400,
            "absolute",
        ),
        (
            "zip dotdot",
            "c.zip".into(),
            zip_of(&[("c/RDS.yaml", meta("c", "1.0.0")), ("../evil", b"x".to_vec())]),
            400,
            "'..'",
        ),
        (
            "truncated",
            "c.tgz".into(),
            {
                let full = gzip(&tar_of(&ok_files(meta("c", "1.0.0"))));
                full[..full.len() / 2].to_vec()
            },
            400,
            "broken",
        ),
        ("not an archive", "c.tgz".into(), b"hello, not gzip".to_vec(), 400, "broken"),
        (
            "a second gzip member hiding a link",
            "c.tgz".into(),
            {
                // The first member is a chart without end-of-archive blocks; tar tools read on
                // into the second, and so does depot.
                let mut first = Vec::new();
                first.extend_from_slice(tar_header(b"c/RDS.yaml", meta("c", "1.0.0").len() as u64, tar::EntryType::Regular).as_bytes());
                let m = meta("c", "1.0.0");
                first.extend_from_slice(&m);
                first.resize(first.len().div_ceil(512) * 512, 0);
                let mut both = gzip(&first);
                let link = tar_header(b"c/evil", 0, tar::EntryType::Symlink);
                let mut second = link.as_bytes().to_vec();
                second.extend_from_slice(&[0u8; 1024]);
                both.extend(gzip(&second));
                both
            },
            400,
            "is a link",
        ),
        ("unknown extension", "c.rar".into(), gzip(&tar_of(&ok_files(meta("c", "1.0.0")))), 400, "unsupported archive"),
        ("bad file name", "../c.tgz".into(), gzip(&tar_of(&ok_files(meta("c", "1.0.0")))), 400, "file name"),
        (
            "RDS.yaml over 1 MB",
            "c.tgz".into(),
            gzip(&tar_of(&[("c/RDS.yaml", {
                let mut y = meta("c", "1.0.0");
                y.extend(std::iter::repeat_n(b'#', 1024 * 1024));
                y
            })])),
            413,
            "RDS.yaml is over",
        ),
        (
            "gzip bomb",
            "c.tgz".into(),
            gzip(&tar_of(&[("c/RDS.yaml", meta("c", "1.0.0")), ("c/zeros", vec![0u8; 20_000_000])])),
            413,
            "decompressed size",
        ),
        (
            "too many entries",
            "c.tgz".into(),
            {
                let mut files = vec![("c/RDS.yaml".to_string(), meta("c", "1.0.0"))];
                files.extend((0..10_001).map(|i| (format!("c/f{i}"), Vec::new())));
                let files: Vec<(&str, Vec<u8>)> = files.iter().map(|(p, b)| (p.as_str(), b.clone())).collect();
                gzip(&tar_of(&files))
            },
            413,
            "more than 10000 entries",
        ),
    ]);
    for (what, filename, bytes, status, needle) in cases {
        let (s, b) = upload(&api, up, &filename, bytes).await;
        let e = error_of(s, &b, status);
        assert!(e.contains(needle), "{what}: {e}");
    }

    // A symlink entry, in tar and in zip.
    let mut t = tar::Builder::new(Vec::new());
    let m = meta("c", "1.0.0");
    t.append(&tar_header(b"c/RDS.yaml", m.len() as u64, tar::EntryType::Regular), m.as_slice()).unwrap();
    let mut link = tar_header(b"c/link", 0, tar::EntryType::Symlink);
    link.set_link_name("/etc/passwd").unwrap();
    link.set_cksum();
    t.append(&link, std::io::empty()).unwrap();
    let (s, b) = upload(&api, up, "c.tgz", gzip(&t.into_inner().unwrap())).await;
    assert!(error_of(s, &b, 400).contains("link"));
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default();
    w.start_file("c/RDS.yaml", opts).unwrap();
    w.write_all(&m).unwrap();
    w.add_symlink("c/link", "/etc/passwd", opts).unwrap();
    let (s, b) = upload(&api, up, "c.zip", w.finish().unwrap().into_inner()).await;
    assert!(error_of(s, &b, 400).contains("link"));

    // Wrong content type, missing field, unknown project or repository, another type.
    let res = api
        .http
        .post(format!("{}{up}", api.base))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .json(&json!({"chart": "x"}))
        .send()
        .await
        .unwrap();
    let (s, b) = (res.status().as_u16(), res.json::<Value>().await.unwrap());
    assert!(error_of(s, &b, 400).contains("multipart"));
    let (s, b) = post_form(&api, up, reqwest::multipart::Form::new().text("other", "x")).await;
    assert!(error_of(s, &b, 400).contains("'chart'"));
    let (f, bytes) = chart("c", "1.0.0", "tgz");
    for (path, status) in
        [("/rds/api/nope/charts/charts", 404), ("/rds/api/bp/nope/charts", 404), ("/rds/api/gp/generic/charts", 400)]
    {
        let (s, b) = upload(&api, path, &f, bytes.clone()).await;
        error_of(s, &b, status);
    }
    // Anonymous and wrong passwords get 401 with the challenge, in this surface's shape.
    let res = api.http.get(format!("{}/rds/bp/charts/index.yaml", api.base)).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 401);
    assert_eq!(res.headers()["www-authenticate"], "Basic realm=\"depot\"");
    assert!(res.json::<Value>().await.unwrap()["error"].is_string());
    let (s, b) = upload(&api.as_user("admin", "wrong"), up, &f, bytes.clone()).await;
    error_of(s, &b, 401);
    // Bad names in read paths.
    for path in [
        "/rds/bp/charts/charts/..%2Fx.tgz",
        "/rds/bp/charts/api/charts/a%5Cb",
        "/rds/ext/version/detail/bp/charts?packageKey=rds://c",
        "/rds/ext/version/detail/bp/charts?packageKey=rds://../x&version=1.0.0",
    ] {
        let (s, b) = api.get(path).await;
        assert!(s == 400 || s == 404, "{path}: {s} {b}");
        assert!(b["error"].is_string(), "{path}: {b}");
    }
    // Nothing bad was stored.
    let idx = index(&api, "bp", "charts").await;
    assert!(idx["entries"].as_mapping().unwrap().is_empty(), "{idx:?}");

    // A chart of a few KB that unpacks past what is read on the request's task (64 KiB,
    // its RDS.yaml past 16 KiB) but within the limits is read again with them, and stored.
    let mut yaml = meta("big", "2.0.0");
    yaml.extend(std::iter::repeat_n(b'#', 20 * 1024));
    yaml.push(b'\n');
    let bytes = gzip(&tar_of(&[("big/RDS.yaml", yaml), ("big/zeros", vec![0u8; 1024 * 1024])]));
    assert!(bytes.len() < 64 * 1024, "{}", bytes.len());
    let (s, b) = upload(&api, up, "big-2.0.0.tgz", bytes.clone()).await;
    assert_eq!(s, 201, "{b}");
    let idx = index(&api, "bp", "charts").await;
    assert_eq!(idx["entries"]["big"][0]["version"].as_str(), Some("2.0.0"), "{idx:?}");
    let url = format!("{}/rds/bp/charts/charts/big-2.0.0.tgz", api.base);
    let got = api.http.get(&url).basic_auth("admin", Some(ADMIN_PASSWORD)).send().await.unwrap();
    assert_eq!(got.status().as_u16(), 200);
    assert!(got.bytes().await.unwrap() == bytes, "the stored chart is not the uploaded one");

    // A repository that refuses overwrites keeps the first upload even with ?force.
    let (s, b) = api
        .post(
            "/repository/api/repo/create",
            json!({"projectId": "bp", "name": "strict", "type": "RDS", "allowOverwrite": false}),
        )
        .await;
    data(s, &b);
    assert_eq!(upload(&api, "/rds/api/bp/strict/charts", &f, bytes.clone()).await.0, 201);
    let (s, b) = upload(&api, "/rds/api/bp/strict/charts?force=true", &f, bytes.clone()).await;
    assert!(error_of(s, &b, 409).contains("refuses overwrites"));
}

// ---------------------------------------------------------------- concurrency

async fn concurrent_uploads(api: &Api, p: &str, r: &str) {
    let up = format!("/rds/api/{p}/{r}/charts");
    // 30 distinct versions of one chart at once: the index lists all 30.
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let (api, up) = (api.clone(), up.clone());
            tokio::spawn(async move {
                let (f, b) = chart("busy", &format!("1.0.{i}"), "tgz");
                upload(&api, &up, &f, b).await
            })
        })
        .collect();
    for t in tasks {
        let (s, b) = t.await.unwrap();
        assert_eq!(s, 201, "{b}");
    }
    let idx = index(api, p, r).await;
    let listed: Vec<_> = idx["entries"]["busy"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| e["version"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed.len(), 30, "{listed:?}");
    assert_eq!(listed[0], "1.0.29");

    // 10 uploads of the same version with different bytes: one 201, nine 409s, and the
    // stored bytes, metadata and index agree on the winner.
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let (api, up) = (api.clone(), up.clone());
            tokio::spawn(async move {
                let mut yaml = rds_yaml("race", "1.0.0");
                yaml.push_str(&format!("# writer {i}\n"));
                let bytes = gzip(&tar_of(&[("race/RDS.yaml", yaml.into_bytes())]));
                let (s, b) = upload(&api, &up, "race-1.0.0.tgz", bytes.clone()).await;
                (s, b, bytes)
            })
        })
        .collect();
    let mut winners = vec![];
    let mut conflicts = 0;
    for t in tasks {
        let (s, b, bytes) = t.await.unwrap();
        match s {
            201 => winners.push(bytes),
            409 => {
                assert_eq!(b["error"], "race-1.0.0.tgz already exists");
                conflicts += 1
            }
            _ => panic!("{s} {b}"),
        }
    }
    assert_eq!((winners.len(), conflicts), (1, 9));
    let idx = index(api, p, r).await;
    let entry = &idx["entries"]["race"][0];
    assert_eq!(entry["digest"].as_str().unwrap(), sha256_hex(&winners[0]));
    let (s, b) = api.get(&format!("/rds/ext/version/detail/{p}/{r}?packageKey=rds://race&version=1.0.0")).await;
    assert_eq!(data(s, &b)["basic"]["sha256"].as_str().unwrap(), sha256_hex(&winners[0]));
    let res = reqwest::Client::new()
        .get(format!("{}/rds/{p}/{r}/charts/race-1.0.0.tgz", api.base))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(res.bytes().await.unwrap().to_vec(), winners[0], "the stored bytes are the winner's");
}

/// A crash (SIGKILL) while 16 clients upload at once: every upload that was answered
/// 201 is there after the restart, byte for byte, and the database opens and takes
/// uploads again. (A killed process keeps what reached the kernel; what this shows is
/// that nothing is answered before its commit is written, and that a commit cut off in
/// memory leaves a file that opens.)
#[tokio::test]
async fn a_crash_under_concurrent_uploads_keeps_every_answered_one() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap().to_string();
    let start = || crate::harness::Server::start(&["--data-dir", &data_dir], &[("DEPOT_ADMIN_PASSWORD", ADMIN_PASSWORD)]);
    let server = start();
    let api = Api::new(&server.base);
    rds_repo(&api, "crash", "charts").await;
    let url = format!("{}/rds/api/crash/charts/charts", server.base);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..16)
        .map(|c| {
            let (url, stop, http) = (url.clone(), stop.clone(), reqwest::Client::new());
            tokio::spawn(async move {
                let mut answered = vec![];
                for i in 0.. {
                    if stop.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                    let (file, bytes) = chart(&format!("c{c}"), &format!("1.0.{i}"), "tgz");
                    let part = reqwest::multipart::Part::bytes(bytes.clone()).file_name(file.clone());
                    let sent = http
                        .post(&url)
                        .basic_auth("admin", Some(ADMIN_PASSWORD))
                        .multipart(reqwest::multipart::Form::new().part("chart", part))
                        .send()
                        .await;
                    match sent {
                        Ok(res) if res.status().as_u16() == 201 => answered.push((file, bytes)),
                        Ok(res) => panic!("an upload answered {}", res.status()),
                        // The server is gone.
                        Err(_) => break,
                    }
                }
                answered
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    server.stop_with("KILL");
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut answered = vec![];
    for c in clients {
        answered.extend(c.await.unwrap());
    }
    assert!(answered.len() >= 16, "only {} uploads were answered before the crash", answered.len());
    let server = start();
    let api = Api::new(&server.base);
    let idx = index(&api, "crash", "charts").await;
    let listed: usize = idx["entries"].as_mapping().unwrap().values().map(|v| v.as_sequence().unwrap().len()).sum();
    assert!(listed >= answered.len(), "{listed} versions listed, {} answered", answered.len());
    for (file, bytes) in &answered {
        let res = api
            .http
            .get(format!("{}/rds/crash/charts/charts/{file}", api.base))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200, "{file} was answered 201 and is gone");
        assert!(res.bytes().await.unwrap() == *bytes, "{file}: other bytes");
    }
    let (file, bytes) = chart("after", "1.0.0", "tgz");
    assert_eq!(upload(&api, "/rds/api/crash/charts/charts", &file, bytes).await.0, 201);
    eprintln!("a crash under 16 uploaders: {} answered, {listed} listed after the restart", answered.len());
}

#[tokio::test]
async fn concurrent_uploads_on_the_embedded_backend() {
    let (_dir, _server, api) = embedded(&[]);
    rds_repo(&api, "cp", "charts").await;
    concurrent_uploads(&api, "cp", "charts").await;
}

// ---------------------------------------------------------------- the cost of the index

#[tokio::test]
async fn an_unchanged_index_is_served_without_querying_versions() {
    use axum::body::Body;
    use axum::http::Request;
    let (_dir, app, counting) = crate::harness::counted_embedded().await;
    let auth = format!("Basic {}", crate::harness::basic("admin", ADMIN_PASSWORD));
    let call = |req: Request<Body>| {
        let app = app.clone();
        async move { crate::harness::oneshot(&app, req).await }
    };
    let json_req = |path: &str, body: Value| {
        Request::post(path)
            .header("authorization", &auth)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    assert_eq!(call(json_req("/repository/api/project/create", json!({"name": "ix"}))).await.0, 200);
    assert_eq!(
        call(json_req("/repository/api/repo/create", json!({"projectId": "ix", "name": "cr", "type": "RDS"}))).await.0,
        200
    );
    let upload_req = |code: &str, version: &str| {
        let (content_type, body) = chart_form(code, version);
        Request::post("/rds/api/ix/cr/charts")
            .header("authorization", &auth)
            .header("content-type", content_type)
            .body(Body::from(body))
            .unwrap()
    };
    for (code, n) in [("a", 5), ("b", 5), ("c", 5)] {
        for i in 0..n {
            assert_eq!(call(upload_req(code, &format!("1.0.{i}"))).await.0, 201);
        }
    }
    let index_req = || Request::get("/rds/ix/cr/index.yaml").header("authorization", &auth).body(Body::empty()).unwrap();
    let measure =
        |f: &depot_core::store::CountingTable| (f.calls.load(Ordering::SeqCst), f.queries.load(Ordering::SeqCst));

    let before = measure(&counting);
    let (s, first) = call(index_req()).await;
    assert_eq!(s, 200);
    let cold = (measure(&counting).0 - before.0, measure(&counting).1 - before.1);
    assert!(cold.1 >= 4, "a cold rendering queries the packages and each one's versions: {cold:?}");

    let before = measure(&counting);
    let (s, again) = call(index_req()).await;
    assert_eq!(s, 200);
    let hot = (measure(&counting).0 - before.0, measure(&counting).1 - before.1);
    assert_eq!(hot.1, 0, "a hot index runs no query: {hot:?}");
    assert!(hot.0 <= 3, "a hot index costs the repository read(s) only: {hot:?}");
    assert_eq!(strip_generated(&first), strip_generated(&again));

    // A write bumps the generation: the next GET renders again and shows it.
    assert_eq!(call(upload_req("a", "2.0.0")).await.0, 201);
    let before = measure(&counting);
    let (_, after_write) = call(index_req()).await;
    assert!(measure(&counting).1 > before.1, "rendered again after the write");
    let doc: serde_yaml::Value = serde_yaml::from_slice(&after_write).unwrap();
    assert_eq!(doc["entries"]["a"][0]["version"].as_str(), Some("2.0.0"));
    eprintln!("index.yaml table calls: cold {} ({} queries), hot {} ({} queries)", cold.0, cold.1, hot.0, hot.1);
}

fn strip_generated(b: &[u8]) -> String {
    String::from_utf8_lossy(b).lines().filter(|l| !l.starts_with("generated:")).collect::<Vec<_>>().join("\n")
}

#[tokio::test]
async fn a_staged_blob_uploads_a_chart_without_the_bytes() {
    let (_dir, _server, api) = embedded(&[]);
    rds_repo(&api, "sp", "charts").await;
    let (s, b) =
        api.post("/repository/api/repo/create", json!({"projectId": "sp", "name": "other", "type": "RDS"})).await;
    data(s, &b);
    let up = "/rds/api/sp/charts/charts";
    // Through the header, with no body at all.
    let (_, bytes) = chart("big", "3.0.0", "tgz");
    let done = crate::uploads::upload(&api, "sp", "charts", &bytes).await;
    let digest = done["done"]["digest"].as_str().unwrap().to_string();
    let res = api
        .http
        .post(format!("{}{up}", api.base))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("x-depot-blob", &digest)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201, "{}", res.text().await.unwrap());
    let idx = index(&api, "sp", "charts").await;
    assert_eq!(idx["entries"]["big"][0]["digest"].as_str(), Some(&digest["sha256:".len()..]));
    assert_eq!(idx["entries"]["big"][0]["extension"].as_str(), Some("tgz"));
    // Through the form field `blob`, for a zip.
    let (_, zbytes) = chart("big", "3.1.0", "zip");
    let zdone = crate::uploads::upload(&api, "sp", "charts", &zbytes).await;
    let form = reqwest::multipart::Form::new().text("blob", zdone["done"]["digest"].as_str().unwrap().to_string());
    let (s, b) = post_form(&api, up, form).await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = api.get("/rds/sp/charts/api/charts/big/3.1.0").await;
    assert_eq!((s, b["extension"].as_str()), (200, Some("zip")));
    // A blob staged for another repository, or never staged, is not found; a bad
    // reference is a 400; a staged blob that is no chart is refused like any upload.
    for (reference, status) in
        [(digest.clone(), 404), (format!("sha256:{}", "a".repeat(64)), 404), ("sha256:nope".to_string(), 400)]
    {
        let res = api
            .http
            .post(format!("{}/rds/api/sp/other/charts", api.base))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .header("x-depot-blob", &reference)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), status, "{reference}");
        assert!(res.json::<Value>().await.unwrap()["error"].is_string());
    }
    let junk = crate::uploads::upload(&api, "sp", "charts", b"not an archive at all").await;
    let res = api
        .http
        .post(format!("{}{up}", api.base))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("x-depot-blob", junk["done"]["digest"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    assert!(res.json::<Value>().await.unwrap()["error"].as_str().unwrap().contains("broken"));
}

/// A `depot` maintenance command on the embedded data in `dir`: (exit code, stdout,
/// stderr).
fn maintenance(command: &str, dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(crate::harness::binary("depot"))
        .args([command, "--data-dir", dir.to_str().unwrap()])
        .args(args)
        .env_remove("DEPOT_BACKEND")
        .output()
        .unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.code().unwrap_or(-1), text(out.stdout), text(out.stderr))
}

fn gc(dir: &std::path::Path, args: &[&str]) -> String {
    let (code, out, err) = maintenance("gc", dir, args);
    assert_eq!(code, 0, "{err}");
    out
}

#[tokio::test]
async fn gc_removes_only_unreferenced_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--data-dir", dir.path().to_str().unwrap()];
    let env = [("DEPOT_ADMIN_PASSWORD", ADMIN_PASSWORD)];
    let server = Server::start(&args, &env);
    let api = Api::new(&server.base);
    rds_repo(&api, "gc", "one").await;
    let (s, b) =
        api.post("/repository/api/repo/create", json!({"projectId": "gc", "name": "two", "type": "RDS"})).await;
    data(s, &b);
    // The same bytes in two repositories; then one of them is deleted.
    let (f, shared) = chart("shared", "1.0.0", "tgz");
    assert_eq!(upload(&api, "/rds/api/gc/one/charts", &f, shared.clone()).await.0, 201);
    assert_eq!(upload(&api, "/rds/api/gc/two/charts", &f, shared.clone()).await.0, 201);
    let (s, _) = api.delete("/rds/gc/one/api/charts/shared/1.0.0").await;
    assert_eq!(s, 200);
    // A chart overwritten: its first bytes are no longer referenced.
    let (f2, first) = chart("over", "1.0.0", "tgz");
    assert_eq!(upload(&api, "/rds/api/gc/one/charts", &f2, first.clone()).await.0, 201);
    let second = gzip(&tar_of(&[("over/RDS.yaml", format!("{}# second\n", rds_yaml("over", "1.0.0")).into_bytes())]));
    assert_eq!(upload(&api, "/rds/api/gc/one/charts?force=true", &f2, second.clone()).await.0, 201);
    drop(server);

    let stored = |bytes: &[u8]| stored_in(dir.path(), sha256_hex(bytes));
    let young = gc(dir.path(), &["--dry-run"]);
    assert!(young.contains("0 unreferenced"), "the grace period protects fresh blobs: {young}");
    let dry = gc(dir.path(), &["--dry-run", "--grace-secs", "0"]);
    assert!(dry.contains(&format!("would remove blobs/sha256/{}", &sha256_hex(&first)[..2])), "{dry}");
    assert!(dry.contains("1 unreferenced") && dry.contains("0 removed"), "{dry}");
    assert!(stored(&first).await, "a dry run removes nothing");
    let real = gc(dir.path(), &["--grace-secs", "0"]);
    assert!(real.contains("1 removed"), "{real}");
    assert!(!stored(&first).await);
    assert!(stored(&second).await && stored(&shared).await, "referenced blobs stay");
    let again = gc(dir.path(), &["--grace-secs", "0"]);
    assert!(again.contains("0 unreferenced"), "{again}");

    // The shared chart still downloads from the other repository.
    let server = Server::start(&args, &env);
    let api = Api::new(&server.base);
    let got = reqwest::Client::new()
        .get(format!("{}/rds/gc/two/charts/shared-1.0.0.tgz", api.base))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(got.bytes().await.unwrap().to_vec(), shared);
}

/// Whether the embedded store in `dir` holds the blob of `sha` (a chart this small is a
/// row of the table's file), asked of the store while no server holds it.
async fn stored_in(dir: &std::path::Path, sha: String) -> bool {
    let key = format!("blobs/sha256/{}/{}/{sha}", &sha[..2], &sha[2..4]);
    let (_table, store) = blob_store_in(dir);
    store.head(&key).await.unwrap().is_some()
}

/// The blob store of the data directory `dir`, opened as `depot serve` opens it (its
/// small blobs are rows of the table's file), with that table.
fn blob_store_in(
    dir: &std::path::Path,
) -> (depot_core::store::embedded::EmbeddedTable, depot_core::store::fs::FsBlobStore) {
    let table = depot_core::store::embedded::EmbeddedTable::open(&dir.join("depot.redb")).unwrap();
    let store =
        depot_core::store::fs::FsBlobStore::open_beside(&dir.join("blobs"), depot_core::store::fs::INLINE_BYTES, &table)
            .unwrap();
    (table, store)
}

/// `depot verify` with its arguments: (exit code, stdout, stderr).
fn verify(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    maintenance("verify", dir, args)
}

/// The operator's integrity check: a clean store passes (exit 0), a blob whose bytes no
/// longer match its key and its version is named, and the exit status says so.
#[tokio::test]
async fn verify_reports_blobs_that_do_not_match() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--data-dir", dir.path().to_str().unwrap()];
    let server = Server::start(&args, &[("DEPOT_ADMIN_PASSWORD", ADMIN_PASSWORD)]);
    let api = Api::new(&server.base);
    rds_repo(&api, "vf", "charts").await;
    for code in ["alpha", "beta"] {
        let (file, bytes) = chart(code, "1.0.0", "tgz");
        assert_eq!(upload(&api, "/rds/api/vf/charts/charts", &file, bytes).await.0, 201);
    }
    // While depot serve holds the database, the maintenance commands say so.
    let (code, _, err) = verify(dir.path(), &[]);
    assert!(
        code != 0 && err.contains("in use by another depot process") && err.contains("stop that one first"),
        "{err}"
    );
    drop(server);

    let (code, out, err) = verify(dir.path(), &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("2 blobs checked") && out.contains("0 do not match"), "{out}");
    let (code, out, _) = verify(dir.path(), &["--repo", "vf/charts", "--sample", "1"]);
    assert_eq!((code, out.contains("1 blobs checked")), (0, true), "{out}");

    // Corrupt one blob in place: a chart this small is a row of the table's file,
    // rewritten here through the store while no server holds it.
    let (table, store) = blob_store_in(dir.path());
    let victim = store.list("blobs/sha256").await.unwrap().remove(0).key;
    assert!(!dir.path().join("blobs").join(&victim).exists(), "a small chart is no file of its own");
    store.put(&victim, depot_core::store::stream_from_bytes(&b"not the chart any more"[..])).await.unwrap();
    drop((table, store));
    let name = victim.rsplit('/').next().unwrap().to_string();
    let (code, out, err) = verify(dir.path(), &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains(&format!("BAD blobs/sha256/{}/{}/{name}", &name[..2], &name[2..4])), "{out}");
    assert!(out.contains("its key names") && out.contains("version [1.0.0]"), "{out}");
    assert!(out.contains("1 do not match"), "{out}");
    let (code, _, err) = verify(dir.path(), &["--repo", "nonsense"]);
    assert!(code != 0 && err.contains("PROJECT/REPO"), "{err}");
    let (code, _, err) = verify(dir.path(), &["--repo", "vf/none"]);
    assert!(code != 0 && err.contains("not found"), "{err}");
}

/// Two packages whose file names coincide (`b-1.0.0` at 2.3.4 and `b` at 1.0.0-2.3.4 are
/// both `b-1.0.0-2.3.4.tgz`): the second is refused, so a WRITE user cannot take over the
/// download of another package's released version. A HEAD counts no download.
#[tokio::test]
async fn a_file_name_names_one_version() {
    let (_dir, _server, api) = embedded(&[]);
    rds_repo(&api, "fn", "charts").await;
    let (s, b) = api.post("/auth/api/user/create", json!({"userId": "writer", "pwd": "writer-password"})).await;
    data(s, &b);
    let grant = json!({"permName": "w", "projectId": "fn", "resourceType": "REPO", "repos": ["charts"], "users": [{"id": "writer", "action": ["WRITE"]}]});
    let (s, b) = api.post("/auth/api/permission/create", grant).await;
    data(s, &b);
    let (file, victim) = chart("b-1.0.0", "2.3.4", "tgz");
    assert_eq!(file, "b-1.0.0-2.3.4.tgz");
    assert_eq!(upload(&api, "/rds/api/fn/charts/charts", &file, victim.clone()).await.0, 201);
    let (s, b) =
        api.post("/repository/api/stage/upgrade/fn/charts/rds%3A%2F%2Fb-1.0.0/2.3.4?tag=@release", json!({})).await;
    data(s, &b);
    let (same_name, evil) = chart("b", "1.0.0-2.3.4", "tgz");
    assert_eq!(same_name, file);
    let writer = api.as_user("writer", "writer-password");
    let (s, b) = upload(&writer, "/rds/api/fn/charts/charts", &same_name, evil.clone()).await;
    assert_eq!(error_of(s, &b, 409), "b-1.0.0-2.3.4.tgz already exists");
    let (s, b) = api.get("/repository/api/package/info/fn/charts?packageKey=rds://b").await;
    assert_eq!(data(s, &b), json!(null));
    // The download still serves the released version's bytes.
    let url = format!("{}/rds/fn/charts/charts/{file}", api.base);
    let got = api.http.get(&url).basic_auth("admin", Some(ADMIN_PASSWORD)).send().await.unwrap();
    assert_eq!(got.bytes().await.unwrap().to_vec(), victim);
    // HEAD counts nothing; GET counts one.
    let downloads = || async {
        let (s, b) = api.get("/repository/api/package/info/fn/charts?packageKey=rds://b-1.0.0").await;
        data(s, &b)["downloads"].as_i64().unwrap()
    };
    let before = downloads().await;
    let head =
        crate::uploads::no_redirects().head(&url).basic_auth("admin", Some(ADMIN_PASSWORD)).send().await.unwrap();
    assert_eq!(head.status().as_u16(), 302);
    assert_eq!(downloads().await, before, "a HEAD is no download");
    let dl = format!("{}/repository/api/version/download/fn/charts?packageKey=rds://b-1.0.0&version=2.3.4", api.base);
    let head = crate::uploads::no_redirects().head(&dl).basic_auth("admin", Some(ADMIN_PASSWORD)).send().await.unwrap();
    assert_eq!(head.status().as_u16(), 302);
    assert_eq!(downloads().await, before);
    crate::uploads::no_redirects().get(&dl).basic_auth("admin", Some(ADMIN_PASSWORD)).send().await.unwrap();
    assert_eq!(downloads().await, before + 1);
    // Once the holder is gone the name is free again.
    let (s, b) = api.delete("/repository/api/package/delete/fn/charts?packageKey=rds://b-1.0.0").await;
    data(s, &b);
    assert_eq!(upload(&writer, "/rds/api/fn/charts/charts", &same_name, evil.clone()).await.0, 201);
    let got = api.http.get(&url).basic_auth("admin", Some(ADMIN_PASSWORD)).send().await.unwrap();
    assert_eq!(got.bytes().await.unwrap().to_vec(), evil);
}

/// A GNU long-name entry is a header and a body that the tar crate would read whole into
/// memory: 256 MiB of name compress to 250 KB. The reader refuses it from its header,
/// and the server's memory does not move.
#[tokio::test]
async fn a_huge_long_name_is_refused_without_being_read() {
    let (_dir, server, api) = embedded(&[]);
    rds_repo(&api, "hl", "charts").await;
    let name_size: u64 = 256 * 1024 * 1024;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(tar_header(b"././@LongLink", name_size, tar::EntryType::GNULongName).as_bytes()).unwrap();
    let chunk = vec![b'a'; 1024 * 1024];
    for _ in 0..name_size / chunk.len() as u64 {
        gz.write_all(&chunk).unwrap();
    }
    gz.write_all(&tar_of(&[("c/RDS.yaml", rds_yaml("c", "1.0.0").into_bytes())])).unwrap();
    let bytes = gz.finish().unwrap();
    assert!(bytes.len() < 2 * 1024 * 1024, "{} bytes", bytes.len());
    let base = server.rss();
    server.reset_peak_rss();
    let (s, b) = upload(&api, "/rds/api/hl/charts/charts", "c-1.0.0.tgz", bytes).await;
    let peak = server.peak_rss();
    assert_eq!(s, 413, "{b}");
    assert!(b["error"].as_str().unwrap_or_default().contains("entry name is over 4096 bytes"), "{b}");
    eprintln!("a 256 MiB long name: server peak RSS {:.1} MiB, {:.1} before", peak as f64 / 1048576.0, base as f64 / 1048576.0);
    assert!(peak - base < 64 * 1024 * 1024, "peak RSS {peak} bytes, {base} before");
}

// ---------------------------------------------------------------- as bkrepo's controllers had it

/// `index.yaml` read by PyYAML's `safe_load` (YAML 1.1, as Helm's reader): every string
/// stays a string (`created`, `generated`, a version like `1.10.0`, a code like `on`),
/// and fields a chart lacks are left out.
async fn index_types_on(api: &Api, p: &str) {
    rds_repo(api, p, "charts").await;
    // Through the push plugin's URL.
    let (file, bytes) = chart("demo", "1.0.0", "tgz");
    assert_eq!(upload(api, &format!("/rds/{p}/charts/charts"), &file, bytes).await.0, 201);
    // A chart with no home, icon or rdsVersion, whose code YAML 1.1 reads as a boolean.
    let bare = gzip(&tar_of(&[("on/RDS.yaml", b"name: bare\ncode: \"on\"\nversion: 1.10.0\n".to_vec())]));
    let (s, b) = upload(api, &format!("/rds/api/{p}/charts/charts"), "on-1.10.0.tgz", bare).await;
    assert_eq!(s, 201, "{b}");
    // Characters a YAML 1.1 reader refuses or reads as line breaks, written escaped.
    let odd = "name: odd\ncode: odd\nversion: 0.1.0\ndescription: \"del \\x7f nel \\x85 ls \\u2028 ps \\u2029 bom \\ufeff nc \\ufffe \\uffff end\"\n";
    let odd = gzip(&tar_of(&[("odd/RDS.yaml", odd.as_bytes().to_vec())]));
    let (s, b) = upload(api, &format!("/rds/api/{p}/charts/charts"), "odd-0.1.0.tgz", odd).await;
    assert_eq!(s, 201, "{b}");
    let (s, text) = get_text(api, &format!("/rds/{p}/charts/index.yaml")).await;
    assert_eq!(s, 200);
    let script = "import sys, yaml, json; print(json.dumps(yaml.safe_load(sys.stdin), default=lambda o: {'NOT A STRING': repr(o)}))";
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 with PyYAML (infra/test.sh puts the test virtualenv first on PATH)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "PyYAML could not read index.yaml:\n{text}");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc["generated"].is_string(), "{doc}");
    let demo = &doc["entries"]["demo"][0];
    assert!(demo["created"].is_string() && demo["version"] == "1.0.0" && demo["home"].is_string(), "{demo}");
    let on = &doc["entries"]["on"][0];
    assert_eq!((on["version"].as_str(), on["code"].as_str()), (Some("1.10.0"), Some("on")), "{doc}");
    for absent in ["home", "icon", "rdsVersion"] {
        assert!(on.get(absent).is_none(), "{absent} is left out: {on}");
    }
    assert_eq!(
        doc["entries"]["odd"][0]["description"].as_str(),
        Some("del \u{7f} nel \u{85} ls \u{2028} ps \u{2029} bom \u{feff} nc \u{fffe} \u{ffff} end"),
        "every character comes back as stored"
    );
}

#[tokio::test]
async fn rds_answers_as_bkrepo_did() {
    let (_dir, _server, api) = embedded(&[]);
    index_types_on(&api, "bc").await;
    // ?startTime= keeps the versions created since.
    let charts = |q: &str| {
        let api = api.clone();
        let path = format!("/rds/bc/charts/api/charts{q}");
        async move {
            let res = api.http.get(format!("{}{path}", api.base)).basic_auth("admin", Some(ADMIN_PASSWORD)).send().await.unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    let (s, all) = charts("?startTime=2001-01-01T00:00:00").await;
    assert_eq!((s, all.as_object().map(|o| o.len())), (200, Some(3)), "{all}");
    let (_, none) = charts("?startTime=2999-01-01T00:00:00.000Z").await;
    assert_eq!(none, json!({}));
    let (s, bad) = charts("?startTime=yesterday").await;
    assert!(error_of(s, &bad, 400).contains("startTime"));
    // The version detail names its project and repository.
    let (s, b) = api.get("/rds/ext/version/detail/bc/charts?packageKey=rds://demo&version=1.0.0").await;
    let basic = &data(s, &b)["basic"];
    assert_eq!((basic["projectId"].as_str(), basic["repoName"].as_str()), (Some("bc"), Some("charts")), "{basic}");
    // An unknown path under /rds/ answers in RDS's shape.
    let (s, b) = api.get("/rds/bc/charts/no/such/route").await;
    assert!(error_of(s, &b, 404).contains("no such route"), "{b}");
}

#[tokio::test]
async fn rds_index_yaml_types_aws() {
    let (server, _) = crate::harness::aws_server("bc", &[]);
    index_types_on(&Api::new(&server.base), "bca").await;
}

/// `curl -L -OJ` on bkrepo's version download saves the chart under its own name: the
/// final answer of the redirect (depot's signed route, or S3's presigned URL) carries
/// `Content-Disposition` with `filename=` (which curl reads) and `filename*=`.
async fn curl_saves_the_chart_name(api: &Api, p: &str) {
    rds_repo(api, p, "charts").await;
    let (file, bytes) = chart("mychart", "1.0.0", "tgz");
    assert_eq!(upload(api, &format!("/rds/api/{p}/charts/charts"), &file, bytes.clone()).await.0, 201);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{}/repository/api/version/download/{p}/charts?packageKey=rds://mychart&version=1.0.0", api.base);
    let out = std::process::Command::new("curl")
        .args(["-sS", "-f", "-L", "-OJ", "-u", &format!("admin:{ADMIN_PASSWORD}"), &url])
        .current_dir(dir.path())
        .output()
        .expect("curl");
    assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
    let saved = std::fs::read(dir.path().join("mychart-1.0.0.tgz")).expect("saved as mychart-1.0.0.tgz");
    assert!(saved == bytes, "byte for byte");
}

#[tokio::test]
async fn curl_saves_the_chart_name_embedded() {
    let (_dir, _server, api) = embedded(&[]);
    curl_saves_the_chart_name(&api, "cj").await;
}

#[tokio::test]
async fn curl_saves_the_chart_name_aws() {
    let (server, _) = crate::harness::aws_server("cj", &[]);
    curl_saves_the_chart_name(&Api::new(&server.base), "cja").await;
}

/// DynamoDB cancelling transactions that race (moto made to, as DynamoDB does under
/// real concurrency): a few are retried and the upload succeeds; when they do not stop,
/// it answers 503 with `Retry-After`, never a 500, and stores nothing. A download, one
/// single-item write, goes on meanwhile; when its own write keeps being refused, it too
/// answers 503.
#[tokio::test]
async fn conflicting_transactions_retry_then_answer_503() {
    let (server, table, _bucket) = crate::harness::aws_server_with_table("conflict", &[]);
    let api = Api::new(&server.base);
    rds_repo(&api, "busy", "charts").await;
    let up = "/rds/api/busy/charts/charts";
    let arm = |count: u32| {
        let table = table.clone();
        async move {
            let endpoint = crate::harness::aws_endpoint();
            let fault =
                json!({"table": table, "op": "TransactWriteItems", "count": count, "kind": "TransactionConflict"});
            let res =
                reqwest::Client::new().post(format!("{endpoint}/_depot/faults")).json(&fault).send().await.unwrap();
            assert!(res.status().is_success());
        }
    };
    let (file, bytes) = chart("busy", "1.0.0", "tgz");
    arm(3).await;
    let (s, b) = upload(&api, up, &file, bytes).await;
    assert_eq!(s, 201, "three conflicts are retried: {b}");

    arm(1000).await;
    let (file2, bytes2) = chart("busy", "1.1.0", "tgz");
    let res = api
        .http
        .post(format!("{}{up}", server.base))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .multipart(
            reqwest::multipart::Form::new().part("chart", reqwest::multipart::Part::bytes(bytes2).file_name(file2)),
        )
        .send()
        .await
        .unwrap();
    let (status, retry) = (res.status().as_u16(), res.headers().get("retry-after").cloned());
    assert_eq!(status, 503, "{} {:?}", res.text().await.unwrap(), server.log());
    assert_eq!(retry.unwrap(), "1");
    let download = || async {
        crate::uploads::no_redirects()
            .get(format!("{}/rds/busy/charts/charts/busy-1.0.0.tgz", server.base))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .send()
            .await
            .unwrap()
    };
    // A download is one single-item write, no transaction: conflicting transactions do
    // not stop it.
    assert_eq!(download().await.status().as_u16(), 302, "a download is not a transaction");
    // Its write refused as DynamoDB refuses an item a transaction holds: retried, then 503.
    let endpoint = crate::harness::aws_endpoint();
    let fault = json!({"table": table, "op": "UpdateItem", "count": 1000, "kind": "TransactionConflictException"});
    reqwest::Client::new().post(format!("{endpoint}/_depot/faults")).json(&fault).send().await.unwrap();
    let res = download().await;
    assert_eq!(res.status().as_u16(), 503, "a download whose write keeps conflicting");
    assert!(res.headers().contains_key("retry-after"));
    let fault = json!({"table": table, "op": "UpdateItem", "count": 0, "kind": "TransactionConflictException"});
    reqwest::Client::new().post(format!("{endpoint}/_depot/faults")).json(&fault).send().await.unwrap();
    arm(0).await;
    let idx = index(&api, "busy", "charts").await;
    let versions: Vec<_> = idx["entries"]["busy"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| e["version"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(versions, ["1.0.0"], "the refused upload stored nothing");
}
