"""Releases on the lab, in order: deploys, a failing release, rollbacks (sticky, fleet-wide,
repeated), interrupted deploys, rollbacks and environment changes finished by a re-run, the
host lock, and a deploy killed between copy and swap.

The tests run in file order and each starts from the state the one before left. Every
check of what runs asks each instance's /health on its host, not the `current` link. Load
goes only to the lab's load balancer, bounded in time and count (bench/loadgen.py).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import (INVENTORY, PROJECT, address, app_instances, assert_no_failed_request, assert_ok, client_url, deploy_markers,
                      get, get_from, hosts, hostvars, playbook, recap, under_load)
from conftest import testinfra_host as on_host

# A failing release is given up on after this many seconds (default 30).
QUICK_FAIL = ["-e", "app_health_timeout=6"]
STATE: dict[str, str] = {}
BASE = "/opt/webapp"


def build(*extra: str, project: Path = PROJECT, out: Path | None = None) -> dict[str, str]:
    """A release as playbooks/build.yml makes one: for every Python the lab's app hosts run (app_pythons)."""
    pythons = hostvars(hosts("app")[0])["app_pythons"]
    cmd = [sys.executable, str(PROJECT / "scripts" / "build_release.py"), "--project", str(project), *extra,
           *(["--python", ",".join(pythons)] if pythons else [])]
    if out is not None:
        cmd += ["--out", str(out)]
    return json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


def new_release(name: str) -> dict[str, str]:
    release = build("--force")
    STATE[name] = release["release_id"]
    STATE[f"{name}_artifact"] = release["artifact"]
    return release


def assert_marker(event: str, release: str, before: str, result: str) -> None:
    """The run just before wrote its marker: within a minute (Fluent Bit's flush and retries), the
    newest marker in Loki is this event, release, from and result."""
    want = (event, release, before, result)
    deadline = time.monotonic() + 60
    while True:
        markers = deploy_markers()
        newest = markers[-1] if markers else {}
        if tuple(newest.get(k) for k in ("event", "release", "from", "result")) == want:
            break
        assert time.monotonic() < deadline, f"newest markers {markers[-3:]}, want {want}"
        time.sleep(2)
    assert newest["by"] and newest["hosts"], newest


def health(host: str, port: int) -> dict:
    answer = get_from(host, f"http://{address(host)}:{port}/health")
    return json.loads(answer.body) if answer.status == 200 else {"release": f"<{answer.status}: {answer.body[-200:]}>"}


def releases_of_instances() -> dict[str, str]:
    """What every instance of every app host answers on /health."""
    return {f"{h}:{p}": health(h, p)["release"] for h, p in app_instances()}


def fleet_serves(release: str) -> None:
    found = releases_of_instances()
    assert set(found.values()) == {release}, found


def current(host: str) -> str:
    return Path(on_host(host).file(f"{BASE}/current").linked_to).name


def app_changes(output: str) -> dict[str, int]:
    return {h: c["changed"] for h, c in recap(output).items() if h in hosts("app")}


def run_until(args: list[str], stop: Callable[[str], bool], seconds: float = 600) -> tuple[subprocess.Popen[str], str]:
    """Start ansible-playbook, read its output until `stop(line)` is true and return it still
    running, with what it printed. A run that ends before such a line, or prints none within
    `seconds`, is killed with its workers and fails the test: it was never interrupted where
    the test meant to."""
    env = {**os.environ, "ANSIBLE_CONFIG": str(PROJECT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen(["ansible-playbook", "-i", INVENTORY, *args], cwd=PROJECT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    seen: list[str] = []
    hit = threading.Event()

    # A thread reads, so that a run that prints nothing cannot hold the wait past `seconds`; it
    # stops reading at the line, and the caller has the rest (proc.communicate()).
    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if stop(line):
                hit.set()
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=seconds)
    if hit.is_set():
        return proc, "".join(seen)
    ended = not reader.is_alive()
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # nothing of the run is left running
    except ProcessLookupError:
        pass  # the run and its workers are gone already
    proc.wait(timeout=30)
    reader.join(timeout=30)
    why = "the run ended before the line to stop it at" if ended else f"no line to stop the run at within {seconds} s"
    pytest.fail(f"{why}:\n" + "".join(seen)[-3000:])


def kill(proc: subprocess.Popen[str]) -> None:
    """The controller dies: SIGKILL to ansible-playbook and its workers."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def point_current_without_restart(host: str, release: str) -> None:
    """What a run killed right after its swap leaves: `current` moved, no instance restarted."""
    result = on_host(host).run(
        f"ln -sfn {BASE}/releases/{release} {BASE}/current.tmp && mv -T {BASE}/current.tmp {BASE}/current")
    assert result.rc == 0, result.stderr


@pytest.fixture(scope="module")
def broken_artifact(tmp_path_factory) -> str:
    """A release whose /health answers 503: the app's sources copied and patched, built
    without its tests (they would refuse it), so only the deploy's checks stand in its way."""
    src = tmp_path_factory.mktemp("broken")
    shutil.copytree(PROJECT / "app", src / "app", ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    module = src / "app" / "src" / "webapp" / "app.py"
    healthy = 'return jsonify(status="ok", version=config.version, release=release)'
    text = module.read_text()
    assert healthy in text, "the health endpoint changed: update this patch"
    module.write_text(text.replace(healthy, 'return jsonify(status="broken", release=release), 503'))
    release = build("--no-tests", project=src, out=src / "out")
    assert release["tests"] == "skipped"
    STATE["broken"] = release["release_id"]
    return release["artifact"]


@pytest.fixture(scope="module")
def crashing_artifact(tmp_path_factory) -> str:
    """A release whose instances exit at start (its app factory raises, so the runner exits 3): the
    app's sources copied and patched, built without its tests."""
    src = tmp_path_factory.mktemp("crashing")
    shutil.copytree(PROJECT / "app", src / "app", ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    module = src / "app" / "src" / "webapp" / "app.py"
    start = '    """A new app answering / and /health; `config` defaults to the environment\'s."""\n'
    text = module.read_text()
    assert start in text, "the app factory changed: update this patch"
    module.write_text(text.replace(start, start + '    raise RuntimeError("this release exits at start")\n'))
    release = build("--no-tests", project=src, out=src / "out")
    STATE["crashing"] = release["release_id"]
    return release["artifact"]


def test_every_instance_runs_the_converged_release():
    found = releases_of_instances()
    assert len(set(found.values())) == 1, found
    STATE["r1"] = next(iter(found.values()))
    assert all(current(h) == STATE["r1"] for h in hosts("app"))


def test_every_instance_listens_through_its_own_socket_unit():
    for host, port in app_instances():
        socket_unit = on_host(host).service(f"webapp@{port}.socket")
        assert socket_unit.is_running and socket_unit.is_enabled, f"{host}: webapp@{port}.socket"


def test_rolling_deploy_of_release_2_fails_no_request():
    release = new_release("r2")
    assert release["release_id"] != STATE["r1"]
    proc, load = under_load("playbooks/deploy.yml", "-e", f"webapp_artifact={release['artifact']}")
    assert_ok(proc)
    assert_no_failed_request(load)
    fleet_serves(STATE["r2"])
    assert_marker("deploy", STATE["r2"], STATE["r1"], "ok")


def test_redeploy_of_the_same_release_changes_nothing():
    proc = playbook("playbooks/deploy.yml", "-e", f"webapp_artifact={STATE['r2_artifact']}")
    assert_ok(proc)
    assert app_changes(proc.stdout) == {h: 0 for h in hosts("app")}, proc.stdout[-3000:]


def test_batches_come_from_the_inventory(tmp_path):
    """app_deploy_batches set in the inventory's group_vars decides the batches: the default (a
    first host, then 100%) makes two, ["100%"] one, [1] one a host."""
    header = "PLAY [Switch the app to the release, batch by batch (app_deploy_batches)]"
    runs = {}
    for name, batches in (("default", None), ("together", ["100%"]), ("one_by_one", [1])):
        inv = tmp_path / name
        (inv / "group_vars").mkdir(parents=True)
        (inv / "hosts.yml").write_text(json.dumps({"app": {"hosts": {h: None for h in hosts("app")}}}))
        if batches is not None:
            (inv / "group_vars" / "app.yml").write_text(f"app_deploy_batches: {json.dumps(batches)}\n")
        args = [] if batches is None else ["-i", str(inv)]
        runs[name] = playbook(*args, "playbooks/deploy.yml", "-e", f"webapp_artifact={STATE['r2_artifact']}")
        assert_ok(runs[name])
    count = len(hosts("app"))
    assert runs["default"].stdout.count(header) == min(2, count)  # a first host, then all the others
    assert runs["together"].stdout.count(header) == 1, runs["together"].stdout[-3000:]
    assert runs["one_by_one"].stdout.count(header) == count


def test_untested_release_is_refused_before_any_change(broken_artifact, infra):
    proc = playbook("playbooks/deploy.yml", "-e", f"webapp_artifact={broken_artifact}")
    assert proc.returncode != 0
    assert "was built without passing the app's tests" in proc.stdout
    assert all(not infra(h).file(f"{BASE}/releases/{STATE['broken']}").exists for h in hosts("app"))


def test_unhealthy_release_is_stopped_by_the_precheck(broken_artifact, infra):
    proc = playbook("playbooks/deploy.yml", "-e", f"webapp_artifact={broken_artifact}",
                    "-e", "app_allow_untested=true", *QUICK_FAIL)
    assert proc.returncode != 0
    assert f"Release {STATE['broken']} did not answer its health endpoint on 127.0.0.1" in proc.stdout
    fleet_serves(STATE["r2"])
    first, *rest = hosts("app")
    assert current(first) == STATE["r2"]
    assert infra(first).file(f"{BASE}/releases/{STATE['broken']}/.failed").exists
    # The install play put the release on every host at once; only the first batch tried it.
    assert all(current(h) == STATE["r2"] for h in rest), "hosts after the failing one must not switch"
    assert "TASK [app : Pre-check on the spare port release" in proc.stdout
    assert all(f"[{h}]" not in proc.stdout.split("TASK [app : Pre-check on the spare port release", 1)[1].split("TASK [", 1)[0]
               for h in rest), "only the first batch runs the pre-check"


def test_unhealthy_release_is_rolled_back_automatically(broken_artifact, infra):
    proc = playbook("playbooks/deploy.yml", "-e", f"webapp_artifact={broken_artifact}",
                    "-e", "app_allow_untested=true", "-e", "app_precheck=false", *QUICK_FAIL)
    assert proc.returncode != 0, "the play must fail"
    first, *rest = hosts("app")
    assert f"Release {STATE['broken']} failed on {first}; current is back at {STATE['r2']}" in proc.stdout
    assert "Its journal:" in proc.stdout
    fleet_serves(STATE["r2"])
    assert all(current(h) == STATE["r2"] for h in hosts("app"))
    assert all(not infra(h).file(f"{BASE}/releases/{STATE['broken']}/.failed").exists for h in rest), \
        "hosts after the failing one never tried the release"
    assert_marker("deploy", STATE["broken"], STATE["r2"], "failed")


def test_a_release_that_crashes_at_start_goes_back_failing_no_request(crashing_artifact, infra):
    """Pre-check off, the release exits at start: the start limit never blocks the way back
    (reset-failed before each restart), the play fails naming the release, and every instance
    serves the release before; no request through the floating address fails."""
    proc, load = under_load("playbooks/deploy.yml", "-e", f"webapp_artifact={crashing_artifact}",
                            "-e", "app_allow_untested=true", "-e", "app_precheck=false")
    assert proc.returncode != 0, "the play must fail"
    first = hosts("app")[0]
    assert f"Release {STATE['crashing']} failed on {first}; current is back at {STATE['r2']}" in proc.stdout
    assert "service exited" in proc.stdout
    fleet_serves(STATE["r2"])
    assert all(current(h) == STATE["r2"] for h in hosts("app"))
    assert_no_failed_request(load)
    for host in hosts("app"):  # as it was before this test: the releases after it count on it
        assert infra(host).run(f"rm -rf {BASE}/releases/{STATE['crashing']} "
                               f"{BASE}/artifacts/webapp-{STATE['crashing']}.tar.gz").rc == 0


def test_rollback_returns_every_instance_to_release_1_failing_no_request():
    proc, load = under_load("playbooks/rollback.yml")
    assert_ok(proc)
    assert_no_failed_request(load)
    fleet_serves(STATE["r1"])
    assert_marker("rollback", STATE["r1"], STATE["r2"], "ok")


def test_a_release_rolled_back_from_is_marked_on_every_host(infra):
    for host in hosts("app"):
        mark = json.loads(infra(host).file(f"{BASE}/state/rolled-back/{STATE['r2']}").content_string)
        assert mark["to"] == STATE["r1"] and mark["by"] and mark["at"], mark


def test_deploy_after_a_rollback_keeps_the_fleet_back():
    proc = playbook("playbooks/deploy.yml", "-e", f"webapp_artifact={STATE['r2_artifact']}")
    assert_ok(proc)
    assert app_changes(proc.stdout) == {h: 0 for h in hosts("app")}, proc.stdout[-3000:]
    said = " ".join(proc.stdout.split())  # the callback may fold a long message
    assert f"release {STATE['r2']} was rolled back by" in said, proc.stdout[-3000:]
    fleet_serves(STATE["r1"])


def test_site_after_a_rollback_changes_no_app_host():
    proc = playbook("site.yml")
    assert_ok(proc)
    assert app_changes(proc.stdout) == {h: 0 for h in hosts("app")}, proc.stdout[-3000:]
    fleet_serves(STATE["r1"])


def test_going_forward_again_to_a_rolled_back_release_takes_an_explicit_variable(infra):
    proc, load = under_load("playbooks/deploy.yml", "-e", f"webapp_artifact={STATE['r2_artifact']}",
                            "-e", f"app_roll_forward={STATE['r2']}")
    assert_ok(proc)
    assert_no_failed_request(load)
    fleet_serves(STATE["r2"])
    assert all(not infra(h).file(f"{BASE}/state/rolled-back/{STATE['r2']}").exists for h in hosts("app"))


def test_two_default_rollbacks_in_a_row_go_back_one_deploy_each():
    release = new_release("r3")
    assert_ok(playbook("playbooks/deploy.yml", "-e", f"webapp_artifact={release['artifact']}"))
    fleet_serves(STATE["r3"])
    first, load_first = under_load("playbooks/rollback.yml")
    assert_ok(first)
    assert_no_failed_request(load_first)
    fleet_serves(STATE["r2"])
    second, load_second = under_load("playbooks/rollback.yml")
    assert_ok(second)
    assert_no_failed_request(load_second)
    fleet_serves(STATE["r1"])


@pytest.mark.parametrize("turn", range(4))
def test_rollbacks_in_a_row_fail_no_request(turn):
    """Rollbacks back and forth, nothing slowing the restarts down: no 502 on any machine."""
    target = STATE["r2"] if turn % 2 == 0 else STATE["r1"]
    proc, load = under_load("playbooks/rollback.yml", "-e", f"release={target}")
    assert_ok(proc)
    assert_no_failed_request(load)
    fleet_serves(target)


def test_a_mixed_fleet_rolls_back_to_one_release():
    release = new_release("r4")
    first, *rest = hosts("app")
    # a deploy that reached the first host only (the build runs on localhost)
    assert_ok(playbook("playbooks/deploy.yml", "-e", f"webapp_artifact={release['artifact']}",
                       "--limit", f"{first},localhost"))
    found = releases_of_instances()
    assert {r for k, r in found.items() if k.startswith(f"{first}:")} == {STATE["r4"]}, found
    assert {r for k, r in found.items() if not k.startswith(f"{first}:")} == {STATE["r1"]}, found
    proc, load = under_load("playbooks/rollback.yml")
    assert_ok(proc)
    assert_no_failed_request(load)
    fleet_serves(STATE["r1"])


def test_an_interrupted_rollback_is_finished_by_a_rerun():
    """A rollback killed right after the swap on the first host: current moved, instances not."""
    first = hosts("app")[0]
    point_current_without_restart(first, STATE["r2"])
    assert {health(first, p)["release"] for h, p in app_instances() if h == first} == {STATE["r1"]}
    proc, load = under_load("playbooks/rollback.yml", "-e", f"release={STATE['r2']}")
    assert_ok(proc)
    assert_no_failed_request(load)
    fleet_serves(STATE["r2"])


def test_an_interrupted_deploy_is_finished_by_a_rerun():
    release = new_release("r5")
    args = ["playbooks/deploy.yml", "-e", f"webapp_artifact={release['artifact']}"]
    # Killed once the first batch switched (its record task starts), before the next batch.
    proc, seen = run_until(args, lambda line: "TASK [app : Record when the fleet was deployed to the release]" in line)
    kill(proc)
    first = hosts("app")[0]
    assert current(first) == STATE["r5"], seen[-3000:]
    rerun, load = under_load(*args)
    assert_ok(rerun)
    assert_no_failed_request(load)
    fleet_serves(STATE["r5"])


def test_an_interrupted_environment_change_is_finished_by_a_rerun():
    message = "Hello from an interrupted change"
    args = ["playbooks/deploy.yml", "-e", f"webapp_artifact={STATE['r5_artifact']}", "-e", json.dumps({"app_message": message})]
    proc, seen = run_until(args, lambda line: "TASK [app : Install the systemd units]" in line)
    kill(proc)
    assert "TASK [app : Write the instances' next environment and the app's next secret environment]" in seen  # written, not yet in place
    rerun, load = under_load(*args)
    assert_ok(rerun)
    assert_no_failed_request(load)
    for host, port in app_instances():
        assert get_from(host, f"http://{address(host)}:{port}/").body == message, f"{host}:{port}"
    back = playbook("playbooks/deploy.yml", "-e", f"webapp_artifact={STATE['r5_artifact']}")
    assert_ok(back)


def test_the_message_arrives_byte_for_byte_through_the_floating_address():
    """Non-ASCII text, quotes, %, $, a backtick and a backslash, as the inventory writes them."""
    message = 'Grüße aus Köln — ✓ "quoted" 100% $HOME `id` back\\slash'
    proc = playbook("playbooks/deploy.yml", "-e", f"webapp_artifact={STATE['r5_artifact']}",
                    "-e", json.dumps({"app_message": message}))
    assert_ok(proc)
    try:
        for _ in range(10):
            answer = get(client_url())
            assert answer.status == 200 and answer.body == message, answer
    finally:
        assert_ok(playbook("playbooks/deploy.yml", "-e", f"webapp_artifact={STATE['r5_artifact']}"))


def test_a_message_of_two_lines_is_refused_before_any_change():
    proc = playbook("playbooks/deploy.yml", "-e", f"webapp_artifact={STATE['r5_artifact']}",
                    "-e", json.dumps({"app_message": "one\ntwo"}))
    assert proc.returncode != 0
    assert "app_message must be one line" in proc.stdout, proc.stdout[-3000:]
    assert all(c["changed"] == 0 for c in recap(proc.stdout).values()), proc.stdout[-3000:]


def test_a_second_run_is_refused_while_the_first_holds_the_lock():
    release = new_release("r6")
    deploy, _ = run_until(["playbooks/deploy.yml", "-e", f"webapp_artifact={release['artifact']}"],
                          lambda line: "TASK [app : Copy the release artifact]" in line)
    try:
        rollback = playbook("playbooks/rollback.yml")
        assert rollback.returncode != 0
        assert "is being changed by another run" in rollback.stdout, rollback.stdout[-3000:]
        assert f"(pid {deploy.pid})" in rollback.stdout
        assert all(c["changed"] == 0 for c in recap(rollback.stdout).values()), rollback.stdout[-3000:]
    finally:
        out, _ = deploy.communicate(timeout=900)
    assert deploy.returncode == 0, out[-3000:]
    fleet_serves(STATE["r6"])


def test_a_lock_left_by_a_killed_run_is_taken_over(infra):
    first = hosts("app")[0]
    deploy, _ = run_until(["playbooks/deploy.yml", "-e", f"webapp_artifact={STATE['r5_artifact']}"],
                          lambda line: "TASK [app : Copy the release artifact]" in line)
    kill(deploy)
    lock = json.loads(infra(first).file("/run/webapp/release.lock").content_string)
    assert lock["pid"] == deploy.pid, lock
    proc, load = under_load("playbooks/rollback.yml", "-e", f"release={STATE['r5']}")
    assert_ok(proc)
    assert_no_failed_request(load)
    take_over = proc.stdout.split("TASK [app : Take over a lock its dead run left behind]", 1)[1].split("TASK [", 1)[0]
    assert f"ok: [{first}]" in take_over, proc.stdout[-3000:]
    assert not infra(first).file("/run/webapp/release.lock").exists
    fleet_serves(STATE["r5"])


def test_rollback_to_a_missing_release_fails_before_any_change():
    missing = "20000101T000000Z-missing"
    before = {h: current(h) for h in hosts("app")}
    proc = playbook("playbooks/rollback.yml", "-e", f"release={missing}")
    assert proc.returncode != 0
    assert f"release {missing} does not exist (complete) there" in proc.stdout
    assert all(c["changed"] == 0 for c in recap(proc.stdout).values()), proc.stdout[-3000:]
    assert {h: current(h) for h in hosts("app")} == before


def test_releases_playbook_lists_current_failed_and_rolled_back_releases():
    proc = playbook("playbooks/releases.yml")
    assert_ok(proc)
    assert f"{STATE['r5']} current" in proc.stdout
    assert f"{STATE['broken']} failed" in proc.stdout
    assert f"{STATE['r6']} rolled back by" in " ".join(proc.stdout.split())


def test_deploy_killed_between_copy_and_swap_leaves_a_complete_release_then_reruns(infra):
    release = new_release("r7")
    args = ["playbooks/deploy.yml", "-e", f"webapp_artifact={release['artifact']}"]
    proc, seen = run_until(args, lambda line: "TASK [app : Unpack the artifact's wheels]" in line)
    kill(proc)  # the controller dies after the copy, before the swap
    assert "Unpack the artifact's wheels" in seen, seen[-3000:]
    for host in hosts("app"):
        target = current(host)
        assert target == STATE["r5"], f"{host}: current moved to {target}"
        assert infra(host).file(f"{BASE}/releases/{target}/.complete").exists
        assert not infra(host).file(f"{BASE}/releases/{STATE['r7']}/.complete").exists
    fleet_serves(STATE["r5"])

    rerun = playbook(*args)
    assert_ok(rerun)
    fleet_serves(STATE["r7"])
    assert all(infra(h).file(f"{BASE}/releases/{STATE['r7']}/.complete").exists for h in hosts("app"))


def test_a_deploy_that_waited_behind_a_rollback_keeps_the_fleet_where_the_rollback_put_it():
    """Lock first, then read: a deploy that waits for a rollback's lock (app_lock_wait) reads the
    marks that rollback wrote, so it does not deploy again the release the rollback just left."""
    rollback, _ = run_until(["playbooks/rollback.yml"], lambda line: "TASK [app : Choose one release for every app host" in line)
    done: dict[str, str] = {}
    reader = threading.Thread(target=lambda: done.update(out=rollback.communicate(timeout=900)[0]))
    reader.start()  # reads the rollback's output while the deploy waits, so its pipe never fills
    try:
        deploy = playbook("playbooks/deploy.yml", "-e", f"webapp_artifact={STATE['r7_artifact']}", "-e", "app_lock_wait=600")
    finally:
        reader.join(timeout=900)
    assert rollback.returncode == 0, done.get("out", "")[-3000:]
    assert_ok(deploy)
    said = " ".join(deploy.stdout.split())
    assert "TASK [app : Take the release lock]" in deploy.stdout
    assert f"release {STATE['r7']} was rolled back by" in said, deploy.stdout[-3000:]
    fleet_serves(STATE["r5"])
    assert all(current(h) == STATE["r5"] for h in hosts("app"))
