"""webapp: a message, health, Prometheus metrics and JSON logs, served by Waitress."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("webapp")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
