# Shared by the shell tests: programs, a scratch directory removed on exit,
# failure reporting with the hub's last log lines, and a hub on 127.0.0.1
# at an ephemeral port. Source it, then call test_init NAME.

test_init() { # name
    bin=${IOMT_BIN:?IOMT_BIN must name the build directory}
    iomt=$bin/iomt
    hub_bin=$bin/iomt-hub
    agent=$bin/iomt-agent
    py=/usr/bin/python3
    work=$(mktemp -d "/tmp/iomt-$1-XXXXXX")
    hub_pid=""
    trap test_cleanup EXIT
    command -v curl >/dev/null || fail "curl is missing (Debian package curl)"
}

test_cleanup() {
    stop_hub
    [ -n "${KEEP_WORK:-}" ] || rm -rf "$work"
}

fail() {
    echo "FAIL: $*" >&2
    if [ -f "$work/hub.log" ]; then
        echo "--- hub log (tail)" >&2
        tail -n 10 "$work/hub.log" >&2
    fi
    exit 1
}

# start_hub STATE_DIR CA_DIR CERT KEY [serve options...]: sets hub_pid,
# port and url; the log goes to $work/hub.log.
start_hub() {
    local state=$1 ca_dir=$2 cert=$3 key=$4
    shift 4
    rm -f "$work/hub.port"
    mkdir -p "$state"
    "$hub_bin" serve --dir "$state" --ca-dir "$ca_dir" --cert "$cert" \
        --key "$key" --listen 127.0.0.1:0 --port-file "$work/hub.port" \
        "$@" >>"$work/hub.log" 2>&1 &
    hub_pid=$!
    for _ in $(seq 1 100); do
        [ -s "$work/hub.port" ] && break
        kill -0 "$hub_pid" 2>/dev/null || fail "hub exited at start"
        sleep 0.1
    done
    port=$(tr -dc 0-9 <"$work/hub.port")
    [ -n "$port" ] || fail "hub wrote no port"
    url=https://127.0.0.1:$port
}

stop_hub() {
    if [ -n "${hub_pid:-}" ] && kill -0 "$hub_pid" 2>/dev/null; then
        kill -TERM "$hub_pid" 2>/dev/null || true
        wait "$hub_pid" 2>/dev/null || true
    fi
    hub_pid=""
}

# expect_rc WANT command...: runs it, stdout to $work/out, stderr to
# $work/err, and fails unless it exits with WANT.
expect_rc() {
    local want=$1 rc=0
    shift
    "$@" >"$work/out" 2>"$work/err" || rc=$?
    [ "$rc" = "$want" ] ||
        fail "want exit $want, got $rc: $* :: $(cat "$work/out" "$work/err")"
}

# snapshot DIR: every file's name, mode and content digest, to compare a
# directory before and after something that must not touch it.
snapshot() {
    (cd "$1" && find . -type f -printf '%p %m\n' | sort &&
        find . -type f -print0 | sort -z | xargs -0 sha256sum)
}

# req WANT OUTFILE curl-args...: one HTTPS call against the fleet CA in
# $work/ca, the status checked, the body in OUTFILE.
req() {
    local want=$1 out=$2 code
    shift 2
    code=$(curl -sS --max-time 20 --cacert "$work/ca/ca.pem" -o "$out" \
        -w '%{http_code}' "$@") || code="curl-failed"
    [ "$code" = "$want" ] ||
        fail "want $want, got $code for $* :: $(head -c 300 "$out" 2>/dev/null)"
}
# as NAME: curl options presenting $work/NAME.pem and its key.
as() { echo --cert "$work/$1.pem" --key "$work/$1.key.pem"; }
# json FILE EXPR: a value from a JSON file, e.g. json f '["token"]'.
json() { $py -c "import json,sys; print(json.load(open(sys.argv[1]))$2)" "$1"; }
