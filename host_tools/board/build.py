"""Compile the device code to .mpy files, one tree per target architecture.

build/mpy/<arch>/ mirrors what goes on a board's /lib. The hot path carries
native (viper) code, so each architecture gets its own build; the rest is
bytecode and would run anywhere, but keeping one tree per arch makes deploying
a single copy. build/variants/ holds the hot path compiled both ways for the
unix port, so tests and benchmarks can set them side by side.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from host_tools.paths import BUILD, DEPS, FIRMWARE, LIB, ROOT  # noqa: F401 (others use them from here)

# Board family -> mpy-cross architecture.
TARGETS = {
    "unix": "x64",
    "esp32": "xtensawin",
    "esp32s3": "xtensawin",
    "rp2040": "armv6m",
    "esp32c3": "rv32imc",
    "esp32c6": "rv32imc",
    "rp2350": "armv7m",
}
ARCHS = sorted(set(TARGETS.values()))
# CPython stand-ins (a board has the real thing) and the freeze manifest.
HOST_ONLY = {"_cpython.py", "manifest.py"}
_VIPER_DECORATOR = re.compile(r"^\s*@micropython\.(viper|native)\s*$", re.M)


def mpy_cross() -> str:
    exe = Path(sys.executable).parent / "mpy-cross"
    return str(exe) if exe.exists() else "mpy-cross"


def _compile(src: Path, out: Path, arch: str | None, source_name: str) -> bool:
    """Compile src to out unless out is newer; True if it ran."""
    if out.exists() and out.stat().st_mtime >= src.stat().st_mtime:
        return False
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [mpy_cross(), "-o", str(out), "-s", source_name]
    if arch:
        cmd.append(f"-march={arch}")
    cmd.append(str(src))
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"mpy-cross failed on {src.relative_to(ROOT)} ({arch}): {res.stderr.strip()}")
    return True


def device_sources() -> list[Path]:
    return sorted(p for p in (LIB / "spot").glob("*.py") if p.name not in HOST_ONLY)


UMQTT = DEPS / "umqtt" / "simple.py"


def firmware_sources() -> list[Path]:
    """The application modules; main.py stays source (a board boots it by name)."""
    return sorted(p for p in FIRMWARE.glob("*.py") if p.name not in ("main.py", "manifest.py"))


def build_arch(arch: str) -> list[Path]:
    """lib/spot, the firmware's modules and umqtt.simple, as a board's /lib gets them."""
    outs = []
    sources = [(src, src.relative_to(LIB)) for src in device_sources()]
    sources += [(src, src.relative_to(FIRMWARE)) for src in firmware_sources()]
    if UMQTT.exists():
        sources.append((UMQTT, UMQTT.relative_to(BUILD / "deps")))
    for src, rel in sources:
        out = BUILD / "mpy" / arch / rel.with_suffix(".mpy")
        _compile(src, out, arch, str(rel))
        outs.append(out)
    main = BUILD / "mpy" / arch / "main.py"  # the one source file: what a board boots
    if not main.exists() or main.read_bytes() != (FIRMWARE / "main.py").read_bytes():
        main.write_bytes((FIRMWARE / "main.py").read_bytes())
    outs.append(main)
    write_manifest(BUILD / "mpy" / arch / "manifest.py", arch)
    return outs


def write_manifest(path: Path, arch: str) -> None:
    """A freeze manifest for the same modules, for a vendor's own MicroPython build
    (`FROZEN_MANIFEST=.../manifest.py`); boards/<board>/manifest.py adds the pin map."""
    text = (f"# Written by `spot build` ({arch}): freeze what this directory holds into a\n"
            "# MicroPython port build, code in flash instead of the heap. Include it from\n"
            "# your board's manifest, with your board.py (see boards/*/manifest.py).\n"
            f'include("{FIRMWARE / "manifest.py"}")\n')
    if arch in ("xtensawin", "rv32imc"):  # the ESP32 family: updates with rollback
        text += f'module("ota.py", base_path="{FIRMWARE}")\n'
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def build_variants() -> dict[str, Path]:
    """The hot path for the unix port as native code and as plain bytecode.

    The bytecode variant is the very same source with its viper decorators
    removed, so the two differ only in how they were compiled.
    """
    src = LIB / "spot" / "hotpath.py"
    vdir = BUILD / "variants"
    native = vdir / "hotpath_native.mpy"
    bytecode = vdir / "hotpath_bytecode.mpy"
    _compile(src, native, "x64", "hotpath_native.py")
    stripped = vdir / "hotpath_bytecode.py"
    text = _VIPER_DECORATOR.sub("", src.read_text())
    if not stripped.exists() or stripped.read_text() != text:
        vdir.mkdir(parents=True, exist_ok=True)
        stripped.write_text(text)
    _compile(stripped, bytecode, None, "hotpath_bytecode.py")
    return {"native": native, "bytecode": bytecode}


def build_virtual() -> list[Path]:
    """The virtual boards' peripherals (boards/virtual) for the unix port, precompiled
    like the firmware they sit under: build/virtual/."""
    out = []
    for src in sorted((ROOT / "boards" / "virtual").glob("*.py")):
        dst = BUILD / "virtual" / (src.stem + ".mpy")
        _compile(src, dst, "x64", src.name)
        out.append(dst)
    return out


def build_all(archs: list[str] | None = None) -> dict[str, list[Path]]:
    result = {arch: build_arch(arch) for arch in (archs or ARCHS)}
    if "x64" in result:
        build_virtual()
    build_variants()
    return result


def sync_package_files() -> None:
    """Rewrite lib/spot/package.json (mip) and manifest.py (freezing) from the sources."""
    import json

    names = [p.name for p in device_sources()]
    spot = LIB / "spot"
    version = json.loads((spot / "package.json").read_text())["version"]
    (spot / "package.json").write_text(json.dumps(
        {"urls": [["spot/" + n, n] for n in names], "version": version}, indent=1) + "\n")
    text = (spot / "manifest.py").read_text()
    body = "".join(f'        "{n}",\n' for n in names)
    text = re.sub(r"    files=\(\n.*?    \),", "    files=(\n" + body + "    ),", text, flags=re.S)
    (spot / "manifest.py").write_text(text)


if __name__ == "__main__":
    for arch, outs in build_all().items():
        print(f"{arch:10s} {len(outs)} modules -> {(BUILD / 'mpy' / arch).relative_to(ROOT)}")

