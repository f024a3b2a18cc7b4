#!/usr/bin/env python3
"""Hot read paths of a fresh `depot serve` (embedded) under wrk: the hot `index.yaml`
against a 302 download of a chart, in the same run, with token authentication.

Usage: infra/bench/hot_paths.py [path/to/depot] [seconds] [connections]
Needs wrk (Debian's package). Prints each path's requests per second, and the
download's rate as a share of the index's.
"""
import base64
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import urllib.request

from depot_proc import PASSWORD, Serve

AUTH = "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()


def call(method, url, body=None, content_type="application/json"):
    req = urllib.request.Request(url, data=body, method=method)
    req.add_header("Authorization", AUTH)
    if body is not None:
        req.add_header("Content-Type", content_type)
    with urllib.request.urlopen(req, timeout=60) as res:
        return json.loads(res.read())


def chart_form(work):
    with open(os.path.join(work, "RDS.yaml"), "w") as f:
        f.write("rdsVersion: v1\nname: Hot\ncode: hot\nversion: 1.0.0\ndescription: a chart\n")
    path = os.path.join(work, "hot-1.0.0.tgz")
    with tarfile.open(path, "w:gz") as t:
        t.add(os.path.join(work, "RDS.yaml"), arcname="hot/RDS.yaml")
    data = open(path, "rb").read()
    boundary = "hotpathsboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"chart\"; filename=\"hot-1.0.0.tgz\"\r\n"
            f"Content-Type: application/gzip\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def wrk(url, token, seconds, connections):
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-H", f"Authorization: Bearer {token}", url],
                         capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit(f"{url}: {non2xx.group(1)} error answers\n{out}")
    return rate


def main():
    binary = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/release/depot")
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    connections = int(sys.argv[3]) if len(sys.argv) > 3 else 16
    work = tempfile.mkdtemp(prefix="depot-hot-")
    with Serve(binary) as srv:
        base = srv.base
        call("POST", base + "/repository/api/project/create", json.dumps({"name": "hot"}).encode())
        call("POST", base + "/repository/api/repo/create", json.dumps({"projectId": "hot", "name": "charts", "type": "RDS"}).encode())
        body, ctype = chart_form(work)
        call("POST", base + "/rds/api/hot/charts/charts", body, ctype)
        token = call("POST", base + "/auth/api/user/token/admin/bench")["data"]["id"]
        index = wrk(f"{base}/rds/hot/charts/index.yaml", token, seconds, connections)
        download = wrk(f"{base}/rds/hot/charts/charts/hot-1.0.0.tgz", token, seconds, connections)
        info = call("GET", base + "/repository/api/package/info/hot/charts?packageKey=rds://hot")["data"]
    print(f"index.yaml (hot): {index:9.0f} requests/s")
    print(f"download (302):   {download:9.0f} requests/s, {download / index:.0%} of the index's")
    print(f"downloads counted: {info['downloads']}")
    subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
