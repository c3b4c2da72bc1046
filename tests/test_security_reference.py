"""The spec's secured vectors, checked with independent implementations on the host.

Python's hmac module recomputes every tag and the `cryptography` package's
AES-CTR decrypts the encrypted vector; neither shares code with lib/spot.
"""
from __future__ import annotations

import hashlib
import hmac

import cbor2
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from host_tools.spec import vectors as spec_vectors
from vector_cases import GROUP_ID, GROUP_SECRET, PAIR_ID, PAIR_SECRET
from test_vectors import spec_vectors as read_vectors

SECRETS = {PAIR_ID: PAIR_SECRET, GROUP_ID: GROUP_SECRET}


def _sub(secret: bytes, label: bytes) -> bytes:
    return hmac.new(secret, b"SPOT-v1 " + label, hashlib.sha256).digest()


def test_every_secured_vector_tag_matches_python_hmac() -> None:
    checked = 0
    for name, outcome, raw in read_vectors():
        if outcome != "ok" or not raw[1] & 1:
            continue
        secret = SECRETS[raw[-9]]
        want = hmac.new(_sub(secret, b"mac"), raw[:-8], hashlib.sha256).digest()[:8]
        assert raw[-8:] == want, name
        checked += 1
    assert checked >= 6


def test_encrypted_vector_decrypts_with_cryptography() -> None:
    vec = {n: r for n, o, r in read_vectors()}
    enc, plain = vec["report-meter-encrypted"], vec["report-meter"]
    length = int.from_bytes(enc[17:19], "big")
    nonce = enc[9:13] + enc[13:17] + bytes([enc[-9]]) + bytes(3)
    key = _sub(PAIR_SECRET, b"enc")[:16]
    clear = Cipher(algorithms.AES(key), modes.CTR(nonce + bytes(4))).decryptor().update(
        enc[19:19 + length])
    assert clear == plain[19:19 + length]
    body = cbor2.loads(clear)
    assert body[4] is True and body[2].tag == 54096


def test_spec_vectors_are_what_the_generator_writes() -> None:
    assert spec_vectors.render() == spec_vectors.SPEC.read_text()
