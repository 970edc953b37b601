"""Shared helpers of the lab tests: the inventory, addresses and an HTTP client.

Every scenario uses this one file (molecule/releases and molecule/apps link to it):
`from conftest import playbook, recap, instance_release, lb_url, ...`. Every message and
port comes from the lab inventory, else from the role's defaults/main.yml, never a literal
(tests/test_repo.py checks the tests for them).

Requests go only to the lab's own hosts (addresses the lab made on its bridge), in
bounded loops.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import shlex
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import testinfra
import testinfra.host
import yaml

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
INVENTORY = str(PROJECT / "inventories" / "lab")

# The plays' own filters: app_ports is the one definition of an app host's ports.
sys.path.insert(0, str(PROJECT / "playbooks" / "filter_plugins"))
import stack_filters  # noqa: E402

# The bounded load generator of the bench (bench/loadgen.py): only the lab's own addresses.
sys.path.insert(0, str(PROJECT / "bench"))
import loadgen  # noqa: E402


# The variables the tests read, templated by Ansible itself (testinfra's own inventory
# reader does not template, and the lab inventory computes addresses from LAB_NET).
# A role variable the inventory does not set is null here and its role's default below.
_ROLE_VARS = (
    "app_base_port", "app_instances", "app_message", "nginx_listen_port", "nginx_tls_port", "nginx_tls_certificate",
    "node_exporter_port", "nginx_exporter_port", "prometheus_port", "grafana_port", "loki_http_port",
    "fluent_bit_forward_port", "grafana_admin_user", "grafana_admin_password", "firewall_ssh_port",
    "nginx_client_header_timeout", "nginx_log_field_max_length", "loki_gateway_query_username",
    "loki_gateway_push_username", "grafana_tls_certificate", "app_watchdog_sec",
    "fluent_bit_http_port", "alertmanager_port", "alertmanager_smtp_smarthost", "local_mail_mailboxes",
    "blackbox_exporter_port", "blackbox_exporter_listen_address", "blackbox_exporter_app_module",
    "prometheus_alert_instance_down_for", "nginx_maintenance_message", "app_pythons",
)
_VARS = (
    "{{ {'groups': group_names, 'internal_address': internal_address, 'ansible_host': ansible_host,"
    " 'deploy_env': deploy_env,"
    " 'ansible_user': ansible_user | default('root'),"
    " 'key': ansible_ssh_private_key_file | default(''),"
    " 'grafana_enabled': grafana_enabled | default(true) | bool, 'loki_enabled': loki_enabled | default(true) | bool,"
    " 'fluent_bit_enabled': fluent_bit_enabled | default(true) | bool,"
    " 'admin_networks': admin_networks | default([]),"
    " 'keepalived_virtual_address': keepalived_virtual_address | default(''),"
    " 'vault_loki_query_password': vault_loki_query_password | default(''),"
    " 'vault_loki_push_password': vault_loki_push_password | default(''),"
    + "".join(f" '{name}': {name} | default(none)," for name in _ROLE_VARS)
    + "} }}"
)


# The roles' defaults, as the roles use them: read by the plays' own filters (one reader).
role_defaults = stack_filters.role_defaults


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
            for var in _ROLE_VARS:
                if found[name][var] is None:
                    found[name][var] = role_defaults()[var]
    return found


def hosts(group: str) -> list[str]:
    return sorted(n for n, v in _all_vars().items() if group == "all" or group in v["groups"])


def hostvars(name: str) -> dict:
    return _all_vars()[name]


@functools.cache
def testinfra_host(name: str) -> testinfra.host.Host:
    """The lab host `name` as the tests reach it: over SSH as the inventory's user (deploy, as
    staging and production), each command through sudo, as Ansible's become runs them."""
    v = hostvars(name)
    return testinfra.get_host(
        f"ssh://{v['ansible_user']}@{v['ansible_host']}",
        sudo=v["ansible_user"] != "root",
        ssh_identity_file=v["key"] or None,
        ssh_extra_args="-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
    )


@functools.cache
def release(name: str) -> str:
    """The Debian release (codename) the lab host `name` runs: the lab mixes them (lab/hosts.py)."""
    # Read here, not testinfra's system_info: testinfra keeps that per address, and a rebuilt host
    # (test_upgrade.py) answers at the old one.
    return testinfra_host(name).check_output(". /etc/os-release && echo $VERSION_CODENAME")


def release_var(name: str, role: str, var: str):
    """A role's per-release setting for the lab host `name`: roles/ROLE/vars/main.yml's
    `_ROLE_releases[RELEASE][var]`, as the role reads it from the host's facts."""
    path = PROJECT / "roles" / role / "vars" / "main.yml"
    return yaml.safe_load(path.read_text())[f"_{role}_releases"][release(name)][var]


def mail_unit(name: str) -> str:
    """The unit of Postfix's default instance on the monitoring host `name` (roles/local_mail)."""
    return str(release_var(name, "local_mail", "service"))


def address(name: str) -> str:
    return str(hostvars(name)["internal_address"])


def app_ports(name: str) -> list[int]:
    """The instance ports of the app host `name`, by the plays' own filter (playbooks/filter_plugins)."""
    v = hostvars(name)
    return stack_filters.app_ports(v["app_base_port"], v["app_instances"])


def app_instances() -> list[tuple[str, int]]:
    return [(h, p) for h in hosts("app") for p in app_ports(h)]


def message(name: str) -> str:
    """What GET / answers on the app host `name` (the inventory's app_message)."""
    return str(hostvars(name)["app_message"])


def lb_message() -> str:
    """What GET / answers through a load balancer: the one message of every app host."""
    messages = {message(h) for h in hosts("app")}
    assert len(messages) == 1, f"the app hosts answer different messages: {messages}"
    return messages.pop()


def lb_port(name: str) -> int:
    return int(hostvars(name)["nginx_listen_port"])


def port(name: str, var: str) -> int:
    """A port from the inventory, else its role's default."""
    return int(hostvars(name)[var])


def lb_url(name: str, path: str = "/", at: str = "") -> str:
    """The load balancer's URL as clients use it: HTTPS when the inventory gives it a certificate;
    at the host's own address, or at `at`."""
    v = hostvars(name)
    if v["nginx_tls_certificate"]:
        return f"https://{at or address(name)}:{int(v['nginx_tls_port'])}{path}"
    return f"http://{at or address(name)}:{lb_port(name)}{path}"


def floating_address() -> str:
    """The load balancers' floating address (roles/keepalived), empty when the inventory gives none."""
    return str(hostvars(hosts("lb")[0])["keepalived_virtual_address"])


def client_url(path: str = "/") -> str:
    """The URL clients use: the floating address when the load balancers share one, else the first one's own."""
    return lb_url(hosts("lb")[0], path, at=floating_address())


# The lab's certificates are self-signed: plain requests skip verification, and the TLS
# tests verify against each host's own certificate.
_LAB_TLS = ssl._create_unverified_context()  # noqa: S323 (lab hosts only)


@dataclass
class Answer:
    status: int
    body: str
    headers: dict[str, str]


def get(url: str, headers: dict[str, str] | None = None, timeout: float = 5, method: str = "GET",
        data: bytes | None = None) -> Answer:
    """An HTTP request to a lab address (GET unless `method` says otherwise), its answer whatever the status."""
    req = urllib.request.Request(url, headers=headers or {}, method=method, data=data)
    context = _LAB_TLS if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:  # noqa: S310 (lab addresses only)
            return Answer(resp.status, resp.read().decode(), dict(resp.headers))
    except urllib.error.HTTPError as err:
        return Answer(err.code, err.read().decode(errors="replace"), dict(err.headers))


_GET_ON_HOST = """
import json, sys, urllib.error, urllib.request
url, timeout, method, headers, body = sys.argv[1], float(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4]), sys.argv[5]
request = urllib.request.Request(url, data=body.encode() or None, headers=headers, method=method)
try:
    with urllib.request.urlopen(request, timeout=timeout) as r:
        print(json.dumps([r.status, r.read().decode(), dict(r.headers)]))
except urllib.error.HTTPError as e:
    print(json.dumps([e.code, e.read().decode(errors="replace"), dict(e.headers or {})]))
"""


def get_from(name: str, url: str, timeout: float = 5, method: str = "GET", headers: dict[str, str] | None = None,
             body: str = "") -> Answer:
    """A request (GET unless `method` says otherwise) from the lab host `name`, for ports the firewall
    opens to some hosts only."""
    args = [url, str(timeout), method, json.dumps(headers or {}), body]
    result = testinfra_host(name).run(f"python3 -c {shlex.quote(_GET_ON_HOST)} " + " ".join(map(shlex.quote, args)))
    if result.rc != 0:
        return Answer(0, result.stderr.strip()[-500:], {})
    status, body, headers = json.loads(result.stdout)
    return Answer(status, body, headers)


def blackbox_probe(target: str, name: str = "") -> dict[str, float]:
    """The blackbox exporter's probe of `target` with its app module (status 200 and the app's
    message), asked on its monitoring host (it listens there only): the probe_* values."""
    name = name or hosts("monitoring")[0]
    v = hostvars(name)
    url = (f"http://{v['blackbox_exporter_listen_address']}:{int(v['blackbox_exporter_port'])}/probe?"
           + urllib.parse.urlencode({"module": v["blackbox_exporter_app_module"], "target": target}))
    answer = get_from(name, url, timeout=15)
    assert answer.status == 200, answer.body
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^(probe_\w+) (\S+)$", answer.body, re.M)}


def basic_auth(user: str, password: str) -> dict[str, str]:
    """The Authorization header of HTTP Basic authentication."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")}


def loki_url(path: str = "", name: str = "") -> str:
    """Loki as the hosts and admin_networks reach it: its gateway on the (first) monitoring host."""
    name = name or hosts("monitoring")[0]
    return f"http://{address(name)}:{port(name, 'loki_http_port')}{path}"


def loki_query_auth(name: str = "") -> dict[str, str]:
    """The gateway's query credentials (the inventory's user, the vault's password)."""
    v = hostvars(name or hosts("monitoring")[0])
    return basic_auth(v["loki_gateway_query_username"], v["vault_loki_query_password"])


def loki_push_auth(name: str = "") -> dict[str, str]:
    """The gateway's push credentials, as Fluent Bit sends them."""
    v = hostvars(name or hosts("monitoring")[0])
    return basic_auth(v["loki_gateway_push_username"], v["vault_loki_push_password"])


def deploy_markers(expr: str = "") -> list[dict]:
    """The deploy and rollback markers in Loki of the last three hours, oldest first (each the JSON line
    deploy.yml or rollback.yml wrote into the first monitoring host's journal, shipped by its Fluent
    Bit), read through the gateway with the query credentials; `expr` another LogQL query of them
    (a dashboard's annotation)."""
    env = hostvars(hosts("monitoring")[0])["deploy_env"]
    query = urllib.parse.urlencode({"query": expr or f'{{service="deploy", env="{env}"}}', "limit": 1000,
                                    "start": str(time.time_ns() - 3 * 3600 * 10**9), "direction": "forward"})
    answer = get(loki_url(f"/loki/api/v1/query_range?{query}"), headers=loki_query_auth())
    assert answer.status == 200, answer.body[:500]
    values = [v for stream in json.loads(answer.body)["data"]["result"] for v in stream["values"]]
    return [json.loads(line) for _, line in sorted(values, key=lambda v: int(v[0]))]


def instance_health(name: str, port: int) -> dict | None:
    """An app instance's /health answer (status, version, release), asked from a load balancer
    (the firewall opens app ports to lb and monitoring hosts only); None when it does not answer 200."""
    answer = get_from(hosts("lb")[0], f"http://{address(name)}:{port}/health")
    return json.loads(answer.body) if answer.status == 200 else None


def instance_release(name: str, port: int, path: str = "/health") -> str:
    """The release an app instance serves, as the runner names it on every answer (X-Release), or
    "<no answer>" when its health path does not answer 200."""
    answer = get_from(hosts("lb")[0], f"http://{address(name)}:{port}{path}")
    return answer.headers.get("X-Release", "<no X-Release>") if answer.status == 200 else "<no answer>"


def playbook(*args: str, timeout: float = 1500) -> subprocess.CompletedProcess[str]:
    """ansible-playbook against the lab inventory, from the project folder. A run still going
    after `timeout` seconds is killed with its workers (its own process group) and fails the
    test with what it printed: no run hangs a test."""
    env = {**os.environ, "ANSIBLE_CONFIG": str(PROJECT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_FORCE_COLOR": "0", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    cmd = ["ansible-playbook", "-i", INVENTORY, *args]
    proc = subprocess.Popen(cmd, cwd=PROJECT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{shlex.join(cmd)} still ran after {timeout} s and was killed:\n{out[-3000:]}{err[-2000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def recap(output: str) -> dict[str, dict[str, int]]:
    """The PLAY RECAP of a playbook's output: host -> {ok, changed, failed, ...}."""
    found = {}
    for name, counts in re.findall(r"^(\S+)\s+: (ok=.*)$", output, re.M):
        found[name] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counts)}
    return found


def journal(host, unit: str, lines: int = 30) -> str:
    return host.run(f"journalctl -u {unit} -n {lines} --no-pager").stdout


def exposure(host, unit: str) -> tuple[float, str]:
    """`systemd-analyze security`'s overall exposure of a unit on a lab host (0 best, 10 worst), and its report."""
    out = host.check_output(f"systemd-analyze security --no-pager {unit}")
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out)
    assert found, out
    return float(found.group(1)), out


@pytest.fixture(scope="session")
def infra():
    """testinfra host for an inventory name."""
    return testinfra_host


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "disruptive(order): changes the lab (faults, other settings) and puts it back; runs after every other test, by order",
    )


def pytest_collection_modifyitems(items):
    """Tests marked disruptive run last, in the order their marker gives (stable otherwise)."""
    def rank(item):
        marker = item.get_closest_marker("disruptive")
        return (1, marker.args[0] if marker.args else 0) if marker else (0, 0)

    items.sort(key=rank)


# The lab tests' steady load through the load balancer (its floating address, when it has
# one): LOAD_WORKERS kept-alive connections, each starting a request every LOAD_INTERVAL
# seconds at most (about 190 requests/s on an idle lab, a request every 5 ms). Paced, not back
# to back: unpaced, the load took both of the machine's cores from the playbook it was there to
# watch (on an idle lab a rollback took 19 s under it, 12 s under 4 x 10 ms, 8-10 s under this);
# three labs side by side had it take most of the machine (docs/testing.md).
LOAD_WORKERS = 4
LOAD_INTERVAL = 0.02


def steady_load(max_seconds: float = 900, max_requests: int = 2_000_000) -> loadgen.Load:
    return loadgen.Load(client_url(), workers=LOAD_WORKERS, interval=LOAD_INTERVAL,
                        max_seconds=max_seconds, max_requests=max_requests)


# Deploys under load (the releases and apps scenarios): the steady load while a playbook
# runs, and what no request may do.
def under_load(*args: str) -> tuple[subprocess.CompletedProcess[str], loadgen.Result]:
    load = steady_load().start()
    time.sleep(1)
    try:
        proc = playbook(*args)
    finally:
        time.sleep(1)
        result = load.stop()
    return proc, result


def assert_ok(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]


def assert_no_failed_request(load: loadgen.Result) -> None:
    assert load.requests > 100, load.summary()
    assert load.failures == [], load.summary()


def served_by(infra, backends: set[str], timeout: float = 60) -> set[str]:
    """Send marked requests through the load balancer until every backend in `backends`
    served one (nginx re-admits a failed backend after its fail_timeout); what served."""
    marker = f"served-by-{uuid.uuid4().hex}"
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while not backends <= seen and time.monotonic() < deadline:
        for _ in range(20):
            get(client_url(), headers={"User-Agent": marker})
        log = "".join(infra(lb).check_output(f"grep -F {marker} /var/log/nginx/access.log || true") for lb in hosts("lb"))
        seen |= {json.loads(line)["upstream_addr"].split(", ")[-1] for line in log.splitlines() if line}
        time.sleep(1)
    return seen
