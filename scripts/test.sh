#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: vet, then the whole
# suite with the race detector, with Azurite (installed from npm into
# .tools/ by scripts/azurite.sh) started for the Azure Table backend tests
# and stopped afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== go vet"
go vet ./...

echo "== starting Azurite (Table service) on loopback"
./scripts/azurite.sh start
trap './scripts/azurite.sh stop >/dev/null 2>&1 || true' EXIT
eval "$(./scripts/azurite.sh env)"
export AZURITE_TABLE_ENDPOINT

echo "== go test -race ./..."
go test -race -shuffle=on -timeout 20m -count=1 ./... 2>&1 | tee /tmp/mdeflow-test.log
status=${PIPESTATUS[0]}
passed=$(grep -c '^ok ' /tmp/mdeflow-test.log || true)
failed=$(grep -c '^FAIL' /tmp/mdeflow-test.log || true)
echo "packages: ${passed} passed, ${failed} failed"
exit "$status"
