"""The docs' checkable claims kept true: every port the services table (the firewall's rules)
reads is in docs/security.md's reachability table with its default, every `./stack` command
they name exists, every repository file they name exists, and README's CI time is the one
docs/testing.md measured."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ROOT, role_defaults
from stack_filters import services  # noqa: I001 (after tests.conftest, which puts the filters on the path)

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


class Recorded(dict):
    """The roles' defaults, noting each variable read from them."""

    def __init__(self, values: dict) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def __getitem__(self, key: str):
        self.read.add(key)
        return super().__getitem__(key)


def ports_the_services_table_reads() -> set[str]:
    """The *_port variables stack_services reads for a fleet with every service on: two load
    balancers with TLS, an app host, two monitoring hosts (Alertmanager's cluster port)."""
    groups = {"lb": ["lb1", "lb2"], "app": ["app1"], "monitoring": ["mon1", "mon2"]}
    groups["all"] = [h for g in ("lb", "app", "monitoring") for h in groups[g]]
    hostvars = {h: {"internal_address": f"192.0.2.{i}", "nginx_tls_certificate": "/etc/ssl/lb.pem"}
                for i, h in enumerate(groups["all"], 10)}
    defaults = Recorded(role_defaults())
    for host in groups["all"]:
        services(hostvars, groups, host, defaults)
    return {name for name in defaults.read if name.endswith("_port")}


def security_table() -> list[str]:
    """The first column of docs/security.md's reachability table, one cell a row."""
    text = (ROOT / "docs" / "security.md").read_text()
    return [line.split("|")[1] for line in text.splitlines() if line.startswith("| ") and "---" not in line]


def test_the_services_table_reads_the_ports_it_should():
    assert {"node_exporter_port", "fluent_bit_http_port", "app_base_port", "nginx_tls_port", "loki_http_port",
            "alertmanager_cluster_port"} <= ports_the_services_table_reads()


# The firewall's own: SSH, beside the services table.
@pytest.mark.parametrize("name", sorted(ports_the_services_table_reads() | {"firewall_ssh_port"}))
def test_every_port_the_hosts_listen_on_is_in_the_security_table_with_its_default(name):
    default = role_defaults()[name]
    cells = security_table()
    assert any(re.search(rf"(?<![\d.]){default}(?:\.\.)? \(?`{name}`", cell) for cell in cells), \
        f"docs/security.md's table has no row for {default} `{name}`"


def stack_commands() -> set[str]:
    """The commands `stack`'s case statement takes."""
    text = (ROOT / "stack").read_text()
    block = text[text.index("case ${1:-} in"):]
    block = block[:block.index("\nesac")]
    return {cmd for arm in re.findall(r"^  ([a-z|]+)\)", block, re.M) for cmd in arm.split("|")}


def test_stack_commands_are_read():
    assert {"lab", "test", "lint", "deps", "down", "deploy", "lock"} <= stack_commands()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_stack_command_named_exists(page):
    named = set(re.findall(r"\./stack ([a-z]+)", page.read_text()))
    assert named <= stack_commands(), f"{page.name} names ./stack {sorted(named - stack_commands())}, which stack lacks"


# A path of the repository written out: playbooks/lb.yml, tests/test_fleet.py, roles/x/templates/y.j2.
PATH = re.compile(r"(?<![\w/.-])((?:playbooks|tests|molecule|roles|library|bench|lab|inventory_plugins|scripts)"
                  r"/[A-Za-z0-9_/.-]*\.(?:yml|py|md|json|j2))(?![\w.])")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_file_named_exists(page):
    named = set(PATH.findall(page.read_text()))
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert not missing, f"{page.name} names files the repository lacks: {missing}"


def test_the_files_named_are_found():
    named = {p for page in PAGES for p in PATH.findall(page.read_text())}
    assert {"playbooks/deploy.yml", "playbooks/rollback.yml", "tests/test_fleet.py"} <= named


def test_the_readme_gives_the_ci_time_docs_testing_measured():
    readme = re.search(r"about (\d+) minutes on 2 cores", (ROOT / "README.md").read_text())
    measured = re.search(r"takes about (\d+) minutes \(measured (\d+) s", (ROOT / "docs" / "testing.md").read_text())
    assert readme and measured, "README.md or docs/testing.md no longer states the CI time as this test reads it"
    assert readme.group(1) == measured.group(1), f"README says {readme.group(1)} minutes, docs/testing.md {measured.group(1)}"
    assert abs(int(measured.group(1)) - int(measured.group(2)) / 60) <= 1, measured.group(0)
