"""Message-level security: seal a frame for sending, open a received one.

Tag: HMAC-SHA256 under the key's MAC subkey over every byte of the frame
before the tag (header, payload as sent, key id), truncated to 8 bytes.
Confidentiality (flag ENCRYPTED): the payload is XORed with AES-128-CTR under
the key's encryption subkey, nonce = source, sequence number, key id; the tag
covers the ciphertext (encrypt-then-MAC). The header's sequence number is the
per-sender counter, so the trailer is only key id + tag: 9 bytes.

Receiving runs cheapest refusals first: the hot-path filter (which never looks
at a tag), then pairing and rights, then the tag, then the replay window.
"""
from spot import crypto, frame
from spot.errors import BAD_TAG, NOT_PAIRED, NOT_PERMITTED, REPLAYED, SpotError

TAG_SIZE = frame.TAG_SIZE


def nonce(src, seq, key_id):
    return bytes((src >> 24, (src >> 16) & 0xFF, (src >> 8) & 0xFF, src & 0xFF,
                  seq >> 24, (seq >> 16) & 0xFF, (seq >> 8) & 0xFF, seq & 0xFF,
                  key_id, 0, 0, 0))


def seal(key, service, version, cls, dst, src, seq, payload, flags=0, encrypt=False):
    """The bytes of a secured frame under `key` (a keyring.Key) with counter `seq`."""
    flags |= frame.FLAG_SECURED
    if encrypt:
        flags |= frame.FLAG_ENCRYPTED
        payload = crypto.ctr_xor(key.enc, nonce(src, seq, key.key_id), payload)
    # One buffer: built, its tag computed over all but the tag and written in place.
    raw = frame.encode(service, version, cls, dst, src, seq, payload, flags, key.key_id, None, True)
    n = len(raw) - TAG_SIZE
    tag = key.mac.digest(memoryview(raw)[:n])
    for i in range(TAG_SIZE):  # byte by byte: no slice of the digest, no slice object
        raw[n + i] = tag[i]
    return bytes(raw)


class Sender:
    """Seals frames from one node with its persistent counter."""

    def __init__(self, address, keyring, counter):
        self.address = address
        self.keyring = keyring
        self.counter = counter

    def seal(self, service, version, cls, dst, payload, flags=0, encrypt=False, key=None):
        key = key or self.keyring.for_peer(dst)
        if key is None:
            raise SpotError(NOT_PAIRED, "no key shared with %08x" % dst)
        return seal(key, service, version, cls, dst, self.address, self.counter.next(),
                    payload, flags, encrypt)


def open_frame(buf, table, keyring, sync_classes=1, local_bar=None):
    """The Frame in buf with its payload verified (and decrypted), or SpotError.

    Unsecured frames come back as they are if the filter table lets them
    through (its policy says which classes may be unsecured). A secured frame
    must be from a paired peer with the right to send its class, carry a good
    tag, and be fresh; only then is its counter recorded. For classes in
    sync_classes (a bit mask; default COMMAND) the replay windows are written
    to flash before the frame is returned, so an applied command can never be
    replayed after a power cut; other classes are persisted with the node's
    own state at keyring.checkpoint().

    local_bar, when not None, says the frame came over the local transport
    (SPEC 13.4) and is the address of the cloud: only paired controllers speak
    there, so a frame under a group key or the cloud's key is refused
    (NOT_PERMITTED) before its tag or replay window is looked at, and an
    unsecured frame only if it is a discovery request.
    """
    f = frame.decode(buf, table)
    if not f.flags & frame.FLAG_SECURED:
        if local_bar is not None and f.cls != frame.CLASS_DISCOVERY:
            raise SpotError(NOT_PERMITTED, "unsecured class %d over the local link" % f.cls)
        return f
    key = keyring.find(f.src, f.key_id)
    if key is None:
        raise SpotError(NOT_PAIRED, "no key %d for sender %08x" % (f.key_id, f.src))
    if local_bar is not None and (key.group or key.peer == local_bar):
        raise SpotError(NOT_PERMITTED, "key %d of %08x over the local link" % (f.key_id, f.src))
    if not key.permits(f.cls):
        raise SpotError(NOT_PERMITTED, "class %d under key %d of %08x" % (f.cls, f.key_id, f.src))
    n = len(buf)
    want = key.mac.digest(memoryview(buf)[: n - TAG_SIZE])
    if not crypto.same(want[:TAG_SIZE], f.tag):
        raise SpotError(BAD_TAG, "frame %d from %08x" % (f.seq, f.src))
    if not key.check_fresh(f.seq):
        raise SpotError(REPLAYED, "counter %d from %08x, highest %d" % (f.seq, f.src, key.highest), f)
    key.mark_seen(f.seq)
    keyring.dirty = True
    if sync_classes & (1 << f.cls):
        keyring.checkpoint()
    if f.flags & frame.FLAG_ENCRYPTED:
        f.payload = memoryview(crypto.ctr_xor(key.enc, nonce(f.src, f.seq, f.key_id), f.payload))
    return f
