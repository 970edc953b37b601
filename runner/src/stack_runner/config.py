"""The runner's configuration: the STACK_* variables, read once into a frozen dataclass."""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from stack_runner import sd_notify

UNKNOWN = "unknown"
# The app's own settings use other names; the runner reads only these.
WSGI_VARIABLE = "STACK_WSGI"
# The variable the runner sets, before it imports the app, to the release id.
RELEASE_VARIABLE = "STACK_RELEASE"

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


def _health_path(env: Mapping[str, str], name: str, default: str) -> str:
    """A path of visible ASCII starting with "/" (it goes into the probe's request line)."""
    path = env.get(name, default)
    if not path.startswith("/") or not all("\x21" <= c <= "\x7e" for c in path):
        raise ValueError(f"{name} must be a path starting with / (visible ASCII, no spaces), got {path!r}")
    return path


def _statuses(env: Mapping[str, str], name: str, default: str) -> frozenset[int]:
    """HTTP statuses (100..599) separated by commas or spaces; at least one."""
    items = env.get(name, default).replace(",", " ").split()
    if not items:
        raise ValueError(f"{name} must list at least one HTTP status")
    found = set()
    for item in items:
        if not item.isdigit() or not 100 <= int(item) <= 599:
            raise ValueError(f"{name} must list HTTP statuses within 100..599, got {item!r}")
        found.add(int(item))
    return frozenset(found)


def read_release(path: str) -> tuple[str, str]:
    """The "release_id" and the "version" (UNKNOWN when absent) of a release.json.

    A file that cannot be read, is no JSON object or has no release_id raises a ValueError
    naming STACK_RELEASE_FILE.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"STACK_RELEASE_FILE {path!r} cannot be read as JSON: {err}") from None
    release = data.get("release_id") if isinstance(data, dict) else None
    if not isinstance(release, str) or not release:
        raise ValueError(f"STACK_RELEASE_FILE {path!r} has no non-empty string \"release_id\"")
    version = data.get("version")
    return release, version if isinstance(version, str) and version else UNKNOWN


def _release(env: Mapping[str, str]) -> tuple[str, str]:
    """(release, version): the release file's, STACK_RELEASE_ID overriding its release."""
    path = env.get("STACK_RELEASE_FILE")
    release, version = read_release(path) if path else (UNKNOWN, UNKNOWN)
    return env.get("STACK_RELEASE_ID") or release, version


@dataclass(frozen=True)
class Config:
    """Everything the runner needs; immutable once loaded."""

    wsgi: str = ""
    bind: str = "127.0.0.1"
    port: int = 8000
    threads: int = 4
    release: str = UNKNOWN
    # The app's version, from the release file's "version".
    version: str = UNKNOWN
    # Peers whose X-Forwarded-For names the client (the load balancers); none by default.
    trusted_proxies: tuple[Network, ...] = ()
    health_path: str = "/health"
    health_statuses: frozenset[int] = frozenset({200})
    # Seconds from the start to the first healthy answer before the watchdog's period applies.
    start_seconds: int = sd_notify.DEFAULT_START_SECONDS  # read before this, by stack_runner.boot

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        """Load from `env` (default: os.environ); a bad value raises ValueError naming it.

        STACK_WSGI is taken as it is: the loader (stack_runner.loader) judges it.
        """
        env = os.environ if env is None else env
        release, version = _release(env)
        return cls(
            wsgi=env.get(WSGI_VARIABLE, "").strip(),
            bind=env.get("STACK_BIND", cls.bind),
            port=_int(env, "STACK_PORT", cls.port, 1, 65535),
            threads=_int(env, "STACK_THREADS", cls.threads, 1, 1024),
            release=release,
            version=version,
            trusted_proxies=_networks(env, "STACK_TRUSTED_PROXIES"),
            health_path=_health_path(env, "STACK_HEALTH_PATH", cls.health_path),
            health_statuses=_statuses(env, "STACK_HEALTH_STATUSES", "200"),
            start_seconds=_int(env, sd_notify.START_SECONDS_VARIABLE, cls.start_seconds, *sd_notify.START_SECONDS_RANGE),
        )
