"""An operator's own apps on a lab of their own (the apps scenario): the fixture projects
in tests/fixtures/apps, built from their own pyproject.toml the way an operator's would be, each
deployed and rolled back under load with no failed request, their metrics in Prometheus and
their lines in Loki; then bad input, each refused naming its variable with the running release
still serving.

- notes: a Flask app factory on SQLite, its database in a shared folder whose table the migrate
  step makes (a database per host: app_migrate_once false), its secret key from app_secret_env;
- plainapp: a plain WSGI callable, no Flask at all.

Every run passes its app's settings as extra variables (a file of them), as an inventory's
group_vars would set them. Load goes only to the lab's load balancer, bounded (bench/loadgen.py).
"""

from __future__ import annotations

import json
import secrets
import shutil
import time
import urllib.parse
from pathlib import Path

import pytest
import yaml
from conftest import (PROJECT, address, app_instances, app_ports, assert_no_failed_request, assert_ok, client_url,
                      deploy_markers, get, get_from, hosts, instance_release, loki_query_auth, loki_url, playbook, port,
                      under_load)
from conftest import testinfra_host as on_host

FIXTURES = PROJECT / "tests" / "fixtures" / "apps"
NOTES = {
    "app_source": str(FIXTURES / "notes"),
    "app_wsgi": "notes:create_app()",
    "app_env": {"NOTES_TITLE": "Lab notes", "NOTES_DATABASE": "var/notes.db"},
    "app_secret_env": {"NOTES_SECRET_KEY": "lab-notes-secret"},
    "app_shared_paths": ["var"],
    "app_migrate_command": "flask --app notes:create_app init-db",
    "app_migrate_once": False,
}
PLAIN = {
    "app_source": str(FIXTURES / "plain"),
    "app_wsgi": "plainapp:application",
    "app_env": {"PLAIN_MESSAGE": "plain from the lab"},
}
SEEN: dict[str, str] = {}


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    """settings(app, **more) -> the ansible-playbook arguments of an extra-vars file of the app's settings."""
    folder = tmp_path_factory.mktemp("settings")

    def write(app: dict, **more: object) -> list[str]:
        path = folder / f"vars-{secrets.token_hex(4)}.yml"
        path.write_text(yaml.safe_dump({**app, **more}))
        return ["-e", f"@{path}"]

    return write


def releases() -> dict[str, str]:
    """The release each instance serves, from the runner's X-Release header of its health path."""
    return {f"{host}:{p}": instance_release(host, p) for host, p in app_instances()}


def serves(release: str) -> None:
    found = releases()
    assert set(found.values()) == {release}, found


def deployed_release(output: str) -> str:
    """The release id the build play showed ("Release <id> (...").)"""
    for line in output.splitlines():
        if '"msg": "Release ' in line or "msg: Release " in line:
            return line.split("Release ", 1)[1].split()[0]
    raise AssertionError("the deploy showed no release:\n" + output[-3000:])


def prometheus(expr: str) -> list[dict]:
    mon = hosts("monitoring")[0]
    answer = get(f"http://{address(mon)}:{port(mon, 'prometheus_port')}/api/v1/query?"
                 + urllib.parse.urlencode({"query": expr}))
    body = json.loads(answer.body)
    assert answer.status == 200 and body["status"] == "success", body
    return body["data"]["result"]


def wait_for_series(expr: str, count: int, seconds: float = 90) -> list[dict]:
    """Prometheus answers `expr` with at least `count` series within `seconds` (scrapes come every few seconds)."""
    deadline = time.monotonic() + seconds
    while len(found := prometheus(expr)) < count:
        assert time.monotonic() < deadline, f"{expr}: {len(found)} series after {seconds} s, want {count}: {found}"
        time.sleep(2)
    return found


def wait_for_line(text: str, seconds: float = 90) -> list[dict]:
    """The app's lines in Loki (service="webapp", each a JSON record) with `text`, within `seconds`
    (Fluent Bit ships the instances' journal every second)."""
    since = time.time_ns() - 15 * 60 * 10**9
    query = {"query": f'{{service="webapp"}} |= {json.dumps(text)}', "start": since, "limit": 100}
    deadline = time.monotonic() + seconds
    while True:
        answer = get(loki_url("/loki/api/v1/query_range?" + urllib.parse.urlencode(query)), headers=loki_query_auth())
        assert answer.status == 200, answer.body[:500]
        found = [json.loads(v[1]) for s in json.loads(answer.body)["data"]["result"] for v in s["values"]]
        if found:
            return found
        assert time.monotonic() < deadline, f"no line with {text!r} in Loki after {seconds} s"
        time.sleep(2)


def note_url(host: str, path: str) -> str:
    return f"http://{address(host)}:{app_ports(host)[0]}{path}"


def deploy(args: list[str], force: bool = True) -> str:
    proc, load = under_load("playbooks/deploy.yml", *args, *(["-e", "webapp_build_force=true"] if force else []))
    assert_ok(proc)
    assert_no_failed_request(load)
    SEEN["output"] = proc.stdout + proc.stderr
    return deployed_release(proc.stdout)


def test_the_notes_app_deploys_with_its_migration_and_shared_database(settings):
    SEEN["notes1"] = deploy(settings(NOTES) + ["--diff"])
    serves(SEEN["notes1"])
    # The environment's change shows in the diff; the secret written in the same module run never does.
    assert "NOTES_TITLE=" in SEEN["output"] and NOTES["app_secret_env"]["NOTES_SECRET_KEY"] not in SEEN["output"]
    answer = get(client_url("/"))
    assert answer.status == 200 and answer.body == "Lab notes: 0 notes", answer
    for host in hosts("app"):
        made = get_from(hosts("lb")[0], note_url(host, "/notes"), method="POST",
                        headers={"Content-Type": "application/x-www-form-urlencoded"}, body="text=kept+across+releases")
        assert made.status == 201, made
        SEEN[f"note_{host}"] = made.body.strip()


def test_a_row_written_before_a_deploy_is_there_after_it(settings):
    SEEN["notes2"] = deploy(settings(NOTES))
    assert SEEN["notes2"] != SEEN["notes1"]
    serves(SEEN["notes2"])
    for host in hosts("app"):
        answer = get_from(hosts("lb")[0], note_url(host, f"/notes/{SEEN[f'note_{host}']}"))
        assert (answer.status, answer.body) == (200, "kept across releases"), (host, answer)


def test_the_notes_app_rolls_back_under_load_and_keeps_its_data(settings):
    proc, load = under_load("playbooks/rollback.yml", *settings(NOTES))
    assert_ok(proc)
    assert_no_failed_request(load)
    serves(SEEN["notes1"])
    for host in hosts("app"):
        answer = get_from(hosts("lb")[0], note_url(host, f"/notes/{SEEN[f'note_{host}']}"))
        assert (answer.status, answer.body) == (200, "kept across releases"), (host, answer)


def test_the_notes_apps_metrics_reach_prometheus_under_the_seeds_names():
    want = len(app_instances())
    wait_for_series(f'app_build_info{{release="{SEEN["notes1"]}"}}', want)
    # The Flask route, not the raw path, as the label (the runner reads the app's URL rule).
    wait_for_series('flask_http_request_total{route="/notes/<int:note_id>"}', 1)


def test_the_notes_apps_access_lines_reach_loki():
    marker = f"/notes/{900000 + secrets.randbelow(99999)}"
    host = hosts("app")[0]
    assert get_from(hosts("lb")[0], note_url(host, marker)).status == 404
    line = wait_for_line(marker)[0]
    assert (line["path"], line["status"], line["logger"]) == (marker, 404, "webapp.access"), line
    assert line["request_id"] and line["unit"].startswith("webapp@"), line


def test_a_plain_wsgi_app_deploys_and_rolls_back_under_load(settings):
    SEEN["plain1"] = deploy(settings(PLAIN))
    serves(SEEN["plain1"])
    assert get(client_url("/")).body == "plain from the lab"
    SEEN["plain2"] = deploy(settings(PLAIN))
    serves(SEEN["plain2"])
    proc, load = under_load("playbooks/rollback.yml", *settings(PLAIN))
    assert_ok(proc)
    assert_no_failed_request(load)
    serves(SEEN["plain1"])


def test_the_plain_apps_metrics_and_lines_reach_prometheus_and_loki():
    wait_for_series(f'app_build_info{{release="{SEEN["plain1"]}"}}', len(app_instances()))
    wait_for_series('flask_http_request_total{route="*"}', 1)
    marker = f"/plain-{secrets.token_hex(6)}"
    assert get_from(hosts("lb")[0], note_url(hosts("app")[0], marker)).status == 404
    assert wait_for_line(marker)


# --- bad input: refused naming the variable, the running release still serving ----------------------

def refused(args: list[str], *words: str) -> None:
    before = releases()
    proc = playbook("playbooks/deploy.yml", *args)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    for word in words:
        assert word in out, f"{word!r} not in the output:\n{out[-4000:]}"
    assert releases() == before, "an instance changed release"
    assert get(client_url("/")).status == 200


@pytest.mark.parametrize(("more", "words"), [
    ({"app_shared_paths": ["../outside"]}, ["app_shared_paths", "leaves the release"]),
    ({"app_shared_paths": ["/srv/data"]}, ["app_shared_paths", "absolute"]),
    ({"app_env": {"NOT-AN-IDENTIFIER": "x"}}, ["app_env", "not an environment name"]),
    ({"app_wsgi": "plainapp"}, ["app_wsgi must be module:name"]),
], ids=["dotdot", "absolute", "env-name", "wsgi-form"])
def test_bad_settings_are_refused_before_any_change(settings, more, words):
    refused(settings(PLAIN, **more), *words)


def test_a_source_without_pyproject_is_refused(settings, tmp_path):
    (tmp_path / "setup.py").write_text("")
    refused(settings(PLAIN, app_source=str(tmp_path)), "app_source", "has no pyproject.toml")


def test_an_app_wsgi_that_does_not_import_is_refused_by_the_pre_check(settings):
    refused(settings(PLAIN, app_wsgi="plainapp_missing:application"), "app_wsgi", "plainapp_missing")


def test_a_factory_that_raises_is_refused_by_the_pre_check(settings):
    # The notes factory refuses to start without its secret key (no migrate step: it would load the
    # app first and stop the deploy there, as the next test shows for a failing one).
    refused(settings({**NOTES, "app_secret_env": {}, "app_migrate_command": ""}) + ["-e", "webapp_build_force=true"],
            "app_wsgi", "NOTES_SECRET_KEY is not set")


def test_a_failing_migrate_step_stops_the_deploy_with_its_output(settings):
    refused(settings(NOTES, app_migrate_command="echo cannot-migrate-now >&2; exit 4") + ["-e", "webapp_build_force=true"],
            "app_migrate_command failed", "exit 4", "cannot-migrate-now")


def test_a_one_off_command_runs_in_the_current_release(settings):
    command = 'python -c \'import os, plainapp; print(os.environ["PLAIN_MESSAGE"], plainapp.__version__, os.getcwd())\''
    proc = playbook("playbooks/run.yml", *settings(PLAIN, app_command=command, app_command_host=hosts("app")[-1]))
    assert_ok(proc)
    assert "plain from the lab 1.0.0 /opt/webapp/releases/" in proc.stdout, proc.stdout[-3000:]
    failed = playbook("playbooks/run.yml", *settings(PLAIN, app_command="echo about to fail; exit 7"))
    assert failed.returncode != 0 and "app_command exited 7" in failed.stdout, failed.stdout[-3000:]
    assert "about to fail" in failed.stdout, failed.stdout[-3000:]


# --- the canary analysis: the first batch judged by its metrics (issue: a release that answers its
# health path but fails its users goes back by itself) ---------------------------------------------

CANARY = {"app_canary_seconds": 20, "app_canary_min_requests": 50}
# Nginx retries an answer on another instance only for errors, timeouts, 502 and 503 (nginx_proxy_next_upstream):
# a 500 reaches the client, who sees what the canary's users would see.
FAILING = '''    if path == "/":
        body = _respond(start_response, "200 OK", os.environ.get("PLAIN_MESSAGE", "plain wsgi"))'''


@pytest.fixture(scope="module")
def failing_source(tmp_path_factory) -> Path:
    """plainapp patched so that its / answers 500 to 3 requests of every 10 (its health path stays
    healthy): a release only its metrics can catch."""
    src = tmp_path_factory.mktemp("failing") / "plain"
    shutil.copytree(FIXTURES / "plain", src, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    module = src / "plainapp" / "__init__.py"
    text = module.read_text()
    assert FAILING in text, "plainapp's / changed: update this patch"
    module.write_text(text.replace(FAILING, '''    if path == "/" and next(_COUNT) % 10 in (3, 6, 9):
        body = _respond(start_response, "500 Internal Server Error", "broken on purpose")
''' + FAILING.replace("    if path", "    elif path", 1)) + "\n\nimport itertools  # noqa: E402\n_COUNT = itertools.count(1)\n"
                      + f"# {secrets.token_hex(8)}: a release of its own, whatever ran before\n")
    return src


def serving_spans(name: str, release: str) -> list[tuple[float, float]]:
    """(start, stop), in monotonic seconds, of each `stack-runner` process on `name` that ran `release`:
    its "starting" and "stopping" lines in the journal (a process still running stops at +inf)."""
    out = on_host(name).check_output(
        "journalctl -o json --no-pager --since -30min -u 'webapp@*' --grep '\"msg\": \"(starting|stopping)\"'")
    started: dict[str, float] = {}
    stopped: dict[str, float] = {}
    for entry in map(json.loads, out.splitlines()):
        line, at = json.loads(entry["MESSAGE"]), int(entry["__MONOTONIC_TIMESTAMP"]) / 1e6
        if line.get("msg") == "starting" and line.get("release") == release:
            started[entry["_PID"]] = at
        elif line.get("msg") == "stopping" and entry["_PID"] in started:
            stopped.setdefault(entry["_PID"], at)  # the journal is in order: a reused PID's later lines come after
    return sorted((at, stopped.get(pid, float("inf"))) for pid, at in started.items())


def test_a_release_that_fails_its_users_goes_back_after_its_canary(settings, failing_source):
    before = set(releases().values())
    assert len(before) == 1, before
    proc, load = under_load("playbooks/deploy.yml",
                            *settings(PLAIN, app_source=str(failing_source), app_build_tests=False,
                                      app_allow_untested=True, **CANARY))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert "failed its canary analysis" in out and "error ratio" in out, out[-4000:]
    failed = deployed_release(proc.stdout)
    # The fleet is back where it was, and the release is marked failed where it ran.
    assert set(releases().values()) == before, out[-8000:]
    first = hosts("app")[0]
    assert on_host(first).file(f"/opt/webapp/releases/{failed}/.failed").contains("canary analysis failed")
    # What the users saw: 500s only, and only while the first batch's processes of the failed release ran,
    # by the host's own journal (its monotonic clock is this controller's: the lab's hosts are containers).
    errors = [s for s in load.samples if not s.ok]
    assert errors and {s.status for s in errors} == {500}, load.summary()
    spans = serving_spans(first, failed)
    assert len(spans) == len(app_ports(first)), spans
    # 1 s each side: journald stamps a line when it reads it from the process's stdout.
    outside = [s for s in errors
               if not any(start - 1 <= s.start + s.latency and s.start <= stop + 1 for start, stop in spans)]
    assert not outside, (spans, outside[:5])
    # The analysis took the window plus one scrape: from the last instance serving the release to the
    # first one sent back, the window (20 s), the scrape interval waited on top (15 s), and the verdict's
    # query and the rescue's tasks up to the first restart (15 s at the most, a loaded lab included).
    whole_batch = min(stop for _, stop in spans) - max(start for start, _ in spans)
    assert whole_batch <= CANARY["app_canary_seconds"] + 15 + 15, f"the whole batch served it {whole_batch:.1f} s"
    # ... and only from the first batch's instances. Over a range: once those instances serve the
    # release before again, the failed release's series leave their scrapes and an instant query
    # finds them stale; the samples scraped during the window stay.
    by_host = wait_for_series(
        f'last_over_time(flask_http_request_total{{job="app",status="500",release="{failed}"}}[15m])', 1)
    assert {r["metric"]["host"] for r in by_host} == {first}, by_host
    marker = [m for m in deploy_markers() if m.get("release") == failed]
    assert marker and marker[-1]["result"] == "failed", marker


def test_a_healthy_release_passes_the_same_analysis_and_goes_on(settings):
    proc, load = under_load("playbooks/deploy.yml", *settings(PLAIN, **CANARY), "-e", "webapp_build_force=true")
    assert_ok(proc)
    assert_no_failed_request(load)
    assert "Canary of" in proc.stdout and ": pass " in proc.stdout, proc.stdout[-3000:]
    serves(deployed_release(proc.stdout))
