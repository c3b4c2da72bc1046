"""spot flash: images built here (an ESP header with a chosen chip id, UF2s with chosen
families and numbering) are checked, dry runs print the exact commands, and every
bad input stops with one line and status 2 before anything is written."""
from __future__ import annotations

import argparse
import shlex
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from host_tools.board import flash

ROOT = Path(__file__).resolve().parent.parent


# --- synthetic images -----------------------------------------------------------------

def esp_image(chip_id: int, size: int | None = None, app: bool = False, flash_mb: int = 4,
              table: bool = True) -> bytes:
    """A merged ESP image: a header (magic 0xE9, one segment) with chip_id in the extended
    header and flash_mb in byte 3, and a partition table's magic where the chip's
    layout puts 0x8000 (the image starts at its bootloader offset)."""
    chip = flash._ESP_BY_ID.get(chip_id)
    table_at = 0x8000 - (chip.offset if chip else 0)
    size = table_at + 0x1000 if size is None else size
    common = struct.pack("<BBBBI", 0xE9, 1, 2, flash_mb.bit_length() - 1 << 4, 0x40080000)
    extended = struct.pack("<BBBBHBHH4BB", 0xEE, 0, 0, 0, chip_id, 0, 0, 0xFFFF, 0, 0, 0, 0, 1)
    seg_data = struct.pack("<I", 0xABCD5432 if app else 0x50) + bytes(28)
    seg = struct.pack("<II", 0x3FFF0000, len(seg_data)) + seg_data
    head = common + extended + seg
    assert len(head) <= size
    data = bytearray(head + b"\xff" * (size - len(head)))
    if table and table_at + 2 <= size:
        data[table_at:table_at + 2] = b"\xaa\x50"
    return bytes(data)


def uf2_block(no: int, total: int, family: int, addr: int, payload: int = 256,
              flags: int = flash.UF2_FLAG_FAMILY) -> bytes:
    head = struct.pack("<8I", flash.UF2_MAGIC0, flash.UF2_MAGIC1, flags, addr, payload, no, total, family)
    return head + bytes([no & 0xFF]) * 476 + struct.pack("<I", flash.UF2_MAGIC_END)


def uf2(n: int, family: int, base: int = flash.XIP_BASE, total: int | None = None) -> bytes:
    return b"".join(uf2_block(i, n if total is None else total, family, base + 256 * i)
                    for i in range(n))


def rp2350_uf2(n: int = 8) -> bytes:
    """As picotool writes it: the E10 block first, alone in the absolute family and
    numbered 0 of 2 (picotool's check_abs_block requires num_blocks == 2)."""
    e10 = uf2_block(0, 2, flash.FAMILY_ABSOLUTE, 0x10FFFF00)
    return e10 + uf2(n, flash.FAMILY_RP2350_ARM)


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def bootsel_drive(tmp_path: Path, board_id: str = "RPI-RP2") -> Path:
    d = tmp_path / "drive"
    d.mkdir()
    model = "Raspberry Pi RP2" if board_id == "RPI-RP2" else "Raspberry Pi RP2350"
    (d / "INFO_UF2.TXT").write_text(f"UF2 Bootloader v3.0\nModel: {model}\nBoard-ID: {board_id}\n")
    (d / "INDEX.HTM").write_text("<html></html>")
    return d


# --- running the command as the CLI does ------------------------------------------------

def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="spot")
    flash.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["flash", *argv])


def run(argv: list[str]) -> int:
    args = parse(argv)
    return args.func(args)


def refused(argv: list[str], capsys) -> str:
    """The one line a refused command prints (and check it exits with status 2)."""
    with pytest.raises(SystemExit) as e:
        run(argv)
    assert e.value.code == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("spot flash: ")
    return lines[0]


# --- ESP32 family -------------------------------------------------------------------------

@pytest.mark.parametrize("chip,chip_id,offset", [
    ("esp32", 0, "0x1000"), ("esp32s2", 2, "0x1000"), ("esp32s3", 9, "0x0"),
    ("esp32c3", 5, "0x0"), ("esp32c6", 13, "0x0"),
])
def test_dry_run_prints_one_erase_and_write_at_the_chip_offset(tmp_path, capsys, chip, chip_id, offset):
    """One esptool run erases and writes: a board it cannot reach is not erased either."""
    img = write(tmp_path, "fw.bin", esp_image(chip_id))
    assert run([str(img), "--port", "/dev/ttyUSB7", "--dry-run", "--baud", "921600"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    base = [sys.executable, "-m", "esptool", "--chip", chip, "--port", "/dev/ttyUSB7", "--baud", "921600"]
    assert lines == [shlex.join(base + ["write-flash", "--erase-all", offset, str(img)])]
    # and with --chip given to match, the same commands
    assert run([str(img), "--chip", chip, "--port", "/dev/ttyUSB7", "--dry-run", "--baud", "921600"]) == 0
    assert capsys.readouterr().out.strip().splitlines() == lines


def test_dry_run_quotes_paths(tmp_path, capsys):
    d = tmp_path / "my firmware"
    d.mkdir()
    img = write(d, "esp32 v1.26.bin", esp_image(0))
    run([str(img), "--port", "/dev/ttyUSB0", "--dry-run"])
    write_cmd, = capsys.readouterr().out.strip().splitlines()
    assert shlex.split(write_cmd)[-2:] == ["0x1000", str(img)]
    assert "--baud 460800" in write_cmd  # the default


def test_chip_table_matches_the_pinned_esptool():
    targets = pytest.importorskip("esptool.targets")
    for name, chip in flash.ESP_CHIPS.items():
        rom = targets.CHIP_DEFS[name]
        assert (chip.image_id, chip.offset) == (rom.IMAGE_CHIP_ID, rom.BOOTLOADER_FLASH_OFFSET), name


def test_image_for_another_esp_chip_is_refused(tmp_path, capsys):
    img = write(tmp_path, "s3.bin", esp_image(9))
    line = refused([str(img), "--chip", "esp32", "--port", "/dev/ttyUSB0", "--dry-run"], capsys)
    assert "built for esp32s3, not esp32" in line


def test_esp_image_for_an_rp_chip_is_refused(tmp_path, capsys):
    img = write(tmp_path, "esp.bin", esp_image(0))
    line = refused([str(img), "--chip", "rp2040", "--dry-run"], capsys)
    assert "not one for rp2040" in line


def test_unknown_esp_chip_id_is_refused(tmp_path, capsys):
    img = write(tmp_path, "odd.bin", esp_image(0x77))
    assert "chip id 119" in refused([str(img), "--port", "/dev/ttyUSB0", "--dry-run"], capsys)


def test_application_only_image_is_refused(tmp_path, capsys):
    img = write(tmp_path, "micropython.bin", esp_image(0, app=True))
    line = refused([str(img), "--port", "/dev/ttyUSB0", "--dry-run"], capsys)
    assert "application image" in line and "0x10000" in line


def test_esp_image_too_big_for_the_flash(tmp_path, capsys):
    # 4 MB at 0x1000 does not fit a 4 MB flash; it does fit 8 MB
    img = write(tmp_path, "big.bin", esp_image(0, size=4 << 20))
    line = refused([str(img), "--port", "/dev/ttyUSB0", "--dry-run"], capsys)
    assert "more than" in line and "4 MB" in line and "--flash-size" in line
    assert run([str(img), "--port", "/dev/ttyUSB0", "--dry-run", "--flash-size", "8MB"]) == 0
    # at offset 0 (ESP32-S3) exactly 4 MB fits
    img = write(tmp_path, "s3.bin", esp_image(9, size=4 << 20))
    assert run([str(img), "--port", "/dev/ttyUSB0", "--dry-run"]) == 0
    refused([str(img), "--port", "/dev/ttyUSB0", "--dry-run", "--flash-size", "2MB"], capsys)


def test_esp_image_for_a_bigger_flash_is_refused(tmp_path, capsys):
    """An image built for 16 MB (header byte 3) on a board given as 4 MB: refused, even
    though its bytes would fit; with the real size given it goes."""
    img = write(tmp_path, "s3_16mb.bin", esp_image(9, flash_mb=16))
    line = refused([str(img), "--port", "/dev/ttyUSB0", "--dry-run"], capsys)
    assert "built for a 16 MB flash, more than the 4 MB given" in line and "--flash-size" in line
    refused([str(img), "--port", "/dev/ttyUSB0", "--dry-run", "--flash-size", "8MB"], capsys)
    assert run([str(img), "--port", "/dev/ttyUSB0", "--dry-run", "--flash-size", "16MB"]) == 0
    # a 2 MB image on a 4 MB board is fine
    img = write(tmp_path, "small.bin", esp_image(0, flash_mb=2))
    assert run([str(img), "--port", "/dev/ttyUSB0", "--dry-run"]) == 0


@pytest.mark.parametrize("chip_id,kw", [
    (9, dict(size=64)),  # a download cut short after its header
    (0, dict(size=0x7000)),  # ESP32: cut just before its partition table (0x8000 - 0x1000)
    (9, dict(table=False)),  # long enough, but no partition table where it belongs
])
def test_cut_short_esp_image_is_refused(tmp_path, capsys, chip_id, kw):
    img = write(tmp_path, "fw.bin", esp_image(chip_id, **kw))
    line = refused([str(img), "--port", "/dev/ttyUSB0", "--dry-run"], capsys)
    assert "cut short or not a whole firmware" in line and "partition table at 0x8000" in line


def test_esp_needs_a_port(tmp_path, capsys):
    img = write(tmp_path, "fw.bin", esp_image(0))
    assert "--port" in refused([str(img), "--dry-run"], capsys)


def test_esptool_missing(tmp_path, capsys, monkeypatch):
    img = write(tmp_path, "fw.bin", esp_image(0))
    monkeypatch.setattr(flash, "esptool_available", lambda: False)
    line = refused([str(img), "--port", "/dev/ttyUSB0"], capsys)
    assert "esptool is not installed" in line


def test_board_not_answering_summarises_esptools_error(tmp_path, capsys):
    """The real esptool, pointed at a port that does not exist: its fatal error, one line."""
    img = write(tmp_path, "fw.bin", esp_image(0))
    port = str(tmp_path / "no-such-port")
    line = refused([str(img), "--port", port], capsys)
    assert f"esptool could not flash the board on {port}" in line
    assert "Could not open" in line and "check the port" in line


def test_missing_file(tmp_path, capsys):
    line = refused([str(tmp_path / "nope.bin"), "--port", "/dev/ttyUSB0"], capsys)
    assert "no such file" in line and "micropython.org/download" in line


def test_neither_esp_nor_uf2(tmp_path, capsys):
    img = write(tmp_path, "readme.txt", b"hello, this is not firmware\n" * 10)
    assert "neither an ESP32 image" in refused([str(img), "--port", "/dev/ttyUSB0"], capsys)
    img = write(tmp_path, "empty.bin", b"")
    assert "neither" in refused([str(img)], capsys)


# --- RP2040 / RP2350 -------------------------------------------------------------------------

def test_rp2040_dry_run_prints_the_copy(tmp_path, capsys):
    img = write(tmp_path, "pico_w.uf2", uf2(16, flash.FAMILY_RP2040))
    drive = bootsel_drive(tmp_path)
    assert run([str(img), "--drive", str(drive), "--dry-run"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [f"copy {img} {drive / 'pico_w.uf2'}"]
    assert not (drive / "pico_w.uf2").exists()


def test_rp2040_copies_to_the_bootsel_drive(tmp_path, capsys):
    data = uf2(16, flash.FAMILY_RP2040)
    img = write(tmp_path, "pico_w.uf2", data)
    drive = bootsel_drive(tmp_path)
    assert run([str(img), "--drive", str(drive), "--chip", "rp2040"]) == 0
    assert (drive / "pico_w.uf2").read_bytes() == data


def test_rp2350_image_with_the_e10_block(tmp_path, capsys):
    img = write(tmp_path, "pico2_w.uf2", rp2350_uf2())
    info = flash.check_uf2(img.read_bytes(), "x", None, None)
    assert info.chip.name == "rp2350" and info.payload == 8 * 256 and info.blocks == 9
    drive = bootsel_drive(tmp_path, "RP2350")
    assert run([str(img), "--drive", str(drive)]) == 0
    assert (drive / "pico2_w.uf2").read_bytes() == img.read_bytes()
    # RISC-V builds are RP2350 too
    img = write(tmp_path, "riscv.uf2", uf2(4, flash.FAMILY_RP2350_RISCV))
    assert flash.check_uf2(img.read_bytes(), "x", "rp2350", None).chip.name == "rp2350"


@pytest.mark.parametrize("mangle,words", [
    (lambda d: d[:-512], "missing or repeated"),  # the Arm program lost its last block
    (lambda d: d + uf2_block(7, 8, flash.FAMILY_RP2350_ARM, flash.XIP_BASE), "missing or repeated"),
    (lambda d: d + uf2_block(8, 8, flash.FAMILY_RP2350_ARM, flash.XIP_BASE), "number 8 of 8"),
    # an absolute block other than picotool's one 0-of-2 is numbered as any family is
    (lambda d: d + uf2_block(1, 2, flash.FAMILY_ABSOLUTE, 0x10FFFF00)
     + uf2_block(1, 2, flash.FAMILY_ABSOLUTE, 0x10FFFF00), "missing or repeated"),
    (lambda d: uf2_block(0, 3, flash.FAMILY_ABSOLUTE, 0x10FFFF00) + d[512:], "missing or repeated"),
])
def test_damaged_rp2350_numbering_is_still_refused(tmp_path, capsys, mangle, words):
    img = write(tmp_path, "pico2_w.uf2", mangle(rp2350_uf2()))
    drive = bootsel_drive(tmp_path, "RP2350")
    assert words in refused([str(img), "--drive", str(drive)], capsys)
    assert not (drive / "pico2_w.uf2").exists()


@pytest.mark.parametrize("family,chip,words", [
    (flash.FAMILY_RP2040, "rp2350", "RP2040, not for rp2350"),
    (flash.FAMILY_RP2350_ARM, "rp2040", "RP2350 Arm, not for rp2040"),
    (0x1C5F21B0, None, "ESP32, not for an RP2040 or RP2350"),
])
def test_wrong_family_is_refused(tmp_path, capsys, family, chip, words):
    img = write(tmp_path, "fw.uf2", uf2(4, family))
    drive = bootsel_drive(tmp_path)
    argv = [str(img), "--drive", str(drive)] + (["--chip", chip] if chip else [])
    assert words in refused(argv, capsys)
    assert sorted(p.name for p in drive.iterdir()) == ["INDEX.HTM", "INFO_UF2.TXT"]


def test_uf2_for_an_esp_chip_flag_is_refused(tmp_path, capsys):
    img = write(tmp_path, "fw.uf2", uf2(4, flash.FAMILY_RP2040))
    assert "UF2 file, not an image for esp32" in refused([str(img), "--chip", "esp32"], capsys)


def test_drive_of_the_other_chip_is_refused(tmp_path, capsys):
    img = write(tmp_path, "fw.uf2", uf2(4, flash.FAMILY_RP2040))
    drive = bootsel_drive(tmp_path, "RP2350")
    line = refused([str(img), "--drive", str(drive)], capsys)
    assert "RP2350 board, not an rp2040" in line
    assert not (drive / "fw.uf2").exists()


def test_not_a_bootsel_drive(tmp_path, capsys):
    img = write(tmp_path, "fw.uf2", uf2(4, flash.FAMILY_RP2040))
    assert "not a BOOTSEL drive" in refused([str(img), "--drive", str(tmp_path)], capsys)


def test_no_bootsel_drive(tmp_path, capsys, monkeypatch):
    img = write(tmp_path, "fw.uf2", uf2(4, flash.FAMILY_RP2040))
    monkeypatch.setattr(flash, "_mount_roots", lambda: [str(tmp_path / "media" / "*")])
    line = refused([str(img)], capsys)
    assert "no BOOTSEL drive found" in line and "hold BOOTSEL" in line
    # found under the mount roots when one is there
    (tmp_path / "media").mkdir()
    drive = bootsel_drive(tmp_path / "media")
    assert run([str(img)]) == 0
    assert (drive / "fw.uf2").exists()


def test_no_drive_and_a_port_that_does_not_answer(tmp_path, capsys, monkeypatch):
    """--port: mpremote cannot reach the board -> refused at once, not after waiting
    for a drive that cannot appear."""
    img = write(tmp_path, "fw.uf2", uf2(4, flash.FAMILY_RP2040))
    monkeypatch.setattr(flash, "_mount_roots", lambda: [str(tmp_path / "media" / "*")])
    t0 = time.monotonic()
    line = refused([str(img), "--port", "/dev/ttyNOPE"], capsys)
    assert time.monotonic() - t0 < 5
    assert "the board on /dev/ttyNOPE does not answer (failed to access /dev/ttyNOPE)" in line
    assert "hold BOOTSEL while plugging it in instead" in line


def test_port_that_answers_but_no_drive_appears(tmp_path, capsys, monkeypatch):
    """--port: MicroPython takes the bootloader command, but no drive mounts -> the BOOTSEL line."""
    from host_tools.board.virtual_board import VirtualBoardServer

    img = write(tmp_path, "fw.uf2", uf2(4, flash.FAMILY_RP2040))
    monkeypatch.setattr(flash, "_mount_roots", lambda: [str(tmp_path / "media" / "*")])
    real = flash.reboot_to_bootsel
    monkeypatch.setattr(flash, "reboot_to_bootsel", lambda port, rp: real(port, rp, wait_s=0.5))
    with VirtualBoardServer("rp2040", "thermostat", tmp_path / "flash") as vb:
        line = refused([str(img), "--port", vb.url], capsys)
    assert "no BOOTSEL drive found" in line


@pytest.mark.parametrize("mangle,words", [
    (lambda d: d[:-100], "cut short"),
    (lambda d: d[:512] + b"\0" * 4 + d[516:], "block 1 is damaged"),
    (lambda d: d[:1024 + 508] + b"\0" * 4 + d[1024 + 512:], "block 2 is damaged"),
    (lambda d: d + uf2_block(4, 4, flash.FAMILY_RP2040, flash.XIP_BASE), "number 4 of 4"),
    (lambda d: d + uf2_block(2, 4, flash.FAMILY_RP2040, flash.XIP_BASE), "missing or repeated"),
    (lambda d: d[:-512], "missing or repeated"),
    (lambda d: d[:-512] + uf2_block(3, 5, flash.FAMILY_RP2040, flash.XIP_BASE), "disagree"),
    (lambda d: d[:-512] + uf2_block(3, 4, flash.FAMILY_RP2040, flash.XIP_BASE, flags=0), "no family id"),
    (lambda d: d[:-512] + uf2_block(3, 4, flash.FAMILY_RP2040, flash.XIP_BASE, payload=500), "476"),
    (lambda d: d[:-512] + uf2_block(3, 4, flash.FAMILY_RP2040, flash.XIP_BASE, payload=128), "256-byte"),
    (lambda d: d[:-512] + uf2_block(3, 4, flash.FAMILY_RP2040, 0x20000000), "outside the 2 MB flash"),
])
def test_damaged_uf2_is_refused(tmp_path, capsys, mangle, words):
    img = write(tmp_path, "fw.uf2", mangle(uf2(4, flash.FAMILY_RP2040)))
    drive = bootsel_drive(tmp_path)
    assert words in refused([str(img), "--drive", str(drive)], capsys)
    assert not (drive / "fw.uf2").exists()


def test_uf2_too_big_for_the_flash(tmp_path, capsys):
    # 2 MB + one block of payload, in the flash window of a 4 MB board: too much for a Pico W
    n = (2 << 20) // 256 + 1
    img = write(tmp_path, "big.uf2", uf2(n, flash.FAMILY_RP2040))
    drive = bootsel_drive(tmp_path)
    line = refused([str(img), "--drive", str(drive)], capsys)
    assert "2 MB flash of a Pico W" in line
    assert run([str(img), "--drive", str(drive), "--flash-size", "4MB", "--dry-run"]) == 0
    # the Pico 2 W's 4 MB takes an image a Pico W cannot
    img = write(tmp_path, "big2.uf2", uf2(n, flash.FAMILY_RP2350_ARM))
    assert flash.check_uf2(img.read_bytes(), "x", "rp2350", None).payload == n * 256


def test_parse_size():
    assert flash.parse_size("4MB") == 4 << 20
    assert flash.parse_size("16M") == 16 << 20
    assert flash.parse_size("512KB") == 512 << 10
    assert flash.parse_size("2097152") == 2 << 20
    with pytest.raises(argparse.ArgumentTypeError):
        flash.parse_size("lots")


def test_exit_status_and_one_line_from_a_real_process(tmp_path):
    """As a user sees it: one line on stderr, status 2, no traceback."""
    script = ("import argparse, sys\n"
              "from host_tools.board import flash\n"
              "p = argparse.ArgumentParser(prog='spot')\n"
              "flash.add_parser(p.add_subparsers(dest='command'))\n"
              "a = p.parse_args(sys.argv[1:])\n"
              "sys.exit(a.func(a))\n")
    img = write(tmp_path, "s3.bin", esp_image(9))
    res = subprocess.run([sys.executable, "-c", script, "flash", str(img), "--chip", "esp32c3",
                          "--port", "/dev/ttyUSB0"], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 2
    assert res.stdout == ""
    assert res.stderr.count("\n") == 1 and "built for esp32s3, not esp32c3" in res.stderr
    res = subprocess.run([sys.executable, "-c", script, "flash", "--help"], capture_output=True,
                         text=True, cwd=ROOT)
    assert res.returncode == 0 and "--dry-run" in res.stdout and "0x1000" in res.stdout
