#!/usr/bin/env bash
# Installs the Debian packages a step needs, only those missing.
# Usage: scripts/deps.sh build|test|demo|bench
set -euo pipefail

build=(cmake ninja-build pkg-config gcc libssl-dev libsqlite3-dev
       libjansson-dev libevent-dev libcurl4-openssl-dev openssl)
test=(libcmocka-dev curl clang libclang-rt-14-dev python3-cryptography python3-cbor2 clang-format
      cppcheck sqlite3)
demo=(ca-certificates curl python3)
bench=(nginx-light time curl python3 procps)

want=("${build[@]}")
for step in "$@"; do
    case "$step" in
    build) ;;
    test) want+=("${test[@]}") ;;
    demo) want+=("${demo[@]}") ;;
    bench) want+=("${bench[@]}") ;;
    *) echo "deps.sh: unknown step '$step'" >&2; exit 2 ;;
    esac
done

missing=()
for pkg in "${want[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    [ "$status" = installed ] || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
