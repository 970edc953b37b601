"""Prometheus metrics, on prometheus-client's default REGISTRY.

The three metric objects below are the runner's only module-level metric state (named as
prometheus-flask-exporter names them: flask_http_request_total, flask_http_request_duration_seconds,
so that dashboards and alerts stay as they are); the default REGISTRY also exports the process_*
and python_* collectors. Label values are kept to a small set: the route is a URL rule or a
fixed word, never the raw path (stack_runner.middleware chooses it).
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"})

# `release` on the request metrics lets a deploy compare the release it brings with the one still
# serving, instance for instance (the canary analysis), without a join.
REQUESTS = Counter(
    "flask_http_request", "HTTP requests answered.", ["method", "route", "status", "release"],
)
DURATION = Histogram(
    "flask_http_request_duration_seconds", "Time taken to answer an HTTP request.", ["method", "route", "release"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
BUILD_INFO = Gauge(
    "app_build_info", "Version and release of the running app (always 1).", ["version", "release"],
)
CONTENT_TYPE = CONTENT_TYPE_LATEST


def method_label(method: str) -> str:
    """The HTTP method, or "other" for a non-standard one."""
    return method if method in _METHODS else "other"


def observe(method: str, route: str, status: int, seconds: float, release: str) -> None:
    """Count one answered request and its duration, labelled with the release that answered."""
    method = method_label(method)
    REQUESTS.labels(method, route, str(status), release).inc()
    DURATION.labels(method, route, release).observe(seconds)


def set_build_info(version: str, release: str) -> None:
    """Expose exactly one app_build_info series: the running version and release."""
    BUILD_INFO.clear()
    BUILD_INFO.labels(version, release).set(1)


def exposition() -> bytes:
    """The /metrics body: every metric in the default registry, text format (CONTENT_TYPE)."""
    return generate_latest(REGISTRY)
