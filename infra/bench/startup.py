#!/usr/bin/env python3
"""Time from exec of `depot serve` to its first 200 on /health.

Usage: infra/bench/startup.py [path/to/depot] [runs]
Each run starts on a fresh data directory (so it includes creating the database and,
because DEPOT_ADMIN_PASSWORD is set, hashing the admin's password), polls /health every
millisecond, and prints the median, minimum and maximum.
"""
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time


from depot_proc import free_port


def health_ok(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as c:
            c.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return c.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def one(binary, fresh):
    port = free_port()
    env = dict(os.environ, DEPOT_ADMIN_PASSWORD="bench-password-123", RUST_LOG="warn")
    start = time.perf_counter()
    proc = subprocess.Popen(
        [binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", fresh],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        while not health_ok(port):
            if proc.poll() is not None:
                sys.exit("depot exited")
            if time.perf_counter() - start > 30:
                sys.exit("no 200 within 30 s")
            time.sleep(0.001)
        return (time.perf_counter() - start) * 1000
    finally:
        proc.terminate()
        proc.wait()


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/depot"
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    cold, warm = [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as d:
            cold.append(one(binary, d))   # fresh data dir: creates the db and the admin
            warm.append(one(binary, d))   # existing data dir: a plain restart
    for name, xs in (("fresh data dir", cold), ("restart", warm)):
        print(f"exec to first 200 on /health, {name}: median {statistics.median(xs):.1f} ms "
              f"(min {min(xs):.1f}, max {max(xs):.1f}, {runs} runs)")


if __name__ == "__main__":
    main()
