from __future__ import annotations

import json
from pathlib import Path

import pytest

from stack_runner import __version__, package_version
from stack_runner.config import Config


def release_file(tmp_path: Path, data: object) -> str:
    path = tmp_path / "release.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_defaults() -> None:
    c = Config.from_env({})
    assert (c.wsgi, c.bind, c.port, c.threads, c.release, c.version) == ("", "127.0.0.1", 8000, 4, "unknown", "unknown")
    assert (c.health_path, c.health_statuses, c.start_seconds) == ("/health", frozenset({200}), 60)


def test_environment_overrides() -> None:
    c = Config.from_env({"STACK_WSGI": " pkg.mod:app ", "STACK_BIND": "0.0.0.0", "STACK_PORT": "8123",
                         "STACK_THREADS": "8", "STACK_HEALTH_PATH": "/-/ready?full=1",
                         "STACK_HEALTH_STATUSES": "200, 204 301", "STACK_START_SECONDS": "300"})
    assert (c.wsgi, c.bind, c.port, c.threads, c.start_seconds) == ("pkg.mod:app", "0.0.0.0", 8123, 8, 300)
    assert (c.health_path, c.health_statuses) == ("/-/ready?full=1", frozenset({200, 204, 301}))


def test_app_settings_are_not_read() -> None:
    c = Config.from_env({"APP_PORT": "9000", "APP_RELEASE_ID": "r-app", "APP_BIND": "0.0.0.0"})
    assert (c.port, c.release, c.bind) == (8000, "unknown", "127.0.0.1")


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STACK_PORT", "9001")
    monkeypatch.setenv("STACK_RELEASE_ID", "from-env")
    c = Config.from_env()
    assert (c.port, c.release) == (9001, "from-env")


def test_is_frozen() -> None:
    with pytest.raises(AttributeError):
        Config().port = 1  # type: ignore[misc]


def test_release_and_version_from_file(tmp_path: Path) -> None:
    path = release_file(tmp_path, {
        "release_id": "20260101T000000Z-abc1234", "version": "1.0.0", "git_revision": "abc1234",
        "build_time": "2026-01-01T00:00:00+00:00", "artifact_sha256": "0" * 64,
    })
    c = Config.from_env({"STACK_RELEASE_FILE": path})
    assert (c.release, c.version) == ("20260101T000000Z-abc1234", "1.0.0")


@pytest.mark.parametrize("data", [{"release_id": "r"}, {"release_id": "r", "version": ""},
                                  {"release_id": "r", "version": 1}])
def test_version_is_unknown_without_a_string_in_the_file(tmp_path: Path, data: object) -> None:
    assert Config.from_env({"STACK_RELEASE_FILE": release_file(tmp_path, data)}).version == "unknown"


def test_release_id_overrides_file(tmp_path: Path) -> None:
    path = release_file(tmp_path, {"release_id": "from-file", "version": "2.0"})
    c = Config.from_env({"STACK_RELEASE_FILE": path, "STACK_RELEASE_ID": "explicit"})
    assert (c.release, c.version) == ("explicit", "2.0")


@pytest.mark.parametrize(("env", "name"), [
    ({"STACK_PORT": "http"}, "STACK_PORT"),
    ({"STACK_PORT": ""}, "STACK_PORT"),
    ({"STACK_PORT": "0"}, "STACK_PORT"),
    ({"STACK_PORT": "65536"}, "STACK_PORT"),
    ({"STACK_THREADS": "0"}, "STACK_THREADS"),
    ({"STACK_THREADS": "1025"}, "STACK_THREADS"),
    ({"STACK_THREADS": "four"}, "STACK_THREADS"),
    ({"STACK_RELEASE_FILE": "/nonexistent/release.json"}, "STACK_RELEASE_FILE"),
    ({"STACK_HEALTH_PATH": "health"}, "STACK_HEALTH_PATH"),
    ({"STACK_HEALTH_PATH": ""}, "STACK_HEALTH_PATH"),
    ({"STACK_HEALTH_PATH": "/he alth"}, "STACK_HEALTH_PATH"),
    ({"STACK_HEALTH_PATH": "/health\r\nX: y"}, "STACK_HEALTH_PATH"),
    ({"STACK_HEALTH_STATUSES": ""}, "STACK_HEALTH_STATUSES"),
    ({"STACK_HEALTH_STATUSES": "200,ok"}, "STACK_HEALTH_STATUSES"),
    ({"STACK_HEALTH_STATUSES": "99"}, "STACK_HEALTH_STATUSES"),
    ({"STACK_HEALTH_STATUSES": "200 600"}, "STACK_HEALTH_STATUSES"),
    ({"STACK_HEALTH_STATUSES": "-200"}, "STACK_HEALTH_STATUSES"),
    ({"STACK_START_SECONDS": "0"}, "STACK_START_SECONDS"),
    ({"STACK_START_SECONDS": "a minute"}, "STACK_START_SECONDS"),
])
def test_invalid_values_name_the_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        Config.from_env(env)


@pytest.mark.parametrize("data", [{"version": "1.0.0"}, {"release_id": ""}, ["release_id"], "text"])
def test_release_file_without_a_release_id(tmp_path: Path, data: object) -> None:
    with pytest.raises(ValueError, match="STACK_RELEASE_FILE"):
        Config.from_env({"STACK_RELEASE_FILE": release_file(tmp_path, data)})


def test_release_file_that_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "release.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="STACK_RELEASE_FILE"):
        Config.from_env({"STACK_RELEASE_FILE": str(path)})


def test_version_is_the_installed_one_or_a_fallback() -> None:
    assert package_version() == __version__ != "0.0.0+unknown"  # installed (editable or wheel)
    assert package_version("stack-runner-not-installed-anywhere") == "0.0.0+unknown"


def test_trusted_proxies_are_addresses_or_networks() -> None:
    c = Config.from_env({"STACK_TRUSTED_PROXIES": "10.0.0.11, 10.0.0.12 192.0.2.0/24,2001:db8::1"})
    assert [str(n) for n in c.trusted_proxies] == ["10.0.0.11/32", "10.0.0.12/32", "192.0.2.0/24", "2001:db8::1/128"]
    assert Config.from_env({}).trusted_proxies == () == Config.from_env({"STACK_TRUSTED_PROXIES": " "}).trusted_proxies


@pytest.mark.parametrize("bad", ["lb1", "10.0.0.300", "10.0.0.0/33"])
def test_a_bad_trusted_proxy_is_refused_by_name(bad: str) -> None:
    with pytest.raises(ValueError, match=f"STACK_TRUSTED_PROXIES .*{bad}"):
        Config.from_env({"STACK_TRUSTED_PROXIES": f"10.0.0.1,{bad}"})
