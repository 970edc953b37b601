"""The Flask app factory."""

from __future__ import annotations

import logging
import time
import uuid

from flask import Flask, Response, g, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from webapp import metrics
from webapp.config import Config

access_log = logging.getLogger("webapp.access")


def _client_addr() -> str:
    forwarded = request.headers.get("X-Forwarded-For", "")
    if forwarded:
        return forwarded.split(",")[0].strip()
    return request.headers.get("X-Real-IP") or request.remote_addr or ""


def _before() -> None:
    g.started = time.perf_counter()
    g.request_id = request.headers.get("X-Request-ID") or uuid.uuid4().hex


def _after(response: Response) -> Response:
    seconds = time.perf_counter() - g.started
    route = request.url_rule.rule if request.url_rule else "unmatched"
    metrics.observe(request.method, route, response.status_code, seconds)
    response.headers["X-Request-ID"] = g.request_id
    access_log.info(
        "%s %s %s", request.method, request.path, response.status_code,
        extra={
            "method": request.method,
            "path": request.path,
            "route": route,
            "status": response.status_code,
            "duration_ms": round(seconds * 1000, 3),
            "remote_addr": _client_addr(),
            "user_agent": request.headers.get("User-Agent", ""),
            "request_id": g.request_id,
        },
    )
    return response


def create_app(config: Config | None = None) -> Flask:
    config = config or Config.from_env()
    app = Flask(__name__)
    app.config["WEBAPP"] = config
    metrics.set_build_info(config.version, config.release)
    app.before_request(_before)
    app.after_request(_after)

    @app.get("/")
    def index() -> Response:
        return Response(config.message, mimetype="text/plain")

    @app.get("/health")
    def health() -> Response:
        return jsonify(status="ok", version=config.version, release=config.release)

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)

    return app
