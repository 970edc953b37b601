"""Unit tests of the app role's modules (roles/app/library) against a temporary folder.

The lab tests (molecule/releases) prove the behaviour on real hosts; these pin each module's
rules. Where a module calls systemctl or journalctl, a stand-in for that one call answers.
"""

from __future__ import annotations

import grp
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args

from tests.conftest import ROOT
from tests.loopback import Loopback

sys.path.insert(0, str(ROOT / "roles" / "app" / "library"))
import webapp_env  # noqa: E402
import webapp_instances  # noqa: E402
import webapp_lock  # noqa: E402
import webapp_precheck  # noqa: E402
import webapp_releases  # noqa: E402
import webapp_state  # noqa: E402
from ansible.module_utils import webapp_probe  # noqa: E402  (tests.conftest makes it importable)


def run(module, args: dict, capsys) -> tuple[int, dict]:
    """Run a module's main() with args: its exit code (0 exit_json, 1 fail_json) and its result."""
    with patch_module_args(args), pytest.raises(SystemExit) as done:
        module.main()
    return done.value.code, json.loads(capsys.readouterr().out)


# --- webapp_lock -----------------------------------------------------------------------------

def owner(run_id: str) -> dict:
    return {"run_id": run_id, "user": "ops", "controller": "ctl", "pid": 1, "started": "now", "command": "x.yml"}


def test_lock_is_taken_when_free_and_kept_by_its_run(tmp_path, capsys):
    path = str(tmp_path / "run" / "release.lock")
    rc, res = run(webapp_lock, {"path": path, "owner": owner("a")}, capsys)
    assert rc == 0 and res["acquired"] and res["changed"]
    assert json.loads(Path(path).read_text())["run_id"] == "a"
    rc, res = run(webapp_lock, {"path": path, "owner": owner("a")}, capsys)
    assert res["acquired"] and not res["changed"]


def test_lock_held_by_another_run_is_refused_naming_the_holder(tmp_path, capsys):
    path = str(tmp_path / "release.lock")
    run(webapp_lock, {"path": path, "owner": owner("a")}, capsys)
    rc, res = run(webapp_lock, {"path": path, "owner": owner("b")}, capsys)
    assert rc == 0 and not res["acquired"] and res["holder"]["run_id"] == "a"
    assert json.loads(Path(path).read_text())["run_id"] == "a"


def test_lock_is_taken_over_only_from_the_named_dead_run(tmp_path, capsys):
    path = str(tmp_path / "release.lock")
    run(webapp_lock, {"path": path, "owner": owner("a")}, capsys)
    _, res = run(webapp_lock, {"path": path, "owner": owner("b"), "take_over": "someone-else"}, capsys)
    assert not res["acquired"]
    _, res = run(webapp_lock, {"path": path, "owner": owner("b"), "take_over": "a"}, capsys)
    assert res["acquired"]
    held = json.loads(Path(path).read_text())
    assert held["run_id"] == "b" and held["took_over_from"]["run_id"] == "a"


def test_lock_is_given_back_only_by_its_run(tmp_path, capsys):
    path = str(tmp_path / "release.lock")
    run(webapp_lock, {"path": path, "owner": owner("a")}, capsys)
    _, res = run(webapp_lock, {"path": path, "owner": owner("b"), "state": "absent"}, capsys)
    assert not res["changed"] and os.path.exists(path)
    _, res = run(webapp_lock, {"path": path, "owner": owner("a"), "state": "absent"}, capsys)
    assert res["changed"] and not os.path.exists(path)


def test_giving_the_lock_back_removes_the_runs_notes_only_when_the_run_holds_it(tmp_path, capsys):
    path, note, gone = str(tmp_path / "release.lock"), tmp_path / "rollback.json", str(tmp_path / "never-there")
    note.write_text("{}")
    run(webapp_lock, {"path": path, "owner": owner("a")}, capsys)
    _, res = run(webapp_lock, {"path": path, "owner": owner("b"), "state": "absent", "remove": [str(note)]}, capsys)
    assert not res["changed"] and note.exists() and os.path.exists(path)
    _, res = run(webapp_lock, {"path": path, "owner": owner("a"), "state": "absent", "remove": [str(note), gone]}, capsys)
    assert res["changed"] and not note.exists() and not os.path.exists(path)


def test_lock_waits_for_its_holder_to_give_it_back(tmp_path, capsys):
    path = str(tmp_path / "release.lock")
    run(webapp_lock, {"path": path, "owner": owner("a")}, capsys)
    threading.Timer(0.3, lambda: webapp_lock.attempt(path, "absent", owner("a"), "")).start()
    start = time.monotonic()
    _, res = run(webapp_lock, {"path": path, "owner": owner("b"), "wait": 5}, capsys)
    assert res["acquired"] and time.monotonic() - start < 4


def test_an_unreadable_lock_counts_as_held(tmp_path, capsys):
    path = tmp_path / "release.lock"
    path.write_text("not json")
    _, res = run(webapp_lock, {"path": str(path), "owner": owner("a")}, capsys)
    assert not res["acquired"] and res["holder"] == {"run_id": "<unreadable>"}


def test_lock_owner_needs_a_run_id(tmp_path, capsys):
    rc, res = run(webapp_lock, {"path": str(tmp_path / "l"), "owner": {"user": "ops"}}, capsys)
    assert rc == 1 and "run_id" in res["msg"]


def test_lock_reads_the_releases_once_it_holds_the_lock(tmp_path, capsys):
    lay, path = make_host(tmp_path / "app"), str(tmp_path / "lock")
    rc, res = run(webapp_lock, {"path": path, "owner": owner("a"), "layout": lay}, capsys)
    assert rc == 0 and res["acquired"]
    assert res["releases"]["current"] == "r1" and res["releases"]["releases"] == ["r1", "r2"]
    assert res["releases"]["rollback"] == {"target": "r1"}


def test_lock_waited_for_reads_what_its_holder_left(tmp_path, capsys):
    lay, path = make_host(tmp_path / "app"), str(tmp_path / "lock")
    webapp_lock.attempt(path, "present", owner("a"), "")

    def holder_switches_and_leaves() -> None:
        os.unlink(lay["current"])
        os.symlink(os.path.join(lay["releases"], "r2"), lay["current"])
        webapp_lock.attempt(path, "absent", owner("a"), "")

    threading.Timer(0.3, holder_switches_and_leaves).start()
    _, res = run(webapp_lock, {"path": path, "owner": owner("b"), "wait": 5, "layout": lay}, capsys)
    assert res["acquired"] and res["releases"]["current"] == "r2"


def test_lock_held_by_another_run_reads_nothing(tmp_path, capsys):
    lay, path = make_host(tmp_path / "app"), str(tmp_path / "lock")
    webapp_lock.attempt(path, "present", owner("a"), "")
    _, res = run(webapp_lock, {"path": path, "owner": owner("b"), "layout": lay}, capsys)
    assert not res["acquired"] and "releases" not in res and res["holder"]["run_id"] == "a"


def test_lock_in_check_mode_takes_nothing_and_reads_the_releases(tmp_path, capsys):
    lay, path = make_host(tmp_path / "app"), tmp_path / "lock"
    args = {"path": str(path), "owner": owner("a"), "layout": lay, "_ansible_check_mode": True}
    rc, res = run(webapp_lock, args, capsys)
    assert rc == 0 and not res["changed"] and not res["acquired"] and res["releases"]["current"] == "r1"
    assert not path.exists() and not (tmp_path / "lock.guard").exists()
    webapp_lock.attempt(str(path), "present", owner("a"), "")
    _, res = run(webapp_lock, {"path": str(path), "owner": owner("a"), "state": "absent", "_ansible_check_mode": True}, capsys)
    assert not res["changed"] and path.exists()  # nor given back


# --- webapp_state ----------------------------------------------------------------------------

def test_state_writes_missing_files_root_owned_0644(tmp_path, capsys):
    target = tmp_path / "deployed" / "r1"
    target.parent.mkdir()
    rc, res = run(webapp_state, {"files": [{"path": str(target), "content": "{}\n"}]}, capsys)
    assert rc == 0 and res["changed"] and res["written"] == [str(target)]
    st = target.stat()
    assert target.read_text() == "{}\n" and oct(st.st_mode & 0o777) == "0o644" and (st.st_uid, st.st_gid) == (0, 0)
    assert [p.name for p in target.parent.iterdir()] == ["r1"]  # no temporary file left


def test_state_keeps_an_existing_file_unless_told_to_replace_it(tmp_path, capsys):
    target = tmp_path / "note"
    target.write_text("old\n")
    _, res = run(webapp_state, {"files": [{"path": str(target), "content": "new\n"}]}, capsys)
    assert not res["changed"] and target.read_text() == "old\n"
    _, res = run(webapp_state, {"files": [{"path": str(target), "content": "new\n", "replace": True}]}, capsys)
    assert res["changed"] and target.read_text() == "new\n"
    _, res = run(webapp_state, {"files": [{"path": str(target), "content": "new\n", "replace": True}]}, capsys)
    assert not res["changed"]


def test_state_removes_what_exists(tmp_path, capsys):
    there = tmp_path / "mark"
    there.write_text("x")
    _, res = run(webapp_state, {"absent": [str(there), str(tmp_path / "missing")]}, capsys)
    assert res["removed"] == [str(there)] and not there.exists()


def test_state_changes_nothing_in_check_mode(tmp_path, capsys):
    there = tmp_path / "mark"
    there.write_text("x")
    args = {"files": [{"path": str(tmp_path / "new"), "content": "y"}], "absent": [str(there)], "_ansible_check_mode": True}
    _, res = run(webapp_state, args, capsys)
    assert res["changed"] and res["written"] and res["removed"]
    assert there.exists() and not (tmp_path / "new").exists()


def test_state_gives_an_existing_file_root_and_0644_keeping_its_content(tmp_path, capsys):
    target = tmp_path / "unit"
    target.write_text("kept\n")
    target.chmod(0o600)
    _, res = run(webapp_state, {"files": [{"path": str(target), "content": "other\n"}]}, capsys)
    assert res["changed"] and res["written"] == [str(target)]
    assert target.read_text() == "kept\n" and oct(target.stat().st_mode & 0o777) == "0o644"
    _, res = run(webapp_state, {"files": [{"path": str(target), "content": "other\n"}]}, capsys)
    assert not res["changed"]


def test_state_shows_each_change_with_diff(tmp_path, capsys):
    target, gone = tmp_path / "unit", tmp_path / "mark"
    target.write_text("old\n")
    gone.write_text("x")
    args = {"files": [{"path": str(target), "content": "new\n", "replace": True}], "absent": [str(gone)],
            "_ansible_diff": True, "_ansible_check_mode": True}
    _, res = run(webapp_state, args, capsys)
    assert res["diff"][0] == {"before_header": str(target), "after_header": str(target), "before": "old\n", "after": "new\n"}
    assert res["diff"][1]["before_header"] == str(gone)
    assert target.read_text() == "old\n" and gone.exists()
    _, res = run(webapp_state, {"files": [{"path": str(target), "content": "old\n", "replace": True}], "_ansible_diff": True}, capsys)
    assert not res["changed"] and res["diff"] == []


# --- webapp_env ------------------------------------------------------------------------------

GROUP = "daemon"  # a group every Debian host has, not root's: the files' group is checked


def env_args(folder: Path, state: str = "next", **contents: str) -> dict:
    files = [{"path": str(folder / name), **({"content": text} if state == "next" else {})}
             for name, text in contents.items()]
    return {"folder": str(folder), "group": GROUP, "files": files, "state": state}


def owner_mode(path: Path) -> tuple[int, int, str]:
    st = path.stat()
    return st.st_uid, st.st_gid, oct(st.st_mode & 0o777)


def test_env_writes_the_folder_and_the_next_files_for_the_apps_group(tmp_path, capsys):
    folder, gid = tmp_path / "conf", grp.getgrnam(GROUP).gr_gid
    rc, res = run(webapp_env, env_args(folder, **{"webapp.env": "A=1\n"}), capsys)
    assert rc == 0 and res["changed"] and res["pending"]
    assert res["written"] == [str(folder), str(folder / "webapp.env.next")]
    assert owner_mode(folder) == (0, gid, "0o750")
    assert owner_mode(folder / "webapp.env.next") == (0, gid, "0o640")
    assert (folder / "webapp.env.next").read_text() == "A=1\n" and not (folder / "webapp.env").exists()
    assert sorted(p.name for p in folder.iterdir()) == ["webapp.env.next"]  # no temporary file left


def test_env_is_pending_until_the_live_file_holds_the_next_content(tmp_path, capsys):
    folder = tmp_path / "conf"
    run(webapp_env, env_args(folder, **{"webapp.env": "A=1\n"}), capsys)
    _, res = run(webapp_env, env_args(folder, state="live", **{"webapp.env": ""}), capsys)
    assert res["changed"] and res["written"] == [str(folder / "webapp.env")]
    assert (folder / "webapp.env").read_text() == "A=1\n"
    assert owner_mode(folder / "webapp.env") == (0, grp.getgrnam(GROUP).gr_gid, "0o640")
    _, res = run(webapp_env, env_args(folder, **{"webapp.env": "A=1\n"}), capsys)
    assert not res["changed"] and not res["pending"]
    _, res = run(webapp_env, env_args(folder, state="live", **{"webapp.env": ""}), capsys)
    assert not res["changed"]


def test_env_sees_a_pending_change_left_by_an_interrupted_run(tmp_path, capsys):
    folder = tmp_path / "conf"
    run(webapp_env, env_args(folder, **{"webapp.env": "A=1\n"}), capsys)
    run(webapp_env, env_args(folder, state="live", **{"webapp.env": ""}), capsys)
    run(webapp_env, env_args(folder, **{"webapp.env": "A=2\n"}), capsys)  # the run stops here
    _, res = run(webapp_env, env_args(folder, **{"webapp.env": "A=2\n"}), capsys)
    assert not res["changed"] and res["pending"]  # nothing to write, the live file still differs


def test_env_gives_a_file_of_another_owner_or_mode_the_apps_group_and_0640(tmp_path, capsys):
    folder = tmp_path / "conf"
    folder.mkdir(mode=0o755)
    (folder / "webapp.env.next").write_text("A=1\n")
    (folder / "webapp.env.next").chmod(0o644)
    _, res = run(webapp_env, env_args(folder, **{"webapp.env": "A=1\n"}), capsys)
    assert res["written"] == [str(folder), str(folder / "webapp.env.next")]
    assert owner_mode(folder)[2] == "0o750" and owner_mode(folder / "webapp.env.next")[2] == "0o640"


def test_env_changes_nothing_in_check_mode_and_shows_the_diff(tmp_path, capsys):
    folder = tmp_path / "conf"
    run(webapp_env, env_args(folder, **{"webapp.env": "A=1\n"}), capsys)
    args = env_args(folder, **{"webapp.env": "A=2\n"}) | {"_ansible_check_mode": True, "_ansible_diff": True}
    _, res = run(webapp_env, args, capsys)
    assert res["changed"] and res["pending"]
    assert res["diff"] == [{"before_header": str(folder / "webapp.env.next"), "after_header": str(folder / "webapp.env.next"),
                            "before": "A=1\n", "after": "A=2\n"}]
    assert (folder / "webapp.env.next").read_text() == "A=1\n"


def test_env_in_check_mode_tolerates_a_group_the_install_has_not_made_yet(tmp_path, capsys):
    args = env_args(tmp_path / "conf", **{"webapp.env": "A=1\n"}) | {"group": "no-such-group-here", "_ansible_check_mode": True}
    rc, res = run(webapp_env, args, capsys)
    assert rc == 0 and res["changed"] and not (tmp_path / "conf").exists()


def test_env_refuses_a_missing_group_outside_check_mode(tmp_path, capsys):
    args = env_args(tmp_path / "conf", **{"webapp.env": "A=1\n"}) | {"group": "no-such-group-here"}
    rc, res = run(webapp_env, args, capsys)
    assert rc == 1 and "no-such-group-here" in res["msg"] and "app_group" in res["msg"]


def test_env_puts_nothing_in_place_without_its_next_file(tmp_path, capsys):
    folder = tmp_path / "conf"
    folder.mkdir()
    (folder / "webapp.env").write_text("A=1\n")
    rc, res = run(webapp_env, env_args(folder, state="live", **{"webapp.env": ""}), capsys)
    assert rc == 1 and "webapp.env.next" in res["msg"] and (folder / "webapp.env").read_text() == "A=1\n"


def test_env_needs_each_files_content_to_write_it(tmp_path, capsys):
    args = env_args(tmp_path / "conf", **{"webapp.env": "A=1\n"})
    del args["files"][0]["content"]
    rc, res = run(webapp_env, args, capsys)
    assert rc == 1 and "no content" in res["msg"] and not (tmp_path / "conf").exists()


def test_env_writes_secrets_in_the_same_run_and_never_shows_them(tmp_path, capsys):
    """The secret file beside the environment in one module run: written like it, pending like it,
    put in place like it, but absent from every diff and masked in the module's output."""
    folder, secret = tmp_path / "conf", "s3cr3t-value-9f2c"
    args = env_args(folder, **{"webapp.env": "A=1\n"}) | {
        "secret_files": [{"path": str(folder / "secrets.env"), "content": f"TOKEN={secret}\n"}], "_ansible_diff": True}
    with patch_module_args(args), pytest.raises(SystemExit):
        webapp_env.main()
    out = capsys.readouterr().out
    res = json.loads(out)
    assert secret not in out and res["pending"]
    assert res["written"] == [str(folder), str(folder / "webapp.env.next"), str(folder / "secrets.env.next")]
    assert [d["after_header"] for d in res["diff"]] == [str(folder / "webapp.env.next")]
    assert (folder / "secrets.env.next").read_text() == f"TOKEN={secret}\n"
    assert owner_mode(folder / "secrets.env.next") == (0, grp.getgrnam(GROUP).gr_gid, "0o640")
    live = env_args(folder, state="live", **{"webapp.env": ""}) | {"secret_files": [{"path": str(folder / "secrets.env")}],
                                                                   "_ansible_diff": True}
    rc, res = run(webapp_env, live, capsys)
    assert rc == 0 and res["written"] == [str(folder / "webapp.env"), str(folder / "secrets.env")]
    assert [d["after_header"] for d in res["diff"]] == [str(folder / "webapp.env")]
    assert (folder / "secrets.env").read_text() == f"TOKEN={secret}\n"
    _, res = run(webapp_env, args | {"secret_files": [{"path": str(folder / "secrets.env"), "content": "TOKEN=new\n"}]},
                 capsys)
    assert res["pending"] and res["written"] == [str(folder / "secrets.env.next")] and res["diff"] == []


# --- webapp_releases -------------------------------------------------------------------------

def layout(base: Path) -> dict:
    return {"base": str(base), "releases": str(base / "releases"), "artifacts": str(base / "artifacts"),
            "current": str(base / "current"), "state": str(base / "state"), "deployed": str(base / "state/deployed"),
            "rolled_back": str(base / "state/rolled-back"), "rollback_note": str(base / "state/rollback.json"), "shared": str(base / "shared"),
            "complete_marker": ".complete", "failed_marker": ".failed"}


def make_host(base: Path) -> dict:
    lay = layout(base)
    for key in ("releases", "artifacts", "deployed", "rolled_back"):
        Path(lay[key]).mkdir(parents=True, exist_ok=True)
    for release, marks in {"r1": [".complete"], "r2": [".complete", ".failed"], "r3": []}.items():
        (base / "releases" / release).mkdir()
        for mark in marks:
            (base / "releases" / release / mark).write_text("")
    os.symlink(str(base / "releases" / "r1"), lay["current"])
    for name in ("webapp-r1.tar.gz", "webapp-r2.tar.gz", "other.txt"):
        (base / "artifacts" / name).write_text("")
    (base / "state/deployed/r2").write_text(json.dumps({"epoch": 20, "by": "b"}))
    (base / "state/deployed/r1").write_text(json.dumps({"epoch": 10, "by": "a"}))
    (base / "state/rolled-back/r2").write_text(json.dumps({"by": "c", "to": "r1"}))
    (base / "state/rolled-back/junk").write_text("not json")
    Path(lay["rollback_note"]).write_text(json.dumps({"target": "r1"}))
    return lay


def test_releases_reads_the_whole_layout(tmp_path, capsys):
    lay = make_host(tmp_path / "app")
    rc, res = run(webapp_releases, {"layout": lay}, capsys)
    assert rc == 0 and not res["changed"]
    assert res["current"] == "r1"
    assert res["releases"] == ["r1", "r2"] and res["folders"] == ["r1", "r2", "r3"]
    assert res["marked_failed"] == ["r2"]
    assert res["artifacts"] == ["r1", "r2"]
    assert [d["release"] for d in res["deployed"]] == ["r1", "r2"]  # oldest first
    assert res["rolled_back"] == {"junk": {}, "r2": {"by": "c", "to": "r1"}}
    assert res["rollback"] == {"target": "r1"}


def test_releases_lists_only_root_folders_of_mode_0755(tmp_path, capsys):
    lay = make_host(tmp_path / "app")
    for key in ("base", "releases", "artifacts", "state", "deployed"):
        os.chmod(lay[key], 0o755)
    os.chmod(lay["rolled_back"], 0o700)
    _, res = run(webapp_releases, {"layout": lay}, capsys)
    assert res["dirs"] == [lay[k] for k in ("base", "releases", "artifacts", "state", "deployed")]


def test_releases_of_a_new_host_are_empty(tmp_path, capsys):
    _, res = run(webapp_releases, {"layout": layout(tmp_path / "none")}, capsys)
    assert (res["current"], res["releases"], res["deployed"], res["rollback"], res["dirs"]) == ("", [], [], {}, [])


def test_releases_refuses_a_layout_without_every_path(tmp_path, capsys):
    lay = layout(tmp_path)
    del lay["failed_marker"]
    rc, res = run(webapp_releases, {"layout": lay}, capsys)
    assert rc == 1 and "failed_marker" in res["msg"]


# --- webapp_instances: health probes ---------------------------------------------------------

class Instance(Loopback):
    """A stand-in app instance on loopback: every answer names its release in the runner's
    X-Release header; /health answers 200, 500 when broken."""

    def __init__(self) -> None:
        self.release, self.broken, self.crashed = "", False, False
        super().__init__(lambda path: (500 if self.broken else 200, {webapp_probe.RELEASE_HEADER: self.release}, b"ok"))


def raw_server(answer: bytes | None, hang: float = 0) -> tuple[int, threading.Event]:
    """A loopback server that reads a request and sends `answer` as it is (or nothing, after `hang` s), then closes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            listener.settimeout(0.2)
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.recv(4096)
                if answer is not None:
                    conn.sendall(answer)
                else:
                    done.wait(hang)
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1], done


def probe(port: int, timeout: float = 2) -> tuple[int, str, str]:
    return webapp_probe.health(f"http://127.0.0.1:{port}/health", timeout)


def test_health_of_a_good_instance():
    inst = Instance()
    inst.release = "r1"
    assert probe(inst.port) == (200, "r1", "")
    inst.broken = True
    assert probe(inst.port) == (500, "r1", "answered 500")
    inst.shutdown()


def test_health_counts_the_statuses_asked_for_and_needs_the_runners_header():
    inst = Instance()
    inst.release, inst.broken = "r1", True
    assert webapp_probe.health(f"http://127.0.0.1:{inst.port}/health", 2, (200, 500)) == (500, "r1", "")
    inst.release, inst.broken = "", False
    status, release, why = probe(inst.port)
    assert (status, release) == (200, "") and "X-Release" in why, why
    inst.shutdown()


@pytest.mark.parametrize(("answer", "words"), [
    (b"garbage\r\n\r\n", ["BadStatusLine"]),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"release\": ", ["IncompleteRead"]),
    (b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(150)) + b"\r\n{}", ["HTTPException", "100 headers"]),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nnot js!", ["without the X-Release header"]),
    (b"", ["RemoteDisconnected"]),
], ids=["garbage", "cut body", "too many headers", "no release header", "closed"])
def test_a_broken_answer_is_unhealthy_with_its_reason(answer, words):
    port, done = raw_server(answer)
    status, release, why = probe(port)
    done.set()
    assert release == "" and status in (0, 200), (status, why)
    for word in words:
        assert word in why, why


def test_a_hung_instance_is_unhealthy_after_the_timeout():
    port, done = raw_server(None, hang=5)
    start = time.monotonic()
    status, _, why = probe(port, timeout=0.5)
    done.set()
    assert status == 0 and "timed out" in why and time.monotonic() - start < 3


def test_a_closed_port_is_unhealthy():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    status, _, why = probe(port)
    assert status == 0 and "refused" in why.lower(), why


# --- webapp_instances: switch, converge and switch back --------------------------------------

@pytest.fixture
def host(tmp_path, monkeypatch):
    """Two instances and two releases (good, broken), with a stand-in for systemctl and journalctl:
    a restart makes the instance serve what `current` points at (500 for the broken release)."""
    releases = tmp_path / "releases"
    for name in ("good", "broken", "next", "crash"):
        (releases / name).mkdir(parents=True)
    link = tmp_path / "current"
    os.symlink(str(releases / "good"), link)
    instances = {i.port: i for i in (Instance(), Instance())}
    for inst in instances.values():
        inst.release = "good"
    calls: list[list[str]] = []
    started = {"mono": time.monotonic()}

    def stand_in(cmd, **kwargs):
        calls.append(list(cmd))
        out = ""
        if cmd[:2] == ["systemctl", "show"]:
            port = int(cmd[2].split("@")[1].split(".")[0])
            state = "ActiveState=activating\nSubState=auto-restart" if instances[port].crashed and cmd[2].endswith(
                ".service") else "ActiveState=active\nSubState=running"
            out = f"{state}\nExecMainStartTimestampMonotonic={int(started['mono'] * 1e6)}\n" \
                  f"ActiveEnterTimestampMonotonic={int(started['mono'] * 1e6)}\n"
        elif cmd[:2] == ["systemctl", "is-enabled"]:
            out = "enabled\n"
        elif cmd[:2] == ["systemctl", "restart"] and cmd[2].endswith(".service"):
            port = int(cmd[2].split("@")[1].split(".")[0])
            release = os.path.basename(os.readlink(link))
            instances[port].release, instances[port].broken = release, release in ("broken", "crash")
            instances[port].crashed = release == "crash"
            started["mono"] = time.monotonic()
        elif cmd[0] == "journalctl":
            out = "Traceback: the release crashed at start\n"
        return subprocess.CompletedProcess(cmd, 0, stdout=out, stderr="")

    monkeypatch.setattr(webapp_instances.subprocess, "run", stand_in)
    yield {"releases": releases, "link": link, "instances": instances, "calls": calls,
           "args": {"address": "127.0.0.1", "ports": sorted(instances), "converge": True, "wait": 2, "interval": 0.05,
                    "link": str(link), "releases_dir": str(releases), "host": "app1", "watch": [str(link)]}}
    for inst in instances.values():
        inst.shutdown()


def restarts(calls: list[list[str]]) -> list[str]:
    return [c[2] for c in calls if c[:2] == ["systemctl", "restart"]]


def test_converge_changes_nothing_when_every_instance_serves_the_release(host, capsys):
    time.sleep(0.01)
    rc, res = run(webapp_instances, {**host["args"], "release": "good", "watch": []}, capsys)
    assert rc == 0 and not res["changed"] and res["restarted"] == [] and not res["switched"]


def test_switch_points_current_and_restarts_one_instance_at_a_time(host, capsys):
    rc, res = run(webapp_instances, {**host["args"], "release": "next", "fallback": "good"}, capsys)
    assert rc == 0, res["msg"] if "msg" in res else res
    assert res["changed"] and res["switched"] and res["restarted"] == host["args"]["ports"]
    assert os.readlink(host["link"]) == str(host["releases"] / "next")
    assert {i.release for i in host["instances"].values()} == {"next"}
    # each restart after a reset of the unit's failed state (the start limit never refuses it)
    calls = [c[:3] for c in host["calls"] if c[:2] in (["systemctl", "reset-failed"], ["systemctl", "restart"])]
    assert [c[1] for c in calls] == ["reset-failed", "restart"] * 2


def test_a_release_that_fails_is_marked_and_every_instance_goes_back(host, capsys):
    rc, res = run(webapp_instances, {**host["args"], "release": "broken", "fallback": "good"}, capsys)
    assert rc == 1
    assert res["msg"].startswith("Release broken failed on app1; current is back at good and every instance answers with it.")
    assert "the release crashed at start" in res["msg"]  # the failing instance's journal
    assert (host["releases"] / "broken" / ".failed").exists()
    assert os.readlink(host["link"]) == str(host["releases"] / "good")
    assert {(i.release, i.broken) for i in host["instances"].values()} == {("good", False)}
    first, second = host["args"]["ports"]
    # the second instance never served the broken release: it restarts only once current is back
    # (it started before the link changed), after the first came back
    assert restarts(host["calls"]) == [f"webapp@{p}.service" for p in (first, first, second)]


def test_a_release_that_crashes_at_start_is_given_up_on_at_once(host, capsys):
    """Its process exits (systemd's auto-restart): no waiting out the whole health wait."""
    start = time.monotonic()
    rc, res = run(webapp_instances, {**host["args"], "release": "crash", "fallback": "good", "wait": 30}, capsys)
    assert rc == 1 and time.monotonic() - start < 10
    assert "service exited (systemd would start it again)" in res["msg"]
    assert "current is back at good" in res["msg"]
    assert {(i.release, i.crashed) for i in host["instances"].values()} == {("good", False)}


def test_an_exit_after_the_restart_counts_as_a_crash(host, capsys, monkeypatch):
    """Seen by the exit time systemd records, however briefly systemd shows the unit down."""
    stand_in = webapp_instances.subprocess.run

    def exited_later(cmd, **kwargs):
        proc = stand_in(cmd, **kwargs)
        if cmd[:2] == ["systemctl", "show"] and os.path.basename(os.readlink(host["link"])) == "crash":
            proc.stdout = proc.stdout.replace("SubState=auto-restart", "SubState=running").replace(
                "ActiveState=activating", "ActiveState=active") + f"ExecMainExitTimestampMonotonic={int(time.monotonic() * 1e6)}\n"
        return proc

    monkeypatch.setattr(webapp_instances.subprocess, "run", exited_later)
    start = time.monotonic()
    rc, res = run(webapp_instances, {**host["args"], "release": "crash", "fallback": "good", "wait": 30}, capsys)
    assert rc == 1 and time.monotonic() - start < 10 and "service exited" in res["msg"]


@pytest.mark.parametrize("fault", [
    ("ExecMainCode=1\nExecMainStatus=219\nResult=exit-code\n", 0),  # its cgroup refused the process
    ("ExecMainCode=0\nExecMainStatus=0\nResult=resources\n", 1),  # "Failed to spawn executor": restart fails
], ids=["219-cgroup", "resources"])
def test_a_start_systemd_could_not_carry_out_is_waited_for_not_a_crash(host, capsys, monkeypatch, fault):
    """The host's fault, before the release ran: the unit's Restart= starts it again, the switch
    waits for that and goes on; the release is not marked failed."""
    shown, restart_rc = fault
    stand_in = webapp_instances.subprocess.run
    first = host["args"]["ports"][0]
    refused = {"shows": 0}

    def refused_once(cmd, **kwargs):
        proc = stand_in(cmd, **kwargs)
        if cmd[:3] == ["systemctl", "restart", f"webapp@{first}.service"] and refused["shows"] == 0:
            proc.returncode = restart_rc
        if cmd[:3] == ["systemctl", "show", f"webapp@{first}.service"] and restarts(host["calls"]) and refused["shows"] < 3:
            refused["shows"] += 1
            host["instances"][first].broken = refused["shows"] < 3  # up once systemd's restart came
            if refused["shows"] < 3:
                proc.stdout = (f"ActiveState=activating\nSubState=auto-restart\n{shown}"
                               f"ExecMainExitTimestampMonotonic={int(time.monotonic() * 1e6)}\n")
        return proc

    monkeypatch.setattr(webapp_instances.subprocess, "run", refused_once)
    rc, res = run(webapp_instances, {**host["args"], "release": "next", "fallback": "good"}, capsys)
    assert rc == 0, res.get("msg", res)
    assert refused["shows"] == 3 and not (host["releases"] / "next" / ".failed").exists()
    assert {i.release for i in host["instances"].values()} == {"next"}


def test_a_restart_systemd_refuses_for_the_release_fails_at_once(host, capsys, monkeypatch):
    stand_in = webapp_instances.subprocess.run

    def refused(cmd, **kwargs):
        proc = stand_in(cmd, **kwargs)
        if cmd[:2] == ["systemctl", "restart"]:
            proc.returncode, proc.stderr = 1, "Job for webapp@x.service failed because the control process exited"
        return proc

    monkeypatch.setattr(webapp_instances.subprocess, "run", refused)
    rc, res = run(webapp_instances, {**host["args"], "release": "next", "fallback": "good"}, capsys)
    assert rc == 1 and res["msg"].startswith("systemctl restart webapp@") and "control process exited" in res["msg"]


def test_a_release_that_fails_with_nothing_to_go_back_to_says_so(host, capsys):
    rc, res = run(webapp_instances, {**host["args"], "release": "broken", "fallback": ""}, capsys)
    assert rc == 1 and "there was no other release to go back to" in res["msg"]
    assert not (host["releases"] / "broken" / ".failed").exists()


def test_a_release_deployed_again_loses_its_failed_mark(host, capsys):
    (host["releases"] / "next" / ".failed").write_text("")
    rc, _ = run(webapp_instances, {**host["args"], "release": "next", "fallback": "good"}, capsys)
    assert rc == 0 and not (host["releases"] / "next" / ".failed").exists()


def test_check_mode_neither_switches_nor_restarts(host, capsys):
    rc, res = run(webapp_instances, {**host["args"], "release": "next", "fallback": "good", "_ansible_check_mode": True},
                  capsys)
    assert rc == 0 and res["changed"] and res["switched"]
    assert os.readlink(host["link"]) == str(host["releases"] / "good") and restarts(host["calls"]) == []


def rollback_args(host: dict, tmp_path: Path, release: str) -> tuple[dict, Path, Path, Path]:
    """A rollback's switch: its note and a rolled-back mark written, the target's mark removed, the
    lock (held by run "a") given back with the note at the end."""
    lock, note, marks = str(tmp_path / "release.lock"), tmp_path / "rollback.json", tmp_path / "rolled-back"
    marks.mkdir()
    (marks / release).write_text("{}\n")
    webapp_lock.attempt(lock, "present", owner("a"), "")
    args = {**host["args"], "release": release, "fallback": "good",
            "records": [{"path": str(note), "content": '{"target": "%s"}\n' % release, "replace": True},
                        {"path": str(marks / "good"), "content": '{"to": "%s"}\n' % release}],
            "records_absent": [str(marks / release)],
            "unlock": {"path": lock, "owner": owner("a"), "remove": [str(note)]}}
    return args, Path(lock), note, marks


def test_a_rollbacks_switch_records_it_switches_and_gives_the_lock_back_in_one_run(host, tmp_path, capsys, monkeypatch):
    args, lock, note, marks = rollback_args(host, tmp_path, "next")
    seen_at_restart: list[tuple[bool, bool]] = []
    stand_in = webapp_instances.subprocess.run

    def restart_sees_the_records(cmd, **kwargs):
        if cmd[:2] == ["systemctl", "restart"]:
            seen_at_restart.append((note.exists(), (marks / "good").exists()))
        return stand_in(cmd, **kwargs)

    monkeypatch.setattr(webapp_instances.subprocess, "run", restart_sees_the_records)
    rc, res = run(webapp_instances, args, capsys)
    assert rc == 0, res.get("msg", res)
    assert seen_at_restart and set(seen_at_restart) == {(True, True)}  # recorded before any instance moved
    assert res["written"] == [str(note), str(marks / "good")] and res["removed"] == [str(marks / "next")]
    assert res["unlocked"] and not lock.exists() and not note.exists()  # the note cleared as the lock went back
    assert (marks / "good").read_text() == '{"to": "next"}\n' and oct((marks / "good").stat().st_mode & 0o777) == "0o644"
    assert {i.release for i in host["instances"].values()} == {"next"}


def test_a_failed_rollback_switch_keeps_its_note_and_the_lock(host, tmp_path, capsys):
    args, lock, note, _ = rollback_args(host, tmp_path, "broken")
    rc, res = run(webapp_instances, args, capsys)
    assert rc == 1 and "current is back at good" in res["msg"]
    assert not res["unlocked"] and lock.exists() and note.exists()  # a re-run finishes the rollback


def test_a_rollbacks_switch_leaves_a_lock_another_run_holds(host, tmp_path, capsys):
    args, lock, note, _ = rollback_args(host, tmp_path, "next")
    args["unlock"]["owner"] = owner("b")
    rc, res = run(webapp_instances, args, capsys)
    assert rc == 0 and not res["unlocked"] and lock.exists() and note.exists()


def test_a_rollbacks_switch_in_check_mode_writes_nothing_and_keeps_the_lock(host, tmp_path, capsys):
    args, lock, note, marks = rollback_args(host, tmp_path, "next")
    rc, res = run(webapp_instances, {**args, "_ansible_check_mode": True, "_ansible_diff": True}, capsys)
    assert rc == 0 and res["written"] == [str(note), str(marks / "good")] and len(res["diff"]) == 3
    assert not note.exists() and (marks / "next").exists() and lock.exists() and not res["unlocked"]


def test_records_and_unlock_need_converge(host, tmp_path, capsys):
    args, *_ = rollback_args(host, tmp_path, "next")
    rc, res = run(webapp_instances, {**args, "converge": False}, capsys)
    assert rc == 1 and res["msg"] == "folders, records, records_absent and unlock need converge"


def test_a_rollbacks_switch_makes_the_state_folders_its_records_go_into(host, tmp_path, capsys):
    """A host whose state folders are missing (or have another mode) gets them before the records."""
    args, lock, note, marks = rollback_args(host, tmp_path, "next")
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    fresh = state / "rolled-back"
    args["folders"] = [str(state), str(fresh)]
    args["records"] = [*args["records"], {"path": str(fresh / "good"), "content": "{}\n"}]
    rc, res = run(webapp_instances, args, capsys)
    assert rc == 0, res.get("msg", res)
    assert res["written"][:2] == [str(state), str(fresh)] and (fresh / "good").read_text() == "{}\n"
    assert [oct(p.stat().st_mode & 0o777) for p in (state, fresh)] == ["0o755", "0o755"]
    rc, res = run(webapp_instances, args, capsys)
    assert rc == 0 and str(state) not in res["written"]  # converged: nothing to make again


def test_a_file_where_a_state_folder_goes_fails_before_any_instance_moves(host, tmp_path, capsys):
    args, lock, note, _ = rollback_args(host, tmp_path, "next")
    (tmp_path / "state").write_text("")
    made = tmp_path / "base"
    rc, res = run(webapp_instances, {**args, "folders": [str(made), str(tmp_path / "state")]}, capsys)
    assert rc == 1 and res["msg"] == f"{tmp_path / 'state'} exists and is not a folder: a state folder of the app must be a folder; no instance was touched"
    assert res["changed"] and res["written"] == [str(made)] and made.is_dir()  # what was made before it is said
    assert restarts(host["calls"]) == [] and not note.exists() and lock.exists()
    assert os.readlink(host["link"]) == str(host["releases"] / "good")


# --- webapp_instances: the pre-check on the spare port ----------------------------------------

@pytest.fixture
def spare(tmp_path, monkeypatch):
    """The spare port's stand-in instance, and a stand-in for systemctl and journalctl: starting
    candidate@<release>.service makes it serve that release (500 for "broken"); one pre-check of an
    interrupted run is still listed as running."""
    for name in ("next", "broken"):
        (tmp_path / name).mkdir()
    inst = Instance()
    inst.broken = True  # nothing serves the spare port until a start
    calls: list[list[str]] = []

    def stand_in(cmd, **kwargs):
        calls.append(list(cmd))
        out = ""
        if cmd[:2] == ["systemctl", "list-units"]:
            out = "webapp-candidate@old.service loaded active running webapp pre-check\n"
        elif cmd[:2] == ["systemctl", "start"]:
            inst.release = cmd[2].split("@")[1].removesuffix(".service")
            inst.broken = inst.release == "broken"
        elif cmd[:2] == ["systemctl", "stop"]:
            inst.broken = True
        elif cmd[0] == "journalctl":
            out = "Traceback: the release cannot start\n"
        return subprocess.CompletedProcess(cmd, 0, stdout=out, stderr="")

    monkeypatch.setattr(webapp_precheck.subprocess, "run", stand_in)
    yield {"calls": calls, "inst": inst, "args": {
        "address": "127.0.0.1", "port": inst.port, "unit": "webapp-candidate", "releases_dir": str(tmp_path),
        "fallback": "good", "wait": 0.5, "interval": 0.05, "host": "app1"}}
    inst.shutdown()


def systemctl_calls(calls: list[list[str]]) -> list[str]:
    return [f"{c[1]} {c[2]}" for c in calls if c[0] == "systemctl" and c[1] in ("start", "stop")]


def test_a_precheck_stops_a_left_over_one_starts_the_release_and_stops_it(spare, capsys):
    rc, res = run(webapp_precheck, {**spare["args"], "release": "next"}, capsys)
    assert rc == 0, res
    assert res["leftovers"] == ["webapp-candidate@old.service"] and res["stale"] == []
    assert res["instances"][0]["release"] == "next"
    assert systemctl_calls(spare["calls"]) == ["stop webapp-candidate@old.service", "start webapp-candidate@next.service",
                                               "stop webapp-candidate@next.service"]


def test_a_release_that_fails_its_precheck_is_marked_failed_and_named_with_its_journal(spare, tmp_path, capsys):
    rc, res = run(webapp_precheck, {**spare["args"], "release": "broken"}, capsys)
    assert rc == 1
    assert res["msg"].startswith(f"Release broken did not answer its health endpoint on 127.0.0.1:{spare['inst'].port} "
                                 "on app1 within 0.5 s (health: answered 500)")
    assert "current is still good" in res["msg"] and "the release cannot start" in res["msg"]
    assert (tmp_path / "broken" / ".failed").read_text().startswith("pre-check on 127.0.0.1")
    assert systemctl_calls(spare["calls"])[-1] == "stop webapp-candidate@broken.service"  # stopped all the same


def test_a_precheck_in_check_mode_starts_nothing(spare, capsys):
    rc, res = run(webapp_precheck, {**spare["args"], "release": "next", "_ansible_check_mode": True}, capsys)
    assert rc == 0 and res["changed"] and systemctl_calls(spare["calls"]) == []


def test_a_precheck_needs_a_wait(spare, capsys):
    rc, res = run(webapp_precheck, {**spare["args"], "release": "next", "wait": 0}, capsys)
    assert rc == 1 and "wait must be above 0" in res["msg"]


def test_a_precheck_of_new_settings_marks_no_release_failed(spare, tmp_path, capsys):
    rc, res = run(webapp_precheck, {**spare["args"], "release": "broken", "mark_failed": False}, capsys)
    assert rc == 1 and "settings this run brings" in res["msg"]
    assert not (tmp_path / "broken" / ".failed").exists()


def test_a_link_needs_the_releases_folder(capsys):
    rc, res = run(webapp_instances, {"address": "127.0.0.1", "ports": [1], "link": "/x", "release": "r"}, capsys)
    assert rc == 1 and "releases_dir is required with link" in res["msg"]


def test_the_lock_is_readable_by_root_only_and_records_when_it_was_taken(tmp_path, capsys):
    path = tmp_path / "release.lock"
    os.umask(0o022)
    _, res = run(webapp_lock, {"path": str(path), "owner": owner("a")}, capsys)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "release.lock.guard").stat().st_mode & 0o777) == "0o600"
    assert abs(res["holder"]["taken"] - time.time()) < 60
    _, res = run(webapp_lock, {"path": str(path), "owner": owner("b"), "take_over": "a"}, capsys)
    assert oct(path.stat().st_mode & 0o777) == "0o600" and res["holder"]["run_id"] == "b"


# --- webapp_run (the lookup that names a run) --------------------------------------------------

sys.path.insert(0, str(ROOT / "roles" / "app" / "lookup_plugins"))
import webapp_run  # noqa: E402


@pytest.mark.parametrize(("argv", "shown"), [
    (["/venv/bin/python3", "/venv/bin/ansible-playbook", "-i", "inventories/lab", "playbooks/rollback.yml",
      "-e", "bar_secret=s3cr3t", "--extra-vars", "release=x", "-l", "app1"],
     "ansible-playbook playbooks/rollback.yml --limit app1"),
    (["ansible-playbook", "site.yml", "--limit=lb", "--vault-password-file", "/root/pw.yml", "-e@secrets.yml"],
     "ansible-playbook site.yml --limit lb"),
    (["/usr/bin/python3", "-c", "print(1)"], ""),
])
def test_a_runs_command_shows_playbooks_and_limit_never_extra_vars(argv, shown):
    assert webapp_run.command(argv) == shown


def test_a_run_is_named_by_a_random_id_and_its_controller():
    first, second = webapp_run.owner(), webapp_run.owner()
    assert first["run_id"] != second["run_id"]
    assert first["run_id"].startswith(first["controller"] + ":") and first["machine"] == webapp_run.machine_id()
    assert {"user", "pid", "ticks", "epoch", "started", "command"} <= set(first)


def test_a_live_run_of_this_controller_is_never_abandoned_however_old():
    me = webapp_run.owner()
    me["pid"], me["ticks"] = os.getpid(), webapp_run._proc(os.getpid())[0]
    me["taken"] = me["epoch"] = 0  # as old as can be
    assert not webapp_run.abandoned(me, 3600)


def test_a_dead_run_of_this_controller_is_abandoned_at_once():
    dead = subprocess.Popen(["true"])
    dead.wait()
    holder = {**webapp_run.owner(), "pid": dead.pid, "taken": time.time()}
    assert webapp_run.abandoned(holder, 3600)
    reused = {**webapp_run.owner(), "pid": os.getpid(), "ticks": "1", "taken": time.time()}  # another process now
    assert webapp_run.abandoned(reused, 3600)


def test_a_run_of_another_controller_is_abandoned_only_after_its_lock_is_old():
    other = {"run_id": "ctl2:abc", "controller": "ctl2", "machine": "m2", "pid": 1, "ticks": "5", "epoch": 0.0,
             "taken": 1000.0}
    assert not webapp_run.abandoned(other, 3600, here="m1", now=1000.0 + 3599)
    assert webapp_run.abandoned(other, 3600, here="m1", now=1000.0 + 3601)
    assert not webapp_run.abandoned({}, 0)


# --- stack_env_value (an environment file's quoting: the app's message, Fluent Bit's password) --

sys.path.insert(0, str(ROOT / "playbooks" / "filter_plugins"))
from stack_filters import env_value as webapp_env_value  # noqa: E402


def unquote_as_systemd(value: str) -> str:
    """systemd's reading of a double-quoted environment-file value (env-file.c: a backslash before
    one of " \\ ` $ gives that character, elsewhere it stays)."""
    assert value[0] == value[-1] == '"'
    out, chars = [], iter(value[1:-1])
    for c in chars:
        if c == "\\":
            nxt = next(chars)
            out.append(nxt if nxt in '"\\`$' else "\\" + nxt)
        else:
            assert c not in '"', value
            out.append(c)
    return "".join(out)


@pytest.mark.parametrize("message", ["Hello, DevOps!", "Grüße aus Köln — ✓", 'say "hi"', "100% $HOME ${X} `id`",
                                     "back\\slash \\n not a newline", "", "'single'"])
def test_environment_values_arrive_byte_for_byte(message):
    quoted = webapp_env_value(message)
    assert unquote_as_systemd(quoted) == message
    assert "\\u" not in quoted or "\\u" in message  # UTF-8 as it is, never JSON's escapes


@pytest.mark.parametrize("message", ["two\nlines", "cr\r", "nul\0"])
def test_an_environment_value_of_more_than_one_line_is_refused(message):
    with pytest.raises(ValueError, match="cannot hold a newline"):
        webapp_env_value(message)
