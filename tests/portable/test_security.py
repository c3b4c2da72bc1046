"""Frame security: primitives against known answers, counters, windows, keys, attacks."""
from spot import builders, crypto, frame, key_admin, messages, secure
from spot.counter import SendCounter
from spot.errors import BAD_TAG, NOT_PAIRED, REPLAYED, SpotError
from spot.keyring import WINDOW, Key, Keyring

import attacks
from expect import expect_error, remove_tree, scratch_dir
from receiver import receive
from vector_cases import CONTROLLER, PAIR_ID, PAIR_SECRET, PLUG, controller_keys, plug_keys


def test_hmac_sha256_known_answers():
    # RFC 4231 test cases 1 and 2.
    assert crypto.Hmac(b"\x0b" * 20).digest(b"Hi There").hex() == (
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
    assert crypto.Hmac(b"Jefe").digest(b"what do ya want for nothing?").hex() == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    # RFC 4231 test case 6: a key longer than the block is hashed first.
    assert crypto.Hmac(b"\xaa" * 131).digest(b"Test Using Larger Than Block-Size Key - Hash Key First").hex() == (
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")


def test_aes_known_answer_and_ctr_keystream():
    # FIPS 197 / SP 800-38A F.1.1: AES-128 on one block, as cryptolib or its stand-in does it.
    key = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
    block = bytes.fromhex("6bc1bee22e409f96e93d7e117393172a")
    assert crypto.aes(key, 1).encrypt(block).hex() == "3ad77bb40d7a3660a89ecaf32466ef97"
    # CTR: block i of the keystream is AES(nonce || i as 4 bytes big-endian).
    nonce = bytes(range(12))
    data = bytes(range(40))
    out = crypto.ctr_xor(key, nonce, data)
    for i in range(3):
        stream = crypto.aes(key, 1).encrypt(nonce + bytes((0, 0, 0, i)))
        chunk = data[16 * i:16 * i + 16]
        assert out[16 * i:16 * i + 16] == bytes(a ^ b for a, b in zip(chunk, stream))
    assert crypto.ctr_xor(key, nonce, out) == data


def test_constant_time_compare():
    assert crypto.same(b"abc", b"abc")
    assert not crypto.same(b"abc", b"abd")
    assert not crypto.same(b"abc", b"ab")


def test_trailer_is_nine_bytes_and_tag_covers_everything_before_it():
    key = plug_keys()[0]
    plain = builders.discovery(PLUG, CONTROLLER, 5)
    sealed = builders.discovery(PLUG, CONTROLLER, 5, key=key)
    assert len(sealed) - len(plain) == 9
    assert sealed[-9] == PAIR_ID
    mac_key = crypto.derive(PAIR_SECRET, b"mac")
    assert sealed[-8:] == crypto.Hmac(mac_key).digest(sealed[:-8])[:8]


def test_encrypted_payload_is_unreadable_and_recovered():
    pair = plug_keys()[0]
    body = {1: b"private consumption", 2: 42}
    raw = builders.build(messages.SVC_METER, frame.CLASS_REPORT, CONTROLLER, PLUG, 9, body,
                         key=pair, encrypt=True)
    assert b"private consumption" not in raw
    f = receive(raw)
    assert messages.read_payload(f) == body


def test_counter_never_repeats_across_power_cuts():
    path = scratch_dir()
    try:
        file = path + "/counter.json"
        seen = set()
        for cut in range(5):
            c = SendCounter(file, block=8)
            for _ in range(3 + cut * 5):
                n = c.next()
                assert n not in seen
                seen.add(n)
        # A power cut during a block write leaves a stray temporary file: ignored.
        with open(file + ".tmp", "w") as f:
            f.write("9")
        c = SendCounter(file, block=8)
        assert c.next() > max(seen)
        # Flash is written once per block, not once per frame.
        c = SendCounter(file, block=64)
        for _ in range(640):
            c.next()
        assert c.writes == 10
    finally:
        remove_tree(path)


def test_replay_window_edges():
    k = Key(1, CONTROLLER, bytes(32), 0xFF)
    for seq in (5, 3, 4, 100):
        assert k.check_fresh(seq)
        k.mark_seen(seq)
    assert not k.check_fresh(100) and not k.check_fresh(5)
    assert k.check_fresh(100 - WINDOW + 1)  # oldest counter still in the window
    assert not k.check_fresh(100 - WINDOW)  # just outside: refused, even if never seen
    k.mark_seen(100 + 5 * WINDOW)  # a jump clears the whole window
    assert k.seen == 1 and not k.check_fresh(100)


def test_windows_survive_reboot_only_from_the_checkpoint():
    path = scratch_dir()
    try:
        ring = attacks.plug_ring(path)
        table = attacks.plug_table()
        ctl = attacks.Controller(path)
        info = ctl.forecast()
        secure.open_frame(info, table, ring)  # INFO: persisted at the next checkpoint
        cmd = ctl.command()
        secure.open_frame(cmd, table, ring)  # COMMAND: persisted before it returns
        ring2 = attacks.plug_ring(path)
        expect_error(REPLAYED, secure.open_frame, cmd, table, ring2)
        expect_error(REPLAYED, secure.open_frame, info, table, ring2)  # the command's write covered it
        later = ctl.forecast()
        secure.open_frame(later, table, ring2)
        ring2.checkpoint()
        expect_error(REPLAYED, secure.open_frame, later, table, attacks.plug_ring(path))
    finally:
        remove_tree(path)


def test_rotation_keeps_queued_messages():
    path = scratch_dir()
    try:
        ring = attacks.plug_ring(path)
        table = attacks.plug_table()
        ctl = attacks.Controller(path)
        new_secret = bytes(range(100, 132))
        # Queued while the plug sleeps, in this order: old-key commands, the new
        # key, new-key commands, more old-key commands the controller had queued.
        old1 = ctl.command()
        add = builders.key_add(PLUG, CONTROLLER, ctl.counter.next(), ctl.pair, 2, CONTROLLER,
                               new_secret, 0xFF, admin=True)
        new_key = Key(2, PLUG, new_secret, 0xFF)
        new1 = ctl.command(key=new_key)
        old2 = ctl.command()
        for raw in (old1, add, new1, old2):
            f = secure.open_frame(raw, table, ring)
            body = messages.read_payload(f)
            if f.service == messages.SVC_CORE:
                assert key_admin.apply(ring, f, body) == (messages.ACK_APPLIED, 0)
        retire = builders.key_retire(PLUG, CONTROLLER, ctl.counter.next(), new_key, PAIR_ID, CONTROLLER)
        f = secure.open_frame(retire, table, ring)
        assert key_admin.apply(ring, f, messages.read_payload(f)) == (messages.ACK_APPLIED, 0)
        expect_error(NOT_PAIRED, secure.open_frame, ctl.command(), table, ring)
        # The new key is on flash: it survives a reboot.
        assert secure.open_frame(ctl.command(key=new_key), table, attacks.plug_ring(path)).seq > 0
    finally:
        remove_tree(path)


def test_keys_never_show_in_repr_or_errors():
    ring = Keyring()
    for k in plug_keys() + controller_keys():
        ring.add(k, save=False)
    secret_hex = "".join("%02x" % b for b in PAIR_SECRET)
    assert secret_hex[:16] not in repr(ring)
    bad = builders.discovery(PLUG, CONTROLLER, 1, key=plug_keys()[0])
    e = expect_error(BAD_TAG, receive, bad[:-1] + bytes([bad[-1] ^ 1]))
    assert secret_hex[:16] not in str(e)


def test_attack_suite_gets_nothing_accepted():
    results = attacks.run()
    assert len(results) >= 25, len(results)
    assert attacks.accepted(results) == [], attacks.accepted(results)


def test_sender_refuses_to_seal_for_unpaired_peers():
    s = secure.Sender(PLUG, Keyring(), SendCounter())
    expect_error(NOT_PAIRED, s.seal, messages.SVC_METER, 1, frame.CLASS_REPORT, CONTROLLER, b"\xa0")
    ring = Keyring()
    ring.add(controller_keys()[0], save=False)
    raw = secure.Sender(PLUG, ring, SendCounter()).seal(
        messages.SVC_METER, 1, frame.CLASS_REPORT, PLUG, b"\xa0")
    assert receive(raw).src == PLUG
    try:
        SendCounter(start=0xFFFFFFFF).next()
    except OverflowError:
        pass
    else:
        raise AssertionError("counter wrapped")
    assert SpotError
