#!/usr/bin/env python3
"""Small uploads: `depot serve` (embedded) against pypiserver, in the same run, and the
flush floor of the disk they write to.

Usage: python infra/bench/small_uploads.py [path/to/depot] [uploads] [rounds] [pairs]
Run it with a Python that has pypiserver and waitress installed (its `auto` server then
is waitress; a virtualenv of its
own: `python3 -m venv /tmp/pb && /tmp/pb/bin/pip install pypiserver waitress`).

- One client uploads `uploads` small files to each server over one kept-alive
  connection, in `rounds` alternating rounds: a chart (`.tgz`, about 300 bytes) through
  depot's RDS route with an API token, a source archive of the same size through
  pypiserver's upload form. It prints each one's median and p90 latency and their ratio.
- Then wrk uploads to depot over one connection, and over 16 at once (each upload a
  new version of one of 64 charts, from bodies prepared beforehand; `uploads.lua`), and
  it prints the throughput of 16 against one's, and the CPU time depot used per upload
  (user and system, from /proc). Needs wrk (Debian's package). It does so in `pairs`
  rounds (default 5), one connection then 16 in each, and prints each round's ratio and
  their median: on a shared 2-core host one pair's ratio was seen anywhere from 3.1 to
  4.7 for the same binary, as the host's speed moved between the two runs.
- For 16 connections it prints what the machine's cores allow too: how busy they were
  (/proc/stat), the CPU time per upload of depot and of wrk together, and the rate at
  which that CPU time would fill every core. When 16 connections come near that rate,
  the uploads are bound by the cores, not by the flushes, and a group commit cannot
  raise the ratio past that rate over one connection's. Each of the two phases
  runs on a server of its own with a new data directory, so that both start from the
  same empty repository: an upload's cost grows with its package's versions (the
  package item lists its first 256) and with the database, so a phase that ran after
  the other would be measured on a larger repository.
- Both servers' data directories go under $DEPOT_BENCH_DIR, else target/bench
  (depot_proc.py says why not /tmp).
- The floor: what the flushes an acknowledged depot upload needs cost on this disk,
  measured in depot's data directory: two pages of the database file rewritten (the
  blob's row and the version) and one fdatasync (their commit). With
  DEPOT_INLINE_BLOB_BYTES=0 in the environment (depot then writes every blob as a file),
  the blob's new file written and fsynced, renamed and its directory fsynced, then a
  page of the database file and its fdatasync. depot's latency is printed as a
  multiple of it.
"""
import base64
import http.client
import io
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request

from depot_proc import PASSWORD, Serve, Server, data_dir, free_port

BOUNDARY = "smalluploadsboundary"


def form(field, filename, data, extra=()):
    body = io.BytesIO()
    for name, value in extra:
        body.write(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    body.write(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
               f'Content-Type: application/gzip\r\n\r\n'.encode())
    body.write(data)
    body.write(f"\r\n--{BOUNDARY}--\r\n".encode())
    return body.getvalue()


def tgz(files):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as t:
        for name, text in files:
            info = tarfile.TarInfo(name)
            info.size = len(text)
            t.addfile(info, io.BytesIO(text))
    return out.getvalue()


def chart(n, code="small"):
    yaml = f"rdsVersion: v1\nname: Small\ncode: {code}\nversion: 1.0.{n}\ndescription: a chart\n".encode()
    return form("chart", f"{code}-1.0.{n}.tgz", tgz([(f"{code}/RDS.yaml", yaml)]))


def sdist(n):
    info = f"Metadata-Version: 2.1\nName: small\nVersion: 1.0.{n}\nSummary: a package\n".encode()
    data = tgz([(f"small-1.0.{n}/PKG-INFO", info)])
    extra = [(":action", "file_upload"), ("name", "small"), ("version", f"1.0.{n}"), ("protocol_version", "1")]
    return form("content", f"small-1.0.{n}.tar.gz", data, extra)


class Client:
    """One kept-alive connection."""

    def __init__(self, port, path, auth):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.path, self.auth = path, auth

    def upload(self, body):
        headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
        if self.auth:
            headers["Authorization"] = self.auth
        start = time.perf_counter()
        self.conn.request("POST", self.path, body, headers)
        res = self.conn.getresponse()
        res.read()
        took = time.perf_counter() - start
        if res.status not in (200, 201):
            raise SystemExit(f"{self.path}: {res.status}")
        return took


def call(base, method, path, body=None, auth=None):
    req = urllib.request.Request(base + path, data=body, method=method)
    req.add_header("Authorization", auth or "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode())
    if body is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=60) as res:
        return json.loads(res.read())


class PypiServer(Server):
    def __init__(self):
        self.port = free_port()
        self.dir = data_dir("pypiserver-bench-")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pypiserver", "run", "-p", str(self.port), "-i", "127.0.0.1", "-a", ".", "-P", ".",
             "--server", "auto", "--disable-fallback", self.dir.name],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wait_until_up(f"http://127.0.0.1:{self.port}/", 1000, 0.02)


def floor_ms(directory, files, n=300):
    """The median cost of the flushes one upload needs. By default a small blob is a row
    of the table's database file, committed with the version: two 4 KiB pages of one
    file rewritten (the row's and the version's) and one fdatasync. With `files` (every
    blob a file of its own, DEPOT_INLINE_BLOB_BYTES=0): a new ~1.5 KB file written and
    fsynced, renamed into another directory and that directory fsynced (the blob), then
    a page of the database file rewritten and fdatasynced (the table's commit)."""
    tmp, named = os.path.join(directory, "floor-tmp"), os.path.join(directory, "floor-named")
    os.makedirs(tmp, exist_ok=True)
    os.makedirs(named, exist_ok=True)
    db = os.open(os.path.join(directory, "floor.db"), os.O_RDWR | os.O_CREAT)
    times = []
    for i in range(n):
        start = time.perf_counter()
        if files:
            fd = os.open(os.path.join(tmp, str(i)), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.write(fd, b"x" * 1500)
            os.fsync(fd)
            os.close(fd)
            os.rename(os.path.join(tmp, str(i)), os.path.join(named, str(i)))
            dfd = os.open(named, os.O_RDONLY)
            os.fsync(dfd)
            os.close(dfd)
        else:
            os.pwrite(db, b"x" * 4096, (64 + i % 64) * 4096)
        os.pwrite(db, b"y" * 4096, (i % 64) * 4096)
        os.fdatasync(db)
        times.append(time.perf_counter() - start)
    os.close(db)
    for d in (tmp, named):
        for name in os.listdir(d):
            os.unlink(os.path.join(d, name))
        os.rmdir(d)
    os.unlink(os.path.join(directory, "floor.db"))
    return statistics.median(times) * 1000


def cpu_seconds(pid):
    """The user and system CPU time a process has used (Linux's /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds():
    """The user and system CPU time of this process's finished children (wrk's, once it
    has been waited for)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def machine_ticks():
    """The machine's CPU time by state (/proc/stat's first line)."""
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:9]]


def busy_fractions(before, after):
    """How much of the machine's CPU time between two `machine_ticks` was busy (neither
    idle nor waiting on I/O, nor stolen), and how much the host stole."""
    d = [b - a for a, b in zip(before, after)]
    total = sum(d) or 1
    idle, iowait, steal = d[3], d[4], d[7]
    return (total - idle - iowait - steal) / total, steal / total


def setup(srv):
    """Creates the project and the chart repository, and returns an admin token's
    Authorization header."""
    call(srv.base, "POST", "/repository/api/project/create", json.dumps({"name": "bench"}).encode())
    call(srv.base, "POST", "/repository/api/repo/create",
         json.dumps({"projectId": "bench", "name": "charts", "type": "RDS"}).encode())
    token = call(srv.base, "POST", "/auth/api/user/token/admin/bench")["data"]["id"]
    return "Basic " + base64.b64encode(f"admin:{token}".encode()).decode()


def ms(xs):
    xs = sorted(xs)
    return statistics.median(xs) * 1000, xs[int(len(xs) * 0.9)] * 1000


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/depot"
    uploads = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    pairs = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    with Serve(binary) as srv, PypiServer() as pypi:
        auth = setup(srv)
        depot = Client(srv.port, "/rds/api/bench/charts/charts", auth)
        pypi_client = Client(pypi.port, "/", None)
        depot_times, pypi_times = [], []
        n = 0
        for _ in range(rounds):
            for _ in range(uploads // rounds):
                n += 1
                depot_times.append(depot.upload(chart(n)))
            for _ in range(uploads // rounds):
                n += 1
                pypi_times.append(pypi_client.upload(sdist(n)))
        (dm, d90), (pm, p90) = ms(depot_times), ms(pypi_times)
        print(f"sequential small uploads, {len(depot_times)} each, {rounds} alternating rounds:")
        print(f"  depot       median {dm:6.2f} ms   p90 {d90:6.2f} ms")
        print(f"  pypiserver  median {pm:6.2f} ms   p90 {p90:6.2f} ms")
        print(f"  depot / pypiserver: {dm / pm:.2f}")

        # Throughput under wrk: one connection, then 16 at once, each on a fresh server,
        # each upload a new version of one of 64 charts (so that uploads at once are of
        # different charts).
        def rate(connections, seconds=5):
            with Serve(binary) as fresh:
                return rate_on(fresh, setup(fresh), connections, seconds)

        def rate_on(srv, auth, connections, seconds):
            nonlocal n
            with tempfile.NamedTemporaryFile(prefix="uploads-", delete=False) as f:
                for _ in range(6000 * seconds):
                    n += 1
                    body = chart(n // 64, f"c{n % 64}")
                    f.write(b"%08d" % len(body) + body)
            threads = 1 if connections == 1 else 2
            cpu = cpu_seconds(srv.proc.pid)
            client = children_cpu_seconds()
            machine = machine_ticks()
            out = subprocess.run(
                ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "-H", f"Authorization: {auth}",
                 "-s", os.path.join(os.path.dirname(os.path.abspath(__file__)), "uploads.lua"),
                 f"http://127.0.0.1:{srv.port}/rds/api/bench/charts/charts", "--", f.name, str(threads)],
                capture_output=True, text=True, check=True).stdout
            os.unlink(f.name)
            cpu = cpu_seconds(srv.proc.pid) - cpu
            client = children_cpu_seconds() - client
            busy, steal = busy_fractions(machine, machine_ticks())
            if "Non-2xx" in out:
                raise SystemExit(f"uploads failed under wrk:\n{out}")
            done = int(re.search(r"(\d+) requests in", out).group(1))
            rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
            return rps, cpu * 1000 / done, client * 1000 / done, busy, steal

        cores = os.cpu_count()
        ratios = []
        print(f"throughput (wrk), {pairs} rounds of 1 connection then 16:")
        for i in range(pairs):
            one, one_cpu, _, _, _ = rate(1)
            sixteen, sixteen_cpu, wrk_cpu, busy, steal = rate(16)
            ratios.append(sixteen / one)
            ceiling = cores * 1000 / (sixteen_cpu + wrk_cpu)
            print(f"  round {i + 1}: 1 connection {one:.0f} uploads/s, 16 connections {sixteen:.0f}/s "
                  f"({sixteen / one:.2f}x); depot's CPU per upload {one_cpu:.2f} ms with 1, {sixteen_cpu:.2f} ms "
                  f"with 16")
            print(f"    16 connections: the {cores} cores {busy * 100:.0f}% busy ({steal * 100:.0f}% stolen by the "
                  f"host); depot and wrk {sixteen_cpu + wrk_cpu:.2f} ms CPU per upload, so the cores allow at most "
                  f"{ceiling:.0f}/s ({ceiling / one:.1f}x one connection's rate)")
        print(f"16 connections against 1: median {statistics.median(ratios):.2f}x "
              f"(from {min(ratios):.2f}x to {max(ratios):.2f}x over {pairs} rounds)")
        files = os.environ.get("DEPOT_INLINE_BLOB_BYTES") == "0"
        floor = floor_ms(srv.dir.name, files)
        what = ("a new file fsynced, renamed, its directory fsynced; a database page fsynced" if files
                else "two pages of the database file rewritten, one fdatasync")
        print(f"flush floor ({what}): {floor:.2f} ms; depot's median is {dm / floor:.2f}x of it")


if __name__ == "__main__":
    main()
