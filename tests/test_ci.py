"""The GitHub workflows' own checks, run here on hostile and valid input: the rollback's
release id, the promoted artifact's checksum and its choice, and the actions' pins."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHECK = ROOT / ".github" / "actions" / "ansible-run" / "check-release-id"
ARTIFACT = ROOT / ".github" / "scripts" / "artifact.py"
GITHUB = sorted((ROOT / ".github").rglob("*.yml"))
sys.path.insert(0, str(ARTIFACT.parent))
import artifact  # noqa: E402  (.github/scripts is not a package)

VALID_IDS = ["20260101T000000Z-abc1234", "20261128T103308Z-80153d2e", "20260101T000000Z-nogit"]
HOSTILE_IDS = [
    "",
    " ",
    "20260101T000000Z-abc1234\n",
    "20260101T000000Z-abc1234\n-e x=y --tags z",
    "x\n20260101T000000Z-abc1234",
    "20260101T000000Z-abc1234 -e x=y",
    " 20260101T000000Z-abc1234",
    "20260101T000000Z-abc1234\t",
    "--",
    "--tags",
    "-e",
    "-e release=20260101T000000Z-abc1234",
    "20260101T000000Z-abc1234;id",
    "20260101T000000Z-abc1234&&id",
    "20260101T000000Z-abc1234|id",
    "$(id)",
    "`id`",
    "20260101T000000Z-abc1234$(id)",
    "20260101T000000Z-abc1234'",
    '20260101T000000Z-abc1234"',
    "20260101T000000Z-*",
    "../../etc/passwd",
    "20260101T000000Z-ABC1234",
    "2026-01-01T000000Z-abc1234",
    "20260101T000000Z-",
    "20260101T000000Z-abc1234\r",
    "２0260101T000000Z-abc1234",
]


def check(value: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CHECK), value], capture_output=True, text=True)


@pytest.mark.parametrize("value", HOSTILE_IDS, ids=repr)
def test_rollback_refuses_what_is_not_one_release_id(value):
    proc = check(value)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    # One annotation line, whatever the value held (a newline cannot start a workflow command).
    assert proc.stdout.startswith("::error::") and proc.stdout.count("\n") == 1, proc.stdout


@pytest.mark.parametrize("value", VALID_IDS)
def test_rollback_accepts_a_release_id(value):
    proc = check(value)
    assert proc.returncode == 0 and proc.stdout == "", proc.stdout + proc.stderr


def test_rollback_check_takes_exactly_one_argument():
    assert subprocess.run([str(CHECK)], capture_output=True).returncode == 2
    assert subprocess.run([str(CHECK), VALID_IDS[0], "-e"], capture_output=True).returncode == 2


def test_release_id_pattern_is_the_app_roles():
    script = re.search(r"\[\[ \$release =~ (\S+) \]\]", CHECK.read_text()).group(1)
    preflight = (ROOT / "roles" / "app" / "tasks" / "preflight.yml").read_text()
    assert f"release_id is match('{script}')" in preflight


def test_the_release_reaches_ansible_as_one_argument_after_the_check():
    action = (CHECK.parent / "action.yml").read_text()
    run = next(s["run"] for s in yaml.safe_load(action)["runs"]["steps"] if s.get("name") == "Run the playbook")
    assert '"$GITHUB_ACTION_PATH/check-release-id" "$RELEASE"' in run
    assert run.index("check-release-id") < run.index('args+=(-e "release=$RELEASE")')
    assert '.venv/bin/ansible-playbook "${args[@]}"' in run
    assert "extra-args" not in action and "EXTRA_ARGS" not in action


def uses_lines() -> list[tuple[str, str]]:
    return [(path.relative_to(ROOT).as_posix(), line.strip()) for path in GITHUB
            for line in path.read_text().splitlines() if re.match(r"\s*(- )?uses:", line)]


@pytest.mark.parametrize(("path", "line"), uses_lines(), ids=lambda v: v if "/" in v and " " not in v else None)
def test_actions_are_pinned_to_a_commit_with_its_tag(path, line):
    assert re.fullmatch(r"(- )?uses: (\$/\S+|[\w.-]+/[\w.-]+@[0-9a-f]{40}  # v\d+(\.\d+)*)", line), f"{path}: {line}"


def test_checkouts_do_not_persist_credentials():
    for path in GITHUB:
        for job in (yaml.safe_load(path.read_text()).get("jobs") or {}).values():
            for step in job.get("steps", []):
                if step.get("uses", "").startswith("actions/checkout@"):
                    assert step.get("with", {}).get("persist-credentials") is False, path


def test_promotion_reads_the_branch_staging_deploys():
    workflow = yaml.safe_load((ROOT / artifact.STAGING_WORKFLOW).read_text())
    assert workflow["on"]["push"]["branches"] == [artifact.STAGING_BRANCH]


def make_artifact(folder: Path, content: bytes = b"release", name: str = "webapp-20260101T000000Z-abc1234.tar.gz",
                  recorded: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(content)
    digest = recorded or hashlib.sha256(content).hexdigest()
    (folder / f"{name}.sha256").write_text(f"{digest}  {name}\n")
    return path


def verify(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ARTIFACT), "verify", str(folder), *args],
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})


def test_verify_accepts_the_artifact_its_checksum_names(tmp_path):
    path = make_artifact(tmp_path)
    proc = verify(tmp_path, "--sha256", hashlib.sha256(b"release").hexdigest())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"artifact={path}" in proc.stdout.splitlines()


def test_verify_refuses_a_missing_artifact(tmp_path):
    proc = verify(tmp_path / "nothing")
    assert proc.returncode == 1 and "found none" in proc.stdout, proc.stdout


def test_verify_refuses_an_artifact_changed_after_its_checksum(tmp_path):
    path = make_artifact(tmp_path)
    path.write_bytes(b"releasE")
    proc = verify(tmp_path)
    assert proc.returncode == 1 and "SHA-256" in proc.stdout, proc.stdout


def test_verify_refuses_an_artifact_other_than_the_expected_one(tmp_path):
    make_artifact(tmp_path)
    proc = verify(tmp_path, "--sha256", "0" * 64)
    assert proc.returncode == 1 and "expected " + "0" * 64 in proc.stdout, proc.stdout


def test_verify_refuses_an_artifact_without_its_checksum_file(tmp_path):
    make_artifact(tmp_path).with_name("webapp-20260101T000000Z-abc1234.tar.gz.sha256").unlink()
    proc = verify(tmp_path)
    assert proc.returncode == 1 and "missing" in proc.stdout, proc.stdout


def test_verify_refuses_two_artifacts(tmp_path):
    make_artifact(tmp_path)
    make_artifact(tmp_path, name="webapp-20260102T000000Z-abc1234.tar.gz")
    assert verify(tmp_path).returncode == 1


def keep(tmp_path: Path, index: dict) -> subprocess.CompletedProcess[str]:
    releases = tmp_path / "releases"
    releases.mkdir(exist_ok=True)
    (releases / "index.json").write_text(json.dumps(index))
    return subprocess.run([sys.executable, str(ARTIFACT), "keep", str(tmp_path / "kept"), "--releases", str(releases)],
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})


def entry(path: Path, tests: str = "passed") -> dict:
    return {"release_id": path.name[len("webapp-"):-len(".tar.gz")], "artifact": str(path), "tests": tests,
            "artifact_sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def test_keep_hands_over_the_build_of_these_sources_and_verify_accepts_it(tmp_path):
    path = make_artifact(tmp_path / "releases")
    key = artifact.build_release.build_key(ROOT)
    proc = keep(tmp_path, {key: entry(path), key + "-untested": entry(path, "skipped")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"name=webapp-release-{key}" in proc.stdout.splitlines()
    assert verify(tmp_path / "kept", "--sha256", entry(path)["artifact_sha256"]).returncode == 0


def test_keep_refuses_when_these_sources_have_no_tested_build(tmp_path):
    path = make_artifact(tmp_path / "releases")
    key = artifact.build_release.build_key(ROOT)
    proc = keep(tmp_path, {key + "-untested": entry(path, "skipped"), "0" * 64: entry(path)})
    assert proc.returncode == 1 and "no tested build" in proc.stdout, proc.stdout


def test_keep_refuses_an_artifact_changed_since_its_build(tmp_path):
    path = make_artifact(tmp_path / "releases")
    recorded = entry(path)
    path.write_bytes(b"changed")
    proc = keep(tmp_path, {artifact.build_release.build_key(ROOT): recorded})
    assert proc.returncode == 1 and "differs" in proc.stdout, proc.stdout


def staged(artifact_id: int, run_id: int, created: str, expired: bool = False) -> dict:
    return {"id": artifact_id, "expired": expired, "created_at": created, "workflow_run": {"id": run_id}}


GOOD_RUN = {"path": ".github/workflows/deploy-staging.yml", "event": "push", "head_branch": "feature", "conclusion": "success"}


@pytest.mark.parametrize("run", [
    {**GOOD_RUN, "conclusion": "failure"},
    {**GOOD_RUN, "path": ".github/workflows/ci.yml"},
    {**GOOD_RUN, "event": "pull_request"},
    {**GOOD_RUN, "head_branch": "topic"},
], ids=["failed", "other-workflow", "pull-request", "other-branch"])
def test_promotion_takes_only_what_a_successful_staging_deploy_uploaded(run):
    assert artifact.choose([staged(1, 10, "2026-01-02T00:00:00Z")], {10: run}) is None


def test_promotion_takes_the_newest_unexpired_staging_artifact():
    artifacts = [staged(1, 10, "2026-01-01T00:00:00Z"), staged(2, 20, "2026-01-03T00:00:00Z", expired=True),
                 staged(3, 30, "2026-01-02T00:00:00Z")]
    chosen = artifact.choose(artifacts, {10: GOOD_RUN, 20: GOOD_RUN, 30: GOOD_RUN})
    assert chosen is not None and chosen["id"] == 3
