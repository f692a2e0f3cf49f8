#!/usr/bin/env bash
# Independent oracle for the SUIT envelope format: Python (Debian's
# python3-cbor2 and python3-cryptography, no shared code) verifies what
# `iomt sign` writes, and `iomt verify` must accept what Python signs.
set -euo pipefail

IOMT="${IOMT_BIN:?IOMT_BIN not set}/iomt"
ORACLE="${IOMT_SRC:?IOMT_SRC not set}/tests/oracle/suit_oracle.py"
PY=/usr/bin/python3
work=$(mktemp -d /tmp/iomt-oracle-XXXXXX)
trap 'rm -rf "$work"' EXIT
failures=0

fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
pass() { echo "ok: $*"; }

head -c 70001 /dev/urandom >"$work/image.bin"
printf '{"bomFormat":"CycloneDX","specVersion":"1.5"}\n' >"$work/sbom.json"

for alg in es256 ed25519; do
    key="$work/test-key-$alg.pem"
    env="$work/iomt-$alg.suit"
    "$IOMT" keygen --alg "$alg" -o "$key" >/dev/null
    "$IOMT" sign --key "$key" --image "$work/image.bin" --seq 9 \
        --vendor vendor.example --class monitor-b2 --version 4.0.1 \
        --sbom "$work/sbom.json" -o "$env" >/dev/null

    # (a) Python verifies the envelope iomt made.
    if "$PY" "$ORACLE" check "$env" "$work/test-key-$alg.pub.pem" \
        "$work/image.bin" vendor.example monitor-b2 9 4.0.1 \
        "$work/sbom.json"; then
        pass "python verifies iomt $alg envelope"
    else
        fail "python rejected iomt $alg envelope"
    fi
    # The oracle itself must be able to fail: wrong seq, wrong image,
    # and a flipped signature bit.
    if "$PY" "$ORACLE" check "$env" "$work/test-key-$alg.pub.pem" \
        "$work/image.bin" vendor.example monitor-b2 8 2>/dev/null; then
        fail "oracle accepted a wrong sequence number"
    fi
    if "$PY" "$ORACLE" check "$env" "$work/test-key-$alg.pub.pem" \
        "$work/sbom.json" vendor.example monitor-b2 9 2>/dev/null; then
        fail "oracle accepted a wrong image"
    fi
    # Byte 100 lies inside the authentication wrapper for both algorithms.
    "$PY" -c 'import sys; b=bytearray(open(sys.argv[1],"rb").read()); b[100]^=1; open(sys.argv[2],"wb").write(b)' \
        "$env" "$work/flip.suit"
    if "$PY" "$ORACLE" check "$work/flip.suit" \
        "$work/test-key-$alg.pub.pem" "$work/image.bin" vendor.example \
        monitor-b2 9 2>/dev/null; then
        fail "oracle accepted a flipped byte"
    fi

    # (b) iomt verifies an envelope Python made with its own key.
    "$PY" "$ORACLE" make "$work/py-$alg.suit" "$work/py-$alg.pub.pem" \
        "$work/image.bin" vendor.example monitor-b2 12 "$alg"
    if "$IOMT" verify --key "$work/py-$alg.pub.pem" "$work/py-$alg.suit" \
        --image "$work/image.bin" --installed-seq 11 \
        --vendor vendor.example --class monitor-b2 >/dev/null; then
        pass "iomt verifies python $alg envelope"
    else
        fail "iomt rejected python $alg envelope"
    fi
    od -An -tx1 -v "$work/py-$alg.suit" >"$work/py-$alg.hex"
    "$IOMT" verify --key "$work/py-$alg.pub.pem" "$work/py-$alg.hex" \
        >/dev/null || fail "iomt rejected python $alg envelope as hex"
    rc=0
    "$IOMT" verify --key "$work/test-key-$alg.pub.pem" "$work/py-$alg.suit" \
        2>/dev/null >/dev/null || rc=$?
    [ "$rc" -eq 1 ] || fail "python envelope under the wrong key: exit $rc"
done

# UUIDs as the draft derives them: the example vendor-id is
# uuid5(NAMESPACE_DNS, "arm.com").
"$IOMT" sign --key "$work/test-key-es256.pem" --image "$work/image.bin" \
    --seq 1 --vendor arm.com --class pump -o "$work/arm.suit" >/dev/null
got=$("$IOMT" inspect --json "$work/arm.suit" |
    "$PY" -c 'import json,sys; d=json.load(sys.stdin); print(d["vendor_id"], d["class_id"])')
want=$("$PY" -c 'import uuid; v=uuid.uuid5(uuid.NAMESPACE_DNS,"arm.com"); print(v, uuid.uuid5(v,"pump"))')
if [ "$got" = "$want" ] && [ "${got%% *}" = fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe ]; then
    pass "vendor/class UUIDs match python uuid5 ($got)"
else
    fail "UUIDs: iomt '$got', python '$want'"
fi

[ "$failures" -eq 0 ] || { echo "$failures oracle check(s) failed" >&2; exit 1; }
echo "suit oracle: all checks passed"
