"""stack_runner: serve any WSGI app under Waitress, with the stack's logs, metrics and watchdog."""

from importlib.metadata import PackageNotFoundError, version

FALLBACK_VERSION = "0.0.0+unknown"


def package_version(name: str = "stack-runner") -> str:
    """The installed version of `name`, or FALLBACK_VERSION from a bare source tree."""
    try:
        return version(name)
    except PackageNotFoundError:
        return FALLBACK_VERSION


__version__ = package_version()
