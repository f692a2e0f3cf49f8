#!/usr/bin/env bash
# A fixed, seeded libFuzzer run of the SUIT/COSE/CBOR parsers under ASan and
# UBSan, seeded with the drafts' examples: any crash, leak or undefined
# behaviour found in those runs fails the test. Longer runs: fuzz/run.sh.
set -euo pipefail
src=${IOMT_SRC:?}
out=$(mktemp -d /tmp/iomt-fuzz-XXXXXX)
trap 'rm -rf "$out"' EXIT
FUZZ_OUT=$out FUZZ_RUNS=${FUZZ_RUNS:-100000} bash "$src/fuzz/run.sh" \
    >"$out/log" 2>&1 || {
    tail -n 40 "$out/log" >&2
    exit 1
}
grep -E '^Done [0-9]+ runs' "$out/log"
