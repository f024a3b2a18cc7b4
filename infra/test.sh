#!/usr/bin/env bash
# The whole test suite on a fresh machine:
#   1. creates .venv and installs moto[server], cargo-lambda and cfn-lint into it, and
#      checkov with the SAM translator into .venv/checkov;
#   2. lints template.yaml with cfn-lint, and checks it and its SAM translation with
#      checkov (infra/checkov.yaml lists the checks skipped, and why);
#   3. starts moto on a free loopback port (S3, DynamoDB and Secrets Manager for the AWS
#      adapters), serving DynamoDB one request at a time and failing requests on demand
#      (infra/moto_serial.py says why);
#   4. builds the binaries and runs every cargo test against moto;
#   5. stops moto.
# Extra arguments go to `cargo test`, e.g. `infra/test.sh -p depot-core`.
set -euo pipefail
cd "$(dirname "$0")/.."

# A clean debug build of the suite needs about 3 GB; a full disk shows up as a linker
# crash (SIGBUS), so say how much room there was.
echo "== disk free: $(df -Ph . | awk 'NR==2 { print $4 " of " $2 }')"

venv="${DEPOT_VENV:-.venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r infra/requirements-test.txt
export PATH="$PWD/$venv/bin:$PATH"

echo "== cfn-lint template.yaml"
cfn-lint template.yaml

checkov_venv="$venv/checkov"
if [ ! -x "$checkov_venv/bin/python" ]; then
    python3 -m venv "$checkov_venv"
fi
"$checkov_venv/bin/python" -m pip install --quiet --disable-pip-version-check -r infra/requirements-checkov.txt
mkdir -p target
"$checkov_venv/bin/python" infra/sam_translate.py template.yaml target/template.translated.json
echo "== checkov template.yaml and its SAM translation"
"$checkov_venv/bin/checkov" --config-file infra/checkov.yaml -f template.yaml -f target/template.translated.json

port=$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p target
# DynamoDB one request at a time, and faults on demand: see infra/moto_serial.py.
"$venv/bin/python" infra/moto_serial.py 127.0.0.1 "$port" > target/moto.log 2>&1 &
moto_pid=$!
trap 'kill "$moto_pid" 2>/dev/null || true; wait "$moto_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    if "$venv/bin/python" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/')" 2>/dev/null; then
        break
    fi
    kill -0 "$moto_pid" 2>/dev/null || { cat target/moto.log; echo "moto did not start" >&2; exit 1; }
    sleep 0.2
done
echo "== moto on 127.0.0.1:$port"

export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
unset AWS_PROFILE AWS_SESSION_TOKEN

echo "== cargo build (binaries the end-to-end tests start)"
cargo build --workspace --bins
echo "== cargo test"
# Every target is built, benchmarks included (so that they cannot rot), but benchmarks are
# not run: in the debug profile their figures mean nothing (cargo bench gives them).
cargo test --workspace --all-targets --no-run "$@"
set +e
cargo test --workspace --lib --bins --tests "$@" 2>&1 | tee target/test-output.log
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole run, summed over every test binary, failed or not.
echo "== target/ after the run: $(du -sh target | cut -f1)"
awk '/^test result:/ { p += $4; f += $6 } END { printf "summary: %d passed, %d failed\n", p, f }' target/test-output.log
exit "$status"
