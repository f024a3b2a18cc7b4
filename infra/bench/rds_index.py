#!/usr/bin/env python3
"""index.yaml latency as an RDS repository grows, against a fresh `depot serve` (embedded).

Usage: infra/bench/rds_index.py [path/to/depot] [sizes, comma-separated]
Seeds one repository with chart versions up to each size (default 1000,10000), and at
each size prints:
  - upload latency (median, p99) of the uploads that seeded it;
  - GET index.yaml when hot (nothing changed since the last GET; median, p99 of 50),
    in full and as a conditional GET with the last ETag (304);
  - GET index.yaml just after a write (one upload, then the GET; median, p99 of 10);
  - the index's size.
A hot GET is served from the rendering cached under the repository's generation, so it
should not grow with the number of versions; a GET after a write renders again.
"""
import base64
import io
import sys
import tarfile
import time
import urllib.error
import urllib.request

from depot_proc import PASSWORD, Serve

AUTH = "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()


def call(method, url, body=None, content_type=None):
    req = urllib.request.Request(url, data=body, method=method)
    req.add_header("Authorization", AUTH)
    if content_type:
        req.add_header("Content-Type", content_type)
    with urllib.request.urlopen(req, timeout=600) as res:
        return res.read()


def chart(code, version):
    meta = f"rdsVersion: v1\nname: {code}\ncode: {code}\nversion: {version}\ndescription: bench\n".encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        info = tarfile.TarInfo(f"{code}/RDS.yaml")
        info.size = len(meta)
        t.addfile(info, io.BytesIO(meta))
    return buf.getvalue()


def upload(base, code, version):
    boundary = "benchboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"chart\"; filename=\"{code}-{version}.tgz\"\r\n"
            f"Content-Type: application/gzip\r\n\r\n").encode() + chart(code, version) + f"\r\n--{boundary}--\r\n".encode()
    start = time.perf_counter()
    call("POST", base + "/rds/api/bench/charts/charts", body, f"multipart/form-data; boundary={boundary}")
    return time.perf_counter() - start


def get_index(base):
    start = time.perf_counter()
    req = urllib.request.Request(base + "/rds/bench/charts/index.yaml")
    req.add_header("Authorization", AUTH)
    with urllib.request.urlopen(req, timeout=600) as res:
        body = res.read()
        etag = res.headers["ETag"]
    return time.perf_counter() - start, len(body), etag


def get_index_if_changed(base, etag):
    """A conditional GET with the ETag of the last answer: 304 while nothing changed."""
    start = time.perf_counter()
    req = urllib.request.Request(base + "/rds/bench/charts/index.yaml")
    req.add_header("Authorization", AUTH)
    req.add_header("If-None-Match", etag)
    try:
        urllib.request.urlopen(req, timeout=600)
        status = 200
    except urllib.error.HTTPError as e:
        status = e.code
    assert status == 304, status
    return time.perf_counter() - start


def ms(samples, q):
    s = sorted(samples)
    return s[min(len(s) - 1, round((len(s) - 1) * q))] * 1000


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/depot"
    sizes = [int(x) for x in (sys.argv[2] if len(sys.argv) > 2 else "1000,10000").split(",")]
    with Serve(binary) as srv:
        base = srv.base
        call("POST", base + "/repository/api/project/create", b'{"name":"bench"}', "application/json")
        call("POST", base + "/repository/api/repo/create",
             b'{"projectId":"bench","name":"charts","type":"RDS"}', "application/json")
        seeded, extra = 0, 0
        for size in sizes:
            uploads = []
            while seeded < size:
                # Ten charts, versions 1.0.0 .. 1.0.n each.
                uploads.append(upload(base, f"chart{seeded % 10}", f"1.0.{seeded // 10}"))
                seeded += 1
            _, _, etag = get_index(base)
            hot = [get_index(base)[0] for _ in range(50)]
            not_modified = [get_index_if_changed(base, etag) for _ in range(50)]
            after = []
            for _ in range(10):
                upload(base, "extra", f"0.0.{extra}")
                extra += 1
                after.append(get_index(base)[0])
            _, length, _ = get_index(base)
            print(f"{size} versions: upload median {ms(uploads, 0.5):.1f} ms, p99 {ms(uploads, 0.99):.1f} ms; "
                  f"index hot median {ms(hot, 0.5):.2f} ms, p99 {ms(hot, 0.99):.2f} ms; "
                  f"hot with If-None-Match (304) median {ms(not_modified, 0.5):.2f} ms, p99 {ms(not_modified, 0.99):.2f} ms; "
                  f"after a write median {ms(after, 0.5):.1f} ms, p99 {ms(after, 0.99):.1f} ms; "
                  f"index {length / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
