"""The service's MQTT side: uplinks in (verified, deduplicated, stored in batches), frames out.

One paho client per worker. Uplinks are taken with manual acknowledgement: the
broker gets its PUBACK only after the batch holding the frame is committed, so a
worker killed mid-batch loses nothing (the broker hands the frames over again
when it reconnects). Time requests are answered at once, before the batch is
written: a slow answer lengthens every device's wake.

With several workers each subscribes through a shared subscription
($share/<group>/...), so the broker spreads the uplinks over them; commands are
published by whichever worker accepted them, and any worker resends what is
still open, so a dead worker's commands are not stranded.
"""
from __future__ import annotations

import logging
import queue
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from sqlalchemy.exc import DataError, IntegrityError, OperationalError

from host_tools.cloud import uplink
from host_tools.cloud.store import CLOUD, Store, UplinkBatch
from spot import builders, frame, messages, secure, topics
from spot.errors import NOT_FOR_ME, NOT_PAIRED, REPLAYED, SpotError
from spot.filter_table import FilterTable
from spot.keyring import Key, Keyring

log = logging.getLogger("spot.cloud.mqtt")
UPLINK_CLASSES = ((1 << frame.CLASS_REPORT) | (1 << frame.CLASS_ACK) | (1 << frame.CLASS_DISCOVERY)
                  | (1 << frame.CLASS_TIMESYNC))
BATCH_MAX = 1000  # uplinks per transaction
UPLINK_TOPICS = ("spot/+/up/+", "spot/+/status/+")  # each through $share/<group>/ with several workers
RESEND_ACCEPTED_AFTER_S = 10.0  # a command accepted but never published (its worker died)


class CloudKeyring(Keyring):
    """Every device's keys with the cloud, found by (device, key id) in a dict.

    A device's Keyring is a short list (16 keys at most, searched in order); the
    cloud holds thousands of devices' keys and looks one up for every uplink."""

    def __init__(self) -> None:
        super().__init__()
        self._by_id: dict[tuple[int, int], Key] = {}
        self._newest: dict[int, Key] = {}

    def find(self, peer: int, key_id: int) -> Key | None:
        return self._by_id.get((peer, key_id))

    def for_peer(self, peer: int) -> Key | None:
        return self._newest.get(peer)

    def add(self, key: Key, save: bool = False) -> Key:
        self._by_id[(key.peer, key.key_id)] = key
        if not key.group:
            self._newest[key.peer] = key  # as Keyring: the key added last is the one to send with
        return key


@dataclass
class _Answered:
    """A time request the network thread verified as it arrived and handed to the time
    thread; the uplink loop keeps its bookkeeping (the device was seen) and acknowledges
    it with its batch."""

    msg: Any
    src: int
    seq: int


def _time_request(payload: bytes) -> bool:
    """A frame's service and class read at their fixed offsets (the hot path's way): is
    this a time request? Nothing is trusted until it is verified."""
    return len(payload) > frame.HEADER_SIZE and payload[2] == messages.SVC_CORE \
        and payload[4] == frame.CLASS_TIMESYNC


@dataclass
class BridgeStats:
    uplinks: int = 0
    stored_batches: int = 0
    duplicates: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    time_answers: int = 0
    published: int = 0
    db_retries: int = 0
    controller_acks: int = 0  # a device's ACKs to another controller (a local one: SPEC 13.4)

    def refuse(self, why: str) -> None:
        self.refused[why] = self.refused.get(why, 0) + 1


class Bridge:
    def __init__(self, store: Store, broker: str, worker: str = "0", shared: str | None = None,
                 on_event: Callable[[dict], None] | None = None, auth: tuple[str, str] | None = None,
                 tls_ca: str | None = None) -> None:
        self.auth = auth  # the cloud's own broker account (user "cloud": broker_config.py)
        self.tls_ca = tls_ca  # a CA file: TLS to the broker, its certificate verified
        self.store = store
        host, _, port = broker.partition(":")
        self.host, self.port = host or "127.0.0.1", int(port or 1883)
        self.worker = worker
        self.shared = shared
        self.on_event = on_event or (lambda ev: None)
        self.stats = BridgeStats()
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._busy = False  # the uplink loop is handling a batch
        self._busy_lock = threading.Lock()
        self._activity = 0.0  # monotonic time of the last uplink handed over or batch stored
        self._retiring = False  # retire(): no subscription on connecting
        self._taken_over = False  # retire(): the session was lost (another holder of the id)
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._published: queue.SimpleQueue = queue.SimpleQueue()  # command ids PUBACKed
        self._mids: dict[int, int] = {}  # paho mid -> command id
        self._mid_lock = threading.Lock()
        self._keys_loaded = 0.0
        self._sites: dict[int, str] = {}
        self.table = FilterTable(CLOUD)
        self.table.set_service(messages.SVC_CORE, (frame.CLASS_ACK, frame.CLASS_REPORT, frame.CLASS_TIMESYNC))
        self.table.set_service(messages.SVC_METER, (frame.CLASS_REPORT,))
        self.table.set_service(messages.SVC_DEVICE, (frame.CLASS_REPORT,))
        self.ring = CloudKeyring()
        # A device reports the ACKs it gave local controllers (SPEC 13.4) on its uplink too:
        # verified with the pairing keys, whatever controller they are addressed to.
        self.local_table = FilterTable()
        self.local_table.any_destination(True)
        self.local_table.set_service(messages.SVC_CORE, (frame.CLASS_ACK,))
        self.local_ring = CloudKeyring()
        self._paired: dict[tuple[int, int], int] = {}  # (device, key id) -> its controller
        self._verify_lock = threading.Lock()  # replay windows: network thread and uplink loop
        self._asks: queue.SimpleQueue = queue.SimpleQueue()  # verified time requests to answer
        self.reload_keys()
        self.client: Any = None
        self.extra: list[tuple[str, Callable[[str, bytes], None]]] = []
        self._thread: threading.Thread | None = None

    # keys ---------------------------------------------------------------------
    def reload_keys(self) -> None:
        """The keys uplinks are verified with (every device's keys with the cloud).
        Replay windows of keys already held are kept."""
        rows = self.store.key_rows()
        for r in rows:
            if r.peer == CLOUD and not r.is_group and self.ring.find(r.device, r.key_id) is None:
                self.ring.add(Key(r.key_id, r.device, r.secret, UPLINK_CLASSES), save=False)
            elif (r.peer != CLOUD and not r.is_group
                  and self.local_ring.find(r.device, r.key_id) is None):  # pairing keys
                self.local_ring.add(Key(r.key_id, r.device, r.secret, 1 << frame.CLASS_ACK), save=False)
                self._paired[(r.device, r.key_id)] = r.peer  # the one controller it was issued for
        self._sites = {d["address"]: d["site"] for d in self.store.devices()}
        self._keys_loaded = time.monotonic()

    def site_of(self, device: int) -> str:
        site = self._sites.get(device)
        if site is None:
            self.reload_keys()
            site = self._sites.get(device)
        if site is None:
            raise KeyError(f"device {device:08x} is not in the registry")
        return site

    # connection -----------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> None:
        import paho.mqtt.client as mqtt

        # The uplink loop's batches are CPU-bound; the network and time threads need the GIL
        # back after every system call (paho makes several per packet). At Python's default
        # turn (5 ms) a time request waited turns behind a big batch; 0.5 ms keeps it prompt.
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.0005))
        c = self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                      client_id=f"spot-cloud-{self.worker}", clean_session=False,
                                      protocol=mqtt.MQTTv311, manual_ack=True)
        c.max_inflight_messages_set(1000)
        c.max_queued_messages_set(0)
        c.reconnect_delay_set(min_delay=0.1, max_delay=5)
        if self.auth is not None:
            c.username_pw_set(*self.auth)
        if self.tls_ca is not None:
            c.tls_set(ca_certs=self.tls_ca)
        c.on_message = self._on_message
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_socket_open = lambda _c, _u, sock: _no_delay(sock)
        c.connect_async(self.host, self.port, keepalive=30)
        c.loop_start()
        self._thread = threading.Thread(target=self._run, name="spot-uplinks", daemon=True)
        self._thread.start()
        self._time_thread = threading.Thread(target=self._answer_loop, name="spot-time", daemon=True)
        self._time_thread.start()
        if not self.connected.wait(timeout):
            log.warning("no MQTT session with %s:%d yet; retrying in the background", self.host, self.port)

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()

    def retire(self, idle_s: float = 2.0, timeout: float = 120.0) -> int:
        """End this worker's MQTT session for good (a worker taken out of a shared group).

        A persistent session keeps its share of a shared subscription while its worker
        is away: Mosquitto goes on sending it every Nth uplink, queued until the worker
        comes back. A worker that will not come back is retired: this takes its session
        (instead of start(); the worker must be stopped), drops its subscriptions at
        once so the broker routes nothing more to it, stores what was queued or in
        flight (acknowledged as usual) until nothing came for idle_s, and ends the
        session with a clean connection. The uplinks it stored."""
        import paho.mqtt.client as mqtt

        deadline = time.monotonic() + timeout
        self._retiring = True  # no subscription on connecting, and a lost session is an error
        self.start(timeout)
        if not self.connected.is_set():
            raise TimeoutError(f"no session with the broker {self.host}:{self.port}")
        unsubscribed = threading.Event()
        self.client.on_unsubscribe = lambda *_a: unsubscribed.set()
        rc, _mid = self.client.unsubscribe([self._prefix(t) for t in UPLINK_TOPICS])
        while not unsubscribed.wait(0.05):
            self._check_session(rc)
            if time.monotonic() > deadline:
                raise TimeoutError("the broker never acknowledged the unsubscription")
        self._activity = time.monotonic()  # what it routed before that may still come
        self._settle(idle_s, deadline)
        self._stop.set()  # idle: the uplink loop ends between batches, nothing abandoned
        if self._thread:
            self._thread.join()
        self.client.disconnect()
        self.client.loop_stop()
        if not self.inbox.empty():  # came in the last instant: kept by the session, not ended
            raise RuntimeError("uplinks arrived while the session was closing: run retire again")
        ended = threading.Event()
        ender = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"spot-cloud-{self.worker}",
                            clean_session=True, protocol=mqtt.MQTTv311)
        ender.on_connect = lambda _c, _u, _f, rc, _p=None: ended.set() if not rc.is_failure else None
        if self.auth is not None:
            ender.username_pw_set(*self.auth)
        if self.tls_ca is not None:
            ender.tls_set(ca_certs=self.tls_ca)
        ender.connect(self.host, self.port, keepalive=30)  # a clean session replaces the old one
        ender.loop_start()
        try:
            if not ended.wait(10):
                raise TimeoutError("the broker did not take the clean connection that ends the session")
        finally:
            ender.disconnect()
            ender.loop_stop()
        log.info("worker %s retired: %d uplinks taken from its session", self.worker, self.stats.uplinks)
        return self.stats.uplinks

    def _check_session(self, rc: int = 0) -> None:
        if self._taken_over or rc:
            raise RuntimeError(f"worker {self.worker}'s session was lost (another client took it, or "
                               f"the connection dropped): is the worker still running? Stop it first")

    def _settle(self, idle_s: float, deadline: float) -> None:
        """Until nothing came, and no batch ended, for idle_s, and all taken is stored."""
        while time.monotonic() < deadline:
            self._check_session()
            with self._busy_lock:
                quiet = self.inbox.empty() and not self._busy
            if quiet and time.monotonic() - self._activity >= idle_s:
                return
            time.sleep(0.05)
        raise TimeoutError("the retired worker's session never went quiet")

    def _prefix(self, t: str) -> str:
        return f"$share/{self.shared}/{t}" if self.shared else t

    def _on_connect(self, client: Any, _u: Any, _flags: Any, rc: Any, _p: Any = None) -> None:
        if getattr(rc, "is_failure", False):
            # Wrong credentials: paho retries with its backoff; say so once per attempt.
            log.error("the broker refused the cloud's connection: %s (user %s)", rc,
                      self.auth[0] if self.auth else "anonymous")
            return
        if not self._retiring:
            client.subscribe([(self._prefix(t), 1) for t in UPLINK_TOPICS])
        for topic_filter, _h in self.extra:
            client.subscribe(topic_filter, qos=1)
        self._activity = time.monotonic()
        self.connected.set()
        log.info("connected to %s:%d as worker %s", self.host, self.port, self.worker)
        # Whatever was not acknowledged goes out again, as the identical frame: the broker
        # may have lost its queue (a crash before its autosave), or we died before publishing.
        if not self._retiring:  # a retiring session only takes what waited for it
            threading.Thread(target=self.resend_open, name="spot-resend", daemon=True).start()

    def _on_message(self, client: Any, _u: Any, msg: Any) -> None:
        if msg.topic.startswith("spot/"):
            self._activity = time.monotonic()
            if _time_request(msg.payload) and "/up/" in msg.topic:
                try:
                    msg = self._answer_now(msg)
                except Exception as e:  # noqa: BLE001 - never let it stop paho's network loop
                    log.exception("time request on %s: %s", msg.topic, e)
            self.inbox.put(msg)  # acknowledged once stored
            return
        import paho.mqtt.client as mqtt

        for topic_filter, handler in self.extra:  # plugins' own topics (Home Assistant's commands)
            if mqtt.topic_matches_sub(topic_filter, msg.topic):
                try:
                    handler(msg.topic, bytes(msg.payload))
                except Exception as e:  # noqa: BLE001 - a plugin's handler never stops the link
                    log.error("handler for %s: %s", msg.topic, e)
        if msg.qos:
            client.ack(msg.mid, msg.qos)

    def subscribe_extra(self, topic_filter: str, handler: Callable[[str, bytes], None]) -> None:
        """Messages outside spot/ for a plugin: handler(topic, payload), on the MQTT thread."""
        self.extra.append((topic_filter, handler))
        if self.client is not None and self.connected.is_set():
            self.client.subscribe(topic_filter, qos=1)

    def _on_disconnect(self, *_a: Any) -> None:
        if self._retiring and not self._stop.is_set():
            self._taken_over = True
        if self.connected.is_set():
            log.warning("lost the broker; reconnecting")
        self.connected.clear()

    def _on_publish(self, _c: Any, _u: Any, mid: int, *_a: Any) -> None:
        with self._mid_lock:
            cid = self._mids.pop(mid, None)
        if cid is not None:
            self._published.put(cid)

    # sending -------------------------------------------------------------------------
    def publish_command(self, cmd: dict) -> None:
        """Hand a stored command's frame to the broker (QoS 1, to the device's queue)."""
        topic = topics.topic(self.site_of(cmd["device"]), cmd["device"])
        if not self.store.claim(cmd["id"]):
            return  # cancelled (or answered) meanwhile: it never leaves
        info = self.client.publish(topic, cmd["frame"], qos=1)
        with self._mid_lock:
            self._mids[info.mid] = cmd["id"]
        self.stats.published += 1

    def publish_signal(self, site: str, group: int, raw: bytes, retain: bool = True) -> None:
        self.client.publish(topics.topic(site, group), raw, qos=1, retain=retain)

    def resend_open(self, only_accepted_older_than: float | None = None) -> int:
        """Publish again the commands still waiting for their ACK."""
        try:
            rows = self.store.open_commands()
        except OperationalError as e:
            log.error("cannot read open commands (database): %s", e)
            return 0
        now = time.time()
        n = 0
        for r in rows:
            if only_accepted_older_than is not None and not (
                    r["state"] == "accepted" and now - r["created_at"] > only_accepted_older_than):
                continue
            try:
                self.publish_command(r)
                n += 1
            except KeyError as e:
                log.error("command %d: %s", r["id"], e)
            except OperationalError as e:  # the next sweep or reconnect tries again
                log.error("resending open commands (database): %s", e)
                break
        if n:
            log.info("resent %d open commands", n)
        return n

    # the uplink loop -------------------------------------------------------------------
    def _run(self) -> None:
        last_sweep = time.monotonic()
        while not self._stop.is_set():
            msgs = self._drain()
            if msgs:
                try:
                    self._handle(msgs)
                except Exception as e:  # a bug must not stop the cloud storing uplinks
                    log.exception("uplink batch of %d: %s", len(msgs), e)
                    self.stats.refuse("internal")
                finally:
                    self._activity = time.monotonic()
                    self._busy = False
            self._note_published()
            if time.monotonic() - last_sweep > 5:
                last_sweep = time.monotonic()
                if self.connected.is_set() and not self._retiring:
                    self.resend_open(only_accepted_older_than=RESEND_ACCEPTED_AFTER_S)

    def _drain(self) -> list[Any]:
        with self._busy_lock:  # taken and busy at once, as retire()'s _settle sees them
            try:
                first = self.inbox.get(timeout=0.05)
            except queue.Empty:
                return []
            self._busy = True
        msgs = [first]
        while len(msgs) < BATCH_MAX:
            try:
                msgs.append(self.inbox.get_nowait())
            except queue.Empty:
                break
        return msgs

    def _note_published(self) -> None:
        ids = []
        while True:
            try:
                ids.append(self._published.get_nowait())
            except queue.Empty:
                break
        if ids:
            try:
                # Only those still waiting: an answered one (its ACK first) is not announced
                # published after its answer.
                ids = self.store.mark_published(ids)
            except OperationalError as e:  # the state is advisory; the resend does not need it
                log.warning("could not mark %d commands published: %s", len(ids), e)
                # Unknown which are still waiting: announcing them all could show an
                # answered command "published" after its answer. Say nothing.
                ids = []
            for cid in ids:
                self.on_event({"type": "command", "id": cid, "state": "published"})

    def _handle(self, msgs: list[Any]) -> None:
        now = time.time()
        batch = UplinkBatch()
        events: list[dict] = []
        asks: list[tuple[int, int, int]] = []  # this batch's time requests
        for item in msgs:
            try:
                if isinstance(item, _Answered):  # answered already: verified (and recorded) in order
                    self._uplink(item.msg, batch, now, events, None)
                elif "/status/" in item.topic:
                    self._status(item, batch, now, events)
                else:
                    self._uplink(item, batch, now, events, asks)
            except Exception as e:  # one bad frame never stops the loop
                log.exception("uplink: %s", e)
                self.stats.refuse("internal")
        if asks:
            self._answer_times(asks)  # before the batch is written: a device waits for these
        delay = 0.1
        while not self._stop.is_set():
            try:
                changed = self.store.store_uplinks(batch)
                break
            except OperationalError as e:
                # The database is locked or gone: hold the PUBACKs (the broker keeps the
                # frames) and try again, slower each time.
                self.stats.db_retries += 1
                log.error("database unavailable, %d uplinks held: %s", len(msgs), e)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
            except (DataError, IntegrityError):
                # Available, but a row it cannot hold: the rest of the batch is stored row
                # by row, the refused rows skipped and counted (held, they would come back
                # at every redelivery and stop every batch they ride in).
                try:
                    changed, skipped = self.store.store_uplinks_apart(batch)
                except OperationalError:  # gone meanwhile: the whole batch again
                    continue
                for _ in range(skipped):
                    self.stats.refuse("database refused a row")
                break
        else:
            return
        self.stats.stored_batches += 1
        self.stats.duplicates += len(batch.controller_acks) - len(batch.new_controller_acks)
        for a in batch.new_controller_acks:
            self.stats.controller_acks += 1
            events.append({"type": "controller_ack", **a})
        for item in msgs:
            msg = item.msg if isinstance(item, _Answered) else item
            if msg.qos:
                self.client.ack(msg.mid, msg.qos)
        for c in changed:
            events.append({"type": "command", "id": c["id"], "device": c["device"], "kind": c["kind"],
                           "state": c["state"], "reason": c["reason"],
                           "reason_text": uplink.REASONS.get(c["reason"] or 0)})
        for ev in events:
            self.on_event(ev)

    def _status(self, msg: Any, batch: UplinkBatch, now: float, events: list[dict]) -> None:
        try:
            device = int(msg.topic.rsplit("/", 1)[1], 16)
        except ValueError:
            self.stats.refuse("bad status topic")
            return
        text = bytes(msg.payload[:64]).decode("ascii", "replace").split()
        if not text:
            return  # a cleared retained message
        if text[0] == "asleep":
            nxt = float(text[1]) if len(text) > 1 and text[1].isdigit() else None
            batch.shadow(device, availability="asleep", availability_at=now, next_wake=nxt)
        elif text[0] in ("lost", "online"):
            batch.shadow(device, availability=text[0], availability_at=now)
        else:
            self.stats.refuse("bad status")
            return
        events.append({"type": "availability", "device": device, "availability": text[0]})

    def _uplink(self, msg: Any, batch: UplinkBatch, now: float, events: list[dict],
                asks: list[tuple[int, int, int]] | None) -> None:
        """One uplink frame, verified in arrival order; asks None: a time request the
        network thread has answered already."""
        self.stats.uplinks += 1
        try:
            with self._verify_lock:
                f = secure.open_frame(msg.payload, self.table, self.ring)
            body = messages.read_payload(f)
        except SpotError as e:
            if e.code == REPLAYED:
                self.stats.duplicates += 1  # delivered twice: counted once
            elif e.code == NOT_FOR_ME:
                self._local_ack(msg, batch, now, events)
            elif e.code == NOT_PAIRED and time.monotonic() - self._keys_loaded > 1.0:
                self.reload_keys()  # a device provisioned since we loaded the keys
                self.inbox.put(msg)  # once more, with the new keys (rate-limited above)
                self.stats.uplinks -= 1
            else:
                self.stats.refuse(f"spot error {e.code}")  # codes, not details: a bounded set
            return
        what, value = uplink.classify(f, body)
        if what == "timesync":
            if asks is not None:
                asks.append((f.src, value, time.time_ns() // 1_000_000))
        elif what == "ack":
            seq, status, reason = value
            batch.acks.append((f.src, seq, status, reason, now))
        elif what in ("state", "meter", "capabilities"):
            batch.reports.append((f.src, f.seq, now, what, value))
            fields: dict[str, Any] = {what: value}
            if what == "state":
                fields["state_at"] = now
                if value.get("reset_cause"):
                    fields["reset_cause"] = value["reset_cause"]
            elif what == "capabilities":
                fields["capabilities_at"] = now
            fields[what + "_seq"] = f.seq  # never over a newer report of its kind
            batch.shadow(f.src, **fields)
            events.append({"type": what, "device": f.src, "body": value, "t": now})
        self._seen(batch, f.src, f.seq, now)

    def _local_ack(self, msg: Any, batch: UplinkBatch, now: float, events: list[dict],
                   again: bool = True) -> None:
        """An ACK a device gave another controller (a local one over UDP, reported when the
        cloud is reachable: SPEC 13.4; or a paired one over MQTT): an event and the device
        seen, never a cloud command's ACK (that controller's sequence numbers are its own)."""
        try:
            with self._verify_lock:
                f = secure.open_frame(msg.payload, self.local_table, self.local_ring)
            body = messages.read_payload(f)
        except SpotError as e:
            if e.code == NOT_PAIRED and again and time.monotonic() - self._keys_loaded > 1.0:
                self.reload_keys()  # paired since we loaded the keys
                return self._local_ack(msg, batch, now, events, again=False)
            if e.code == REPLAYED:
                self.stats.duplicates += 1
            else:
                self.stats.refuse(f"spot error {e.code}")
            return
        what, value = uplink.classify(f, body)
        if what != "ack":
            self.stats.refuse("bad local ack")
            return
        if self._paired.get((f.src, f.key_id)) != f.dst:
            # sealed under a pairing key but addressed to another controller: a device
            # must not report ACKs to controllers it was never paired with
            self.stats.refuse("local ack to another controller")
            return
        seq, status, reason = value
        # Counted once the store has it for the first time (_handle): the database, not
        # this process, remembers which were counted, across restarts and workers.
        once = (f.src, f.dst, seq)
        if once in batch.controller_acks:
            self.stats.duplicates += 1
        else:
            batch.controller_acks[once] = {"device": f.src, "controller": f.dst, "seq": seq,
                                           "status": status, "reason": reason, "t": now}
        self._seen(batch, f.src, f.seq, now)

    @staticmethod
    def _seen(batch: UplinkBatch, device: int, seq: int, now: float) -> None:
        batch.seen[device] = now
        batch.shadow(device, last_seen=now, uplink_seq=seq, availability="online", availability_at=now)

    def _answer_now(self, msg: Any) -> Any:
        """A time request, verified here on the network thread as it arrives and handed to
        the time thread, not queued behind the uplink loop's batch (whose store may take a
        while: a slow answer lengthens every device's wake). A frame that does not verify
        goes to the loop as it is, which counts why (or loads the keys of a device
        provisioned since)."""
        received_ms = time.time_ns() // 1_000_000
        try:
            with self._verify_lock:
                f = self._peek(msg.payload)
            body = messages.read_payload(f)
        except SpotError:
            return msg
        self.stats.uplinks += 1
        what, value = uplink.classify(f, body)
        if what == "timesync":
            self._asks.put((f.src, value, received_ms))
        return _Answered(msg, f.src, f.seq)

    def _peek(self, payload: bytes) -> Any:
        """open_frame that leaves the replay window as it was (the caller holds the lock).

        The network thread answers a time request ahead of the frames queued before it;
        had it recorded the request's counter, those frames (a device's outbox, sealed
        wakes earlier with counters 64 or more below) would be refused as replays by
        the uplink loop: reports lost in silence. The loop verifies the request again,
        in arrival order, and that check records it."""
        hdr = frame.decode(payload, self.table)
        key = self.ring.find(hdr.src, hdr.key_id)
        was = (key.highest, key.seen) if key is not None else None
        try:
            return secure.open_frame(payload, self.table, self.ring)
        finally:
            if key is not None and was is not None:
                key.highest, key.seen = was

    def _answer_loop(self) -> None:
        """Answer the time requests the network thread verified: whatever has arrived at
        once, so a burst (every device's first contact) shares one reservation of counters
        (a commit: an fsync on PostgreSQL) instead of one each."""
        while not self._stop.is_set():
            try:
                asks = [self._asks.get(timeout=0.2)]
            except queue.Empty:
                continue
            while len(asks) < BATCH_MAX:
                try:
                    asks.append(self._asks.get_nowait())
                except queue.Empty:
                    break
            try:
                self._answer_times(asks)
            except Exception as e:  # noqa: BLE001 - the next request is answered all the same
                log.exception("time answers: %s", e)

    def _answer_times(self, asks: list[tuple[int, int, int]]) -> None:
        """Answer time requests (device, echo, received ms): their counters reserved in one
        transaction (a transaction per answer was most of an answer's time), then each
        answer sealed and published."""
        try:
            seqs = self.store.next_seqs(CLOUD, [a[0] for a in asks])
        except OperationalError as e:
            self.stats.refuse("time answer: database unavailable")
            log.error("no counters for %d time answers: %s", len(asks), e)
            return
        for (device, echo, received_ms), seq in zip(asks, seqs):
            try:
                site = self.site_of(device)
                key = self.ring.for_peer(device)  # the newest key with the device seals the answer
                if key is None:
                    raise KeyError(f"no key with {device:08x}")
            except KeyError as e:
                self.stats.refuse("time answer: %s" % e)
                continue
            raw = builders.time_answer(device, CLOUD, seq, echo, received_ms,
                                       time.time_ns() // 1_000_000, key=key)
            # QoS 0: an answer is worth something only during the wake that asked; the
            # broker must not queue it for the next one (the device would refuse it).
            self.client.publish(topics.topic(site, device), raw, qos=0)
            self.stats.time_answers += 1


def _no_delay(sock: Any) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass
