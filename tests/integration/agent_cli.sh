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
grep -q 'not enrolled' "$work/out" || fail "status nowhere: $(cat "$work/out")"

enrol() { # state factory-envelope class hub
    "$agent" enrol --state "$1" --hub "$4" --ca "$work/ca/ca.pem" \
        --trust-anchor "$work/mfr.pub.pem" --device-id dev-1 \
        --token not-a-real-token --vendor "$vendor" --class "$3" \
        --factory-image "$work/fw.img" --factory-envelope "$2" --quiet
}

# A factory image signed by another key, or for another class, is refused
# (exit 1, a rejection like any release's) and nothing is provisioned.
expect_rc 1 enrol "$work/d1" "$work/rogue.suit" "$class" https://127.0.0.1:1
grep -q 'factory: signature' "$work/out" ||
    fail "rogue factory: $(cat "$work/out")"
[ ! -e "$work/d1" ] || fail "rogue factory left a state directory"
expect_rc 2 "$agent" status --state "$work/d1"
expect_rc 1 enrol "$work/d2" "$work/fw.suit" other-class https://127.0.0.1:1
grep -q 'class-id' "$work/out" || fail "wrong class: $(cat "$work/out")"
[ ! -e "$work/d2" ] || fail "wrong class left a state directory"
expect_rc 2 "$agent" status --state "$work/d2"

# Plain HTTP is refused before any connection is made, as bad usage.
expect_rc 2 enrol "$work/d3" "$work/fw.suit" "$class" http://127.0.0.1:1
grep -q -- '--hub' "$work/out" || fail "http: $(cat "$work/out")"
[ ! -e "$work/d3" ] || fail "http: a state directory was made"

# An unreachable hub fails cleanly and leaves nothing behind: no state
# directory, no hidden temporary one beside it.
mkdir "$work/p4"
expect_rc 3 enrol "$work/p4/d4" "$work/fw.suit" "$class" https://127.0.0.1:1
grep -q 'enrol:' "$work/out" || fail "unreachable: $(cat "$work/out")"
[ -z "$(ls -A "$work/p4")" ] || fail "failed enrol left: $(ls -A "$work/p4")"
expect_rc 2 "$agent" status --state "$work/p4/d4"
grep -q 'not enrolled' "$work/out" || fail "status: $(cat "$work/out")"
# An existing empty directory may be the target; it stays empty.
mkdir "$work/p4/empty"
expect_rc 3 enrol "$work/p4/empty" "$work/fw.suit" "$class" \
    https://127.0.0.1:1
[ -d "$work/p4/empty" ] && [ -z "$(ls -A "$work/p4/empty")" ] ||
    fail "failed enrol into an empty directory left files"
[ "$(ls -A "$work/p4")" = empty ] || fail "temporary left: $(ls -A "$work/p4")"

# A half-built directory (what older versions left after a failed enrol:
# key and device.conf but no certificate) is "not enrolled" to status and
# run, and enrol refuses to build over it.
mkdir -m 700 "$work/half"
printf 'device_id=dev-1\n' >"$work/half/device.conf"
cp "$work/mfr.pem" "$work/half/device.key"
expect_rc 2 "$agent" status --state "$work/half"
grep -q 'not enrolled (no device.crt)' "$work/out" ||
    fail "status half: $(cat "$work/out")"
expect_rc 2 "$agent" status --state "$work/half" --json
expect_rc 2 "$agent" run --state "$work/half" --hub https://127.0.0.1:1 \
    --ca "$work/ca/ca.pem" --trust-anchor "$work/mfr.pub.pem" --quiet
grep -q 'not enrolled (no device.crt)' "$work/out" ||
    fail "run half: $(cat "$work/out")"
if grep -qi 'ssl\|certificate file' "$work/out"; then
    fail "run half leaks a TLS library message: $(cat "$work/out")"
fi
sum_half=$(cd "$work/half" && sha256sum device.conf device.key)
expect_rc 2 enrol "$work/half" "$work/fw.suit" "$class" https://127.0.0.1:1
grep -q 'already enrolled' "$work/out" || fail "enrol half: $(cat "$work/out")"
[ "$(cd "$work/half" && sha256sum device.conf device.key)" = "$sum_half" ] ||
    fail "enrol changed a half-built directory"
[ "$(ls -A "$work/half" | tr '\n' ' ')" = "device.conf device.key " ] ||
    fail "enrol added files: $(ls -A "$work/half")"
rm -f "$work/half/device.conf"
echo leftover >"$work/half/notes"
expect_rc 2 enrol "$work/half" "$work/fw.suit" "$class" https://127.0.0.1:1
grep -q 'not empty' "$work/out" || fail "enrol non-empty: $(cat "$work/out")"

# Bad usage of enrol: exit 2, a message naming the option, nothing made.
good=(--hub https://127.0.0.1:1 --ca "$work/ca/ca.pem"
    --trust-anchor "$work/mfr.pub.pem" --vendor "$vendor" --class "$class"
    --factory-image "$work/fw.img" --factory-envelope "$work/fw.suit")
mkdir "$work/u"
bad_enrol() { # option-named-in-message args...
    local opt=$1
    shift
    expect_rc 2 "$agent" enrol "$@"
    grep -q -- "$opt" "$work/out" || fail "no '$opt' in: $(cat "$work/out")"
    [ -z "$(ls -A "$work/u")" ] || fail "bad usage left: $(ls -A "$work/u")"
}
for id in '../../x' '..' '.hidden' '-rf' 'päd' 'a b' 'a;id' '$(id)' 'a/b' \
    '' "$(printf 'x%.0s' $(seq 1 300))" "$(printf 'y%.0s' $(seq 1 65))"; do
    bad_enrol --device-id --state "$work/u/d" --device-id "$id" \
        --token tok "${good[@]}"
done
bad_enrol --token --state "$work/u/d" --device-id dev-1 "${good[@]}"
bad_enrol --token --state "$work/u/d" --device-id dev-1 --token '' \
    "${good[@]}"
bad_enrol --token --state "$work/u/d" --device-id dev-1 --token 'a b' \
    "${good[@]}"
for opt in --vendor --class; do
    args=("${good[@]}")
    for i in "${!args[@]}"; do
        [ "${args[$i]}" = "$opt" ] && args[i + 1]=''
    done
    bad_enrol "$opt" --state "$work/u/d" --device-id dev-1 --token tok \
        "${args[@]}"
done
long=$(printf 'v%.0s' $(seq 1 65))
bad_enrol --vendor --state "$work/u/d" --device-id dev-1 --token tok \
    "${good[@]}" --vendor "$long"
for hub in notaurl http://127.0.0.1:1 https:// 'https://a b' ftp://x ''; do
    bad_enrol --hub --state "$work/u/d" --device-id dev-1 --token tok \
        "${good[@]}" --hub "$hub"
done
bad_enrol --ca --state "$work/u/d" --device-id dev-1 --token tok \
    "${good[@]}" --ca "$work/missing.pem"
bad_enrol --factory-image --state "$work/u/d" --device-id dev-1 --token tok \
    "${good[@]}" --factory-image "$work/missing.img"
bad_enrol --state --state "$work/u/no/such/parent/d" --device-id dev-1 \
    --token tok "${good[@]}"
[ ! -e "$work/u/no" ] || fail "a missing parent was created"
bad_enrol --state --state "$work/u/.." --device-id dev-1 --token tok \
    "${good[@]}"
: >"$work/empty.token"
bad_enrol --token-file --state "$work/u/d" --device-id dev-1 \
    --token-file "$work/empty.token" "${good[@]}"
grep -q 'is empty' "$work/out" || fail "empty token file: $(cat "$work/out")"
printf '\n\n' >"$work/blank.token"
bad_enrol --token-file --state "$work/u/d" --device-id dev-1 \
    --token-file "$work/blank.token" "${good[@]}"
grep -q 'is empty' "$work/out" || fail "blank token file: $(cat "$work/out")"
bad_enrol --token-file --state "$work/u/d" --device-id dev-1 \
    --token-file "$work/missing.token" "${good[@]}"
printf 'tok\n' >"$work/ok.token"
bad_enrol --token --state "$work/u/d" --device-id dev-1 --token tok \
    --token-file "$work/ok.token" "${good[@]}"
[ -z "$(ls -A "$work/u")" ] || fail "bad usage left files"

# --help prints the usage on stdout and succeeds; unknown input does not.
"$agent" --help >"$work/help" 2>"$work/help.err" || fail "--help exit $?"
grep -q 'iomt-agent enrol' "$work/help" || fail "--help: no usage on stdout"
[ ! -s "$work/help.err" ] || fail "--help wrote to stderr"
"$agent" enrol --help >"$work/help" || fail "enrol --help exit $?"
grep -q 'iomt-agent enrol' "$work/help" || fail "enrol --help: no usage"
expect_rc 2 "$agent" --bogus

# Device IDs become directory names: ".." must not escape --dir.
printf '..\t%s\t%s\ttok\t%s\t%s\n' "$vendor" "$class" "$work/fw.img" \
    "$work/fw.suit" >"$work/dots.tsv"
mkdir -p "$work/fleet"
expect_rc 3 "$agent" simulate --fleet "$work/dots.tsv" \
    --hub https://127.0.0.1:1 --ca "$work/ca/ca.pem" \
    --trust-anchor "$work/mfr.pub.pem" --dir "$work/fleet" --quiet
grep -q 'device-id' "$work/out" || fail "dots: $(cat "$work/out")"
[ ! -e "$work/state.1" ] || fail "a device escaped --dir"

# An unwritable results path is bad usage, found before any device runs.
printf 'sim-1\t%s\t%s\ttok\t%s\t%s\n' "$vendor" "$class" "$work/fw.img" \
    "$work/fw.suit" >"$work/one.tsv"
expect_rc 2 "$agent" simulate --fleet "$work/one.tsv" \
    --hub https://127.0.0.1:1 --ca "$work/ca/ca.pem" \
    --trust-anchor "$work/mfr.pub.pem" --dir "$work/fleet2" \
    --results "$work/no/such/dir/results.tsv" --quiet
grep -q -- '--results' "$work/out" || fail "results: $(cat "$work/out")"
[ ! -e "$work/fleet2/sim-1" ] || fail "a device ran before --results failed"
expect_rc 2 "$agent" simulate --fleet "$work/one.tsv" --hub notaurl \
    --ca "$work/ca/ca.pem" --trust-anchor "$work/mfr.pub.pem" \
    --dir "$work/fleet2"
grep -q -- '--hub' "$work/out" || fail "simulate hub: $(cat "$work/out")"

# A fleet file without devices is bad usage, not a run of zero devices.
printf '# only a comment\n\n' >"$work/empty.tsv"
for fleet in /dev/null "$work/empty.tsv"; do
    expect_rc 2 "$agent" simulate --fleet "$fleet" \
        --hub https://127.0.0.1:1 --ca "$work/ca/ca.pem" \
        --trust-anchor "$work/mfr.pub.pem" --dir "$work/fleet3"
    grep -q -- '--fleet: no devices' "$work/out" ||
        fail "empty fleet $fleet: $(cat "$work/out")"
    ! grep -q 'devices=0' "$work/out" || fail "ran zero devices"
done
# A bad count names the option it was given with.
expect_rc 2 "$agent" --simulate abc --fleet "$work/one.tsv" \
    --hub https://127.0.0.1:1 --ca "$work/ca/ca.pem" \
    --trust-anchor "$work/mfr.pub.pem" --dir "$work/fleet3"
grep -q -- '--simulate must be 1\.\.1000000' "$work/out" ||
    fail "--simulate abc: $(cat "$work/out")"
! grep -q -- '--count' "$work/out" || fail "--simulate named --count"
expect_rc 2 "$agent" simulate --count 0 --fleet "$work/one.tsv" \
    --hub https://127.0.0.1:1 --ca "$work/ca/ca.pem" \
    --trust-anchor "$work/mfr.pub.pem" --dir "$work/fleet3"
grep -q -- '--count must be 1\.\.1000000' "$work/out" ||
    fail "--count 0: $(cat "$work/out")"
expect_rc 2 "$agent" --simulate 2 --fleet "$work/one.tsv" \
    --hub https://127.0.0.1:1 --ca "$work/ca/ca.pem" \
    --trust-anchor "$work/mfr.pub.pem" --dir "$work/fleet3"
grep -q -- '--simulate: the fleet has 1 devices, 2 asked' "$work/out" ||
    fail "--simulate 2: $(cat "$work/out")"

# A device.conf that is there but garbage (or empty) is named as such:
# "no device.conf" would send the operator to enrol again.
for conf in 'garbage' '' 'device_id=../x'; do
    rm -rf "$work/garbled"
    mkdir -m 700 "$work/garbled"
    printf '%s' "$conf" >"$work/garbled/device.conf"
    cp "$work/mfr.pem" "$work/garbled/device.key"
    cp "$work/ca/ca.pem" "$work/garbled/device.crt"
    for cmd in status run; do
        expect_rc 2 "$agent" "$cmd" --state "$work/garbled" \
            --hub https://127.0.0.1:1 --ca "$work/ca/ca.pem" \
            --trust-anchor "$work/mfr.pub.pem"
        grep -q -- "--state: $work/garbled: device.conf: malformed" \
            "$work/out" || fail "$cmd garbled '$conf': $(cat "$work/out")"
        ! grep -q 'no device.conf' "$work/out" ||
            fail "$cmd garbled '$conf' said no device.conf"
    done
    expect_rc 2 enrol "$work/garbled" "$work/fw.suit" "$class" \
        https://127.0.0.1:1
    grep -q 'device.conf: malformed' "$work/out" ||
        fail "enrol garbled: $(cat "$work/out")"
done

echo "PASS agent_cli"
