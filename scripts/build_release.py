#!/usr/bin/env python3
"""Build the app's release artifact once, on the controller.

The artifact is a tarball of the app wheel and every dependency wheel (each the version
and one of the hashes of app/requirements.txt, the app's lock: pip refuses any other wheel),
plus a manifest; hosts install from it with no package index. A build is keyed by a hash of its sources: building the same sources again
reuses the existing release, so a re-run of the deploy changes nothing.

Prints one JSON object on stdout: release_id, artifact, artifact_sha256, version,
git_revision, build_time, python, tests, installer (the pip wheel the hosts install with), changed.

`--artifact PATH` describes an artifact built before (by this script, on this or another
controller) instead of building: "build once, deploy the same artifact everywhere".
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from datetime import datetime, timezone
from pathlib import Path

INDEX = "index.json"
# The app's runtime lock (pip-compile --generate-hashes, `./stack lock`), in the app's folder.
LOCK = Path("app") / "requirements.txt"


def run(cmd: list[str], cwd: Path) -> str:
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def git(project: Path, *args: str) -> str:
    try:
        return run(["git", *args], project)
    except (subprocess.CalledProcessError, FileNotFoundError):
        return ""


def source_files(project: Path) -> list[Path]:
    listed = git(project, "ls-files", "-co", "--exclude-standard", "--", "app")
    if listed:
        names = [project / n for n in listed.splitlines()]
    else:
        names = [p for p in (project / "app").rglob("*") if "__pycache__" not in p.parts]
    return sorted(p for p in names if p.is_file())


def source_hash(project: Path) -> str:
    h = hashlib.sha256()
    for path in source_files(project):
        h.update(str(path.relative_to(project)).encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


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
    tmp = out / (INDEX + ".tmp")
    tmp.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    tmp.replace(out / INDEX)


class AppTests:
    """The app's tests, run in the background while the wheels build; wait() stops a failed build.

    Their output goes to temporary files, not pipes, so a chatty run never blocks on a full pipe.
    """

    def __init__(self, project: Path) -> None:
        self.stdout = tempfile.TemporaryFile()
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "app/tests"],
            cwd=project, stdin=subprocess.DEVNULL, stdout=self.stdout, stderr=self.stderr,
        )

    def output(self, stream) -> str:
        stream.seek(0)
        return stream.read().decode(errors="replace")

    def wait(self) -> None:
        try:
            if self.proc.wait() != 0:
                sys.stderr.write(self.output(self.stdout)[-4000:] + self.output(self.stderr)[-2000:])
                raise SystemExit("the app's tests failed: this build is not shipped")
        finally:
            self.close()

    def close(self) -> None:
        """Stops the tests if they still run (the build failed first) and drops their output."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stdout.close()
        self.stderr.close()


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
        raise SystemExit(f"{artifact} is not a release artifact: {err}") from None
    missing = sorted(f"wheels/{w}" for w in manifest.get("wheels", {}) if f"wheels/{w}" not in names)
    if missing or not manifest.get("release_id"):
        raise SystemExit(f"{artifact} is incomplete: missing {missing or 'release_id'}")
    expected = f"webapp-{manifest['release_id']}.tar.gz"
    if artifact.name != expected:
        raise SystemExit(f"{artifact} holds release {manifest['release_id']}: its name must be {expected}")
    manifest.setdefault("tests", "unknown")
    return {**manifest, "artifact": str(artifact), "artifact_sha256": sha256_file(artifact)}


def build(project: Path, out: Path, tests: bool) -> dict[str, object]:
    # The tests run while the wheels build; nothing is written to out until they have passed.
    running = AppTests(project) if tests else None
    try:
        return build_artifact(project, out, tests, running)
    except subprocess.CalledProcessError:
        if running:
            running.wait()  # failed tests are reported first, as when they ran before the build
        raise
    finally:
        if running:
            running.close()


def locked_wheels(lock: Path, wheels: Path, pip_args: tuple[str, ...] = ()) -> None:
    """Fetch every wheel `lock` pins into `wheels`, in pip's hash-checking mode: a wheel whose
    hash is none of the lock's (or a requirement without a hash) stops the build, naming it."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--require-hashes", "--no-deps", "--only-binary=:all:",
         "--wheel-dir", str(wheels), "--requirement", str(lock), *pip_args],
        stdout=sys.stderr, stderr=subprocess.PIPE, text=True, check=False,
    )
    if done.returncode != 0:
        errors = "\n".join(line for line in done.stderr.splitlines() if "is ignored: it is neither" not in line)
        raise SystemExit(f"the wheels of {lock} do not match the lock (pip's hash-checking mode):\n{errors}")


def build_artifact(project: Path, out: Path, tests: bool, running: AppTests | None) -> dict[str, object]:
    now = datetime.now(timezone.utc)
    revision = git(project, "rev-parse", "--short=8", "HEAD") or "nogit"
    release_id = f"{now:%Y%m%dT%H%M%SZ}-{revision}"
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        stage = Path(tmp) / release_id
        wheels = stage / "wheels"
        wheels.mkdir(parents=True)
        # Every dependency wheel, pip's own among them (the hosts install the release with it
        # into a venv made without pip, much faster than ensurepip), exactly as locked.
        locked_wheels(project / LOCK, wheels)
        # The app's own wheel, built from these sources with the build's (locked) setuptools.
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
             "--wheel-dir", str(wheels), str(project / "app")],
            check=True, stdout=sys.stderr,
        )
        installers = sorted(w.name for w in wheels.glob("pip-*.whl"))
        if len(installers) != 1:
            raise SystemExit(f"expected one pip wheel, found {installers}")
        app_wheels = sorted(wheels.glob("webapp-*.whl"))
        if len(app_wheels) != 1:
            raise SystemExit(f"expected one webapp wheel, found {[w.name for w in app_wheels]}")
        version = app_wheels[0].name.split("-")[1]
        if running:
            running.wait()
        manifest = {
            "release_id": release_id,
            "version": version,
            "git_revision": git(project, "rev-parse", "HEAD") or "unknown",
            "git_dirty": bool(git(project, "status", "--porcelain", "--", "app")),
            "build_time": now.isoformat(timespec="seconds"),
            "python": f"{sys.version_info.major}.{sys.version_info.minor}",
            "tests": "passed" if tests else "skipped",
            "installer": installers[0],
            "wheels": {w.name: sha256_file(w) for w in sorted(wheels.iterdir())},
        }
        (stage / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        artifact = out / f"webapp-{release_id}.tar.gz"
        partial = artifact.with_suffix(".partial")
        with tarfile.open(partial, "w:gz") as tar:
            tar.add(stage / "manifest.json", arcname="manifest.json")
            tar.add(wheels, arcname="wheels")
        partial.replace(artifact)
    return {**manifest, "artifact": str(artifact), "artifact_sha256": sha256_file(artifact)}


def prune(out: Path, index: dict[str, dict[str, str]], keep: int) -> None:
    entries = sorted(index.items(), key=lambda kv: kv[1]["release_id"])
    for key, entry in entries[:-keep] if keep > 0 else []:
        Path(entry["artifact"]).unlink(missing_ok=True)
        del index[key]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--out", type=Path, default=None, help="artifact folder (default: <project>/build/releases)")
    parser.add_argument("--no-tests", action="store_true", help="skip the app's tests (never for a release)")
    parser.add_argument("--force", action="store_true", help="build a new release even if the sources are unchanged")
    parser.add_argument("--keep", type=int, default=10, help="artifacts kept on the controller")
    parser.add_argument("--artifact", type=Path, help="describe this existing artifact instead of building")
    args = parser.parse_args()
    if args.artifact:
        entry = describe(args.artifact.resolve())
        print(json.dumps({k: str(v) for k, v in entry.items() if k != "wheels"} | {"changed": False}))
        return
    project = args.project.resolve()
    out = (args.out or project / "build" / "releases").resolve()
    out.mkdir(parents=True, exist_ok=True)

    # An untested build is never handed out for a tested one (and the other way round).
    key = source_hash(project) + ("-untested" if args.no_tests else "")
    index = load_index(out)
    entry = index.get(key)
    if entry and not args.force and "tests" in entry and Path(entry["artifact"]).is_file() \
            and sha256_file(Path(entry["artifact"])) == entry["artifact_sha256"]:
        print(json.dumps({**entry, "changed": False}))
        return
    result = build(project, out, tests=not args.no_tests)
    index[key] = {k: str(v) for k, v in result.items() if k != "wheels"}
    prune(out, index, args.keep)
    save_index(out, index)
    print(json.dumps({**index[key], "changed": True}))


if __name__ == "__main__":
    os.umask(0o022)
    main()
