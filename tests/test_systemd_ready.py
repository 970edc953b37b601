"""Unit tests of library/systemd_ready.py. A stand-in answers for systemctl and journalctl (the one
system call each); the readiness probe is a real HTTP request to a server on loopback. The lab
tests prove every service of the stack starts and answers through it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from ansible.module_utils.testing import patch_module_args

from tests.conftest import ROOT
from tests.loopback import Loopback

sys.path.insert(0, str(ROOT / "library"))
import systemd_ready  # noqa: E402


class Service(Loopback):
    """A stand-in service's readiness URL: 200 with `body` once `up`, else 503."""

    def __init__(self) -> None:
        self.up, self.body = False, "Active connections: 1"
        super().__init__(lambda path: (200, {}, self.body.encode()) if self.up else (503, {}, b"starting"))


@pytest.fixture
def unit(monkeypatch):
    """systemd's side: the unit's state, and every systemctl call made; `start` brings the service up."""
    state = {"LoadState": "loaded", "ActiveState": "inactive", "NeedDaemonReload": "no", "enabled": False,
             "calls": [], "service": Service(), "starts_up": True}

    def stand_in(cmd, **kwargs):
        state["calls"].append(" ".join(cmd[:3]))
        out, rc = "", 0
        if cmd[:2] == ["systemctl", "show"]:
            out = "".join(f"{k}={state[k]}\n" for k in ("LoadState", "ActiveState", "NeedDaemonReload"))
        elif cmd[:2] == ["systemctl", "is-enabled"]:
            out, rc = ("enabled\n", 0) if state["enabled"] else ("disabled\n", 1)
        elif cmd[:2] == ["systemctl", "is-active"]:
            out, rc = (state["ActiveState"] + "\n", 0 if state["ActiveState"] == "active" else 3)
        elif cmd[:2] == ["systemctl", "enable"]:
            state["enabled"] = True
        elif cmd[:2] == ["systemctl", "start"]:
            state["ActiveState"] = "active" if state["starts_up"] else "failed"
            state["service"].up = state["starts_up"]
        elif cmd[0] == "journalctl":
            out = "bind() to 0.0.0.0:80 failed (98: Address already in use)\n"
        return subprocess.CompletedProcess(cmd, rc, stdout=out, stderr="")

    monkeypatch.setattr(systemd_ready.subprocess, "run", stand_in)
    yield state
    state["service"].shutdown()


def run(args: dict, capsys) -> tuple[int, dict]:
    with patch_module_args({"name": "nginx.service", "host": "lb1", "delay": 0.05, "retries": 3, **args}), \
            pytest.raises(SystemExit) as done:
        systemd_ready.main()
    return done.value.code, json.loads(capsys.readouterr().out)


def test_a_stopped_disabled_unit_is_enabled_started_and_waited_for(unit, capsys):
    rc, res = run({"url": unit["service"].url("/stub_status"), "body": "Active connections"}, capsys)
    assert rc == 0 and res["changed"] and res["enabled"] and res["started"] and not res["reloaded"]
    assert res["probes"] == 1
    assert [c for c in unit["calls"] if c.split()[1] in ("enable", "start", "daemon-reload")] == [
        "systemctl enable nginx.service", "systemctl start nginx.service"]


def test_a_running_enabled_ready_unit_changes_nothing(unit, capsys):
    unit.update(ActiveState="active", enabled=True)
    unit["service"].up = True
    rc, res = run({"url": unit["service"].url("/stub_status")}, capsys)
    assert rc == 0 and not res["changed"]
    assert not [c for c in unit["calls"] if c.split()[1] in ("enable", "start", "daemon-reload")]


def test_unit_files_changed_since_systemd_read_them_are_read_again(unit, capsys):
    unit.update(ActiveState="active", enabled=True, NeedDaemonReload="yes")
    unit["service"].up = True
    rc, res = run({"url": unit["service"].url("/stub_status")}, capsys)
    assert rc == 0 and res["reloaded"] and "systemctl daemon-reload" in unit["calls"]


def test_a_service_that_never_answers_fails_with_its_journal(unit, capsys):
    unit["starts_up"] = False
    rc, res = run({"url": unit["service"].url("/stub_status"), "body": "Active connections"}, capsys)
    assert rc == 1 and res["probes"] == 4  # the first probe and 3 more
    assert res["msg"].startswith(f"nginx.service on lb1 did not answer {unit['service'].url('/stub_status')} with a body matching "
                                 "Active connections after 4 probes (")
    assert "Address already in use" in res["msg"]


def test_a_body_that_does_not_match_is_not_ready(unit, capsys):
    unit["service"].body = "welcome to nginx"
    rc, res = run({"url": unit["service"].url("/stub_status"), "body": "Active connections"}, capsys)
    assert rc == 1 and "answered without a body matching Active connections" in res["msg"]


def test_without_a_url_the_unit_being_active_is_ready(unit, capsys):
    rc, res = run({}, capsys)
    assert rc == 0 and res["started"] and "systemctl is-active nginx.service" in unit["calls"]
    unit.update(ActiveState="inactive", starts_up=False)
    rc, res = run({}, capsys)
    assert rc == 1 and "did not become active after 4 probes (is failed)" in res["msg"]


def test_an_unknown_unit_is_named(unit, capsys):
    unit["LoadState"] = "not-found"
    rc, res = run({}, capsys)
    assert rc == 1 and res["msg"] == "nginx.service on lb1: no such unit (systemd says not-found)"


def test_check_mode_says_what_would_start_and_starts_nothing(unit, capsys):
    rc, res = run({"url": unit["service"].url("/stub_status"), "_ansible_check_mode": True}, capsys)
    assert rc == 0 and res["changed"] and res["started"] and res["probes"] == 0
    assert not [c for c in unit["calls"] if c.split()[1] in ("enable", "start", "daemon-reload")]
