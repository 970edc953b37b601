"""Helpers of the runner's tests (a module of its own: app/tests has a conftest too)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask import Flask
from prometheus_client import REGISTRY
from werkzeug.test import Client, TestResponse

from stack_runner import middleware
from stack_runner.config import Config

RELEASE = "20260101T000000Z-abc1234"
VERSION = "1.2.3"


def sample(name: str, **labels: str) -> float:
    """A sample of the global registry, 0.0 when the series does not exist yet; the request metrics'
    release is the test clients' (RELEASE) unless given."""
    if name.startswith("flask_http_request"):
        labels.setdefault("release", RELEASE)
    return REGISTRY.get_sample_value(name, labels) or 0.0


class BufferedClient(Client):
    """Werkzeug's test client reading each answer whole and closing it, as a server does."""

    def open(self, *args: Any, **kwargs: Any) -> TestResponse:
        kwargs.setdefault("buffered", True)
        return super().open(*args, **kwargs)


def make_flask_app() -> Flask:
    """A small Flask app: /, /health, /items/<int:n>, /boom (raises), /teapot (418)."""
    app = Flask("flaskapp")

    @app.get("/")
    def index() -> str:
        return "hello"

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/items/<int:n>")
    def item(n: int) -> str:
        return str(n)

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("boom")

    @app.get("/teapot")
    def teapot() -> tuple[str, int]:
        return "short and stout", 418

    return app


def plain_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """A WSGI callable with no framework: /boom raises, /missing is 404, anything else 200."""
    path = environ.get("PATH_INFO", "")
    if path == "/boom":
        raise RuntimeError("plain boom")
    status = "404 Not Found" if path == "/missing" else "200 OK"
    body = f"{path} {environ.get('HTTP_X_REQUEST_ID')}".encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def serve(app: Any, **config: Any) -> BufferedClient:
    """A test client of `app` behind the runner's middleware."""
    return BufferedClient(middleware.wrap(app, Config(**{"release": RELEASE, "version": VERSION, **config})))
