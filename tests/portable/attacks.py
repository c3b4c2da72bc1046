"""The attack suite: frames an attacker can make, thrown at a plug that follows the spec.

run() returns one (attack name, accepted, code) per attempt; an attack counts as
accepted if the frame came out of open_frame (or, for key commands, was
applied). `make bench` reports the number accepted as sec_attacks_accepted.
"""
import os

from spot import builders, frame, key_admin, messages, secure
from spot.counter import SendCounter
from spot.errors import SpotError
from spot.filter_table import FilterTable
from spot.keyring import GROUP_CLASSES, Key, Keyring

from expect import remove_tree, scratch_dir
from vector_cases import CONTROLLER, GROUP_ID, GROUP_SECRET, PAIR_ID, PAIR_SECRET, PLUG, SITE_GROUP

ROGUE = 0x00010009  # a controller of the same site, paired with other devices only
NEIGHBOUR = 0x00000108  # another plug, whose traffic the attacker records
T = 1795712400


def plug_table():
    t = FilterTable(PLUG)
    t.add_address(SITE_GROUP)
    t.set_service(messages.SVC_DR, [frame.CLASS_COMMAND])
    t.set_service(messages.SVC_PRICE, [frame.CLASS_INFO])
    t.set_service(messages.SVC_CORE, [frame.CLASS_COMMAND, frame.CLASS_TIMESYNC, frame.CLASS_DISCOVERY])
    t.require_security(range(8))
    t.allow_unsecured([frame.CLASS_DISCOVERY])
    return t


def plug_ring(path):
    ring = Keyring(path + "/keys.json", path + "/window.json")
    if not ring.keys:
        ring.add(Key(PAIR_ID, CONTROLLER, PAIR_SECRET, 0xFF, admin=True))
        ring.add(Key(GROUP_ID, CONTROLLER, GROUP_SECRET, GROUP_CLASSES, group=True))
    return ring


class Controller:
    """The legitimate controller: its keys and its persistent counter."""

    def __init__(self, path):
        self.pair = Key(PAIR_ID, PLUG, PAIR_SECRET, 0xFF)
        self.group = Key(GROUP_ID, SITE_GROUP, GROUP_SECRET, GROUP_CLASSES, group=True)
        self.counter = SendCounter(path + "/controller-counter.json")

    def command(self, dst=PLUG, percent=20, key=None):
        return builders.reduce_power(dst, CONTROLLER, self.counter.next(), percent, T, 3600,
                                     key=key or self.pair)

    def forecast(self):
        return builders.price_forecast(SITE_GROUP, CONTROLLER, self.counter.next(), T, 3600,
                                       [1, 2, 3], -2, key=self.group)


def _tamper(raw, at, value):
    b = bytearray(raw)
    b[at] = value
    return bytes(b)


def run():
    path = scratch_dir()
    try:
        return _run(path)
    finally:
        remove_tree(path)


def _run(path):
    results = []
    ring = plug_ring(path)
    table = plug_table()
    ctl = Controller(path)

    def attempt(name, raw, legit=False):
        try:
            f = secure.open_frame(raw, table, ring)
            body = messages.read_payload(f)
        except SpotError as e:
            if legit:
                raise AssertionError("legitimate frame refused: %s (%s)" % (name, e))
            results.append((name, False, e.code))
            return None
        applied, reason = True, 0
        if f.service == messages.SVC_CORE and f.cls == frame.CLASS_COMMAND:
            status, reason = key_admin.apply(ring, f, body)
            applied = status == messages.ACK_APPLIED
        if not legit:
            results.append((name, applied, reason))
        return f

    good = ctl.command()
    attempt("legit command", good, legit=True)
    seq = ctl.counter.peek()

    # Tags and keys.
    fresh = ctl.command()
    attempt("forged tag", fresh[:-8] + os.urandom(8))
    attempt("tag bits flipped", _tamper(fresh, len(fresh) - 1, fresh[-1] ^ 0x80))
    wrong = Key(PAIR_ID, PLUG, os.urandom(32), 0xFF)
    attempt("right key id, wrong key", ctl.command(key=wrong))
    attempt("truncated tag", fresh[:-4])
    cut = bytearray(fresh[:-4])
    cut[18] -= 4  # payload length lowered so the 4-byte tag "fits"
    attempt("tag cut, length patched", bytes(cut))
    stripped = bytearray(fresh[:-9])
    stripped[1] &= ~frame.FLAG_SECURED & 0xFF
    attempt("security flag stripped", bytes(stripped))
    attempt("encrypted flag added", _tamper(fresh, 1, fresh[1] | frame.FLAG_ENCRYPTED))
    attempt("key id changed", _tamper(fresh, len(fresh) - 9, GROUP_ID))
    attempt("payload bit flipped", _tamper(fresh, 25, fresh[25] ^ 1))
    attempt("sequence number changed", _tamper(fresh, 16, fresh[16] ^ 4))
    attempt("unsecured command", builders.reduce_power(PLUG, CONTROLLER, ctl.counter.next(), 20, T, 60))
    attempt("legit command after tampering", fresh, legit=True)

    # Replays and reordering.
    attempt("replay of an accepted command", fresh)
    attempt("replay of the first command", good)
    a = ctl.command()
    b = ctl.command()
    attempt("newer frame first", b, legit=True)
    attempt("older frame inside the window", a, legit=True)
    attempt("reordered frame replayed", a)
    attempt("reordered frame replayed again", b)
    for _ in range(70):
        ctl.counter.next()
    late = builders.reduce_power(PLUG, CONTROLLER, seq, 20, T, 60, key=ctl.pair)
    attempt("never-seen frame older than the window", late)
    attempt("legit command after the gap", ctl.command(), legit=True)

    # Addressing and pairing.
    neighbour_key = Key(PAIR_ID, NEIGHBOUR, os.urandom(32), 0xFF)
    for_neighbour = ctl.command(dst=NEIGHBOUR, key=neighbour_key)
    readdressed = bytearray(for_neighbour)
    readdressed[5:9] = PLUG.to_bytes(4, "big")
    attempt("frame re-addressed from another device", bytes(readdressed))
    mine = ctl.command()
    moved = bytearray(mine)
    moved[5:9] = SITE_GROUP.to_bytes(4, "big")
    attempt("command re-addressed to the site group", bytes(moved))
    rogue = Key(PAIR_ID, PLUG, os.urandom(32), 0xFF)
    attempt("command from an unpaired controller", builders.reduce_power(
        PLUG, ROGUE, 1, 100, T, 60, key=rogue))
    attempt("unpaired controller posing as the controller", builders.reduce_power(
        PLUG, CONTROLLER, ctl.counter.next() + 5, 100, T, 60, key=Key(9, PLUG, os.urandom(32), 0xFF)))
    insider = Key(GROUP_ID, PLUG, GROUP_SECRET, GROUP_CLASSES, group=True)
    attempt("command forged with the group key", builders.reduce_power(
        PLUG, CONTROLLER, ctl.counter.next(), 100, T, 60, key=insider))
    attempt("legit forecast under the group key", ctl.forecast(), legit=True)

    # Key management.
    stolen = os.urandom(32)
    attempt("key add in clear", builders.build(
        messages.SVC_CORE, frame.CLASS_COMMAND, PLUG, CONTROLLER, ctl.counter.next(),
        {0: messages.CORE_KEY_ADD, 1: 5, 2: ROGUE, 3: stolen, 4: 0xFF, 5: 2}, key=ctl.pair))
    attempt("key add under the group key", builders.key_add(
        PLUG, CONTROLLER, ctl.counter.next(), insider, 5, ROGUE, stolen, 0xFF, admin=True))
    attempt("retire of the last admin key", builders.key_retire(
        PLUG, CONTROLLER, ctl.counter.next(), ctl.pair, PAIR_ID, CONTROLLER))

    # Reboots: the plug loses its RAM; the controller loses power mid-block.
    last = ctl.command()
    attempt("legit command before the reboot", last, legit=True)
    ring = plug_ring(path)
    attempt("replay after the plug rebooted", last)
    attempt("older frame replayed after the plug rebooted", a)
    before = ctl.counter.peek()
    ctl = Controller(path)  # the controller's power cut: counters come from flash
    assert ctl.counter.peek() >= before
    attempt("legit command after both rebooted", ctl.command(), legit=True)
    return results


def accepted(results):
    return [name for name, ok, _ in results if ok]
