"""Files and links replaced atomically, the one way the project's modules change them on a host
(systemd_dropin, webapp_state, webapp_env, webapp_lock, webapp_shared, webapp_instances): the new content is
written beside the old under a temporary name, given its owner and mode, then renamed over it,
so a reader (systemd, a rerun, an instance starting) sees the old file or the new, never half of
one, and a run killed in the middle leaves the old in place."""

from __future__ import annotations

import os
import stat
import tempfile


def replace_file(path: str, data: bytes | str, mode: int, uid: int = 0, gid: int = 0) -> None:
    """Make `path` hold `data` (str is written as UTF-8), owned uid:gid with `mode`, in one rename."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=f".{os.path.basename(path)}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chown(tmp, uid, gid)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


def read_text(path: str) -> str | None:
    """The file's text exactly as stored (no newline translation; bytes that are not UTF-8 read as
    U+FFFD, so such a file differs from any content and is replaced), None when it is missing."""
    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def root_owned(path: str, mode: int, gid: int = 0) -> bool:
    """Whether path is owned by root and group gid with this mode (False when missing)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return st.st_uid == 0 and st.st_gid == gid and stat.S_IMODE(st.st_mode) == mode


def converge_file(path: str, content: str, mode: int, check_mode: bool, replace: bool = True,
                  gid: int = 0) -> tuple[bool, dict]:
    """(changed, diff) after making path root's, of group gid, with `mode`, holding `content` when
    it is missing or differs and `replace` is true (else an existing file keeps its text). In
    check mode nothing is touched."""
    old = read_text(path)
    write = old is None or (replace and old != content)
    after = content if write else old
    diff = {"before_header": path, "after_header": path, "before": old or "", "after": after}
    if not write and root_owned(path, mode, gid):
        return False, diff
    if not check_mode:
        if write:
            replace_file(path, content, mode, 0, gid)
        else:
            os.chown(path, 0, gid)
            os.chmod(path, mode)
    return True, diff


def converge_records(files: list[dict], absent: list[str], check_mode: bool,
                     mode: int = 0o644) -> tuple[list[str], list[str], list[dict]]:
    """(written, removed, diff) after writing each of `files` (path, content, replace: as
    converge_file, root-owned with `mode`) and removing each path of `absent` that exists: the
    app's small state records (webapp_state; webapp_instances before a rollback's switch)."""
    written: list[str] = []
    removed: list[str] = []
    diff: list[dict] = []
    for item in files:
        changed, change = converge_file(item["path"], item["content"], mode, check_mode, item.get("replace", False))
        if changed:
            written.append(item["path"])
            diff.append(change)
    for path in absent:
        if os.path.lexists(path):
            removed.append(path)
            diff.append({"before_header": path, "after_header": path, "before": "(present)\n", "after": "(absent)\n"})
            if not check_mode:
                os.unlink(path)
    return written, removed, diff


def converge_folder(path: str, mode: int, check_mode: bool, uid: int = 0, gid: int = 0) -> bool:
    """Make path a folder owned uid:gid with `mode` (made, or given them); whether it changed. A
    file or a link there is an error (ValueError). In check mode nothing is touched."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if not check_mode:
            os.mkdir(path, mode)
            os.chown(path, uid, gid)
            os.chmod(path, mode)
        return True
    if not stat.S_ISDIR(st.st_mode):
        raise ValueError(f"{path} exists and is not a folder")
    if (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (uid, gid, mode):
        return False
    if not check_mode:
        os.chown(path, uid, gid)
        os.chmod(path, mode)
    return True


def point_link(path: str, target: str, check_mode: bool = False) -> bool:
    """Make `path` a symbolic link to `target` in one rename (a new link renamed over the old);
    whether it changed. In check mode nothing is touched."""
    if os.path.islink(path) and os.readlink(path) == target:
        return False
    if check_mode:
        return True
    tmp = f"{path}.link-{os.getpid()}"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return True
