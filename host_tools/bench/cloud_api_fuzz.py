"""The cloud's API under generated requests: no server error, nothing answered without a token.

Schemathesis (its CLI, `schemathesis run`) reads the live service's own
/openapi.json and generates requests for every operation: valid and invalid
bodies, parameters and headers, with the admin token and without it (its
coverage phase also drops the Authorization header it was given). A second
run sends no token at all, a third a well-formed but unknown one. Path
parameters name real devices, the real site and real command ids part of the
time (a schemathesis dictionary), so generated bodies reach the capability
checks and the store instead of stopping at a 404.

Every request and answer is read back from schemathesis's HAR report and
judged here, not by schemathesis: a 5xx (or no answer) anywhere counts, and so
does a 2xx to a request that did not carry the valid token in a form the
service accepts (the Authorization header's bearer credentials, else the
?token= query parameter). /health, the dashboard and the OpenAPI document are
public by design and left out of that second count.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from host_tools.cloud.testbed import CloudTestbed, run_device

SITE = "fuzz"
DEVICES = {0x4101: "thermostat", 0x4102: "smart_plug"}
PUBLIC = ("/health", "/openapi.json", "/docs", "/redoc", "/static/", "/docs/oauth2-redirect")
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


@dataclass
class FuzzResult:
    requests: int = 0
    authenticated: int = 0  # carried the valid admin token
    server_errors: list[str] = field(default_factory=list)  # "METHOD url -> status"
    no_answer: int = 0
    unauthenticated_ok: list[str] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    operations: set = field(default_factory=set)  # (method, path) as requested
    uncovered: list[str] = field(default_factory=list)  # operations of the document never requested
    runs: list[dict] = field(default_factory=list)  # per schemathesis run: name, requests, seconds, exit
    seconds: float = 0.0  # inside schemathesis
    wall_s: float = 0.0  # with the service's start and the devices' first wakes

    def figures(self) -> dict[str, float]:
        return {
            "cloud_api_5xx": float(len(self.server_errors) + self.no_answer),
            "cloud_api_unauthenticated_2xx": float(len(self.unauthenticated_ok)),
            "cloud_api_fuzz_requests": float(self.requests),
            "cloud_api_fuzz_requests_authenticated": float(self.authenticated),
            "cloud_api_fuzz_requests_unauthenticated": float(self.requests - self.authenticated),
            "cloud_api_fuzz_4xx": float(sum(n for s, n in self.statuses.items() if 400 <= s < 500)),
            "cloud_api_fuzz_2xx": float(sum(n for s, n in self.statuses.items() if 200 <= s < 300)),
            "cloud_api_fuzz_s": round(self.seconds, 1),
            "cloud_api_fuzz_wall_s": round(self.wall_s, 1),
            "cloud_api_fuzz_requests_per_s": round(self.requests / self.seconds, 1) if self.seconds else 0.0,
        }


def presented_token(req: dict) -> str | None:
    """The token the service would check for this request, read from the request as sent."""
    auth = [h["value"] for h in req.get("headers", []) if h["name"].lower() == "authorization"]
    if auth:
        scheme, _, cred = auth[-1].partition(" ")
        if scheme.lower() == "bearer" and cred:
            return cred
    q = parse_qs(urlsplit(req["url"]).query, keep_blank_values=True).get("token")
    return q[0] if q else None


def is_public(path: str) -> bool:
    return path == "/" or any(path == p or (p.endswith("/") and path.startswith(p)) for p in PUBLIC)


def judge_har(har: dict, token: str, res: FuzzResult) -> int:
    """Fold one HAR report into res; the number of requests it held."""
    n = 0
    for e in har["log"]["entries"]:
        n += 1
        req, resp = e["request"], e.get("response") or {}
        status = int(resp.get("status") or 0)
        path = urlsplit(req["url"]).path
        what = f"{req['method']} {req['url'][:200]} -> {status}"
        res.requests += 1
        res.statuses[status] += 1
        res.operations.add((req["method"], path))
        valid = presented_token(req) == token
        res.authenticated += valid
        if status == 0:
            res.no_answer += 1
        elif status >= 500:
            res.server_errors.append(what + " " + str((resp.get("content") or {}).get("text", ""))[:200])
        elif 200 <= status < 300 and not valid and not is_public(path):
            res.unauthenticated_ok.append(what)
    return n


def uncovered(doc: dict, requested: set) -> list[str]:
    """The document's operations that no request reached (path templates as patterns)."""
    out = []
    for template, methods in doc["paths"].items():
        pattern = re.compile("^" + re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template)) + "$")
        for m in methods:
            if not any(rm == m.upper() and pattern.match(rp) for rm, rp in requested):
                out.append(f"{m.upper()} {template}")
    return out


def _config(tmp: Path, devices: list[str], sites: list[str], cids: list[int]) -> Path:
    """A schemathesis.toml: real identifiers for path parameters, part of the time."""
    def values(xs: list[Any]) -> str:
        return "[" + ", ".join(json.dumps(x) for x in xs) + "]"

    path = tmp / "schemathesis.toml"
    path.write_text(f"""
[dictionaries.devices]
values = {values(devices)}
[dictionaries.sites]
values = {values(sites)}
[dictionaries.cids]
values = {values(cids)}
[parameters]
"path.device" = {{ dictionary = "devices", probability = 0.6 }}
"query.device" = {{ dictionary = "devices", probability = 0.5 }}
"path.site" = {{ dictionary = "sites", probability = 0.6 }}
"path.cid" = {{ dictionary = "cids", probability = 0.6 }}
""")
    return path


def schemathesis_run(tmp: Path, config: Path, url: str, name: str, headers: list[str], max_examples: int,
                     seed: int, workers: int = 1, timeout: float = 900) -> tuple[dict, dict]:
    """One `schemathesis run`; (its HAR report, a summary: requests, seconds, exit code)."""
    out = tmp / f"report-{name}"
    cmd = [str(SCHEMATHESIS), "--config-file", str(config), "run", url,
           "--checks", "not_a_server_error", "--max-examples", str(max_examples), "--seed", str(seed),
           "--workers", str(workers), "--phases", "examples,coverage,fuzzing",
           "--generation-database", "none", "--request-timeout", "20", "--no-color",
           "--suppress-health-check", "all", "--report", "har", "--report-dir", str(out),
           "--output-sanitize", "false"]
    for h in headers:
        cmd += ["-H", h]
    t0 = time.monotonic()
    p = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=timeout)
    seconds = time.monotonic() - t0
    (tmp / f"schemathesis-{name}.log").write_text(p.stdout + p.stderr)
    hars = sorted(out.glob("*.json"))
    if not hars:
        raise RuntimeError(f"schemathesis wrote no report (exit {p.returncode}):\n{(p.stdout + p.stderr)[-3000:]}")
    har = json.loads(hars[-1].read_text())
    return har, {"name": name, "seconds": round(seconds, 1), "exit": p.returncode,
                 "requests": len(har["log"]["entries"])}


def run(tmp: Path, max_examples: int = 100, seed: int = 11, workers: int = 1,
        db: str | None = None) -> FuzzResult:
    """Fuzz a fresh service (SQLite in tmp, or db: a PostgreSQL URL) with three runs.

    One schemathesis worker: with two, its coverage phase often died of a race in
    Hypothesis's lambda descriptions (ast.parse in two threads, "AST constructor
    recursion depth mismatch" on CPython 3.11), cutting the run short; and one
    worker was no slower, the service being the busy side."""
    res = FuzzResult()
    t0 = time.monotonic()
    with CloudTestbed(tmp, db=db) as tb:
        fs = {a: tb.provision(SITE, a) for a in DEVICES}
        tb.start()
        for a, role in DEVICES.items():  # their capability records: commands can be accepted
            run_device(tmp, fs[a], tb.broker.port, role, 1)
        end = time.monotonic() + 10
        while time.monotonic() < end and not all(
                tb.api("GET", f"/api/devices/{a:08x}")["capabilities"] for a in DEVICES):
            time.sleep(0.05)
        cids = [tb.api("POST", f"/api/devices/{a:08x}/commands", {"kind": "restore"})["id"] for a in DEVICES]
        names = [f"{a:08x}" for a in DEVICES] + [f"{a:x}" for a in DEVICES] + ["0x%x" % min(DEVICES)]
        config = _config(tmp, names, [SITE], cids)
        url = f"http://127.0.0.1:{tb.port}/openapi.json"
        # With the admin token (schemathesis also drops it in some requests), with
        # none, and with a token of the right shape that the service never issued.
        plans = [("admin", [f"Authorization: Bearer {tb.token}"], max_examples),
                 ("none", [], max(1, max_examples // 4)),
                 ("unknown", ["Authorization: Bearer spot_" + "x" * 43], max(1, max_examples // 4))]
        for name, headers, n in plans:
            har, summary = schemathesis_run(tmp, config, url, name, headers, n, seed, workers)
            judge_har(har, tb.token, res)
            res.runs.append(summary)
        if tb.procs[-1].poll() is not None:
            res.no_answer += 1  # the service died under the fuzzing
        res.uncovered = uncovered(tb.api("GET", "/openapi.json"), res.operations)
    res.seconds = sum(r["seconds"] for r in res.runs)
    res.wall_s = time.monotonic() - t0
    return res


def figures(quick: bool = False) -> dict[str, float]:
    """The bench's figures: >= 2,000 generated requests (a few hundred when quick)."""
    tmp = Path(tempfile.mkdtemp(prefix="spot-fuzz-"))
    try:
        return run(tmp, max_examples=8 if quick else 100).figures()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    n = int(args[args.index("-n") + 1]) if "-n" in args else 100
    tmp = Path(tempfile.mkdtemp(prefix="spot-fuzz-"))
    try:
        res = run(tmp, max_examples=n, db=args[args.index("--db") + 1] if "--db" in args else None)
        for k, v in sorted(res.figures().items()):
            print(f"{k:45s} {v:g}")
        for r in res.runs:
            print("run", r)
        print("statuses", dict(sorted(res.statuses.items())), "operations", len(res.operations))
        for line in (res.server_errors + res.unauthenticated_ok)[:20]:
            print("  ", line)
        return 1 if res.server_errors or res.unauthenticated_ok or res.no_answer else 0
    finally:
        if "--keep" in args:
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
