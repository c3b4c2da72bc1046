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
BYTECODE = "bytecode"  # a build tree without native code: build/mpy/bytecode/
# CPython stand-ins (a board has the real thing) and the freeze manifest.
HOST_ONLY = {"_cpython.py", "manifest.py"}
# Per-role images (`spot build --role`): a role's image carries the firmware every
# role shares, the library a device imports, and its own modules: role.py's
# _ROLE_MODULES names the first of each, the rest are what only that one imports.
ROLE_MODULES = {
    "thermostat": ("thermostat",),
    "smart_plug": ("smart_plug",),
    "heat_pump": ("heat_pump", "sg_ready", "modbus_rtu"),
}
ROLES = tuple(ROLE_MODULES)
ONE_WIRE = ("thermostat", "heat_pump")  # a DS18B20 (board.temperature): onewire, ds18x20
# Library modules no firmware module imports (controllers build frames, a device
# only reads them; the tables of names a board keeps as private consts): in the full
# tree for other uses, never in a role's image.
NOT_ON_DEVICES = {"builders.py", "messages.py", "role_codes.py"}
# Firmware only the ESP32 family carries (updates with rollback; boards/README.md).
ESP32_ONLY = {"ota.py"}
ESP32_ARCHS = ("xtensawin", "rv32imc")
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
    """lib/spot, the firmware's modules and umqtt.simple, as a board's /lib gets them.

    arch BYTECODE: no native code at all (mpy-cross without -march, the hot path as
    its bytecode variant), for a port without a native emitter (the 32-bit WebAssembly
    port the figures are measured on)."""
    outs = []
    sources = [(src, src.relative_to(LIB)) for src in device_sources()]
    sources += [(src, src.relative_to(FIRMWARE)) for src in firmware_sources()]
    if UMQTT.exists():
        sources.append((UMQTT, UMQTT.relative_to(BUILD / "deps")))
    bytecode = arch == BYTECODE
    if bytecode:
        stripped = build_variants()["bytecode"].with_suffix(".py")
        hot = LIB / "spot" / "hotpath.py"
        sources = [(stripped if src == hot else src, rel) for src, rel in sources]
    for src, rel in sources:
        out = BUILD / "mpy" / arch / rel.with_suffix(".mpy")
        _compile(src, out, None if bytecode else arch, str(rel))
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


def role_image_modules(role: str, arch: str) -> list[str]:
    """The image's paths (as on a board's /) for one role: main.py, the shared firmware,
    the role's own modules, the library a device imports and umqtt.simple."""
    if role not in ROLE_MODULES:
        raise ValueError(f"no role called {role!r}: one of {', '.join(ROLES)}")
    foreign = {m for r, mods in ROLE_MODULES.items() if r != role for m in mods}
    names = ["main.py"]
    for src in firmware_sources():
        if src.stem in foreign or (src.name in ESP32_ONLY and arch not in ESP32_ARCHS):
            continue
        names.append(src.with_suffix(".mpy").name)
    names += ["spot/" + p.with_suffix(".mpy").name for p in device_sources()
              if p.name not in NOT_ON_DEVICES]
    names.append("umqtt/simple.mpy")
    return sorted(names)


def role_image_dir(arch: str, role: str) -> Path:
    return BUILD / "images" / arch / role


def build_role(arch: str, role: str) -> list[Path]:
    """build/images/<arch>/<role>/: what a board of that role carries, laid out as
    build/mpy/<arch>/ is (copies of its files), with a freeze manifest listing them and
    image.json (the modules and their bytes, for the figures and the tests)."""
    import json
    import shutil

    names = role_image_modules(role, arch)
    build_arch(arch)
    tree = BUILD / "mpy" / arch
    out = role_image_dir(arch, role)
    wanted = set(names) | {"manifest.py", "image.json"}
    if out.exists():  # a module that left the image leaves the directory too
        for p in sorted(out.rglob("*"), reverse=True):
            rel = p.relative_to(out).as_posix()
            if p.is_file() and rel not in wanted:
                p.unlink()
            elif p.is_dir() and not any(p.iterdir()):
                p.rmdir()
    outs = []
    for name in names:
        src, dst = tree / name, out / name
        if not src.exists():
            raise SystemExit(f"{src.relative_to(ROOT)} is missing: run `make setup` first")
        if not dst.exists() or dst.read_bytes() != src.read_bytes():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
        outs.append(dst)
    modules = [n.rsplit(".", 1)[0].replace("/", ".") for n in names if n != "main.py"]
    meta = {"role": role, "arch": arch, "modules": modules,
            "bytes": {n: (out / n).stat().st_size for n in names}}
    _write_if_changed(out / "image.json", json.dumps(meta, indent=1, sort_keys=True) + "\n")
    _write_if_changed(out / "manifest.py", role_manifest(role, arch, names))
    return outs


def role_manifest(role: str, arch: str, names: list[str]) -> str:
    """A freeze manifest for one role's image: its modules by name, nothing else."""
    spot = [n.split("/", 1)[1].replace(".mpy", ".py") for n in names if n.startswith("spot/")]
    fw = [n.replace(".mpy", ".py") for n in names if "/" not in n and n.endswith(".mpy")]
    lines = [f"# Written by `spot build --role {role}` ({arch}): the {role}'s image and nothing",
             "# else, frozen into a MicroPython port build (include it from your board's",
             "# manifest with your board.py; see boards/*/manifest.py).",
             'require("umqtt.simple")']
    if role in ONE_WIRE:
        lines[3:3] = ['require("onewire")', 'require("ds18x20")']
    lines.append('package("spot", files=(')
    lines += [f'    "{n}",' for n in spot]
    lines.append(f'), base_path="{LIB}")')
    lines += [f'module("{n}", base_path="{FIRMWARE}")' for n in fw]
    return "\n".join(lines) + "\n"


def _write_if_changed(path: Path, text: str) -> None:
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

