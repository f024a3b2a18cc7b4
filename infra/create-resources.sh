#!/usr/bin/env bash
# Creates depot's DynamoDB table (with its indexes) and S3 bucket on LocalStack or moto.
# Uses DEPOT_TABLE (default depot), DEPOT_BUCKET (default depot-artifacts) and
# AWS_ENDPOINT_URL (default http://127.0.0.1:4566, LocalStack's port).
set -euo pipefail
cd "$(dirname "$0")/.."
export AWS_ENDPOINT_URL="${AWS_ENDPOINT_URL:-http://127.0.0.1:4566}"
export AWS_REGION="${AWS_REGION:-us-east-1}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
exec cargo run --quiet --bin depot -- create-resources
