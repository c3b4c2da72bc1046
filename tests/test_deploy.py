"""spot deploy: a virtual board (the MicroPython unix port behind a REPL that stock
mpremote drives) takes a full deploy, then only what changed; boards that cannot
load the .mpy, lack the space, are another device or do not answer are refused
with one line before anything is written."""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import provision
from host_tools.board import build, deploy

ROOT = Path(__file__).resolve().parent.parent
BROKER = "127.0.0.1:1883"  # written into config.json; nothing runs the device here
X64_MPY = 6 | 3 << 8 | 2 << 10  # what the unix port reports: .mpy v6.3, x64


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="spot")
    deploy.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["deploy", *argv])


def refused_line(capsys, argv: list[str]) -> str:
    """Run `spot deploy argv` as the CLI does: status 2 and exactly one line on stderr."""
    args = parse(argv)
    with pytest.raises(SystemExit) as e:
        args.func(args)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("spot deploy: ")
    return err[0]


def board_tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): sha(p) for p in sorted(root.rglob("*")) if p.is_file()}


# --- the checks, on their own ---------------------------------------------------------------

HEADERS_X64 = [(6, 0, 0), (6, 3, 2)]  # bytecode modules and the x64 viper hot path


def test_mpy_version_and_arch_accepted():
    deploy.check_mpy(X64_MPY, HEADERS_X64, "unix")
    deploy.check_mpy(6 | 3 << 8 | 10 << 10, [(6, 0, 0), (6, 3, 10)], "esp32")
    # Thumb code loads on any later ARM level: an armv6m tree on an RP2350 (armv7emsp)
    deploy.check_mpy(6 | 3 << 8 | 7 << 10, [(6, 0, 0), (6, 3, 4)], "rp2040")
    # bytecode alone loads anywhere its version does, even without a native emitter
    deploy.check_mpy(6 | 2 << 8, [(6, 0, 0)], "unix")


@pytest.mark.parametrize("board_mpy,headers,words", [
    (None, HEADERS_X64, "too old"),
    (5 | 2 << 10, HEADERS_X64, "loads .mpy v5, these are v6"),
    (7 | 2 << 10, HEADERS_X64, "newer than mpy-cross"),
    (6 | 2 << 8 | 2 << 10, HEADERS_X64, "native .mpy v6.2, these are v6.3"),
    (6 | 3 << 8 | 10 << 10, HEADERS_X64, "runs xtensawin code, the unix build is x64; deploy with --target esp32"),
    (6 | 3 << 8 | 4 << 10, [(6, 3, 5)], "runs armv6m code, the unix build is armv7m; deploy with --target rp2040"),
    (6 | 3 << 8, HEADERS_X64, "runs none code"),
])
def test_mpy_refused(board_mpy, headers, words):
    with pytest.raises(deploy.Refused) as e:
        deploy.check_mpy(board_mpy, headers, "unix")
    assert e.value.code == 2
    assert words in e.value.message


def test_space_check_counts_whole_blocks_less_what_is_replaced():
    vfs = (4096, 4096, 10)  # 40 KB free
    assert deploy.check_space(vfs, []) == 0
    # three new files of 1, 4096 and 5000 bytes: 1 + 1 + 2 blocks, and one block of slack
    assert deploy.check_space(vfs, [(1, 0), (4096, 0), (5000, 0)]) == 5 * 4096
    # a replaced file: its new copy (NAME.new) is written whole beside the old one
    assert deploy.check_space(vfs, [(8000, 8100)]) == 3 * 4096
    # so the peak is the biggest file written beside its old self, after what grew before it
    assert deploy.check_space(vfs, [(4096, 0), (20000, 20000), (100, 4096)]) == (1 + 5 + 1) * 4096
    assert deploy.check_space(vfs, [(100, 20000), (4096, 0)]) == 2 * 4096  # shrinking first frees room
    with pytest.raises(deploy.Refused) as e:
        deploy.check_space(vfs, [(40000, 0)])
    assert "has 40 KB free, this deploy needs 44 KB" in e.value.message
    assert deploy.check_space(None, [(10 ** 9, 0)]) == 0  # a board that cannot say


def test_config_matches_device_py():
    cfg = deploy.config_for("thermostat", "10.0.0.2:1884", 30000, {"seed": 3}, {"run_s": 600})
    assert cfg == {"dir": ".", "broker": {"host": "10.0.0.2", "port": 1884}, "wake_ms": 30000,
                   "stdin_stop": False, "role": "thermostat", "board": {"seed": 3}, "run_s": 600}
    assert "role" not in deploy.config_for(None, "h:1", 1000, {}, {})
    with pytest.raises(deploy.Refused):
        deploy.parse_broker("localhost")
    assert deploy.parse_assignments(["seed=3", "chip=rp2040", "x=\"s\"", "on=true"], "--set") == \
        {"seed": 3, "chip": "rp2040", "x": "s", "on": True}
    with pytest.raises(deploy.Refused):
        deploy.parse_assignments(["3=x"], "--set")


def test_layout_and_board_files():
    assert deploy.default_board_files("esp32") == [ROOT / "boards/esp32_devkitc/board.py"]
    assert deploy.default_board_files("esp32c3") == [ROOT / "boards/esp32_devkitc/board.py"]
    assert deploy.default_board_files("rp2350") == [ROOT / "boards/rp2040_picow/board.py"]
    assert deploy.default_board_files("unix") == [ROOT / "boards/virtual/board.py",
                                                 ROOT / "boards/virtual/models.py"]
    remotes = [r for r, _ in deploy.tree_files("x64")]
    assert "main.py" in remotes and "device.mpy" in remotes and "umqtt/simple.mpy" in remotes
    assert "spot/cbor.mpy" in remotes and not any(r.startswith("lib/") for r in remotes)
    # main.py imports device, which imports spot.*: the tree's own layout is the board's
    assert "import device" in (build.BUILD / "mpy" / "x64" / "main.py").read_text()


def test_plan_keeps_keys_the_device_changed_and_refuses_another_device(tmp_path):
    provision(tmp_path, "home", 0x1001)
    files = [deploy.LocalFile(n, tmp_path / "fs" / n) for n in deploy.DEVICE_FILES]
    ident, keys = files
    board = deploy.BoardState(mpy=X64_MPY, vfs=(4096, 4096, 100), address=0x1001,
                              files={"identity.json": (ident.size, ident.sha256),
                                     "keys.json": (999, "0" * 64)})
    p = deploy.plan(files, board, 0x1001, False, "PORT")
    assert p.copy == [] and p.kept == ["keys.json"]
    p = deploy.plan(files, board, 0x1001, True, "PORT")
    assert [f.remote for f in p.copy] == ["keys.json"]
    board.address = 0x2002
    with pytest.raises(deploy.Refused) as e:
        deploy.plan(files, board, 0x1001, False, "PORT")
    assert "is device 00002002, the --device-dir is for 00001001" in e.value.message
    p = deploy.plan(files, board, 0x1001, True, "PORT")
    assert [f.remote for f in p.copy] == ["keys.json"] and "journal.json" in p.remove
    with pytest.raises(deploy.Refused) as e:  # no identity anywhere
        deploy.plan([], deploy.BoardState(mpy=X64_MPY), None, False, "PORT")
    assert "--device-dir" in e.value.message


def test_copy_is_one_mpremote_run_of_chained_execs(tmp_path):
    big = tmp_path / "big.mpy"
    big.write_bytes(bytes(range(256)) * 40)  # 10240 bytes: three 4 KB pieces
    small = tmp_path / "main.py"
    small.write_bytes(b"import device\n")
    p = deploy.Plan([], [deploy.LocalFile("spot/big.mpy", big), deploy.LocalFile("main.py", small)],
                    [], ["spot/big.py"], ["spot"], 0)
    cmd = deploy.copy_command("socket://h:1", p, reset=True)
    assert cmd[:5] == [sys.executable, "-m", "mpremote", "connect", "socket://h:1"]
    assert cmd[5] == "exec" and "os.mkdir" in cmd[6] and "spot/big.py" not in cmd[6]
    assert cmd[-2:] == ["+", "reset"]
    execs = [cmd[i + 1] for i, a in enumerate(cmd) if a == "exec"]
    assert all(cmd[i - 1] == "+" for i, a in enumerate(cmd) if a == "exec" and i > 5)
    assert len(execs) == 4  # the writer, then 4096 + 4096 + (2048 and main.py)
    assert execs[1].startswith("_w('spot/big.mpy','wb',") and execs[2].startswith("_w('spot/big.mpy','ab',")
    assert "_f('spot/big.mpy'" in execs[3] and "_w('main.py','wb'" in execs[3]
    # the shadowing .py goes only once its .mpy has landed
    assert execs[3].index("_f('spot/big.mpy'") < execs[3].index("_r('spot/big.py')")


def test_removals_wait_for_what_replaces_them(tmp_path):
    """A shadow goes after its .mpy lands, an old device's journal after its identity and
    keys; whatever has nothing to wait for goes after every file is in place."""
    f = tmp_path / "x"
    f.write_bytes(b"x")
    copy = [deploy.LocalFile(r, f) for r in ("identity.json", "keys.json", "role.mpy", "z.py")]
    p = deploy.Plan(copy, copy, [], ["role.py", "journal.json", "node.py"], [], 0)
    assert deploy.removal_points(p) == {"role.mpy": ["role.py"], "keys.json": ["journal.json"],
                                        None: ["node.py"]}
    calls = "\n".join(deploy.write_scripts(p)[1:]).splitlines()
    assert calls.index("_r('role.py')") == calls.index(next(c for c in calls if c.startswith("_f('role.mpy'"))) + 1
    assert calls.index("_r('journal.json')") > calls.index(next(c for c in calls if c.startswith("_f('keys.json'")))
    assert calls[-1] == "_r('node.py')"
    assert "role.py" not in deploy.write_scripts(p)[0]  # not in the writer, before any file lands


def run_writer(tmp_path: Path, p: deploy.Plan) -> subprocess.CompletedProcess:
    """The copy's execs, in one MicroPython (the unix port) as a board's raw REPL runs them."""
    from conftest import MICROPYTHON

    board = tmp_path / "board"
    board.mkdir(exist_ok=True)
    script = "\n".join(deploy.write_scripts(p)) + "\n"
    return subprocess.run([str(MICROPYTHON), "-c", script], cwd=board, capture_output=True,
                          text=True, timeout=60)


def test_writer_on_micropython_lands_files_whole(tmp_path):
    big = tmp_path / "big.mpy"
    big.write_bytes(bytes(range(256)) * 40 + b"tail")
    empty = tmp_path / "empty.json"
    empty.write_bytes(b"")
    (tmp_path / "board" / "spot").mkdir(parents=True)
    (tmp_path / "board" / "spot" / "big.py").write_text("shadow")
    (tmp_path / "board" / "spot" / "big.mpy").write_text("old")
    files = [deploy.LocalFile("spot/big.mpy", big), deploy.LocalFile("lib/x/empty.json", empty)]
    p = deploy.Plan(files, files, [], ["spot/big.py"], ["lib", "lib/x", "spot"], 0)
    res = run_writer(tmp_path, p)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "board" / "spot" / "big.mpy").read_bytes() == big.read_bytes()
    assert (tmp_path / "board" / "lib" / "x" / "empty.json").read_bytes() == b""
    assert not (tmp_path / "board" / "spot" / "big.py").exists()
    assert sum(int(ln.split()[2]) for ln in res.stdout.splitlines()
               if ln.startswith("spot:w")) == big.stat().st_size
    # a copy that arrives damaged never replaces the file it was meant for
    f = deploy.LocalFile("spot/big.mpy", big)
    f.sha256 = "0" * 64
    res = run_writer(tmp_path, deploy.Plan([f], [f], [], [], ["spot"], 0))
    assert res.returncode != 0 and "spot/big.mpy arrived damaged" in res.stdout + res.stderr
    assert (tmp_path / "board" / "spot" / "big.mpy").read_bytes() == big.read_bytes()
    assert not (tmp_path / "board" / "spot" / "big.mpy.new").exists()
    # nor does a failed copy take away the shadow it would have replaced
    (tmp_path / "board" / "spot" / "big.py").write_text("shadow")
    res = run_writer(tmp_path, deploy.Plan([f], [f], [], ["spot/big.py"], ["spot"], 0))
    assert res.returncode != 0
    assert (tmp_path / "board" / "spot" / "big.py").read_text() == "shadow"


def test_writable_check():
    deploy.check_writable(None)  # the probe file came and went
    deploy.check_writable(28)  # ENOSPC: a full board is the space check's to refuse
    with pytest.raises(deploy.Refused) as e:
        deploy.check_writable(30)
    assert e.value.message.startswith("the board's filesystem is read-only (") and "EROFS" in e.value.message
    with pytest.raises(deploy.Refused) as e:
        deploy.check_writable(5)
    assert "cannot create a file in its working folder (EIO)" in e.value.message
    # refused in the plan only if something is to be written
    board = deploy.BoardState(mpy=X64_MPY, address=1, write_errno=30)
    assert deploy.plan([], board, None, False, "PORT").copy == []


def test_copy_that_stops_answering_is_killed_and_refused(monkeypatch):
    """mpremote that says one line, then nothing (a board that hung mid-copy): killed at
    the deadline and refused with one line, not waited for."""
    from rich.console import Console

    silent = [sys.executable, "-c", "import time; print('spot:w main.py 10', flush=True); time.sleep(20)"]
    t0 = __import__("time").monotonic()
    seen: list[str] = []
    rc, lines, timed_out = deploy.follow(silent, 1, seen.append)
    assert timed_out and rc != 0 and lines == seen == ["spot:w main.py 10\n"]
    assert __import__("time").monotonic() - t0 < 5
    monkeypatch.setattr(deploy, "copy_command", lambda port, p, reset: silent)
    p = deploy.Plan([], [], [], [], [], 0)
    t0 = __import__("time").monotonic()
    with pytest.raises(deploy.Refused) as e:
        deploy.run_copy("PORT", p, False, Console(quiet=True), False, timeout=1)
    assert __import__("time").monotonic() - t0 < 5
    assert e.value.message.startswith("the board on PORT stopped answering during the copy")
    assert "what was not yet copied is as it was" in e.value.message and "\n" not in e.value.message


@pytest.mark.parametrize("script,why", [
    # mpremote failing with nothing but our own progress lines: not "spot:w ..." as the reason
    ("print('spot:w main.py 10'); raise SystemExit(1)", "(no answer)"),
    ("import os, signal; print('spot:w main.py 10', flush=True); os.kill(os.getpid(), signal.SIGTERM)",
     "(mpremote was killed by SIGTERM)"),
])
def test_copy_failure_reason(monkeypatch, script, why):
    from rich.console import Console

    monkeypatch.setattr(deploy, "copy_command", lambda port, p, reset: [sys.executable, "-c", script])
    with pytest.raises(deploy.Refused) as e:
        deploy.run_copy("PORT", deploy.Plan([], [], [], [], [], 0), False, Console(quiet=True),
                        False, timeout=30)
    assert f"copying to the board on PORT failed {why}" in e.value.message


def test_board_that_does_not_answer(tmp_path, capsys):
    """Nothing listening, and a listener that never speaks: one line each."""
    line = refused_line(capsys, ["--port", str(tmp_path / "ttyUSB9"), "--target", "unix",
                                 "--broker", BROKER])
    assert f"the board on {tmp_path / 'ttyUSB9'} does not answer" in line
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    try:
        url = f"socket://127.0.0.1:{srv.getsockname()[1]}"
        line = refused_line(capsys, ["--port", url, "--target", "unix", "--broker", BROKER])
        assert f"the board on {url} does not answer (TransportError: could not enter raw repl)" in line
    finally:
        srv.close()


# --- on a virtual board ---------------------------------------------------------------------

from host_tools.board.virtual_board import VirtualBoardServer  # noqa: E402


@pytest.fixture
def device(tmp_path: Path) -> Path:
    """A provisioned device's folder (identity.json, keys.json), as `spot provision --out` writes."""
    provision(tmp_path, "home", 0x1001)
    return tmp_path / "fs"


def deploy_to(vb: VirtualBoardServer, device_dir: Path | None, **kw) -> dict:
    kw.setdefault("role", vb.role)
    kw.setdefault("broker", BROKER)
    return deploy.deploy(vb.url, device_dir=device_dir, show=False, **kw)


def test_full_deploy_then_only_what_changed(tmp_path, device):
    board_file = tmp_path / "board.py"
    shutil.copy(ROOT / "boards" / "esp32_devkitc" / "board.py", board_file)
    root = tmp_path / "flash"
    with VirtualBoardServer("esp32", "thermostat", root) as vb:
        full = deploy_to(vb, device, board_files=[board_file])
        assert full["board"] == "esp32" and full["target"] == "unix" and full["arch"] == "x64"
        assert full["copied"] == full["files"] and full["bytes"] == full["bytes_total"] > 50000
        tree = board_tree(root)
        # The thermostat's image (issue 12): the build tree's layout, its modules alone.
        local = {r: sha(p) for r, p in deploy.image_files("x64", "thermostat")}
        assert "thermostat.mpy" in local and not {"smart_plug.mpy", "heat_pump.mpy",
                                                  "sg_ready.mpy", "modbus_rtu.mpy"} & set(local)
        for remote, digest in local.items():  # at the root
            assert tree[remote] == digest, remote
        assert tree["board.py"] == sha(board_file)
        assert tree["identity.json"] == sha(device / "identity.json")
        assert tree["keys.json"] == sha(device / "keys.json")
        assert set(tree) == set(local) | {"board.py", "identity.json", "keys.json", "config.json"}
        cfg = json.loads((root / "config.json").read_text())
        assert cfg["dir"] == "." and cfg["role"] == "thermostat"
        assert cfg["broker"] == {"host": "127.0.0.1", "port": 1883}

        noop = deploy_to(vb, device, board_files=[board_file])
        assert noop["copied"] == 0 and noop["bytes"] == 0 and noop["unchanged"] == noop["files"]
        assert noop["seconds"] < full["seconds"]
        assert board_tree(root) == tree

        board_file.write_text(board_file.read_text() + "\n# GPIO26 relay replaced\n")
        one = deploy_to(vb, device, board_files=[board_file])
        assert one["copied_files"] == ["board.py"]
        assert sha(root / "board.py") == sha(board_file)

        other = deploy_to(vb, device, board_files=[board_file], wake_ms=5000)
        assert other["copied_files"] == ["config.json"]
        assert json.loads((root / "config.json").read_text())["wake_ms"] == 5000
        assert not list(root.rglob("*.new"))
    print(f"\ndeploy to a virtual board: full {full['seconds']:.2f} s ({full['files']} files, "
          f"{full['bytes']} bytes), no-op {noop['seconds']:.2f} s")


def test_deployed_firmware_boots_and_runs(tmp_path, device):
    """After a deploy and --reset the board boots main.py from what was copied: the
    device's sessions appear on its serial line (no broker: the plug, connected by
    default, fails to connect and backs off, again and again)."""
    with VirtualBoardServer("rp2040", "smart_plug", tmp_path / "flash") as vb:
        res = deploy_to(vb, device, broker="127.0.0.1:9", wake_ms=300, reset=True)
        assert res["board"] == "rp2" and res["board_files"][0].endswith("rp2040_picow/board.py")
        host, port = vb.url.removeprefix("socket://").split(":")
        out = b""
        with socket.create_connection((host, int(port)), timeout=0.5) as s:
            end = __import__("time").monotonic() + 15
            while out.count(b'"ev": "backoff"') < 2 and __import__("time").monotonic() < end:
                try:
                    out += s.recv(4096)
                except socket.timeout:
                    pass
        assert out.count(b'"ev": "backoff"') >= 2 and b'"ev": "session_end"' in out, out[-2000:]
        assert b"Traceback" not in out, out[-2000:]


def test_device_keeps_its_own_keys_and_another_device_is_refused(tmp_path, device, capsys):
    root = tmp_path / "flash"
    with VirtualBoardServer("esp32", "heat_pump", root) as vb:
        deploy_to(vb, device)
        # the device rotated a key since: its keys.json is newer than the provisioned one
        rotated = json.loads((root / "keys.json").read_text())
        (root / "keys.json").write_text(json.dumps(rotated, indent=2))
        before = board_tree(root)
        res = deploy_to(vb, device)
        assert res["kept"] == 1 and res["copied"] == 0
        assert board_tree(root) == before
        # no --device-dir: the board's identity and keys stay as they are
        assert deploy_to(vb, None)["copied"] == 0

        (root / "journal.json").write_text("{}")
        provision(tmp_path / "other", "home", 0x2002)
        before = board_tree(root)
        line = refused_line(capsys, ["--port", vb.url, "--role", "heat_pump", "--broker", BROKER,
                                     "--device-dir", str(tmp_path / "other" / "fs")])
        assert "the board is device 00001001, the --device-dir is for 00002002" in line
        assert board_tree(root) == before

        res = deploy_to(vb, tmp_path / "other" / "fs", reprovision=True)
        assert sorted(res["copied_files"]) == ["identity.json", "keys.json"]
        assert json.loads((root / "identity.json").read_text())["address"] == 0x2002
        assert not (root / "journal.json").exists()


def test_board_without_identity_needs_a_device_dir(tmp_path, capsys):
    root = tmp_path / "flash"
    with VirtualBoardServer("esp32", "thermostat", root) as vb:
        line = refused_line(capsys, ["--port", vb.url, "--broker", BROKER])
        assert "holds no device identity; give --device-dir" in line
    assert board_tree(root) == {}


def test_wrong_architecture_is_refused_and_nothing_written(tmp_path, device, capsys):
    root = tmp_path / "flash"
    with VirtualBoardServer("esp32", "thermostat", root) as vb:
        line = refused_line(capsys, ["--port", vb.url, "--target", "esp32", "--role", "thermostat",
                                     "--broker", BROKER, "--device-dir", str(device)])
        assert "the board runs x64 code, the esp32 build is xtensawin; deploy with --target unix" in line
    assert board_tree(root) == {}


_OLD_MICROPYTHON = """\
import sys
class _O:
    pass
_s = _O()
for _k in dir(sys):
    try:
        setattr(_s, _k, getattr(sys, _k))
    except Exception:
        pass
_s.implementation = _O()
_s.implementation.name = "micropython"
_s.implementation._mpy = %d
sys.modules["sys"] = _s
"""


@pytest.mark.parametrize("mpy,words", [
    (5 | 2 << 10, "loads .mpy v5, these are v6"),
    (6 | 1 << 8 | 2 << 10, "loads native .mpy v6.1, these are v6.3"),
])
def test_older_micropython_is_refused(tmp_path, device, capsys, mpy, words):
    """A boot.py that makes `import sys` report an older .mpy ABI, as older firmware does."""
    root = tmp_path / "flash"
    root.mkdir()
    (root / "boot.py").write_text(_OLD_MICROPYTHON % mpy)
    with VirtualBoardServer("esp32", "thermostat", root) as vb:
        line = refused_line(capsys, ["--port", vb.url, "--target", "unix", "--role", "thermostat",
                                     "--broker", BROKER, "--device-dir", str(device)])
        assert words in line and "spot flash" in line
    assert set(board_tree(root)) == {"boot.py"}


def test_full_flash_is_refused_and_nothing_written(tmp_path, device, capsys):
    """A Pico W's 848 KB filesystem with 800 KB already taken: the tree does not fit."""
    root = tmp_path / "flash"
    root.mkdir()
    (root / "recordings.bin").write_bytes(bytes(800 * 1024))
    with VirtualBoardServer("rp2040", "thermostat", root) as vb:
        before = board_tree(root)
        line = refused_line(capsys, ["--port", vb.url, "--role", "thermostat", "--broker", BROKER,
                                     "--device-dir", str(device)])
        assert "KB free, this deploy needs" in line and "mpremote fs rm" in line
        assert board_tree(root) == before
        # with room made, the same deploy goes through
        (root / "recordings.bin").unlink()
        assert deploy_to(vb, device)["copied"] > 30


def test_shadow_stays_when_its_replacement_fails(tmp_path, device, capsys):
    """A thermostat.py that hides thermostat.mpy is removed only once the .mpy is in place."""
    root = tmp_path / "flash"
    with VirtualBoardServer("esp32", "thermostat", root) as vb:
        deploy_to(vb, device)
        (root / "thermostat.mpy").unlink()
        (root / "thermostat.py").write_text("print('old thermostat')\n")
        (root / "thermostat.mpy.new").mkdir()  # the copy of thermostat.mpy cannot land
        line = refused_line(capsys, ["--port", vb.url, "--role", "thermostat", "--broker", BROKER,
                                     "--device-dir", str(device)])
        assert "copying to the board" in line and "spot:" not in line
        assert (root / "thermostat.py").read_text() == "print('old thermostat')\n"
        (root / "thermostat.mpy.new").rmdir()
        assert deploy_to(vb, device)["copied_files"] == ["thermostat.mpy"]
        assert (root / "thermostat.mpy").exists() and not (root / "thermostat.py").exists()


def test_read_only_filesystem_is_refused_and_nothing_written(tmp_path, device, capsys):
    """A boot.py that remounts the board's filesystem read-only: refused before the copy."""
    root = tmp_path / "flash"
    root.mkdir()
    (root / "boot.py").write_text(f"import vfs, os\nvfs.umount('/')\n"
                                  f"vfs.mount(vfs.VfsPosix({str(root)!r}), '/', readonly=True)\n"
                                  f"os.chdir('/')\n")
    with VirtualBoardServer("esp32", "thermostat", root) as vb:
        line = refused_line(capsys, ["--port", vb.url, "--role", "thermostat", "--broker", BROKER,
                                     "--device-dir", str(device)])
        assert line.startswith("spot deploy: the board's filesystem is read-only (") and "EROFS" in line
    assert set(board_tree(root)) == {"boot.py"}


def test_dry_run_writes_nothing(tmp_path, device, capsys):
    root = tmp_path / "flash"
    with VirtualBoardServer("esp32", "thermostat", root) as vb:
        args = parse(["--port", vb.url, "--role", "thermostat", "--broker", BROKER,
                      "--device-dir", str(device), "--dry-run"])
        assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "would copy main.py" in out and "would copy spot/cbor.mpy" in out
    assert "would copy keys.json" in out
    assert board_tree(root) == {}


def test_bench_figures():
    figures = deploy.measure("rp2040", "heat_pump")
    assert 0 < figures["deploy_seconds_noop"] < figures["deploy_seconds_full"]
    assert figures["deploy_files"] > 30 and figures["deploy_bytes"] > 50000
