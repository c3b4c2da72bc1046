"""Runs the enabled plugins beside the service, each fenced off from the rest.

Each plugin gets its own thread and asyncio loop: a plugin that blocks, raises or
hangs stalls nothing but itself. Events reach it through a bounded queue (its
oldest events go when it falls behind, counted); each hook has a deadline, and a
hook that overruns is cancelled and counted. `status()` says how each is doing
(the API's /api/plugins).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import json
import logging
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from host_tools.cloud.plugins.base import ManagerBusy, Plugin, PluginContext

log = logging.getLogger("spot.cloud.plugins")
QUEUE_MAX = 1000
HOOK_DEADLINE_S = 10.0


@dataclass
class PluginConfig:
    name: str
    sites: list[str]
    options: dict = field(default_factory=dict)


def load_config(path: Path) -> list[PluginConfig]:
    """The [[plugin]] tables of a TOML file; refuses unknown plugins and missing sites by name."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"plugin configuration {path}: {e}") from None
    out = []
    for i, p in enumerate(data.get("plugin", [])):
        name = p.get("name")
        if not isinstance(name, str) or name not in available():
            raise ValueError(f"plugin {i + 1} in {path}: no plugin called {name!r} "
                             f"(have: {', '.join(available()) or 'none'})")
        sites = p.get("sites")
        if not isinstance(sites, list) or not sites or not all(isinstance(s, str) for s in sites):
            raise ValueError(f"plugin {name!r} in {path}: give its sites, e.g. sites = [\"home\"]")
        out.append(PluginConfig(name, sites, dict(p.get("options", {}))))
    return out


def _folders() -> list[Path]:
    import host_tools.cloud.plugins as pkg

    return [Path(p) for p in pkg.__path__]  # the package's own folder (and any a deployment adds)


def available() -> list[str]:
    return sorted(p.name for d in _folders() for p in d.iterdir()
                  if (p / "manifest.json").is_file() and (p / "plugin.py").is_file())


def manifest(name: str) -> dict:
    for d in _folders():
        if (d / name / "manifest.json").is_file():
            return json.loads((d / name / "manifest.json").read_text())
    raise KeyError(name)


class _Runner:
    """One plugin on its own thread and loop."""

    def __init__(self, cfg: PluginConfig, ctx: PluginContext) -> None:
        self.cfg = cfg
        self.ctx = ctx
        self.state = "starting"
        self.handed = 0  # events handed on, counted on the cloud's side
        self.events = 0
        self.errors = 0
        self.dropped = 0
        self.overruns = 0
        self.last_error = ""
        self.loop = asyncio.new_event_loop()
        self.queue: asyncio.Queue | None = None
        self.plugin: Plugin | None = None
        self.thread = threading.Thread(target=self._main, name=f"plugin-{cfg.name}", daemon=True)
        ctx._post = lambda fn, *a: self.loop.call_soon_threadsafe(fn, *a)

    def _fail(self, what: str, e: BaseException) -> None:
        self.errors += 1
        self.last_error = f"{what}: {type(e).__name__}: {e}"[:300]
        log.error("plugin %s %s", self.cfg.name, self.last_error)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.queue = asyncio.Queue(QUEUE_MAX)
        try:
            mod = importlib.import_module(f"host_tools.cloud.plugins.{self.cfg.name}.plugin")
            self.plugin = mod.Plugin(self.ctx)
            self.loop.run_until_complete(asyncio.wait_for(self.plugin.start(), HOOK_DEADLINE_S * 3))
        except BaseException as e:  # noqa: BLE001 - a plugin's failure is its own
            self._fail("start", e)
            self.state = "failed"
            return
        self.state = "running"
        consumer = self.loop.create_task(self._consume())
        self.loop.run_forever()
        consumer.cancel()  # stopped: end the consumer cleanly before the loop closes
        self.loop.run_until_complete(asyncio.gather(consumer, return_exceptions=True))
        self.loop.close()

    async def _consume(self) -> None:
        assert self.queue is not None and self.plugin is not None
        while True:
            ev = await self.queue.get()
            self.events += 1
            try:
                await asyncio.wait_for(self.plugin.on_event(ev), HOOK_DEADLINE_S)
            except asyncio.TimeoutError:
                self.overruns += 1
                self._fail("on_event overran its deadline", TimeoutError(ev.get("type")))
            except Exception as e:  # noqa: BLE001
                self._fail("on_event", e)

    def deliver(self, ev: dict) -> None:
        if self.state != "running":
            return
        self.handed += 1
        try:
            self.loop.call_soon_threadsafe(self._put, ev)
        except RuntimeError:
            pass  # its loop has stopped

    def _put(self, ev: dict) -> None:
        assert self.queue is not None
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(ev)

    def stop(self, timeout: float = 5.0) -> None:
        if self.state == "failed":
            return
        if self.state == "running" and self.plugin is not None:
            fut = asyncio.run_coroutine_threadsafe(self.plugin.stop(), self.loop)
            try:
                fut.result(timeout)
            except Exception as e:  # noqa: BLE001 - stopping anyway
                self._fail("stop", e)
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout)
        self.state = "stopped" if not self.thread.is_alive() else "hung"

    def status(self) -> dict:
        alive = self.thread.is_alive()
        return {"name": self.cfg.name, "sites": self.cfg.sites,
                "state": self.state if alive or self.state != "running" else "dead",
                "events": self.events, "errors": self.errors, "dropped": self.dropped,
                "overruns": self.overruns, "last_error": self.last_error,
                "backlog": self.handed - self.events - self.dropped}  # a blocked loop holds them too


class PluginHost:
    def __init__(self, configs: list[PluginConfig], store: Any, dispatcher: Any, bridge: Any | None) -> None:
        self.store = store
        self.runners = [_Runner(c, PluginContext(c.name, c.sites, c.options, store, dispatcher, bridge))
                        for c in configs]
        self._site_of: dict[int, str] = {}
        self._site_at = 0.0
        self._managers: dict[str, tuple[_Runner, Callable[..., Any]]] = {}  # site -> its energy manager
        self.site_timeout_s = HOOK_DEADLINE_S  # how long a site request waits for its manager
        for r in self.runners:
            r.ctx._host = self

    def start(self) -> None:
        for r in self.runners:
            r.thread.start()
        end = time.monotonic() + HOOK_DEADLINE_S
        while time.monotonic() < end and any(r.state == "starting" for r in self.runners):
            time.sleep(0.02)
        for r in self.runners:
            log.info("plugin %s for %s: %s", r.cfg.name, ", ".join(r.cfg.sites), r.state)

    def stop(self) -> None:
        for r in self.runners:
            r.stop()

    def sink(self, ev: dict) -> None:
        """An event from the cloud (any thread): to each plugin whose sites hold its device."""
        if not self.runners:
            return
        device = ev.get("device")
        site = self._site(device) if isinstance(device, int) else None
        for r in self.runners:
            if site is None or site in r.cfg.sites:
                r.deliver(ev)

    def _site(self, device: int) -> str | None:
        site = self._site_of.get(device)
        if site is None and time.monotonic() - self._site_at > 1.0:
            self._site_at = time.monotonic()
            try:
                self._site_of = {d["address"]: d["site"] for d in self.store.devices()}
            except Exception as e:  # noqa: BLE001 - the database may be down; try later
                log.warning("plugin routing: %s", e)
            site = self._site_of.get(device)
        return site

    def status(self) -> list[dict]:
        return [r.status() for r in self.runners]

    # site requests (plugins/base.py PluginContext.site_request) ------------------------------
    def serve_sites(self, sites: list[str], name: str, handler: Callable[..., Any]) -> None:
        """A plugin (energy_manager) takes the site requests of its sites."""
        runner = next(r for r in self.runners if r.cfg.name == name)
        for s in sites:
            if s in self._managers and self._managers[s][0] is not runner:
                raise ValueError(f"site {s!r} has an energy manager already "
                                 f"({self._managers[s][0].cfg.name})")
            self._managers[s] = (runner, handler)

    def has_manager(self, site: str) -> bool:
        m = self._managers.get(site)
        return m is not None and m[0].state == "running"

    def site_call(self, site: str, op: str, body: dict, who: str, timeout: float | None = None) -> Any:
        """op on the site's energy manager, run on its own thread (any thread may call this);
        None when the site has none (or it is not running). Raises ManagerBusy when the
        manager does not answer within `timeout` (default `site_timeout_s`)."""
        m = self._managers.get(site)
        if m is None or m[0].state != "running":
            return None
        runner, handler = m
        if threading.current_thread() is runner.thread:
            return handler(op, site, body, who)  # the manager itself: waiting on its own loop would deadlock

        # Whether the manager began the call decides what a caller that gave up may be told:
        # not begun, it never will be (nothing changed); begun, it may still take effect.
        lock, began, gave_up = threading.Lock(), [False], [False]

        async def call() -> Any:
            with lock:
                if gave_up[0]:
                    return None
                began[0] = True
            return handler(op, site, body, who)
        wait = self.site_timeout_s if timeout is None else timeout
        fut = asyncio.run_coroutine_threadsafe(call(), runner.loop)
        try:
            return fut.result(wait)
        except concurrent.futures.TimeoutError:
            with lock:
                gave_up[0] = True
                started = began[0]
            raise ManagerBusy(site, op, wait, started) from None
