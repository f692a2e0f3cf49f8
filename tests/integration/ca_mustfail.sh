#!/usr/bin/env bash
# iomt ca must never lose the fleet CA or an issued key: it refuses to write
# over the CA's files (with or without --force), keeps existing keys unless
# told, refuses a CA directory whose certificate is not a CA, and keeps
# control characters out of subjects. The openssl CLI is the oracle.
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
test_init ca-mustfail
passed=0

expect() { # want-exit stderr-substring command...
    local want=$1 text=$2 rc=0
    shift 2
    "$@" >"$work/out" 2>"$work/err" || rc=$?
    [ "$rc" = "$want" ] || fail "exit $rc, want $want: $* ($(cat "$work/err"))"
    grep -qF -- "$text" "$work/err" || fail "no '$text' in: $(cat "$work/err")"
    passed=$((passed + 1))
}
digest() { sha256sum "$@" | cut -d' ' -f1 | tr -d '\n'; }

ca=$work/ca
"$iomt" ca init --dir "$ca" >/dev/null
before=$(digest "$ca/ca.pem" "$ca/ca.key.pem")

# -o naming the CA's own files, by any spelling, with or without --force.
for prefix in "$ca/ca" "$work/../$(basename "$work")/ca/ca"; do
    expect 2 "would overwrite the CA itself" "$iomt" ca issue --dir "$ca" \
        --name x --role admin -o "$prefix"
    expect 2 "would overwrite the CA itself" "$iomt" ca issue --dir "$ca" \
        --name x --role admin -o "$prefix" --force
done
[ "$before" = "$(digest "$ca/ca.pem" "$ca/ca.key.pem")" ] ||
    fail "the CA's files changed"

# An issued key is kept unless --force; --force replaces the pair.
"$iomt" ca issue --dir "$ca" --name op --role admin -o "$work/op" >/dev/null
first=$(digest "$work/op.key.pem" "$work/op.pem")
expect 2 "--force replaces it" "$iomt" ca issue --dir "$ca" --name op \
    --role admin -o "$work/op"
[ "$first" = "$(digest "$work/op.key.pem" "$work/op.pem")" ] ||
    fail "an existing key was replaced without --force"
"$iomt" ca issue --dir "$ca" --name op --role admin -o "$work/op" --force \
    >/dev/null
[ "$first" != "$(digest "$work/op.key.pem" "$work/op.pem")" ] ||
    fail "--force kept the old pair"
openssl verify -CAfile "$ca/ca.pem" "$work/op.pem" >/dev/null ||
    fail "openssl rejects the reissued certificate"
[ "$(openssl pkey -in "$work/op.key.pem" -pubout)" = \
    "$(openssl x509 -in "$work/op.pem" -noout -pubkey)" ] ||
    fail "key and certificate do not match"

expect 2 "-o: empty prefix" "$iomt" ca issue --dir "$ca" --name x \
    --role admin -o ""

# A CA directory whose certificate is a leaf issues nothing.
mkdir "$work/bad-ca"
cp "$work/op.pem" "$work/bad-ca/ca.pem"
cp "$work/op.key.pem" "$work/bad-ca/ca.key.pem"
expect 2 "not a CA certificate" "$iomt" ca issue --dir "$work/bad-ca" \
    --name y --role admin -o "$work/y"
[ ! -e "$work/y.pem" ] && [ ! -e "$work/y.key.pem" ] ||
    fail "a refused issue left files"

# Control characters never reach a certificate subject.
expect 2 "--org: no control characters" "$iomt" ca init --dir "$work/ca2" \
    --org "$(printf 'General\nHospital')"
expect 2 "--org: no control characters" "$iomt" ca init --dir "$work/ca3" \
    --org "$(printf 'a\033[31mb')"
[ ! -e "$work/ca2" ] && [ ! -e "$work/ca3" ] || fail "a refused init left a CA"
echo "ca_mustfail: $passed passed, 0 failed"
