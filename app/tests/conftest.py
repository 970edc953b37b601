from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from webapp.app import create_app
from webapp.config import Config


@pytest.fixture
def app() -> Flask:
    return create_app(Config(message="Hello, World!", release="20260101T000000Z-abc1234"))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
