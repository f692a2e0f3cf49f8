#!/usr/bin/env bash
# Must-fail cases for iomt-hub and iomt ca, one block per defect class:
# sequence numbers above INT64_MAX, non-ASCII versions, reports against
# unknown or unassigned releases, check-in field checks, start-up exit
# codes and refusals (non-loopback, foreign or non-hub certificates), device
# ID rules, oversize images, JSON and method errors, Content-Type, and the
# CA tool's argument and file handling. Servers bind 127.0.0.1 only.
set -euo pipefail

. "$(dirname "$0")/../lib/common.sh"
test_init hub-mustfail
hub=$hub_bin

# ------------------------------------------------------------ iomt ca
"$iomt" ca init --dir "$work/ca" --org "Test Hospital" >/dev/null
for who in hub:hub admin:admin rel:release sec:security; do
    "$iomt" ca issue --dir "$work/ca" --name "test-${who%%:*}" \
        --role "${who#*:}" -o "$work/${who%%:*}" >"$work/issue.out"
    grep -q "issued test-${who%%:*}" "$work/issue.out" ||
        fail "ca issue said nothing about what it wrote"
done
"$iomt" ca init --dir "$work/evil-ca" >/dev/null
"$iomt" ca issue --dir "$work/evil-ca" --name localhost --role hub \
    -o "$work/evil-hub" >/dev/null

# ca_fails WANT_RC STDERR_PATTERN args...
ca_fails() {
    local want=$1 pat=$2 rc=0
    shift 2
    "$iomt" ca "$@" >"$work/ca.out" 2>"$work/ca.err" || rc=$?
    [ "$rc" = "$want" ] || fail "iomt ca $*: exit $rc, want $want"
    grep -q -- "$pat" "$work/ca.err" ||
        fail "iomt ca $*: stderr does not name '$pat': $(cat "$work/ca.err")"
}
ca_fails 2 --org init --dir "$work/ca-empty-org" --org ''
[ ! -e "$work/ca-empty-org" ] || fail "ca init --org '' left a directory"
ca_fails 2 --org init --dir "$work/ca-long-org" --org "$(printf 'o%.0s' $(seq 65))"
[ ! -e "$work/ca-long-org" ] || fail "ca init with a long --org left a directory"
ca_fails 2 --name issue --dir "$work/ca" --role admin -o "$work/x"
ca_fails 2 --days issue --dir "$work/ca" --name x --role admin -o "$work/x" \
    --days 0
ca_fails 2 --bogus issue --dir "$work/ca" --name x --role admin -o "$work/x" \
    --bogus 1
ca_fails 2 --bogus init --dir "$work/ca-bogus" --bogus
[ ! -e "$work/ca-bogus" ] || fail "ca init with a bad option left a directory"
ca_fails 2 --name issue --dir "$work/ca" --name -x --role admin -o "$work/x"
"$iomt" ca init --help >/dev/null || fail "ca init --help did not exit 0"
"$iomt" ca issue --help >/dev/null || fail "ca issue --help did not exit 0"
# PREFIX.pem cannot be written (a directory sits there): no orphan key.
mkdir -p "$work/blocked.pem"
ca_fails 2 blocked issue --dir "$work/ca" --name blocked --role admin \
    -o "$work/blocked"
[ ! -e "$work/blocked.key.pem" ] || fail "ca issue left an orphan key"
[ -z "$(ls "$work" | grep -F 'blocked.' | grep -v '^blocked.pem$')" ] ||
    fail "ca issue left staging files: $(ls "$work")"

# ---------------------------------------------------- hub start-up
# start_fails WANT_RC LOG_PATTERN extra-args...: the hub must exit at once.
common=(--ca-dir "$work/ca" --cert "$work/hub.pem" --key "$work/hub.key.pem")
start_fails() {
    local want=$1 pat=$2 rc=0
    shift 2
    timeout -k 5 20 "$hub" serve "$@" >"$work/start.out" 2>"$work/start.err" ||
        rc=$?
    [ "$rc" = "$want" ] || fail "iomt-hub serve $*: exit $rc, want $want"
    grep -q -- "$pat" "$work/start.err" ||
        fail "iomt-hub serve $*: log lacks '$pat': $(cat "$work/start.err")"
    if grep -q 'msg="Success"' "$work/start.err"; then
        fail "iomt-hub serve $*: logged msg=\"Success\" for a failure"
    fi
}
s=$work/state-start
start_fails 2 -- --dir "$s" "${common[@]}" --listen 127.0.0.1:99999
start_fails 2 --listen --dir "$s" "${common[@]}" --listen 127.0.0.1:99999
start_fails 2 --listen --dir "$s" "${common[@]}" --listen bogus
start_fails 2 IPv6 --dir "$s" "${common[@]}" --listen '[::1]:0'
start_fails 2 allow-remote --dir "$s" "${common[@]}" --listen 0.0.0.0:0
start_fails 2 --ca-dir --dir "$s" --ca-dir "$work/no-such-ca" \
    --cert "$work/hub.pem" --key "$work/hub.key.pem" --listen 127.0.0.1:0
start_fails 2 --cert --dir "$s" --ca-dir "$work/ca" --cert "$work/ca/ca.pem" \
    --key "$work/hub.key.pem" --listen 127.0.0.1:0
start_fails 2 --cert --dir "$s" --ca-dir "$work/ca" \
    --cert "$work/no-such.pem" --key "$work/hub.key.pem" --listen 127.0.0.1:0
start_fails 2 --key --dir "$s" --ca-dir "$work/ca" --cert "$work/hub.pem" \
    --key "$work/admin.key.pem" --listen 127.0.0.1:0
start_fails 2 "fleet CA" --dir "$s" --ca-dir "$work/ca" \
    --cert "$work/evil-hub.pem" --key "$work/evil-hub.key.pem" \
    --listen 127.0.0.1:0
start_fails 2 '"hub"' --dir "$s" --ca-dir "$work/ca" --cert "$work/admin.pem" \
    --key "$work/admin.key.pem" --listen 127.0.0.1:0
start_fails 2 --dir --dir "$work/no/such/state" "${common[@]}" \
    --listen 127.0.0.1:0
start_fails 2 --port-file --dir "$s" "${common[@]}" --listen 127.0.0.1:0 \
    --port-file "$work/no/such/port"
start_fails 2 '--workers.*1\.\.64' --dir "$s" "${common[@]}" --workers 0
start_fails 2 '--token-ttl' --dir "$s" "${common[@]}" --token-ttl 0
start_fails 2 '--bogus' --dir "$s" "${common[@]}" --bogus 1

# ---------------------------------------------------------------- hub
start_hub "$work/state" "$work/ca" "$work/hub.pem" "$work/hub.key.pem" \
    --listen localhost:0 --workers 2 --image-max 100000
# The port is taken now: a second hub on it fails at run time (3).
start_fails 3 --listen --dir "$s" "${common[@]}" --listen "127.0.0.1:$port"

# req WANT_STATUS OUTFILE curl-args...: one call, status checked.
JSON=(-H 'Content-Type: application/json')
SUIT=(-H 'Content-Type: application/suit-envelope+cose')
# field_is FILE NAME: the error answer names that field.
field_is() {
    [ "$(json "$1" '["field"]')" = "$2" ] ||
        fail "error names field '$(json "$1" '["field"]')', want '$2': $(cat "$1")"
}
# fails_with WANT FIELD who path body: JSON call refused, field named.
fails_with() {
    req "$1" "$work/e" $(as "$3") "${JSON[@]}" -d "$5" "$url$4"
    field_is "$work/e" "$2"
}

# Device IDs that a device could not use, or that escape a directory.
for id in . .. -x .hidden 'a/b' ''; do
    fails_with 400 device_id admin /api/v1/devices \
        "{\"device_id\":\"$id\",\"model\":\"m\",\"criticality\":\"low\"}"
done
fails_with 400 model admin /api/v1/devices \
    '{"device_id":"ok-1","model":"-m","criticality":"low"}'

# JSON errors name the problem.
req 400 "$work/e" $(as admin) "${JSON[@]}" \
    -d '{"device_id":"d1","device_id":"d2","model":"m","criticality":"low"}' \
    "$url/api/v1/devices"
grep -qi duplicate "$work/e" || fail "duplicate key not named: $(cat "$work/e")"
req 400 "$work/e" $(as admin) "${JSON[@]}" \
    -d '{"device_id":"d1","model":"m","criticality":"low","n":99999999999999999999}' \
    "$url/api/v1/devices"
grep -qi 'too big' "$work/e" || fail "integer overflow not named: $(cat "$work/e")"
field_is "$work/e" n
req 400 "$work/e" $(as admin) "${JSON[@]}" -d '[1]' "$url/api/v1/devices"
grep -q 'not an object' "$work/e" || fail "array body: $(cat "$work/e")"
fails_with 400 release_id admin /api/v1/assignments '{}'
fails_with 400 release_id admin /api/v1/assignments '{"release_id":"XYZ"}'

# Methods: 405 with Allow, not 501.
code=$(curl -sS --max-time 20 --cacert "$work/ca/ca.pem" $(as admin) \
    -X DELETE -D "$work/h" -o "$work/e" -w '%{http_code}' \
    "$url/api/v1/devices")
[ "$code" = 405 ] || fail "DELETE: $code, want 405"
grep -qi '^Allow: GET, POST' "$work/h" || fail "405 without Allow: $(cat "$work/h")"
code=$(curl -sS --max-time 20 --cacert "$work/ca/ca.pem" $(as admin) \
    -X PATCH -o "$work/e" -w '%{http_code}' "$url/api/v1/nothing")
[ "$code" = 404 ] || fail "PATCH on an unknown path: $code, want 404"

# Content-Type: JSON endpoints take only application/json.
req 415 "$work/e" $(as admin) -H 'Content-Type: text/plain' \
    -d '{"device_id":"ct-1","model":"m","criticality":"low"}' \
    "$url/api/v1/devices"
req 415 "$work/e" $(as admin) \
    -d '{"device_id":"ct-1","model":"m","criticality":"low"}' \
    "$url/api/v1/devices"
req 201 "$work/e" $(as admin) -H 'Content-Type: application/json; charset=utf-8' \
    -d '{"device_id":"ct-1","model":"m","criticality":"low"}' \
    "$url/api/v1/devices"

# A device, enrolled over EST.
req 201 "$work/pump.created" $(as admin) "${JSON[@]}" \
    -d '{"device_id":"pump-01","model":"infusion-pump","criticality":"high"}' \
    "$url/api/v1/devices"
req 201 "$work/mon.created" $(as admin) "${JSON[@]}" \
    -d '{"device_id":"mon-01","model":"monitor","criticality":"low"}' \
    "$url/api/v1/devices"
enrol() { # id
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$work/$1.key.pem" -subj "/CN=$1" -outform DER 2>/dev/null |
        base64 -w0 >"$work/$1.csr"
    req 200 "$work/$1.p7" -u "$1:$(json "$work/$2.created" '["token"]')" \
        -H 'Content-Type: application/pkcs10' --data-binary @"$work/$1.csr" \
        "$url/.well-known/est/simpleenroll"
    base64 -d "$work/$1.p7" | openssl pkcs7 -inform DER -print_certs \
        -out "$work/$1.pem"
}
enrol pump-01 pump
enrol mon-01 mon

# Check-in fields: each refusal names the field that is wrong.
ci() { fails_with 400 "$1" pump-01 /api/v1/checkin "$2"; }
ci slot '{"version":"1.0","seq":1,"slot":"C","state":"confirmed"}'
ci state '{"version":"1.0","seq":1,"slot":"A","state":"hacked"}'
ci version '{"version":"1.0\nforged=1","seq":1,"slot":"A","state":"confirmed"}'
ci version '{"version":"1.0\u0007","seq":1,"slot":"A","state":"confirmed"}'
ci version "{\"version\":\"$(printf 'v%.0s' $(seq 65))\",\"seq\":1,\"slot\":\"A\",\"state\":\"confirmed\"}"
ci seq '{"version":"1.0","seq":-1,"slot":"A","state":"confirmed"}'
ci seq '{"version":"1.0","seq":18446744073709551615,"slot":"A","state":"confirmed"}'
req 200 "$work/ci" $(as pump-01) "${JSON[@]}" \
    -d '{"version":"1.0","seq":1,"slot":"A","state":"trial","slot_hint":1}' \
    "$url/api/v1/checkin"

# ------------------------------------------------------------ releases
"$iomt" keygen -o "$work/mfr.pem" >/dev/null
head -c 1000 /dev/urandom >"$work/fw.img"
head -c 300001 /dev/urandom >"$work/big.img"
sign() { # seq image out [version]
    "$iomt" sign --key "$work/mfr.pem" --image "$2" --seq "$1" \
        --vendor test-vendor.example --class infusion-pump \
        --version "${4:-2.0.0}" -o "$3" >/dev/null
}
# Rewrites a signed envelope's sequence number and/or version bytes, with
# the manifest digest recomputed (the hub parses, it does not verify).
patch_env() { # in out seq|- version-hex|-
    $py - "$@" <<'PYEOF'
import hashlib, sys
import cbor2
src, dst, seq, ver = sys.argv[1:5]
env = cbor2.loads(open(src, "rb").read())
tagged = isinstance(env, cbor2.CBORTag)
body = env.value if tagged else env
manifest = cbor2.loads(body[3])
if seq != "-":
    manifest[2] = int(seq)
raw = cbor2.dumps(manifest)
if ver != "-":
    marker = b"VERSIONMARK"
    new = bytes.fromhex(ver)
    assert len(new) == len(marker) and raw.count(marker) == 1
    raw = raw.replace(marker, new)
auth = cbor2.loads(body[2])
digest = cbor2.dumps([-16, hashlib.sha256(cbor2.dumps(raw)).digest()])
auth[0] = digest
body[2] = cbor2.dumps(auth)
body[3] = raw
out = cbor2.CBORTag(107, body) if tagged else body
open(dst, "wb").write(cbor2.dumps(out))
PYEOF
}
sign 7 "$work/fw.img" "$work/base.suit" VERSIONMARK
upload() { # want file
    req "$1" "$work/up" $(as rel) "${SUIT[@]}" --data-binary @"$2" \
        "$url/api/v1/releases"
}
# Sequence number 2^64-1: refused, naming seq; 2^63-1 is the largest kept.
patch_env "$work/base.suit" "$work/huge.suit" 18446744073709551615 -
upload 422 "$work/huge.suit"
field_is "$work/up" seq
patch_env "$work/base.suit" "$work/max.suit" 9223372036854775807 \
    "$(printf '9.9.9-max-x' | od -An -tx1 | tr -d ' \n')"
upload 201 "$work/max.suit"
[ "$(json "$work/up" '["seq"]')" = 9223372036854775807 ] ||
    fail "seq 2^63-1 came back as $(json "$work/up" '["seq"]')"
# Non-UTF-8 version text: refused before anything is stored, every time.
patch_env "$work/base.suit" "$work/latin.suit" - \
    "$(printf 'v1.0-\xff\xfe-xyz' | od -An -tx1 | tr -d ' \n')"
# (400 when the envelope parser refuses the text, 422 when the hub does.)
version_refused() { # file
    local code
    code=$(curl -sS --max-time 20 --cacert "$work/ca/ca.pem" $(as rel) \
        "${SUIT[@]}" --data-binary @"$1" -o "$work/up" \
        -w '%{http_code}' "$url/api/v1/releases")
    case $code in 400 | 422) ;; *) fail "bad version in $1: $code" ;; esac
    field_is "$work/up" version
}
version_refused "$work/latin.suit"
version_refused "$work/latin.suit"
# Valid UTF-8 with a control character.
patch_env "$work/base.suit" "$work/bell.suit" - \
    "$(printf 'v1.0\x07abcdef' | od -An -tx1 | tr -d ' \n')"
version_refused "$work/bell.suit"
[ "$(sqlite3 "$work/state/hub.db" 'SELECT count(*) FROM releases')" = 1 ] ||
    fail "a refused release was stored"
# An image larger than --image-max could never be uploaded.
sign 8 "$work/big.img" "$work/big.suit"
upload 422 "$work/big.suit"
field_is "$work/up" image_size
# Content types of the release calls.
req 415 "$work/e" $(as rel) "${JSON[@]}" --data-binary @"$work/big.suit" \
    "$url/api/v1/releases"
sign 9 "$work/fw.img" "$work/fw.suit" 2.1.0
req 201 "$work/rel.json" $(as rel) -H 'Content-Type: application/cbor' \
    --data-binary @"$work/fw.suit" "$url/api/v1/releases"
rid=$(json "$work/rel.json" '["release_id"]')
req 415 "$work/e" $(as rel) "${JSON[@]}" -T "$work/fw.img" \
    "$url/api/v1/releases/$rid/image"
req 204 "$work/e" $(as rel) -H 'Content-Type: application/octet-stream' \
    -T "$work/fw.img" "$url/api/v1/releases/$rid/image"

# Reports: only for an existing release assigned to this device, and an
# install must name the release's own seq and version.
rep() { # want field who body
    fails_with "$1" "$2" "$3" /api/v1/reports "$4"
}
rep 404 release_id pump-01 '{"release_id":"0123456789abcdef","result":"installed","version":"2.1.0","seq":9}'
rep 403 release_id pump-01 "{\"release_id\":\"$rid\",\"result\":\"installed\",\"version\":\"2.1.0\",\"seq\":9}"
rep 400 release_id pump-01 '{"release_id":"x","result":"installed"}'
req 201 "$work/e" $(as admin) "${JSON[@]}" \
    -d "{\"release_id\":\"$rid\",\"device_id\":\"pump-01\"}" \
    "$url/api/v1/assignments"
rep 400 seq pump-01 "{\"release_id\":\"$rid\",\"result\":\"installed\",\"version\":\"2.1.0\",\"seq\":-1}"
rep 400 slot pump-01 "{\"release_id\":\"$rid\",\"result\":\"installed\",\"version\":\"2.1.0\",\"seq\":9,\"slot\":\"C\"}"
rep 422 seq pump-01 "{\"release_id\":\"$rid\",\"result\":\"installed\",\"version\":\"2.1.0\",\"seq\":1000}"
rep 422 version pump-01 "{\"release_id\":\"$rid\",\"result\":\"installed\",\"version\":\"6.6.6\",\"seq\":9}"
rep 403 release_id mon-01 "{\"release_id\":\"$rid\",\"result\":\"installed\",\"version\":\"2.1.0\",\"seq\":9}"
# The device checks in on slot A, installs into B and says so.
req 200 "$work/ci" $(as pump-01) "${JSON[@]}" \
    -d '{"version":"1.0","seq":1,"slot":"A","state":"confirmed"}' \
    "$url/api/v1/checkin"
[ "$(json "$work/ci" '["release"]["release_id"]')" = "$rid" ] ||
    fail "assigned release not offered"
req 204 "$work/e" $(as pump-01) "${JSON[@]}" \
    -d "{\"release_id\":\"$rid\",\"result\":\"installed\",\"reason\":\"\",\"version\":\"2.1.0\",\"seq\":9,\"slot\":\"B\"}" \
    "$url/api/v1/reports"
inventory() { # field -> value of pump-01
    req 200 "$work/devs" $(as sec) "$url/api/v1/devices"
    $py -c 'import json, sys
devs = {d["device_id"]: d for d in json.load(open(sys.argv[1]))["devices"]}
print(devs["pump-01"][sys.argv[2]])' "$work/devs" "$1"
}
[ "$(inventory slot)" = B ] || fail "slot stale after install: $(inventory slot)"
[ "$(inventory seq)" = 9 ] || fail "seq not updated by install"
[ "$(inventory version)" = 2.1.0 ] || fail "version not updated by install"
# Without a slot in the report the stale one is cleared.
req 204 "$work/e" $(as pump-01) "${JSON[@]}" \
    -d "{\"release_id\":\"$rid\",\"result\":\"installed\",\"version\":\"2.1.0\",\"seq\":9}" \
    "$url/api/v1/reports"
[ "$(inventory slot)" = None ] || fail "slot not cleared: $(inventory slot)"
# A check-in after all this still works (nothing cut the device off).
req 200 "$work/ci" $(as pump-01) "${JSON[@]}" \
    -d '{"version":"2.1.0","seq":9,"slot":"B","state":"confirmed"}' \
    "$url/api/v1/checkin"

kill -TERM "$hub_pid"
rc=0
wait "$hub_pid" || rc=$?
hub_pid=""
[ "$rc" = 0 ] || fail "hub exit status $rc after SIGTERM"
echo "hub_mustfail: all checks passed"
