"""The Flask app factory."""

from __future__ import annotations

import time

from flask import Flask, Response, current_app, g, jsonify, request

from webapp import logs, metrics, watchdog
from webapp.config import Config


def _start() -> None:
    g.started = time.perf_counter()
    g.request_id = logs.request_id(request)


def _finish(response: Response) -> Response:
    seconds = time.perf_counter() - g.get("started", time.perf_counter())
    rid: str = g.get("request_id") or logs.request_id(request)
    if watchdog.is_probe(request.headers):
        return response  # the instance asking itself (webapp.watchdog): not a request to count or log
    metrics.observe(request, response.status_code, seconds)
    config: Config = current_app.config["WEBAPP"]
    logs.access(request, response, seconds, rid, config.trusted_proxies)
    response.headers["X-Request-ID"] = rid
    return response


def create_app(config: Config | None = None) -> Flask:
    """A new app answering /, /health and /metrics; `config` defaults to the environment's."""
    config = Config.from_env() if config is None else config
    app = Flask(__name__)
    app.config["WEBAPP"] = config
    metrics.set_build_info(config.version, config.release)
    app.before_request(_start)
    app.after_request(_finish)

    @app.get("/")
    def index() -> Response:
        return Response(config.message, mimetype="text/plain")

    @app.get("/health")
    def health() -> Response:
        return jsonify(status="ok", version=config.version, release=config.release)

    metrics.register(app)
    return app
