#!/usr/bin/env bash
# iomt keygen: modes, refusal to overwrite a key, and the openssl CLI as an
# independent reader of what it writes.
set -euo pipefail
iomt=${IOMT_BIN:?}/iomt
work=$(mktemp -d /tmp/iomt-keys-XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

for alg in es256 ed25519; do
    key=$work/test-$alg.pem
    "$iomt" keygen --alg "$alg" -o "$key" >/dev/null
    [ "$(stat -c %a "$key")" = 600 ] || fail "$alg private key is not 0600"
    openssl pkey -in "$key" -noout || fail "openssl cannot read $key"
    openssl pkey -pubin -in "$work/test-$alg.pub.pem" -noout ||
        fail "openssl cannot read the $alg public key"
    want=$(openssl pkey -in "$key" -pubout)
    [ "$want" = "$(cat "$work/test-$alg.pub.pem")" ] ||
        fail "$alg public key does not match its private key"
    case $alg in
    es256) openssl pkey -in "$key" -text -noout | grep -q prime256v1 ||
        fail "es256 key is not on P-256" ;;
    ed25519) openssl pkey -in "$key" -text -noout | grep -q ED25519 ||
        fail "ed25519 key is not Ed25519" ;;
    esac

    # A second keygen onto the same path must not destroy the key.
    before=$(sha256sum "$key")
    rc=0
    "$iomt" keygen --alg "$alg" -o "$key" >/dev/null 2>&1 || rc=$?
    [ "$rc" = 2 ] || fail "keygen over an existing key exited $rc, want 2"
    [ "$before" = "$(sha256sum "$key")" ] || fail "existing key was replaced"
    "$iomt" keygen --alg "$alg" --force -o "$key" >/dev/null
    [ "$before" != "$(sha256sum "$key")" ] || fail "--force kept the old key"
done

rc=0
"$iomt" keygen --alg rsa -o "$work/x.pem" >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "--alg rsa exited $rc, want 2"
[ ! -e "$work/x.pem" ] || fail "a refused keygen left a file"
echo "cli_keys: 1 passed, 0 failed"
