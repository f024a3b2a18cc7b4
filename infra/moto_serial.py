#!/usr/bin/env python3
"""moto's server for the test command: DynamoDB one request at a time, and faults on
demand.

Usage: infra/moto_serial.py HOST PORT [--all-serial]

Serialisation. moto's DynamoDB TransactWriteItems applies each operation as it goes
and, when one fails, restores a copy of the whole table taken before it started,
without a lock. With moto's usual threaded server, concurrent requests could therefore
see the writes of a transaction that is later cancelled, and a cancelled transaction
could erase the writes of one that committed meanwhile. DynamoDB does neither. So every
DynamoDB request holds one lock, and moto's transactions are atomic and isolated like
DynamoDB's: the tests of concurrent writers test depot, not the emulator. Everything
else (S3, Secrets Manager) needs no such lock and runs concurrently, as on AWS.
`--all-serial` serialises every request (the earlier mode).

Faults. DynamoDB cancels a transaction that races another on an item
(TransactionConflict), and throttles; moto does neither. `POST /_depot/faults` with
`{"table": T, "op": "TransactWriteItems", "count": N, "kind": K}` makes the next N
requests of that operation that name table T fail as DynamoDB fails them:

- kind `TransactionConflict`, `ThrottlingError` or `ProvisionedThroughputExceeded`:
  TransactionCanceledException with that cancellation reason for the first item;
- kind `ThrottlingException`, `ProvisionedThroughputExceededException` or
  `TransactionConflictException` (single-item operations): that error.

`GET /_depot/faults` answers the armed faults and how many requests each failed; only
requests naming the fault's table are touched, so tests running at once do not meet
each other's faults.
"""
import io
import json
import sys
import threading

from werkzeug.serving import run_simple

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app

PREFIX = "com.amazonaws.dynamodb.v20120810#"
REASONS = {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}
MESSAGES = {
    "TransactionConflict": "Transaction is ongoing for the item",
    "ThrottlingError": "Throughput exceeds the current capacity for one or more global secondary indexes",
    "ProvisionedThroughputExceeded": "The level of configured provisioned throughput for the table was exceeded",
    "ThrottlingException": "Rate of requests exceeds the allowed throughput.",
    "ProvisionedThroughputExceededException": "The level of configured provisioned throughput for the table was exceeded.",
    "TransactionConflictException": "Transaction is ongoing for the item",
}


class Depot:
    def __init__(self, app, all_serial):
        self.app = app
        self.all_serial = all_serial
        self.lock = threading.Lock()
        self.faults_lock = threading.Lock()
        self.faults = []

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == "/_depot/faults":
            return self.fault_admin(environ, start_response)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        dynamo = target.startswith("DynamoDB_")
        if dynamo:
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            fault = self.take_fault(target.split(".")[-1], body)
            if fault is not None:
                return self.fail(fault, body, start_response)
            environ["wsgi.input"] = io.BytesIO(body)
        if dynamo or self.all_serial:
            with self.lock:
                # The whole answer inside the lock: moto may produce it lazily.
                return list(self.app(environ, start_response))
        return self.app(environ, start_response)

    def fault_admin(self, environ, start_response):
        if environ["REQUEST_METHOD"] == "POST":
            spec = json.loads(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)) or b"{}")
            with self.faults_lock:
                self.faults = [f for f in self.faults if not (f["table"] == spec["table"] and f["op"] == spec["op"])]
                if spec.get("count", 0) > 0:
                    self.faults.append({**spec, "failed": 0})
        with self.faults_lock:
            out = json.dumps(self.faults).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(out)))])
        return [out]

    def take_fault(self, op, body):
        with self.faults_lock:
            for f in self.faults:
                if f["op"] == op and f["count"] > f["failed"] and ('"%s"' % f["table"]).encode() in body:
                    f["failed"] += 1
                    return f
        return None

    def fail(self, fault, body, start_response):
        kind = fault["kind"]
        if kind in REASONS:
            items = json.loads(body).get("TransactItems", [])
            reasons = [{"Code": kind, "Message": MESSAGES[kind]}] + [{"Code": "None"} for _ in items[1:]]
            codes = ", ".join(r["Code"] for r in reasons)
            out = {
                "__type": PREFIX + "TransactionCanceledException",
                "message": "Transaction cancelled, please refer cancellation reasons for specific reasons [%s]" % codes,
                "CancellationReasons": reasons,
            }
        else:
            out = {"__type": PREFIX + kind, "message": MESSAGES.get(kind, kind)}
        data = json.dumps(out).encode()
        headers = [("Content-Type", "application/x-amz-json-1.0"), ("Content-Length", str(len(data)))]
        start_response("400 Bad Request", headers)
        return [data]


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    all_serial = "--all-serial" in sys.argv[3:]
    app = Depot(DomainDispatcherApplication(create_backend_app), all_serial)
    run_simple(host, port, app, threaded=not all_serial, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
