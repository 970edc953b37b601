"""Unit tests of library/systemd_dropin.py against a temporary folder.

The lab tests prove every service runs with its sandbox drop-in; these pin the module's rules:
the folder made when missing, an atomic write only on a difference, modes and owners set,
check mode changing nothing, the diff shown.
"""

from __future__ import annotations

import json
import os
import stat
import sys

import pytest
from ansible.module_utils.testing import patch_module_args

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "library"))
import systemd_dropin  # noqa: E402



def run(args: dict, capsys) -> tuple[int, dict]:
    with patch_module_args(args), pytest.raises(SystemExit) as done:
        systemd_dropin.main()
    return done.value.code, json.loads(capsys.readouterr().out)


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_the_folder_is_made_with_the_file(tmp_path, capsys):
    path = tmp_path / "nginx.service.d" / "sandbox.conf"
    rc, res = run({"path": str(path), "content": "[Service]\nPrivateTmp=yes\n"}, capsys)
    assert rc == 0 and res["changed"] and res["path"] == str(path)
    assert path.read_text() == "[Service]\nPrivateTmp=yes\n"
    assert (mode(path), mode(path.parent)) == (0o644, 0o755)
    assert (path.stat().st_uid, path.parent.stat().st_uid) == (0, 0)


def test_the_same_content_changes_nothing(tmp_path, capsys):
    path = tmp_path / "unit.service.d" / "sandbox.conf"
    run({"path": str(path), "content": "a\n"}, capsys)
    inode = path.stat().st_ino
    rc, res = run({"path": str(path), "content": "a\n"}, capsys)
    assert rc == 0 and not res["changed"] and path.stat().st_ino == inode


def test_a_new_content_replaces_the_file_atomically_and_shows_its_diff(tmp_path, capsys):
    path = tmp_path / "unit.service.d" / "sandbox.conf"
    run({"path": str(path), "content": "a\n"}, capsys)
    inode = path.stat().st_ino
    rc, res = run({"path": str(path), "content": "b\n", "_ansible_diff": True}, capsys)
    assert rc == 0 and res["changed"] and path.read_text() == "b\n"
    assert path.stat().st_ino != inode, "written beside and renamed over, never in place"
    assert (res["diff"]["before"], res["diff"]["after"]) == ("a\n", "b\n")
    assert sorted(p.name for p in path.parent.iterdir()) == ["sandbox.conf"]


def test_a_wrong_mode_is_set_right(tmp_path, capsys):
    path = tmp_path / "unit.service.d" / "sandbox.conf"
    run({"path": str(path), "content": "a\n"}, capsys)
    path.chmod(0o600)
    path.parent.chmod(0o700)
    rc, res = run({"path": str(path), "content": "a\n"}, capsys)
    assert rc == 0 and res["changed"] and (mode(path), mode(path.parent)) == (0o644, 0o755)


def test_check_mode_writes_nothing(tmp_path, capsys):
    path = tmp_path / "unit.service.d" / "sandbox.conf"
    rc, res = run({"path": str(path), "content": "a\n", "_ansible_check_mode": True, "_ansible_diff": True}, capsys)
    assert rc == 0 and res["changed"] and res["diff"]["after"] == "a\n"
    assert not path.parent.exists()
