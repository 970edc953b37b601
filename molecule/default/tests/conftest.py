"""Shared helpers of the lab tests: the inventory, addresses and an HTTP client.

Requests go only to the lab's own hosts (addresses the lab made on its bridge), in
bounded loops.
"""

from __future__ import annotations

import functools
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from testinfra.utils.ansible_runner import AnsibleRunner

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
INVENTORY = str(PROJECT / "inventories" / "lab")


@functools.cache
def runner() -> AnsibleRunner:
    return AnsibleRunner(INVENTORY)


def hosts(group: str) -> list[str]:
    return sorted(runner().get_hosts(group))


@functools.cache
def hostvars(name: str) -> dict:
    return runner().get_variables(name)


def address(name: str) -> str:
    return str(hostvars(name)["internal_address"])


def app_ports(name: str) -> list[int]:
    v = hostvars(name)
    base = int(v.get("app_base_port", 8000))
    return list(range(base, base + int(v.get("app_instances", 2))))


def app_instances() -> list[tuple[str, int]]:
    return [(h, p) for h in hosts("app") for p in app_ports(h)]


def lb_port(name: str) -> int:
    return int(hostvars(name).get("nginx_listen_port", 80))


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


@pytest.fixture
def infra():
    """testinfra host for an inventory name."""
    return lambda name: runner().get_host(name)
