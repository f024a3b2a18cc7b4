#!/usr/bin/env python3
"""Wrong passwords from many clients at once, while one API-token client keeps working.

Usage: infra/bench/login_flood.py [path/to/depot] [clients] [seconds]
(defaults: target/release/depot, 300 clients, 10 s)

Runs `depot serve` on fresh embedded storage twice:
  - "slots only": the per-address throttle raised out of reach, so every wrong password
    runs argon2 and only the password slots (one per core) bound the cost;
  - "defaults": as shipped, where the address is refused with 429 after 30 failures.
Each run prints the statuses the flood got, the server's peak resident memory (VmHWM),
and the token client's latency (median, p99, max) during the flood. The flood runs in a
process of its own, so that its threads do not starve the token client of the GIL.
"""
import base64
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

from depot_proc import PASSWORD, Serve


def request(url, auth, method="GET", timeout=60):
    req = urllib.request.Request(url, method=method, data=b"{}" if method == "POST" else None)
    req.add_header("Authorization", auth)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            return res.status, res.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


def basic(user, secret):
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


def peak_rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def run(binary, clients, seconds, label, **env):
    with Serve(binary, **env) as s:
        status, body = request(s.base + "/auth/api/user/token/admin/bench", basic("admin", PASSWORD), "POST")
        assert status == 200, (status, body)
        token = "Bearer " + json.loads(body)["data"]["id"]
        flood = subprocess.Popen([sys.executable, __file__, "--flood", s.base, str(clients), str(seconds)],
                                 stdout=subprocess.PIPE, text=True)
        time.sleep(1)  # the flood's threads start
        stop = time.monotonic() + seconds - 1
        latencies = []
        while time.monotonic() < stop:
            started = time.perf_counter()
            st, _ = request(s.base + "/repository/api/project/list", token)
            latencies.append(time.perf_counter() - started)
            assert st == 200, st
            time.sleep(0.02)
        counts = json.loads(flood.communicate()[0])
        latencies.sort()
        p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000
        print(f"{label}: {clients} wrong-password clients for {seconds} s; statuses {dict(sorted(counts.items()))}")
        print(f"  server peak RSS {peak_rss(s.proc.pid) / 1048576:.1f} MiB")
        print(f"  token client: {len(latencies)} requests, median {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms, "
              f"max {latencies[-1] * 1000:.1f} ms")


def flood(base, clients, seconds):
    """The wrong-password clients, in this process: prints their statuses as JSON."""
    stop = time.monotonic() + seconds
    counts, lock = {}, threading.Lock()

    def one(i):
        auth = basic(f"nobody{i}", "wrong-password-1")
        while time.monotonic() < stop:
            st, _ = request(base + "/repository/api/project/list", auth)
            with lock:
                counts[st] = counts.get(st, 0) + 1

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(counts))


def main():
    if sys.argv[1:2] == ["--flood"]:
        flood(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
        return
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/depot"
    clients = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 10
    run(binary, clients, seconds, "slots only", DEPOT_LOGIN_ADDRESS_FAILURES="1000000000",
        DEPOT_LOGIN_USER_FAILURES="1000000000")
    run(binary, clients, seconds, "defaults")


if __name__ == "__main__":
    main()
