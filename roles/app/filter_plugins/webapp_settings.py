"""Filters: the operator's app settings checked (each problem names its variable) and rendered
for systemd's environment files and the release's shared paths."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WSGI = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*(\(\))?")
# Set by the stack (the runner's settings, systemd's socket activation and watchdog): never the app's.
_RESERVED_PREFIXES = ("STACK_", "LISTEN_", "WATCHDOG_")
_RESERVED_NAMES = frozenset({"NOTIFY_SOCKET", "PATH", "HOME", "USER", "LOGNAME", "SHELL", "INVOCATION_ID", "JOURNAL_STREAM"})
# What a release folder holds of its own: a shared path must not replace it.
_RELEASE_OWN = frozenset({"venv", "wheels", "release.json", ".complete", ".failed", "manifest.json"})


def _one_line(value: Any) -> bool:
    return not any(c in str(value) for c in "\r\n\0")


def env_problems(env: Any, name: str) -> list[str]:
    """What is wrong with app_env or app_secret_env (a mapping of NAME to a one-line value)."""
    if env is None:
        return []
    if not isinstance(env, Mapping):
        return [f"{name} must be a mapping of environment names to values, is {type(env).__name__}"]
    found = []
    for key, value in env.items():
        key_text = str(key)
        if not _IDENTIFIER.fullmatch(key_text):
            found.append(f"{name}: {key_text!r} is not an environment name (letters, digits and _, not first a digit)")
        elif key_text.startswith(_RESERVED_PREFIXES) or key_text in _RESERVED_NAMES:
            found.append(f"{name}: {key_text} is set by the stack itself (names starting with "
                         f"{', '.join(_RESERVED_PREFIXES)} and {', '.join(sorted(_RESERVED_NAMES))} are reserved)")
        if isinstance(value, (Mapping, list, tuple)):
            found.append(f"{name}: the value of {key_text} must be a string or number, not a {type(value).__name__}")
        elif not _one_line(value if value is not None else ""):
            # A secret's value is never echoed: only its name.
            found.append(f"{name}: the value of {key_text} holds a newline, carriage return or NUL, which systemd's "
                         "environment file cannot carry")
    return found


def path_problems(path: Any, name: str) -> list[str]:
    """What is wrong with one shared path (relative to the release, inside it, not the release's own)."""
    text = str(path)
    parts = PurePosixPath(text).parts
    if not text.strip() or text in (".", "./"):
        return [f"{name}: a shared path must name a folder or file inside the release, got {text!r}"]
    if text.startswith("/"):
        return [f"{name}: {text!r} is absolute: a shared path is relative to the release's folder"]
    if ".." in parts or "." in text.split("/"):
        return [f"{name}: {text!r} leaves the release or is not normalized (no '..' or '.' parts)"]
    if not _one_line(text) or any(c in text for c in "\\*?["):
        return [f"{name}: {text!r} holds a character a path here must not ({'newline, NUL, backslash or glob'})"]
    if len(parts) == 1 and parts[0] in _RELEASE_OWN:
        return [f"{name}: {text!r} is the release's own ({', '.join(sorted(_RELEASE_OWN))}): share a folder inside it"]
    return []


def _nested(a: str, b: str) -> bool:
    pa, pb = PurePosixPath(a).parts, PurePosixPath(b).parts
    shorter = min(len(pa), len(pb))
    return pa[:shorter] == pb[:shorter]


def shared_problems(paths: Any, files: Any) -> list[str]:
    """What is wrong with app_shared_paths (folders) and app_shared_files (path -> content)."""
    found: list[str] = []
    if not isinstance(paths, (list, tuple)):
        return [f"app_shared_paths must be a list of folders relative to the release, is {type(paths).__name__}"]
    if not isinstance(files, Mapping):
        return [f"app_shared_files must be a mapping of file paths (relative to the release) to their content, "
                f"is {type(files).__name__}"]
    for path in paths:
        found += path_problems(path, "app_shared_paths")
    for path, content in files.items():
        found += path_problems(path, "app_shared_files")
        if isinstance(content, (Mapping, list, tuple)):
            found.append(f"app_shared_files: the content of {path!r} must be text")
    if found:
        return found
    every = [("app_shared_paths", str(p).rstrip("/")) for p in paths] + [("app_shared_files", str(p)) for p in files]
    for i, (name_a, a) in enumerate(every):
        for name_b, b in every[i + 1:]:
            if _nested(a, b):
                found.append(f"{name_a} {a!r} and {name_b} {b!r} overlap: one lies in the other (or they are the same)")
    return found


def wsgi_problems(wsgi: Any) -> list[str]:
    """What is wrong with app_wsgi: module:name or module:factory()."""
    text = str(wsgi or "")
    if _WSGI.fullmatch(text):
        return []
    return [f"app_wsgi must be module:name or module:factory() (for example myapp:create_app()), got {text!r}"]


def health_problems(path: Any, statuses: Any) -> list[str]:
    """What is wrong with app_health_path and app_health_statuses."""
    found = []
    text = str(path or "")
    if not text.startswith("/") or any(c.isspace() for c in text) or not _one_line(text):
        found.append(f"app_health_path must be a path starting with / and without spaces, got {text!r}")
    if not isinstance(statuses, (list, tuple)) or not statuses:
        found.append(f"app_health_statuses must be a list of HTTP statuses, got {statuses!r}")
    else:
        bad = [s for s in statuses if isinstance(s, bool) or not str(s).isdigit() or not 100 <= int(s) <= 599]
        if bad:
            found.append(f"app_health_statuses must hold HTTP statuses within 100..599, got {bad!r}")
    return found


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def canary_problems(settings: Mapping[str, Any]) -> list[str]:
    """What is wrong with the canary analysis's settings (app_canary_*), each naming its variable."""
    found = []
    seconds = _number(settings.get("app_canary_seconds", 0))
    if seconds is None or not (seconds == 0 or 10 <= seconds <= 3600):
        found.append(f"app_canary_seconds must be 0 (off) or 10..3600 seconds, is {settings.get('app_canary_seconds')!r}")
    if not seconds:
        return found
    bounds = {"app_canary_max_error_ratio": (0, 1), "app_canary_max_latency_ratio": (1, 100),
              "app_canary_latency_quantile": (0.01, 0.999), "app_canary_min_requests": (1, 10**9)}
    for name, (low, high) in bounds.items():
        value = _number(settings.get(name))
        if value is None or not low <= value <= high:
            found.append(f"{name} must lie within {low}..{high}, is {settings.get(name)!r}")
    if settings.get("app_canary_low_traffic") not in ("continue", "stop"):
        found.append(f"app_canary_low_traffic must be continue or stop, is {settings.get('app_canary_low_traffic')!r}")
    if not str(settings.get("app_canary_prometheus_url") or "").startswith(("http://", "https://")):
        found.append("app_canary_prometheus_url must name the Prometheus to ask (http:// or https://): the inventory "
                     f"has no monitoring host, or sets it to {settings.get('app_canary_prometheus_url')!r}")
    return found


def settings_problems(settings: Mapping[str, Any]) -> list[str]:
    """Every problem of the app's operator settings, each naming its variable; [] when none.

    `{{ _app_settings | app_settings_problems }}`
    """
    found = wsgi_problems(settings.get("app_wsgi"))
    found += health_problems(settings.get("app_health_path"), settings.get("app_health_statuses"))
    found += env_problems(settings.get("app_env"), "app_env")
    found += env_problems(settings.get("app_secret_env"), "app_secret_env")
    both = set(map(str, settings.get("app_env") or {})) & set(map(str, settings.get("app_secret_env") or {}))
    if both:
        found.append(f"app_env and app_secret_env both set {', '.join(sorted(both))}: name each once")
    found += shared_problems(settings.get("app_shared_paths", []), settings.get("app_shared_files", {}))
    found += canary_problems(settings)
    migrate = settings.get("app_migrate_command")
    if migrate is not None and not isinstance(migrate, str):
        found.append(f"app_migrate_command must be one shell command line (a string), is {type(migrate).__name__}")
    elif migrate and not _one_line(migrate):
        found.append("app_migrate_command must be one line (join steps with && or ;)")
    return found


class FilterModule:
    """The app's operator settings."""

    def filters(self) -> dict[str, object]:
        return {
            "app_settings_problems": settings_problems,
        }
