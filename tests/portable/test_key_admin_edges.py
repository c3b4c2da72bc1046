"""Key management and the send counter: edge cases found in review, each once a defect.

* key_admin.apply -> Keyring.add replaces an entry with the same (peer, key id):
  an add can turn the last admin key into a non-admin one (the lock-out that
  "the last admin key cannot be retired" exists to prevent), and re-adding a
  key with the same secret throws its replay window away, so every frame
  already accepted under it is accepted again.
* SendCounter.next() records a new reservation in RAM before it is on flash: if
  that write fails, later counters are handed out unreserved and come again
  after a reboot (AES-CTR nonce reuse, replays refused as duplicates).
"""
from spot import builders, counter, frame, key_admin, messages, secure, storage
from spot.errors import REPLAYED
from spot.keyring import Key

import attacks
from expect import expect_error, remove_tree, scratch_dir
from vector_cases import CONTROLLER, PAIR_ID, PLUG

HEMS = 0x00010002
HEMS_ID = 2
HEMS_SECRET = bytes(range(64, 96))


def _apply(raw, table, ring):
    f = secure.open_frame(raw, table, ring)
    body = messages.read_payload(f)
    if f.service == messages.SVC_CORE and f.cls == frame.CLASS_COMMAND:
        return key_admin.apply(ring, f, body)
    return messages.ACK_APPLIED, 0


def test_key_add_cannot_demote_the_last_admin_key():
    path = scratch_dir()
    try:
        ring = attacks.plug_ring(path)
        table = attacks.plug_table()
        ctl = attacks.Controller(path)
        # Same key id and peer as the only admin key, flags 0: a plain pairing.
        demote = builders.key_add(PLUG, CONTROLLER, ctl.counter.next(), ctl.pair, PAIR_ID,
                                  CONTROLLER, bytes(range(1, 33)), 0xFF, admin=False)
        status, _ = _apply(demote, table, ring)
        assert any(k.admin for k in ring.keys), "the device has no admin key left (status %d)" % status
        assert status != messages.ACK_APPLIED
    finally:
        remove_tree(path)


def test_re_adding_a_key_keeps_its_replay_window():
    path = scratch_dir()
    try:
        ring = attacks.plug_ring(path)
        table = attacks.plug_table()
        ctl = attacks.Controller(path)
        hems = Key(HEMS_ID, PLUG, HEMS_SECRET, 0xFF)
        add = builders.key_add(PLUG, CONTROLLER, ctl.counter.next(), ctl.pair, HEMS_ID, HEMS,
                               HEMS_SECRET, 1 << frame.CLASS_COMMAND)
        assert _apply(add, table, ring) == (messages.ACK_APPLIED, 0)
        cmd = builders.reduce_power(PLUG, HEMS, 500, 80, attacks.T, 3600, key=hems)
        assert _apply(cmd, table, ring)[0] == messages.ACK_APPLIED
        # The cloud sends the same key again (a resend from a second registry
        # process, a class change, a re-provisioning script): same secret.
        again = builders.key_add(PLUG, CONTROLLER, ctl.counter.next(), ctl.pair, HEMS_ID, HEMS,
                                 HEMS_SECRET, 1 << frame.CLASS_COMMAND)
        assert _apply(again, table, ring) == (messages.ACK_APPLIED, 0)
        expect_error(REPLAYED, secure.open_frame, cmd, table, ring)
    finally:
        remove_tree(path)


class _Full(OSError):
    pass


def test_counter_never_hands_out_an_unreserved_value_after_a_failed_write():
    path = scratch_dir()
    try:
        file = path + "/counter.json"
        c = counter.SendCounter(file, block=8)
        handed = [c.next() for _ in range(3)]  # block 1..8 reserved on flash

        def full(where, link=None):
            raise _Full(28, "no space left")

        storage.fault = full
        try:
            for _ in range(8):  # the caller (wake.run catches OSError) goes on
                try:
                    handed.append(c.next())
                except OSError:
                    pass
        finally:
            storage.fault = None
        after_reboot = counter.SendCounter(file, block=8).next()
        assert after_reboot not in handed, "counter %d handed out twice" % after_reboot
    finally:
        remove_tree(path)


def test_counter_survives_a_cut_inside_a_rename_that_replaces_by_unlinking():
    # MicroPython's FAT VFS (pyboard flash, SD cards) renames over an existing
    # file by removing it first, then renaming: a cut between the two leaves
    # only counter.json.tmp, which storage.load() never looks at; the counter
    # then starts again at 1 under the same keys.
    import os

    path = scratch_dir()
    try:
        file = path + "/counter.json"
        c = counter.SendCounter(file, block=4)
        handed = [c.next() for _ in range(6)]  # blocks 1..4 and 5..8 on flash

        class _Cut(Exception):
            pass

        def fat_rename_cut(where, link=None):
            if where == "rename":
                os.remove(file)
                raise _Cut()

        storage.fault = fat_rename_cut
        try:
            for _ in range(4):
                try:
                    handed.append(c.next())
                except _Cut:
                    break
        finally:
            storage.fault = None
        after = counter.SendCounter(file, block=4).next()
        assert after > max(handed), "counter restarted at %d after %r" % (after, handed)
    finally:
        remove_tree(path)
