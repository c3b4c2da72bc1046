"""The broker's access control (issue 13, section 3), against a real Mosquitto
configured by `spot broker-config`: every attempt that must fail is refused by
the broker; the suite itself is shown to catch an open broker; a real device
(firmware under the MicroPython unix port) completes its wake with its own
account, plainly and over TLS, and a refused login is a logged event and a
backoff, not a crash loop.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from host_tools.bench import broker_figures as bf
from host_tools.cloud import broker_config
from host_tools.cloud.broker import Broker
from host_tools.cloud.registry import Registry
from spot import builders, messages

pytestmark = pytest.mark.timeout(120)


def test_passwords_are_in_mosquitto_passwd_format(tmp_path: Path) -> None:
    # A hash made by Debian's mosquitto_passwd checks with ours, and the other way
    # round Mosquitto itself accepts ours (every session in the tests below).
    pw = tmp_path / "pw"
    pw.touch()
    try:
        subprocess.run(["mosquitto_passwd", "-b", str(pw), "00000101", "s3cret"], check=True,
                       capture_output=True)
    except FileNotFoundError:
        pytest.skip("mosquitto_passwd is not installed")
    user, stored = pw.read_text().strip().split(":", 1)
    assert stored.startswith("$7$101$")
    assert broker_config.check_password("s3cret", stored)
    assert not broker_config.check_password("s3cret!", stored)
    ours = broker_config.hash_password("s3cret")
    assert ours.split("$")[1:3] == ["7", "101"] and broker_config.check_password("s3cret", ours)


def test_broker_config_files_follow_the_registry(tmp_path: Path) -> None:
    from host_tools.cli import main

    reg_path = tmp_path / "reg" / "registry.json"
    assert main(["provision", "--site", "home", "--device", "0x101", "--out", str(tmp_path / "d1"),
                 "--registry", str(reg_path), "--tls"]) == 0
    assert main(["provision", "--site", "home", "--device", "0x102", "--out", str(tmp_path / "d2"),
                 "--registry", str(reg_path)]) == 0
    assert main(["pair", "0x2001", "0x101", "--registry", str(reg_path)]) == 0
    assert main(["broker-config", "--out", str(tmp_path / "b"), "--tls",
                 "--registry", str(reg_path)]) == 0
    reg = Registry(reg_path)
    ident = json.loads((tmp_path / "d1" / "identity.json").read_text())
    assert ident["broker"] == {"user": "00000101", "password": reg.broker_password("00000101")}
    assert (tmp_path / "d1" / "ca.der").read_bytes() == broker_config.device_ca(reg)
    users = dict(line.split(":", 1) for line in (tmp_path / "b" / "passwd").read_text().split())
    assert sorted(users) == ["00000101", "00000102", "00002001", "cloud"]
    for u, h in users.items():
        assert broker_config.check_password(reg.broker_password(u), h)
    acl = (tmp_path / "b" / "acl").read_text().split("\n\n")
    dev = next(b for b in acl if b.startswith("user 00000101"))
    assert "topic readwrite spot/home/00000101" in dev and "topic write spot/home/up/00000101" in dev
    assert "00000102" not in dev
    ctl = next(b for b in acl if b.startswith("user 00002001"))
    assert "topic write spot/home/00000101" in ctl and "00000102" not in ctl
    assert "password" not in (tmp_path / "b" / "acl").read_text()
    for name in ("passwd", "acl", "tls/server.key"):
        assert (tmp_path / "b" / name).stat().st_mode & 0o077 == 0


def test_every_attempt_that_must_fail_is_refused_by_the_broker(tmp_path: Path) -> None:
    reg, folder = bf.world(tmp_path)
    with Broker(access=folder) as broker:
        attempts = bf.attack_suite(reg, broker)
    assert len(attempts) >= 12
    accepted = [f"{a.name}: {a.how}" for a in attempts if not a.refused]
    assert not accepted, accepted
    assert sum(a.how.startswith("CONNACK 5") for a in attempts) >= 5


def test_the_suite_catches_an_open_broker(tmp_path: Path) -> None:
    # The same attempts against a broker without access control all succeed: the
    # suite's verdicts come from the broker, not from the suite's own set-up.
    reg, _folder = bf.world(tmp_path)
    with Broker() as broker:
        attempts = bf.attack_suite(reg, broker)
    assert bf.violations(attempts) == len(attempts), [a for a in attempts if a.refused]


def _command(ctl, dev: int) -> None:
    ctl.send_command(dev, lambda seq, key: builders.reduce_power(
        dev, ctl.address, seq, 20, 0, 7200, key=key), "test")


def test_a_device_wakes_with_its_account_plain_and_over_tls(tmp_path: Path) -> None:
    import time

    with bf.auth_device_world(tmp_path) as (_reg, broker, ctl, fs):
        assert broker.tls_port
        bf.run_device(tmp_path, fs, broker.port, False)  # its session: the broker queues for it
        for tls, port in ((False, broker.port), (True, broker.tls_port)):
            _command(ctl, bf.DEV_A)
            time.sleep(0.05)
            ev = bf.run_device(tmp_path, fs, port, tls, tls_name="127.0.0.1")
            cycle = [e for e in ev if e["ev"] == "cycle"][0]
            assert cycle["ok"] and cycle["received"] >= 1, ev
            assert not [e for e in ev if e["ev"] == "broker_refused"]
            deadline = time.monotonic() + 3
            while ctl.pending and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not ctl.pending, f"no ACK from the device (tls={tls})"
        with ctl.lock:
            assert [a.body[messages.K_ACK_STATUS] for a in ctl.stats.acks].count(
                messages.ACK_APPLIED) >= 2


def test_tls_refuses_a_broker_the_device_cannot_verify(tmp_path: Path) -> None:
    with bf.auth_device_world(tmp_path) as (_reg, broker, _ctl, fs):
        other_ca, _key = broker_config.make_ca()
        from cryptography.hazmat.primitives import serialization

        (fs / "ca.der").write_bytes(other_ca.public_bytes(serialization.Encoding.DER))
        ev = bf.run_device(tmp_path, fs, broker.tls_port, True, cycles=2, tls_name="127.0.0.1")
        cycles = [e for e in ev if e["ev"] == "cycle"]
        assert len(cycles) == 2 and not any(c["ok"] for c in cycles)
        assert all("TLS" in c["error"] for c in cycles), cycles
        assert ev[-1]["ev"] == "summary" and ev[-1]["why"] == "cycles"


@pytest.mark.parametrize("account", ["wrong password", "no account"])
def test_a_refused_login_is_logged_and_backed_off(tmp_path: Path, account: str) -> None:
    with bf.auth_device_world(tmp_path, tls=False) as (_reg, broker, _ctl, fs):
        ident = json.loads((fs / "identity.json").read_text())
        if account == "no account":
            del ident["broker"]
        else:
            ident["broker"]["password"] = "guessed"
        (fs / "identity.json").write_text(json.dumps(ident))
        ev = bf.run_device(tmp_path, fs, broker.port, False, cycles=3, wake_ms=200)
    refused = [e for e in ev if e["ev"] == "broker_refused"]
    assert len(refused) == 3 and all(r["code"] == 5 and r["why"] == "not authorised"
                                     for r in refused), refused
    cycles = [e for e in ev if e["ev"] == "cycle"]
    assert len(cycles) == 3 and not any(c["ok"] for c in cycles)
    assert "refused the connection: not authorised" in cycles[0]["error"]
    # main()'s backoff: 2x then 4x the wake interval between the failed wakes
    gaps = [b["t"] - a["t"] for a, b in zip(cycles, cycles[1:])]
    assert gaps[0] >= 400 and gaps[1] >= 800, gaps
    assert ev[-1]["ev"] == "summary" and ev[-1]["why"] == "cycles"


def test_tls_wake_figures_count_the_handshake_on_the_wire() -> None:
    f = bf.tls_wake_figures(rounds=1)
    # A TLS 1.2 handshake with a certificate is over a kilobyte and two round trips.
    assert f["wake_cycle_bytes_tls"] > f["wake_cycle_bytes_plain_auth"] + 1000, f
    assert f["wake_cycle_round_trips_tls"] >= f["wake_cycle_round_trips_plain_auth"] + 2, f
    assert 0 < f["wake_cycle_ms_plain_auth"] and 0 < f["wake_cycle_ms_tls"]
