"""Prometheus metrics: the module's globals are the only ones in the app."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "app_requests", "HTTP requests answered", ["method", "route", "status"],
)
LATENCY = Histogram(
    "app_request_duration_seconds", "Time to answer an HTTP request", ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
BUILD_INFO = Gauge(
    "app_build_info", "Version and release of the running app (always 1)", ["version", "release"],
)


def observe(method: str, route: str, status: int, seconds: float) -> None:
    REQUESTS.labels(method, route, str(status)).inc()
    LATENCY.labels(method, route).observe(seconds)


def set_build_info(version: str, release: str) -> None:
    BUILD_INFO.clear()
    BUILD_INFO.labels(version, release).set(1)
