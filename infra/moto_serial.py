#!/usr/bin/env python3
"""moto's server, answering one request at a time.

Usage: infra/moto_serial.py HOST PORT

moto's DynamoDB TransactWriteItems applies each operation as it goes and, when one
fails, restores a copy of the whole table taken before it started, without a lock.
With moto's usual threaded server, concurrent requests can therefore see the writes
of a transaction that is later cancelled, and a cancelled transaction can erase the
writes of one that committed meanwhile. DynamoDB does neither. Served one request at
a time, moto's transactions are atomic and isolated like DynamoDB's, so the tests of
concurrent writers test depot, not the emulator.
"""
import sys

from werkzeug.serving import run_simple

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(host, port, app, threaded=False, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
