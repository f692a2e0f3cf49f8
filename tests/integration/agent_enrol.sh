#!/usr/bin/env bash
# iomt-agent against a hub on loopback: enrolment never builds over an
# enrolled state directory and never spends a token doing so, a failed
# enrolment leaves nothing behind, run --quiet is silent on success, a
# corrupted slot is named once, and a directory that lost its certificate
# is "not enrolled" rather than a TLS library error.
set -euo pipefail

. "$(dirname "$0")/../lib/common.sh"
test_init agent-enrol


vendor=testvendor.example
class=pump-test-p1
"$iomt" ca init --dir "$work/ca" >/dev/null
for who in hub:hub admin:admin release:release; do
    "$iomt" ca issue --dir "$work/ca" --name "enrol-${who%%:*}" \
        --role "${who##*:}" -o "$work/${who%%:*}" >/dev/null
done
"$iomt" keygen -o "$work/mfr.pem" >/dev/null
ca=$work/ca/ca.pem
anchor=$work/mfr.pub.pem
head -c 200000 /dev/urandom >"$work/fw1.img"
head -c 300000 /dev/urandom >"$work/fw2.img"
"$iomt" sign --key "$work/mfr.pem" --image "$work/fw1.img" --seq 1 \
    --vendor "$vendor" --class "$class" --version 1.0.0 \
    -o "$work/fw1.suit" >/dev/null
"$iomt" sign --key "$work/mfr.pem" --image "$work/fw2.img" --seq 2 \
    --vendor "$vendor" --class "$class" --version 2.0.0 \
    -o "$work/fw2.suit" >/dev/null

start_hub "$work/hub-state" "$work/ca" "$work/hub.pem" "$work/hub.key.pem" \
    --workers 1

api() { # who want-status method path [curl args...]: prints the body
    local who=$1 want=$2 method=$3 path=$4 out
    shift 4
    out=$(curl --silent --show-error --max-time 20 --cacert "$ca" \
        --cert "$work/$who.pem" --key "$work/$who.key.pem" -X "$method" \
        -w '\n%{http_code}' "$@" "$url$path") || fail "curl $method $path"
    [ "${out##*$'\n'}" = "$want" ] || fail "$method $path: $out"
    printf '%s' "${out%$'\n'*}"
}
declare -A token
for dev in pump-1 pump-8 pump-9; do
    body=$(api admin 201 POST /api/v1/devices \
        -H 'Content-Type: application/json' -d "{\"device_id\":\"$dev\",\
\"model\":\"$class\",\"criticality\":\"low\"}")
    token[$dev]=$(printf '%s' "$body" |
        "$py" -c 'import json,sys; print(json.load(sys.stdin)["token"])')
done

enrol() { # state device-id token [extra...]
    local state=$1 id=$2 tok=$3
    shift 3
    "$agent" enrol --state "$state" --hub "$url" --ca "$ca" \
        --trust-anchor "$anchor" --device-id "$id" --token "$tok" \
        --vendor "$vendor" --class "$class" --factory-image "$work/fw1.img" \
        --factory-envelope "$work/fw1.suit" "$@"
}
run() { # state [extra...]
    local state=$1
    shift
    "$agent" run --state "$state" --hub "$url" --ca "$ca" \
        --trust-anchor "$anchor" "$@"
}

mkdir "$work/dev"
expect_rc 0 enrol "$work/dev/pump-1" pump-1 "${token[pump-1]}"
grep -qx 'enrolled pump-1' "$work/out" || fail "enrol: $(cat "$work/out")"
[ "$(stat -c %a "$work/dev/pump-1/device.key")" = 600 ] || fail "key mode"

# Defect 1: enrolling another identity over an enrolled directory is bad
# usage; nothing in it changes and pump-8's token is not spent.
before=$(snapshot "$work/dev/pump-1")
expect_rc 2 enrol "$work/dev/pump-1" pump-8 "${token[pump-8]}"
grep -q -- '--state.*already enrolled as pump-1' "$work/err" ||
    fail "over enrolled: $(cat "$work/err")"
! grep -q 'enrolled pump-8' "$work/out" || fail "claimed success"
[ "$(snapshot "$work/dev/pump-1")" = "$before" ] ||
    fail "enrol changed an enrolled state directory"
[ "$(ls -A "$work/dev")" = pump-1 ] || fail "left: $(ls -A "$work/dev")"
# The same identity again is refused too.
expect_rc 2 enrol "$work/dev/pump-1" pump-1 "${token[pump-1]}"
[ "$(snapshot "$work/dev/pump-1")" = "$before" ] || fail "re-enrol changed it"
expect_rc 0 enrol "$work/dev/pump-8" pump-8 "${token[pump-8]}" --quiet
[ ! -s "$work/out" ] || fail "enrol --quiet printed: $(cat "$work/out")"

# Defect 2: a refused token (replayed, or another device's) leaves no
# directory, no temporary directory, no key.
expect_rc 3 enrol "$work/dev/replay" pump-1 "${token[pump-1]}"
grep -q 'token refused' "$work/err" || fail "replay: $(cat "$work/err")"
expect_rc 3 enrol "$work/dev/pump-9" pump-9 "${token[pump-8]}"
[ "$(ls -A "$work/dev" | tr '\n' ' ')" = "pump-1 pump-8 " ] ||
    fail "failed enrolments left: $(ls -A "$work/dev")"
expect_rc 2 "$agent" status --state "$work/dev/pump-9"
grep -q 'not enrolled' "$work/err" || fail "status: $(cat "$work/err")"
# pump-9's own token still works afterwards.
expect_rc 0 enrol "$work/dev/pump-9" pump-9 "${token[pump-9]}" --quiet

# Defect 4: run --quiet prints nothing when there is nothing to do or an
# update was installed; without --quiet the result line is there.
expect_rc 0 run "$work/dev/pump-1" --quiet
[ ! -s "$work/out" ] && [ ! -s "$work/err" ] ||
    fail "quiet no-update printed: $(cat "$work/out" "$work/err")"
expect_rc 0 run "$work/dev/pump-1"
grep -q '^result=no-update ' "$work/out" || fail "run: $(cat "$work/out")"
rel=$(api release 201 POST /api/v1/releases \
    -H 'Content-Type: application/suit-envelope+cose' \
    --data-binary "@$work/fw2.suit" |
    "$py" -c 'import json,sys; print(json.load(sys.stdin)["release_id"])')
api release 204 PUT "/api/v1/releases/$rel/image" \
    -H 'Content-Type: application/octet-stream' \
    --data-binary "@$work/fw2.img" >/dev/null
for dev in pump-1 pump-8; do
    api admin 201 POST /api/v1/assignments \
        -H 'Content-Type: application/json' \
        -d "{\"release_id\":\"$rel\",\"device_id\":\"$dev\"}" >/dev/null
done
expect_rc 0 run "$work/dev/pump-1" --quiet
[ ! -s "$work/out" ] && [ ! -s "$work/err" ] ||
    fail "quiet install printed: $(cat "$work/out" "$work/err")"
"$agent" status --state "$work/dev/pump-1" --json >"$work/status.json"
"$py" - "$work/status.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["active"] == "B" and d["rollback_seq"] == 2, d
PY

# Defect 4: a corrupted slot is refused with "boot:" said once; nothing
# verified to run is a rejection of what is on the device (exit 1).
"$py" -c 'import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(1000); b = f.read(1); f.seek(1000); f.write(bytes([b[0] ^ 1]))' \
    "$work/dev/pump-8/slot_a.img"
expect_rc 1 run "$work/dev/pump-8" --quiet
grep -q 'reason="boot: no verified image to boot: slot A: image-digest' \
    "$work/out" || fail "corrupt slot: $(cat "$work/out")"
! grep -q 'boot: boot:' "$work/out" || fail "doubled: $(cat "$work/out")"

# Defect 2: a directory without its certificate is "not enrolled" to
# status and run (exit 2), with no TLS library message.
rm "$work/dev/pump-9/device.crt"
expect_rc 2 "$agent" status --state "$work/dev/pump-9"
grep -q 'not enrolled (no device.crt)' "$work/err" ||
    fail "status no crt: $(cat "$work/err")"
expect_rc 2 run "$work/dev/pump-9"
grep -q 'not enrolled (no device.crt)' "$work/err" ||
    fail "run no crt: $(cat "$work/err")"
! grep -qi 'ssl\|openssl\|certificate file' "$work/out" "$work/err" ||
    fail "run no crt leaks a TLS message: $(cat "$work/err")"

echo "PASS agent_enrol"
