"""A node's durable state: outbox, inbox record, replay windows, application state.

All of it lives in one small file replaced atomically (storage.py), so a
received command's effects, its inbox record, its ACK in the outbox and the
replay window that refuses it next time reach flash together or not at all.
That single commit point is what makes a power cut at any instant lose nothing
and apply nothing twice (SPEC.md "Delivery").

The outbox is bounded. When it is full, the oldest entry of the lowest
priority goes first (telemetry before command results and alarms); a new entry
that ranks below everything held is the one dropped. Drops are counted and the
count is reported.
"""
try:
    from micropython import const
except ImportError:
    from spot._cpython import const

from binascii import hexlify

from spot import storage

PRIO_TELEMETRY = const(0)
PRIO_RESULT = const(1)  # acknowledgements of commands
PRIO_ALARM = const(2)
MAX_OUTBOX = const(16)
MAX_INBOX = const(64)  # as many commands as a replay window spans


class Journal:
    def __init__(self, path, max_outbox=MAX_OUTBOX, max_inbox=MAX_INBOX):
        self.path = path
        self.max_outbox = max_outbox
        self.max_inbox = max_inbox
        s = storage.load(path) if path else None
        s = s if isinstance(s, dict) else {}
        self.outbox = [[e[0], e[1], bytes.fromhex(e[2])] for e in s.get("out", ())]
        self.inbox = s.get("in", [])  # [src, seq, status, reason], oldest first
        self.windows = s.get("win", [])
        self.app = s.get("app", {})
        self.dropped = s.get("drop", 0)
        self.next_id = s.get("next", 1)
        self.commits = 0
        self.dirty = False  # changed in RAM, to be written by the next commit

    # outbox ---------------------------------------------------------------------
    def add(self, prio, frame):
        """Queue a frame for the uplink; False if it had to be dropped instead."""
        if len(self.outbox) >= self.max_outbox:
            victim = None
            for e in self.outbox:  # oldest first: the first of the lowest priority
                if e[1] <= prio and (victim is None or e[1] < victim[1]):
                    victim = e
            self.dropped += 1
            if victim is None:
                return False
            self.outbox.remove(victim)
        self.outbox.append([self.next_id, prio, bytes(frame)])
        self.next_id += 1
        return True

    def pending(self):
        """[(entry id, frame)] still waiting for the broker's acknowledgement."""
        return [(e[0], e[2]) for e in self.outbox]

    def delivered(self, ids):
        before = len(self.outbox)
        self.outbox = [e for e in self.outbox if e[0] not in ids]
        return before - len(self.outbox)

    # inbox ----------------------------------------------------------------------
    def result(self, src, seq):
        """(status, reason) recorded for a command already handled, or None."""
        for r in self.inbox:
            if r[0] == src and r[1] == seq:
                return r[2], r[3]
        return None

    def record(self, src, seq, status, reason):
        self.inbox.append([src, seq, status, reason])
        if len(self.inbox) > self.max_inbox:
            self.inbox.pop(0)

    # the commit -------------------------------------------------------------------
    def commit(self, windows=None):
        """Write everything; only after this returns may effects show or PUBACKs go out."""
        if windows is not None:
            self.windows = windows
        if self.path:
            storage.save(self.path, {
                "out": [[e[0], e[1], _hex(e[2])] for e in self.outbox],
                "in": self.inbox, "win": self.windows, "app": self.app,
                "drop": self.dropped, "next": self.next_id})
        self.commits += 1
        self.dirty = False


def _hex(b):
    # In C (built into every port): a "%02x" per byte made a string per byte, 10 KB
    # of garbage for a wake's outbox on a 32-bit board.
    return hexlify(b).decode()
