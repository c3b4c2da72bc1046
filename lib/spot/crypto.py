"""The cryptographic primitives of SPOT frame security, from what every board has.

HMAC-SHA256 (Hmac, built on hashlib.sha256; MicroPython has no hmac module), AES-128
in counter mode (built on cryptolib's AES-ECB, since CTR is not compiled into
every port), key derivation, and a constant-time comparison.
"""
import hashlib

try:
    from cryptolib import aes
except ImportError:  # CPython
    from spot._cpython import aes

_sha256 = hashlib.sha256


class Hmac:
    """HMAC-SHA256 with the key's pads prepared once (RFC 2104)."""

    __slots__ = ("_ipad", "_opad")

    def __init__(self, key):
        if len(key) > 64:
            key = _sha256(key).digest()
        ipad = bytearray(64)  # XORed in place: no generator, no growing buffer
        opad = bytearray(64)
        ipad[: len(key)] = key
        opad[: len(key)] = key
        for i in range(64):
            ipad[i] ^= 0x36
            opad[i] ^= 0x5C
        self._ipad = ipad  # kept as made: no bytes copy of each
        self._opad = opad

    def digest(self, data):
        """The tag of data (one buffer: no tuple of parts per call)."""
        h = _sha256(self._ipad)
        h.update(data)
        outer = _sha256(self._opad)
        outer.update(h.digest())
        return outer.digest()


def derive(key, label):
    """A 32-byte subkey of `key` for one purpose (HMAC as a PRF, label as input)."""
    return Hmac(key).digest(b"SPOT-v1 " + label)


def ctr_xor(key16, nonce12, data):
    """data XOR the AES-128-CTR keystream for nonce12 (block counter from 0); new bytes."""
    cipher = aes(key16, 1)
    n = len(data)
    out = bytearray(n)
    block = bytearray(16)
    block[:12] = nonce12
    for start in range(0, n, 16):
        i = start >> 4
        block[12] = (i >> 24) & 0xFF
        block[13] = (i >> 16) & 0xFF
        block[14] = (i >> 8) & 0xFF
        block[15] = i & 0xFF
        stream = cipher.encrypt(block)
        for j in range(min(16, n - start)):
            out[start + j] = data[start + j] ^ stream[j]
    return bytes(out)


def same(a, b):
    """Constant-time equality of two byte strings of public length."""
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= a[i] ^ b[i]
    return diff == 0
