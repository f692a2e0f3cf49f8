/*
 * For lib/pki.c only: the OpenSSL key object behind a struct iomt_key, so
 * certificates and TLS contexts use the same keys as signing.
 */
#ifndef IOMT_CRYPTO_INTERNAL_H
#define IOMT_CRYPTO_INTERNAL_H

#include <openssl/evp.h>

#include "iomt/crypto.h"

EVP_PKEY *iomt_key_evp(const struct iomt_key *key);
/* Takes ownership of pkey. */
struct iomt_key *iomt_key_wrap(EVP_PKEY *pkey);

#endif
