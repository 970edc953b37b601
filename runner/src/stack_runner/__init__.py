"""stack_runner: serve any WSGI app under Waitress, with the stack's logs, metrics and watchdog.

Importing the package loads nothing else: the entry point (stack_runner.boot) imports it before it
stretches systemd's watchdog, so `__version__` is read from the installed metadata when asked.
"""

from __future__ import annotations

FALLBACK_VERSION = "0.0.0+unknown"


def package_version(name: str = "stack-runner") -> str:
    """The installed version of `name`, or FALLBACK_VERSION from a bare source tree."""
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415 - see the module's docstring

    try:
        return version(name)
    except PackageNotFoundError:
        return FALLBACK_VERSION


def __getattr__(name: str) -> str:
    """`__version__`, read when first asked for."""
    if name == "__version__":
        return package_version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
