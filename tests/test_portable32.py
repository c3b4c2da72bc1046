"""The portable tests once more, on a 32-bit MicroPython (tests/mp32_runner.py).

The hot path runs as its bytecode build there (the port has no viper), so a
u32 header field that became a long int would allocate under heap_lock, as it
did on every 32-bit board (issue 15). Tests that need what this port lacks
(cryptolib's AES, os.urandom for keys) are skipped with that reason; they run
on the unix port and CPython (test_portable.py).
"""
from __future__ import annotations

from functools import lru_cache

import pytest

import mp32_runner
from conftest import ROOT
from test_portable import CASES, IDS

_LACKS = {"no module named 'cryptography'": "this 32-bit port has no cryptolib (AES)",
          "has no attribute 'urandom'": "this 32-bit port has no os.urandom"}


@lru_cache(maxsize=None)
def _run(module: str) -> dict[str, tuple[str, str]]:
    from host_tools.board import build

    try:
        mp32_runner.ensure()
    except mp32_runner.Unavailable as e:
        return {"__skip__": ("skip", str(e))}
    bytecode = build.build_variants()["bytecode"].with_suffix(".py")
    res = mp32_runner.run(
        ROOT / "tests" / "mp_runner.py", ["/lib", module], heapsize="2048k",
        mounts={"/lib": ROOT / "lib", "/main/portable": ROOT / "tests" / "portable",
                "/firmware": ROOT / "firmware", "/boards/virtual": ROOT / "boards" / "virtual"},
        files={"/lib/spot/hotpath.py": bytecode})
    results: dict[str, tuple[str, str]] = {}
    for line in res.stdout.splitlines():
        word, _, rest = line.partition(" ")
        if word in ("ok", "skip", "FAIL"):
            label, _, why = rest.partition(":")
            results[label.split(".", 1)[1]] = (word, why.strip())
    if "done" not in res.stdout.splitlines():
        results["__crash__"] = ("FAIL", res.stdout[-2000:] + res.stderr[-2000:])
    results["__log__"] = ("", res.stdout + res.stderr)
    return results


@pytest.mark.parametrize("module,func", CASES, ids=IDS)
def test_micropython_32bit(module: str, func: str) -> None:
    results = _run(module)
    if "__skip__" in results:
        pytest.skip(results["__skip__"][1])
    if "__crash__" in results:
        pytest.fail(f"the 32-bit port died running {module}: {results['__crash__'][1]}")
    word, why = results.get(func, ("FAIL", "not run"))
    if word == "skip":
        pytest.skip(why)
    for sign, reason in _LACKS.items():
        if word == "FAIL" and sign in why:
            pytest.skip(reason)
    assert word == "ok", f"{why}\n{results['__log__'][1][-3000:]}"
