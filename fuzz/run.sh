#!/usr/bin/env bash
# Builds fuzz/fuzz_suit.c with clang's libFuzzer, ASan and UBSan, seeds it
# with the SUIT drafts' signed examples, and runs it for a bounded time.
# Usage: fuzz/run.sh [SECONDS] (default 60); FUZZ_RUNS=N for a fixed run.
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
data=${IOMT_DATA:-$src/../shared/data}
out=${FUZZ_OUT:-/tmp/iomt-fuzz}
seconds=${1:-60}
mkdir -p "$out/corpus"

clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -D_GNU_SOURCE -I "$src/include" -I "$src/lib" \
    "$src/fuzz/fuzz_suit.c" "$src/lib/suit.c" "$src/lib/cose.c" \
    "$src/lib/cbor.c" "$src/lib/crypto.c" "$src/lib/error.c" \
    "$src/lib/file.c" \
    -lcrypto -o "$out/fuzz_suit"

for f in "$data"/suit/manifest-spec/*.signed.hex \
    "$data"/suit/trust-domains/*.hex \
    "$data"/suit/firmware-encryption/*.hex.signed; do
    tr -d ' \n\r' <"$f" | /usr/bin/python3 -c \
        'import sys, binascii; sys.stdout.buffer.write(binascii.unhexlify(sys.stdin.read()))' \
        >"$out/corpus/$(basename "$f").cbor"
done
cp "$data"/suit/libcsuit/*.suit "$out/corpus/"

# FUZZ_RUNS=N makes a fixed, seeded run (the smoke test in make check).
limit=(-max_total_time="$seconds")
[ -n "${FUZZ_RUNS:-}" ] && limit=(-runs="$FUZZ_RUNS" -seed=1)
"$out/fuzz_suit" "${limit[@]}" -max_len=4096 \
    -artifact_prefix="$out/" "$out/corpus"
