from __future__ import annotations

import json
from pathlib import Path

from flask.testing import FlaskClient

from conftest import RELEASE
from webapp import __version__
from webapp.app import create_app
from webapp.config import Config


def test_index_returns_the_default_message() -> None:
    r = create_app(Config.from_env({})).test_client().get("/")
    assert r.status_code == 200
    assert r.get_data(as_text=True) == "Hello, World!"
    assert r.mimetype == "text/plain"


def test_index_returns_a_configured_message() -> None:
    r = create_app(Config.from_env({"APP_MESSAGE": "Bonjour, monde"})).test_client().get("/")
    assert r.get_data(as_text=True) == "Bonjour, monde"


def test_health(client: FlaskClient) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    assert r.mimetype == "application/json"
    assert r.get_json() == {"status": "ok", "version": __version__, "release": RELEASE}


def test_health_release_from_a_release_file(tmp_path: Path) -> None:
    path = tmp_path / "release.json"
    path.write_text(json.dumps({"release_id": "r-file", "version": "1.0.0"}))
    r = create_app(Config.from_env({"APP_RELEASE_FILE": str(path)})).test_client().get("/health")
    assert r.get_json()["release"] == "r-file"


def test_health_release_from_app_release_id() -> None:
    r = create_app(Config.from_env({"APP_RELEASE_ID": "r-env"})).test_client().get("/health")
    assert r.get_json()["release"] == "r-env"


def test_unknown_path_is_404(client: FlaskClient) -> None:
    assert client.get("/no/such/page").status_code == 404


def test_request_id_is_echoed_or_generated(client: FlaskClient) -> None:
    assert client.get("/", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    generated = client.get("/").headers["X-Request-ID"]
    assert len(generated) == 32 and int(generated, 16) >= 0
    assert client.get("/", headers={"X-Request-ID": "has space"}).headers["X-Request-ID"] != "has space"
