"""Configuration, read once from the environment into a frozen dataclass."""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from webapp import __version__

UNKNOWN_RELEASE = "unknown"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise ValueError(f"{name} must lie within {low}..{high}, got {value}")
    return value


def _networks(env: Mapping[str, str], name: str) -> tuple[Network, ...]:
    """Addresses or networks separated by commas or spaces; a bad one raises ValueError naming `name`."""
    found = []
    for item in env.get(name, "").replace(",", " ").split():
        try:
            found.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{name} must list IP addresses or networks, got {item!r}") from None
    return tuple(found)


def read_release_id(path: str) -> str:
    """The "release_id" of a release.json, or a ValueError naming APP_RELEASE_FILE."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"APP_RELEASE_FILE {path!r} cannot be read as JSON: {err}") from None
    release = data.get("release_id") if isinstance(data, dict) else None
    if not isinstance(release, str) or not release:
        raise ValueError(f"APP_RELEASE_FILE {path!r} has no non-empty string \"release_id\"")
    return release


def _release(env: Mapping[str, str]) -> str:
    if env.get("APP_RELEASE_ID"):
        return env["APP_RELEASE_ID"]
    path = env.get("APP_RELEASE_FILE")
    return read_release_id(path) if path else UNKNOWN_RELEASE


@dataclass(frozen=True)
class Config:
    """Everything the app and its server need; immutable once loaded."""

    message: str = "Hello, World!"
    bind: str = "127.0.0.1"
    port: int = 8000
    threads: int = 4
    version: str = __version__
    release: str = UNKNOWN_RELEASE
    # Peers whose X-Forwarded-For names the client (the load balancers); none by default.
    trusted_proxies: tuple[Network, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        """Load from `env` (default: os.environ); a bad value raises ValueError naming it."""
        env = os.environ if env is None else env
        return cls(
            message=env.get("APP_MESSAGE", cls.message),
            bind=env.get("APP_BIND", cls.bind),
            port=_int(env, "APP_PORT", cls.port, 1, 65535),
            threads=_int(env, "APP_THREADS", cls.threads, 1, 1024),
            release=_release(env),
            trusted_proxies=_networks(env, "APP_TRUSTED_PROXIES"),
        )
