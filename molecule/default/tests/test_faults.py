"""Faults operators meet, on the lab, under load through the load balancer.

Every test here is marked disruptive: they run after all other tests, in the order of
their marker, and each leaves the lab as it found it. Load goes only to the lab's load
balancer, bounded in time and count (bench/loadgen.py); the figures of each run are
printed (pytest -s shows them).
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
from conftest import (LOAD_WORKERS, PROJECT, address, app_ports, client_url, get, get_from, hosts, hostvars, journal,
                      lb_message, loadgen, playbook, port, recap, served_by, steady_load)

LB = hosts("lb")[0]
MONITORING = hosts("monitoring")
# A whole app host stopped under load: at most one failed request per client connection,
# the request in flight when the host went away, and only within HOST_STOP_SETTLE seconds
# of the stop. Nginx retries a failed backend on the next one (proxy_next_upstream, 1 s
# connect timeout) and takes it out of rotation for 5 s, so in practice none fail.
HOST_STOP_MAX_FAILED = LOAD_WORKERS
HOST_STOP_SETTLE = 10.0


def load() -> loadgen.Load:
    return steady_load(max_seconds=600, max_requests=500_000)


def main_pid(host, unit: str) -> str:
    return host.check_output(f"systemctl show --property MainPID --value {unit}")


def wait_until(check, timeout: float, message) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, message() if callable(message) else message
        time.sleep(0.5)


@pytest.mark.disruptive(10)
def test_check_diff_on_the_converged_lab_reports_no_change_and_no_failure():
    proc = playbook("site.yml", "--check", "--diff")
    counts = recap(proc.stdout)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    assert set(hosts("all")) <= set(counts), proc.stdout[-3000:]
    noisy = {h: c for h, c in counts.items() if c["changed"] or c["failed"] or c["unreachable"]}
    assert not noisy, f"{noisy}\n{proc.stdout[-5000:]}"


@pytest.mark.disruptive(20)
def test_invalid_nginx_configuration_fails_the_play_and_nginx_keeps_serving(infra):
    host = infra(LB)
    before = host.file("/etc/nginx/nginx.conf").sha256sum
    master = main_pid(host, "nginx")
    # A typo an operator could make: nginx, not Ansible, knows it is wrong.
    with load() as running:
        proc = playbook("playbooks/lb.yml", "-e", json.dumps({"nginx_proxy_connect_timeout": "1 s"}))
    result = running.result
    print(f"invalid nginx configuration, load during the play: {result.summary()}")
    assert proc.returncode != 0
    assert 'invalid number of arguments in "proxy_connect_timeout" directive' in proc.stdout, proc.stdout[-3000:]
    assert host.file("/etc/nginx/nginx.conf").sha256sum == before
    assert main_pid(host, "nginx") == master, journal(host, "nginx")
    assert result.requests > 50 and result.failures == [], result.summary()
    answer = get(client_url())
    assert (answer.status, answer.body) == (200, lb_message())


@pytest.mark.disruptive(21)
@pytest.mark.parametrize(("variable", "value"), [
    ("prometheus_alert_instance_down_for", "1 minute"),  # in the alert rules
    ("prometheus_scrape_interval", "15 seconds"),  # in prometheus.yml
])
@pytest.mark.parametrize("name", MONITORING)
def test_invalid_prometheus_configuration_fails_the_play_and_prometheus_keeps_running(infra, name, variable, value):
    host = infra(name)
    files = ["/etc/prometheus/prometheus.yml", "/etc/prometheus/rules/webapp.rules.yml"]
    before = {f: host.file(f).sha256sum for f in files}
    pid = main_pid(host, "prometheus")
    api = f"http://{address(name)}:{port(name, 'prometheus_port')}"

    def reloaded_at() -> str:
        body = json.loads(get(f"{api}/api/v1/query?query=prometheus_config_last_reload_success_timestamp_seconds").body)
        return body["data"]["result"][0]["value"][1]

    last_reload = reloaded_at()
    proc = playbook("playbooks/monitoring.yml", "--limit", name, "--tags", "prometheus", "-e", json.dumps({variable: value}))
    assert proc.returncode != 0
    # promtool names the value: 2.42 (Debian 12) 'not a valid duration string: "V"', 2.53 (Debian 13)
    # 'unknown unit " x" in duration "V"'.
    assert any(said in proc.stdout for said in (f'not a valid duration string: "{value}"', f'in duration "{value}"')), \
        proc.stdout[-3000:]
    assert {f: host.file(f).sha256sum for f in files} == before
    assert main_pid(host, "prometheus") == pid, journal(host, "prometheus")
    assert get(f"{api}/-/ready").status == 200
    assert reloaded_at() == last_reload, "Prometheus reloaded although its new configuration was refused"


@pytest.mark.disruptive(30)
@pytest.mark.parametrize("name", hosts("app"))
def test_killed_instance_is_restarted_and_no_request_fails(infra, name):
    host = infra(name)
    instance = app_ports(name)[0]
    unit = f"webapp@{instance}"
    pid = main_pid(host, unit)
    restarts = int(host.check_output(f"systemctl show --property NRestarts --value {unit}"))
    with load() as running:
        time.sleep(2)
        host.check_output(f"kill -KILL {pid}")
        killed_at = time.monotonic()
        wait_until(
            lambda: main_pid(host, unit) not in ("0", pid)
            and get_from(LB, f"http://{address(name)}:{instance}/health").status == 200,
            30, lambda: journal(host, unit),
        )
        restarted_after = time.monotonic() - killed_at
        time.sleep(3)
    result = running.result
    print(f"kill -9 {name} {unit}: back after {restarted_after:.1f} s; load: {result.summary()}")
    assert int(host.check_output(f"systemctl show --property NRestarts --value {unit}")) == restarts + 1
    assert result.requests > 100 and result.failures == [], result.summary()
    backend = f"{address(name)}:{instance}"
    assert backend in served_by(infra, {backend}), f"{backend} is not served by the load balancer again"


@pytest.mark.disruptive(35)
def test_frozen_instance_is_replaced_by_the_watchdog_and_no_request_fails(infra):
    """An instance that accepts and never answers (SIGSTOP): systemd's watchdog, fed only by its
    answered self-probes, kills and restarts it within app_watchdog_sec (plus RestartSec, 1 s),
    while Nginx retries what hung there on another instance."""
    name = hosts("app")[0]
    host = infra(name)
    instance = app_ports(name)[-1]
    unit = f"webapp@{instance}"
    watchdog = int(hostvars(name)["app_watchdog_sec"])
    assert watchdog > 0, "the lab inventory turns the watchdog off"
    pid = main_pid(host, unit)
    restarts = int(host.check_output(f"systemctl show --property NRestarts --value {unit}"))
    with load() as running:
        time.sleep(2)
        # The host's monotonic clock at the freeze, and below the new process's start on the same
        # clock (systemd's ExecMainStartTimestampMonotonic): what systemd did, not this test's SSH
        # round trips, which a loaded controller stretches.
        frozen_at = float(host.check_output(f"kill -STOP {pid} && python3 -c 'import time; print(time.monotonic())'"))
        wait_until(lambda: main_pid(host, unit) not in ("0", pid), watchdog + 10, lambda: journal(host, unit))
        started = int(host.check_output(f"systemctl show --property ExecMainStartTimestampMonotonic --value {unit}"))
        replaced_after = started / 1e6 - frozen_at
        wait_until(lambda: get_from(LB, f"http://{address(name)}:{instance}/health").status == 200,
                   30, lambda: journal(host, unit))
        time.sleep(3)
    result = running.result
    print(f"SIGSTOP {name} {unit}: replaced after {replaced_after:.1f} s (watchdog {watchdog} s); load: {result.summary()}")
    # systemd's own lines about the unit (UNIT=): under load the instance's access lines would push
    # them out of the unit's last lines.
    said = host.run(f"journalctl UNIT={unit}.service -n 30 --no-pager").stdout
    assert "watchdog timeout" in said.lower(), said
    assert int(host.check_output(f"systemctl show --property NRestarts --value {unit}")) == restarts + 1
    # Killed at most `watchdog` s after its last answered probe, started again RestartSec (1 s)
    # later: by the host's clock, at most watchdog + 1 s after the freeze, with 2 s of slack for
    # a loaded host's systemd.
    assert 0 < replaced_after <= watchdog + 3, f"replaced after {replaced_after:.1f} s, watchdog {watchdog} s"
    assert result.requests > 100 and result.failures == [], result.summary()


@pytest.mark.disruptive(40)
def test_stopped_app_host_fails_a_bounded_number_of_requests_then_none_and_rejoins(infra):
    victim = hosts("app")[-1]
    lab = str(PROJECT / "lab" / "lab")
    backends = {f"{address(victim)}:{p}" for p in app_ports(victim)}
    with load() as running:
        time.sleep(3)
        stopped_at = time.monotonic()
        subprocess.run([lab, "stop", victim], check=True, env=os.environ, capture_output=True, timeout=60)
        time.sleep(20)
        subprocess.run([lab, "start", victim], check=True, env=os.environ, capture_output=True, timeout=180)
        for p in app_ports(victim):
            wait_until(lambda p=p: get_from(LB, f"http://{address(victim)}:{p}/health").status == 200,
                       90, lambda p=p: journal(infra(victim), f"webapp@{p}"))
        rejoined = served_by(infra, backends)
        time.sleep(3)
    result = running.result
    before = [s for s in result.failures if s.start < stopped_at]
    settling = [s for s in result.failures if stopped_at <= s.start < stopped_at + HOST_STOP_SETTLE]
    after = [s for s in result.failures if s.start >= stopped_at + HOST_STOP_SETTLE]
    print(f"{victim} stopped for 20 s under load: {len(result.failures)} failed requests "
          f"(bound {HOST_STOP_MAX_FAILED}, all within {HOST_STOP_SETTLE:.0f} s of the stop), slowest answer "
          f"{max(s.latency for s in result.samples):.2f} s; load: {result.summary()}")
    assert backends <= rejoined, f"{victim}'s instances {backends - rejoined} did not rejoin the load balancer"
    assert not before, result.summary()
    assert len(settling) <= HOST_STOP_MAX_FAILED, result.summary()
    assert not after, [(round(s.start - stopped_at, 2), s.error or s.status) for s in after]
    assert result.requests > 1000, result.summary()
    # The host came back with its firewall: nftables.service loaded the rule set at boot, before
    # any instance's socket listened, and serves the release it had, with no Ansible run.
    host = infra(victim)
    assert host.run("nft list table inet webapp").rc == 0

    def entered(unit: str) -> int:
        return int(host.check_output(f"systemctl show --property ActiveEnterTimestampMonotonic --value {unit}"))

    firewall = entered("nftables.service")
    assert firewall > 0, "nftables.service did not run at boot"
    for p in app_ports(victim):
        assert 0 < firewall <= entered(f"webapp@{p}.socket"), f"webapp@{p}.socket listened before the firewall was loaded"
