"""`spot flash`: write a MicroPython firmware image to a board, after checking it fits.

    spot flash ESP32_GENERIC-v1.26.bin --port /dev/ttyUSB0          # ESP32 family: esptool
    spot flash RPI_PICO_W-v1.26.uf2                                  # RP2040/RP2350: BOOTSEL drive
    spot flash firmware.bin --port /dev/ttyUSB0 --dry-run            # print what it would run

The image is checked before anything touches the board: an ESP image (magic 0xE9)
carries its chip in the extended header; a UF2 carries a family id in every block.
A wrong chip, a damaged or cut-short file, or an image larger than the flash (or
built for a larger one) stops the command with one line (status 2) and nothing is
written. ESP32 boards are erased and written in one run of the esptool pinned in
this Python (`python -m esptool write-flash --erase-all`), at the offset where that
chip's bootloader lives: MicroPython's .bin downloads are merged
images (bootloader, partition table, application) written there. RP2040/RP2350
boards take the UF2 as a file copied onto the drive they show with BOOTSEL held.
"""
from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import re
import shlex
import struct
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path


from host_tools.board.refusal import Refused  # noqa: E402 (callers also use it from here)


# --- ESP32 family -----------------------------------------------------------------

ESP_MAGIC = 0xE9
PARTITION_TABLE = 0x8000  # where MicroPython's ESP32 builds put it in flash
_PARTITION_MAGIC = b"\xaa\x50"  # the first entry of a partition table (ESP_PARTITION_MAGIC)
_APP_DESC_MAGIC = 0xABCD5432  # esp_app_desc_t: an application image, not the merged one


@dataclass(frozen=True)
class EspChip:
    name: str  # esptool's --chip
    image_id: int  # chip id in the image's extended header
    offset: int  # where the bootloader (and so the merged image) starts in flash


# Image chip ids and bootloader offsets as esptool 5.6 has them (esptool/targets/*.py:
# IMAGE_CHIP_ID, BOOTLOADER_FLASH_OFFSET); tests/test_flash.py checks them against it.
ESP_CHIPS = {c.name: c for c in (
    EspChip("esp32", 0, 0x1000),
    EspChip("esp32s2", 2, 0x1000),
    EspChip("esp32c3", 5, 0x0),
    EspChip("esp32s3", 9, 0x0),
    EspChip("esp32c2", 12, 0x0),
    EspChip("esp32c6", 13, 0x0),
    EspChip("esp32p4", 18, 0x2000),
    EspChip("esp32c5", 23, 0x2000),
)}
_ESP_BY_ID = {c.image_id: c for c in ESP_CHIPS.values()}

# --- RP2040 / RP2350 (UF2) ----------------------------------------------------------

UF2_BLOCK = 512
UF2_MAGIC0, UF2_MAGIC1, UF2_MAGIC_END = 0x0A324655, 0x9E5D5157, 0x0AB16F30
UF2_FLAG_NOFLASH = 0x0001
UF2_FLAG_FAMILY = 0x2000
FAMILY_RP2040 = 0xE48BFF56
FAMILY_ABSOLUTE = 0xE48BFF57  # RP2350: written regardless of partitions (the E10 fix block)
FAMILY_RP2350_ARM = 0xE48BFF59
FAMILY_RP2350_RISCV = 0xE48BFF5A
FAMILY_NAMES = {
    FAMILY_RP2040: "RP2040",
    FAMILY_ABSOLUTE: "absolute (RP2350)",
    0xE48BFF58: "data (RP2350)",
    FAMILY_RP2350_ARM: "RP2350 Arm",
    FAMILY_RP2350_RISCV: "RP2350 RISC-V",
    0xE48BFF5B: "RP2350 Arm non-secure",
    0x1C5F21B0: "ESP32",
    0xBFDD4EEE: "ESP32-S2",
    0xC47E5767: "ESP32-S3",
    0xD42BA06C: "ESP32-C3",
    0xADA52840: "nRF52840",
    0x68ED2B88: "SAMD21",
    0x55114460: "SAMD51",
}
XIP_BASE = 0x10000000  # where the flash appears in the RP2040/RP2350 address space


@dataclass(frozen=True)
class RpChip:
    name: str
    main: frozenset[int]  # families that carry the program
    extra: frozenset[int]  # families the bootrom also takes in the same file
    flash: int  # bytes, the reference board's (Pico W: 2 MB, Pico 2 W: 4 MB)
    board_id: str  # INFO_UF2.TXT's Board-ID on its BOOTSEL drive
    board: str


RP_CHIPS = {c.name: c for c in (
    RpChip("rp2040", frozenset({FAMILY_RP2040}), frozenset(), 2 << 20, "RPI-RP2", "Pico W"),
    RpChip("rp2350", frozenset({FAMILY_RP2350_ARM, FAMILY_RP2350_RISCV}),
           frozenset({FAMILY_ABSOLUTE}), 4 << 20, "RP2350", "Pico 2 W"),
)}
CHIPS = sorted(ESP_CHIPS) + sorted(RP_CHIPS)
DEFAULT_ESP_FLASH = 4 << 20
DEFAULT_BAUD = 460800


def _mb(n: int) -> str:
    return f"{n / (1 << 20):g} MB" if n >= 1 << 20 else f"{n / 1024:g} KB"


def parse_size(text: str) -> int:
    """'4MB', '4M', '16MB', '512KB', '2097152' -> bytes."""
    m = re.fullmatch(r"\s*(\d+)\s*([KkMm]?)[Bb]?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a flash size: {text!r} (say 2MB, 4MB, 16MB, ...)")
    return int(m[1]) << {"": 0, "k": 10, "m": 20}[m[2].lower()]


# --- checking an image --------------------------------------------------------------

def _read(path: Path) -> bytes:
    if not path.exists():
        raise Refused(f"{path}: no such file; download MicroPython for your board "
                      f"from https://micropython.org/download/ and give its path")
    if not path.is_file():
        raise Refused(f"{path} is not a file; give the path of the firmware image itself")
    return path.read_bytes()


def image_kind(data: bytes) -> str | None:
    """'esp' (an ESP image), 'uf2', or None."""
    if len(data) >= 8 and struct.unpack_from("<I", data)[0] == UF2_MAGIC0:
        return "uf2"
    if data[:1] == bytes([ESP_MAGIC]):
        return "esp"
    return None


def check_esp_image(data: bytes, name: str, chip: str | None, flash_size: int) -> EspChip:
    """The chip this ESP image is for (refusing a mismatch with `chip`) if it fits."""
    if len(data) < 24 or data[0] != ESP_MAGIC:
        raise Refused(f"{name} is not an ESP32 firmware image (no 0xE9 header); use the .bin "
                      f"from https://micropython.org/download/ for your board")
    image_id = struct.unpack_from("<H", data, 12)[0]
    found = _ESP_BY_ID.get(image_id)
    if chip is not None and chip not in ESP_CHIPS:
        raise Refused(f"{name} is an ESP32-family image, not one for {chip}; "
                      f"use the .uf2 for {chip} from https://micropython.org/download/")
    if found is None:
        raise Refused(f"{name} is an ESP image for chip id {image_id}, which spot flash does not "
                      f"know; flash it with esptool directly")
    if chip is not None and found.name != chip:
        raise Refused(f"{name} is built for {found.name}, not {chip}; download the {chip} image "
                      f"(or drop --chip if the board really is an {found.name})")
    if len(data) >= 36 and struct.unpack_from("<I", data, 32)[0] == _APP_DESC_MAGIC:
        raise Refused(f"{name} is an application image without bootloader (it belongs at 0x10000); "
                      f"use the full firmware .bin from https://micropython.org/download/")
    declared = 1 << 20 << (data[3] >> 4)  # header byte 3, high nibble: 0 = 1 MB, 1 = 2 MB, ...
    if data[3] >> 4 <= 7 and declared > flash_size:
        raise Refused(f"{name} is built for a {_mb(declared)} flash, more than the "
                      f"{_mb(flash_size)} given; pick the image for your flash size "
                      f"or give the real one with --flash-size")
    room = flash_size - found.offset
    if len(data) > room:
        raise Refused(f"{name} is {len(data)} bytes, more than the {room} bytes of a "
                      f"{_mb(flash_size)} "
                      f"flash from {found.offset:#x}; pick the image for your flash size "
                      f"or give the real one with --flash-size")
    table = PARTITION_TABLE - found.offset
    if data[table:table + 2] != _PARTITION_MAGIC:
        raise Refused(f"{name} is cut short or not a whole firmware ({len(data)} bytes, no "
                      f"partition table at {PARTITION_TABLE:#x}); download the full firmware "
                      f".bin again from https://micropython.org/download/")
    return found


@dataclass
class Uf2Info:
    chip: RpChip
    blocks: int
    payload: int  # bytes the program blocks write
    families: dict[int, int]  # family -> blocks


def check_uf2(data: bytes, name: str, chip: str | None, flash_size: int | None) -> Uf2Info:
    """Check every block of a UF2 and that it is for `chip` (or find which chip) and fits."""
    if image_kind(data) != "uf2":
        raise Refused(f"{name} is not a UF2 file; use the .uf2 for your board from "
                      f"https://micropython.org/download/")
    if chip is not None and chip not in RP_CHIPS:
        raise Refused(f"{name} is a UF2 file, not an image for {chip}; esptool needs the .bin "
                      f"from https://micropython.org/download/")
    if len(data) % UF2_BLOCK:
        raise Refused(f"{name} is cut short ({len(data)} bytes, not whole 512-byte UF2 blocks); "
                      f"download it again")
    blocks = []
    for i in range(len(data) // UF2_BLOCK):
        off = i * UF2_BLOCK
        m0, m1, flags, addr, size, no, total, fam = struct.unpack_from("<8I", data, off)
        end = struct.unpack_from("<I", data, off + UF2_BLOCK - 4)[0]
        if (m0, m1, end) != (UF2_MAGIC0, UF2_MAGIC1, UF2_MAGIC_END):
            raise Refused(f"{name}: UF2 block {i} is damaged (bad magic); download the file again")
        if not flags & UF2_FLAG_FAMILY:
            raise Refused(f"{name}: UF2 block {i} has no family id, which the RP2040/RP2350 "
                          f"bootrom needs; use MicroPython's own .uf2")
        if size > 476:
            raise Refused(f"{name}: UF2 block {i} claims {size} payload bytes (476 at most); "
                          f"download the file again")
        blocks.append((i, flags, addr, size, no, total, fam))
    if not blocks:
        raise Refused(f"{name} is empty; download it again")
    families: dict[int, int] = {}
    for b in blocks:
        families[b[6]] = families.get(b[6], 0) + 1
    if chip is None:  # the image says which chip it is for
        for c in RP_CHIPS.values():
            if families.keys() & c.main:
                chip = c.name
                break
    if chip is None:
        known = ", ".join(FAMILY_NAMES.get(f, f"{f:#010x}") for f in families)
        raise Refused(f"{name} is a UF2 for {known}, not for an RP2040 or RP2350; "
                      f"use the .uf2 for your board from https://micropython.org/download/")
    rp = RP_CHIPS[chip]
    wrong = [f for f in families if f not in rp.main | rp.extra]
    if wrong or not families.keys() & rp.main:
        what = ", ".join(FAMILY_NAMES.get(f, f"{f:#010x}") for f in (wrong or families))
        raise Refused(f"{name} is a UF2 for {what}, not for {chip} ({rp.board}); "
                      f"download the {chip} build (or give the right --chip)")
    # Each family is its own sequence: blockNo counts 0..numBlocks-1 within it. picotool's
    # RP2350-E10 block is the exception: one absolute-family block, numbered 0 of 2 (its
    # check_abs_block requires numBlocks == 2), alone in its family in the file.
    for fam in families:
        seq = [b for b in blocks if b[6] == fam]
        if fam == FAMILY_ABSOLUTE and [(b[4], b[5]) for b in seq] == [(0, 2)]:
            continue
        totals = {b[5] for b in seq}
        if len(totals) != 1:
            raise Refused(f"{name}: UF2 blocks disagree on the block count ({sorted(totals)}); "
                          f"the file is damaged, download it again")
        total = totals.pop()
        nos = sorted(b[4] for b in seq)
        bad = next((b for b in seq if b[4] >= total), None)
        if bad is not None:
            raise Refused(f"{name}: UF2 block {bad[0]} is number {bad[4]} of {total}; "
                          f"the file is damaged, download it again")
        if nos != list(range(total)):
            raise Refused(f"{name}: UF2 has {len(seq)} blocks numbered for {total} (missing or "
                          f"repeated); the file is damaged, download it again")
    flash = flash_size or rp.flash
    payload = 0
    for i, flags, addr, size, _no, _total, fam in blocks:
        if flags & UF2_FLAG_NOFLASH or fam not in rp.main:
            continue
        if size != 256:
            raise Refused(f"{name}: UF2 block {i} carries {size} bytes; the {chip} bootrom only "
                          f"takes 256-byte blocks")
        if not (XIP_BASE <= addr and addr + size <= XIP_BASE + flash):
            raise Refused(f"{name}: UF2 block {i} writes to {addr:#010x}, outside the {_mb(flash)} "
                          f"flash of a {rp.board}; pick the image for your board")
        payload += size
    if payload > flash:
        raise Refused(f"{name} writes {payload} bytes, more than the {_mb(flash)} flash of a "
                      f"{rp.board}; pick the image for your board (or give --flash-size)")
    return Uf2Info(rp, len(blocks), payload, families)


# --- ESP32: esptool ---------------------------------------------------------------

def esptool_available() -> bool:
    return importlib.util.find_spec("esptool") is not None


def esptool_commands(chip: EspChip, image: Path, port: str, baud: int) -> list[list[str]]:
    """One esptool run: erase the whole flash and write the merged image at the chip's
    bootloader offset (so a board esptool cannot reach is not erased either)."""
    base = [sys.executable, "-m", "esptool", "--chip", chip.name, "--port", port,
            "--baud", str(baud)]
    return [base + ["write-flash", "--erase-all", f"{chip.offset:#x}", str(image)]]


def _esptool_error(lines: list[str]) -> str:
    """esptool's own account of what went wrong, on one line."""
    text = [ln.strip() for ln in lines if ln.strip()]
    for i in range(len(text) - 1, -1, -1):
        ln = text[i]
        if "fatal error" in ln.lower() or ln.startswith(("ERROR", "Error", "error:")):
            ln = re.sub(r"^(ERROR:\s*)?(A fatal error occurred:\s*)?", "", ln)
            return ln.rstrip(".") or "failed"
    return text[-1] if text else "failed without a message"


def run_esptool(cmd: list[str], port: str) -> None:
    """Run one esptool command, its output shown as it comes; refuse on failure."""
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace", bufsize=1)
    except OSError as e:
        raise Refused(f"could not start esptool ({e.strerror}); run `make setup` or "
                      f"`pip install esptool==5.6.0`") from None
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        sys.stdout.write(line)
        sys.stdout.flush()
    if proc.wait():
        if any("No module named esptool" in ln for ln in lines):
            raise Refused("esptool is not installed in this Python; run `make setup` or "
                          "`pip install esptool==5.6.0`")
        raise Refused(f"esptool could not flash the board on {port}: {_esptool_error(lines)}; "
                      f"check the port and cable, and hold BOOT while it connects if it "
                      f"still fails")


# --- RP2040 / RP2350: the BOOTSEL drive ---------------------------------------------

def _mount_roots() -> list[str]:
    user = os.environ.get("USER") or os.environ.get("LOGNAME") or ""
    roots = [f"/media/{user}/*", f"/run/media/{user}/*", "/media/*", "/Volumes/*"] if user else \
        ["/media/*", "/run/media/*/*", "/Volumes/*"]
    return roots


def board_id(drive: Path) -> str | None:
    """The Board-ID line of a BOOTSEL drive's INFO_UF2.TXT (None: not a UF2 drive)."""
    try:
        text = (drive / "INFO_UF2.TXT").read_text(errors="replace")
    except OSError:
        return None
    m = re.search(r"^Board-ID:\s*(\S+)", text, re.M)
    return m[1] if m else ""


def find_bootsel_drives() -> list[Path]:
    """Mounted volumes holding INFO_UF2.TXT (RPI-RP2, RP2350, ...)."""
    seen: dict[str, Path] = {}
    for pattern in _mount_roots():
        for d in sorted(glob.glob(pattern)):
            p = Path(d)
            if (p / "INFO_UF2.TXT").is_file():
                seen.setdefault(os.path.realpath(p), p)
    return list(seen.values())


def _bootsel_hint(rp: RpChip) -> str:
    return (f"no BOOTSEL drive found: hold BOOTSEL on the {rp.board} while plugging it in "
            f"(its {rp.board_id} drive appears), then run this again (or give --drive)")


def pick_drive(rp: RpChip, drive: Path | None) -> Path:
    if drive is not None:
        bid = board_id(drive)
        if bid is None:
            raise Refused(f"{drive} is not a BOOTSEL drive (no INFO_UF2.TXT); hold BOOTSEL while "
                          f"plugging the board in and give the drive it mounts")
        if bid and bid != rp.board_id:
            raise Refused(f"the drive {drive} is a {bid} board, not an {rp.name} ({rp.board_id}); "
                          f"use the image for that board or plug in the right one")
        return drive
    drives = find_bootsel_drives()
    if not drives:
        raise Refused(_bootsel_hint(rp))
    ours = [d for d in drives if board_id(d) in (rp.board_id, "")]
    if not ours:
        others = ", ".join(f"{d} ({board_id(d)})" for d in drives)
        raise Refused(f"the BOOTSEL drive(s) {others} are not an {rp.name} ({rp.board_id}); "
                      f"use the image for that board or plug in the right one")
    if len(ours) > 1:
        raise Refused(f"several BOOTSEL drives ({', '.join(map(str, ours))}); "
                      f"pick one with --drive")
    return ours[0]


def _not_answering(port: str, why: str) -> Refused:
    return Refused(f"the board on {port} does not answer ({why}); hold BOOTSEL while plugging "
                   f"it in instead")


def reboot_to_bootsel(port: str, rp: RpChip, wait_s: float = 10.0) -> Path | None:
    """Ask MicroPython on `port` to enter its bootloader; the drive it mounts, if one does.
    Refused at once if mpremote cannot reach the board."""
    try:
        res = subprocess.run([sys.executable, "-m", "mpremote", "connect", port, "bootloader"],
                             capture_output=True, text=True, errors="replace", timeout=15)
    except OSError as e:
        raise _not_answering(port, f"could not start mpremote: {e.strerror or e}") from None
    except subprocess.TimeoutExpired:
        raise _not_answering(port, "nothing within 15 s") from None
    if res.returncode:
        text = [ln.strip() for ln in (res.stdout + "\n" + res.stderr).splitlines() if ln.strip()]
        why = text[-1] if text else f"mpremote exited with status {res.returncode}"
        why = why.removeprefix("mpremote: ").replace(" (it may be in use by another program)", "")
        raise _not_answering(port, why.rstrip("."))
    end = time.monotonic() + wait_s
    while time.monotonic() < end:
        drives = [d for d in find_bootsel_drives() if board_id(d) in (rp.board_id, "")]
        if len(drives) == 1:
            return drives[0]
        time.sleep(0.5)
    return None


def copy_uf2(data: bytes, image: Path, drive: Path) -> Path:
    dest = drive / image.name
    try:
        with open(dest, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        # The board reboots as the last block lands; a late error after that is expected.
        if not _gone(drive):
            raise Refused(f"could not copy {image.name} to {drive}: {e.strerror or e}; "
                          f"check the drive is mounted writable and try again") from None
    return dest


def _gone(drive: Path) -> bool:
    return not (drive / "INFO_UF2.TXT").exists()


# --- the command ---------------------------------------------------------------------

def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "flash", help="write a MicroPython firmware image to a board (esptool or BOOTSEL drive)",
        description=textwrap.fill(
            "Check a MicroPython firmware image (the chip it is built for, its integrity, that "
            "it fits the flash) and write it to a board: ESP32-family boards are erased and "
            "written in one esptool run at their bootloader offset (ESP32/ESP32-S2 0x1000, "
            "S3/C3/C6 0x0); RP2040/RP2350 boards get the UF2 copied to their BOOTSEL drive. "
            "Nothing is written if a check fails.", 78),
        epilog="examples:\n"
               "  spot flash ESP32_GENERIC-v1.26.0.bin --port /dev/ttyUSB0\n"
               "  spot flash ESP32_GENERIC_S3-v1.26.0.bin --port /dev/ttyACM0 --dry-run\n"
               "  spot flash RPI_PICO_W-v1.26.0.uf2            # hold BOOTSEL, plug in, run\n"
               "  spot flash RPI_PICO2_W-v1.26.0.uf2 --drive /media/me/RP2350",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", type=Path,
                   help="the firmware: an ESP32-family .bin or an RP2040/RP2350 .uf2")
    p.add_argument("--chip", choices=CHIPS,
                   help="the board's chip; refused if the image is built for another "
                        "(default: the chip the image says)")
    p.add_argument("--port", help="ESP32: the board's serial port (/dev/ttyUSB0, COM3, ...); "
                                  "RP2040/RP2350: if no BOOTSEL drive is mounted, ask MicroPython "
                                  "on this port to reboot into it")
    p.add_argument("--baud", type=int, default=DEFAULT_BAUD,
                   help=f"ESP32: esptool's baud rate (default {DEFAULT_BAUD})")
    p.add_argument("--flash-size", type=parse_size, metavar="SIZE",
                   help="the board's flash (e.g. 4MB, 8MB, 16MB; default: ESP32 4MB, "
                        "RP2040 2MB (Pico W), RP2350 4MB (Pico 2 W))")
    p.add_argument("--drive", type=Path,
                   help="RP2040/RP2350: the BOOTSEL drive's mount point (default: look under "
                        "/media/$USER, /run/media/$USER and /Volumes for INFO_UF2.TXT)")
    p.add_argument("--dry-run", action="store_true",
                   help="check the image and print what would be run or copied; write nothing")
    p.set_defaults(func=main)
    return p


def flash(image: Path, chip: str | None = None, port: str | None = None, baud: int = DEFAULT_BAUD,
          flash_size: int | None = None, drive: Path | None = None, dry_run: bool = False) -> int:
    """Check the image, then write it (or, dry_run, print how); Refused on any failure."""
    data = _read(image)
    kind = image_kind(data)
    if kind is None:
        raise Refused(f"{image} is neither an ESP32 image (.bin, starts 0xE9) nor a UF2 (.uf2); "
                      f"download MicroPython for your board from https://micropython.org/download/")
    if kind == "esp":
        esp = check_esp_image(data, str(image), chip, flash_size or DEFAULT_ESP_FLASH)
        if not port:
            raise Refused(f"flashing an {esp.name} needs --port, the board's serial port "
                          f"(e.g. /dev/ttyUSB0; `python -m serial.tools.list_ports` lists them)")
        if not esptool_available():
            raise Refused("esptool is not installed in this Python; run `make setup` or "
                          "`pip install esptool==5.6.0`")
        cmds = esptool_commands(esp, image, port, baud)
        if dry_run:
            for cmd in cmds:
                print(shlex.join(cmd))
            return 0
        print(f"{image.name}: {esp.name} image, {len(data)} bytes -> {port} at {esp.offset:#x}")
        for cmd in cmds:
            run_esptool(cmd, port)
        print(f"{esp.name} on {port} now runs {image.name}; next: spot deploy --port {port} ...")
        return 0
    info = check_uf2(data, str(image), chip, flash_size)
    rp = info.chip
    if dry_run:
        if drive is not None:
            target: Path | None = pick_drive(rp, drive)
        else:
            ours = [d for d in find_bootsel_drives() if board_id(d) in (rp.board_id, "")]
            target = ours[0] if len(ours) == 1 else None
        where = (target / image.name if target is not None
                 else f"<{rp.board_id} BOOTSEL drive>/{image.name}")
        print(f"copy {shlex.quote(str(image))} {shlex.quote(str(where))}")
        return 0
    if drive is None and port and not find_bootsel_drives():
        print(f"no {rp.board_id} drive mounted: asking MicroPython on {port} to reboot into BOOTSEL")
        found = reboot_to_bootsel(port, rp)
        if found is None:
            raise Refused(_bootsel_hint(rp))
        target = found
    else:
        target = pick_drive(rp, drive)
    print(f"{image.name}: {rp.name} UF2, {info.blocks} blocks, {info.payload} bytes -> {target}")
    copy_uf2(data, image, target)
    print(f"copied; the {rp.board} reboots into {image.name}; next: spot deploy --port ...")
    return 0


def main(args: argparse.Namespace) -> int:
    try:
        return flash(args.image, args.chip, args.port, args.baud, args.flash_size, args.drive,
                     args.dry_run)
    except Refused as e:
        print(f"spot flash: {e.message}", file=sys.stderr)
        raise
