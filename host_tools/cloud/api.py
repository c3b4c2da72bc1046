"""The cloud's REST API (FastAPI): thin routes over the store, the command kinds and the bridge.

Every route but /health needs a bearer token (`spot cloud token`) with the scope
it names: read, command or admin. The live stream (/api/events, Server-Sent
Events) also takes the token as ?token=, since a browser's EventSource cannot
set headers. Errors are JSON {"detail": "..."} with a 4xx that says why; a
database outage is a 503, never a 500, and so is a site energy manager that does not
answer in time (with Retry-After).
"""
from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Annotated, Any, Callable, Literal

from fastapi import Body, Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi import Path as FPath
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.exc import OperationalError

from host_tools.cloud.command_kinds import Command, PriceForecast, Refused
from host_tools.cloud.dispatch import BrokerDown, Dispatcher
from host_tools.cloud.plugins.base import ManagerBusy
from host_tools.cloud.store import OPEN_STATES, Conflict, NotFound, Store

DASHBOARD = Path(__file__).resolve().parent / "dashboard"
_ADDRESS = re.compile(r"^(0x)?[0-9a-fA-F]{1,8}$")
SITE_NAME = r"^[A-Za-z0-9_.-]{1,64}$"  # as MQTT topic levels allow, and no NUL for PostgreSQL
MAX_BODY = 16_384  # bytes: the largest command (a full weekly program) is far below


def address(text: str) -> int:
    if not _ADDRESS.fullmatch(text):  # match() let "3101\n" through
        raise HTTPException(404, f"{text!r} is not a device address (up to 8 hex digits)")
    return int(text, 16)


class Accepted(BaseModel):
    id: int
    device: str
    seq: int
    kind: str
    state: str
    frame_bytes: int


class SiteRequestBody(BaseModel):
    """A site request for the energy manager (POST /api/sites/{site}/requests)."""
    model_config = ConfigDict(extra="forbid")
    kind: Literal["reduce", "keep_under"] = Field(description="reduce the site by `watts`, or keep it under `watts`")
    watts: int = Field(ge=0, le=1_000_000)
    start: int | None = Field(None, ge=0, le=2**32 - 1, description="epoch s; default now")
    end: int | None = Field(None, ge=0, le=2**32 - 1, description="epoch s; or give duration_s")
    duration_s: int | None = Field(None, ge=60, le=7 * 86_400)
    prices: PriceForecast | None = Field(None, description="a forecast to pre-charge stores at its cheapest")
    ref: str | None = Field(None, max_length=200, pattern=r"^[ -~]*$", description="the caller's own reference")

    @model_validator(mode="after")
    def _one_end(self) -> "SiteRequestBody":
        if (self.end is None) == (self.duration_s is None):
            raise ValueError("give either end or duration_s")
        return self


class Principal(BaseModel):
    name: str
    scopes: list[str]


def create_app(store: Store, bridge: Any | None, bus: Any | None = None,
               started: Callable[[], None] | None = None, plugins: Any | None = None) -> FastAPI:
    app = FastAPI(title="SPOT cloud", version="1.0",
                  description="Devices, their shadows and reports; commands tracked to the "
                              "device's ACK; sites, price forecasts; keys (never their secrets).")
    bearer = HTTPBearer(auto_error=False)
    dispatcher = Dispatcher(store, bridge, bus)
    app.state.dispatcher = dispatcher

    def principal(request: Request, creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Principal:
        token = creds.credentials if creds else request.query_params.get("token")
        if not token:
            raise HTTPException(401, "a bearer token is needed (spot cloud token NAME --scopes read)",
                                headers={"WWW-Authenticate": "Bearer"})
        found = store.token(token)
        if found is None:
            raise HTTPException(401, "unknown or revoked token", headers={"WWW-Authenticate": "Bearer"})
        return Principal(name=found[0], scopes=sorted(found[1]))

    def scope(name: str) -> Callable[..., Principal]:
        def check(p: Principal = Depends(principal)) -> Principal:
            if name not in p.scopes and "admin" not in p.scopes:
                raise HTTPException(403, f"token {p.name!r} lacks the {name!r} scope")
            return p
        return check

    @app.exception_handler(NotFound)
    async def _not_found(_r: Request, e: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, 404)

    @app.exception_handler(Conflict)
    async def _conflict(_r: Request, e: Conflict) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, 409)

    @app.exception_handler(Refused)
    async def _refused(_r: Request, e: Refused) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, 422)

    @app.exception_handler(OperationalError)
    async def _db_down(_r: Request, e: OperationalError) -> JSONResponse:
        return JSONResponse({"detail": "the database is unavailable; nothing was changed: "
                                       + str(e.orig).splitlines()[0][:200]}, 503,
                            headers={"Retry-After": "5"})

    @app.exception_handler(ManagerBusy)
    async def _manager_busy(_r: Request, e: ManagerBusy) -> JSONResponse:
        # The site's energy manager is busy or stuck: the service is fine, try again shortly.
        return JSONResponse({"detail": str(e), "reason": "energy_manager_timeout", "started": e.started},
                            503, headers={"Retry-After": str(max(1, round(e.waited_s)))})

    @app.exception_handler(RequestValidationError)
    async def _invalid(_r: Request, e: RequestValidationError) -> Response:
        # FastAPI's own answer echoes the input: a NaN or a lone surrogate in it made the
        # answer itself fail (a 500), and a 16 kB body came back whole. Where and why only.
        errors = [{"type": x.get("type"), "loc": list(x.get("loc", ())), "msg": x.get("msg"),
                   **({"ctx": {k: v if isinstance(v, (int, str)) else str(v) for k, v in x["ctx"].items()}}
                      if x.get("ctx") else {})} for x in e.errors()]
        return Response(json.dumps({"detail": errors}, ensure_ascii=True), 422, media_type="application/json")

    @app.middleware("http")
    async def _limit_body(request: Request, call_next: Any) -> Any:
        n = request.headers.get("content-length")
        if n is not None and (not n.isdigit() or int(n) > MAX_BODY):
            return JSONResponse({"detail": f"request body over {MAX_BODY} bytes"}, 413)
        if n is None and "chunked" in request.headers.get("transfer-encoding", "").lower():
            # A chunked body would slip past the limit above: a body must say its length.
            return JSONResponse({"detail": f"a request body needs a Content-Length (at most {MAX_BODY} bytes)"},
                                411)
        return await call_next(request)

    @app.get("/health", tags=["service"])
    def health() -> dict:
        """Liveness and the broker link; no token needed."""
        return {"ok": True, "mqtt": bool(bridge and bridge.connected.is_set())}

    @app.get("/api/whoami", tags=["service"])
    def whoami(p: Principal = Depends(principal)) -> Principal:
        return p

    @app.get("/api/plugins", tags=["service"])
    def plugin_status(_p: Principal = Depends(scope("read"))) -> list[dict]:
        """Each enabled plugin: running, failed or hung; events, errors, drops."""
        return plugins.status() if plugins is not None else []

    @app.get("/api/stats", tags=["service"])
    def stats(_p: Principal = Depends(scope("read"))) -> dict:
        """The uplink loop's counters: frames, duplicates, refusals by reason."""
        return dict(bridge.stats.__dict__) if bridge else {}

    # devices ---------------------------------------------------------------------
    @app.get("/api/devices", tags=["devices"])
    def list_devices(site: str | None = Query(None, pattern=SITE_NAME),
                     _p: Principal = Depends(scope("read"))) -> list[dict]:
        """Every device with its shadow (availability, last state, capabilities)."""
        return [_device_view(d) for d in store.devices(site)]

    @app.get("/api/devices/{device}", tags=["devices"])
    def get_device(device: str, _p: Principal = Depends(scope("read"))) -> dict:
        a = address(device)
        d = store.shadow(a)
        d["address"] = a
        view = _device_view(d)
        view["open_commands"] = [_command_view(c) for c in store.commands(a, OPEN_STATES, 50)]
        return view

    @app.get("/api/devices/{device}/reports", tags=["devices"])
    def device_reports(device: str, since: float = Query(0, ge=0, le=1e10),
                       limit: int = Query(500, ge=1, le=5000),
                       kind: str | None = Query(None, pattern="^(state|meter|capabilities)$"),
                       _p: Principal = Depends(scope("read"))) -> list[dict]:
        a = address(device)
        store.device(a)
        return store.reports(a, since, limit, kind)

    @app.get("/api/devices/{device}/commands", tags=["commands"])
    def device_commands(device: str, limit: int = Query(100, ge=1, le=1000),
                        _p: Principal = Depends(scope("read"))) -> list[dict]:
        a = address(device)
        store.device(a)
        return [_command_view(c) for c in store.commands(a, None, limit)]

    @app.post("/api/devices/{device}/commands", status_code=202, tags=["commands"],
              response_model=Accepted, responses={404: {}, 409: {}, 422: {}, 503: {}})
    def send_command(device: str, cmd: Annotated[Command, Body()],
                     p: Principal = Depends(scope("command"))) -> Accepted:
        """Accept a command: stored durably with its sealed frame before this answers 202,
        then published to the device's queue; its state follows the device's ACK."""
        a = address(device)
        c = dispatcher.send_command(a, cmd, p.name)
        return Accepted(id=c["id"], device=f"{a:08x}", seq=c["seq"], kind=c["kind"], state=c["state"],
                        frame_bytes=c["frame_bytes"])

    # commands -------------------------------------------------------------------------
    @app.get("/api/commands", tags=["commands"])
    def list_commands(state: str | None = Query(None, pattern="^[a-z]{1,16}$"),
                      limit: int = Query(100, ge=1, le=1000),
                      _p: Principal = Depends(scope("read"))) -> list[dict]:
        return [_command_view(c) for c in store.commands(None, [state] if state else None, limit)]

    @app.get("/api/pending", tags=["commands"])
    def pending(_p: Principal = Depends(scope("read"))) -> list[dict]:
        """Commands not yet acknowledged: most wait in a sleeping device's queue."""
        return [_command_view(c) for c in store.commands(None, OPEN_STATES, 1000)]

    @app.get("/api/commands/{cid}", tags=["commands"])
    def get_command(cid: int = FPath(ge=1, le=2**31 - 1), _p: Principal = Depends(scope("read"))) -> dict:
        return _command_view(store.command(cid))

    @app.post("/api/commands/{cid}/cancel", tags=["commands"], responses={404: {}, 409: {}})
    def cancel_command(cid: int = FPath(ge=1, le=2**31 - 1), p: Principal = Depends(scope("command"))) -> dict:
        """Cancel a command the broker has not yet been given (409 once it has)."""
        return _command_view(store.cancel(cid, p.name))

    # sites and keys ----------------------------------------------------------------------
    @app.get("/api/sites", tags=["sites"])
    def list_sites(_p: Principal = Depends(scope("read"))) -> list[dict]:
        return [dict(s, group_address=f"{s['group_address']:08x}") for s in store.sites()]

    @app.get("/api/sites/{site}", tags=["sites"])
    def get_site(site: str = FPath(pattern=SITE_NAME), _p: Principal = Depends(scope("read"))) -> dict:
        s = store.site(site)
        return {"name": s["name"], "group_address": f"{s['group_address']:08x}",
                "devices": [_device_view(d) for d in store.devices(site)]}

    @app.post("/api/sites/{site}/prices", status_code=202, tags=["sites"], responses={404: {}, 503: {}})
    def send_prices(site: str = FPath(pattern=SITE_NAME), fc: PriceForecast = Body(...), p: Principal = Depends(scope("command"))) -> dict:
        """A price forecast to every device of the site (group key, retained for sleepers)."""
        try:
            return dispatcher.send_prices(site, fc, p.name)
        except BrokerDown as e:
            raise HTTPException(503, str(e)) from None

    # site requests: the site's energy manager (plugins/energy_manager) ---------------------
    def _manager(site: str) -> Any:
        store.site(site)  # 404 for a site that does not exist
        if plugins is None or not plugins.has_manager(site):
            raise HTTPException(409, f"site {site!r} has no energy manager: enable the energy_manager "
                                     "plugin for it in the cloud's plugin configuration (--plugins)")
        return plugins

    @app.post("/api/sites/{site}/requests", status_code=202, tags=["sites"], responses={404: {}, 409: {}, 422: {}, 503: {}})
    def site_request(site: str = FPath(pattern=SITE_NAME), req: SiteRequestBody = Body(...),
                     p: Principal = Depends(scope("command"))) -> dict:
        """A site-level request ("reduce the site by W", "keep the site under W") for the site's
        energy manager to split over its devices; 202 with its id and the orders sent so far."""
        try:
            return _manager(site).site_call(site, "add", req.model_dump(exclude_none=True), p.name)
        except ValueError as e:
            raise HTTPException(422, str(e)) from None

    @app.get("/api/sites/{site}/requests", tags=["sites"], responses={404: {}, 409: {}, 503: {}})
    def site_requests(site: str = FPath(pattern=SITE_NAME), _p: Principal = Depends(scope("read"))) -> list[dict]:
        """The site's requests, newest first: what the manager asked each device, their answers."""
        return _manager(site).site_call(site, "list", {}, _p.name)

    @app.post("/api/sites/{site}/requests/{rid}/cancel", tags=["sites"], responses={404: {}, 409: {}, 503: {}})
    def cancel_site_request(site: str = FPath(pattern=SITE_NAME), rid: str = FPath(pattern=r"^[A-Za-z0-9_-]{1,40}$"),
                            p: Principal = Depends(scope("command"))) -> dict:
        """Withdraw a request: the devices it shed are restored."""
        out = _manager(site).site_call(site, "cancel", {"id": rid}, p.name)
        if out is None:
            raise HTTPException(404, f"no request {rid!r} at site {site!r}")
        return out

    @app.get("/api/keys", tags=["keys"])
    def list_keys(device: str | None = Query(None), _p: Principal = Depends(scope("admin"))) -> list[dict]:
        """Keys and pairings: who may send a device what. Never the secrets."""
        a = address(device) if device else None
        return [{"device": f"{k.device:08x}", "key_id": k.key_id, "peer": f"{k.peer:08x}",
                 "classes": k.classes, "group": k.is_group, "admin": k.is_admin, "state": k.state}
                for k in store.key_rows(a)]

    @app.get("/api/audit", tags=["service"])
    def audit_log(limit: int = Query(100, ge=1, le=1000), _p: Principal = Depends(scope("admin"))) -> list[dict]:
        return store.audit_log(limit)

    # the live stream ----------------------------------------------------------------------
    # A stream, not a request and answer: kept out of the OpenAPI document (generated
    # requests would hang on it); the module docstring and the README describe it.
    @app.get("/api/events", tags=["devices"], response_class=StreamingResponse, include_in_schema=False)
    async def events(request: Request, _p: Principal = Depends(scope("read"))) -> StreamingResponse:
        """Server-Sent Events: reports, availability and command states as they happen."""
        if bus is None:
            raise HTTPException(503, "no live stream in this process")
        q = bus.subscribe()

        async def stream() -> Any:
            try:
                yield ": connected\n\n"
                while not await request.is_disconnected():
                    try:
                        ev = await asyncio.wait_for(q.get(), 15)
                    except asyncio.TimeoutError:
                        yield ": keepalive\n\n"
                        continue
                    if "device" in ev and isinstance(ev["device"], int):
                        ev = dict(ev, device=f"{ev['device']:08x}")
                    yield f"event: {ev['type']}\ndata: {json.dumps(ev)}\n\n"
            finally:
                bus.unsubscribe(q)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    # the dashboard --------------------------------------------------------------------------
    if DASHBOARD.is_dir():
        app.mount("/static", StaticFiles(directory=DASHBOARD), name="static")

        @app.get("/", include_in_schema=False)
        def index() -> FileResponse:
            return FileResponse(DASHBOARD / "index.html")

    if started is not None:
        app.router.on_startup.append(started)
    return app


def _device_view(d: dict) -> dict:
    out = dict(d)
    a = out.get("address")
    if isinstance(a, int):
        out["address"] = f"{a:08x}"
    return out


def _command_view(c: dict) -> dict:
    out = dict(c)
    out["device"] = f"{c['device']:08x}"
    from host_tools.cloud.uplink import REASONS

    out["reason_text"] = REASONS.get(c.get("reason") or 0)
    return out
