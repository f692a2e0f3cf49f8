#!/usr/bin/env bash
# iomt-agent against a stand-in hub on loopback (Python's ssl module, the
# fleet CA's hub certificate, client certificates required) that answers
# check-ins with malformed JSON: each must end the cycle as an error (exit
# 3, "checkin: malformed answer: <what>") with nothing fetched and nothing
# reported, never as "no update".
set -euo pipefail

. "$(dirname "$0")/../lib/common.sh"
test_init agent-answers
fake_pid=""
stop_fake() {
    if [ -n "$fake_pid" ] && kill -0 "$fake_pid" 2>/dev/null; then
        kill -TERM "$fake_pid" 2>/dev/null || true
        wait "$fake_pid" 2>/dev/null || true
    fi
    fake_pid=""
}
trap 'stop_fake; test_cleanup' EXIT


vendor=testvendor.example
class=pump-test-p1
"$iomt" ca init --dir "$work/ca" >/dev/null
for who in hub:hub admin:admin; do
    "$iomt" ca issue --dir "$work/ca" --name "answers-${who%%:*}" \
        --role "${who##*:}" -o "$work/${who%%:*}" >/dev/null
done
"$iomt" keygen -o "$work/mfr.pem" >/dev/null
ca=$work/ca/ca.pem
anchor=$work/mfr.pub.pem
head -c 50000 /dev/urandom >"$work/fw1.img"
"$iomt" sign --key "$work/mfr.pem" --image "$work/fw1.img" --seq 1 \
    --vendor "$vendor" --class "$class" --version 1.0.0 \
    -o "$work/fw1.suit" >/dev/null

# A real enrolment first: the device needs a certificate from the CA.
start_hub "$work/hub-state" "$work/ca" "$work/hub.pem" "$work/hub.key.pem" \
    --workers 1
tok=$(curl --silent --show-error --max-time 20 --cacert "$ca" \
    --cert "$work/admin.pem" --key "$work/admin.key.pem" \
    -H 'Content-Type: application/json' -d "{\"device_id\":\"pump-1\",\
\"model\":\"$class\",\"criticality\":\"low\"}" "$url/api/v1/devices" |
    "$py" -c 'import json,sys; print(json.load(sys.stdin)["token"])') ||
    fail "create device"
dev=$work/pump-1
"$agent" enrol --state "$dev" --hub "$url" --ca "$ca" \
    --trust-anchor "$anchor" --device-id pump-1 --token "$tok" \
    --vendor "$vendor" --class "$class" --factory-image "$work/fw1.img" \
    --factory-envelope "$work/fw1.suit" --quiet || fail "enrol"
stop_hub

cat >"$work/fakehub.py" <<'PY'
import http.server, os, ssl, sys

ca, cert, key, port_file, answer_file, log_file = sys.argv[1:7]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def note(self):
        with open(log_file, "a") as f:
            f.write(f"{self.command} {self.path}\n")

    def reply(self, code, body):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.note()
        if self.path == "/api/v1/checkin":
            with open(answer_file, "rb") as f:
                self.reply(200, f.read())
        else:
            self.reply(404, b'{"error": "not_found"}')

    def do_GET(self):
        self.note()
        self.reply(404, b'{"error": "not_found"}')


srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.load_cert_chain(cert, key)
ctx.load_verify_locations(ca)
ctx.verify_mode = ssl.CERT_REQUIRED
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
with open(port_file + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(port_file + ".tmp", port_file)
srv.serve_forever()
PY
"$py" "$work/fakehub.py" "$ca" "$work/hub.pem" "$work/hub.key.pem" \
    "$work/fake.port" "$work/answer" "$work/fake.log" 2>"$work/fake.err" &
fake_pid=$!
for _ in $(seq 1 100); do
    [ -s "$work/fake.port" ] && break
    kill -0 "$fake_pid" 2>/dev/null || fail "fake hub: $(cat "$work/fake.err")"
    sleep 0.1
done
[ -s "$work/fake.port" ] || fail "fake hub wrote no port"
fake_url=https://127.0.0.1:$(cat "$work/fake.port")

run_with() { # answer-body want-exit
    printf '%s' "$1" >"$work/answer"
    : >"$work/fake.log"
    expect_rc "$2" "$agent" run --state "$dev" --hub "$fake_url" --ca "$ca" \
        --trust-anchor "$anchor"
}

# The stand-in answers well-formed check-ins the way the hub does.
run_with '{"release": null}' 0
grep -q '^result=no-update ' "$work/out" || fail "null: $(cat "$work/out")"
[ "$(cat "$work/fake.log")" = "POST /api/v1/checkin" ] ||
    fail "null: requests: $(cat "$work/fake.log")"

id=0123456789abcdef
# Parts of a release object, so each row shows what it changes.
R='{"release": {'
i="\"release_id\": \"$id\""
q='"seq": 2'
v='"version": "2.0.0"'
z='"image_size": 10'
long=$(printf 'v%.0s' $(seq 1 65))
while IFS='|' read -r what body; do
    [ -n "$what" ] || continue
    run_with "$body" 3
    grep -qF "reason=\"checkin: malformed answer: $what\"" "$work/out" ||
        fail "answer $body: $(cat "$work/out" "$work/err")"
    grep -q '^result=error ' "$work/out" || fail "answer $body: not an error"
    # Nothing fetched, nothing reported on the strength of a bad answer.
    [ "$(cat "$work/fake.log")" = "POST /api/v1/checkin" ] ||
        fail "answer $body: requests: $(cat "$work/fake.log")"
done <<EOF
not JSON|release: null
not JSON|
not a JSON object|[]
not a JSON object|[{"release": null}]
not a JSON object|"release"
release: missing|{}
release: missing|{"releases": null}
release: neither an object nor null|{"release": 5}
release: neither an object nor null|{"release": []}
release: neither an object nor null|{"release": false}
release_id: not 16 lower-case hex digits|$R$q, $v, $z}}
release_id: not 16 lower-case hex digits|$R"release_id": 42, $q, $v, $z}}
release_id: not 16 lower-case hex digits|$R"release_id": "${id^^}", $q, $v, $z}}
release_id: not 16 lower-case hex digits|$R"release_id": "../../x", $q, $v, $z}}
release_id: not 16 lower-case hex digits|$R"release_id": "${id}0", $q, $v, $z}}
seq: not an integer in 0..2^63-1|$R$i, $v, $z}}
seq: not an integer in 0..2^63-1|$R$i, "seq": "2", $v, $z}}
seq: not an integer in 0..2^63-1|$R$i, "seq": -1, $v, $z}}
seq: not an integer in 0..2^63-1|$R$i, "seq": 2.5, $v, $z}}
version: not 0..64 printable ASCII bytes|$R$i, $q, $z}}
version: not 0..64 printable ASCII bytes|$R$i, $q, "version": 2, $z}}
version: not 0..64 printable ASCII bytes|$R$i, $q, "version": "2\\n0", $z}}
version: not 0..64 printable ASCII bytes|$R$i, $q, "version": "$long", $z}}
image_size: not an integer in 0..2^63-1|$R$i, $q, $v}}
image_size: not an integer in 0..2^63-1|$R$i, $q, $v, "image_size": null}}
image_size: not an integer in 0..2^63-1|$R$i, $q, $v, "image_size": -5}}
EOF

# A well-formed offer goes on to fetch the envelope (404 here, so the
# download is refused: exit 1, not a malformed answer).
run_with "$R$i, $q, $v, $z}}" 1
grep -q 'reason="download: envelope: hub refused"' "$work/out" ||
    fail "well-formed offer: $(cat "$work/out" "$work/err")"
grep -q "^GET /api/v1/releases/$id/envelope" "$work/fake.log" ||
    fail "well-formed offer: requests: $(cat "$work/fake.log")"

echo "PASS agent_answers"
