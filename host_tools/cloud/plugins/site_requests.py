"""What the OpenADR plugins (openadr2b, openadr3) share: an event for a whole site handed to
the site's energy manager, and the manager's orders taken as the event's commands.

A site-wide shed ("reduce x %") or import limit goes to the site's energy manager when it
has one (PluginContext.site_request): "reduce the site by W" (x % of the site's nominal
power, `site_watts`) or "keep the site under W". The manager splits it over the devices by
their capability records and sends the commands itself; the orders it lists in the
request's record become the event's commands (`adopt`), so the devices' answers still
decide the plugin's opt or report, and later ones (a device said no, a shed rotated) are
adopted when they appear (`adopt_later`). No manager (or one that does not answer):
`to_manager` says None and the plugin maps the event itself, as before.

An event's record (the plugin's, kept in ctx.state) holds "commands" (command id -> state)
and "frame_bytes"; `to_manager` needs nothing else of it, `adopt` adds to those two.
"""
from __future__ import annotations

from typing import Any, Iterable


def site_watts(shadows: list[dict], percent: int) -> int:
    """An event's percentage as watts for the site's energy manager: percent of the sum of
    the devices' nominal power (nominal_w in their capability records; a device that has
    not sent its record yet counts 0). The nominal power is what OpenADR's "reduce x %"
    is a percentage of when the VEN cannot know the site's baseline: it over-asks a site
    whose loads are idle, and the manager then sheds what can be shed, no more."""
    total = sum(int((sh.get("capabilities") or {}).get("nominal_w") or 0) for sh in shadows)
    return round(total * max(0, min(100, percent)) / 100)


def to_manager(ctx: Any, site: str, kind: str, watts: int, start: float, end: float, ref: str,
               now: float, replaces: Iterable[str] = ()) -> dict | None:
    """Hand one site request ("reduce" or "keep_under") to the site's energy manager; its
    record (id, status, orders so far), or None when the site has none or it did not take
    it (the plugin then maps the event itself). `replaces`: requests an earlier version of
    the event made, withdrawn first (the manager restores what they asked)."""
    for rid in replaces:
        ctx.site_request_cancel(site, rid)
    # A start within the minute is now: the manager plans by the minute, and an event
    # "from now" arrives with its start rounded up.
    begin = int(now) if start <= now + 60 else int(start)
    try:
        return ctx.site_request(site, {"kind": kind, "watts": int(watts), "start": begin,
                                       "end": int(end), "ref": ref})
    except (ValueError, TimeoutError) as e:
        ctx.log.warning("%s: the energy manager did not take it (%s): own mapping", ref, e)
        return None


def requests_of(rec: dict) -> list[str]:
    """The energy manager's requests an event's record names (2.0b keeps one, 3 a list)."""
    return list(rec.get("requests") or ([rec["request"]] if rec.get("request") else []))


def adopt(ctx: Any, rec: dict, out: dict, by_command: dict[int, Any], key: Any) -> int:
    """The manager's orders for the event's request are the event's commands (a restore is
    not taking part): added to rec["commands"] and by_command (-> key); how many were new."""
    new = 0
    for od in out.get("orders", []):
        cid = od.get("id")
        if cid is None or od["command"].get("kind") == "restore" or str(cid) in rec["commands"]:
            continue
        rec["commands"][str(cid)] = od["state"]
        by_command[cid] = key
        new += 1
        try:
            rec["frame_bytes"] += ctx.command(cid).get("frame_bytes") or 0
        except Exception:  # noqa: BLE001 - a figure only
            pass
    return new


def owner(event: dict, by_command: dict[int, Any], adopt_later: Any) -> Any | None:
    """Whose a command event is: the by_command key of a command the plugin sent, or the
    energy manager sent for one of its events (adopt_later(id) is asked about a new command
    it does not know); None for anything else."""
    if event.get("type") != "command":
        return None
    cid = event.get("id")
    if cid not in by_command and event.get("state") == "accepted":
        adopt_later(cid)
    return by_command.get(cid)


def adopt_later(ctx: Any, cid: int, events: Iterable[tuple[str, str, dict, Any]],
                by_command: dict[int, Any], now: float) -> list[tuple[str, dict, int]]:
    """A command the plugin does not know: maybe the energy manager's re-plan for one of its
    events (a device said no, a shed rotated); adopted if a running request lists it.
    events: (site, event id, record, by_command key) for every event the plugin keeps.
    Returns (event id, record, new commands) for each record that changed."""
    changed = []
    for site, eid, rec, key in events:
        if cid in by_command:
            break
        if rec.get("end", 0) <= now:
            continue
        for rid in requests_of(rec):
            out = ctx.site_request_get(site, rid)
            n = adopt(ctx, rec, out, by_command, key) if out else 0
            if n:
                changed.append((eid, rec, n))
    return changed
