"""The cloud's handling of a device's uplink: its replay window in arrival order, redelivered
and older frames, controller ACKs counted once, rows the database refuses.

A device back from an outage sends its outbox, sealed wakes ago, and a time request
with this wake's counter (64 or more higher: every wake reserves a new block). The
cloud answers time requests on its network thread ahead of the frames queued before
them; that early answer must not record the request's counter, or the queued frames
fall outside the window and are refused as replays: reports lost in silence.
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from host_tools.cloud.bridge import Bridge
from host_tools.cloud.registry import CLOUD, Registry
from host_tools.cloud.store import Store
from spot import builders

DEV = 0x3101
UP = f"spot/home/up/{DEV:08x}"


@contextmanager
def _cloud(tmp_path: Path, store_class: type[Store] = Store,
           pair: tuple[int, int] | None = None) -> Iterator[tuple[Registry, Store]]:
    """A registry with DEV in site "home" (and a controller paired with it), taken into a
    fresh SQLite store."""
    reg = Registry(tmp_path / "registry.json")
    reg.provision("home", DEV)
    if pair is not None:
        reg.pair(pair[0], DEV, pair[1])
    reg.save()
    store = store_class(f"sqlite:///{tmp_path / 'cloud.sqlite'}")
    try:
        store.import_registry(json.loads(reg.path.read_text()))
        yield reg, store
    finally:
        store.close()


@dataclass
class Msg:  # what paho hands the bridge
    topic: str
    payload: bytes
    qos: int = 0
    mid: int = 0


def test_a_time_request_answered_early_does_not_push_older_frames_out_of_the_window(tmp_path: Path) -> None:
    with _cloud(tmp_path) as (reg, store):
        bridge = Bridge(store, "127.0.0.1:1")  # never started: its loop's steps are called here
        key = reg.sender_key(CLOUD, DEV)
        old = Msg(UP, builders.meter_report(CLOUD, DEV, 321, 1_700_000_000, 1200, 5000, True, key=key))
        ask = Msg(UP, builders.time_request(CLOUD, DEV, 385, 123456, key=key))
        # Arrival order: the report (sealed a wake ago), then this wake's time request,
        # which the network thread answers at once while the report waits in the inbox.
        answered = bridge._answer_now(ask)
        assert answered is not ask, "the time request should verify and be answered at once"
        bridge._handle([old, answered])
        assert bridge.stats.duplicates == 0 and not bridge.stats.refused, bridge.stats
        assert [r["seq"] for r in store.reports(DEV, kind="meter")] == [321]
        # The request itself was recorded by the loop, in order: the same bytes again are a replay.
        bridge._handle([Msg(UP, ask.payload)])
        assert bridge.stats.duplicates == 1


def test_controller_acks_counted_once_and_only_for_the_paired_controller(tmp_path: Path) -> None:
    # A device reports the ACKs it gave a local controller (SPEC 13.4) on its uplink.
    from host_tools.cloud.registry import class_mask
    from spot import messages

    ctl, other = 0x200, 0x300
    with _cloud(tmp_path, pair=(ctl, class_mask("command"))) as (reg, store):
        bridge = Bridge(store, "127.0.0.1:1")
        k = reg.sender_key(ctl, DEV)  # the pairwise key: the device seals its ACKs with it

        def ack(dst: int, seq: int, acked: int) -> Msg:
            return Msg(UP, builders.ack(dst, DEV, seq, acked, messages.ACK_APPLIED, key=k))

        bridge._handle([ack(ctl, 10, 5)])
        assert bridge.stats.controller_acks == 1
        # The device answered the same command twice (the controller resent it): a new
        # frame, the same ACK; counted once.
        bridge._handle([ack(ctl, 11, 5)])
        assert bridge.stats.controller_acks == 1 and bridge.stats.duplicates == 1
        # An ACK under this pairing key, addressed to a controller it was not issued for.
        bridge._handle([ack(other, 12, 6)])
        assert bridge.stats.controller_acks == 1
        assert bridge.stats.refused == {"local ack to another controller": 1}, bridge.stats
        # A worker restarted (its replay windows empty) gets the first frame again, as a
        # broker redelivers it: the database remembers the ACK was counted.
        again = Bridge(store, "127.0.0.1:1")
        events: list[dict] = []
        again.on_event = events.append
        again._handle([ack(ctl, 10, 5), ack(ctl, 13, 7), ack(ctl, 13, 7)])
        assert again.stats.controller_acks == 1 and again.stats.duplicates == 2, again.stats
        assert [(e["seq"], e["controller"]) for e in events if e["type"] == "controller_ack"] == [(7, ctl)]


def test_an_ack_outside_the_columns_ranges_never_reaches_the_database() -> None:
    """A paired device's ACK with a reason of 2**40 reached PostgreSQL's integer column
    and raised DataError, which stopped the uplink loop (review of the controller ACKs).
    A reason outside 0..65535 is no reason; a seq outside a frame's 32 bits, or a
    boolean status, is no ACK."""
    from host_tools.cloud import uplink
    from spot import frame, messages

    f = frame.decode(builders.ack(CLOUD, DEV, 1, 5, messages.ACK_APPLIED))

    def classify(body: dict) -> tuple:
        return uplink.classify(f, body)

    K_SEQ, K_STATUS, K_REASON = messages.K_ACK_SEQ, messages.K_ACK_STATUS, messages.K_ACK_REASON
    assert classify({K_SEQ: 5, K_STATUS: 2, K_REASON: 32}) == ("ack", (5, "refused", 32))
    assert classify({K_SEQ: 5, K_STATUS: 2, K_REASON: 2**40}) == ("ack", (5, "refused", None))
    assert classify({K_SEQ: 5, K_STATUS: 2, K_REASON: -1}) == ("ack", (5, "refused", None))
    assert classify({K_SEQ: 5, K_STATUS: 2, K_REASON: True}) == ("ack", (5, "refused", None))
    assert classify({K_SEQ: 2**40, K_STATUS: 0}) == ("other", None)
    assert classify({K_SEQ: 5, K_STATUS: True}) == ("other", None)


def test_a_row_the_database_refuses_is_skipped_and_the_rest_stored(tmp_path: Path) -> None:
    """A batch the database refuses for a row's content (DataError, IntegrityError) was
    retried for ever only if the error was an OperationalError; any other stopped the
    uplink loop. Now the batch is stored row by row: the refused row is skipped and
    counted, the others stored; and a failing batch never ends the loop's thread."""
    import threading

    from sqlalchemy.exc import IntegrityError

    class Picky(Store):  # a database that cannot hold one report (as PostgreSQL a 2**40 int)
        def store_uplinks(self, batch):  # type: ignore[no-untyped-def]
            if any(r[1] == 666 for r in batch.reports):
                raise IntegrityError("INSERT", {}, Exception("value out of range"))
            return super().store_uplinks(batch)

    with _cloud(tmp_path, Picky) as (reg, store):
        bridge = Bridge(store, "127.0.0.1:1")
        key = reg.sender_key(CLOUD, DEV)
        good = Msg(UP, builders.meter_report(CLOUD, DEV, 665, 1_700_000_000, 1200, 5000, True, key=key))
        bad = Msg(UP, builders.meter_report(CLOUD, DEV, 666, 1_700_000_001, 1300, 5001, True, key=key))
        bridge._handle([good, bad])
        assert [r["seq"] for r in store.reports(DEV, kind="meter")] == [665]
        assert bridge.stats.refused == {"database refused a row": 1}, bridge.stats
        assert store.shadow(DEV)["last_seen"] is not None  # the device's other rows stored
        # A batch that raises anything else: logged and counted, the loop goes on.
        bridge._handle = lambda msgs: 1 / 0  # type: ignore[method-assign]
        bridge.inbox.put(good)
        loop = threading.Thread(target=bridge._run, daemon=True)
        loop.start()
        deadline = time.monotonic() + 5
        while "internal" not in bridge.stats.refused and time.monotonic() < deadline:
            time.sleep(0.01)
        assert bridge.stats.refused.get("internal") == 1 and loop.is_alive()
        bridge._stop.set()
        loop.join(5)


def test_an_older_frame_redelivered_to_a_restarted_worker_leaves_the_shadow(tmp_path: Path) -> None:
    """A restarted worker (its replay windows empty) gets an older frame again, as a
    broker redelivers it after a newer one was stored: the shadow keeps the newer one's
    fields (they were overwritten: a known gap). Within one batch the same holds."""
    with _cloud(tmp_path) as (reg, store):
        key = reg.sender_key(CLOUD, DEV)

        def meter(seq: int, watts: int) -> Msg:
            return Msg(UP, builders.meter_report(CLOUD, DEV, seq, 1_700_000_000 + seq, watts, 5000, True, key=key))

        Bridge(store, "127.0.0.1:1")._handle([meter(400, 1500)])
        assert store.shadow(DEV)["uplink_seq"] == 400
        power = store.shadow(DEV)["meter"]
        restarted = Bridge(store, "127.0.0.1:1")
        restarted._handle([meter(321, 1200)])
        assert store.shadow(DEV)["uplink_seq"] == 400 and store.shadow(DEV)["meter"] == power
        # One batch: a newer frame, then an older one redelivered behind it.
        Bridge(store, "127.0.0.1:1")._handle([meter(500, 1700), meter(450, 1100)])
        s = store.shadow(DEV)
        assert s["uplink_seq"] == 500 and s["meter"]["power_w"] == 1700, s
        assert sorted(r["seq"] for r in store.reports(DEV, kind="meter")) == [321, 400, 450, 500]  # all kept


def test_a_device_provisioned_again_starts_its_shadow_over(tmp_path: Path) -> None:
    """A new secret for the device's key (provisioned again: its counter may start over)
    clears the shadow's highest counter, or the frames of its new life would never
    reach the shadow (review of the shadow's order)."""
    from host_tools.cloud.store import KeyRow
    from spot.keyring import Key

    with _cloud(tmp_path) as (reg, store):
        old = reg.sender_key(CLOUD, DEV)
        Bridge(store, "127.0.0.1:1")._handle([Msg(UP, builders.meter_report(
            CLOUD, DEV, 900, 1_700_000_000, 1500, 5000, True, key=old))])
        assert store.shadow(DEV)["uplink_seq"] == 900
        secret = bytes(range(32))
        with store.engine.begin() as conn:
            store.put_key(conn, KeyRow(DEV, old.key_id, CLOUD, secret, old.classes, False, True, "active"))
        new = Key(old.key_id, old.peer, secret, old.classes, admin=True)
        Bridge(store, "127.0.0.1:1")._handle([Msg(UP, builders.meter_report(
            CLOUD, DEV, 3, 1_700_000_100, 700, 10, True, key=new))])
        s = store.shadow(DEV)
        assert s["uplink_seq"] == 3 and s["meter"]["power_w"] == 700, s


def _state(key, seq: int, temp: int) -> Msg:
    from spot import frame, messages, role_codes as R

    body = {messages.K_KIND: R.REPORT_STATE, R.S_ROLE: R.ROLE_THERMOSTAT, R.S_TEMP: temp,
            R.S_TARGET: 200, R.S_OUTPUTS: 1, R.S_DR: 0}
    return Msg(UP,
               builders.build(messages.SVC_DEVICE, frame.CLASS_REPORT, CLOUD, DEV, seq, body, key=key))


def _meter(key, seq: int, watts: int) -> Msg:
    return Msg(UP,
               builders.meter_report(CLOUD, DEV, seq, 1_700_000_000 + seq, watts, 5000, True, key=key))


def test_each_kind_of_report_is_ordered_on_its_own(tmp_path: Path) -> None:
    """A shadow ordered by one counter for the whole row lost reports (review): a state
    report (frame 10) stored after the meter report of the same wake (frame 11, by the
    other worker) was dropped whole, and a status message with it. Each kind of report
    keeps its own order; availability follows arrival."""
    with _cloud(tmp_path) as (reg, store):
        key = reg.sender_key(CLOUD, DEV)

        def worker() -> Bridge:
            return Bridge(store, "127.0.0.1:1")  # a fresh one: another worker, or a restart

        worker()._handle([_meter(key, 11, 1500)])
        worker()._handle([_state(key, 10, 215)])
        s = store.shadow(DEV)
        assert s["state"]["temp_c"] == 21.5 and s["meter"]["power_w"] == 1500, s
        # One batch, the meter first: both taken.
        worker()._handle([_meter(key, 21, 1600), _state(key, 20, 220)])
        s = store.shadow(DEV)
        assert s["state"]["temp_c"] == 22.0 and s["meter"]["power_w"] == 1600, s
        # A newer state is stored; a batch with an older state and a newer meter keeps it.
        worker()._handle([_state(key, 32, 230)])
        worker()._handle([_state(key, 31, 190), _meter(key, 33, 1700)])
        s = store.shadow(DEV)
        assert s["state"]["temp_c"] == 23.0 and s["meter"]["power_w"] == 1700, s
        assert s["uplink_seq"] == 33 and "state_seq" not in s  # the bookkeeping stays inside
        # An older frame redelivered with a status message behind it: the status is taken.
        worker()._handle([_meter(key, 30, 1400), Msg(f"spot/home/status/{DEV:08x}", b"asleep 1800000000")])
        s = store.shadow(DEV)
        assert s["availability"] == "asleep" and s["meter"]["power_w"] == 1700, s
