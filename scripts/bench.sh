#!/usr/bin/env bash
# make bench: measures iomtsec beside its anchors in one run and prints the
# ratios (docs/BENCH.md explains how to read them). A report, not a test:
# it exits non-zero only when a measurement could not be made.
#
#   1. iomt verify --image of a 256 MiB image vs openssl dgst -sha256
#   2. full mutual-TLS check-ins/s: iomt-hub vs nginx, same client and certs
#   3. peak memory of the hub under that load and of one device update
#
# Everything binds 127.0.0.1, every loop is bounded, and every process this
# script starts is stopped on exit.
#
# Environment: IOMT_BIN or BUILD (build dir, default ./build),
# BENCH_WORKERS (2), BENCH_CONNS (8), BENCH_SECONDS (3 per round), BENCH_ROUNDS (5),
# BENCH_REPS (5), BENCH_IMAGE_MIB (256), BENCH_AGENT_IMAGE_MIB (16),
# BENCH_KEEP=1 keeps the scratch dir.
set -uo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
# make passes BUILD through when it is given on its command line.
BIN=${IOMT_BIN:-${BUILD:-build}}
case "$BIN" in /*) ;; *) BIN=$SRC/$BIN ;; esac
WORKERS=${BENCH_WORKERS:-2}
CONNS=${BENCH_CONNS:-8}
LOAD_SECONDS=${BENCH_SECONDS:-3}
ROUNDS=${BENCH_ROUNDS:-5}
REPS=${BENCH_REPS:-5}
IMAGE_MIB=${BENCH_IMAGE_MIB:-256}
AGENT_IMAGE_MIB=${BENCH_AGENT_IMAGE_MIB:-16}
PY=/usr/bin/python3
NGINX=/usr/sbin/nginx
GNU_TIME=/usr/bin/time

IOMT=$BIN/iomt
HUB=$BIN/iomt-hub
AGENT=$BIN/iomt-agent
CLIENT=$BIN/tls_checkin

WORK=$(mktemp -d "${TMPDIR:-/tmp}/iomt-bench.XXXXXX")
OUT=$SRC/bench/out
mkdir -p "$OUT"
PIDS=()
FAILED=0

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null
    done
    if [ "${BENCH_KEEP:-0}" = 1 ]; then
        echo "bench: scratch kept in $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "bench: $*" >&2; }
NOTES=()
fail() {
    log "$*"
    NOTES+=("$*")
    FAILED=1
}

# Results, filled in as sections run; "n/a (...)" when one could not.
R_VERIFY="n/a"; R_DGST="n/a"; R_VERIFY_RATIO="n/a"; R_VERIFY_RSS="n/a"
R_HUB="n/a"; R_NGINX="n/a"; R_TLS_RATIO="n/a"; R_TLS_FAIL=""
R_HUB_CPU="n/a"; R_NGINX_CPU="n/a"; R_CPU_RATIO="n/a"; LOADAVG_START=""
R_HUB_MEM="n/a"; R_NGINX_MEM="n/a"; R_AGENT_MEM="n/a"

# need_tools SECTION COMMAND:DEBIAN_PACKAGE...: notes what is missing.
need_tools() {
    local section=$1 spec missing=""
    shift
    for spec in "$@"; do
        command -v "${spec%%:*}" >/dev/null 2>&1 ||
            missing="$missing ${spec##*:}"
    done
    [ -z "$missing" ] && return 0
    fail "$section: missing Debian packages:$missing"
    return 1
}

now_ns() { date +%s%N; }

median() {
    sort -n | awk '{v[NR] = $1} END {
        if (NR == 0) exit 1
        if (NR % 2) print v[(NR + 1) / 2]
        else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# "lowest-highest" of a list of numbers, rounded.
spread() {
    sort -n | awk 'NR == 1 {lo = $1} {hi = $1} END {
        if (NR) printf "%.0f-%.0f", lo, hi }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; }

# A free loopback port: bind port 0, read it, release it. nginx is retried
# on another port should something take it in between.
free_port() {
    $PY -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# Peak resident memory (VmHWM, KiB) of a process and its direct children.
peak_kib() {
    local total=0 pid kib
    for pid in "$1" $(pgrep -P "$1" 2>/dev/null); do
        kib=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
        total=$((total + ${kib:-0}))
    done
    echo "$total"
}

# CPU time (clock ticks, user + system) of a process and its direct
# children; fields 14 and 15 of /proc/PID/stat, counted after the ")" that
# ends the command name.
cpu_ticks() {
    local total=0 pid t
    for pid in "$1" $(pgrep -P "$1" 2>/dev/null); do
        t=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null |
            awk '{print $12 + $13}')
        total=$((total + ${t:-0}))
    done
    echo "$total"
}

mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }

# ---------------------------------------------------------------- verify
bench_verify() {
    local img=$WORK/image.bin key=$WORK/release.pem env=$WORK/image.suit
    local i t0 t1 out

    need_tools verify openssl:openssl || return
    log "verify: making a ${IMAGE_MIB} MiB random image and signing it"
    head -c "$((IMAGE_MIB * 1024 * 1024))" /dev/urandom >"$img" ||
        { fail "verify: cannot write $img"; return; }
    if ! out=$("$IOMT" keygen -o "$key" 2>&1); then
        fail "verify: iomt keygen failed: $out"; return
    fi
    if ! out=$("$IOMT" sign --key "$key" --image "$img" --seq 1 \
        --vendor bench-vendor --class bench-class -o "$env" 2>&1); then
        fail "verify: iomt sign failed: $out"; return
    fi

    # Warm the page cache so both sides hash from memory, not the disk.
    cat "$img" >/dev/null
    openssl dgst -sha256 "$img" >/dev/null
    if ! out=$("$IOMT" verify --key "$WORK/release.pub.pem" "$env" \
        --image "$img" 2>&1); then
        fail "verify: iomt verify rejected the bench image: $out"; return
    fi

    : >"$WORK/t_verify"; : >"$WORK/t_dgst"
    for ((i = 0; i < REPS; i++)); do
        t0=$(now_ns)
        openssl dgst -sha256 "$img" >/dev/null ||
            { fail "verify: openssl dgst failed"; return; }
        t1=$(now_ns)
        echo $(((t1 - t0) / 1000)) >>"$WORK/t_dgst"
        t0=$(now_ns)
        "$IOMT" verify --key "$WORK/release.pub.pem" "$env" --image "$img" \
            >/dev/null 2>&1 || { fail "verify: run $i rejected"; return; }
        t1=$(now_ns)
        echo $(((t1 - t0) / 1000)) >>"$WORK/t_verify"
    done
    R_VERIFY=$(median <"$WORK/t_verify")
    R_DGST=$(median <"$WORK/t_dgst")
    R_VERIFY_RATIO=$(ratio "$R_VERIFY" "$R_DGST")
    R_VERIFY=$(awk -v u="$R_VERIFY" 'BEGIN { printf "%.1f ms", u / 1000 }')
    R_DGST=$(awk -v u="$R_DGST" 'BEGIN { printf "%.1f ms", u / 1000 }')

    if [ -x "$GNU_TIME" ]; then
        "$GNU_TIME" -f %M -o "$WORK/rss_verify" "$IOMT" verify \
            --key "$WORK/release.pub.pem" "$env" --image "$img" \
            >/dev/null 2>&1 && R_VERIFY_RSS=$(mib "$(cat "$WORK/rss_verify")")
    fi
    rm -f "$img"
}

# ------------------------------------------------------------------- PKI
# The fleet CA, the hub's server certificate and an admin certificate come
# from iomt ca; the device enrols over EST with a one-time token so the hub
# knows it exactly as it knows a real device.
make_pki() {
    local out
    if ! out=$("$IOMT" ca init --dir "$WORK/ca" 2>&1); then
        fail "pki: iomt ca init failed: $out"; return 1
    fi
    CA_CERT=$WORK/ca/ca.pem
    [ -f "$CA_CERT" ] || { fail "pki: no $CA_CERT after ca init"; return 1; }
    if ! out=$("$IOMT" ca issue --dir "$WORK/ca" --name bench-hub \
        --role hub -o "$WORK/hub" 2>&1); then
        fail "pki: iomt ca issue (hub) failed: $out"; return 1
    fi
    if ! out=$("$IOMT" ca issue --dir "$WORK/ca" --name bench-admin \
        --role admin -o "$WORK/admin" 2>&1); then
        fail "pki: iomt ca issue (admin) failed: $out"; return 1
    fi
}

hub_curl() {
    curl --silent --show-error --fail-with-body --max-time 10 \
        --cacert "$CA_CERT" "$@"
}

start_hub() {
    local i
    mkdir -p "$WORK/hub-state"
    "$HUB" serve --dir "$WORK/hub-state" --ca-dir "$WORK/ca" \
        --cert "$WORK/hub.pem" --key "$WORK/hub.key.pem" \
        --listen 127.0.0.1:0 --port-file "$WORK/hub.port" \
        --workers "$WORKERS" >"$WORK/hub.log" 2>&1 &
    HUB_PID=$!
    PIDS+=("$HUB_PID")
    for ((i = 0; i < 100; i++)); do
        [ -s "$WORK/hub.port" ] && break
        kill -0 "$HUB_PID" 2>/dev/null || break
        sleep 0.1
    done
    HUB_PORT=$(tr -dc 0-9 <"$WORK/hub.port" 2>/dev/null)
    if [ -z "$HUB_PORT" ]; then
        fail "hub: did not start: $(tail -n 3 "$WORK/hub.log")"; return 1
    fi
}

# admin_api METHOD PATH [curl args...]: one call as the admin, body printed.
admin_api() {
    local method=$1 path=$2
    shift 2
    hub_curl --cert "$WORK/admin.pem" --key "$WORK/admin.key.pem" \
        -X "$method" "$@" "https://127.0.0.1:$HUB_PORT$path"
}

json_field() {
    $PY -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

# create_device ID: registers the device, prints its one-time token.
create_device() {
    local out body
    body="{\"device_id\":\"$1\",\"model\":\"bench-pump\","
    body+="\"criticality\":\"low\"}"
    out=$(admin_api POST /api/v1/devices \
        -H 'Content-Type: application/json' -d "$body") ||
        { fail "hub: POST /api/v1/devices failed: $out"; return 1; }
    printf '%s' "$out" | json_field token ||
        { fail "hub: no token in: $out"; return 1; }
}

enrol_device() {
    local dev=bench-dev-1 token out csr
    token=$(create_device "$dev") || return 1
    csr=$(umask 077
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
            -nodes -keyout "$WORK/device.key.pem" -subj "/CN=$dev" \
            -outform DER 2>/dev/null | base64 -w0) ||
        { fail "pki: cannot make the device CSR"; return 1; }
    out=$(printf '%s' "$csr" | hub_curl -u "$dev:$token" \
        -H 'Content-Type: application/pkcs10' --data-binary @- \
        "https://127.0.0.1:$HUB_PORT/.well-known/est/simpleenroll") ||
        { fail "hub: EST simpleenroll failed: $out"; return 1; }
    printf '%s' "$out" | base64 -d 2>/dev/null |
        openssl pkcs7 -inform DER -print_certs -out "$WORK/device.pem" \
            2>/dev/null ||
        { fail "hub: EST answer is not a PKCS#7 certificate: $out"; return 1; }
}

start_nginx() {
    local try port prefix=$WORK/nginx i
    mkdir -p "$prefix/tmp"
    for try in 1 2 3; do
        port=$(free_port)
        sed -e "s|@PREFIX@|$prefix|g" -e "s|@PORT@|$port|g" \
            -e "s|@WORKERS@|$WORKERS|g" -e "s|@CERT@|$WORK/hub.pem|g" \
            -e "s|@KEY@|$WORK/hub.key.pem|g" -e "s|@CA@|$CA_CERT|g" \
            "$SRC/bench/nginx.conf.in" >"$prefix/nginx.conf"
        "$NGINX" -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log" \
            >/dev/null 2>&1 &
        NGINX_PID=$!
        for ((i = 0; i < 50; i++)); do
            kill -0 "$NGINX_PID" 2>/dev/null || break
            if checkin "$port" --count 1 --conns 1 >/dev/null 2>&1; then
                PIDS+=("$NGINX_PID")
                NGINX_PORT=$port
                return 0
            fi
            sleep 0.1
        done
        kill -TERM "$NGINX_PID" 2>/dev/null
        wait "$NGINX_PID" 2>/dev/null
    done
    fail "nginx: did not start: $(tail -n 3 "$prefix/error.log" 2>/dev/null)"
    return 1
}

checkin() {
    local port=$1
    shift
    "$CLIENT" --connect "127.0.0.1:$port" --ca "$CA_CERT" \
        --cert "$WORK/device.pem" --key "$WORK/device.key.pem" "$@"
}

# One timed run; appends the rate to FILE and the server's CPU time per
# 1000 check-ins (ms) to FILE.cpu, notes failures.
load_round() {
    local name=$1 port=$2 file=$3 pid=$4 line c0 c1 n
    c0=$(cpu_ticks "$pid")
    line=$(checkin "$port" --conns "$CONNS" --seconds "$LOAD_SECONDS" \
        2>"$WORK/$name.err")
    c1=$(cpu_ticks "$pid")
    echo "$line" | sed -n 's/.*rate=\([0-9.]*\).*/\1/p' >>"$file"
    n=$(echo "$line" | sed -n 's/^checkins=\([0-9]*\).*/\1/p')
    if [ "${n:-0}" -gt 0 ]; then
        awk -v t=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" -v n="$n" \
            'BEGIN { print t / hz * 1000 / n * 1000 }' >>"$file.cpu"
    fi
    case "$line" in
    *" failures=0 "*) ;;
    *) R_TLS_FAIL="$R_TLS_FAIL $name: $line $(cat "$WORK/$name.err");" ;;
    esac
}

bench_tls() {
    local r v
    [ -x "$CLIENT" ] || { fail "tls: $CLIENT not built"; return; }
    need_tools tls "$NGINX:nginx-light" "$PY:python3" curl:curl \
        openssl:openssl pgrep:procps || return
    make_pki || return
    start_hub || return
    enrol_device || return
    start_nginx || return

    log "tls: warming up both servers"
    checkin "$HUB_PORT" --conns "$CONNS" --seconds 1 >/dev/null 2>&1
    checkin "$NGINX_PORT" --conns "$CONNS" --seconds 1 >/dev/null 2>&1

    : >"$WORK/r_hub"; : >"$WORK/r_nginx"
    : >"$WORK/r_hub.cpu"; : >"$WORK/r_nginx.cpu"
    for ((r = 1; r <= ROUNDS; r++)); do
        log "tls: round $r/$ROUNDS (hub, then nginx, ${LOAD_SECONDS} s each)"
        load_round hub "$HUB_PORT" "$WORK/r_hub" "$HUB_PID"
        load_round nginx "$NGINX_PORT" "$WORK/r_nginx" "$NGINX_PID"
    done
    R_HUB_MEM=$(mib "$(peak_kib "$HUB_PID")")
    R_NGINX_MEM=$(mib "$(peak_kib "$NGINX_PID")")

    R_HUB=$(median <"$WORK/r_hub") || R_HUB=0
    R_NGINX=$(median <"$WORK/r_nginx") || R_NGINX=0
    if [ -n "$R_TLS_FAIL" ]; then
        fail "tls: failed check-ins:$R_TLS_FAIL"
    fi
    if awk -v n="$R_NGINX" 'BEGIN { exit !(n > 0) }'; then
        R_TLS_RATIO=$(ratio "$R_HUB" "$R_NGINX")
    fi
    if v=$(median <"$WORK/r_hub.cpu"); then
        R_HUB_CPU=$(printf '%.0f ms' "$v")
    fi
    if v=$(median <"$WORK/r_nginx.cpu"); then
        R_NGINX_CPU=$(printf '%.0f ms' "$v")
    fi
    R_HUB=$(printf '%.0f/s (%s)' "$R_HUB" "$(spread <"$WORK/r_hub")")
    R_NGINX=$(printf '%.0f/s (%s)' "$R_NGINX" "$(spread <"$WORK/r_nginx")")
    if [ "$R_HUB_CPU" != n/a ] && [ "$R_NGINX_CPU" != n/a ]; then
        R_CPU_RATIO=$(ratio "${R_HUB_CPU% ms}" "${R_NGINX_CPU% ms}")
    fi
}

# ----------------------------------------------------------------- agent
# One simulated device, one update cycle: enrol with a factory image, then
# iomt-agent run checks in, downloads an AGENT_IMAGE_MIB release, verifies
# it against the manufacturer's key, installs it to the inactive slot and
# reports. Its peak memory is GNU time's maximum resident set size.
bench_agent() {
    local dev=bench-dev-2 a=$WORK/agent token out rid
    local key=$WORK/release.pem pub=$WORK/release.pub.pem
    [ -x "$AGENT" ] || { fail "agent: $AGENT not built"; return; }
    need_tools agent "$GNU_TIME:time" || return
    [ -n "${HUB_PORT:-}" ] || { fail "agent: no hub running"; return; }
    mkdir -p "$a"
    if [ ! -f "$key" ] && ! out=$("$IOMT" keygen -o "$key" 2>&1); then
        fail "agent: iomt keygen failed: $out"; return
    fi
    head -c $((1024 * 1024)) /dev/urandom >"$a/factory.img"
    head -c $((AGENT_IMAGE_MIB * 1024 * 1024)) /dev/urandom >"$a/update.img"
    for img in factory:1 update:2; do
        if ! out=$("$IOMT" sign --key "$key" --image "$a/${img%:*}.img" \
            --seq "${img#*:}" --vendor bench-vendor --class bench-pump \
            -o "$a/${img%:*}.suit" 2>&1); then
            fail "agent: iomt sign failed: $out"; return
        fi
    done

    token=$(create_device "$dev") || return
    if ! out=$("$AGENT" enrol --state "$a/state" \
        --hub "https://127.0.0.1:$HUB_PORT" --ca "$CA_CERT" \
        --trust-anchor "$pub" --device-id "$dev" --token "$token" \
        --vendor bench-vendor --class bench-pump \
        --factory-image "$a/factory.img" \
        --factory-envelope "$a/factory.suit" --quiet 2>&1); then
        fail "agent: iomt-agent enrol failed: $out"; return
    fi

    out=$(admin_api POST /api/v1/releases \
        -H 'Content-Type: application/suit-envelope+cose' \
        --data-binary "@$a/update.suit") &&
        rid=$(printf '%s' "$out" | json_field release_id) ||
        { fail "agent: release upload failed: $out"; return; }
    out=$(admin_api PUT "/api/v1/releases/$rid/image" \
        -H 'Content-Type: application/octet-stream' \
        --data-binary "@$a/update.img") ||
        { fail "agent: image upload failed: $out"; return; }
    out=$(admin_api POST /api/v1/assignments \
        -H 'Content-Type: application/json' \
        -d "{\"release_id\":\"$rid\",\"device_id\":\"$dev\"}") ||
        { fail "agent: assignment failed: $out"; return; }

    if ! out=$("$GNU_TIME" -f %M -o "$a/rss" "$AGENT" run --state "$a/state" \
        --hub "https://127.0.0.1:$HUB_PORT" --ca "$CA_CERT" \
        --trust-anchor "$pub" --quiet 2>&1); then
        fail "agent: iomt-agent run failed: $out"; return
    fi
    # Counted only when the device now runs the new release, confirmed.
    out=$("$AGENT" status --state "$a/state" --json 2>&1)
    if printf '%s' "$out" | $PY -c 'import json, sys
d = json.load(sys.stdin)
act = [s for s in d["slots"] if s["slot"] == d["active"]]
sys.exit(0 if d["confirmed"] and act and act[0]["seq"] == 2 else 1)'; then
        R_AGENT_MEM="$(mib "$(tail -n 1 "$a/rss")")"
    else
        fail "agent: the update cycle did not install sequence 2: $out"
    fi
}

# ---------------------------------------------------------------- report
report() {
    local cpus ossl ngv row='%-30s %-18s %-24s %s\n'
    cpus=$(nproc)
    ossl=$(openssl version | awk '{print $1, $2}')
    ngv=$("$NGINX" -v 2>&1 | sed 's/^nginx version: //')
    printf '\niomtsec bench: %s CPUs, %s, %s\n' "$cpus" "$ossl" "$ngv"
    printf 'hub and nginx each run %s workers\n' "$WORKERS"
    printf 'load average at start %s, at end %s\n' "$LOADAVG_START" \
        "$(cut -d' ' -f1-3 /proc/loadavg)"
    printf '(verify: median of %s interleaved runs; check-ins: median and '\
'range of %s\n alternating rounds of %s s each, %s client connections)\n\n' \
        "$REPS" "$ROUNDS" "$LOAD_SECONDS" "$CONNS"
    printf "$row" measurement iomtsec anchor ratio
    printf "$row" "verify ${IMAGE_MIB} MiB image (time)" "$R_VERIFY" \
        "openssl dgst $R_DGST" "$R_VERIFY_RATIO"
    printf "$row" "mTLS check-ins per second" "$R_HUB" \
        "nginx $R_NGINX" "$R_TLS_RATIO"
    printf "$row" "server CPU per 1000 check-ins" "$R_HUB_CPU" \
        "nginx $R_NGINX_CPU" "$R_CPU_RATIO"
    printf "$row" "peak RSS, hub under load" "$R_HUB_MEM" \
        "nginx $R_NGINX_MEM" ""
    printf "$row" "peak RSS, iomt verify" "$R_VERIFY_RSS" "" ""
    printf "$row" "peak RSS, agent update ${AGENT_IMAGE_MIB} MiB" \
        "$R_AGENT_MEM" "" ""
    printf '\nratio verify/openssl-dgst = %s (goal <= 1.10x)\n' \
        "$R_VERIFY_RATIO"
    printf 'ratio hub/nginx check-ins = %s (goal >= 1.00x)\n' "$R_TLS_RATIO"
    if [ ${#NOTES[@]} -gt 0 ]; then
        printf '\nnot measured or failed:\n'
        printf '  - %s\n' "${NOTES[@]}"
    fi
}

for tool in "$IOMT" "$HUB"; do
    [ -x "$tool" ] || { log "$tool not built (run make)"; exit 2; }
done

LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
bench_verify
bench_tls
bench_agent
report | sed 's/ *$//' | tee "$OUT/last.txt"
exit "$FAILED"
