#!/usr/bin/env bash
# The test files of each tier (tests mirror src/: test/<folder>/ tests src/<folder>/):
#   slow  needs the Docker engine, the registry binary, llama.cpp's own tools (the oracles) or moves GBs
#   fast  everything else: nothing beyond the npm packages
#   all   both, fast first
# Usage: test-tiers.sh fast|slow|all   (prints the files, one per line)
set -euo pipefail
cd "$(dirname "$0")/.."
slow='
test/image/docker/engine.test.ts
test/image/docker/vllm-awq.test.ts
test/image/docker/rag.test.ts
test/image/docker/llamacpp.test.ts
test/image/compose/docker-compose.test.ts
test/runtime/llama-server-flags.test.ts
test/convert/encoder-oracle.test.ts
test/image/oci/*.test.ts
test/image/registry/*.test.ts
test/cli/push.test.ts
test/cli/report-push.test.ts
test/report/browser.test.ts
test/quant/gguf/oracle.test.ts
test/quant/gguf/kquant-oracle.test.ts
test/quant/gguf/fuzz.test.ts
test/verify/llama/*.test.ts
test/formats/onnx-large.test.ts
'
slow_files() { for p in $slow; do for f in $p; do [ -f "$f" ] && echo "$f"; done; done | sort -u; }
all_files() { find test -name '*.test.ts' | sort; }
case "${1:-}" in
  slow) slow_files ;;
  fast) comm -23 <(all_files) <(slow_files) ;;
  all) comm -23 <(all_files) <(slow_files); slow_files ;;
  *) echo "usage: $0 fast|slow|all" >&2; exit 2 ;;
esac
