"""Releases on the lab, in order: deploy, redeploy, a failing release (caught by the
pre-check, then by the switch's automatic rollback), rollback, a refused rollback, the
releases list, and a deploy interrupted between copy and swap.

The tests run in file order and each starts from the state the one before left. Load goes
only to the lab's load balancer, bounded in time and count (bench/loadgen.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import INVENTORY, PROJECT, address, app_instances, client_url, hosts

sys.path.insert(0, str(PROJECT / "bench"))
import loadgen  # noqa: E402

ENV = {
    **os.environ,
    "ANSIBLE_CONFIG": str(PROJECT / "ansible.cfg"),
    "ANSIBLE_NOCOLOR": "1",
    "ANSIBLE_FORCE_COLOR": "0",
    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
}
# A failing release is given up on after this many health probes (default 30).
QUICK_FAIL = ["-e", "app_health_retries=6"]
STATE: dict[str, str] = {}


def playbook(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ansible-playbook", "-i", INVENTORY, *args],
        cwd=PROJECT, env=ENV, capture_output=True, text=True, timeout=1200,
    )


def recap(output: str) -> dict[str, dict[str, int]]:
    found = {}
    for name, counts in re.findall(r"^(\S+)\s+: (ok=.*)$", output, re.M):
        found[name] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counts)}
    return found


def build(*extra: str, project: Path = PROJECT, out: Path | None = None) -> dict[str, str]:
    cmd = [sys.executable, str(PROJECT / "scripts" / "build_release.py"), "--project", str(project), *extra]
    if out is not None:
        cmd += ["--out", str(out)]
    return json.loads(subprocess.run(cmd, env=ENV, capture_output=True, text=True, check=True).stdout)


def health_release(host: str, port: int, infra) -> str:
    """The release an instance reports, asked on the host itself (the firewall may keep
    app ports closed to the controller)."""
    probe = (
        "import json,urllib.request;"
        f"print(json.load(urllib.request.urlopen('http://{address(host)}:{port}/health',timeout=5))['release'])"
    )
    result = infra(host).run(f'python3 -c "{probe}"')
    return result.stdout.strip() if result.rc == 0 else f"<no answer: {result.stderr.strip()[-200:]}>"


def releases_of_instances(infra) -> dict[str, str]:
    return {f"{h}:{p}": health_release(h, p, infra) for h, p in app_instances()}


def current(host: str, infra) -> str:
    return Path(infra(host).file("/opt/webapp/current").linked_to).name


def lb_url() -> str:
    return client_url()  # the floating address when the load balancers share one; https with a certificate


def under_load(*args: str) -> tuple[subprocess.CompletedProcess[str], loadgen.Result]:
    load = loadgen.Load(lb_url(), workers=2, max_seconds=900, max_requests=2_000_000).start()
    time.sleep(1)
    try:
        proc = playbook(*args)
    finally:
        time.sleep(1)
        result = load.stop()
    return proc, result


def assert_ok(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]


@pytest.fixture(scope="module")
def broken_artifact(tmp_path_factory) -> str:
    """A release whose /health answers 503: the app's sources copied and patched, built
    without its tests (they would refuse it), so only the deploy's checks stand in its way."""
    src = tmp_path_factory.mktemp("broken")
    shutil.copytree(PROJECT / "app", src / "app", ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    shutil.copy(PROJECT / "requirements.txt", src / "requirements.txt")
    module = src / "app" / "src" / "webapp" / "app.py"
    healthy = 'return jsonify(status="ok", version=config.version, release=config.release)'
    text = module.read_text()
    assert healthy in text, "the health endpoint changed: update this patch"
    module.write_text(text.replace(healthy, 'return jsonify(status="broken", release=config.release), 503'))
    release = build("--no-tests", project=src, out=src / "out")
    assert release["tests"] == "skipped"
    STATE["broken"] = release["release_id"]
    return release["artifact"]


def test_every_instance_runs_the_converged_release(infra):
    found = releases_of_instances(infra)
    assert len(set(found.values())) == 1, found
    STATE["r1"] = next(iter(found.values()))
    assert all(current(h, infra) == STATE["r1"] for h in hosts("app"))


def test_rolling_deploy_of_release_2_fails_no_request(infra):
    release = build("--force")
    assert release["release_id"] != STATE["r1"]
    STATE["r2"] = release["release_id"]
    STATE["r2_artifact"] = release["artifact"]
    proc, load = under_load("playbooks/deploy.yml", "-e", f"webapp_artifact={release['artifact']}")
    assert_ok(proc)
    assert load.requests > 100, load.summary()
    assert load.failures == [], load.summary()
    assert set(releases_of_instances(infra).values()) == {STATE["r2"]}


def test_redeploy_of_the_same_release_changes_nothing():
    proc = playbook("playbooks/deploy.yml", "-e", f"webapp_artifact={STATE['r2_artifact']}")
    assert_ok(proc)
    changes = {h: c["changed"] for h, c in recap(proc.stdout).items() if h in hosts("app")}
    assert changes == {h: 0 for h in hosts("app")}, proc.stdout[-3000:]


def test_untested_release_is_refused_before_any_change(broken_artifact, infra):
    proc = playbook("playbooks/deploy.yml", "-e", f"webapp_artifact={broken_artifact}")
    assert proc.returncode != 0
    assert "was built without passing the app's tests" in proc.stdout
    assert all(not infra(h).file(f"/opt/webapp/releases/{STATE['broken']}").exists for h in hosts("app"))


def test_unhealthy_release_is_stopped_by_the_precheck(broken_artifact, infra):
    proc = playbook("playbooks/deploy.yml", "-e", f"webapp_artifact={broken_artifact}",
                    "-e", "app_allow_untested=true", *QUICK_FAIL)
    assert proc.returncode != 0
    assert f"Release {STATE['broken']} did not answer its health endpoint on 127.0.0.1" in proc.stdout
    assert set(releases_of_instances(infra).values()) == {STATE["r2"]}
    first, *rest = hosts("app")
    assert current(first, infra) == STATE["r2"]
    assert infra(first).file(f"/opt/webapp/releases/{STATE['broken']}/.failed").exists
    assert all(not infra(h).file(f"/opt/webapp/releases/{STATE['broken']}").exists for h in rest), \
        "hosts after the failing one must not be touched"


def test_unhealthy_release_is_rolled_back_automatically(broken_artifact, infra):
    proc = playbook("playbooks/deploy.yml", "-e", f"webapp_artifact={broken_artifact}",
                    "-e", "app_allow_untested=true", "-e", "app_precheck=false", *QUICK_FAIL)
    assert proc.returncode != 0, "the play must fail"
    first, *rest = hosts("app")
    assert f"Release {STATE['broken']} failed on {first}; current is back at {STATE['r2']}" in proc.stdout
    assert "Its journal:" in proc.stdout
    instances = releases_of_instances(infra)
    assert STATE["broken"] not in instances.values(), instances
    assert set(instances.values()) == {STATE["r2"]}
    assert all(current(h, infra) == STATE["r2"] for h in hosts("app"))
    assert all(not infra(h).file(f"/opt/webapp/releases/{STATE['broken']}").exists for h in rest)


def test_rollback_returns_every_instance_to_release_1_failing_no_request(infra):
    proc, load = under_load("playbooks/rollback.yml")
    assert_ok(proc)
    assert load.requests > 100, load.summary()
    assert load.failures == [], load.summary()
    assert set(releases_of_instances(infra).values()) == {STATE["r1"]}
    assert all(current(h, infra) == STATE["r1"] for h in hosts("app"))


def test_rollback_to_a_missing_release_fails_before_any_change(infra):
    missing = "20000101T000000Z-missing"
    before = {h: current(h, infra) for h in hosts("app")}
    proc = playbook("playbooks/rollback.yml", "-e", f"release={missing}")
    assert proc.returncode != 0
    assert f"Release {missing} does not exist (complete) on" in proc.stdout
    assert all(c["changed"] == 0 for c in recap(proc.stdout).values()), proc.stdout[-3000:]
    assert {h: current(h, infra) for h in hosts("app")} == before
    assert set(releases_of_instances(infra).values()) == {STATE["r1"]}


def test_releases_playbook_lists_current_and_failed_releases():
    proc = playbook("playbooks/releases.yml")
    assert_ok(proc)
    assert f"{STATE['r1']} current" in proc.stdout
    assert STATE["r2"] in proc.stdout
    assert f"{STATE['broken']} failed" in proc.stdout


def test_deploy_killed_between_copy_and_swap_leaves_a_complete_release_then_reruns(infra):
    release = build("--force")
    STATE["r3"] = release["release_id"]
    args = ["ansible-playbook", "-i", INVENTORY, "playbooks/deploy.yml", "-e", f"webapp_artifact={release['artifact']}"]
    proc = subprocess.Popen(args, cwd=PROJECT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    seen = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 600
    for line in proc.stdout:  # bounded: the playbook ends, or the deadline passes
        seen.append(line)
        if "TASK [app : Unpack the artifact's wheels]" in line or time.monotonic() > deadline:
            break
    os.killpg(proc.pid, signal.SIGKILL)  # the controller dies after the copy, before the swap
    proc.wait(timeout=30)
    assert any("Unpack the artifact's wheels" in line for line in seen), "".join(seen[-40:])
    for host in hosts("app"):
        target = current(host, infra)
        assert target == STATE["r1"], f"{host}: current moved to {target}"
        assert infra(host).file(f"/opt/webapp/releases/{target}/.complete").exists
        assert not infra(host).file(f"/opt/webapp/releases/{STATE['r3']}/.complete").exists
    assert set(releases_of_instances(infra).values()) == {STATE["r1"]}

    rerun = playbook("playbooks/deploy.yml", "-e", f"webapp_artifact={release['artifact']}")
    assert_ok(rerun)
    assert set(releases_of_instances(infra).values()) == {STATE["r3"]}
    assert all(infra(h).file(f"/opt/webapp/releases/{STATE['r3']}/.complete").exists for h in hosts("app"))
