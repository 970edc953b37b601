"""Logging on the lab: Fluent Bit's inputs against the real hosts, and, where Loki and Fluent
Bit are deployed, lines from the load balancer and the app found in Loki.

Always (no vendor package needed): the Fluent Bit configuration each host would get is
rendered on the controller by tests/logging/render.yml (the play's own vars files), and
checked against the lab: every journald unit filter names a unit that exists and runs, every
tailed path exists, and real lines of each source parse with the configured parser.

Runtime (wherever the lab inventory deploys Loki and Fluent Bit: from ../shared/vendor's .deb
files, as on every CI run, or LAB_LOKI_DEBS and LAB_FLUENT_BIT_DEBS): a marked request
through the load balancer reaches Loki within 30 s as an Nginx line and an app line with the
expected labels; the original task's UDP JSON datagram and a Forward message sent on each host
reach Loki; access lines with long client fields arrive cut with a marker, never skipped; a minute of Loki downtime under marked traffic loses no line; a restart of Fluent
Bit repeats none; a broken Loki or Fluent Bit setting fails the play with the checker's own
message and the running service keeps its file and keeps working. Where the inventory deploys
neither (no .deb files) these skip with the reason; where it does, they never skip.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.parse
import uuid
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from conftest import (INVENTORY, PROJECT, address, app_ports, get, get_from, hosts, hostvars, journal, lb_port, lb_url,
                      loki_push_auth, loki_query_auth, loki_url, playbook, port)
from test_faults import main_pid

MONITORING = hosts("monitoring")
APP = hosts("app")
LBS = hosts("lb")
ALL = hosts("all")
NOT_DEPLOYED = (
    "the lab inventory deploys no {what} ({why}): its package comes only from its vendor's apt repository, which "
    "this machine cannot reach, and no .deb file was found in ../shared/vendor (LAB_VENDOR_DIR) nor given with "
    "LAB_LOKI_DEBS / LAB_FLUENT_BIT_DEBS"
)


@functools.cache
def rendered() -> dict[str, dict]:
    """host -> the Fluent Bit configuration the play gives it, rendered on the controller."""
    out = Path(tempfile.mkdtemp(prefix="webapp-logging-"))
    # with the project's ansible.cfg (the plays' filters), not the one molecule writes
    result = playbook(str(PROJECT / "tests" / "logging" / "render.yml"), "-e", f"logging_render_dir={out}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return {p.parent.name: yaml.safe_load(p.read_text()) for p in out.glob("*/fluent-bit.yaml")}


def inputs(name: str, plugin: str) -> list[dict]:
    return [i for i in rendered()[name]["pipeline"]["inputs"] if i["name"] == plugin]


def parser(name: str, parser_name: str) -> dict:
    return next(p for p in rendered()[name]["parsers"] if p["name"] == parser_name)


def python_regex(onigmo: str) -> str:
    """Fluent Bit's (Onigmo) named groups (?<name>...) as Python's (?P<name>...)."""
    return re.sub(r"\(\?<([A-Za-z_]\w*)>", r"(?P<\1>", onigmo)


def parse_line(spec: dict, line: str) -> dict:
    """The record Fluent Bit's parser `spec` makes of `line`; raises when it does not parse."""
    if spec["format"] == "json":
        record = json.loads(line)
        assert isinstance(record, dict), f"not a JSON object: {line!r}"
    else:
        found = re.search(python_regex(spec["regex"]), line)
        assert found, f"does not match the {spec['name']} regex: {line!r}"
        record = found.groupdict()
    if "time_key" in spec:
        datetime.strptime(str(record[spec["time_key"]]), spec["time_format"])
    return record


def tail_holds(host, name: str, path: str, text: str, timeout: float = 15) -> None:
    """Wait until the last 200 lines of the file `path` on `host` (the lab host `name`) hold
    `text`; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while host.run(f"tail -n 200 {shlex.quote(path)} | grep -qF -- {shlex.quote(text)}").rc != 0:
        assert time.monotonic() < deadline, f"{name}: no line with {text!r} in the last 200 of {path} after {timeout} s"
        time.sleep(0.2)


def running_units(host, pattern: str) -> set[str]:
    out = host.check_output(f"systemctl list-units --type=service --state=running --no-legend --plain '{pattern}'")
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def too_large_request(name: str) -> int:
    """A request whose announced body exceeds client_max_body_size: Nginx answers 413 and logs
    an [error] line. Returns the status."""
    tls = bool(hostvars(name)["nginx_tls_certificate"])  # port 80 only redirects when TLS is on
    target = (address(name), int(hostvars(name)["nginx_tls_port"]) if tls else lb_port(name))
    with socket.create_connection(target, timeout=5) as raw:
        conn = ssl._create_unverified_context().wrap_socket(raw) if tls else raw  # noqa: S323 (lab only)
        conn.sendall(b"POST / HTTP/1.1\r\nHost: lab\r\nContent-Length: 200000000\r\nConnection: close\r\n\r\n")
        head = conn.recv(256).decode(errors="replace")
    return int(head.split()[1])


# --- always: the configuration against the real lab --------------------------------------


@pytest.mark.parametrize("name", APP)
def test_journald_filters_name_units_that_run(infra, name):
    host = infra(name)
    units = [f.split("=", 1)[1] for i in inputs(name, "systemd") for f in i["systemd_filter"]]
    assert units, f"{name} ships no app unit's journal"
    for unit in units:
        assert host.service(unit).is_running, journal(host, unit)
    assert set(units) == {f"webapp@{p}.service" for p in app_ports(name)}


@pytest.mark.parametrize("name", APP)
def test_every_running_app_instance_is_shipped(infra, name):
    units = {f.split("=", 1)[1] for i in inputs(name, "systemd") for f in i["systemd_filter"]}
    assert running_units(infra(name), "webapp@*.service") <= units


@pytest.mark.parametrize("name", APP)
def test_app_journal_lines_parse_with_the_json_parser(infra, name):
    host = infra(name)
    for p in app_ports(name):
        assert get_from(name, f"http://{address(name)}:{p}/health").status == 200
    (source,) = inputs(name, "systemd")
    filt = next(f for f in rendered()[name]["pipeline"]["filters"] if f["name"] == "parser")
    matches = " ".join(source["systemd_filter"])
    out = host.check_output(f"journalctl --no-pager --output json --lines 100 {matches}")
    entries = [json.loads(line) for line in out.splitlines() if line.strip()]
    stdout = [e for e in entries if e.get("_TRANSPORT") == "stdout"]
    assert stdout, f"no stdout lines of {matches} in {name}'s journal"
    bad = []
    for entry in stdout:
        try:
            record = parse_line(parser(name, filt["parser"]), entry[filt["key_name"]])
            assert record.get("level") and "msg" in record, record
        except (AssertionError, ValueError, TypeError) as err:
            bad.append(f"{entry.get('_SYSTEMD_UNIT')}: {err}")
    assert not bad, "journal lines the parser does not take:\n" + "\n".join(bad[:20])


@pytest.mark.parametrize("name", LBS)
def test_tailed_paths_exist(infra, name):
    paths = [i["path"] for i in inputs(name, "tail")]
    assert paths, f"{name} tails nothing"
    for path in paths:
        assert infra(name).file(path).is_file, f"{name}: {path} does not exist"


@pytest.mark.parametrize("name", LBS)
def test_tailed_lines_parse_with_their_parser(infra, name):
    marker = f"tailcheck-{uuid.uuid4().hex}"
    assert get(lb_url(name), headers={"User-Agent": marker}).status == 200
    assert too_large_request(name) == 413
    for source in inputs(name, "tail"):
        spec = parser(name, source["parser"])
        # Nginx writes an access line once it has answered (the error line before it answers).
        tail_holds(infra(name), name, source["path"], marker if spec["format"] == "json" else "too large body")
        lines = infra(name).check_output(f"tail -n 200 {source['path']}").splitlines()
        assert lines, f"{name}: {source['path']} is empty"
        records, bad = [], []
        for line in lines:
            try:
                records.append(parse_line(spec, line))
            except (AssertionError, ValueError, KeyError) as err:
                bad.append(str(err))
        assert not bad, f"{name}: lines of {source['path']} that {spec['name']} does not parse:\n" + "\n".join(bad[:10])
        if spec["format"] == "json":
            assert any(r.get("http_user_agent") == marker for r in records), f"{name}: the marked request is not in {source['path']}"
        else:
            assert any(r.get("level") == "error" and "too large body" in r.get("message", "") for r in records), lines[-5:]


# --- runtime: Loki and Fluent Bit deployed --------------------------------------------------


@pytest.fixture(scope="module")
def deployed(infra) -> None:
    """Skip, with the reason, where the inventory deploys no Loki or no Fluent Bit; where it
    does, Loki must be installed on every monitoring host and Fluent Bit on every host."""
    for var, what, where in (("loki_enabled", "Loki", MONITORING), ("fluent_bit_enabled", "Fluent Bit", ALL)):
        off = [name for name in where if not hostvars(name)[var]]
        if off:
            pytest.skip(NOT_DEPLOYED.format(what=what, why=f"{var} is false on {', '.join(off)}"))
    missing = []
    for name in ALL:
        want = ["fluent-bit"] + (["loki"] if name in MONITORING else [])
        listed = infra(name).run("systemctl list-unit-files --no-legend --no-pager loki.service fluent-bit.service").stdout
        missing += [f"no {unit}.service on {name}" for unit in want if f"{unit}.service" not in listed]
    assert not missing, f"the inventory deploys Loki and Fluent Bit, but: {', '.join(missing)}"


def loki_streams(logql: str, since_ns: int) -> list[dict]:
    query = {"query": logql, "start": since_ns, "end": time.time_ns() + 10**9, "limit": 5000, "direction": "forward"}
    answer = get(loki_url("/loki/api/v1/query_range?" + urllib.parse.urlencode(query)), headers=loki_query_auth(), timeout=10)
    assert answer.status == 200, f"{logql}: {answer.body[:500]}"
    return json.loads(answer.body)["data"]["result"]


def lines(logql: str, since_ns: int) -> list[tuple[dict, str]]:
    return [(s["stream"], v[1]) for s in loki_streams(logql, since_ns) for v in s["values"]]


def wait_for(logql: str, since_ns: int, done, timeout: float) -> list[tuple[dict, str]]:
    deadline = time.monotonic() + timeout
    while True:
        found = lines(logql, since_ns)
        if done(found) or time.monotonic() > deadline:
            return found
        time.sleep(1)


def send_marked(marker: str) -> None:
    name = LBS[0]
    answer = get(lb_url(name), headers={"X-Request-ID": marker, "User-Agent": marker})
    assert answer.status == 200, answer.body


def wait_ready(name: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if get(loki_url("/ready", name)).status == 200:
                return
        except OSError:
            pass  # not listening yet, right after a start
        assert time.monotonic() < deadline, f"Loki on {name} is not ready after {timeout} s"
        time.sleep(1)


@pytest.mark.parametrize("name", MONITORING)
def test_loki_is_ready_behind_its_gateway(deployed, infra, name):
    """Loki itself on loopback only; its gateway on the internal address, at the same port."""
    host = infra(name)
    assert host.service("loki").is_running, journal(host, "loki")
    assert host.service("loki-gateway").is_running, journal(host, "loki-gateway")
    loki_port = port(name, "loki_http_port")
    assert host.socket(f"tcp://127.0.0.1:{loki_port}").is_listening, journal(host, "loki")
    assert not host.socket(f"tcp://0.0.0.0:{loki_port}").is_listening
    assert host.socket(f"tcp://{address(name)}:{loki_port}").is_listening, journal(host, "loki-gateway")
    wait_ready(name)


# --- Loki's gateway: the hosts may only push ------------------------------------------------

def status_from(name: str, method: str, path: str, headers: dict[str, str] | None = None, body: str = "") -> int:
    """The status Loki's gateway answers a request from the lab host `name` with."""
    return get_from(name, loki_url(path), 10, method, headers, body).status


def push_body(host: str, marker: str) -> str:
    stream = {"stream": {"env": hostvars(host)["deploy_env"], "host": host, "service": "forward"},
              "values": [[str(time.time_ns()), json.dumps({"message": marker})]]}
    return json.dumps({"streams": [stream]})


JSON = {"Content-Type": "application/json"}
LABELS = "/loki/api/v1/labels"
DELETE = "/loki/api/v1/delete?" + urllib.parse.urlencode({"query": '{service="nginx"}', "start": "1"})


def test_a_load_balancer_may_not_query_nor_delete_even_with_the_query_credentials(deployed, infra):
    name = LBS[0]
    for method, path in (("GET", LABELS), ("GET", "/loki/api/v1/query_range?query=%7Bservice%3D%22nginx%22%7D"),
                         ("POST", DELETE), ("GET", "/metrics")):
        for headers in ({}, loki_query_auth(), loki_push_auth()):
            status = status_from(name, method, path, headers)
            assert status == 403, f"{method} {path} from {name} answered {status}"


def test_a_load_balancer_pushes_with_the_push_credentials_only(deployed, infra):
    name = LBS[0]
    since = time.time_ns() - 5 * 10**9
    refused = f"gateway-refused-{uuid.uuid4().hex}"
    assert status_from(name, "POST", "/loki/api/v1/push", JSON, push_body(name, refused)) == 401
    wrong = {**JSON, **loki_query_auth()}
    assert status_from(name, "POST", "/loki/api/v1/push", wrong, push_body(name, refused)) == 401
    marker = f"gateway-push-{uuid.uuid4().hex}"
    assert status_from(name, "POST", "/loki/api/v1/push", {**JSON, **loki_push_auth()}, push_body(name, marker)) == 204
    assert wait_for(f'{{host="{name}"}} |= "{marker}"', since, bool, 30), f"the line {name} pushed is not in Loki"
    assert not lines(f'{{host="{name}"}} |= "{refused}"', since), "a push without the push credentials was stored"


def test_the_admin_network_queries_with_the_query_credentials_only(deployed):
    assert get(loki_url(LABELS)).status == 401
    assert get(loki_url(LABELS), headers=loki_push_auth()).status == 401
    answer = get(loki_url(LABELS), headers=loki_query_auth())
    assert answer.status == 200, answer.body[:300]
    assert "service" in json.loads(answer.body)["data"]


def test_deletion_is_off_unless_the_inventory_turns_it_on(deployed):
    answer = get(loki_url(DELETE), headers=loki_query_auth(), timeout=10, method="POST")
    assert answer.status >= 400, f"a delete request was taken ({answer.status}): {answer.body[:300]}"
    assert "delet" in answer.body.lower(), answer.body[:300]


@pytest.mark.parametrize("name", MONITORING)
def test_the_gateway_keeps_its_credentials_hashed_and_to_itself(deployed, infra, name):
    host = infra(name)
    v = hostvars(name)
    for path in ("/etc/loki-gateway/push.htpasswd", "/etc/loki-gateway/query.htpasswd"):
        f = host.file(path)
        assert (f.user, f.group, f.mode) == ("root", "loki-gateway", 0o640), (path, f.user, f.group, oct(f.mode))
        text = host.check_output(f"cat {path}")
        assert v["vault_loki_push_password"] not in text and v["vault_loki_query_password"] not in text
        assert text.split(":", 1)[1].startswith("$6$"), "not a SHA-512 crypt hash"


@pytest.mark.parametrize("name", ALL)
def test_fluent_bit_keeps_the_push_password_in_a_root_only_file(deployed, infra, name):
    host = infra(name)
    env = host.file("/etc/fluent-bit/webapp.env")
    assert (env.user, env.group, env.mode) == ("root", "root", 0o600)
    password = hostvars(name)["vault_loki_push_password"]
    assert password in host.check_output("cat /etc/fluent-bit/webapp.env")
    assert password not in host.check_output("cat /etc/fluent-bit/webapp.yaml")


@pytest.mark.parametrize("name", ALL)
def test_fluent_bit_runs_with_the_forward_input_on_loopback(deployed, infra, name):
    host = infra(name)
    assert host.service("fluent-bit").is_running, journal(host, "fluent-bit")
    forward = port(name, "fluent_bit_forward_port")
    assert host.socket(f"tcp://127.0.0.1:{forward}").is_listening, journal(host, "fluent-bit")
    assert not host.socket(f"tcp://0.0.0.0:{forward}").is_listening
    assert not host.socket(f"tcp://{address(name)}:{forward}").is_listening


def test_marked_request_reaches_loki_with_its_labels(deployed):
    since = time.time_ns() - 5 * 10**9
    marker = f"logtest-{uuid.uuid4().hex}"
    started = time.monotonic()
    send_marked(marker)
    nginx = wait_for(f'{{service="nginx"}} |= "{marker}"', since, bool, 30)
    app = wait_for(f'{{service="webapp"}} |= "{marker}"', since, bool, max(1, 30 - (time.monotonic() - started)))
    assert nginx, "the Nginx access line of the marked request is not in Loki after 30 s"
    assert app, "the app's line of the marked request is not in Loki after 30 s"
    env = hostvars(LBS[0])["deploy_env"]
    (labels, line), = nginx
    assert labels == {"env": env, "host": LBS[0], "service": "nginx"}, labels
    assert json.loads(line)["request_id"] == marker
    (labels, line), = app
    assert labels.keys() == {"env", "host", "service", "level"} and labels["host"] in APP, labels
    assert (labels["env"], labels["service"], labels["level"]) == (env, "webapp", "info"), labels
    record = json.loads(line)
    assert record["request_id"] == marker and record["unit"].startswith("webapp@"), record


# Each client field of an access line is cut at nginx_log_field_max_length with this marker.
CUT_MARKER = yaml.safe_load((PROJECT / "roles" / "nginx" / "vars" / "main.yml").read_text())["_nginx_log_cut_marker"]


def test_long_access_lines_reach_loki_cut_with_a_marker(deployed):
    """No silent skip of a long line: several client fields near Nginx's 8 KB header limit, each
    of quotes (doubled by escape=json), make a line over Fluent Bit's former 32 KB buffer, which it
    skipped; and a 20,000-character User-Agent, which Nginx refuses. Both access lines arrive."""
    since = time.time_ns() - 5 * 10**9
    limit = int(hostvars(LBS[0])["nginx_log_field_max_length"])
    marker = f"longline-{uuid.uuid4().hex}"
    quotes = '"' * 7_800
    long_query = "/?m=" + marker + "&q=" + "q" * 6_000
    sent = get(lb_url(LBS[0], long_query), headers={
        "X-Request-ID": marker, "User-Agent": quotes, "Referer": quotes, "X-Filler": quotes}, timeout=10)
    assert sent.status == 200, sent.body[:300]
    refused_marker = f"longagent-{uuid.uuid4().hex}"
    refused = get(lb_url(LBS[0], "/?m=" + refused_marker), headers={"User-Agent": '"' * 20_000}, timeout=10)
    assert refused.status == 400, refused.status  # Nginx: request header too large

    found = wait_for(f'{{service="nginx"}} |= "{marker}"', since, bool, 30)
    assert found, "the access line with long client fields is not in Loki after 30 s (skipped for its length?)"
    record = json.loads(found[0][1])
    assert record["request_id"] == marker
    for field in ("http_user_agent", "http_referer"):
        assert record[field] == '"' * limit + CUT_MARKER, (field, len(record[field]), record[field][-40:])
    assert record["uri"] == long_query[:limit] + CUT_MARKER
    assert wait_for(f'{{service="nginx"}} |= "{refused_marker}"', since, bool, 30), \
        "the access line of the request with a 20,000-character User-Agent is not in Loki after 30 s"
    # The app's own line of the first request, with its User-Agent cut the same way.
    app = wait_for(f'{{service="webapp"}} |= "{marker}"', since, bool, 30)
    assert app, "the app's line of the request with long client fields is not in Loki after 30 s"
    assert json.loads(app[0][1])["user_agent"].endswith(CUT_MARKER)


@pytest.mark.parametrize("name", ALL)
def test_forward_input_message_reaches_loki(deployed, infra, name):
    since = time.time_ns() - 5 * 10**9
    marker = f"forward-{uuid.uuid4().hex}"
    payload = msgpack(["test", int(time.time()), {"message": marker}]).hex()
    send = ("import socket,sys; s=socket.create_connection(('127.0.0.1', int(sys.argv[1]))); "
            "s.sendall(bytes.fromhex(sys.argv[2])); s.close()")
    infra(name).check_output(f"python3 -c \"{send}\" {port(name, 'fluent_bit_forward_port')} {payload}")
    found = wait_for(f'{{service="forward", host="{name}"}} |= "{marker}"', since, bool, 30)
    assert found, f"the message forwarded on {name} is not in Loki after 30 s"
    assert found[0][0]["service"] == "forward" and found[0][0]["host"] == name


def original_command() -> tuple[bytes, str, int]:
    """The original task's check as docs/monitoring.md shows it, `echo '<json>' | nc -u -w1 <host> <port>`:
    the datagram echo writes (the JSON and a newline), the host name and the port."""
    found = re.search(r"^echo '(\{.+\})' \| nc -u -w1 (\S+) (\d+)$", (PROJECT / "docs" / "monitoring.md").read_text(), re.M)
    assert found, "docs/monitoring.md does not show the original check, echo '{...}' | nc -u -w1 localhost 24224"
    return found.group(1).encode() + b"\n", found.group(2), int(found.group(3))


# As `nc -u -w1 HOST PORT` sends: to the first address HOST resolves to, one datagram.
_SEND_UDP = """
import socket, sys
host, port, payload = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3])
family, kind, proto, _, target = socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM)[0]
with socket.socket(family, kind, proto) as s:
    s.connect(target)
    s.send(payload)
print(target[0])
"""


@pytest.mark.parametrize("to", ["localhost", "::1"])
@pytest.mark.parametrize("name", ALL)
def test_original_udp_json_datagram_reaches_loki(deployed, infra, name, to):
    payload, readme_host, readme_port = original_command()
    assert readme_port == port(name, "fluent_bit_forward_port")
    host = infra(name)
    if to == "::1" and "::1" not in host.check_output("ip -6 addr show dev lo"):
        pytest.skip(f"{name} has no ::1 on lo")
    to = readme_host if to == "localhost" else to
    since = time.time_ns()
    sent_to = host.check_output(f"python3 -c {shlex.quote(_SEND_UDP)} {shlex.quote(to)} {readme_port} {payload.hex()}")
    record = json.loads(payload)
    # The original task's query: its tag is the stream's job label.
    found = wait_for(f'{{job="{record["tag"]}", host="{name}"}}', since, bool, 30)
    assert found, f"the datagram sent on {name} to {sent_to}:{readme_port} is not in Loki after 30 s"
    (labels, line), = found
    assert labels["env"] == hostvars(name)["deploy_env"] and labels["job"] == record["tag"], labels
    assert {k: v for k, v in json.loads(line).items() if k not in ("service", "job")} == record, line


def msgpack(value) -> bytes:
    """The few MessagePack types a forward message needs (str, non-negative int, list, dict)."""
    if isinstance(value, str):
        data = value.encode()
        if len(data) < 32:
            return bytes([0xA0 | len(data)]) + data
        if len(data) < 256:
            return b"\xd9" + bytes([len(data)]) + data
        return b"\xda" + len(data).to_bytes(2, "big") + data
    if isinstance(value, int):
        return b"\xce" + value.to_bytes(4, "big")
    if isinstance(value, list):
        return bytes([0x90 | len(value)]) + b"".join(msgpack(v) for v in value)
    if isinstance(value, dict):
        return bytes([0x80 | len(value)]) + b"".join(msgpack(k) + msgpack(v) for k, v in value.items())
    raise TypeError(value)


def test_loki_outage_loses_no_marked_line(deployed, infra):
    mon = infra(MONITORING[0])
    prefix = f"outage-{uuid.uuid4().hex[:12]}"
    since = time.time_ns() - 5 * 10**9
    sent = []
    mon.check_output("systemctl stop loki")
    try:
        started = time.monotonic()
        while time.monotonic() - started < 60:
            sent.append(f"{prefix}-{len(sent):03d}")
            send_marked(sent[-1])
            time.sleep(1)
    finally:
        mon.check_output("systemctl start loki")
    wait_ready(MONITORING[0])

    def markers(found):
        return {m for _, line in found for m in re.findall(re.escape(prefix) + r"-\d{3}", line)}

    for service in ("nginx", "webapp"):
        found = wait_for(f'{{service="{service}"}} |= "{prefix}"', since, lambda f: markers(f) >= set(sent), 150)
        missing = sorted(set(sent) - markers(found))
        assert not missing, f"{len(missing)} of {len(sent)} marked {service} lines lost in the outage: {missing[:10]}"


@pytest.mark.disruptive(45)
def test_a_rebooted_monitoring_host_keeps_its_data_and_gets_what_was_written_while_down(deployed, infra):
    """mon1 powered off and on (lab/lab stop, start) with no Ansible run: it boots into Loki, its
    gateway and Prometheus with the lines and samples from before, and the other hosts' Fluent
    Bit delivers what was written while it was down."""
    name = MONITORING[0]
    prefix = f"reboot-{uuid.uuid4().hex[:12]}"
    since = time.time_ns() - 5 * 10**9
    send_marked(f"{prefix}-before")
    assert wait_for(f'{{service="nginx"}} |= "{prefix}-before"', since, bool, 30), "the line before the reboot is not in Loki"
    prometheus = f"http://{address(name)}:{port(name, 'prometheus_port')}/api/v1/query?"
    before = time.time()
    samples = f'count_over_time(up{{job="node"}}[2m])'

    def node_samples(at: float) -> float:
        answer = get(prometheus + urllib.parse.urlencode({"query": f"sum({samples})", "time": at}), timeout=10)
        assert answer.status == 200, answer.body[:300]
        result = json.loads(answer.body)["data"]["result"]
        return float(result[0]["value"][1]) if result else 0.0

    kept = node_samples(before)
    assert kept > 0, "Prometheus has no node samples before the reboot"
    lab = str(PROJECT / "lab" / "lab")
    subprocess.run([lab, "stop", name], check=True, capture_output=True, timeout=120)
    sent = []
    try:
        for i in range(20):
            sent.append(f"{prefix}-down-{i:03d}")
            send_marked(sent[-1])
            time.sleep(0.5)
    finally:
        subprocess.run([lab, "start", name], check=True, capture_output=True, timeout=300)
    wait_ready(name, timeout=180)
    host = infra(name)
    for unit in ("loki", "loki-gateway", "prometheus", "fluent-bit"):
        assert host.service(unit).is_running, journal(host, unit)
    assert host.run("nft list table inet webapp").rc == 0, "the firewall's rule set is not loaded after the boot"

    def markers(found):
        return {m for _, line in found for m in re.findall(re.escape(prefix) + r"-(?:before|down-\d{3})", line)}

    want = {f"{prefix}-before", *sent}
    for service in ("nginx", "webapp"):
        found = wait_for(f'{{service="{service}"}} |= "{prefix}"', since, lambda f: markers(f) >= want, 180)
        missing = sorted(want - markers(found))
        assert not missing, f"{len(missing)} marked {service} lines missing after {name}'s reboot: {missing[:10]}"
    deadline = time.monotonic() + 60
    while node_samples(before) < kept and time.monotonic() < deadline:
        time.sleep(2)  # Prometheus answers queries once it has replayed its write-ahead log
    assert node_samples(before) == kept, f"Prometheus lost samples from before the reboot ({node_samples(before)} of {kept})"


# Reads of Loki (a second apart) that must find the same number of lines before a count is final.
STABLE_READS = 5


def test_fluent_bit_restart_repeats_no_line(deployed, infra):
    prefix = f"restart-{uuid.uuid4().hex[:12]}"
    since = time.time_ns() - 5 * 10**9
    sent = []
    for i in range(40):
        if i == 20:
            for name in LBS + APP:
                infra(name).check_output("systemctl restart fluent-bit")
        sent.append(f"{prefix}-{i:03d}")
        send_marked(sent[-1])
        time.sleep(0.2)

    def counts(found):
        seen: dict[str, int] = {}
        for _, line in found:
            for m in set(re.findall(re.escape(prefix) + r"-\d{3}", line)):
                seen[m] = seen.get(m, 0) + 1
        return seen

    for service in ("nginx", "webapp"):
        # Every marked line in, and then as many lines for STABLE_READS reads in a row: a repeat
        # comes with or right after the rest, and would have raised the count.
        logql = f'{{service="{service}"}} |= "{prefix}"'
        deadline = time.monotonic() + 120
        last, same = -1, 0
        while True:
            found = lines(logql, since)
            seen = counts(found)
            same = same + 1 if len(found) == last else 0
            last = len(found)
            if set(seen) >= set(sent) and same >= STABLE_READS:
                break
            assert time.monotonic() < deadline, (
                f"marked {service} lines after 120 s: {len(found)}, the same for the last {same} reads "
                f"(of {STABLE_READS}); lost over the restart: {sorted(set(sent) - set(seen))[:10]}")
            time.sleep(1)
        assert set(seen) >= set(sent), f"marked {service} lines lost over the restart: {sorted(set(sent) - set(seen))[:10]}"
        repeated = {m: n for m, n in seen.items() if n > 1}
        assert not repeated, f"marked {service} lines repeated after the restart: {repeated}"


# --- faults: a broken setting is refused by the checker, the running service goes on ----------


def loki_writes_and_reads(marker: str) -> bool:
    """A marked request through the load balancer is in Loki within 30 s (Fluent Bit ships, Loki serves)."""
    since = time.time_ns() - 5 * 10**9
    send_marked(marker)
    return bool(wait_for(f'{{service="nginx"}} |= "{marker}"', since, bool, 30))


@pytest.mark.disruptive(25)
@pytest.mark.parametrize("name", MONITORING)
def test_invalid_loki_configuration_fails_the_play_and_loki_keeps_serving(deployed, infra, name):
    host = infra(name)
    before = host.file("/etc/loki/config.yml").sha256sum
    pid = main_pid(host, "loki")
    # A date that looks right to the role's preflight and that Loki refuses.
    proc = playbook("playbooks/logging.yml", "--limit", name, "--tags", "loki", "-e", json.dumps({"loki_schema_from": "2024-13-01"}))
    assert proc.returncode != 0
    assert 'parsing time "2024-13-01": month out of range' in proc.stdout, proc.stdout[-3000:]
    assert host.file("/etc/loki/config.yml").sha256sum == before
    assert main_pid(host, "loki") == pid, journal(host, "loki")
    wait_ready(name, timeout=5)
    assert loki_writes_and_reads(f"lokifault-{uuid.uuid4().hex}"), "Loki stopped taking or serving lines"


@pytest.mark.disruptive(26)
def test_invalid_fluent_bit_configuration_fails_the_play_and_fluent_bit_keeps_shipping(deployed, infra):
    name = LBS[0]
    host = infra(name)
    config = "/etc/fluent-bit/webapp.yaml"
    before = host.file(config).sha256sum
    pid = main_pid(host, "fluent-bit")
    # A size that matches the role's preflight (digits and a unit) and that Fluent Bit refuses.
    proc = playbook("playbooks/logging.yml", "--limit", name, "--tags", "fluent_bit",
                    "-e", json.dumps({"fluent_bit_storage_total_limit_size": "99999999999999999999G"}))
    assert proc.returncode != 0
    assert "could not configure property 'storage.total_limit_size' on output plugin" in proc.stdout, proc.stdout[-3000:]
    assert host.file(config).sha256sum == before
    assert main_pid(host, "fluent-bit") == pid, journal(host, "fluent-bit")
    assert host.service("fluent-bit").is_running, journal(host, "fluent-bit")
    assert loki_writes_and_reads(f"fbfault-{uuid.uuid4().hex}"), "Fluent Bit stopped shipping the load balancer's lines"
