"""The answer to a discovery request on the local network (SPEC.md 6 and 13.3).

Loaded by the node on the first question only. The answer says what the device
keeps (its filter table's services), its role and its address, and nothing
secret (a paired controller's secured question also gets the role's state): it is
sealed under the key the device shares with the asker if it has one, and otherwise
sent without a trailer, and then no longer than 3 times the question (a
forged source address must not make a device send much more than it was sent). It is
sent back over the transport the question came on (reply), never journalled: a lost
answer is asked again.
"""
try:
    from micropython import const
except ImportError:
    from spot._cpython import const

from spot import cbor, frame

# spot.messages' numbers this module uses: private, free at run time.
_K_DISC_SERVICES = const(1)
_SVC_CORE = const(1)
_K_DISC_ROLE = const(2)

_AMPLIFICATION = const(3)  # QUIC's limit (RFC 9000 8.1): an unsecured answer <= 3 x the question
_C_ROLE = 1  # SPEC 12.4 key 1
K_STATE = 3  # the role's state (SPEC 12.5), for a paired asker's secured question only


def services(table):
    """[[service, class mask, lowest, highest], ...] of every service the table keeps."""
    out = []
    for s in range(1, 256):
        mask, lo, hi = table.service(s)
        if mask:
            out.append([s, mask, lo, hi])
    return out


def answer(node, f, reply, asked):
    """Build and send the answer to the question f, whose datagram was `asked` bytes;
    False if it was not sent."""
    body = {_K_DISC_SERVICES: services(node.table)}
    role = node.role
    if role is not None:
        try:
            r = role.caps().get(_C_ROLE)
            if r:
                body[_K_DISC_ROLE] = r
        except Exception:  # the role's record is its business: answer without it
            pass
    key = node.keyring.for_peer(f.src) if f.src else None
    paired = f.secured and key is not None and (key.classes >> frame.CLASS_DISCOVERY) & 1
    if paired and role is not None:
        try:
            body[K_STATE] = role.state()
        except Exception:
            pass
    try:
        payload = cbor.encode(body)
        n = frame.HEADER_SIZE + len(payload)
        if not paired and n > _AMPLIFICATION * asked:  # the asker pads its question (SPEC 13.3)
            node.emit("refused", what="discovery answer of %d bytes: over %d x the question's %d"
                      % (n, _AMPLIFICATION, asked))
            return False
        if paired:
            raw = node.sender.seal(_SVC_CORE, 1, frame.CLASS_DISCOVERY, f.src, payload,
                                   key=key)
        else:  # unsecured; its sequence number still comes from the device's counter
            raw = frame.encode(_SVC_CORE, 1, frame.CLASS_DISCOVERY, f.src or 0xFFFFFFFF,
                               node.address, node.sender.counter.next(), payload)
    except Exception as e:  # counter spent, flash full: no answer, counted by the node
        node.emit("refused", what="no discovery answer: %r" % (e,))
        return False
    node.emit("discovered", to=f.src, n=len(raw))
    return reply(raw)
