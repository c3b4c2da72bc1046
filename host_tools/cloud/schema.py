"""The cloud's tables (SQLAlchemy Core): one schema for SQLite and PostgreSQL.

Addresses are 32-bit logical SPOT addresses, stored as BigInteger so the top
bit (groups) stays positive on PostgreSQL. Times are epoch seconds as floats.
Structured values (a state report, a capability record, a command's
parameters) are JSON text: the cloud reads them whole and never queries inside.
"""
from __future__ import annotations

from sqlalchemy import (BigInteger, Boolean, Column, Float, ForeignKey, Index, Integer,
                        LargeBinary, MetaData, String, Table, Text, UniqueConstraint)

metadata = MetaData()

schema_version = Table(
    "schema_version", metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", Float, nullable=False),
)

sites = Table(
    "sites", metadata,
    Column("name", String(64), primary_key=True),
    Column("group_address", BigInteger, nullable=False, unique=True),
    Column("group_key_id", Integer, nullable=False),
    Column("group_secret", LargeBinary(32), nullable=False),  # signs price forecasts to the site
    Column("created_at", Float, nullable=False),
)

devices = Table(
    "devices", metadata,
    Column("address", BigInteger, primary_key=True),
    Column("site", String(64), ForeignKey("sites.name"), nullable=False, index=True),
    Column("name", String(64)),
    Column("created_at", Float, nullable=False),
)

# Every key the cloud knows: a device's admin key with the cloud, pairings with
# controllers, and each site's group key (device = the group's address).
keys = Table(
    "keys", metadata,
    Column("device", BigInteger, primary_key=True),
    Column("key_id", Integer, primary_key=True),
    Column("peer", BigInteger, nullable=False),
    Column("secret", LargeBinary(32), nullable=False),
    Column("classes", Integer, nullable=False),
    Column("is_group", Boolean, nullable=False, default=False),
    Column("is_admin", Boolean, nullable=False, default=False),
    Column("state", String(16), nullable=False, default="active"),  # active | retiring
)

# The next sequence number a sender uses towards a receiver (a device, or a group).
# Counters are per receiver because each receiver keeps one replay window per key:
# several workers can then share a sender address without racing each other's windows.
counters = Table(
    "counters", metadata,
    Column("sender", BigInteger, primary_key=True),
    Column("receiver", BigInteger, primary_key=True),
    Column("next", BigInteger, nullable=False),
)

commands = Table(
    "commands", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("device", BigInteger, ForeignKey("devices.address"), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("params", Text, nullable=False),  # JSON, as the API took it
    Column("frame", LargeBinary, nullable=False),  # the sealed frame: a resend is these bytes
    # accepted -> published -> delivered -> applied | adapted | refused | expired |
    # unsupported; or cancelled before it was published.
    Column("state", String(16), nullable=False, index=True),
    Column("reason", Integer),  # the ACK's reason code
    Column("created_at", Float, nullable=False),
    Column("published_at", Float),
    Column("delivered_at", Float),
    Column("acked_at", Float),
    Column("sends", Integer, nullable=False, default=0),
    Column("requested_by", String(64), nullable=False),
    UniqueConstraint("device", "seq", name="uq_command_device_seq"),
)
Index("ix_commands_device_created", commands.c.device, commands.c.created_at)

# What each device last said: its "shadow".
shadows = Table(
    "shadows", metadata,
    Column("device", BigInteger, primary_key=True),
    Column("availability", String(16)),  # online | asleep | lost
    Column("availability_at", Float),
    Column("next_wake", Float),  # epoch s the device announced with "asleep <t>"
    Column("last_seen", Float),  # last verified uplink
    Column("state", Text),  # JSON: the last state report, named fields
    Column("state_at", Float),
    Column("meter", Text),  # JSON: the last meter report
    Column("capabilities", Text),  # JSON: the last capability record
    Column("capabilities_at", Float),
    Column("reset_cause", String(16)),
    Column("firmware", String(64)),
    Column("uplink_seq", BigInteger),  # highest uplink counter stored
    # The counter of the frame each report came in (migration 4): a report takes the
    # shadow only over an older one of its kind (SHADOW_GROUPS in store.py).
    Column("state_seq", BigInteger),
    Column("meter_seq", BigInteger),
    Column("capabilities_seq", BigInteger),
)

# Reports as a time series (bounded by retention). (device, seq) is unique, so a
# frame delivered twice, or by two workers, is stored once.
reports = Table(
    "reports", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("device", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("t", Float, nullable=False),
    Column("kind", String(16), nullable=False),  # state | meter | capabilities
    Column("body", Text, nullable=False),
    UniqueConstraint("device", "seq", name="uq_report_device_seq"),
)
Index("ix_reports_device_t", reports.c.device, reports.c.t)

audit = Table(
    "audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("t", Float, nullable=False, index=True),
    Column("who", String(64), nullable=False),
    Column("action", String(32), nullable=False),
    Column("detail", Text, nullable=False),
)

tokens = Table(
    "tokens", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("digest", String(64), nullable=False, unique=True),  # sha256 of the token
    Column("scopes", String(64), nullable=False),  # space-separated: read command admin
    Column("created_at", Float, nullable=False),
    Column("revoked", Boolean, nullable=False, default=False),
)

# The ACKs devices gave other controllers (a local one over UDP: SPEC 13.4), each
# (device, controller, acknowledged seq) once: a frame redelivered after a worker
# restarts, or the same ACK in a second frame, is counted once. Added by migration 3.
controller_acks = Table(
    "controller_acks", metadata,
    Column("device", BigInteger, primary_key=True),
    Column("controller", BigInteger, primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("t", Float, nullable=False, index=True),
    Column("status", String(16), nullable=False),
    Column("reason", Integer),
)

# What each plugin keeps across restarts (registrations, open events, report
# subscriptions): JSON by (plugin, site, key). Added by migration 2.
plugin_state = Table(
    "plugin_state", metadata,
    Column("plugin", String(64), primary_key=True),
    Column("site", String(64), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)
