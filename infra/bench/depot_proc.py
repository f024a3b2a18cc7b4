"""What the benchmark scripts share: a free port, and `depot serve` on a fresh data
directory, ready to answer."""
import os
import socket
import subprocess
import tempfile
import time
import urllib.request

PASSWORD = "bench-password-123"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Serve:
    """`depot serve` on embedded storage in a temporary directory; stops on exit."""

    def __init__(self, binary, **env):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.dir = tempfile.TemporaryDirectory(prefix="depot-bench-")
        full_env = dict(os.environ, DEPOT_ADMIN_PASSWORD=PASSWORD, RUST_LOG="warn", **env)
        self.proc = subprocess.Popen(
            [binary, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.dir.name],
            env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(3000):
            try:
                urllib.request.urlopen(self.base + "/health", timeout=1)
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise SystemExit("depot exited")
                time.sleep(0.01)
        raise SystemExit("depot did not answer /health")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait()
        self.dir.cleanup()
