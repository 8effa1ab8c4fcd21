#!/usr/bin/env bash
# Every program bake's tests, scripts, benches and Makefile call, and where it comes from: ONE list.
# The Makefile (make test, make tools, make bench) and test/support/docker-env.sh install from it
# before they run anything; test/cli/host-tools.test.ts fails when a source calls a program that is
# not listed here. A fresh Debian machine has only the packages of priority "required" and Node + npm.
#
#   host-tools.sh list              print "program<TAB>source" for every program
#   host-tools.sh check [PROG...]   exit 1, naming each missing program and its Debian package
#   host-tools.sh install           apt-get install the packages of missing programs (root), then check
#
# The check uses shell builtins only (it must work where nothing else is installed).
set -euo pipefail

# source: a Debian package; "@<script>" = made by that project script; "-" = what runs the project
# itself (Node 20 with npm, see README). A program is a name looked up on PATH, or a path that must
# exist (for paths the project calls directly, e.g. the 20.10 docker client that /usr/local/bin shadows).
# chromium renders the build report in the browser test (driven by playwright-core, never downloaded).
# g++ and make are what cmake builds llama.cpp with (scripts/llama-tools.sh); the last Debian rows are
# priority "required" (on every Debian machine), listed so the list is complete.
table='
docker.io         /usr/sbin/dockerd /usr/bin/docker
docker-registry   /usr/bin/docker-registry
docker-compose    docker-compose
skopeo            skopeo
umoci             umoci
debootstrap       /usr/sbin/debootstrap
busybox-static    /bin/busybox
openssl           openssl
fonts-dejavu-core /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
chromium          /usr/bin/chromium
curl              curl /usr/bin/curl
ca-certificates   /etc/ssl/certs/ca-certificates.crt
time              /usr/bin/time
git               git
cmake             cmake
make              make
g++               g++
gcc               cc
apt               apt-get
coreutils         basename cat comm cp cut dirname head mkdir mktemp nohup nproc readlink rm seq sha256sum sleep sort sync tail touch /bin/true /usr/bin/sync
findutils         find
mawk              awk
grep              grep
sed               sed
tar               tar
util-linux        flock
mount             mount umount
libc-bin          ldd
bash              bash
@scripts/llama-tools.sh  llama-quantize llama-perplexity llama-server
-                 node npm npx
'

# Rows as "program source" lines.
rows() {
  local src progs p
  while read -r src progs; do
    [ -n "$src" ] || continue
    for p in $progs; do printf '%s\t%s\n' "$p" "$src"; done
  done <<<"$table"
}

present() { # program
  if [ "${1#/}" != "$1" ]; then [ -e "$1" ]; else command -v "$1" >/dev/null 2>&1; fi
}

advice() { # program source
  case "$2" in
    @*) echo "missing $1: run ${2#@} (make tools does this)" ;;
    -) echo "missing $1: install Node 20 with npm (README)" ;;
    *) echo "missing $1: install Debian package $2 (make test does this as root)" ;;
  esac
}

# Prints "program source" for each missing program (all listed ones, or those named), exit 1 if one
# named is not in the list.
missing() {
  local prog src want=" $* " found=" " rc=0
  while IFS=$'\t' read -r prog src; do
    if [ $# -gt 0 ] && [ "${want/ $prog /}" = "$want" ]; then continue; fi
    found+="$prog "
    # Made programs live in the script's cache, not on PATH: `make tools` builds them.
    [ "${src#@}" = "$src" ] || continue
    present "$prog" || printf '%s\t%s\n' "$prog" "$src"
  done < <(rows)
  for prog in "$@"; do
    [ "${found/ $prog /}" != "$found" ] || { echo "host-tools: $prog is not in scripts/host-tools.sh's list: add it with its Debian package" >&2; rc=2; }
  done
  return $rc
}

do_check() {
  local out prog src
  out=$(missing "$@")
  [ -n "$out" ] || return 0
  while IFS=$'\t' read -r prog src; do advice "$prog" "$src" >&2; done <<<"$out"
  return 1
}

do_install() {
  local out prog src pkgs=()
  out=$(missing)
  [ -n "$out" ] || return 0
  while IFS=$'\t' read -r prog src; do
    case "$src" in @*|-) ;; *) [[ " ${pkgs[*]} " == *" $src "* ]] || pkgs+=("$src") ;; esac
  done <<<"$out"
  if [ ${#pkgs[@]} -gt 0 ]; then
    if [ "$EUID" != 0 ]; then do_check; return 1; fi
    echo "host-tools: installing ${pkgs[*]} from Debian" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2 \
      || { apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2; }
  fi
  do_check
}

case "${1:-}" in
  list) rows ;;
  check) shift; do_check "$@" ;;
  install) do_install ;;
  *) echo "usage: $0 list | check [PROGRAM...] | install" >&2; exit 2 ;;
esac
