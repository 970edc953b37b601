"""Staging and production with their vault.yml committed: each value encrypted on its own
(`ansible-vault encrypt_string`), so what does not use a secret (ansible-inventory, syntax
checks, --list-hosts, these tests, lint) runs without the vault password, and only a play
that uses the secret needs it. A whole-file encrypted vault.yml would break all of that
without the password (ansible-inventory exits 4): a test refuses one."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import BIN, ENV, ROOT, inventory

PASSWORD = "a-test-vault-password"
SECRET = "a-real-secret-0123"
# Secrets with rules of their own (VRRP passwords are 1-8 characters).
SECRETS = {"vault_keepalived_auth_password": "s3cr3t-8",
           "vault_alertmanager_webhook_url": "https://pager.example.invalid/hooks/s3cr3t-token"}
# No vault password from the caller's environment: these runs must work without one.
BARE = {k: v for k, v in ENV.items() if not k.startswith(("ANSIBLE_VAULT", "ANSIBLE_ASK_VAULT"))}


def run(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True,
                          env={**BARE, "ANSIBLE_NOCOLOR": "1"}, cwd=ROOT, **kwargs)


def vault_files(envs: tuple[str, ...] = ("staging", "production")) -> list[Path]:
    return sorted(p for env in envs for p in (ROOT / "inventories" / env).rglob("vault.yml"))


class Encrypted(str):
    """A `!vault` value, as loaded by is_encrypted_value_by_value."""


class VaultLoader(yaml.SafeLoader):
    pass


VaultLoader.add_constructor("!vault", lambda loader, node: Encrypted(loader.construct_scalar(node)))


def is_encrypted_value_by_value(path: Path) -> bool:
    text = path.read_text()
    if text.startswith("$ANSIBLE_VAULT"):
        return False
    values = yaml.load(text, Loader=VaultLoader) or {}
    return all(isinstance(v, Encrypted) for v in values.values())


@pytest.fixture(scope="module")
def password_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("vault") / "pass"
    path.write_text(PASSWORD)
    return path


@pytest.fixture(scope="module", params=["staging", "production"])
def with_vault(request, tmp_path_factory, password_file) -> tuple[str, Path]:
    """A copy of the inventory with a vault.yml made as docs/security.md says."""
    env = request.param
    inv = tmp_path_factory.mktemp("inventories") / env
    shutil.copytree(ROOT / "inventories" / env, inv)
    for example in sorted(inv.glob("group_vars/*/vault.yml.example")):
        names = list(yaml.safe_load(example.read_text()))
        encrypted = []
        for name in names:
            proc = run("ansible-vault", "encrypt_string", "--vault-password-file", str(password_file),
                       "--stdin-name", name, input=SECRETS.get(name, SECRET))
            assert proc.returncode == 0, proc.stderr
            encrypted.append(proc.stdout)
        example.with_name("vault.yml").write_text("---\n" + "".join(encrypted))
    return env, inv


def test_the_vault_file_made_as_documented_is_encrypted_value_by_value(with_vault):
    _, inv = with_vault
    path = inv / "group_vars" / "monitoring" / "vault.yml"
    assert is_encrypted_value_by_value(path) and SECRET not in path.read_text()


def test_inventory_reads_without_the_vault_password(with_vault):
    env, inv = with_vault
    proc = run("ansible-inventory", "-i", str(inv), "--list")
    assert proc.returncode == 0, proc.stderr
    assert SECRET not in proc.stdout
    assert '"vault_grafana_admin_password"' in proc.stdout
    listed, expected = json.loads(proc.stdout), inventory(env)
    assert {g: listed[g]["hosts"] for g in ("lb", "app", "monitoring")} == \
        {g: expected[g]["hosts"] for g in ("lb", "app", "monitoring")}


@pytest.mark.parametrize("mode", ["--syntax-check", "--list-hosts"])
def test_site_checks_and_lists_without_the_vault_password(with_vault, mode):
    _, inv = with_vault
    proc = run("ansible-playbook", "-i", str(inv), "site.yml", mode)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]


def test_the_play_that_uses_the_secret_asks_for_the_password(with_vault, password_file):
    _, inv = with_vault
    proc = run("ansible-playbook", "-i", str(inv), "playbooks/preflight.yml")
    assert proc.returncode != 0
    assert "no vault secrets" in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]
    proc = run("ansible-playbook", "-i", str(inv), "playbooks/preflight.yml", "--vault-password-file", str(password_file))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]


def test_a_whole_file_encrypted_vault_is_told_apart(tmp_path, password_file):
    path = tmp_path / "vault.yml"
    path.write_text(f"vault_grafana_admin_password: {SECRET}\n")
    assert not is_encrypted_value_by_value(path)  # plain text
    proc = run("ansible-vault", "encrypt", "--vault-password-file", str(password_file), str(path))
    assert proc.returncode == 0, proc.stderr
    assert not is_encrypted_value_by_value(path)  # the whole file
    inv = tmp_path / "production"
    shutil.copytree(ROOT / "inventories" / "production", inv)
    shutil.copy(path, inv / "group_vars" / "monitoring" / "vault.yml")
    proc = run("ansible-inventory", "-i", str(inv), "--list")
    assert proc.returncode != 0 and "no vault secrets" in proc.stderr, proc.stderr[-2000:]


def test_committed_vault_files_are_encrypted_value_by_value():
    wrong = [str(p.relative_to(ROOT)) for p in vault_files() if not is_encrypted_value_by_value(p)]
    assert not wrong, (
        f"{wrong} must hold each value encrypted on its own (ansible-vault encrypt_string, see the "
        "docs/security.md, Secrets): a plain or whole-file encrypted vault.yml leaks the secret or makes "
        "every check need the vault password")
