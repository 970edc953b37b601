"""webapp: a message and a health endpoint, a plain Flask app served by the stack's runner."""

from importlib.metadata import PackageNotFoundError, version

FALLBACK_VERSION = "0.0.0+unknown"


def package_version(name: str = "webapp") -> str:
    """The installed version of `name`, or FALLBACK_VERSION from a bare source tree."""
    try:
        return version(name)
    except PackageNotFoundError:
        return FALLBACK_VERSION


__version__ = package_version()
