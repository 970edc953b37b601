"""The build of an operator's app (scripts/build_release.py), end to end on small real projects:
the artifact holds the app's wheel, the runner's and every dependency for each target Python,
the project's tests run against them, the same sources give the same release, and each bad
input is refused naming it. The dependency wheels come from a wheelhouse fetched once from the
index pip is configured with; the builds themselves then run with no index."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import build_release  # noqa: E402

BUILD = ROOT / "scripts" / "build_release.py"


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory) -> Path:
    """The runner's dependencies and pip, as wheels (pure Python: any target Python takes them)."""
    folder = tmp_path_factory.mktemp("wheelhouse")
    runner = build_release.pyproject(build_release.RUNNER)["project"]["dependencies"]
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--dest", str(folder),
                    *runner, "pip"], check=True)
    return folder


def project(folder: Path, name: str = "tinyapp", requires: tuple[str, ...] = (), test: str = "assert tinyapp.ANSWER == 42",
            lock: str | None = None) -> Path:
    """A setuptools project with a module, a tests/ folder and, when given, a lock."""
    src = folder / name
    (src / "tests").mkdir(parents=True)
    (src / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "{name}"
        version = "2.0.1"
        dependencies = {json.dumps(list(requires))}
        [tool.setuptools]
        py-modules = ["{name}"]
        """))
    (src / f"{name}.py").write_text("ANSWER = 42\n\ndef application(environ, start_response):\n"
                                    "    start_response('200 OK', [])\n    return [b'ok']\n")
    (src / "tests" / "test_it.py").write_text(f"import {name}\n\n\ndef test_it():\n    {test}\n")
    if lock is not None:
        (src / "requirements.txt").write_text(lock)
    return src


def build(source: Path, out: Path, wheelhouse: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheelhouse),
           "PIP_DISABLE_PIP_VERSION_CHECK": "1", "HOME": str(out)}
    return subprocess.run([sys.executable, str(BUILD), "--source", str(source), "--out", str(out), *extra],
                          capture_output=True, text=True, env=env, check=False)


def built(proc: subprocess.CompletedProcess[str]) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_an_app_without_a_lock_is_resolved_and_its_set_recorded(tmp_path, wheelhouse):
    release = built(build(project(tmp_path, requires=("waitress>=3",)), tmp_path / "out", wheelhouse))
    assert (release["app"], release["version"], release["tests"], release["resolved"]) == (
        "tinyapp", "2.0.1", "passed", "at build time")
    py = release["python"]
    assert {"tinyapp", "stack-runner", "waitress", "prometheus-client", "pip"} <= set(release["requirements"][py])
    with tarfile.open(release["artifact"]) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())
        names = {m.name for m in tar.getmembers() if m.isfile()}
    assert {f"wheels/{w}" for w in manifest["wheels"]} <= names
    assert any(w.startswith(f"{py}/tinyapp-2.0.1-") for w in manifest["wheels"])
    assert release["installer"].startswith("pip-") and release["installer"].endswith(".whl")


def test_the_same_sources_give_the_same_release_and_a_change_a_new_one(tmp_path, wheelhouse):
    source = project(tmp_path)
    first = built(build(source, tmp_path / "out", wheelhouse))
    again = built(build(source, tmp_path / "out", wheelhouse))
    assert again["release_id"] == first["release_id"] and again["changed"] is False
    (source / "tinyapp.py").write_text((source / "tinyapp.py").read_text() + "# changed\n")
    changed = built(build(source, tmp_path / "out", wheelhouse))
    assert changed["changed"] is True and changed["artifact"] != first["artifact"]


def test_failing_tests_stop_the_build(tmp_path, wheelhouse):
    proc = build(project(tmp_path, test="assert tinyapp.ANSWER == 41"), tmp_path / "out", wheelhouse)
    assert proc.returncode != 0 and "the app's tests failed" in proc.stderr, proc.stderr[-2000:]
    assert not list((tmp_path / "out").glob("webapp-*.tar.gz"))


def test_an_untested_build_says_so(tmp_path, wheelhouse):
    release = built(build(project(tmp_path, test="assert False"), tmp_path / "out", wheelhouse, "--no-tests"))
    assert release["tests"] == "skipped"


def test_a_conflict_between_the_app_and_the_runner_names_both(tmp_path, wheelhouse):
    proc = build(project(tmp_path, requires=("waitress<2",)), tmp_path / "out", wheelhouse)
    assert proc.returncode != 0, proc.stdout
    for word in ("tinyapp", "stack-runner", "waitress"):
        assert word in proc.stderr, proc.stderr[-3000:]


def test_a_lock_that_lacks_what_the_runner_needs_names_the_lock_and_both(tmp_path, wheelhouse):
    pip = next(wheelhouse.glob("pip-*.whl"))
    version = pip.name.split("-")[1]
    lock = f"pip=={version} --hash=sha256:{build_release.sha256_file(pip)}\n"
    proc = build(project(tmp_path, lock=lock), tmp_path / "out", wheelhouse)
    assert proc.returncode != 0
    for word in ("requirements.txt", "tinyapp", "stack-runner", "waitress"):
        assert word in proc.stderr, proc.stderr[-3000:]


def test_a_source_without_pyproject_is_refused_naming_app_source(tmp_path, wheelhouse):
    (tmp_path / "notaproject").mkdir()
    proc = build(tmp_path / "notaproject", tmp_path / "out", wheelhouse)
    assert proc.returncode != 0 and "app_source" in proc.stderr and "no pyproject.toml" in proc.stderr, proc.stderr


def test_one_artifact_for_two_pythons(tmp_path, wheelhouse):
    py = build_release.controller_python()
    other = "3.13" if py != "3.13" else "3.11"
    release = built(build(project(tmp_path, requires=("waitress>=3",)), tmp_path / "out", wheelhouse,
                          "--python", f"{py},{other}"))
    assert release["pythons"] == [py, other]
    assert set(release["requirements"][other]) == set(release["requirements"][py])
    with tarfile.open(release["artifact"]) as tar:
        names = {m.name for m in tar.getmembers()}
    assert any(n.startswith(f"wheels/{other}/waitress-") for n in names), sorted(names)


def test_a_python_that_is_no_version_is_refused():
    with pytest.raises(SystemExit, match="app_pythons"):
        build_release.parse_pythons("3.11, python3")
