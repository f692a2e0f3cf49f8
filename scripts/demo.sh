#!/usr/bin/env bash
# make demo: the whole system end to end on real firmware.
#
# A manufacturer signs firmware built from real Debian binaries (u-boot for
# each model's board, busybox for its userland); a hospital hub enrols 20
# devices of three models over mutual TLS; release 2.0.0 rolls out to 19 of
# them; the twentieth is offered a release whose image was altered on the
# hub's storage after signing, and must refuse it.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
bin=${IOMT_BIN:-$top/build}
out=$top/demo
start=$(date +%s)

iomt=$bin/iomt
hub_bin=$bin/iomt-hub
agent=$bin/iomt-agent

say() { printf '\n== %s\n' "$*"; }

hub_pid=""
cleanup() {
    if [ -n "$hub_pid" ] && kill -0 "$hub_pid" 2>/dev/null; then
        kill "$hub_pid" 2>/dev/null || true
        wait "$hub_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT

rm -rf "$out"
mkdir -p "$out"/{debs,rootfs,mfr,ca,hub,ops,firmware,fleet}
chmod 700 "$out/mfr" "$out/ca" "$out/ops"

# 1. Real firmware inputs, fetched from Debian's archive.
say "fetching firmware inputs (busybox-static, u-boot-qemu)"
cache=$top/build/debs
mkdir -p "$cache"
if ! ls "$cache"/busybox-static_*.deb "$cache"/u-boot-qemu_*.deb \
    >/dev/null 2>&1; then
    chmod 777 "$cache"
    if ! (cd "$cache" && apt-get download busybox-static u-boot-qemu \
        >/dev/null 2>&1); then
        apt-get update -qq >/dev/null
        (cd "$cache" && apt-get download busybox-static u-boot-qemu >/dev/null)
    fi
fi
cp "$cache"/*.deb "$out/debs/"
for deb in "$out"/debs/*.deb; do
    dpkg-deb -x "$deb" "$out/rootfs"
done
bb_ver=$(dpkg-deb -f "$out"/debs/busybox-static_*.deb Version)
ub_ver=$(dpkg-deb -f "$out"/debs/u-boot-qemu_*.deb Version)
echo "busybox-static $bb_ver, u-boot-qemu $ub_ver"

# Models: name, board (u-boot build), clinical criticality, device count.
models=(
    "infusion-pump-ip300 qemu-riscv64 high 8"
    "patient-monitor-pm20 qemu_arm64 medium 7"
    "imaging-console-ic5 qemu-x86_64 low 5"
)
vendor=medidev.example

# A firmware image is a deterministic ustar bundle: the board's u-boot,
# and from 2.0.0 on, busybox as the userland.
make_image() { # model board version with_busybox -> path
    local model=$1 board=$2 version=$3 with_bb=$4
    local stage=$out/firmware/$model-$version.d
    mkdir -p "$stage/boot" "$stage/bin"
    cp "$out/rootfs/usr/lib/u-boot/$board/u-boot.bin" "$stage/boot/"
    [ "$with_bb" = yes ] && cp "$out/rootfs/bin/busybox" "$stage/bin/"
    printf '%s %s\n' "$model" "$version" >"$stage/VERSION"
    tar --format=ustar --sort=name --mtime=@0 --owner=0 --group=0 \
        --numeric-owner -C "$stage" -cf "$out/firmware/$model-$version.img" .
    rm -rf "$stage"
    echo "$out/firmware/$model-$version.img"
}

make_sbom() { # model version with_busybox -> path
    local model=$1 version=$2 with_bb=$3 path
    path=$out/firmware/$model-$version.cdx.json
    {
        printf '{"bomFormat":"CycloneDX","specVersion":"1.5","version":1,'
        printf '"metadata":{"component":{"type":"firmware","name":"%s",' \
            "$model"
        printf '"version":"%s","supplier":{"name":"%s"}}},"components":[' \
            "$version" "$vendor"
        printf '{"type":"firmware","name":"u-boot","version":"%s",' "$ub_ver"
        printf '"purl":"pkg:deb/debian/u-boot-qemu@%s?arch=all"}' "$ub_ver"
        if [ "$with_bb" = yes ]; then
            printf ',{"type":"application","name":"busybox","version":"%s",' \
                "$bb_ver"
            printf '"purl":"pkg:deb/debian/busybox-static@%s?arch=amd64"}' \
                "$(printf '%s' "$bb_ver" | sed 's/:/%3A/')"
        fi
        printf ']}\n'
    } >"$path"
    echo "$path"
}

# 2. The manufacturer: a signing key, factory firmware 1.0.0 and release
#    2.0.0 for each model, each bound to its SBOM by the signature.
say "manufacturer: signing key and SUIT envelopes"
"$iomt" keygen -o "$out/mfr/release-signing.pem" >/dev/null
anchor=$out/mfr/release-signing.pub.pem
sign() { # model version seq image sbom -> envelope path
    local env=$out/firmware/$1-$2.suit sbom_args=()
    [ -n "${5:-}" ] && sbom_args=(--sbom "$5")
    "$iomt" sign --key "$out/mfr/release-signing.pem" --image "$4" \
        --seq "$3" --vendor "$vendor" --class "$1" --version "$2" \
        "${sbom_args[@]}" -o "$env" >/dev/null
    echo "$env"
}
declare -A factory_img factory_env release_img release_env
for m in "${models[@]}"; do
    read -r model board crit count <<<"$m"
    img=$(make_image "$model" "$board" 1.0.0 no)
    factory_img[$model]=$img
    factory_env[$model]=$(sign "$model" 1.0.0 1 "$img" \
        "$(make_sbom "$model" 1.0.0 no)")
    img=$(make_image "$model" "$board" 2.0.0 yes)
    release_img[$model]=$img
    release_env[$model]=$(sign "$model" 2.0.0 2 "$img" \
        "$(make_sbom "$model" 2.0.0 yes)")
    printf '%-22s 1.0.0 %8d bytes   2.0.0 %8d bytes (u-boot %s + busybox)\n' \
        "$model" "$(stat -c %s "${factory_img[$model]}")" \
        "$(stat -c %s "$img")" "$board"
done
# A later release 2.1.0 for the imaging console: signed honestly, but its
# image will be altered on the hub's storage after upload.
console=imaging-console-ic5
tamper_img=$(make_image "$console" qemu-x86_64 2.1.0 yes)
tamper_env=$(sign "$console" 2.1.0 3 "$tamper_img" \
    "$(make_sbom "$console" 2.1.0 yes)")
"$iomt" verify --key "$anchor" --image "${release_img[$console]}" \
    "${release_env[$console]}" >/dev/null
echo "envelopes signed (ES256); $console 2.0.0 verifies locally"

# 3. The hospital: a fleet CA, the hub's certificate, operator roles.
say "hospital: fleet CA, hub and operator certificates"
"$iomt" ca init --dir "$out/ca" --org "General Hospital device fleet" \
    >/dev/null
"$iomt" ca issue --dir "$out/ca" --name localhost --role hub \
    -o "$out/hub/hub" >/dev/null
"$iomt" ca issue --dir "$out/ca" --name biomed-admin --role admin \
    -o "$out/ops/admin" >/dev/null
"$iomt" ca issue --dir "$out/ca" --name release-desk --role release \
    -o "$out/ops/release" >/dev/null
"$iomt" ca issue --dir "$out/ca" --name soc-analyst --role security \
    -o "$out/ops/security" >/dev/null
ca=$out/ca/ca.pem

say "hub: starting on 127.0.0.1 (mutual TLS 1.3, SQLite WAL)"
mkdir -p "$out/hub/state"
"$hub_bin" serve --dir "$out/hub/state" --ca-dir "$out/ca" \
    --cert "$out/hub/hub.pem" --key "$out/hub/hub.key.pem" \
    --listen 127.0.0.1:0 --port-file "$out/hub/port" \
    >"$out/hub/hub.log" 2>&1 &
hub_pid=$!
for _ in $(seq 1 100); do
    [ -s "$out/hub/port" ] && break
    kill -0 "$hub_pid" 2>/dev/null || {
        cat "$out/hub/hub.log" >&2
        exit 1
    }
    sleep 0.1
done
port=$(tr -dc 0-9 <"$out/hub/port")
url=https://127.0.0.1:$port
echo "hub at $url (log: demo/hub/hub.log)"

api() { # who want-status method path [curl args...] -> body
    local who=$1 want=$2 method=$3 path=$4 resp status
    shift 4
    resp=$(curl --silent --show-error --max-time 60 --cacert "$ca" \
        --cert "$out/ops/$who.pem" --key "$out/ops/$who.key.pem" \
        -X "$method" -w '\n%{http_code}' "$@" "$url$path")
    status=${resp##*$'\n'}
    if [ "$status" != "$want" ]; then
        echo "demo: $method $path answered $status: ${resp%$'\n'*}" >&2
        exit 1
    fi
    printf '%s' "${resp%$'\n'*}"
}
json_field() { /usr/bin/python3 -c \
    'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

# 4. Enrolment: the admin registers 20 devices and gets one-time tokens;
#    each device makes its own key and enrols over EST.
say "enrolment: 20 devices, three models"
fleet=$out/fleet/fleet.tsv
declare -A dev_model dev_crit
: >"$fleet"
n=0
for m in "${models[@]}"; do
    read -r model board crit count <<<"$m"
    for i in $(seq 1 "$count"); do
        n=$((n + 1))
        dev=$(printf '%s-%02d' "${model%%-*}" "$i")
        dev_model[$dev]=$model
        dev_crit[$dev]=$crit
        token=$(api admin 201 POST /api/v1/devices \
            -H 'Content-Type: application/json' \
            -d "{\"device_id\":\"$dev\",\"model\":\"$model\",\"criticality\":\"$crit\"}" |
            json_field token)
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$dev" "$vendor" "$model" \
            "$token" "${factory_img[$model]}" "${factory_env[$model]}" \
            >>"$fleet"
    done
done
"$agent" simulate --fleet "$fleet" --hub "$url" --ca "$ca" \
    --trust-anchor "$anchor" --dir "$out/fleet/devices" \
    --results "$out/fleet/enrol.tsv" --quiet 2>/dev/null
enrolled=$(awk -F'\t' 'NR > 1 && $8 != "error"' "$out/fleet/enrol.tsv" |
    wc -l)
echo "$enrolled devices enrolled, each running factory firmware 1.0.0"
chmod 600 "$fleet"

# 5. Release 2.0.0: uploaded by the release desk, assigned to 19 devices.
say "rollout: release 2.0.0 to 19 devices"
upload() { # envelope image -> release id
    local id
    id=$(api release 201 POST /api/v1/releases \
        -H 'Content-Type: application/suit-envelope+cose' \
        --data-binary "@$1" | json_field release_id)
    api release 204 PUT "/api/v1/releases/$id/image" \
        -H 'Content-Type: application/octet-stream' \
        --data-binary "@$2" >/dev/null
    printf '%s' "$id"
}
declare -A release_id
for m in "${models[@]}"; do
    read -r model _ <<<"$m"
    release_id[$model]=$(upload "${release_env[$model]}" \
        "${release_img[$model]}")
done
last=$(tail -n 1 "$fleet" | cut -f1)
while IFS=$'\t' read -r dev _; do
    [ "$dev" = "$last" ] && continue
    api admin 201 POST /api/v1/assignments \
        -H 'Content-Type: application/json' \
        -d "{\"release_id\":\"${release_id[${dev_model[$dev]}]}\",\"device_id\":\"$dev\"}" \
        >/dev/null
done <"$fleet"

# 6. The twentieth device is offered 2.1.0, whose stored image is altered
#    after the hub accepted it: what a compromised hub or storage serves.
say "attack: release 2.1.0 altered on the hub's storage, offered to $last"
tampered_id=$(upload "$tamper_env" "$tamper_img")
stored=""
while IFS= read -r -d '' f; do
    cmp -s "$f" "$tamper_img" && stored=$f && break
done < <(find "$out/hub/state/images" -type f -print0)
[ -n "$stored" ] || { echo "demo: stored image not found" >&2; exit 1; }
# Patch one byte inside busybox: a plausible backdoor, same size.
/usr/bin/python3 -c 'import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(-65536, 2); b = f.read(1); f.seek(-65536, 2)
    f.write(bytes([b[0] ^ 0x40]))' "$stored"
api admin 201 POST /api/v1/assignments -H 'Content-Type: application/json' \
    -d "{\"release_id\":\"$tampered_id\",\"device_id\":\"$last\"}" >/dev/null
echo "stored image $(basename "$stored") altered after upload"

# 7. Devices check in, verify against the manufacturer's key, install.
say "devices: check in, verify, install to the inactive slot, trial boot"
"$agent" simulate --fleet "$fleet" --hub "$url" --ca "$ca" \
    --trust-anchor "$anchor" --dir "$out/fleet/devices" \
    --results "$out/fleet/update.tsv" --quiet 2>/dev/null || true

say "summary"
printf '%-22s %-22s %-8s %-16s %-10s %s\n' DEVICE MODEL CRIT \
    "VERSION" RESULT REASON
updated=0
rejected=0
while IFS=$'\t' read -r dev _ model oldv olds newv news result reason; do
    [ "$dev" = device_id ] && continue
    case $result in
    installed) updated=$((updated + 1)) ;;
    rejected) rejected=$((rejected + 1)) ;;
    esac
    change="$oldv -> $newv"
    [ "$result" = rejected ] && change="$oldv (kept)"
    printf '%-22s %-22s %-8s %-16s %-10s %s\n' "$dev" "$model" \
        "${dev_crit[$dev]}" "$change" "$result" "${reason:-}"
done <"$out/fleet/update.tsv"

# What the hub recorded, read back as the security team would.
api security 200 GET /api/v1/devices >"$out/fleet/inventory.json"
/usr/bin/python3 - "$out/fleet/inventory.json" <<'PY'
import collections, json, sys
devices = json.load(open(sys.argv[1]))["devices"]
seen = collections.Counter(
    (d["version"], d["last_result"], d["slot"]) for d in devices)
print("hub inventory:", ", ".join(
    f"{n} at {v} in slot {s} ({r})" for (v, r, s), n in sorted(seen.items())))
PY
elapsed=$(($(date +%s) - start))
echo
echo "$updated devices updated, $rejected tampered release rejected" \
    "(${elapsed}s)"
echo
echo "Files are under demo/. To run the hub again by hand:"
echo "  $hub_bin serve --dir demo/hub/state --ca-dir demo/ca \\"
echo "      --cert demo/hub/hub.pem --key demo/hub/hub.key.pem" \
    "--listen 127.0.0.1:8443"
echo "and ask it, as the security role, for the inventory:"
echo "  curl --cacert demo/ca/ca.pem --cert demo/ops/security.pem \\"
echo "      --key demo/ops/security.key.pem" \
    "https://127.0.0.1:8443/api/v1/devices"
[ "$updated" -eq 19 ] && [ "$rejected" -eq 1 ]
