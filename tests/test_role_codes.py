"""The protocol's numbers: tables by name for the host (spot/role_codes.py, the role
contract; spot/messages.py, the core services), private copies on the device (issue
12: a public const costs a board about 60 bytes of heap).

These fail if a device module's private copy of a number disagrees with its table, if
a module a board loads imports a table or defines a public role constant again, or if
a role image carries role_codes.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import ROOT
from host_tools.board import build
from spot import errors, messages, role_codes

FIRMWARE = sorted((ROOT / "firmware").glob("*.py"))
# What a board loads of the library (the tables and the controllers' builders aside).
DEVICE_LIB = [p for p in sorted((ROOT / "lib" / "spot").glob("*.py"))
              if p.name not in {"messages.py", "role_codes.py", "builders.py", "_cpython.py",
                                 "manifest.py"}]
TABLE = {n: v for n, v in vars(role_codes).items() if n.isupper() and isinstance(v, int)}
MESSAGES = {n: v for n, v in vars(messages).items() if n.isupper() and isinstance(v, int)}
ERRORS = {n: v for n, v in vars(errors).items() if n.isupper() and isinstance(v, int)}
PRIVATE = re.compile(r"^\s*_([A-Z][A-Z0-9_]*) = const\(([^)]*)\)", re.M)


def copies(table: dict[str, int] = TABLE, paths: list[Path] = FIRMWARE) -> list[tuple[str, str, int]]:
    """(module, name, value) of every private const in paths named as in the table."""
    out = []
    for path in paths:
        for name, value in PRIVATE.findall(path.read_text()):
            if name in table:  # a number, written out: an expression is not checked
                out.append((path.name, name, int(value, 0) if value.isdigit() else value))
    return out


def test_table_is_complete() -> None:
    assert len(TABLE) >= 70  # statuses, reasons, roles, keys and settings
    assert role_codes.RESETS[:2] == ("power_on", "hard")


@pytest.mark.parametrize("module,name,value", copies(TABLE, FIRMWARE + DEVICE_LIB))
def test_private_copy_agrees_with_the_table(module: str, name: str, value: int) -> None:
    assert value == TABLE[name], f"firmware/{module}: _{name} = {value}, role_codes: {TABLE[name]}"


@pytest.mark.parametrize("module,name,value", copies(MESSAGES, FIRMWARE + DEVICE_LIB))
def test_private_copy_agrees_with_messages(module: str, name: str, value: int) -> None:
    assert value == MESSAGES[name], f"{module}: _{name} = {value}, spot.messages: {MESSAGES[name]}"


@pytest.mark.parametrize("module,name,value", copies(ERRORS, [p for p in FIRMWARE + DEVICE_LIB
                                                              if p.name != "errors.py"]))
def test_private_copy_agrees_with_errors(module: str, name: str, value: int) -> None:
    assert value == ERRORS[name], f"{module}: _{name} = {value}, spot.errors: {ERRORS[name]}"


def test_device_modules_leave_messages_alone() -> None:
    """node.py and the services read payloads through spot.payload; the scan above
    must have found their copies, and none of them may import the table."""
    found = {m for m, _, _ in copies(MESSAGES, FIRMWARE + DEVICE_LIB)}
    assert {"node.py", "svc_dr.py", "svc_schedule.py", "key_admin.py", "discover.py"} <= found
    for path in FIRMWARE + DEVICE_LIB:
        code = re.sub(r'""".*?"""|#[^\n]*', "", path.read_text(), flags=re.S)
        assert not re.search(r"\bmessages\b", code), f"{path.name} uses spot.messages"


def test_every_role_module_has_its_copies() -> None:
    """The roles, role.py and the modules a wake loads use these numbers: if the scan
    found nothing there, the test above checks nothing."""
    found = {m for m, _, _ in copies()}
    assert {"role.py", "thermostat.py", "smart_plug.py", "heat_pump.py", "role_report.py",
            "role_config.py", "svc_role.py"} <= found


def test_resets_agree() -> None:
    import role

    assert role.RESETS == role_codes.RESETS


@pytest.mark.parametrize("path", FIRMWARE + DEVICE_LIB, ids=lambda p: p.name)
def test_no_public_role_constant_on_the_device(path: Path) -> None:
    text = path.read_text()
    assert "role_codes" not in re.sub(r'""".*?"""|#[^\n]*', "", text, flags=re.S), \
        f"{path.name} imports the host's table"
    public = re.findall(r"^([A-Z][A-Z0-9_]*) = const", text, re.M)
    assert not set(public) & set(TABLE), f"{path.name} defines public {set(public) & set(TABLE)}"
    imported = re.findall(r"^from role import (?:\(([^)]*)\)|([^\n(]*))", text, re.M)
    names = {n.strip() for group in imported for part in group for n in part.split(",")}
    assert not names & set(TABLE), f"{path.name} imports {names & set(TABLE)} from role"


def test_images_leave_the_table_out() -> None:
    for role in build.ROLES:
        assert "spot/role_codes.mpy" not in build.role_image_modules(role, "xtensawin")
