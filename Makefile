# bake's two entry points on a fresh Debian machine (Node 20 + npm):
#   make demo   the main job on the embedded default: no Hub, no Docker engine
#   make test   every test, with the real Docker engine, registry and llama.cpp it needs
SHELL := /bin/bash
BAKE := node bin/bake.js
export SOURCE_DATE_EPOCH ?= 1700000000

.PHONY: deps host-tools build wasm demo test test-fast test-slow cycles tools bench typecheck clean

# `npm install` honours package-lock.json; `npm ci` would refuse it because the registry mirror has no
# other-platform builds of node-llama-cpp (win/mac/riscv), which npm wants listed in the lock file.
node_modules/.package-lock.json: package-lock.json package.json
	npm install --no-audit --no-fund

deps: node_modules/.package-lock.json

# Every program the tests, scripts and benches call, from one list (scripts/host-tools.sh): apt-get
# installs what is missing (as root); otherwise it stops here naming each missing program's package.
host-tools:
	bash scripts/host-tools.sh install

build: deps
	npm run build

# The GGUF row quantizers' WebAssembly (committed, so a clone runs without a compiler); a test checks that
# the committed file is what its AssemblyScript source compiles to.
wasm: deps
	npm run build:wasm

typecheck: deps
	npx tsc -p tsconfig.json --noEmit

# Locks (frozen: models.lock is committed), quantizes, verifies and bakes recipes/demo.yaml into an
# OCI image layout at out/demo. The second run is all cache hits.
demo: deps
	node --import tsx scripts/demo-models.ts
	$(BAKE) lock demo --check
	$(BAKE) verify demo
	$(BAKE) build demo --output oci:out/demo
	@echo "OCI layout written to out/demo (index.json names the tags)"

# llama.cpp's own tools (oracle for the GGUF tests, llama-server for the llamacpp base image),
# built once from the source node-llama-cpp ships and cached outside the repo.
tools: host-tools deps
	scripts/llama-tools.sh

# No import cycles in src/ (madge reads the TypeScript imports; a cycle fails the build).
cycles: deps
	npx madge --circular --extensions ts src

# Tests mirror src/ (test/<folder>/ tests src/<folder>/), in two tiers (scripts/test-tiers.sh):
#   fast: neither the Docker engine nor llama.cpp's tools (a few minutes);
#   slow: the engine, the registry, llama.cpp's tools (the oracles), GB-sized files.
# `make test` runs both: installs what is missing (host-tools: Debian packages; tools: llama.cpp's),
# starts a private dockerd and registry, runs every test, stops what it started.
test: host-tools deps tools cycles
	bash test/support/docker-env.sh run -- node --import tsx --test --test-concurrency=1 $$(bash scripts/test-tiers.sh all)

# Two test files at a time: the fast tier's files share no fixed path, port or engine.
test-fast: deps cycles
	node --import tsx --test --test-concurrency=2 $$(bash scripts/test-tiers.sh fast)

test-slow: host-tools deps tools
	bash test/support/docker-env.sh run -- node --import tsx --test --test-concurrency=1 $$(bash scripts/test-tiers.sh slow)

# Benchmarks: each prints a table with a ratio against a reference tool run in the same invocation.
BENCHES := hub-download hub-parallel image-layer image-push onnx-quant gguf-quantize kquant-kernels kquant-verify awq
bench: host-tools deps tools
	for b in $(BENCHES); do node --import tsx bench/$$b.ts || exit 1; done
	bash test/support/docker-env.sh run -- sh -c 'node --import tsx bench/docker-rebuild.ts && node --import tsx bench/docker-start.ts && node --import tsx bench/rag-service.ts && node --import tsx bench/llamacpp-ttft.ts'

clean:
	rm -rf dist out
