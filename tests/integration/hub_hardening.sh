#!/usr/bin/env bash
# iomt-hub against a damaged or hostile environment: a refused start writes
# nothing, a head ended by bare line feeds is answered 400 at once, a
# symlink planted in the image store is not followed, and an altered audit
# tip stops the start with a reason instead of failing every later call.
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
test_init hub-hardening
passed=0

"$iomt" ca init --dir "$work/ca" >/dev/null
"$iomt" ca issue --dir "$work/ca" --name test-hub --role hub \
    -o "$work/hub" >/dev/null
"$iomt" ca issue --dir "$work/ca" --name test-admin --role admin \
    -o "$work/admin" >/dev/null
"$iomt" ca issue --dir "$work/ca" --name test-release --role release \
    -o "$work/release" >/dev/null
serve=("$hub_bin" serve --ca-dir "$work/ca" --cert "$work/hub.pem"
       --key "$work/hub.key.pem")

# A refused start leaves no state directory.
for bad in "--listen 0.0.0.0:0" "--listen garbage" "--workers 0"; do
    rc=0
    # shellcheck disable=SC2086
    timeout 20 "${serve[@]}" --dir "$work/never" $bad >/dev/null 2>&1 || rc=$?
    [ "$rc" = 2 ] || fail "start with $bad exited $rc, want 2"
    [ ! -e "$work/never" ] || fail "start with $bad created the state dir"
    passed=$((passed + 1))
done
rc=0
timeout 20 "${serve[@]}" --dir "$work/never" --ca-dir "$work/none" \
    >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] && [ ! -e "$work/never" ] || fail "bad --ca-dir wrote state"
passed=$((passed + 1))

start_hub "$work/state" "$work/ca" "$work/hub.pem" "$work/hub.key.pem" \
    --workers 1

# Bare line feeds: an answer (400) well before the idle timeout.
start=$(date +%s)
answer=$(printf 'GET /.well-known/est/cacerts HTTP/1.1\nHost: x\n\n' |
    timeout 15 openssl s_client -quiet -connect "127.0.0.1:$port" \
        -CAfile "$work/ca/ca.pem" -cert "$work/admin.pem" \
        -key "$work/admin.key.pem" 2>/dev/null | head -n 1) || true
[ $(($(date +%s) - start)) -lt 10 ] || fail "bare-LF request was left hanging"
case $answer in
"HTTP/1.1 400"*) passed=$((passed + 1)) ;;
*) fail "bare-LF request answered '$answer', want 400" ;;
esac

# A symlink in the image store is not served.
"$iomt" keygen -o "$work/mfr.pem" >/dev/null
head -c 5000 /dev/urandom >"$work/fw.img"
"$iomt" sign --key "$work/mfr.pem" --image "$work/fw.img" --seq 2 \
    --vendor v.example --class c -o "$work/fw.suit" >/dev/null
curl -s --cacert "$work/ca/ca.pem" --cert "$work/release.pem" \
    --key "$work/release.key.pem" -H 'Content-Type: application/suit-envelope+cose' \
    --data-binary "@$work/fw.suit" "$url/api/v1/releases" >"$work/rel.json"
id=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["release_id"])' \
    "$work/rel.json")
curl -s --cacert "$work/ca/ca.pem" --cert "$work/release.pem" \
    --key "$work/release.key.pem" -H 'Content-Type: application/octet-stream' \
    -X PUT --data-binary "@$work/fw.img" "$url/api/v1/releases/$id/image" \
    >/dev/null
[ -f "$work/state/images/$id" ] || fail "the image was not stored"
# A real device: registered, enrolled over EST, the release assigned.
admin=(curl -s --cacert "$work/ca/ca.pem" --cert "$work/admin.pem"
       --key "$work/admin.key.pem" -H 'Content-Type: application/json')
token=$("${admin[@]}" -d '{"device_id":"dev-1","model":"c","criticality":"low"}' \
    "$url/api/v1/devices" |
    "$py" -c 'import json,sys; print(json.load(sys.stdin)["token"])')
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$work/dev.key.pem" -subj /CN=dev-1/OU=device -outform DER \
    -out "$work/dev.csr" 2>/dev/null
base64 -w0 "$work/dev.csr" |
    curl -s --cacert "$work/ca/ca.pem" -u "dev-1:$token" \
        -H 'Content-Type: application/pkcs10' --data-binary @- \
        "$url/.well-known/est/simpleenroll" | base64 -d >"$work/dev.p7"
openssl pkcs7 -inform DER -in "$work/dev.p7" -print_certs -out "$work/dev.pem"
"${admin[@]}" -d "{\"release_id\":\"$id\",\"device_id\":\"dev-1\"}" \
    "$url/api/v1/assignments" >/dev/null
rm "$work/state/images/$id"
ln -s "$work/fw.img" "$work/state/images/$id"
status=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$work/ca/ca.pem" \
    --cert "$work/dev.pem" --key "$work/dev.key.pem" \
    "$url/api/v1/releases/$id/image")
[ "$status" = 404 ] || fail "symlinked image answered $status, want 404"
rm "$work/state/images/$id"
cp "$work/fw.img" "$work/state/images/$id"
status=$(curl -s -o "$work/got.img" -w '%{http_code}' \
    --cacert "$work/ca/ca.pem" --cert "$work/dev.pem" \
    --key "$work/dev.key.pem" "$url/api/v1/releases/$id/image")
[ "$status" = 200 ] && cmp -s "$work/got.img" "$work/fw.img" ||
    fail "the device could not fetch its real image ($status)"
passed=$((passed + 2))
stop_hub

# An altered audit tip: the start fails with exit 3 naming the audit log.
sqlite3 "$work/state/hub.db" \
    "UPDATE audit SET hash='nothex' WHERE id=(SELECT max(id) FROM audit)"
rc=0
timeout 20 "${serve[@]}" --dir "$work/state" --listen 127.0.0.1:0 \
    >"$work/start.log" 2>&1 || rc=$?
[ "$rc" = 3 ] || fail "start on an altered audit tip exited $rc, want 3"
grep -q 'audit log was altered' "$work/start.log" ||
    fail "start log does not name the audit log: $(cat "$work/start.log")"
passed=$((passed + 1))
echo "hub_hardening: $passed passed, 0 failed"
