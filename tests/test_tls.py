"""HTTPS where a password crosses the network: Grafana's settings rendered per inventory, and
its preflight refusing what cannot work. The self-signed certificate of the labs is made by one
internal role, roles/tls_certificate, for Nginx and Grafana alike (its lab proof: test_edge.py's
TLS tests and the Grafana runtime tests, where Grafana is deployed)."""

from __future__ import annotations

import configparser

import pytest

from tests.conftest import BIN, render
from tests.test_repo import run_role


# The stat tasks run on this machine, with the venv's Python.
LOCAL = ("-e", f"ansible_python_interpreter={BIN / 'python'}")


def good(tmp_path) -> dict:
    """Settings the preflight takes, but for the certificate files (not on this machine)."""
    deb = tmp_path / "grafana_1.0_amd64.deb"
    deb.write_bytes(b"")
    return {"grafana_admin_password": "a-real-secret-0123", "grafana_deb_files": [str(deb)],
            "grafana_tls_certificate": "/etc/ssl/grafana/fullchain.pem",
            "grafana_tls_certificate_key": "/etc/ssl/grafana/privkey.pem"}


def grafana_ini(tmp_path, env: str) -> configparser.ConfigParser:
    """grafana.ini as the role writes it for the inventory's first monitoring host."""
    text = render(tmp_path / f"grafana-{env}.ini", env, "grafana", "grafana.ini.j2",
                  "-e", "vault_grafana_admin_password=a-real-secret-0123")
    ini = configparser.ConfigParser(interpolation=None)
    ini.read_string(text)
    return ini


@pytest.mark.parametrize("env", ["lab", "staging", "production"])
def test_every_inventory_serves_grafana_over_https_only(tmp_path, env):
    server = grafana_ini(tmp_path, env)["server"]
    assert server["protocol"] == "https"
    assert server["cert_file"].startswith("/") and server["cert_key"].startswith("/")
    assert server["min_tls_version"] == "TLS1.2"


@pytest.mark.parametrize(("variables", "words"), [
    ({"grafana_tls_certificate_key": ""}, ["must both be absolute paths on the host, or both empty"]),
    ({"grafana_tls_certificate": "grafana.pem"}, ["must both be absolute paths"]),
    ({"grafana_tls_self_signed": True, "deploy_env": "production"}, ["is for labs and tests, not production"]),
    ({"grafana_tls_self_signed": True, "grafana_tls_certificate": "", "grafana_tls_certificate_key": ""},
     ["grafana_tls_self_signed needs both"]),
])
def test_grafana_preflight_refuses_unusable_tls_settings(tmp_path, variables, words):
    proc = run_role(tmp_path, "grafana", {**good(tmp_path), **variables}, "--check", "--tags", "grafana_preflight", *LOCAL)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    for word in words:
        assert word in out, out[-3000:]


def test_grafana_preflight_wants_the_certificate_on_the_host(tmp_path):
    proc = run_role(tmp_path, "grafana", good(tmp_path), "--check", "--tags", "grafana_preflight", *LOCAL)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert "HTTPS is on but ['/etc/ssl/grafana/fullchain.pem', '/etc/ssl/grafana/privkey.pem'] do not exist" in out, out[-3000:]


def test_grafana_preflight_takes_certificates_that_are_there(tmp_path):
    cert, key = tmp_path / "grafana.pem", tmp_path / "grafana.key"
    cert.write_text("certificate\n")
    key.write_text("key\n")
    proc = run_role(tmp_path, "grafana", {**good(tmp_path), "grafana_tls_certificate": str(cert), "grafana_tls_certificate_key": str(key)},
                    "--check", "--tags", "grafana_preflight", *LOCAL)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
