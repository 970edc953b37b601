"""The operator's app settings: the preflight's problems (each naming its variable), the
environment files, the build's command line, and the shared paths kept across releases
(roles/app/library/webapp_shared.py) against a temporary folder."""

from __future__ import annotations

import grp
import os
import pwd
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.test_app_modules import run

sys.path.insert(0, str(ROOT / "roles" / "app" / "filter_plugins"))
sys.path.insert(0, str(ROOT / "roles" / "app" / "library"))
sys.path.insert(0, str(ROOT / "playbooks" / "filter_plugins"))
import stack_filters  # noqa: E402
import webapp_settings  # noqa: E402
import webapp_shared  # noqa: E402

GOOD = {"app_wsgi": "myapp:create_app()", "app_health_path": "/health", "app_health_statuses": [200],
        "app_env": {"DATABASE_URL": "sqlite:///x"}, "app_secret_env": {"SECRET_KEY": "s3cret"},
        "app_shared_paths": ["var", "venv/var/myapp-instance"], "app_shared_files": {"conf/settings.toml": "a = 1\n"},
        "app_migrate_command": "flask --app myapp:create_app db upgrade"}


def problems(**changes) -> list[str]:
    return webapp_settings.settings_problems({**GOOD, **changes})


def test_good_settings_have_no_problem():
    assert problems() == []


@pytest.mark.parametrize("wsgi", ["myapp:app", "myapp:create_app()", "pkg.mod:obj.app", "webapp.app:create_app()"])
def test_wsgi_forms_accepted(wsgi):
    assert problems(app_wsgi=wsgi) == []


@pytest.mark.parametrize("wsgi", ["myapp", "myapp:", ":app", "my-app:app", "myapp:create_app(1)", "myapp:app;rm", ""])
def test_a_wsgi_that_is_no_callable_path_is_refused_naming_app_wsgi(wsgi):
    found = problems(app_wsgi=wsgi)
    assert len(found) == 1 and found[0].startswith("app_wsgi"), found


@pytest.mark.parametrize(("path", "words"), [
    ("../etc", ["app_shared_paths", "leaves the release"]),
    ("var/../../x", ["app_shared_paths", "leaves the release"]),
    ("/srv/data", ["app_shared_paths", "absolute"]),
    ("venv", ["app_shared_paths", "release's own"]),
    ("", ["app_shared_paths", "must name"]),
    ("./var", ["app_shared_paths", "not normalized"]),
])
def test_a_shared_path_outside_the_release_is_refused(path, words):
    found = problems(app_shared_paths=[path])
    assert len(found) == 1, found
    for word in words:
        assert word in found[0], found


def test_shared_paths_that_overlap_are_refused():
    found = problems(app_shared_paths=["var", "var/uploads"], app_shared_files={})
    assert found and "overlap" in found[0], found
    found = problems(app_shared_paths=["conf"], app_shared_files={"conf/settings.toml": "x"})
    assert found and "app_shared_paths" in found[0] and "app_shared_files" in found[0], found


@pytest.mark.parametrize(("name", "words"), [
    ("1ABC", ["app_env", "not an environment name"]),
    ("MY-VAR", ["app_env", "not an environment name"]),
    ("STACK_WSGI", ["app_env", "set by the stack"]),
    ("LISTEN_FDS", ["app_env", "set by the stack"]),
    ("PATH", ["app_env", "set by the stack"]),
])
def test_an_environment_name_that_is_no_identifier_or_the_stacks_is_refused(name, words):
    found = problems(app_env={name: "x"})
    assert len(found) == 1, found
    for word in words:
        assert word in found[0], found


def test_a_secret_value_with_a_newline_is_refused_without_echoing_it():
    found = problems(app_secret_env={"SECRET_KEY": "top\nsecret"})
    assert len(found) == 1 and "app_secret_env" in found[0] and "SECRET_KEY" in found[0], found
    assert "secret" not in found[0].replace("app_secret_env", "").replace("SECRET_KEY", ""), found


def test_a_name_in_both_environments_is_refused():
    found = problems(app_env={"SECRET_KEY": "a"}, app_secret_env={"SECRET_KEY": "b"})
    assert found and "both" in found[0], found


@pytest.mark.parametrize(("path", "statuses"), [("health", [200]), ("/he alth", [200]), ("/health", []),
                                                 ("/health", [99]), ("/health", ["ok"]), ("/health", [True])])
def test_a_bad_health_path_or_status_is_refused(path, statuses):
    found = problems(app_health_path=path, app_health_statuses=statuses)
    assert found and all(f.startswith(("app_health_path", "app_health_statuses")) for f in found), found


def test_a_migrate_command_is_one_line():
    assert problems(app_migrate_command="a\nb")[0].startswith("app_migrate_command")
    assert problems(app_migrate_command="") == []


def test_environment_lines_are_sorted_and_escaped_for_systemd():
    text = stack_filters.env_lines({"B": 'say "$HOME"', "A": 1, "C": None})
    assert text == 'A="1"\nB="say \\"\\$HOME\\""\nC=""\n'
    assert stack_filters.env_lines({}) == ""


def test_the_build_argv_follows_the_first_app_hosts_settings(tmp_path):
    defaults = stack_filters.role_defaults()
    hostvars = {"app1": {"app_source": "/src/myapp", "app_pythons": ["3.11", "3.13"],
                         "app_test_command": "pytest -x"}}
    argv = stack_filters.build_argv(hostvars, {"app": ["app1"]}, "/py", "/repo", defaults=defaults)
    assert argv == ["/py", "/repo/scripts/build_release.py", "--project", "/repo", "--source", "/src/myapp",
                    "--python", "3.11,3.13", "--test-command", "pytest -x"]
    argv = stack_filters.build_argv({"app1": {"app_build_tests": False}}, {"app": ["app1"]}, "/py", "/repo",
                                    force=True, defaults=defaults)
    assert argv[4:] == ["--source", "/repo/app", "--no-tests", "--force"]
    assert stack_filters.build_argv({}, {}, "/py", "/repo", artifact="/a.tar.gz") == [
        "/py", "/repo/scripts/build_release.py", "--artifact", "/a.tar.gz"]


# --- webapp_shared ---------------------------------------------------------------------------

def me() -> tuple[str, str]:
    return pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name


@pytest.fixture
def layout(tmp_path) -> dict:
    release = tmp_path / "releases" / "r1"
    (release / "venv" / "var" / "myapp-instance").mkdir(parents=True)  # what a wheel may bring there
    user, group = me()
    return {"shared_dir": str(tmp_path / "shared"), "release_dir": str(release), "owner": user, "group": group,
            "paths": ["var/data", "venv/var/myapp-instance"], "files": {"conf/app.toml": "debug = false\n"}}


def test_shared_folders_are_made_once_and_linked_into_the_release(layout, capsys):
    rc, res = run(webapp_shared, layout, capsys)
    assert rc == 0 and res["changed"], res
    shared, release = Path(layout["shared_dir"]), Path(layout["release_dir"])
    for path in ("var/data", "venv/var/myapp-instance"):
        assert (release / path).is_symlink() and os.readlink(release / path) == str(shared / path)
        assert (shared / path).is_dir() and (shared / path).stat().st_mode & 0o777 == 0o750
    assert (release / "conf/app.toml").read_text() == "debug = false\n"
    assert (shared / "conf/app.toml").stat().st_mode & 0o777 == 0o640
    rc, res = run(webapp_shared, layout, capsys)
    assert rc == 0 and not res["changed"], res


def test_data_written_through_one_release_is_seen_by_the_next(layout, tmp_path, capsys):
    run(webapp_shared, layout, capsys)
    (Path(layout["release_dir"]) / "var/data/notes.db").write_text("rows")
    nxt = tmp_path / "releases" / "r2"
    nxt.mkdir()
    rc, res = run(webapp_shared, {**layout, "release_dir": str(nxt)}, capsys)
    assert rc == 0 and sorted(res["linked"]) == sorted(["var/data", "venv/var/myapp-instance", "conf/app.toml"])
    assert (nxt / "var/data/notes.db").read_text() == "rows"


def test_a_changed_shared_file_is_replaced_and_a_dropped_path_keeps_its_data(layout, capsys):
    run(webapp_shared, layout, capsys)
    (Path(layout["shared_dir"]) / "var/data/keep").write_text("x")
    rc, res = run(webapp_shared, {**layout, "paths": [], "files": {"conf/app.toml": "debug = true\n"}}, capsys)
    assert rc == 0 and res["changed"] and res["made"] == [str(Path(layout["shared_dir"]) / "conf/app.toml")]
    assert (Path(layout["shared_dir"]) / "var/data/keep").read_text() == "x"


def test_a_shared_path_that_leaves_the_release_fails(layout, capsys):
    rc, res = run(webapp_shared, {**layout, "paths": ["../escape"], "files": {}}, capsys)
    assert rc == 1 and "leaves" in res["msg"], res


@pytest.mark.parametrize("thing", ["file", "link"])
def test_a_shared_folder_whose_place_is_taken_fails_naming_it(layout, capsys, thing):
    taken = Path(layout["shared_dir"]) / "var/data"
    taken.parent.mkdir(parents=True)
    if thing == "file":
        taken.write_text("x")
    else:
        taken.symlink_to(taken.parent)  # a link to a folder is not the folder
    rc, res = run(webapp_shared, layout, capsys)
    assert rc == 1 and f"{taken} exists and is not a folder: move it away, a shared folder goes there" in res["msg"], res


def test_check_mode_changes_nothing(layout, capsys):
    rc, res = run(webapp_shared, {**layout, "_ansible_check_mode": True}, capsys)
    assert rc == 0 and res["changed"] and not Path(layout["shared_dir"]).exists()
