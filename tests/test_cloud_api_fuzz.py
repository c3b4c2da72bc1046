"""Schemathesis over the live service's own OpenAPI document: no 5xx, nothing without a token.

A short run here (the bench runs >= 2,000 requests with more examples per operation);
the HAR judge is checked on its own first, so a clean run means a clean API.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from host_tools.bench import cloud_api_fuzz as fz

pytestmark = pytest.mark.timeout(300)
TOKEN = "spot_the-real-one"


def _entry(method: str, url: str, status: int | None, auth: str | None = None) -> dict:
    headers = [{"name": "Authorization", "value": auth}] if auth is not None else []
    return {"request": {"method": method, "url": url, "headers": headers},
            "response": {"status": status, "content": {"text": "Internal Server Error"}} if status else {}}


def test_the_judge_counts_server_errors_and_success_without_a_token() -> None:
    base = "http://127.0.0.1:1"
    har = {"log": {"entries": [
        _entry("GET", f"{base}/api/devices", 200, f"Bearer {TOKEN}"),  # fine
        _entry("GET", f"{base}/api/devices", 200, f"bearer {TOKEN}"),  # fine: the scheme is caseless
        _entry("GET", f"{base}/api/devices?token={TOKEN}", 200),  # fine: the SSE form
        _entry("GET", f"{base}/health", 200),  # public
        _entry("GET", f"{base}/", 200),  # public: the dashboard
        _entry("GET", f"{base}/static/app.js", 200),  # public
        _entry("GET", f"{base}/api/devices", 200),  # no token: counted
        _entry("GET", f"{base}/api/keys", 200, f"Bearer {TOKEN}x"),  # a wrong token: counted
        _entry("GET", f"{base}/api/keys?token={TOKEN}", 200, "Bearer nope"),  # the header wins: counted
        _entry("GET", f"{base}/api/audit", 200, f"Basic {TOKEN}"),  # not a bearer token: counted
        _entry("POST", f"{base}/api/devices/1/commands", 500, f"Bearer {TOKEN}"),  # counted
        _entry("GET", f"{base}/api/stats", 503),  # counted
        _entry("GET", f"{base}/api/stats", None),  # no answer at all: counted
        _entry("GET", f"{base}/api/devices", 401),
    ]}}
    res = fz.FuzzResult()
    assert fz.judge_har(har, TOKEN, res) == 14
    assert len(res.unauthenticated_ok) == 4
    assert len(res.server_errors) == 2 and res.no_answer == 1
    assert res.authenticated == 4
    assert res.figures()["cloud_api_5xx"] == 3


def test_schemathesis_finds_no_server_error_and_no_way_in_without_a_token(tmp_path: Path) -> None:
    res = fz.run(tmp_path, max_examples=8)
    f = res.figures()
    assert f["cloud_api_5xx"] == 0, res.server_errors[:10]
    assert f["cloud_api_unauthenticated_2xx"] == 0, res.unauthenticated_ok[:10]
    # The run was a real one: every operation, both sides of the token, and generated
    # commands that passed every check and were stored (202), not only refusals.
    assert f["cloud_api_fuzz_requests"] >= 1000, res.runs
    assert f["cloud_api_fuzz_requests_authenticated"] >= 300
    assert f["cloud_api_fuzz_requests_unauthenticated"] >= 300
    assert res.statuses[202] > 0 and res.statuses[401] > 0 and res.statuses[422] > 0
    assert not res.uncovered, res.uncovered  # every operation of the document was requested
    assert all(r["exit"] == 0 for r in res.runs), res.runs  # schemathesis itself saw no failure
    assert "Traceback" not in (tmp_path / "cloud.log").read_text()
