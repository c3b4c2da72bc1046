"""openleadr's own VTN (OpenADRServer) on loopback, for the plugin's test and bench figures.

It runs on its own thread and asyncio loop beside a test or bench; every message both
ways is recorded as openleadr parses it (with its size on the link), opt-ins arrive
through openleadr's event callback, report values through its report callbacks. It can
answer one poll with malformed XML. Not used by the plugin itself.
"""
from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timedelta
from functools import partial

from aiohttp import web
from openleadr import OpenADRServer
from openleadr.messaging import parse_message

from host_tools.cloud.testbed import free_port

BROKEN = (b'<?xml version="1.0" encoding="utf-8"?><oadr:oadrPayload xmlns:oadr="http://openadr.org/'
          b'oadr-2.0b/2012/07"><oadr:oadrSignedObject><oadr:oadrDistributeEvent>no closing tags')


class Vtn:
    """openleadr's OpenADRServer on its own loop and thread, with every message recorded."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/OpenADR2/Simple/2.0b"
        self.registrations: list[dict] = []
        self.regs: dict[str, str] = {}  # registration id -> ven id
        self.values: dict[tuple[str, str], list[tuple[datetime, float]]] = {}
        self.opts: list[tuple[str, str]] = []  # first opt per event (openleadr's callback)
        self.messages: list[tuple[str, dict, int]] = []  # (type, payload, bytes) both ways
        self.break_next_poll = False
        self.errors: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        s = self.server = OpenADRServer(vtn_id="TEST_VTN", http_port=self.port, show_fingerprint=False,
                                        requested_poll_freq=timedelta(seconds=1))
        s.add_handler("on_create_party_registration", self._register)
        s.add_handler("on_register_report", self._register_report)
        s.app.middlewares.append(self._record)
        self.loop.run_until_complete(s.run())
        self.ready.set()
        self.loop.run_forever()

    @web.middleware
    async def _record(self, request: web.Request, handler):  # type: ignore[no-untyped-def]
        body = await request.read()
        self._note(body)
        if self.break_next_poll and b"oadrPoll" in body:
            self.break_next_poll = False
            return web.Response(body=BROKEN, content_type="application/xml")
        resp = await handler(request)
        self._note(resp.body)
        return resp

    def _note(self, raw: bytes) -> None:
        if raw:
            try:
                kind, payload = parse_message(raw)
            except Exception as e:  # noqa: BLE001
                self.errors.append(repr(e)[:300])
                return
            self.messages.append((kind, payload, len(raw)))

    def _register(self, payload: dict):  # type: ignore[no-untyped-def]
        self.registrations.append(payload)
        reg = payload.get("registration_id")
        if reg in self.regs:
            return self.regs[reg], reg  # the same VEN again
        n = len(self.regs) + 1
        self.regs[f"REG{n}"] = f"VEN{n}"
        return f"VEN{n}", f"REG{n}"

    def _register_report(self, ven_id, resource_id, measurement, unit, scale,  # type: ignore[no-untyped-def]
                         min_sampling_interval, max_sampling_interval):
        return partial(self._got, resource_id, measurement), timedelta(seconds=1)

    def _got(self, resource: str, measurement: str, values: list) -> None:
        self.values.setdefault((resource, measurement), []).extend(values)

    def call(self, fn, *a, **kw):  # type: ignore[no-untyped-def]
        """fn on the VTN's loop (openleadr's server is not thread-safe)."""
        async def run():  # type: ignore[no-untyped-def]
            return fn(*a, **kw)
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(5)

    def event(self, ven_id: str, name: str, kind: str, intervals: list[dict], **kw) -> str:  # type: ignore[no-untyped-def]
        cb = lambda ven_id, event_id, opt_type: self.opts.append((event_id, opt_type))  # noqa: E731
        return self.call(self.server.add_event, ven_id=ven_id, signal_name=name, signal_type=kind,
                         intervals=intervals, callback=cb, **kw)

    def responses(self, event_id: str) -> list[tuple[str, int]]:
        """Every (opt, response code) the VEN sent for this event, in order."""
        return [(r["opt_type"], r["response_code"]) for kind, p, _ in list(self.messages)
                if kind == "oadrCreatedEvent" for r in p.get("event_responses", []) if r["event_id"] == event_id]

    def distribute_bytes(self, event_id: str) -> int:
        for kind, p, n in list(self.messages):
            if kind == "oadrDistributeEvent" and any(
                    e["event_descriptor"]["event_id"] == event_id for e in p.get("events", [])):
                return n
        return 0

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
