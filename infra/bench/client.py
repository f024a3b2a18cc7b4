#!/usr/bin/env python3
"""The depot client against curl: a large chart pushed and pulled through an upload
session on a fresh `depot serve` (embedded, loopback), both in the same run.

Usage: infra/bench/client.py [path/to/depot] [megabytes] [runs]

Each run pushes the same chart (a .tar of RDS.yaml and random bytes) twice, once with
`depot push --force` and once with curl doing the same session steps (sha256sum, open
the session, PUT the 16 MiB parts four at a time, complete, poll while the server
verifies, publish with X-Depot-Blob), in alternating order; then pulls it twice, with
`depot pull` and with `curl -L` followed by sha256sum (the client verifies too). curl
gets its parts pre-split outside the timing, so it is the stricter baseline. It prints
each run's MB/s, the client's share of curl's throughput, and the client's peak RSS
(from /usr/bin/time), then the medians.
"""
import base64
import json
import os
import shlex
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request

from depot_proc import PASSWORD, Serve

AUTH = "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()


def call(method, url, body=None):
    req = urllib.request.Request(url, data=body, method=method)
    req.add_header("Authorization", AUTH)
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=600) as res:
        return json.loads(res.read())


def make_chart(path, megabytes):
    """A chart of about `megabytes` MB, written in 8 MiB blocks (never held whole)."""
    work = os.path.dirname(path)
    with open(os.path.join(work, "pad.bin"), "wb") as f:
        left = megabytes * 1_000_000
        while left > 0:
            n = min(left, 8 << 20)
            f.write(os.urandom(n))
            left -= n
    with open(os.path.join(work, "RDS.yaml"), "w") as f:
        f.write("rdsVersion: v1\nname: Bench\ncode: bench\nversion: 1.0.0\ndescription: a large chart\n")
    with tarfile.open(path, "w") as t:
        t.add(os.path.join(work, "RDS.yaml"), arcname="bench/RDS.yaml")
        t.add(os.path.join(work, "pad.bin"), arcname="bench/pad.bin")
    os.remove(os.path.join(work, "pad.bin"))


CURL_PUSH = r"""
set -eu
sha=$(sha256sum "$FILE" | cut -d' ' -f1); size=$(stat -c%s "$FILE")
s=$(curl -fsS -u "$AUTH" "$BASE/blobs/uploads" -H 'content-type: application/json' \
      -d "{\"projectId\":\"bench\",\"repoName\":\"charts\",\"size\":$size,\"sha256\":\"$sha\"}")
id=$(printf '%s' "$s" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["id"])')
printf '%s' "$s" | python3 -c 'import json,sys
for p in json.load(sys.stdin)["data"]["parts"]: print("%s/part%03d %s" % (sys.argv[1], p["partNumber"] - 1, p["url"]))' "$PARTS" |
  xargs -P 4 -n 2 sh -c 'curl -fsS -o /dev/null -H "content-type: application/octet-stream" -T "$0" "$1"'
curl -fsS -o /dev/null -u "$AUTH" -X POST "$BASE/blobs/uploads/$id/complete"
until curl -fsS -u "$AUTH" "$BASE/blobs/uploads/$id" | grep -q '"state":"COMPLETE"'; do sleep 1; done
curl -fsS -o /dev/null -u "$AUTH" -H "X-Depot-Blob: sha256:$sha" -X POST "$BASE/rds/api/bench/charts/charts?force=true"
"""

CURL_PULL = r"""
set -eu
curl -fsSL -u "$AUTH" -o "$OUT" "$BASE/repository/api/version/download/bench/charts?packageKey=rds://bench&version=1.0.0"
sha256sum "$OUT" > /dev/null
"""


def timed(cmd, env):
    """Wall seconds and peak RSS (bytes) of `cmd`, through /usr/bin/time."""
    start = time.perf_counter()
    out = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], env=env, capture_output=True, text=True)
    secs = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} failed:\n{out.stdout}\n{out.stderr}")
    rss_kb = int(out.stderr.strip().splitlines()[-1])
    return secs, rss_kb * 1024


def main():
    binary = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/release/depot")
    megabytes = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    work = tempfile.mkdtemp(prefix="depot-client-bench-")
    chart = os.path.join(work, "bench-1.0.0.tar")
    make_chart(chart, megabytes)
    size = os.path.getsize(chart)
    parts = os.path.join(work, "parts")
    os.mkdir(parts)
    subprocess.run(["split", "-b", str(16 << 20), "-d", "-a", "3", chart, os.path.join(parts, "part")], check=True)
    print(f"chart: {size} bytes; {runs} run(s)")
    rows = []
    with Serve(binary) as srv:
        call("POST", srv.base + "/repository/api/project/create", json.dumps({"name": "bench"}).encode())
        call("POST", srv.base + "/repository/api/repo/create",
             json.dumps({"projectId": "bench", "name": "charts", "type": "RDS"}).encode())
        env = dict(os.environ, XDG_CONFIG_HOME=os.path.join(work, "config"), AUTH=f"admin:{PASSWORD}",
                   BASE=srv.base, FILE=chart, PARTS=parts, OUT=os.path.join(work, "curl.tar"))
        subprocess.run([binary, "login", srv.base, "--user", "admin", "--password-stdin"], env=env,
                       input=PASSWORD + "\n", text=True, check=True, capture_output=True)
        client_push = [binary, "push", "bench/charts", chart, "--force", "-q"]
        client_pull = [binary, "pull", "bench/charts", "bench@1.0.0", "-o", os.path.join(work, "client.tar"), "-q"]
        for run in range(runs):
            order = ["client", "curl"] if run % 2 == 0 else ["curl", "client"]
            got = {}
            for who in order:
                cmd = client_push if who == "client" else ["bash", "-c", CURL_PUSH]
                got[("push", who)] = timed(cmd, env)
            for who in order:
                cmd = client_pull if who == "client" else ["bash", "-c", CURL_PULL]
                got[("pull", who)] = timed(cmd, env)
                os.remove(os.path.join(work, "client.tar" if who == "client" else "curl.tar"))
            row = {}
            for op in ("push", "pull"):
                (cs, crss), (us, _) = got[(op, "client")], got[(op, "curl")]
                row[op] = (size / cs / 1e6, size / us / 1e6, crss)
                print(f"run {run + 1} {op}: client {size / cs / 1e6:7.1f} MB/s, curl {size / us / 1e6:7.1f} MB/s, "
                      f"client/curl {us / cs:5.0%}, client peak RSS {crss / 1e6:.1f} MB")
            rows.append(row)
    for op in ("push", "pull"):
        c = statistics.median(r[op][0] for r in rows)
        u = statistics.median(r[op][1] for r in rows)
        rss = max(r[op][2] for r in rows)
        print(f"median {op}: client {c:.1f} MB/s, curl {u:.1f} MB/s, client/curl {c / u:.0%}; "
              f"client peak RSS at most {rss / 1e6:.1f} MB")
    subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
