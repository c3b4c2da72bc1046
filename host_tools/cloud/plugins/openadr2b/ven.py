"""openleadr's VEN client, with the three things the cloud needs that it does not do itself.

- Re-registration: a VEN that was registered before (its venID and registrationID kept
  in the cloud's database) sends them in oadrCreatePartyRegistration, so a restart
  re-registers the same VEN rather than a new one.
- Error codes in oadrCreatedEvent: openleadr's handler returns only optIn/optOut; a
  refused event also carries its OpenADR status code (454, 460, 462) and the reason, set
  here on the eventResponse openleadr builds.
- Counting: the bytes of every oadrDistributeEvent received, and messages that fail the
  OpenADR schema (openleadr drops them; they are counted and logged here).
"""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, Callable

from lxml import etree
from openleadr import OpenADRClient
from openleadr.messaging import XML_PARSER

log = logging.getLogger("spot.cloud.plugin.openadr2b")


class Ven(OpenADRClient):
    def __init__(self, *, registration_id: str | None = None, poll_s: float | None = None,
                 on_distribute: Callable[[int], None] | None = None,
                 on_malformed: Callable[[], None] | None = None, **kw: Any) -> None:
        super().__init__(show_fingerprint=False, **kw)
        self.registration_id = self.kept_registration_id = registration_id
        self.poll_s = poll_s
        self.refusals: dict[str, tuple[int, str]] = {}  # event id -> (status code, reason)
        self.malformed = 0
        self.distributed_bytes: list[int] = []
        self._on_distribute = on_distribute or (lambda n: None)
        self._on_malformed = on_malformed or (lambda: None)
        base = self._create_message
        self._create_message = lambda kind, **payload: base(kind, **self._amend(kind, payload))
        self.add_hook("after_receive_xml", self._received)

    async def create_party_registration(self, *a: Any, **kw: Any) -> Any:
        # The same VEN again, not a new one. (openleadr's run() first asks oadrQueryRegistration,
        # whose answer carries an empty registrationID that clears the one it was given.)
        rid = self.registration_id or self.kept_registration_id
        if kw.get("registration_id") is None and rid:
            kw["registration_id"] = rid
        out = await super().create_party_registration(*a, **kw)
        if self.registration_id and self.poll_s:
            self.poll_frequency = timedelta(seconds=self.poll_s)
        return out

    def _amend(self, kind: str, payload: dict) -> dict:
        if kind == "oadrCreatedEvent":
            for r in payload.get("event_responses") or []:
                refusal = self.refusals.get(r.get("event_id"))
                if refusal:
                    r["response_code"], r["response_description"] = refusal[0], refusal[1][:200]
        return payload

    def _received(self, text: str) -> None:
        raw = text.encode()
        try:
            # openleadr validates too, but only logs a failure at debug-ish level and
            # drops the message: validating here lets the cloud count and name it.
            etree.fromstring(raw, XML_PARSER)
        except etree.XMLSyntaxError as e:
            self.malformed += 1
            log.warning("VEN %s: a message from the VTN fails the OpenADR 2.0b schema and is "
                        "dropped, never forwarded: %s", self.ven_name, str(e)[:200])
            self._on_malformed()
            return
        if b"oadrDistributeEvent" in raw:
            self.distributed_bytes.append(len(raw))
            self._on_distribute(len(raw))
