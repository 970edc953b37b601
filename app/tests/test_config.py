from __future__ import annotations

import json
from pathlib import Path

import pytest

from webapp.config import Config


def test_defaults() -> None:
    c = Config.from_env({})
    assert (c.message, c.bind, c.port, c.threads, c.release) == ("Hello, World!", "127.0.0.1", 8000, 4, "unknown")


def test_environment_overrides() -> None:
    c = Config.from_env({"APP_MESSAGE": "hi", "APP_BIND": "0.0.0.0", "APP_PORT": "8123", "APP_THREADS": "8"})
    assert (c.message, c.bind, c.port, c.threads) == ("hi", "0.0.0.0", 8123, 8)


def test_release_from_file(tmp_path: Path) -> None:
    f = tmp_path / "release.json"
    f.write_text(json.dumps({"release_id": "20260101T000000Z-abc1234", "version": "1.0.0"}))
    assert Config.from_env({"APP_RELEASE_FILE": str(f)}).release == "20260101T000000Z-abc1234"


def test_release_id_overrides_file(tmp_path: Path) -> None:
    f = tmp_path / "release.json"
    f.write_text(json.dumps({"release_id": "from-file"}))
    assert Config.from_env({"APP_RELEASE_FILE": str(f), "APP_RELEASE_ID": "explicit"}).release == "explicit"


@pytest.mark.parametrize(("env", "name"), [
    ({"APP_PORT": "http"}, "APP_PORT"),
    ({"APP_PORT": "0"}, "APP_PORT"),
    ({"APP_PORT": "70000"}, "APP_PORT"),
    ({"APP_THREADS": "0"}, "APP_THREADS"),
    ({"APP_RELEASE_FILE": "/nonexistent/release.json"}, "APP_RELEASE_FILE"),
])
def test_invalid_values_name_the_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        Config.from_env(env)
