"""The plugin host: a plugin that raises, hangs or fails to start stalls nothing else; a
plugin sends only through the tracked path and only to its own sites; what it keeps
survives a restart; a plugin is a folder and nothing else; an energy manager that does
not answer in time is the API's 503 with Retry-After, never a 500."""
from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest

import host_tools.cloud.plugins as plugins_pkg
from host_tools.cloud.command_kinds import Refused
from host_tools.cloud.dispatch import Dispatcher
from host_tools.cloud.plugins.host import PluginHost, available, load_config
from host_tools.cloud.store import Store

PLUGIN = '''
import time
from host_tools.cloud.plugins.base import Plugin as Base


class Plugin(Base):
    async def start(self):
        mode = self.ctx.options.get("mode")
        if mode == "fail-start":
            raise RuntimeError("no peer")
        self.seen = self.ctx.state_get("seen") or 0
        self.calls = []
        if mode == "slow-manager":  # an energy manager that takes its time
            self.ctx.serve_site_requests(self._site)

    def _site(self, op, site, body, who):
        self.calls.append(op)
        time.sleep(10.5 if len(self.calls) == 1 else 0)  # the first call outlasts the deadline (10 s)
        return {"id": "r-1", "orders": []}

    async def on_event(self, ev):
        mode = self.ctx.options.get("mode")
        if mode == "raise":
            raise ValueError("bad event")
        if mode == "block" and ev.get("type") == "state":
            time.sleep(30)  # a plugin that blocks its own thread
        self.seen += 1
        self.ctx.state_put("seen", self.seen)
        self.ctx.state_put("last", ev)
'''


@pytest.fixture
def world(tmp_path: Path):
    folder = tmp_path / "extra_plugins" / "probe"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"name": "probe", "requirements": []}))
    (folder / "plugin.py").write_text(PLUGIN)
    plugins_pkg.__path__.append(str(tmp_path / "extra_plugins"))
    store = Store(str(tmp_path / "cloud.sqlite"))
    home = store.provision("home", 0x3101)
    other = store.provision("away", 0x3201)
    yield tmp_path, store, home, other
    plugins_pkg.__path__.remove(str(tmp_path / "extra_plugins"))
    store.close()


def host(tmp: Path, store: Store, *modes: str) -> PluginHost:
    conf = tmp / "plugins.toml"
    conf.write_text("".join(textwrap.dedent(f'''
        [[plugin]]
        name = "probe"
        sites = ["home"]
        [plugin.options]
        mode = "{m}"
        ''') for m in modes))
    h = PluginHost(load_config(conf), store, Dispatcher(store, None, None), None)
    h.start()
    return h


def test_a_new_plugin_is_a_folder_and_the_configuration_names_it(world) -> None:
    tmp, store, *_ = world
    assert "probe" in available()
    bad = tmp / "bad.toml"
    bad.write_text('[[plugin]]\nname = "nope"\nsites = ["home"]\n')
    with pytest.raises(ValueError, match="no plugin called 'nope'"):
        load_config(bad)
    bad.write_text('[[plugin]]\nname = "probe"\n')
    with pytest.raises(ValueError, match="give its sites"):
        load_config(bad)


def test_failing_and_hanging_plugins_stall_nothing_else(world) -> None:
    tmp, store, home, other = world
    h = host(tmp, store, "ok", "raise", "block", "fail-start")
    try:
        ok, raising, blocking, failed = h.runners
        assert failed.status()["state"] == "failed" and "no peer" in failed.status()["last_error"]
        t0 = time.monotonic()
        for i in range(5):
            h.sink({"type": "state", "device": home, "body": {"i": i}})
        h.sink({"type": "state", "device": other, "body": {}})  # another site's device
        assert time.monotonic() - t0 < 0.5  # handing events on never waits for a plugin
        end = time.monotonic() + 5
        while time.monotonic() < end and ok.status()["events"] < 5:
            time.sleep(0.02)
        assert ok.status()["events"] == 5  # not 6: the other site's event is not its business
        assert raising.status()["errors"] == 5 and "bad event" in raising.status()["last_error"]
        assert blocking.status()["events"] == 1 and blocking.status()["backlog"] == 4
        assert store.plugin_get("probe", "", "seen") == 5
    finally:
        t0 = time.monotonic()
        h.stop()
        assert time.monotonic() - t0 < 30  # the blocked one is given up on, not waited for
    assert [r.status()["state"] for r in h.runners] == ["stopped", "stopped", "hung", "failed"]


def test_what_a_plugin_keeps_survives_a_restart(world) -> None:
    tmp, store, home, _ = world
    h = host(tmp, store, "ok")
    h.sink({"type": "meter", "device": home, "body": {"power_w": 5}})
    end = time.monotonic() + 5
    while time.monotonic() < end and store.plugin_get("probe", "", "seen") != 1:
        time.sleep(0.02)
    h.stop()
    h = host(tmp, store, "ok")
    h.sink({"type": "meter", "device": home, "body": {"power_w": 6}})
    end = time.monotonic() + 5
    while time.monotonic() < end and store.plugin_get("probe", "", "seen") != 2:
        time.sleep(0.02)
    h.stop()
    assert store.plugin_get("probe", "", "seen") == 2
    assert store.plugin_get("probe", "", "last")["body"] == {"power_w": 6}


def test_a_plugin_sends_through_the_tracked_path_to_its_own_sites_only(world) -> None:
    tmp, store, home, other = world
    h = host(tmp, store, "ok")
    ctx = h.runners[0].ctx
    try:
        with pytest.raises(PermissionError, match="not in the sites"):
            ctx.send_command(other, {"kind": "restore"})
        with pytest.raises(Refused, match="capability record"):
            ctx.send_command(home, {"kind": "relay", "on": True})  # no first contact yet
        c = ctx.send_command(home, {"kind": "restore"})
        assert c["state"] == "accepted" and c["requested_by"] == "plugin:probe"
        assert store.audit_log(1)[0]["who"] == "plugin:probe"
        with pytest.raises(PermissionError):
            ctx.mqtt_publish(f"spot/home/{home:08x}", b"forged")
        assert [d["address"] for d in ctx.devices()] == [home]
    finally:
        h.stop()


def test_a_version_1_database_is_upgraded_in_place(tmp_path: Path) -> None:
    from host_tools.cloud import migrations
    from host_tools.cloud.store import make_engine

    db = str(tmp_path / "old.sqlite")
    engine = make_engine(db)
    assert migrations.migrate(engine, migrations.STEPS[:1]) == [1]  # as the first release left it
    engine.dispose()
    store = Store(db)  # the service starts on it: migration 2 adds the plugins' table
    try:
        with store.engine.connect() as conn:
            assert migrations.current(conn) == migrations.LATEST >= 2
        store.plugin_put("probe", "home", "k", {"v": 1})
        assert store.plugin_items("probe", "home") == {"k": {"v": 1}}
    finally:
        store.close()


def test_an_energy_manager_that_does_not_answer_is_a_503_with_retry_after(world) -> None:
    from fastapi.testclient import TestClient

    from host_tools.cloud.api import create_app

    tmp, store, *_ = world
    h = host(tmp, store, "slow-manager")
    plugin = h.runners[0].plugin
    auth = {"Authorization": f"Bearer {store.create_token('ops', ['read', 'command'])}"}
    client = TestClient(create_app(store, None, plugins=h), raise_server_exceptions=False)
    body = {"kind": "reduce", "watts": 1000, "duration_s": 3600}
    try:
        assert h.has_manager("home")
        r = client.post("/api/sites/home/requests", json=body, headers=auth)
        assert r.status_code == 503, r.text
        assert r.headers["Retry-After"] == "10"
        d = r.json()
        assert d["reason"] == "energy_manager_timeout" and d["started"] is True
        assert "did not answer within 10 s" in d["detail"] and "may still be taken" in d["detail"]
        # The manager is still busy with that one: a second call it never begins changes nothing.
        h.site_timeout_s = 0.2
        r = client.get("/api/sites/home/requests", headers=auth)
        assert r.status_code == 503 and r.json()["started"] is False
        assert "nothing was changed" in r.json()["detail"]
        time.sleep(1.0)
        assert plugin.calls == ["add"]  # the call given up on before it began never ran
        h.site_timeout_s = 5.0  # an idle manager answers as before
        r = client.post("/api/sites/home/requests", json=body, headers=auth)
        assert r.status_code == 202 and r.json()["id"] == "r-1", r.text
    finally:
        h.stop()
