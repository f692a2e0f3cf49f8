#!/usr/bin/env bash
# End to end on loopback: a fleet CA and a hub on an ephemeral port,
# operators with role certificates, devices enrolled over EST by
# iomt-agent, a signed release rolled out and installed through the A/B
# slots; then the attacks a compromised hub could mount: an image altered
# on the hub's disk after upload, a release signed by a key that is not
# the manufacturer's, and an authentic older release (rollback). Each must
# be refused by the device, reported, and leave its slots untouched.
set -euo pipefail

. "$(dirname "$0")/../lib/common.sh"
test_init e2e
step() { echo "== $*"; }

json_get() { # json-text python-expression-on-d
    printf '%s' "$1" | "$py" -c "import json,sys; d=json.load(sys.stdin); print(*($2,))"
}

vendor=testvendor.example
pump="pump-test-p1"
monitor="monitor-test-m2"

# ---------------------------------------------------------------- PKI
step "fleet CA, hub and operator certificates, manufacturer keys"
"$iomt" ca init --dir "$work/ca" >/dev/null
"$iomt" ca issue --dir "$work/ca" --name e2e-hub --role hub \
    -o "$work/hub" >/dev/null
"$iomt" ca issue --dir "$work/ca" --name e2e-admin --role admin \
    -o "$work/admin" >/dev/null
"$iomt" ca issue --dir "$work/ca" --name e2e-release --role release \
    -o "$work/release" >/dev/null
"$iomt" keygen -o "$work/mfr.pem" >/dev/null
"$iomt" keygen -o "$work/rogue.pem" >/dev/null
ca=$work/ca/ca.pem
anchor=$work/mfr.pub.pem

# ----------------------------------------------------------- firmware
step "firmware images and signed envelopes"
mkdir -p "$work/fw"
mkimg() { head -c "$2" /dev/urandom >"$work/fw/$1.img"; }
sign() { # name key class seq version
    "$iomt" sign --key "$work/$2.pem" --image "$work/fw/$1.img" \
        --seq "$4" --vendor "$vendor" --class "$3" --version "$5" \
        -o "$work/fw/$1.suit" >/dev/null
}
mkimg pump-1 300000
mkimg pump-2 700001
mkimg pump-3 500000
mkimg pump-4 200000
mkimg mon-1 250000
mkimg mon-2 650000
sign pump-1 mfr "$pump" 1 1.0.0
sign pump-2 mfr "$pump" 2 2.0.0
sign pump-3 mfr "$pump" 3 2.1.0
sign pump-4 rogue "$pump" 4 6.6.6
sign mon-1 mfr "$monitor" 1 1.0.0
sign mon-2 mfr "$monitor" 2 2.0.0

# ---------------------------------------------------------------- hub
step "hub on 127.0.0.1, ephemeral port"
start_hub "$work/hub-state" "$work/ca" "$work/hub.pem" "$work/hub.key.pem" \
    --workers 2

api() { # who method path [curl args...]: prints body, then the status
    local who=$1 method=$2 path=$3
    shift 3
    curl --silent --show-error --max-time 20 --cacert "$ca" \
        --cert "$work/$who.pem" --key "$work/$who.key.pem" \
        -X "$method" -w '\n%{http_code}' "$@" "$url$path"
}
api_ok() { # want-status who method path [curl args...]: prints body
    local want=$1 out status
    shift
    out=$(api "$@") || fail "curl $2 $3"
    status=${out##*$'\n'}
    [ "$status" = "$want" ] || fail "$2 $3: want $want, got $status: $out"
    printf '%s' "${out%$'\n'*}"
}

# ------------------------------------------------------------ devices
step "devices and one-time enrolment tokens"
declare -A token model
for dev in e2e-pump-1 e2e-pump-2 e2e-mon-1 e2e-tamper e2e-rogue; do
    case $dev in
    e2e-mon-*) model[$dev]=$monitor ;;
    *) model[$dev]=$pump ;;
    esac
    body=$(api_ok 201 admin POST /api/v1/devices \
        -H 'Content-Type: application/json' \
        -d "{\"device_id\":\"$dev\",\"model\":\"${model[$dev]}\",\"criticality\":\"high\"}")
    token[$dev]=$(json_get "$body" 'd["token"]')
done

fleet=$work/fleet.tsv
: >"$fleet"
for dev in e2e-pump-1 e2e-pump-2 e2e-mon-1 e2e-tamper e2e-rogue; do
    base="pump-1"
    [ "${model[$dev]}" = "$monitor" ] && base=mon-1
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$dev" "$vendor" "${model[$dev]}" \
        "${token[$dev]}" "$work/fw/$base.img" "$work/fw/$base.suit" \
        >>"$fleet"
done

# One device enrols through the single-device command, the token read
# from a file; the rest through the simulator.
mkdir -p "$work/devices"
printf '%s\n' "${token[e2e-rogue]}" >"$work/rogue.token"
"$agent" enrol --state "$work/devices/e2e-rogue" --hub "$url" --ca "$ca" \
    --trust-anchor "$anchor" --device-id e2e-rogue \
    --token-file "$work/rogue.token" --vendor "$vendor" --class "$pump" \
    --factory-image "$work/fw/pump-1.img" \
    --factory-envelope "$work/fw/pump-1.suit" --quiet >/dev/null ||
    fail "iomt-agent enrol"
[ "$(stat -c %a "$work/devices/e2e-rogue/device.key")" = 600 ] ||
    fail "device key is not 0600"

# A spent token must not enrol anyone again.
if "$agent" enrol --state "$work/thief" --hub "$url" --ca "$ca" \
    --trust-anchor "$anchor" --device-id e2e-rogue \
    --token "${token[e2e-rogue]}" --vendor "$vendor" --class "$pump" \
    --factory-image "$work/fw/pump-1.img" \
    --factory-envelope "$work/fw/pump-1.suit" --quiet 2>/dev/null; then
    fail "a used enrolment token enrolled a second time"
fi

# ----------------------------------------------------------- releases
upload() { # name -> release id
    local body id
    body=$(api_ok 201 release POST /api/v1/releases \
        -H 'Content-Type: application/suit-envelope+cose' \
        --data-binary "@$work/fw/$1.suit")
    id=$(json_get "$body" 'd["release_id"]')
    api_ok 204 release PUT "/api/v1/releases/$id/image" \
        -H 'Content-Type: application/octet-stream' \
        --data-binary "@$work/fw/$1.img" >/dev/null
    printf '%s' "$id"
}
assign() { # release device
    api_ok 201 admin POST /api/v1/assignments \
        -H 'Content-Type: application/json' \
        -d "{\"release_id\":\"$1\",\"device_id\":\"$2\"}" >/dev/null
}

step "releases: upload, then tamper and a foreign signature"
r_pump2=$(upload pump-2)
r_mon2=$(upload mon-2)
r_pump3=$(upload pump-3)
r_rogue=$(upload pump-4)
r_pump1=$(upload pump-1)

# What a compromised hub or its storage would serve: the stored image of
# the 2.1.0 release is altered after the hub accepted it.
stored=""
while IFS= read -r -d '' f; do
    if cmp -s "$f" "$work/fw/pump-3.img"; then
        stored=$f
        break
    fi
done < <(find "$work/hub-state/images" -type f -print0)
[ -n "$stored" ] || fail "stored image of release $r_pump3 not found"
"$py" -c 'import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(4096); b = f.read(1); f.seek(4096); f.write(bytes([b[0] ^ 1]))' \
    "$stored"

assign "$r_pump2" e2e-pump-1
assign "$r_pump2" e2e-pump-2
assign "$r_mon2" e2e-mon-1
assign "$r_pump3" e2e-tamper
assign "$r_rogue" e2e-rogue

# ------------------------------------------------------------ rollout
step "iomt-agent simulate: 5 devices, 3 threads"
results=$work/results.tsv
set +e
"$agent" simulate --fleet "$fleet" --hub "$url" --ca "$ca" \
    --trust-anchor "$anchor" --dir "$work/devices" --concurrency 3 \
    --results "$results" --quiet
rc=$?
set -e
[ "$rc" = 0 ] || fail "simulate exited $rc: $(cat "$results" 2>/dev/null)"
column -t -s $'\t' "$results" || cat "$results"

row() { awk -F'\t' -v d="$1" '$1 == d' "$results"; }
expect_row() { # device result new_version new_seq reason-prefix
    local r
    r=$(row "$1")
    [ -n "$r" ] || fail "$1: no result line"
    IFS=$'\t' read -r _ _ _ _ _ nv ns res reason <<<"$r"
    [ "$res" = "$2" ] || fail "$1: want $2, got $res ($reason)"
    [ "$nv" = "$3" ] || fail "$1: want version $3, got $nv"
    [ "$ns" = "$4" ] || fail "$1: want seq $4, got $ns"
    [[ "$reason" =~ ^($5) ]] || fail "$1: reason '$reason' !~ $5"
}
expect_row e2e-pump-1 installed 2.0.0 2 ''
expect_row e2e-pump-2 installed 2.0.0 2 ''
expect_row e2e-mon-1 installed 2.0.0 2 ''
expect_row e2e-tamper rejected 1.0.0 1 'image-digest|image-size|download: image'
expect_row e2e-rogue rejected 1.0.0 1 'signature'

step "slots: installed devices run B, refusing devices untouched on A"
status_of() {
    "$agent" status --state "$work/devices/$1" --json
}
for dev in e2e-pump-1 e2e-pump-2 e2e-mon-1; do
    s=$(status_of "$dev")
    [ "$(json_get "$s" 'd["active"], d["rollback_seq"], d["slots"][1]["version"]')" = \
        "B 2 2.0.0" ] || fail "$dev: slots after install: $s"
done
cmp -s "$work/devices/e2e-pump-1/slot_b.img" "$work/fw/pump-2.img" ||
    fail "e2e-pump-1: slot B is not the signed image"
for dev in e2e-tamper e2e-rogue; do
    s=$(status_of "$dev")
    [ "$(json_get "$s" 'd["active"], d["rollback_seq"], d["slots"][1]["valid"]')" = \
        "A 1 False" ] || fail "$dev: slots changed by a refused release: $s"
    cmp -s "$work/devices/$dev/slot_a.img" "$work/fw/pump-1.img" ||
        fail "$dev: slot A changed"
    [ ! -s "$work/devices/$dev/slot_b.img" ] || fail "$dev: slot B written"
    [ ! -e "$work/devices/$dev/staging.img" ] || fail "$dev: staging left"
done

step "hub inventory holds the reports"
inv=$(api_ok 200 admin GET /api/v1/devices)
check_inv() { # device field want
    local got
    got=$(json_get "$inv" \
        "[x.get('$2') for x in d['devices'] if x['device_id']=='$1'][0]")
    [ "$got" = "$3" ] || fail "inventory $1.$2: want $3, got $got"
}
check_inv e2e-pump-1 last_result installed
check_inv e2e-pump-1 version 2.0.0
check_inv e2e-pump-1 slot B
check_inv e2e-tamper last_result rejected
check_inv e2e-tamper slot A
check_inv e2e-rogue last_result rejected

step "rollback: an authentic older release is refused"
# An honest hub never offers a release at or below the device's seq, so
# play the compromised hub: its database now advertises the signed 1.0.0
# release under a higher seq. The device must trust only the signed one.
db=$(find "$work/hub-state" -maxdepth 1 -type f \( -name '*.db' -o \
    -name '*.sqlite' -o -name '*.sqlite3' \) | head -n 1)
[ -n "$db" ] || fail "hub database not found"
sqlite3 -cmd '.timeout 5000' "$db" \
    "UPDATE releases SET seq = 9 WHERE release_id = '$r_pump1';"
assign "$r_pump1" e2e-pump-1
set +e
out=$("$agent" run --state "$work/devices/e2e-pump-1" --hub "$url" \
    --ca "$ca" --trust-anchor "$anchor" --quiet)
rc=$?
set -e
echo "$out"
[ "$rc" = 1 ] || fail "rollback run exited $rc, want 1"
[[ "$out" == *'result=rejected'*'reason="rollback'* ]] ||
    fail "rollback not named: $out"
s=$(status_of e2e-pump-1)
[ "$(json_get "$s" 'd["active"], d["rollback_seq"]')" = "B 2" ] ||
    fail "e2e-pump-1 changed by a rollback attempt: $s"

step "the hub's CA is not a firmware trust anchor"
set +e
"$agent" run --state "$work/devices/e2e-pump-2" --hub "$url" --ca "$ca" \
    --trust-anchor "$work/ca/ca.pem" --quiet >/dev/null 2>&1
rc=$?
set -e
[ "$rc" != 0 ] || fail "a device booted with the hub CA as its anchor"

echo "PASS e2e_fleet"
