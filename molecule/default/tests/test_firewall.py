"""The firewall on the lab: every service reachable from where it should be, and from
nowhere else.

The expected reachability is the issue's, written out here from the inventory (not read
from the playbook that makes the rules): the load balancer's ports from anyone; app
instances from lb and monitoring hosts; exporters from monitoring hosts; Prometheus and
Grafana from the inventory's admin_networks (Prometheus also from monitoring hosts); Loki
from every host of the inventory and admin_networks; SSH from admin_networks. Each source (the controller and
every lab host) probes every other host's ports at once: a dropped connection times out,
anything else (connected, or refused because nothing listens) got through the firewall.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import shlex
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import address, app_ports, hosts, hostvars, journal, lb_port, playbook, port, recap
from conftest import testinfra_host as lab_host

CONTROLLER = "controller"
TIMEOUT = 2.0
# One TCP connect per target, all at once: "open", "refused" (reached the host) or "timeout" (dropped).
_PROBE = """
import json, socket, sys
from concurrent.futures import ThreadPoolExecutor
def probe(target):
    s = socket.socket()
    s.settimeout(float(sys.argv[2]))
    try:
        s.connect((target[0], target[1]))
        return "open"
    except ConnectionRefusedError:
        return "refused"
    except OSError:
        return "timeout"
    finally:
        s.close()
targets = json.loads(sys.argv[1])
with ThreadPoolExecutor(len(targets) or 1) as pool:
    print(json.dumps(list(pool.map(probe, targets))))
"""


@functools.cache
def controller_address() -> str:
    """The controller's address as the lab's hosts see it: the source address of its route to them (the
    hosts' SSH_CONNECTION names it too, but sudo, which every test command goes through, drops it)."""
    route = subprocess.run(["ip", "-o", "route", "get", address(hosts("all")[0])], capture_output=True, text=True,
                           check=True).stdout.split()
    return route[route.index("src") + 1]


def admin_sources() -> set[str]:
    """Sources inside the inventory's admin_networks."""
    networks = [ipaddress.ip_network(n, strict=False) for n in hostvars(hosts("all")[0])["admin_networks"]]
    addresses = {CONTROLLER: controller_address(), **{h: address(h) for h in hosts("all")}}
    return {name for name, a in addresses.items() if any(ipaddress.ip_address(a) in n for n in networks)}


def expected() -> list[tuple[str, int, str, frozenset[str] | None]]:
    """(host, port, service, sources allowed); None means anyone."""
    lb, mon, everyone = set(hosts("lb")), set(hosts("monitoring")), set(hosts("all"))
    admin = admin_sources()
    rows: list[tuple[str, int, str, frozenset[str] | None]] = []
    for h in hosts("all"):
        rows.append((h, port(h, "firewall_ssh_port"), "ssh", frozenset(admin)))
        rows.append((h, port(h, "node_exporter_port"), "node_exporter", frozenset(mon)))
        fluent_bit = mon if hostvars(h)["fluent_bit_enabled"] else set()  # closed where Fluent Bit is not deployed
        rows.append((h, port(h, "fluent_bit_http_port"), "fluent_bit", frozenset(fluent_bit)))
    for h in hosts("app"):
        rows += [(h, p, f"app instance {p}", frozenset(lb | mon)) for p in app_ports(h)]
    for h in hosts("lb"):
        rows.append((h, lb_port(h), "nginx http", None))
        if hostvars(h)["nginx_tls_certificate"]:
            rows.append((h, port(h, "nginx_tls_port"), "nginx https", None))
        rows.append((h, port(h, "nginx_exporter_port"), "nginx exporter", frozenset(mon)))
    for h in hosts("monitoring"):
        rows.append((h, port(h, "prometheus_port"), "prometheus", frozenset(admin | mon)))
        grafana = admin if hostvars(h)["grafana_enabled"] else set()
        rows.append((h, port(h, "grafana_port"), "grafana", frozenset(grafana)))
        loki = everyone | admin if hostvars(h)["loki_enabled"] else set()  # closed where Loki is not deployed
        rows.append((h, port(h, "loki_http_port"), "loki", frozenset(loki)))
    return rows


CASES = [
    (source, host, p, service, allowed is None or source in allowed)
    for host, p, service, allowed in expected()
    for source in [CONTROLLER, *hosts("all")]
    if source != host
]


def _probe_locally(target: tuple[str, int]) -> str:
    try:
        with socket.create_connection(target, timeout=TIMEOUT):
            return "open"
    except ConnectionRefusedError:
        return "refused"
    except OSError:
        return "timeout"


@functools.cache
def outcomes(source: str) -> dict[tuple[str, int], str]:
    """How every target this source probes answers, probed at once from the source."""
    targets = sorted({(address(h), p) for s, h, p, _, _ in CASES if s == source})
    if source == CONTROLLER:
        with ThreadPoolExecutor(len(targets)) as pool:
            return dict(zip(targets, pool.map(_probe_locally, targets)))
    payload = json.dumps([list(t) for t in targets])
    out = lab_host(source).check_output(f"python3 -c {shlex.quote(_PROBE)} {shlex.quote(payload)} {TIMEOUT}")
    return dict(zip(targets, json.loads(out)))


@pytest.mark.parametrize(
    ("source", "host", "port_", "service", "allowed"),
    CASES,
    ids=[f"{s}->{h}:{p}-{svc.replace(' ', '_')}-{'allowed' if a else 'dropped'}" for s, h, p, svc, a in CASES],
)
def test_reachability(source, host, port_, service, allowed):
    outcome = outcomes(source)[(address(host), port_)]
    if allowed:
        assert outcome != "timeout", f"{service} on {host}:{port_} should be reachable from {source}, but it is dropped"
    else:
        assert outcome == "timeout", f"{service} on {host}:{port_} should be dropped from {source}, but it is {outcome}"


@pytest.mark.parametrize("name", hosts("all"))
def test_rule_set_is_loaded_and_kept_for_boot(infra, name):
    host = infra(name)
    assert host.run("nft list table inet webapp").rc == 0, host.run("nft list ruleset").stdout
    assert host.service("nftables").is_enabled
    checked = host.run("nft -c -f /etc/nftables.conf")
    assert checked.rc == 0, checked.stderr
    policy = host.check_output("nft list chain inet webapp input")
    assert "policy drop" in policy, policy


@pytest.mark.disruptive(15)
def test_rule_set_that_shuts_out_ansible_is_rolled_back(infra):
    """A rule set that would keep the controller out of SSH (the controller left out, the
    admin networks elsewhere) is loaded, fails its confirmation, and the previous one comes
    back by itself; the file for the next boot too. Then a normal run changes nothing."""
    name = hosts("app")[0]
    host = infra(name)
    before_rules = host.check_output("nft -s list ruleset")
    before_file = host.file("/etc/nftables.conf").sha256sum
    proc = playbook(
        "playbooks/firewall.yml", "--limit", name,
        "-e", "firewall_ssh_allow_controller=false", "-e", '{"admin_networks": ["192.0.2.1"]}',
        "-e", "firewall_confirm_timeout=5", "-e", "firewall_rollback_after=20",
    )
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert f"The new rule set of {name} was not kept, the previous one is back" in proc.stdout, proc.stdout[-3000:]
    assert host.check_output("nft -s list ruleset") == before_rules
    assert host.file("/etc/nftables.conf").sha256sum == before_file
    again = playbook("playbooks/firewall.yml", "--limit", name)
    assert again.returncode == 0, again.stdout[-3000:]
    assert recap(again.stdout)[name]["changed"] == 0, again.stdout[-3000:]
    assert host.service("nftables").is_enabled, journal(host, "nftables")
