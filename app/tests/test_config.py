from __future__ import annotations

import pytest

from webapp import __version__, package_version
from webapp.config import Config


def test_defaults() -> None:
    c = Config.from_env({})
    assert c.message == "Hello, World!"
    assert c.version == __version__ != ""


def test_message_from_the_environment() -> None:
    assert Config.from_env({"APP_MESSAGE": "hi"}).message == "hi"


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_MESSAGE", "from-env")
    assert Config.from_env().message == "from-env"


def test_is_frozen() -> None:
    with pytest.raises(AttributeError):
        Config().message = "x"  # type: ignore[misc]


def test_version_is_the_installed_one_or_a_fallback() -> None:
    assert package_version() == __version__ != "0.0.0+unknown"  # installed (editable or wheel)
    assert package_version("webapp-not-installed-anywhere") == "0.0.0+unknown"
