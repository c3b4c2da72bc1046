"""The role contract's numbers: one table by name (spot/role_codes.py, the host's), private
copies on the device (issue 12: a public const costs a board about 60 bytes of heap).

These fail if a firmware module's private copy of a number disagrees with the table,
if a module a board loads imports the table or uses a public role constant again, or
if a role image carries the table.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import ROOT
from host_tools.board import build
from spot import role_codes

FIRMWARE = sorted((ROOT / "firmware").glob("*.py"))
TABLE = {n: v for n, v in vars(role_codes).items() if n.isupper() and isinstance(v, int)}
PRIVATE = re.compile(r"^_([A-Z][A-Z0-9_]*) = const\((-?\w+)\)", re.M)


def copies() -> list[tuple[str, str, int]]:
    """(module, name, value) of every private const in firmware/ named as in the table."""
    out = []
    for path in FIRMWARE:
        for name, value in PRIVATE.findall(path.read_text()):
            if name in TABLE:
                out.append((path.name, name, int(value, 0)))
    return out


def test_table_is_complete() -> None:
    assert len(TABLE) >= 70  # statuses, reasons, roles, keys and settings
    assert role_codes.RESETS[:2] == ("power_on", "hard")


@pytest.mark.parametrize("module,name,value", copies())
def test_private_copy_agrees_with_the_table(module: str, name: str, value: int) -> None:
    assert value == TABLE[name], f"firmware/{module}: _{name} = {value}, role_codes: {TABLE[name]}"


def test_every_role_module_has_its_copies() -> None:
    """The roles, role.py and the modules a wake loads use these numbers: if the scan
    found nothing there, the test above checks nothing."""
    found = {m for m, _, _ in copies()}
    assert {"role.py", "thermostat.py", "smart_plug.py", "heat_pump.py", "role_report.py",
            "role_config.py", "svc_role.py"} <= found


def test_resets_agree() -> None:
    import role

    assert role.RESETS == role_codes.RESETS


@pytest.mark.parametrize("path", FIRMWARE, ids=lambda p: p.name)
def test_no_public_role_constant_on_the_device(path: Path) -> None:
    text = path.read_text()
    assert "role_codes" not in re.sub(r'""".*?"""|#[^\n]*', "", text, flags=re.S), \
        f"{path.name} imports the host's table"
    public = re.findall(r"^([A-Z][A-Z0-9_]*) = const", text, re.M)
    assert not set(public) & set(TABLE), f"{path.name} defines public {set(public) & set(TABLE)}"
    imported = re.findall(r"^from role import \(?([^)\n]*)", text, re.M)
    names = {n.strip() for line in imported for n in line.split(",")}
    assert not names & set(TABLE), f"{path.name} imports {names & set(TABLE)} from role"


def test_images_leave_the_table_out() -> None:
    for role in build.ROLES:
        assert "spot/role_codes.mpy" not in build.role_image_modules(role, "xtensawin")
