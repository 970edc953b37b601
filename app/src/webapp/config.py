"""Configuration from the environment."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from webapp import __version__


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise ValueError(f"{name} must lie within {low}..{high}, got {value}")
    return value


def _release(env: Mapping[str, str]) -> str:
    if env.get("APP_RELEASE_ID"):
        return env["APP_RELEASE_ID"]
    path = env.get("APP_RELEASE_FILE")
    if not path:
        return "unknown"
    try:
        return str(json.loads(Path(path).read_text())["release_id"])
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"APP_RELEASE_FILE {path!r} has no readable release_id: {err}") from None


@dataclass(frozen=True)
class Config:
    message: str = "Hello, World!"
    bind: str = "127.0.0.1"
    port: int = 8000
    threads: int = 4
    version: str = __version__
    release: str = "unknown"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env
        return cls(
            message=env.get("APP_MESSAGE", cls.message),
            bind=env.get("APP_BIND", cls.bind),
            port=_int(env, "APP_PORT", cls.port, 1, 65535),
            threads=_int(env, "APP_THREADS", cls.threads, 1, 1024),
            release=_release(env),
        )
