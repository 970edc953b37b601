#!/usr/bin/env python3
"""Build the app's release artifact once, on the controller.

The app is any Python project with a pyproject.toml (`--source`, the inventory's app_source;
default: the bundled example in app/), whatever its build backend. The artifact is a tarball
of the app's wheel, the runner's wheel (runner/: it serves any WSGI app) and every dependency
wheel, for each target Python (`--python`, default the controller's), plus a manifest:

- a project with a lock (its requirements.txt with `--hash=` lines, or `--lock`) gets exactly
  the lock's wheels, each checked against the lock's hashes (pip's hash-checking mode);
- a project without one is resolved at build time, and the versions and hashes it resolved to
  are written into the manifest: every host installs that identical set.

Either way the set must hold what the app and the runner need, or the build stops naming both.
The project's tests (`--test-command`, default pytest when it has a tests/ folder) run against
the built wheels before anything is written; `--no-tests` records the release as untested.
Hosts install from the artifact with no package index. A build is keyed by a hash of its
inputs (the project's files, the runner's, the targets, the test command): building the same
sources again reuses the existing release, so a re-run of the deploy changes nothing.

Prints one JSON object on stdout: release_id, app, version, runner, artifact, artifact_sha256,
git_revision, build_time, python, pythons, tests, installer, resolved, changed.

`--artifact PATH` describes an artifact built before (by this script, on this or another
controller) instead of building: "build once, deploy the same artifact everywhere".
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

INDEX = "index.json"
ROOT = Path(__file__).resolve().parent.parent
# The example's runtime lock (pip-compile --generate-hashes, `./stack lock`), in the app's folder.
LOCK = Path("app") / "requirements.txt"
# The runner: this repository's WSGI server, installed into every release beside the app.
RUNNER = ROOT / "runner"
RUNNER_DIST = "stack-runner"
# The pip that installs a release on the hosts (into a venv made without pip: much faster).
INSTALLER = "pip"
# What a source walk leaves out when the project is not a git work tree.
_NOT_SOURCES = {".git", ".venv", "venv", "build", "dist", "__pycache__", ".pytest_cache", ".tox", ".mypy_cache",
                "node_modules"}
_PIP_NOISE = "is ignored: it is neither"


class BuildError(SystemExit):
    """A build that cannot go on: the message says what and which input."""


def run(cmd: list[str], cwd: Path) -> str:
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def git(project: Path, *args: str) -> str:
    try:
        return run(["git", *args], project)
    except (subprocess.CalledProcessError, FileNotFoundError, NotADirectoryError):
        return ""


def source_files(folder: Path) -> list[Path]:
    """The files of a project: git's view of its folder (tracked and untracked, not ignored),
    else every file outside build outputs and caches."""
    listed = git(folder, "ls-files", "-co", "--exclude-standard", "--", ".") if folder.is_dir() else ""
    if listed:
        names = [folder / n for n in listed.splitlines()]
    else:
        names = [p for p in folder.rglob("*")
                 if not (_NOT_SOURCES & set(p.relative_to(folder).parts))
                 and not any(part.endswith(".egg-info") for part in p.parts)]
    return sorted(p for p in names if p.is_file())


def source_hash(project: Path, source: Path | None = None, runner: Path = RUNNER,
                extra: tuple[str, ...] = ()) -> str:
    """The build's key: the app's files, the runner's, and `extra` (targets, test command)."""
    source = project / "app" if source is None else source
    h = hashlib.sha256()
    for label, folder in (("app", source), ("runner", runner)):
        for path in source_files(folder):
            h.update(f"{label}/{path.relative_to(folder)}".encode() + b"\0")
            h.update(path.read_bytes() + b"\0")
    for item in extra:
        h.update(b"extra\0" + item.encode() + b"\0")
    return h.hexdigest()


def build_key(project: Path, source: Path | None = None, pythons: list[str] | None = None, lock: Path | None = None,
              test_command: str | None = "", untested: bool = False) -> str:
    """The index key of a build: its inputs' hash; an untested build never stands in for a tested
    one (and the other way round). test_command "" means the source's default."""
    source = project / "app" if source is None else source
    command = default_test_command(source) if test_command == "" else (test_command or "")
    key = source_hash(project, source, extra=(",".join(pythons or [controller_python()]), str(lock or ""), command))
    return key + ("-untested" if untested else "")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_index(out: Path) -> dict[str, dict[str, str]]:
    try:
        return json.loads((out / INDEX).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def save_index(out: Path, index: dict[str, dict[str, str]]) -> None:
    with tempfile.NamedTemporaryFile("w", dir=out, prefix=INDEX, suffix=".tmp", delete=False) as tmp:
        tmp.write(json.dumps(index, indent=2, sort_keys=True) + "\n")
    os.chmod(tmp.name, 0o644)
    Path(tmp.name).replace(out / INDEX)


@contextlib.contextmanager
def builds_one_at_a_time(out: Path):
    """Hold the artifact folder's lock: two builds into one folder (two deploys from one
    controller) run one after the other, so neither loses the other's index entry or artifact."""
    with (out / ".build.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def normalize(name: str) -> str:
    """A distribution name as wheel file names and pip compare them (PEP 503, then '_')."""
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_name(path: Path) -> tuple[str, str]:
    """(normalized distribution, version) of a wheel file name."""
    dist, version = path.name.split("-")[:2]
    return normalize(dist), version


def pip(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", *args], cwd=cwd, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, check=False)


def pip_errors(done: subprocess.CompletedProcess[str]) -> str:
    return "\n".join(line for line in (done.stderr + done.stdout).splitlines() if _PIP_NOISE not in line).strip()


def pyproject(source: Path) -> dict:
    """The project's pyproject.toml, or a BuildError naming app_source."""
    path = source / "pyproject.toml"
    if not source.is_dir():
        raise BuildError(f"app_source {source} is not a folder: name a Python project's folder")
    if not path.is_file():
        raise BuildError(f"app_source {source} has no pyproject.toml: it is not a Python project the build can make a "
                         "wheel of (a setup.py-only project needs a pyproject.toml with its [build-system])")
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise BuildError(f"app_source {source}: pyproject.toml is not valid TOML: {err}") from None


def backend_present(requires: list[str]) -> bool:
    """Whether every build requirement is installed here already (then no isolated build environment,
    which would download the backend each build)."""
    from packaging.requirements import InvalidRequirement, Requirement

    for text in requires:
        try:
            req = Requirement(text)
            if not req.specifier.contains(metadata.version(req.name), prereleases=True):
                return False
        except (InvalidRequirement, metadata.PackageNotFoundError):
            return False
    return True


def build_wheel(project: Path, into: Path, label: str, isolated: bool) -> Path:
    """Build the project's own wheel into a new folder `into` from a copy of its source files only
    (a build/ folder left by an earlier build could bring files the sources no longer have); return it."""
    copy = into.with_name(into.name + "-src")
    for path in source_files(project):
        target = copy / path.relative_to(project)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    into.mkdir(parents=True)
    done = pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(into), *([] if isolated else ["--no-build-isolation"]),
               str(copy))
    wheels = sorted(into.glob("*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        raise BuildError(f"building the wheel of {label} {project} failed:\n{pip_errors(done)}")
    return wheels[0]


def locked_wheels(lock: Path, wheels: Path, pip_args: tuple[str, ...] = ()) -> None:
    """Fetch every wheel `lock` pins into `wheels`, in pip's hash-checking mode: a wheel whose
    hash is none of the lock's (or a requirement without a hash) stops the build, naming it. With
    `pip_args` for another Python (target_args): `pip download`, as `pip wheel` has no --python-version."""
    verb = ("download", "--dest") if "--python-version" in pip_args else ("wheel", "--wheel-dir")
    done = pip(verb[0], "--quiet", "--require-hashes", "--no-deps", "--only-binary=:all:", verb[1], str(wheels),
               "--requirement", str(lock), *pip_args)
    if done.returncode != 0:
        raise BuildError(f"the wheels of {lock} do not match the lock (pip's hash-checking mode):\n{pip_errors(done)}")


def has_hashes(lock: Path) -> bool:
    return lock.is_file() and "--hash=" in lock.read_text()


def target_args(python: str) -> list[str]:
    """pip's options that fetch wheels for another Python (same architecture, any glibc Debian has)."""
    machine = os.uname().machine
    platforms = [f"manylinux_2_{minor}_{machine}" for minor in range(17, 42)] + [
        f"manylinux2014_{machine}", f"linux_{machine}"]
    return ["--only-binary=:all:", "--python-version", python, "--implementation", "cp",
            *(f"--platform={p}" for p in platforms)]


def controller_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def resolve(top: list[Path], wheels: Path, python: str, lock: Path | None, app: str) -> dict[str, str]:
    """Fill `wheels` with every wheel `top` (the app's and the runner's wheels) needs for `python`
    and pip's own; return name -> version of the set. With a lock: the lock's wheels, hash-checked,
    and the set must satisfy both. Without: resolved now."""
    other = [] if python == controller_python() else target_args(python)
    wheels.mkdir(parents=True, exist_ok=True)
    for wheel in top:
        shutil.copy2(wheel, wheels / wheel.name)
    if lock is not None:
        locked_wheels(lock, wheels, tuple(other))
        # --isolated: only these wheels count, whatever find-links pip's configuration adds.
        check = pip("install", "--isolated", "--dry-run", "--quiet", "--ignore-installed", "--no-index",
                    "--find-links", str(wheels), *other, *map(str, top), INSTALLER)
        if check.returncode != 0:
            raise BuildError(
                f"the app's lock {lock} and what {app} and the runner ({RUNNER_DIST}) need do not fit together "
                f"for Python {python}: every requirement of both must be pinned in the lock, within both's "
                f"ranges:\n{pip_errors(check)}")
    else:
        # `download` (not `wheel`) for another Python: it never builds for the wrong interpreter.
        verb = ["download", "--dest"] if other else ["wheel", "--prefer-binary", "--wheel-dir"]
        done = pip(*verb, str(wheels), "--quiet", "--find-links", str(wheels), *other, *map(str, top), INSTALLER)
        if done.returncode != 0:
            errors = pip_errors(done)
            why = ("their requirements conflict" if "ResolutionImpossible" in errors or "conflict" in errors
                   else "a requirement could not be fetched as a wheel")
            raise BuildError(f"resolving what {app} and the runner ({RUNNER_DIST}) need for Python {python} failed: "
                             f"{why}:\n{errors}")
    found = {}
    for path in sorted(wheels.glob("*.whl")):
        name, version = wheel_name(path)
        if found.get(name, version) != version:
            raise BuildError(f"two versions of {name} in the set for Python {python}: {found[name]} and {version}")
        found[name] = version
    return found


def run_tests(command: str, source: Path, wheels: Path, top: list[Path], scratch: Path) -> None:
    """Install the built set into a scratch folder and run the project's tests against it (the
    controller's own test tools, such as pytest, stay reachable behind it)."""
    target = scratch / "site"
    done = pip("install", "--quiet", "--no-index", "--no-deps", "--target", str(target),
               *map(str, sorted(w for w in wheels.glob("*.whl") if not w.name.startswith(f"{INSTALLER}-"))))
    if done.returncode != 0:
        raise BuildError(f"installing the release to test it failed:\n{pip_errors(done)}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "PATH": os.pathsep.join([str(target / "bin"), str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
           "PYTHONDONTWRITEBYTECODE": "1"}
    tests = subprocess.run(["/bin/sh", "-c", command], cwd=source, env=env, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, check=False)
    if tests.returncode != 0:
        sys.stderr.write(tests.stdout[-4000:] + tests.stderr[-2000:])
        raise BuildError(f"the app's tests failed ({command!r} in {source}, exit {tests.returncode}): "
                         "this build is not shipped")


def default_test_command(source: Path) -> str:
    return "python -m pytest -q -p no:cacheprovider tests" if (source / "tests").is_dir() else ""


def describe(artifact: Path) -> dict[str, object]:
    """The JSON of an existing artifact, read from its manifest, checked wheel by wheel."""
    try:
        with tarfile.open(artifact, "r:gz") as tar:
            member = tar.extractfile("manifest.json")
            if member is None:
                raise KeyError("manifest.json")
            manifest = json.loads(member.read())
            names = {m.name for m in tar.getmembers() if m.isfile()}
    except (OSError, KeyError, tarfile.TarError, json.JSONDecodeError) as err:
        raise BuildError(f"{artifact} is not a release artifact: {err}") from None
    missing = sorted(f"wheels/{w}" for w in manifest.get("wheels", {}) if f"wheels/{w}" not in names)
    if missing or not manifest.get("release_id"):
        raise BuildError(f"{artifact} is incomplete: missing {missing or 'release_id'}")
    expected = f"webapp-{manifest['release_id']}.tar.gz"
    if artifact.name != expected:
        raise BuildError(f"{artifact} holds release {manifest['release_id']}: its name must be {expected}")
    manifest.setdefault("tests", "unknown")
    return {**manifest, "artifact": str(artifact), "artifact_sha256": sha256_file(artifact)}


def build_artifact(source: Path, out: Path, pythons: list[str], test_command: str | None,
                   lock: Path | None) -> dict[str, object]:
    """Build the release of `source` for `pythons` into `out`. test_command None: untested."""
    project = pyproject(source)
    now = datetime.now(timezone.utc)
    revision = git(source, "rev-parse", "--short=8", "HEAD") or "nogit"
    release_id = f"{now:%Y%m%dT%H%M%SZ}-{revision}"
    lock = lock if lock is not None else (source / "requirements.txt" if has_hashes(source / "requirements.txt") else None)
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        scratch = Path(tmp)
        stage = scratch / release_id
        stage.mkdir()
        requires = project.get("build-system", {}).get("requires", ["setuptools>=40.8.0"])
        app_wheel = build_wheel(source, scratch / "app", "app_source", isolated=not backend_present(requires))
        runner_wheel = build_wheel(RUNNER, scratch / "runner", "the runner", isolated=False)
        app, version = wheel_name(app_wheel)
        if app == RUNNER_DIST:
            raise BuildError(f"app_source {source} builds a distribution named {app}, the runner's own name")
        sets = {}
        for python in pythons:
            sets[python] = resolve([app_wheel, runner_wheel], stage / "wheels" / python, python, lock, app)
            if INSTALLER not in sets[python]:
                raise BuildError(f"no {INSTALLER} wheel in the set for Python {python}: the hosts install with it")
        tests = "skipped" if test_command is None else ("passed" if test_command else "none")
        if test_command:
            own = controller_python() if controller_python() in pythons else pythons[0]
            if own != controller_python():
                raise BuildError(f"the app's tests run on the controller's Python {controller_python()}: add it to "
                                 f"the targets ({', '.join(pythons)}) or build with --no-tests")
            run_tests(test_command, source, stage / "wheels" / own, [app_wheel, runner_wheel], scratch)
        wheel_files = sorted(p for p in (stage / "wheels").rglob("*.whl"))
        manifest = {
            "release_id": release_id,
            "app": app,
            "version": version,
            "runner": wheel_name(runner_wheel)[1],
            "git_revision": git(source, "rev-parse", "HEAD") or "unknown",
            "git_dirty": bool(git(source, "status", "--porcelain", "--", ".")),
            "build_time": now.isoformat(timespec="seconds"),
            "python": pythons[0],
            "pythons": pythons,
            "tests": tests,
            "test_command": test_command or "",
            # The pip wheel's file name (pure Python: the same in every target's folder).
            "installer": next(w.name for w in wheel_files if wheel_name(w) == (INSTALLER, sets[pythons[0]][INSTALLER])),
            "resolved": f"lock {lock.name}" if lock else "at build time",
            "requirements": sets,
            "wheels": {str(w.relative_to(stage / "wheels")): sha256_file(w) for w in wheel_files},
        }
        (stage / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        artifact = out / f"webapp-{release_id}.tar.gz"
        partial = Path(tmp) / artifact.name
        with tarfile.open(partial, "w:gz") as tar:
            tar.add(stage / "manifest.json", arcname="manifest.json")
            tar.add(stage / "wheels", arcname="wheels")
        partial.replace(artifact)
    return {**manifest, "artifact": str(artifact), "artifact_sha256": sha256_file(artifact)}


def prune(out: Path, index: dict[str, dict[str, str]], keep: int) -> None:
    entries = sorted(index.items(), key=lambda kv: kv[1]["release_id"])
    for key, entry in entries[:-keep] if keep > 0 else []:
        Path(entry["artifact"]).unlink(missing_ok=True)
        del index[key]


def summary(entry: dict[str, object]) -> dict[str, object]:
    """What the plays read: every manifest field but the wheel lists, the lists as they are."""
    return {k: v for k, v in entry.items() if k != "wheels"}


def parse_pythons(text: str) -> list[str]:
    pythons = [p for p in re.split(r"[\s,]+", text.strip()) if p] or [controller_python()]
    bad = [p for p in pythons if not re.fullmatch(r"3\.[0-9]{1,2}", p)]
    if bad:
        raise BuildError(f"app_pythons must list Python versions such as 3.11 or 3.13, got {bad}")
    return sorted(set(pythons), key=pythons.index)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=ROOT, help="repository whose app/ is the default source")
    parser.add_argument("--source", type=Path, help="the app's project folder (default: <project>/app)")
    parser.add_argument("--lock", type=Path, help="the app's hash lock (default: the project's requirements.txt "
                                                  "when it has --hash= lines; else resolved at build time)")
    parser.add_argument("--python", default="", help="target Pythons, comma separated (default: the controller's)")
    parser.add_argument("--test-command", default=None, help="the app's tests (default: pytest when tests/ exists)")
    parser.add_argument("--out", type=Path, default=None, help="artifact folder (default: $WEBAPP_RELEASES_DIR, "
                                                               "else <project>/build/releases)")
    parser.add_argument("--no-tests", action="store_true", help="skip the app's tests (never for a release)")
    parser.add_argument("--force", action="store_true", help="build a new release even if the sources are unchanged")
    parser.add_argument("--keep", type=int, default=10, help="artifacts kept on the controller")
    parser.add_argument("--artifact", type=Path, help="describe this existing artifact instead of building")
    args = parser.parse_args()
    if args.artifact:
        entry = describe(args.artifact.resolve())
        print(json.dumps(summary(entry) | {"changed": False}))
        return
    project = args.project.resolve()
    source = (args.source if args.source is not None else project / "app")
    source = (source if source.is_absolute() else Path.cwd() / source).resolve()
    lock = args.lock.resolve() if args.lock else None
    pythons = parse_pythons(args.python)
    test_command = None if args.no_tests else (args.test_command if args.test_command else default_test_command(source))
    out = (args.out or Path(os.environ.get("WEBAPP_RELEASES_DIR") or project / "build" / "releases")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    pyproject(source)  # a folder without pyproject.toml is refused before anything is hashed

    key = build_key(project, source, pythons, lock, test_command, untested=args.no_tests)
    with builds_one_at_a_time(out):
        index = load_index(out)
        entry = index.get(key)
        if entry and not args.force and "tests" in entry and Path(str(entry["artifact"])).is_file() \
                and sha256_file(Path(str(entry["artifact"]))) == entry["artifact_sha256"]:
            print(json.dumps({**entry, "changed": False}))
            return
        result = summary(build_artifact(source, out, pythons, test_command, lock))
        index[key] = result
        prune(out, index, args.keep)
        save_index(out, index)
    print(json.dumps({**result, "changed": True}))


if __name__ == "__main__":
    os.umask(0o022)
    main()
