#!/usr/bin/env python3
"""Init time of a Lambda binary: exec to its first request for work, and to its first
answer, against a local stand-in for the Lambda runtime API.

Usage: infra/bench/lambda_init.py target/release/packages [runs]

The stand-in serves `GET /2018-06-01/runtime/invocation/next` with one API Gateway
(HTTP API, payload 2.0) event for `GET /health`, and takes the answer. The binary needs
no network for this: building the SDK clients reads only the environment. Prints the
median, minimum and maximum of each figure, in milliseconds.
"""
import http.server
import json
import os
import statistics
import subprocess
import sys
import threading
import time

from depot_proc import free_port

EVENT = {
    "version": "2.0",
    "routeKey": "$default",
    "rawPath": "/health",
    "rawQueryString": "",
    "headers": {"host": "bench.example"},
    "requestContext": {
        "accountId": "123456789012",
        "apiId": "bench",
        "domainName": "bench.example",
        "domainPrefix": "bench",
        "http": {"method": "GET", "path": "/health", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                 "userAgent": "bench"},
        "requestId": "bench-request",
        "routeKey": "$default",
        "stage": "$default",
        "time": "01/Jan/2026:00:00:00 +0000",
        "timeEpoch": 0,
    },
    "isBase64Encoded": False,
}


def runtime_for_one_run():
    """A stand-in for one run: the first `next` hands out the event, later ones wait
    until the run ends; the answer is recorded in `marks`."""
    marks = {}
    served = threading.Event()

    class Runtime(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            if not self.path.endswith("/invocation/next"):
                self.send_error(404)
                return
            if "next" in marks:
                served.wait(30)
                return
            marks["next"] = time.monotonic()
            body = json.dumps(EVENT).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Lambda-Runtime-Aws-Request-Id", "bench-request")
            self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30000))
            self.send_header("Lambda-Runtime-Invoked-Function-Arn",
                             "arn:aws:lambda:us-east-1:123456789012:function:bench")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            answer = json.loads(self.rfile.read(length) or b"{}")
            marks["answer"] = time.monotonic()
            marks["status"] = answer.get("statusCode")
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()
            served.set()

    return Runtime, marks, served


def one(binary):
    handler, marks, served = runtime_for_one_run()
    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(os.environ, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{port}", AWS_LAMBDA_FUNCTION_NAME="bench",
               AWS_LAMBDA_FUNCTION_MEMORY_SIZE="512", AWS_LAMBDA_FUNCTION_VERSION="1",
               AWS_LAMBDA_LOG_STREAM_NAME="bench", AWS_LAMBDA_LOG_GROUP_NAME="bench", AWS_REGION="us-east-1",
               AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", RUST_LOG="warn")
    start = time.monotonic()
    proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not served.wait(30):
            raise SystemExit(f"{binary} did not answer (exit code {proc.poll()})")
    finally:
        proc.kill()
        proc.wait()
        served.set()
        server.shutdown()
        server.server_close()
    if marks.get("status") != 200:
        raise SystemExit(f"{binary} answered /health with {marks.get('status')}")
    return (marks["next"] - start) * 1000, (marks["answer"] - start) * 1000


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/packages"
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    results = [one(binary) for _ in range(runs)]
    for i, what in enumerate(["exec to first /next (init)", "exec to first answer"]):
        xs = [r[i] for r in results]
        print(f"{os.path.basename(binary)}: {what}: median {statistics.median(xs):.1f} ms, "
              f"min {min(xs):.1f}, max {max(xs):.1f} ({runs} runs)")


if __name__ == "__main__":
    main()
