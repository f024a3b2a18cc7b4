"""What the benchmark scripts share: a free port, and `depot serve` on a fresh data
directory, ready to answer."""
import os
import socket
import subprocess
import tempfile
import time
import urllib.request

PASSWORD = "bench-password-123"

# Where the servers' data directories go: $DEPOT_BENCH_DIR, else target/bench in the
# checkout (on the project's disk, not /tmp: a shared /tmp that many processes fill and
# empty can make each new file cost several times more to create, which is the
# machine's state, not the server's).
BENCH_DIR = os.environ.get("DEPOT_BENCH_DIR") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "target", "bench")


def data_dir(prefix):
    """A new temporary directory under BENCH_DIR."""
    os.makedirs(BENCH_DIR, exist_ok=True)
    return tempfile.TemporaryDirectory(prefix=prefix, dir=BENCH_DIR)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    """A server process on a data directory of its own; stops, and removes the
    directory, on exit."""

    proc = None
    dir = None

    def wait_until_up(self, url, tries, pause):
        for _ in range(tries):
            try:
                urllib.request.urlopen(url, timeout=1)
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise SystemExit(f"{url}: the server exited")
                time.sleep(pause)
        raise SystemExit(f"{url} did not answer")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait()
        self.dir.cleanup()


class Serve(Server):
    """`depot serve` on embedded storage in a temporary directory; stops on exit."""

    def __init__(self, binary, **env):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.dir = data_dir("depot-bench-")
        full_env = dict(os.environ, DEPOT_ADMIN_PASSWORD=PASSWORD, RUST_LOG="warn", **env)
        self.proc = subprocess.Popen(
            [binary, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.dir.name],
            env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wait_until_up(self.base + "/health", 3000, 0.01)
