# mdeflow: `make test` runs every test (it installs and starts Azurite
# itself); `go run ./handler demo` runs the pipeline on the sample tenant.
GO      ?= go
APP_DIR ?= dist/app
GOARCH_APP ?= amd64

.PHONY: test vet unit bench app demo clean

test:
	./scripts/test.sh

vet:
	$(GO) vet ./...

# Tests without Azurite (the Azure Table contract run is skipped).
unit:
	$(GO) test -race -shuffle=on ./...

# Benchmarks of the hot paths, 6 runs each, summarised with benchstat
# (pinned); compare with a saved run: benchstat old.out bench.out.
BENCHSTAT ?= golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 6 ./internal/... | tee bench.out
	$(GO) run $(BENCHSTAT) bench.out

# The deployable app folder: host.json, the Linux binary, one folder per
# function with its function.json (the Functions host only looks at direct
# sub-folders of the app root), and the hunt catalog.
app:
	rm -rf $(APP_DIR)
	mkdir -p $(APP_DIR)
	CGO_ENABLED=0 GOOS=linux GOARCH=$(GOARCH_APP) $(GO) build -trimpath -ldflags='-s -w' -o $(APP_DIR)/handler ./handler
	cp host.json $(APP_DIR)/
	for d in functions/*/; do n=$$(basename $$d); mkdir -p $(APP_DIR)/$$n; cp $$d/function.json $(APP_DIR)/$$n/; done
	mkdir -p $(APP_DIR)/hunts && cp examples/hunts/*.yaml $(APP_DIR)/hunts/ 2>/dev/null || true
	mkdir -p $(APP_DIR)/policies && cp examples/policies/*.yaml $(APP_DIR)/policies/ 2>/dev/null || true
	@echo "app folder ready: $(APP_DIR) (publish with: cd $(APP_DIR) && func azure functionapp publish <app> --custom)"

demo:
	$(GO) run ./handler demo

clean:
	rm -rf dist .mdeflow bench.out
