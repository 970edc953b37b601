from __future__ import annotations

import json
from pathlib import Path

import pytest

from webapp import __version__, package_version
from webapp.config import Config


def release_file(tmp_path: Path, data: object) -> str:
    path = tmp_path / "release.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_defaults() -> None:
    c = Config.from_env({})
    assert (c.message, c.bind, c.port, c.threads, c.release) == ("Hello, World!", "127.0.0.1", 8000, 4, "unknown")
    assert c.version == __version__ != ""


def test_environment_overrides() -> None:
    c = Config.from_env({"APP_MESSAGE": "hi", "APP_BIND": "0.0.0.0", "APP_PORT": "8123", "APP_THREADS": "8"})
    assert (c.message, c.bind, c.port, c.threads) == ("hi", "0.0.0.0", 8123, 8)


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_PORT", "9001")
    monkeypatch.setenv("APP_RELEASE_ID", "from-env")
    c = Config.from_env()
    assert (c.port, c.release) == (9001, "from-env")


def test_is_frozen() -> None:
    with pytest.raises(AttributeError):
        Config().port = 1  # type: ignore[misc]


def test_release_from_file(tmp_path: Path) -> None:
    path = release_file(tmp_path, {
        "release_id": "20260101T000000Z-abc1234", "version": "1.0.0", "git_revision": "abc1234",
        "build_time": "2026-01-01T00:00:00+00:00", "artifact_sha256": "0" * 64,
    })
    assert Config.from_env({"APP_RELEASE_FILE": path}).release == "20260101T000000Z-abc1234"


def test_release_id_overrides_file(tmp_path: Path) -> None:
    path = release_file(tmp_path, {"release_id": "from-file"})
    assert Config.from_env({"APP_RELEASE_FILE": path, "APP_RELEASE_ID": "explicit"}).release == "explicit"


@pytest.mark.parametrize(("env", "name"), [
    ({"APP_PORT": "http"}, "APP_PORT"),
    ({"APP_PORT": ""}, "APP_PORT"),
    ({"APP_PORT": "0"}, "APP_PORT"),
    ({"APP_PORT": "65536"}, "APP_PORT"),
    ({"APP_THREADS": "0"}, "APP_THREADS"),
    ({"APP_THREADS": "four"}, "APP_THREADS"),
    ({"APP_RELEASE_FILE": "/nonexistent/release.json"}, "APP_RELEASE_FILE"),
])
def test_invalid_values_name_the_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        Config.from_env(env)


@pytest.mark.parametrize("data", [{"version": "1.0.0"}, {"release_id": ""}, ["release_id"], "text"])
def test_release_file_without_a_release_id(tmp_path: Path, data: object) -> None:
    with pytest.raises(ValueError, match="APP_RELEASE_FILE"):
        Config.from_env({"APP_RELEASE_FILE": release_file(tmp_path, data)})


def test_release_file_that_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "release.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="APP_RELEASE_FILE"):
        Config.from_env({"APP_RELEASE_FILE": str(path)})


def test_version_is_the_installed_one_or_a_fallback() -> None:
    assert package_version() == __version__ != "0.0.0+unknown"  # installed (editable or wheel)
    assert package_version("webapp-not-installed-anywhere") == "0.0.0+unknown"


def test_trusted_proxies_are_addresses_or_networks() -> None:
    c = Config.from_env({"APP_TRUSTED_PROXIES": "10.0.0.11, 10.0.0.12 192.0.2.0/24,2001:db8::1"})
    assert [str(n) for n in c.trusted_proxies] == ["10.0.0.11/32", "10.0.0.12/32", "192.0.2.0/24", "2001:db8::1/128"]
    assert Config.from_env({}).trusted_proxies == () == Config.from_env({"APP_TRUSTED_PROXIES": " "}).trusted_proxies


@pytest.mark.parametrize("bad", ["lb1", "10.0.0.300", "10.0.0.0/33"])
def test_a_bad_trusted_proxy_is_refused_by_name(bad: str) -> None:
    with pytest.raises(ValueError, match=f"APP_TRUSTED_PROXIES .*{bad}"):
        Config.from_env({"APP_TRUSTED_PROXIES": f"10.0.0.1,{bad}"})
