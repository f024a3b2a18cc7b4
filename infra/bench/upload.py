#!/usr/bin/env python3
"""A large upload through an upload session, against a fresh `depot serve` (embedded).

Usage: infra/bench/upload.py [path/to/depot] [megabytes] [runs]
Each run opens a session for the file, PUTs the bytes to the signed URLs the session
returns (one PUT, or one per 16 MiB part), and completes it (the server re-reads and
hashes the bytes). It prints, per run, the time to send the bytes, the time to complete,
the throughput of the whole, and the server's resident memory just before the upload
(VmRSS) and at its peak during it (VmHWM, reset just before), then the medians.
"""
import base64
import hashlib
import json
import os
import statistics
import sys
import time
import urllib.request

from depot_proc import PASSWORD, Serve

AUTH = "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()


def call(method, url, body=None, auth=True, content_type="application/json"):
    req = urllib.request.Request(url, data=body, method=method)
    if auth:
        req.add_header("Authorization", AUTH)
    if body is not None:
        req.add_header("Content-Type", content_type)
    with urllib.request.urlopen(req, timeout=600) as res:
        data = res.read()
        return json.loads(data) if data[:1] == b"{" else data


def status_bytes(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def one(binary, payload, sha):
    with Serve(binary) as srv:
        base, pid = srv.base, srv.proc.pid
        call("POST", base + "/repository/api/project/create", json.dumps({"name": "bench"}).encode())
        call("POST", base + "/repository/api/repo/create",
             json.dumps({"projectId": "bench", "name": "files", "type": "GENERIC"}).encode())
        session = call("POST", base + "/blobs/uploads", json.dumps(
            {"projectId": "bench", "repoName": "files", "size": len(payload), "sha256": sha}).encode())["data"]
        before = status_bytes(pid, "VmRSS")
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        start = time.perf_counter()
        if session["url"]:
            call("PUT", session["url"], payload, auth=False, content_type="application/octet-stream")
        else:
            size = session["partSize"]
            for p in session["parts"]:
                n = p["partNumber"]
                chunk = payload[(n - 1) * size:n * size]
                call("PUT", p["url"], chunk, auth=False, content_type="application/octet-stream")
        sent = time.perf_counter()
        done = call("POST", f"{base}/blobs/uploads/{session['id']}/complete", b"{}")["data"]
        finished = time.perf_counter()
        assert done["digest"] == "sha256:" + sha, done
        return sent - start, finished - sent, status_bytes(pid, "VmHWM"), before


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/depot"
    mb = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    payload = os.urandom(mb * 1000 * 1000)
    sha = hashlib.sha256(payload).hexdigest()
    rows = []
    for i in range(runs):
        send, complete, rss, before = one(binary, payload, sha)
        rows.append((send, complete, rss, before))
        total = send + complete
        print(f"run {i + 1}: send {send:.2f} s, complete {complete:.2f} s, "
              f"{mb / total:.0f} MB/s overall, server RSS {before / 1048576:.1f} MiB before, "
              f"peak {rss / 1048576:.1f} MiB during")
    med = lambda k: statistics.median(r[k] for r in rows)
    print(f"median of {runs}: send {med(0):.2f} s, complete {med(1):.2f} s, "
          f"{mb / (med(0) + med(1)):.0f} MB/s, RSS before {med(3) / 1048576:.1f} MiB, "
          f"peak during {med(2) / 1048576:.1f} MiB")


if __name__ == "__main__":
    main()
