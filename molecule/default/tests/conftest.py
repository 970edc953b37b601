"""Shared helpers of the lab tests: the inventory, addresses and an HTTP client.

Requests go only to the lab's own hosts (addresses the lab made on its bridge), in
bounded loops.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import testinfra
import testinfra.host

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
INVENTORY = str(PROJECT / "inventories" / "lab")


# The variables the tests read, templated by Ansible itself (testinfra's own inventory
# reader does not template, and the lab inventory computes addresses from LAB_NET).
_VARS = (
    "{{ {'groups': group_names, 'internal_address': internal_address, 'ansible_host': ansible_host,"
    " 'deploy_env': deploy_env,"
    " 'ansible_user': ansible_user | default('root'),"
    " 'key': ansible_ssh_private_key_file | default(''),"
    " 'app_base_port': app_base_port | default(8000), 'app_instances': app_instances | default(2),"
    " 'nginx_listen_port': nginx_listen_port | default(80),"
    " 'node_exporter_port': node_exporter_port | default(9100),"
    " 'nginx_exporter_port': nginx_exporter_port | default(9113),"
    " 'prometheus_port': prometheus_port | default(9090),"
    " 'loki_http_port': loki_http_port | default(3100), 'fluent_bit_forward_port': fluent_bit_forward_port | default(24224)} }}"
)


@functools.cache
def _all_vars() -> dict[str, dict]:
    env = {**os.environ, "ANSIBLE_CONFIG": str(PROJECT / "ansible.cfg"), "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}
    out = subprocess.run(
        ["ansible", "-i", INVENTORY, "all", "--one-line", "-m", "ansible.builtin.debug", "-a", f"msg={_VARS}"],
        check=True, capture_output=True, text=True, env=env, cwd=PROJECT,
    ).stdout
    # one line a host: "<name> | SUCCESS => {...}"
    found = {}
    for line in out.splitlines():
        name, sep, result = line.partition(" | SUCCESS => ")
        if sep:
            found[name] = json.JSONDecoder().raw_decode(result)[0]["msg"]
    return found


def hosts(group: str) -> list[str]:
    return sorted(n for n, v in _all_vars().items() if group == "all" or group in v["groups"])


def hostvars(name: str) -> dict:
    return _all_vars()[name]


@functools.cache
def testinfra_host(name: str) -> testinfra.host.Host:
    v = hostvars(name)
    return testinfra.get_host(
        f"ssh://{v['ansible_user']}@{v['ansible_host']}",
        ssh_identity_file=v["key"] or None,
        ssh_extra_args="-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
    )


def address(name: str) -> str:
    return str(hostvars(name)["internal_address"])


def app_ports(name: str) -> list[int]:
    v = hostvars(name)
    base = int(v["app_base_port"])
    return list(range(base, base + int(v["app_instances"])))


def app_instances() -> list[tuple[str, int]]:
    return [(h, p) for h in hosts("app") for p in app_ports(h)]


def lb_port(name: str) -> int:
    return int(hostvars(name)["nginx_listen_port"])


def port(name: str, var: str) -> int:
    """A port from the inventory, with the defaults playbooks/monitoring.yml uses."""
    return int(hostvars(name)[var])


@dataclass
class Answer:
    status: int
    body: str
    headers: dict[str, str]


def get(url: str, headers: dict[str, str] | None = None, timeout: float = 5) -> Answer:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (lab addresses only)
            return Answer(resp.status, resp.read().decode(), dict(resp.headers))
    except urllib.error.HTTPError as err:
        return Answer(err.code, err.read().decode(errors="replace"), dict(err.headers))


def journal(host, unit: str, lines: int = 30) -> str:
    return host.run(f"journalctl -u {unit} -n {lines} --no-pager").stdout


@pytest.fixture(scope="session")
def infra():
    """testinfra host for an inventory name."""
    return testinfra_host
