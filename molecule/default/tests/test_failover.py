"""The load balancers' floating address (roles/keepalived) on the lab: one holder, VRRP
admitted between the load balancers only, certificates that name the address; then, under
load through the address, the failures it must survive and the ones that must not move it.

Load goes only to the lab's floating address, bounded in time and count
(bench/loadgen.py). The figures (failed requests, gap) are computed by
bench/failover.py, the failover benchmark, and printed (pytest -s shows them).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time

import pytest
from conftest import PROJECT, address, client_url, floating_address, hosts, hostvars, journal, playbook, port, recap
from conftest import testinfra_host as lab_host

sys.path.insert(0, str(PROJECT / "bench"))
import failover  # noqa: E402
import loadgen  # noqa: E402

LBS = hosts("lb")
# VRRP in nft's JSON: IP protocol 112 as nft 1.0 (Debian 12) prints it, "vrrp" as 1.1 (Debian 13) does.
VRRP = (112, "vrrp")
VIP = floating_address()
pytestmark = pytest.mark.skipif(len(LBS) < 2 or not VIP, reason="the lab inventory gives no pair of load balancers a floating address")
WORKERS = 4
# The holder fails (host stopped, or Nginx stopped): the failed requests all start within
# FAILOVER_SETTLE seconds of the failure, at most FAILOVER_MAX_FAILED of them (the bench's
# rate: 4 connections, a request every 5 ms each at most), and the longest time without a
# successful answer is at most FAILOVER_MAX_GAP seconds. Measured with bench/failover.py,
# see the README.
FAILOVER_MAX_FAILED = 20
FAILOVER_SETTLE = 5.0
FAILOVER_MAX_GAP = 5.0
SETTLE = 10.0
TIMEOUT = 5.0  # the load generator's per-request timeout


def run_on(name: str, command: str) -> str:
    """A command's output on a lab host, "" when the host does not answer."""
    try:
        result = lab_host(name).run(command)
    except Exception:  # noqa: BLE001 (a stopped host: testinfra's SSH errors vary)
        return ""
    return result.stdout if result.rc == 0 else ""


def holders() -> list[str]:
    return failover.holders(run_on, LBS, VIP)


def holder() -> str:
    found = holders()
    assert len(found) == 1, f"{found or 'no load balancer'} hold {VIP}; " + "".join(
        journal(lab_host(h), "keepalived", 15) for h in LBS)
    return found[0]


def load() -> loadgen.Load:
    """The bench's load (bench/failover.py): WORKERS connections, a request every 5 ms each at most."""
    return loadgen.Load(client_url(), workers=WORKERS, interval=0.005, timeout=TIMEOUT, max_seconds=600, max_requests=1_000_000)


def lab(*args: str) -> None:
    subprocess.run([str(PROJECT / "lab" / "lab"), *args], check=True, env=os.environ, capture_output=True, timeout=300)


def bench_round(kind: str) -> tuple[str, failover.Round]:
    """One round of bench/failover.py: the holder fails under load, the other takes over, the failed one
    comes back. The failed host is repaired even when the round stops half-way."""
    name = holder()
    opts = argparse.Namespace(workers=WORKERS, interval=0.005, settle=SETTLE, max_seconds=600, max_requests=1_000_000)
    try:
        result = failover.one_round(opts, client_url(), kind, LBS, VIP)
    finally:
        _, _, repair = failover.FAILURES[kind]
        if kind == "host":
            lab("start", name)  # a no-op when it runs
        else:
            lab_host(name).run(str(repair))
    print(f"{failover.FAILURES[kind][0]} ({name}): {result}")
    return name, result


def assert_round(name: str, r: failover.Round, max_failed: int = FAILOVER_MAX_FAILED, max_gap: float = FAILOVER_MAX_GAP) -> None:
    assert r.failover.failed <= max_failed, r
    assert r.failover.last_failure < FAILOVER_SETTLE, f"a request failed {r.failover.last_failure} s after the failure: {r}"
    assert r.failover.gap <= max_gap, r
    assert r.failover.requests > 500, r
    assert r.moved_to != name, r
    assert r.comeback.failed == 0, f"requests failed when {name} came back: {r}"
    assert r.stayed, f"the address left {r.moved_to} when {name} came back: {holders()}"


def test_exactly_one_load_balancer_holds_the_floating_address():
    holder()


@pytest.mark.parametrize("name", LBS)
def test_keepalived_is_enabled_and_running(name):
    host = lab_host(name)
    assert host.service("keepalived").is_enabled
    assert host.service("keepalived").is_running, journal(host, "keepalived")


def test_the_floating_address_serves_the_app():
    answer = loadgen.Load(client_url(), workers=1, max_seconds=10, max_requests=20).start().wait()
    assert answer.requests == 20 and answer.failures == [], answer.summary()


@pytest.mark.parametrize("name", LBS)
def test_certificate_names_the_floating_address(name):
    """Each load balancer's certificate verifies for the floating address (clients keep verifying after a failover)."""
    cadata = lab_host(name).file(hostvars(name)["nginx_tls_certificate"]).content_string
    context = ssl.create_default_context(cadata=cadata)
    with socket.create_connection((address(name), port(name, "nginx_tls_port")), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=VIP) as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")


@pytest.mark.parametrize("name", hosts("all"))
def test_firewall_admits_vrrp_from_the_load_balancers_only(name):
    ruleset = json.loads(lab_host(name).check_output("nft -j list chain inet webapp input"))
    sources = set()
    for item in ruleset["nftables"]:
        exprs = item.get("rule", {}).get("expr", [])
        if any(e.get("match", {}).get("left", {}).get("meta", {}).get("key") == "l4proto"
               and e["match"].get("right") in VRRP for e in exprs):
            for e in exprs:
                right = e.get("match", {}).get("right")
                if isinstance(right, dict) and "set" in right:
                    sources |= set(right["set"])
                elif isinstance(right, str) and e["match"]["left"].get("payload", {}).get("field") == "saddr":
                    sources.add(right)
    expected = {address(h) for h in LBS} if name in LBS else set()
    assert sources == expected, ruleset


@pytest.mark.disruptive(50)
def test_firewall_reload_on_the_holder_does_not_move_the_address():
    name = holder()
    with load() as running:
        time.sleep(2)
        # what the firewall role and nftables.service at boot both do (the service is only
        # active on a host that booted since the rule set was installed)
        lab_host(name).check_output("nft -f /etc/nftables.conf")
        time.sleep(5)
    result = running.result
    print(f"firewall reloaded on {name}: load {result.summary()}")
    assert holders() == [name]
    assert result.requests > 500 and result.failures == [], result.summary()


@pytest.mark.disruptive(51)
def test_rerun_of_site_yml_does_not_move_the_address():
    name = holder()
    with load() as running:
        proc = playbook("site.yml")
        time.sleep(2)
    result = running.result
    print(f"site.yml re-run: {recap(proc.stdout)}; load {result.summary()}")
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    assert holders() == [name]
    assert result.failures == [], result.summary()


@pytest.mark.disruptive(52)
def test_the_lb_play_restarts_one_load_balancer_at_a_time_and_fails_no_request():
    """The routine play repairs a drift that needs Nginx restarted on both load balancers (its
    sandbox drop-in gone on both): one host at a time, the holder giving the address up first
    (keepalived is bound to Nginx), the next only once the address answers again."""
    dropin = "/etc/systemd/system/nginx.service.d/sandbox.conf"
    pids = {name: lab_host(name).check_output("systemctl show --property MainPID --value nginx") for name in LBS}
    for name in LBS:
        lab_host(name).check_output(f"rm {dropin} && systemctl daemon-reload")
    with load() as running:
        time.sleep(2)
        proc = playbook("playbooks/lb.yml")
        time.sleep(3)
    result = running.result
    print(f"lb.yml repairing both drop-ins: {recap(proc.stdout)}; holders {holders()}; load {result.summary()}")
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    restarts = re.findall(r"RUNNING HANDLER \[nginx : Restart the checked Nginx\][^\n]*\nchanged: \[(\S+)\]", proc.stdout)
    assert sorted(restarts) == sorted(LBS), f"Nginx restarted on {restarts}"
    for name in LBS:
        host = lab_host(name)
        assert host.file(dropin).exists, name
        assert host.check_output("systemctl show --property MainPID --value nginx") != pids[name], f"Nginx not restarted on {name}"
        assert host.service("keepalived").is_running, journal(host, "keepalived")
    assert len(holders()) == 1, holders()
    assert result.requests > 500 and result.failures == [], result.summary()


@pytest.mark.disruptive(60)
def test_nginx_stopped_on_the_holder_moves_the_address_and_its_return_does_not():
    name, r = bench_round("nginx")
    assert_round(name, r)


@pytest.mark.disruptive(65)
def test_nginx_not_answering_on_the_holder_moves_the_address_by_the_check():
    """Nginx runs but does not answer (every process frozen): keepalived's check fails and the
    address moves. The requests in flight on the frozen host fail at the client's timeout
    (one per connection); the new connections reach the other load balancer."""
    name, r = bench_round("frozen")
    assert "VRRP_Script(webapp_check) failed" in journal(lab_host(name), "keepalived", 50)
    assert_round(name, r, max_failed=WORKERS, max_gap=TIMEOUT + 1)


@pytest.mark.disruptive(70)
def test_holder_stopped_fails_a_bounded_number_of_requests_and_its_return_none():
    name, r = bench_round("host")
    assert_round(name, r)
    # It came back as a standby, with its firewall (VRRP admitted) and Nginx.
    assert lab_host(name).service("nginx").is_running
    assert lab_host(name).run("nft list table inet webapp").rc == 0
