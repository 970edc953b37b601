"""The lab's hosts for LAB_APP_HOSTS=N: lab/hosts.py (the one list), the lab inventory's plugin
that reads it, and lab/lab that boots it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.parse

import pytest

from tests.conftest import BIN, ENV, ROOT

sys.path.insert(0, str(ROOT / "lab"))
import hosts as lab  # noqa: E402


def test_the_default_lab_is_two_load_balancers_two_app_hosts_and_one_monitoring_host():
    assert lab.hosts(2) == [("lb1", "lb", 11), ("app1", "app", 12), ("app2", "app", 13), ("mon1", "monitoring", 14),
                            ("lb2", "lb", 15)]


def test_more_app_hosts_come_after_and_keep_every_other_address():
    found = lab.hosts(6)
    assert found[:5] == lab.hosts(2)
    assert found[5:] == [(f"app{n}", "app", 13 + n) for n in range(3, 7)]
    assert [name for name, _, _ in lab.hosts(1)] == ["lb1", "app1", "mon1", "lb2"]


@pytest.mark.parametrize(("raw", "count"), [("", 2), ("4", 4), ("1", 1)])
def test_lab_app_hosts_is_read_from_the_environment(raw, count):
    assert lab.app_hosts({"LAB_APP_HOSTS": raw}) == count
    assert lab.app_hosts({}) == 2


@pytest.mark.parametrize("raw", ["0", "x", "-1", "41"])
def test_a_wrong_count_is_refused_naming_it(raw):
    with pytest.raises(ValueError, match="LAB_APP_HOSTS must be a number of app hosts from 1 to 40"):
        lab.app_hosts({"LAB_APP_HOSTS": raw})


def inventory(count: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "ansible-inventory"), "-i", str(ROOT / "inventories" / "lab"), "--list"],
                          capture_output=True, text=True, env={**ENV, "LAB_APP_HOSTS": count}, cwd=ROOT)


@pytest.mark.parametrize("count", ["2", "6"])
def test_the_lab_inventory_follows_lab_app_hosts(count):
    proc = inventory(count)
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(proc.stdout)
    assert listed["app"]["hosts"] == [f"app{n}" for n in range(1, int(count) + 1)]
    assert listed["lb"]["hosts"] == ["lb1", "lb2"] and listed["monitoring"]["hosts"] == ["mon1"]
    addresses = {h: v["ansible_host"] for h, v in listed["_meta"]["hostvars"].items()}
    assert addresses == {name: "{{ lab_net }}.%d" % octet for name, _, octet in lab.hosts(int(count))}
    # Group and host variables still apply (host_vars/lb1.yml, group_vars/all).
    assert listed["_meta"]["hostvars"]["lb1"]["keepalived_priority"] > listed["_meta"]["hostvars"]["lb2"]["keepalived_priority"]


def test_lab_lab_boots_the_same_list():
    out = subprocess.run(["bash", "-c", f'source <(sed -n "/^LAB_HOSTS=/p" {ROOT}/lab/lab | sed "s|\\$(dirname \\"\\$0\\")|{ROOT}/lab|"); echo "$LAB_HOSTS"'],
                         capture_output=True, text=True, env={**ENV, "LAB_APP_HOSTS": "4"}, check=True).stdout.split()
    assert out == [name for name, _, _ in lab.hosts(4)]


def test_a_wrong_count_fails_the_inventory():
    proc = inventory("x")
    assert "LAB_APP_HOSTS must be a number of app hosts" in proc.stderr, proc.stderr[-2000:]


def test_the_default_lab_mixes_debian_13_and_12_as_a_fleet_in_its_upgrade():
    names = [name for name, _, _ in lab.hosts(4)]
    assert lab.suites(names, {}) == {"lb1": "trixie", "app1": "trixie", "app2": "bookworm", "mon1": "trixie",
                                     "lb2": "bookworm", "app3": "trixie", "app4": "bookworm"}


def test_lab_suite_sets_every_host_and_lab_suites_single_ones():
    names = [name for name, _, _ in lab.hosts(2)]
    assert set(lab.suites(names, {"LAB_SUITE": "bookworm"}).values()) == {"bookworm"}
    found = lab.suites(names, {"LAB_SUITE": "bookworm", "LAB_SUITES": "lb1=trixie  app2=trixie"})
    assert found == {"lb1": "trixie", "app1": "bookworm", "app2": "trixie", "mon1": "bookworm", "lb2": "bookworm"}


@pytest.mark.parametrize(("env", "message"), [
    ({"LAB_SUITE": "jessie"}, "LAB_SUITE: release 'jessie' is not one the lab makes"),
    ({"LAB_SUITES": "app9=trixie"}, "'app9=trixie' is not HOST=SUITE for a host of this lab"),
    ({"LAB_SUITES": "app1"}, "'app1' is not HOST=SUITE"),
    ({"LAB_SUITES": "app1=sid"}, "release 'sid' is not one the lab makes"),
])
def test_a_wrong_release_is_refused_naming_it(env, message):
    with pytest.raises(ValueError, match=message):
        lab.suites([name for name, _, _ in lab.hosts(2)], env)


def test_lab_lab_reads_each_hosts_release_from_the_one_list():
    out = subprocess.run([sys.executable, str(ROOT / "lab" / "hosts.py"), "--suites"], capture_output=True, text=True,
                         env={**ENV, "LAB_SUITES": "lb2=trixie"}, check=True).stdout.split()
    assert out == ["lb1=trixie", "app1=trixie", "app2=bookworm", "mon1=trixie", "lb2=trixie"]


def package_hosts() -> set[str]:
    """The host names of this machine's package sources, read now: the Debian archive the lab
    takes from the apt sources (lab/lab mirror) and the indexes in pip's own configuration."""
    mirror = subprocess.run([str(ROOT / "lab" / "lab"), "mirror"], capture_output=True, text=True, check=True).stdout
    pip = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    hosts = {urllib.parse.urlsplit(url).hostname for url in re.findall(r"[a-z+]+://[^\s'\"]+", mirror + pip)}
    return {h for h in hosts if h}


def test_the_lab_names_no_mirror_and_logs_in_as_deploy_with_sudo():
    script = (ROOT / "lab" / "lab").read_text()
    named = {h for h in package_hosts() if h in script}
    assert not named and "LAB_MIRROR" not in script, f"lab/lab names package hosts: {named}"
    assert "visudo -cqf" in script and "DEPLOY_USER=deploy" in script
    # The user Ansible reaches the hosts as, templated as Ansible does: deploy unless LAB_USER says otherwise.
    env = {k: v for k, v in ENV.items() if k != "LAB_USER"}
    shown = subprocess.run([str(BIN / "ansible"), "-i", str(ROOT / "inventories" / "lab"), "all", "-m", "ansible.builtin.debug",
                            "-a", "var=ansible_user"], capture_output=True, text=True, env=env, cwd=ROOT)
    users = re.findall(r"ansible_user: (\S+)", shown.stdout)  # ansible.cfg's yaml result format
    assert len(users) == len(lab.hosts(2)) and set(users) == {"deploy"}, shown.stdout + shown.stderr
