"""Past one machine, in settings (docs/scaling.md): Loki on an object store, rendered as the role
renders it and checked by Loki itself (`loki -verify-config`, the vendor's binary); bad input
refused naming the variable. Prometheus's remote write: tests/test_promtool.py."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import BIN, ENV, ROOT
from tests.test_repo import LOKI_VAULT, preflight, run_role

LOKI = shutil.which("loki", path=str(BIN))
S3 = {"loki_storage": "s3", "loki_s3_endpoint": "minio.example.invalid:9000", "loki_s3_bucket": "webapp-logs",
      "loki_s3_region": "eu-west-1", "loki_s3_access_key_id": "loki", "loki_s3_secret_access_key": "a-real-s3-secret",
      "loki_s3_force_path_style": True}


def render_loki(tmp_path: Path, env: str, variables: dict) -> subprocess.CompletedProcess[str]:
    """tests/logging/render.yml (the role's preflight, then config.yml) for the inventory, with `variables`."""
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(ROOT / "inventories" / env), str(ROOT / "tests" / "logging" / "render.yml"),
         "--limit", "monitoring", "-e", f"logging_render_dir={tmp_path}", "-e", json.dumps(variables),
         "-e", "vault_loki_push_password=a-real-push-secret"],
        capture_output=True, text=True, env={**ENV, "ANSIBLE_NOCOLOR": "1"}, cwd=ROOT)


def verify(path: Path) -> subprocess.CompletedProcess[str]:
    assert LOKI, "loki is missing: ./stack deps unpacks it from the vendor's .deb into .venv/bin"
    return subprocess.run([LOKI, "-verify-config", f"-config.file={path}"], capture_output=True, text=True)


@pytest.mark.parametrize("variables", [{}, S3], ids=["filesystem", "s3"])
def test_loki_config_passes_loki_verify_config(tmp_path, variables):
    proc = render_loki(tmp_path, "production", variables)
    assert proc.returncode == 0, proc.stdout[-3000:]
    [path] = tmp_path.glob("*/loki.yml")
    result = verify(path)
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(path.read_text())
    kind = variables.get("loki_storage", "filesystem")
    assert config["schema_config"]["configs"][0]["object_store"] == kind
    assert config["compactor"]["delete_request_store"] == kind
    assert list(config["common"]["storage"]) == [kind]
    if kind == "s3":
        assert config["common"]["storage"]["s3"]["bucketnames"] == "webapp-logs"
        assert config["common"]["storage"]["s3"]["s3forcepathstyle"] is True


def test_a_broken_setting_fails_loki_verify_config(tmp_path):
    """The check can fail: an unknown object store in the schema is refused by Loki itself."""
    proc = render_loki(tmp_path, "production", S3)
    assert proc.returncode == 0, proc.stdout[-3000:]
    [path] = tmp_path.glob("*/loki.yml")
    config = yaml.safe_load(path.read_text())
    config["schema_config"]["configs"][0]["store"] = "no-such-index-store"
    path.write_text(yaml.safe_dump(config))
    assert verify(path).returncode != 0


@pytest.mark.parametrize(("missing", "words"), [
    ("loki_s3_bucket", ['loki_s3_bucket (is "")']),
    ("loki_s3_secret_access_key", ["loki_s3_secret_access_key (empty", "vault_loki_s3_secret_access_key"]),
])
def test_s3_without_its_settings_is_refused_naming_them(tmp_path, missing, words):
    proc = render_loki(tmp_path, "production", {**S3, missing: ""})
    assert proc.returncode != 0
    for word in words:
        assert word in proc.stdout, proc.stdout[-3000:]
    assert "a-real-s3-secret" not in proc.stdout
    assert not list(tmp_path.glob("*/loki.yml"))


def test_an_unknown_storage_kind_is_refused_by_the_argument_spec(tmp_path):
    proc = run_role(tmp_path, "loki", {"loki_storage": "gcs"}, "--check", "--tags", "loki_preflight")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "loki_storage" in out and "gcs" in out, out[-3000:]
    assert "Validating arguments against arg spec" in out


@pytest.mark.parametrize(("variables", "words"), [
    ({"loki_storage": "gcs"}, ['loki_storage must be filesystem or s3 (is "gcs")']),
    ({"loki_storage": "s3"}, ['loki_s3_bucket (is "")', "vault_loki_s3_secret_access_key"]),
])
def test_site_preflight_refuses_bad_storage_before_any_change(variables, words):
    proc = preflight("staging", "-e", "vault_grafana_admin_password=x", *LOKI_VAULT, "-e", json.dumps(variables))
    assert proc.returncode != 0
    for word in words:
        assert word in proc.stdout, proc.stdout[-3000:]
