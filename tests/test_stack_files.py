"""module_utils/stack_files.py: the one way the modules replace a file or a link on a host."""

from __future__ import annotations

import grp
import os

import pytest
from ansible.module_utils import stack_files


def test_a_file_is_written_with_its_mode_and_owner(tmp_path):
    path = tmp_path / "secrets.env"
    stack_files.replace_file(str(path), "A=1\n", 0o640, os.getuid(), os.getgid())
    assert path.read_text() == "A=1\n"
    assert oct(path.stat().st_mode & 0o777) == "0o640"
    assert (path.stat().st_uid, path.stat().st_gid) == (os.getuid(), os.getgid())


def test_a_file_is_replaced_by_a_rename_leaving_nothing_beside_it(tmp_path):
    path = tmp_path / "release.json"
    stack_files.replace_file(str(path), b"old", 0o644, os.getuid(), os.getgid())
    inode = path.stat().st_ino
    stack_files.replace_file(str(path), b"new", 0o644, os.getuid(), os.getgid())
    assert path.read_bytes() == b"new" and path.stat().st_ino != inode
    assert [p.name for p in tmp_path.iterdir()] == ["release.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_one(tmp_path, monkeypatch):
    path = tmp_path / "release.json"
    path.write_text("old")

    def refuse(*args):
        raise PermissionError("chown refused")

    monkeypatch.setattr(stack_files.os, "chown", refuse)
    with pytest.raises(PermissionError):
        stack_files.replace_file(str(path), "new", 0o644)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["release.json"]


def test_the_link_is_swapped_atomically(tmp_path):
    link = tmp_path / "current"
    assert stack_files.point_link(str(link), "/a")
    assert not stack_files.point_link(str(link), "/a")
    assert stack_files.point_link(str(link), "/b") and os.readlink(link) == "/b"
    assert [p.name for p in tmp_path.iterdir()] == ["current"]


def test_check_mode_says_a_link_would_change_and_touches_nothing(tmp_path):
    link = tmp_path / "current"
    os.symlink("/a", link)
    assert stack_files.point_link(str(link), "/b", check_mode=True)
    assert os.readlink(link) == "/a"
    assert not stack_files.point_link(str(link), "/a", check_mode=True)


def test_a_converged_file_takes_its_group_and_keeps_it(tmp_path):
    path = str(tmp_path / "secrets.env")
    gid = grp.getgrnam("daemon").gr_gid  # a group every Debian host has, not root's
    assert stack_files.converge_file(path, "A=1\n", 0o640, False, gid=gid)[0]
    st = os.stat(path)
    assert (st.st_uid, st.st_gid, oct(st.st_mode & 0o777)) == (0, gid, "0o640")
    assert stack_files.root_owned(path, 0o640, gid) and not stack_files.root_owned(path, 0o640)
    assert not stack_files.converge_file(path, "A=1\n", 0o640, False, gid=gid)[0]
    assert stack_files.converge_file(path, "A=1\n", 0o640, False)[0]  # group root wanted: given back to root
    assert os.stat(path).st_gid == 0


def test_a_file_is_compared_byte_for_byte(tmp_path):
    """A CRLF file is not the same as its LF content, nor is a file that is not UTF-8: both are rewritten."""
    path = tmp_path / "settings.cfg"
    path.write_bytes(b"A=1\r\n")
    path.chmod(0o644)
    assert stack_files.read_text(str(path)) == "A=1\r\n"
    assert not stack_files.converge_file(str(path), "A=1\r\n", 0o644, False)[0]
    assert stack_files.converge_file(str(path), "A=1\n", 0o644, False)[0] and path.read_bytes() == b"A=1\n"
    path.write_bytes(b"A=\xff\n")
    assert stack_files.converge_file(str(path), "A=1\n", 0o644, False)[0] and path.read_bytes() == b"A=1\n"


def test_a_folder_is_made_or_given_its_owner_and_mode_and_a_file_there_is_refused(tmp_path):
    folder, gid = tmp_path / "conf", grp.getgrnam("daemon").gr_gid
    assert stack_files.converge_folder(str(folder), 0o750, True, 0, gid) and not folder.exists()  # check mode
    assert stack_files.converge_folder(str(folder), 0o750, False, 0, gid)
    assert (folder.stat().st_gid, oct(folder.stat().st_mode & 0o7777)) == (gid, "0o750")
    assert not stack_files.converge_folder(str(folder), 0o750, False, 0, gid)
    folder.chmod(0o755)
    assert stack_files.converge_folder(str(folder), 0o750, False, 0, gid) and oct(folder.stat().st_mode & 0o777) == "0o750"
    (tmp_path / "plain").write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        stack_files.converge_folder(str(tmp_path / "plain"), 0o750, False)
