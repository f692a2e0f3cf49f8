#!/usr/bin/env bash
# `iomt verify` against the SUIT drafts' own signed examples: every
# COSE_Sign1 example must be accepted with the draft's public key (and show
# the sequence number the draft prints), every COSE_Mac0 one rejected
# clearly, and each one rejected under a key that did not sign it.
set -euo pipefail

IOMT="${IOMT_BIN:?IOMT_BIN not set}/iomt"
DATA="${IOMT_DATA:?IOMT_DATA not set}/suit"
PUB="$DATA/manifest-spec/public_key.pem"
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

accept() {
    local key=$1 file=$2 seq=${3:-} out rc=0
    out=$("$IOMT" verify --key "$key" "$file" 2>&1) || rc=$?
    if [ "$rc" -ne 0 ]; then
        fail "$(basename "$file"): exit $rc: $out"
    elif [ -n "$seq" ] && ! grep -Eq "^  seq: +$seq\$" <<<"$out"; then
        fail "$(basename "$file"): expected seq $seq in: $out"
    else
        echo "ok: accepted $(basename "$file")"
    fi
    # The same file under an unrelated key must be rejected.
    rc=0
    "$IOMT" verify --key "$DATA/mcuboot-keys/root-ec-p256.pem" "$file" \
        >/dev/null 2>&1 || rc=$?
    [ "$rc" -eq 1 ] || fail "$(basename "$file") under a wrong key: exit $rc"
}

reject_mac() {
    local file=$1 err rc=0
    err=$("$IOMT" verify --key "$PUB" "$file" 2>&1 >/dev/null) || rc=$?
    if [ "$rc" -ne 1 ] || [[ "$err" != *COSE_Mac0* ]]; then
        fail "$(basename "$file"): exit $rc, '$err' (want COSE_Mac0 rejection)"
    else
        echo "ok: rejected $(basename "$file"): ${err#rejected: }"
    fi
}

for n in 0 1 2 3 4 5; do
    accept "$PUB" "$DATA/manifest-spec/example$n.signed.hex" "$n"
done
for f in "$DATA"/libcsuit/suit_manifest_exp*.suit; do
    case "$(basename "$f")" in
    suit_manifest_expA*) reject_mac "$f" ;;
    *) accept "$PUB" "$f" ;;
    esac
done
for f in "$DATA"/trust-domains/*.hex; do
    accept "$PUB" "$f"
done
accept "$PUB" "$DATA/firmware-encryption/suit-manifest-es-ecdh-content.hex.signed"
accept "$DATA/firmware-encryption/dependency_signer_public_key.pem" \
    "$DATA/firmware-encryption/suit-manifest-es-ecdh-dependency.hex.signed"
for f in "$DATA"/firmware-encryption/suit-manifest-aes-kw*.hex.signed; do
    reject_mac "$f"
done

# The draft's private key works as a trust anchor too (its public half).
accept "$DATA/manifest-spec/private_key.pem" \
    "$DATA/manifest-spec/example0.signed.hex" 0

[ "$failures" -eq 0 ] || { echo "$failures example check(s) failed" >&2; exit 1; }
echo "verify examples: all passed"
