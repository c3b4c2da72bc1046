"""A small OpenADR 3 VTN on loopback, for the plugin's test and bench only.

No OpenADR 3 VTN installs from the package registries (the Alliance's reference VTN lives
on GitHub, not PyPI), so this one serves the spec's paths (3.1.0: /auth/server,
/auth/token, /programs, /events, /vens, /resources, /reports) on aiohttp in a thread, and
checks EVERY object it serves or accepts with an independent library's OpenADR 3 models:
the openadr3 package's (grid-coordination's python-oa3) raw pydantic models and its
coercion (pendulum parsing of every date and duration), which the plugin does not import
(the plugin reads with toadr3's). Errors are problem+json as the spec has them. OAuth2
client credentials at /auth/token; every other path needs the bearer token.

Test hooks, outside validation and named as such: `serve_raw_next` makes the next
GET /events answer exactly the given text (malformed JSON, or events the validator
itself would refuse).
"""
from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import threading
from datetime import datetime, timezone
from typing import Any

from aiohttp import web
from openadr3 import coerce
from openadr3.entities import raw as oa3
from pydantic import BaseModel, ValidationError

MODELS = {"PROGRAM": oa3.RawProgram, "EVENT": oa3.RawEvent, "VEN": oa3.RawVen, "RESOURCE": oa3.RawResource,
          "REPORT": oa3.RawReport, "SUBSCRIPTION": oa3.RawSubscription}


class Problem(BaseModel):
    """The spec's `problem` schema (openadr3 has no model of it): title and status required here."""
    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def check(kind: str, obj: Any) -> None:
    """Raise unless obj is a valid OpenADR 3 object of this kind by openadr3's models."""
    if not isinstance(obj, dict):
        raise ValueError(f"a {kind} is a JSON object")
    MODELS[kind].model_validate(obj)
    coerce(dict(obj, objectType=kind))  # dates, durations and payloads parsed (pendulum)


class Vtn:
    def __init__(self, clients: dict[str, str] | None = None) -> None:
        self.clients = clients or {"ven-client": "ven-secret"}
        self.tokens: dict[str, str] = {}
        self.programs: dict[str, dict] = {}
        self.events: dict[str, dict] = {}
        self.vens: dict[str, dict] = {}
        self.resources: dict[str, dict] = {}
        self.reports: list[dict] = []
        self.requests: list[tuple[str, str]] = []
        self.checked = 0  # objects validated, served or accepted
        self.serve_raw_next: str | None = None
        self._ids = itertools.count(1)
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._main, args=(ready,), daemon=True, name="oadr3-vtn")
        self.thread.start()
        if not ready.wait(10):
            raise RuntimeError("the loopback VTN did not start")

    # server ---------------------------------------------------------------------------------
    def _main(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application(middlewares=[self._auth])
        r = app.router
        r.add_get("/auth/server", self._auth_server)
        r.add_post("/auth/token", self._token)
        r.add_get("/programs", self._list(lambda: self.programs, "PROGRAM", {"programName": "programName"}))
        r.add_get("/events", self._get_events)
        r.add_get("/vens", self._list(lambda: self.vens, "VEN", {"venName": "venName"}))
        r.add_post("/vens", self._post_ven)
        r.add_get("/resources", self._list(lambda: self.resources, "RESOURCE", {"venID": "venID"}))
        r.add_post("/resources", self._post_resource)
        r.add_post("/reports", self._post_report)
        self.runner = web.AppRunner(app, access_log=None)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{self.port}"
        ready.set()
        self.loop.run_forever()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def problem(self, status: int, title: str, detail: str = "") -> web.Response:
        p = Problem(title=title, status=status, detail=detail or None)
        return web.Response(status=status, text=p.model_dump_json(exclude_none=True),
                            content_type="application/problem+json")

    def served(self, kind: str, obj: dict) -> dict:
        check(kind, obj)
        self.checked += 1
        return obj

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        if request.path.startswith("/auth/"):
            return await handler(request)
        tok = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if tok not in self.tokens:
            return self.problem(401, "Unauthorized", "a bearer token from /auth/token is needed")
        return await handler(request)

    async def _auth_server(self, request: web.Request) -> web.Response:
        return web.json_response({"tokenURL": f"{self.url}/auth/token"})

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            return self.problem(400, "Bad Request", "grant_type must be client_credentials")
        cid = str(form.get("client_id", ""))
        if self.clients.get(cid) != form.get("client_secret"):
            return self.problem(401, "Unauthorized", "unknown client or wrong secret")
        tok = secrets.token_hex(16)
        self.tokens[tok] = cid
        return web.json_response({"access_token": tok, "token_type": "Bearer", "expires_in": 3600})

    def _list(self, objs: Any, kind: str, filters: dict[str, str]) -> Any:
        async def handler(request: web.Request) -> web.Response:
            out = [o for o in objs().values()
                   if all(o.get(field) == request.query[q] for q, field in filters.items() if q in request.query)]
            return web.json_response([self.served(kind, o) for o in out])
        return handler

    async def _get_events(self, request: web.Request) -> web.Response:
        if self.serve_raw_next is not None:
            text, self.serve_raw_next = self.serve_raw_next, None
            return web.Response(text=text, content_type="application/json")
        pid = request.query.get("programID")
        if pid is not None and pid not in self.programs:
            return self.problem(404, "Not Found", f"no program {pid}")
        out = [e for e in self.events.values() if pid is None or e["programID"] == pid]
        skip, limit = int(request.query.get("skip", 0)), int(request.query.get("limit", 50))
        return web.json_response([self.served("EVENT", e) for e in out[skip:skip + limit]])

    async def _body(self, request: web.Request, kind: str) -> dict | web.Response:
        try:
            body = await request.json()
            check(kind, body)
        except (json.JSONDecodeError, ValueError, ValidationError, KeyError, TypeError) as e:
            return self.problem(400, "Bad Request", f"not a valid {kind}: {str(e)[:300]}")
        self.checked += 1
        return body

    def _meta(self, kind: str, body: dict, client: str) -> dict:
        t = now_iso()
        return {**body, "id": f"{kind.lower()}-{next(self._ids)}", "createdDateTime": t,
                "modificationDateTime": t, "objectType": kind, **({"clientID": client} if kind != "EVENT" else {})}

    def _client(self, request: web.Request) -> str:
        return self.tokens[request.headers["Authorization"].removeprefix("Bearer ")]

    async def _post_ven(self, request: web.Request) -> web.Response:
        body = await self._body(request, "VEN")
        if isinstance(body, web.Response):
            return body
        if any(v["venName"] == body["venName"] for v in self.vens.values()):
            return self.problem(409, "Conflict", f"VEN {body['venName']} exists")
        ven = self.served("VEN", self._meta("VEN", body, self._client(request)))
        self.vens[ven["id"]] = ven
        return web.json_response(ven, status=201)

    async def _post_resource(self, request: web.Request) -> web.Response:
        body = await self._body(request, "RESOURCE")
        if isinstance(body, web.Response):
            return body
        if body["venID"] not in self.vens:
            return self.problem(404, "Not Found", f"no VEN {body['venID']}")
        res = self.served("RESOURCE", self._meta("RESOURCE", body, self._client(request)))
        self.resources[res["id"]] = res
        return web.json_response(res, status=201)

    async def _post_report(self, request: web.Request) -> web.Response:
        body = await self._body(request, "REPORT")
        if isinstance(body, web.Response):
            return body
        if body["eventID"] not in self.events:
            return self.problem(404, "Not Found", f"no event {body['eventID']}")
        rep = self.served("REPORT", self._meta("REPORT", body, self._client(request)))
        self.reports.append(rep)
        return web.json_response(rep, status=201)

    # what a test does as the business logic ------------------------------------------------------
    def _call(self, fn: Any) -> Any:
        # on the VTN's loop: its dicts are only ever touched there
        return asyncio.run_coroutine_threadsafe(self._async(fn), self.loop).result(5)

    @staticmethod
    async def _async(fn: Any) -> Any:
        return fn()

    def program(self, name: str, **extra: Any) -> str:
        def make() -> str:
            p = self._meta("PROGRAM", {"programName": name, **extra}, "bl")
            p.pop("clientID")
            self.programs[p["id"]] = self.served("PROGRAM", p)
            return p["id"]
        return self._call(make)

    def event(self, program_id: str, intervals: list[dict], **extra: Any) -> str:
        """An event as the business logic would create it (validated before it is served)."""
        def make() -> str:
            e = self._meta("EVENT", {"programID": program_id, "intervals": intervals, **extra}, "bl")
            self.events[e["id"]] = self.served("EVENT", e)
            return e["id"]
        return self._call(make)

    def delete_event(self, eid: str) -> None:
        self._call(lambda: self.events.pop(eid))

    def event_bytes(self, eid: str) -> int:
        """The event as this VTN puts it on the wire (aiohttp's json.dumps)."""
        return len(json.dumps(self.events[eid]).encode())
