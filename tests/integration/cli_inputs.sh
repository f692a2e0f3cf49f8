#!/usr/bin/env bash
# Bad input to iomt sign / verify / keygen: each gets a clear error naming
# the field, the documented exit code, and no file half-written.
set -euo pipefail
iomt=${IOMT_BIN:?}/iomt
work=$(mktemp -d /tmp/iomt-inputs-XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
passed=0

expect() { # want-exit want-stderr-substring command...
    local want=$1 text=$2 rc=0
    shift 2
    timeout 60 "$@" >"$work/out" 2>"$work/err" || rc=$?
    [ "$rc" = 124 ] && fail "hung: $*"
    [ "$rc" = "$want" ] || fail "exit $rc, want $want: $* ($(cat "$work/err"))"
    grep -qF -- "$text" "$work/err" ||
        fail "stderr lacks '$text': $* ($(cat "$work/err"))"
    passed=$((passed + 1))
}

"$iomt" keygen -o "$work/test-key.pem" >/dev/null
head -c 4096 /dev/urandom >"$work/fw.img"
sign=("$iomt" sign --key "$work/test-key.pem" --image "$work/fw.img"
      --vendor v.example --class c)

# The rollback counter must fit the signed 64-bit columns of every store.
expect 2 "--seq: at most" "${sign[@]}" --seq 9223372036854775808 -o "$work/a"
[ ! -e "$work/a" ] || fail "refused sign left an envelope"
expect 2 "--seq: not a whole number" "${sign[@]}" --seq -1 -o "$work/a"
expect 2 "--seq: not a whole number" "${sign[@]}" --seq 99999999999999999999 \
    -o "$work/a"
"${sign[@]}" --seq 9223372036854775807 -o "$work/max.suit" >/dev/null
# Text that is not UTF-8, or carries control characters, never reaches a
# manifest (it would end up in logs and JSON).
expect 2 "--version: printable ASCII only" "${sign[@]}" --seq 1 \
    --version "$(printf 'v\xff\xfe')" -o "$work/a"
expect 2 "--version: printable ASCII only" "${sign[@]}" --seq 1 \
    --version "$(printf 'v1\nforged=1')" -o "$work/a"
expect 2 "--version: printable ASCII only" "${sign[@]}" --seq 1 \
    --version "2.0-ünïcode" -o "$work/a"
[ ! -e "$work/a" ] || fail "refused sign left an envelope"
expect 2 "unexpected argument 'extra'" "${sign[@]}" --seq 1 -o "$work/a" extra
expect 2 "--class is required" "$iomt" sign --key "$work/test-key.pem" \
    --image "$work/fw.img" --seq 1 --vendor v -o "$work/a"
expect 2 "--sbom: $work/none" "${sign[@]}" --seq 1 --sbom "$work/none" \
    -o "$work/a"
expect 2 "--image: $work/none" "$iomt" sign --key "$work/test-key.pem" \
    --image "$work/none" --seq 1 --vendor v --class c -o "$work/a"

# Names: empty, oversized or with control characters are usage errors, in
# sign and in verify alike.
long=$(head -c 65 /dev/zero | tr '\0' v)
expect 2 "--vendor: empty" "$iomt" sign --key "$work/test-key.pem" \
    --image "$work/fw.img" --seq 1 --vendor "" --class c -o "$work/a"
expect 2 "--class: longer than 64 bytes" "$iomt" sign \
    --key "$work/test-key.pem" --image "$work/fw.img" --seq 1 --vendor v \
    --class "$long" -o "$work/a"
expect 2 "--version: longer than 64 bytes" "${sign[@]}" --seq 1 \
    --version "$long" -o "$work/a"
"${sign[@]}" --seq 2 -o "$work/two.suit" >/dev/null
expect 2 "--vendor: empty" "$iomt" verify --key "$work/test-key.pub.pem" \
    --vendor "" --class "" "$work/two.suit"
expect 2 "--vendor: longer than 64 bytes" "$iomt" verify \
    --key "$work/test-key.pub.pem" --vendor "$long" "$work/two.suit"
expect 1 "class-id" "$iomt" verify --key "$work/test-key.pub.pem" \
    --vendor v.example --class other "$work/two.suit"

# An endless image must end in a rejection, not a hang.
"${sign[@]}" --seq 5 --version 2.0.0 -o "$work/ok.suit" >/dev/null
expect 1 "image size: larger than the 4096 bytes" "$iomt" verify \
    --key "$work/test-key.pub.pem" --image /dev/zero "$work/ok.suit"
head -c 4097 /dev/urandom >"$work/long.img"
expect 1 "image size: larger than" "$iomt" verify \
    --key "$work/test-key.pub.pem" --image "$work/long.img" "$work/ok.suit"
head -c 4095 "$work/fw.img" >"$work/short.img"
expect 1 "image size: 4095 bytes" "$iomt" verify \
    --key "$work/test-key.pub.pem" --image "$work/short.img" "$work/ok.suit"
"$iomt" verify --key "$work/test-key.pub.pem" --image "$work/fw.img" \
    "$work/ok.suit" >/dev/null || fail "the honest image was rejected"
passed=$((passed + 1))

# keygen writes both halves or neither.
mkdir -p "$work/kd/k.pem"
expect 2 "k.pem" "$iomt" keygen --force -o "$work/kd/k.pem"
[ ! -e "$work/kd/k.pub.pem" ] || fail "keygen left a public key without a private"
expect 2 "-o: empty path" "$iomt" keygen -o ""
echo "cli_inputs: $passed passed, 0 failed"
