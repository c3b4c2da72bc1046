"""Schema migrations: numbered steps, each applied once, in order, in one transaction.

Small on purpose (no Alembic): a step is a function of a connection. Step 1
creates the tables of schema.py as they were at version 1; later steps alter
them. `schema_version` records what ran, so `migrate()` is safe to call at every
start, by every worker (PostgreSQL: an advisory lock makes them take turns).
Never edit a released step: add one.
"""
from __future__ import annotations

import time
from typing import Callable

from sqlalchemy import Connection, Engine, inspect, select, text

from host_tools.cloud import schema

Step = Callable[[Connection], None]


_V1 = ("sites", "devices", "keys", "counters", "commands", "shadows", "reports", "audit", "tokens")


def _v1(conn: Connection) -> None:
    schema.metadata.create_all(conn, tables=[schema.metadata.tables[n] for n in _V1])


def _v2(conn: Connection) -> None:
    schema.plugin_state.create(conn)


def _v3(conn: Connection) -> None:
    schema.controller_acks.create(conn)


def _v4(conn: Connection) -> None:
    # Step 1 creates the tables as schema.py has them now: the columns may be there.
    have = {c["name"] for c in inspect(conn).get_columns("shadows")}
    for kind in ("state", "meter", "capabilities"):
        if kind + "_seq" not in have:
            conn.execute(text(f"ALTER TABLE shadows ADD COLUMN {kind}_seq BIGINT"))
        # The report a shadow holds came in a frame no later than the highest stored.
        conn.execute(text(f"UPDATE shadows SET {kind}_seq = uplink_seq "
                          f"WHERE {kind} IS NOT NULL AND {kind}_seq IS NULL"))


STEPS: list[tuple[int, str, Step]] = [
    (1, "registry, counters, commands, shadows, reports, audit, tokens", _v1),
    (2, "plugin state", _v2),
    (3, "controller ACKs, each counted once", _v3),
    (4, "a shadow's reports ordered by their frames' counters", _v4),
]
LATEST = STEPS[-1][0]
_LOCK_ID = 0x5907  # PostgreSQL advisory lock: one migrating worker at a time


def current(conn: Connection) -> int:
    schema.schema_version.create(conn, checkfirst=True)
    v = conn.execute(select(schema.schema_version.c.version)
                     .order_by(schema.schema_version.c.version.desc()).limit(1)).scalar()
    return int(v or 0)


def migrate(engine: Engine, steps: list[tuple[int, str, Step]] | None = None) -> list[int]:
    """Apply the steps not yet applied; return their numbers."""
    steps = STEPS if steps is None else steps
    done: list[int] = []
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_ID})
        have = current(conn)
        if have > steps[-1][0]:
            raise RuntimeError(f"the database is at schema version {have}, newer than this "
                               f"code ({steps[-1][0]}): upgrade the service")
        for number, _what, step in steps:
            if number > have:
                step(conn)
                conn.execute(schema.schema_version.insert().values(version=number,
                                                                   applied_at=time.time()))
                done.append(number)
    return done
