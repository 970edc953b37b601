"""The host's release lock (webapp_lock takes and gives it back; webapp_instances gives it back at
the end of a rollback's switch): a JSON record of the run that holds it, created atomically
(O_EXCL), mode 0600, every read-modify-write under an exclusive flock of a guard file."""

from __future__ import annotations

import fcntl
import json
import os
import time

from ansible.module_utils.stack_files import replace_file


def read_holder(path: str) -> dict:
    """The record of the run that holds the lock ({} when free; an unreadable one counts as held)."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return {"run_id": "<unreadable>"}
    return data if isinstance(data, dict) else {"run_id": "<unreadable>"}


def _record(owner: dict) -> str:
    """The lock file's content: who holds it, and since when."""
    return json.dumps({**owner, "taken": round(time.time(), 3)}) + "\n"


def _write_new(path: str, owner: dict) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.fchmod(fd, 0o600)  # whatever the umask: the record names who runs what
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(_record(owner))


def attempt(path: str, state: str, owner: dict, take_over: str, remove: tuple[str, ...] = ()) -> tuple[bool, bool, dict]:
    """(changed, acquired, holder) after one try under the guard lock. state=absent gives the lock
    back when owner's run holds it, first removing the files in `remove`."""
    with os.fdopen(os.open(f"{path}.guard", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        holder = read_holder(path)
        mine = bool(holder) and holder.get("run_id") == owner["run_id"]
        if state == "absent":
            if mine:
                for done in remove:
                    try:
                        os.unlink(done)
                    except FileNotFoundError:
                        pass
                os.unlink(path)
                return True, False, {}
            return False, False, holder
        if mine:
            return False, True, holder
        if not holder:
            _write_new(path, owner)
            return True, True, read_holder(path)
        if take_over and holder.get("run_id") == take_over:
            replace_file(path, _record({**owner, "took_over_from": holder}), 0o600, os.getuid(), os.getgid())
            return True, True, read_holder(path)
        return False, False, holder
