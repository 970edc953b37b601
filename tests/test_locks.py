"""The dependency locks: every package pinned with its hashes, the app's lock within the
controller's pins, and the build refusing a wheel whose hash is not the lock's."""

from __future__ import annotations

import base64
import hashlib
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "scripts"))
import build_release  # noqa: E402


def pins(lock: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of a pip-compile lock (requirement lines joined at their backslashes)."""
    text = lock.read_text().replace("\\\n", " ")
    found = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        spec, *options = line.split()
        name, _, version = spec.partition("==")
        found[name.lower()] = (version, [o.removeprefix("--hash=sha256:") for o in options if o.startswith("--hash=")])
    return found


CONTROLLER = pins(PROJECT / "requirements.txt")
APP = pins(PROJECT / build_release.LOCK)


@pytest.mark.parametrize("lock", ["requirements.txt", str(build_release.LOCK)])
def test_every_package_of_a_lock_is_pinned_with_hashes(lock):
    found = pins(PROJECT / lock)
    assert found, f"{lock} pins nothing"
    unpinned = [n for n, (version, hashes) in found.items() if not version or not hashes]
    assert not unpinned, f"{lock}: without a version or a hash: {unpinned} (run ./stack lock)"


def test_the_locks_name_no_index_or_find_links():
    for lock in (PROJECT / "requirements.txt", PROJECT / build_release.LOCK):
        assert "://" not in lock.read_text(), f"{lock} names a location: take it from pip's configuration"


def test_the_controller_lock_holds_every_pin_of_requirements_in():
    for line in (PROJECT / "requirements.in").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            assert req.name.lower() in CONTROLLER, f"{req.name} of requirements.in is not in requirements.txt"
            assert req.specifier.contains(CONTROLLER[req.name.lower()][0]), \
                f"requirements.txt has {req.name} {CONTROLLER[req.name.lower()][0]}, requirements.in asks {req}"


def test_the_app_lock_is_within_the_controller_lock():
    """The app's tests run in the controller's venv: the release ships the very versions they ran on."""
    differ = {n: (v, CONTROLLER.get(n, (None,))[0]) for n, (v, _) in APP.items() if CONTROLLER.get(n, (None,))[0] != v}
    assert not differ, f"app lock vs controller lock: {differ} (run ./stack lock)"


@pytest.mark.parametrize("package", ["app", "runner"])
def test_the_app_lock_satisfies_every_dependency_of_the_app_and_the_runner(package):
    """A release installs the app and the runner that serves it, both from the app's lock."""
    project = tomllib.loads((PROJECT / package / "pyproject.toml").read_text())["project"]
    for dependency in project["dependencies"]:
        req = Requirement(dependency)
        assert req.name.lower() in APP, f"{req.name} ({package}/pyproject.toml) is not in {build_release.LOCK}"
        assert req.specifier.contains(APP[req.name.lower()][0]), f"{build_release.LOCK} pins {req.name} outside {req}"
    assert "pip" in APP, "pip's wheel, the hosts' installer, is not locked"


def tiny_wheel(folder: Path, name: str = "lockprobe", version: str = "1.0") -> Path:
    """A minimal valid wheel, made here: the hash test needs no index."""
    path = folder / f"{name}-{version}-py3-none-any.whl"
    files = {
        f"{name}/__init__.py": b"",
        f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{name}-{version}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for arcname, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{arcname},sha256={digest},{len(data)}")
    record.append(f"{name}-{version}.dist-info/RECORD,,")
    with zipfile.ZipFile(path, "w") as z:
        for arcname, data in files.items():
            z.writestr(arcname, data)
        z.writestr(f"{name}-{version}.dist-info/RECORD", "\n".join(record) + "\n")
    return path


def offline(folder: Path) -> tuple[str, ...]:
    return ("--no-index", "--find-links", str(folder))


def test_the_build_takes_a_wheel_whose_hash_is_the_locks(tmp_path):
    source, out = tmp_path / "source", tmp_path / "out"
    source.mkdir()
    wheel = tiny_wheel(source)
    lock = tmp_path / "lock.txt"
    lock.write_text(f"lockprobe==1.0 --hash=sha256:{build_release.sha256_file(wheel)}\n")
    build_release.locked_wheels(lock, out, offline(source))
    assert (out / wheel.name).read_bytes() == wheel.read_bytes()


@pytest.mark.parametrize("python", ["3.11", "3.13"])
def test_the_build_takes_the_locks_wheels_for_another_python_too(tmp_path, python):
    """For a target Python other than the controller's (target_args), in hash-checking mode as well."""
    source, out = tmp_path / "source", tmp_path / "out"
    source.mkdir()
    wheel = tiny_wheel(source)
    lock = tmp_path / "lock.txt"
    lock.write_text(f"lockprobe==1.0 --hash=sha256:{build_release.sha256_file(wheel)}\n")
    build_release.locked_wheels(lock, out, (*build_release.target_args(python), *offline(source)))
    assert (out / wheel.name).read_bytes() == wheel.read_bytes()


def test_the_build_refuses_a_wheel_whose_hash_is_not_the_locks(tmp_path):
    source, out = tmp_path / "source", tmp_path / "out"
    source.mkdir()
    tiny_wheel(source)
    lock = tmp_path / "lock.txt"
    lock.write_text(f"lockprobe==1.0 --hash=sha256:{'0' * 64}\n")
    with pytest.raises(SystemExit, match="do not match the lock") as refused:
        build_release.locked_wheels(lock, out, offline(source))
    assert "lockprobe" in str(refused.value) and "HASH" in str(refused.value).upper()
    assert not list(out.glob("*.whl"))


def test_the_build_refuses_a_requirement_without_a_hash(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    tiny_wheel(source)
    lock = tmp_path / "lock.txt"
    lock.write_text("lockprobe==1.0\n")
    with pytest.raises(SystemExit, match="do not match the lock"):
        build_release.locked_wheels(lock, tmp_path / "out", offline(source))
