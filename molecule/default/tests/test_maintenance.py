"""Maintenance mode (playbooks/maintenance.yml): the load balancers answer 503 with Retry-After and
the inventory's page, the monitoring hosts still reach the app, the switch is a reload (no request
fails), it survives a run of the load balancers' play, and a wrong value changes nothing."""

from __future__ import annotations

import html
import threading
import time

import pytest
from conftest import blackbox_probe, client_url, get, hosts, hostvars, lb_message, playbook, recap

LB = hosts("lb")


def maintenance(value: str):
    return playbook("playbooks/maintenance.yml", "-e", f"maintenance={value}", timeout=300)


class Load:
    """Requests through the floating address in a loop until stopped: every answer counted by status."""

    def __init__(self) -> None:
        self.statuses: dict[object, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + 600
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                status: object = get(client_url("/"), timeout=5).status
            except OSError as err:
                status = type(err).__name__
            self.statuses[status] = self.statuses.get(status, 0) + 1

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


@pytest.mark.disruptive(75)
def test_maintenance_on_then_off_under_load():
    page = html.escape(str(hostvars(LB[0])["nginx_maintenance_message"]))
    with Load() as load:
        time.sleep(1)
        on = maintenance("on")
        try:
            assert on.returncode == 0, on.stdout[-3000:]
            answer = get(client_url("/"))
            assert answer.status == 503, answer
            assert page in answer.body, answer.body
            assert int(answer.headers["Retry-After"]) > 0, answer.headers
            assert answer.headers["Content-Type"].startswith("text/html"), answer.headers
            # Each load balancer directly, too.
            for lb in LB:
                assert get(client_url("/").replace(hostvars(LB[0])["keepalived_virtual_address"],
                                                   hostvars(lb)["internal_address"])).status == 503
            # The monitoring hosts' probes still reach the app (status 200 and its message).
            for mon in hosts("monitoring"):
                found = blackbox_probe(client_url("/"), mon)
                assert found.get("probe_success") == 1 and found.get("probe_http_status_code") == 200, found
            # The load balancers' own play (what site.yml runs) leaves the switch as it is.
            lb_run = playbook("playbooks/lb.yml", "--tags", "nginx", timeout=600)
            assert lb_run.returncode == 0, lb_run.stdout[-3000:]
            assert get(client_url("/")).status == 503
            time.sleep(1)
        finally:
            off = maintenance("off")
        assert off.returncode == 0, off.stdout[-3000:]
        answer = get(client_url("/"))
        assert answer.status == 200 and answer.body == lb_message(), answer
        assert "Retry-After" not in answer.headers
        time.sleep(1)
    failed = {k: v for k, v in load.statuses.items() if k not in (200, 503)}
    assert not failed and load.statuses.get(503) and load.statuses.get(200), load.statuses
    for run in (on, off):
        assert all(r["changed"] <= 2 for r in recap(run.stdout).values()), run.stdout[-2000:]


@pytest.mark.parametrize("value", ["maybe", "true", ""])
def test_a_wrong_maintenance_value_is_refused_naming_it_before_any_change(value):
    run = maintenance(value)
    assert run.returncode != 0
    assert "maintenance must be on or off" in run.stdout, run.stdout[-3000:]
    assert "Set maintenance mode's switch" not in run.stdout
    assert get(client_url("/")).status == 200
