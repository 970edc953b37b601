"""The internal roles (vendor_package, debian_packages, systemd_service) and the roles that import them.

An internal role has no tasks/main.yml: each of its task files is an entry point, typed by its
meta/argument_specs.yml, that other roles import with their own values. These checks need no
lab: every entry point has a spec, every import passes exactly the options of its entry
point (and vendor_package's dict exactly its keys), and a wrong install setting is refused
naming the calling role's own variables.
"""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from tests.conftest import BIN, ENV, ROOT
from tests.conftest import load_yaml as load
from tests.test_repo import run_role

INTERNAL = sorted(p for p in (ROOT / "roles").iterdir()
                  if (p / "meta" / "argument_specs.yml").is_file() and not (p / "tasks" / "main.yml").is_file())
VENDOR_ROLES = ["grafana", "loki", "fluent_bit"]


def specs(role: str) -> dict:
    return load(ROOT / "roles" / role / "meta" / "argument_specs.yml")["argument_specs"]


def tasks_of(path) -> list[dict]:
    """Every task of a task file, blocks included, and of the role's task files it includes."""
    found = []
    for task in yaml.safe_load(path.read_text()) or []:
        found.append(task)
        for key in ("block", "rescue", "always"):
            found += task.get(key, [])
        included = task.get("ansible.builtin.include_tasks")
        if included:
            found += tasks_of(path.parent / (included["file"] if isinstance(included, dict) else included))
    return found


def imports() -> list[tuple[str, str, dict]]:
    """(calling role, task file, task) of every import or include of an internal role."""
    names = {p.name for p in INTERNAL}
    found = []
    for path in sorted((ROOT / "roles").glob("*/tasks/*.yml")):
        for task in tasks_of(path):
            for action in ("ansible.builtin.import_role", "ansible.builtin.include_role"):
                if task.get(action, {}).get("name") in names:
                    found.append((path.parts[-3], path.name, task))
    return found


def test_the_internal_roles_exist():
    assert {p.name for p in INTERNAL} >= {"vendor_package", "debian_packages", "systemd_service"}


# Every role that runs a service, and the units whose systemd side goes through systemd_service's run.
SERVICE_ROLES = ["alertmanager", "blackbox_exporter", "fluent_bit", "grafana", "keepalived", "local_mail", "loki", "loki_gateway",
                 "nginx", "node_exporter", "prometheus"]


def systemd_calls(role: str) -> list[tuple[str, dict]]:
    return [(a["tasks_from"], t) for caller, _, t in imports() if caller == role
            for a in [t.get("ansible.builtin.import_role") or t.get("ansible.builtin.include_role")]
            if a["name"] == "systemd_service"]


@pytest.mark.parametrize("role", SERVICE_ROLES)
def test_service_roles_run_their_services_through_systemd_service(role):
    """The sandbox, start and wait of each service: one import of systemd_service's run, and no
    start, drop-in or wait of the role's own (stopping and disabling another unit is no start)."""
    assert [entry for entry, _ in systemd_calls(role)] and all(e == "run" for e, _ in systemd_calls(role))
    for path in (ROOT / "roles" / role / "tasks").glob("*.yml"):
        for task in tasks_of(path):
            module = task.get("ansible.builtin.systemd_service") or {}
            assert not (module.get("state") == "started" or module.get("enabled", False) is not False), \
                f"{path.name}: {task['name']}"
            assert "ansible.builtin.meta" not in task, f"{path.name}: {task['name']} (handlers are flushed by systemd_service)"


def test_app_sandboxes_its_units_through_systemd_service():
    assert sorted(t["vars"]["systemd_service_unit"] for e, t in systemd_calls("app") if e == "sandbox") == [
        "{{ _app_candidate_unit }}@", "{{ _app_unit_name }}@"]


def test_one_sandbox_template():
    found = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "roles").glob("*/templates/*sandbox*"))
    assert found == ["roles/systemd_service/templates/sandbox.conf.j2"]


@pytest.mark.parametrize("role", INTERNAL, ids=lambda p: p.name)
def test_every_entry_point_has_an_argument_spec(role):
    entries = specs(role.name)
    assert set(entries) == {p.stem for p in (role / "tasks").glob("*.yml")}
    for entry in entries.values():
        assert entry["short_description"].startswith("Internal")
        for name, option in entry["options"].items():
            assert name.startswith(f"{role.name}_"), name
            assert option.get("description") and option.get("required") is True, name


@pytest.mark.parametrize(("caller", "file", "task"), imports(), ids=lambda v: v if isinstance(v, str) else None)
def test_imports_pass_exactly_the_entry_points_options(caller, file, task):
    action = task.get("ansible.builtin.import_role") or task["ansible.builtin.include_role"]
    options = specs(action["name"])[action["tasks_from"]]["options"]
    assert set(task.get("vars", {})) == set(options), f"{caller}/tasks/{file}: {task['name']}"
    for name, option in options.items():
        if option.get("type") == "dict":
            # "{{ _<caller>_vendor_package }}": the dict in the calling role's vars/main.yml
            (ref,) = re.fullmatch(r"\{\{ (\w+) \}\}", task["vars"][name]).groups()
            value = load(ROOT / "roles" / caller / "vars" / "main.yml")[ref]
            assert set(value) == set(option["options"]), f"{caller}: {ref}"


@pytest.mark.parametrize("role", VENDOR_ROLES)
def test_vendor_roles_install_through_vendor_package_only(role):
    (task,) = yaml.safe_load((ROOT / "roles" / role / "tasks" / "install.yml").read_text())
    assert task["ansible.builtin.import_role"] == {"name": "vendor_package", "tasks_from": "install"}
    assert not list((ROOT / "roles" / role / "templates").glob("*.sources.j2")), "the source file is vendor_package's"


@pytest.mark.parametrize(("variables", "words"), [
    ({"install_method": "deb"}, ["_install_method must be auto, repo or deb (is deb)", "_deb_files"]),
    ({"deb_files": ["/nonexistent/package.deb"]}, ["_deb_files", "/nonexistent/package.deb"]),
    ({"install_method": "repo", "version": "latest"}, ["_version", "(is latest)"]),
])
@pytest.mark.parametrize("role", VENDOR_ROLES)
def test_wrong_install_settings_fail_preflight_naming_the_roles_variables(tmp_path, role, variables, words):
    given = {f"{role}_{k}": v for k, v in variables.items()}
    # The settings each role needs besides, so only the install method's check can fail.
    given.update({"fluent_bit": {"fluent_bit_loki_host": "192.0.2.14", "fluent_bit_loki_port": 3100},
                  "grafana": {"grafana_admin_password": "a-test-password"}}.get(role, {}))
    proc = run_role(tmp_path, role, given, "--check", "--tags", f"{role}_preflight")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert re.search(r"TASK \[vendor_package : Check the install method\][^\n]*\n(?:(?!TASK \[).)*?fatal", out, re.S), out[-3000:]
    for word in words:
        assert (f"{role}{word}" if word.startswith("_") else word) in out, out[-3000:]


# Roles that install the distribution's packages through debian_packages.
DEBIAN_PACKAGES_ROLES = ["app", "firewall", "keepalived", "nginx", "node_exporter", "prometheus"]


@pytest.mark.parametrize("role", DEBIAN_PACKAGES_ROLES)
def test_distribution_packages_install_through_debian_packages_only(role):
    tasks = tasks_of(ROOT / "roles" / role / "tasks" / "install.yml")
    assert not [t["name"] for t in tasks if "ansible.builtin.apt" in t], f"{role}: apt outside debian_packages"
    assert [t for t in tasks if t.get("ansible.builtin.import_role", {}).get("name") == "debian_packages"]


def test_debian_packages_asks_apt_only_for_what_dpkg_lacks(tmp_path):
    """The lists computed from canned dpkg-query lines, on the controller only (an assert, no module runs)."""
    lines = ["ii |bash|5.2.15-2+b8", "hi |loki|3.5.1", "rc |nginx|1.22.1-9", "iiR|curl|7.88.1-10", "un |keepalived|"]
    names = ["bash", "loki=3.5.1", "nginx", "curl", "keepalived", "bash=5.2.15-2+b8", "bash=5.1", "bash=5.*",
             "bash:amd64", "absent"]
    # Installed (ii, hi) at any version, or at the pinned one, is left alone; everything else goes to apt.
    expected = {"missing": ["nginx", "curl", "keepalived", "bash=5.1", "bash=5.*", "bash:amd64", "absent"]}
    play = [{"name": "Compute what debian_packages would install", "hosts": "localhost", "connection": "local",
             "gather_facts": False, "vars_files": [str(ROOT / "roles" / "debian_packages" / "vars" / "main.yml")],
             "vars": {"debian_packages_names": names, "__debian_packages_known": lines,
                      "expected": expected},
             "tasks": [{"name": "Check the lists", "ansible.builtin.assert": {
                 "that": ["_debian_packages_missing == expected.missing"],
                 "fail_msg": "missing {{ _debian_packages_missing }}"}}]}]
    path = tmp_path / "missing.yml"
    path.write_text(yaml.safe_dump(play))
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", str(path)],
                          capture_output=True, text=True, env={**ENV, "ANSIBLE_NOCOLOR": "1"}, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_vendor_package_holds_only_a_package_dpkg_does_not_show_held(tmp_path):
    """_vendor_package_held from canned dpkg-query lines: the hold task runs only where it is False."""
    cases = {"held": (["hi loki=3.5.1", "ii fluent-bit=4.0.3"], True),
             "installed, not held": (["ii loki=3.5.1"], False),
             "another package held": (["hi loki-canary=3.5.1", "ii loki=3.5.1"], False),
             "not installed": (["un loki="], False)}
    tasks = [{"name": f"Check {case}", "ansible.builtin.assert": {
        "that": [f"_vendor_package_held == {expected}"], "fail_msg": f"{case}: {{{{ _vendor_package_held }}}}"},
        "vars": {"__vendor_package_installed": {"stdout_lines": lines}}} for case, (lines, expected) in cases.items()]
    play = [{"name": "Compute whether vendor_package holds the package", "hosts": "localhost", "connection": "local",
             "gather_facts": False, "vars_files": [str(ROOT / "roles" / "vendor_package" / "vars" / "main.yml")],
             "vars": {"vendor_package_params": {"name": "loki"}}, "tasks": tasks}]
    path = tmp_path / "held.yml"
    path.write_text(yaml.safe_dump(play))
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", str(path)],
                          capture_output=True, text=True, env={**ENV, "ANSIBLE_NOCOLOR": "1"}, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
