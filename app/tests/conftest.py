from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from webapp.app import create_app
from webapp.config import Config

RELEASE = "20260101T000000Z-abc1234"


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> Flask:
    monkeypatch.setenv("STACK_RELEASE", RELEASE)
    return create_app(Config(message="Hello, World!"))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
