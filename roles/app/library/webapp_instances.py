#!/usr/bin/python
"""Ansible module: what each webapp instance on this host actually serves."""

from __future__ import annotations

DOCUMENTATION = r"""
module: webapp_instances
short_description: Observe the app's instances and say which must restart
description:
  - Reads, for every instance port, its systemd service and socket units and asks its
    health path (I(path)) which release it serves: the runner's C(X-Release) header, on an
    answer whose status is one of I(statuses).
  - An instance is stale when its service is not active, its socket unit is not listening,
    it does not answer with I(release), or it started before any path in I(watch) (or its
    socket before any path in I(socket_watch)) last changed.
  - With I(converge), observes every port and restarts each stale one (its socket anew
    first when that is stale), one at a time, each health-gated by I(wait); an
    instance that does not come up fails the task with the last I(journal_lines) lines of its
    unit's journal that match I(journal_filter). Then every port must answer with I(release).
  - With I(converge) and I(link), first points the C(current) link at I(release)'s folder
    under I(releases_dir) (a new link renamed over the old one: atomic). When an instance does
    not come up on I(release): marks the release failed (I(failed_marker) in its folder),
    points the link back at I(fallback), converges every instance onto it and fails naming both
    releases. On success, a failed mark of I(release) is cleared.
  - Before each restart the unit's failed state is reset, so systemd's start limit never
    refuses the restart of a switch-back.
  - With I(wait), polls until every port answers with I(release) or the time is up, and
    fails naming the instances that did not.
  - A health probe that fails in any way (refused, reset, timed out, a malformed or cut answer)
    counts as an unhealthy answer with its reason, never as an error of the module.
  - With I(candidate) (a pre-check), starts the template unit C(candidate@release.service),
    which serves I(release) on the one port of I(ports) without a socket unit, after stopping
    any C(candidate@*.service) an interrupted run left running; waits for its health (I(wait)),
    then stops it whatever happened. When it does not come up, marks I(release) failed
    (I(failed_marker) in its folder under I(releases_dir)) and fails with its journal, naming
    I(fallback) as the release still current. Nothing that serves traffic changes.
  - Without I(converge) or I(candidate), never changes anything.
options:
  address: {description: Address the instances listen on., type: str, required: true}
  ports: {description: Instance ports., type: list, elements: int, required: true}
  unit: {description: "Name of the template units (C(unit@port.service) and C(unit@port.socket))", type: str, default: webapp}
  release: {description: Release every instance must answer with; empty accepts any., type: str, default: ""}
  watch: {description: Files whose change requires a restart (symbolic links are not followed)., type: list, elements: path, default: []}
  socket_watch: {description: Files whose change requires the socket to be made anew., type: list, elements: path, default: []}
  wait: {description: Seconds to wait for every port to answer with I(release); 0 only observes., type: float, default: 0}
  interval: {description: Seconds between two probes while waiting., type: float, default: 0.1}
  timeout: {description: Seconds one health request may take., type: float, default: 2}
  check_units: {description: Whether the units count too; false asks only the health endpoint (a pre-check)., type: bool, default: true}
  converge: {description: Restart the stale instances one at a time, health-gated; needs I(wait)., type: bool, default: false}
  journal_lines: {description: Lines of a failing instance's journal to show., type: int, default: 40}
  journal_filter: {description: Regular expression (journalctl --grep) the journal lines shown must match; empty shows all., type: str, default: ""}
  link: {description: "The C(current) link to point at I(release) before converging (empty: leave it).", type: path, default: ""}
  releases_dir: {description: Folder of the releases the link points into; required with I(link)., type: path, default: ""}
  fallback: {description: "Release to go back to when I(release) fails (empty: none; with I(link)).", type: str, default: ""}
  failed_marker: {description: Name of the file that marks a release failed., type: str, default: .failed}
  host: {description: "How messages name this host (the inventory name; empty: the host name).", type: str, default: ""}
  mark_failed: {description: Whether a failed pre-check marks I(release) failed (not when only its environment is new)., type: bool, default: true}
  path: {description: The app's health path each instance is asked., type: str, default: /health}
  statuses: {description: HTTP statuses of the health path that count as healthy., type: list, elements: int, default: [200]}
  candidate: {description: "Template unit of a pre-check of I(release) (empty: no pre-check); needs I(wait) and I(releases_dir).", type: str, default: ""}
"""

RETURN = r"""
instances:
  description: One entry a port, with its state and why it is stale.
  type: list
  returned: always
stale:
  description: Ports whose instance must restart.
  type: list
  returned: always
restarted:
  description: Ports restarted by I(converge), in order.
  type: list
  returned: with I(converge)
disabled:
  description: Units of I(ports) (socket and service) that are not enabled.
  type: list
  returned: with I(converge)
extra:
  description: Instance units loaded for ports not in I(ports).
  type: list
  returned: with I(converge)
leftovers:
  description: Pre-check units an interrupted run left running, stopped by this one.
  type: list
  returned: with I(candidate)
switched:
  description: Whether the link was pointed at I(release) (or back at I(fallback)).
  type: bool
  returned: with I(converge)
"""

import http.client
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request

from ansible.module_utils.basic import AnsibleModule


def _show(unit: str, props: list[str]) -> dict[str, str]:
    out = subprocess.run(["systemctl", "show", unit, "--property=" + ",".join(props)],
                         capture_output=True, text=True, check=False).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def _started(values: dict[str, str], prop: str) -> float | None:
    """Wall-clock time (s) at which a unit's monotonic timestamp was taken, or None."""
    mono = int(values.get(prop) or 0)
    if not mono:
        return None
    return time.time() - (time.monotonic() - mono / 1e6)


def _changed_at(paths: list[str]) -> tuple[float, str]:
    newest, which = 0.0, ""
    for path in paths:
        try:
            mtime = os.lstat(path).st_mtime
        except FileNotFoundError:
            continue
        if mtime > newest:
            newest, which = mtime, path
    return newest, which


# The runner (runner/, stack_runner) names the release it serves on every answer.
RELEASE_HEADER = "X-Release"


def _health(url: str, timeout: float, statuses: tuple[int, ...] = (200,)) -> tuple[int, str, str]:
    """(status, release, why not healthy) of one request of the health path; status 0 when no
    answer came. The release is the runner's X-Release header, whatever the app answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (the host's own instances)
            resp.read()
            status, release = resp.status, resp.headers.get(RELEASE_HEADER, "")
    except urllib.error.HTTPError as err:
        status, release = err.code, (err.headers.get(RELEASE_HEADER, "") if err.headers else "")
    except (OSError, ValueError, http.client.HTTPException) as err:
        # refused, reset, timed out (OSError); a cut body (IncompleteRead), a malformed status line or
        # too many headers (HTTPException).
        cause = err.reason if isinstance(getattr(err, "reason", None), BaseException) else err  # URLError wraps it
        return 0, "", f"{type(cause).__name__}: {cause}"
    if status not in statuses:
        return status, release, f"answered {status}"
    if not release:
        return status, "", f"answered without the {RELEASE_HEADER} header (not served by the runner)"
    return status, release, ""


def observe(p: dict) -> list[dict]:
    host = f"[{p['address']}]" if ":" in p["address"] else p["address"]
    watched, watched_path = _changed_at(p["watch"])
    sock_watched, sock_path = _changed_at(p["socket_watch"])
    found = []
    for port in p["ports"]:
        service = f"{p['unit']}@{port}.service"
        socket_unit = f"{p['unit']}@{port}.socket"
        status, release, error = _health(f"http://{host}:{port}{p['path']}", p["timeout"], tuple(p["statuses"]))
        if p["check_units"]:
            svc = _show(service, ["ActiveState", "SubState", "ExecMainStartTimestampMonotonic",
                                  "ExecMainExitTimestampMonotonic"])
            sock = _show(socket_unit, ["ActiveState", "ActiveEnterTimestampMonotonic"])
        else:
            svc = sock = {"ActiveState": "active"}
        started = _started(svc, "ExecMainStartTimestampMonotonic")
        sock_started = _started(sock, "ActiveEnterTimestampMonotonic")
        reasons = []
        socket_stale = sock.get("ActiveState") != "active" or (
            sock_watched and (sock_started is None or sock_started < sock_watched))
        if sock.get("ActiveState") != "active":
            reasons.append(f"socket {sock.get('ActiveState', 'unknown')}")
        elif socket_stale:
            reasons.append(f"socket older than {sock_path}")
        # Its process exited since the restart that `since` names (or systemd shows it down): crashed.
        exited = int(svc.get("ExecMainExitTimestampMonotonic") or 0) / 1e6
        crashed = svc.get("ActiveState") == "failed" or svc.get("SubState") == "auto-restart" or bool(
            p.get("since") and exited > p["since"])
        if crashed:
            reasons.append("service exited (systemd would start it again)")
        elif svc.get("ActiveState") != "active":
            reasons.append(f"service {svc.get('ActiveState', 'unknown')}")
        elif watched and (started is None or started < watched):
            reasons.append(f"started before {watched_path} changed")
        if error:
            reasons.append(f"health: {error}")
        elif p["release"] and release != p["release"]:
            reasons.append(f"serves {release or 'no release'}, not {p['release']}")
        found.append({"port": port, "service": svc.get("ActiveState", ""), "socket": sock.get("ActiveState", ""),
                      "socket_stale": bool(socket_stale), "crashed": crashed, "status": status, "release": release,
                      "stale": bool(reasons), "reasons": reasons})
    return found


def _systemctl(module: AnsibleModule, *args: str) -> None:
    proc = subprocess.run(["systemctl", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        module.fail_json(msg=f"systemctl {' '.join(args)} failed: {proc.stderr.strip() or proc.stdout.strip()}")


def units(p: dict) -> tuple[list[str], list[str]]:
    """The wanted units that are not enabled, and the instance units loaded for other ports."""
    wanted = [f"{p['unit']}@{port}.{kind}" for port in p["ports"] for kind in ("socket", "service")]
    disabled = [u for u in wanted if subprocess.run(["systemctl", "is-enabled", u], capture_output=True, text=True,
                                                    check=False).stdout.strip() != "enabled"]
    loaded = subprocess.run(["systemctl", "list-units", "--all", "--plain", "--no-legend", "--no-pager",
                             f"{p['unit']}@*.socket", f"{p['unit']}@*.service"],
                            capture_output=True, text=True, check=False).stdout
    extra = [line.split()[0] for line in loaded.splitlines() if line.split() and line.split()[0] not in wanted]
    return disabled, extra


def wait(p: dict, ports: list[int], crash_ends: bool = False) -> tuple[list[dict], list[int]]:
    """Observe ports until each answers as wanted or p['wait'] seconds passed; with crash_ends (an
    instance just restarted), an instance whose process exited ends the wait at once: a release
    that crashes at start is given up on in a second, not after the whole wait, while the
    connections that reached its socket wait in the backlog for the release that comes back."""
    q = {**p, "ports": ports}
    if crash_ends:  # short probes: one that waits on a crashed process's backlog must not hide the crash
        q["timeout"] = min(p["timeout"], 0.5)
    deadline = time.monotonic() + p["wait"]
    while True:
        found = observe(q)
        stale = [i["port"] for i in found if i["stale"]]
        crashed = crash_ends and any(i["crashed"] for i in found)
        if not stale or crashed or not p["wait"] or time.monotonic() >= deadline:
            return found, stale
        time.sleep(p["interval"])


def stale_message(p: dict, found: list[dict]) -> str:
    detail = "; ".join(f"{i['port']}: {', '.join(i['reasons'])}" for i in found if i["stale"])
    return f"not every instance answers with release {p['release']} after {p['wait']} s ({detail})"


def journal(p: dict, port: int | str, unit: str = "") -> str:
    cmd = ["journalctl", f"--unit={unit or p['unit']}@{port}.service", f"--lines={p['journal_lines']}", "--no-pager",
           "--output=cat"] + ([f"--grep={p['journal_filter']}"] if p["journal_filter"] else [])
    return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout


def restart(module: AnsibleModule, p: dict, port: int, remake_socket: bool) -> tuple[list[dict], list[int]]:
    """Restart one instance (its socket anew first when asked) and wait for its health."""
    service = f"{p['unit']}@{port}.service"
    socket_unit = f"{p['unit']}@{port}.socket"
    # A release that crashed at start may have reached the start limit: forget it, or the restart is refused.
    subprocess.run(["systemctl", "reset-failed", service, socket_unit], capture_output=True, check=False)
    if remake_socket:
        _systemctl(module, "stop", service)
        _systemctl(module, "restart", socket_unit)
    _systemctl(module, "restart", service)
    # After the restart returned: the old process's exit is older than this, a crash of the new one newer.
    return wait({**p, "since": time.monotonic()}, [port], crash_ends=True)


class Failed(Exception):
    """An instance did not come up: the message, and what was observed."""

    def __init__(self, msg: str, result: dict) -> None:
        super().__init__(msg)
        self.msg, self.result = msg, result


def point(link: str, target: str, check_mode: bool) -> bool:
    """Point a symbolic link at target atomically (a new link renamed over it); whether it changed."""
    if os.path.islink(link) and os.readlink(link) == target:
        return False
    if not check_mode:
        tmp = f"{link}.new-{os.getpid()}"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(target, tmp)
        os.replace(tmp, link)
    return True


def settle(module: AnsibleModule, p: dict) -> dict:
    """Restart each stale instance, one at a time, health-gated; then check every one. Raises Failed."""
    found = observe(p)
    stale = [i for i in found if i["stale"]]
    result: dict = {"instances": found, "stale": [i["port"] for i in stale], "restarted": []}
    if module.check_mode or not stale:  # nothing stale: every instance already answers as wanted
        return result
    for inst in stale:
        port = inst["port"]
        seen, still = restart(module, p, port, inst["socket_stale"])
        result["restarted"].append(port)
        if still:
            reasons = ", ".join(seen[0]["reasons"])
            raise Failed(f"{p['unit']}@{port} did not answer its health endpoint with release {p['release']} within "
                         f"{p['wait']} s ({reasons}). Its journal:\n{journal(p, port)}", {**result, "instances": seen})
    found, still = wait(p, p["ports"])
    if still:
        raise Failed(stale_message(p, found), {**result, "instances": found, "stale": still})
    return {**result, "instances": found}


def converge(module: AnsibleModule, p: dict) -> None:
    """Point the link at the release (when asked), converge the instances on it; on failure, go
    back to the fallback release and fail."""
    disabled, extra = units(p)
    target_dir = os.path.join(p["releases_dir"], p["release"]) if p["link"] else ""
    switched = point(p["link"], target_dir, module.check_mode) if p["link"] else False
    try:
        result = settle(module, p)
    except Failed as failure:

        def fail(msg: str, went_back: bool, seen: dict) -> None:
            module.fail_json(msg=f"Release {p['release']} failed on {p['host']}{msg}", changed=True,
                             switched=switched or went_back, disabled=disabled, extra=extra, **seen)

        if not (p["fallback"] and p["fallback"] != p["release"] and p["link"]):
            fail(f"; there was no other release to go back to. Hosts not yet reached keep their release.\n{failure.msg}",
                 False, failure.result)
        with open(os.path.join(target_dir, p["failed_marker"]), "w", encoding="utf-8") as marker:
            marker.write(f"health check failed after the switch from {p['fallback']}\n")
        point(p["link"], os.path.join(p["releases_dir"], p["fallback"]), False)
        try:
            settle(module, {**p, "release": p["fallback"]})
        except Failed as again:
            fail(f", and going back to {p['fallback']} failed too: {again.msg}\nThe first failure: {failure.msg}",
                 True, again.result)
        fail(f"; current is back at {p['fallback']} and every instance answers with it. Hosts not yet reached keep "
             f"their release.\n{failure.msg}", True, failure.result)
    marker = os.path.join(target_dir, p["failed_marker"]) if target_dir else ""
    cleared = bool(marker) and os.path.lexists(marker)
    if cleared and not module.check_mode:
        os.unlink(marker)
    changed = switched or cleared or bool(result["stale"])
    module.exit_json(changed=changed, switched=switched, disabled=disabled, extra=extra, **result)


def precheck(module: AnsibleModule, p: dict) -> None:
    """Start the release on the spare port beside the instances, wait for its health, stop it; fail
    (the release marked failed) with its journal when it does not come up."""
    unit = f"{p['candidate']}@{p['release']}.service"
    listed = subprocess.run(["systemctl", "list-units", "--state=active", "--plain", "--no-legend", "--no-pager",
                             f"{p['candidate']}@*.service"], capture_output=True, text=True, check=False).stdout
    leftovers = [line.split()[0] for line in listed.splitlines() if line.split()]
    if module.check_mode:
        module.exit_json(changed=True, leftovers=leftovers, instances=[], stale=[])
    for left in leftovers:
        _systemctl(module, "stop", left)
    subprocess.run(["systemctl", "reset-failed", unit], capture_output=True, check=False)
    try:
        started = subprocess.run(["systemctl", "start", unit], capture_output=True, text=True, check=False)
        if started.returncode == 0:
            found, stale = wait({**p, "check_units": False}, p["ports"])
            why = ", ".join(r for i in found for r in i["reasons"])
        else:
            found, stale = [], p["ports"]
            why = f"systemctl start {unit}: {started.stderr.strip() or started.stdout.strip()}"
        log = journal(p, p["release"], p["candidate"]) if stale else ""
    finally:
        subprocess.run(["systemctl", "stop", unit], capture_output=True, check=False)
    if stale:
        if p["mark_failed"]:
            with open(os.path.join(p["releases_dir"], p["release"], p["failed_marker"]), "w", encoding="utf-8") as marker:
                marker.write(f"pre-check on {p['address']}:{p['ports'][0]} failed\n")
        module.fail_json(msg=f"Release {p['release']} did not answer its health endpoint on {p['address']}:{p['ports'][0]} "
                             f"on {p['host']} within {p['wait']} s ({why}) with the settings this run brings "
                             f"(app_wsgi, app_env, app_secret_env, ...); no instance was switched to it or to those "
                             f"settings, current is still {p['fallback'] or 'unset'}. Its journal:\n{log}",
                         changed=True, leftovers=leftovers, instances=found, stale=stale)
    module.exit_json(changed=True, leftovers=leftovers, instances=found, stale=[])


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "address": {"type": "str", "required": True},
            "ports": {"type": "list", "elements": "int", "required": True},
            "unit": {"type": "str", "default": "webapp"},
            "release": {"type": "str", "default": ""},
            "watch": {"type": "list", "elements": "path", "default": []},
            "socket_watch": {"type": "list", "elements": "path", "default": []},
            "wait": {"type": "float", "default": 0},
            "interval": {"type": "float", "default": 0.1},
            "timeout": {"type": "float", "default": 2},
            "check_units": {"type": "bool", "default": True},
            "converge": {"type": "bool", "default": False},
            "journal_lines": {"type": "int", "default": 40},
            "journal_filter": {"type": "str", "default": ""},
            "link": {"type": "path", "default": ""},
            "releases_dir": {"type": "path", "default": ""},
            "fallback": {"type": "str", "default": ""},
            "failed_marker": {"type": "str", "default": ".failed"},
            "host": {"type": "str", "default": ""},
            "candidate": {"type": "str", "default": ""},
            "path": {"type": "str", "default": "/health"},
            "mark_failed": {"type": "bool", "default": True},
            "statuses": {"type": "list", "elements": "int", "default": [200]},
        },
        supports_check_mode=True,
    )
    p = module.params
    p["host"] = p["host"] or socket.gethostname()
    if p["link"] and not p["releases_dir"]:
        module.fail_json(msg="releases_dir is required with link")
    if p["candidate"] and not (p["releases_dir"] and p["release"] and p["wait"] and len(p["ports"]) == 1):
        module.fail_json(msg="candidate needs release, releases_dir, wait and one port")
    if p["candidate"]:
        precheck(module, p)
    if p["converge"]:
        converge(module, p)
    found, stale = wait(p, p["ports"])
    if p["wait"] and stale:
        module.fail_json(msg=stale_message(p, found), changed=False, instances=found, stale=stale)
    module.exit_json(changed=False, instances=found, stale=stale)


if __name__ == "__main__":
    main()
