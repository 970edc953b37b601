"""Checks of the repository itself that need no lab: role interfaces and inventories."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import BIN, ENV, ROLES, ROOT, inventory, role_defaults
from tests.conftest import load_yaml as load

sys.path.insert(0, str(ROOT / "lab"))
import hosts as lab_hosts  # noqa: E402


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_argument_specs_match_defaults_key_for_key(role):
    defaults = load(role / "defaults" / "main.yml")
    options = load(role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    required = {k for k, v in options.items() if v.get("required")}
    assert set(defaults) == set(options) - required, "defaults and argument_specs differ"
    for key, value in defaults.items():
        assert options[key].get("default") == value, f"{key}: default differs from argument_specs"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_public_variables_are_prefixed_and_documented(role):
    lines = (role / "defaults" / "main.yml").read_text().splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith((" ", "#", "-")) and ":" in line:
            key = line.split(":", 1)[0]
            assert key.startswith(f"{role.name}_"), f"{key} is not prefixed with {role.name}_"
            assert lines[i - 1].startswith("# "), f"{key} has no comment line"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_role_constants_are_private(role):
    path = role / "vars" / "main.yml"
    if path.is_file():
        assert all(k.startswith(f"_{role.name}_") for k in load(path)), "vars/main.yml names must start with _<role>_"


# The Debian releases every role supports and the lab tests (docs/platforms.md), from the one list the
# lab makes its hosts from (lab/hosts.py): each role's meta/main.yml names them, and a role's
# per-release settings are one dict keyed by them in its vars/main.yml.
RELEASES = sorted(lab_hosts.SUITES)


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_each_role_names_the_debian_releases_it_is_tested_on_and_nothing_else(role):
    platforms = load(role / "meta" / "main.yml")["galaxy_info"]["platforms"]
    assert platforms == [{"name": "Debian", "versions": RELEASES}]


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_per_release_settings_are_one_dict_keyed_by_every_release(role):
    """`_ROLE_releases` in vars/main.yml (the one shape), never vars/<release>.yml files or a task's
    `when:` on the release."""
    assert not [p.name for p in (role / "vars").glob("*.yml") if p.stem in RELEASES]
    constants = load(role / "vars" / "main.yml") if (role / "vars" / "main.yml").is_file() else {}
    if f"_{role.name}_releases" in constants:
        by_release = constants[f"_{role.name}_releases"]
        assert sorted(by_release) == sorted(RELEASES)
        assert len({tuple(sorted(v)) for v in by_release.values()}) == 1, "every release must set the same keys"
    for path in (role / "tasks").glob("*.yml"):
        assert "distribution_release" not in path.read_text() or path.name == "preflight.yml", path


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_main_is_a_table_of_contents(role):
    """Imports of preflight, install and configure, in that order and tagged; a block may wrap
    the last two so that an `always` imports what gives back what preflight took (a lock)."""
    tasks = []
    for item in load(role / "tasks" / "main.yml"):
        tasks += item["block"] + item.get("always", []) if "block" in item else [item]
    assert all(set(t) <= {"name", "ansible.builtin.import_tasks", "tags", "when"} for t in tasks)
    assert [t["ansible.builtin.import_tasks"] for t in tasks][:3] == ["preflight.yml", "install.yml", "configure.yml"]
    for task, part in zip(tasks, ["preflight", "install", "configure"]):
        assert {role.name, f"{role.name}_{part}"} <= set(task["tags"])




@pytest.mark.parametrize(("env", "counts"), [
    ("staging", {"lb": 1, "app": 2, "monitoring": 1}),
    ("production", {"lb": 2, "app": 4, "monitoring": 1}),
    ("lab", {"lb": 2, "app": 2, "monitoring": 1}),
])
def test_inventory_groups(env, counts):
    inv = inventory(env)
    assert {g: len(inv[g]["hosts"]) for g in counts} == counts


@pytest.mark.parametrize("env", ["staging", "production"])
def test_remote_inventories_hold_placeholders_only(env):
    inv = inventory(env)
    names = inv["_meta"]["hostvars"].keys()
    assert names and all(n.endswith(f".{env}.example.invalid") for n in names)
    for n in names:
        assert inv["_meta"]["hostvars"][n]["deploy_env"] == env


@pytest.mark.parametrize("env", ["staging", "production", "lab"])
def test_site_lists_hosts(env):
    out = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(ROOT / "inventories" / env), "site.yml", "--list-hosts"],
        check=True, capture_output=True, text=True, env=ENV, cwd=ROOT,
    ).stdout
    inv = inventory(env)
    for group in ("app", "lb"):
        for host in inv[group]["hosts"]:
            assert host in out


# One wrong value per case: (role, variables, words the error must contain). Each role also
# gets the required values it needs, so only the wrong one can fail.
REQUIRED = {
    "app": {"app_release": {"release_id": "20260101T000000Z-abc1234", "artifact": "/tmp/webapp.tar.gz",
                            "artifact_sha256": "0" * 64, "version": "1.0.0", "git_revision": "abc1234",
                            "build_time": "2026-01-01T00:00:00Z", "python": "3.11", "tests": "passed"}},
    "grafana": {"grafana_prometheus_url": "http://192.0.2.14:9090"},
}
BAD_VALUES = [
    ("app", {"app_instances": "two"}, ["app_instances", "int"]),
    ("app", {"app_release": None}, ["app_release"]),
    ("nginx", {"nginx_listen_port": "eighty"}, ["nginx_listen_port", "int"]),
    ("nginx", {"nginx_tls_protocols": ["TLSv1.1"]}, ["nginx_tls_protocols", "TLSv1.1"]),
    ("nginx", {"nginx_proxy_next_upstream": ["error", "http_418"]}, ["nginx_proxy_next_upstream", "http_418"]),
    ("node_exporter", {"node_exporter_port": "x"}, ["node_exporter_port", "int"]),
    ("prometheus", {"prometheus_alert_error_ratio": "high"}, ["prometheus_alert_error_ratio", "float"]),
    ("grafana", {"grafana_install_method": "pip"}, ["grafana_install_method", "pip"]),
    ("grafana", {"grafana_prometheus_url": None}, ["grafana_prometheus_url"]),
    ("firewall", {"firewall_ssh_port": "ssh"}, ["firewall_ssh_port", "int"]),
    ("firewall", {"firewall_services": [{"port": 8000}]}, ["name", "firewall_services"]),
    ("firewall", {"firewall_services": [{"name": "x", "protocol": "sctp"}]}, ["protocol", "sctp"]),
    ("keepalived", {"keepalived_priority": "high"}, ["keepalived_priority", "int"]),
    ("keepalived", {"keepalived_unicast": "sometimes"}, ["keepalived_unicast", "bool"]),
]


def run_role(tmp_path: Path, role: str, variables: dict, *args: str) -> subprocess.CompletedProcess[str]:
    """The role on the controller itself (connection local), with the given variables."""
    merged = {**REQUIRED.get(role, {}), **variables}
    play = [{"name": "Probe the role's argument spec", "hosts": "localhost", "connection": "local",
             "gather_facts": False, "roles": [{"role": role, "vars": {k: v for k, v in merged.items() if v is not None}}]}]
    path = tmp_path / "probe.yml"
    path.write_text(yaml.safe_dump(play))
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "localhost,", str(path), *args],
        capture_output=True, text=True, env={**ENV, "ANSIBLE_NOCOLOR": "1"}, cwd=ROOT,
    )


@pytest.mark.parametrize(("role", "variables", "words"), BAD_VALUES, ids=lambda v: str(v) if isinstance(v, str) else None)
def test_wrong_value_fails_before_any_task_naming_the_variable(tmp_path, role, variables, words):
    # --check and only the role's preflight tags: should the spec ever let the value through,
    # nothing but read-only checks could run on this machine.
    proc = run_role(tmp_path, role, variables, "--check", "--tags", f"{role}_preflight")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    failed = re.search(r"TASK \[([^\]]*)\][^\n]*\n(?:(?!TASK \[).)*?fatal: \[localhost\]", out, re.S)
    assert failed and "Validating arguments against arg spec" in failed.group(1), out[-3000:]
    message = out[failed.end():]
    for word in words:
        assert word in message, message[:3000]
    assert re.search(r"localhost\s+: ok=0 ", out), out[-1000:]


@pytest.mark.parametrize("role", sorted({r for r, _, _ in BAD_VALUES}))
def test_good_values_pass_the_argument_spec(tmp_path, role):
    # Only the spec runs (its task is tagged always): the cases above fail on their wrong value alone.
    proc = run_role(tmp_path, role, {}, "--tags", "argument-spec-only")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]


# Alertmanager's secrets (group_vars/monitoring/vault.yml of staging and production), which every
# preflight run below gets unless its own -e says otherwise (a later -e wins).
ALERTMANAGER_VAULT = ["-e", "vault_alertmanager_smtp_password=a-real-smtp-secret",
                      "-e", "vault_alertmanager_webhook_url=https://pager.example.invalid/hooks/a-real-token"]


def preflight(env: str, *args: str) -> subprocess.CompletedProcess[str]:
    """playbooks/preflight.yml against an inventory (a name, or a path): assertions only, no host is contacted."""
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(ROOT / "inventories" / env), "playbooks/preflight.yml",
         *ALERTMANAGER_VAULT, *args],
        capture_output=True, text=True, env={**ENV, "ANSIBLE_NOCOLOR": "1"}, cwd=ROOT,
    )


# Loki's gateway credentials (group_vars/all and group_vars/monitoring vault.yml).
LOKI_VAULT = ["-e", "vault_loki_push_password=a-real-push-secret", "-e", "vault_loki_query_password=a-real-query-secret"]


def test_loki_without_its_passwords_fails_preflight_naming_the_vault_files():
    proc = preflight("staging", "-e", "vault_grafana_admin_password=x")
    assert proc.returncode != 0
    assert "Loki's gateway needs a push password on app1.staging.example.invalid" in proc.stdout, proc.stdout[-3000:]
    assert "a query password of at least 12 (has 0)" in proc.stdout
    assert "inventories/staging/group_vars/all/vault.yml" in proc.stdout
    assert "inventories/staging/group_vars/monitoring/vault.yml" in proc.stdout


@pytest.mark.parametrize("variables", [
    {"vault_loki_push_password": "short"},
    {"vault_loki_query_password": "short"},
])
def test_a_short_loki_password_fails_preflight(variables):
    proc = preflight("staging", "-e", "vault_grafana_admin_password=x", *LOKI_VAULT, "-e", json.dumps(variables))
    assert proc.returncode != 0
    assert "(has 5)" in proc.stdout, proc.stdout[-3000:]


def test_production_refuses_the_loki_placeholders():
    proc = preflight("production", *PRODUCTION_VAULT, "-e", "vault_keepalived_auth_password=s3cr3t-8",
                     "-e", "vault_loki_push_password=change-me-push-password", "-e", "vault_loki_query_password=a-real-query-secret")
    assert proc.returncode != 0
    assert "neither the placeholder of vault.yml.example in production" in proc.stdout, proc.stdout[-3000:]


def test_production_without_its_vault_fails_preflight(tmp_path):
    # A copy without vault.yml: the repository may hold production's (tests/test_vault.py).
    inv = tmp_path / "production"
    shutil.copytree(ROOT / "inventories" / "production", inv, ignore=shutil.ignore_patterns("vault.yml"))
    proc = preflight(str(inv))
    assert proc.returncode != 0
    assert "Grafana admin password is not set for mon1.production.example.invalid" in proc.stdout, proc.stdout[-3000:]
    assert f"{inv}/group_vars/monitoring/vault.yml" in proc.stdout


@pytest.mark.parametrize("password", ["admin", "change-me"])
def test_production_with_a_well_known_grafana_password_fails_preflight(password):
    proc = preflight("production", "-e", f"vault_grafana_admin_password={password}")
    assert proc.returncode != 0
    assert "Grafana admin password is a well-known default" in proc.stdout, proc.stdout[-3000:]


def test_staging_may_keep_a_simple_grafana_password_and_production_a_real_one_passes():
    assert preflight("staging", "-e", "vault_grafana_admin_password=admin", *LOKI_VAULT).returncode == 0
    proc = preflight("production", "-e", "vault_grafana_admin_password=a-real-secret-0123", *LOKI_VAULT,
                     "-e", "vault_keepalived_auth_password=s3cr3t-8")
    assert proc.returncode == 0, proc.stdout[-3000:]


@pytest.mark.parametrize(("variables", "host", "words"), [
    ({"nginx_exporter_port": 9100}, "lb1", ["9100 (node_exporter, nginx exporter)"]),
    ({"app_spare_port": 8001}, "app1", ["8001 (app instance 8001, app pre-check)"]),
    ({"prometheus_port": 3000}, "mon1", ["3000 (prometheus, grafana)"]),
    ({"nginx_tls_port": 80}, "lb1", ["80 (nginx http, nginx https)"]),
])
def test_ports_that_collide_on_a_host_fail_preflight(variables, host, words):
    proc = preflight("staging", "-e", "vault_grafana_admin_password=x", "-e", json.dumps(variables))
    assert proc.returncode != 0
    assert f"On {host}.staging.example.invalid, more than one service would listen on the same port" in proc.stdout
    for word in words:
        assert word in proc.stdout, proc.stdout[-3000:]


def test_no_app_instance_fails_preflight():
    proc = preflight("staging", "-e", "vault_grafana_admin_password=x", "-e", "app_instances=0")
    assert proc.returncode != 0
    assert "app_instances must be at least 1 on app1.staging.example.invalid" in proc.stdout, proc.stdout[-3000:]


LAB_TESTS = sorted((ROOT / "molecule").glob("*/tests/*.py"))


def hard_coded_defaults(path: Path, root: Path = ROOT) -> list[str]:
    """Where a lab test writes a role's default message or port instead of reading the inventory.

    Ports count as numbers (not slice bounds nor negated, e.g. out[-3000:]) and inside strings
    (":8000", "default(9090)"); a line may say why a number is not the role's with "# not-a-default".
    """
    defaults = role_defaults()
    ports = {v for k, v in defaults.items() if k.endswith("_port") and isinstance(v, int)}
    words = [str(defaults["app_message"])]
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.Slice)
               for n in ast.walk(node)}
    skipped |= {id(node.operand) for node in ast.walk(tree) if isinstance(node, ast.UnaryOp)}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or id(node) in skipped or "# not-a-default" in lines[node.lineno - 1]:
            continue
        if isinstance(node.value, int) and not isinstance(node.value, bool) and node.value in ports:
            found.append(f"{path.relative_to(root)}:{node.lineno}: {node.value}")
        elif isinstance(node.value, str):
            hits = [w for w in words if w in node.value]
            hits += [str(p) for p in ports if re.search(rf"(:|default\(){p}\b", node.value)]
            found += [f"{path.relative_to(root)}:{node.lineno}: {hit!r}" for hit in hits]
    return found


@pytest.mark.parametrize("path", LAB_TESTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_lab_tests_read_the_message_and_ports_from_the_inventory(path):
    assert hard_coded_defaults(path) == []


def test_the_hard_coded_default_check_finds_them(tmp_path):
    sample = ROOT / "molecule" / "default" / "tests" / "conftest.py"
    bad = tmp_path / "test_bad.py"
    bad.write_text(sample.read_text() + '\nPORT = 9090\nURL = "http://lb:8000/"\nMSG = "Hello, World!"\n'
                   'TAIL = "x"[-3000:]\nEXPR = "{{ grafana_port | default(3000) }}"\n')
    found = hard_coded_defaults(bad, tmp_path)
    assert [f.split(": ", 1)[1] for f in found] == ["9090", "'8000'", "'Hello, World!'", "'3000'"], found


PRODUCTION_VAULT = ["-e", "vault_grafana_admin_password=a-real-secret-0123"]


def test_production_without_the_vrrp_password_fails_preflight():
    proc = preflight("production", *PRODUCTION_VAULT)
    assert proc.returncode != 0
    assert "lb1.production.example.invalid shares a floating address with lb2.production.example.invalid" in proc.stdout
    assert "keepalived_auth_password must be 1-8 characters (is 0)" in proc.stdout, proc.stdout[-3000:]
    assert "inventories/production/group_vars/lb/vault.yml" in proc.stdout


@pytest.mark.parametrize(("variables", "words"), [
    ({"keepalived_virtual_address": ""}, ['keepalived_virtual_address must name it (is "")']),
    ({"vault_keepalived_auth_password": "too-long-for-vrrp"}, ["keepalived_auth_password must be 1-8 characters (is 17)"]),
    ({"vault_keepalived_auth_password": "changeme"}, ["and not changeme (the placeholder of vault.yml.example) in production"]),
])
def test_a_pair_of_load_balancers_without_a_usable_floating_address_fails_preflight(variables, words):
    proc = preflight("production", *PRODUCTION_VAULT, "-e", "vault_keepalived_auth_password=s3cr3t-8", "-e", json.dumps(variables))
    assert proc.returncode != 0
    for word in words:
        assert word in proc.stdout, proc.stdout[-3000:]


def test_one_load_balancer_needs_no_floating_address():
    proc = preflight("staging", "-e", "vault_grafana_admin_password=x", *LOKI_VAULT)
    assert proc.returncode == 0, proc.stdout[-3000:]
    check = re.search(r"TASK \[Check the load balancers' floating address and VRRP password\][^\n]*\n(.*?)\n\n", proc.stdout, re.S)
    assert check and "skipping: [lb1.staging.example.invalid]" in check.group(1), proc.stdout[-3000:]


@pytest.mark.parametrize(("variables", "words"), [
    ({"keepalived_virtual_address": "10.0.0.300"}, ["keepalived_virtual_address must be the floating IPv4 address"]),
    ({"keepalived_virtual_address": "192.0.2.11"}, ["not the address of a peer"]),
    ({"keepalived_router_id": 256}, ["keepalived_router_id must lie within 1-255 (is 256)"]),
    ({"keepalived_unicast": True, "keepalived_peers": ["192.0.2.11"]}, ["unicast adverts need at least one other peer"]),
    ({"keepalived_auth_password": "nine-char"}, ["keepalived_auth_password must be 1-8 characters (VRRPv2 PASS; is 9)"]),
    ({"keepalived_check_command": ["curl", "http://127.0.0.1/"]}, ["keepalived_check_command must start with an absolute path"]),
    ({"keepalived_check_command": ["/bin/sh", "-c", "exit 1"]}, ["no spaces, quotes or backslashes"]),
])
def test_keepalived_preflight_refuses_wrong_values(tmp_path, variables, words):
    good = {"keepalived_virtual_address": "192.0.2.10", "keepalived_address": "192.0.2.11",
            "keepalived_peers": ["192.0.2.11", "192.0.2.12"], "keepalived_auth_password": "s3cr3t-8"}
    proc = run_role(tmp_path, "keepalived", {**good, **variables}, "--check", "--tags", "keepalived_preflight")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    for word in words:
        assert word in out, out[-3000:]


PLAYS = sorted([ROOT / "site.yml", *(ROOT / "playbooks").rglob("*.yml")])


@pytest.mark.parametrize("path", PLAYS, ids=lambda p: str(p.relative_to(ROOT)))
def test_plays_hold_no_jinja_programs(path):
    """The fleet's facts are computed by the filters (playbooks/filter_plugins, tests/test_fleet.py):
    a play holds expressions, never {% for %} or {% set %} statements, nor a role's defaults read as a file."""
    text = path.read_text()
    assert "{%" not in text
    assert "defaults/main.yml" not in text and "lookup('ansible.builtin.file'" not in text


def test_every_default_port_is_written_once():
    """A port's default lives in its role's defaults: no other role and no play writes the number."""
    ports = {k: v for k, v in role_defaults().items() if k.endswith("_port") and isinstance(v, int)}
    owner = {k: next(r.name for r in ROLES if k.startswith(f"{r.name}_")) for k in ports}
    files = [p for p in (ROOT / "roles").glob("*/*/*") if p.is_file() and p.parts[-2] != "files"] + PLAYS
    for path in files:
        text = path.read_text()
        for name, value in ports.items():
            if ROOT / "roles" / owner[name] in path.parents:
                continue
            assert not re.search(rf"(?<![\d.:-]){value}(?![\d.])", text), f"{path.relative_to(ROOT)} repeats {name} ({value})"


def test_the_readme_is_a_front_door_and_its_links_resolve():
    """README.md stays short (what, two commands, what you get, layout, where to read on); the
    operator topics live in docs/, and every relative link of those pages points at a file."""
    readme = ROOT / "README.md"
    assert len(readme.read_text().splitlines()) <= 150
    pages = [readme, *sorted((ROOT / "docs").glob("*.md"))]
    assert {p.name for p in pages} >= {"releases.md", "lab.md", "monitoring.md", "security.md", "ci-cd.md",
                                       "testing.md", "performance.md"}
    for page in pages:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links to {target}, which is missing"
    linked = set(re.findall(r"\]\(docs/([^)#]+)", readme.read_text()))
    assert linked == {p.name for p in pages[1:]}, "every docs/ page is linked from README.md"


def test_a_message_of_two_lines_fails_the_app_preflight_naming_it(tmp_path):
    proc = run_role(tmp_path, "app", {"app_message": "one\ntwo"}, "--check", "--tags", "app_preflight")
    assert proc.returncode != 0
    assert "app_message must be one line" in proc.stdout, proc.stdout[-3000:]


# A port out of 1-65535 in each role that checks its ports (stack_port_problems): the role's
# preflight fails naming the variable and its value. Each case also gives what the role requires.
PORT_CASES = [
    ("node_exporter", {"node_exporter_port": 70000}, "node_exporter_port"),
    ("loki", {"loki_grpc_port": 0}, "loki_grpc_port"),
    ("loki_gateway", {"loki_gateway_port": 3100, "loki_gateway_upstream_port": 70000}, "loki_gateway_upstream_port"),
    ("grafana", {"grafana_port": 70000, "grafana_admin_password": "a-real-secret-0123"}, "grafana_port"),
    ("nginx", {"nginx_tls_port": 70000, "nginx_upstream_servers": ["192.0.2.21:8000"]}, "nginx_tls_port"),
    ("fluent_bit", {"fluent_bit_http_port": 70000, "fluent_bit_loki_host": "192.0.2.14", "fluent_bit_loki_port": 3100},
     "fluent_bit_http_port"),
    ("firewall", {"firewall_ssh_port": 70000}, "firewall_ssh_port"),
]


@pytest.mark.parametrize(("role", "variables", "name"), PORT_CASES, ids=[c[0] for c in PORT_CASES])
def test_a_port_out_of_range_fails_the_role_preflight_naming_it(tmp_path, role, variables, name):
    proc = run_role(tmp_path, role, variables, "--check", "--tags", f"{role}_preflight")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    value = variables[name]
    assert f"{name} must be a port within 1-65535, is {value}" in " ".join(out.split()), out[-3000:]


def test_the_molecule_verifiers_options_are_strings_or_flags():
    """Molecule hands each verifier option's value to shlex: a number (`durations: 25`) crashed
    every scenario's verify ("expected string or bytes-like object, got 'int'")."""
    for path in [ROOT / ".config" / "molecule" / "config.yml", *sorted((ROOT / "molecule").glob("*/molecule.yml"))]:
        options = ((yaml.safe_load(path.read_text()) or {}).get("verifier") or {}).get("options") or {}
        wrong = {k: v for k, v in options.items() if not isinstance(v, (str, bool))}
        assert not wrong, f"{path.relative_to(ROOT)}: quote these values: {wrong}"


def role_calls(path: Path) -> list[dict]:
    """The import_role/include_role arguments of every task of a playbook or task file, blocks included."""
    found, todo = [], list(yaml.safe_load(path.read_text()) or [])
    while todo:
        item = todo.pop(0)
        if not isinstance(item, dict):
            continue
        todo += [t for key in ("tasks", "pre_tasks", "post_tasks", "block", "rescue", "always") for t in item.get(key) or []]
        found += [item[a] for a in ("ansible.builtin.import_role", "ansible.builtin.include_role") if a in item]
    return found


@pytest.mark.parametrize("path", sorted([*(ROOT / "playbooks").glob("*.yml"), *(ROOT / "roles").glob("*/tasks/*.yml")]),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_a_role_entry_point_is_named_as_its_argument_spec_names_it(path):
    # Ansible looks the spec up by tasks_from as written: "stage.yml" would run stage's tasks unchecked.
    for call in role_calls(path):
        entry = str(call.get("tasks_from", "main"))
        specs = ROOT / "roles" / call["name"] / "meta" / "argument_specs.yml"
        names = set(load(specs)["argument_specs"]) if specs.is_file() else set()
        assert entry.removesuffix(".yml") not in names or entry in names, f"{call['name']}: tasks_from {entry}"
        # A playbook calls a role through an entry point that has its spec, but for preflight.yml's
        # checks (grafana password, alertmanager receivers, loki storage): they are the validation, and a
        # spec would template a value whose vault variable is missing before they could name the vault file.
        assert path.parent.name != "playbooks" or entry in names or path.name == "preflight.yml", f"{call['name']}: {entry}"


def test_the_rollback_playbook_refuses_a_wrong_value_before_any_task(tmp_path):
    # The playbook's own first play, as an operator runs it (here against this machine, --check): the
    # plan_rollback entry point's spec names the variable before the lock is asked for.
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(
        {"app": {"hosts": {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(tmp_path / "hosts.yml"), str(ROOT / "playbooks" / "rollback.yml"),
         "--check", "-e", "app_lock_wait=soon"],
        capture_output=True, text=True, env={**ENV, "ANSIBLE_NOCOLOR": "1"}, cwd=ROOT,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert re.search(r"TASK \[app : Validating arguments against arg spec 'plan_rollback'[^\n]*\n(?:(?!TASK \[).)*?fatal", out, re.S), out[-3000:]
    assert "app_lock_wait" in out and "float" in out, out[-3000:]
    assert re.search(r"localhost\s+: ok=0 ", out), out[-1000:]
