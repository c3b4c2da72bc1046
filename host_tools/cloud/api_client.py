"""A small typed client of the cloud's REST API: what `spot ctl` and `make demo` talk through.

    with CloudClient() as cloud:            # $SPOT_CLOUD_URL, $SPOT_CLOUD_TOKEN
        c = cloud.send("00001101", {"kind": "setpoint", "value_c": 21.5})
        cloud.wait(c["id"], timeout=30)     # applied / adapted / refused / ...
        for ev in cloud.events():           # the live stream (Server-Sent Events)
            ...

Every failure is a CloudError carrying the API's own one-line reason and the
HTTP status (None when the cloud could not be reached at all), so a caller
tells "you asked for something impossible" (4xx) from "the cloud is not there"
without parsing text. The helpers at the end put commands and device states
into words, the same way for the CLI, the demo and anyone scripting.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    import httpx

DEFAULT_URL = "http://127.0.0.1:8080"
OPEN_STATES = ("accepted", "published", "delivered")  # waiting for the device's ACK
ACK_STATES = ("applied", "adapted", "refused", "expired", "unsupported")
FINAL_STATES = ACK_STATES + ("cancelled",)
SG_NAMES = {1: "blocked", 2: "normal", 3: "recommended on", 4: "forced on"}


class CloudError(RuntimeError):
    """The API said no (status 4xx/5xx, detail its reason) or could not be reached (status None)."""

    def __init__(self, status: int | None, detail: str, url: str = "") -> None:
        super().__init__(f"HTTP {status}: {detail}" if status else detail)
        self.status = status
        self.detail = detail
        self.url = url

    @property
    def client_side(self) -> bool:
        """The request itself was wrong (4xx): sending it again will not help."""
        return self.status is not None and 400 <= self.status < 500


@dataclass
class Event:
    """One event of the live stream: type is command, state, meter, capabilities or availability."""
    type: str
    data: dict[str, Any]


def parse_device(text: str | int) -> int:
    """A device address as people type it: hex as the API and `spot ctl devices` show it
    (00001101), with or without 0x."""
    if isinstance(text, int):
        value = text
    else:
        t = text.strip().lower().removeprefix("0x")
        if not t or len(t) > 8 or any(ch not in "0123456789abcdef" for ch in t):
            raise ValueError(f"{text!r} is not a device address (up to 8 hex digits, e.g. 00001101)")
        value = int(t, 16)
    if not 0 < value < 0xFFFFFFFF:
        raise ValueError(f"address {text} is out of range (1..fffffffe)")
    return value


def detail_text(value: Any) -> str:
    """The API's "detail" in one line; FastAPI's validation errors are a list of findings."""
    if isinstance(value, list):
        parts = []
        for item in value:
            if isinstance(item, dict):
                # loc is ("body", <the command kind's tag>, field, ...): the field is what a person named
                loc = [str(x) for x in item.get("loc", ()) if x not in ("body",)]
                if len(loc) > 1:
                    loc = loc[1:]
                parts.append(f"{'.'.join(loc)}: {item.get('msg', item)}" if loc else str(item.get("msg", item)))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    text = str(value) if value is not None else ""
    return " ".join(text.split())


class CloudClient:
    """The cloud's API over HTTP; one keep-alive connection, reused for every call."""

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 10.0) -> None:
        import httpx  # here, not at the top: `spot` imports this module for every command

        self.url = (url or os.environ.get("SPOT_CLOUD_URL") or DEFAULT_URL).rstrip("/")
        self.token = token if token is not None else os.environ.get("SPOT_CLOUD_TOKEN", "")
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self._http = httpx.Client(base_url=self.url, timeout=timeout, headers=headers)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "CloudClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # the one place a request is made ------------------------------------------------
    def request(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        import httpx

        params = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            r = self._http.request(method, path, json=body, params=params or None)
        except httpx.TransportError as e:
            raise CloudError(None, f"cannot reach the cloud at {self.url} ({_reason(e)})", self.url) from None
        return self._answer(r)

    def _answer(self, r: httpx.Response) -> Any:
        try:
            value = r.json() if r.content else None
        except ValueError:
            value = r.text
        if r.status_code >= 400:
            detail = value.get("detail") if isinstance(value, dict) else value
            raise CloudError(r.status_code, detail_text(detail) or r.reason_phrase, self.url)
        return value

    # service ---------------------------------------------------------------------------
    def health(self) -> dict:
        return self.request("GET", "/health")

    def whoami(self) -> dict:
        return self.request("GET", "/api/whoami")

    def stats(self) -> dict:
        return self.request("GET", "/api/stats")

    # devices ---------------------------------------------------------------------------
    def devices(self, site: str | None = None) -> list[dict]:
        return self.request("GET", "/api/devices", params={"site": site})

    def device(self, device: str | int) -> dict:
        d = self.request("GET", f"/api/devices/{_addr(device)}")
        for c in d.get("open_commands") or []:
            if isinstance(c.get("device"), int):  # as every other command view: hex
                c["device"] = f"{c['device']:08x}"
        return d

    def reports(self, device: str | int, since: float = 0, limit: int = 500,
                kind: str | None = None) -> list[dict]:
        return self.request("GET", f"/api/devices/{_addr(device)}/reports",
                            params={"since": since, "limit": limit, "kind": kind})

    # commands --------------------------------------------------------------------------
    def send(self, device: str | int, command: dict[str, Any]) -> dict:
        """Send a command (see command_kinds.py for each kind's fields); the API answers 202
        with its id once it is stored, whether or not the device is awake."""
        return self.request("POST", f"/api/devices/{_addr(device)}/commands", command)

    def commands(self, device: str | int | None = None, state: str | None = None,
                 limit: int = 100) -> list[dict]:
        if device is not None:
            found = self.request("GET", f"/api/devices/{_addr(device)}/commands", params={"limit": limit})
            return [c for c in found if state is None or c["state"] == state]
        return self.request("GET", "/api/commands", params={"state": state, "limit": limit})

    def command(self, cid: int) -> dict:
        return self.request("GET", f"/api/commands/{int(cid)}")

    def cancel(self, cid: int) -> dict:
        return self.request("POST", f"/api/commands/{int(cid)}/cancel")

    def pending(self) -> list[dict]:
        return self.request("GET", "/api/pending")

    def wait(self, cid: int, timeout: float = 60.0, states: tuple[str, ...] = FINAL_STATES,
             poll: float = 0.1) -> dict:
        """The command once it reaches one of states, or as it is when timeout runs out."""
        end = time.monotonic() + timeout
        while True:
            c = self.command(cid)
            if c["state"] in states or time.monotonic() >= end:
                return c
            time.sleep(min(poll, max(0.0, end - time.monotonic())))

    # sites -----------------------------------------------------------------------------
    def sites(self) -> list[dict]:
        return self.request("GET", "/api/sites")

    def site(self, name: str) -> dict:
        return self.request("GET", f"/api/sites/{name}")

    def send_prices(self, site: str, prices: list[float], interval_s: int = 3600,
                    start: int | None = None) -> dict:
        """A price forecast (per MWh) to every device of a site, retained for sleepers."""
        body: dict[str, Any] = {"prices": prices, "interval_s": interval_s}
        if start is not None:
            body["start"] = start
        return self.request("POST", f"/api/sites/{site}/prices", body)

    # the live stream -------------------------------------------------------------------
    def events(self) -> "EventStream":
        """Subscribe to the live stream; the subscription exists when this returns."""
        return EventStream(self)


class EventStream:
    """/api/events (Server-Sent Events) as an iterator of Event.

    close() may be called from another thread: it shuts the socket down, so a
    reader blocked waiting for the next event returns at once instead of at the
    server's next keep-alive (15 s later)."""

    def __init__(self, client: CloudClient) -> None:
        import httpx

        self._closed = threading.Event()
        # Keep-alives come every 15 s: no byte for 45 s means the cloud is gone.
        timeout = httpx.Timeout(10.0, read=45.0)
        try:
            self._cm = client._http.stream("GET", "/api/events", timeout=timeout)
            self._resp = self._cm.__enter__()
        except httpx.TransportError as e:
            raise CloudError(None, f"cannot reach the cloud at {client.url} ({_reason(e)})", client.url) from None
        if self._resp.status_code >= 400:
            self._resp.read()
            try:
                client._answer(self._resp)
            finally:
                self._cm.__exit__(None, None, None)

    def __iter__(self) -> Iterator[Event]:
        import httpx

        kind, data = "message", []
        try:
            for line in self._resp.iter_lines():
                if not line:
                    if data:
                        try:
                            yield Event(kind, json.loads("\n".join(data)))
                        except ValueError:
                            pass  # not JSON: not an event of ours
                    kind, data = "message", []
                elif line.startswith(":"):
                    continue  # a comment: "connected", keep-alives
                else:
                    field, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if field == "event":
                        kind = value
                    elif field == "data":
                        data.append(value)
        except (httpx.TransportError, httpx.StreamError, OSError):
            if not self._closed.is_set():
                raise CloudError(None, "the cloud closed the event stream") from None
        finally:
            self._cm.__exit__(None, None, None)

    def close(self) -> None:
        self._closed.set()
        stream = self._resp.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> "EventStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _addr(device: str | int) -> str:
    return f"{parse_device(device):08x}"


def _reason(e: Exception) -> str:
    text = str(e) or type(e).__name__
    if "refused" in text.lower():
        return "connection refused: is `spot cloud serve` running?"
    return text


# words for people -------------------------------------------------------------------------
def describe(kind: str, p: dict[str, Any]) -> str:
    """A command in words, from its kind and parameters (a request body or the API's view)."""
    def dur(key: str = "duration_s") -> str:
        s = p.get(key) or 0
        return f" for {_seconds(s)}" if s else ""

    if kind == "setpoint":
        return f"setpoint {p.get('value_c')} C{dur()}"
    if kind == "comfort_band":
        return f"comfort band {p.get('low_c')}-{p.get('high_c')} C{dur()}"
    if kind == "relay":
        return f"relay {'on' if p.get('on') else 'off'}"
    if kind == "sg_state":
        return f"SG Ready {p.get('state')} ({SG_NAMES.get(p.get('state'), '?')}){dur()}"
    if kind == "reduce":
        valid = f", valid {_seconds(p['valid_for_s'])}" if p.get("valid_for_s") else ""
        return f"reduce {p.get('percent')} %{dur()}{valid}"
    if kind == "limit":
        return f"limit to {p.get('watts')} W{dur()}"
    if kind == "restore":
        return "restore (end demand response)"
    if kind == "config":
        return "settings " + " ".join(f"{k}={v}" for k, v in (p.get("settings") or {}).items())
    if kind == "program":
        return f"weekly program, {len(p.get('steps') or [])} steps"
    if kind == "event":
        return f"event {p.get('event_id')}: value {p.get('value', 1)}{dur()}"
    return kind


def state_text(state: dict[str, Any] | None) -> str:
    """A device's last state report in a few words."""
    if not state:
        return "-"
    role = state.get("role")
    if role == "thermostat":
        t = state.get("temp_c")
        if t is None:
            return "sensor fault"
        return (f"room {t:.1f} C, target {state.get('target_c', 0):.1f} C, heater "
                f"{'on' if state.get('outputs') else 'off'}")
    if role == "smart_plug":
        shed = " (shedding: demand response)" if state.get("dr_kind") and not state.get("outputs") else ""
        return (f"relay {'on' if state.get('outputs') else 'off'}{shed}, {state.get('power_w', 0)} W, "
                f"{state.get('energy_wh', 0)} Wh")
    if role == "heat_pump":
        t = state.get("temp_c")
        sg = SG_NAMES.get(state.get("sg_state"), "?")
        return f"SG Ready {sg}, store {t:.1f} C" if t is not None else f"SG Ready {sg}, store sensor fault"
    return ", ".join(f"{k}={v}" for k, v in sorted(state.items()))


def outcome(c: dict[str, Any]) -> str:
    """A command's state, with the device's reason when it gave one: "adapted (on/off only)"."""
    why = c.get("reason_text") or (f"reason {c['reason']}" if c.get("reason") else "")
    return f"{c['state']} ({why})" if why else str(c["state"])


def _seconds(s: float) -> str:
    s = int(s)
    if s and s % 3600 == 0:
        return f"{s // 3600} h"
    if s and s % 60 == 0 and s < 3600:
        return f"{s // 60} min"
    return f"{s} s"
