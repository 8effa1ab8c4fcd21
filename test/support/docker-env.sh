#!/usr/bin/env bash
# A private Docker engine and registry for bake's image tests, on this machine only (loopback, no pulls).
#
#   docker-env.sh start      start what is not running yet, make missing base images, print env lines
#   docker-env.sh env        print the env lines only (DOCKER_HOST=..., BAKE_TEST_REGISTRY=...)
#   docker-env.sh stop       stop the dockerd / registry this script started (by their pid files)
#   docker-env.sh run CMD..  start, run CMD with the env set, then stop what this call started
#
# The engine keeps its data under /var/lib/bake-test-docker between runs (base images and the BuildKit
# cache survive); nothing here touches the machine's own Docker (if any): own socket, own exec root,
# own containerd namespace, no iptables, no bridge (builds and containers use --network none|host).
set -euo pipefail

state=${BAKE_TEST_DOCKER_STATE:-/var/lib/bake-test-docker}
run=${BAKE_TEST_DOCKER_RUN:-/run/bake-test-docker}
port=${BAKE_TEST_REGISTRY_PORT:-5096}
sock="$run/docker.sock"
export DOCKER_HOST="unix://$sock"
registry="127.0.0.1:$port"
# The Debian 20.10 client: /usr/local/bin/docker (28.x) shadows it on PATH and has no BuildKit here.
docker=/usr/bin/docker
here=$(cd "$(dirname "$0")/../.." && pwd)

log() { echo "docker-env: $*" >&2; }

# What the engine, registry, base images and image tests need (scripts/host-tools.sh: one list for
# the whole project): installed from Debian when missing, or a message naming the package.
need_packages() { bash "$here/scripts/host-tools.sh" install >&2; }

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

engine_answers() { curl -sf --max-time 2 --unix-socket "$sock" http://localhost/_ping >/dev/null 2>&1; }

start_dockerd() {
  if engine_answers; then return 1; fi
  mkdir -p "$state/data" "$run"
  log "starting dockerd on $sock (data in $state/data)"
  # containerd-namespace: a second dockerd on the machine must not see our containers.
  nohup /usr/sbin/dockerd --data-root "$state/data" --exec-root "$run/exec" --pidfile "$run/dockerd.pid" \
    -H "unix://$sock" --iptables=false --ip-masq=false --bridge=none --storage-driver overlay2 \
    --containerd-namespace bake-test --containerd-plugins-namespace bake-test-plugins \
    >"$state/dockerd.log" 2>&1 &
  for _ in $(seq 1 100); do engine_answers && return 0; sleep 0.1; done
  log "dockerd did not answer within 10 s; last lines of $state/dockerd.log:"; tail -20 "$state/dockerd.log" >&2
  exit 1
}

start_registry() {
  if curl -sf --max-time 2 "http://$registry/v2/" >/dev/null 2>&1; then return 1; fi
  mkdir -p "$state/registry" "$run"
  # Debian's stock config turns on htpasswd auth; ours is open, loopback only, deletable.
  cat >"$state/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $state/registry
  delete:
    enabled: true
http:
  addr: $registry
EOF
  log "starting docker-registry on $registry"
  nohup /usr/bin/docker-registry serve "$state/registry.yml" >"$state/registry.log" 2>&1 &
  echo $! >"$run/registry.pid"
  for _ in $(seq 1 100); do curl -sf --max-time 1 "http://$registry/v2/" >/dev/null 2>&1 && return 0; sleep 0.1; done
  log "registry did not answer; see $state/registry.log"; exit 1
}

has_image() { "$docker" image inspect "$1" >/dev/null 2>&1; }

debian_mirror() {
  # The mirror this machine's apt uses (deb822 or one-line format); deb.debian.org otherwise.
  local m
  m=$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | grep -E 'debian/?$|debian ' | grep -v security | head -1 | sed -E 's/^URIs: *//; s/^deb (\[[^]]*\] )?//; s/ .*//')
  echo "${m:-http://deb.debian.org/debian}"
}

build_from_dir() { # tag dir: plain `docker build` of a small context, no network, BuildKit
  DOCKER_BUILDKIT=1 "$docker" build -q --network none -t "$1" "$2" >&2
}

make_base_images() {
  if ! has_image local/debian:bookworm-slim; then
    local root; root=$(mktemp -d /var/tmp/bake-debootstrap.XXXXXX)
    log "debootstrap --variant=minbase bookworm from $(debian_mirror) (about a minute)"
    /usr/sbin/debootstrap --variant=minbase bookworm "$root" "$(debian_mirror)" >"$state/debootstrap.log" 2>&1 \
      || { log "debootstrap failed; see $state/debootstrap.log"; rm -rf "$root"; exit 1; }
    # What docker's debian:bookworm-slim also leaves out: package caches, lists, docs, man pages.
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
      "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/log/*.log "$root"/var/cache/debconf/*-old
    tar -C "$root" --numeric-owner -c . | "$docker" import \
      -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' -c 'CMD ["bash"]' \
      - local/debian:bookworm-slim >&2
    rm -rf "$root"
  fi
  local ctx
  if ! has_image local/node:20-bookworm-slim; then
    # The host's node is a bookworm build (nodesource): it needs only glibc, libstdc++ and libgcc_s.
    ctx=$(mktemp -d); cp "$(readlink -f "$(command -v node)")" "$ctx/node"
    printf '%s\n' 'FROM local/debian:bookworm-slim' 'COPY node /usr/local/bin/node' \
      'RUN node -e "process.exit(0)"' 'CMD ["node"]' >"$ctx/Dockerfile"
    log "making local/node:20-bookworm-slim from the host's node $(node -v)"
    build_from_dir local/node:20-bookworm-slim "$ctx"; rm -rf "$ctx"
  fi
  if ! has_image local/vllm-openai:stand-in; then
    # No GPU and no vLLM here: a stand-in with vLLM's entrypoint shape, built and inspected, never run.
    ctx=$(mktemp -d)
    printf '%s\n' '#!/bin/sh' 'echo "vllm stand-in: no GPU on this machine; this image is built and inspected, not run" >&2' 'exit 1' >"$ctx/vllm"
    printf '%s\n' 'FROM local/debian:bookworm-slim' 'COPY --chmod=755 vllm /usr/local/bin/vllm' \
      'ENV NVIDIA_VISIBLE_DEVICES=all' 'ENTRYPOINT ["vllm", "serve"]' >"$ctx/Dockerfile"
    log "making local/vllm-openai:stand-in"
    build_from_dir local/vllm-openai:stand-in "$ctx"; rm -rf "$ctx"
  fi
  if ! has_image local/cuda-runtime:stand-in; then
    # No GPU and no NVIDIA images here: a stand-in for nvidia/cuda:*-cudnn-runtime with its environment
    # (what the NVIDIA container toolkit reads), no node (the runtime brings its own). Built and inspected, never run on a GPU.
    ctx=$(mktemp -d)
    printf '%s\n' 'FROM local/debian:bookworm-slim' 'ENV NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility' \
      'ENV CUDA_VERSION=12.4.1 NV_CUDNN_VERSION=9.1.0.70 NVIDIA_REQUIRE_CUDA="cuda>=12.4"' \
      'ENV LD_LIBRARY_PATH=/usr/local/nvidia/lib:/usr/local/nvidia/lib64 PATH=/usr/local/nvidia/bin:/usr/local/cuda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      'LABEL com.nvidia.cudnn.version=9.1.0.70 dev.bake.stand-in=nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04' >"$ctx/Dockerfile"
    log "making local/cuda-runtime:stand-in"
    build_from_dir local/cuda-runtime:stand-in "$ctx"; rm -rf "$ctx"
  fi
  if ! has_image local/llama-server:bookworm; then
    local bin; bin=$("$here/scripts/llama-tools.sh")
    ctx=$(mktemp -d); cp "$bin/llama-server" "$ctx/llama-server"
    # Shared libraries it links beyond the base (libgomp when OpenMP is on).
    for lib in $(ldd "$bin/llama-server" | awk '/=> \//{print $3}'); do
      case "$(basename "$lib")" in libc.so*|libm.so*|libstdc++.so*|libgcc_s.so*|libpthread.so*|libdl.so*|librt.so*) ;;
        *) mkdir -p "$ctx/lib"; cp "$lib" "$ctx/lib/" ;; esac
    done
    mkdir -p "$ctx/lib"
    # Same layout as ggml-org's llama.cpp:server image: /app/llama-server as the entrypoint.
    printf '%s\n' 'FROM local/debian:bookworm-slim' 'COPY lib/ /usr/local/lib/' 'COPY llama-server /app/llama-server' \
      'RUN ldconfig && /app/llama-server --version' 'ENTRYPOINT ["/app/llama-server"]' >"$ctx/Dockerfile"
    log "making local/llama-server:bookworm from $bin/llama-server"
    build_from_dir local/llama-server:bookworm "$ctx"; rm -rf "$ctx"
  fi
}

print_env() {
  echo "DOCKER_HOST=$DOCKER_HOST"
  echo "BAKE_TEST_REGISTRY=$registry"
  echo "BAKE_TEST_DOCKER_CLI=$docker"
  echo "DOCKER_BUILDKIT=1"
}

do_start() {
  need_packages
  local started=()
  if start_dockerd; then started+=(dockerd); fi
  if start_registry; then started+=(registry); fi
  make_base_images
  print_env
  echo "BAKE_TEST_DOCKER_STARTED=${started[*]:-}"
}

stop_pid() { # pidfile name
  if alive "$1"; then
    local pid; pid=$(cat "$1")
    log "stopping $2 (pid $pid)"
    kill "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$1"
}

do_stop() { # [what...] default: both
  local what=("$@"); [ ${#what[@]} -gt 0 ] || what=(dockerd registry)
  for w in "${what[@]}"; do
    case "$w" in
      dockerd) stop_pid "$run/dockerd.pid" dockerd ;;
      registry) stop_pid "$run/registry.pid" registry ;;
    esac
  done
}

case "${1:-}" in
  start) do_start ;;
  env) print_env ;;
  stop) shift; do_stop "$@" ;;
  run)
    shift; [ "${1:-}" = "--" ] && shift
    out=$(do_start)
    started=$(echo "$out" | sed -n 's/^BAKE_TEST_DOCKER_STARTED=//p')
    set -a; eval "$(echo "$out" | grep -v '^BAKE_TEST_DOCKER_STARTED=')"; set +a
    rc=0; "$@" || rc=$?
    # shellcheck disable=SC2086
    [ -n "$started" ] && do_stop $started
    exit $rc ;;
  *) echo "usage: $0 start|env|stop [dockerd|registry]|run -- CMD..." >&2; exit 2 ;;
esac
