"""`spot cloud serve`: the store, the MQTT bridge, the API and the dashboard in one process.

A worker is this process. One holds a few thousand devices; more run the same
code side by side (`--workers N` starts them, or a process manager does), each
with its own --worker id, sharing the uplinks through an MQTT shared subscription
and the state through PostgreSQL.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported by serve(): every `spot` command imports this module, few serve
    from host_tools.cloud.store import Store

log = logging.getLogger("spot.cloud")


@dataclass
class Settings:
    db: str = "build/cloud.sqlite"  # a path (SQLite) or postgresql://...
    broker: str = "127.0.0.1:1883"
    host: str = "127.0.0.1"
    port: int = 8080
    worker: str = "0"
    shared: str | None = None  # the shared-subscription group, when several workers run
    retention_days: float = 30.0
    plugins: str | None = None  # a TOML file enabling plugins per site (plugins/__init__.py)
    broker_user: str | None = None  # an access-controlled broker: the cloud's account
    broker_password: str | None = None
    broker_ca: str | None = None  # TLS to the broker, verified against this CA (PEM)


def serve(s: Settings) -> int:
    import asyncio

    import uvicorn

    from host_tools.cloud.api import create_app
    from host_tools.cloud.bridge import Bridge
    from host_tools.cloud.events import EventBus
    from host_tools.cloud.store import Store

    store = Store(s.db)
    bus = EventBus()
    auth = (s.broker_user, s.broker_password or "") if s.broker_user else None
    bridge = Bridge(store, s.broker, s.worker, s.shared, on_event=bus.publish, auth=auth, tls_ca=s.broker_ca)
    plugins = None
    if s.plugins:
        from host_tools.cloud.dispatch import Dispatcher
        from host_tools.cloud.plugins.host import PluginHost, load_config

        plugins = PluginHost(load_config(s.plugins), store, Dispatcher(store, bridge, bus), bridge)
        bus.add_sink(plugins.sink)

    def started() -> None:
        bus.bind(asyncio.get_running_loop())
        bridge.start(timeout=0)
        if plugins is not None:
            plugins.start()
        threading.Thread(target=_prune, args=(store, s.retention_days), daemon=True).start()
        print(f"spot cloud: worker {s.worker} on http://{s.host}:{s.port}/ (API /docs), "
              f"broker {s.broker}, database {s.db}", flush=True)

    app = create_app(store, bridge, bus, started, plugins)
    config = uvicorn.Config(app, host=s.host, port=s.port, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=2)
    try:
        uvicorn.Server(config).run()
    finally:
        if plugins is not None:
            plugins.stop()
        bridge.stop()
        store.close()
    return 0


def _prune(store: Store, days: float) -> None:
    while True:
        try:
            n = store.prune(days * 86400)
            if n:
                log.info("pruned %d reports older than %g days", n, days)
        except Exception as e:  # noqa: BLE001 - the next pass tries again
            log.warning("pruning reports: %s", e)
        time.sleep(3600)


def serve_workers(s: Settings, n: int) -> int:
    """N workers on ports port..port+n-1, sharing the uplinks; Ctrl-C stops them all."""
    procs = []
    for i in range(n):
        cmd = [sys.executable, "-m", "host_tools", "cloud", "serve", "--db", s.db, "--broker", s.broker,
               "--host", s.host, "--port", str(s.port + i), "--worker", str(i), "--shared", s.shared or "spot"]
        if s.plugins and i == 0:
            cmd += ["--plugins", s.plugins]  # one worker runs the plugins: each peer sees one VEN, one RM
        procs.append(subprocess.Popen(cmd))
    try:
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
    return max((p.returncode or 0) for p in procs)


def default_db() -> str:
    return os.environ.get("SPOT_CLOUD_DB", Settings.db)
