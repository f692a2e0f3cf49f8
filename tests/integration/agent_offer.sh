#!/usr/bin/env bash
# iomt-agent against a hub on loopback whose store has been tampered with:
# a release offered under one ID must be the signed manifest of that ID
# (a hub serving release B's envelope and image as release A is refused,
# nothing written, and the refusal reaches the hub); an offer whose seq or
# version differs from its manifest is refused too. Then the device's own
# disk is damaged: status shows each damaged slot with its reason, and a
# device with no verified image refuses to run, naming both slots (exit 1).
set -euo pipefail

. "$(dirname "$0")/../lib/common.sh"
test_init agent-offer
command -v sqlite3 >/dev/null || fail "sqlite3 is missing (Debian sqlite3)"

vendor=testvendor.example
class=pump-test-p1
"$iomt" ca init --dir "$work/ca" >/dev/null
for who in hub:hub admin:admin release:release; do
    "$iomt" ca issue --dir "$work/ca" --name "offer-${who%%:*}" \
        --role "${who##*:}" -o "$work/${who%%:*}" >/dev/null
done
"$iomt" keygen -o "$work/mfr.pem" >/dev/null
ca=$work/ca/ca.pem
anchor=$work/mfr.pub.pem
head -c 100000 /dev/urandom >"$work/fw1.img"
head -c 150000 /dev/urandom >"$work/a.img"
head -c 170000 /dev/urandom >"$work/b.img"
sign() { # image seq version out
    "$iomt" sign --key "$work/mfr.pem" --image "$1" --seq "$2" \
        --vendor "$vendor" --class "$class" --version "$3" -o "$4" >/dev/null
}
sign "$work/fw1.img" 1 1.0.0 "$work/fw1.suit"
sign "$work/a.img" 200 2.0.0 "$work/a.suit"
sign "$work/b.img" 300 3.0.0 "$work/b.suit"

hub_state=$work/hub-state
start_hub "$hub_state" "$work/ca" "$work/hub.pem" "$work/hub.key.pem" \
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
json_field() { # field: from stdin
    "$py" -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}
upload() { # envelope image: prints the release ID
    local id
    id=$(api release 201 POST /api/v1/releases \
        -H 'Content-Type: application/suit-envelope+cose' \
        --data-binary "@$1" | json_field release_id)
    api release 204 PUT "/api/v1/releases/$id/image" \
        -H 'Content-Type: application/octet-stream' \
        --data-binary "@$2" >/dev/null
    printf '%s' "$id"
}
last_result() { # device
    api admin 200 GET /api/v1/devices | "$py" -c 'import json,sys
d = [x for x in json.load(sys.stdin)["devices"]
     if x["device_id"] == sys.argv[1]]
print(d[0]["last_result"], d[0]["seq"])' "$1"
}

tok=$(api admin 201 POST /api/v1/devices -H 'Content-Type: application/json' \
    -d "{\"device_id\":\"pump-1\",\"model\":\"$class\",\
\"criticality\":\"high\"}" |
    json_field token)
dev=$work/pump-1
"$agent" enrol --state "$dev" --hub "$url" --ca "$ca" \
    --trust-anchor "$anchor" --device-id pump-1 --token "$tok" \
    --vendor "$vendor" --class "$class" --factory-image "$work/fw1.img" \
    --factory-envelope "$work/fw1.suit" --quiet || fail "enrol"
run() { # [extra...]
    "$agent" run --state "$dev" --hub "$url" --ca "$ca" \
        --trust-anchor "$anchor" "$@"
}

rel_a=$(upload "$work/a.suit" "$work/a.img")
rel_b=$(upload "$work/b.suit" "$work/b.img")
api admin 201 POST /api/v1/assignments -H 'Content-Type: application/json' \
    -d "{\"release_id\":\"$rel_a\",\"device_id\":\"pump-1\"}" >/dev/null

# The store may only be written while the hub is down.
tamper() { # SQL
    stop_hub
    sqlite3 "$hub_state/hub.db" "$1" || fail "sqlite3: $1"
    start_hub "$hub_state" "$work/ca" "$work/hub.pem" "$work/hub.key.pem" \
        --workers 1
}
expect_refused() { # reason-pattern
    local before
    before=$(snapshot "$dev")
    expect_rc 1 run --quiet
    grep -q "^result=rejected .*reason=\"$1" "$work/out" ||
        fail "want reason $1: $(cat "$work/out" "$work/err")"
    [ "$(snapshot "$dev")" = "$before" ] ||
        fail "a refused offer changed the device's files"
    "$agent" status --state "$dev" --json >"$work/status.json"
    "$py" - "$work/status.json" <<'PY' ||
import json, sys
d = json.load(open(sys.argv[1]))
assert d["active"] == "A" and d["rollback_seq"] == 1, d
assert d["slots"][1]["state"] == "invalid", d
PY
        fail "slots: $(cat "$work/status.json")"
    [ "$(last_result pump-1)" = "rejected 1" ] ||
        fail "hub did not get the rejection: $(last_result pump-1)"
}

# Defect 1: the hub serves release B (seq 300, validly signed) as A.
tamper "UPDATE releases SET envelope = (SELECT envelope FROM releases
    WHERE release_id = '$rel_b') WHERE release_id = '$rel_a';"
cp "$work/b.img" "$hub_state/images/$rel_a"
expect_refused "release-id: offered release $rel_a, but the signed \
manifest is release $rel_b"
! grep -q 'seq=300' "$work/err" || fail "installed B: $(cat "$work/err")"

# Put A back, then lie about its seq, then about its version.
tamper "UPDATE releases SET envelope = (SELECT envelope FROM releases
    WHERE release_id = '$rel_b') WHERE release_id = '$rel_a';"
"$py" - "$hub_state/hub.db" "$rel_a" "$work/a.suit" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("UPDATE releases SET envelope = ? WHERE release_id = ?",
           (open(sys.argv[3], "rb").read(), sys.argv[2]))
db.commit()
PY
cp "$work/a.img" "$hub_state/images/$rel_a"
tamper "UPDATE releases SET seq = 250 WHERE release_id = '$rel_a';"
expect_refused 'release-id: offered seq 250, the manifest says 200'
tamper "UPDATE releases SET seq = 200, version = '2.0.1'
    WHERE release_id = '$rel_a';"
expect_refused "release-id: offered version '2.0.1', the manifest says '2.0.0'"

# The honest offer still installs.
tamper "UPDATE releases SET version = '2.0.0' WHERE release_id = '$rel_a';"
expect_rc 0 run
grep -q '^result=installed .*new_seq=200 ' "$work/out" ||
    fail "honest offer: $(cat "$work/out" "$work/err")"
[ "$(last_result pump-1)" = "installed 200" ] ||
    fail "hub inventory: $(last_result pump-1)"

# Defect 2: status re-hashes each valid slot. Slot A still holds the
# factory image, slot B (active) release A.
slot_state() { # slot-index: state and reason from status --json
    "$agent" status --state "$dev" --json >"$work/status.json" ||
        fail "status --json exit $?"
    "$py" - "$work/status.json" "$1" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["slots"][int(sys.argv[2])]
assert s["valid"] == (s["state"] == "valid"), s
print(s["state"], s.get("reason", ""))
PY
}
[ "$(slot_state 0)" = "valid " ] || fail "slot A: $(slot_state 0)"
head -c 100000 /dev/zero >"$dev/slot_a.img"
[ "$(slot_state 0)" = "damaged image-digest: image digest mismatch" ] ||
    fail "zeroed slot A: $(slot_state 0)"
expect_rc 0 "$agent" status --state "$dev"
grep -q '^slot A   damaged .*reason=image-digest: image digest mismatch' \
    "$work/out" || fail "status text: $(cat "$work/out")"
grep -q '^slot B   valid ' "$work/out" || fail "slot B: $(cat "$work/out")"
truncate -s 4096 "$dev/slot_a.img"
[ "$(slot_state 0)" = \
    "damaged image-size: image is 4096 bytes, recorded 100000" ] ||
    fail "truncated slot A: $(slot_state 0)"
rm "$dev/slot_a.img"
[ "$(slot_state 0)" = "damaged image-digest: image missing" ] ||
    fail "missing slot A: $(slot_state 0)"
[ "$(slot_state 1)" = "valid " ] || fail "slot B: $(slot_state 1)"

# Defect 3: the active slot is damaged after it was confirmed, and slot A
# is gone (and older than the rollback counter anyway): nothing verified
# to run. Refused with exit 1 and both slots named; no firmware runs and
# the device asks for service.
"$py" -c 'import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(5000); b = f.read(1); f.seek(5000); f.write(bytes([b[0] ^ 1]))' \
    "$dev/slot_b.img"
expect_rc 1 run --quiet
want='reason="boot: no verified image to boot: slot A: rollback: seq 1 below'
want+=' counter 200; slot B: image-digest: image digest mismatch; device'
want+=' needs service"'
grep -qF "$want" "$work/out" && grep -q '^result=rejected ' "$work/out" &&
    grep -q ' old_version=2.0.0 old_seq=200 ' "$work/out" ||
    fail "unbootable: $(cat "$work/out" "$work/err")"
[ "$(slot_state 1)" = "damaged image-digest: image digest mismatch" ] ||
    fail "damaged slot B: $(slot_state 1)"

echo "PASS agent_offer"
