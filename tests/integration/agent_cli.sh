#!/usr/bin/env bash
# iomt-agent without a hub: usage errors, factory provisioning that only
# accepts an image signed by the manufacturer's key, refusal of plain HTTP,
# an unreachable hub failing cleanly, and the status report.
set -euo pipefail

bin=${IOMT_BIN:?IOMT_BIN must name the build directory}
iomt=$bin/iomt
agent=$bin/iomt-agent
work=$(mktemp -d /tmp/iomt-agent-cli-XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

expect_rc() { # want command...
    local want=$1 rc=0
    shift
    "$@" >"$work/out" 2>&1 || rc=$?
    [ "$rc" = "$want" ] || fail "want exit $want, got $rc: $* :: $(cat "$work/out")"
}

vendor="testvendor.example"
class="pump-test-p1"
"$iomt" ca init --dir "$work/ca" >/dev/null
"$iomt" keygen -o "$work/mfr.pem" >/dev/null
"$iomt" keygen -o "$work/rogue.pem" >/dev/null
head -c 123457 /dev/urandom >"$work/fw.img"
"$iomt" sign --key "$work/mfr.pem" --image "$work/fw.img" --seq 5 \
    --vendor "$vendor" --class "$class" --version 1.4.0 \
    -o "$work/fw.suit" >/dev/null
"$iomt" sign --key "$work/rogue.pem" --image "$work/fw.img" --seq 5 \
    --vendor "$vendor" --class "$class" --version 1.4.0 \
    -o "$work/rogue.suit" >/dev/null

# Usage errors: exit 2.
expect_rc 2 "$agent"
expect_rc 2 "$agent" frobnicate
expect_rc 2 "$agent" run --state "$work/dev"
expect_rc 2 "$agent" run --state "$work/dev" --hub https://127.0.0.1:1 \
    --ca "$work/ca/ca.pem" --trust-anchor "$work/missing.pem"
expect_rc 2 "$agent" simulate --fleet "$work/missing.tsv" \
    --hub https://127.0.0.1:1 --ca "$work/ca/ca.pem" \
    --trust-anchor "$work/mfr.pub.pem" --dir "$work/fleet"
printf 'only\ttwo\n' >"$work/bad.tsv"
expect_rc 2 "$agent" simulate --fleet "$work/bad.tsv" \
    --hub https://127.0.0.1:1 --ca "$work/ca/ca.pem" \
    --trust-anchor "$work/mfr.pub.pem" --dir "$work/fleet"
expect_rc 2 "$agent" status --state "$work/nowhere"

enrol() { # state factory-envelope class hub
    "$agent" enrol --state "$1" --hub "$4" --ca "$work/ca/ca.pem" \
        --trust-anchor "$work/mfr.pub.pem" --device-id dev-1 \
        --token not-a-real-token --vendor "$vendor" --class "$3" \
        --factory-image "$work/fw.img" --factory-envelope "$2" --quiet
}

# A factory image signed by another key, or for another class, is refused
# and nothing is provisioned.
expect_rc 3 enrol "$work/d1" "$work/rogue.suit" "$class" https://127.0.0.1:1
grep -q 'factory: signature' "$work/out" || fail "rogue factory: $(cat "$work/out")"
expect_rc 2 "$agent" status --state "$work/d1"
expect_rc 3 enrol "$work/d2" "$work/fw.suit" other-class https://127.0.0.1:1
grep -q 'class-id' "$work/out" || fail "wrong class: $(cat "$work/out")"
expect_rc 2 "$agent" status --state "$work/d2"

# Plain HTTP is refused before any connection is made.
expect_rc 3 enrol "$work/d3" "$work/fw.suit" "$class" http://127.0.0.1:1
grep -q 'bad hub URL' "$work/out" || fail "http: $(cat "$work/out")"

# An unreachable hub fails cleanly; the factory slot is provisioned.
expect_rc 3 enrol "$work/d4" "$work/fw.suit" "$class" https://127.0.0.1:1
grep -q 'enrol:' "$work/out" || fail "unreachable: $(cat "$work/out")"
"$agent" status --state "$work/d4" --json >"$work/status.json"
/usr/bin/python3 - "$work/status.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["active"] == "A" and d["rollback_seq"] == 5, d
assert d["slots"][0]["valid"] and d["slots"][0]["version"] == "1.4.0", d
assert not d["slots"][1]["valid"], d
assert d["vendor"] == "testvendor.example", d
PY
cmp -s "$work/d4/slot_a.img" "$work/fw.img" || fail "slot A is not the image"
[ "$(stat -c %a "$work/d4/device.key")" = 600 ] || fail "device key mode"

# run without a certificate is an error, not a crash.
expect_rc 3 "$agent" run --state "$work/d4" --hub https://127.0.0.1:1 \
    --ca "$work/ca/ca.pem" --trust-anchor "$work/mfr.pub.pem" --quiet
grep -q 'result=error' "$work/out" || fail "run: $(cat "$work/out")"

# Device IDs become directory names: ".." must not escape --dir.
printf '..\t%s\t%s\ttok\t%s\t%s\n' "$vendor" "$class" "$work/fw.img" \
    "$work/fw.suit" >"$work/dots.tsv"
mkdir -p "$work/fleet"
expect_rc 3 "$agent" simulate --fleet "$work/dots.tsv" \
    --hub https://127.0.0.1:1 --ca "$work/ca/ca.pem" \
    --trust-anchor "$work/mfr.pub.pem" --dir "$work/fleet" --quiet
grep -q 'device-id' "$work/out" || fail "dots: $(cat "$work/out")"
[ ! -e "$work/state.1" ] || fail "a device escaped --dir"

echo "PASS agent_cli"
