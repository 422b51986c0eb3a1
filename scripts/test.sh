#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: vet, then the whole
# suite with the race detector, with Azurite (installed from npm into
# .tools/ by scripts/azurite.sh) started for the Azure Table backend tests
# and stopped afterwards. Prints a closing "packages: N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."

echo "== go vet"
go vet ./... || exit 1

echo "== starting Azurite (Table service) on loopback"
./scripts/azurite.sh start || exit 1
trap './scripts/azurite.sh stop >/dev/null 2>&1 || true' EXIT
eval "$(./scripts/azurite.sh env)"
export AZURITE_TABLE_ENDPOINT

echo "== go test -race ./..."
log=$(mktemp -t mdeflow-test.XXXXXX)
go test -race -shuffle=on -timeout 20m -count=1 ./... 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
passed=$(grep -c '^ok ' "$log")
failed=$(grep -c '^FAIL' "$log")
rm -f "$log"
echo "packages: ${passed} passed, ${failed} failed"
exit "$status"
