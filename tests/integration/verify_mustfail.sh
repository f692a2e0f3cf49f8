#!/usr/bin/env bash
# Must-fail fixtures for `iomt verify`, generated at test time from a fresh
# key and image: a flipped bit at every byte of the manifest and of the
# signature, flipped image bytes, every truncation of the envelope, wrong
# keys, rollback, wrong vendor/class, and garbage. Each must exit 1 with
# "rejected: <reason>" naming what failed; an exit code of 128 or more is
# a crash and fails the test.
set -euo pipefail

IOMT="${IOMT_BIN:?IOMT_BIN not set}/iomt"
PY=/usr/bin/python3
work=$(mktemp -d /tmp/iomt-mustfail-XXXXXX)
trap 'rm -rf "$work"' EXIT
failures=0
checked=0

fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

# expect_reject NAME PATTERN ARGS...: exit 1, stderr "rejected: ...PATTERN"
expect_reject() {
    local name=$1 pattern=$2 rc=0 err
    shift 2
    err=$("$IOMT" verify "$@" 2>&1 >/dev/null) || rc=$?
    checked=$((checked + 1))
    if [ "$rc" -ge 128 ]; then
        fail "$name: crashed (exit $rc)"
    elif [ "$rc" -ne 1 ]; then
        fail "$name: exit $rc, expected 1 ($err)"
    elif [[ "$err" != rejected:* ]]; then
        fail "$name: no 'rejected:' line: $err"
    elif [ -n "$pattern" ] && [[ "$err" != *"$pattern"* ]]; then
        fail "$name: reason '$err' does not mention '$pattern'"
    fi
}

expect_exit() {
    local name=$1 want=$2 rc=0
    shift 2
    "$IOMT" verify "$@" >/dev/null 2>&1 || rc=$?
    checked=$((checked + 1))
    [ "$rc" -eq "$want" ] || fail "$name: exit $rc, expected $want"
}

key="$work/test-key.pem"
pub="$work/test-key.pub.pem"
env="$work/release.suit"
img="$work/image.bin"
head -c 200003 /dev/urandom >"$img"
"$IOMT" keygen -o "$key" >/dev/null
"$IOMT" keygen -o "$work/other-key.pem" >/dev/null
"$IOMT" keygen --alg ed25519 -o "$work/ed-key.pem" >/dev/null
"$IOMT" sign --key "$key" --image "$img" --seq 5 --vendor vendor.example \
    --class pump-a --version 1.2.0 -o "$env" >/dev/null

# The untouched release must pass, or every rejection below means nothing.
"$IOMT" verify --key "$pub" "$env" --image "$img" --installed-seq 4 \
    --vendor vendor.example --class pump-a >/dev/null ||
    { echo "FAIL: the genuine release was rejected" >&2; exit 1; }

# Mutants of the envelope, made by Python so the offsets come from an
# independent CBOR decoder: one bit flipped at every byte of the manifest
# bstr and of the signature, and every truncation.
mkdir "$work/m"
"$PY" - "$env" "$work/m" <<'PYEOF'
import sys, cbor2
raw = open(sys.argv[1], "rb").read()
out = sys.argv[2]
env = cbor2.loads(raw).value
manifest_bstr = cbor2.dumps(env[3])
m_off = raw.rindex(manifest_bstr)
sign1 = cbor2.loads(cbor2.loads(env[2])[1])
sig = sign1.value[3]
s_off = raw.index(sig)
def put(name, data):
    open("%s/%s" % (out, name), "wb").write(data)
for i in range(len(manifest_bstr)):
    b = bytearray(raw)
    b[m_off + i] ^= 1 << (i % 8)
    # The first bytes are the bstr head; the rest is digested content.
    put("manifest-%s-%04d" % ("head" if i < 3 else "body", i), b)
for i in range(len(sig)):
    b = bytearray(raw)
    b[s_off + i] ^= 1 << (i % 8)
    put("signature-%04d" % i, b)
for n in range(len(raw)):
    put("truncated-%04d" % n, raw[:n])
put("appended", raw + b"\x00")
PYEOF

for f in "$work"/m/*; do
    name=$(basename "$f")
    case "$name" in
    manifest-body-*) want="manifest digest" ;;
    signature-*) want="signature" ;;
    truncated-0000) want="empty" ;;
    *) want="" ;;
    esac
    expect_reject "$name" "$want" --key "$pub" "$f"
done

# Image tampering: first, last and sampled bytes, and a short image.
size=$(stat -c %s "$img")
for pos in 0 1 4095 4096 65536 131071 $((size / 2)) $((size - 2)) \
    $((size - 1)); do
    "$PY" -c 'import sys
b = bytearray(open(sys.argv[1], "rb").read()); b[int(sys.argv[2])] ^= 0x80
open(sys.argv[3], "wb").write(b)' "$img" "$pos" "$work/img-flip"
    expect_reject "image byte $pos" "image digest" --key "$pub" "$env" \
        --image "$work/img-flip"
done
head -c $((size - 1)) "$img" >"$work/img-short"
expect_reject "image one byte short" "image size" --key "$pub" "$env" \
    --image "$work/img-short"
cat "$img" "$img" >"$work/img-long"
expect_reject "image doubled" "image size" --key "$pub" "$env" \
    --image "$work/img-long"

# Keys: another P-256 key, an Ed25519 key for an ES256 envelope.
expect_reject "wrong key" "signature" --key "$work/other-key.pub.pem" "$env"
expect_reject "ed25519 key, es256 envelope" "does not match" \
    --key "$work/ed-key.pub.pem" "$env"

# Rollback and identity.
expect_reject "equal sequence number" "sequence number 5 not above" \
    --key "$pub" "$env" --installed-seq 5
expect_reject "lower sequence number" "sequence number 5 not above" \
    --key "$pub" "$env" --installed-seq 9
expect_reject "wrong vendor" "vendor-id" --key "$pub" "$env" \
    --vendor other.example
expect_reject "wrong class" "class-id" --key "$pub" "$env" \
    --vendor vendor.example --class pump-b

# Garbage.
: >"$work/empty"
head -c 300 /dev/urandom >"$work/random"
printf 'not hex at all, zz\n' >"$work/text"
printf 'd86ba2\n' >"$work/hex-short"
printf 'abc\n' >"$work/hex-odd"
"$PY" -c 'import os; print(os.urandom(200).hex())' >"$work/hex-random"
printf '\xd8\x6b\xa0' >"$work/empty-envelope"
for g in empty random text hex-short hex-odd hex-random empty-envelope; do
    expect_reject "garbage $g" "" --key "$pub" "$work/$g"
done

# Usage and unreadable input exit 2, not 1.
expect_exit "missing envelope file" 2 --key "$pub" "$work/nonexistent"
expect_exit "missing key file" 2 --key "$work/nonexistent.pem" "$env"
expect_exit "no key option" 2 "$env"
expect_exit "bad --installed-seq" 2 --key "$pub" "$env" --installed-seq x
expect_exit "missing image file" 2 --key "$pub" "$env" --image "$work/none"
expect_exit "garbage as key" 2 --key "$work/random" "$env"

echo "verify must-fail: $checked cases, $failures failures"
[ "$failures" -eq 0 ]
