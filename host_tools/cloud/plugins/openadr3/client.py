"""The VEN's HTTP side: OpenADR 3 requests to a VTN with a bearer token.

Plain httpx on the spec's paths only (/auth/server, /auth/token, /programs, /vens,
/resources, /events, /reports), so it works against any VTN of the spec. The token is
either static (options.token) or OAuth2 client credentials: the token endpoint comes from
GET /auth/server (3.1.0) or options.token_url, falling back to the VTN's /auth/token; a
401 fetches a new one once. A VTN's error (problem+json) is read with toadr3's Problem
model and raised as VtnError with its title and detail.
"""
from __future__ import annotations

import json
import time
from typing import Any

import httpx
from pydantic import ValidationError
from toadr3 import models


class VtnError(RuntimeError):
    def __init__(self, status: int, title: str, detail: str = "") -> None:
        super().__init__(f"VTN answered {status} {title}{': ' + detail if detail else ''}")
        self.status = status


class Malformed(ValueError):
    """The VTN's answer is not JSON (or not the JSON the path returns)."""


class VtnClient:
    def __init__(self, base_url: str, token: str | None = None, client_id: str | None = None,
                 client_secret: str | None = None, token_url: str | None = None,
                 timeout: float = 10.0, verify: bool | str = True) -> None:
        self.base = base_url.rstrip("/")
        self.static = token
        self.client_id, self.client_secret, self.token_url = client_id, client_secret, token_url
        if not token and not (client_id and client_secret):
            raise ValueError("openadr3 needs options.token, or options.client_id and options.client_secret")
        self.http = httpx.AsyncClient(timeout=timeout, verify=verify)
        self._token: str | None = token
        self._expires = float("inf") if token else 0.0
        self.last_bytes = 0  # the size of the last answer's body, for the bench

    async def close(self) -> None:
        await self.http.aclose()

    async def _fetch_token(self) -> None:
        url = self.token_url
        if not url:
            try:  # 3.1.0: the VTN says where its token endpoint is
                r = await self.http.get(f"{self.base}/auth/server")
                url = r.json().get("tokenURL") if r.status_code == 200 else None
            except (httpx.HTTPError, ValueError, AttributeError):
                url = None
            url = url or f"{self.base}/auth/token"
            self.token_url = url
        r = await self.http.post(url, data={"grant_type": "client_credentials", "client_id": self.client_id,
                                            "client_secret": self.client_secret})
        if r.status_code != 200:
            raise self._error(r)
        body = r.json()
        if not isinstance(body, dict) or not body.get("access_token") or str(body.get("token_type")).lower() != "bearer":
            raise Malformed(f"the token endpoint answered {str(body)[:200]}")
        self._token = body["access_token"]
        expires_in = body.get("expires_in")
        # renewed a little early so a request never leaves with a token about to lapse
        self._expires = time.monotonic() + (float(expires_in) * 0.9 if isinstance(expires_in, (int, float)) else 3600)

    async def request(self, method: str, path: str, params: dict | None = None, body: Any = None) -> Any:
        """The JSON the VTN answers (VtnError for its problems, Malformed for non-JSON)."""
        for attempt in (0, 1):
            if not self.static and (self._token is None or time.monotonic() > self._expires):
                await self._fetch_token()
            r = await self.http.request(method, f"{self.base}{path}", params=params, json=body,
                                        headers={"Authorization": f"Bearer {self._token}"})
            if r.status_code == 401 and not self.static and attempt == 0:
                self._token = None  # revoked or expired early: one fresh token, then give up
                continue
            break
        if r.status_code >= 400:
            raise self._error(r)
        self.last_bytes = len(r.content)
        try:
            return r.json() if r.content else None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise Malformed(f"{method} {path}: the VTN's answer is not JSON ({e})") from None

    @staticmethod
    def _error(r: httpx.Response) -> VtnError:
        try:
            body = r.json()
            if isinstance(body, dict) and not str(body.get("type", "http")).startswith("http"):
                body = {k: v for k, v in body.items() if k != "type"}  # "about:blank" is no HttpUrl to toadr3
            p = models.Problem.model_validate(body)
            return VtnError(r.status_code, p.title, p.detail or "")
        except (ValueError, ValidationError):
            return VtnError(r.status_code, r.reason_phrase, r.text[:200])
