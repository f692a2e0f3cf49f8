#!/usr/bin/python3
"""Independent SUIT/COSE oracle built only on Debian's python3-cbor2 and
python3-cryptography, sharing no code with libiomt.

  suit_oracle.py check ENVELOPE PUBKEY.pem IMAGE VENDOR CLASS SEQ [VERSION [SBOM]]
      verifies an envelope made by `iomt sign`; exit 0 valid, 1 invalid.
  suit_oracle.py make OUT.suit PUB_OUT.pem IMAGE VENDOR CLASS SEQ es256|ed25519
      builds and signs an envelope with a fresh key of its own.

Byte rules (draft-ietf-suit-manifest): the SUIT_Digest covers the manifest's
bstr encoding, header included; the COSE_Sign1 detached payload is the
encoded SUIT_Digest; Sig_structure = ["Signature1", protected, h'', payload].
"""
import binascii
import hashlib
import sys
import uuid

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature, encode_dss_signature)

SHA256 = -16
ES256, EDDSA = -7, -8


class Invalid(Exception):
    pass


def need(cond, what):
    if not cond:
        raise Invalid(what)


def read_envelope(path):
    data = open(path, "rb").read()
    try:
        return binascii.unhexlify(b"".join(data.split()))
    except (binascii.Error, ValueError):
        return data


def sig_structure(protected, payload):
    return cbor2.dumps(["Signature1", protected, b"", payload])


def check(args):
    env_path, pub_path, image_path, vendor, cls, seq = args[:6]
    version = args[6] if len(args) > 6 else None
    sbom_path = args[7] if len(args) > 7 else None
    raw = read_envelope(env_path)
    top = cbor2.loads(raw)
    need(isinstance(top, cbor2.CBORTag) and top.tag == 107, "tag 107")
    env = top.value
    need(set(env) == {2, 3}, "envelope members 2 and 3")

    auth = cbor2.loads(env[2])
    need(isinstance(auth, list) and len(auth) == 2, "auth wrapper shape")
    digest_enc = auth[0]
    alg_id, manifest_digest = cbor2.loads(digest_enc)
    need(alg_id == SHA256, "digest algorithm sha256")
    manifest_bstr = cbor2.dumps(env[3])  # the bstr, header included
    need(raw.find(manifest_bstr) > 0, "manifest bstr bytes in envelope")
    need(hashlib.sha256(manifest_bstr).digest() == manifest_digest,
         "manifest digest over bstr encoding")

    sign1 = cbor2.loads(auth[1])
    need(isinstance(sign1, cbor2.CBORTag) and sign1.tag == 18, "tag 18")
    protected, unprotected, payload, signature = sign1.value
    need(payload is None, "detached payload")
    alg = cbor2.loads(protected)[1]
    tbs = sig_structure(protected, digest_enc)
    pub = serialization.load_pem_public_key(open(pub_path, "rb").read())
    try:
        if alg == ES256:
            need(isinstance(pub, ec.EllipticCurvePublicKey), "P-256 key")
            need(len(signature) == 64, "ES256 signature length")
            der = encode_dss_signature(int.from_bytes(signature[:32], "big"),
                                       int.from_bytes(signature[32:], "big"))
            pub.verify(der, tbs, ec.ECDSA(hashes.SHA256()))
        elif alg == EDDSA:
            need(isinstance(pub, ed25519.Ed25519PublicKey), "Ed25519 key")
            pub.verify(signature, tbs)
        else:
            raise Invalid("algorithm %r" % alg)
    except InvalidSignature:
        raise Invalid("signature")

    manifest = cbor2.loads(env[3])
    need(manifest[1] == 1, "manifest-version 1")
    need(manifest[2] == int(seq), "sequence number")
    common = cbor2.loads(manifest[3])
    components = common[2]
    need(components[0] == [b"\x00"], "firmware component id")
    shared = cbor2.loads(common[4])
    vendor_uuid = uuid.uuid5(uuid.NAMESPACE_DNS, vendor)
    class_uuid = uuid.uuid5(vendor_uuid, cls)
    params = {}
    index = 0
    for i in range(0, len(shared), 2):
        cmd, arg = shared[i], shared[i + 1]
        if cmd == 12:
            index = arg
        elif cmd == 20:
            params.setdefault(index, {}).update(arg)
    fw = params[0]
    need(fw[1] == vendor_uuid.bytes, "vendor-id = uuid5(NS_DNS, vendor)")
    need(fw[2] == class_uuid.bytes, "class-id = uuid5(vendor, class)")
    image = open(image_path, "rb").read()
    need(cbor2.loads(fw[3]) == [SHA256, hashlib.sha256(image).digest()],
         "image digest")
    need(fw[14] == len(image), "image size")
    pairs = list(zip(shared[0::2], shared[1::2]))
    need((1, 15) in pairs and (2, 15) in pairs, "vendor/class conditions")
    if sbom_path:
        need(components[1] == [b"sbom"], "sbom component id")
        sbom = open(sbom_path, "rb").read()
        need(cbor2.loads(params[1][3]) == [SHA256,
                                           hashlib.sha256(sbom).digest()],
             "sbom digest")
        need(params[1][14] == len(sbom), "sbom size")
    if version:
        text = cbor2.loads(manifest[23])
        need(text["en-US"][(b"\x00",)][6] == version, "component-version")
    return 0


def make(args):
    out_path, pub_out, image_path, vendor, cls, seq, alg_name = args[:7]
    image = open(image_path, "rb").read()
    if alg_name == "es256":
        key, alg = ec.generate_private_key(ec.SECP256R1()), ES256
    else:
        key, alg = ed25519.Ed25519PrivateKey.generate(), EDDSA
    vendor_uuid = uuid.uuid5(uuid.NAMESPACE_DNS, vendor)
    class_uuid = uuid.uuid5(vendor_uuid, cls)
    shared = [20, {1: vendor_uuid.bytes, 2: class_uuid.bytes,
                   3: cbor2.dumps([SHA256, hashlib.sha256(image).digest()]),
                   14: len(image)},
              1, 15, 2, 15]
    common = {2: [[b"\x00"]], 4: cbor2.dumps(shared)}
    manifest = {1: 1, 2: int(seq), 3: cbor2.dumps(common),
                7: cbor2.dumps([3, 15])}
    manifest_bstr = cbor2.dumps(cbor2.dumps(manifest, canonical=True))
    digest_enc = cbor2.dumps([SHA256, hashlib.sha256(manifest_bstr).digest()])
    protected = cbor2.dumps({1: alg})
    tbs = sig_structure(protected, digest_enc)
    if alg == ES256:
        r, s = decode_dss_signature(key.sign(tbs, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        signature = key.sign(tbs)
    sign1 = cbor2.CBORTag(18, [protected, {}, None, signature])
    auth = cbor2.dumps([digest_enc, cbor2.dumps(sign1)])
    # The manifest bstr is spliced in as bytes so its encoding is the one
    # that was digested.
    envelope = (b"\xd8\x6b\xa2\x02" + cbor2.dumps(auth) + b"\x03" +
                manifest_bstr)
    open(out_path, "wb").write(envelope)
    open(pub_out, "wb").write(key.public_key().public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo))
    return 0


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in ("check", "make"):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        return (check if sys.argv[1] == "check" else make)(sys.argv[2:])
    except (Invalid, KeyError, IndexError, TypeError, ValueError,
            cbor2.CBORDecodeError) as e:
        print("oracle: invalid: %s: %s" % (type(e).__name__, e),
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
