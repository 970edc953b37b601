"""The Flask app factory: `webapp.app:create_app()` is what the runner's STACK_WSGI names."""

from __future__ import annotations

import os

from flask import Flask, Response, jsonify

from webapp.config import Config

UNKNOWN_RELEASE = "unknown"
# Set by the runner (stack-runner) to the release id before it imports the app.
RELEASE_VARIABLE = "STACK_RELEASE"


def create_app(config: Config | None = None) -> Flask:
    """A new app answering / and /health; `config` defaults to the environment's."""
    config = Config.from_env() if config is None else config
    app = Flask(__name__)
    app.config["WEBAPP"] = config

    @app.get("/")
    def index() -> Response:
        return Response(config.message, mimetype="text/plain")

    @app.get("/health")
    def health() -> Response:
        release = os.environ.get(RELEASE_VARIABLE, UNKNOWN_RELEASE)
        return jsonify(status="ok", version=config.version, release=release)

    return app
