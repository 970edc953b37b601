"""Prometheus metrics, on prometheus-client's default REGISTRY.

The three metric objects below are the app's only module-level state (named as
prometheus-flask-exporter names them: flask_http_request_total, flask_http_request_duration_seconds); the
default REGISTRY also exports the process_* and python_* collectors.
Label values are kept to a small set: the route is the URL rule ("/health"),
never the raw path, and "unmatched" for requests no rule matched (404, 405).
"""

from __future__ import annotations

from flask import Flask, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"})

REQUESTS = Counter(
    "flask_http_request", "HTTP requests answered.", ["method", "route", "status"],
)
DURATION = Histogram(
    "flask_http_request_duration_seconds", "Time taken to answer an HTTP request.", ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
BUILD_INFO = Gauge(
    "app_build_info", "Version and release of the running app (always 1).", ["version", "release"],
)


def route_label(request: Request) -> str:
    """The matched URL rule, or "unmatched"."""
    return request.url_rule.rule if request.url_rule is not None else UNMATCHED


def method_label(method: str) -> str:
    """The HTTP method, or "other" for a non-standard one."""
    return method if method in _METHODS else "other"


def observe(request: Request, status: int, seconds: float) -> None:
    method, route = method_label(request.method), route_label(request)
    REQUESTS.labels(method, route, str(status)).inc()
    DURATION.labels(method, route).observe(seconds)


def set_build_info(version: str, release: str) -> None:
    """Expose exactly one app_build_info series: the running version and release."""
    BUILD_INFO.clear()
    BUILD_INFO.labels(version, release).set(1)


def exposition() -> Response:
    """The /metrics answer: every metric in the default registry, text format."""
    response = Response(generate_latest())
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


def register(app: Flask) -> None:
    """Add the /metrics endpoint to `app`."""
    app.add_url_rule("/metrics", "metrics", exposition, methods=["GET"])
