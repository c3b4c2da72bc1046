"""The cloud's database access: every SQL statement the service runs is here.

SQLite (a file, the default) or PostgreSQL (by URL), through SQLAlchemy Core.
Writes that must not be lost (a command accepted, a counter advanced) commit
before the caller answers; uplinks are written in batches, one transaction per
batch, which is what lets one worker store thousands of frames a second.
"""
from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from sqlalchemy import (Connection, Engine, and_, bindparam, case, create_engine, event, func, insert,
                        select, update)
from sqlalchemy.exc import DataError, IntegrityError

from host_tools.cloud import migrations
from host_tools.cloud.schema import (audit, commands, controller_acks, counters, devices, keys,
                                     plugin_state, reports, shadows, sites, tokens)

log = logging.getLogger("spot.cloud.store")

# A shadow's fields that come with each kind of report, ordered by <kind>_seq: the
# counter of the frame they came in. The rest (last seen, availability) follow arrival.
SHADOW_GROUPS = {"state": ("state", "state_at", "reset_cause"), "meter": ("meter",),
                 "capabilities": ("capabilities", "capabilities_at")}

CLOUD = 0x00000001  # the cloud's own logical address (as in the JSON registry)
DEVICE_KEY_ID = 1
GROUP_KEY_ID = 128
OPEN_STATES = ("accepted", "published", "delivered")  # still waiting for an ACK
FINAL_STATES = ("applied", "adapted", "refused", "expired", "unsupported", "cancelled")
SCOPES = ("read", "command", "admin")


class NotFound(LookupError):
    """A device, site, command or token the request named does not exist."""


class Conflict(ValueError):
    """The request contradicts what is stored (cancel a published command, a duplicate name)."""


def database_url(db: str) -> str:
    """A SQLAlchemy URL from what a user types: a path (SQLite) or a URL."""
    if "://" not in db:
        return f"sqlite:///{db}"
    if db.startswith("postgresql://"):
        return "postgresql+psycopg://" + db[len("postgresql://"):]
    return db


def make_engine(db: str) -> Engine:
    url = database_url(db)
    if url.startswith("sqlite"):
        # A locked database fails a request after 5 s (a 503 the client sees) rather than
        # 30 s, past any client's timeout, when a late commit would answer a closed socket.
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 5})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            # WAL: readers never wait for the writer. synchronous=NORMAL: a commit
            # survives the process being killed (only an OS crash can lose the last
            # commits), at a fraction of FULL's fsyncs.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.close()
        return engine
    return create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


@dataclass
class KeyRow:
    device: int
    key_id: int
    peer: int
    secret: bytes
    classes: int
    is_group: bool
    is_admin: bool
    state: str


def _dump(v: Any) -> str:
    return json.dumps(v, separators=(",", ":"), sort_keys=True)


def _load(v: str | None) -> Any:
    return None if v is None else json.loads(v)


class Store:
    def __init__(self, db: str) -> None:
        self.engine = make_engine(db)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        migrations.migrate(self.engine)
        # Counter blocks this process holds: (sender, receiver) -> (next, end, reserved_at).
        self._blocks: dict[tuple[int, int], tuple[int, int, float]] = {}
        self._block_lock = threading.Lock()
        self._write_lock = threading.Lock()  # SQLite: see _writing()
        self._shadow_upserts: dict[tuple[str, ...], Any] = {}  # field names -> statement
        self._reserve_stmt: Any = None

    def close(self) -> None:
        self.engine.dispose()

    # registry -----------------------------------------------------------------
    def add_site(self, conn: Connection, name: str, group: int | None = None,
                 group_key_id: int = GROUP_KEY_ID, secret: bytes | None = None) -> dict:
        row = conn.execute(select(sites).where(sites.c.name == name)).mappings().first()
        if row:
            return dict(row)
        if group is None:
            group = 0x80000001 + (conn.execute(select(func.count()).select_from(sites)).scalar() or 0)
        values = dict(name=name, group_address=group, group_key_id=group_key_id,
                      group_secret=secret or secrets.token_bytes(32), created_at=time.time())
        conn.execute(insert(sites).values(**values))
        return values

    def put_key(self, conn: Connection, k: KeyRow) -> None:
        existing = conn.execute(select(keys.c.device).where(
            and_(keys.c.device == k.device, keys.c.key_id == k.key_id))).first()
        values = dict(peer=k.peer, secret=k.secret, classes=k.classes, is_group=k.is_group,
                      is_admin=k.is_admin, state=k.state)
        if existing:
            old = conn.execute(select(keys.c.secret).where(
                and_(keys.c.device == k.device, keys.c.key_id == k.key_id))).scalar()
            conn.execute(update(keys).where(and_(keys.c.device == k.device, keys.c.key_id == k.key_id))
                         .values(**values))
            if old != k.secret and not k.is_group:
                # A new secret is a device provisioned again: its counter may start over,
                # and its shadow must not wait for the old life's highest frame.
                conn.execute(update(shadows).where(shadows.c.device == k.device).values(
                    uplink_seq=None, **{g + "_seq": None for g in SHADOW_GROUPS}))
        else:
            conn.execute(insert(keys).values(device=k.device, key_id=k.key_id, **values))

    def provision(self, site: str, address: int | None = None, name: str | None = None) -> int:
        """A new device in a site: its admin key with the cloud and the site's group key."""
        from spot.keyring import GROUP_CLASSES

        with self.engine.begin() as conn:
            s = self.add_site(conn, site)
            if address is None:
                highest = conn.execute(select(func.max(devices.c.address))).scalar() or 0xFF
                address = highest + 1
            if not 0 < address < 0x80000000 or address == CLOUD:
                raise ValueError(f"{address:#x} is not a device address (2..0x7fffffff)")
            if conn.execute(select(devices.c.address).where(devices.c.address == address)).first():
                raise Conflict(f"device {address:08x} is already provisioned")
            conn.execute(insert(devices).values(address=address, site=site, name=name,
                                                created_at=time.time()))
            self.put_key(conn, KeyRow(address, DEVICE_KEY_ID, CLOUD, secrets.token_bytes(32), 0xFF,
                                      False, True, "active"))
            self.put_key(conn, KeyRow(address, s["group_key_id"], CLOUD, s["group_secret"],
                                      GROUP_CLASSES, True, False, "active"))
            self.audit(conn, "cli", "provision", {"device": address, "site": site})
        return address

    def import_registry(self, data: dict, cloud_counter: int = 0) -> dict[str, int]:
        """Take a JSON registry (spot provision's registry.json) into the database; idempotent."""
        n = {"sites": 0, "devices": 0, "keys": 0}
        with self.engine.begin() as conn:
            for name, s in data.get("sites", {}).items():
                self.add_site(conn, name, int(s["group"]), int(s["key_id"]), bytes.fromhex(s["secret"]))
                n["sites"] += 1
            for hexaddr, d in data.get("devices", {}).items():
                address = int(hexaddr, 16)
                if not conn.execute(select(devices.c.address).where(devices.c.address == address)).first():
                    conn.execute(insert(devices).values(address=address, site=d["site"],
                                                        name=d.get("name"), created_at=time.time()))
                n["devices"] += 1
                if cloud_counter:
                    # Frames the JSON-era controller sent used counters up to here:
                    # the device's window must see ours above them.
                    self._raise_counter(conn, CLOUD, address, cloud_counter)
            for r in data.get("keys", []):
                self.put_key(conn, KeyRow(int(r["device"]), int(r["key_id"]), int(r["peer"]),
                                          bytes.fromhex(r["secret"]), int(r["classes"]),
                                          bool(r["group"]), bool(r["admin"]), r["state"]))
                n["keys"] += 1
            if cloud_counter:
                for s in data.get("sites", {}).values():
                    self._raise_counter(conn, CLOUD, int(s["group"]), cloud_counter)
            self.audit(conn, "cli", "import", n)
        return n

    def sites(self) -> list[dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(sites.c.name, sites.c.group_address, sites.c.created_at,
                                       func.count(devices.c.address).label("devices"))
                                .select_from(sites.outerjoin(devices, devices.c.site == sites.c.name))
                                .group_by(sites.c.name, sites.c.group_address, sites.c.created_at)
                                .order_by(sites.c.name)).mappings().all()
        return [dict(r) for r in rows]

    def site(self, name: str) -> dict:
        with self.engine.connect() as conn:
            row = conn.execute(select(sites).where(sites.c.name == name)).mappings().first()
        if row is None:
            raise NotFound(f"no site called {name!r}")
        return dict(row)

    def device(self, address: int) -> dict:
        with self.engine.connect() as conn:
            row = conn.execute(select(devices).where(devices.c.address == address)).mappings().first()
        if row is None:
            raise NotFound(f"no device {address:08x} in the registry")
        return dict(row)

    def devices(self, site: str | None = None) -> list[dict]:
        q = (select(devices, shadows).select_from(devices.outerjoin(shadows, shadows.c.device == devices.c.address))
             .order_by(devices.c.address))
        if site:
            q = q.where(devices.c.site == site)
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return [self._shadow_view(dict(r)) for r in rows]

    def key_rows(self, device: int | None = None) -> list[KeyRow]:
        q = select(keys).order_by(keys.c.device, keys.c.key_id)
        if device is not None:
            q = q.where(keys.c.device == device)
        with self.engine.connect() as conn:
            return [KeyRow(**dict(r)) for r in conn.execute(q).mappings().all()]

    def cloud_key(self, conn: Connection, device: int) -> KeyRow:
        """The key the cloud seals frames to `device` with: its newest active cloud key."""
        row = conn.execute(select(keys).where(and_(
            keys.c.device == device, keys.c.peer == CLOUD, keys.c.is_group.is_(False),
            keys.c.state == "active")).order_by(keys.c.key_id.desc()).limit(1)).mappings().first()
        if row is None:
            raise NotFound(f"device {device:08x} has no active key with the cloud")
        return KeyRow(**dict(row))

    # counters -----------------------------------------------------------------
    def _raise_counter(self, conn: Connection, sender: int, receiver: int, at_least: int) -> None:
        row = conn.execute(select(counters.c.next).where(and_(
            counters.c.sender == sender, counters.c.receiver == receiver))).first()
        if row is None:
            conn.execute(insert(counters).values(sender=sender, receiver=receiver, next=at_least))
        elif row[0] < at_least:
            conn.execute(update(counters).where(and_(counters.c.sender == sender,
                                                     counters.c.receiver == receiver))
                         .values(next=at_least))

    def reserve(self, conn: Connection, sender: int, receiver: int, n: int = 1) -> int:
        """Reserve n counters (committed with conn's transaction); the first of them."""
        if self._reserve_stmt is None:
            # One statement, built once: insert the row at 1 + n, or add n to it, and return
            # the new next. The upsert takes the row lock, so two workers queue up instead
            # of racing. (Building a statement per call cost more than running it.)
            if self.engine.dialect.name == "postgresql":
                from sqlalchemy.dialects.postgresql import insert as dialect_insert
            else:
                from sqlalchemy.dialects.sqlite import insert as dialect_insert
            ins = dialect_insert(counters).values(sender=bindparam("s"), receiver=bindparam("r"),
                                                  next=bindparam("fresh"))
            self._reserve_stmt = ins.on_conflict_do_update(
                index_elements=[counters.c.sender, counters.c.receiver],
                set_={"next": counters.c.next + bindparam("n")}).returning(counters.c.next)
        nxt = conn.execute(self._reserve_stmt, {"s": sender, "r": receiver, "fresh": 1 + n, "n": n}).scalar_one()
        return int(nxt) - n

    BLOCK = 8
    BLOCK_LIFETIME_S = 2.0
    WINDOW = 64  # a device's replay window (spot.keyring.WINDOW)

    def next_seq(self, sender: int, receiver: int) -> int:
        """A counter for a frame that need not be stored (a time answer), from a block this
        process reserved. Another worker may be sending to the same device meanwhile, and
        the device's replay window (64) must still hold every counter either of us sends:
        a block is used freely for BLOCK_LIFETIME_S, and after that only while the
        counters reserved since (the database's next) stay within half the window of it."""
        return self.next_seqs(sender, [receiver])[0]

    def next_seqs(self, sender: int, receivers: list[int]) -> list[int]:
        """next_seq for each of receivers (a batch's time answers). A device wakes every
        few minutes, so most of its blocks are older than the lifetime: one read checks
        them all, and one transaction reserves every block needed, in address order
        (PostgreSQL row locks taken in one order by every worker never deadlock). A
        reservation per answer (a commit, an fsync on PostgreSQL) was most of its time."""
        now = time.monotonic()
        with self._block_lock:
            def usable(r: int) -> bool:
                nxt, end, _ = self._blocks.get((sender, r), (0, 0, 0.0))
                return nxt < end

            old = sorted({r for r in receivers if usable(r)
                          and now - self._blocks[(sender, r)][2] > self.BLOCK_LIFETIME_S})
            if old:
                with self.engine.connect() as conn:
                    reserved = dict(conn.execute(select(counters.c.receiver, counters.c.next).where(and_(
                        counters.c.sender == sender, counters.c.receiver.in_(old)))).all())
                for r in old:
                    nxt, end, _ = self._blocks[(sender, r)]
                    if reserved.get(r, end) - nxt <= self.WINDOW // 2:
                        self._blocks[(sender, r)] = (nxt, end, now)
                    else:
                        del self._blocks[(sender, r)]
            out = []
            fresh = sorted({r for r in receivers if not usable(r)})
            for r in receivers:
                if not usable(r):  # new, spent, or others sent too much since
                    with self._writing() as conn:
                        for f in fresh or [r]:
                            first = self.reserve(conn, sender, f, self.BLOCK)
                            self._blocks[(sender, f)] = (first, first + self.BLOCK, now)
                    fresh = []
                nxt, end, at = self._blocks[(sender, r)]
                self._blocks[(sender, r)] = (nxt + 1, end, at)
                out.append(nxt)
            return out

    # commands -----------------------------------------------------------------
    def create_command(self, device: int, kind: str, params: dict, who: str,
                       seal: Callable[[int, KeyRow], bytes]) -> dict:
        """Accept a command: reserve its counter, seal its frame, store both in one commit.

        Once this returns the command exists durably; publishing it is the tracker's job
        and a restart publishes whatever was not yet acknowledged."""
        with self.engine.begin() as conn:
            key = self.cloud_key(conn, device)
            seq = self.reserve(conn, CLOUD, device)
            raw = seal(seq, key)
            cid = conn.execute(insert(commands).values(
                device=device, seq=seq, kind=kind, params=_dump(params), frame=raw, state="accepted",
                created_at=time.time(), sends=0, requested_by=who).returning(commands.c.id)).scalar_one()
            self.audit(conn, who, "command", {"id": cid, "device": device, "kind": kind, "params": params})
        out = self.command(cid)
        out["frame"] = raw  # for the caller to publish; views never carry it
        return out

    def signal_frame(self, site: str, who: str, kind: str, params: dict,
                     seal: Callable[[int, KeyRow, int], bytes]) -> tuple[int, bytes]:
        """An informational signal to a site's group under its group key (not tracked: no ACK)."""
        with self.engine.begin() as conn:
            s = conn.execute(select(sites).where(sites.c.name == site)).mappings().first()
            if s is None:
                raise NotFound(f"no site called {site!r}")
            group = int(s["group_address"])
            seq = self.reserve(conn, CLOUD, group)
            key = KeyRow(group, s["group_key_id"], CLOUD, s["group_secret"], 0, True, False, "active")
            raw = seal(seq, key, group)
            self.audit(conn, who, "signal", {"site": site, "kind": kind, "params": params})
        return group, raw

    def command(self, cid: int) -> dict:
        with self.engine.connect() as conn:
            row = conn.execute(select(commands).where(commands.c.id == cid)).mappings().first()
        if row is None:
            raise NotFound(f"no command {cid}")
        return self._command_view(dict(row))

    def commands(self, device: int | None = None, states: Iterable[str] | None = None,
                 limit: int = 100) -> list[dict]:
        q = select(commands).order_by(commands.c.id.desc()).limit(limit)
        if device is not None:
            q = q.where(commands.c.device == device)
        if states:
            q = q.where(commands.c.state.in_(list(states)))
        with self.engine.connect() as conn:
            return [self._command_view(dict(r)) for r in conn.execute(q).mappings().all()]

    def open_commands(self) -> list[dict]:
        """Every command still waiting for its ACK, oldest first, with its frame."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(commands).where(commands.c.state.in_(OPEN_STATES))
                                .order_by(commands.c.id)).mappings().all()
        return [dict(r) for r in rows]

    def claim(self, cid: int) -> bool:
        """Before a command's frame goes to the broker: count the send, unless the command
        was cancelled or has ended. From then on a cancel is refused (cancel() wants
        sends == 0): the frame may already sit in the device's queue."""
        with self.engine.begin() as conn:
            return bool(conn.execute(update(commands).where(and_(
                commands.c.id == cid, commands.c.state.in_(OPEN_STATES)))
                .values(sends=commands.c.sends + 1)).rowcount)

    def mark_published(self, ids: list[int]) -> list[int]:
        """The broker has the frames (PUBACK); the ids that became "published" (a connected
        device's ACK can come back before the broker's PUBACK: that command stays answered)."""
        if not ids:
            return []
        now = time.time()
        with self.engine.begin() as conn:
            conn.execute(update(commands).where(commands.c.id.in_(ids))
                         .values(published_at=func.coalesce(commands.c.published_at, now)))
            return list(conn.execute(update(commands).where(and_(
                commands.c.id.in_(ids), commands.c.state == "accepted"))
                .values(state="published").returning(commands.c.id)).scalars())

    def cancel(self, cid: int, who: str) -> dict:
        with self.engine.begin() as conn:
            n = conn.execute(update(commands).where(and_(commands.c.id == cid, commands.c.state == "accepted",
                                                         commands.c.sends == 0))
                             .values(state="cancelled", acked_at=time.time())).rowcount
            if not n:
                row = conn.execute(select(commands.c.state).where(commands.c.id == cid)).first()
                if row is None:
                    raise NotFound(f"no command {cid}")
                state = "being published" if row[0] == "accepted" else row[0]
                raise Conflict(f"command {cid} is {state}: only a command not yet handed to the "
                               "broker can be cancelled (a published one waits in the device's "
                               "queue and is applied at its next wake unless it expires)")
            self.audit(conn, who, "cancel", {"id": cid})
        return self.command(cid)

    # uplinks (a batch per transaction) -------------------------------------------
    def store_uplinks(self, batch: "UplinkBatch") -> list[dict]:
        """Write a batch of verified uplinks; return the commands whose state changed.
        The controller ACKs recorded for the first time are left in batch.new_controller_acks."""
        changed: list[dict] = []
        if batch.empty():
            return changed
        # Every table in one order, and rows in address order within each: two workers
        # writing the same devices (a frame delivered to both) take their row locks in one
        # order and never deadlock (PostgreSQL aborts one of a deadlocked pair).
        with self._writing() as conn:
            if batch.reports:
                ins = self._insert_ignore(reports)
                conn.execute(ins, [dict(device=r[0], seq=r[1], t=r[2], kind=r[3], body=_dump(r[4]))
                                   for r in sorted(batch.reports, key=lambda r: (r[0], r[1]))])
            self._upsert_shadows(conn, batch.shadows)
            if batch.seen:
                # A device that speaks has drained its queue: what was published before
                # its wake began has reached it. One query finds them (usually none).
                rows = conn.execute(select(commands.c.id, commands.c.device, commands.c.published_at)
                                    .where(and_(commands.c.state == "published",
                                                commands.c.device.in_(sorted(batch.seen))))).all()
                due = [{"cid": r.id, "seen": batch.seen[r.device]} for r in sorted(rows)
                       if r.published_at is not None and r.published_at <= batch.seen[r.device]]
                if due:
                    conn.execute(update(commands).where(and_(
                        commands.c.id == bindparam("cid"), commands.c.state == "published"))
                        .values(state="delivered", delivered_at=bindparam("seen")), due)
            for device, seq, status, reason, t in sorted(batch.acks, key=lambda a: (a[0], a[1])):
                row = conn.execute(update(commands).where(and_(
                    commands.c.device == device, commands.c.seq == seq,
                    commands.c.state.in_(OPEN_STATES)))
                    .values(state=status, reason=reason, acked_at=t,
                            delivered_at=func.coalesce(commands.c.delivered_at, t))
                    .returning(commands.c.id, commands.c.device, commands.c.kind,
                               commands.c.state, commands.c.reason)).mappings().first()
                if row:
                    changed.append(dict(row))
            batch.new_controller_acks = []
            ins = self._insert_ignore(controller_acks)
            for a in sorted(batch.controller_acks.values(), key=lambda a: (a["device"], a["controller"], a["seq"])):
                if conn.execute(ins.values(**a).returning(controller_acks.c.seq)).first() is not None:
                    batch.new_controller_acks.append(a)
        return changed

    def store_uplinks_apart(self, batch: "UplinkBatch") -> tuple[list[dict], int]:
        """store_uplinks for a batch the database refused for its content (DataError,
        IntegrityError: a value a column cannot hold), one row to a transaction: the rows
        it takes are stored, the others skipped and logged. (changed commands, rows
        skipped); batch.new_controller_acks as store_uplinks leaves it."""
        changed: list[dict] = []
        new_acks: list[dict] = []
        skipped = 0
        for part in batch.rows():
            try:
                changed += self.store_uplinks(part)
            except (DataError, IntegrityError) as e:
                skipped += 1
                log.error("uplink row refused by the database, skipped: %s", str(e).splitlines()[0])
                continue
            new_acks += part.new_controller_acks
        batch.new_controller_acks = new_acks
        return changed, skipped

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        """A write transaction of the uplink loop or the time answers. On SQLite these two
        threads' writes queue on a lock here: two connections that meet on SQLite's own
        lock wait in its busy handler, which sleeps in steps of up to 100 ms (a time answer
        waited that long behind a batch). PostgreSQL locks rows, not the database."""
        if not self.is_sqlite:
            with self.engine.begin() as conn:
                yield conn
            return
        with self._write_lock, self.engine.begin() as conn:
            yield conn

    def _insert_ignore(self, table: Any) -> Any:
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert
            return pg_insert(table).on_conflict_do_nothing()
        from sqlalchemy.dialects.sqlite import insert as lite_insert
        return lite_insert(table).on_conflict_do_nothing()

    def _upsert_shadows(self, conn: Connection, by_device: dict[int, dict]) -> None:
        """Many devices' shadow fields: rows in address order (so two workers lock rows in
        one order and never deadlock), each run of rows with the same field names in one
        executemany (a batch's reports mostly share them). Building a statement per device
        cost more than the database's work."""
        runs: list[tuple[tuple[str, ...], list[dict]]] = []
        for device in sorted(by_device):
            fields = by_device[device]
            row = {k: (_dump(v) if k in ("state", "meter", "capabilities") else v) for k, v in fields.items()}
            row["device"] = device
            names = tuple(sorted(fields))
            if runs and runs[-1][0] == names:
                runs[-1][1].append(row)
            else:
                runs.append((names, [row]))
        for names, rows in runs:
            stmt = self._shadow_upserts.get(names)
            if stmt is None:
                if self.engine.dialect.name == "postgresql":
                    from sqlalchemy.dialects.postgresql import insert as pg_insert
                    ins = pg_insert(shadows)
                else:
                    from sqlalchemy.dialects.sqlite import insert as lite_insert
                    ins = lite_insert(shadows)
                set_ = {k: ins.excluded[k] for k in names}
                # A report's fields only over an older report of its kind: another worker,
                # or this one restarted, may have stored a later frame of the device's (its
                # counter orders its frames); an older one redelivered changes nothing.
                for group, cols in SHADOW_GROUPS.items():
                    seq = group + "_seq"
                    if seq in set_:
                        newer = ins.excluded[seq] >= func.coalesce(shadows.c[seq], -1)
                        for col in (*cols, seq):
                            if col in set_:
                                set_[col] = case((newer, ins.excluded[col]), else_=shadows.c[col])
                if "uplink_seq" in set_:  # the highest stored
                    highest = func.max if self.is_sqlite else func.greatest
                    set_["uplink_seq"] = highest(func.coalesce(shadows.c.uplink_seq, 0),
                                                 ins.excluded.uplink_seq)
                stmt = self._shadow_upserts[names] = ins.on_conflict_do_update(
                    index_elements=[shadows.c.device], set_=set_)
            conn.execute(stmt, rows)

    def _upsert_shadow(self, conn: Connection, device: int, fields: dict) -> None:
        values = {k: (_dump(v) if k in ("state", "meter", "capabilities") else v) for k, v in fields.items()}
        if "uplink_seq" in values:
            # Another worker may have stored a later frame: keep the highest.
            seq = values.pop("uplink_seq")
            values["uplink_seq"] = func.max(func.coalesce(shadows.c.uplink_seq, 0), seq) if self.is_sqlite \
                else func.greatest(func.coalesce(shadows.c.uplink_seq, 0), seq)
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert
            ins = pg_insert(shadows)
        else:
            from sqlalchemy.dialects.sqlite import insert as lite_insert
            ins = lite_insert(shadows)
        plain = {k: (fields["uplink_seq"] if k == "uplink_seq" else v) for k, v in values.items()}
        conn.execute(ins.values(device=device, **plain).on_conflict_do_update(
            index_elements=[shadows.c.device], set_=values))

    def set_availability(self, device: int, availability: str, next_wake: float | None) -> None:
        with self.engine.begin() as conn:
            self._upsert_shadow(conn, device, {"availability": availability,
                                               "availability_at": time.time(), "next_wake": next_wake})

    # shadows and reports ------------------------------------------------------------
    def shadow(self, device: int) -> dict:
        with self.engine.connect() as conn:
            d = conn.execute(select(devices).where(devices.c.address == device)).mappings().first()
            if d is None:
                raise NotFound(f"no device {device:08x} in the registry")
            s = conn.execute(select(shadows).where(shadows.c.device == device)).mappings().first()
        out = dict(d)
        out.update(dict(s) if s else {})
        return self._shadow_view(out)

    def reports(self, device: int, since: float = 0.0, limit: int = 500, kind: str | None = None) -> list[dict]:
        q = (select(reports).where(and_(reports.c.device == device, reports.c.t >= since))
             .order_by(reports.c.t.desc()).limit(limit))
        if kind:
            q = q.where(reports.c.kind == kind)
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return [{"seq": r["seq"], "t": r["t"], "kind": r["kind"], "body": _load(r["body"])} for r in reversed(rows)]

    def prune(self, keep_s: float) -> int:
        """Drop reports (and the controller ACKs recorded) older than the retention; the
        shadow keeps the latest of each. The number of reports dropped."""
        with self.engine.begin() as conn:
            cut = time.time() - keep_s
            conn.execute(controller_acks.delete().where(controller_acks.c.t < cut))
            return conn.execute(reports.delete().where(reports.c.t < cut)).rowcount

    # audit and tokens ------------------------------------------------------------------
    def audit(self, conn: Connection, who: str, action: str, detail: Any) -> None:
        conn.execute(insert(audit).values(t=time.time(), who=who, action=action, detail=_dump(detail)))

    def audit_log(self, limit: int = 100) -> list[dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(audit).order_by(audit.c.id.desc()).limit(limit)).mappings().all()
        return [dict(r, detail=_load(r["detail"])) for r in rows]

    def create_token(self, name: str, scopes: list[str]) -> str:
        bad = [s for s in scopes if s not in SCOPES]
        if bad or not scopes:
            raise ValueError(f"scopes are {', '.join(SCOPES)}; got {' '.join(scopes) or 'none'}")
        token = "spot_" + secrets.token_urlsafe(32)
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(tokens).values(name=name, digest=_digest(token), scopes=" ".join(scopes),
                                                   created_at=time.time(), revoked=False))
                self.audit(conn, "cli", "token", {"name": name, "scopes": scopes})
        except IntegrityError:
            raise Conflict(f"a token called {name!r} exists already") from None
        return token

    def token(self, token: str) -> tuple[str, set[str]] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(tokens.c.name, tokens.c.scopes).where(and_(
                tokens.c.digest == _digest(token), tokens.c.revoked.is_(False)))).first()
        return (row[0], set(row[1].split())) if row else None

    def revoke_token(self, name: str) -> None:
        with self.engine.begin() as conn:
            if not conn.execute(update(tokens).where(tokens.c.name == name).values(revoked=True)).rowcount:
                raise NotFound(f"no token called {name!r}")

    # plugin state ----------------------------------------------------------------------
    def plugin_get(self, plugin: str, site: str, key: str) -> Any:
        with self.engine.connect() as conn:
            v = conn.execute(select(plugin_state.c.value).where(and_(
                plugin_state.c.plugin == plugin, plugin_state.c.site == site,
                plugin_state.c.key == key))).scalar()
        return _load(v)

    def plugin_put(self, plugin: str, site: str, key: str, value: Any) -> None:
        where = and_(plugin_state.c.plugin == plugin, plugin_state.c.site == site, plugin_state.c.key == key)
        with self.engine.begin() as conn:
            if value is None:
                conn.execute(plugin_state.delete().where(where))
            elif conn.execute(update(plugin_state).where(where).values(
                    value=_dump(value), updated_at=time.time())).rowcount == 0:
                conn.execute(insert(plugin_state).values(plugin=plugin, site=site, key=key,
                                                         value=_dump(value), updated_at=time.time()))

    def plugin_items(self, plugin: str, site: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(plugin_state.c.key, plugin_state.c.value).where(and_(
                plugin_state.c.plugin == plugin, plugin_state.c.site == site))).all()
        return {k: _load(v) for k, v in rows}

    # views ---------------------------------------------------------------------------
    @staticmethod
    def _command_view(r: dict) -> dict:
        r = dict(r)
        r["params"] = _load(r["params"])
        r["frame_bytes"] = len(r.pop("frame", b"") or b"")
        return r

    @staticmethod
    def _shadow_view(r: dict) -> dict:
        r = dict(r)
        for k in ("state", "meter", "capabilities"):
            r[k] = _load(r.get(k))
        r.pop("device", None)
        for g in SHADOW_GROUPS:  # bookkeeping, not the device's
            r.pop(g + "_seq", None)
        return r


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class UplinkBatch:
    """What one pass of the uplink loop writes in one transaction."""

    def __init__(self) -> None:
        self.reports: list[tuple[int, int, float, str, Any]] = []
        self.shadows: dict[int, dict] = {}
        self.acks: list[tuple[int, int, str, int | None, float]] = []
        self.seen: dict[int, float] = {}
        # ACKs to other controllers by (device, controller, seq); the store leaves the
        # ones it had not recorded before in new_controller_acks.
        self.controller_acks: dict[tuple[int, int, int], dict] = {}
        self.new_controller_acks: list[dict] = []

    def empty(self) -> bool:
        return not (self.reports or self.shadows or self.acks or self.seen or self.controller_acks)

    def rows(self) -> Iterator["UplinkBatch"]:
        """The batch as batches of one row each (Store.store_uplinks_apart)."""
        one = ([("reports", [r]) for r in self.reports]
               + [("shadows", {d: f}) for d, f in self.shadows.items()]
               + [("seen", {d: t}) for d, t in self.seen.items()]
               + [("acks", [a]) for a in self.acks]
               + [("controller_acks", {k: a}) for k, a in self.controller_acks.items()])
        for part, rows in one:
            b = UplinkBatch()
            setattr(b, part, rows)
            yield b

    def shadow(self, device: int, **fields: Any) -> None:
        """Fields of a device's shadow. A report's (with its <kind>_seq) older than one of
        its kind this batch has already taken changes nothing; uplink_seq is the highest."""
        have = self.shadows.setdefault(device, {})
        for group in SHADOW_GROUPS:
            seq = group + "_seq"
            if seq in fields and fields[seq] < have.get(seq, -1):
                return
        if "uplink_seq" in fields:
            fields["uplink_seq"] = max(fields["uplink_seq"], have.get("uplink_seq", 0))
        have.update(fields)


__all__ = ["Store", "UplinkBatch", "NotFound", "Conflict", "KeyRow", "CLOUD", "OPEN_STATES",
           "FINAL_STATES", "SCOPES"]
