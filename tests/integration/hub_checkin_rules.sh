#!/usr/bin/env bash
# The check-in's own rules, each with a case that must fail: a device
# certificate that chains to the fleet CA but was not issued by the hub
# through enrolment is refused (403) and writes nothing; a revoked device
# is refused; the release offered follows the assignment rules (the
# device's own assignment over its model's, the newest within each, only
# once the image is in, only above the reported seq); every accepted
# check-in leaves one audit entry; the hub runs with its malloc tunable
# unless the operator set one. Servers bind 127.0.0.1 only.
set -euo pipefail

. "$(dirname "$0")/../lib/common.sh"
test_init hub-checkin-rules

"$iomt" ca init --dir "$work/ca" --org "Test Hospital" >/dev/null
for who in hub:hub admin:admin rel:release sec:security; do
    "$iomt" ca issue --dir "$work/ca" --name "test-${who%%:*}" \
        --role "${who#*:}" -o "$work/${who%%:*}" >/dev/null
done
# Signed by the fleet CA with the device role and the enrolled device's
# name, but never issued by the hub: a stolen CA signing, or a
# certificate minted outside enrolment.
"$iomt" ca issue --dir "$work/ca" --name pump-01 --role device \
    -o "$work/minted" >/dev/null

# An operator's own GLIBC_TUNABLES is kept: the hub does not restart
# itself over it.
GLIBC_TUNABLES=glibc.malloc.tcache_count=7 start_hub "$work/state-own" \
    "$work/ca" "$work/hub.pem" "$work/hub.key.pem"
tr '\0' '\n' <"/proc/$hub_pid/environ" |
    grep -qx 'GLIBC_TUNABLES=glibc.malloc.tcache_count=7' ||
    fail "the operator's GLIBC_TUNABLES was replaced"
stop_hub
start_hub "$work/state" "$work/ca" "$work/hub.pem" "$work/hub.key.pem" \
    --workers 2
# The hub runs with its larger per-thread malloc cache (docs/API.md).
tr '\0' '\n' <"/proc/$hub_pid/environ" |
    grep -qx 'GLIBC_TUNABLES=glibc.malloc.tcache_count=512' ||
    fail "the hub did not restart itself with its malloc tunable"

JSON=(-H 'Content-Type: application/json')
SUIT=(-H 'Content-Type: application/suit-envelope+cose')
db() { sqlite3 "$work/state/hub.db" "$1"; }

mkdev() { # id model
    req 201 "$work/$1.created" $(as admin) "${JSON[@]}" \
        -d "{\"device_id\":\"$1\",\"model\":\"$2\",\"criticality\":\"low\"}" \
        "$url/api/v1/devices"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$work/$1.key.pem" -subj "/CN=$1" -outform DER 2>/dev/null |
        base64 -w0 >"$work/$1.csr"
    req 200 "$work/$1.p7" -u "$1:$(json "$work/$1.created" '["token"]')" \
        -H 'Content-Type: application/pkcs10' --data-binary @"$work/$1.csr" \
        "$url/.well-known/est/simpleenroll"
    base64 -d "$work/$1.p7" | openssl pkcs7 -inform DER -print_certs \
        -out "$work/$1.pem"
}
mkdev pump-01 infusion-pump
mkdev pump-02 infusion-pump
mkdev mon-01 monitor

# checkin WHO SEQ -> the offered release_id, or "None"
checkin() {
    req 200 "$work/ci" $(as "$1") "${JSON[@]}" \
        -d "{\"version\":\"1.0\",\"seq\":$2,\"slot\":\"A\",\"state\":\"confirmed\"}" \
        "$url/api/v1/checkin"
    json "$work/ci" '["release"] and json.load(open(sys.argv[1]))["release"]["release_id"]'
}
expect_offer() { # who seq want
    local got
    got=$(checkin "$1" "$2")
    [ "$got" = "$3" ] || fail "$1 at seq $2 was offered '$got', want '$3'"
}

# ------------------------------------------- certificate not from the hub
audit_before=$(db 'SELECT count(*) FROM audit')
seen_before=$(db "SELECT ifnull(last_seen, 0) FROM devices WHERE device_id = 'pump-01'")
req 403 "$work/e" $(as minted) "${JSON[@]}" \
    -d '{"version":"6.6.6","seq":99,"slot":"B","state":"confirmed"}' \
    "$url/api/v1/checkin"
[ "$(json "$work/e" '["field"]')" = certificate ] ||
    fail "refusal does not name the certificate: $(cat "$work/e")"
[ "$(db 'SELECT count(*) FROM audit')" = "$audit_before" ] ||
    fail "a refused check-in was audited"
[ "$(db "SELECT ifnull(version, '') FROM devices WHERE device_id = 'pump-01'")" != 6.6.6 ] ||
    fail "a refused check-in changed the inventory"
[ "$(db "SELECT ifnull(last_seen, 0) FROM devices WHERE device_id = 'pump-01'")" = "$seen_before" ] ||
    fail "a refused check-in touched last_seen"

# --------------------------------------------------------- offer rules
"$iomt" keygen -o "$work/mfr.pem" >/dev/null
head -c 1000 /dev/urandom >"$work/fw.img"
release() { # seq -> release_id (image uploaded unless NOIMAGE=1)
    "$iomt" sign --key "$work/mfr.pem" --image "$work/fw.img" --seq "$1" \
        --vendor test-vendor.example --class infusion-pump \
        --version "1.$1.0" -o "$work/r$1.suit" >/dev/null
    req 201 "$work/r$1.json" $(as rel) "${SUIT[@]}" \
        --data-binary @"$work/r$1.suit" "$url/api/v1/releases"
    if [ "${NOIMAGE:-0}" != 1 ]; then
        req 204 "$work/e" $(as rel) \
            -H 'Content-Type: application/octet-stream' -T "$work/fw.img" \
            "$url/api/v1/releases/$(json "$work/r$1.json" '["release_id"]')/image"
    fi
    json "$work/r$1.json" '["release_id"]'
}
assign() { # release_id key value
    req 201 "$work/e" $(as admin) "${JSON[@]}" \
        -d "{\"release_id\":\"$1\",\"$2\":\"$3\"}" "$url/api/v1/assignments"
}
r5=$(release 5)
r6=$(release 6)
r7=$(release 7)
r8=$(NOIMAGE=1 release 8)

expect_offer pump-01 1 None
assign "$r5" model infusion-pump
expect_offer pump-01 1 "$r5"
expect_offer pump-02 1 "$r5"
expect_offer mon-01 1 None
# Newest model assignment wins.
assign "$r6" model infusion-pump
expect_offer pump-01 1 "$r6"
# The device's own assignment wins over a newer model assignment.
assign "$r5" device_id pump-01
assign "$r7" model infusion-pump
expect_offer pump-01 1 "$r5"
expect_offer pump-02 1 "$r7"
# Newest device assignment wins; not offered at or above its seq.
assign "$r6" device_id pump-01
expect_offer pump-01 1 "$r6"
expect_offer pump-01 6 None
# A release without its image is never offered.
assign "$r8" device_id pump-02
expect_offer pump-02 1 None

# ------------------------------------------------------------ revocation
req 204 "$work/e" $(as sec) -X POST "$url/api/v1/devices/pump-02/revoke"
audit_before=$(db 'SELECT count(*) FROM audit')
req 403 "$work/e" $(as pump-02) "${JSON[@]}" \
    -d '{"version":"1.0","seq":1,"slot":"A","state":"confirmed"}' \
    "$url/api/v1/checkin"
[ "$(db 'SELECT count(*) FROM audit')" = "$audit_before" ] ||
    fail "a revoked device's check-in was audited"
# The others are not affected by the refusal.
expect_offer pump-01 1 "$r6"

# -------------------------------------------------- one audit per check-in
before=$(db "SELECT count(*) FROM audit WHERE action = 'checkin'")
for i in 1 2 3; do checkin mon-01 "$i" >/dev/null; done
after=$(db "SELECT count(*) FROM audit WHERE action = 'checkin'")
[ "$after" = $((before + 3)) ] ||
    fail "3 check-ins left $((after - before)) audit entries"
[ "$(db "SELECT detail FROM audit WHERE action = 'checkin' ORDER BY id DESC LIMIT 1")" = "version=1.0 seq=3 slot=A state=confirmed" ] ||
    fail "check-in audit detail: $(db "SELECT detail FROM audit ORDER BY id DESC LIMIT 1")"

stop_hub
echo "hub_checkin_rules: all checks passed"
