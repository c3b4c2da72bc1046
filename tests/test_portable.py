"""Run the portable test modules on every interpreter the device code must serve.

Each test function in tests/portable/ becomes three pytest items:
  cpython      - called directly in this process;
  mpy-source   - the MicroPython unix port importing lib/ as .py source;
  mpy-compiled - the unix port importing build/mpy/x64 (mpy-cross output,
                 the hot path as native viper code), as a board would.
"""
from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from functools import lru_cache

import pytest

from conftest import MICROPYTHON, ROOT

PORTABLE = ROOT / "tests" / "portable"
MODES = {"mpy-source": ROOT / "lib", "mpy-compiled": ROOT / "build" / "mpy" / "x64"}


def _cases() -> list[tuple[str, str]]:
    cases = []
    for path in sorted(PORTABLE.glob("test_*.py")):
        tree = ast.parse(path.read_text())
        cases += [(path.stem, node.name) for node in tree.body
                  if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")]
    return cases


CASES = _cases()
IDS = [f"{m}.{f}" for m, f in CASES]


@pytest.mark.parametrize("module,func", CASES, ids=IDS)
def test_cpython(module: str, func: str) -> None:
    expect = importlib.import_module("expect")
    try:
        getattr(importlib.import_module(module), func)()
    except expect.Skip as e:
        pytest.skip(str(e))


@lru_cache(maxsize=None)
def _run_micropython(mode: str, module: str) -> dict[str, tuple[str, str]]:
    res = subprocess.run(
        [str(MICROPYTHON), str(ROOT / "tests" / "mp_runner.py"), str(MODES[mode]), module],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
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


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("module,func", CASES, ids=IDS)
def test_micropython(mode: str, module: str, func: str) -> None:
    results = _run_micropython(mode, module)
    if "__crash__" in results:
        pytest.fail(f"the unix port died running {module}: {results['__crash__'][1]}")
    word, why = results.get(func, ("FAIL", "not run"))
    if word == "skip":
        pytest.skip(why)
    assert word == "ok", f"{why}\n{results['__log__'][1][-3000:]}"


def test_compiled_mode_really_loads_mpy_files() -> None:
    out = subprocess.run(
        [str(MICROPYTHON), "-c",
         f"import sys; sys.path[:0] = ['{MODES['mpy-compiled']}']; "
         "from spot import hotpath, cbor; print(hotpath.__file__, cbor.__file__)"],
        capture_output=True, text=True, check=True).stdout.split()
    assert all(p.endswith(".mpy") for p in out), out
