#!/usr/bin/env bash
# Builds llama.cpp's own tools (llama-quantize, llama-perplexity, llama-server) from the source that
# node-llama-cpp ships, once, into a cache outside the repo. They are the oracle the GGUF tests and
# benchmarks compare against, and llama-server is the llamacpp target's base image.
# Prints the bin directory. Offline: the source is a git bundle inside node_modules.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bundle="$here/node_modules/node-llama-cpp/llama/gitRelease.bundle"
[ -f "$bundle" ] || { echo "llama-tools: $bundle missing: run npm ci first" >&2; exit 1; }
commit=$(git ls-remote "$bundle" HEAD | cut -c1-12)
cache="${BAKE_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bake-tools}/llama.cpp-$commit"
bin="$cache/build/bin"
want=(llama-quantize llama-perplexity llama-server)
# llama.cpp's logger writes from a worker thread and is not flushed at exit (common/log.cpp says logs
# "may be lost"): under load llama-perplexity loses its final figures, which the oracle tests read.
# One line flushes it before exit; the numbers are untouched. Bump the marker when this patch changes.
patch_marker="$cache/.bake-log-flush-1"
built() { for t in "${want[@]}"; do [ -x "$bin/$t" ] || return 1; done; [ -f "$patch_marker" ]; }
if built; then echo "$bin"; exit 0; fi
mkdir -p "$(dirname "$cache")"
lock="$cache.lock"
exec 9>"$lock"
flock 9 # two test runs share one build
if built; then echo "$bin"; exit 0; fi
if [ ! -d "$cache/src/.git" ]; then
  rm -rf "$cache/src"
  git clone -q "$bundle" "$cache/src" >&2
fi
ppl="$cache/src/tools/perplexity/perplexity.cpp"
if ! grep -q 'common_log_pause(common_log_main());' "$ppl"; then
  sed -i 's/^    llama_backend_free();$/    common_log_pause(common_log_main()); \/\/ bake: flush the log before exit\n    llama_backend_free();/' "$ppl"
  grep -q 'common_log_pause(common_log_main());' "$ppl" || { echo "llama-tools: could not patch $ppl" >&2; exit 1; }
fi
# GGML_NATIVE=OFF: a portable binary (it also goes into the llamacpp base image) whose reference
# quantizers are plain C, the same arithmetic bake's kernels reproduce.
cmake -S "$cache/src" -B "$cache/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF \
  -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF >&2
cmake --build "$cache/build" --target "${want[@]}" -j"$(nproc)" >&2
touch "$patch_marker"
echo "$bin"
