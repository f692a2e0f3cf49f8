/*
 * libFuzzer harness for the SUIT envelope parser and verifier (and through
 * them the CBOR reader and COSE_Sign1 parser). Build and run with
 * fuzz/run.sh; the seed corpus is the SUIT drafts' signed examples.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "iomt/cbor.h"
#include "iomt/suit.h"

/* The draft's published example verification key (a test key). */
static const char draft_public_key[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEhJaBGq4LqqvSYVcYnuzaJr6qi/Eb\n"
    "bz/m4rVlnIXbwK07HypLbAmBMcCjbazR14vTgdzfsJwFLbM5kdtzOLSolg==\n"
    "-----END PUBLIC KEY-----\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct iomt_key *anchor;
    struct iomt_suit_manifest m;
    struct iomt_cbor_reader r;
    struct iomt_err err;

    if (anchor == NULL &&
        iomt_key_from_pem((const uint8_t *)draft_public_key,
                          strlen(draft_public_key), &anchor, NULL) != IOMT_OK)
        abort();
    iomt_suit_parse(data, size, &m, &err);
    if (iomt_suit_verify(data, size, anchor, &m, &err) != IOMT_OK) {
        /* A rejected envelope must leave nothing behind. */
        if (m.seq != 0 || m.has_digest || m.version[0] != '\0')
            abort();
    }
    iomt_cbor_reader_init(&r, data, size, &err);
    while (!iomt_cbor_at_end(&r) &&
           iomt_cbor_skip(&r, "item", NULL, NULL) == IOMT_OK)
        ;
    return 0;
}
